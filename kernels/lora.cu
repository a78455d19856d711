/* lora.cu: the LoRA branches out_i += scale_i · (drop_i(inp) · A_iᵀ) · B_iᵀ
 * of a group sharing one input (lora_down, lora_up and their backwards), the
 * same GEMMs as the CPU reference (lib/ops_cpu.c) in fp32 (A, B and their
 * gradients are trainable, so fp32 throughout; with r of 8 to 64 these
 * products are bound by reading inp, not by arithmetic, which is why a group
 * without dropout reads inp once: one product with [A_0; A_1; ...]).
 * Dropout masks are recomputed from (seed, flat index) by lora_dropout_u
 * (backend.h, built for host and device), so both backends drop the same
 * elements.
 * A BF16 input (a saved activation of a bf16 run) meets the fp32 A (or dh)
 * split in three bf16 parts, a = hi + mid + lo (hi = bf16(a), mid =
 * bf16(a − hi), lo = bf16(a − hi − mid): 24 bits of a's mantissa), in one
 * tensor-core GEMM with three times the columns; every product of two
 * bf16 values is exact in the fp32 accumulator, so the three partial sums
 * added give the fp32 product of the bf16 input with the fp32 A, as PEFT
 * computes it (x widened, fp32 matmul), to fp32 rounding, while reading
 * the input once at 2 bytes per element instead of widening it (10). With
 * dropout the input is widened to fp32 in the scratch, the mask applied
 * on the way.
 * Folded into the base GEMM where the rounding allows (lib/llama.c): an
 * fp32 out takes the branch first (lora_up, acc 0) and the GEMM adds x·Wᵀ
 * in its epilogue; the backward writes dinp with the branches' share
 * (lora_down_backward, acc 0) and the base GEMMs add to it.
 */
#include "common.cuh"

/* ---- kernels ---------------------------------------------------------------------- */

/* xd = drop(x): element i kept when lora_dropout_u(seed, i) >= p, scaled by
 * 1/(1-p); p = 0: xd = x in fp32. */
template <typename A>
__global__ void dropout_kernel(float *xd, const A *x, size_t n, float p, float s,
                               uint64_t seed)
{
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
	     i += (size_t)gridDim.x * blockDim.x)
		xd[i] = p > 0 && lora_dropout_u(seed, i) < p ? 0.0f : ldw(x, i) * s;
}

/* Split fp32 a (rows, cols) into three bf16 parts hi, mid, lo (a = hi +
 * mid + lo to 2^-24): out[r·ldo + k·ps + c] = part k of a[r·cols + c]. */
__global__ void split3_kernel(__nv_bfloat16 *out, const float *a, int rows, int cols,
                              size_t ldo, size_t ps)
{
	size_t n = (size_t)rows * cols;
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
	     i += (size_t)gridDim.x * blockDim.x) {
		size_t r = i / cols, c = i % cols;
		float v = a[i];
		__nv_bfloat16 hi = __float2bfloat16_rn(v);
		float rest = v - __bfloat162float(hi);
		__nv_bfloat16 mid = __float2bfloat16_rn(rest);
		__nv_bfloat16 lo = __float2bfloat16_rn(rest - __bfloat162float(mid));
		__nv_bfloat16 *o = out + r * ldo + c;
		o[0] = hi;
		o[ps] = mid;
		o[2 * ps] = lo;
	}
}

/* The three partial results of a split product added:
 * out[r·ldo + c] (+)= (p[2·ps] + p[ps]) + p[0], p = in + r·ldi + c. */
__global__ void sum3_kernel(float *out, size_t ldo, int acc, const float *in, size_t ldi,
                            size_t ps, int rows, int cols)
{
	size_t n = (size_t)rows * cols;
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
	     i += (size_t)gridDim.x * blockDim.x) {
		size_t r = i / cols, c = i % cols;
		const float *p = in + r * ldi + c;
		float v = (p[2 * ps] + p[ps]) + p[0];
		out[r * ldo + c] = acc ? out[r * ldo + c] + v : v;
	}
}

/* dinp (+)= mask ∘ g · s (the backward of drop()); add 0: written, not read */
__global__ void dropout_grad_kernel(float *dinp, int add, const float *g, size_t n, float p,
                                    float s, uint64_t seed)
{
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
	     i += (size_t)gridDim.x * blockDim.x) {
		float v = lora_dropout_u(seed, i) < p ? 0.0f : g[i] * s;
		dinp[i] = add ? dinp[i] + v : v;
	}
}

/* out (N, OC) in O += scale · h · Bᵀ, h (N, r) with row stride ldh, B (OC,
 * r): the sum in fp32, rounded once (a BF16 out: the saved q, k, v, gate or
 * up of a bf16 run, which cuBLAS cannot update from fp32 h and B). A block
 * of 256 threads covers UP_TR rows × UP_TC columns: thread (tx, ty) keeps
 * column tx's chunk of B in registers and sums rows ty, ty + 4, ...; the h
 * rows are staged in shared memory by chunks of RK (8, 16 or 32: the
 * smallest that holds r, so that r = 8 does not multiply 24 zeros for every
 * element) and read as float4 broadcasts (every lane of a warp reads the
 * same row). */
#define UP_TC 64
#define UP_TR 32
template <typename O, int UP_RK>
__global__ void __launch_bounds__(256) lora_up_kernel(O *out, const float *h, int ldh,
                                                      const float *B, float scale, int N,
                                                      int OC, int r)
{
	__shared__ float4 hs[UP_TR * (UP_RK / 4)];         /* (UP_TR, UP_RK) floats */
	int tx = threadIdx.x % UP_TC, ty = threadIdx.x / UP_TC;
	int col = blockIdx.x * UP_TC + tx, row0 = blockIdx.y * UP_TR;
	float acc[UP_TR / 4];
#pragma unroll
	for (int k = 0; k < UP_TR / 4; k++)
		acc[k] = 0.0f;
	for (int j0 = 0; j0 < r; j0 += UP_RK) {
		int rk = min(UP_RK, r - j0);
		__syncthreads();             /* the previous chunk is read */
		float *hf = (float *)hs;
		for (int i = threadIdx.x; i < UP_TR * UP_RK; i += blockDim.x) {
			int n = row0 + i / UP_RK, j = i % UP_RK;
			hf[i] = n < N && j < rk ? h[(size_t)n * ldh + j0 + j] : 0.0f;
		}
		__syncthreads();
		float b[UP_RK];
#pragma unroll
		for (int j = 0; j < UP_RK; j++)
			b[j] = col < OC && j < rk ? B[(size_t)col * r + j0 + j] : 0.0f;
#pragma unroll
		for (int k = 0; k < UP_TR / 4; k++) {
			float s = 0.0f;
#pragma unroll
			for (int q = 0; q < UP_RK / 4; q++) {
				float4 v = hs[(ty + 4 * k) * (UP_RK / 4) + q];
				s += v.x * b[4 * q] + v.y * b[4 * q + 1] + v.z * b[4 * q + 2] +
				     v.w * b[4 * q + 3];
			}
			acc[k] += s;
		}
	}
	if (col >= OC)
		return;
#pragma unroll
	for (int k = 0; k < UP_TR / 4; k++) {
		int n = row0 + ty + 4 * k;
		if (n < N) {
			size_t i = (size_t)n * OC + col;
			out[i] = from_f32<O>(ldw(out, i) + scale * acc[k]);
		}
	}
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

/* [A_0; A_1; ...] (R, C): A_0 itself for one branch, else stacked in dst */
static const float *lora_stack(float *dst, const lora_branch *br, int nb, int C)
{
	if (nb == 1)
		return br[0].A;
	float *d = dst;
	for (int i = 0; i < nb; i++) {
		size_t n = (size_t)br[i].r * C;
		CUDA_CHECK(cudaMemcpyAsync(d, br[i].A, n * sizeof(float), cudaMemcpyDeviceToDevice,
		                           cuda_stream()));
		d += n;
	}
	return dst;
}

static void split3(__nv_bfloat16 *out, const float *a, int rows, int cols, size_t ldo, size_t ps)
{
	size_t n = (size_t)rows * cols;
	if (!n)
		return;
	split3_kernel<<<cuda_blocks(n, 256), 256, 0, cuda_stream()>>>(out, a, rows, cols, ldo, ps);
	CUDA_LAUNCH_CHECK();
}

static void sum3(float *out, size_t ldo, int acc, const float *in, size_t ldi, size_t ps,
                 int rows, int cols)
{
	size_t n = (size_t)rows * cols;
	if (!n)
		return;
	sum3_kernel<<<cuda_blocks(n, 256), 256, 0, cuda_stream()>>>(out, ldo, acc, in, ldi, ps,
	                                                             rows, cols);
	CUDA_LAUNCH_CHECK();
}

/* floats from f rounded up to a multiple of 16 (64-byte aligned slices) */
static float *after(float *f, size_t n)
{
	return f + ((n + 15) & ~(size_t)15);
}

void cuda_lora_down(float *h, const void *inp, lora_dtype idt, const lora_branch *br, int nb,
                    float p, int N, int C, float *scratch)
{
	int R = lora_branch_rank(br, nb);
	size_t n = (size_t)N * C;
	if (p > 0) {   /* a mask per branch: h_i (N, r_i) = drop_i(x) · A_iᵀ */
		for (int i = 0, o = 0; i < nb; o += br[i++].r) {
			const float *x = lora_input(scratch, inp, idt, n, p, br[i].seed);
			cuda_sgemm_rm(0, 1, N, br[i].r, C, 1.0f, x, C, br[i].A, C, 0.0f, h + o, R);
		}
		return;
	}
	/* h (N, R) = x · [A_0; A_1; ...]ᵀ, x read once for the group */
	if (idt == LORA_DTYPE_F32) {
		cuda_sgemm_rm(0, 1, N, R, C, 1.0f, (const float *)inp, C, lora_stack(scratch, br, nb, C),
		              C, 0.0f, h, R);
		return;
	}
	/* bf16 x: h3 (N, 3R) = x · [A_hi; A_mid; A_lo]ᵀ, h = the three added */
	LORA_ASSERT(idt == LORA_DTYPE_BF16);
	float *h3 = scratch, *As = after(h3, (size_t)3 * N * R);
	__nv_bfloat16 *Ab = (__nv_bfloat16 *)after(As, nb > 1 ? (size_t)R * C : 0);
	split3(Ab, lora_stack(As, br, nb, C), R, C, C, (size_t)R * C);
	cuda_gemm_bf16_rm(0, 1, N, 3 * R, C, 1.0f, inp, C, Ab, C, 0.0f, h3, 3 * R);
	sum3(h, R, 0, h3, (size_t)3 * R, R, N, R);
}

void cuda_lora_up(void *out, int acc, lora_dtype odt, const float *h, int ldh, const float *B,
                  float scale, int N, int OC, int r)
{
	/* out (N, OC) (+)= scale · h · Bᵀ */
	if (odt == LORA_DTYPE_F32) {
		cuda_sgemm_rm(0, 1, N, OC, r, scale, h, ldh, B, r, acc ? 1.0f : 0.0f, (float *)out, OC);
		return;
	}
	LORA_ASSERT(odt == LORA_DTYPE_BF16 && acc);
	if (N <= 0 || OC <= 0)
		return;
	dim3 grid((OC + UP_TC - 1) / UP_TC, (N + UP_TR - 1) / UP_TR);
	LORA_ASSERT(grid.y <= 65535);
	__nv_bfloat16 *o = (__nv_bfloat16 *)out;
	if (r <= 8)
		lora_up_kernel<__nv_bfloat16, 8><<<grid, 256, 0, cuda_stream()>>>(o, h, ldh, B, scale,
		                                                                   N, OC, r);
	else if (r <= 16)
		lora_up_kernel<__nv_bfloat16, 16><<<grid, 256, 0, cuda_stream()>>>(o, h, ldh, B, scale,
		                                                                    N, OC, r);
	else
		lora_up_kernel<__nv_bfloat16, 32><<<grid, 256, 0, cuda_stream()>>>(o, h, ldh, B, scale,
		                                                                    N, OC, r);
	CUDA_LAUNCH_CHECK();
}

void cuda_lora_up_backward(float *dh, float *dB, const float *dout, const float *h, int ldh,
                           const float *B, float scale, int N, int OC, int r)
{
	/* dB (OC, r) += scale · doutᵀ · h ; dh (N, r) = scale · dout · B */
	cuda_sgemm_rm(1, 0, OC, r, N, scale, dout, OC, h, ldh, 1.0f, dB, r);
	cuda_sgemm_rm(0, 0, N, r, OC, scale, dout, OC, B, r, 0.0f, dh, ldh);
}

void cuda_lora_down_backward(float *dinp, int acc, const float *dh, const void *inp,
                             lora_dtype idt, const lora_branch *br, int nb, float p, int N,
                             int C, float *scratch)
{
	int R = lora_branch_rank(br, nb);
	float beta = acc ? 1.0f : 0.0f;     /* dinp read by the GEMM's epilogue */
	size_t n = (size_t)N * C;
	if (p > 0) {
		for (int i = 0, o = 0; i < nb; o += br[i++].r) {
			/* dA_i (r, C) += dh_iᵀ · drop_i(x) */
			const float *x = lora_input(scratch, inp, idt, n, p, br[i].seed);
			cuda_sgemm_rm(1, 0, br[i].r, C, N, 1.0f, dh + o, R, x, C, 1.0f, br[i].dA, C);
			if (!dinp)
				continue;
			/* dinp (N, C) (+)= drop_i'(dh_i · A_i) */
			cuda_sgemm_rm(0, 0, N, C, br[i].r, 1.0f, dh + o, R, br[i].A, C, 0.0f, scratch, C);
			dropout_grad_kernel<<<cuda_blocks(n, 256), 256, 0, cuda_stream()>>>(
				dinp, acc || i > 0, scratch, n, p, 1.0f / (1.0f - p), br[i].seed);
			CUDA_LAUNCH_CHECK();
		}
		return;
	}
	if (idt != LORA_DTYPE_F32) {
		/* bf16 x: g (3R, C) = [dh_hi | dh_mid | dh_lo]ᵀ · x, dA_i += its
		 * three slices; dinp += dh · [A_0; A_1; ...] in fp32 */
		LORA_ASSERT(idt == LORA_DTYPE_BF16);
		float *g = scratch;
		__nv_bfloat16 *dhb = (__nv_bfloat16 *)after(g, (size_t)3 * R * C);
		split3(dhb, dh, N, R, (size_t)3 * R, R);
		cuda_gemm_bf16_rm(1, 0, 3 * R, C, N, 1.0f, dhb, 3 * R, inp, C, 0.0f, g, C);
		for (int i = 0, o = 0; i < nb; o += br[i++].r)
			sum3(br[i].dA, C, 1, g + (size_t)o * C, C, (size_t)R * C, br[i].r, C);
		if (dinp)
			cuda_sgemm_rm(0, 0, N, C, R, 1.0f, dh, R, lora_stack(g, br, nb, C), C, beta, dinp,
			              C);
		return;
	}
	const float *x = (const float *)inp;
	if (nb == 1) {
		cuda_sgemm_rm(1, 0, R, C, N, 1.0f, dh, R, x, C, 1.0f, br[0].dA, C);
		if (dinp)
			cuda_sgemm_rm(0, 0, N, C, R, 1.0f, dh, R, br[0].A, C, beta, dinp, C);
		return;
	}
	/* [dA_0; dA_1; ...] (R, C) = dhᵀ · x into the scratch, added to each dA_i */
	float *g = scratch;
	cuda_sgemm_rm(1, 0, R, C, N, 1.0f, dh, R, x, C, 0.0f, g, C);
	for (int i = 0, o = 0; i < nb; o += br[i++].r)
		cuda_add_forward(br[i].dA, br[i].dA, g + (size_t)o * C, (size_t)br[i].r * C);
	if (!dinp)
		return;
	/* dinp (N, C) (+)= dh · [A_0; A_1; ...] */
	cuda_sgemm_rm(0, 0, N, C, R, 1.0f, dh, R, lora_stack(g, br, nb, C), C, beta, dinp, C);
}
