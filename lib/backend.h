/* backend.h: the op layer. Every tensor operation the models use, forward and
 * backward, as a table of function pointers chosen once per run.
 *
 *     const lora_backend *be = lora_backend_get("auto");   // "cpu", "cuda", "cuda:1"
 *     if (!be) die("%s", lora_errmsg());
 *     float *x = be->alloc(N * C * sizeof(float));          // backend memory
 *     be->upload(x, host, N * C * sizeof(float));
 *     be->rmsnorm_forward(y, LORA_DTYPE_F32, rstd, x, NULL, w, be->wdtype, N, C, 1e-5f);
 *
 * Style (llm.c): every op takes raw pointers plus sizes; shapes are written
 * in each comment as (B, T, C) etc., row-major, last index fastest. There is
 * no tensor struct and no autograd graph: a model calls X_forward in order
 * and X_backward in reverse order, keeping what the backward needs.
 *
 * ---- Decisions -------------------------------------------------------------
 *
 * Memory. Every pointer an op receives is backend memory from be->alloc (on
 * the CPU backend that is plain host memory; on CUDA device memory). Token
 * ids and targets are backend memory too (int32). Host code moves data with
 * upload/download. Scalars (sizes, eps, scale) are passed by value.
 *
 * Dtypes. GRADIENTS are always fp32 (float *). ACTIVATIONS are fp32, except
 * the ones a model keeps for its backward, which may be stored in the
 * activation dtype `adt` (lora_dtype, F32 or BF16): the ops that produce or
 * read such tensors take `void *` plus an `adt`/`idt`/`odt` argument. A
 * bf16 run (frozen weights BF16 on CUDA) stores them in BF16, as PyTorch
 * does, which halves activation memory and spares each bf16 GEMM its input
 * conversion; the arithmetic inside an op stays fp32. The CPU implements F32
 * only (it never runs with BF16 weights). TRAINABLE
 * tensors (LoRA A/B, every weight in full fine-tuning, AdamW moments) are
 * always fp32. FROZEN WEIGHTS are backend-owned buffers in be->wdtype: F32 on
 * the CPU, BF16 (or F16, per `precision`) on CUDA. Because a weight can be
 * frozen (wdtype) or trainable (F32) in the same run, every op that reads a
 * weight takes `const void *w` plus its `lora_dtype wdt`. A backend asserts
 * on a dtype it does not implement (the CPU backend implements F32 only; the
 * model never hands it anything else). A backend with a faster internal
 * activation type (CUDA bf16) converts inside the op; the signatures stay.
 *
 * Gradients ACCUMULATE: every X_backward does `dinp += ...` and
 * `dweight += ...`, so a tensor read by two ops (the residual stream, a tied
 * embedding) just gets both contributions; the caller zeroes gradient
 * buffers before the backward pass (be->zero). A NULL gradient pointer means
 * "not needed" (a frozen weight, or the input of the first layer) and that
 * work is skipped entirely: backward through a frozen linear is one matmul.
 * Exceptions are marked (crossentropy_backward, swiglu_backward,
 * rope_backward and attention_backward write; the dinp of linear_backward and
 * lora_down_backward, and the out of linear_forward and lora_up, say by
 * their acc argument).
 *
 * In-place. Marked per op ("out may alias inp").
 *
 * State an op saves for its backward (rmsnorm's rstd, attention's softmax
 * rows, LoRA's r-sized intermediate) is a caller-provided buffer whose size
 * the op documents; attention's size is backend-defined (the CPU keeps the
 * (B, NH, T, T) probabilities, CUDA a flash-style (B, NH, T) log-sum-exp),
 * so callers ask be->attention_saved_floats. Ops that need temporary memory
 * take a `scratch` buffer of a documented size: there are no allocations
 * inside ops, so a training step does no malloc at all.
 *
 * Threads. The CPU backend threads matmuls through OpenBLAS and the other
 * ops through lora_parallel_for with lora_nthreads() threads. Results are
 * deterministic for a given thread count.
 *
 * Adding an op: add the pointer pair here with its shape comment, write the
 * reference in lib/ops_cpu.c (plain loops first; then speed), add a torch
 * autograd case to tests/gen/gen_ops.py and a check to tests/test-ops.c, and
 * (later) the kernel in kernels/. Model code then calls be->X_forward.
 *
 * Image models (next) add ops in the same shape: conv2d (NCHW, weight
 * (OC, C/groups, kh, kw) + wdt), group_norm (N, C, HW with saved mean/rstd),
 * and cross-attention as attention with separate query/key lengths and no
 * causal mask; LoRA on convs reuses lora_down/lora_up on im2col'd rows.
 *
 * Ownership: the backend tables are static; nothing to free. Failure:
 * lora_backend_get returns NULL + lora_err for an unknown device or a CUDA
 * device that cannot be opened; alloc returns NULL + lora_err when out of
 * memory (the model turns that into a message with the sizes). Ops do not
 * fail; they assert on broken invariants.
 */
#ifndef LORA_BACKEND_H
#define LORA_BACKEND_H
#include <stddef.h>
#include <stdint.h>
#include "dtype.h"       /* lora_dtype */

#define LORA_IGNORE_INDEX (-100)   /* target that contributes no loss */

/* One LoRA branch of a group that shares its input (see lora_down). */
typedef struct {
	const float *A;          /* (r, C) F32 */
	float *dA;               /* (r, C) F32, backward += */
	int r;
	uint64_t seed;           /* its dropout mask */
} lora_branch;

/* R: the total rank of nb branches (the columns of their h). */
static inline int lora_branch_rank(const lora_branch *br, int nb)
{
	int R = 0;
	for (int i = 0; i < nb; i++)
		R += br[i].r;
	return R;
}

/* The scratch of lora_down / lora_down_backward for nb branches of total
 * rank R: with dropout, drop(inp) in fp32 (N·C floats); else [A_0; A_1; ...]
 * (R·C floats) for a group, and for a 16-bit input the backend's split
 * products (CUDA: A or dh in three bf16 parts and the three partial
 * results, at most 3·N·R + 3·R·C floats, plus alignment). */
static inline size_t lora_down_scratch_floats(int N, int C, int R, int nb, float p,
                                              lora_dtype idt)
{
	if (p > 0)
		return (size_t)N * C;
	if (idt != LORA_DTYPE_F32)
		return 3 * (size_t)N * R + 3 * (size_t)R * C + 64;
	return nb > 1 ? (size_t)R * C : 0;
}

typedef struct lora_backend lora_backend;
struct lora_backend {
	const char *name;          /* "cpu", "cuda:0" */
	const char *desc;          /* the device in words for a log line ("NVIDIA H100
	                            * 80GB HBM3, compute capability 9.0, 132 SMs"), or NULL */
	lora_dtype wdtype;         /* dtype of frozen weight buffers */
	int is_host;               /* 1 when alloc'ed memory is host memory */

	/* ---- memory --------------------------------------------------------- */
	void *(*alloc)(size_t bytes);               /* zeroed; NULL + lora_err on OOM */
	void (*free)(void *p);                      /* NULL ok */
	void (*upload)(void *dst, const void *host_src, size_t bytes);
	void (*download)(void *host_dst, const void *src, size_t bytes);
	void (*copy)(void *dst, const void *src, size_t bytes);   /* backend to backend */
	void (*zero)(void *p, size_t bytes);
	/* Convert n host f32 values into a backend buffer of dtype dt (F32 or
	 * the backend's wdtype). */
	void (*upload_f32)(void *dst, lora_dtype dt, const float *host_src, size_t n);
	/* Store n host values of dtype st (F32, F16 or BF16; host_src may be
	 * unaligned: a tensor in a mapped safetensors file) into a buffer of
	 * dtype dt (F32 or the backend's wdtype), rounded to nearest even as
	 * lib/dtype.c rounds. Equal dtypes copy the bytes; CUDA converts on the
	 * device, so a weight crosses the bus once, in the file's dtype. */
	void (*upload_from)(void *dst, lora_dtype dt, const void *host_src, lora_dtype st,
	                    size_t n);
	void (*sync)(void);                         /* wait for queued work */
	/* Bytes allocated now / at most since start, and the device's capacity
	 * (CPU: physical RAM). */
	void (*mem_info)(size_t *used, size_t *peak, size_t *capacity);

	/* ---- embedding --------------------------------------------------------
	 * out (N, C) = wte[ids[n]]; wte (V, C). ids outside [0, V) assert.
	 * backward: dwte (V, C) += dout rows (dwte is F32, trainable only). */
	void (*embedding_forward)(float *out, const int32_t *ids, const void *wte,
	                          lora_dtype wdt, int N, int C);
	void (*embedding_backward)(float *dwte, const float *dout, const int32_t *ids,
	                           int N, int C);

	/* ---- RMSNorm ----------------------------------------------------------
	 * out (N, C) = inp * rstd * w, rstd (N) = 1/sqrt(mean(inp^2) + eps) saved.
	 * copy (N, C), unless NULL, gets inp as it is: the start of the next
	 * residual sum, to which a GEMM then adds in its epilogue (written here,
	 * where inp is read anyway, instead of a tmp and an add pass later).
	 * backward: dinp (N, C) +=, dw (C) += (NULL: frozen). dinp_b (N, C),
	 * unless NULL, gets dinp's new value rounded once to BF16: the operand
	 * of the bf16 GEMMs that read the residual's gradient next (o and down,
	 * linear_backward's ddt), without a pass that converts dinp; it needs
	 * dinp. */
	void (*rmsnorm_forward)(void *out, lora_dtype odt, float *rstd, const float *inp,
	                        float *copy, const void *w, lora_dtype wdt, int N, int C,
	                        float eps);
	void (*rmsnorm_backward)(float *dinp, void *dinp_b, float *dw, const float *dout,
	                         const float *inp, const void *w, lora_dtype wdt,
	                         const float *rstd, int N, int C);

	/* ---- linear (matmul) ----------------------------------------------------
	 * out (N, OC) = inp (N, C) · w (OC, C)ᵀ + bias (OC)   (bias may be NULL;
	 * bias has the weight's dtype; inp is in idt), in odt: accumulated in
	 * fp32 and rounded once (a BF16 out needs BF16 inp and w, as PyTorch's
	 * bf16 linear: the q, k, v, gate and up of a bf16 run go straight into
	 * their saved copies). acc 0: out is written, not read; acc 1 (F32 out
	 * only): out += the product, which a GEMM adds in its epilogue while
	 * it computes (how a LoRA branch written first is folded in).
	 * backward: dinp (N, C) += dout·w, or = when acc is 0 (the first writer
	 * of a fresh gradient: no zero fill, and the product does not read it);
	 * dw (OC, C) += doutᵀ·inp; dbias (OC) += column sums. Each of dinp, dw,
	 * dbias may be NULL (skipped); inp is read only for dw. dout is in ddt:
	 * F32, or BF16 with a BF16 w and dinp alone (a gradient its producer
	 * wrote in bf16 because only this product reads it: what the GEMM
	 * would convert it to anyway, without the conversion pass). */
	void (*linear_forward)(void *out, int acc, lora_dtype odt, const void *inp, lora_dtype idt,
	                       const void *w, const void *bias, lora_dtype wdt, int N, int C,
	                       int OC);
	void (*linear_backward)(float *dinp, int acc, float *dw, float *dbias, const void *dout,
	                        lora_dtype ddt, const void *inp, lora_dtype idt, const void *w,
	                        lora_dtype wdt, int N, int C, int OC);

	/* ---- LoRA branches --------------------------------------------------------
	 * Branch i adds out_i (N, OC_i) += scale_i · (drop_i(inp) · A_iᵀ) · B_iᵀ,
	 * A_i (r_i, C), B_i (OC_i, r_i) F32. The branches of one input (q, k and v
	 * all read ln1; gate and up read ln2) form a group, described by an array
	 * of lora_branch, and the branch is split in two ops so that the group's
	 * input is read once:
	 *   lora_down  h (N, R) = [drop_0(inp)·A_0ᵀ | drop_1(inp)·A_1ᵀ | ...],
	 *              R = Σ r_i: branch i in columns [o_i, o_i + r_i),
	 *              o_i = Σ_{j<i} r_j. h is saved for the backward.
	 *   lora_up    out (N, OC) += scale · h_i · Bᵀ, h_i = h + o_i (row stride ldh);
	 *              out in odt (the sum in fp32, rounded once: PEFT adds
	 *              the fp32 branch to the bf16 base output and casts).
	 *              acc 0 (F32 out only): out = the branch, not read; the
	 *              base linear_forward then adds to it (acc 1).
	 * drop_i() zeroes element e of inp (the flat index n*C + c) when
	 * lora_dropout_u(seed_i, e) < p and scales the rest by 1/(1-p); p = 0 is
	 * the identity, and then the group is one product with [A_0; A_1; ...]
	 * (each branch has its own mask when p > 0, as PEFT's separate dropout
	 * modules do, so then it is one product per branch). The masks are
	 * recomputed from (seed_i, e), never stored. inp is in idt; the products
	 * are fp32.
	 * backward, in reverse: lora_up_backward for each branch (dB += scale ·
	 * doutᵀ·h_i; WRITES dh_i = scale · dout · B into columns o_i of dh (N, R),
	 * row stride ldh), then lora_down_backward once for the group (dA_i +=
	 * dh_iᵀ·drop_i(inp); dinp (N, C) += Σ_i drop_i'(dh_i · A_i), or = when
	 * acc is 0 (written, not read: then the base linear_backward calls add
	 * to it, acc 1); NULL: skip).
	 * scratch of lora_down and lora_down_backward: lora_down_scratch_floats. */
	void (*lora_down)(float *h, const void *inp, lora_dtype idt, const lora_branch *br,
	                  int nb, float p, int N, int C, float *scratch);
	void (*lora_up)(void *out, int acc, lora_dtype odt, const float *h, int ldh, const float *B,
	                float scale, int N, int OC, int r);
	void (*lora_up_backward)(float *dh, float *dB, const float *dout, const float *h, int ldh,
	                         const float *B, float scale, int N, int OC, int r);
	void (*lora_down_backward)(float *dinp, int acc, const float *dh, const void *inp,
	                           lora_dtype idt, const lora_branch *br, int nb, float p, int N,
	                           int C, float *scratch);

	/* ---- RoPE (HF rotate_half layout) -------------------------------------
	 * out (B, T, NH, HS) = x rotated, both in adt (computed in fp32): for
	 * j < HS/2 at position t, out[j] = x[j]·cos − x[j+HS/2]·sin,
	 * out[j+HS/2] = x[j+HS/2]·cos + x[j]·sin with cos/sin =
	 * freqs_cos/freqs_sin (T, HS/2) (lora_rope_table). out may alias x.
	 * backward: dout rotated by the negative angle, WRITTEN (not added) to
	 * dinp in fp32 (NULL: not wanted; may be dout itself: in place) and/or
	 * rounded once to BF16 into dinp_b (NULL: not wanted; not dout): the
	 * operand of the bf16 GEMM of q or k (linear_backward's ddt) without a
	 * conversion pass; the fp32 one is for a LoRA branch. */
	void (*rope_forward)(void *out, const void *x, lora_dtype adt, const float *freqs_cos,
	                     const float *freqs_sin, int B, int T, int NH, int HS);
	void (*rope_backward)(float *dinp, void *dinp_b, const float *dout,
	                      const float *freqs_cos, const float *freqs_sin, int B, int T, int NH,
	                      int HS);

	/* ---- causal self-attention with grouped-query heads -----------------------
	 * q (B, T, NH, HS), k and v (B, T, NKV, HS); query head h uses KV head
	 * h / (NH/NKV). out (B, T, NH, HS) = softmax(q·kᵀ/sqrt(HS) + causal mask)·v.
	 * saved: attention_saved_floats(B, T, NH) floats kept for the backward.
	 * backward WRITES dq, dk, dv (one writer each: no zero fill before it).
	 * scratch: attention_scratch_floats(B, T, NH, NKV, HS).
	 * bf16: the run trains in bf16 (frozen weights BF16), so the backend may
	 * round q, k, v, dout, the probabilities and dS to bf16 inside the op, as
	 * PyTorch's bf16 SDPA does (CUDA: the tensor-core kernels, HS 64 and
	 * 128); 0 keeps the op fp32 throughout. The CPU ignores it.
	 * q, k, v and out are in adt (the gradients fp32). */
	/* attention_check (NULL: every head size): 0 when the backend runs
	 * attention at head size HS on its device, else -1 and lora_err (a GPU
	 * whose shared memory per block is too small for the kernels). */
	int (*attention_check)(int HS);
	size_t (*attention_saved_floats)(int B, int T, int NH);
	size_t (*attention_scratch_floats)(int B, int T, int NH, int NKV, int HS);
	void (*attention_forward)(void *out, float *saved, const void *q, const void *k,
	                          const void *v, lora_dtype adt, int B, int T, int NH, int NKV,
	                          int HS, int bf16);
	void (*attention_backward)(float *dq, float *dk, float *dv, const float *dout,
	                           const float *saved, const void *q, const void *k,
	                           const void *v, const void *out, lora_dtype adt, int B, int T,
	                           int NH, int NKV, int HS, float *scratch, int bf16);

	/* ---- SwiGLU ---------------------------------------------------------------
	 * out (N) = silu(gate) * up, silu(x) = x·sigmoid(x). out is overwritten.
	 * gate, up and out are in adt (computed in fp32).
	 * backward WRITES dgate and dup (an exception to +=: their one caller
	 * has nothing else to add, and a zero fill of 2·N floats is saved), in
	 * fp32 (dgate, dup; NULL: not wanted) and/or rounded once to bf16
	 * (dgate_b, dup_b; NULL: not wanted): the operands of the bf16 GEMMs of
	 * gate and up (linear_backward's ddt), written here so that no pass
	 * converts the fp32 ones; the fp32 ones are for the LoRA branches.
	 * dgate_b and dup_b may be gate and up themselves when adt is BF16 (each
	 * element is read before it is written). */
	void (*swiglu_forward)(void *out, const void *gate, const void *up, lora_dtype adt,
	                       size_t N);
	void (*swiglu_backward)(float *dgate, float *dup, void *dgate_b, void *dup_b,
	                        const float *dout, const void *gate, const void *up, lora_dtype adt,
	                        size_t N);

	/* ---- residual -------------------------------------------------------------
	 * out (N) = a + b (out may alias a or b). Its backward is "pass dout to
	 * both", which the += convention makes a no-op for the caller. */
	void (*add_forward)(float *out, const float *a, const float *b, size_t N);

	/* ---- softmax cross-entropy over the vocabulary --------------------------------
	 * losses (N) = -log softmax(logits (N, V))[targets[n]], 0 where
	 * targets[n] == LORA_IGNORE_INDEX. The mean is the caller's (sum / count).
	 * backward WRITES dlogits (N, V) = dloss · (softmax − onehot), rows of
	 * ignored targets zero; dlogits may alias logits (in place). */
	void (*crossentropy_forward)(float *losses, const float *logits,
	                             const int32_t *targets, int N, int V);
	void (*crossentropy_backward)(float *dlogits, const float *logits,
	                              const int32_t *targets, float dloss, int N, int V);

	/* ---- optimizer helpers (over flat f32 buffers) ----------------------------------
	 * adamw: one torch.optim.AdamW step (single-tensor form) on n values:
	 * p -= lr·wd·p; m = lerp(m, g, 1-b1); v = b2·v + (1-b2)·g²;
	 * p -= (lr/bc1) · m / (sqrt(v)/sqrt(bc2) + eps), bc = 1 - beta^t.
	 * sumsq returns Σ x² (accumulated in double; synchronises).
	 * sumsq_segments: the Σ x² of nseg segments of one buffer in one call
	 * and one synchronisation (gradient clipping over every trainable tensor
	 * of a step). offsets (nseg + 1, HOST memory, non-decreasing) are element
	 * offsets relative to offsets[0]: x points at element offsets[0] and
	 * segment k is x[offsets[k] - offsets[0] .. offsets[k+1] - offsets[0]),
	 * so a run in the middle of a flat list passes &off[first] unchanged.
	 * out (nseg, HOST) gets each segment's sum in double; an empty segment
	 * gives 0. Each out[k] is what sumsq would return for that segment (the
	 * CPU: bit for bit, same order; CUDA: deterministic, its own order).
	 * scale: x *= s. */
	void (*adamw_update)(float *p, const float *g, float *m, float *v, size_t n,
	                     float lr, float beta1, float beta2, float eps, float wd,
	                     double bc1, double bc2);
	double (*sumsq)(const float *x, size_t n);
	void (*sumsq_segments)(const float *x, const size_t *offsets, int nseg, double *out);
	void (*scale)(float *x, float s, size_t n);
};

/* Pick the backend for device "cpu", "cuda", "cuda:N" or "auto" (NULL is
 * "auto"). "auto" uses CUDA when it is compiled in and a GPU answers, else
 * the CPU with one notice on stderr. NULL + lora_err for a bad name or a
 * CUDA device that is absent. The result is static: do not free. */
const lora_backend *lora_backend_get(const char *device);

/* For a dry run where no GPU answers: the CUDA table with the sizes of an
 * H100 (the emulated GPU of the tests) for planning, capacity 0 (unknown);
 * only its sizing entries (mem_info, attention_check, *_floats) may be
 * called. NULL for "cpu"/"auto" or in a build without CUDA. Static. */
const lora_backend *lora_backend_plan(const char *device);

/* be with frozen weights kept in wdt instead (`precision: fp16` / `fp32` on
 * CUDA, whose ops take F32, F16 and BF16 weights alike). Returns be itself
 * when nothing changes; otherwise a static copy, so one variant per process.
 * NULL + lora_err when be cannot hold weights in wdt (the CPU: F32 only). */
const lora_backend *lora_backend_with_wdtype(const lora_backend *be, lora_dtype wdt);

/* With LORA_CUDA_PROFILE=1 in the environment the CUDA backend times every
 * op on the GPU (events around each call); this prints, on stderr, each
 * op's calls, GPU time and share since the last call, under `label`, and
 * starts over (label NULL: start over only). What is left at exit is
 * printed then. Without the variable, or without CUDA: nothing. */
void lora_backend_profile(const char *label);

/* The CPU reference backend (lib/ops_cpu.c). */
const lora_backend *lora_backend_cpu(void);
/* The CUDA backend (kernels/), device index dev; NULL + lora_err if none.
 * Defined in kernels/ (lora-cuda.so, or linked into the CUDA tests and
 * benchmarks); backend.c is the one place in lib/ that calls it. */
const lora_backend *lora_backend_cuda(int dev);
const lora_backend *lora_backend_cuda_plan(void);
/* lora-cuda.so and the tool that loads it agree on this table when they
 * were built against the same headers: the Makefile sets this to their sum. */
#ifndef LORA_BACKEND_ABI
#define LORA_BACKEND_ABI 0u
#endif

/* The dropout draw shared by every backend: a uniform float in [0, 1) from
 * (seed, i) by the splitmix64 finaliser (counter based, so any element can
 * be recomputed in any order on any device). nvcc compiles it for the
 * device too, so the CUDA kernels draw the CPU's bits from this one copy. */
#ifdef __CUDACC__
#define LORA_HOST_DEVICE __host__ __device__
#else
#define LORA_HOST_DEVICE
#endif
static inline LORA_HOST_DEVICE float lora_dropout_u(uint64_t seed, uint64_t i)
{
	uint64_t z = seed + (i + 1) * 0x9E3779B97F4A7C15ULL;
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
	z ^= z >> 31;
	return (float)(z >> 40) * (1.0f / 16777216.0f);
}

/* RoPE tables: cos/sin (T, HS/2) on the host for positions 0..T-1, with
 * inv_freq[i] = theta^(-2i/HS) adjusted by llama3 scaling when factor > 0
 * (FORMATS.md §5.5: factor, low_freq_factor, high_freq_factor,
 * original_max_position_embeddings). Angles are computed as HF does: the
 * float32 inv_freq times the float32 position, then cos/sin in float32. */
typedef struct {
	float theta;
	float factor;            /* 0: no scaling; else llama3 scaling */
	float low_freq_factor, high_freq_factor;
	int original_max_pos;
} lora_rope_params;
void lora_rope_table(float *cos_out, float *sin_out, int T, int HS, const lora_rope_params *rp);

#endif
