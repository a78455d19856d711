/* train.c: see train.h. The job top to bottom: plan, load, loop, save. */
#include "train.h"
#include "backend.h"            /* lora_backend_get, be->mem_info, be->scale */
#include "data.h"               /* lora_dataset_load, lora_batch_make */
#include "llama.h"              /* lora_llama_load, _forward, _backward */
#include "lora.h"               /* lora_adapter_config, lora_targets_parse */
#include "optim.h"              /* lora_adamw, lora_clip_grad_norm, lora_schedule */
#include "safetensors.h"        /* st_writer for checkpoints and full models */
#include "tfevents.h"           /* lora_tfevents_scalar */
#include "tokenizer.h"          /* lora_tokenizer_load */
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- files and folders ------------------------------------------------------------ */

static int mkdir_p(const char *path)
{
	char *p = lora_xstrdup(path);
	for (char *s = p + 1; ; s++) {
		if (*s == '/' || !*s) {
			char c = *s;
			*s = 0;
			if (mkdir(p, 0755) < 0 && errno != EEXIST) {
				int rc = lora_err("cannot create '%s':", p);
				free(p);
				return rc;
			}
			*s = c;
			if (!c)
				break;
		}
	}
	free(p);
	return 0;
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	(void)st;
	(void)flag;
	(void)f;
	return remove(p);
}

static void rm_rf(const char *path)
{
	nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static int exists(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0;
}

/* Copy src to dst atomically. */
static int copy_file(const char *src, const char *dst)
{
	size_t n;
	char *buf = lora_read_file(src, &n);
	if (!buf)
		return -1;
	lora_afile f;
	if (lora_afile_open(&f, dst) < 0) {
		free(buf);
		return -1;
	}
	if (fwrite(buf, 1, n, f.fp) != n) {
		free(buf);
		lora_afile_abort(&f);
		return lora_err("cannot write '%s':", dst);
	}
	free(buf);
	return lora_afile_commit(&f);
}

static const char *human_bytes(char *buf, size_t n, double b)
{
	const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
	int i = 0;
	while (b >= 1024 && i < 4) {
		b /= 1024;
		i++;
	}
	snprintf(buf, n, i ? "%.1f %s" : "%.0f %s", b, u[i]);
	return buf;
}

/* The terminal's "reading and tokenizing" line, with the share of the data
 * read, at most 4 times a second and not in the first half second. */
typedef struct {
	const char *dir;
	double t0, shown;
} load_note;

static void load_progress(void *arg, size_t done, size_t total)
{
	load_note *n = arg;
	double now = lora_time();
	if (now - n->t0 < 0.5 || now - n->shown < 0.25 || done == total)
		return;
	n->shown = now;
	char b[32];
	printf("\r\033[Kreading and tokenizing '%s' ... %d%% of %s", n->dir,
	       (int)(100.0 * (double)done / (double)total), human_bytes(b, sizeof b, (double)total));
	fflush(stdout);
}

static const char *human_time(char *buf, size_t n, double s)
{
	if (!isfinite(s) || s < 0)
		snprintf(buf, n, "?");
	else if (s < 60)
		snprintf(buf, n, "%.0fs", s);
	else if (s < 3600)
		snprintf(buf, n, "%dm%02ds", (int)s / 60, (int)s % 60);
	else
		snprintf(buf, n, "%dh%02dm", (int)s / 3600, (int)s % 3600 / 60);
	return buf;
}

/* ---- random init (train_mode: full from a config alone) -------------------------- */

typedef void (*tensor_fn)(void *ctx, const char *name, int ndim, int64_t d0, int64_t d1, int kind);
enum { INIT_NORMAL, INIT_ONES, INIT_ZEROS };

/* Every tensor of LlamaForCausalLM (FORMATS.md §5.2) for config c. */
static void llama_tensors(const lora_llama_config *c, tensor_fn fn, void *ctx)
{
	int64_t C = c->hidden_size, I = c->intermediate_size, V = c->vocab_size;
	int64_t Q = (int64_t)c->n_heads * c->head_dim, KV = (int64_t)c->n_kv_heads * c->head_dim;
	char n[160];
	fn(ctx, "model.embed_tokens.weight", 2, V, C, INIT_NORMAL);
	for (int l = 0; l < c->n_layers; l++) {
#define T(suffix, nd, a, b, k) (snprintf(n, sizeof n, "model.layers.%d.%s", l, suffix), fn(ctx, n, nd, a, b, k))
		T("input_layernorm.weight", 1, C, 0, INIT_ONES);
		T("self_attn.q_proj.weight", 2, Q, C, INIT_NORMAL);
		T("self_attn.k_proj.weight", 2, KV, C, INIT_NORMAL);
		T("self_attn.v_proj.weight", 2, KV, C, INIT_NORMAL);
		if (c->qkv_bias) {
			T("self_attn.q_proj.bias", 1, Q, 0, INIT_ZEROS);
			T("self_attn.k_proj.bias", 1, KV, 0, INIT_ZEROS);
			T("self_attn.v_proj.bias", 1, KV, 0, INIT_ZEROS);
		}
		T("self_attn.o_proj.weight", 2, C, Q, INIT_NORMAL);
		if (c->o_bias)
			T("self_attn.o_proj.bias", 1, C, 0, INIT_ZEROS);
		T("post_attention_layernorm.weight", 1, C, 0, INIT_ONES);
		T("mlp.gate_proj.weight", 2, I, C, INIT_NORMAL);
		T("mlp.up_proj.weight", 2, I, C, INIT_NORMAL);
		T("mlp.down_proj.weight", 2, C, I, INIT_NORMAL);
		if (c->mlp_bias) {
			T("mlp.gate_proj.bias", 1, I, 0, INIT_ZEROS);
			T("mlp.up_proj.bias", 1, I, 0, INIT_ZEROS);
			T("mlp.down_proj.bias", 1, C, 0, INIT_ZEROS);
		}
#undef T
	}
	fn(ctx, "model.norm.weight", 1, C, 0, INIT_ONES);
	if (!c->tie_word_embeddings)
		fn(ctx, "lm_head.weight", 2, V, C, INIT_NORMAL);
}

typedef struct {
	st_writer *w;
	int pass;               /* 0: declare, 1: write */
	uint64_t rng;
	float std;
	int rc;
} init_ctx;

static void init_tensor(void *vctx, const char *name, int ndim, int64_t d0, int64_t d1, int kind)
{
	init_ctx *x = vctx;
	if (x->rc < 0)
		return;
	int64_t shape[2] = {d0, d1};
	if (x->pass == 0) {
		x->rc = st_writer_add(x->w, name, LORA_DTYPE_F32, ndim, shape);
		return;
	}
	size_t n = (size_t)d0 * (size_t)(ndim == 2 ? d1 : 1);
	float *v = lora_xmalloc(n * sizeof *v);
	for (size_t i = 0; i < n; i++) {
		if (kind == INIT_ONES) {
			v[i] = 1;
		} else if (kind == INIT_ZEROS) {
			v[i] = 0;
		} else {
			/* Box-Muller on two 53-bit uniforms in (0, 1] x [0, 1) */
			double u1 = ((lora_splitmix64(&x->rng) >> 11) + 1) * 0x1p-53;
			double u2 = (lora_splitmix64(&x->rng) >> 11) * 0x1p-53;
			v[i] = (float)(x->std * sqrt(-2 * log(u1)) * cos(2 * M_PI * u2));
		}
	}
	x->rc = st_writer_write_f32(x->w, name, v);
	free(v);
}

int lora_llama_write_random(const char *dir, const lora_llama_config *cfg, float std,
                            uint64_t seed)
{
	char *path = lora_xasprintf("%s/model.safetensors", dir);
	init_ctx x = {.w = st_writer_open(path), .rng = seed ^ 0x1417u, .std = std};
	free(path);
	if (!x.w)
		return -1;
	st_writer_meta(x.w, "format", "pt");
	llama_tensors(cfg, init_tensor, &x);
	x.pass = 1;
	llama_tensors(cfg, init_tensor, &x);
	if (x.rc < 0) {
		st_writer_abort(x.w);
		return -1;
	}
	return st_writer_close(x.w);
}

/* ---- the run's state ------------------------------------------------------------------ */

typedef struct {
	lora_config *c;
	const lora_train_opts *o;
	const lora_backend *be;
	lora_llama_config mc;
	lora_tokenizer *tok;
	lora_dataset *d;
	lora_llama *m;
	lora_params *params;
	lora_adamw *opt;
	lora_schedule sched;
	lora_adapter_config acfg;
	int full, tty;
	int ckpt_at_end;        /* the last step is trained: its checkpoint is due */
	int B, T, accum;
	int64_t nmb;            /* micro-batches per epoch */
	int64_t spe;            /* optimizer steps per epoch */
	int64_t total;          /* optimizer steps in all */
	/* position */
	int64_t step;           /* optimizer steps done */
	int64_t epoch;          /* current epoch (0-based) */
	int64_t pos;            /* next micro-batch within the epoch */
	int *order;             /* (ntrain) this epoch's order */
	int32_t *ids, *tgt;     /* (B, T) host batch */
	/* logs */
	FILE *log, *csv;
	char *early;            /* train.log's lines said before the log opens */
	size_t nearly;
	int lockfd;             /* output_dir, flock'ed while the run uses it (-1: not yet) */
	lora_tfevents *ev;
	char *last_ckpt;        /* newest checkpoint written or loaded */
	char *base_dir;         /* folder the model loads from (may be a temp init) */
} run;

/* A line for train.log. Until the log opens (the plan is said before
 * output_dir is made, so that a run refused there writes nothing), the
 * lines wait in r->early. */
static void log_line(run *r, const char *prefix, const char *line)
{
	if (r->log) {
		fprintf(r->log, "%s%s\n", prefix, line);
		fflush(r->log);
		return;
	}
	size_t n = strlen(prefix) + strlen(line) + 1;
	r->early = lora_xrealloc(r->early, r->nearly + n + 1);
	snprintf(r->early + r->nearly, n + 1, "%s%s\n", prefix, line);
	r->nearly += n;
}

/* A line on stdout (unless quiet & 1) and in train.log (unless quiet & 2). */
static void vsay(run *r, int quiet, const char *fmt, va_list ap)
{
	char buf[1024];
	vsnprintf(buf, sizeof buf, fmt, ap);
	if (!(quiet & 1)) {
		if (r->tty)
			fputs("\r\033[K", stdout);
		fprintf(stdout, "%s\n", buf);
		fflush(stdout);
	}
	if (!(quiet & 2))
		log_line(r, "", buf);
}

__attribute__((format(printf, 2, 3)))
static void say(run *r, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsay(r, 0, fmt, ap);
	va_end(ap);
}

__attribute__((format(printf, 3, 4)))
static void say_quiet(run *r, int quiet, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsay(r, quiet, fmt, ap);
	va_end(ap);
}

/* A logging-step line: on a terminal only in train.log (the progress line
 * shows it), on a pipe also on stdout. */
__attribute__((format(printf, 2, 3)))
static void say_step(run *r, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsay(r, r->tty, fmt, ap);
	va_end(ap);
}

/* An error line on stderr (and in train.log); returns 1 for "failed". */
__attribute__((format(printf, 2, 3)))
static int fail(run *r, const char *fmt, ...)
{
	char buf[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	if (r->tty)
		fputs("\r\033[K", stdout);
	fflush(stdout);
	fprintf(stderr, "%s: %s\n", lora_progname, buf);
	log_line(r, "error: ", buf);
	return 1;
}

/* ---- checkpoints ----------------------------------------------------------------------- */

static char *ckpt_root(const run *r) { return lora_xasprintf("%s/checkpoints", r->c->output_dir); }

/* Random-init folders (.init-PID) of runs that were killed while writing
 * them: the process is gone, so nobody will finish or remove them. */
static void remove_stale_init(const char *output_dir)
{
	DIR *dir = opendir(output_dir);
	if (!dir)
		return;
	struct dirent *de;
	while ((de = readdir(dir))) {
		int pid;
		char end;
		if (sscanf(de->d_name, ".init-%d%c", &pid, &end) != 1 || pid <= 0)
			continue;
		if (kill(pid, 0) == 0 || errno != ESRCH)
			continue;
		char *p = lora_xasprintf("%s/%s", output_dir, de->d_name);
		rm_rf(p);
		free(p);
	}
	closedir(dir);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Complete checkpoints (step-NNNNNN with a trainer_state.json), sorted
 * oldest first. free each and the array. clean: also remove the temporary
 * folders of checkpoints a killed run was writing. */
static char **list_checkpoints(const char *root, int *n, int clean)
{
	*n = 0;
	char **v = NULL;
	DIR *dir = opendir(root);
	if (!dir)
		return NULL;
	struct dirent *de;
	while ((de = readdir(dir))) {
		if (clean && strncmp(de->d_name, ".tmp-step-", 10) == 0) {
			/* a checkpoint a killed run was writing: never complete */
			char *q = lora_xasprintf("%s/%s", root, de->d_name);
			rm_rf(q);
			free(q);
			continue;
		}
		if (strncmp(de->d_name, "step-", 5))
			continue;
		char *p = lora_xasprintf("%s/%s/trainer_state.json", root, de->d_name);
		int ok = exists(p);
		free(p);
		if (!ok)
			continue;
		v = lora_xrealloc(v, ((size_t)*n + 1) * sizeof *v);
		v[(*n)++] = lora_xstrdup(de->d_name);
	}
	closedir(dir);
	if (*n)
		qsort(v, (size_t)*n, sizeof *v, cmp_str);
	return v;
}

static int write_json(json_t *j, const char *path)
{
	char *s = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);
	lora_afile f;
	if (lora_afile_open(&f, path) < 0) {
		free(s);
		return -1;
	}
	fprintf(f.fp, "%s\n", s);
	free(s);
	return lora_afile_commit(&f);
}

static int save_state_tensors(run *r, const char *path)
{
	st_writer *w = st_writer_open(path);
	if (!w)
		return -1;
	st_writer_meta(w, "format", "lora-train checkpoint 1");
	static const char *const pre[3] = {"param.", "exp_avg.", "exp_avg_sq."};
	int rc = 0;
	for (int k = 0; k < 3 && rc == 0; k++)
		for (int i = 0; i < r->params->n && rc == 0; i++) {
			lora_param *p = &r->params->p[i];
			char *name = lora_xasprintf("%s%s", pre[k], p->name);
			rc = st_writer_add(w, name, LORA_DTYPE_F32, p->ndim, p->shape);
			free(name);
		}
	float *host = NULL;
	size_t off = 0;
	for (int i = 0; i < r->params->n && rc == 0; i++) {
		lora_param *p = &r->params->p[i];
		host = lora_xrealloc(host, p->n * sizeof *host);
		const float *src[3] = {p->data, r->opt->m + off, r->opt->v + off};
		for (int k = 0; k < 3 && rc == 0; k++) {
			r->be->download(host, src[k], p->n * sizeof *host);
			char *name = lora_xasprintf("%s%s", pre[k], p->name);
			rc = st_writer_write(w, name, 0, host, p->n * sizeof *host);
			free(name);
		}
		off += p->n;
	}
	free(host);
	if (rc < 0) {
		st_writer_abort(w);
		return -1;
	}
	return st_writer_close(w);
}

static int save_checkpoint(run *r)
{
	char *root = ckpt_root(r);
	if (mkdir_p(root) < 0) {
		free(root);
		return -1;
	}
	char *final = lora_xasprintf("%s/step-%06lld", root, (long long)r->step);
	char *tmp = lora_xasprintf("%s/.tmp-step-%06lld.%d", root, (long long)r->step, (int)getpid());
	rm_rf(tmp);
	int rc = mkdir(tmp, 0755) < 0 ? lora_err("cannot create '%s':", tmp) : 0;
	char *p = NULL;
	if (rc == 0) {
		p = lora_xasprintf("%s/state.safetensors", tmp);
		rc = save_state_tensors(r, p);
		free(p);
	}
	if (rc == 0) {
		json_t *j = json_object();
		json_object_set_new(j, "format", json_string("lora-train trainer_state 1"));
		json_object_set_new(j, "step", json_integer(r->step));
		json_object_set_new(j, "epoch", json_integer(r->epoch));
		json_object_set_new(j, "micro_batch_in_epoch", json_integer(r->pos));
		json_object_set_new(j, "adam_step", json_integer(r->opt->step));
		json_object_set_new(j, "seed", json_integer(r->c->seed));
		/* every random draw is a function of (seed, epoch) or (seed, step,
		 * micro-batch), so the RNG state is the position itself */
		json_object_set_new(j, "rng", json_string("counter-based: data order from (seed, "
		                    "epoch), dropout from (seed, step, micro_batch)"));
		json_object_set_new(j, "n_train", json_integer(r->d->ntrain));
		json_object_set_new(j, "batch_size", json_integer(r->B));
		json_object_set_new(j, "gradient_accumulation_steps", json_integer(r->accum));
		json_object_set_new(j, "n_params", json_integer((json_int_t)r->params->total));
		json_object_set_new(j, "total_steps", json_integer(r->total));
		json_t *ord = json_array();
		for (int i = 0; i < r->d->ntrain; i++)
			json_array_append_new(ord, json_integer(r->order[i]));
		json_object_set_new(j, "data_order", ord);
		p = lora_xasprintf("%s/trainer_state.json", tmp);
		rc = write_json(j, p);
		free(p);
		json_decref(j);
	}
	if (rc == 0) {
		p = lora_xasprintf("%s/config.yaml", tmp);
		rc = lora_config_write(r->c, p);
		free(p);
	}
	if (rc == 0 && !r->full)
		rc = lora_llama_save_lora(r->m, tmp, r->c->base_model);
	if (rc == 0) {
		/* replace an older copy of the same step (a run resumed before it) */
		char *old = NULL;
		if (exists(final)) {
			old = lora_xasprintf("%s/.old-step-%06lld.%d", root, (long long)r->step, (int)getpid());
			if (rename(final, old) < 0)
				rc = lora_err("cannot rename '%s':", final);
		}
		if (rc == 0 && rename(tmp, final) < 0)
			rc = lora_err("cannot rename '%s' to '%s':", tmp, final);
		if (old) {
			rm_rf(old);
			free(old);
		}
	}
	if (rc < 0) {
		rm_rf(tmp);
	} else {
		free(r->last_ckpt);
		r->last_ckpt = lora_xstrdup(final);
		/* keep the newest save_total_limit */
		int n;
		char **v = list_checkpoints(root, &n, 1);
		for (int i = 0; i < n; i++) {
			if (r->c->save_total_limit > 0 && i < n - r->c->save_total_limit) {
				char *q = lora_xasprintf("%s/%s", root, v[i]);
				rm_rf(q);
				free(q);
			}
			free(v[i]);
		}
		free(v);
	}
	free(tmp);
	free(final);
	free(root);
	return rc;
}

/* A run that does not resume must not start in an output_dir holding an
 * earlier run's checkpoints: their steps would outrank its own (so
 * save_total_limit would delete the new ones first) and a later resume:
 * auto would go on from the earlier run. NULL if there are none, else the
 * message. */
static char *earlier_checkpoints(run *r)
{
	if (r->c->resume)
		return NULL;
	char *root = ckpt_root(r);
	int n;
	char **v = list_checkpoints(root, &n, 0);
	char *msg = NULL;
	if (n)
		msg = lora_xasprintf("output_dir '%s' holds checkpoints of an earlier run (the newest "
		                     "%s/%s): continue it with resume: auto, or give another "
		                     "output_dir, or remove '%s'", r->c->output_dir, root, v[n - 1],
		                     root);
	for (int i = 0; i < n; i++)
		free(v[i]);
	free(v);
	free(root);
	return msg;
}

/* Hold output_dir for this run: an exclusive flock on the folder itself
 * (nothing is written; the kernel lets go when the process ends, also on
 * SIGKILL). 0 when held or when output_dir does not exist yet (the caller
 * asks again once it has made it), -1 with the message when another run
 * holds it. Where the file system cannot lock, a warning, and 0. */
static int lock_output_dir(run *r)
{
	if (r->lockfd >= 0)
		return 0;
	int fd = open(r->c->output_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : lora_err("cannot open '%s':", r->c->output_dir);
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		if (errno == EWOULDBLOCK) {
			close(fd);
			return lora_err("output_dir '%s' is in use by another lora-train run: wait for "
			                "it, or give another output_dir", r->c->output_dir);
		}
		/* a file system without flock (some NFS setups): train unguarded,
		 * the folder kept open all the same (asked once) */
		lora_warn("cannot lock '%s' (%s): a second run into it would not be stopped",
		          r->c->output_dir, strerror(errno));
	}
	r->lockfd = fd;
	return 0;
}

static int load_state_tensors(run *r, const char *path)
{
	st_file *f = st_open(path);
	if (!f)
		return -1;
	static const char *const pre[3] = {"param.", "exp_avg.", "exp_avg_sq."};
	float *host = NULL;
	size_t off = 0;
	int rc = 0;
	for (int i = 0; i < r->params->n && rc == 0; i++) {
		lora_param *p = &r->params->p[i];
		host = lora_xrealloc(host, p->n * sizeof *host);
		float *dst[3] = {p->data, r->opt->m + off, r->opt->v + off};
		for (int k = 0; k < 3 && rc == 0; k++) {
			char *name = lora_xasprintf("%s%s", pre[k], p->name);
			const st_tensor *t = st_find(f, name);
			if (!t || t->dtype != LORA_DTYPE_F32 || (size_t)t->numel != p->n)
				rc = lora_err("'%s': %s '%s' (the checkpoint is from a different model or "
				              "train_mode)", path, t ? "wrong shape for" : "no tensor", name);
			else if (st_tensor_to_f32(t, host) < 0)
				rc = -1;
			else
				r->be->upload(dst[k], host, p->n * sizeof *host);
			free(name);
		}
		off += p->n;
	}
	if (rc == 0 && f->ntensors != 3 * r->params->n)
		rc = lora_err("'%s': %d tensors, expected %d (a different target_modules?)", path,
		              f->ntensors, 3 * r->params->n);
	free(host);
	st_close(f);
	return rc;
}

/* Find the checkpoint to resume from: NULL and no error when resume is
 * "auto" and there is none. */
static char *resume_path(run *r, int *err)
{
	*err = 0;
	if (!r->c->resume)
		return NULL;
	if (strcmp(r->c->resume, "auto")) {
		char *p = lora_xasprintf("%s/trainer_state.json", r->c->resume);
		int ok = exists(p);
		free(p);
		if (!ok) {
			*err = 1;
			lora_err("resume: '%s' is not a checkpoint folder (no trainer_state.json)",
			         r->c->resume);
			return NULL;
		}
		return lora_xstrdup(r->c->resume);
	}
	char *root = ckpt_root(r);
	int n;
	char **v = list_checkpoints(root, &n, 1);
	char *best = n ? lora_xasprintf("%s/%s", root, v[n - 1]) : NULL;
	for (int i = 0; i < n; i++)
		free(v[i]);
	free(v);
	free(root);
	return best;
}

static int resume_from(run *r, const char *dir)
{
	char *p = lora_xasprintf("%s/trainer_state.json", dir);
	json_error_t je;
	json_t *j = json_load_file(p, 0, &je);
	if (!j) {
		lora_err("'%s': %s", p, je.text);
		free(p);
		return -1;
	}
	int rc = 0;
	json_int_t seed = json_integer_value(json_object_get(j, "seed"));
	json_int_t ntrain = json_integer_value(json_object_get(j, "n_train"));
	r->step = json_integer_value(json_object_get(j, "step"));
	r->epoch = json_integer_value(json_object_get(j, "epoch"));
	r->pos = json_integer_value(json_object_get(j, "micro_batch_in_epoch"));
	json_int_t adam_step = json_integer_value(json_object_get(j, "adam_step"));
	if (seed != r->c->seed)
		rc = lora_err("'%s': seed %lld, but the config says %ld: resume with the same seed",
		              p, (long long)seed, r->c->seed);
	else if (ntrain != r->d->ntrain)
		rc = lora_err("'%s': %lld training examples, now %d: the data changed since the "
		              "checkpoint", p, (long long)ntrain, r->d->ntrain);
	else if (json_integer_value(json_object_get(j, "batch_size")) != r->B ||
	         json_integer_value(json_object_get(j, "gradient_accumulation_steps")) != r->accum)
		rc = lora_err("'%s': batch_size %lld x gradient_accumulation_steps %lld, now %d x %d: "
		              "resume with the same batching", p,
		              (long long)json_integer_value(json_object_get(j, "batch_size")),
		              (long long)json_integer_value(json_object_get(j, "gradient_accumulation_steps")),
		              r->B, r->accum);
	else if (r->step < 0 || r->epoch < 0 || r->pos < 0 || r->pos > r->nmb)
		rc = lora_err("'%s': bad position", p);
	if (rc == 0) {
		lora_dataset_order(r->d, (uint64_t)r->c->seed, r->epoch, r->order);
		json_t *ord = json_object_get(j, "data_order");
		int same = json_array_size(ord) == (size_t)r->d->ntrain;
		for (int i = 0; same && i < r->d->ntrain; i++)
			same = json_integer_value(json_array_get(ord, (size_t)i)) == r->order[i];
		if (!same)
			rc = lora_err("'%s': the data order differs from this run's: the data or "
			              "seed changed since the checkpoint", p);
	}
	json_decref(j);
	free(p);
	if (rc == 0) {
		p = lora_xasprintf("%s/state.safetensors", dir);
		rc = load_state_tensors(r, p);
		free(p);
	}
	if (rc == 0) {
		r->opt->step = adam_step;
		free(r->last_ckpt);
		r->last_ckpt = lora_xstrdup(dir);
	}
	return rc;
}

/* ---- logs -------------------------------------------------------------------------------- */

/* Open loss.csv (rows after `step` dropped: a resumed
 * run rewrites what the killed one logged past its checkpoint) and a new
 * event file. */
static int open_logs(run *r)
{
	const char *ld = r->c->logging_dir;
	char *p = lora_xasprintf("%s/loss.csv", ld);
	size_t n = 0;
	char *old = r->step > 0 ? lora_read_file(p, &n) : NULL;
	lora_afile f;
	if (lora_afile_open(&f, p) < 0) {
		free(old);
		free(p);
		return -1;
	}
	fputs("step,epoch,loss,lr,grad_norm,eval_loss,tokens_per_s,elapsed_s\n", f.fp);
	for (char *line = old, *next; line && *line; line = next) {
		next = strchr(line, '\n');
		if (next)
			*next++ = 0;
		long long s;
		if (sscanf(line, "%lld,", &s) == 1 && s <= r->step)
			fprintf(f.fp, "%s\n", line);
		if (!next)
			break;
	}
	free(old);
	if (lora_afile_commit(&f) < 0) {
		free(p);
		return -1;
	}
	r->csv = fopen(p, "a");
	free(p);
	if (!r->csv)
		return lora_err("cannot open '%s/loss.csv':", ld);
	r->ev = lora_tfevents_open(ld, NULL);
	return r->ev ? 0 : -1;
}

static void log_row(run *r, double loss, double lr, double norm, double eval, double tps,
                    double elapsed)
{
	char sl[32] = "", se[32] = "", sn[32] = "";
	if (isfinite(loss)) snprintf(sl, sizeof sl, "%.6f", loss);
	if (isfinite(eval)) snprintf(se, sizeof se, "%.6f", eval);
	if (isfinite(norm)) snprintf(sn, sizeof sn, "%.6f", norm);
	fprintf(r->csv, "%lld,%.4f,%s,%.9g,%s,%s,%.1f,%.2f\n", (long long)r->step,
	        (double)r->epoch + (double)r->pos / (double)r->nmb, sl, lr, sn, se, tps, elapsed);
	fflush(r->csv);
	double now = lora_tfevents_now();
	if (isfinite(loss)) {
		lora_tfevents_scalar(r->ev, "train/loss", r->step, (float)loss, now);
		lora_tfevents_scalar(r->ev, "train/lr", r->step, (float)lr, now);
		lora_tfevents_scalar(r->ev, "train/grad_norm", r->step, (float)norm, now);
	}
	if (isfinite(eval))
		lora_tfevents_scalar(r->ev, "eval/loss", r->step, (float)eval, now);
}

/* ---- evaluation ------------------------------------------------------------------------- */

/* Mean loss over every target of the val split. */
static double evaluate(run *r)
{
	double sum = 0;
	long long cnt = 0;
	r->m->training = 0;
	for (int i = 0; i < r->d->nval; i += r->B) {
		int b = r->d->nval - i < r->B ? r->d->nval - i : r->B;
		int nt;
		int T = lora_batch_make(r->d, r->d->val + i, b, r->ids, r->tgt, &nt);
		float l = lora_llama_forward(r->m, r->ids, r->tgt, b, T);
		sum += (double)l * nt;
		cnt += nt;
	}
	r->m->training = 1;
	return cnt ? sum / (double)cnt : NAN;
}

/* ---- the plan ------------------------------------------------------------------------------ */

/* The run does not fit in budget bytes of a GPU: say what it needs and
 * what would fit, before the model is loaded (lora_llama_plan says the same
 * if an allocation fails later anyway). */
static int plan_too_big(run *r, const lora_llama_opts *mo, size_t need, size_t budget, int lb)
{
	char hn[32], hb[32], hx[32];
	human_bytes(hn, sizeof hn, (double)need);
	human_bytes(hb, sizeof hb, (double)budget);
	lora_llama_mem one = lora_llama_memory(&r->mc, r->be, 1, 1, mo);
	if (one.total - one.activations > budget)
		return fail(r, "out of memory on %s: the run needs %s and %s is available; the "
		            "weights, LoRA state and optimizer alone need %s", r->be->name, hn, hb,
		            human_bytes(hx, sizeof hx, (double)(one.total - one.activations)));
	int tl = lora_llama_max_seq(&r->mc, r->be, r->B, mo, budget, r->T - 1);
	char fits[128], ck[96] = "";
	if (lb > 0 || tl > 0)
		snprintf(fits, sizeof fits, "batch_size %d fits at this length, max_seq_length %d "
		         "at this batch_size", lb, tl);
	else
		snprintf(fits, sizeof fits, "not even batch_size 1 fits at this length");
	if (!mo->grad_ckpt) {
		lora_llama_opts mc = *mo;
		mc.grad_ckpt = 1;
		snprintf(ck, sizeof ck, "; with gradient_checkpointing: true it needs %s",
		         human_bytes(hx, sizeof hx,
		                     (double)lora_llama_memory(&r->mc, r->be, r->B, r->T, &mc).total));
	}
	return fail(r, "out of memory on %s: batch %d x %d tokens need %s in all, %s is "
	            "available; %s%s", r->be->name, r->B, r->T, hn, hb, fits, ck);
}

/* Print the plan; 0, or -1 (the message said) when it cannot fit on a GPU. */
static int print_plan(run *r)
{
	char b1[32], b2[32], b3[32], b4[32];
	size_t total = lora_llama_n_params(&r->mc);
	size_t trainable = r->full ? total : lora_llama_n_lora_params(&r->mc, &r->acfg);
	lora_llama_opts mo = {.full = r->full, .grad_ckpt = r->c->gradient_checkpointing,
	                      .lora = r->full ? NULL : &r->acfg};
	lora_llama_opts ck = mo;     /* the same with gradient checkpointing */
	ck.grad_ckpt = 1;
	/* a GPU that cannot run this model's attention says so before it loads */
	if (lora_llama_check_backend(r->c->base_model, &r->mc, r->be) < 0)
		return fail(r, "%s; device: cpu trains it", lora_errmsg());
	lora_llama_mem mm = lora_llama_memory(&r->mc, r->be, r->B, r->T, &mo);
	/* before the model loads, `used` is what the backend holds for itself
	 * (CUDA: the cuBLAS and GEMM workspaces); the run gets the rest */
	size_t used = 0, peak = 0, cap = 0;
	r->be->mem_info(&used, &peak, &cap);
	size_t budget = cap > used ? cap - used : 0;
	say(r, "model: %s, %d layers, hidden %d, heads %d/%d, vocab %d (%s)", r->mc.model_type,
	    r->mc.n_layers, r->mc.hidden_size, r->mc.n_heads, r->mc.n_kv_heads, r->mc.vocab_size,
	    r->c->base_model);
	say(r, "params: %zu total, %zu trainable (%.4f%%), train_mode %s, precision %s", total,
	    trainable, 100.0 * (double)trainable / (double)(total ? total : 1), r->c->train_mode,
	    r->c->precision);
	say(r, "data: %d examples (%d train, %d val) from %d .txt, %d .jsonl, %d .ids files; "
	    "%zu tokens, longest %d%s", r->d->n, r->d->ntrain, r->d->nval, r->d->nfiles[0],
	    r->d->nfiles[1], r->d->nfiles[2], r->d->ntokens, r->d->max_len,
	    r->d->ntruncated ? " (some cut to max_seq_length)" : "");
	say(r, "steps: %lld per epoch (batch %d x %d accumulation), %lld in all%s", (long long)r->spe,
	    r->B, r->accum, (long long)r->total, r->c->max_steps ? " (max_steps)" : "");
	if (r->be->desc)
		say(r, "device: %s, %s", r->be->name, r->be->desc);
	else if (r->be->is_host)
		say(r, "device: %s, %d threads", r->be->name, lora_nthreads());
	say(r, "memory on %s: %s (frozen weights %s, trainable weights + gradients + AdamW %s, "
	    "activations %s) of %s available", r->be->name,
	    human_bytes(b1, sizeof b1, (double)mm.total), human_bytes(b2, sizeof b2, (double)mm.weights),
	    human_bytes(b4, sizeof b4, (double)(mm.optimizer + mm.grads + mm.trainable)),
	    human_bytes(b3, sizeof b3, (double)mm.activations),
	    cap ? human_bytes((char[32]){0}, 32, (double)budget) : "?");
	if (cap) {
		int lb = lora_llama_max_batch(&r->mc, r->be, r->T, &mo, budget, 1 << 20);
		say(r, "largest batch_size that fits at sequence %d: %d", r->T, lb);
		if (!r->be->is_host && !mo.grad_ckpt)
			say(r, "... with gradient_checkpointing: true: %d",
			    lora_llama_max_batch(&r->mc, r->be, r->T, &ck, budget, 1 << 20));
		/* a GPU's memory is a hard limit: stop before loading the model;
		 * the CPU's RAM is not (swap, overcommit): a warning */
		if (mm.total > budget && !r->be->is_host && !r->o->dry_run)
			return plan_too_big(r, &mo, mm.total, budget, lb);
		if (mm.total > budget)
			lora_warn("the run needs more memory than %s has: lower batch_size or "
			          "max_seq_length, or set gradient_checkpointing: true", r->be->name);
	} else if (!r->be->is_host) {       /* planned without a GPU (a dry run) */
		say(r, "needs %s free on the GPU (with the backend's %s of workspaces)",
		    human_bytes(b1, sizeof b1, (double)(mm.total + used)),
		    human_bytes(b2, sizeof b2, (double)used));
		static const int gib[] = { 16, 24, 40, 48, 80 };
		char sizes[64] = "", fits[64] = "", fits_ck[64] = "";
		for (size_t i = 0; i < sizeof gib / sizeof *gib; i++) {
			size_t g = (size_t)gib[i] << 30, bud = g > used ? g - used : 0;
			int lb = lora_llama_max_batch(&r->mc, r->be, r->T, &mo, bud, 1 << 20);
			int lc = lora_llama_max_batch(&r->mc, r->be, r->T, &ck, bud, 1 << 20);
			const char *sep = i ? " / " : "";
			snprintf(sizes + strlen(sizes), sizeof sizes - strlen(sizes), "%s%d", sep, gib[i]);
			snprintf(fits + strlen(fits), sizeof fits - strlen(fits), "%s%d", sep, lb);
			snprintf(fits_ck + strlen(fits_ck), sizeof fits_ck - strlen(fits_ck), "%s%d", sep,
			         lc);
		}
		say(r, "largest batch_size at sequence %d with %s GiB free on the GPU: %s", r->T,
		    sizes, fits);
		if (!mo.grad_ckpt)
			say(r, "... with gradient_checkpointing: true: %s", fits_ck);
	}
	return 0;
}

/* ---- final outputs ---------------------------------------------------------------------------- */

static int save_full_model(run *r)
{
	char *p = lora_xasprintf("%s/model.safetensors", r->c->output_dir);
	st_writer *w = st_writer_open(p);
	free(p);
	if (!w)
		return -1;
	st_writer_meta(w, "format", "pt");
	int rc = 0;
	for (int i = 0; i < r->params->n && rc == 0; i++)
		rc = st_writer_add(w, r->params->p[i].name, LORA_DTYPE_F32, r->params->p[i].ndim,
		                   r->params->p[i].shape);
	float *host = NULL;
	for (int i = 0; i < r->params->n && rc == 0; i++) {
		lora_param *q = &r->params->p[i];
		host = lora_xrealloc(host, q->n * sizeof *host);
		r->be->download(host, q->data, q->n * sizeof *host);
		rc = st_writer_write(w, q->name, 0, host, q->n * sizeof *host);
	}
	free(host);
	if (rc < 0) {
		st_writer_abort(w);
		return -1;
	}
	if (st_writer_close(w) < 0)
		return -1;
	/* config.json and the tokenizer files beside it: an HF folder */
	char *src = lora_xasprintf("%s/config.json", r->c->base_model);
	char *dst = lora_xasprintf("%s/config.json", r->c->output_dir);
	rc = copy_file(src, dst);
	free(src);
	free(dst);
	static const char *const tf[] = {"tokenizer.json", "tokenizer_config.json",
	                                 "special_tokens_map.json", NULL};
	for (int i = 0; tf[i] && rc == 0; i++) {
		char *from = r->c->tokenizer && i == 0 ? lora_xstrdup(r->c->tokenizer)
		                                       : lora_xasprintf("%s/%s", r->c->base_model, tf[i]);
		struct stat st;
		if (!stat(from, &st) && S_ISDIR(st.st_mode)) {
			char *q = lora_xasprintf("%s/%s", from, tf[i]);
			free(from);
			from = q;
		}
		if (exists(from)) {
			char *to = lora_xasprintf("%s/%s", r->c->output_dir, tf[i]);
			rc = copy_file(from, to);
			free(to);
		}
		free(from);
	}
	return rc;
}

/* ---- setup ---------------------------------------------------------------------------------------- */

static int has_weights(const char *dir)
{
	char *a = lora_xasprintf("%s/model.safetensors", dir);
	char *b = lora_xasprintf("%s/model.safetensors.index.json", dir);
	int r = exists(a) || exists(b);
	free(a);
	free(b);
	return r;
}

static float initializer_range(const char *dir)
{
	char *p = lora_xasprintf("%s/config.json", dir);
	json_error_t je;
	json_t *j = json_load_file(p, 0, &je);
	free(p);
	double v = 0.02;
	if (j && json_is_number(json_object_get(j, "initializer_range")))
		v = json_number_value(json_object_get(j, "initializer_range"));
	json_decref(j);
	return (float)v;
}

static int setup(run *r)
{
	lora_config *c = r->c;
	if (c->task_type && strcmp(c->task_type, "text-generation"))
		return fail(r, "task_type %s: this lora-train trains text models (LLaMA family) only",
		            c->task_type);
	struct stat st;
	if (stat(c->base_model, &st) < 0 || !S_ISDIR(st.st_mode))
		return fail(r, "base_model '%s' is not a folder (an HF model folder with config.json)",
		            c->base_model);
	r->be = lora_backend_get(c->device);
	if (!r->be && r->o->dry_run) {    /* a dry run plans for a GPU without one */
		char *why = lora_xstrdup(lora_errmsg());
		if ((r->be = lora_backend_plan(c->device)))
			lora_warn("%s; the plan below is for a GPU", why);
		else
			lora_err("%s", why);
		free(why);
	}
	if (!r->be)
		return fail(r, "%s", lora_errmsg());
	if (!c->precision)
		c->precision = lora_xstrdup(r->be->wdtype == LORA_DTYPE_F32 ? "fp32" : "bf16");
	else if (r->be->is_host && strcmp(c->precision, "fp32"))
		return fail(r, "precision %s: the CPU backend computes in fp32 (set precision: fp32)",
		            c->precision);
	else {
		lora_dtype wdt = !strcmp(c->precision, "fp32") ? LORA_DTYPE_F32 :
		                 !strcmp(c->precision, "fp16") ? LORA_DTYPE_F16 : LORA_DTYPE_BF16;
		r->be = lora_backend_with_wdtype(r->be, wdt);
		if (!r->be)
			return fail(r, "precision %s: %s", c->precision, lora_errmsg());
	}
	if (!c->task_type)
		c->task_type = lora_xstrdup("text-generation");
	if (lora_llama_config_load(c->base_model, &r->mc) < 0)
		return fail(r, "%s", lora_errmsg());
	if (c->max_seq_length > r->mc.max_position_embeddings)
		return fail(r, "max_seq_length %ld is longer than the model's context (%d, "
		            "max_position_embeddings in '%s/config.json')", c->max_seq_length,
		            r->mc.max_position_embeddings, c->base_model);
	r->full = !strcmp(c->train_mode, "full");
	r->B = (int)c->batch_size;
	r->accum = (int)c->gradient_accumulation_steps;

	/* adapter config */
	r->acfg = lora_adapter_config_default();
	r->acfg.r = (int)c->lora_rank;
	r->acfg.alpha = (float)c->lora_alpha;
	r->acfg.dropout = (float)c->lora_dropout;
	r->acfg.use_rslora = c->use_rslora;
	r->acfg.targets = 0;
	for (int i = 0; i < c->target_modules.n; i++) {
		unsigned t;
		if (lora_targets_parse(c->target_modules.v[i], &t) < 0)
			return fail(r, "target_modules: %s", lora_errmsg());
		r->acfg.targets |= t;
	}
	if (!r->full && c->init_lora) {
		if (lora_adapter_read_config(c->init_lora, &r->acfg) < 0)
			return fail(r, "init_lora: %s", lora_errmsg());
		/* the adapter's shape wins; the resolved config says so */
		if (c->lora_rank != r->acfg.r || c->lora_alpha != r->acfg.alpha)
			lora_warn("init_lora: rank %d, alpha %g from '%s' (not lora_rank %ld, "
			          "lora_alpha %g)", r->acfg.r, r->acfg.alpha, c->init_lora,
			          c->lora_rank, c->lora_alpha);
		c->lora_rank = r->acfg.r;
		c->lora_alpha = r->acfg.alpha;
		c->use_rslora = r->acfg.use_rslora;
		r->acfg.dropout = (float)c->lora_dropout;
	}

	/* tokenizer */
	char *tp = c->tokenizer ? lora_xstrdup(c->tokenizer)
	                        : lora_xasprintf("%s/tokenizer.json", c->base_model);
	if (exists(tp)) {
		r->tok = lora_tokenizer_load(tp);
		if (!r->tok) {
			free(tp);
			return fail(r, "%s", lora_errmsg());
		}
		if (lora_tokenizer_vocab_size(r->tok) > r->mc.vocab_size) {
			int v = lora_tokenizer_vocab_size(r->tok);
			free(tp);
			return fail(r, "tokenizer '%s' has %d tokens but the model's vocab_size is %d: "
			            "tokenizer and model do not match", c->tokenizer ? c->tokenizer :
			            c->base_model, v, r->mc.vocab_size);
		}
	} else if (c->tokenizer) {
		lora_err("cannot open '%s':", tp);
		free(tp);
		errno = ENOENT;
		return fail(r, "tokenizer: cannot open '%s': No such file or directory", c->tokenizer);
	}
	free(tp);

	/* data; a big corpus takes a while (about 20 MB of text a second per
	 * thread), so a terminal is told, on a line the next one replaces, with
	 * how far it has got once that takes more than a moment */
	load_note note = {.dir = c->train_data_dir, .t0 = lora_time()};
	if (r->tty) {
		printf("reading and tokenizing '%s' ...", c->train_data_dir);
		fflush(stdout);
	}
	r->d = lora_dataset_load(&(lora_data_opts){
		.dir = c->train_data_dir, .tok = r->tok, .max_seq_length = (int)c->max_seq_length,
		.vocab_size = r->mc.vocab_size, .val_split = c->val_split, .seed = (uint64_t)c->seed,
		.model_bos_id = r->mc.bos_token_id, .model_eos_id = r->mc.eos_token_id,
		.progress = r->tty ? load_progress : NULL, .progress_arg = &note});
	if (r->tty) {
		fputs("\r\033[K", stdout);
		fflush(stdout);
	}
	if (!r->d) {
		if (!r->tok && strstr(lora_errmsg(), "needs a tokenizer"))
			return fail(r, "%s (no tokenizer.json in '%s')", lora_errmsg(), c->base_model);
		return fail(r, "%s", lora_errmsg());
	}
	if (r->d->nskipped)
		lora_warn("'%s': %s not read (only .txt, .jsonl and .ids files directly in it "
		          "are)", c->train_data_dir, r->d->skipped);
	if (r->d->ntruncated)
		lora_warn("%d example%s longer than max_seq_length %ld: cut", r->d->ntruncated,
		          r->d->ntruncated == 1 ? "" : "s", c->max_seq_length);
	if (r->d->ndropped)
		lora_warn("%d example%s with no token to learn (empty, or the answer cut off by "
		          "max_seq_length %ld): skipped", r->d->ndropped,
		          r->d->ndropped == 1 ? "" : "s", c->max_seq_length);
	r->T = r->d->max_len;
	r->nmb = (r->d->ntrain + r->B - 1) / r->B;
	r->spe = (r->nmb + r->accum - 1) / r->accum;
	r->total = c->max_steps ? c->max_steps : c->epochs * r->spe;
	r->order = lora_xmalloc((size_t)r->d->ntrain * sizeof *r->order);
	r->ids = lora_xmalloc((size_t)r->B * r->T * sizeof *r->ids);
	r->tgt = lora_xmalloc((size_t)r->B * r->T * sizeof *r->tgt);
	return 0;
}

static int load_model(run *r)
{
	lora_config *c = r->c;
	const char *dir = c->base_model;
	char *tmpinit = NULL;
	if (!has_weights(dir)) {
		if (!r->full)
			return fail(r, "'%s' has no model.safetensors: a base model without weights can "
			            "only be trained from random init with train_mode: full", dir);
		float std = initializer_range(dir);
		remove_stale_init(c->output_dir);
		tmpinit = lora_xasprintf("%s/.init-%d", c->output_dir, (int)getpid());
		rm_rf(tmpinit);
		char *src = lora_xasprintf("%s/config.json", dir);
		char *dst = lora_xasprintf("%s/config.json", tmpinit);
		int rc = mkdir_p(tmpinit);
		if (rc == 0) rc = copy_file(src, dst);
		if (rc == 0) rc = lora_llama_write_random(tmpinit, &r->mc, std, (uint64_t)c->seed);
		free(src);
		free(dst);
		if (rc < 0) {
			rm_rf(tmpinit);
			free(tmpinit);
			return fail(r, "%s", lora_errmsg());
		}
		say(r, "init: '%s' has no weights: random init, normal(0, %g) (seed %ld)", dir, std,
		    c->seed);
		dir = tmpinit;
	}
	r->m = lora_llama_load(dir, r->be, r->full);
	if (tmpinit) {
		rm_rf(tmpinit);
		free(tmpinit);
	}
	if (!r->m)
		return fail(r, "%s", lora_errmsg());
	if (!r->full) {
		int rc = c->init_lora ? lora_llama_load_lora(r->m, c->init_lora)
		                      : lora_llama_add_lora(r->m, &r->acfg, (uint64_t)c->seed);
		if (rc < 0)
			return fail(r, "%s", lora_errmsg());
		r->m->lora->cfg.dropout = (float)c->lora_dropout;   /* the config's, not the file's */
	}
	r->params = lora_llama_params(r->m);
	r->opt = lora_adamw_new(r->params, r->be, &(lora_adamw_config){
		.lr = (float)c->learning_rate, .beta1 = (float)c->adam_beta1,
		.beta2 = (float)c->adam_beta2, .eps = (float)c->adam_epsilon,
		.weight_decay = (float)c->weight_decay});
	r->sched = (lora_schedule){.kind = lora_sched_parse(c->scheduler), .lr = (float)c->learning_rate,
	                           .warmup_steps = c->warmup_steps, .total_steps = r->total};
	if (lora_llama_plan(r->m, r->B, r->T, c->gradient_checkpointing) < 0)
		return fail(r, "%s", lora_errmsg());
	return 0;
}

/* ---- the loop -------------------------------------------------------------------------------------- */

static uint64_t dropout_seed(int64_t seed, int64_t step, int micro)
{
	uint64_t s = (uint64_t)seed ^ 0xD509D509D509D509ULL;
	s += (uint64_t)step * 0x10001ULL + (uint64_t)micro;
	return lora_splitmix64(&s);
}

static int train_loop(run *r)
{
	lora_config *c = r->c;
	double t0 = lora_time(), t_last = t0, est_t0 = 0;
	int64_t step0 = r->step, est_step0 = 0;
	double win_loss = 0, tok_win = 0, tok_all = 0;
	int win_n = 0;
	double last_loss = NAN, last_norm = NAN, last_lr = 0;
	char b1[32], b2[32];
	lora_dataset_order(r->d, (uint64_t)c->seed, r->epoch, r->order);
	if (r->step >= r->total)
		say(r, "the checkpoint is at step %lld of %lld: nothing left to train",
		    (long long)r->step, (long long)r->total);
	if (r->step == 0 && r->d->nval) {    /* the starting point of the eval curve */
		double e = evaluate(r);
		say(r, "step=0 eval_loss=%.4f", e);
		log_row(r, NAN, 0, NAN, e, 0, 0);
		t_last = lora_time();           /* the first window is training only */
	}
	while (r->step < r->total) {
		lora_params_zero_grad(r->params, r->be);
		int k = 0;
		double lsum = 0, ntgt_all = 0;
		while (k < r->accum) {
			if (r->pos >= r->nmb) {
				if (k > 0)
					break;
				r->epoch++;
				r->pos = 0;
				lora_dataset_order(r->d, (uint64_t)c->seed, r->epoch, r->order);
			}
			int64_t first = r->pos * r->B;
			int b = r->d->ntrain - first < r->B ? (int)(r->d->ntrain - first) : r->B;
			int nt;
			int T = lora_batch_make(r->d, r->order + first, b, r->ids, r->tgt, &nt);
			double ntok = 0;
			for (int i = 0; i < b; i++)
				ntok += r->d->ex[r->order[first + i]].n;
			tok_win += ntok;
			tok_all += ntok;
			r->m->dropout_seed = dropout_seed(c->seed, r->step, k);
			/* With accumulation the loss is the mean over every predicted
			 * token of the step's micro-batches (as transformers does with
			 * num_items_in_batch): each micro-batch's mean-loss gradient is
			 * weighted by its token count here, divided by the total below. */
			r->m->grad_scale = r->accum > 1 ? (float)nt : 1.0f;
			float loss = lora_llama_forward_backward(r->m, r->ids, r->tgt, b, T);
			lsum += r->accum > 1 ? (double)loss * nt : loss;
			ntgt_all += nt;
			k++;
			r->pos++;
		}
		r->m->grad_scale = 1.0f;
		if (r->accum > 1)
			lora_params_scale_grad(r->params, r->be, (float)(1.0 / ntgt_all));
		double loss = r->accum > 1 ? lsum / ntgt_all : lsum;
		float norm = lora_clip_grad_norm(r->params, r->be, (float)c->max_grad_norm);
		if (!isfinite(loss) || !isfinite(norm)) {
			return fail(r, "%s is %s at step %lld: stopped; the last good checkpoint is %s",
			            isfinite(loss) ? "gradient norm" : "loss",
			            isnan(isfinite(loss) ? norm : loss) ? "NaN" : "infinite",
			            (long long)r->step + 1, r->last_ckpt ? r->last_ckpt :
			            "none (lower learning_rate or check the data)");
		}
		float lr = lora_schedule_lr(&r->sched, r->step);
		lora_adamw_step(r->opt, lr);
		r->step++;
		win_loss += loss;
		win_n++;
		last_loss = loss;
		last_norm = norm;
		last_lr = lr;

		double now = lora_time();
		if (r->step - step0 == 3) {         /* the time estimate, once */
			est_t0 = now;
			est_step0 = r->step;
		}
		if (est_step0 && r->step - est_step0 == 3) {
			double per = (now - est_t0) / 3;
			say(r, "time: %.3f s/step, about %s for the %lld steps left", per,
			    human_time(b1, sizeof b1, per * (double)(r->total - r->step)),
			    (long long)(r->total - r->step));
		}
		if (r->tty) {
			size_t used = 0, peak = 0, cap = 0;
			r->be->mem_info(&used, &peak, &cap);
			double rate = (double)(r->step - step0) / (now - t0);
			printf("\r\033[Kstep %lld/%lld  loss %.4f  lr %.3g  %.2f it/s  %.0f tok/s  ETA %s  "
			       "mem %s", (long long)r->step, (long long)r->total, loss, lr, rate,
			       tok_all / (now - t0),
			       human_time(b1, sizeof b1, (double)(r->total - r->step) / rate),
			       human_bytes(b2, sizeof b2, (double)peak));
			fflush(stdout);
		}
		int log_now = r->step % c->logging_steps == 0 || r->step == r->total;
		int eval_now = r->d->nval && (r->step % c->eval_steps == 0 || r->step == r->total);
		double eval = NAN;
		if (eval_now)
			eval = evaluate(r);
		if (log_now || eval_now) {
			double dt = now - t_last;
			double tps = dt > 0 ? tok_win / dt : 0;
			double avg = win_n ? win_loss / win_n : last_loss;
			char ev[48] = "";
			if (eval_now)
				snprintf(ev, sizeof ev, " eval_loss=%.4f", eval);
			if (log_now)
				say_step(r, "step=%lld epoch=%.2f loss=%.4f lr=%.6g grad_norm=%.4f tok/s=%.0f "
				         "elapsed=%s%s", (long long)r->step,
				         (double)r->epoch + (double)r->pos / (double)r->nmb, avg, last_lr,
				         last_norm, tps, human_time(b1, sizeof b1, now - t0), ev);
			if (eval_now && !log_now)
				say(r, "step=%lld%s", (long long)r->step, ev);
			else if (eval_now && r->tty)      /* train.log has it in the step line */
				say_quiet(r, 2, "step=%lld%s", (long long)r->step, ev);
			log_row(r, log_now ? avg : NAN, last_lr, log_now ? last_norm : NAN, eval,
			        tps, now - t0);
			if (log_now) {
				win_loss = 0;
				win_n = 0;
				tok_win = 0;
				t_last = now;
			}
		}
		int stop = r->o->stop && *r->o->stop;
		/* the last step's checkpoint is written after the adapter (or model):
		 * on a disk too full for both, the run's result lands first */
		if (r->step == r->total)
			r->ckpt_at_end = 1;
		else if ((c->save_steps && r->step % c->save_steps == 0) || stop) {
			if (save_checkpoint(r) < 0)
				return fail(r, "checkpoint: %s", lora_errmsg());
		}
		/* tok/s and the time estimate count training only: what ran since
		 * `now` (the evaluation, the log, the checkpoint) belongs to the
		 * next window, which starts that much later */
		double paused = lora_time() - now;
		t_last += paused;
		est_t0 += paused;
		if (stop && r->step < r->total) {
			return fail(r, "interrupted: stopped after step %lld, checkpoint %s; continue "
			            "with --resume auto", (long long)r->step, r->last_ckpt);
		}
	}
	return 0;
}

/* ---- the job --------------------------------------------------------------------------------------- */

static void run_free(run *r)
{
	if (r->log) fclose(r->log);
	if (r->csv) fclose(r->csv);
	lora_tfevents_close(r->ev);
	lora_adamw_free(r->opt);
	lora_llama_free(r->m);
	lora_dataset_free(r->d);
	lora_tokenizer_free(r->tok);
	free(r->order);
	free(r->ids);
	free(r->tgt);
	free(r->last_ckpt);
	free(r->early);
	if (r->lockfd >= 0)
		close(r->lockfd);
}

int lora_train_run(lora_config *c, const lora_train_opts *o)
{
	run r = {.c = c, .o = o, .lockfd = -1};
	r.tty = o->progress_tty < 0 ? isatty(1) : o->progress_tty;
	int rc = setup(&r);
	/* a second run into the same folder is refused before anything loads */
	if (rc == 0 && !o->dry_run && lock_output_dir(&r) < 0)
		rc = fail(&r, "%s", lora_errmsg());
	char *earlier = rc == 0 ? earlier_checkpoints(&r) : NULL;
	if (rc == 0 && o->dry_run) {
		print_plan(&r);
		if (earlier)
			lora_warn("%s", earlier);
		free(earlier);
		run_free(&r);
		return 0;
	}
	if (earlier) {
		rc = fail(&r, "%s", earlier);
		free(earlier);
	}
	/* the plan, the model and the checkpoint to resume from first: a run
	 * refused there (out of GPU memory, a head size the GPU cannot hold, a
	 * bad weights, init_lora or checkpoint file) leaves output_dir as it was */
	if (rc == 0)
		rc = print_plan(&r);
	if (rc == 0)
		rc = load_model(&r);
	if (rc == 0) {
		int err;
		char *rp = resume_path(&r, &err);
		if (err)
			rc = fail(&r, "%s", lora_errmsg());
		else if (rp && resume_from(&r, rp) < 0)
			rc = fail(&r, "resume: %s", lora_errmsg());
		else if (rp)
			say(&r, "resume: from %s at step %lld (epoch %lld)", rp, (long long)r.step,
			    (long long)r.epoch);
		else if (c->resume)
			say(&r, "resume: auto: no checkpoint in '%s/checkpoints' yet, starting at step 0",
			    c->output_dir);
		free(rp);
	}
	/* Ctrl-C while the data or the model loaded: stop here, before
	 * output_dir is touched, rather than train a step to checkpoint */
	if (rc == 0 && o->stop && *o->stop)
		rc = fail(&r, "interrupted before the first step; nothing written");
	if (rc == 0) {
		char *p = lora_xasprintf("%s/train.log", c->logging_dir);
		if (mkdir_p(c->output_dir) < 0 || lock_output_dir(&r) < 0 ||
		    mkdir_p(c->logging_dir) < 0)
			rc = fail(&r, "%s", lora_errmsg());
		else if (!(r.log = fopen(p, "a")))
			rc = fail(&r, "cannot open '%s': %s", p, strerror(errno));
		free(p);
	}
	if (rc == 0) {
		time_t now = time(NULL);
		char ts[64];
		strftime(ts, sizeof ts, "%Y-%m-%d %H:%M:%S", localtime(&now));
		fprintf(r.log, "---- lora-train %s\n", ts);
		if (r.nearly)
			fwrite(r.early, 1, r.nearly, r.log);
		fflush(r.log);
		char *p = lora_xasprintf("%s/config.yaml", c->output_dir);
		if (lora_config_write(c, p) < 0)
			rc = fail(&r, "%s", lora_errmsg());
		free(p);
	}
	if (rc == 0 && open_logs(&r) < 0)
		rc = fail(&r, "%s", lora_errmsg());
	if (rc == 0)
		rc = train_loop(&r);
	if (rc == 0) {
		int e = r.full ? save_full_model(&r)
		               : lora_llama_save_lora(r.m, c->output_dir, c->base_model);
		const char *out = r.full ? "model.safetensors (+ config.json, tokenizer.json)"
		                         : "adapter_model.safetensors (+ adapter_config.json)";
		if (e < 0)
			rc = fail(&r, "%s", lora_errmsg());
		else if (r.ckpt_at_end && save_checkpoint(&r) < 0)
			rc = fail(&r, "checkpoint: %s; %s/%s is written, only --resume from step "
			          "%lld is not possible", lora_errmsg(), c->output_dir,
			          r.full ? "model.safetensors" : "adapter_model.safetensors",
			          (long long)r.step);
		else
			say(&r, "done: %lld steps; wrote %s/%s", (long long)r.step, c->output_dir, out);
	}
	run_free(&r);
	return rc ? 1 : 0;
}
