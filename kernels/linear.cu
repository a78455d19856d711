/* linear.cu: out (N, OC) = inp (N, C) · w (OC, C)ᵀ + bias, and its backward,
 * through cuBLAS (cublasGemmEx; cuBLAS picks its cuBLASLt kernels).
 *
 * Decision (first version): activations are fp32 in the op layer, and cuBLAS
 * has no bf16 × fp32 product, so for a BF16/F16 weight the op converts the
 * fp32 activation (inp in the forward, dout in the backward) to the weight's
 * dtype in the backend workspace (cuda_workspace) and runs a bf16 × bf16
 * GEMM with fp32 accumulation and an fp32 output. Cost: one extra read of
 * the fp32 activation and a write of half its size per GEMM; error: the
 * activation is rounded once to bf16 (relative 2^-9 per product), which is
 * what PyTorch's bf16 autocast does too. The conversion goes in row chunks
 * that fit the backend's fixed workspace (CUDA_WS_BYTES, 64 MiB), even for
 * the lm_head's (N, V) gradient: 1016 rows of K = 33000, 261 rows of
 * Llama 3's V = 128256, each still a large GEMM. F32 weights (full fine-tuning,
 * precision: fp32) use a plain fp32 GEMM (CUBLAS_COMPUTE_32F: no TF32).
 * dw is only ever requested for trainable (F32) weights.
 * A BF16 input (a saved activation of a bf16 run, backend.h) needs no
 * conversion: one bf16 × bf16 GEMM, whose output may be BF16 itself (the
 * saved q, k, v, gate and up: cuBLAS rounds the fp32 accumulator once, as
 * PyTorch's bf16 linear does). With a bias, a BF16 output is first filled
 * with the bias rows and the GEMM adds to it (beta 1): still one rounding,
 * and 4 bytes per element of traffic where an fp32 bias pass takes 8.
 */
#include "common.cuh"

/* ---- kernels ----------------------------------------------------------------------- */

/* out (N, OC) += bias (OC) */
template <typename W>
__global__ void bias_add_kernel(float *out, const W *bias, size_t N, int OC)
{
	size_t n = N * (size_t)OC;
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
	     i += (size_t)gridDim.x * blockDim.x)
		out[i] += ldw(bias, i % OC);
}

/* out (N, OC) = bias (OC) in each row, both of type W */
template <typename W>
__global__ void bias_fill_kernel(W *out, const W *bias, size_t N, int OC)
{
	size_t n = N * (size_t)OC;
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
	     i += (size_t)gridDim.x * blockDim.x)
		out[i] = bias[i % OC];
}

/* dbias (OC) += column sums of dout (N, OC): one thread per column, rows
 * split over blockIdx.y with an atomic add per (column, row chunk). */
__global__ void bias_grad_kernel(float *dbias, const float *dout, int N, int OC, int rows)
{
	int o = blockIdx.x * blockDim.x + threadIdx.x;
	if (o >= OC)
		return;
	int n0 = blockIdx.y * rows, n1 = min(N, n0 + rows);
	float s = 0;
	for (int n = n0; n < n1; n++)
		s += dout[(size_t)n * OC + o];
	atomicAdd(&dbias[o], s);
}

/* ---- GEMM helpers ------------------------------------------------------------------------ */

static cudaDataType_t cuda_type(lora_dtype dt)
{
	switch (dt) {
	case LORA_DTYPE_F32: return CUDA_R_32F;
	case LORA_DTYPE_BF16: return CUDA_R_16BF;
	case LORA_DTYPE_F16: return CUDA_R_16F;
	default: LORA_ASSERT(!"weight dtype not F32, BF16 or F16");
	}
	return CUDA_R_32F;
}

/* Row-major C (M, N) = alpha · op(A) · op(B) + beta · C with A, B of type
 * ab and C of type ct (F32, or ab's own 16-bit type): the column-major
 * product Cᵀ = op(B)ᵀ · op(A)ᵀ, which in cuBLAS's terms is gemm(opB, opA,
 * N, M, K, B, A) with the same flags. */
static void gemm_rm_ct(int transA, int transB, int M, int N, int K, float alpha,
                       const void *A, int lda, const void *B, int ldb, cudaDataType_t ab,
                       float beta, void *C, cudaDataType_t ct, int ldc)
{
	if (M <= 0 || N <= 0)
		return;
	if (K <= 0) {            /* nothing to multiply: C = beta · C */
		LORA_ASSERT(beta == 0.0f || beta == 1.0f);
		size_t es = ct == CUDA_R_32F ? 4 : 2;
		if (beta == 0.0f)
			for (int m = 0; m < M; m++)
				CUDA_CHECK(cudaMemsetAsync((char *)C + (size_t)m * ldc * es, 0, N * es,
				                           cuda_stream()));
		return;
	}
	CUBLAS_CHECK(cublasGemmEx(cuda_blas(),
	                          transB ? CUBLAS_OP_T : CUBLAS_OP_N,
	                          transA ? CUBLAS_OP_T : CUBLAS_OP_N,
	                          N, M, K, &alpha, B, ab, ldb, A, ab, lda,
	                          &beta, C, ct, ldc,
	                          CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

static void gemm_rm(int transA, int transB, int M, int N, int K, float alpha,
                    const void *A, int lda, const void *B, int ldb, cudaDataType_t ab,
                    float beta, float *C, int ldc)
{
	gemm_rm_ct(transA, transB, M, N, K, alpha, A, lda, B, ldb, ab, beta, C, CUDA_R_32F, ldc);
}

void cuda_sgemm_rm(int transA, int transB, int M, int N, int K, float alpha,
                   const float *A, int lda, const float *B, int ldb, float beta,
                   float *C, int ldc)
{
	gemm_rm(transA, transB, M, N, K, alpha, A, lda, B, ldb, CUDA_R_32F, beta, C, ldc);
}

void cuda_gemm_bf16_rm(int transA, int transB, int M, int N, int K, float alpha,
                       const void *A, int lda, const void *B, int ldb, float beta, float *C,
                       int ldc)
{
	gemm_rm(transA, transB, M, N, K, alpha, A, lda, B, ldb, CUDA_R_16BF, beta, C, ldc);
}

/* Row-major C (M, N) = A (M, K) · op(w) + beta · C where A is an fp32
 * activation and w a weight of dtype wdt (op(w) = wᵀ when transW): for F32
 * one GEMM; else A is converted to wdt in chunks of rows that fit the
 * workspace, one GEMM per chunk. */
static void gemm_act_w(int transW, int M, int N, int K, const float *A, const void *w,
                       int ldw, lora_dtype wdt, float beta, float *C)
{
	if (wdt == LORA_DTYPE_F32 || M <= 0 || K <= 0) {
		gemm_rm(0, transW, M, N, K, 1.0f, A, K, w, ldw, cuda_type(wdt), beta, C, N);
		return;
	}
	size_t rows = CUDA_WS_BYTES / 2 / (size_t)K;
	LORA_ASSERT(rows >= 1);
	if (rows > (size_t)M)
		rows = M;
	void *ws = cuda_workspace(rows * (size_t)K * 2);
	for (size_t m0 = 0; m0 < (size_t)M; m0 += rows) {
		int mc = (int)((size_t)M - m0 < rows ? (size_t)M - m0 : rows);
		cuda_convert(ws, wdt, A + m0 * K, (size_t)mc * K);
		gemm_rm(0, transW, mc, N, K, 1.0f, ws, K, w, ldw, cuda_type(wdt), beta,
		        C + m0 * N, N);
	}
}

/* ---- launchers ---------------------------------------------------------------------------------- */

void cuda_linear_forward(void *vout, int acc, lora_dtype odt, const void *inp, lora_dtype idt,
                         const void *w, const void *bias, lora_dtype wdt, int N, int C, int OC)
{
	if (odt != LORA_DTYPE_F32) {    /* bf16 × bf16 into bf16, the bias first */
		LORA_ASSERT(odt == LORA_DTYPE_BF16 && idt == odt && wdt == odt && !acc);
		size_t n = (size_t)N * OC;
		if (bias && n) {
			bias_fill_kernel<<<cuda_blocks(n, 256), 256, 0, cuda_stream()>>>(
				(__nv_bfloat16 *)vout, (const __nv_bfloat16 *)bias, (size_t)N, OC);
			CUDA_LAUNCH_CHECK();
		}
		gemm_rm_ct(0, 1, N, OC, C, 1.0f, inp, C, w, C, CUDA_R_16BF, bias ? 1.0f : 0.0f, vout,
		           CUDA_R_16BF, OC);
		return;
	}
	/* acc: beta 1, out read in the GEMM's epilogue */
	float *out = (float *)vout, beta = acc ? 1.0f : 0.0f;
	if (idt == LORA_DTYPE_F32) {
		gemm_act_w(1, N, OC, C, (const float *)inp, w, C, wdt, beta, out);
	} else {       /* a BF16 activation meets a BF16 weight: no conversion */
		LORA_ASSERT(idt == wdt && idt == LORA_DTYPE_BF16);
		gemm_rm(0, 1, N, OC, C, 1.0f, inp, C, w, C, CUDA_R_16BF, beta, out, OC);
	}
	if (bias) {
		size_t n = (size_t)N * OC;
		WDTYPE_DISPATCH(wdt, W,
			bias_add_kernel<<<cuda_blocks(n, 256), 256, 0, cuda_stream()>>>(
				out, (const W *)bias, (size_t)N, OC));
		CUDA_LAUNCH_CHECK();
	}
}

void cuda_linear_backward(float *dinp, int acc, float *dw, float *dbias, const void *doutv,
                          lora_dtype ddt, const void *inp, lora_dtype idt, const void *w,
                          lora_dtype wdt, int N, int C, int OC)
{
	if (ddt != LORA_DTYPE_F32) {    /* a bf16 gradient meets a bf16 weight: no conversion */
		LORA_ASSERT(ddt == LORA_DTYPE_BF16 && wdt == ddt && !dw && !dbias);
		if (dinp)
			gemm_rm(0, 0, N, C, OC, 1.0f, doutv, OC, w, C, CUDA_R_16BF, acc ? 1.0f : 0.0f,
			        dinp, C);
		return;
	}
	const float *dout = (const float *)doutv;
	if (dinp) {     /* (N, C) (+)= (N, OC) · (OC, C) */
		gemm_act_w(0, N, C, OC, dout, w, C, wdt, acc ? 1.0f : 0.0f, dinp);
	}
	if (dw) {       /* (OC, C) += (N, OC)ᵀ · (N, C); trainable weights are F32 */
		LORA_ASSERT(wdt == LORA_DTYPE_F32 && idt == LORA_DTYPE_F32);
		gemm_rm(1, 0, OC, C, N, 1.0f, dout, OC, inp, C, CUDA_R_32F, 1.0f, dw, C);
	}
	if (dbias && N > 0) {
		const int rows = 256;
		dim3 grid((OC + 255) / 256, (N + rows - 1) / rows);
		bias_grad_kernel<<<grid, 256, 0, cuda_stream()>>>(dbias, dout, N, OC, rows);
		CUDA_LAUNCH_CHECK();
	}
}
