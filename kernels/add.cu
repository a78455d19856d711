/* add.cu: the residual out = a + b, elementwise (out may alias a or b: each
 * element is read and written by the same thread), and the conversions
 * (convert_kernel, common.cuh) of an fp32 array to a saved activation's
 * dtype and of a weight from its file's dtype to the run's (upload_from). */
#include "common.cuh"

/* ---- kernels ---------------------------------------------------------------------- */

__global__ void add_kernel(float *out, const float *a, const float *b, size_t n)
{
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
	     i += (size_t)gridDim.x * blockDim.x)
		out[i] = a[i] + b[i];
}

/* ---- launchers ------------------------------------------------------------------------- */

void cuda_add_forward(float *out, const float *a, const float *b, size_t N)
{
	if (!N)
		return;
	add_kernel<<<cuda_blocks(N, 256), 256, 0, cuda_stream()>>>(out, a, b, N);
	CUDA_LAUNCH_CHECK();
}

void cuda_convert_from(void *out, lora_dtype odt, const void *in, lora_dtype idt, size_t N)
{
	if (!N)
		return;
	WDTYPE_DISPATCH(odt, DT, WDTYPE_DISPATCH(idt, ST,
		convert_kernel<<<cuda_blocks(N, 256), 256, 0, cuda_stream()>>>((DT *)out,
			(const ST *)in, N)));
	CUDA_LAUNCH_CHECK();
}

void cuda_convert(void *out, lora_dtype odt, const float *src, size_t N)
{
	if (odt != LORA_DTYPE_F32)
		cuda_convert_from(out, odt, src, LORA_DTYPE_F32, N);
	else if (N && out != src)
		CUDA_CHECK(cudaMemcpyAsync(out, src, N * sizeof(float), cudaMemcpyDeviceToDevice,
		                           cuda_stream()));
}
