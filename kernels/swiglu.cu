/* swiglu.cu: out = silu(gate) · up, silu(g) = g·sigmoid(g), elementwise;
 * backward dgate += dout·up·(σ + silu·(1 − σ)), dup += dout·silu.
 * Same float expressions as the CPU reference.
 */
#include "common.cuh"

/* ---- kernels ---------------------------------------------------------------------- */

__global__ void swiglu_fwd_kernel(float *out, const float *gate, const float *up, size_t n)
{
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
	     i += (size_t)gridDim.x * blockDim.x) {
		float g = gate[i];
		out[i] = g / (1.0f + expf(-g)) * up[i];
	}
}

__global__ void swiglu_bwd_kernel(float *dgate, float *dup, const float *dout,
                                  const float *gate, const float *up, size_t n)
{
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
	     i += (size_t)gridDim.x * blockDim.x) {
		float g = gate[i], s = 1.0f / (1.0f + expf(-g)), silu = g * s;
		dgate[i] += dout[i] * up[i] * (s + silu * (1.0f - s));
		dup[i] += dout[i] * silu;
	}
}

/* ---- launchers ------------------------------------------------------------------------- */

void cuda_swiglu_forward(float *out, const float *gate, const float *up, size_t N)
{
	if (!N)
		return;
	swiglu_fwd_kernel<<<cuda_blocks(N, 256), 256, 0, cuda_stream()>>>(out, gate, up, N);
	CUDA_LAUNCH_CHECK();
}

void cuda_swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate,
                          const float *up, size_t N)
{
	if (!N)
		return;
	swiglu_bwd_kernel<<<cuda_blocks(N, 256), 256, 0, cuda_stream()>>>(dgate, dup, dout, gate,
	                                                                  up, N);
	CUDA_LAUNCH_CHECK();
}
