/* llama.h: LLaMA-family causal language models (Llama 1/2/3, TinyLlama,
 * Mistral, Qwen2, SmolLM) loaded from a Hugging Face folder, with forward,
 * backward and LoRA adapters (FORMATS.md §5), in the style of llm.c.
 *
 *     lora_llama *m = lora_llama_load("models/tiny", be, 0);      // 1: full FT
 *     lora_llama_add_lora(m, &cfg, seed);      // or lora_llama_load_lora(m, dir)
 *     if (lora_llama_plan(m, B, T, 0) != 0) die("%s", lora_errmsg());
 *     lora_params_zero_grad(lora_llama_params(m), be);
 *     float loss = lora_llama_forward(m, ids, targets, B, T);   // host int32 (B, T)
 *     lora_llama_backward(m);                  // grads += into the param list
 *     // or both at once: lora_llama_forward_backward(m, ids, targets, B, T)
 *     lora_llama_free(m);
 *
 * Inputs: ids (B, T) and targets (B, T) are host int32 arrays. targets[b][t]
 * is the token position t predicts (the caller shifts: HF's labels[t+1]);
 * LORA_IGNORE_INDEX (-100) for positions without loss. The loss is the mean
 * over non-ignored targets of the call (HF's causal-LM loss).
 *
 * Weights: frozen weights are uploaded in be->wdtype; with full = 1 every
 * weight is an F32 trainable parameter (HF key names) with a gradient.
 * Files in F32, F16 or BF16 are converted on load.
 *
 * Memory: lora_llama_plan allocates one activation arena for B, T (any later
 * forward may use B' <= B, T' <= T). gradient checkpointing keeps only each
 * layer's input and recomputes the layer during the backward. Nothing is
 * allocated during forward/backward. lora_llama_memory computes the same
 * numbers without loading anything (for --dry-run and batch-size search).
 *
 * Ownership: lora_llama_load's result is freed by lora_llama_free, which
 * frees weights, adapter, arena and the param list. Failure: NULL / -1 with
 * lora_errmsg naming the file and the field ("'m/config.json': unsupported
 * rope_scaling type 'yarn'").
 */
#ifndef LORA_LLAMA_H
#define LORA_LLAMA_H
#include <stddef.h>
#include <stdint.h>
#include "backend.h"     /* lora_backend, lora_rope_params */
#include "lora.h"        /* lora_adapter, lora_params */

/* ---- configuration (config.json) --------------------------------------------- */

typedef struct {
	char model_type[32];     /* "llama", "mistral", "qwen2" */
	int vocab_size;          /* V */
	int hidden_size;         /* C */
	int intermediate_size;   /* I */
	int n_layers;            /* L: num_hidden_layers */
	int n_heads;             /* NH: num_attention_heads */
	int n_kv_heads;          /* NKV: num_key_value_heads (default NH) */
	int head_dim;            /* HS (default C / NH) */
	int max_position_embeddings;
	float rms_norm_eps;
	lora_rope_params rope;   /* rope_theta, llama3 rope_scaling */
	int qkv_bias;            /* q/k/v biases (Qwen2, attention_bias) */
	int o_bias;              /* o_proj bias (attention_bias) */
	int mlp_bias;            /* gate/up/down biases (mlp_bias) */
	int tie_word_embeddings; /* lm_head shares embed_tokens */
	int sliding_window;      /* Mistral/Qwen2; 0 = none. T must not exceed it */
	int bos_token_id, eos_token_id;   /* -1 if absent (eos: first of a list) */
} lora_llama_config;

/* Parse dir/config.json. Unsupported fields (hidden_act other than silu,
 * rope_scaling type other than llama3, a true use_sliding_window,
 * pretraining_tp with a different numeric result, model_type outside the
 * family) are an error naming the field and value. 0/-1. */
int lora_llama_config_load(const char *dir, lora_llama_config *c);
/* Parameter counts: every weight, and the LoRA values for cfg (NULL: 0). */
size_t lora_llama_n_params(const lora_llama_config *c);
size_t lora_llama_n_lora_params(const lora_llama_config *c, const lora_adapter_config *cfg);

/* ---- memory plan ------------------------------------------------------------------ */

typedef struct {
	size_t weights;          /* frozen weights (in wdtype) */
	size_t trainable;        /* trainable values, F32 */
	size_t grads;            /* their gradients */
	size_t optimizer;        /* AdamW moments */
	size_t activations;      /* the arena of lora_llama_plan */
	size_t total;            /* the sum: what the run needs on the device */
} lora_llama_mem;

typedef struct {
	int full;                /* train_mode: full */
	int grad_ckpt;           /* gradient_checkpointing */
	const lora_adapter_config *lora;   /* NULL in full mode */
} lora_llama_opts;

/* Bytes needed for a run at (B, T) on backend be (its wdtype and attention
 * layout), computed from the config alone. */
lora_llama_mem lora_llama_memory(const lora_llama_config *c, const lora_backend *be,
                                 int B, int T, const lora_llama_opts *o);
/* The largest batch size B <= B_max whose lora_llama_memory(...).total fits
 * in capacity bytes; 0 if not even B = 1 fits. */
int lora_llama_max_batch(const lora_llama_config *c, const lora_backend *be, int T,
                         const lora_llama_opts *o, size_t capacity, int B_max);
/* The same for the sequence length T <= T_max at batch size B. */
int lora_llama_max_seq(const lora_llama_config *c, const lora_backend *be, int B,
                       const lora_llama_opts *o, size_t capacity, int T_max);

/* ---- the model ------------------------------------------------------------------------ */

/* Weights of one block; void* are backend buffers in `wdt` (F32 in full mode). */
typedef struct {
	void *ln1_w;             /* (C) input_layernorm */
	void *wq, *wk, *wv;      /* (NH*HS, C), (NKV*HS, C), (NKV*HS, C) */
	void *bq, *bk, *bv;      /* (NH*HS), (NKV*HS), (NKV*HS) or NULL */
	void *wo;                /* (C, NH*HS) */
	void *bo;                /* (C) or NULL */
	void *ln2_w;             /* (C) post_attention_layernorm */
	void *wgate, *wup;       /* (I, C) */
	void *wdown;             /* (C, I) */
	void *bgate, *bup, *bdown;   /* (I), (I), (C) or NULL */
	int lora[LORA_MOD_COUNT];    /* adapter module index per layer kind, -1 = none */
} lora_llama_layer;

typedef struct lora_llama lora_llama;
struct lora_llama {
	lora_llama_config cfg;
	const lora_backend *be;
	lora_dtype wdt;          /* dtype of the weight buffers */
	int full;                /* every weight trainable */
	void *wte;               /* (V, C) embed_tokens */
	void *lm_head;           /* (V, C); == wte when tied */
	void *lnf_w;             /* (C) model.norm */
	lora_llama_layer *layers;    /* (L) */
	lora_adapter *lora;      /* NULL until add_lora/load_lora */
	lora_params params;      /* trainable tensors (LoRA, or all in full mode) */
	int training;            /* 1: dropout active (default 1) */
	uint64_t dropout_seed;   /* LoRA dropout masks derive from it; set it per
	                          * step, and keep it between forward and backward */
	float grad_scale;        /* backward scales the gradient of the mean loss by
	                          * this: 1 (default), or 1/k to accumulate k
	                          * micro-batches into a mean of means */
	size_t n_params;         /* every weight of the base model */
	void *priv;              /* arena, gradient buffers, saved inputs */
};

/* Load dir (config.json + model.safetensors or model.safetensors.index.json).
 * full = 1: weights F32, trainable (params filled with HF names). NULL on error. */
lora_llama *lora_llama_load(const char *dir, const lora_backend *be, int full);

/* 0 when be can run the model of config c (read from dir), else -1 and
 * lora_err "'dir' on DEVICE: why" (a GPU whose shared memory per block
 * cannot hold attention at c's head size). lora_llama_load asks it; a
 * caller can ask before loading anything. */
int lora_llama_check_backend(const char *dir, const lora_llama_config *c,
                             const lora_backend *be);
void lora_llama_free(lora_llama *m);     /* NULL ok */

/* Attach a fresh adapter on every layer kind in cfg->targets (PEFT init from
 * seed) and list its tensors in params. 0/-1. */
int lora_llama_add_lora(lora_llama *m, const lora_adapter_config *cfg, uint64_t seed);
/* Attach the adapter in dir (adapter_config.json + adapter_model.safetensors),
 * e.g. for init_lora. 0/-1 (message names the file and the tensor). */
int lora_llama_load_lora(lora_llama *m, const char *dir);
/* Save the adapter as a PEFT folder. 0/-1. */
int lora_llama_save_lora(const lora_llama *m, const char *dir, const char *base_model);

/* Allocate the activation arena for batches up to (B, T). Call again to
 * re-plan (the old arena is freed). 0, or -1 + a message with the bytes
 * needed (out of memory, T beyond max_position_embeddings/sliding_window). */
int lora_llama_plan(lora_llama *m, int B, int T, int grad_ckpt);

/* Forward pass on host ids/targets (B, T). ids must lie in [0, vocab_size)
 * and targets too, or be -100 (asserted: check data against the model's
 * vocabulary first). Returns the mean loss, or NAN
 * when targets is NULL or all ignored. The (B, T, V) logits are never kept
 * whole: the head computes them a chunk of rows at a time (at most 64 MiB),
 * for the loss here and again in the backward. */
float lora_llama_forward(lora_llama *m, const int32_t *ids, const int32_t *targets, int B, int T);
/* A training step's forward and backward in one call (targets required):
 * the same loss and the same gradients bit for bit as lora_llama_forward
 * then lora_llama_backward, but the head's backward runs on each chunk of
 * logits while the forward has it, so they are computed once, not twice
 * (the lm_head product is ~3% of a TinyLlama step), and the loss is read
 * after the backward is queued (no wait between the two on a GPU). */
float lora_llama_forward_backward(lora_llama *m, const int32_t *ids, const int32_t *targets,
                                  int B, int T);
/* The logits (B, T, V) of the last forward, computed again chunk by chunk
 * into host memory (for tests and inspection). */
void lora_llama_logits(const lora_llama *m, float *host_out);
/* Backward of the last forward (which must have had targets): adds the
 * gradients into params' grad buffers (LoRA A/B, or every weight when full).
 * Frozen layers compute only input gradients. */
void lora_llama_backward(lora_llama *m);
/* The trainable tensors (borrowed; lives as long as m). */
lora_params *lora_llama_params(lora_llama *m);

#endif
