/* loraformat.c: see loraformat.h. Key layouts: FORMATS.md §2.8, §3.2-3.3, §4.2-4.3. */
#include "loraformat.h"

#include <ctype.h>
#include <jansson.h>
#include <math.h>
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

/* ---- names ---------------------------------------------------------------------- */

static const char *kind_names[LORA_KIND_COUNT] = {
	"unknown", "kohya", "peft", "diffusers", "sd15", "llama",
};
static const char *kind_descs[LORA_KIND_COUNT] = {
	"unknown", "kohya/A1111 SD LoRA", "PEFT LoRA", "diffusers LoRA",
	"SD 1.5 checkpoint", "HF LLaMA checkpoint",
};
static const char *part_names[LORA_PART_COUNT] = {
	"unet", "text_encoder", "text_encoder_2", "lm", "other",
};

const char *lora_kind_name(lora_kind k) { return k < LORA_KIND_COUNT ? kind_names[k] : "unknown"; }
const char *lora_kind_desc(lora_kind k) { return k < LORA_KIND_COUNT ? kind_descs[k] : "unknown"; }
const char *lora_part_name(lora_part p) { return p < LORA_PART_COUNT ? part_names[p] : "other"; }
int lora_kind_is_lora(lora_kind k)
{
	return k == LORA_KIND_KOHYA || k == LORA_KIND_PEFT || k == LORA_KIND_DIFFUSERS;
}

static int starts(const char *s, const char *p) { return !strncmp(s, p, strlen(p)); }

/* ---- tensor roles --------------------------------------------------------------- */

enum { ROLE_DOWN, ROLE_UP, ROLE_ALPHA };

/* Name suffixes that make a tensor part of a LoRA module, in every spelling
 * the three formats use (diffusers' older attention-processor names too). */
static const struct { const char *suffix; int role; int family; } suffixes[] = {
	{ ".lora_down.weight", ROLE_DOWN, 'k' },
	{ ".lora_up.weight", ROLE_UP, 'k' },
	{ ".alpha", ROLE_ALPHA, 'k' },
	{ ".lora_A.weight", ROLE_DOWN, 'p' },
	{ ".lora_B.weight", ROLE_UP, 'p' },
	{ ".lora_linear_layer.down.weight", ROLE_DOWN, 'd' },
	{ ".lora_linear_layer.up.weight", ROLE_UP, 'd' },
	{ "_lora.down.weight", ROLE_DOWN, 'd' },
	{ "_lora.up.weight", ROLE_UP, 'd' },
	{ ".lora.down.weight", ROLE_DOWN, 'd' },
	{ ".lora.up.weight", ROLE_UP, 'd' },
};

/* The suffix index of a LoRA tensor name, or -1. */
static int lora_suffix(const char *name)
{
	size_t n = strlen(name);
	for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
		size_t k = strlen(suffixes[i].suffix);
		if (n > k && !strcmp(name + n - k, suffixes[i].suffix))
			return (int)i;
	}
	return -1;
}

static int is_kohya_prefix(const char *s)
{
	return starts(s, "lora_unet_") || starts(s, "lora_te_") || starts(s, "lora_te1_") ||
	       starts(s, "lora_te2_");
}

static int is_diffusers_prefix(const char *s)
{
	return starts(s, "unet.") || starts(s, "text_encoder.") || starts(s, "text_encoder_2.") ||
	       starts(s, "transformer.");
}

/* "model.layers.12.self_attn.q_proj.weight" */
static int is_llama_layer(const char *s)
{
	if (!starts(s, "model.layers."))
		return 0;
	s += strlen("model.layers.");
	if (!isdigit((unsigned char)*s))
		return 0;
	while (isdigit((unsigned char)*s))
		s++;
	return starts(s, ".self_attn.") || starts(s, ".mlp.") || starts(s, ".input_layernorm.");
}

lora_kind lora_kind_detect(const st_file *f)
{
	int kohya = 0, peft = 0, diff = 0, lora = 0, sd = 0, llama = 0;
	for (int i = 0; i < f->ntensors; i++) {
		const char *n = f->tensors[i].name;
		int s = lora_suffix(n);
		if (s >= 0 && suffixes[s].role != ROLE_ALPHA) {
			lora++;
			if (is_kohya_prefix(n))
				kohya++;
			else if (starts(n, "base_model.model."))
				peft++;
			else if (is_diffusers_prefix(n))
				diff++;
		}
		if (starts(n, "model.diffusion_model."))
			sd++;
		if (is_llama_layer(n))
			llama++;
	}
	if (lora) {
		if (kohya >= peft && kohya >= diff && kohya)
			return LORA_KIND_KOHYA;
		if (diff > peft)
			return LORA_KIND_DIFFUSERS;
		return LORA_KIND_PEFT;      /* bare lora_A/lora_B keys: PEFT without prefix */
	}
	if (sd)
		return LORA_KIND_SD15;
	if (llama)
		return LORA_KIND_LLAMA;
	return LORA_KIND_UNKNOWN;
}

/* ---- kohya names back to module paths -------------------------------------------- */

/* Module names that contain underscores, so "to_out_0" is "to_out.0", not "to.out.0". */
static const char *words[] = {
	"down_blocks", "up_blocks", "mid_block", "transformer_blocks", "to_q", "to_k",
	"to_v", "to_out", "proj_in", "proj_out", "conv_shortcut", "time_emb_proj",
	"text_model", "self_attn", "q_proj", "k_proj", "v_proj", "out_proj", "conv_in",
	"conv_out", "conv_norm_out", "time_embedding", "linear_1", "linear_2",
	"layer_norm1", "layer_norm2", "final_layer_norm", "token_embedding",
	"position_embedding", "text_projection", "input_blocks", "output_blocks",
	"middle_block", "in_layers", "out_layers", "emb_layers", "skip_connection",
	"time_embed", "diffusion_model", "gate_proj", "up_proj", "down_proj", "o_proj",
	"embed_tokens", "lm_head", "input_layernorm", "post_attention_layernorm",
	"add_embedding", "add_k_proj", "add_v_proj", "add_q_proj", "to_add_out",
	"label_emb", "nin_shortcut", "norm_out", "quant_conv", "post_quant_conv",
	"to_out_0", NULL,
};

char *lora_kohya_to_path(const char *name)
{
	static const char *pre[] = { "lora_unet_", "lora_te1_", "lora_te2_", "lora_te_", NULL };
	for (int i = 0; pre[i]; i++)
		if (starts(name, pre[i])) {
			name += strlen(pre[i]);
			break;
		}
	size_t n = strlen(name);
	char *out = lora_xmalloc(n + 1);
	size_t o = 0;
	const char *s = name;
	while (*s) {
		/* the longest known word starting here that ends at '_' or the end */
		size_t best = 0;
		for (int i = 0; words[i]; i++) {
			size_t k = strlen(words[i]);
			if (k > best && !strncmp(s, words[i], k) && (s[k] == '_' || s[k] == 0) &&
			    strcmp(words[i], "to_out_0"))
				best = k;
		}
		if (!best)
			best = strcspn(s, "_");
		memcpy(out + o, s, best);
		o += best;
		s += best;
		if (*s == '_') {
			out[o++] = '.';
			s++;
		}
	}
	out[o] = 0;
	return out;
}

/* ---- diffusers UNet -> LDM (FORMATS.md §2.8) -------------------------------------- */

/* Parse "NAME.<i>." at s; returns the number and advances *s past it, or -1. */
static int take_index(const char **s, const char *name)
{
	size_t k = strlen(name);
	if (strncmp(*s, name, k) || (*s)[k] != '.' || !isdigit((unsigned char)(*s)[k + 1]))
		return -1;
	char *end;
	long v = strtol(*s + k + 1, &end, 10);
	if (*end != '.' && *end != 0)
		return -1;
	*s = *end ? end + 1 : end;
	return (int)v;
}

/* Resnet children renamed between the two layouts. */
static char *resnet_rest(const char *rest)
{
	static const char *map[][2] = {
		{ "norm1", "in_layers.0" }, { "conv1", "in_layers.2" }, { "norm2", "out_layers.0" },
		{ "conv2", "out_layers.3" }, { "time_emb_proj", "emb_layers.1" },
		{ "conv_shortcut", "skip_connection" },
	};
	for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
		size_t k = strlen(map[i][0]);
		if (!strncmp(rest, map[i][0], k) && (rest[k] == '.' || rest[k] == 0))
			return lora_xasprintf("%s%s", map[i][1], rest + k);
	}
	return lora_xstrdup(rest);
}

char *lora_sd_unet_to_ldm(const char *path)
{
	const char *P = "model.diffusion_model.";
	if (starts(path, "input_blocks.") || starts(path, "output_blocks.") ||
	    starts(path, "middle_block.") || starts(path, "time_embed.") || starts(path, "out."))
		return lora_xasprintf("%s%s", P, path);
	const char *s = path;
	int i, j;
	char *rest, *r;
	if ((i = take_index(&s, "down_blocks")) >= 0) {
		const char *t = s;
		if ((j = take_index(&t, "resnets")) >= 0) {
			rest = resnet_rest(t);
			r = lora_xasprintf("%sinput_blocks.%d.0.%s", P, 3 * i + j + 1, rest);
			free(rest);
			return r;
		}
		t = s;
		if ((j = take_index(&t, "attentions")) >= 0)
			return lora_xasprintf("%sinput_blocks.%d.1.%s", P, 3 * i + j + 1, t);
		t = s;
		if (take_index(&t, "downsamplers") == 0 && starts(t, "conv"))
			return lora_xasprintf("%sinput_blocks.%d.0.op%s", P, 3 * i + 3, t + 4);
	} else if ((i = take_index(&s, "up_blocks")) >= 0) {
		const char *t = s;
		if ((j = take_index(&t, "resnets")) >= 0) {
			rest = resnet_rest(t);
			r = lora_xasprintf("%soutput_blocks.%d.0.%s", P, 3 * i + j, rest);
			free(rest);
			return r;
		}
		t = s;
		if ((j = take_index(&t, "attentions")) >= 0)
			return lora_xasprintf("%soutput_blocks.%d.1.%s", P, 3 * i + j, t);
		t = s;
		if (take_index(&t, "upsamplers") == 0)
			return lora_xasprintf("%soutput_blocks.%d.%d.%s", P, 3 * i + 2, i ? 2 : 1, t);
	} else if (starts(path, "mid_block.")) {
		s = path + strlen("mid_block.");
		const char *t = s;
		if ((j = take_index(&t, "resnets")) >= 0) {
			rest = resnet_rest(t);
			r = lora_xasprintf("%smiddle_block.%d.%s", P, 2 * j, rest);
			free(rest);
			return r;
		}
		t = s;
		if (take_index(&t, "attentions") == 0)
			return lora_xasprintf("%smiddle_block.1.%s", P, t);
	}
	static const char *top[][2] = {
		{ "conv_in", "input_blocks.0.0" }, { "conv_out", "out.2" },
		{ "conv_norm_out", "out.0" }, { "time_embedding.linear_1", "time_embed.0" },
		{ "time_embedding.linear_2", "time_embed.2" },
	};
	for (size_t k = 0; k < sizeof top / sizeof top[0]; k++) {
		size_t n = strlen(top[k][0]);
		if (!strncmp(path, top[k][0], n) && (path[n] == '.' || path[n] == 0))
			return lora_xasprintf("%s%s%s", P, top[k][1], path + n);
	}
	return lora_xasprintf("%s%s", P, path);
}

/* ---- grouping -------------------------------------------------------------------- */

typedef struct {
	char *prefix;
	int role;
	const st_tensor *t;
} entry;

static int cmp_entry(const void *a, const void *b)
{
	const entry *x = a, *y = b;
	int c = strcmp(x->prefix, y->prefix);
	return c ? c : x->role - y->role;
}

/* Fill in path, base and part of a module from its file prefix. */
static void name_module(lora_module *m, lora_kind kind)
{
	const char *n = m->name;
	m->part = LORA_PART_OTHER;
	if (kind == LORA_KIND_KOHYA || is_kohya_prefix(n)) {
		m->path = lora_kohya_to_path(n);
		if (starts(n, "lora_unet_")) {
			m->part = LORA_PART_UNET;
			m->base = lora_sd_unet_to_ldm(m->path);
		} else if (starts(n, "lora_te2_")) {
			m->part = LORA_PART_TEXT2;
			m->base = lora_xstrdup(m->path);
		} else if (starts(n, "lora_te")) {
			m->part = LORA_PART_TEXT;
			m->base = lora_xasprintf("cond_stage_model.transformer.%s", m->path);
		} else {
			m->base = lora_xstrdup(m->path);
		}
		return;
	}
	if (starts(n, "base_model.model.")) {
		m->part = LORA_PART_LM;
		m->path = lora_xstrdup(n + strlen("base_model.model."));
		m->base = lora_xstrdup(m->path);
		return;
	}
	if (kind == LORA_KIND_DIFFUSERS || is_diffusers_prefix(n)) {
		/* drop attention-processor wrappers of the old layout */
		const char *dot = strchr(n, '.');
		char *p = lora_xstrdup(dot ? dot + 1 : n);
		char *w;
		if ((w = strstr(p, ".processor.")))
			memmove(w, w + strlen(".processor"), strlen(w + strlen(".processor")) + 1);
		size_t pl = strlen(p);
		if (starts(n, "text_encoder")) {
			/* CLIP attention under the old processor names: to_q -> q_proj */
			static const char *clip[][2] = {
				{ ".self_attn.to_q", ".self_attn.q_proj" }, { ".self_attn.to_k", ".self_attn.k_proj" },
				{ ".self_attn.to_v", ".self_attn.v_proj" }, { ".self_attn.to_out", ".self_attn.out_proj" },
			};
			for (size_t i = 0; i < sizeof clip / sizeof clip[0]; i++) {
				size_t k = strlen(clip[i][0]);
				if (pl > k && !strcmp(p + pl - k, clip[i][0])) {
					char *q = lora_xasprintf("%.*s%s", (int)(pl - k), p, clip[i][1]);
					free(p);
					p = q;
					break;
				}
			}
		} else if (pl > 7 && !strcmp(p + pl - 7, ".to_out")) {
			char *q = lora_xasprintf("%s.0", p);
			free(p);
			p = q;
		}
		m->path = p;
		if (starts(n, "unet.")) {
			m->part = LORA_PART_UNET;
			m->base = lora_sd_unet_to_ldm(p);
		} else if (starts(n, "text_encoder_2.")) {
			m->part = LORA_PART_TEXT2;
			m->base = lora_xstrdup(p);
		} else if (starts(n, "text_encoder.")) {
			m->part = LORA_PART_TEXT;
			m->base = lora_xasprintf("cond_stage_model.transformer.%s%s",
			                         starts(p, "text_model.") ? "" : "text_model.", p);
		} else {
			m->base = lora_xstrdup(p);
		}
		return;
	}
	m->path = lora_xstrdup(n);
	m->base = lora_xstrdup(n);
	m->part = LORA_PART_LM;
}

/* PEFT rank_pattern / alpha_pattern keys match a module path as
 * re.match(rf"(.*\.)?({key})$", path) does. */
static int pattern_match(const char *key, const char *path)
{
	char *re = lora_xasprintf("^(.*\\.)?(%s)$", key);
	int err;
	PCRE2_SIZE off;
	pcre2_code *code = pcre2_compile((PCRE2_SPTR)re, PCRE2_ZERO_TERMINATED, 0, &err, &off, NULL);
	free(re);
	if (!code)
		return 0;
	pcre2_match_data *md = pcre2_match_data_create_from_pattern(code, NULL);
	int rc = pcre2_match(code, (PCRE2_SPTR)path, PCRE2_ZERO_TERMINATED, 0, 0, md, NULL);
	pcre2_match_data_free(md);
	pcre2_code_free(code);
	return rc >= 0;
}

static char *config_beside(const char *path)
{
	const char *slash = strrchr(path, '/');
	char *c = slash ? lora_xasprintf("%.*s/adapter_config.json", (int)(slash - path), path)
	                : lora_xstrdup("adapter_config.json");
	if (access(c, R_OK) != 0) {
		free(c);
		return NULL;
	}
	return c;
}

static int read_config(lora_format *lf, const char *path, json_t **alpha_pattern)
{
	json_error_t jerr;
	json_t *j = json_load_file(path, 0, &jerr);
	if (!j)
		return lora_err("'%s': invalid JSON: %s (line %d)", path, jerr.text, jerr.line);
	if (!json_is_object(j)) {
		json_decref(j);
		return lora_err("'%s': not a JSON object", path);
	}
	json_t *v;
	if ((v = json_object_get(j, "r")) && json_is_number(v))
		lf->config_rank = (int)json_number_value(v);
	if ((v = json_object_get(j, "lora_alpha")) && json_is_number(v))
		lf->config_alpha = json_number_value(v);
	if ((v = json_object_get(j, "use_rslora")))
		lf->use_rslora = json_is_true(v);
	if ((v = json_object_get(j, "base_model_name_or_path")) && json_is_string(v))
		lf->base_model = lora_xstrdup(json_string_value(v));
	if ((v = json_object_get(j, "alpha_pattern")) && json_is_object(v))
		*alpha_pattern = json_incref(v);
	lf->config_path = lora_xstrdup(path);
	json_decref(j);
	return 0;
}

/* diffusers keeps each component's PEFT config in the lora_adapter_metadata
 * JSON, keys prefixed by the component: "unet.lora_alpha",
 * "unet.alpha_pattern", "unet.use_rslora". 1 if it gives m an alpha. */
static int metadata_alpha(json_t *dmeta, const lora_module *m, double *alpha, int *rslora)
{
	const char *dot = strchr(m->name, '.');
	if (!dot || !m->path)
		return 0;
	int cl = (int)(dot - m->name);
	char *ka = lora_xasprintf("%.*s.alpha_pattern", cl, m->name);
	char *kl = lora_xasprintf("%.*s.lora_alpha", cl, m->name);
	char *kr = lora_xasprintf("%.*s.use_rslora", cl, m->name);
	json_t *v = NULL, *pv;
	const char *key;
	json_t *pat = json_object_get(dmeta, ka);
	if (json_is_object(pat))
		json_object_foreach(pat, key, pv)
			if (json_is_number(pv) && pattern_match(key, m->path)) {
				v = pv;
				break;
			}
	if (!v)
		v = json_object_get(dmeta, kl);
	int found = json_is_number(v);
	if (found) {
		*alpha = json_number_value(v);
		*rslora = json_is_true(json_object_get(dmeta, kr));
	}
	free(ka);
	free(kl);
	free(kr);
	return found;
}

static double scalar_value(const st_tensor *t)
{
	float v = NAN;
	if (t->numel == 1)
		st_tensor_to_f32(t, &v);
	return v;
}

lora_format *lora_format_open(const st_file *f, const char *config)
{
	lora_format *lf = lora_xcalloc(1, sizeof *lf);
	lf->kind = lora_kind_detect(f);
	json_t *alpha_pattern = NULL;
	char *cfg = NULL;
	if (config && *config)
		cfg = lora_xstrdup(config);
	else if (!config && lf->kind == LORA_KIND_PEFT)
		cfg = config_beside(f->path);
	if (cfg && read_config(lf, cfg, &alpha_pattern) != 0) {
		free(cfg);
		lora_format_free(lf);
		return NULL;
	}
	free(cfg);
	if (lf->kind == LORA_KIND_KOHYA && !lf->base_model && st_meta(f, "ss_sd_model_name"))
		lf->base_model = lora_xstrdup(st_meta(f, "ss_sd_model_name"));

	if (!lora_kind_is_lora(lf->kind)) {
		lf->nother = f->ntensors;
		return lf;
	}
	json_t *dmeta = NULL;
	const char *ms = lf->kind == LORA_KIND_DIFFUSERS ? st_meta(f, "lora_adapter_metadata") : NULL;
	if (ms) {
		dmeta = json_loads(ms, 0, NULL);
		if (!json_is_object(dmeta)) {
			json_decref(dmeta);
			json_decref(alpha_pattern);
			lora_err("'%s': lora_adapter_metadata is not a JSON object", f->path);
			lora_format_free(lf);
			return NULL;
		}
	}
	entry *e = lora_xcalloc((size_t)f->ntensors + 1, sizeof *e);
	int ne = 0;
	for (int i = 0; i < f->ntensors; i++) {
		const char *n = f->tensors[i].name;
		int s = lora_suffix(n);
		if (s < 0 || (suffixes[s].role == ROLE_ALPHA && lf->kind == LORA_KIND_PEFT)) {
			lf->nother++;
			continue;
		}
		size_t plen = strlen(n) - strlen(suffixes[s].suffix);
		e[ne].prefix = lora_xasprintf("%.*s", (int)plen, n);
		e[ne].role = suffixes[s].role;
		e[ne].t = &f->tensors[i];
		ne++;
	}
	qsort(e, ne, sizeof *e, cmp_entry);
	lf->modules = lora_xcalloc((size_t)ne + 1, sizeof *lf->modules);
	for (int i = 0; i < ne;) {
		int k = i;
		while (k < ne && !strcmp(e[k].prefix, e[i].prefix))
			k++;
		lora_module *m = NULL;
		int has_matrix = 0;
		for (int q = i; q < k; q++)
			has_matrix |= e[q].role != ROLE_ALPHA;
		if (!has_matrix) {           /* an alpha with no matrices: not a module */
			lf->nother += k - i;
			i = k;
			continue;
		}
		m = &lf->modules[lf->nmodules++];
		m->name = lora_xstrdup(e[i].prefix);
		for (int q = i; q < k; q++) {
			const st_tensor **slot = e[q].role == ROLE_DOWN ? &m->down :
			                         e[q].role == ROLE_UP ? &m->up : &m->alpha_t;
			if (*slot)
				lf->nother++;        /* a second spelling of the same half */
			else
				*slot = e[q].t;
		}
		name_module(m, lf->kind);
		int rslora = lf->use_rslora;
		m->rank = m->down && m->down->ndim > 0 ? (int)m->down->shape[0] :
		          m->up && m->up->ndim > 1 ? (int)m->up->shape[1] : 0;
		if (m->alpha_t) {
			m->alpha = scalar_value(m->alpha_t);
			m->alpha_from = LORA_ALPHA_TENSOR;
		} else if (lf->config_path) {
			m->alpha = lf->config_alpha ? lf->config_alpha : 8;   /* PEFT default */
			m->alpha_from = LORA_ALPHA_CONFIG;
			const char *key;
			json_t *v;
			json_object_foreach(alpha_pattern, key, v) {
				if (json_is_number(v) && pattern_match(key, m->path)) {
					m->alpha = json_number_value(v);
					break;
				}
			}
		} else if (dmeta && metadata_alpha(dmeta, m, &m->alpha, &rslora)) {
			m->alpha_from = LORA_ALPHA_METADATA;
		} else {
			m->alpha = m->rank;
			m->alpha_from = LORA_ALPHA_DEFAULT;
		}
		/* kohya / A1111: an alpha of 0 means "no alpha" (scale 1) */
		double a = m->alpha_from == LORA_ALPHA_TENSOR && m->alpha == 0 ? m->rank : m->alpha;
		m->scale = m->rank <= 0 ? 0 : rslora ? a / sqrt((double)m->rank) : a / m->rank;
		i = k;
	}
	for (int i = 0; i < ne; i++)
		free(e[i].prefix);
	free(e);
	json_decref(alpha_pattern);
	json_decref(dmeta);
	return lf;
}

void lora_format_free(lora_format *lf)
{
	if (!lf)
		return;
	for (int i = 0; i < lf->nmodules; i++) {
		free(lf->modules[i].name);
		free(lf->modules[i].path);
		free(lf->modules[i].base);
	}
	free(lf->modules);
	free(lf->config_path);
	free(lf->base_model);
	free(lf);
}

int lora_format_check(const lora_format *lf)
{
	for (int i = 0; i < lf->nmodules; i++) {
		const lora_module *m = &lf->modules[i];
		if (!m->down || !m->up)
			return lora_err("module '%s' has no %s matrix", m->name, m->down ? "up" : "down");
		if (m->down->ndim < 2 || m->up->ndim < 2 || m->up->shape[1] != m->down->shape[0])
			return lora_err("module '%s': up and down shapes do not agree on the rank", m->name);
		if (m->alpha_t && m->alpha_t->numel != 1)
			return lora_err("module '%s': alpha is not a scalar", m->name);
	}
	return 0;
}
