/* backend_cuda.cu: the CUDA backend's table (lib/backend.h) and what is not
 * an op: opening the device, the one stream and cuBLAS handle, device memory
 * with a used/peak counter, host<->device copies, the workspace.
 *
 * One GPU per process: the first lora_backend_cuda(dev) opens dev; asking
 * for another index later is an error. Everything runs in order on one
 * stream; upload/download/sumsq/sumsq_segments synchronise it, ops do not.
 *
 * Memory: alloc is cudaMalloc plus an asynchronous zero fill; each pointer's
 * size is kept in a host table so that free can keep the `used` counter. Out
 * of memory is NULL + lora_err with the request, what this run holds and
 * what the device has free, so the model can say what did not fit.
 */
#include "common.cuh"

#include <mutex>
#include <unordered_map>

/* ---- state ------------------------------------------------------------------------ */

static struct {
	int dev;                   /* -1 until opened */
	char name[32];             /* "cuda:0" */
	cudaStream_t stream;
	cublasHandle_t blas;
	void *blas_ws;             /* cuBLAS workspace, ours so it is counted */
	void *ws;                  /* cuda_workspace */
	size_t ws_bytes;
	std::mutex mu;             /* guards the table and the counters */
	std::unordered_map<void *, size_t> *sizes;
	size_t used, peak, capacity;
	int sms;                   /* streaming multiprocessors */
} S = { -1 };

void cuda_fail(const char *what, const char *msg, const char *file, int line)
{
	fprintf(stderr, "%s:%d: CUDA error in %s: %s\n", file, line, what, msg);
	abort();
}

cudaStream_t cuda_stream(void) { return S.stream; }
cublasHandle_t cuda_blas(void) { return S.blas; }
int cuda_sm_count(void) { return S.sms; }

/* ---- memory -------------------------------------------------------------------------- */

static void *cu_alloc(size_t bytes)
{
	void *p = NULL;
	size_t n = bytes ? bytes : 1;
	cudaError_t e = cudaMalloc(&p, n);
	if (e != cudaSuccess) {
		cudaGetLastError();      /* clear the sticky-free error state */
		size_t freeb = 0, total = 0;
		cudaMemGetInfo(&freeb, &total);
		lora_err("out of GPU memory on %s: cannot allocate %.1f MiB "
		         "(this run holds %.1f MiB; %.1f MiB free of %.1f MiB): %s",
		         S.name, bytes / 1048576.0, S.used / 1048576.0,
		         freeb / 1048576.0, total / 1048576.0, cudaGetErrorString(e));
		return NULL;
	}
	CUDA_CHECK(cudaMemsetAsync(p, 0, n, S.stream));
	std::lock_guard<std::mutex> g(S.mu);
	(*S.sizes)[p] = n;
	S.used += n;
	if (S.used > S.peak)
		S.peak = S.used;
	return p;
}

static void cu_free(void *p)
{
	if (!p)
		return;
	{
		std::lock_guard<std::mutex> g(S.mu);
		auto it = S.sizes->find(p);
		LORA_ASSERT(it != S.sizes->end());   /* not from cu_alloc, or freed twice */
		S.used -= it->second;
		S.sizes->erase(it);
	}
	CUDA_CHECK(cudaFree(p));     /* synchronises the device */
}

static void cu_upload(void *dst, const void *src, size_t bytes)
{
	if (!bytes)
		return;
	CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, S.stream));
	CUDA_CHECK(cudaStreamSynchronize(S.stream));
}

static void cu_download(void *dst, const void *src, size_t bytes)
{
	if (!bytes)
		return;
	CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, S.stream));
	CUDA_CHECK(cudaStreamSynchronize(S.stream));
}

static void cu_copy(void *dst, const void *src, size_t bytes)
{
	if (bytes)
		CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, S.stream));
}

static void cu_zero(void *p, size_t bytes)
{
	if (bytes)
		CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, S.stream));
}

static void cu_sync(void)
{
	CUDA_CHECK(cudaStreamSynchronize(S.stream));
}

/* F32 host values into a buffer of dtype dt: converted on the host in chunks
 * (lora_convert: round to nearest even, as torch's .to(bfloat16)). */
static void cu_upload_f32(void *dst, lora_dtype dt, const float *src, size_t n)
{
	if (dt == LORA_DTYPE_F32) {
		cu_upload(dst, src, n * sizeof(float));
		return;
	}
	LORA_ASSERT(dt == LORA_DTYPE_BF16 || dt == LORA_DTYPE_F16);
	const size_t chunk = (size_t)1 << 22;
	uint16_t *tmp = (uint16_t *)lora_xmalloc((n < chunk ? n : chunk) * sizeof(uint16_t));
	for (size_t i = 0; i < n; i += chunk) {
		size_t m = n - i < chunk ? n - i : chunk;
		LORA_ASSERT(lora_convert(tmp, dt, src + i, LORA_DTYPE_F32, m) == 0);
		cu_upload((uint16_t *)dst + i, tmp, m * sizeof(uint16_t));
	}
	free(tmp);
}

static void cu_mem_info(size_t *used, size_t *peak, size_t *cap)
{
	std::lock_guard<std::mutex> g(S.mu);
	if (used)
		*used = S.used;
	if (peak)
		*peak = S.peak;
	if (cap)
		*cap = S.capacity;
}

void *cuda_workspace(size_t bytes)
{
	LORA_ASSERT(bytes <= S.ws_bytes);
	return S.ws;
}

void *cuda_buffer_alloc(size_t bytes)
{
	void *p = cu_alloc(bytes);
	if (!p) {
		fprintf(stderr, "%s\n", lora_errmsg());
		LORA_ASSERT(!"cannot allocate a CUDA op buffer");
	}
	return p;
}

void cuda_buffer_free(void *p) { cu_free(p); }

/* ---- the table ----------------------------------------------------------------------------- */

/* Filled field by field in lora_backend_cuda (robust to the order of the
 * struct; a NULL left here would be an op added to backend.h without a
 * kernel, which tests/test-cuda-ops.c checks). */
static lora_backend cuda_be;

static void table_fill(lora_backend *t)
{
	t->name = S.name;
	t->wdtype = LORA_DTYPE_BF16;
	t->is_host = 0;
	t->alloc = cu_alloc;
	t->free = cu_free;
	t->upload = cu_upload;
	t->download = cu_download;
	t->copy = cu_copy;
	t->zero = cu_zero;
	t->upload_f32 = cu_upload_f32;
	t->sync = cu_sync;
	t->mem_info = cu_mem_info;
	t->embedding_forward = cuda_embedding_forward;
	t->embedding_backward = cuda_embedding_backward;
	t->rmsnorm_forward = cuda_rmsnorm_forward;
	t->rmsnorm_backward = cuda_rmsnorm_backward;
	t->linear_forward = cuda_linear_forward;
	t->linear_backward = cuda_linear_backward;
	t->lora_down = cuda_lora_down;
	t->lora_up = cuda_lora_up;
	t->lora_up_backward = cuda_lora_up_backward;
	t->lora_down_backward = cuda_lora_down_backward;
	t->rope_forward = cuda_rope_forward;
	t->rope_backward = cuda_rope_backward;
	t->attention_saved_floats = cuda_attention_saved_floats;
	t->attention_scratch_floats = cuda_attention_scratch_floats;
	t->attention_forward = cuda_attention_forward;
	t->attention_backward = cuda_attention_backward;
	t->swiglu_forward = cuda_swiglu_forward;
	t->swiglu_backward = cuda_swiglu_backward;
	t->add_forward = cuda_add_forward;
	t->crossentropy_forward = cuda_crossentropy_forward;
	t->crossentropy_backward = cuda_crossentropy_backward;
	t->adamw_update = cuda_adamw_update;
	t->sumsq = cuda_sumsq;
	t->sumsq_segments = cuda_sumsq_segments;
	t->scale = cuda_scale;
}

/* A kernel of this build, to ask whether the GPU can run our machine code. */
__global__ static void probe_kernel(void) {}

extern "C" const lora_backend *lora_backend_cuda(int dev)
{
	if (S.dev >= 0) {
		if (dev == S.dev)
			return &cuda_be;
		lora_err("device 'cuda:%d': this process already uses cuda:%d", dev, S.dev);
		return NULL;
	}
	int n = 0;
	cudaError_t e = cudaGetDeviceCount(&n);
	if (e != cudaSuccess || n == 0) {
		cudaGetLastError();
		if (e == cudaErrorInsufficientDriver)     /* also what "no driver at all" says */
			lora_err("no CUDA GPU found (no NVIDIA driver, or one too old for CUDA %d.%d)",
			         CUDART_VERSION / 1000, CUDART_VERSION % 1000 / 10);
		else
			lora_err("no CUDA GPU found (%s)",
			         e != cudaSuccess ? cudaGetErrorString(e) : "0 devices");
		return NULL;
	}
	if (dev < 0 || dev >= n) {
		lora_err("device 'cuda:%d': no such GPU (%d found)", dev, n);
		return NULL;
	}
	cudaDeviceProp prop;
	if ((e = cudaSetDevice(dev)) != cudaSuccess ||
	    (e = cudaGetDeviceProperties(&prop, dev)) != cudaSuccess) {
		cudaGetLastError();
		lora_err("device 'cuda:%d': cannot open: %s", dev, cudaGetErrorString(e));
		return NULL;
	}
	cudaFuncAttributes fa;
	if ((e = cudaFuncGetAttributes(&fa, probe_kernel)) != cudaSuccess) {
		cudaGetLastError();
		lora_err("device 'cuda:%d' (%s, compute capability %d.%d) is not supported by this "
		         "build (kernels built for sm_90): %s", dev, prop.name, prop.major,
		         prop.minor, cudaGetErrorString(e));
		return NULL;
	}
	CUDA_CHECK(cudaStreamCreateWithFlags(&S.stream, cudaStreamNonBlocking));
	CUBLAS_CHECK(cublasCreate(&S.blas));
	CUBLAS_CHECK(cublasSetStream(S.blas, S.stream));
	CUBLAS_CHECK(cublasSetMathMode(S.blas, CUBLAS_DEFAULT_MATH));   /* no TF32 for F32 */
	size_t freeb = 0;
	CUDA_CHECK(cudaMemGetInfo(&freeb, &S.capacity));
	S.sizes = new std::unordered_map<void *, size_t>();
	S.dev = dev;
	S.sms = prop.multiProcessorCount;
	snprintf(S.name, sizeof S.name, "cuda:%d", dev);
	table_fill(&cuda_be);
	/* cuBLAS's workspace: 32 MiB as NVIDIA recommends for Hopper. */
	const size_t blas_ws = (size_t)32 << 20;
	if (!(S.blas_ws = cu_alloc(blas_ws)))
		return NULL;
	CUBLAS_CHECK(cublasSetWorkspace(S.blas, S.blas_ws, blas_ws));
	if (!(S.ws = cu_alloc(CUDA_WS_BYTES)))
		return NULL;
	S.ws_bytes = CUDA_WS_BYTES;
	CUDA_CHECK(cudaStreamSynchronize(S.stream));
	return &cuda_be;
}
