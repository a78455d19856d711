/* swiglu.cu: out = silu(gate) · up, silu(g) = g·sigmoid(g), elementwise;
 * backward (writes) dgate = dout·up·(σ + silu·(1 − σ)), dup = dout·silu.
 * Same float expressions as the CPU reference; gate, up and out may be
 * BF16 (saved activations, backend.h), the arithmetic is fp32; dgate and
 * dup may be BF16 too (read only by the bf16 GEMMs of gate and up).
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

template <typename A, typename G>
__global__ void swiglu_bwd_kernel(G *dgate, G *dup, const float *dout, const A *gate,
                                  const A *up, size_t n)
{
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
	     i += (size_t)gridDim.x * blockDim.x) {
		float g = ldw(gate, i), s = 1.0f / (1.0f + expf(-g)), silu = g * s;
		dgate[i] = from_f32<G>(dout[i] * ldw(up, i) * (s + silu * (1.0f - s)));
		dup[i] = from_f32<G>(dout[i] * silu);
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

void cuda_swiglu_backward(void *dgate, void *dup, lora_dtype gdt, const float *dout,
                          const void *gate, const void *up, lora_dtype adt, size_t N)
{
	if (!N)
		return;
	if (gdt == LORA_DTYPE_F32) {
		ADTYPE_DISPATCH(adt, A,
			swiglu_bwd_kernel<<<cuda_blocks(N, 256), 256, 0, cuda_stream()>>>(
				(float *)dgate, (float *)dup, dout, (const A *)gate, (const A *)up, N));
	} else {
		LORA_ASSERT(gdt == LORA_DTYPE_BF16);
		ADTYPE_DISPATCH(adt, A,
			swiglu_bwd_kernel<<<cuda_blocks(N, 256), 256, 0, cuda_stream()>>>(
				(__nv_bfloat16 *)dgate, (__nv_bfloat16 *)dup, dout, (const A *)gate,
				(const A *)up, N));
	}
	CUDA_LAUNCH_CHECK();
}
