/* cudasim.cc: the CPU emulator's runtime (see cudasim.h): device memory,
 * launches, the fiber scheduler behind barriers and shuffles, shared memory,
 * and cublasGemmEx on OpenBLAS. */
#include "cudasim.h"
#include "include/cublas_v2.h"

#include <cblas.h>
#include <stdarg.h>
#include <sys/mman.h>
#include <time.h>

#include <map>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#define SIM_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SIM_ASAN 1
#endif
#endif
#ifdef SIM_ASAN
#include <sanitizer/common_interface_defs.h>
#endif

#if !defined(__x86_64__)
#error "cudasim: the fiber switch is written for x86-64"
#endif

namespace sim {

uint3 t_idx, b_idx;
dim3 b_dim, g_dim;

/* ---- device state ------------------------------------------------------------------ */

static cudaError_t last_error = cudaSuccess;
static std::map<const char *, size_t, std::less<const char *>> *allocs;   /* base -> bytes */
static size_t mem_used, mem_cap, mem_taken;   /* taken: other processes' */
static std::map<const void *, int> *smem_optin;     /* kernel -> allowed dynamic bytes */
/* the emulated GPU: an H100 (sm_90, 227 KiB of shared memory per block)
 * unless CUDASIM_CC (e.g. 8.9) and CUDASIM_SMEM_OPTIN (bytes, e.g. 99K)
 * make it another: an RTX 4090 is 8.9 with 99 KiB */
static size_t smem_max;
static int cc_major, cc_minor;

static size_t env_size(const char *name, size_t dflt)
{
	const char *e = getenv(name);
	if (!e || !*e)
		return dflt;
	char *end;
	double v = strtod(e, &end);
	switch (*end) {
	case 'k': case 'K': v *= 1024.0; break;
	case 'm': case 'M': v *= 1048576.0; break;
	case 'g': case 'G': v *= 1073741824.0; break;
	}
	return (size_t)v;
}

static void init(void)
{
	if (allocs)
		return;
	allocs = new std::map<const char *, size_t, std::less<const char *>>();
	smem_optin = new std::map<const void *, int>();
	mem_cap = env_size("CUDASIM_MEM", (size_t)80 << 30);
	mem_taken = env_size("CUDASIM_MEM_TAKEN", 0);
	if (mem_taken > mem_cap)
		mem_taken = mem_cap;
	smem_max = env_size("CUDASIM_SMEM_OPTIN", 232448);
	const char *cc = getenv("CUDASIM_CC");
	cc_major = 9;
	cc_minor = 0;
	if (cc && *cc && sscanf(cc, "%d.%d", &cc_major, &cc_minor) != 2) {
		fprintf(stderr, "cudasim: CUDASIM_CC=%s: want major.minor\n", cc);
		exit(2);
	}
}

/* sim::dev_expf's jitter (cudasim.h): on unless CUDASIM_ULP=0 */
int ulp_jitter_on()
{
	static const int on = [] {
		const char *e = getenv("CUDASIM_ULP");
		return !(e && !strcmp(e, "0"));
	}();
	return on;
}

/* ---- the current launch ------------------------------------------------------------- */

enum { F_READY, F_BLOCK, F_WARP, F_DONE };

/* A cp.async copy not yet done (see cp_async_wait). */
struct async_copy {
	void *dst;
	const void *src;
	int bytes;
	unsigned group;           /* its commit group; NOT_COMMITTED before */
};
static const unsigned NOT_COMMITTED = ~0u;

struct fiber {
	void *sp;                 /* saved stack pointer while switched out */
	std::vector<async_copy> pend;  /* this thread's cp.async copies in flight */
	unsigned groups;          /* cp.async groups committed so far */
	char *stack;
	uint3 tid;
	int lane, warp, state;
	unsigned gen;             /* warp collectives so far (shuffle slot parity) */
	unsigned wmma;            /* wmma operations so far */
#ifdef SIM_ASAN
	void *fake;
#endif
};

struct warp_state {
	int lanes, live, waiting;
	const char *file;
	int line;
	uint64_t slots[2 * 32];
	uint32_t xch[2][32][XCH_WORDS];
};

static const size_t STACK = 256 << 10;
static std::vector<fiber> fibers;
static std::vector<warp_state> warps;
static std::vector<int> order;
static fiber *cur;
static void *sched_sp;
static int live, bar_waiting, bar_line;
static const char *bar_file;
static const char *kname;
static void (*kbody)(void *);
static void *kctx;
static char *dyn_smem;
static size_t dyn_bytes;
static uint64_t rng_state;
struct sstat { const void *key; size_t bytes; char *p; };
static std::vector<sstat> statics;
#ifdef SIM_ASAN
static void *sched_fake;
static const void *sched_stack_bottom;
static size_t sched_stack_size;
#endif

void fail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "cudasim: ");
	if (kname && cur)
		fprintf(stderr, "kernel %s, block (%u,%u,%u), thread (%u,%u,%u): ", kname, b_idx.x,
		        b_idx.y, b_idx.z, cur->tid.x, cur->tid.y, cur->tid.z);
	else if (kname)
		fprintf(stderr, "kernel %s: ", kname);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	abort();
}

/* ---- fibers ---------------------------------------------------------------------------
 * sim_swap saves the callee-saved registers on the current stack, stores the
 * stack pointer in *save, loads `load` and pops the same registers: a fiber
 * switch in eight instructions. A new fiber's stack is laid out so that the
 * first switch "returns" into sim_fiber_entry with the fiber in r12. */
extern "C" void sim_swap(void **save, void *load);
extern "C" void sim_fiber_main(fiber *f);
asm(".text\n"
    ".globl sim_swap\n"
    ".type sim_swap,@function\n"
    "sim_swap:\n"
    "	pushq %rbp\n	pushq %rbx\n	pushq %r12\n	pushq %r13\n	pushq %r14\n	pushq %r15\n"
    "	movq %rsp, (%rdi)\n"
    "	movq %rsi, %rsp\n"
    "	popq %r15\n	popq %r14\n	popq %r13\n	popq %r12\n	popq %rbx\n	popq %rbp\n"
    "	ret\n"
    ".size sim_swap,.-sim_swap\n"
    ".globl sim_fiber_entry\n"
    ".type sim_fiber_entry,@function\n"
    "sim_fiber_entry:\n"
    "	movq %r12, %rdi\n"
    "	call sim_fiber_main\n"
    "	ud2\n"
    ".size sim_fiber_entry,.-sim_fiber_entry\n");
extern "C" void sim_fiber_entry(void);

static void fiber_start(fiber *f)
{
	uintptr_t top = ((uintptr_t)(f->stack + STACK) & ~(uintptr_t)15) - 16;
	void **s = (void **)top;
	s[-1] = (void *)sim_fiber_entry;            /* ret target */
	s[-2] = 0;                                  /* rbp */
	s[-3] = 0;                                  /* rbx */
	s[-4] = f;                                  /* r12 */
	s[-5] = s[-6] = s[-7] = 0;                  /* r13 r14 r15 */
	f->sp = &s[-7];
	f->state = F_READY;
	f->gen = 0;
	f->wmma = 0;
	f->pend.clear();
	f->groups = 0;
}

/* scheduler -> fiber f */
static void resume(fiber *f)
{
	cur = f;
	t_idx = f->tid;
#ifdef SIM_ASAN
	__sanitizer_start_switch_fiber(&sched_fake, f->stack, STACK);
#endif
	sim_swap(&sched_sp, f->sp);
#ifdef SIM_ASAN
	__sanitizer_finish_switch_fiber(sched_fake, NULL, NULL);
#endif
	cur = NULL;
}

/* fiber -> scheduler; returns when the scheduler resumes this fiber */
static void yield(void)
{
	fiber *f = cur;
#ifdef SIM_ASAN
	__sanitizer_start_switch_fiber(f->state == F_DONE ? NULL : &f->fake, sched_stack_bottom,
	                               sched_stack_size);
#endif
	sim_swap(&f->sp, sched_sp);
#ifdef SIM_ASAN
	__sanitizer_finish_switch_fiber(f->fake, NULL, NULL);
#endif
}

void wmma_op(void)
{
	if (!cur)
		fail("a wmma operation outside a kernel");
	cur->wmma++;
}

/* At a barrier: the live lanes of warp w made the same number of wmma calls
 * (they are warp collectives: a lane that skipped one is a divergence). */
static void check_wmma(int w, const char *file, int line)
{
	int base = w * 32, ref = -1;
	for (int i = base; i < base + warps[w].lanes; i++) {
		fiber &g = fibers[i];
		if (g.state == F_DONE)
			continue;
		if (ref < 0)
			ref = (int)g.wmma;
		else if ((int)g.wmma != ref)
			fail("at the barrier at %s:%d, lanes of warp %d made different numbers of wmma "
			     "calls (%d and %u): a wmma operation in divergent code", file, line, w,
			     ref, g.wmma);
	}
}

static void release_block(void)
{
	for (size_t w = 0; w < warps.size(); w++)
		check_wmma((int)w, bar_file, bar_line);
	for (fiber &g : fibers)
		if (g.state == F_BLOCK)
			g.state = F_READY;
	bar_waiting = 0;
}

extern "C" void sim_fiber_main(fiber *f)
{
#ifdef SIM_ASAN
	__sanitizer_finish_switch_fiber(NULL, &sched_stack_bottom, &sched_stack_size);
#endif
	kbody(kctx);
	if (!f->pend.empty())
		fail("thread %u of block (%u,%u,%u) ended with %zu cp.async copies never waited for",
		     f->tid.x, b_idx.x, b_idx.y, b_idx.z, f->pend.size());
	f->state = F_DONE;
	live--;
	warp_state &w = warps[f->warp];
	w.live--;
	if (w.waiting)
		fail("lane %d exited while %d lanes of its warp wait at %s:%d", f->lane, w.waiting,
		     w.file, w.line);
	if (bar_waiting && bar_waiting == live)
		release_block();
	yield();
	fail("a finished thread was resumed");
}

/* ---- barriers and shuffles ------------------------------------------------------------- */

int lane(void) { return cur->lane; }

uint64_t *warp_slots(unsigned *gen)
{
	*gen = cur->gen++;
	return warps[cur->warp].slots;
}

/* cp.async: the destination is poisoned (0xFF bytes, NaN) when the copy is
 * issued and written only when a cp_async_wait covers its group, so both
 * a read of the old contents after the issue (a buffer refilled while
 * another warp still reads it) and a read of the new ones before the wait
 * (and, for other threads, the barrier after it) see NaN. */
void cp_async(void *dst, const void *src, int bytes)
{
	if (!cur)
		fail("cp.async outside a kernel");
	if ((uintptr_t)dst % bytes || (uintptr_t)src % bytes)
		fail("cp.async of %d bytes from %p to %p: not aligned to its size", bytes, src, dst);
	memset(dst, 0xff, (size_t)bytes);     /* undefined until the wait: NaN */
	cur->pend.push_back(async_copy{ dst, src, bytes, NOT_COMMITTED });
}

void cp_async_commit(void)
{
	for (async_copy &c : cur->pend)
		if (c.group == NOT_COMMITTED)
			c.group = cur->groups;
	cur->groups++;
}

void cp_async_wait(int n)
{
	unsigned limit = cur->groups >= (unsigned)n ? cur->groups - n : 0;
	std::vector<async_copy> keep;
	for (async_copy &c : cur->pend)
		if (c.group != NOT_COMMITTED && c.group < limit)
			memcpy(c.dst, c.src, (size_t)c.bytes);
		else
			keep.push_back(c);
	cur->pend.swap(keep);
}

const uint32_t *warp_exchange(const uint32_t *mine, int words, const char *file, int line)
{
	if (!cur)
		fail("%s:%d: a warp collective outside a kernel", file, line);
	unsigned gen = cur->gen++;
	uint32_t (*buf)[XCH_WORDS] = warps[cur->warp].xch[gen & 1];
	memcpy(buf[cur->lane], mine, (size_t)words * 4);
	warp_sync(file, line, 0xffffffffu);
	return buf[0];
}

void syncthreads(const char *file, int line)
{
	fiber *f = cur;
	if (!f)
		fail("__syncthreads outside a kernel");
	if (bar_waiting == 0) {
		bar_file = file;
		bar_line = line;
	} else if (bar_line != line || strcmp(bar_file, file)) {
		fail("__syncthreads at %s:%d while other threads of the block wait at %s:%d",
		     file, line, bar_file, bar_line);
	}
	if (++bar_waiting == live) {
		release_block();
		return;
	}
	f->state = F_BLOCK;
	yield();
}

void warp_sync(const char *file, int line, unsigned mask)
{
	fiber *f = cur;
	if (!f)
		fail("a warp collective outside a kernel");
	warp_state &w = warps[f->warp];
	if (mask != 0xffffffffu)
		fail("%s:%d: mask 0x%08x: only full-warp masks are emulated", file, line, mask);
	if (w.lanes != 32)
		fail("%s:%d: a full-warp mask in a warp of %d threads (blockDim %u)", file, line,
		     w.lanes, b_dim.x * b_dim.y * b_dim.z);
	if (w.live != w.lanes)
		fail("%s:%d: a full-warp collective after %d lanes of the warp exited", file, line,
		     w.lanes - w.live);
	if (w.waiting == 0) {
		w.file = file;
		w.line = line;
	} else if (w.line != line || strcmp(w.file, file)) {
		fail("lane %d at %s:%d while other lanes of its warp wait at %s:%d", f->lane, file,
		     line, w.file, w.line);
	}
	if (++w.waiting == w.live) {
		check_wmma(f->warp, file, line);
		int base = f->warp * 32;
		for (int i = base; i < base + w.lanes; i++)
			if (fibers[i].state == F_WARP)
				fibers[i].state = F_READY;
		w.waiting = 0;
		return;
	}
	f->state = F_WARP;
	yield();
}

/* ---- shared memory ----------------------------------------------------------------------- */

void *shared_static(const void *key, size_t bytes)
{
	for (sstat &s : statics)
		if (s.key == key) {
			if (s.bytes != bytes)
				fail("one __shared__ declaration with two sizes");
			return s.p;
		}
	char *p = (char *)aligned_alloc(16, (bytes + 15) & ~(size_t)15);
	memset(p, 0xff, bytes);
	statics.push_back(sstat{ key, bytes, p });
	size_t total = dyn_bytes;
	for (sstat &s : statics)
		total += s.bytes;
	if (total > smem_max)
		fail("shared memory %zu bytes: more than a block can have (%zu)", total, smem_max);
	return p;
}

void *shared_dynamic(void)
{
	if (!dyn_bytes)
		fail("extern __shared__ used by a launch with no dynamic shared memory");
	return dyn_smem;
}

/* ---- launches ------------------------------------------------------------------------------ */

static uint64_t rng_next(void)
{
	uint64_t z = (rng_state += 0x9E3779B97F4A7C15ULL);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
	return z ^ (z >> 31);
}

static void shuffle_order(int n, bool random)
{
	order.resize(n);
	for (int i = 0; i < n; i++)
		order[i] = i;
	if (random)
		for (int i = n - 1; i > 0; i--) {
			int j = (int)(rng_next() % (uint64_t)(i + 1));
			int t = order[i];
			order[i] = order[j];
			order[j] = t;
		}
}

static void deadlock(void)
{
	fprintf(stderr, "cudasim: kernel %s, block (%u,%u,%u): deadlock:\n", kname, b_idx.x,
	        b_idx.y, b_idx.z);
	for (fiber &f : fibers)
		if (f.state == F_BLOCK || f.state == F_WARP)
			fprintf(stderr, "  thread (%u,%u,%u) waits at %s\n", f.tid.x, f.tid.y, f.tid.z,
			        f.state == F_BLOCK ? "__syncthreads" : "a warp collective");
	abort();
}

static void run_block(int nt)
{
	for (int i = 0; i < nt; i++)
		fiber_start(&fibers[i]);
	for (size_t w = 0; w < warps.size(); w++) {
		warps[w].lanes = warps[w].live = (int)(w + 1 < warps.size() || nt % 32 == 0 ? 32 : nt % 32);
		warps[w].waiting = 0;
	}
	live = nt;
	bar_waiting = 0;
	if (dyn_bytes)
		memset(dyn_smem, 0xff, dyn_bytes);
	static const bool random = [] {
		const char *e = getenv("CUDASIM_SEED");
		rng_state = e ? strtoull(e, NULL, 10) : 1;
		return rng_state != 0;
	}();
	/* Two schedules, chosen per block: (a) passes over every thread in a
	 * random order; (b) warp by warp in a random order, each warp run as far
	 * as it goes (until all its lanes wait at __syncthreads or exit) before
	 * the next: one warp reads shared memory before the others have written
	 * it, or overwrites what they still read, wherever a barrier is missing. */
	int nw = (int)warps.size();
	bool by_warp = random ? (rng_next() & 1) : false;
	while (live > 0) {
		bool ran = false;
		if (by_warp) {
			shuffle_order(nw, true);
			std::vector<int> wo(order);
			for (int w : wo) {
				int base = w * 32, n = warps[w].lanes;
				for (bool again = true; again;) {
					again = false;
					shuffle_order(n, true);
					for (int k = 0; k < n; k++) {
						fiber *f = &fibers[base + order[k]];
						if (f->state == F_READY) {
							resume(f);
							ran = again = true;
						}
					}
				}
			}
		} else {
			shuffle_order(nt, random);
			for (int k = 0; k < nt; k++) {
				fiber *f = &fibers[order[k]];
				if (f->state == F_READY) {
					resume(f);
					ran = true;
				}
			}
		}
		if (!ran)
			deadlock();
	}
	for (sstat &s : statics)
		free(s.p);
	statics.clear();
}

void run_grid(const launch_cfg &c, const void *kernel, const char *name, void (*body)(void *),
              void *ctx)
{
	init();
	kname = name;
	size_t nt = (size_t)c.b.x * c.b.y * c.b.z;
	if (nt == 0 || nt > 1024 || c.b.x > 1024 || c.b.y > 1024 || c.b.z > 64 ||
	    c.g.x == 0 || c.g.y == 0 || c.g.z == 0 || c.g.y > 65535 || c.g.z > 65535 ||
	    c.g.x > 0x7fffffffu) {
		fprintf(stderr, "cudasim: kernel %s: invalid launch grid (%u,%u,%u) block (%u,%u,%u)\n",
		        name, c.g.x, c.g.y, c.g.z, c.b.x, c.b.y, c.b.z);
		last_error = cudaErrorInvalidConfiguration;
		kname = NULL;
		return;
	}
	if (c.smem > 48 * 1024) {
		auto it = smem_optin->find(kernel);
		if (!kernel || it == smem_optin->end() || (size_t)it->second < c.smem) {
			fprintf(stderr, "cudasim: kernel %s: %zu bytes of dynamic shared memory without "
			        "cudaFuncSetAttribute(MaxDynamicSharedMemorySize)\n", name, c.smem);
			last_error = cudaErrorInvalidValue;
			kname = NULL;
			return;
		}
	}
	static char *stacks;
	if (!stacks) {
		stacks = (char *)mmap(NULL, 1024 * STACK, PROT_READ | PROT_WRITE,
		                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (stacks == MAP_FAILED)
			fail("cannot map fiber stacks");
	}
	fibers.resize(nt);
	warps.resize((nt + 31) / 32);
	for (size_t i = 0; i < nt; i++) {
		fiber &f = fibers[i];
		f.stack = stacks + i * STACK;
		f.tid = uint3{ (unsigned)(i % c.b.x), (unsigned)(i / c.b.x % c.b.y),
		               (unsigned)(i / ((size_t)c.b.x * c.b.y)) };
		f.lane = (int)(i % 32);
		f.warp = (int)(i / 32);
	}
	dyn_bytes = c.smem;
	dyn_smem = dyn_bytes ? (char *)aligned_alloc(128, (dyn_bytes + 127) & ~(size_t)127) : NULL;
	kbody = body;
	kctx = ctx;
	b_dim = c.b;
	g_dim = c.g;
	for (unsigned z = 0; z < c.g.z; z++)
		for (unsigned y = 0; y < c.g.y; y++)
			for (unsigned x = 0; x < c.g.x; x++) {
				b_idx = uint3{ x, y, z };
				run_block((int)nt);
			}
	free(dyn_smem);
	dyn_smem = NULL;
	dyn_bytes = 0;
	kname = NULL;
}

cudaError_t func_set_attr(const void *fn, cudaFuncAttribute a, int v)
{
	init();
	if (a != cudaFuncAttributeMaxDynamicSharedMemorySize || v < 0 || (size_t)v > smem_max)
		return last_error = cudaErrorInvalidValue;
	(*smem_optin)[fn] = v;
	return cudaSuccess;
}

}  /* namespace sim */

/* ---- runtime API ------------------------------------------------------------------------------- */

using namespace sim;

static bool no_gpu(void)
{
	const char *e = getenv("CUDASIM_NO_GPU");
	return e && *e && strcmp(e, "0");
}

cudaError_t cudaGetDeviceCount(int *n)
{
	*n = no_gpu() ? 0 : 1;
	return no_gpu() ? (last_error = cudaErrorNoDevice) : cudaSuccess;
}

cudaError_t cudaSetDevice(int dev)
{
	return dev == 0 && !no_gpu() ? cudaSuccess : (last_error = cudaErrorInvalidDevice);
}

cudaError_t cudaGetDevice(int *dev)
{
	*dev = 0;
	return cudaSuccess;
}

cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int dev)
{
	init();
	if (dev != 0)
		return last_error = cudaErrorInvalidDevice;
	memset(p, 0, sizeof *p);
	snprintf(p->name, sizeof p->name, "cudasim (CPU emulation of an sm_%d%d GPU)", cc_major,
	         cc_minor);
	p->totalGlobalMem = mem_cap;
	p->sharedMemPerBlock = 48 * 1024;
	p->sharedMemPerBlockOptin = smem_max;
	p->l2CacheSize = 50 << 20;
	p->warpSize = ::warpSize;
	p->maxThreadsPerBlock = 1024;
	p->major = cc_major;
	p->minor = cc_minor;
	p->multiProcessorCount = 132;
	return cudaSuccess;
}

cudaError_t cudaDeviceSynchronize(void) { return cudaSuccess; }

cudaError_t cudaMalloc(void **p, size_t bytes)
{
	init();
	*p = NULL;
	size_t n = (bytes + 255) & ~(size_t)255;
	if (n == 0 || mem_taken + mem_used + n > mem_cap)
		return last_error = cudaErrorMemoryAllocation;
	char *m = (char *)aligned_alloc(256, n);
	if (!m)
		return last_error = cudaErrorMemoryAllocation;
	memset(m, 0xff, bytes);      /* device memory is not zeroed: NaN shows a missed write */
	(*allocs)[m] = n;
	mem_used += n;
	*p = m;
	return cudaSuccess;
}

cudaError_t cudaFree(void *p)
{
	init();
	if (!p)
		return cudaSuccess;
	auto it = allocs->find((const char *)p);
	if (it == allocs->end())
		fail("cudaFree(%p): not a pointer from cudaMalloc", p);
	mem_used -= it->second;
	allocs->erase(it);
	free(p);
	return cudaSuccess;
}

cudaError_t cudaMemGetInfo(size_t *freeb, size_t *total)
{
	init();
	*freeb = mem_cap - mem_taken - mem_used;
	*total = mem_cap;
	return cudaSuccess;
}

/* n bytes at p lie inside one cudaMalloc allocation */
static bool on_device(const void *p, size_t n)
{
	auto it = allocs->upper_bound((const char *)p);
	if (it == allocs->begin())
		return false;
	--it;
	return (const char *)p + n <= it->first + it->second;
}

cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n, cudaMemcpyKind k, cudaStream_t)
{
	init();
	if (n == 0)
		return cudaSuccess;
	bool dd = on_device(dst, n), sd = on_device(src, n);
	bool ok = k == cudaMemcpyDefault ||
	          (k == cudaMemcpyHostToDevice && dd && !sd) ||
	          (k == cudaMemcpyDeviceToHost && sd && !dd) ||
	          (k == cudaMemcpyDeviceToDevice && sd && dd) ||
	          (k == cudaMemcpyHostToHost && !sd && !dd);
	if (!ok)
		fail("cudaMemcpy of %zu bytes, kind %d: dst %s the device, src %s the device", n,
		     (int)k, dd ? "on" : "not on", sd ? "on" : "not on");
	memmove(dst, src, n);
	return cudaSuccess;
}

cudaError_t cudaMemcpy(void *dst, const void *src, size_t n, cudaMemcpyKind k)
{
	return cudaMemcpyAsync(dst, src, n, k, 0);
}

cudaError_t cudaMemsetAsync(void *p, int v, size_t n, cudaStream_t)
{
	init();
	if (n && !on_device(p, n))
		fail("cudaMemset of %zu bytes at %p: not device memory", n, p);
	memset(p, v, n);
	return cudaSuccess;
}

cudaError_t cudaMemset(void *p, int v, size_t n) { return cudaMemsetAsync(p, v, n, 0); }

static struct CUstream_st { int dummy; } streams[64];
static int nstreams;

cudaError_t cudaStreamCreate(cudaStream_t *s) { return cudaStreamCreateWithFlags(s, 0); }
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned)
{
	*s = &streams[nstreams++ % 64];
	return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t) { return cudaSuccess; }
cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }

struct CUevent_st { double t; bool recorded; };
cudaError_t cudaEventCreate(cudaEvent_t *e)
{
	*e = new CUevent_st();
	return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t e)
{
	delete e;
	return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	e->t = ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
	e->recorded = true;
	return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t) { return cudaSuccess; }
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t a, cudaEvent_t b)
{
	if (!a->recorded || !b->recorded)
		sim::fail("cudaEventElapsedTime: an event that was never recorded");
	*ms = (float)(b->t - a->t);
	return cudaSuccess;
}

cudaError_t cudaGetLastError(void)
{
	cudaError_t e = last_error;
	last_error = cudaSuccess;
	return e;
}

cudaError_t cudaPeekAtLastError(void) { return last_error; }

const char *cudaGetErrorName(cudaError_t e)
{
	switch (e) {
	case cudaSuccess: return "cudaSuccess";
	case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
	case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
	case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
	case cudaErrorInsufficientDriver: return "cudaErrorInsufficientDriver";
	case cudaErrorNoDevice: return "cudaErrorNoDevice";
	case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
	case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
	}
	return "cudaErrorUnknown";
}

const char *cudaGetErrorString(cudaError_t e)
{
	switch (e) {
	case cudaSuccess: return "no error";
	case cudaErrorInvalidValue: return "invalid argument";
	case cudaErrorMemoryAllocation: return "out of memory";
	case cudaErrorInvalidConfiguration: return "invalid configuration argument";
	case cudaErrorInsufficientDriver:
		return "CUDA driver version is insufficient for CUDA runtime version";
	case cudaErrorNoDevice: return "no CUDA-capable device is detected";
	case cudaErrorInvalidDevice: return "invalid device ordinal";
	case cudaErrorLaunchFailure: return "unspecified launch failure";
	}
	return "unknown error";
}

/* ---- cuBLAS -------------------------------------------------------------------------------------- */

static struct cublasContext { int dummy; } the_handle;

cublasStatus_t cublasCreate(cublasHandle_t *h) { *h = &the_handle; return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasDestroy(cublasHandle_t) { return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasSetStream(cublasHandle_t, cudaStream_t) { return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasSetMathMode(cublasHandle_t, cublasMath_t m)
{
	return m == CUBLAS_DEFAULT_MATH ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_NOT_SUPPORTED;
}
cublasStatus_t cublasSetWorkspace(cublasHandle_t, void *ws, size_t bytes)
{
	if (bytes && !on_device(ws, bytes))
		fail("cublasSetWorkspace: %zu bytes at %p are not device memory", bytes, ws);
	return CUBLAS_STATUS_SUCCESS;
}

const char *cublasGetStatusString(cublasStatus_t s)
{
	switch (s) {
	case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
	case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
	case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
	case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
	case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
	}
	return "CUBLAS_STATUS_UNKNOWN";
}

/* A column-major (rows, cols) matrix with leading dimension ld of type t,
 * widened to fp32 (exact for 16-bit floats). */
static float *widen(const void *p, cudaDataType_t t, int rows, int cols, int ld)
{
	size_t n = cols ? (size_t)ld * (cols - 1) + rows : 0;
	if (n && !on_device(p, n * (t == CUDA_R_32F ? 4 : 2)))
		fail("cublasGemmEx: a %dx%d matrix (ld %d) at %p is not device memory", rows, cols, ld, p);
	float *f = (float *)malloc((n ? n : 1) * sizeof(float));
	for (size_t i = 0; i < n; i++)
		f[i] = t == CUDA_R_32F ? ((const float *)p)[i]
		     : t == CUDA_R_16BF ? __bfloat162float(((const __nv_bfloat16 *)p)[i])
		     : __half2float(((const __half *)p)[i]);
	return f;
}

/* The number of parts cuBLAS's summation order is modelled with for an
 * (m, n, k) product (CUDASIM_GEMM_SPLIT, see gemm_f32): 2 to 4 by a hash
 * of the shape and the operations, so that one shape always gets the same
 * order (cuBLAS is deterministic for a shape) and shapes differ; 1 where
 * k < 64 or the modelling is off. */
static int gemm_parts(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k)
{
	static const int on = [] {
		const char *e = getenv("CUDASIM_GEMM_SPLIT");
		return !(e && !strcmp(e, "0"));
	}();
	if (!on || k < 64)
		return 1;
	uint64_t h = 0x9e3779b97f4a7c15ull;
	for (uint64_t v : { (uint64_t)m, (uint64_t)n, (uint64_t)k, (uint64_t)ta, (uint64_t)tb })
		h = (h ^ v) * 0x100000001b3ull;
	return 2 + (int)((h >> 29) % 3);
}

/* C (m, n) = al · op(A) · op(B) + be · C on an fp32 C in host memory.
 *
 * The device's summation order is modelled (as its expf error is): where
 * the CPU backend's sgemm sums the k products in one pass, cuBLAS's
 * kernels sum them in k-tiles on tensor cores, and split-K kernels in
 * parts whose sums are added at the end; so the same product rounds
 * differently on the two backends, and tests that held the GPU to the
 * CPU only because both called OpenBLAS the same way would fail on a
 * GPU. Here k is cut into 2-4 parts at multiples of 16 (gemm_parts),
 * each part's product is an fp32 sgemm, the parts are added in order and
 * then scaled: al · (P0 + P1 + ...) + be · C. CUDASIM_GEMM_SPLIT=0 gives
 * one sgemm (the CPU's order). */
static void gemm_f32(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, float al,
                     const void *A, cudaDataType_t at, int lda, const void *B, cudaDataType_t bt,
                     int ldb, float be, float *c, int ldc)
{
	int ar = ta == CUBLAS_OP_N ? m : k, ac = ta == CUBLAS_OP_N ? k : m;
	int br = tb == CUBLAS_OP_N ? k : n, bc = tb == CUBLAS_OP_N ? n : k;
	if (be == 0.0f)              /* cuBLAS does not read C when beta is 0 */
		for (int j = 0; j < n; j++)
			memset(c + (size_t)j * ldc, 0, (size_t)m * 4);
	if (k == 0) {
		if (be != 0.0f)
			for (int j = 0; j < n; j++)
				for (int i = 0; i < m; i++)
					c[(size_t)j * ldc + i] *= be;
		return;
	}
	float *a = widen(A, at, ar, ac, lda), *b = widen(B, bt, br, bc, ldb);
	CBLAS_TRANSPOSE oa = ta == CUBLAS_OP_N ? CblasNoTrans : CblasTrans;
	CBLAS_TRANSPOSE ob = tb == CUBLAS_OP_N ? CblasNoTrans : CblasTrans;
	int parts = gemm_parts(ta, tb, m, n, k);
	if (parts == 1) {
		cblas_sgemm(CblasColMajor, oa, ob, m, n, k, al, a, lda, b, ldb, be, c, ldc);
	} else {
		/* part p takes k-columns [k0, k0 + kc) of op(A) and rows of op(B) */
		int step = ((k + parts - 1) / parts + 15) / 16 * 16;
		float *acc = (float *)calloc((size_t)m * n, sizeof(float));
		float *part = (float *)malloc((size_t)m * n * sizeof(float));
		for (int k0 = 0; k0 < k; k0 += step) {
			int kc = k - k0 < step ? k - k0 : step;
			const float *pa = a + (ta == CUBLAS_OP_N ? (size_t)k0 * lda : (size_t)k0);
			const float *pb = b + (tb == CUBLAS_OP_N ? (size_t)k0 : (size_t)k0 * ldb);
			cblas_sgemm(CblasColMajor, oa, ob, m, n, kc, 1.0f, pa, lda, pb, ldb, 0.0f, part, m);
			for (size_t i = 0; i < (size_t)m * n; i++)
				acc[i] += part[i];
		}
		/* beta 0: C is not read (and -0.0 stays -0.0, as a plain product) */
		for (int j = 0; j < n; j++)
			for (int i = 0; i < m; i++) {
				float *e = c + (size_t)j * ldc + i;
				*e = be == 0.0f ? al * acc[(size_t)j * m + i] : al * acc[(size_t)j * m + i] + be * *e;
			}
		free(acc);
		free(part);
	}
	free(a);
	free(b);
}

cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb,
                            int m, int n, int k, const void *alpha, const void *A,
                            cudaDataType_t at, int lda, const void *B, cudaDataType_t bt,
                            int ldb, const void *beta, void *C, cudaDataType_t ct, int ldc,
                            cublasComputeType_t compute, cublasGemmAlgo_t)
{
	init();
	if (h != &the_handle)
		return CUBLAS_STATUS_NOT_INITIALIZED;
	int ar = ta == CUBLAS_OP_N ? m : k, br = tb == CUBLAS_OP_N ? k : n;
	if (m < 0 || n < 0 || k < 0 || lda < (ar > 1 ? ar : 1) || ldb < (br > 1 ? br : 1) ||
	    ldc < (m > 1 ? m : 1) || (ta != CUBLAS_OP_N && ta != CUBLAS_OP_T) ||
	    (tb != CUBLAS_OP_N && tb != CUBLAS_OP_T))
		return CUBLAS_STATUS_INVALID_VALUE;
	/* cuBLAS's CUBLAS_COMPUTE_32F combinations: A, B of one type; C F32,
	 * or the 16-bit type of A and B */
	if (at != bt || (ct != CUDA_R_32F && ct != at) || compute != CUBLAS_COMPUTE_32F ||
	    (at != CUDA_R_32F && at != CUDA_R_16BF && at != CUDA_R_16F))
		return CUBLAS_STATUS_NOT_SUPPORTED;
	if (m == 0 || n == 0)
		return CUBLAS_STATUS_SUCCESS;
	float al = *(const float *)alpha, be = *(const float *)beta;
	size_t cn = (size_t)ldc * (n - 1) + m;
	if (!on_device(C, cn * (ct == CUDA_R_32F ? 4 : 2)))
		fail("cublasGemmEx: C (%dx%d, ld %d) at %p is not device memory", m, n, ldc, C);
	if (ct == CUDA_R_32F) {
		gemm_f32(ta, tb, m, n, k, al, A, at, lda, B, bt, ldb, be, (float *)C, ldc);
		return CUBLAS_STATUS_SUCCESS;
	}
	/* a 16-bit C: the product and the beta term in fp32, rounded once */
	float *c = widen(C, ct, m, n, ldc);
	gemm_f32(ta, tb, m, n, k, al, A, at, lda, B, bt, ldb, be, c, ldc);
	for (int j = 0; j < n; j++)
		for (int i = 0; i < m; i++) {
			size_t e = (size_t)j * ldc + i;
			if (ct == CUDA_R_16BF)
				((__nv_bfloat16 *)C)[e] = __float2bfloat16_rn(c[e]);
			else
				((__half *)C)[e] = __float2half_rn(c[e]);
		}
	free(c);
	return CUBLAS_STATUS_SUCCESS;
}
