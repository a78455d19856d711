/* rope.cu: rotary position embedding, HF rotate_half layout: for j < HS/2
 * at position t, (x_j, x_{j+HS/2}) is rotated by the angle whose cos/sin
 * are freqs_cos/freqs_sin (T, HS/2), in fp32, input and output of one type
 * (F32, or BF16: the saved q and k of a bf16 run), in place or not. The
 * backward is the rotation by the negative angle (the transpose of an
 * orthogonal map) of an fp32 gradient, into fp32 (in place or not) and/or
 * bf16 (the operand of q's or k's bf16 GEMM). One thread per (b, t, h, j)
 * pair; it reads both elements of its pair before writing them.
 */
#include "common.cuh"

/* ---- kernels ---------------------------------------------------------------------- */

/* out (NULL: not written) in O, out_b (NULL: not written) in bf16 */
template <typename I, typename O>
__global__ void rope_kernel(O *out, __nv_bfloat16 *out_b, const I *x, const float *fc,
                            const float *fs, int T, int NH, int half, size_t n, float sign)
{
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
	     i += (size_t)gridDim.x * blockDim.x) {
		int j = (int)(i % half);
		size_t row = i / half;                      /* (b, t, h) */
		int t = (int)((row / NH) % T);
		const I *v = x + row * (2 * half);
		float c = fc[(size_t)t * half + j], s = sign * fs[(size_t)t * half + j];
		float x1 = ldw(v, j), x2 = ldw(v, j + half);
		float y1 = x1 * c - x2 * s, y2 = x2 * c + x1 * s;
		if (out) {
			O *o = out + row * (2 * half);
			o[j] = from_f32<O>(y1);
			o[j + half] = from_f32<O>(y2);
		}
		if (out_b) {
			__nv_bfloat16 *o = out_b + row * (2 * half);
			o[j] = from_f32<__nv_bfloat16>(y1);
			o[j + half] = from_f32<__nv_bfloat16>(y2);
		}
	}
}

/* ---- launchers ------------------------------------------------------------------------- */

static size_t rope_pairs(int B, int T, int NH, int HS)
{
	LORA_ASSERT(HS % 2 == 0);
	return (size_t)B * T * NH * (HS / 2);
}

void cuda_rope_forward(void *out, const void *x, lora_dtype adt, const float *fc,
                       const float *fs, int B, int T, int NH, int HS)
{
	size_t n = rope_pairs(B, T, NH, HS);
	if (!n)
		return;
	ADTYPE_DISPATCH(adt, A,
		rope_kernel<<<cuda_blocks(n, 256), 256, 0, cuda_stream()>>>(
			(A *)out, (__nv_bfloat16 *)NULL, (const A *)x, fc, fs, T, NH, HS / 2, n, 1.0f));
	CUDA_LAUNCH_CHECK();
}

void cuda_rope_backward(float *dinp, void *dinp_b, const float *dout, const float *fc,
                        const float *fs, int B, int T, int NH, int HS)
{
	LORA_ASSERT(dinp || dinp_b);
	LORA_ASSERT(dinp_b != (const void *)dout);
	size_t n = rope_pairs(B, T, NH, HS);
	if (!n)
		return;
	rope_kernel<<<cuda_blocks(n, 256), 256, 0, cuda_stream()>>>(
		dinp, (__nv_bfloat16 *)dinp_b, dout, fc, fs, T, NH, HS / 2, n, -1.0f);
	CUDA_LAUNCH_CHECK();
}
