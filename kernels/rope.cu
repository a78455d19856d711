/* rope.cu: rotary position embedding, HF rotate_half layout: for j < HS/2
 * at position t, (x_j, x_{j+HS/2}) is rotated by the angle whose cos/sin
 * are freqs_cos/freqs_sin (T, HS/2), in fp32, input and output of one type
 * (F32, or BF16: the saved q and k of a bf16 run), in place or not. The backward is the
 * rotation by the negative angle (the transpose of an orthogonal map), in
 * place. One thread per (b, t, h, j) pair; it reads both elements of its
 * pair before writing them.
 */
#include "common.cuh"

/* ---- kernels ---------------------------------------------------------------------- */

template <typename O>
__global__ void rope_kernel(O *out, const O *x, const float *fc, const float *fs, int T,
                            int NH, int half, size_t n, float sign)
{
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
	     i += (size_t)gridDim.x * blockDim.x) {
		int j = (int)(i % half);
		size_t row = i / half;                      /* (b, t, h) */
		int t = (int)((row / NH) % T);
		const O *v = x + row * (2 * half);
		O *o = out + row * (2 * half);
		float c = fc[(size_t)t * half + j], s = sign * fs[(size_t)t * half + j];
		float x1 = ldw(v, j), x2 = ldw(v, j + half);
		o[j] = from_f32<O>(x1 * c - x2 * s);
		o[j + half] = from_f32<O>(x2 * c + x1 * s);
	}
}

/* ---- launchers ------------------------------------------------------------------------- */

static void rope(void *out, const void *x, lora_dtype adt, const float *fc, const float *fs,
                 int B, int T, int NH, int HS, float sign)
{
	LORA_ASSERT(HS % 2 == 0);
	int half = HS / 2;
	size_t n = (size_t)B * T * NH * half;
	if (!n)
		return;
	ADTYPE_DISPATCH(adt, O,
		rope_kernel<<<cuda_blocks(n, 256), 256, 0, cuda_stream()>>>(
			(O *)out, (const O *)x, fc, fs, T, NH, half, n, sign));
	CUDA_LAUNCH_CHECK();
}

void cuda_rope_forward(void *out, const void *x, lora_dtype adt, const float *fc,
                       const float *fs, int B, int T, int NH, int HS)
{
	rope(out, x, adt, fc, fs, B, T, NH, HS, 1.0f);
}

void cuda_rope_backward(float *dx, const float *fc, const float *fs, int B, int T, int NH, int HS)
{
	rope(dx, dx, LORA_DTYPE_F32, fc, fs, B, T, NH, HS, -1.0f);
}
