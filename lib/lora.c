/* lora.c: LoRA adapters, their PEFT files, and the trainable-parameter list
 * (see lora.h). */
#include "lora.h"

#include <errno.h>
#include <jansson.h>     /* json_* for adapter_config.json */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "safetensors.h" /* st_open, st_writer_* */
#include "util.h"        /* lora_err, lora_x*, lora_afile_* */

/* ---- configuration ------------------------------------------------------------------ */

static const char *mod_names[LORA_MOD_COUNT] = {
	"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"
};

const char *lora_mod_name(lora_mod m)
{
	LORA_ASSERT(m >= 0 && m < LORA_MOD_COUNT);
	return mod_names[m];
}

int lora_mod_parse(const char *s)
{
	for (int m = 0; m < LORA_MOD_COUNT; m++) {
		size_t n = strlen(mod_names[m]) - 5;     /* "q" of "q_proj" */
		if (!strcmp(s, mod_names[m]) || (strlen(s) == n && !strncmp(s, mod_names[m], n)))
			return m;
	}
	return -1;
}

lora_adapter_config lora_adapter_config_default(void)
{
	return (lora_adapter_config){ .r = 8, .alpha = 16, .dropout = 0, .use_rslora = 0,
	                              .targets = 1u << LORA_MOD_Q | 1u << LORA_MOD_V };
}

float lora_adapter_config_scale(const lora_adapter_config *c)
{
	return c->use_rslora ? c->alpha / sqrtf((float)c->r) : c->alpha / (float)c->r;
}

int lora_targets_parse(const char *s, unsigned *targets)
{
	if (!strcmp(s, "all-linear") || !strcmp(s, "all")) {
		*targets = (1u << LORA_MOD_COUNT) - 1;
		return 0;
	}
	unsigned t = 0;
	char *dup = lora_xstrdup(s), *save = NULL;
	for (char *tok = strtok_r(dup, ", []", &save); tok; tok = strtok_r(NULL, ", []", &save)) {
		int m = lora_mod_parse(tok);
		if (m < 0) {
			lora_err("unknown target module '%s' (expected q_proj, k_proj, v_proj, o_proj, "
			         "gate_proj, up_proj, down_proj or all-linear)", tok);
			free(dup);
			return -1;
		}
		t |= 1u << m;
	}
	free(dup);
	if (!t)
		return lora_err("no target modules in '%s'", s);
	*targets = t;
	return 0;
}

/* ---- adapters ---------------------------------------------------------------------------- */

lora_adapter *lora_adapter_new(const lora_adapter_config *cfg, const lora_backend *be)
{
	lora_adapter *ad = lora_xcalloc(1, sizeof *ad);
	ad->cfg = *cfg;
	ad->be = be;
	return ad;
}

static float *balloc(const lora_backend *be, size_t n)
{
	float *p = be->alloc(n * sizeof(float));
	if (!p) {   /* adapters are small: treat like host OOM */
		fprintf(stderr, "out of memory allocating LoRA tensors (%zu bytes)\n", n * 4);
		abort();
	}
	return p;
}

/* Move both buffers to a capacity of cap floats (cap >= used) and point
 * every module into the new ones. */
static void adapter_grow(lora_adapter *ad, size_t cap)
{
	const lora_backend *be = ad->be;
	float *d = balloc(be, cap), *g = balloc(be, cap);
	if (ad->used) {
		be->copy(d, ad->data, ad->used * sizeof(float));
		be->copy(g, ad->grad, ad->used * sizeof(float));
	}
	for (int i = 0; i < ad->n; i++) {
		lora_module *m = &ad->mods[i];
		m->A = d + (m->A - ad->data);
		m->B = d + (m->B - ad->data);
		m->dA = g + (m->dA - ad->grad);
		m->dB = g + (m->dB - ad->grad);
	}
	be->free(ad->data);
	be->free(ad->grad);
	ad->data = d;
	ad->grad = g;
	ad->cap = cap;
}

void lora_adapter_reserve(lora_adapter *ad, size_t floats)
{
	if (floats > ad->cap)
		adapter_grow(ad, floats);
}

int lora_adapter_add(lora_adapter *ad, const char *name, int in, int out)
{
	int r = ad->cfg.r;
	size_t na = (size_t)r * in, nb = (size_t)out * r;
	if (ad->used + na + nb > ad->cap) {
		size_t cap = 2 * ad->cap;
		adapter_grow(ad, cap > ad->used + na + nb ? cap : ad->used + na + nb);
	}
	ad->mods = lora_xrealloc(ad->mods, (ad->n + 1) * sizeof *ad->mods);
	lora_module *m = &ad->mods[ad->n];
	*m = (lora_module){ .name = lora_xstrdup(name), .in = in, .out = out, .r = r,
	                    .scale = lora_adapter_config_scale(&ad->cfg) };
	m->A = ad->data + ad->used;
	m->dA = ad->grad + ad->used;
	m->B = m->A + na;
	m->dB = m->dA + na;
	ad->used += na + nb;
	return ad->n++;
}

lora_module *lora_adapter_find(lora_adapter *ad, const char *name)
{
	for (int i = 0; i < ad->n; i++)
		if (!strcmp(ad->mods[i].name, name))
			return &ad->mods[i];
	return NULL;
}

void lora_adapter_init(lora_adapter *ad, uint64_t seed)
{
	for (int k = 0; k < ad->n; k++) {
		lora_module *m = &ad->mods[k];
		size_t n = (size_t)m->r * m->in;
		float *a = lora_xmalloc(n * sizeof(float));
		lora_rng g = { seed + 0x9E3779B97F4A7C15ULL * (uint64_t)(k + 1) };
		float bound = 1.0f / sqrtf((float)m->in);
		for (size_t i = 0; i < n; i++)
			a[i] = (2.0f * lora_rng_uniform(&g) - 1.0f) * bound;
		ad->be->upload(m->A, a, n * sizeof(float));
		ad->be->zero(m->B, (size_t)m->out * m->r * sizeof(float));
		free(a);
	}
}

void lora_adapter_free(lora_adapter *ad)
{
	if (!ad)
		return;
	for (int i = 0; i < ad->n; i++)
		free(ad->mods[i].name);
	ad->be->free(ad->data);
	ad->be->free(ad->grad);
	free(ad->mods);
	free(ad->base_model);
	free(ad);
}

/* ---- PEFT files ------------------------------------------------------------------------------- */

static char *peft_key(const char *name, char ab)
{
	return lora_xasprintf("base_model.model.%s.lora_%c.weight", name, ab);
}

static int mkdirs(const char *dir)
{
	char *p = lora_xstrdup(dir);
	for (char *s = p + 1; *s; s++)
		if (*s == '/') {
			*s = 0;
			if (mkdir(p, 0777) != 0 && errno != EEXIST) {
				lora_err("cannot create '%s':", p);
				free(p);
				return -1;
			}
			*s = '/';
		}
	int rc = 0;
	if (mkdir(p, 0777) != 0 && errno != EEXIST)
		rc = lora_err("cannot create '%s':", p);
	free(p);
	return rc;
}

/* A float as JSON: an integer when it is one, else the shortest decimal
 * that reads back as the same float ("0.1", not 0.100000001). */
static json_t *json_num(float v)
{
	if (v == floorf(v) && fabsf(v) < 1e9f)
		return json_integer((json_int_t)v);
	char buf[32];
	for (int prec = 6; prec <= 9; prec++) {
		snprintf(buf, sizeof buf, "%.*g", prec, v);
		if ((float)strtod(buf, NULL) == v)
			break;
	}
	return json_real(strtod(buf, NULL));
}

static int write_config(const lora_adapter *ad, const char *path, const char *base_model)
{
	const lora_adapter_config *c = &ad->cfg;
	json_t *o = json_object(), *tm = json_array();
	for (int m = 0; m < LORA_MOD_COUNT; m++)
		if (c->targets & (1u << m))
			json_array_append_new(tm, json_string(mod_names[m]));
	json_object_set_new(o, "alpha_pattern", json_object());
	json_object_set_new(o, "auto_mapping", json_null());
	json_object_set_new(o, "base_model_name_or_path", base_model ? json_string(base_model) : json_null());
	json_object_set_new(o, "bias", json_string("none"));
	json_object_set_new(o, "fan_in_fan_out", json_false());
	json_object_set_new(o, "inference_mode", json_true());
	json_object_set_new(o, "init_lora_weights", json_true());
	json_object_set_new(o, "layer_replication", json_null());
	json_object_set_new(o, "layers_pattern", json_null());
	json_object_set_new(o, "layers_to_transform", json_null());
	json_object_set_new(o, "loftq_config", json_object());
	json_object_set_new(o, "lora_alpha", json_num(c->alpha));
	json_object_set_new(o, "lora_bias", json_false());
	json_object_set_new(o, "lora_dropout", c->dropout == 0 ? json_real(0.0) : json_num(c->dropout));
	json_object_set_new(o, "megatron_config", json_null());
	json_object_set_new(o, "megatron_core", json_string("megatron.core"));
	json_object_set_new(o, "modules_to_save", json_null());
	json_object_set_new(o, "peft_type", json_string("LORA"));
	json_object_set_new(o, "r", json_integer(c->r));
	json_object_set_new(o, "rank_pattern", json_object());
	json_object_set_new(o, "revision", json_null());
	json_object_set_new(o, "target_modules", tm);
	json_object_set_new(o, "task_type", json_string("CAUSAL_LM"));
	json_object_set_new(o, "use_dora", json_false());
	json_object_set_new(o, "use_rslora", json_boolean(c->use_rslora));
	char *s = json_dumps(o, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_REAL_PRECISION(15));
	json_decref(o);
	lora_afile f;
	if (lora_afile_open(&f, path) != 0) {
		free(s);
		return -1;
	}
	fputs(s, f.fp);
	fputc('\n', f.fp);
	free(s);
	return lora_afile_commit(&f);
}

int lora_adapter_save(const lora_adapter *ad, const char *dir, const char *base_model)
{
	if (mkdirs(dir) != 0)
		return -1;
	char *path = lora_xasprintf("%s/adapter_model.safetensors", dir);
	st_writer *w = st_writer_open(path);
	if (!w) {
		free(path);
		return -1;
	}
	st_writer_meta(w, "format", "pt");
	int rc = 0;
	for (int i = 0; i < ad->n && !rc; i++) {
		const lora_module *m = &ad->mods[i];
		char *ka = peft_key(m->name, 'A'), *kb = peft_key(m->name, 'B');
		rc |= st_writer_add(w, ka, LORA_DTYPE_F32, 2, (int64_t[]){ m->r, m->in });
		rc |= st_writer_add(w, kb, LORA_DTYPE_F32, 2, (int64_t[]){ m->out, m->r });
		free(ka);
		free(kb);
	}
	for (int i = 0; i < ad->n && !rc; i++) {
		const lora_module *m = &ad->mods[i];
		size_t na = (size_t)m->r * m->in, nb = (size_t)m->out * m->r;
		float *h = lora_xmalloc((na > nb ? na : nb) * sizeof(float));
		char *ka = peft_key(m->name, 'A'), *kb = peft_key(m->name, 'B');
		ad->be->download(h, m->A, na * sizeof(float));
		rc |= st_writer_write(w, ka, 0, h, na * sizeof(float));
		ad->be->download(h, m->B, nb * sizeof(float));
		rc |= st_writer_write(w, kb, 0, h, nb * sizeof(float));
		free(ka);
		free(kb);
		free(h);
	}
	if (rc) {
		st_writer_abort(w);
		free(path);
		return -1;
	}
	if (st_writer_close(w) != 0) {
		free(path);
		return -1;
	}
	free(path);
	path = lora_xasprintf("%s/adapter_config.json", dir);
	rc = write_config(ad, path, base_model ? base_model : ad->base_model);
	free(path);
	return rc;
}

/* A field that must be absent/null/false/empty for us to load the adapter. */
static int must_be_off(json_t *o, const char *key, const char *path)
{
	json_t *v = json_object_get(o, key);
	if (!v || json_is_null(v) || json_is_false(v))
		return 0;
	if ((json_is_object(v) && json_object_size(v) == 0) || (json_is_array(v) && json_array_size(v) == 0))
		return 0;
	return lora_err("'%s': unsupported %s (only plain LoRA adapters are supported)", path, key);
}

int lora_adapter_read_config(const char *dir, lora_adapter_config *cfg)
{
	char *path = lora_xasprintf("%s/adapter_config.json", dir);
	json_error_t je;
	json_t *o = json_load_file(path, 0, &je);
	int rc = -1;
	if (!o) {
		lora_err("'%s': %s", path, je.text);
		goto out;
	}
	if (!json_is_object(o)) {
		lora_err("'%s': not a JSON object", path);
		goto out;
	}
	json_t *v = json_object_get(o, "peft_type");
	if (!json_is_string(v) || strcmp(json_string_value(v), "LORA")) {
		lora_err("'%s': peft_type is not \"LORA\"", path);
		goto out;
	}
	static const char *off[] = { "use_dora", "fan_in_fan_out", "rank_pattern", "alpha_pattern",
	                             "lora_bias", "layers_to_transform", "modules_to_save",
	                             "layer_replication" };
	for (size_t i = 0; i < sizeof off / sizeof *off; i++)
		if (must_be_off(o, off[i], path))
			goto out;
	v = json_object_get(o, "bias");
	if (v && json_is_string(v) && strcmp(json_string_value(v), "none")) {
		lora_err("'%s': unsupported bias \"%s\" (only \"none\")", path, json_string_value(v));
		goto out;
	}
	*cfg = lora_adapter_config_default();
	cfg->alpha = 8;   /* PEFT's defaults for absent fields */
	if ((v = json_object_get(o, "r"))) {
		if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 65536) {
			lora_err("'%s': bad r", path);
			goto out;
		}
		cfg->r = (int)json_integer_value(v);
	}
	if ((v = json_object_get(o, "lora_alpha"))) {
		if (!json_is_number(v)) {
			lora_err("'%s': bad lora_alpha", path);
			goto out;
		}
		cfg->alpha = (float)json_number_value(v);
	}
	if ((v = json_object_get(o, "lora_dropout")) && json_is_number(v))
		cfg->dropout = (float)json_number_value(v);
	if ((v = json_object_get(o, "use_rslora")))
		cfg->use_rslora = json_is_true(v);
	v = json_object_get(o, "target_modules");
	if (!v || json_is_null(v)) {
		cfg->targets = 1u << LORA_MOD_Q | 1u << LORA_MOD_V;     /* PEFT's llama default */
	} else if (json_is_string(v)) {
		if (lora_targets_parse(json_string_value(v), &cfg->targets) != 0) {
			lora_err("'%s': unsupported target_modules \"%s\"", path, json_string_value(v));
			goto out;
		}
	} else if (json_is_array(v)) {
		unsigned t = 0;
		size_t i;
		json_t *e;
		json_array_foreach(v, i, e) {
			int m = json_is_string(e) ? lora_mod_parse(json_string_value(e)) : -1;
			if (m < 0) {
				lora_err("'%s': unsupported target_modules entry %s", path,
				         json_is_string(e) ? json_string_value(e) : "(not a string)");
				goto out;
			}
			t |= 1u << m;
		}
		if (!t) {
			lora_err("'%s': empty target_modules", path);
			goto out;
		}
		cfg->targets = t;
	} else {
		lora_err("'%s': bad target_modules", path);
		goto out;
	}
	rc = 0;
out:
	json_decref(o);
	free(path);
	return rc;
}

int lora_adapter_load_weights(lora_adapter *ad, const char *dir)
{
	char *path = lora_xasprintf("%s/adapter_model.safetensors", dir);
	st_file *f = st_open(path);
	int rc = -1;
	if (!f)
		goto out;
	int used = 0;
	for (int i = 0; i < ad->n; i++) {
		lora_module *m = &ad->mods[i];
		for (int ab = 0; ab < 2; ab++) {
			char *key = peft_key(m->name, ab ? 'B' : 'A');
			const st_tensor *t = st_find(f, key);
			int64_t r0 = ab ? m->out : m->r, r1 = ab ? m->r : m->in;
			if (!t) {
				lora_err("'%s': missing tensor '%s'", path, key);
				free(key);
				goto out;
			}
			if (t->ndim != 2 || t->shape[0] != r0 || t->shape[1] != r1) {
				lora_err("'%s': tensor '%s' has shape [%lld, %lld], the model needs [%lld, %lld]",
				         path, key, t->ndim > 0 ? (long long)t->shape[0] : 0LL,
				         t->ndim > 1 ? (long long)t->shape[1] : 0LL, (long long)r0, (long long)r1);
				free(key);
				goto out;
			}
			float *h = lora_xmalloc(t->numel * sizeof(float));
			if (st_tensor_to_f32(t, h) != 0) {
				lora_err("'%s': tensor '%s': unsupported dtype %s", path, key,
				         lora_dtype_name(t->dtype));
				free(h);
				free(key);
				goto out;
			}
			ad->be->upload(ab ? m->B : m->A, h, t->numel * sizeof(float));
			free(h);
			free(key);
			used++;
		}
	}
	if (used != f->ntensors) {
		for (int i = 0; i < f->ntensors; i++) {
			const char *k = f->tensors[i].name;
			int known = 0;
			for (int j = 0; j < ad->n && !known; j++) {
				char *ka = peft_key(ad->mods[j].name, 'A'), *kb = peft_key(ad->mods[j].name, 'B');
				known = !strcmp(k, ka) || !strcmp(k, kb);
				free(ka);
				free(kb);
			}
			if (!known) {
				lora_err("'%s': tensor '%s' matches no module of the model", path, k);
				goto out;
			}
		}
	}
	rc = 0;
out:
	st_close(f);
	free(path);
	return rc;
}

/* ---- the parameter list ---------------------------------------------------------------------- */

/* Append entry i to the last run of *runs when `follows`, else open one. */
static void run_extend(lora_param_run **runs, int *nruns, int i, size_t n, int follows)
{
	if (follows && *nruns > 0) {
		lora_param_run *r = &(*runs)[*nruns - 1];
		LORA_ASSERT(r->first + r->count == i);
		r->count++;
		r->n += n;
		return;
	}
	*runs = lora_xrealloc(*runs, (*nruns + 1) * sizeof **runs);
	(*runs)[(*nruns)++] = (lora_param_run){ .first = i, .count = 1, .n = n };
}

void lora_params_add(lora_params *ps, const char *name, float *data, float *grad,
                     int ndim, const int64_t *shape, int decay)
{
	ps->p = lora_xrealloc(ps->p, (ps->n + 1) * sizeof *ps->p);
	ps->off = lora_xrealloc(ps->off, (ps->n + 2) * sizeof *ps->off);
	int i = ps->n++;
	lora_param *p = &ps->p[i];
	*p = (lora_param){ .name = lora_xstrdup(name), .data = data, .grad = grad,
	                   .ndim = ndim, .decay = decay, .n = 1 };
	for (int k = 0; k < ndim; k++) {
		p->shape[k] = shape[k];
		p->n *= (size_t)shape[k];
	}
	const lora_param *q = i > 0 ? &ps->p[i - 1] : NULL;
	int gnext = q && grad && q->grad && grad == q->grad + q->n;
	int dnext = q && data && q->data && data == q->data + q->n;
	run_extend(&ps->grad_runs, &ps->ngrad_runs, i, p->n, gnext);
	run_extend(&ps->step_runs, &ps->nstep_runs, i, p->n, gnext && dnext && decay == q->decay);
	ps->off[i] = ps->total;
	ps->total += p->n;
	ps->off[i + 1] = ps->total;
}

void lora_params_add_adapter(lora_params *ps, const lora_adapter *ad)
{
	for (int i = 0; i < ad->n; i++) {
		const lora_module *m = &ad->mods[i];
		char *ka = peft_key(m->name, 'A'), *kb = peft_key(m->name, 'B');
		lora_params_add(ps, ka, m->A, m->dA, 2, (int64_t[]){ m->r, m->in }, 1);
		lora_params_add(ps, kb, m->B, m->dB, 2, (int64_t[]){ m->out, m->r }, 1);
		free(ka);
		free(kb);
	}
}

void lora_params_zero_grad(const lora_params *ps, const lora_backend *be)
{
	for (int r = 0; r < ps->ngrad_runs; r++)
		be->zero(ps->p[ps->grad_runs[r].first].grad, ps->grad_runs[r].n * sizeof(float));
}

void lora_params_scale_grad(const lora_params *ps, const lora_backend *be, float s)
{
	for (int r = 0; r < ps->ngrad_runs; r++)
		be->scale(ps->p[ps->grad_runs[r].first].grad, s, ps->grad_runs[r].n);
}

void lora_params_free(lora_params *ps)
{
	for (int i = 0; i < ps->n; i++)
		free(ps->p[i].name);
	free(ps->p);
	free(ps->off);
	free(ps->grad_runs);
	free(ps->step_runs);
	*ps = (lora_params){ 0 };
}
