/* adamw.cu: torch.optim.AdamW's single-tensor step in one elementwise kernel
 * (the same float expressions as the CPU reference, step size and bias
 * corrections computed on the host), the Σx² for gradient-norm clipping
 * (per-thread double sums, one atomic add per block, then a copy back: it
 * synchronises), and x *= s.
 * The op layer hands one parameter tensor per call; a multi-tensor launch
 * over every LoRA tensor at once needs the params in one buffer (see
 * docs/readme-cuda.md).
 */
#include "common.cuh"

/* ---- kernels ---------------------------------------------------------------------- */

__global__ void adamw_kernel(float *p, const float *g, float *m, float *v, size_t n,
                             float beta1, float beta2, float eps, float step_size,
                             float bc2_sqrt, float decay)
{
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
	     i += (size_t)gridDim.x * blockDim.x) {
		float gi = g[i], pi = p[i] * decay;
		float mi = m[i] + (1.0f - beta1) * (gi - m[i]);
		float vi = v[i] * beta2 + (1.0f - beta2) * gi * gi;
		float denom = sqrtf(vi) / bc2_sqrt + eps;
		p[i] = pi - step_size * (mi / denom);
		m[i] = mi;
		v[i] = vi;
	}
}

__global__ void sumsq_kernel(double *out, const float *x, size_t n)
{
	__shared__ double sh[32];
	double s = 0;
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
	     i += (size_t)gridDim.x * blockDim.x)
		s += (double)x[i] * x[i];
	for (int o = 16; o > 0; o >>= 1)
		s += __shfl_xor_sync(0xffffffffu, s, o);
	int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
	if (lane == 0)
		sh[warp] = s;
	__syncthreads();
	if (warp == 0) {
		s = lane < (int)(blockDim.x >> 5) ? sh[lane] : 0.0;
		for (int o = 16; o > 0; o >>= 1)
			s += __shfl_xor_sync(0xffffffffu, s, o);
		if (lane == 0)
			atomicAdd(out, s);
	}
}

__global__ void scale_kernel(float *x, float s, size_t n)
{
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
	     i += (size_t)gridDim.x * blockDim.x)
		x[i] *= s;
}

/* ---- launchers ------------------------------------------------------------------------- */

void cuda_adamw_update(float *p, const float *g, float *m, float *v, size_t n, float lr,
                       float beta1, float beta2, float eps, float wd, double bc1, double bc2)
{
	if (!n)
		return;
	float step_size = (float)(lr / bc1);
	float bc2_sqrt = (float)sqrt(bc2);
	float decay = 1.0f - lr * wd;
	adamw_kernel<<<cuda_blocks(n, 256), 256, 0, cuda_stream()>>>(
		p, g, m, v, n, beta1, beta2, eps, step_size, bc2_sqrt, decay);
	CUDA_LAUNCH_CHECK();
}

double cuda_sumsq(const float *x, size_t n)
{
	double *d = (double *)cuda_workspace(sizeof(double)), s = 0;
	CUDA_CHECK(cudaMemsetAsync(d, 0, sizeof(double), cuda_stream()));
	if (n) {
		unsigned blocks = cuda_blocks(n, 256);
		if (blocks > 1024)
			blocks = 1024;
		sumsq_kernel<<<blocks, 256, 0, cuda_stream()>>>(d, x, n);
		CUDA_LAUNCH_CHECK();
	}
	CUDA_CHECK(cudaMemcpyAsync(&s, d, sizeof(double), cudaMemcpyDeviceToHost, cuda_stream()));
	CUDA_CHECK(cudaStreamSynchronize(cuda_stream()));
	return s;
}

void cuda_scale(float *x, float s, size_t n)
{
	if (!n)
		return;
	scale_kernel<<<cuda_blocks(n, 256), 256, 0, cuda_stream()>>>(x, s, n);
	CUDA_LAUNCH_CHECK();
}
