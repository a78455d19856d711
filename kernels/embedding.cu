/* embedding.cu: out (N, C) = wte[ids[n]] converted to fp32; backward
 * dwte[ids[n]] += dout[n] (atomic adds: a token may repeat in the batch, so
 * the order of the additions, and the last bits, vary from run to run).
 * The op layer passes no V, so ids are checked against V by the model on the
 * host; here a negative id (which cannot assert on the device) gives a NaN
 * row, so the loss turns NaN and the trainer's NaN check stops the run.
 */
#include "common.cuh"

/* ---- kernels ---------------------------------------------------------------------- */

template <typename W>
__global__ void embedding_fwd_kernel(float *out, const int32_t *ids, const W *wte, int N, int C,
                                     size_t V)
{
	size_t n = (size_t)N * C;
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
	     i += (size_t)gridDim.x * blockDim.x) {
		size_t row = i / C, c = i % C;
		int32_t id = ids[row];
		out[i] = id >= 0 && (size_t)id < V ? ldw(wte, (size_t)id * C + c) : __int_as_float(0x7fc00000);
	}
}

__global__ void embedding_bwd_kernel(float *dwte, const float *dout, const int32_t *ids, int N, int C)
{
	size_t n = (size_t)N * C;
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
	     i += (size_t)gridDim.x * blockDim.x) {
		int32_t id = ids[i / C];
		if (id >= 0)
			atomicAdd(&dwte[(size_t)id * C + i % C], dout[i]);
	}
}

/* ---- launchers ------------------------------------------------------------------------- */

void cuda_embedding_forward(float *out, const int32_t *ids, const void *wte, lora_dtype wdt, int N, int C)
{
	size_t n = (size_t)N * C;
	if (!n)
		return;
	/* The op layer does not pass V; the bound only guards against negative
	 * and absurd ids (the model checks ids against V on the host). */
	const size_t V = (size_t)INT32_MAX;
	WDTYPE_DISPATCH(wdt, W,
		embedding_fwd_kernel<<<cuda_blocks(n, 256), 256, 0, cuda_stream()>>>(
			out, ids, (const W *)wte, N, C, V));
	CUDA_LAUNCH_CHECK();
}

void cuda_embedding_backward(float *dwte, const float *dout, const int32_t *ids, int N, int C)
{
	size_t n = (size_t)N * C;
	if (!n)
		return;
	embedding_bwd_kernel<<<cuda_blocks(n, 256), 256, 0, cuda_stream()>>>(dwte, dout, ids, N, C);
	CUDA_LAUNCH_CHECK();
}
