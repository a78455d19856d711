/* llama.c: LLaMA-family models: config.json, weights, the activation arena,
 * forward and backward (see llama.h). Read it top to bottom: config, memory
 * plan, loading, LoRA, then the block forward and backward, which follow
 * modeling_llama.py line by line (FORMATS.md §5.4). */
#include "llama.h"

#include <jansson.h>     /* json_* for config.json */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "safetensors.h" /* st_open, st_find, st_tensor_to_f32 */
#include "util.h"        /* lora_err, lora_x* */

/* ---- config.json ------------------------------------------------------------------------ */

static int jint(json_t *o, const char *key, int def, int *out, const char *path)
{
	json_t *v = json_object_get(o, key);
	if (!v || json_is_null(v)) {
		*out = def;
		return 0;
	}
	if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > (1 << 30))
		return lora_err("'%s': bad %s", path, key);
	*out = (int)json_integer_value(v);
	return 0;
}

static int jnum(json_t *o, const char *key, double def, double *out, const char *path)
{
	json_t *v = json_object_get(o, key);
	if (!v || json_is_null(v)) {
		*out = def;
		return 0;
	}
	if (!json_is_number(v))
		return lora_err("'%s': bad %s", path, key);
	*out = json_number_value(v);
	return 0;
}

static int jbool(json_t *o, const char *key, int def, int *out, const char *path)
{
	json_t *v = json_object_get(o, key);
	if (!v || json_is_null(v)) {
		*out = def;
		return 0;
	}
	if (!json_is_boolean(v))
		return lora_err("'%s': bad %s (expected true or false)", path, key);
	*out = json_is_true(v);
	return 0;
}

/* First id of an int or a list of ints; -1 if absent. */
static int jtoken(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);
	if (json_is_array(v))
		v = json_array_get(v, 0);
	return json_is_integer(v) ? (int)json_integer_value(v) : -1;
}

/* rope_scaling (v4) or rope_parameters (v5): theta and the llama3 numbers. */
static int parse_rope(json_t *o, lora_rope_params *rp, const char *path)
{
	double theta = 10000.0;
	json_t *rs = json_object_get(o, "rope_parameters");
	const char *field = "rope_parameters";
	if (!rs || json_is_null(rs)) {
		rs = json_object_get(o, "rope_scaling");
		field = "rope_scaling";
	}
	if (jnum(o, "rope_theta", 10000.0, &theta, path))
		return -1;
	memset(rp, 0, sizeof *rp);
	if (rs && !json_is_null(rs)) {
		if (!json_is_object(rs))
			return lora_err("'%s': bad %s", path, field);
		if (json_object_get(rs, "rope_theta") && jnum(rs, "rope_theta", theta, &theta, path))
			return -1;
		json_t *ty = json_object_get(rs, "rope_type");
		if (!ty)
			ty = json_object_get(rs, "type");
		const char *t = json_is_string(ty) ? json_string_value(ty) : "default";
		if (!strcmp(t, "llama3")) {
			double f = 0, lf = 0, hf = 0;
			int om = 0;
			if (jnum(rs, "factor", 8.0, &f, path) || jnum(rs, "low_freq_factor", 1.0, &lf, path) ||
			    jnum(rs, "high_freq_factor", 4.0, &hf, path) ||
			    jint(rs, "original_max_position_embeddings", 8192, &om, path))
				return -1;
			if (f <= 0 || hf <= lf || om <= 0)
				return lora_err("'%s': bad llama3 %s", path, field);
			rp->factor = (float)f;
			rp->low_freq_factor = (float)lf;
			rp->high_freq_factor = (float)hf;
			rp->original_max_pos = om;
		} else if (strcmp(t, "default")) {
			return lora_err("'%s': unsupported %s type '%s' (supported: default, llama3)",
			                path, field, t);
		}
	}
	if (!(theta > 0))
		return lora_err("'%s': bad rope_theta", path);
	rp->theta = (float)theta;
	return 0;
}

int lora_llama_config_load(const char *dir, lora_llama_config *c)
{
	char *path = lora_xasprintf("%s/config.json", dir);
	json_error_t je;
	json_t *o = json_load_file(path, 0, &je);
	int rc = -1;
	memset(c, 0, sizeof *c);
	if (!o) {
		struct stat st;
		if (stat(path, &st) != 0)
			lora_err("cannot open '%s':", path);
		else
			lora_err("'%s': line %d: %s", path, je.line, je.text);
		goto out;
	}
	if (!json_is_object(o)) {
		lora_err("'%s': not a JSON object", path);
		goto out;
	}
	json_t *mt = json_object_get(o, "model_type");
	const char *type = json_is_string(mt) ? json_string_value(mt) : "";
	if (strcmp(type, "llama") && strcmp(type, "mistral") && strcmp(type, "qwen2")) {
		lora_err("'%s': unsupported model_type '%s' (supported: llama, mistral, qwen2)", path, type);
		goto out;
	}
	snprintf(c->model_type, sizeof c->model_type, "%s", type);
	int is_qwen = !strcmp(type, "qwen2");
	double eps = 1e-6;
	int attn_bias = 0, use_sw = 0;
	if (jint(o, "vocab_size", 32000, &c->vocab_size, path) ||
	    jint(o, "hidden_size", 4096, &c->hidden_size, path) ||
	    jint(o, "intermediate_size", 11008, &c->intermediate_size, path) ||
	    jint(o, "num_hidden_layers", 32, &c->n_layers, path) ||
	    jint(o, "num_attention_heads", 32, &c->n_heads, path) ||
	    jint(o, "num_key_value_heads", c->n_heads, &c->n_kv_heads, path) ||
	    jint(o, "head_dim", c->n_heads ? c->hidden_size / c->n_heads : 0, &c->head_dim, path) ||
	    jint(o, "max_position_embeddings", 2048, &c->max_position_embeddings, path) ||
	    jnum(o, "rms_norm_eps", 1e-6, &eps, path) ||
	    jbool(o, "attention_bias", 0, &attn_bias, path) ||
	    jbool(o, "mlp_bias", 0, &c->mlp_bias, path) ||
	    jbool(o, "tie_word_embeddings", 0, &c->tie_word_embeddings, path) ||
	    jbool(o, "use_sliding_window", 0, &use_sw, path) ||
	    jint(o, "sliding_window", 0, &c->sliding_window, path) ||
	    parse_rope(o, &c->rope, path))
		goto out;
	c->rms_norm_eps = (float)eps;
	c->qkv_bias = is_qwen || attn_bias;
	c->o_bias = attn_bias;
	if (is_qwen) {   /* Qwen2 uses the window only with use_sliding_window */
		if (use_sw) {
			lora_err("'%s': unsupported use_sliding_window true", path);
			goto out;
		}
		c->sliding_window = 0;
		json_t *lt = json_object_get(o, "layer_types"), *e;
		size_t i;
		if (json_is_array(lt))
			json_array_foreach(lt, i, e)
				if (!json_is_string(e) || strcmp(json_string_value(e), "full_attention")) {
					lora_err("'%s': unsupported layer_types entry (only full_attention)", path);
					goto out;
				}
	}
	json_t *act = json_object_get(o, "hidden_act");
	if (act && (!json_is_string(act) || strcmp(json_string_value(act), "silu"))) {
		lora_err("'%s': unsupported hidden_act '%s' (only silu)", path,
		         json_is_string(act) ? json_string_value(act) : "?");
		goto out;
	}
	double ad = 0;
	if (jnum(o, "attention_dropout", 0, &ad, path))
		goto out;
	if (ad != 0) {
		lora_err("'%s': unsupported attention_dropout %g (only 0)", path, ad);
		goto out;
	}
	c->bos_token_id = jtoken(o, "bos_token_id");
	c->eos_token_id = jtoken(o, "eos_token_id");
	/* sizes far beyond any real model are corrupt files (and would overflow) */
	if (c->vocab_size < 1 || c->vocab_size > (1 << 24) || c->hidden_size < 1 ||
	    c->hidden_size > (1 << 20) || c->intermediate_size < 1 || c->intermediate_size > (1 << 22) ||
	    c->n_layers < 1 || c->n_layers > 4096 || c->n_heads < 1 || c->n_heads > 4096 ||
	    c->n_kv_heads < 1 || c->head_dim < 2 || c->head_dim > 4096 || c->head_dim % 2 ||
	    c->n_heads % c->n_kv_heads || c->max_position_embeddings < 1) {
		lora_err("'%s': inconsistent sizes (hidden_size %d, heads %d, kv heads %d, head_dim %d)",
		         path, c->hidden_size, c->n_heads, c->n_kv_heads, c->head_dim);
		goto out;
	}
	rc = 0;
out:
	json_decref(o);
	free(path);
	return rc;
}

/* ---- sizes --------------------------------------------------------------------------------- */

size_t lora_llama_n_params(const lora_llama_config *c)
{
	size_t C = c->hidden_size, I = c->intermediate_size, V = c->vocab_size;
	size_t QD = (size_t)c->n_heads * c->head_dim, KD = (size_t)c->n_kv_heads * c->head_dim;
	size_t layer = C + C * QD + 2 * C * KD + QD * C + C + 3 * C * I;
	if (c->qkv_bias)
		layer += QD + 2 * KD;
	if (c->o_bias)
		layer += C;
	if (c->mlp_bias)
		layer += 2 * I + C;
	return V * C * (c->tie_word_embeddings ? 1 : 2) + C + layer * c->n_layers;
}

/* in/out of each adaptable layer kind */
static void mod_dims(const lora_llama_config *c, int mod, int *in, int *out)
{
	int C = c->hidden_size, I = c->intermediate_size;
	int QD = c->n_heads * c->head_dim, KD = c->n_kv_heads * c->head_dim;
	static const int ins[LORA_MOD_COUNT] = { 0, 0, 0, 1, 0, 0, 2 };   /* C, QD, I */
	int dims[3] = { C, QD, I };
	int outs[LORA_MOD_COUNT] = { QD, KD, KD, C, I, I, C };
	*in = dims[ins[mod]];
	*out = outs[mod];
}

size_t lora_llama_n_lora_params(const lora_llama_config *c, const lora_adapter_config *cfg)
{
	if (!cfg)
		return 0;
	size_t n = 0;
	for (int m = 0; m < LORA_MOD_COUNT; m++)
		if (cfg->targets & (1u << m)) {
			int in, out;
			mod_dims(c, m, &in, &out);
			n += (size_t)cfg->r * (in + out);
		}
	return n * c->n_layers;
}

/* ---- the activation arena ------------------------------------------------------------------------
 * One layer's saved activations (L sets, or 1 set with gradient
 * checkpointing), the residual stream (L+1 tensors), the head, the gradient
 * buffers of one layer and a scratch area: all pointers into one block.
 *
 * Decision: the saved activations that are matrix-product inputs or
 * attention operands (void * below) are stored in the activation dtype adt:
 * BF16 in a bf16 run (frozen weights BF16), as PyTorch keeps them, else
 * F32. The residual stream, res2, the norms' rstd, the LoRA h and every
 * gradient stay fp32. A bf16 run's q, k, v, gate and up go from the GEMM
 * straight into their saved copies in bf16 (its fp32 accumulator rounded
 * once, as PyTorch's bf16 linear), then the LoRA branch and RoPE update
 * them in place (each rounding once more, as PEFT's branch and PyTorch's
 * bf16 RoPE do). ln1, ln2 and swi are kept per layer only when the backward reads
 * them (a LoRA branch on the layers they feed, or full fine-tuning): frozen
 * linears need no input for their backward, so e.g. q,v LoRA keeps no ln2
 * or swi per layer. LORA_CUDA_ACT=fp32 keeps a bf16 run's activations F32
 * (to compare the two). */

/* The LoRA groups: the modules of a layer that read the same input (q, k,
 * v read ln1; gate, up read ln2), whose branches share one lora_down
 * (lib/backend.h); h of a group is (N, R), R the sum of its ranks, the
 * branches' columns in module order. */
enum { GROUP_QKV, GROUP_O, GROUP_GATEUP, GROUP_DOWN, GROUP_COUNT };
static int mod_group(int k)
{
	return k <= LORA_MOD_V ? GROUP_QKV : k == LORA_MOD_O ? GROUP_O
	     : k <= LORA_MOD_UP ? GROUP_GATEUP : GROUP_DOWN;
}

typedef struct {
	void *ln1;               /* (N, C) input_layernorm output (adt) */
	float *rstd1;            /* (N) */
	void *q;                 /* (N, NH*HS) after RoPE (adt) */
	void *k, *v;             /* (N, NKV*HS), k after RoPE (adt) */
	float *att;              /* attention_saved_floats(B, T, NH) */
	void *atty;              /* (N, NH*HS) attention output, o_proj input (adt) */
	float *res2;             /* (N, C) residual after attention */
	void *ln2;               /* (N, C) post_attention_layernorm output (adt) */
	float *rstd2;            /* (N) */
	void *gate, *up;         /* (N, I) (adt); a bf16 backward writes dgate, dup over them */
	void *swi;               /* (N, I) silu(gate) * up, down_proj input (adt) */
	float *h[GROUP_COUNT];   /* (N, R) LoRA intermediates of each group, NULL if none */
} acts;

typedef struct {                 /* gradients of the full-mode weights, F32 */
	float *ln1_w, *wq, *wk, *wv, *bq, *bk, *bv, *wo, *bo, *ln2_w;
	float *wgate, *wup, *wdown, *bgate, *bup, *bdown;
} layer_grads;

typedef struct {
	int B, T, ckpt;          /* planned sizes */
	lora_dtype adt;          /* dtype of the void * activations */
	float *arena;
	size_t arena_floats;
	acts *a;                 /* (L) (all the same with ckpt) */
	float **resid;           /* (L+1) of (N, C): layer inputs, resid[L] the last output */
	float *tmp;              /* (N, C) o_proj / down_proj output */
	float *lnf, *rstdf;      /* (N, C), (N) */
	float *logits;           /* (hrows, V): one chunk of rows of the logits; dlogits in
	                          * place during backward (the whole (N, V) is never kept) */
	int hrows;               /* rows per chunk of the head (head_rows) */
	float *losses;           /* (N) */
	float *dres;             /* (N, C) gradient of the residual stream */
	float *dln;              /* (N, C) */
	float *dq, *dk, *dv;     /* (N, NH*HS), (N, NKV*HS) x2 */
	float *datty;            /* (N, NH*HS) */
	float *dgate, *dup, *dswi;   /* (N, I) */
	float *scratch;          /* see layout() */
	float *rope_cos, *rope_sin;  /* (T, HS/2) */
	int32_t *ids, *targets;  /* (N) backend copies */
	/* last forward */
	int fB, fT, nvalid, has_targets;
	int head_done;           /* the forward did the head's backward (dln, dlm_head) */
	int hn;                  /* rows the head computes: N, or the nvalid with a target */
	int32_t *hidx;           /* (N) backend: with hn < N, the rows of those hn */
	/* full mode */
	float *dwte, *dlm_head, *dlnf_w;
	layer_grads *g;          /* (L) */
	/* full mode: every weight is a slice of wbuf and its gradient the same
	 * slice of gbuf, in load order (the order of the param list), so the
	 * gradients are one run and the optimizer step one call per stretch of
	 * equal weight decay (lora.h: lora_params) */
	float *wbuf, *gbuf;      /* (wcap) backend F32 */
	size_t wused, wcap;
} priv_t;

/* The dtype of the saved activations (see acts) for a run on be. */
static lora_dtype act_dtype(const lora_backend *be, int full)
{
	static int force_f32 = -1;
	if (force_f32 < 0) {
		const char *e = getenv("LORA_CUDA_ACT");
		force_f32 = e && !strcmp(e, "fp32");
	}
	return !full && be->wdtype == LORA_DTYPE_BF16 && !force_f32 ? LORA_DTYPE_BF16
	                                                            : LORA_DTYPE_F32;
}

/* The head never holds the whole (N, V) logits in fp32: it computes them
 * hrows rows at a time, in the forward (for the loss), in the backward
 * (again, then the gradient in place) and for lora_llama_logits. A chunk
 * holds 16 Mi floats (64 MiB) at most, ~500 rows of a 32000-word vocabulary:
 * still a large GEMM. The rows are a multiple of 64 (of 16 for
 * vocabularies over 128K words), the GPU's GEMM tiles, spread evenly over
 * the chunks: 2048 tokens of a 32000-word vocabulary are 4 chunks of 512
 * rows, not 3 of 524 and one of 476 (a last tile of 12 rows per chunk).
 * LORA_HEAD_ROWS overrides it (the tests chunk tiny models with it). */
static int head_rows(int N, int V)
{
	const char *e = getenv("LORA_HEAD_ROWS");
	if (e && *e) {
		long r = atol(e);
		return r < 1 ? 1 : r < N ? (int)r : N;
	}
	long r = (16L << 20) / V;
	if (r < 1)
		r = 1;
	if (r >= N)
		return N;
	long q = r >= 128 ? 64 : r >= 32 ? 16 : 1;
	r -= r % q;
	long k = (N + r - 1) / r;                       /* chunks */
	long even = ((N + k - 1) / k + q - 1) / q * q;  /* rows of each, rounded up */
	return (int)(even < r ? even : r);
}

/* Lay out the arena for (B, T). With base == NULL only count; returns floats. */
static size_t layout(priv_t *p, const lora_llama_config *c, const lora_backend *be,
                     const lora_adapter_config *lc, int full, int B, int T, int ckpt,
                     float *base)
{
	size_t N = (size_t)B * T, C = c->hidden_size, I = c->intermediate_size, V = c->vocab_size;
	size_t QD = (size_t)c->n_heads * c->head_dim, KD = (size_t)c->n_kv_heads * c->head_dim;
	int L = c->n_layers, sets = ckpt ? 1 : L;
	lora_dtype adt = act_dtype(be, full);
	size_t asz = (size_t)lora_dtype_bits(adt) / 8, off = 0;
	if (p)
		p->adt = adt;
#define TAKE(ptr, n) do { if (base) (ptr) = base + off; off += ((n) + 15) & ~(size_t)15; } while (0)
#define TAKEA(ptr, n) TAKE(ptr, ((n) * asz + 3) / 4)        /* n values of adt */
	float *dummy;
	void *vdummy;
	/* matrix-product inputs the backward reads only for a LoRA branch (or
	 * every weight's gradient): one per layer if so, else one shared */
	unsigned t = lc ? lc->targets : 0;
	int keep_ln1 = full || (t & (1u << LORA_MOD_Q | 1u << LORA_MOD_K | 1u << LORA_MOD_V));
	int keep_ln2 = full || (t & (1u << LORA_MOD_GATE | 1u << LORA_MOD_UP));
	int keep_swi = full || (t & (1u << LORA_MOD_DOWN));
	void *ln1 = NULL, *ln2 = NULL, *swi = NULL;
	if (!keep_ln1 || ckpt)
		TAKEA(*(base ? &ln1 : &vdummy), N * C);
	if (!keep_ln2 || ckpt)
		TAKEA(*(base ? &ln2 : &vdummy), N * C);
	if (!keep_swi || ckpt)
		TAKEA(*(base ? &swi : &vdummy), N * I);
	for (int l = 0; l < sets; l++) {
		acts *a = base ? &p->a[l] : NULL;
		if (a) {
			a->ln1 = ln1;
			a->ln2 = ln2;
			a->swi = swi;
		}
		if (keep_ln1 && !ckpt)
			TAKEA(*(a ? &a->ln1 : &vdummy), N * C);
		TAKE(*(a ? &a->rstd1 : &dummy), N);
		TAKEA(*(a ? &a->q : &vdummy), N * QD);
		TAKEA(*(a ? &a->k : &vdummy), N * KD);
		TAKEA(*(a ? &a->v : &vdummy), N * KD);
		TAKE(*(a ? &a->att : &dummy), be->attention_saved_floats(B, T, c->n_heads));
		TAKEA(*(a ? &a->atty : &vdummy), N * QD);
		TAKE(*(a ? &a->res2 : &dummy), N * C);
		if (keep_ln2 && !ckpt)
			TAKEA(*(a ? &a->ln2 : &vdummy), N * C);
		TAKE(*(a ? &a->rstd2 : &dummy), N);
		TAKEA(*(a ? &a->gate : &vdummy), N * I);
		TAKEA(*(a ? &a->up : &vdummy), N * I);
		if (keep_swi && !ckpt)
			TAKEA(*(a ? &a->swi : &vdummy), N * I);
		for (int g = 0; g < GROUP_COUNT; g++) {
			int nt = 0;
			for (int k = 0; k < LORA_MOD_COUNT; k++)
				nt += lc && mod_group(k) == g && (lc->targets & (1u << k));
			if (a)
				a->h[g] = NULL;
			if (nt)
				TAKE(*(a ? &a->h[g] : &dummy), (size_t)N * lc->r * nt);
		}
	}
	if (base && ckpt)
		for (int l = 1; l < L; l++)
			p->a[l] = p->a[0];
	for (int l = 0; l <= L; l++)
		TAKE(*(base ? &p->resid[l] : &dummy), N * C);
	TAKE(*(base ? &p->tmp : &dummy), N * C);
	TAKE(*(base ? &p->lnf : &dummy), N * C);
	TAKE(*(base ? &p->rstdf : &dummy), N);
	int hr = head_rows((int)N, (int)V);
	if (base)
		p->hrows = hr;
	TAKE(*(base ? &p->logits : &dummy), (size_t)hr * V);
	TAKE(*(base ? &p->losses : &dummy), N);
	TAKE(*(base ? &p->dres : &dummy), N * C);
	TAKE(*(base ? &p->dln : &dummy), N * C);
	TAKE(*(base ? &p->dq : &dummy), N * QD);
	TAKE(*(base ? &p->dk : &dummy), N * KD);
	TAKE(*(base ? &p->dv : &dummy), N * KD);
	TAKE(*(base ? &p->datty : &dummy), N * QD);
	TAKE(*(base ? &p->dgate : &dummy), N * I);
	TAKE(*(base ? &p->dup : &dummy), N * I);
	TAKE(*(base ? &p->dswi : &dummy), N * I);
	/* scratch: a LoRA group's backward needs its dh (N, R) and what
	 * lora_down_backward asks; attention what the backend says. The
	 * largest group has 3 branches (q, k, v) and reads at most max(C, QD, I). */
	size_t in_max = C > QD ? C : QD;
	if (I > in_max)
		in_max = I;
	size_t s_lora = 0;
	if (lc) {
		int nt = 0;
		for (int k = 0; k <= LORA_MOD_V; k++)
			nt += (lc->targets >> k) & 1;
		nt = nt > 2 ? nt : 2;
		/* training uses the dropout, evaluation p = 0 */
		size_t s0 = lora_down_scratch_floats((int)N, (int)in_max, lc->r * nt, nt, 0, adt);
		size_t s1 = lora_down_scratch_floats((int)N, (int)in_max, lc->r * nt, nt, lc->dropout,
		                                     adt);
		s_lora = N * lc->r * nt + (s0 > s1 ? s0 : s1);
	}
	size_t s_att = be->attention_scratch_floats(B, T, c->n_heads, c->n_kv_heads, c->head_dim);
	TAKE(*(base ? &p->scratch : &dummy), s_lora > s_att ? s_lora : s_att);
	TAKE(*(base ? &p->rope_cos : &dummy), (size_t)T * c->head_dim / 2);
	TAKE(*(base ? &p->rope_sin : &dummy), (size_t)T * c->head_dim / 2);
	float *ids = NULL, *targets = NULL, *hidx = NULL;         /* int32 in float slots */
	TAKE(ids, N);
	TAKE(targets, N);
	TAKE(hidx, N);
	if (base) {
		p->ids = (int32_t *)(void *)ids;
		p->targets = (int32_t *)(void *)targets;
		p->hidx = (int32_t *)(void *)hidx;
	}
#undef TAKEA
#undef TAKE
	return off;
}

lora_llama_mem lora_llama_memory(const lora_llama_config *c, const lora_backend *be,
                                 int B, int T, const lora_llama_opts *o)
{
	lora_llama_mem r = { 0 };
	size_t np = lora_llama_n_params(c);
	size_t wsize = (size_t)lora_dtype_bits(be->wdtype) / 8;
	if (o->full) {
		r.trainable = np * sizeof(float);
	} else {
		r.weights = np * wsize;
		r.trainable = lora_llama_n_lora_params(c, o->lora) * sizeof(float);
	}
	r.grads = r.trainable;
	r.optimizer = 2 * r.trainable;
	r.activations = layout(NULL, c, be, o->full ? NULL : o->lora, o->full, B, T, o->grad_ckpt,
	                       NULL) * sizeof(float);
	r.total = r.weights + r.trainable + r.grads + r.optimizer + r.activations;
	return r;
}

/* A question "how large can B (or T) be": the other size fixed, counting
 * the total or the activations alone. */
typedef struct {
	const lora_llama_config *c;
	const lora_backend *be;
	const lora_llama_opts *o;
	int B, T;                /* the fixed one; the other is searched */
	int vary_T, acts_only;
} fit_query;

/* The largest x in [0, hi] whose need fits in cap (need grows with x; x = 0
 * counts as fitting). */
static int largest_fit(const fit_query *q, int hi, size_t cap)
{
	int lo = 0;                   /* search (lo, hi] */
	while (lo < hi) {
		int mid = lo + (hi - lo + 1) / 2;
		lora_llama_mem m = lora_llama_memory(q->c, q->be, q->vary_T ? q->B : mid,
		                                     q->vary_T ? mid : q->T, q->o);
		if ((q->acts_only ? m.activations : m.total) <= cap)
			lo = mid;
		else
			hi = mid - 1;
	}
	return lo;
}

int lora_llama_max_batch(const lora_llama_config *c, const lora_backend *be, int T,
                         const lora_llama_opts *o, size_t capacity, int B_max)
{
	return largest_fit(&(fit_query){ c, be, o, 0, T, 0, 0 }, B_max, capacity);
}

int lora_llama_max_seq(const lora_llama_config *c, const lora_backend *be, int B,
                       const lora_llama_opts *o, size_t capacity, int T_max)
{
	return largest_fit(&(fit_query){ c, be, o, B, 0, 1, 0 }, T_max, capacity);
}

/* ---- loading ---------------------------------------------------------------------------------------- */

static priv_t *P(const lora_llama *m) { return m->priv; }

/* Allocate and fill one weight from the file; shape must match. full: also
 * list it as a trainable parameter with a gradient buffer. */
static int load_weight(lora_llama *m, st_file *f, const char *name, int64_t d0, int64_t d1,
                       void **dst, float **grad, int decay)
{
	const st_tensor *t = st_find(f, name);
	int ndim = d1 ? 2 : 1;
	if (!t)
		return lora_err("'%s': missing tensor '%s'", f->path, name);
	if (t->ndim != ndim || t->shape[0] != d0 || (ndim == 2 && t->shape[1] != d1))
		return lora_err("'%s': tensor '%s' has the wrong shape for config.json (want [%lld%s%lld])",
		                f->path, name, (long long)d0, ndim == 2 ? ", " : "", (long long)(ndim == 2 ? d1 : 0));
	if (t->dtype != LORA_DTYPE_F32 && t->dtype != LORA_DTYPE_F16 && t->dtype != LORA_DTYPE_BF16)
		return lora_err("'%s': tensor '%s': unsupported dtype %s (F32, F16, BF16)", f->path, name,
		                lora_dtype_name(t->dtype));
	const lora_backend *be = m->be;
	priv_t *p = m->priv;
	size_t n = (size_t)t->numel, bytes = n * (lora_dtype_bits(m->wdt) / 8);
	void *buf;
	if (m->full) {         /* lora_llama_n_params counted every weight we load */
		LORA_ASSERT(p->wused + n <= p->wcap);
		buf = p->wbuf + p->wused;
	} else if (!(buf = be->alloc(bytes))) {
		return lora_err("out of memory loading '%s' (%zu bytes)", name, bytes);
	}
	/* no fp32 copy on the host: a bf16 file for bf16 weights (the usual GPU
	 * run) is uploaded as it is, another dtype converted on the device */
	be->upload_from(buf, m->wdt, t->data, t->dtype, n);
	*dst = buf;
	if (m->full) {
		*grad = p->gbuf + p->wused;
		p->wused += n;
		lora_params_add(&m->params, name, buf, *grad, ndim, (int64_t[]){ d0, d1 }, decay);
	}
	return 0;
}

int lora_llama_check_backend(const char *dir, const lora_llama_config *c,
                             const lora_backend *be)
{
	if (!be->attention_check || be->attention_check(c->head_dim) == 0)
		return 0;
	char why[256];
	snprintf(why, sizeof why, "%s", lora_errmsg());
	return lora_err("'%s' on %s: %s", dir, be->name, why);
}

lora_llama *lora_llama_load(const char *dir, const lora_backend *be, int full)
{
	lora_llama *m = lora_xcalloc(1, sizeof *m);
	priv_t *p = lora_xcalloc(1, sizeof *p);
	m->priv = p;
	m->be = be;
	m->full = full;
	m->training = 1;
	m->grad_scale = 1.0f;
	m->wdt = full ? LORA_DTYPE_F32 : be->wdtype;
	st_file *f = NULL;
	char *path = NULL;
	if (lora_llama_config_load(dir, &m->cfg) != 0)
		goto fail;
	const lora_llama_config *c = &m->cfg;
	if (lora_llama_check_backend(dir, c, be) < 0)
		goto fail;
	path = lora_xasprintf("%s/model.safetensors", dir);
	struct stat st;
	if (stat(path, &st) != 0) {
		free(path);
		path = lora_xasprintf("%s/model.safetensors.index.json", dir);
		if (stat(path, &st) != 0) {
			lora_err("'%s': no model.safetensors or model.safetensors.index.json", dir);
			goto fail;
		}
	}
	if (!(f = st_open(path)))
		goto fail;
	if (full) {
		p->wcap = lora_llama_n_params(c);
		size_t bytes = p->wcap * sizeof(float);
		if (!(p->wbuf = be->alloc(bytes)) || !(p->gbuf = be->alloc(bytes))) {
			lora_err("out of memory for the trainable weights and their gradients "
			         "(2 x %zu bytes)", bytes);
			goto fail;
		}
	}
	int64_t C = c->hidden_size, I = c->intermediate_size, V = c->vocab_size;
	int64_t QD = (int64_t)c->n_heads * c->head_dim, KD = (int64_t)c->n_kv_heads * c->head_dim;
	int L = c->n_layers;
	m->layers = lora_xcalloc(L, sizeof *m->layers);
	p->g = lora_xcalloc(L, sizeof *p->g);
	if (load_weight(m, f, "model.embed_tokens.weight", V, C, &m->wte, &p->dwte, 1))
		goto fail;
	for (int l = 0; l < L; l++) {
		lora_llama_layer *y = &m->layers[l];
		layer_grads *g = &p->g[l];
		char n[128];
		for (int k = 0; k < LORA_MOD_COUNT; k++)
			y->lora[k] = -1;
#define W(field, gfield, suffix, d0, d1, decay) \
		(snprintf(n, sizeof n, "model.layers.%d.%s", l, suffix), \
		 load_weight(m, f, n, d0, d1, &y->field, &g->gfield, decay))
		if (W(ln1_w, ln1_w, "input_layernorm.weight", C, 0, 0) ||
		    W(wq, wq, "self_attn.q_proj.weight", QD, C, 1) ||
		    W(wk, wk, "self_attn.k_proj.weight", KD, C, 1) ||
		    W(wv, wv, "self_attn.v_proj.weight", KD, C, 1) ||
		    (c->qkv_bias && (W(bq, bq, "self_attn.q_proj.bias", QD, 0, 0) ||
		                     W(bk, bk, "self_attn.k_proj.bias", KD, 0, 0) ||
		                     W(bv, bv, "self_attn.v_proj.bias", KD, 0, 0))) ||
		    W(wo, wo, "self_attn.o_proj.weight", C, QD, 1) ||
		    (c->o_bias && W(bo, bo, "self_attn.o_proj.bias", C, 0, 0)) ||
		    W(ln2_w, ln2_w, "post_attention_layernorm.weight", C, 0, 0) ||
		    W(wgate, wgate, "mlp.gate_proj.weight", I, C, 1) ||
		    W(wup, wup, "mlp.up_proj.weight", I, C, 1) ||
		    W(wdown, wdown, "mlp.down_proj.weight", C, I, 1) ||
		    (c->mlp_bias && (W(bgate, bgate, "mlp.gate_proj.bias", I, 0, 0) ||
		                     W(bup, bup, "mlp.up_proj.bias", I, 0, 0) ||
		                     W(bdown, bdown, "mlp.down_proj.bias", C, 0, 0))))
			goto fail;
#undef W
	}
	if (load_weight(m, f, "model.norm.weight", C, 0, &m->lnf_w, &p->dlnf_w, 0))
		goto fail;
	if (c->tie_word_embeddings) {
		m->lm_head = m->wte;
		p->dlm_head = p->dwte;
	} else if (load_weight(m, f, "lm_head.weight", V, C, &m->lm_head, &p->dlm_head, 1)) {
		goto fail;
	}
	/* a tensor we did not read means an architecture we do not know */
	for (int i = 0; i < f->ntensors; i++) {
		const char *n = f->tensors[i].name;
		size_t len = strlen(n);
		if (len > 9 && !strcmp(n + len - 9, ".inv_freq"))
			continue;
		if (c->tie_word_embeddings && !strcmp(n, "lm_head.weight"))
			continue;
		int known = !strcmp(n, "model.embed_tokens.weight") || !strcmp(n, "model.norm.weight") ||
		            !strcmp(n, "lm_head.weight");
		int l;
		char rest[96];
		if (!known && sscanf(n, "model.layers.%d.%95s", &l, rest) == 2 && l >= 0 && l < L) {
			static const char *ok[] = { "input_layernorm.weight", "post_attention_layernorm.weight",
				"self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight",
				"self_attn.o_proj.weight", "mlp.gate_proj.weight", "mlp.up_proj.weight",
				"mlp.down_proj.weight", "self_attn.q_proj.bias", "self_attn.k_proj.bias",
				"self_attn.v_proj.bias", "self_attn.o_proj.bias", "mlp.gate_proj.bias",
				"mlp.up_proj.bias", "mlp.down_proj.bias" };
			for (size_t k = 0; k < sizeof ok / sizeof *ok && !known; k++)
				if (!strcmp(rest, ok[k])) {
					int bias = strstr(rest, ".bias") != NULL;
					int is_o = strstr(rest, "o_proj") != NULL, is_mlp = strstr(rest, "mlp.") != NULL;
					known = !bias || (is_mlp ? c->mlp_bias : is_o ? c->o_bias : c->qkv_bias);
				}
		}
		if (!known) {
			lora_err("'%s': unexpected tensor '%s' (not part of a %s model with this config.json)",
			         f->path, n, c->model_type);
			goto fail;
		}
	}
	m->n_params = lora_llama_n_params(c);
	st_close(f);
	free(path);
	return m;
fail:
	st_close(f);
	free(path);
	lora_llama_free(m);
	return NULL;
}

void lora_llama_free(lora_llama *m)
{
	if (!m)
		return;
	const lora_backend *be = m->be;
	priv_t *p = P(m);
	if (m->full) {          /* every weight and gradient is a slice of these */
		be->free(p->wbuf);
		be->free(p->gbuf);
	} else if (m->layers) {
		for (int l = 0; l < m->cfg.n_layers; l++) {
			lora_llama_layer *y = &m->layers[l];
			void *w[] = { y->ln1_w, y->wq, y->wk, y->wv, y->bq, y->bk, y->bv, y->wo, y->bo,
			              y->ln2_w, y->wgate, y->wup, y->wdown, y->bgate, y->bup, y->bdown };
			for (size_t i = 0; i < sizeof w / sizeof *w; i++)
				be->free(w[i]);
			layer_grads *g = &p->g[l];
			float *gg[] = { g->ln1_w, g->wq, g->wk, g->wv, g->bq, g->bk, g->bv, g->wo, g->bo,
			                g->ln2_w, g->wgate, g->wup, g->wdown, g->bgate, g->bup, g->bdown };
			for (size_t i = 0; i < sizeof gg / sizeof *gg; i++)
				be->free(gg[i]);
		}
	}
	if (!m->full) {
		if (m->lm_head != m->wte) {
			be->free(m->lm_head);
			be->free(p->dlm_head);
		}
		be->free(m->wte);
		be->free(p->dwte);
		be->free(m->lnf_w);
		be->free(p->dlnf_w);
	}
	be->free(p->arena);
	free(p->a);
	free(p->resid);
	free(p->g);
	free(p);
	free(m->layers);
	lora_adapter_free(m->lora);
	lora_params_free(&m->params);
	free(m);
}

/* ---- LoRA --------------------------------------------------------------------------------------- */

static void mod_path(char *buf, size_t n, int l, int mod)
{
	snprintf(buf, n, "model.layers.%d.%s.%s", l, mod <= LORA_MOD_O ? "self_attn" : "mlp",
	         lora_mod_name(mod));
}

static int attach(lora_llama *m, const lora_adapter_config *cfg)
{
	if (m->full)
		return lora_err("cannot add a LoRA adapter in full fine-tuning mode");
	if (m->lora)
		return lora_err("the model already has a LoRA adapter");
	if (cfg->r < 1 || !cfg->targets || cfg->dropout < 0 || cfg->dropout >= 1)
		return lora_err("bad LoRA configuration (rank %d, dropout %g)", cfg->r, cfg->dropout);
	m->lora = lora_adapter_new(cfg, m->be);
	lora_adapter_reserve(m->lora, lora_llama_n_lora_params(&m->cfg, cfg));   /* one buffer */
	for (int l = 0; l < m->cfg.n_layers; l++)
		for (int k = 0; k < LORA_MOD_COUNT; k++)
			if (cfg->targets & (1u << k)) {
				char name[96];
				int in, out;
				mod_path(name, sizeof name, l, k);
				mod_dims(&m->cfg, k, &in, &out);
				m->layers[l].lora[k] = lora_adapter_add(m->lora, name, in, out);
			}
	lora_params_add_adapter(&m->params, m->lora);
	P(m)->B = 0;      /* the arena depends on the adapter: plan again */
	return 0;
}

int lora_llama_add_lora(lora_llama *m, const lora_adapter_config *cfg, uint64_t seed)
{
	if (attach(m, cfg) != 0)
		return -1;
	lora_adapter_init(m->lora, seed);
	return 0;
}

int lora_llama_load_lora(lora_llama *m, const char *dir)
{
	lora_adapter_config cfg;
	if (lora_adapter_read_config(dir, &cfg) != 0 || attach(m, &cfg) != 0)
		return -1;
	return lora_adapter_load_weights(m->lora, dir);
}

int lora_llama_save_lora(const lora_llama *m, const char *dir, const char *base_model)
{
	if (!m->lora)
		return lora_err("the model has no LoRA adapter to save");
	return lora_adapter_save(m->lora, dir, base_model);
}

lora_params *lora_llama_params(lora_llama *m) { return &m->params; }

/* ---- plan ----------------------------------------------------------------------------------------- */

/* The activations of (B, T) did not fit: say what they need, what is free,
 * and what would fit (the largest batch at T, the longest T at B, and the
 * need with gradient checkpointing). */
static int plan_oom(lora_llama *m, const lora_adapter_config *lc, int B, int T, int ckpt,
                    size_t need)
{
	const lora_llama_config *c = &m->cfg;
	size_t used = 0, cap = 0;
	m->be->mem_info(&used, NULL, &cap);
	size_t avail = cap > used ? cap - used : 0;
	/* the largest fitting b < B and t < T (the rest is allocated already) */
	lora_llama_opts o = { .full = m->full, .grad_ckpt = ckpt, .lora = lc };
	int bl = largest_fit(&(fit_query){ c, m->be, &o, 0, T, 0, 1 }, B - 1, avail);
	int tl = largest_fit(&(fit_query){ c, m->be, &o, B, 0, 1, 1 }, T - 1, avail);
	char fits[160] = "";
	if (bl > 0 || tl > 0)
		snprintf(fits, sizeof fits, "; batch_size %d fits at this length, max_seq_length %d "
		         "at this batch_size", bl, tl);
	else
		snprintf(fits, sizeof fits, "; not even batch_size 1 fits at this length");
	char ck[96] = "";
	if (!ckpt)
		snprintf(ck, sizeof ck, "; with gradient_checkpointing: true they need %.1f MiB",
		         layout(NULL, c, m->be, lc, m->full, B, T, 1, NULL) * 4.0 / 1048576.0);
	return lora_err("out of memory on %s: the activations for batch %d x %d tokens need "
	                "%.1f MiB, %.1f MiB is free%s%s", m->be->name, B, T, need / 1048576.0,
	                avail / 1048576.0, fits, ck);
}

int lora_llama_plan(lora_llama *m, int B, int T, int ckpt)
{
	const lora_llama_config *c = &m->cfg;
	priv_t *p = P(m);
	if (B < 1 || T < 1)
		return lora_err("bad batch size %d or sequence length %d", B, T);
	if (T > c->max_position_embeddings)
		return lora_err("sequence length %d is longer than the model's context "
		                "(max_position_embeddings %d)", T, c->max_position_embeddings);
	if (c->sliding_window > 0 && T > c->sliding_window)
		return lora_err("sequence length %d is longer than sliding_window %d (not supported)",
		                T, c->sliding_window);
	const lora_adapter_config *lc = m->lora ? &m->lora->cfg : NULL;
	m->be->free(p->arena);
	p->arena = NULL;
	free(p->a);
	free(p->resid);
	p->a = lora_xcalloc(c->n_layers, sizeof *p->a);
	p->resid = lora_xcalloc(c->n_layers + 1, sizeof *p->resid);
	size_t n = layout(p, c, m->be, lc, m->full, B, T, ckpt, NULL);
	p->arena = m->be->alloc(n * sizeof(float));
	if (!p->arena) {
		p->B = 0;
		return plan_oom(m, lc, B, T, ckpt, n * sizeof(float));
	}
	p->arena_floats = n;
	layout(p, c, m->be, lc, m->full, B, T, ckpt, p->arena);
	p->B = B;
	p->T = T;
	p->ckpt = ckpt;
	/* RoPE tables for positions 0..T-1 */
	size_t nt = (size_t)T * c->head_dim / 2;
	float *h = lora_xmalloc(2 * nt * sizeof(float));
	lora_rope_table(h, h + nt, T, c->head_dim, &c->rope);
	m->be->upload(p->rope_cos, h, nt * sizeof(float));
	m->be->upload(p->rope_sin, h + nt, nt * sizeof(float));
	free(h);
	return 0;
}

/* ---- forward ------------------------------------------------------------------------------------------ */

/* Seed of the dropout mask of (layer, module) for the current step. */
static uint64_t drop_seed(const lora_llama *m, int l, int k)
{
	return m->dropout_seed ^ ((uint64_t)(l * LORA_MOD_COUNT + k + 1) * 0xD1B54A32D192ED03ULL);
}

static float lora_p(const lora_llama *m)
{
	return m->training ? m->lora->cfg.dropout : 0.0f;
}

/* The branches of layer l's group g in module order; returns how many. *R
 * gets their total rank; col[k] the column of module k in the group's h. */
static int group_branches(const lora_llama *m, int l, int g, lora_branch *br, int *R, int *col)
{
	int nb = 0;
	*R = 0;
	for (int k = 0; k < LORA_MOD_COUNT; k++) {
		int idx = mod_group(k) == g ? m->layers[l].lora[k] : -1;
		if (idx < 0)
			continue;
		const lora_module *mo = &m->lora->mods[idx];
		br[nb++] = (lora_branch){ mo->A, mo->dA, mo->r, drop_seed(m, l, k) };
		if (col)
			col[k] = *R;
		*R += mo->r;
	}
	return nb;
}

/* The first column of module k (layer l) in its group's h and dh; *R gets
 * their row stride, the group's total rank. */
static int group_col(const lora_llama *m, int l, int k, int *R)
{
	lora_branch br[LORA_MOD_COUNT];
	int col[LORA_MOD_COUNT];
	group_branches(m, l, mod_group(k), br, R, col);
	return col[k];
}

/* h of layer l's group g from its input inp (N, C) (adt): once per group,
 * before the group's linear_fwd calls. */
static void lora_down_fwd(lora_llama *m, int l, int g, acts *a, const void *inp, int N, int C)
{
	lora_branch br[LORA_MOD_COUNT];
	int R, nb = group_branches(m, l, g, br, &R, NULL);
	if (nb)
		m->be->lora_down(a->h[g], inp, P(m)->adt, br, nb, lora_p(m), N, C, P(m)->scratch);
}

/* out (N, OC) in odt = inp·Wᵀ + b, plus the LoRA branch of (l, k) if any
 * (its group's h from lora_down_fwd); inp is a saved activation (adt).
 * An fp32 out (o, down) takes the branch first and the base GEMM adds to
 * it in its epilogue, where reading out hides under the product's
 * arithmetic; a separate += pass after it would read out once more. A
 * bf16 out (q, k, v, gate, up) cannot: the branch would be rounded to
 * bf16 before the sum, where PEFT rounds the sum once, so the branch is
 * added after, in fp32, with one rounding. */
static void linear_fwd(lora_llama *m, int l, int k, acts *a, void *out, lora_dtype odt,
                       const void *inp, const void *w, const void *b, int N, int C, int OC)
{
	const lora_backend *be = m->be;
	int idx = m->layers[l].lora[k];
	if (idx < 0) {
		be->linear_forward(out, 0, odt, inp, P(m)->adt, w, b, m->wdt, N, C, OC);
		return;
	}
	const lora_module *mo = &m->lora->mods[idx];
	int R, col = group_col(m, l, k, &R), fold = odt == LORA_DTYPE_F32;
	const float *h = a->h[mod_group(k)] + col;
	if (fold)
		be->lora_up(out, 0, odt, h, R, mo->B, mo->scale, N, OC, mo->r);
	be->linear_forward(out, fold, odt, inp, P(m)->adt, w, b, m->wdt, N, C, OC);
	if (!fold)
		be->lora_up(out, 1, odt, h, R, mo->B, mo->scale, N, OC, mo->r);
}

/* Module k (layer l) as a residual step: res (N, OC) = base + inp·Wᵀ + b
 * (+ its LoRA branch). Without a branch or a bias the rmsnorm that read
 * base also wrote it into res (resid_fold), and the GEMM adds to it in its
 * epilogue: res = fl(base + x·Wᵀ), the rounding of the add it replaces.
 * Per element, the GEMM's write of tmp and the add (read 8 bytes, write 4)
 * become the copy's write and the GEMM's: 16 bytes become 8. Else through
 * p->tmp and an add. */
static int resid_fold(const lora_llama *m, int l, int k, const void *b)
{
	return m->layers[l].lora[k] < 0 && !b;
}

static void residual_fwd(lora_llama *m, int l, int k, acts *a, float *res, const float *base,
                         const void *inp, const void *w, const void *b, int N, int K, int OC)
{
	const lora_backend *be = m->be;
	priv_t *p = P(m);
	if (resid_fold(m, l, k, b)) {
		be->linear_forward(res, 1, LORA_DTYPE_F32, inp, p->adt, w, NULL, m->wdt, N, K, OC);
		return;
	}
	linear_fwd(m, l, k, a, p->tmp, LORA_DTYPE_F32, inp, w, b, N, K, OC);
	be->add_forward(res, base, p->tmp, (size_t)N * OC);
}

static void layer_forward(lora_llama *m, int l, acts *a, const float *x, float *out, int B, int T)
{
	const lora_backend *be = m->be;
	const lora_llama_config *c = &m->cfg;
	const lora_llama_layer *y = &m->layers[l];
	priv_t *p = P(m);
	int N = B * T, C = c->hidden_size, I = c->intermediate_size, NH = c->n_heads;
	int NKV = c->n_kv_heads, HS = c->head_dim, QD = NH * HS, KD = NKV * HS;
	lora_dtype adt = p->adt;
	/* attention */
	float *cp1 = resid_fold(m, l, LORA_MOD_O, y->bo) ? a->res2 : NULL;
	be->rmsnorm_forward(a->ln1, adt, a->rstd1, x, cp1, y->ln1_w, m->wdt, N, C,
	                    c->rms_norm_eps);
	lora_down_fwd(m, l, GROUP_QKV, a, a->ln1, N, C);
	linear_fwd(m, l, LORA_MOD_Q, a, a->q, adt, a->ln1, y->wq, y->bq, N, C, QD);
	be->rope_forward(a->q, a->q, adt, p->rope_cos, p->rope_sin, B, T, NH, HS);
	linear_fwd(m, l, LORA_MOD_K, a, a->k, adt, a->ln1, y->wk, y->bk, N, C, KD);
	be->rope_forward(a->k, a->k, adt, p->rope_cos, p->rope_sin, B, T, NKV, HS);
	linear_fwd(m, l, LORA_MOD_V, a, a->v, adt, a->ln1, y->wv, y->bv, N, C, KD);
	be->attention_forward(a->atty, a->att, a->q, a->k, a->v, adt, B, T, NH, NKV, HS,
	                      m->wdt == LORA_DTYPE_BF16);
	lora_down_fwd(m, l, GROUP_O, a, a->atty, N, QD);
	residual_fwd(m, l, LORA_MOD_O, a, a->res2, x, a->atty, y->wo, y->bo, N, QD, C);
	/* MLP */
	float *cp2 = resid_fold(m, l, LORA_MOD_DOWN, y->bdown) ? out : NULL;
	be->rmsnorm_forward(a->ln2, adt, a->rstd2, a->res2, cp2, y->ln2_w, m->wdt, N, C,
	                    c->rms_norm_eps);
	lora_down_fwd(m, l, GROUP_GATEUP, a, a->ln2, N, C);
	linear_fwd(m, l, LORA_MOD_GATE, a, a->gate, adt, a->ln2, y->wgate, y->bgate, N, C, I);
	linear_fwd(m, l, LORA_MOD_UP, a, a->up, adt, a->ln2, y->wup, y->bup, N, C, I);
	be->swiglu_forward(a->swi, a->gate, a->up, adt, (size_t)N * I);
	lora_down_fwd(m, l, GROUP_DOWN, a, a->swi, N, I);
	residual_fwd(m, l, LORA_MOD_DOWN, a, out, a->res2, a->swi, y->wdown, y->bdown, N, I, C);
}

/* The logits of rows [n0, n0 + M) of the last forward into p->logits. */
static void head_logits(const lora_llama *m, const float *in, int M)
{
	const priv_t *p = P(m);
	int C = m->cfg.hidden_size, V = m->cfg.vocab_size;
	m->be->linear_forward(p->logits, 0, LORA_DTYPE_F32, in, LORA_DTYPE_F32, m->lm_head, NULL,
	                      m->wdt, M, C, V);
}

/* Rows without a target (a masked prompt, padding, each row's last
 * position) add nothing to the loss or to any gradient, so when they are
 * at least 1/8 of the batch the head skips them: it works on the hn rows
 * that have one (forward() lists them in hidx and packs their targets),
 * gathered into p->tmp (free while the head runs), and its input gradient
 * is scattered back into dln, zeroed first. Instruction data with the loss
 * on the answer only is often half prompt; a Llama 3 vocabulary makes the
 * head a fifth of a 1B model's step. Below 1/8 (packed text: one row in
 * T) the gathering would cost more than it saves. LORA_HEAD_COMPACT=0
 * never skips, =1 skips any. */
static int head_compact(int N, int nvalid)
{
	const char *e = getenv("LORA_HEAD_COMPACT");
	if (e && *e)
		return atoi(e) && nvalid < N;
	return (size_t)(N - nvalid) * 8 >= (size_t)N;
}

/* The head's input rows [n0, n0 + M) of its hn: lnf's, or gathered from
 * lnf (the embedding lookup is that gather, F32 rows by index). */
static const float *head_in(const lora_llama *m, int n0, int M)
{
	const priv_t *p = P(m);
	int N = p->fB * p->fT, C = m->cfg.hidden_size;
	if (p->hn == N)
		return p->lnf + (size_t)n0 * C;
	m->be->embedding_forward(p->tmp, p->hidx + n0, p->lnf, LORA_DTYPE_F32, M, C);
	return p->tmp;
}

/* The head's backward for its rows [n0, n0 + M) (input in), their logits in
 * p->logits: the gradient of the mean loss in their place, then dln's rows
 * (written; gathered rows through p->dres, free until the backward's first
 * norm, and scattered into dln: embedding_backward adds each row to
 * dln's zeros, one row once, so exactly) and, full fine-tuning, dlm_head's
 * share. */
static void head_backward(lora_llama *m, const float *in, int n0, int M)
{
	const lora_backend *be = m->be;
	priv_t *p = P(m);
	int N = p->fB * p->fT, C = m->cfg.hidden_size, V = m->cfg.vocab_size;
	int gathered = p->hn < N;
	be->crossentropy_backward(p->logits, p->logits, p->targets + n0,
	                          m->grad_scale / p->nvalid, M, V);
	be->linear_backward(gathered ? p->dres : p->dln + (size_t)n0 * C, 0,
	                    m->full ? p->dlm_head : NULL, NULL, p->logits, LORA_DTYPE_F32, in,
	                    LORA_DTYPE_F32, m->lm_head, m->wdt, M, C, V);
	if (gathered)
		be->embedding_backward(p->dln, p->dres, p->hidx + n0, M, C);
}

/* The head over its hn rows, a chunk at a time: the losses, and with grad
 * the backward too (dln whole: the rows without a target zero). */
static void head(lora_llama *m, int loss, int grad)
{
	const lora_backend *be = m->be;
	priv_t *p = P(m);
	int N = p->fB * p->fT, V = m->cfg.vocab_size;
	if (grad && p->hn < N)
		be->zero(p->dln, (size_t)N * m->cfg.hidden_size * sizeof(float));
	for (int n0 = 0; n0 < p->hn; n0 += p->hrows) {
		int M = p->hn - n0 < p->hrows ? p->hn - n0 : p->hrows;
		const float *in = head_in(m, n0, M);
		head_logits(m, in, M);
		if (loss)
			be->crossentropy_forward(p->losses + n0, p->logits, p->targets + n0, M, V);
		if (grad)
			head_backward(m, in, n0, M);
	}
}

/* The forward; grad: also the head's backward, chunk by chunk while its
 * logits are there (lora_llama_forward_backward), so the backward does
 * not compute them again. Returns the number of targets (0: no loss);
 * the losses stay on the backend (forward_loss reads them). */
static int forward(lora_llama *m, const int32_t *ids, const int32_t *targets, int B, int T,
                   int grad)
{
	const lora_backend *be = m->be;
	const lora_llama_config *c = &m->cfg;
	priv_t *p = P(m);
	LORA_ASSERT(p->B > 0 && "lora_llama_plan first");
	LORA_ASSERT(B >= 1 && T >= 1 && B <= p->B && T <= p->T);
	int N = B * T, C = c->hidden_size, V = c->vocab_size;
	for (int i = 0; i < N; i++)
		LORA_ASSERT(ids[i] >= 0 && ids[i] < V);
	be->upload(p->ids, ids, N * sizeof(int32_t));
	p->fB = B;
	p->fT = T;
	be->embedding_forward(p->resid[0], p->ids, m->wte, m->wdt, N, C);
	for (int l = 0; l < c->n_layers; l++)
		layer_forward(m, l, &p->a[l], p->resid[l], p->resid[l + 1], B, T);
	be->rmsnorm_forward(p->lnf, LORA_DTYPE_F32, p->rstdf, p->resid[c->n_layers], NULL, m->lnf_w,
	                    m->wdt, N, C, c->rms_norm_eps);
	p->has_targets = 0;
	p->head_done = 0;
	if (!targets)
		return 0;
	int nvalid = 0;
	for (int i = 0; i < N; i++) {
		LORA_ASSERT(targets[i] == LORA_IGNORE_INDEX || (targets[i] >= 0 && targets[i] < V));
		nvalid += targets[i] != LORA_IGNORE_INDEX;
	}
	p->hn = N;
	if (nvalid && head_compact(N, nvalid)) {     /* the rows with a target, in order */
		int32_t *h = lora_xmalloc(2 * (size_t)nvalid * sizeof(int32_t)), *t = h + nvalid;
		for (int i = 0, k = 0; i < N; i++)
			if (targets[i] != LORA_IGNORE_INDEX) {
				h[k] = i;
				t[k++] = targets[i];
			}
		be->upload(p->hidx, h, nvalid * sizeof(int32_t));
		be->upload(p->targets, t, nvalid * sizeof(int32_t));
		free(h);
		p->hn = nvalid;
	} else {
		be->upload(p->targets, targets, N * sizeof(int32_t));
	}
	p->has_targets = 1;
	p->nvalid = nvalid;
	if (!nvalid)
		return 0;
	head(m, 1, grad);
	p->head_done = grad;
	return nvalid;
}

/* The mean of the last forward's losses (waits for the backend). */
static float forward_loss(const lora_llama *m)
{
	const priv_t *p = P(m);
	int N = p->hn;
	float *h = lora_xmalloc(N * sizeof(float));
	m->be->download(h, p->losses, N * sizeof(float));
	double sum = 0;
	for (int i = 0; i < N; i++)
		sum += h[i];
	free(h);
	return (float)(sum / p->nvalid);
}

float lora_llama_forward(lora_llama *m, const int32_t *ids, const int32_t *targets, int B, int T)
{
	return forward(m, ids, targets, B, T, 0) ? forward_loss(m) : NAN;
}

void lora_llama_logits(const lora_llama *m, float *host_out)
{
	const priv_t *p = P(m);
	int N = p->fB * p->fT, V = m->cfg.vocab_size;
	for (int n0 = 0; n0 < N; n0 += p->hrows) {
		int M = N - n0 < p->hrows ? N - n0 : p->hrows;
		head_logits(m, p->lnf + (size_t)n0 * m->cfg.hidden_size, M);
		m->be->download(host_out + (size_t)n0 * V, p->logits, (size_t)M * V * sizeof(float));
	}
}

/* ---- backward ------------------------------------------------------------------------------------------ */

/* One linear of a group's backward: module k, the gradient of its output
 * dout (N, OC) in fp32 (what its LoRA branch reads) and gdout, the same in
 * gdt for the base GEMM (dout itself, or a bf16 copy its producer wrote),
 * its weight, and (full fine-tuning) its weight's gradients. */
typedef struct {
	int k, OC;
	const float *dout;
	const void *gdout;
	lora_dtype gdt;
	const void *w;
	float *dw, *db;
} lin_bwd;

/* The backward of the n linears ls of layer l's group g, which all read
 * inp (N, C): dinp = Σ dout·W plus the group's LoRA part (and dW, db in
 * full mode). LoRA first: each branch's dB and its dh (lora_up_backward,
 * into the group's dh (N, R) at the start of the scratch), then dA and
 * dinp = the branches' share (lora_down_backward, dinp's first writer);
 * the base products then add to dinp in their GEMMs' epilogues, where
 * reading it hides under the arithmetic (added after, the branches'
 * share would read and write dinp once more). dinp NULL: only the LoRA
 * gradients (the first layer's q, k, v), and no base product in LoRA. */
static void group_bwd(lora_llama *m, int l, int g, acts *a, float *dinp, const void *inp,
                      const lin_bwd *ls, int n, int N, int C)
{
	const lora_backend *be = m->be;
	float *dh = P(m)->scratch;
	for (int i = 0; i < n; i++) {
		int idx = m->layers[l].lora[ls[i].k];
		if (idx < 0)
			continue;
		const lora_module *mo = &m->lora->mods[idx];
		int R, col = group_col(m, l, ls[i].k, &R);
		LORA_ASSERT(ls[i].dout);
		be->lora_up_backward(dh + col, mo->dB, ls[i].dout, a->h[g] + col, R, mo->B, mo->scale,
		                     N, ls[i].OC, mo->r);
	}
	lora_branch br[LORA_MOD_COUNT];
	int R, nb = group_branches(m, l, g, br, &R, NULL);
	if (nb)
		be->lora_down_backward(dinp, 0, dh, inp, P(m)->adt, br, nb, lora_p(m), N, C,
		                       dh + (size_t)N * R);
	for (int i = 0; i < n && (dinp || m->full); i++)
		be->linear_backward(dinp, nb > 0 || i > 0, m->full ? ls[i].dw : NULL,
		                    m->full ? ls[i].db : NULL, ls[i].gdout, ls[i].gdt, inp, P(m)->adt,
		                    ls[i].w, m->wdt, N, C, ls[i].OC);
}

/* A bf16 run's o and down GEMMs read the residual's gradient dres in bf16:
 * the rmsnorm_backward that last adds to it writes that copy too (no
 * conversion pass), here, in dgate's memory (N·C bf16 in N·I fp32): the
 * copy for down is read before swiglu_backward writes dgate, the one for o
 * after the gate, up backward has read it for the last time, and no
 * forward (a checkpointed layer's recomputation) uses dgate. NULL: fp32
 * (also for a model whose MLP is under half its width: none we know). */
static void *dres_bf16(const lora_llama *m)
{
	int fits = 2 * (size_t)m->cfg.intermediate_size >= (size_t)m->cfg.hidden_size;
	return m->wdt == LORA_DTYPE_BF16 && fits ? P(m)->dgate : NULL;
}

/* On entry p->dres is the gradient of the layer's output (and, in a bf16
 * run, dres_bf16 its bf16 copy); on return, of its input x (and the copy). */
static void layer_backward(lora_llama *m, int l, acts *a, const float *x, int B, int T)
{
	const lora_backend *be = m->be;
	const lora_llama_config *c = &m->cfg;
	const lora_llama_layer *y = &m->layers[l];
	priv_t *p = P(m);
	layer_grads *g = &p->g[l];
	int N = B * T, C = c->hidden_size, I = c->intermediate_size, NH = c->n_heads;
	int NKV = c->n_kv_heads, HS = c->head_dim, QD = NH * HS, KD = NKV * HS;
	const lora_dtype F32 = LORA_DTYPE_F32;
	/* bf16 weights and activations: the saved q, k, gate, up take bf16 gradients */
	int bf = m->wdt == LORA_DTYPE_BF16 && p->adt == LORA_DTYPE_BF16;
	void *dres_b = dres_bf16(m);
	const void *gres = dres_b ? dres_b : p->dres;     /* o's and down's GEMM operand */
	lora_dtype rdt = dres_b ? LORA_DTYPE_BF16 : F32;
	/* MLP: out = res2 + down(silu(gate(ln2)) * up(ln2)) */
	lin_bwd down = { LORA_MOD_DOWN, C, p->dres, gres, rdt, y->wdown, g->wdown, g->bdown };
	group_bwd(m, l, GROUP_DOWN, a, p->dswi, a->swi, &down, 1, N, I);
	/* dgate, dup: the bf16 GEMMs of a bf16 run get them in bf16 from
	 * swiglu_backward (the values they would convert them to, without the
	 * conversion pass): over the saved gate and up, which nothing reads
	 * after this, or, with fp32 activations, in dgate and dup when no LoRA
	 * branch needs those in fp32 */
	int lora_gu = y->lora[LORA_MOD_GATE] >= 0 || y->lora[LORA_MOD_UP] >= 0;
	float *dg = p->dgate, *du = p->dup;
	void *dgb = NULL, *dub = NULL;
	if (bf) {
		dgb = a->gate;
		dub = a->up;
	} else if (m->wdt == LORA_DTYPE_BF16 && !lora_gu) {
		dgb = p->dgate;
		dub = p->dup;
	}
	if (dgb && !lora_gu)
		dg = du = NULL;
	be->swiglu_backward(dg, du, dgb, dub, p->dswi, a->gate, a->up, p->adt, (size_t)N * I);
	lora_dtype gdt = dgb ? LORA_DTYPE_BF16 : F32;
	lin_bwd gateup[2] = {
		{ LORA_MOD_GATE, I, dg, dgb ? dgb : dg, gdt, y->wgate, g->wgate, g->bgate },
		{ LORA_MOD_UP, I, du, dub ? dub : du, gdt, y->wup, g->wup, g->bup } };
	group_bwd(m, l, GROUP_GATEUP, a, p->dln, a->ln2, gateup, 2, N, C);
	be->rmsnorm_backward(p->dres, dres_b, m->full ? g->ln2_w : NULL, p->dln, a->res2, y->ln2_w,
	                     m->wdt, a->rstd2, N, C);
	/* attention: res2 = x + o(attn(rope(q(ln1)), rope(k(ln1)), v(ln1))) */
	lin_bwd o = { LORA_MOD_O, C, p->dres, gres, rdt, y->wo, g->wo, g->bo };
	group_bwd(m, l, GROUP_O, a, p->datty, a->atty, &o, 1, N, QD);
	be->attention_backward(p->dq, p->dk, p->dv, p->datty, a->att, a->q, a->k, a->v, a->atty,
	                       p->adt, B, T, NH, NKV, HS, p->scratch, m->wdt == LORA_DTYPE_BF16);
	/* dq, dk for the bf16 GEMMs of a bf16 run straight from RoPE's backward,
	 * over the saved q and k (nothing reads them after attention_backward);
	 * in fp32 too where a LoRA branch reads them */
	/* The first layer's input is the embedding's output: unless the
	 * embedding trains (full fine-tuning), nothing reads its gradient, so
	 * layer 0 stops at its q, k, v LoRA branches: no q, k, v products for
	 * dln, no norm backward (autograd skips them the same way: no leaf
	 * behind them needs a gradient). */
	int dx = l > 0 || m->full;
	int lora_q = y->lora[LORA_MOD_Q] >= 0, lora_k = y->lora[LORA_MOD_K] >= 0;
	float *dq = (!bf && dx) || lora_q ? p->dq : NULL, *dk = (!bf && dx) || lora_k ? p->dk : NULL;
	void *dqb = bf && dx ? a->q : NULL, *dkb = bf && dx ? a->k : NULL;
	if (dq || dqb)
		be->rope_backward(dq, dqb, p->dq, p->rope_cos, p->rope_sin, B, T, NH, HS);
	if (dk || dkb)
		be->rope_backward(dk, dkb, p->dk, p->rope_cos, p->rope_sin, B, T, NKV, HS);
	lora_dtype qdt = bf ? LORA_DTYPE_BF16 : F32;
	lin_bwd qkv[3] = { { LORA_MOD_Q, QD, dq, bf ? a->q : p->dq, qdt, y->wq, g->wq, g->bq },
	                   { LORA_MOD_K, KD, dk, bf ? a->k : p->dk, qdt, y->wk, g->wk, g->bk },
	                   { LORA_MOD_V, KD, p->dv, p->dv, F32, y->wv, g->wv, g->bv } };
	group_bwd(m, l, GROUP_QKV, a, dx ? p->dln : NULL, a->ln1, qkv, 3, N, C);
	/* the last use of dres_b in this layer is o's, above: the copy here is
	 * for the next layer down's */
	if (dx)
		be->rmsnorm_backward(p->dres, l > 0 ? dres_b : NULL, m->full ? g->ln1_w : NULL,
		                     p->dln, x, y->ln1_w, m->wdt, a->rstd1, N, C);
}

void lora_llama_backward(lora_llama *m)
{
	const lora_backend *be = m->be;
	const lora_llama_config *c = &m->cfg;
	priv_t *p = P(m);
	LORA_ASSERT(p->has_targets && "lora_llama_backward needs a forward with targets");
	int B = p->fB, T = p->fT, N = B * T, C = c->hidden_size;
	if (!p->nvalid)
		return;     /* no loss, no gradient */
	/* head: loss = mean CE(lnf·lm_headᵀ), a chunk of rows at a time: the
	 * logits again (unless the forward did this part), dlogits in their
	 * place, then dln's rows and dlm_head */
	if (!p->head_done)
		head(m, 0, 1);
	be->zero(p->dres, (size_t)N * C * sizeof(float));
	be->rmsnorm_backward(p->dres, dres_bf16(m), m->full ? p->dlnf_w : NULL, p->dln,
	                     p->resid[c->n_layers], m->lnf_w, m->wdt, p->rstdf, N, C);
	for (int l = c->n_layers - 1; l >= 0; l--) {
		if (p->ckpt)    /* recompute this layer's activations from its saved input */
			layer_forward(m, l, &p->a[l], p->resid[l], p->resid[l + 1], B, T);
		layer_backward(m, l, &p->a[l], p->resid[l], B, T);
	}
	if (m->full)
		be->embedding_backward(p->dwte, p->dres, p->ids, N, C);
	p->has_targets = 0;     /* the targets' gradient is spent */
	p->head_done = 0;
}

float lora_llama_forward_backward(lora_llama *m, const int32_t *ids, const int32_t *targets,
                                  int B, int T)
{
	LORA_ASSERT(targets && "lora_llama_forward_backward needs targets");
	if (!forward(m, ids, targets, B, T, 1))
		return NAN;
	lora_llama_backward(m);
	return forward_loss(m);     /* after the backward is queued: one wait */
}
