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

#include <algorithm>
#include <mutex>
#include <vector>
#include <unordered_map>

/* cuBLAS's workspace: 32 MiB as NVIDIA recommends for Hopper. */
#define BLAS_WS_BYTES ((size_t)32 << 20)

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
	size_t smem_optin;         /* shared memory a block may opt in to, bytes */
	char desc[512];            /* lora_backend.desc */
} S = { -1 };

void cuda_fail(const char *what, const char *msg, const char *file, int line)
{
	fprintf(stderr, "%s:%d: CUDA error in %s: %s\n", file, line, what, msg);
	abort();
}

cudaStream_t cuda_stream(void) { return S.stream; }
cublasHandle_t cuda_blas(void) { return S.blas; }
int cuda_sm_count(void) { return S.sms; }
size_t cuda_smem_optin(void) { return S.smem_optin; }

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

/* The file's values cross the bus as they are, a workspace at a time, and a
 * kernel converts them into dst: a 7B model's bf16 (fp16) weights from an
 * fp16 (bf16 or fp32) file with no fp32 copy on the host. The stream keeps
 * the order: the next chunk's copy waits for the kernel reading the last. */
static void cu_upload_from(void *dst, lora_dtype dt, const void *src, lora_dtype st, size_t n)
{
	size_t ss = (size_t)lora_dtype_bits(st) / 8, ds = (size_t)lora_dtype_bits(dt) / 8;
	if (dt == st) {
		cu_upload(dst, src, n * ss);
		return;
	}
	const size_t chunk = S.ws_bytes / ss;
	for (size_t i = 0; i < n; i += chunk) {
		size_t m = n - i < chunk ? n - i : chunk;
		cu_upload(S.ws, (const char *)src + i * ss, m * ss);
		cuda_convert_from((char *)dst + i * ds, dt, S.ws, st, m);
	}
}

/* fp32 host values into dt: the device rounds them (upload_from) */
static void cu_upload_f32(void *dst, lora_dtype dt, const float *src, size_t n)
{
	cu_upload_from(dst, dt, src, LORA_DTYPE_F32, n);
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

/* ---- profile (LORA_CUDA_PROFILE=1) ------------------------------------------------------------
 * Each op of the table is wrapped: a CUDA event is recorded on the stream
 * before and after it, so the GPU time of the op is measured where it runs
 * (the host does not wait; pairs are resolved at the next report, or every
 * 4096 ops, which then waits for the stream). Reports (lora_backend_profile)
 * give per op its calls, GPU milliseconds and share, and the stream's span
 * from the first op to the last: span minus the ops' sum is time the GPU
 * sat between ops (launch gaps, host waits inside a batch of ops). */

#define PROF_MAX 48
static struct {
	int on;
	const char *name[PROF_MAX];
	double ms[PROF_MAX], span;
	long calls[PROF_MAX];
	struct rec { int id; cudaEvent_t a, b; };
	std::vector<rec> *pend;
	std::vector<cudaEvent_t> *pool;
} P;

static cudaEvent_t prof_event(void)
{
	cudaEvent_t e;
	if (P.pool->empty()) {
		CUDA_CHECK(cudaEventCreate(&e));
		return e;
	}
	e = P.pool->back();
	P.pool->pop_back();
	return e;
}

/* Waits for the stream's last recorded event and adds up every pair. */
static void prof_resolve(void)
{
	if (P.pend->empty())
		return;
	CUDA_CHECK(cudaEventSynchronize(P.pend->back().b));
	float ms;
	for (auto &r : *P.pend) {
		CUDA_CHECK(cudaEventElapsedTime(&ms, r.a, r.b));
		P.ms[r.id] += ms;
		P.calls[r.id]++;
	}
	CUDA_CHECK(cudaEventElapsedTime(&ms, P.pend->front().a, P.pend->back().b));
	P.span += ms;
	for (auto &r : *P.pend) {
		P.pool->push_back(r.a);
		P.pool->push_back(r.b);
	}
	P.pend->clear();
}

template <int ID, auto F> struct prof;
template <int ID, typename R, typename... A, R (*F)(A...)> struct prof<ID, F> {
	static R call(A... a)
	{
		cudaEvent_t e0 = prof_event(), e1 = prof_event();
		CUDA_CHECK(cudaEventRecord(e0, S.stream));
		struct after {   /* records e1 once F has been issued, whatever it returns */
			cudaEvent_t a, b;
			~after()
			{
				CUDA_CHECK(cudaEventRecord(b, S.stream));
				P.pend->push_back({ ID, a, b });
				if (P.pend->size() >= 4096)
					prof_resolve();
			}
		} done = { e0, e1 };
		return F(a...);
	}
};

extern "C" void cuda_profile_report(const char *label)
{
	if (!P.on || S.dev < 0)
		return;
	prof_resolve();
	double sum = 0;
	int order[PROF_MAX], n = 0;
	for (int i = 0; i < PROF_MAX; i++)
		if (P.calls[i]) {
			sum += P.ms[i];
			order[n++] = i;
		}
	if (label && n) {
		std::sort(order, order + n, [](int x, int y) { return P.ms[x] > P.ms[y]; });
		fprintf(stderr, "profile %s (%s): %.2f ms from the first op to the last, %.2f ms in "
		        "ops, %.2f ms between them\n", label, S.name, P.span, sum, P.span - sum);
		fprintf(stderr, "  %-24s %8s %11s %7s %10s\n", "op", "calls", "GPU ms", "share",
		        "mean us");
		for (int k = 0; k < n; k++) {
			int i = order[k];
			fprintf(stderr, "  %-24s %8ld %11.3f %6.1f%% %10.1f\n", P.name[i], P.calls[i],
			        P.ms[i], 100 * P.ms[i] / sum, 1e3 * P.ms[i] / P.calls[i]);
		}
	}
	for (int i = 0; i < PROF_MAX; i++) {
		P.ms[i] = 0;
		P.calls[i] = 0;
	}
	P.span = 0;
}

static void prof_at_exit(void) { cuda_profile_report("(to the end)"); }

/* ---- the table ----------------------------------------------------------------------------- */

/* Filled field by field in lora_backend_cuda (robust to the order of the
 * struct; a NULL left here would be an op added to backend.h without a
 * kernel, which tests/test-cuda-ops.c checks). */
static lora_backend cuda_be;

/* t->field = fn, or fn timed (see above) when profiling; ids from
 * __COUNTER__, one per op */
#define OP(field, fn) do { \
	constexpr int id_ = __COUNTER__; \
	static_assert(id_ < PROF_MAX, "PROF_MAX"); \
	t->field = fn; \
	if (P.on) { \
		t->field = prof<id_, fn>::call; \
		P.name[id_] = #field; \
	} } while (0)

static void table_fill(lora_backend *t)
{
	t->name = S.name;
	t->desc = S.desc;
	t->wdtype = LORA_DTYPE_BF16;
	t->is_host = 0;
	t->alloc = cu_alloc;
	t->free = cu_free;
	t->upload = cu_upload;
	t->download = cu_download;
	t->copy = cu_copy;
	t->zero = cu_zero;
	t->upload_f32 = cu_upload_f32;
	t->upload_from = cu_upload_from;
	t->sync = cu_sync;
	t->mem_info = cu_mem_info;
	OP(embedding_forward, cuda_embedding_forward);
	OP(embedding_backward, cuda_embedding_backward);
	OP(rmsnorm_forward, cuda_rmsnorm_forward);
	OP(rmsnorm_backward, cuda_rmsnorm_backward);
	OP(linear_forward, cuda_linear_forward);
	OP(linear_backward, cuda_linear_backward);
	OP(lora_down, cuda_lora_down);
	OP(lora_up, cuda_lora_up);
	OP(lora_up_backward, cuda_lora_up_backward);
	OP(lora_down_backward, cuda_lora_down_backward);
	OP(rope_forward, cuda_rope_forward);
	OP(rope_backward, cuda_rope_backward);
	t->attention_saved_floats = cuda_attention_saved_floats;
	t->attention_scratch_floats = cuda_attention_scratch_floats;
	OP(attention_forward, cuda_attention_forward);
	OP(attention_backward, cuda_attention_backward);
	t->attention_check = cuda_attention_check;
	OP(swiglu_forward, cuda_swiglu_forward);
	OP(swiglu_backward, cuda_swiglu_backward);
	OP(add_forward, cuda_add_forward);
	OP(crossentropy_forward, cuda_crossentropy_forward);
	OP(crossentropy_backward, cuda_crossentropy_backward);
	OP(adamw_update, cuda_adamw_update);
	OP(sumsq, cuda_sumsq);
	OP(sumsq_segments, cuda_sumsq_segments);
	OP(scale, cuda_scale);
}

/* The compute capabilities this build has machine code for: the
 * Makefile's CUDA_ARCHS joined by '_' (nvcc would split a -D value at
 * commas), as "80 90" in archs. */
#define ARCHS_STR_(x) #x
#define ARCHS_STR(x) ARCHS_STR_(x)
static void build_archs(char *archs, size_t n)
{
#ifdef LORA_CUDA_ARCHS
	snprintf(archs, n, "%s", ARCHS_STR(LORA_CUDA_ARCHS));
	for (char *c = archs; *c; c++)
		if (*c == '_')
			*c = ' ';
#else
	snprintf(archs, n, "(emulator)");
#endif
}

/* Whether the build holds machine code this GPU runs: an sm_XY of
 * CUDA_ARCHS with the GPU's major version and a minor no greater than its
 * own (sm_80 runs on every 8.x). Otherwise the driver compiles the PTX of
 * the first of CUDA_ARCHS (a Blackwell GPU with the default 80 90). */
static int has_sass_for(int major, int minor)
{
	char archs[64], *end;
	build_archs(archs, sizeof archs);
	for (const char *p = archs;; p = end) {
		long a = strtol(p, &end, 10);
		if (end == p)
			return 0;
		if (a / 10 == major && a % 10 <= minor)
			return 1;
	}
}

/* No GPU answers, but a dry run asks what a run would need: the table of a
 * GPU like the one the tests emulate (an H100: 132 SMs, 227 KiB of shared
 * memory per block; the attention path and its scratch depend on them),
 * holding the backend's own workspaces, with capacity 0 (unknown). Only
 * the sizing entries may be called: nothing is allocated. */
extern "C" const lora_backend *lora_backend_cuda_plan(void)
{
	static lora_backend plan_be;
	if (S.dev >= 0)
		return &cuda_be;
	if (!plan_be.name) {
		S.sms = 132;
		S.smem_optin = 227 * 1024;
		S.used = S.peak = BLAS_WS_BYTES + CUDA_WS_BYTES;
		S.capacity = 0;
		snprintf(S.name, sizeof S.name, "cuda");
		snprintf(S.desc, sizeof S.desc, "none here: planned for a GPU of %d SMs and %zu KiB "
		         "of shared memory per block (an H100)", S.sms, S.smem_optin >> 10);
		table_fill(&plan_be);
	}
	return &plan_be;
}

/* The sum of the headers this library was built against (the Makefile's
 * BACKEND_ABI): lib/backend.c loads it only into a tool built against the
 * same. */
extern "C" const unsigned lora_cuda_abi = LORA_BACKEND_ABI;

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
	/* bf16 tensor-core mma, ldmatrix and cp.async are sm_80's */
	if (prop.major < 8) {
		lora_err("device 'cuda:%d' (%s, compute capability %d.%d): the CUDA backend needs "
		         "compute capability 8.0 (Ampere) or newer", dev, prop.name, prop.major,
		         prop.minor);
		return NULL;
	}
	cudaFuncAttributes fa;
	if ((e = cudaFuncGetAttributes(&fa, probe_kernel)) != cudaSuccess) {
		char archs[64];
		build_archs(archs, sizeof archs);
		cudaGetLastError();
		lora_err("device 'cuda:%d' (%s, compute capability %d.%d) is not supported by this "
		         "build (kernels built for CUDA_ARCHS=\"%s\"; make CUDA_ARCHS=%d%d builds for "
		         "it): %s", dev, prop.name, prop.major, prop.minor, archs, prop.major,
		         prop.minor, cudaGetErrorString(e));
		return NULL;
	}
	CUDA_CHECK(cudaStreamCreateWithFlags(&S.stream, cudaStreamNonBlocking));
	CUBLAS_CHECK(cublasCreate(&S.blas));
	CUBLAS_CHECK(cublasSetStream(S.blas, S.stream));
	CUBLAS_CHECK(cublasSetMathMode(S.blas, CUBLAS_DEFAULT_MATH));   /* no TF32 for F32 */
	/* The run's capacity is what is free now, before its own workspaces:
	 * the GPU's total less the CUDA context and whatever other processes
	 * hold (a second run, a notebook), so the plan and its suggestions
	 * count only memory the run can have. */
	size_t total = 0;
	CUDA_CHECK(cudaMemGetInfo(&S.capacity, &total));
	S.sizes = new std::unordered_map<void *, size_t>();
	S.used = S.peak = 0;        /* (a dry run's plan table may have set them) */
	S.dev = dev;
	S.sms = prop.multiProcessorCount;
	S.smem_optin = prop.sharedMemPerBlockOptin;
	snprintf(S.desc, sizeof S.desc, "%s, compute capability %d.%d, %d SMs%s", prop.name,
	         prop.major, prop.minor, prop.multiProcessorCount,
	         has_sass_for(prop.major, prop.minor) ? "" :
	         "; no machine code for it in this build: the driver compiles the kernels' PTX "
	         "when they are first used (slow once, then cached in ~/.nv/ComputeCache)");
	snprintf(S.name, sizeof S.name, "cuda:%d", dev);
	const char *pe = getenv("LORA_CUDA_PROFILE");
	if (pe && *pe && strcmp(pe, "0")) {
		P.on = 1;
		P.pend = new std::vector<decltype(P)::rec>();
		P.pool = new std::vector<cudaEvent_t>();
		atexit(prof_at_exit);   /* after the runtime's own: runs before its teardown */
	}
	table_fill(&cuda_be);
	const size_t blas_ws = BLAS_WS_BYTES;
	if (!(S.blas_ws = cu_alloc(blas_ws)))
		return NULL;
	CUBLAS_CHECK(cublasSetWorkspace(S.blas, S.blas_ws, blas_ws));
	if (!(S.ws = cu_alloc(CUDA_WS_BYTES)))
		return NULL;
	S.ws_bytes = CUDA_WS_BYTES;
	CUDA_CHECK(cudaStreamSynchronize(S.stream));
	return &cuda_be;
}
