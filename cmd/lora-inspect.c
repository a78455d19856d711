/* lora-inspect: look inside .safetensors files (man/lora-inspect.1).
 *
 * Listing reads only the header (the data stays unmapped in practice: nothing
 * touches it but the alpha scalars of a LoRA). --stats and --diff stream the
 * tensor data from the mapping in chunks, spread over lora_nthreads() threads.
 */
#include <fnmatch.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "loraformat.h"    /* lora_format_open, lora_kind_desc, lora_module */
#include "safetensors.h"   /* st_open, st_tensor, st_meta */
#include "util.h"          /* lora_die, lora_parallel_for, lora_xmalloc */

static const char usage_text[] =
	"usage: lora-inspect [-j] [-m] [-f pattern] [-s [-n]] [file ...]\n"
	"       lora-inspect -d [-j] [-f pattern] file1 file2\n";

static void usage(int status)
{
	fputs(usage_text, status ? stderr : stdout);
	exit(status);
}

static struct {
	int json, meta, stats, allow_nonfinite, diff;
	const char *filter;
} opt;

/* An error that does not stop the run: "lora-inspect: msg" on stderr. */
static void error(const char *msg)
{
	fflush(stdout);
	fprintf(stderr, "%s: %s\n", lora_progname, msg);
}

static int matches(const char *name)
{
	return !opt.filter || fnmatch(opt.filter, name, 0) == 0;
}

/* ---- formatting ------------------------------------------------------------------ */

static void shape_str(const st_tensor *t, char *buf, size_t n)
{
	size_t o = snprintf(buf, n, "[");
	for (int d = 0; d < t->ndim && o < n; d++)
		o += snprintf(buf + o, n - o, "%s%lld", d ? "," : "", (long long)t->shape[d]);
	if (o < n)
		snprintf(buf + o, n - o, "]");
}

static json_t *shape_json(const st_tensor *t)
{
	json_t *a = json_array();
	for (int d = 0; d < t->ndim; d++)
		json_array_append_new(a, json_integer(t->shape[d]));
	return a;
}

/* 1234567 -> "1.23M"; binary: 4750 -> "4.64 KiB" */
static void human(double v, int binary, char *buf, size_t n)
{
	static const char *k[] = { "", "K", "M", "G", "T" };
	int i = 0;
	double div = binary ? 1024 : 1000;
	while (v >= div && i < 4) {
		v /= div;
		i++;
	}
	if (binary)
		snprintf(buf, n, i ? "%.3g %siB" : "%.0f B", v, k[i]);
	else
		snprintf(buf, n, i ? "%.3g%s" : "%.0f%s", v, k[i]);
}

/* Escape tab, newline, carriage return and backslash for one-line output. */
static void put_escaped(const char *s)
{
	for (; *s; s++) {
		switch (*s) {
		case '\t': fputs("\\t", stdout); break;
		case '\n': fputs("\\n", stdout); break;
		case '\r': fputs("\\r", stdout); break;
		case '\\': fputs("\\\\", stdout); break;
		default: putchar(*s);
		}
	}
}

/* ---- statistics, streamed in chunks ------------------------------------------------ */

#define CHUNK (1 << 20)     /* elements per work item */

typedef struct {
	double min, max, mean, m2, sumsq;   /* over finite values; m2: Welford */
	int64_t n, nan, inf;
} stats;

static void stats_merge(stats *a, const stats *b)
{
	if (!b->n) {
		a->nan += b->nan;
		a->inf += b->inf;
		return;
	}
	if (!a->n) {
		int64_t nan = a->nan + b->nan, inf = a->inf + b->inf;
		*a = *b;
		a->nan = nan;
		a->inf = inf;
		return;
	}
	double n = (double)(a->n + b->n), d = b->mean - a->mean;
	a->m2 += b->m2 + d * d * (double)a->n * (double)b->n / n;
	a->mean += d * (double)b->n / n;
	a->min = fmin(a->min, b->min);
	a->max = fmax(a->max, b->max);
	a->sumsq += b->sumsq;
	a->n += b->n;
	a->nan += b->nan;
	a->inf += b->inf;
}

/* Sub-byte and complex types have no f32 view. */
static int has_values(const st_tensor *t)
{
	return t->dtype != LORA_DTYPE_C64 && t->dtype != LORA_DTYPE_F4 &&
	       t->dtype != LORA_DTYPE_F6_E2M3 && t->dtype != LORA_DTYPE_F6_E3M2;
}

typedef struct {
	const st_tensor *t;     /* (second file for --diff) */
	const st_tensor *u;
	int64_t begin, n;       /* element range */
	stats s;
	double maxdiff;
	int failed;
} work;

typedef struct {
	work *w;
	float **buf;            /* (nthreads) CHUNK floats each, two for --diff */
} job;

static int chunk_f32(const st_tensor *t, int64_t begin, int64_t n, float *out)
{
	size_t esz = (size_t)lora_dtype_bits(t->dtype) / 8;
	return lora_convert(out, LORA_DTYPE_F32, (const char *)t->data + (size_t)begin * esz,
	                    t->dtype, (size_t)n);
}

static void stats_item(void *ctx, int i, int tid)
{
	job *j = ctx;
	work *w = &j->w[i];
	float *x = j->buf[2 * tid];
	if (chunk_f32(w->t, w->begin, w->n, x) != 0) {
		w->failed = 1;
		return;
	}
	/* two passes over the chunk (it is in cache): sums, then squared
	 * deviations from the chunk mean; chunks merge with Chan's formula */
	stats s = { .min = INFINITY, .max = -INFINITY };
	double sum = 0, sumsq = 0;
	float lo = INFINITY, hi = -INFINITY;
	int64_t bad = 0;
	for (int64_t k = 0; k < w->n; k++) {
		float v = x[k];
		if (!isfinite(v)) {
			bad++;
			continue;
		}
		sum += v;
		sumsq += (double)v * v;
		lo = v < lo ? v : lo;
		hi = v > hi ? v : hi;
	}
	if (bad)
		for (int64_t k = 0; k < w->n; k++) {
			s.nan += isnan(x[k]) != 0;
			s.inf += isinf(x[k]) != 0;
		}
	s.n = w->n - bad;
	if (s.n) {
		s.mean = sum / (double)s.n;
		s.min = lo;
		s.max = hi;
		s.sumsq = sumsq;
		double m2 = 0;
		for (int64_t k = 0; k < w->n; k++) {
			double d = (double)x[k] - s.mean;
			if (isfinite(x[k]))
				m2 += d * d;
		}
		s.m2 = m2;
	}
	w->s = s;
}

static void diff_item(void *ctx, int i, int tid)
{
	job *j = ctx;
	work *w = &j->w[i];
	float *x = j->buf[2 * tid], *y = j->buf[2 * tid + 1];
	if (chunk_f32(w->t, w->begin, w->n, x) != 0 || chunk_f32(w->u, w->begin, w->n, y) != 0) {
		w->failed = 1;
		return;
	}
	double m = 0;
	for (int64_t k = 0; k < w->n; k++) {
		double d = fabs((double)x[k] - (double)y[k]);
		if (isnan(d))
			d = isnan(x[k]) && isnan(y[k]) ? 0 : INFINITY;
		if (d > m)
			m = d;
	}
	w->maxdiff = m;
}

/* Split tensors (pairs for diff) into chunks, run them threaded. The caller
 * frees the returned array; first[i] is the first item of tensor i. */
static work *run_chunks(const st_tensor **ts, const st_tensor **us, int n, int **first, int *nitems,
                        void (*fn)(void *, int, int))
{
	int cap = 16, ni = 0;
	work *w = lora_xmalloc(cap * sizeof *w);
	*first = lora_xmalloc(((size_t)n + 1) * sizeof **first);
	for (int i = 0; i < n; i++) {
		(*first)[i] = ni;
		if (!ts[i] || !has_values(ts[i]) || (us && !has_values(us[i])))
			continue;
		for (int64_t b = 0; b < ts[i]->numel; b += CHUNK) {
			if (ni == cap)
				w = lora_xrealloc(w, (cap *= 2) * sizeof *w);
			w[ni] = (work){ .t = ts[i], .u = us ? us[i] : NULL, .begin = b,
			                .n = ts[i]->numel - b < CHUNK ? ts[i]->numel - b : CHUNK };
			ni++;
		}
	}
	(*first)[n] = ni;
	int nt = lora_nthreads();
	if (nt > ni)
		nt = ni > 0 ? ni : 1;
	job j = { w, lora_xcalloc(2 * (size_t)nt, sizeof(float *)) };
	for (int t = 0; t < 2 * nt; t++)
		j.buf[t] = lora_xmalloc(CHUNK * sizeof(float));
	lora_parallel_for(ni, nt, fn, &j);
	for (int t = 0; t < 2 * nt; t++)
		free(j.buf[t]);
	free(j.buf);
	*nitems = ni;
	return w;
}

/* ---- LoRA summary helpers ---------------------------------------------------------- */

/* Histogram of doubles, most common first. */
typedef struct { double v; int n; } bin;

static int cmp_bin(const void *a, const void *b)
{
	const bin *x = a, *y = b;
	return x->n != y->n ? y->n - x->n : (x->v < y->v ? -1 : x->v > y->v);
}

static int histogram(const double *v, int n, bin *out)
{
	int nb = 0;
	for (int i = 0; i < n; i++) {
		int k = 0;
		while (k < nb && out[k].v != v[i])
			k++;
		if (k == nb)
			out[nb++] = (bin){ v[i], 0 };
		out[k].n++;
	}
	qsort(out, nb, sizeof *out, cmp_bin);
	return nb;
}

static int is_number(const char *s)
{
	if (!*s)
		return 0;
	for (; *s; s++)
		if (*s < '0' || *s > '9')
			return 0;
	return 1;
}

/* The layer a module sits in ("down_blocks.0", "layers.11", "mid_block") and
 * its kind within that layer ("attn1.to_q", "self_attn.q_proj", "proj_in"). */
static void split_path(const char *path, char *block, size_t nb, char *leaf, size_t nl)
{
	char tmp[512];
	snprintf(tmp, sizeof tmp, "%s", path);
	char *c[64];
	int n = 0;
	for (char *s = strtok(tmp, "."); s && n < 64; s = strtok(NULL, "."))
		c[n++] = s;
	snprintf(block, nb, "-");
	for (int i = 0; i < n; i++) {
		if (i + 1 < n && is_number(c[i + 1]) &&
		    (strstr(c[i], "blocks") || !strcmp(c[i], "layers") || !strcmp(c[i], "h"))) {
			snprintf(block, nb, "%s.%s", c[i], c[i + 1]);
			break;
		}
		if (!strcmp(c[i], "mid_block") || !strcmp(c[i], "middle_block")) {
			snprintf(block, nb, "%s", c[i]);
			break;
		}
	}
	int start = 0;
	for (int i = 0; i + 1 < n; i++)
		if (is_number(c[i]) && i > 0 && c[i - 1][strlen(c[i - 1]) - 1] == 's' &&
		    !is_number(c[i - 1])) {
			start = i + 1;
			while (start + 1 < n && is_number(c[start]))
				start++;
		}
	size_t o = 0;
	leaf[0] = 0;
	for (int i = start; i < n && o < nl; i++)
		o += snprintf(leaf + o, nl - o, "%s%s", i > start ? "." : "", c[i]);
}

/* Counted strings, in order of first appearance. */
typedef struct { char s[128]; int n; } tally;

static int tally_add(tally *t, int n, const char *s)
{
	for (int i = 0; i < n; i++)
		if (!strcmp(t[i].s, s)) {
			t[i].n++;
			return n;
		}
	snprintf(t[n].s, sizeof t[n].s, "%s", s);
	t[n].n = 1;
	return n + 1;
}

/* "layers.0","layers.1","layers.2","layers.11" -> "layers 0-2,11" */
static void blocks_line(tally *b, int nb, char *out, size_t n)
{
	size_t o = 0;
	out[0] = 0;
	int *done = lora_xcalloc((size_t)nb + 1, sizeof *done);
	for (int i = 0; i < nb; i++) {
		if (done[i])
			continue;
		char word[128];
		snprintf(word, sizeof word, "%s", b[i].s);
		char *dot = strrchr(word, '.');
		if (!dot || !is_number(dot + 1)) {
			o += snprintf(out + o, o < n ? n - o : 0, "%s%s", o ? ", " : "", word);
			done[i] = 1;
			continue;
		}
		*dot = 0;
		long idx[1024];
		int k = 0;
		for (int j = i; j < nb && k < 1024; j++) {
			char *d = strrchr(b[j].s, '.');
			if (!done[j] && d && (size_t)(d - b[j].s) == strlen(word) &&
			    !strncmp(b[j].s, word, strlen(word)) && is_number(d + 1)) {
				idx[k++] = atol(d + 1);
				done[j] = 1;
			}
		}
		for (int x = 1; x < k; x++)       /* insertion sort */
			for (int y = x; y > 0 && idx[y - 1] > idx[y]; y--) {
				long t = idx[y];
				idx[y] = idx[y - 1];
				idx[y - 1] = t;
			}
		o += snprintf(out + o, o < n ? n - o : 0, "%s%s ", o ? ", " : "", word);
		for (int x = 0; x < k;) {
			int y = x;
			while (y + 1 < k && idx[y + 1] == idx[y] + 1)
				y++;
			if (y > x)
				o += snprintf(out + o, o < n ? n - o : 0, "%s%ld-%ld", x ? "," : "", idx[x], idx[y]);
			else
				o += snprintf(out + o, o < n ? n - o : 0, "%s%ld", x ? "," : "", idx[x]);
			x = y + 1;
		}
	}
	free(done);
}

/* ---- one file ---------------------------------------------------------------------- */

static const char *kohya_training[][2] = {
	{ "ss_num_epochs", "epochs" }, { "ss_steps", "steps" },
	{ "ss_num_train_images", "images" }, { "ss_resolution", "resolution" },
	{ "ss_learning_rate", "lr" }, { "ss_unet_lr", "unet lr" },
	{ "ss_text_encoder_lr", "text encoder lr" }, { "ss_lr_scheduler", "scheduler" },
	{ "ss_optimizer", "optimizer" }, { "ss_batch_size_per_device", "batch" },
	{ "ss_mixed_precision", "precision" }, { "ss_clip_skip", "clip skip" },
	{ "ss_seed", "seed" }, { "ss_network_args", "network args" },
};

/* LoRA part of the summary, as lines "# key: value" or JSON. */
static void lora_summary(const st_file *f, const lora_format *lf, json_t *jl)
{
	int n = 0;
	const lora_module **ms = lora_xcalloc((size_t)lf->nmodules + 1, sizeof *ms);
	for (int i = 0; i < lf->nmodules; i++) {
		const lora_module *m = &lf->modules[i];
		const st_tensor *t = m->down ? m->down : m->up;
		if (t && matches(t->name))
			ms[n++] = m;
	}
	double *v = lora_xcalloc((size_t)n + 1, sizeof *v);
	bin *bins = lora_xcalloc((size_t)n + 1, sizeof *bins);
	int parts[LORA_PART_COUNT] = { 0 };
	for (int i = 0; i < n; i++)
		parts[ms[i]->part]++;
	char line[8192];
	size_t o;

	if (!jl) {
		o = snprintf(line, sizeof line, "%d", n);
		int first = 1;
		for (int p = 0; p < LORA_PART_COUNT; p++)
			if (parts[p]) {
				o += snprintf(line + o, sizeof line - o, "%s%s %d", first ? " (" : ", ",
				              lora_part_name(p), parts[p]);
				first = 0;
			}
		if (!first)
			snprintf(line + o, sizeof line - o, ")");
		printf("# modules: %s\n", line);
	} else {
		json_object_set_new(jl, "module_count", json_integer(n));
		json_t *jp = json_object();
		for (int p = 0; p < LORA_PART_COUNT; p++)
			if (parts[p])
				json_object_set_new(jp, lora_part_name(p), json_integer(parts[p]));
		json_object_set_new(jl, "parts", jp);
	}
	/* rank, alpha, scale: the common value first */
	static const char *what[] = { "rank", "alpha", "scale" };
	for (int w = 0; w < 3; w++) {
		for (int i = 0; i < n; i++)
			v[i] = w == 0 ? ms[i]->rank : w == 1 ? ms[i]->alpha : ms[i]->scale;
		int nb = histogram(v, n, bins);
		if (jl) {
			json_object_set_new(jl, what[w], !nb ? json_null() :
			                    w == 0 ? json_integer((json_int_t)bins[0].v) : json_real(bins[0].v));
			json_t *h = json_object();
			for (int b = 0; b < nb; b++) {
				char k[64];
				snprintf(k, sizeof k, "%g", bins[b].v);
				json_object_set_new(h, k, json_integer(bins[b].n));
			}
			char k[32];
			snprintf(k, sizeof k, "%s_counts", what[w]);
			json_object_set_new(jl, k, h);
			continue;
		}
		o = 0;
		for (int b = 0; b < nb && o < sizeof line; b++)
			o += snprintf(line + o, sizeof line - o, "%s%g (%d module%s)", b ? ", " : "",
			              bins[b].v, bins[b].n, bins[b].n == 1 ? "" : "s");
		if (nb)
			printf("# %s: %s%s\n", what[w], line,
			       w == 1 && ms[0]->alpha_from == LORA_ALPHA_DEFAULT ? " [none stored: alpha = rank]" :
			       w == 1 && ms[0]->alpha_from == LORA_ALPHA_CONFIG ? " [from adapter_config.json]" :
			       w == 1 && ms[0]->alpha_from == LORA_ALPHA_METADATA ? " [from lora_adapter_metadata]" :
			       w == 2 && lf->use_rslora ? " [alpha/sqrt(rank): use_rslora]" : "");
	}
	/* which layers: per part, the blocks and the kinds of layer */
	tally *tl = lora_xcalloc((size_t)n + 1, sizeof *tl), *tb = lora_xcalloc((size_t)n + 1, sizeof *tb);
	json_t *jt = jl ? json_object() : NULL, *jb = jl ? json_object() : NULL;
	int ntl = 0;
	for (int i = 0; i < n; i++) {
		char block[128], leaf[256];
		split_path(ms[i]->path, block, sizeof block, leaf, sizeof leaf);
		ntl = tally_add(tl, ntl, leaf);
	}
	if (jl) {
		for (int i = 0; i < ntl; i++)
			json_object_set_new(jt, tl[i].s, json_integer(tl[i].n));
		json_object_set_new(jl, "targets", jt);
	} else if (ntl) {
		o = 0;
		for (int i = 0; i < ntl && o < sizeof line; i++)
			o += snprintf(line + o, sizeof line - o, "%s%s %d", i ? ", " : "", tl[i].s, tl[i].n);
		printf("# targets: %s\n", line);
	}
	o = 0;
	for (int p = 0; p < LORA_PART_COUNT; p++) {
		if (!parts[p])
			continue;
		int nbk = 0;
		for (int i = 0; i < n; i++)
			if ((int)ms[i]->part == p) {
				char block[128], leaf[256];
				split_path(ms[i]->path, block, sizeof block, leaf, sizeof leaf);
				nbk = tally_add(tb, nbk, block);
			}
		char bl[4096];
		blocks_line(tb, nbk, bl, sizeof bl);
		if (jl)
			json_object_set_new(jb, lora_part_name(p), json_string(bl));
		else
			o += snprintf(line + o, o < sizeof line ? sizeof line - o : 0, "%s%s: %s",
			              o ? "; " : "", lora_part_name(p), bl);
	}
	if (jl)
		json_object_set_new(jl, "layers", jb);
	else if (o)
		printf("# layers: %s\n", line);
	free(tl);
	free(tb);

	/* base model and training, from the metadata or adapter_config.json */
	const char *bmv = st_meta(f, "ss_base_model_version");
	const char *arch = st_meta(f, "modelspec.architecture");
	if (jl) {
		if (lf->base_model)
			json_object_set_new(jl, "base_model", json_string(lf->base_model));
		if (bmv)
			json_object_set_new(jl, "base_model_version", json_string(bmv));
		if (lf->config_path)
			json_object_set_new(jl, "config", json_string(lf->config_path));
	} else {
		if (lf->base_model || bmv || arch) {
			printf("# base model: %s", lf->base_model ? lf->base_model : "?");
			if (bmv || arch)
				printf(" (%s%s%s)", bmv ? bmv : "", bmv && arch ? "; " : "", arch ? arch : "");
			putchar('\n');
		}
		if (lf->config_path)
			printf("# config: %s (r %d, lora_alpha %g%s)\n", lf->config_path, lf->config_rank,
			       lf->config_alpha, lf->use_rslora ? ", use_rslora" : "");
	}
	o = 0;
	json_t *jtr = jl ? json_object() : NULL;
	for (size_t k = 0; k < sizeof kohya_training / sizeof kohya_training[0]; k++) {
		const char *val = st_meta(f, kohya_training[k][0]);
		if (!val || !strcmp(val, "None") || !*val)
			continue;
		if (jl)
			json_object_set_new(jtr, kohya_training[k][1], json_string(val));
		else
			o += snprintf(line + o, o < sizeof line ? sizeof line - o : 0, "%s%s %s",
			              o ? ", " : "", kohya_training[k][1], val);
	}
	if (jl)
		json_object_set_new(jl, "training", jtr);
	else if (o)
		printf("# training: %s\n", line);

	/* per module */
	json_t *jm = jl ? json_array() : NULL;
	for (int i = 0; i < n; i++) {
		const lora_module *m = ms[i];
		const st_tensor *d = m->down, *u = m->up;
		long long in = d && d->ndim > 1 ? d->shape[1] : -1, out = u && u->ndim ? u->shape[0] : -1;
		if (jl) {
			json_t *e = json_pack("{s:s, s:s, s:s, s:s, s:i, s:f, s:s, s:f}",
			                      "name", m->name, "path", m->path, "base", m->base,
			                      "part", lora_part_name(m->part), "rank", m->rank,
			                      "alpha", m->alpha,
			                      "alpha_from", m->alpha_from == LORA_ALPHA_TENSOR ? "tensor" :
			                      m->alpha_from == LORA_ALPHA_CONFIG ? "config" :
			                      m->alpha_from == LORA_ALPHA_METADATA ? "metadata" : "default",
			                      "scale", m->scale);
			json_object_set_new(e, "in", json_integer(in));
			json_object_set_new(e, "out", json_integer(out));
			json_object_set_new(e, "kernel", json_integer(d && d->ndim == 4 ? d->shape[2] : 1));
			json_array_append_new(jm, e);
		} else {
			printf("# module\t%s\t%s\tr=%d\talpha=%g\tscale=%g\t%lld->%lld%s\t%s\n", m->name,
			       lora_part_name(m->part), m->rank, m->alpha, m->scale, in, out,
			       d && d->ndim == 4 && d->shape[2] > 1 ? " conv3x3" : "", m->base);
		}
	}
	if (jl)
		json_object_set_new(jl, "modules", jm);
	if (lora_format_check(lf) != 0) {
		if (jl)
			json_object_set_new(jl, "problem", json_string(lora_errmsg()));
		else
			printf("# problem: %s\n", lora_errmsg());
	}
	free(v);
	free(bins);
	free(ms);
}

/* Params in the parts of a checkpoint: SD 1.5 (UNet, VAE, text encoder),
 * LLaMA (layers, vocab, hidden). */
static void checkpoint_summary(const st_file *f, lora_kind kind, json_t *jc)
{
	if (kind == LORA_KIND_SD15) {
		static const char *pre[][2] = {
			{ "model.diffusion_model.", "unet" }, { "first_stage_model.", "vae" },
			{ "cond_stage_model.", "text_encoder" }, { "model_ema.", "ema" },
		};
		int64_t p[5] = { 0 };
		for (int i = 0; i < f->ntensors; i++) {
			int k = 0;
			while (k < 4 && strncmp(f->tensors[i].name, pre[k][0], strlen(pre[k][0])))
				k++;
			p[k] += f->tensors[i].numel;
		}
		char line[512];
		size_t o = 0;
		for (int k = 0; k < 5; k++) {
			if (!p[k])
				continue;
			const char *nm = k < 4 ? pre[k][1] : "other";
			if (jc)
				json_object_set_new(jc, nm, json_integer(p[k]));
			char h[32];
			human((double)p[k], 0, h, sizeof h);
			o += snprintf(line + o, sizeof line - o, "%s%s %s", o ? ", " : "", nm, h);
		}
		if (!jc)
			printf("# params by part: %s\n", line);
	} else if (kind == LORA_KIND_LLAMA) {
		int layers = 0;
		for (int i = 0; i < f->ntensors; i++) {
			const char *n = f->tensors[i].name;
			if (!strncmp(n, "model.layers.", 13)) {
				int l = atoi(n + 13) + 1;
				if (l > layers)
					layers = l;
			}
		}
		const st_tensor *e = st_find(f, "model.embed_tokens.weight");
		const st_tensor *q = st_find(f, "model.layers.0.self_attn.q_proj.weight");
		const st_tensor *k = st_find(f, "model.layers.0.self_attn.k_proj.weight");
		const st_tensor *g = st_find(f, "model.layers.0.mlp.gate_proj.weight");
		long long vocab = e && e->ndim == 2 ? e->shape[0] : -1;
		long long hidden = e && e->ndim == 2 ? e->shape[1] : -1;
		long long inter = g && g->ndim == 2 ? g->shape[0] : -1;
		long long qd = q && q->ndim == 2 ? q->shape[0] : -1, kd = k && k->ndim == 2 ? k->shape[0] : -1;
		int tied = st_find(f, "lm_head.weight") == NULL;
		if (jc) {
			json_object_set_new(jc, "layers", json_integer(layers));
			json_object_set_new(jc, "vocab", json_integer(vocab));
			json_object_set_new(jc, "hidden", json_integer(hidden));
			json_object_set_new(jc, "intermediate", json_integer(inter));
			json_object_set_new(jc, "q_dim", json_integer(qd));
			json_object_set_new(jc, "kv_dim", json_integer(kd));
			json_object_set_new(jc, "tied_embeddings", json_boolean(tied));
		} else {
			printf("# model: %d layers, vocab %lld, hidden %lld, intermediate %lld, q %lld, kv %lld%s\n",
			       layers, vocab, hidden, inter, qd, kd, tied ? ", lm_head tied to embeddings" : "");
		}
	}
}

/* List (and with --stats, measure) one file. Returns 0, or 1 when --stats
 * found NaN/Inf and that is not allowed. */
static int inspect(const st_file *f, json_t *jout)
{
	int rc = 0;
	lora_format *lf = lora_format_open(f, f->path[0] == '<' ? "" : NULL);
	if (!lf) {
		lora_warn("%s", lora_errmsg());
		lf = lora_format_open(f, "");
	}
	if (opt.meta && !jout) {
		for (int i = 0; i < f->nmeta; i++) {
			put_escaped(f->meta_keys[i]);
			putchar('\t');
			put_escaped(f->meta_vals[i]);
			putchar('\n');
		}
		lora_format_free(lf);
		return 0;
	}
	int n = 0;
	const st_tensor **ts = lora_xcalloc((size_t)f->ntensors + 1, sizeof *ts);
	for (int i = 0; i < f->ntensors; i++)
		if (matches(f->tensors[i].name))
			ts[n++] = &f->tensors[i];

	work *w = NULL;
	int *first = NULL, nitems = 0, bad = 0;
	stats *st = NULL;
	if (opt.stats) {
		w = run_chunks(ts, NULL, n, &first, &nitems, stats_item);
		st = lora_xcalloc((size_t)n + 1, sizeof *st);
		for (int i = 0; i < n; i++) {
			st[i] = (stats){ .min = INFINITY, .max = -INFINITY };
			for (int k = first[i]; k < first[i + 1]; k++) {
				if (w[k].failed)
					lora_die("'%s': tensor '%s': cannot convert %s to f32", f->path,
					         ts[i]->name, lora_dtype_name(ts[i]->dtype));
				stats_merge(&st[i], &w[k].s);
			}
			bad += st[i].nan + st[i].inf > 0;
		}
	}

	int64_t params = 0, bytes = 0;
	int dcount[LORA_DTYPE_COUNT] = { 0 };
	json_t *jts = jout ? json_array() : NULL;
	char sh[256];
	for (int i = 0; i < n; i++) {
		const st_tensor *t = ts[i];
		params += t->numel;
		bytes += t->nbytes;
		dcount[t->dtype]++;
		if (jout) {
			json_t *e = json_pack("{s:s, s:s, s:o, s:I, s:I, s:I}", "name", t->name,
			                      "dtype", lora_dtype_name(t->dtype), "shape", shape_json(t),
			                      "params", (json_int_t)t->numel, "bytes", (json_int_t)t->nbytes,
			                      "offset", (json_int_t)t->offset);
			if (f->nshards > 1)
				json_object_set_new(e, "shard", json_string(f->shard_paths[t->shard]));
			if (opt.stats && has_values(t)) {
				stats *s = &st[i];
				double sd = s->n ? sqrt(s->m2 / (double)s->n) : NAN;
				json_t *js = json_pack("{s:I, s:I}", "nan", (json_int_t)s->nan, "inf", (json_int_t)s->inf);
				json_object_set_new(js, "min", s->n ? json_real(s->min) : json_null());
				json_object_set_new(js, "max", s->n ? json_real(s->max) : json_null());
				json_object_set_new(js, "mean", s->n ? json_real(s->mean) : json_null());
				json_object_set_new(js, "std", s->n ? json_real(sd) : json_null());
				json_object_set_new(js, "l2", json_real(sqrt(s->sumsq)));
				json_object_set_new(e, "stats", js);
			}
			json_array_append_new(jts, e);
			continue;
		}
		shape_str(t, sh, sizeof sh);
		printf("%s\t%s\t%s\t%lld", t->name, lora_dtype_name(t->dtype), sh, (long long)t->numel);
		if (opt.stats) {
			stats *s = &st[i];
			if (!has_values(t))
				printf("\t-\t-\t-\t-\t-\t-\t-");
			else if (!s->n)
				printf("\tnan\tnan\tnan\tnan\t0\t%lld\t%lld", (long long)s->nan, (long long)s->inf);
			else
				printf("\t%.9g\t%.9g\t%.9g\t%.9g\t%.9g\t%lld\t%lld", s->min, s->max, s->mean,
				       sqrt(s->m2 / (double)s->n), sqrt(s->sumsq), (long long)s->nan,
				       (long long)s->inf);
		}
		putchar('\n');
	}

	/* summary */
	char h1[32], h2[32];
	if (jout) {
		json_object_set_new(jout, "file", json_string(f->path));
		json_object_set_new(jout, "kind", json_string(lora_kind_name(lf->kind)));
		json_object_set_new(jout, "kind_description", json_string(lora_kind_desc(lf->kind)));
		json_object_set_new(jout, "tensor_count", json_integer(n));
		json_object_set_new(jout, "params", json_integer(params));
		json_object_set_new(jout, "data_bytes", json_integer(bytes));
		json_object_set_new(jout, "header_bytes", json_integer((json_int_t)f->header_bytes));
		json_object_set_new(jout, "file_bytes", json_integer((json_int_t)f->file_bytes));
		if (f->nshards > 1) {
			json_t *js = json_array();
			for (int i = 0; i < f->nshards; i++)
				json_array_append_new(js, json_string(f->shard_paths[i]));
			json_object_set_new(jout, "shards", js);
		}
		json_t *jd = json_object();
		for (int d = 0; d < LORA_DTYPE_COUNT; d++)
			if (dcount[d])
				json_object_set_new(jd, lora_dtype_name(d), json_integer(dcount[d]));
		json_object_set_new(jout, "dtypes", jd);
		json_t *jm = json_object();
		for (int i = 0; i < f->nmeta; i++)
			json_object_set_new(jm, f->meta_keys[i], json_string(f->meta_vals[i]));
		json_object_set_new(jout, "metadata", jm);
		if (opt.stats)
			json_object_set_new(jout, "nonfinite_tensors", json_integer(bad));
		json_object_set_new(jout, "tensors", jts);
		if (lora_kind_is_lora(lf->kind)) {
			json_t *jl = json_object();
			lora_summary(f, lf, jl);
			json_object_set_new(jout, "lora", jl);
		} else if (lf->kind == LORA_KIND_SD15 || lf->kind == LORA_KIND_LLAMA) {
			json_t *jc = json_object();
			checkpoint_summary(f, lf->kind, jc);
			json_object_set_new(jout, "checkpoint", jc);
		}
	} else {
		printf("# file: %s", f->path);
		if (f->nshards > 1)
			printf(" (%d shards)", f->nshards);
		putchar('\n');
		if (opt.filter)
			printf("# tensors: %d of %d match '%s'\n", n, f->ntensors, opt.filter);
		else
			printf("# tensors: %d\n", n);
		human((double)params, 0, h1, sizeof h1);
		printf("# params: %lld (%s)\n", (long long)params, h1);
		human((double)bytes, 1, h1, sizeof h1);
		human((double)f->file_bytes, 1, h2, sizeof h2);
		printf("# bytes: %lld of tensor data (%s), header %llu, file %llu (%s)\n",
		       (long long)bytes, h1, (unsigned long long)f->header_bytes,
		       (unsigned long long)f->file_bytes, h2);
		printf("# dtypes:");
		for (int d = 0, k = 0; d < LORA_DTYPE_COUNT; d++)
			if (dcount[d])
				printf("%s %s %d", k++ ? "," : "", lora_dtype_name(d), dcount[d]);
		printf("\n# metadata: %d key%s\n", f->nmeta, f->nmeta == 1 ? "" : "s");
		printf("# kind: %s\n", lora_kind_desc(lf->kind));
		if (lora_kind_is_lora(lf->kind))
			lora_summary(f, lf, NULL);
		else
			checkpoint_summary(f, lf->kind, NULL);
		if (opt.stats)
			printf("# nonfinite: %d tensor%s with NaN or Inf\n", bad, bad == 1 ? "" : "s");
	}
	if (opt.stats && bad && !opt.allow_nonfinite) {
		char msg[1024];
		snprintf(msg, sizeof msg, "'%s': %d tensor%s NaN or Inf (--allow-nonfinite accepts this)",
		         f->path, bad, bad == 1 ? " holds" : "s hold");
		error(msg);
		rc = 1;
	}
	free(w);
	free(first);
	free(st);
	free(ts);
	lora_format_free(lf);
	return rc;
}

/* ---- diff -------------------------------------------------------------------------- */

static int cmp_name(const void *a, const void *b)
{
	return strcmp((*(const st_tensor *const *)a)->name, (*(const st_tensor *const *)b)->name);
}

static void diff(const st_file *a, const st_file *b, json_t *jout)
{
	const st_tensor **ta = lora_xcalloc((size_t)a->ntensors + 1, sizeof *ta);
	const st_tensor **tb = lora_xcalloc((size_t)a->ntensors + 1, sizeof *tb);
	const st_tensor **all = lora_xcalloc((size_t)a->ntensors + b->ntensors + 1, sizeof *all);
	int n = 0, nall = 0;
	for (int i = 0; i < a->ntensors; i++) {
		if (!matches(a->tensors[i].name))
			continue;
		all[nall++] = &a->tensors[i];
	}
	for (int i = 0; i < b->ntensors; i++)
		if (matches(b->tensors[i].name) && !st_find(a, b->tensors[i].name))
			all[nall++] = &b->tensors[i];
	qsort(all, nall, sizeof *all, cmp_name);
	/* pairs with equal shapes get their largest difference computed */
	for (int i = 0; i < nall; i++) {
		const st_tensor *x = st_find(a, all[i]->name), *y = st_find(b, all[i]->name);
		if (x && y && x->ndim == y->ndim && !memcmp(x->shape, y->shape, x->ndim * sizeof x->shape[0]) &&
		    has_values(x) && has_values(y)) {
			ta[n] = x;
			tb[n++] = y;
		}
	}
	int *first = NULL, nitems = 0;
	work *w = run_chunks(ta, tb, n, &first, &nitems, diff_item);
	int only_a = 0, only_b = 0, changed = 0, same = 0, differ = 0, k = 0;
	double big = 0;
	const char *bigname = NULL;
	json_t *jt = jout ? json_array() : NULL;
	char sa[256], sb[256];
	for (int i = 0; i < nall; i++) {
		const st_tensor *x = st_find(a, all[i]->name), *y = st_find(b, all[i]->name);
		double md = NAN;
		if (k < n && ta[k] == x) {
			md = 0;
			for (int q = first[k]; q < first[k + 1]; q++) {
				if (w[q].failed)
					lora_die("tensor '%s': cannot convert to f32", x->name);
				if (w[q].maxdiff > md || isnan(w[q].maxdiff))
					md = w[q].maxdiff;
			}
			k++;
		}
		const char *status;
		if (!y)
			status = "only-a", only_a++;
		else if (!x)
			status = "only-b", only_b++;
		else if (x->dtype != y->dtype || isnan(md) || x->ndim != y->ndim ||
		         memcmp(x->shape, y->shape, x->ndim * sizeof x->shape[0]))
			status = "changed", changed++;
		else if (md == 0 && x->nbytes == y->nbytes && !memcmp(x->data, y->data, x->nbytes))
			status = "same", same++;
		else
			status = "differ", differ++;
		if (!isnan(md) && md > big) {
			big = md;
			bigname = x->name;
		}
		if (x)
			shape_str(x, sa, sizeof sa);
		if (y)
			shape_str(y, sb, sizeof sb);
		if (jout) {
			json_t *e = json_pack("{s:s, s:s}", "name", all[i]->name, "status", status);
			if (x)
				json_object_set_new(e, "a", json_pack("{s:s, s:o}", "dtype", lora_dtype_name(x->dtype),
				                                     "shape", shape_json(x)));
			if (y)
				json_object_set_new(e, "b", json_pack("{s:s, s:o}", "dtype", lora_dtype_name(y->dtype),
				                                     "shape", shape_json(y)));
			json_object_set_new(e, "max_abs_diff", isnan(md) ? json_null() : json_real(md));
			json_array_append_new(jt, e);
			continue;
		}
		printf("%s\t%s\t%s %s\t%s %s\t", status, all[i]->name, x ? lora_dtype_name(x->dtype) : "-",
		       x ? sa : "-", y ? lora_dtype_name(y->dtype) : "-", y ? sb : "-");
		if (isnan(md))
			printf("-\n");
		else
			printf("%.9g\n", md);
	}
	/* metadata */
	int meta_changed = 0;
	json_t *jm = jout ? json_object() : NULL;
	for (int pass = 0; pass < 2; pass++) {
		const st_file *p = pass ? b : a, *q = pass ? a : b;
		for (int i = 0; i < p->nmeta; i++) {
			const char *other = st_meta(q, p->meta_keys[i]);
			if (pass && other)
				continue;
			if (other && !strcmp(other, p->meta_vals[i]))
				continue;
			meta_changed++;
			const char *st = !other ? (pass ? "only-b" : "only-a") : "changed";
			if (jout) {
				json_object_set_new(jm, p->meta_keys[i], json_string(st));
			} else {
				printf("meta-%s\t", st);
				put_escaped(p->meta_keys[i]);
				putchar('\n');
			}
		}
	}
	if (jout) {
		json_object_set_new(jout, "a", json_string(a->path));
		json_object_set_new(jout, "b", json_string(b->path));
		json_object_set_new(jout, "tensors", jt);
		json_object_set_new(jout, "metadata", jm);
		json_object_set_new(jout, "summary", json_pack("{s:i, s:i, s:i, s:i, s:i, s:f}",
		                    "only_a", only_a, "only_b", only_b, "changed", changed,
		                    "differ", differ, "same", same, "max_abs_diff", big));
	} else {
		printf("# a: %s\n# b: %s\n", a->path, b->path);
		printf("# only in a: %d, only in b: %d, changed dtype/shape: %d, different values: %d, "
		       "identical: %d, metadata keys that differ: %d\n", only_a, only_b, changed, differ,
		       same, meta_changed);
		if (bigname)
			printf("# largest difference: %.9g in %s\n", big, bigname);
		else
			printf("# largest difference: 0\n");
	}
	free(w);
	free(first);
	free(ta);
	free(tb);
	free(all);
}

/* ---- main -------------------------------------------------------------------------- */

/* A folder, as lora-train and lora-merge write them, stands for the file in it:
 * a PEFT adapter, a sharded index, a single-file model (first one present). */
static st_file *open_folder(const char *dir)
{
	static const char *const names[] = {
		"adapter_model.safetensors", "model.safetensors.index.json", "model.safetensors",
		"diffusion_pytorch_model.safetensors.index.json",
		"diffusion_pytorch_model.safetensors", "pytorch_lora_weights.safetensors",
	};
	for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
		char *p = lora_xasprintf("%s/%s", dir, names[i]);
		if (access(p, F_OK) == 0) {
			st_file *f = st_open(p);
			free(p);
			return f;
		}
		free(p);
	}
	lora_err("'%s': a folder without adapter_model.safetensors, model.safetensors"
	         " or a .safetensors.index.json", dir);
	return NULL;
}

static st_file *open_input(const char *path, char **buf)
{
	*buf = NULL;
	struct stat sb;
	if (strcmp(path, "-") && stat(path, &sb) == 0 && S_ISDIR(sb.st_mode))
		return open_folder(path);
	if (strcmp(path, "-"))
		return st_open(path);
	size_t n = 0;
	*buf = lora_read_file("/dev/stdin", &n);
	if (!*buf)
		return NULL;
	return st_open_buffer(*buf, n, "<stdin>");
}

int main(int argc, char **argv)
{
	lora_progname = "lora-inspect";
	static const struct option longopts[] = {
		{ "allow-nonfinite", no_argument, NULL, 'n' },
		{ "diff", no_argument, NULL, 'd' },
		{ "filter", required_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },
		{ "json", no_argument, NULL, 'j' },
		{ "meta", no_argument, NULL, 'm' },
		{ "stats", no_argument, NULL, 's' },
		{ NULL, 0, NULL, 0 },
	};
	int c;
	while ((c = getopt_long(argc, argv, "df:hjmns", longopts, NULL)) != -1) {
		switch (c) {
		case 'd': opt.diff = 1; break;
		case 'f': opt.filter = optarg; break;
		case 'h': usage(0); break;
		case 'j': opt.json = 1; break;
		case 'm': opt.meta = 1; break;
		case 'n': opt.allow_nonfinite = 1; break;
		case 's': opt.stats = 1; break;
		default: usage(2);
		}
	}
	argc -= optind;
	argv += optind;
	if (opt.diff && (argc != 2 || opt.stats || opt.meta))
		usage(2);
	if (opt.allow_nonfinite && !opt.stats)
		usage(2);

	int rc = 0;
	if (opt.diff) {
		char *ba, *bb;
		st_file *a = open_input(argv[0], &ba);
		if (!a)
			lora_die("%s", lora_errmsg());
		st_file *b = open_input(argv[1], &bb);
		if (!b)
			lora_die("%s", lora_errmsg());
		json_t *j = opt.json ? json_object() : NULL;
		diff(a, b, j);
		if (j) {
			json_dumpf(j, stdout, JSON_INDENT(1) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9));
			putchar('\n');
			json_decref(j);
		}
		st_close(a);
		st_close(b);
		free(ba);
		free(bb);
		lora_stdout_close();
		return 0;
	}
	static char *stdin_arg[] = { "-" };
	if (argc == 0) {
		argc = 1;
		argv = stdin_arg;
	}
	json_t *jall = opt.json && argc > 1 ? json_array() : NULL;
	for (int i = 0; i < argc; i++) {
		char *buf;
		st_file *f = open_input(argv[i], &buf);
		if (!f) {
			error(lora_errmsg());
			rc = 1;
			free(buf);
			continue;
		}
		if (i && !opt.json)
			putchar('\n');
		json_t *j = opt.json ? json_object() : NULL;
		rc |= inspect(f, j);
		if (j && jall) {
			json_array_append_new(jall, j);
		} else if (j) {
			json_dumpf(j, stdout, JSON_INDENT(1) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9));
			putchar('\n');
			json_decref(j);
		}
		st_close(f);
		free(buf);
	}
	if (jall) {
		json_dumpf(jall, stdout, JSON_INDENT(1) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9));
		putchar('\n');
		json_decref(jall);
	}
	lora_stdout_close();
	return rc;
}
