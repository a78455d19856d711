/* lora.cu: the LoRA branch out += scale · (drop(inp) · Aᵀ) · Bᵀ and its
 * backward, the same four GEMMs as the CPU reference (lib/ops_cpu.c) in fp32
 * (A, B and their gradients are trainable, so fp32 throughout; with r of 8
 * to 64 these products are bound by reading inp, not by arithmetic).
 * Dropout masks are recomputed from (seed, flat index) by dropout_u, bit for
 * bit the CPU's lora_dropout_u, so both backends drop the same elements.
 * A BF16 input (a saved activation of a bf16 run) is widened to fp32 in the
 * scratch first, dropout applied on the way (PEFT too multiplies the bf16
 * input by fp32 A).
 * Later: fold the branch into the base GEMM's epilogue (h · Bᵀ is a rank-r
 * update of the same output tile).
 */
#include "common.cuh"

/* ---- kernels ---------------------------------------------------------------------- */

/* xd = drop(x): element i kept when dropout_u(seed, i) >= p, scaled by
 * 1/(1-p); p = 0: xd = x in fp32. */
template <typename A>
__global__ void dropout_kernel(float *xd, const A *x, size_t n, float p, float s,
                               uint64_t seed)
{
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
	     i += (size_t)gridDim.x * blockDim.x)
		xd[i] = p > 0 && dropout_u(seed, i) < p ? 0.0f : ldw(x, i) * s;
}

/* dinp += mask ∘ g · s (the backward of drop()) */
__global__ void dropout_grad_kernel(float *dinp, const float *g, size_t n, float p, float s,
                                    uint64_t seed)
{
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
	     i += (size_t)gridDim.x * blockDim.x)
		if (!(dropout_u(seed, i) < p))
			dinp[i] += g[i] * s;
}

/* ---- launchers ------------------------------------------------------------------------- */

/* The fp32 input of the A product: inp itself (F32, p = 0), else drop(inp)
 * in fp32 written to xd. */
static const float *lora_input(float *xd, const void *inp, lora_dtype idt, size_t n, float p,
                               uint64_t seed)
{
	if (idt == LORA_DTYPE_F32 && p == 0)
		return (const float *)inp;
	float s = 1.0f / (1.0f - p);
	ADTYPE_DISPATCH(idt, T,
		dropout_kernel<<<cuda_blocks(n, 256), 256, 0, cuda_stream()>>>(
			xd, (const T *)inp, n, p, s, seed));
	CUDA_LAUNCH_CHECK();
	return xd;
}

void cuda_lora_forward(float *out, float *h, const void *inp, lora_dtype idt, const float *A,
                       const float *B, float scale, float p, uint64_t seed, int N, int C,
                       int OC, int r, float *scratch)
{
	const float *x = lora_input(scratch, inp, idt, (size_t)N * C, p, seed);
	/* h (N, r) = x · Aᵀ ; out (N, OC) += scale · h · Bᵀ */
	cuda_sgemm_rm(0, 1, N, r, C, 1.0f, x, C, A, C, 0.0f, h, r);
	cuda_sgemm_rm(0, 1, N, OC, r, scale, h, r, B, r, 1.0f, out, OC);
}

void cuda_lora_backward(float *dinp, float *dA, float *dB, const float *dout, const void *inp,
                        lora_dtype idt, const float *h, const float *A, const float *B,
                        float scale, float p, uint64_t seed, int N, int C, int OC, int r,
                        float *scratch)
{
	float *dh = scratch;                         /* (N, r) */
	float *xd = scratch + (size_t)N * r;         /* (N, C), unless p = 0 and F32 */
	/* dB (OC, r) += scale · doutᵀ · h ; dh (N, r) = scale · dout · B */
	cuda_sgemm_rm(1, 0, OC, r, N, scale, dout, OC, h, r, 1.0f, dB, r);
	cuda_sgemm_rm(0, 0, N, r, OC, scale, dout, OC, B, r, 0.0f, dh, r);
	const float *x = lora_input(xd, inp, idt, (size_t)N * C, p, seed);
	/* dA (r, C) += dhᵀ · drop(x) */
	cuda_sgemm_rm(1, 0, r, C, N, 1.0f, dh, r, x, C, 1.0f, dA, C);
	if (!dinp)
		return;
	if (p == 0) {   /* dinp (N, C) += dh · A */
		cuda_sgemm_rm(0, 0, N, C, r, 1.0f, dh, r, A, C, 1.0f, dinp, C);
		return;
	}
	cuda_sgemm_rm(0, 0, N, C, r, 1.0f, dh, r, A, C, 0.0f, xd, C);
	size_t n = (size_t)N * C;
	dropout_grad_kernel<<<cuda_blocks(n, 256), 256, 0, cuda_stream()>>>(
		dinp, xd, n, p, 1.0f / (1.0f - p), seed);
	CUDA_LAUNCH_CHECK();
}
