/* swiglu.cu: out = silu(gate) · up, silu(g) = g·sigmoid(g), elementwise;
 * backward (writes) dgate = dout·up·(σ + silu·(1 − σ)), dup = dout·silu.
 * Same float expressions as the CPU reference; gate, up and out may be
 * BF16 (saved activations, backend.h), the arithmetic is fp32; dgate and
 * dup are written in fp32 and/or bf16 (the bf16 GEMMs' operands, possibly
 * over gate and up themselves: each thread reads its element first).
 */
#include "common.cuh"

/* ---- kernels ---------------------------------------------------------------------- */

template <typename A>
__global__ void swiglu_fwd_kernel(A *out, const A *gate, const A *up, size_t n)
{
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
	     i += (size_t)gridDim.x * blockDim.x) {
		float g = ldw(gate, i);
		out[i] = from_f32<A>(g / (1.0f + expf(-g)) * ldw(up, i));
	}
}

/* No __restrict__: dgate_b, dup_b may be gate, up (read, then written). */
template <typename A>
__global__ void swiglu_bwd_kernel(float *dgate, float *dup, __nv_bfloat16 *dgate_b,
                                  __nv_bfloat16 *dup_b, const float *dout, const A *gate,
                                  const A *up, size_t n)
{
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
	     i += (size_t)gridDim.x * blockDim.x) {
		float g = ldw(gate, i), u = ldw(up, i), s = 1.0f / (1.0f + expf(-g)), silu = g * s;
		float dg = dout[i] * u * (s + silu * (1.0f - s)), du = dout[i] * silu;
		if (dgate) {
			dgate[i] = dg;
			dup[i] = du;
		}
		if (dgate_b) {
			dgate_b[i] = from_f32<__nv_bfloat16>(dg);
			dup_b[i] = from_f32<__nv_bfloat16>(du);
		}
	}
}

/* ---- launchers ------------------------------------------------------------------------- */

void cuda_swiglu_forward(void *out, const void *gate, const void *up, lora_dtype adt, size_t N)
{
	if (!N)
		return;
	ADTYPE_DISPATCH(adt, A,
		swiglu_fwd_kernel<<<cuda_blocks(N, 256), 256, 0, cuda_stream()>>>(
			(A *)out, (const A *)gate, (const A *)up, N));
	CUDA_LAUNCH_CHECK();
}

void cuda_swiglu_backward(float *dgate, float *dup, void *dgate_b, void *dup_b,
                          const float *dout, const void *gate, const void *up, lora_dtype adt,
                          size_t N)
{
	LORA_ASSERT(!dgate == !dup && !dgate_b == !dup_b);
	/* bf16 over gate, up: elementwise only if they are bf16 themselves */
	LORA_ASSERT(adt == LORA_DTYPE_BF16 || (dgate_b != gate && dup_b != up));
	if (!N)
		return;
	ADTYPE_DISPATCH(adt, A,
		swiglu_bwd_kernel<<<cuda_blocks(N, 256), 256, 0, cuda_stream()>>>(
			dgate, dup, (__nv_bfloat16 *)dgate_b, (__nv_bfloat16 *)dup_b, dout,
			(const A *)gate, (const A *)up, N));
	CUDA_LAUNCH_CHECK();
}
