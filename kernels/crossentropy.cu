/* crossentropy.cu: softmax cross-entropy over the vocabulary, fused: one
 * block per row reads the fp32 logits once for the row's max and
 * Σ exp(x − max) (online, as (max, sum) pairs merged across threads), and
 * the backward writes dlogits = dloss·(softmax − onehot) in the same pass
 * that reads the logits, in place if asked. No softmax or probability copy
 * is ever stored.
 * A target outside [0, V) (other than LORA_IGNORE_INDEX) cannot assert on
 * the device: its loss is NaN, which stops training with the NaN message.
 */
#include "common.cuh"

#define CE_THREADS 512

/* ---- kernels ---------------------------------------------------------------------- */

/* merge (m, s) ← (m, s) ⊕ (m2, s2) where s is Σ exp(x − m) */
__device__ __forceinline__ void lse_merge(float &m, float &s, float m2, float s2)
{
	float mx = fmaxf(m, m2);
	if (mx == -INFINITY)
		return;
	s = s * expf(m - mx) + s2 * expf(m2 - mx);
	m = mx;
}

/* The row's max and log Σ exp(x − max), known to every thread. */
__device__ void row_lse(const float *x, int V, float *mx_out, float *lse_out)
{
	__shared__ float shm[32], shs[32];
	float m = -INFINITY, s = 0.0f;
	for (int i = threadIdx.x; i < V; i += blockDim.x) {
		float v = x[i];
		if (v > m) {
			s = s * expf(m - v) + 1.0f;
			m = v;
		} else {
			s += v == -INFINITY ? 0.0f : expf(v - m);   /* NaN stays NaN */
		}
	}
	for (int o = 16; o > 0; o >>= 1) {
		float m2 = __shfl_xor_sync(0xffffffffu, m, o), s2 = __shfl_xor_sync(0xffffffffu, s, o);
		lse_merge(m, s, m2, s2);
	}
	int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
	if (lane == 0) {
		shm[warp] = m;
		shs[warp] = s;
	}
	__syncthreads();
	m = lane < nw ? shm[lane] : -INFINITY;
	s = lane < nw ? shs[lane] : 0.0f;
	for (int o = 16; o > 0; o >>= 1) {
		float m2 = __shfl_xor_sync(0xffffffffu, m, o), s2 = __shfl_xor_sync(0xffffffffu, s, o);
		lse_merge(m, s, m2, s2);
	}
	*mx_out = m;
	*lse_out = logf(s);
}

__global__ void __launch_bounds__(CE_THREADS)
ce_fwd_kernel(float *losses, const float *logits, const int32_t *targets, int V)
{
	int n = blockIdx.x;
	int t = targets[n];
	if (t == LORA_IGNORE_INDEX) {
		if (threadIdx.x == 0)
			losses[n] = 0.0f;
		return;
	}
	const float *x = logits + (size_t)n * V;
	float mx, lse;
	row_lse(x, V, &mx, &lse);
	if (threadIdx.x == 0)
		losses[n] = t >= 0 && t < V ? lse - (x[t] - mx) : __int_as_float(0x7fc00000);
}

__global__ void __launch_bounds__(CE_THREADS)
ce_bwd_kernel(float *dlogits, const float *logits, const int32_t *targets, float dloss, int V)
{
	int n = blockIdx.x;
	int t = targets[n];
	const float *x = logits + (size_t)n * V;
	float *d = dlogits + (size_t)n * V;
	if (t == LORA_IGNORE_INDEX) {
		for (int i = threadIdx.x; i < V; i += blockDim.x)
			d[i] = 0.0f;
		return;
	}
	float mx, lse;
	row_lse(x, V, &mx, &lse);
	/* each thread reads and writes only its own indices: safe in place */
	for (int i = threadIdx.x; i < V; i += blockDim.x) {
		float g = dloss * expf(x[i] - mx - lse);
		d[i] = i == t ? g - dloss : g;
	}
	if (!(t >= 0 && t < V) && threadIdx.x == 0)
		d[0] = __int_as_float(0x7fc00000);
}

/* ---- launchers ------------------------------------------------------------------------- */

void cuda_crossentropy_forward(float *losses, const float *logits, const int32_t *targets,
                               int N, int V)
{
	if (N <= 0)
		return;
	ce_fwd_kernel<<<N, CE_THREADS, 0, cuda_stream()>>>(losses, logits, targets, V);
	CUDA_LAUNCH_CHECK();
}

void cuda_crossentropy_backward(float *dlogits, const float *logits, const int32_t *targets,
                                float dloss, int N, int V)
{
	if (N <= 0)
		return;
	ce_bwd_kernel<<<N, CE_THREADS, 0, cuda_stream()>>>(dlogits, logits, targets, dloss, V);
	CUDA_LAUNCH_CHECK();
}
