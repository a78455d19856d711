/* rmsnorm.cu: out = inp · rstd · w with rstd = 1/sqrt(mean(inp²) + eps), one
 * warp per row (fp32 sums; the CPU reference sums in double, so the two
 * agree to fp32 rounding). Backward, per row r = rstd:
 *   dinp_i += r·w_i·dy_i − (r³/C)·x_i·Σ_j dy_j·w_j·x_j
 *   dw_i   += Σ_n dy_i·x_i·r   (column sums: atomic adds per row chunk)
 * The output may be BF16 (a saved activation, backend.h); the sums are fp32.
 * The forward may also copy inp (the residual sum a GEMM adds to next), the
 * backward write dinp's new value in bf16 too (the o or down GEMM's operand).
 */
#include "common.cuh"

#define ROWS_PER_BLOCK 8          /* warps per block, one row each */

/* ---- kernels ---------------------------------------------------------------------- */

template <typename O, typename W>
__global__ void rmsnorm_fwd_kernel(O *out, float *rstd, const float *inp, float *copy,
                                   const W *w, int N, int C, float eps)
{
	int n = blockIdx.x * ROWS_PER_BLOCK + (threadIdx.x >> 5), lane = threadIdx.x & 31;
	if (n >= N)
		return;
	const float *x = inp + (size_t)n * C;
	float *cp = copy ? copy + (size_t)n * C : NULL;
	float ss = 0;
	for (int i = lane; i < C; i += 32) {
		float v = x[i];
		ss += v * v;
		if (cp)
			cp[i] = v;
	}
	ss = warp_sum(ss);
	float r = 1.0f / sqrtf(ss / C + eps);
	if (lane == 0)
		rstd[n] = r;
	O *y = out + (size_t)n * C;
	for (int i = lane; i < C; i += 32)
		y[i] = from_f32<O>((x[i] * r) * ldw(w, i));
}

template <typename W>
__global__ void rmsnorm_bwd_kernel(float *dinp, __nv_bfloat16 *dinp_b, const float *dout,
                                   const float *inp, const W *w, const float *rstd, int N, int C)
{
	int n = blockIdx.x * ROWS_PER_BLOCK + (threadIdx.x >> 5), lane = threadIdx.x & 31;
	if (n >= N)
		return;
	const float *x = inp + (size_t)n * C, *dy = dout + (size_t)n * C;
	float r = rstd[n];
	float dot = 0;
	for (int i = lane; i < C; i += 32)
		dot += dy[i] * ldw(w, i) * x[i];
	dot = warp_sum(dot);
	float k = dot * r * r * r / C;
	float *dx = dinp + (size_t)n * C;
	__nv_bfloat16 *db = dinp_b ? dinp_b + (size_t)n * C : NULL;
	for (int i = lane; i < C; i += 32) {
		float d = dx[i] + (r * ldw(w, i) * dy[i] - k * x[i]);
		dx[i] = d;
		if (db)
			db[i] = from_f32<__nv_bfloat16>(d);
	}
}

/* dw (C) += Σ_n dy·x·rstd; block (256 columns) × (a chunk of rows). */
__global__ void rmsnorm_dw_kernel(float *dw, const float *dout, const float *inp,
                                  const float *rstd, int N, int C, int rows)
{
	int i = blockIdx.x * blockDim.x + threadIdx.x;
	if (i >= C)
		return;
	int n0 = blockIdx.y * rows, n1 = min(N, n0 + rows);
	float s = 0;
	for (int n = n0; n < n1; n++)
		s += dout[(size_t)n * C + i] * inp[(size_t)n * C + i] * rstd[n];
	atomicAdd(&dw[i], s);
}

/* ---- launchers ------------------------------------------------------------------------- */

void cuda_rmsnorm_forward(void *out, lora_dtype odt, float *rstd, const float *inp, float *copy,
                          const void *w, lora_dtype wdt, int N, int C, float eps)
{
	if (N <= 0)
		return;
	unsigned grid = (N + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK;
	ADTYPE_DISPATCH(odt, O, WDTYPE_DISPATCH(wdt, W,
		rmsnorm_fwd_kernel<<<grid, 32 * ROWS_PER_BLOCK, 0, cuda_stream()>>>(
			(O *)out, rstd, inp, copy, (const W *)w, N, C, eps)));
	CUDA_LAUNCH_CHECK();
}

void cuda_rmsnorm_backward(float *dinp, void *dinp_b, float *dw, const float *dout,
                           const float *inp, const void *w, lora_dtype wdt, const float *rstd,
                           int N, int C)
{
	LORA_ASSERT(dinp || !dinp_b);
	if (N <= 0)
		return;
	if (dinp) {
		unsigned grid = (N + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK;
		WDTYPE_DISPATCH(wdt, W,
			rmsnorm_bwd_kernel<<<grid, 32 * ROWS_PER_BLOCK, 0, cuda_stream()>>>(
				dinp, (__nv_bfloat16 *)dinp_b, dout, inp, (const W *)w, rstd, N, C));
		CUDA_LAUNCH_CHECK();
	}
	if (dw) {
		const int rows = 128;
		dim3 grid((C + 255) / 256, (N + rows - 1) / rows);
		rmsnorm_dw_kernel<<<grid, 256, 0, cuda_stream()>>>(dw, dout, inp, rstd, N, C, rows);
		CUDA_LAUNCH_CHECK();
	}
}
