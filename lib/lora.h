/* lora.h: LoRA adapters: configuration, PEFT-style initialisation, the
 * trainable-parameter list, and PEFT files (FORMATS.md §4).
 *
 * An adapter is a list of modules, each the low-rank pair of one frozen
 * linear layer, named by that layer's module path in the base model
 * ("model.layers.3.self_attn.q_proj"). The model (lib/llama.h) decides which
 * layers get one and runs them; this file owns the tensors and the files.
 *
 *     lora_adapter_config cfg = lora_adapter_config_default();  // r 8, alpha 16
 *     lora_adapter *ad = lora_adapter_new(&cfg, be);
 *     lora_adapter_add(ad, "model.layers.0.self_attn.q_proj", 64, 64);
 *     lora_adapter_init(ad, 42);                  // A ~ U(±1/sqrt(in)), B = 0
 *     lora_adapter_save(ad, "out", "base/folder");  // PEFT folder
 *     lora_adapter_free(ad);
 *
 * Tensors live in backend memory (be->alloc): A, B and their gradients dA,
 * dB, all F32. Every A and B is a slice of ONE buffer, in the order
 * A0, B0, A1, B1, ... (the order lora_params_add_adapter lists them), and
 * dA, dB are slices of one gradient buffer with the same layout, so the
 * optimizer updates the whole adapter in one call (see lora_params). The
 * buffer grows while modules are added, which moves every module's tensors:
 * take the A, B, dA, dB pointers after the last lora_adapter_add, and call
 * lora_adapter_reserve with the total first to allocate once. The adapter
 * owns the buffers; lora_adapter_free releases everything.
 *
 * Initialisation RNG (ours, documented; it does not reproduce torch's
 * stream): module k (in the order added) draws A's r·in values in row-major
 * order as lora_rng_uniform from a lora_rng seeded with
 * seed + 0x9E3779B97F4A7C15·(k+1), mapped to U(-1/sqrt(in), +1/sqrt(in)),
 * which is PEFT's kaiming_uniform_(a=sqrt(5)); B is zero.
 *
 * Errors: functions returning int give 0 or -1 + lora_err (a message that
 * names the file and the problem); constructors never fail except on OOM
 * (abort).
 */
#ifndef LORA_LORA_H
#define LORA_LORA_H
#include <stddef.h>
#include <stdint.h>
#include "backend.h"     /* lora_backend */

/* ---- random numbers -------------------------------------------------------- */

/* splitmix64: state += golden; output = mix(state). Uniform floats take the
 * top 24 bits: [0, 1). */
typedef struct { uint64_t s; } lora_rng;
static inline uint64_t lora_rng_next(lora_rng *g)
{
	uint64_t z = (g->s += 0x9E3779B97F4A7C15ULL);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
	return z ^ (z >> 31);
}
static inline float lora_rng_uniform(lora_rng *g)
{
	return (float)(lora_rng_next(g) >> 40) * (1.0f / 16777216.0f);
}

/* ---- configuration ----------------------------------------------------------- */

/* The linear layers of a LLaMA block that can carry an adapter. */
typedef enum {
	LORA_MOD_Q, LORA_MOD_K, LORA_MOD_V, LORA_MOD_O,
	LORA_MOD_GATE, LORA_MOD_UP, LORA_MOD_DOWN,
	LORA_MOD_COUNT
} lora_mod;
const char *lora_mod_name(lora_mod m);     /* "q_proj" ... "down_proj" */
int lora_mod_parse(const char *s);         /* "q_proj" or "q" -> lora_mod; -1 */

typedef struct {
	int r;                  /* rank */
	float alpha;            /* lora_alpha */
	float dropout;          /* lora_dropout, on the input of A, training only */
	int use_rslora;         /* scale alpha/sqrt(r) instead of alpha/r */
	unsigned targets;       /* bit (1u << lora_mod) per targeted layer kind */
} lora_adapter_config;

lora_adapter_config lora_adapter_config_default(void);  /* r 8, alpha 16, q+v */
float lora_adapter_config_scale(const lora_adapter_config *c);
/* Parse "q_proj,v_proj" / "all-linear" / "q,k,v,o,gate,up,down" into targets. */
int lora_targets_parse(const char *s, unsigned *targets);

/* ---- adapters ------------------------------------------------------------------ */

typedef struct {
	char *name;             /* base module path, "model.layers.0.self_attn.q_proj" */
	int in, out, r;
	float scale;            /* alpha/r or alpha/sqrt(r) */
	float *A;               /* (r, in)  backend F32 */
	float *B;               /* (out, r) backend F32 */
	float *dA;              /* (r, in) */
	float *dB;              /* (out, r) */
} lora_module;

typedef struct {
	lora_adapter_config cfg;
	const lora_backend *be;
	int n;                  /* modules */
	lora_module *mods;      /* (n) in the order added */
	char *base_model;       /* base_model_name_or_path written to the config, or NULL */
	float *data;            /* (cap) backend F32: A0, B0, A1, B1, ... then zeros */
	float *grad;            /* (cap) dA0, dB0, ... the same layout */
	size_t used, cap;       /* floats in use / allocated in each buffer */
} lora_adapter;

lora_adapter *lora_adapter_new(const lora_adapter_config *cfg, const lora_backend *be);
/* Make room for `floats` values of A and B in all (Σ r·(in + out) over the
 * modules to come): the adds that follow then allocate nothing. */
void lora_adapter_reserve(lora_adapter *ad, size_t floats);
/* Append a module (A, B, dA, dB zero; the buffers grow, doubling, when the
 * reserve is used up: earlier modules' pointers move). Returns its index. */
int lora_adapter_add(lora_adapter *ad, const char *name, int in, int out);
lora_module *lora_adapter_find(lora_adapter *ad, const char *name);   /* NULL */
/* PEFT init: A kaiming-uniform from the RNG above, B zero. */
void lora_adapter_init(lora_adapter *ad, uint64_t seed);
void lora_adapter_free(lora_adapter *ad);              /* NULL ok */

/* Write dir/adapter_model.safetensors (F32, keys
 * "base_model.model.<name>.lora_A.weight" / "...lora_B.weight", metadata
 * format=pt) and dir/adapter_config.json (PEFT fields, sorted keys).
 * Creates dir if missing. Each file appears atomically. 0/-1. */
int lora_adapter_save(const lora_adapter *ad, const char *dir, const char *base_model);
/* Read dir/adapter_config.json: r, lora_alpha, lora_dropout, use_rslora,
 * target_modules into cfg. Unsupported settings (use_dora, fan_in_fan_out,
 * rank_pattern/alpha_pattern non-empty, bias other than "none",
 * lora_bias true) are an error naming the field. 0/-1. */
int lora_adapter_read_config(const char *dir, lora_adapter_config *cfg);
/* Load A/B of every module of ad from dir/adapter_model.safetensors (F32,
 * F16 or BF16). A tensor missing for a module, a shape mismatch, or a tensor
 * in the file that matches no module is an error naming it. 0/-1. */
int lora_adapter_load_weights(lora_adapter *ad, const char *dir);

/* ---- the trainable-parameter list ----------------------------------------------- */

/* A flat view of every trainable tensor, for the optimizer, gradient
 * clipping, checkpoints and full fine-tuning. data/grad are backend F32.
 *
 * Entry i owns values off[i] .. off[i+1] of the flat list (where its AdamW
 * moments are). The list also keeps its maximal RUNS of consecutive entries
 * whose buffers follow each other in memory, so that the per-step work is
 * one backend call per run instead of one per tensor:
 *   grad runs: p[i].grad == p[i-1].grad + p[i-1].n (zeroing, scaling and
 *              the sums of squares of clipping);
 *   step runs: the same for grad AND data, and the same decay (one
 *              adamw_update call).
 * An adapter's tensors are one buffer (lora_adapter_add), so LoRA mode is
 * one run of each kind; tensors allocated one by one give one run each. */
typedef struct {
	char *name;             /* file key: PEFT key for LoRA, HF key in full mode */
	float *data;            /* (n) */
	float *grad;            /* (n) */
	size_t n;
	int ndim;
	int64_t shape[2];
	int decay;              /* 1: weight decay applies (0 for norms, biases) */
} lora_param;

typedef struct {
	int first, count;       /* entries p[first .. first+count) */
	size_t n;               /* values in the run: off[first+count] - off[first] */
} lora_param_run;

typedef struct {
	int n;
	lora_param *p;          /* (n) */
	size_t total;           /* sum of p[i].n */
	size_t *off;            /* (n + 1) flat offsets: off[0] = 0, off[n] = total */
	int ngrad_runs, nstep_runs;
	lora_param_run *grad_runs;   /* (ngrad_runs) contiguous grads */
	lora_param_run *step_runs;   /* (nstep_runs) contiguous data and grads, one decay */
} lora_params;

/* Append one entry (name copied); extends the last runs when its buffers
 * follow the previous entry's. */
void lora_params_add(lora_params *ps, const char *name, float *data, float *grad,
                     int ndim, const int64_t *shape, int decay);
/* The entries of an adapter: for each module, lora_A then lora_B. */
void lora_params_add_adapter(lora_params *ps, const lora_adapter *ad);
/* grad = 0 and grad *= s over every entry: one backend call per grad run. */
void lora_params_zero_grad(const lora_params *ps, const lora_backend *be);
void lora_params_scale_grad(const lora_params *ps, const lora_backend *be, float s);
void lora_params_free(lora_params *ps);     /* frees names and the arrays */

#endif
