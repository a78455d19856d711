/* common.cuh: what every kernels/X.cu file shares: the C headers of lib/
 * (wrapped in extern "C"), error checks that report file:line, the backend's
 * one stream and cuBLAS handle, a grow-only workspace, weight loads for any
 * weight dtype, the dropout draw on the device, and warp/block reductions.
 *
 * Conventions (STYLE.md rule 9): each op file has its kernels in one section
 * and its launchers in another. A launcher keeps the CPU reference's argument
 * list (lib/backend.h) and launches on cuda_stream(); every launch is followed
 * by CUDA_LAUNCH_CHECK(). Ops do not fail: a CUDA error inside an op is a
 * broken invariant and aborts with the file, line and CUDA's message.
 */
#ifndef LORA_KERNELS_COMMON_CUH
#define LORA_KERNELS_COMMON_CUH

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

extern "C" {
#include "backend.h"     /* lora_backend, LORA_IGNORE_INDEX */
#include "dtype.h"       /* lora_dtype, lora_convert */
#include "util.h"        /* lora_err, LORA_ASSERT */
}

/* ---- error checks -------------------------------------------------------------- */

void cuda_fail(const char *what, const char *msg, const char *file, int line)
	__attribute__((noreturn));

#define CUDA_CHECK(x) do { cudaError_t e_ = (x); \
	if (e_ != cudaSuccess) cuda_fail(#x, cudaGetErrorString(e_), __FILE__, __LINE__); } while (0)
#define CUBLAS_CHECK(x) do { cublasStatus_t s_ = (x); \
	if (s_ != CUBLAS_STATUS_SUCCESS) cuda_fail(#x, cublasGetStatusString(s_), __FILE__, __LINE__); } while (0)
/* After every kernel launch: launch errors (bad configuration, no kernel
 * image for this GPU) surface here rather than at the next sync. */
#define CUDA_LAUNCH_CHECK() CUDA_CHECK(cudaGetLastError())

/* ---- backend state (kernels/backend_cuda.cu) -------------------------------------- */

cudaStream_t cuda_stream(void);
cublasHandle_t cuda_blas(void);
int cuda_sm_count(void);         /* of the open device */
size_t cuda_smem_optin(void);    /* its most dynamic shared memory per block, bytes */
/* A device buffer of CUDA_WS_BYTES, owned by the backend, reused by every op
 * that needs temporary memory the op-layer signature has no scratch argument
 * for (the bf16 copies of activations in linear.cu). Allocated when the
 * device opens, so it is in mem_info's `used` before the model plans its
 * memory, and a step never allocates. Asking for more is a bug (asserts).
 * Valid until the next call (ops are ordered on the one stream). */
#define CUDA_WS_BYTES ((size_t)64 << 20)
void *cuda_workspace(size_t bytes);
/* A device buffer an op keeps across calls (adamw.cu's segment table):
 * be->alloc's memory, counted in mem_info, but out of memory aborts (ops do
 * not fail). cuda_buffer_free synchronises; NULL ok. */
void *cuda_buffer_alloc(size_t bytes);
void cuda_buffer_free(void *p);

/* ---- sizes ------------------------------------------------------------------------------ */

/* The grid of an elementwise kernel: one thread per element, at most
 * CUDA_MAX_BLOCKS blocks (grid-stride loops cover the rest). On the CPU
 * emulator (tests/cudasim) a thread costs far more than a loop iteration,
 * so it gets few long threads; the kernels are correct for any grid. */
#ifdef LORA_CUDA_SIM
#define CUDA_MAX_BLOCKS 64u
#else
#define CUDA_MAX_BLOCKS (65536u * 16u)
#endif

static inline unsigned cuda_blocks(size_t n, unsigned threads)
{
	size_t b = (n + threads - 1) / threads;
	if (b > CUDA_MAX_BLOCKS)
		b = CUDA_MAX_BLOCKS;
	return b ? (unsigned)b : 1u;
}

/* ---- weight loads ------------------------------------------------------------------------
 * Ops that read a weight are templates on its element type W and launched
 * through WDTYPE_DISPATCH(wdt, W, stmt): float (F32, trainable), __nv_bfloat16
 * (BF16, the default frozen type) or __half (F16, precision: fp16). */

__device__ __forceinline__ float ldw(const float *p, size_t i) { return p[i]; }
__device__ __forceinline__ float ldw(const __nv_bfloat16 *p, size_t i) { return __bfloat162float(p[i]); }
__device__ __forceinline__ float ldw(const __half *p, size_t i) { return __half2float(p[i]); }

#define WDTYPE_DISPATCH(wdt, W, ...) do { \
	switch (wdt) { \
	case LORA_DTYPE_F32:  { typedef float W; __VA_ARGS__; break; } \
	case LORA_DTYPE_BF16: { typedef __nv_bfloat16 W; __VA_ARGS__; break; } \
	case LORA_DTYPE_F16:  { typedef __half W; __VA_ARGS__; break; } \
	default: LORA_ASSERT(!"weight dtype not F32, BF16 or F16"); } } while (0)

/* ---- activations -------------------------------------------------------------------------
 * Saved activations are F32 or BF16 (backend.h: adt): kernels are templates
 * on the element type A, launched through ADTYPE_DISPATCH(adt, A, stmt);
 * ldw reads them as it reads weights, from_f32 rounds a value to a type
 * (to nearest even) and convert_kernel a whole array (from fp32, or from a
 * weight's dtype: upload_from). */

template <typename T>
__device__ __forceinline__ T from_f32(float x);
template <> __device__ __forceinline__ float from_f32(float x) { return x; }
template <> __device__ __forceinline__ __nv_bfloat16 from_f32(float x) { return __float2bfloat16_rn(x); }
template <> __device__ __forceinline__ __half from_f32(float x) { return __float2half_rn(x); }

template <typename T, typename S = float>
__global__ void convert_kernel(T *dst, const S *src, size_t n)
{
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
	     i += (size_t)gridDim.x * blockDim.x)
		dst[i] = from_f32<T>(ldw(src, i));
}

#define ADTYPE_DISPATCH(adt, A, ...) do { \
	switch (adt) { \
	case LORA_DTYPE_F32:  { typedef float A; __VA_ARGS__; break; } \
	case LORA_DTYPE_BF16: { typedef __nv_bfloat16 A; __VA_ARGS__; break; } \
	default: LORA_ASSERT(!"activation dtype not F32 or BF16"); } } while (0)

/* ---- causal grids --------------------------------------------------------------------------------
 * The first row of a query block whose grid runs along x: the heaviest
 * (causal work grows with the row) are launched first, so the last wave is
 * not a tail of long blocks. */
__device__ __forceinline__ int heavy_first(int rows) { return (gridDim.x - 1 - blockIdx.x) * rows; }

/* ---- reductions ---------------------------------------------------------------------------------- */

__device__ __forceinline__ float warp_sum(float v)
{
	for (int o = 16; o > 0; o >>= 1)
		v += __shfl_xor_sync(0xffffffffu, v, o);
	return v;
}

__device__ __forceinline__ float warp_max(float v)
{
	for (int o = 16; o > 0; o >>= 1)
		v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
	return v;
}

/* Sum over a block of blockDim.x threads (a multiple of 32, at most 1024);
 * every thread gets the result. sh: 32 floats of shared memory. */
__device__ __forceinline__ float block_sum(float v, float *sh)
{
	int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
	v = warp_sum(v);
	__syncthreads();             /* sh may be in use by a previous call */
	if (lane == 0)
		sh[warp] = v;
	__syncthreads();
	v = lane < nw ? sh[lane] : 0.0f;
	return warp_sum(v);
}

/* ---- the launchers, one file each (called by backend_cuda.cu) ------------------------------- */

void cuda_embedding_forward(float *out, const int32_t *ids, const void *wte, lora_dtype wdt, int N, int C);
void cuda_embedding_backward(float *dwte, const float *dout, const int32_t *ids, int N, int C);
void cuda_rmsnorm_forward(void *out, lora_dtype odt, float *rstd, const float *inp, float *copy,
                          const void *w, lora_dtype wdt, int N, int C, float eps);
void cuda_rmsnorm_backward(float *dinp, void *dinp_b, float *dw, const float *dout,
                           const float *inp, const void *w, lora_dtype wdt, const float *rstd,
                           int N, int C);
void cuda_linear_forward(void *out, int acc, lora_dtype odt, const void *inp, lora_dtype idt,
                         const void *w, const void *bias, lora_dtype wdt, int N, int C, int OC);
void cuda_linear_backward(float *dinp, int acc, float *dw, float *dbias, const void *dout,
                          lora_dtype ddt, const void *inp, lora_dtype idt, const void *w,
                          lora_dtype wdt, int N, int C, int OC);
void cuda_lora_down(float *h, const void *inp, lora_dtype idt, const lora_branch *br, int nb,
                    float p, int N, int C, float *scratch);
void cuda_lora_up(void *out, int acc, lora_dtype odt, const float *h, int ldh, const float *B,
                  float scale, int N, int OC, int r);
void cuda_lora_up_backward(float *dh, float *dB, const float *dout, const float *h, int ldh,
                           const float *B, float scale, int N, int OC, int r);
void cuda_lora_down_backward(float *dinp, int acc, const float *dh, const void *inp,
                             lora_dtype idt, const lora_branch *br, int nb, float p, int N,
                             int C, float *scratch);
void cuda_rope_forward(void *out, const void *x, lora_dtype adt, const float *fc,
                       const float *fs, int B, int T, int NH, int HS);
void cuda_rope_backward(float *dinp, void *dinp_b, const float *dout, const float *fc,
                        const float *fs, int B, int T, int NH, int HS);
size_t cuda_attention_saved_floats(int B, int T, int NH);
size_t cuda_attention_scratch_floats(int B, int T, int NH, int NKV, int HS);
void cuda_attention_forward(void *out, float *saved, const void *q, const void *k,
                            const void *v, lora_dtype adt, int B, int T, int NH, int NKV,
                            int HS, int bf16);
void cuda_attention_backward(float *dq, float *dk, float *dv, const float *dout,
                             const float *saved, const void *q, const void *k, const void *v,
                             const void *out, lora_dtype adt, int B, int T, int NH, int NKV,
                             int HS, float *scratch, int bf16);
/* attention_mma.cu and attention_tc.cu: the tensor-core paths for HS 64
 * and 128 (attention.cu picks one for bf16 runs: mma by default, the WMMA
 * kernels of attention_tc.cu with LORA_CUDA_ATTN=wmma); q, k, v, out in
 * adt as above; D is the backward's rowsum(dout ∘ out). */
int cuda_attention_check(int HS);
int cuda_attention_tc_supports(int HS);
/* whether those kernels fit the GPU's shared memory, forward (bwd 0) or
 * backward; the mma ones: their warps per block, 0 when none fit */
int cuda_attention_tc_fits(int HS, int bwd);
int cuda_attention_mma_warps(int HS, int bwd);
void cuda_attention_tc_forward(void *out, float *saved, const void *q, const void *k,
                               const void *v, lora_dtype adt, int B, int T, int NH, int NKV,
                               int HS);
void cuda_attention_tc_backward(float *dq, float *dk, float *dv, const float *dout,
                                const float *saved, const float *D, const void *q,
                                const void *k, const void *v, lora_dtype adt, int B, int T,
                                int NH, int NKV, int HS);
void cuda_attention_mma_forward(void *out, float *saved, const void *q, const void *k,
                                const void *v, lora_dtype adt, int B, int T, int NH, int NKV,
                                int HS);
/* part: cuda_attention_mma_parts_floats() floats, 16-byte aligned (dk, dv
 * sums of the parts of a head group, for GQA); dout in bf16, 16-byte
 * aligned (att_d_kernel writes it) */
size_t cuda_attention_mma_parts_floats(int B, int T, int NH, int NKV, int HS);
void cuda_attention_mma_backward(float *dq, float *dk, float *dv, float *part,
                                 const __nv_bfloat16 *dout, const float *saved, const float *D,
                                 const void *q, const void *k, const void *v, lora_dtype adt,
                                 int B, int T, int NH, int NKV, int HS);
void cuda_swiglu_forward(void *out, const void *gate, const void *up, lora_dtype adt, size_t N);
void cuda_swiglu_backward(float *dgate, float *dup, void *dgate_b, void *dup_b,
                          const float *dout, const void *gate, const void *up, lora_dtype adt,
                          size_t N);
void cuda_add_forward(float *out, const float *a, const float *b, size_t N);
void cuda_convert(void *out, lora_dtype odt, const float *src, size_t N);
void cuda_convert_from(void *out, lora_dtype odt, const void *in, lora_dtype idt, size_t N);
void cuda_crossentropy_forward(float *losses, const float *logits, const int32_t *targets,
                               int N, int V);
void cuda_crossentropy_backward(float *dlogits, const float *logits, const int32_t *targets,
                                float dloss, int N, int V);
void cuda_adamw_update(float *p, const float *g, float *m, float *v, size_t n, float lr,
                       float beta1, float beta2, float eps, float wd, double bc1, double bc2);
double cuda_sumsq(const float *x, size_t n);
void cuda_sumsq_segments(const float *x, const size_t *offsets, int nseg, double *out);
void cuda_scale(float *x, float s, size_t n);

/* linear.cu's row-major GEMM, shared with lora.cu: C (M, N) = alpha ·
 * op(A) · op(B) + beta · C, exactly cblas_sgemm(CblasRowMajor, ...)'s
 * meaning, all F32 with F32 accumulation (no TF32). */
void cuda_sgemm_rm(int transA, int transB, int M, int N, int K, float alpha,
                   const float *A, int lda, const float *B, int ldb, float beta,
                   float *C, int ldc);
/* The same with A and B in BF16 (tensor cores, fp32 accumulation). */
void cuda_gemm_bf16_rm(int transA, int transB, int M, int N, int K, float alpha,
                       const void *A, int lda, const void *B, int ldb, float beta, float *C,
                       int ldc);

#endif
