/* lora-merge: combine LoRA adapters, re-rank them, bake them into a base
 * model, or convert between kohya, diffusers and PEFT files.
 *
 * Reading the code: parse the arguments (main), read each adapter into a
 * list of modules with canonical names (read_adapter: lib/loraformat.h
 * groups the tensors, lib/loraconv.h names them), then one of three jobs:
 *   - bake():      stream the base model tensor by tensor, adding Σ w·s·B·A;
 *   - build_out(): the merged adapter (ranks concatenated, or re-compressed
 *                  by truncated SVD, lib/lowrank.h), then write_kohya /
 *                  write_diffusers / write_peft.
 *
 * Merge convention (documented in the man page): the merged module is
 *   up' = [w1·s1·B1 | w2·s2·B2 | ...],  down' = [A1; A2; ...],  alpha' = rank'
 * so its scale is 1 and up'·down' = Σ wᵢ·sᵢ·Bᵢ·Aᵢ exactly. A single adapter
 * with weight 1 and no --rank is copied unchanged (alpha and bytes kept).
 */
#include <cblas.h>       /* openblas_set_num_threads */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dtype.h"        /* lora_dtype, lora_convert */
#include "loraconv.h"     /* lora_conv_from_kohya, lora_conv_base_weight, ... */
#include "loraformat.h"   /* lora_format_open: kind of file, tensors grouped into modules */
#include "lowrank.h"      /* lora_lowrank_addmul, lora_lowrank_truncate */
#include "safetensors.h"  /* st_open, st_writer_* */
#include "util.h"         /* lora_die, lora_xmalloc, lora_afile */

static void usage(int status)
{
	fprintf(status ? stderr : stdout,
	        "usage: lora-merge [-f] [-b model] [-d dtype] [-r rank] [-t format] -o output\n"
	        "                  adapter[:weight] ...\n");
	exit(status);
}

enum { FMT_NONE, FMT_KOHYA, FMT_DIFFUSERS, FMT_PEFT };
static const char *fmt_name[] = {"?", "kohya", "diffusers", "peft"};

static int force;

/* Report a problem with a module: an error, or with --force a warning and
 * the caller skips it. */
static void mismatch(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void mismatch(const char *fmt, ...)
{
	char buf[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	if (!force)
		lora_die("%s (--force skips it)", buf);
	lora_warn("%s; skipped", buf);
}

/* ---- adapters ------------------------------------------------------------------ */

typedef struct {
	char *canon;              /* canonical module name (lib/loraconv.h) */
	const st_tensor *down;    /* A: (r, in) or (r, Cin, k, k) */
	const st_tensor *up;      /* B: (out, r) or (out, r, 1, 1) */
	const st_tensor *alpha_t; /* kohya's .alpha (scalar), or NULL */
	double alpha;             /* alpha as the format stores it */
	double scale;             /* alpha / r (or alpha / sqrt(r) for rsLoRA) */
	int r;
	int64_t out, in;          /* in = Cin·k·k */
} module;

typedef struct {
	char *path;               /* as given, without ":weight" */
	double weight;
	int fmt;
	st_file *st[2];           /* two for an SD PEFT folder (unet/, text_encoder/) */
	json_t *config;           /* PEFT adapter_config.json of st[0], or NULL */
	int nmods;
	module *mods;
} adapter;

static int ends(const char *s, const char *suf)
{
	size_t n = strlen(s), m = strlen(suf);
	return n >= m && !strcmp(s + n - m, suf);
}

static int is_dir(const char *p)
{
	struct stat sb;
	return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static int exists(const char *p)
{
	struct stat sb;
	return stat(p, &sb) == 0;
}

/* "[4, 8, 1, 1]" in a static buffer (one call per message). */
static const char *shape_str(const st_tensor *t)
{
	static char buf[256];
	int n = snprintf(buf, sizeof buf, "[");
	for (int i = 0; i < t->ndim && n < 200; i++)
		n += snprintf(buf + n, sizeof buf - n, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
	snprintf(buf + n, sizeof buf - n, "]");
	return buf;
}

static double scalar(const st_tensor *t)
{
	float v;
	if (t->numel != 1 || st_tensor_to_f32(t, &v) != 0)
		return NAN;
	return v;
}

/* Split "path:0.6" (the weight is taken only when it parses as a number). */
static void parse_spec(const char *spec, adapter *a)
{
	const char *c = strrchr(spec, ':');
	double w;
	if (c && c[1] && lora_parse_double(c + 1, -1e6, 1e6, &w) == 0) {
		a->path = lora_xasprintf("%.*s", (int)(c - spec), spec);
		a->weight = w;
	} else {
		a->path = lora_xstrdup(spec);
		a->weight = 1.0;
	}
}

static module *add_module(adapter *a)
{
	a->mods = lora_xrealloc(a->mods, (size_t)(a->nmods + 1) * sizeof *a->mods);
	module *m = &a->mods[a->nmods++];
	memset(m, 0, sizeof *m);
	return m;
}

static int find_module(const adapter *a, const char *canon)
{
	for (int i = 0; i < a->nmods; i++)
		if (!strcmp(a->mods[i].canon, canon))
			return i;
	return -1;
}

/* Check the factor shapes of m and fill r, out, in. 0, or -1 after mismatch(). */
static int check_shapes(const adapter *a, module *m)
{
	const st_tensor *d = m->down, *u = m->up;
	int64_t r = d->ndim ? d->shape[0] : 0;
	int ok = d->ndim >= 2 && u->ndim >= 2 && r > 0 && u->shape[1] == r &&
	         lora_dtype_is_float(d->dtype) && lora_dtype_is_float(u->dtype);
	for (int i = 2; ok && i < u->ndim; i++)
		ok = u->shape[i] == 1;
	if (!ok) {
		char ds[256];
		snprintf(ds, sizeof ds, "%s", shape_str(d));
		mismatch("'%s': module '%s': lora_down %s %s and lora_up %s %s do not fit",
		         a->path, m->canon, lora_dtype_name(d->dtype), ds,
		         lora_dtype_name(u->dtype), shape_str(u));
		return -1;
	}
	m->r = (int)r;
	m->out = u->shape[0];
	m->in = d->numel / r;
	return 0;
}

/* The canonical name of a module lib/loraformat found. comp: the component
 * of an SD PEFT folder's part ("unet", "text_encoder"), else NULL. */
static char *canonical(const adapter *a, const lora_module *lm, const char *comp)
{
	static const char *parts[] = {"unet", "text_encoder", "text_encoder_2"};
	if (a->fmt == FMT_KOHYA)
		return lora_conv_from_kohya(lm->name);
	if (a->fmt == FMT_PEFT)
		return lora_conv_from_peft(lm->name, comp);
	/* diffusers: component + module path; a UNet path in LDM spelling
	 * (some converters write those) is brought to diffusers' */
	if (lm->part > LORA_PART_TEXT2) {
		lora_err("'%s': not a Stable Diffusion module", lm->name);
		return NULL;
	}
	char *p = NULL;
	if (lm->part == LORA_PART_UNET) {
		char *l = lora_conv_unet_to_ldm(lm->path);
		p = l ? lora_xstrdup(lm->path) : lora_conv_unet_from_ldm(lm->path);
		free(l);
		if (!p) {
			lora_err("'%s': not a Stable Diffusion 1.5 UNet module", lm->name);
			return NULL;
		}
	} else {
		p = lora_xstrdup(lm->path);
	}
	char *c = lora_xasprintf("%s.%s", parts[lm->part], p);
	free(p);
	return c;
}

/* Read every module of one safetensors file (lib/loraformat groups the
 * tensors). cfg: adapter_config.json for PEFT ("" for none, NULL for the one
 * beside the file); comp as for canonical(). */
static void read_modules(adapter *a, const st_file *st, const char *comp, const char *cfg)
{
	lora_format *lf = lora_format_open(st, cfg);
	if (!lf)
		lora_die("%s", lora_errmsg());
	if (!lora_kind_is_lora(lf->kind))
		lora_die("'%s': not a LoRA file (%s)", st->path, lora_kind_desc(lf->kind));
	if (a->fmt == FMT_NONE)
		a->fmt = lf->kind == LORA_KIND_KOHYA ? FMT_KOHYA :
		         lf->kind == LORA_KIND_DIFFUSERS ? FMT_DIFFUSERS : FMT_PEFT;
	char *used = lora_xcalloc((size_t)st->ntensors + 1, 1);
	for (int i = 0; i < lf->nmodules; i++) {
		const lora_module *lm = &lf->modules[i];
		if (lm->down)
			used[lm->down - st->tensors] = 1;
		if (lm->up)
			used[lm->up - st->tensors] = 1;
		if (lm->alpha_t)
			used[lm->alpha_t - st->tensors] = 1;
		char *canon = canonical(a, lm, comp);
		if (!canon) {
			mismatch("'%s': %s", a->path, lora_errmsg());
			continue;
		}
		if (!lm->down || !lm->up) {
			mismatch("'%s': module '%s' has no %s matrix", a->path, canon, lm->down ? "up" : "down");
			free(canon);
			continue;
		}
		if (find_module(a, canon) >= 0)
			lora_die("'%s': module '%s' appears twice", a->path, canon);
		module *m = add_module(a);
		m->canon = canon;
		m->down = lm->down;
		m->up = lm->up;
		m->alpha_t = lm->alpha_t;
		if (check_shapes(a, m) != 0 || (lm->alpha_t && isnan(scalar(lm->alpha_t)))) {
			if (lm->alpha_t && isnan(scalar(lm->alpha_t)))
				mismatch("'%s': module '%s': alpha is not a float scalar", a->path, canon);
			free(m->canon);
			a->nmods--;
			continue;
		}
		/* an alpha of 0 means none (kohya, A1111): the rank, scale 1 */
		m->alpha = lm->alpha_from == LORA_ALPHA_TENSOR && lm->alpha == 0 ? m->r : lm->alpha;
		m->scale = lm->scale;
	}
	for (int i = 0; i < st->ntensors; i++) {
		const char *n = st->tensors[i].name;
		if (used[i])
			continue;
		if (strstr(n, "dora_scale") || strstr(n, "lora_magnitude_vector"))
			mismatch("'%s': tensor '%s': DoRA adapters are not supported", a->path, n);
		else
			mismatch("'%s': tensor '%s' is not part of a LoRA module", a->path, n);
	}
	free(used);
	lora_format_free(lf);
}

static st_file *open_st(const char *path)
{
	st_file *st = st_open(path);
	if (!st)
		lora_die("%s", lora_errmsg());
	return st;
}

/* A PEFT folder, an SD PEFT folder (unet/ + text_encoder/), or one file. */
static void read_adapter(adapter *a)
{
	if (!is_dir(a->path)) {
		a->st[0] = open_st(a->path);
		read_modules(a, a->st[0], NULL, NULL);
	} else {
		static const char *parts[] = {"", "unet", "text_encoder"};
		a->fmt = FMT_PEFT;
		int n = 0;
		for (int p = 0; p < 3 && n < 2; p++) {
			const char *sep = *parts[p] ? "/" : "";
			char *f = lora_xasprintf("%s/%s%sadapter_model.safetensors", a->path, parts[p], sep);
			char *c = lora_xasprintf("%s/%s%sadapter_config.json", a->path, parts[p], sep);
			if (exists(f)) {
				a->st[n] = open_st(f);
				read_modules(a, a->st[n++], *parts[p] ? parts[p] : NULL, exists(c) ? c : "");
				if (!a->config && exists(c)) {
					json_error_t e;
					a->config = json_load_file(c, 0, &e);   /* read fine just now */
				}
			}
			free(f);
			free(c);
			if (p == 0 && n)
				break;
		}
		if (!n)
			lora_die("'%s': no adapter_model.safetensors in this folder", a->path);
	}
	if (!a->config && a->fmt == FMT_PEFT && !is_dir(a->path)) {
		const char *sl = strrchr(a->path, '/');
		char *c = lora_xasprintf("%.*sadapter_config.json", sl ? (int)(sl - a->path + 1) : 0, a->path);
		json_error_t e;
		if (exists(c))
			a->config = json_load_file(c, 0, &e);
		free(c);
	}
	if (a->config && json_is_true(json_object_get(a->config, "fan_in_fan_out")))
		lora_die("'%s': fan_in_fan_out adapters (GPT-2 Conv1D weights) are not supported", a->path);
	if (a->config && json_is_true(json_object_get(a->config, "use_dora")))
		lora_die("'%s': DoRA adapters (use_dora) are not supported", a->path);
	if (a->nmods == 0)
		lora_die("'%s': no LoRA modules", a->path);
}

static void free_adapter(adapter *a)
{
	for (int i = 0; i < a->nmods; i++)
		free(a->mods[i].canon);
	free(a->mods);
	st_close(a->st[0]);
	st_close(a->st[1]);
	json_decref(a->config);
	free(a->path);
}

/* ---- the merged module list -------------------------------------------------------- */

/* One contribution of adapter ai to a module. */
typedef struct {
	int ai, mi;
} part;

typedef struct {
	char *canon;
	int nparts;
	part *parts;
	int64_t out, in;
	int ndim_down;
	int64_t down_shape[ST_MAX_DIMS];  /* of the first contribution */
	int ndim_up;
	/* the result */
	int r;
	float *up;                /* (out, r) */
	float *down;              /* (r, in) */
	double alpha;
	const module *copy;       /* a plain copy: tensors written unchanged */
	double energy, resid;
	int r_in;
} merged;

static int nad;
static adapter *ads;
static int nmerged;
static merged *mg;

/* Group every adapter's modules by canonical name, checking that they fit. */
static void collect(void)
{
	lora_arch arch = LORA_ARCH_UNKNOWN;
	const char *arch_from = NULL;
	for (int ai = 0; ai < nad; ai++)
		for (int mi = 0; mi < ads[ai].nmods; mi++) {
			module *m = &ads[ai].mods[mi];
			lora_arch ar = lora_conv_arch(m->canon);
			if (arch == LORA_ARCH_UNKNOWN) {
				arch = ar;
				arch_from = ads[ai].path;
			} else if (ar != arch) {
				mismatch("'%s': module '%s' is for another model than '%s' (%s)", ads[ai].path,
				         m->canon, arch_from, arch == LORA_ARCH_SD15 ? "Stable Diffusion" : "an LLM");
				continue;
			}
			int g = -1;
			for (int k = 0; k < nmerged && g < 0; k++)
				if (!strcmp(mg[k].canon, m->canon))
					g = k;
			if (g < 0) {
				mg = lora_xrealloc(mg, (size_t)(nmerged + 1) * sizeof *mg);
				merged *x = &mg[nmerged];
				memset(x, 0, sizeof *x);
				x->canon = m->canon;
				x->out = m->out;
				x->in = m->in;
				x->ndim_down = m->down->ndim;
				memcpy(x->down_shape, m->down->shape, sizeof x->down_shape);
				x->ndim_up = m->up->ndim;
				g = nmerged++;
			} else if (mg[g].out != m->out || mg[g].in != m->in) {
				mismatch("'%s': module '%s' adapts a %lldx%lld weight, '%s' a %lldx%lld one",
				         ads[ai].path, m->canon, (long long)m->out, (long long)m->in,
				         ads[mg[g].parts[0].ai].path, (long long)mg[g].out, (long long)mg[g].in);
				continue;
			}
			merged *x = &mg[g];
			x->parts = lora_xrealloc(x->parts, (size_t)(x->nparts + 1) * sizeof *x->parts);
			x->parts[x->nparts++] = (part){ai, mi};
			x->r_in += m->r;
		}
}

/* lora_convert on all threads, in 1M-element pieces (baking converts every
 * adapted weight twice; one core does ~1 GB/s). */
typedef struct {
	void *dst;
	lora_dtype dt;
	const void *src;
	lora_dtype st;
	size_t n;
	int failed;
} conv_job;

#define CONV_PIECE ((size_t)1 << 20)

static void conv_piece(void *ctx, int i, int tid)
{
	(void)tid;
	conv_job *j = ctx;
	size_t off = (size_t)i * CONV_PIECE, m = j->n - off < CONV_PIECE ? j->n - off : CONV_PIECE;
	size_t db = (size_t)lora_dtype_bits(j->dt) / 8, sb = (size_t)lora_dtype_bits(j->st) / 8;
	if (lora_convert((char *)j->dst + off * db, j->dt, (const char *)j->src + off * sb, j->st, m) != 0)
		j->failed = 1;
}

static void convert_all(void *dst, lora_dtype dt, const void *src, lora_dtype st, size_t n)
{
	conv_job j = {dst, dt, src, st, n, 0};
	int pieces = (int)((n + CONV_PIECE - 1) / CONV_PIECE);
	if (pieces <= 1)
		conv_piece(&j, 0, 0);
	else
		lora_parallel_for(pieces, lora_nthreads(), conv_piece, &j);
	if (j.failed)
		lora_die("cannot convert %s to %s", lora_dtype_name(st), lora_dtype_name(dt));
}

static float *to_f32(const st_tensor *t)
{
	float *p = lora_xmalloc((size_t)t->numel * sizeof *p);
	if (t->numel > 0 && lora_dtype_bits(t->dtype) % 8 == 0 && lora_dtype_is_float(t->dtype))
		convert_all(p, LORA_DTYPE_F32, t->data, t->dtype, (size_t)t->numel);
	else if (st_tensor_to_f32(t, p) != 0)
		lora_die("%s", lora_errmsg());
	return p;
}

/* up' = [w1·s1·B1 | w2·s2·B2 | ...] (out, R), down' = [A1; A2; ...] (R, in). */
static void concat(merged *x, float **up, float **down)
{
	int R = x->r_in, off = 0;
	*up = lora_xmalloc((size_t)x->out * R * sizeof **up);
	*down = lora_xmalloc((size_t)R * x->in * sizeof **down);
	for (int p = 0; p < x->nparts; p++) {
		const adapter *a = &ads[x->parts[p].ai];
		const module *m = &a->mods[x->parts[p].mi];
		float *u = to_f32(m->up), *d = to_f32(m->down);
		float s = (float)(a->weight * m->scale);
		for (int64_t o = 0; o < x->out; o++)
			for (int k = 0; k < m->r; k++)
				(*up)[o * R + off + k] = s * u[o * m->r + k];
		memcpy(*down + (size_t)off * x->in, d, (size_t)m->r * x->in * sizeof *d);
		off += m->r;
		free(u);
		free(d);
	}
}

static void build_out(int rank)
{
	int plain = nad == 1 && ads[0].weight == 1.0 && rank <= 0;
	for (int g = 0; g < nmerged; g++) {
		merged *x = &mg[g];
		if (plain) {
			x->copy = &ads[0].mods[x->parts[0].mi];
			x->r = x->copy->r;
			x->alpha = x->copy->alpha;
			continue;
		}
		float *up, *down;
		concat(x, &up, &down);
		if (rank > 0) {
			int nsv = lora_lowrank_nsv((int)x->out, x->r_in, (int)x->in);
			int k = nsv < rank ? nsv : rank;
			double *sv = lora_xmalloc((size_t)nsv * sizeof *sv);
			x->up = lora_xmalloc((size_t)x->out * (k ? k : 1) * sizeof *x->up);
			x->down = lora_xmalloc((size_t)(k ? k : 1) * x->in * sizeof *x->down);
			k = lora_lowrank_truncate(up, down, (int)x->out, x->r_in, (int)x->in, rank,
			                          x->up, x->down, sv);
			if (k < 0)
				lora_die("module '%s': %s", x->canon, lora_errmsg());
			x->r = k;
			x->energy = lora_lowrank_energy(sv, nsv, k);
			x->resid = lora_lowrank_residual(sv, nsv, k);
			free(sv);
			free(up);
			free(down);
		} else {
			x->up = up;
			x->down = down;
			x->r = x->r_in;
		}
		x->alpha = x->r;     /* scale 1: the weights and scales are in up */
	}
}

/* ---- writing adapters ------------------------------------------------------------------ */

typedef struct {
	st_writer *w;
	lora_dtype dtype;         /* for computed tensors */
} out_file;

static void w_add(st_writer *w, const char *name, lora_dtype dt, int ndim, const int64_t *shape)
{
	if (st_writer_add(w, name, dt, ndim, shape) != 0)
		lora_die("%s", lora_errmsg());
}

static void w_bytes(st_writer *w, const char *name, const st_tensor *t)
{
	if (st_writer_write(w, name, 0, t->data, t->nbytes) != 0)
		lora_die("%s", lora_errmsg());
}

static void w_f32(st_writer *w, const char *name, const float *p)
{
	if (st_writer_write_f32(w, name, p) != 0)
		lora_die("%s", lora_errmsg());
}

/* The factor shapes of a merged module: down (r, <first down's trailing
 * dims>), up (out, r[, 1, 1]). */
static void shapes(const merged *x, int64_t *ds, int *dn, int64_t *us, int *un)
{
	*dn = x->ndim_down;
	memcpy(ds, x->down_shape, sizeof(int64_t) * ST_MAX_DIMS);
	ds[0] = x->r;
	*un = x->ndim_up;
	us[0] = x->out;
	us[1] = x->r;
	for (int i = 2; i < *un; i++)
		us[i] = 1;
}

/* Declare and (second pass) write one module's two factors. */
static void put_factors(st_writer *w, int pass, const merged *x, const char *dn_name,
                        const char *up_name, lora_dtype dt)
{
	if (x->copy) {
		const module *m = x->copy;
		if (pass == 0) {
			w_add(w, dn_name, m->down->dtype, m->down->ndim, m->down->shape);
			w_add(w, up_name, m->up->dtype, m->up->ndim, m->up->shape);
		} else {
			w_bytes(w, dn_name, m->down);
			w_bytes(w, up_name, m->up);
		}
		return;
	}
	if (x->r == 0)
		return;
	if (pass == 0) {
		int64_t ds[ST_MAX_DIMS], us[ST_MAX_DIMS];
		int dnd, und;
		shapes(x, ds, &dnd, us, &und);
		w_add(w, dn_name, dt, dnd, ds);
		w_add(w, up_name, dt, und, us);
	} else {
		w_f32(w, dn_name, x->down);
		w_f32(w, up_name, x->up);
	}
}

/* Metadata carried over from the first adapter (kohya's ss_*, modelspec.*,
 * anything else) minus what the writer regenerates. */
static void copy_meta(st_writer *w, int rank_changed)
{
	const st_file *st = ads[0].st[0];
	for (int i = 0; i < st->nmeta; i++) {
		const char *k = st->meta_keys[i];
		if (!strcmp(k, "lora_adapter_metadata") || !strcmp(k, "format"))
			continue;
		if (rank_changed && (!strcmp(k, "sshs_model_hash") || !strcmp(k, "sshs_legacy_hash")))
			continue;
		st_writer_meta(w, k, st->meta_vals[i]);
	}
}

static char *merge_note(void)
{
	size_t n = 1;
	for (int i = 0; i < nad; i++)
		n += strlen(ads[i].path) + 32;
	char *s = lora_xmalloc(n), *o = s;
	*o = 0;
	for (int i = 0; i < nad; i++)
		o += sprintf(o, "%s%s:%g", i ? "," : "", ads[i].path, ads[i].weight);
	return s;
}

static void merge_meta(st_writer *w, int rank)
{
	int plain = nad == 1 && ads[0].weight == 1.0 && rank <= 0;
	copy_meta(w, !plain);
	if (plain)
		return;
	char *note = merge_note();
	st_writer_meta(w, "lora_merge_inputs", note);
	free(note);
	int rmax = 0;
	for (int g = 0; g < nmerged; g++)
		rmax = mg[g].r > rmax ? mg[g].r : rmax;
	char buf[32];
	snprintf(buf, sizeof buf, "%d", rmax);
	if (st_meta(ads[0].st[0], "ss_network_dim"))
		st_writer_meta(w, "ss_network_dim", buf);
	if (st_meta(ads[0].st[0], "ss_network_alpha")) {
		snprintf(buf, sizeof buf, "%.1f", (double)rmax);
		st_writer_meta(w, "ss_network_alpha", buf);
	}
}

/* ---- no partial output: what a failed run removes (atexit) ------------------------ */

static st_writer *open_writer;    /* being written: its temporary goes */
static char *open_path;           /* its final name */
static int nmade;
static char **made;               /* files and folders this run completed or created */
static int succeeded;

static void made_add(const char *path)
{
	made = lora_xrealloc(made, (size_t)(nmade + 1) * sizeof *made);
	made[nmade++] = lora_xstrdup(path);
}

static void cleanup(void)
{
	if (!succeeded) {
		st_writer_abort(open_writer);
		for (int i = nmade - 1; i >= 0; i--)
			remove(made[i]);          /* newest first: files, then their folder */
	}
	for (int i = 0; i < nmade; i++)
		free(made[i]);
	free(made);
	free(open_path);
}

static st_writer *open_w(const char *path)
{
	st_writer *w = st_writer_open(path);
	if (!w)
		lora_die("%s", lora_errmsg());
	open_writer = w;
	free(open_path);
	open_path = lora_xstrdup(path);
	return w;
}

static void close_w(st_writer *w)
{
	open_writer = NULL;
	if (st_writer_close(w) != 0)
		lora_die("%s", lora_errmsg());
	made_add(open_path);
}

static void write_kohya(const char *path, lora_dtype dt, int rank)
{
	st_writer *w = open_w(path);
	merge_meta(w, rank);
	for (int pass = 0; pass < 2; pass++)
		for (int g = 0; g < nmerged; g++) {
			merged *x = &mg[g];
			if (!x->copy && x->r == 0)
				continue;
			char *k = lora_conv_to_kohya(x->canon);
			if (!k)
				lora_die("%s", lora_errmsg());
			char *dn = lora_xasprintf("%s.lora_down.weight", k);
			char *un = lora_xasprintf("%s.lora_up.weight", k);
			char *an = lora_xasprintf("%s.alpha", k);
			put_factors(w, pass, x, dn, un, dt);
			lora_dtype adt = x->copy ? x->copy->down->dtype : dt;
			if (x->copy && x->copy->alpha_t)
				adt = x->copy->alpha_t->dtype;
			if (pass == 0) {
				w_add(w, an, adt, 0, NULL);
			} else if (x->copy && x->copy->alpha_t) {
				w_bytes(w, an, x->copy->alpha_t);
			} else {
				/* kohya's scale is alpha/r: an rsLoRA source (alpha/sqrt(r))
				 * is written with the alpha that gives the same scale */
				double al = x->alpha;
				if (x->copy && fabs(x->copy->scale - x->copy->alpha / x->copy->r) > 1e-12 * x->copy->scale)
					al = x->copy->scale * x->copy->r;
				float a = (float)al;
				w_f32(w, an, &a);
			}
			free(k);
			free(dn);
			free(un);
			free(an);
		}
	close_w(w);
}

/* PEFT-style config values for a set of modules: the most common rank and
 * alpha, the others as patterns keyed by the full module path. */
static void peft_fields(json_t *cfg, const char *comp, int llm)
{
	int n = 0;
	int *ranks = lora_xmalloc((size_t)(nmerged + 1) * sizeof *ranks);
	double *alphas = lora_xmalloc((size_t)(nmerged + 1) * sizeof *alphas);
	const char **paths = lora_xmalloc((size_t)(nmerged + 1) * sizeof *paths);
	for (int g = 0; g < nmerged; g++) {
		const char *c = mg[g].canon, *p = c;
		if (!mg[g].copy && mg[g].r == 0)
			continue;
		if (!llm) {
			size_t l = strlen(comp);
			if (strncmp(c, comp, l) || c[l] != '.')
				continue;
			p = c + l + 1;
		}
		ranks[n] = mg[g].r;
		alphas[n] = mg[g].alpha;
		paths[n++] = p;
	}
	int rbest = 0, rcount = 0;
	double abest = 0;
	int acount = 0;
	for (int i = 0; i < n; i++) {
		int rc = 0, ac = 0;
		for (int j = 0; j < n; j++) {
			rc += ranks[j] == ranks[i];
			ac += alphas[j] == alphas[i];
		}
		if (rc > rcount)
			rcount = rc, rbest = ranks[i];
		if (ac > acount)
			acount = ac, abest = alphas[i];
	}
	json_t *rp = json_object(), *ap = json_object(), *tm = json_array();
	for (int i = 0; i < n; i++) {
		if (ranks[i] != rbest)
			json_object_set_new(rp, paths[i], json_integer(ranks[i]));
		if (alphas[i] != abest)
			json_object_set_new(ap, paths[i], json_real(alphas[i]));
		/* target_modules: the last path component, once each */
		const char *last = strrchr(paths[i], '.');
		last = last ? last + 1 : paths[i];
		if (llm) {
			int seen = 0;
			for (size_t j = 0; j < json_array_size(tm) && !seen; j++)
				seen = !strcmp(json_string_value(json_array_get(tm, j)), last);
			if (!seen)
				json_array_append_new(tm, json_string(last));
		} else {
			json_array_append_new(tm, json_string(paths[i]));
		}
	}
	json_object_set_new(cfg, "r", json_integer(rbest));
	if (abest == floor(abest) && fabs(abest) < 1e15)
		json_object_set_new(cfg, "lora_alpha", json_integer((json_int_t)abest));
	else
		json_object_set_new(cfg, "lora_alpha", json_real(abest));
	json_object_set_new(cfg, "rank_pattern", rp);
	json_object_set_new(cfg, "alpha_pattern", ap);
	json_object_set_new(cfg, "target_modules", tm);
	free(ranks);
	free(alphas);
	free(paths);
}

static int component_present(const char *comp)
{
	size_t l = strlen(comp);
	for (int g = 0; g < nmerged; g++)
		if (!strncmp(mg[g].canon, comp, l) && mg[g].canon[l] == '.')
			return 1;
	return 0;
}

static void write_diffusers(const char *path, lora_dtype dt, int rank)
{
	static const char *comps[] = {"unet", "text_encoder", "text_encoder_2"};
	if (lora_conv_arch(mg[0].canon) != LORA_ARCH_SD15)
		lora_die("'%s': the diffusers format is for Stable Diffusion adapters; use --to peft",
		         ads[0].path);
	st_writer *w = open_w(path);
	merge_meta(w, rank);
	st_writer_meta(w, "format", "pt");
	/* "unet.r", "unet.lora_alpha", ...: what diffusers' save_lora_weights
	 * writes and load_lora_weights turns into a LoraConfig */
	json_t *meta = json_object();
	for (int c = 0; c < 3; c++) {
		if (!component_present(comps[c]))
			continue;
		json_t *cfg = json_object();
		peft_fields(cfg, comps[c], 0);
		int rs = 0;
		for (int g = 0; g < nmerged; g++)
			if (mg[g].copy && mg[g].copy->scale != mg[g].copy->alpha / mg[g].copy->r)
				rs = 1;
		json_object_set_new(cfg, "use_rslora", json_boolean(rs));
		json_object_set_new(cfg, "use_dora", json_false());
		json_object_set_new(cfg, "lora_bias", json_false());
		json_object_set_new(cfg, "peft_type", json_string("LORA"));
		const char *k;
		json_t *v;
		json_object_foreach(cfg, k, v) {
			char *pk = lora_xasprintf("%s.%s", comps[c], k);
			json_object_set(meta, pk, v);
			free(pk);
		}
		json_decref(cfg);
	}
	char *ms = json_dumps(meta, JSON_INDENT(2) | JSON_SORT_KEYS);
	st_writer_meta(w, "lora_adapter_metadata", ms);
	free(ms);
	json_decref(meta);
	for (int pass = 0; pass < 2; pass++)
		for (int g = 0; g < nmerged; g++) {
			char *dn = lora_xasprintf("%s.lora_A.weight", mg[g].canon);
			char *un = lora_xasprintf("%s.lora_B.weight", mg[g].canon);
			put_factors(w, pass, &mg[g], dn, un, dt);
			free(dn);
			free(un);
		}
	close_w(w);
}

static void mkdir_p(const char *dir)
{
	if (mkdir(dir, 0777) == 0)
		made_add(dir);
	else if (errno != EEXIST)
		lora_die("cannot create '%s':", dir);
}

static void write_json(const char *path, json_t *j)
{
	lora_afile af;
	if (lora_afile_open(&af, path) != 0)
		lora_die("%s", lora_errmsg());
	if (json_dumpf(j, af.fp, JSON_INDENT(2) | JSON_SORT_KEYS) != 0 || fputc('\n', af.fp) == EOF) {
		lora_afile_abort(&af);
		lora_die("cannot write '%s':", path);
	}
	if (lora_afile_commit(&af) != 0)
		lora_die("%s", lora_errmsg());
	made_add(path);
}

/* One PEFT folder: adapter_model.safetensors + adapter_config.json, for the
 * modules of comp (SD) or all (LLM). */
static void write_peft_dir(const char *dir, const char *comp, lora_dtype dt, int rank)
{
	int llm = comp == NULL;
	mkdir_p(dir);
	char *f = lora_xasprintf("%s/adapter_model.safetensors", dir);
	st_writer *w = open_w(f);
	merge_meta(w, rank);
	st_writer_meta(w, "format", "pt");
	for (int pass = 0; pass < 2; pass++)
		for (int g = 0; g < nmerged; g++) {
			const char *c = mg[g].canon;
			if (!llm && (strncmp(c, comp, strlen(comp)) || c[strlen(comp)] != '.'))
				continue;
			char *p = lora_conv_to_peft(c);
			char *dn = lora_xasprintf("%s.lora_A.weight", p);
			char *un = lora_xasprintf("%s.lora_B.weight", p);
			put_factors(w, pass, &mg[g], dn, un, dt);
			free(p);
			free(dn);
			free(un);
		}
	close_w(w);
	free(f);

	/* config: the first adapter's when it has one (unknown fields kept) */
	json_t *cfg = ads[0].config ? json_deep_copy(ads[0].config) : json_object();
	int plain = nad == 1 && ads[0].weight == 1.0 && rank <= 0;
	if (!json_object_get(cfg, "peft_type"))
		json_object_set_new(cfg, "peft_type", json_string("LORA"));
	if (!json_object_get(cfg, "task_type"))
		json_object_set_new(cfg, "task_type", llm ? json_string("CAUSAL_LM") : json_null());
	if (!json_object_get(cfg, "base_model_name_or_path"))
		json_object_set_new(cfg, "base_model_name_or_path", json_null());
	static const struct { const char *k; int v; } defaults[] = {
		{"fan_in_fan_out", 0}, {"inference_mode", 1}, {"init_lora_weights", 1},
		{"use_dora", 0},
	};
	for (size_t i = 0; i < sizeof defaults / sizeof *defaults; i++)
		if (!json_object_get(cfg, defaults[i].k))
			json_object_set_new(cfg, defaults[i].k, json_boolean(defaults[i].v));
	if (!json_object_get(cfg, "bias"))
		json_object_set_new(cfg, "bias", json_string("none"));
	if (!json_object_get(cfg, "lora_dropout"))
		json_object_set_new(cfg, "lora_dropout", json_real(0.0));
	if (!json_object_get(cfg, "modules_to_save"))
		json_object_set_new(cfg, "modules_to_save", json_null());
	if (!plain || !json_object_get(cfg, "use_rslora")) {
		/* merged: scale 1 = alpha/r; a kohya/diffusers source: plain alpha/r */
		int rs = plain && ads[0].nmods && ads[0].mods[0].scale != ads[0].mods[0].alpha / ads[0].mods[0].r;
		json_object_set_new(cfg, "use_rslora", json_boolean(rs));
	}
	peft_fields(cfg, comp ? comp : "", llm);
	char *cp = lora_xasprintf("%s/adapter_config.json", dir);
	write_json(cp, cfg);
	free(cp);
	json_decref(cfg);
}

static void write_peft(const char *dir, lora_dtype dt, int rank)
{
	if (lora_conv_arch(mg[0].canon) == LORA_ARCH_LLM) {
		write_peft_dir(dir, NULL, dt, rank);
		return;
	}
	static const char *comps[] = {"unet", "text_encoder", "text_encoder_2"};
	mkdir_p(dir);
	for (int c = 0; c < 3; c++)
		if (component_present(comps[c])) {
			char *d = lora_xasprintf("%s/%s", dir, comps[c]);
			write_peft_dir(d, comps[c], dt, rank);
			free(d);
		}
}

/* ---- baking into a base model ------------------------------------------------------------ */

/* Drop the pages of [p, p+n) from this process (the file keeps them). */
static void drop_pages(const void *p, size_t n)
{
	long pg = sysconf(_SC_PAGESIZE);
	uintptr_t a = ((uintptr_t)p + pg - 1) & ~(uintptr_t)(pg - 1);
	uintptr_t b = ((uintptr_t)p + n) & ~(uintptr_t)(pg - 1);
	if (b > a)
		madvise((void *)a, b - a, MADV_DONTNEED);
}

/* Baking one weight: W' = W + Σ sᵢ·upᵢ·downᵢ, streamed in chunks of rows
 * (about 4M values), so memory stays small even for an lm_head. In a chunk,
 * blocks of BAKE_ROWS rows go to lora_parallel_for: each converts its rows
 * to F32, adds every part with one single-threaded sgemm (main sets OpenBLAS
 * to one thread: its own threads spin in sched_yield, which on a busy machine
 * costs more than they give) and converts back; the chunk is then written. */
typedef struct {
	const unsigned char *src;   /* chunk of W in its dtype */
	unsigned char *dst;         /* (rows, in) in W's dtype */
	float *buf;                 /* (rows, in) F32 work space */
	lora_dtype dt;
	int64_t row0, rows, in;     /* row0: the chunk's first row in W */
	int nparts;
	float **up, **down;         /* (out, rᵢ), (rᵢ, in) */
	int *r;
	float *s;
	int failed;
} bake_job;

#define BAKE_ROWS 64
#define BAKE_CHUNK ((int64_t)1 << 22)

static void bake_rows(void *ctx, int i, int tid)
{
	(void)tid;
	bake_job *j = ctx;
	int64_t b0 = (int64_t)i * BAKE_ROWS, nr = j->rows - b0 < BAKE_ROWS ? j->rows - b0 : BAKE_ROWS;
	size_t esz = (size_t)lora_dtype_bits(j->dt) / 8, n = (size_t)(nr * j->in);
	float *W = j->buf + b0 * j->in;
	if (lora_convert(W, LORA_DTYPE_F32, j->src + (size_t)(b0 * j->in) * esz, j->dt, n) != 0) {
		j->failed = 1;
		return;
	}
	for (int p = 0; p < j->nparts; p++)
		lora_lowrank_addmul(W, j->up[p] + (j->row0 + b0) * j->r[p], j->down[p], (int)nr,
		                    j->r[p], (int)j->in, j->s[p]);
	if (lora_convert(j->dst + (size_t)(b0 * j->in) * esz, j->dt, W, LORA_DTYPE_F32, n) != 0)
		j->failed = 1;
}

static void bake_tensor(st_writer *w, const st_tensor *t, const merged *x)
{
	bake_job j = {.dt = t->dtype, .in = x->in, .nparts = x->nparts};
	j.up = lora_xmalloc((size_t)x->nparts * sizeof *j.up);
	j.down = lora_xmalloc((size_t)x->nparts * sizeof *j.down);
	j.r = lora_xmalloc((size_t)x->nparts * sizeof *j.r);
	j.s = lora_xmalloc((size_t)x->nparts * sizeof *j.s);
	for (int p = 0; p < x->nparts; p++) {
		const adapter *a = &ads[x->parts[p].ai];
		const module *m = &a->mods[x->parts[p].mi];
		j.up[p] = to_f32(m->up);
		j.down[p] = to_f32(m->down);
		j.r[p] = m->r;
		j.s[p] = (float)(a->weight * m->scale);
	}
	size_t esz = (size_t)lora_dtype_bits(t->dtype) / 8;
	int64_t chunk_rows = BAKE_CHUNK / x->in > 0 ? BAKE_CHUNK / x->in : 1;
	if (chunk_rows > x->out)
		chunk_rows = x->out;
	j.buf = lora_xmalloc((size_t)(chunk_rows * x->in) * sizeof *j.buf);
	j.dst = lora_xmalloc((size_t)(chunk_rows * x->in) * esz);
	for (int64_t r0 = 0; r0 < x->out; r0 += chunk_rows) {
		j.row0 = r0;
		j.rows = x->out - r0 < chunk_rows ? x->out - r0 : chunk_rows;
		j.src = (const unsigned char *)t->data + (size_t)(r0 * x->in) * esz;
		int blocks = (int)((j.rows + BAKE_ROWS - 1) / BAKE_ROWS);
		lora_parallel_for(blocks, lora_nthreads(), bake_rows, &j);
		if (j.failed)
			lora_die("'%s': cannot convert %s to F32 and back", t->name, lora_dtype_name(t->dtype));
		size_t nb = (size_t)(j.rows * x->in) * esz;
		if (st_writer_write(w, t->name, (uint64_t)(r0 * x->in) * esz, j.dst, nb) != 0)
			lora_die("%s", lora_errmsg());
		drop_pages(j.src, nb);
	}
	for (int p = 0; p < x->nparts; p++) {
		free(j.up[p]);
		free(j.down[p]);
	}
	free(j.up);
	free(j.down);
	free(j.r);
	free(j.s);
	free(j.buf);
	free(j.dst);
}

typedef struct {
	char *weight;       /* base key */
	int g;              /* merged module */
	int done;
} target;

static int ntargets;
static target *targets;

static int target_find(const char *name)
{
	for (int i = 0; i < ntargets; i++)
		if (!strcmp(targets[i].weight, name))
			return i;
	return -1;
}

/* Bake every target that lives in st into a copy of st at out. */
static void bake_file(const char *in, const char *out)
{
	st_file *st = open_st(in);
	st_writer *w = open_w(out);
	for (int i = 0; i < st->nmeta; i++)
		st_writer_meta(w, st->meta_keys[i], st->meta_vals[i]);
	for (int i = 0; i < st->ntensors; i++) {
		const st_tensor *t = &st->tensors[i];
		w_add(w, t->name, t->dtype, t->ndim, t->shape);
	}
	const size_t chunk = 16u << 20;
	for (int i = 0; i < st->ntensors; i++) {
		const st_tensor *t = &st->tensors[i];
		int k = target_find(t->name);
		merged *x = k >= 0 ? &mg[targets[k].g] : NULL;
		if (x && (t->numel != x->out * x->in || t->ndim < 2 || t->shape[0] != x->out ||
		          !lora_dtype_is_float(t->dtype))) {
			mismatch("module '%s': base weight '%s' (%s %s) does not fit a %lldx%lld LoRA",
			         x->canon, t->name, lora_dtype_name(t->dtype), shape_str(t),
			         (long long)x->out, (long long)x->in);
			x = NULL;
		}
		if (!x) {
			const char *p = t->data;
			for (size_t off = 0; off < t->nbytes; off += chunk) {
				size_t n = t->nbytes - off < chunk ? t->nbytes - off : chunk;
				if (st_writer_write(w, t->name, off, p + off, n) != 0)
					lora_die("%s", lora_errmsg());
				drop_pages(p + off, n);
			}
			if (k >= 0)
				targets[k].done = 1;
			continue;
		}
		bake_tensor(w, t, x);
		targets[k].done = 1;
	}
	close_w(w);
	st_close(st);
}

static const char *base_name(const char *p)
{
	const char *s = strrchr(p, '/');
	return s ? s + 1 : p;
}

static void copy_file(const char *from, const char *to)
{
	size_t n;
	char *buf = lora_read_file(from, &n);
	if (!buf)
		lora_die("%s", lora_errmsg());
	lora_afile af;
	if (lora_afile_open(&af, to) != 0)
		lora_die("%s", lora_errmsg());
	if (fwrite(buf, 1, n, af.fp) != n) {
		lora_afile_abort(&af);
		lora_die("cannot write '%s':", to);
	}
	free(buf);
	if (lora_afile_commit(&af) != 0)
		lora_die("%s", lora_errmsg());
	made_add(to);
}

static void bake(const char *base, const char *out)
{
	/* the base weight of every module, checked up front */
	targets = lora_xcalloc((size_t)nmerged + 1, sizeof *targets);
	for (int g = 0; g < nmerged; g++) {
		char *wn = lora_conv_base_weight(mg[g].canon);
		if (!wn) {
			mismatch("%s", lora_errmsg());
			continue;
		}
		targets[ntargets++] = (target){wn, g, 0};
	}
	char *index = NULL, *single = NULL, *dir = NULL;
	if (is_dir(base)) {
		dir = lora_xstrdup(base);
		char *ix = lora_xasprintf("%s/model.safetensors.index.json", base);
		char *sf = lora_xasprintf("%s/model.safetensors", base);
		if (exists(ix))
			index = ix;
		else
			free(ix);
		if (!index && exists(sf))
			single = sf;
		else
			free(sf);
		if (!index && !single)
			lora_die("'%s': no model.safetensors or model.safetensors.index.json in this folder", base);
	} else if (ends(base, ".index.json")) {
		index = lora_xstrdup(base);
		const char *sl = strrchr(base, '/');
		dir = sl ? lora_xasprintf("%.*s", (int)(sl - base), base) : lora_xstrdup(".");
	} else {
		single = lora_xstrdup(base);
	}

	/* check names and shapes against the header(s) before writing anything */
	st_file *all = open_st(index ? index : single);
	for (int i = 0; i < ntargets; i++) {
		merged *x = &mg[targets[i].g];
		const st_tensor *t = st_find(all, targets[i].weight);
		if (!t) {
			mismatch("module '%s': no weight '%s' in '%s'", x->canon, targets[i].weight, base);
			targets[i].done = 1;
			free(targets[i].weight);
			targets[i].weight = lora_xstrdup("");
		} else if (t->numel != x->out * x->in || t->shape[0] != x->out) {
			mismatch("module '%s': base weight '%s' has shape %s, the LoRA needs %lldx%lld",
			         x->canon, t->name, shape_str(t), (long long)x->out, (long long)x->in);
			targets[i].done = 1;
			free(targets[i].weight);
			targets[i].weight = lora_xstrdup("");
		}
	}
	int nshards = all->nshards;
	char **shards = lora_xmalloc((size_t)nshards * sizeof *shards);
	for (int i = 0; i < nshards; i++)
		shards[i] = lora_xstrdup(all->shard_paths[i]);
	st_close(all);

	if (!dir) {
		if (is_dir(out))
			lora_die("'%s': is a folder; the base is one file, so the output is one file", out);
		bake_file(single, out);
	} else {
		if (exists(out) && !is_dir(out))
			lora_die("'%s': exists and is not a folder", out);
		mkdir_p(out);
		for (int i = 0; i < nshards; i++) {
			char *o = lora_xasprintf("%s/%s", out, base_name(shards[i]));
			bake_file(shards[i], o);
			free(o);
		}
		/* config, tokenizer, index...: every other plain file, copied */
		DIR *d = opendir(dir);
		if (!d)
			lora_die("cannot open '%s':", dir);
		struct dirent *e;
		while ((e = readdir(d)) != NULL) {
			char *from = lora_xasprintf("%s/%s", dir, e->d_name);
			struct stat sb;
			if (e->d_name[0] != '.' && stat(from, &sb) == 0 && S_ISREG(sb.st_mode) &&
			    !ends(e->d_name, ".safetensors")) {
				char *to = lora_xasprintf("%s/%s", out, e->d_name);
				copy_file(from, to);
				free(to);
			}
			free(from);
		}
		closedir(d);
	}
	for (int i = 0; i < nshards; i++)
		free(shards[i]);
	free(shards);
	for (int i = 0; i < ntargets; i++)
		free(targets[i].weight);
	free(targets);
	free(index);
	free(single);
	free(dir);
}

/* ---- main ------------------------------------------------------------------------------- */

static int same_file(const char *a, const char *b)
{
	struct stat sa, sb;
	return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"base", required_argument, NULL, 'b'},
		{"dtype", required_argument, NULL, 'd'},
		{"force", no_argument, NULL, 'f'},
		{"help", no_argument, NULL, 'h'},
		{"output", required_argument, NULL, 'o'},
		{"rank", required_argument, NULL, 'r'},
		{"to", required_argument, NULL, 't'},
		{NULL, 0, NULL, 0},
	};
	lora_progname = "lora-merge";
	atexit(cleanup);
	openblas_set_num_threads(1);      /* we thread ourselves: see bake_rows */
	const char *base = NULL, *out = NULL;
	int to = FMT_NONE, c;
	long rank = 0;
	int dtype = LORA_DTYPE_F32, dtype_set = 0;
	while ((c = getopt_long(argc, argv, "b:d:fho:r:t:", opts, NULL)) != -1) {
		switch (c) {
		case 'b':
			base = optarg;
			break;
		case 'd':
			dtype = lora_dtype_parse(optarg);
			if (dtype != LORA_DTYPE_F32 && dtype != LORA_DTYPE_F16 && dtype != LORA_DTYPE_BF16) {
				char up[8] = {0};
				for (int i = 0; i < 7 && optarg[i]; i++)
					up[i] = (char)(optarg[i] >= 'a' && optarg[i] <= 'z' ? optarg[i] - 32 : optarg[i]);
				dtype = lora_dtype_parse(up);
			}
			if (dtype != LORA_DTYPE_F32 && dtype != LORA_DTYPE_F16 && dtype != LORA_DTYPE_BF16) {
				fprintf(stderr, "lora-merge: --dtype: '%s' is not f32, f16 or bf16\n", optarg);
				usage(2);
			}
			dtype_set = 1;
			break;
		case 'f':
			force = 1;
			break;
		case 'h':
			usage(0);
			break;
		case 'o':
			out = optarg;
			break;
		case 'r':
			if (lora_parse_long(optarg, 1, 1 << 20, &rank) != 0) {
				fprintf(stderr, "lora-merge: --rank: %s\n", lora_errmsg());
				usage(2);
			}
			break;
		case 't':
			for (int f = FMT_KOHYA; f <= FMT_PEFT; f++)
				if (!strcmp(optarg, fmt_name[f]))
					to = f;
			if (to == FMT_NONE) {
				fprintf(stderr, "lora-merge: --to: '%s' is not kohya, diffusers or peft\n", optarg);
				usage(2);
			}
			break;
		default:
			usage(2);
		}
	}
	if (optind == argc) {
		fprintf(stderr, "lora-merge: no adapter given\n");
		usage(2);
	}
	if (!out) {
		fprintf(stderr, "lora-merge: no output given (-o)\n");
		usage(2);
	}
	if (base && (to != FMT_NONE || rank)) {
		fprintf(stderr, "lora-merge: --base writes a model; --to and --rank apply to adapters\n");
		usage(2);
	}
	nad = argc - optind;
	ads = lora_xcalloc((size_t)nad, sizeof *ads);
	for (int i = 0; i < nad; i++) {
		parse_spec(argv[optind + i], &ads[i]);
		if (same_file(ads[i].path, out))
			lora_die("'%s': the output would overwrite an input", out);
		read_adapter(&ads[i]);
	}
	if (base && same_file(base, out))
		lora_die("'%s': the output would overwrite the base model", out);
	collect();
	if (nmerged == 0)
		lora_die("no module left to merge");

	if (base) {
		bake(base, out);
	} else {
		build_out((int)rank);
		if (to == FMT_NONE)
			to = ads[0].fmt;
		if (!dtype_set && nad == 1 && rank <= 0 && ads[0].weight == 1.0)
			dtype = LORA_DTYPE_F32;   /* unused: a plain copy keeps every dtype */
		if (to == FMT_KOHYA)
			write_kohya(out, (lora_dtype)dtype, (int)rank);
		else if (to == FMT_DIFFUSERS)
			write_diffusers(out, (lora_dtype)dtype, (int)rank);
		else {
			size_t n = strlen(out);
			if (n > 12 && !strcmp(out + n - 12, ".safetensors"))
				lora_warn("'%s': PEFT output is a folder (adapter_model.safetensors + "
				          "adapter_config.json), not one file", out);
			write_peft(out, (lora_dtype)dtype, (int)rank);
		}
		if (rank > 0) {
			printf("module\trank_in\trank_out\tenergy_kept\tfrobenius_error\n");
			for (int g = 0; g < nmerged; g++)
				printf("%s\t%d\t%d\t%.6f\t%.6g\n", mg[g].canon, mg[g].r_in, mg[g].r,
				       mg[g].energy, mg[g].resid);
		}
	}
	for (int g = 0; g < nmerged; g++) {
		free(mg[g].parts);
		free(mg[g].up);
		free(mg[g].down);
	}
	free(mg);
	for (int i = 0; i < nad; i++)
		free_adapter(&ads[i]);
	free(ads);
	lora_stdout_close();
	succeeded = 1;
	return 0;
}
