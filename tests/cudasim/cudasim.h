/* cudasim.h: a CPU emulator of the parts of CUDA that kernels/ uses, so that
 * the CUDA backend's kernels run, and are tested against the CPU backend, on
 * machines without a GPU (CI). It is a test tool, not a backend: slow, one OS
 * thread, and strict.
 *
 * How it works. tests/cudasim/cu2cc.pl turns a kernels/X.cu into C++: each
 * `k<<<grid, block, smem, stream>>>(args)` becomes a sim::launch of a lambda
 * that calls k(args), and `__shared__` declarations become per-block buffers.
 * That C++ is compiled by the host compiler with this header forced in
 * (-include) and tests/cudasim/include/ standing in for the CUDA headers.
 * A launch runs the blocks one after another; the threads of a block are
 * fibers (own stacks, switched by a few instructions of assembly), so
 * __syncthreads, __syncwarp and the __shfl_*_sync exchanges really wait for
 * the other threads. Within a block the fibers run in a seeded random order
 * that changes at every barrier, so code that reads another thread's shared
 * memory before a barrier sees stale data (poisoned, see below).
 *
 * What it checks, beyond computing the same numbers:
 *   - launch configuration: block size (and a kernel's __launch_bounds__),
 *     grid limits, dynamic shared memory
 *     above 48 KiB only after cudaFuncSetAttribute, the opt-in maximum;
 *   - barriers: every thread of a block at the same __syncthreads, every
 *     lane of a warp at the same __syncwarp / shuffle / wmma op, full masks
 *     only over lanes that exist and have not exited; a deadlock is reported
 *     with where each thread waits;
 *   - memory: cudaMalloc memory and shared memory start as 0xFF bytes (NaN
 *     as float or bf16), so a read of something never written shows; built
 *     with AddressSanitizer, every buffer (global, dynamic and static shared)
 *     is its own allocation, so an out-of-bounds index is caught where it
 *     happens;
 *   - wmma: pointers 256-bit aligned, ldm a multiple of 16 bytes; the
 *     operations order no memory between lanes (see include/mma.h), so a
 *     missing __syncwarp around them shows; every lane makes the same calls;
 *   - cuBLAS: cublasGemmEx's argument rules (leading dimensions, types).
 * It does not model timing, registers, memory ordering between blocks or
 * around shuffles (a shuffle must meet the other lanes here, so shared
 * memory written before it is seen after it, which the device does not
 * promise) or asynchronous streams (everything is synchronous). The
 * device's rounding is modelled: expf and exp2f are off by up to an ulp
 * more than glibc's (sim::dev_expf, CUDA's error bound), the Makefile
 * builds the kernels with FMA contraction where the CPU has FMA (nvcc
 * contracts a*b+c by default), and cublasGemmEx sums a product's k terms in
 * 2-4 parts chosen by the shape (split-K; cudasim.cc's gemm_f32), not in
 * the CPU backend's one sgemm. Not modelled: the tensor cores' own
 * rounding inside a k-tile (truncation when aligning the products).
 *
 * Environment: CUDASIM_MEM (device size, bytes with K/M/G suffix; default
 * 80G), CUDASIM_MEM_TAKEN (of it, held by other processes: not free, and
 * not to be had; default 0), CUDASIM_NO_GPU=1 (no device), CUDASIM_SEED (thread order, default
 * 1; 0 runs threads in index order), CUDASIM_CC (compute capability as
 * major.minor; default 9.0), CUDASIM_SMEM_OPTIN (shared memory a block
 * may have, K suffix allowed; default 227K): 8.9 with 99K is an RTX 4090,
 * CUDASIM_ULP=0 (glibc's expf and exp2f unchanged; default 1) and
 * CUDASIM_GEMM_SPLIT=0 (cuBLAS products in the CPU's order; default 1).
 */
#ifndef CUDASIM_H
#define CUDASIM_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <type_traits>

#define CUDART_VERSION 13000

/* ---- qualifiers ------------------------------------------------------------------ */

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
#define __restrict__ __restrict

/* ---- vector types ---------------------------------------------------------------- */

struct uint3 { unsigned x, y, z; };
struct alignas(16) float4 { float x, y, z, w; };
struct alignas(16) uint4 { unsigned x, y, z, w; };
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return uint4{ x, y, z, w }; }
struct alignas(8) float2 { float x, y; };
inline float2 make_float2(float x, float y) { return float2{ x, y }; }
struct dim3 {
	unsigned x, y, z;
	constexpr dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};

/* ---- runtime API (tests/cudasim/cudasim.cc) -------------------------------------- */

typedef enum cudaError {
	cudaSuccess = 0,
	cudaErrorInvalidValue = 1,
	cudaErrorMemoryAllocation = 2,
	cudaErrorInvalidConfiguration = 9,
	cudaErrorInsufficientDriver = 35,
	cudaErrorNoDevice = 100,
	cudaErrorInvalidDevice = 101,
	cudaErrorLaunchFailure = 719,
} cudaError_t;

typedef struct CUstream_st *cudaStream_t;
enum cudaMemcpyKind {
	cudaMemcpyHostToHost = 0, cudaMemcpyHostToDevice = 1, cudaMemcpyDeviceToHost = 2,
	cudaMemcpyDeviceToDevice = 3, cudaMemcpyDefault = 4,
};
#define cudaStreamNonBlocking 0x01
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };

struct cudaFuncAttributes {
	size_t sharedSizeBytes, constSizeBytes, localSizeBytes;
	int maxThreadsPerBlock, numRegs, ptxVersion, binaryVersion, maxDynamicSharedSizeBytes;
};

struct cudaDeviceProp {
	char name[256];
	size_t totalGlobalMem, sharedMemPerBlock, sharedMemPerBlockOptin, l2CacheSize;
	int warpSize, maxThreadsPerBlock, major, minor, multiProcessorCount;
	int clockRate, memoryClockRate, memoryBusWidth;
};

cudaError_t cudaGetDeviceCount(int *n);
cudaError_t cudaSetDevice(int dev);
cudaError_t cudaGetDevice(int *dev);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int dev);
cudaError_t cudaDeviceSynchronize(void);
cudaError_t cudaMalloc(void **p, size_t bytes);
template <class T> cudaError_t cudaMalloc(T **p, size_t bytes) { return cudaMalloc((void **)p, bytes); }
cudaError_t cudaFree(void *p);
cudaError_t cudaMemGetInfo(size_t *freeb, size_t *total);
cudaError_t cudaMemcpy(void *dst, const void *src, size_t n, cudaMemcpyKind k);
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n, cudaMemcpyKind k,
                            cudaStream_t s = 0);
cudaError_t cudaMemset(void *p, int v, size_t n);
cudaError_t cudaMemsetAsync(void *p, int v, size_t n, cudaStream_t s = 0);
cudaError_t cudaStreamCreate(cudaStream_t *s);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned flags);
cudaError_t cudaStreamDestroy(cudaStream_t s);
cudaError_t cudaStreamSynchronize(cudaStream_t s);
/* Events: launches run when they are made, so an event records the host
 * clock when it is recorded (a time on the emulator, meaningless for speed,
 * but ordered and positive). */
typedef struct CUevent_st *cudaEvent_t;
cudaError_t cudaEventCreate(cudaEvent_t *e);
cudaError_t cudaEventDestroy(cudaEvent_t e);
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s = 0);
cudaError_t cudaEventSynchronize(cudaEvent_t e);
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t a, cudaEvent_t b);
cudaError_t cudaGetLastError(void);
cudaError_t cudaPeekAtLastError(void);
const char *cudaGetErrorString(cudaError_t e);
const char *cudaGetErrorName(cudaError_t e);

namespace sim {
cudaError_t func_set_attr(const void *fn, cudaFuncAttribute a, int v);
}
template <class F> cudaError_t cudaFuncSetAttribute(F *fn, cudaFuncAttribute a, int v)
{
	return sim::func_set_attr(reinterpret_cast<const void *>(fn), a, v);
}
template <class F> cudaError_t cudaFuncGetAttributes(cudaFuncAttributes *fa, F *fn)
{
	(void)fn;
	memset(fa, 0, sizeof *fa);
	fa->maxThreadsPerBlock = 1024;
	fa->ptxVersion = fa->binaryVersion = 90;
	return cudaSuccess;
}

/* ---- the emulator's per-thread state ---------------------------------------------- */

namespace sim {
extern uint3 t_idx, b_idx;       /* of the thread running now */
extern dim3 b_dim, g_dim;

[[noreturn]] void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The start of a kernel declared __launch_bounds__(max[, min]) (cu2cc.pl):
 * nvcc fits its registers to max threads, so a launch of more fails on the
 * device ("too many resources requested for launch"). */
inline void launch_bounds(unsigned max, int min_blocks = 0)
{
	(void)min_blocks;
	unsigned n = b_dim.x * b_dim.y * b_dim.z;
	if (n > max)
		fail("a launch of %u threads per block, above the kernel's __launch_bounds__(%u)", n,
		     max);
}
void syncthreads(const char *file, int line);
/* Every lane of the warp (mask: all of them) arrives before any goes on. */
void warp_sync(const char *file, int line, unsigned mask);
int lane(void);
inline unsigned mask_or_full(void) { return 0xffffffffu; }
inline unsigned mask_or_full(unsigned m) { return m; }
/* The calling thread's two exchange slots per lane (double-buffered by a
 * per-thread count of collectives, see shfl). */
uint64_t *warp_slots(unsigned *gen);
/* A wmma load/store/mma by this lane (counted; the counts of a warp's lanes
 * must agree at every barrier). */
void wmma_op(void);

template <class T> inline T shfl(const char *file, int line, unsigned mask, T v, int src)
{
	static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value, "shuffle type");
	unsigned gen;
	uint64_t *slots = warp_slots(&gen);          /* (2, 32) */
	int me = lane();
	memcpy(&slots[(gen & 1) * 32 + me], &v, sizeof v);
	warp_sync(file, line, mask);
	T r;
	memcpy(&r, &slots[(gen & 1) * 32 + src], sizeof r);
	return r;
}
template <class T> inline T shfl_idx(const char *f, int l, unsigned mask, T v, int src, int w = 32)
{
	int me = lane();
	return shfl(f, l, mask, v, (me & ~(w - 1)) + (src & (w - 1)));
}
template <class T> inline T shfl_xor(const char *f, int l, unsigned mask, T v, int m, int w = 32)
{
	int me = lane(), s = me ^ m;
	if ((s & ~(w - 1)) > (me & ~(w - 1)))       /* a later group: own value */
		s = me;
	return shfl(f, l, mask, v, s & 31);
}
template <class T> inline T shfl_down(const char *f, int l, unsigned mask, T v, int d, int w = 32)
{
	int me = lane(), s = me + d;
	if ((s & ~(w - 1)) != (me & ~(w - 1)))
		s = me;
	return shfl(f, l, mask, v, s);
}

/* mma.sync and ldmatrix (kernels/mma.cuh), warp collectives that move
 * fragments between lanes: every lane writes its words (at most
 * XCH_WORDS) to the warp's exchange buffer, all meet at a warp barrier
 * (file:line), and each lane then reads what it needs from the returned
 * (32, XCH_WORDS) array (double-buffered like the shuffles' slots). As a
 * shuffle, this orders shared memory between lanes, which the device does
 * not promise for ldmatrix. */
enum { XCH_WORDS = 12 };
const uint32_t *warp_exchange(const uint32_t *mine, int words, const char *file, int line);

/* D = A·B + C for one m16n8k16 tile, bf16 A (16x16, row) and B (16x8,
 * col), fp32 C and D, in the fragment layout of the PTX ISA ("Matrix
 * Fragments for mma.m16n8k16 with floating point type"): lane l, g = l/4,
 * c = l%4, holds a = {A[g][2c..2c+1], A[g+8][2c..], A[g][2c+8..],
 * A[g+8][2c+8..]}, b = {B[2c..2c+1][g], B[2c+8..2c+9][g]} (lower column
 * or row in the low half), and c, d = {C[g][2c], C[g][2c+1], C[g+8][2c],
 * C[g+8][2c+1]}. Products of bf16 are exact in fp32; the sum is taken in
 * k order from C (the device's order is its own). */
inline float bf16_lo(uint32_t w, int hi)
{
	uint32_t x = hi ? w & 0xffff0000u : w << 16;
	float f;
	memcpy(&f, &x, 4);
	return f;
}
inline void mma_16816(const char *file, int line, float d[4], const uint32_t a[4],
                      const uint32_t b[2], const float c[4])
{
	uint32_t mine[10];
	memcpy(mine, a, 16);
	memcpy(mine + 4, b, 8);
	memcpy(mine + 6, c, 16);
	const uint32_t *all = warp_exchange(mine, 10, file, line);
	int l = lane(), g = l >> 2, q = l & 3;
	for (int i = 0; i < 4; i++) {
		int row = g + 8 * (i >> 1), col = 2 * q + (i & 1);
		float s;
		memcpy(&s, &all[l * XCH_WORDS + 6 + i], 4);
		for (int k = 0; k < 16; k++) {
			const uint32_t *ao = all + (4 * (row & 7) + (k & 7) / 2) * XCH_WORDS;
			const uint32_t *bo = all + (4 * col + (k & 7) / 2) * XCH_WORDS;
			float av = bf16_lo(ao[(row >= 8) + 2 * (k >= 8)], k & 1);
			float bv = bf16_lo(bo[4 + (k >= 8)], k & 1);
			s += av * bv;
		}
		d[i] = s;
	}
}

/* ldmatrix.sync.aligned.m8n8.x4[.trans].shared.b16: lanes 8i..8i+7 give
 * the row addresses (16-byte aligned) of 8x8 matrix i; lane l gets in r[i]
 * row l/4, columns 2(l%4) and +1 of matrix i, or with trans column l/4,
 * rows 2(l%4) and +1 (the lower index in the low half). */
inline void ldmatrix_x4(const char *file, int line, uint32_t r[4], const void *p, bool trans)
{
	if ((uintptr_t)p % 16)
		fail("%s:%d: ldmatrix row address %p is not 16-byte aligned", file, line, p);
	uint32_t mine[2];
	memcpy(mine, &p, sizeof p);
	const uint32_t *all = warp_exchange(mine, 2, file, line);
	int l = lane(), g = l >> 2, q = l & 3;
	for (int i = 0; i < 4; i++) {
		uint16_t lo, hi;
		const uint16_t *row;
		if (!trans) {
			memcpy(&row, &all[(8 * i + g) * XCH_WORDS], sizeof row);
			lo = row[2 * q];
			hi = row[2 * q + 1];
		} else {
			memcpy(&row, &all[(8 * i + 2 * q) * XCH_WORDS], sizeof row);
			lo = row[g];
			memcpy(&row, &all[(8 * i + 2 * q + 1) * XCH_WORDS], sizeof row);
			hi = row[g];
		}
		r[i] = (uint32_t)hi << 16 | lo;
	}
}

/* cp.async (kernels/mma.cuh): a copy of `bytes` (4, 8 or 16) issued now
 * and done at the cp_async_wait that covers its commit group: then the
 * source is read and the destination written, so code that reads the
 * destination too early sees stale (or poisoned) data. */
void cp_async(void *dst, const void *src, int bytes);
void cp_async_commit(void);
/* Completes every committed group but the n most recent. */
void cp_async_wait(int n);

/* __shared__ variables: one buffer per declaration and block. */
void *shared_static(const void *key, size_t bytes);
void *shared_dynamic(void);

/* Launches. */
struct launch_cfg {
	dim3 g, b;
	size_t smem;
};
inline launch_cfg cfg(dim3 g, dim3 b, size_t smem = 0, cudaStream_t s = 0)
{
	(void)s;
	return launch_cfg{ g, b, smem };
}
void run_grid(const launch_cfg &c, const void *kernel, const char *name, void (*body)(void *),
              void *ctx);
template <class F> void launch(const launch_cfg &c, const void *kernel, const char *name, F f)
{
	run_grid(c, kernel, name, [](void *p) { (*(F *)p)(); }, &f);
}
}  /* namespace sim */

#define threadIdx (sim::t_idx)
#define blockIdx (sim::b_idx)
#define blockDim (sim::b_dim)
#define gridDim (sim::g_dim)
static const int warpSize = 32;

#define __syncthreads() sim::syncthreads(__FILE__, __LINE__)
#define __syncwarp(...) sim::warp_sync(__FILE__, __LINE__, sim::mask_or_full(__VA_ARGS__))
#define __shfl_sync(m, v, s, ...) sim::shfl_idx(__FILE__, __LINE__, m, v, s, ##__VA_ARGS__)
#define __shfl_xor_sync(m, v, s, ...) sim::shfl_xor(__FILE__, __LINE__, m, v, s, ##__VA_ARGS__)
#define __shfl_down_sync(m, v, s, ...) sim::shfl_down(__FILE__, __LINE__, m, v, s, ##__VA_ARGS__)

/* ---- atomics (one OS thread: plain read-modify-write) ------------------------------- */

template <class T> inline T atomicAdd(T *a, T v) { T o = *a; *a = o + v; return o; }
template <class T> inline T atomicMax(T *a, T v) { T o = *a; *a = o > v ? o : v; return o; }
template <class T> inline T atomicMin(T *a, T v) { T o = *a; *a = o < v ? o : v; return o; }
template <class T> inline T atomicExch(T *a, T v) { T o = *a; *a = v; return o; }
template <class T> inline T atomicCAS(T *a, T c, T v) { T o = *a; if (o == c) *a = v; return o; }

/* ---- math ------------------------------------------------------------------------ */

inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }

/* The device's expf and exp2f are not glibc's: CUDA promises them within 2
 * ulp (CUDA Math API, "Maximum ULP Error"), glibc within one. cu2cc.pl turns
 * the kernels' expf and exp2f into these, which move glibc's result by -1, 0
 * or +1 ulp, chosen by a hash of the argument: the same argument gives the
 * same result (as on the device, where a recomputed exponential matches),
 * neighbours differ, and the total stays within CUDA's bound. Exact cases
 * stay exact (expf(0), exp2f of an integer), and 0, inf and NaN are kept.
 * logf (1 ulp on the device) and sqrtf (correctly rounded, nvcc's default
 * -prec-sqrt=true) are glibc's. CUDASIM_ULP=0 turns the jitter off. */
namespace sim {
int ulp_jitter_on();
inline float ulp_jitter(float x, float r)
{
	if (!ulp_jitter_on() || r == 0.0f || !isfinite(r))
		return r;
	uint32_t h;
	memcpy(&h, &x, 4);
	h *= 0x9E3779B1u;
	h ^= h >> 15;
	h *= 0x85EBCA77u;
	h ^= h >> 13;
	int k = (int)(h % 3) - 1;
	float j = k ? nextafterf(r, k > 0 ? INFINITY : 0.0f) : r;
	return isfinite(j) ? j : r;
}
inline float dev_expf(float x) { return x == 0.0f ? 1.0f : ulp_jitter(x, expf(x)); }
inline float dev_exp2f(float x) { return x == truncf(x) ? exp2f(x) : ulp_jitter(x, exp2f(x)); }
}
inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float __saturatef(float x) { return x < 0.0f ? 0.0f : x > 1.0f ? 1.0f : x; }
inline float __int_as_float(int i) { float f; memcpy(&f, &i, 4); return f; }
inline int __float_as_int(float f) { int i; memcpy(&i, &f, 4); return i; }
inline float __uint_as_float(unsigned i) { float f; memcpy(&f, &i, 4); return f; }
inline unsigned __float_as_uint(float f) { unsigned i; memcpy(&i, &f, 4); return i; }

#define SIM_MINMAX(T) \
	inline T min(T a, T b) { return a < b ? a : b; } \
	inline T max(T a, T b) { return a > b ? a : b; }
SIM_MINMAX(int)
SIM_MINMAX(unsigned)
SIM_MINMAX(long)
SIM_MINMAX(unsigned long)
SIM_MINMAX(long long)
SIM_MINMAX(unsigned long long)
#undef SIM_MINMAX
inline float min(float a, float b) { return fminf(a, b); }
inline float max(float a, float b) { return fmaxf(a, b); }
inline double min(double a, double b) { return fmin(a, b); }
inline double max(double a, double b) { return fmax(a, b); }

/* ---- bf16 and fp16 (round to nearest even, as the device converts) ------------------ */

struct __nv_bfloat16 { uint16_t __x; };
struct __half { uint16_t __x; };

inline __nv_bfloat16 __float2bfloat16_rn(float f)
{
	uint32_t x;
	memcpy(&x, &f, 4);
	__nv_bfloat16 b;
	if ((x & 0x7fffffffu) > 0x7f800000u)
		b.__x = 0x7fff;                                    /* NaN, as CUDA's */
	else
		b.__x = (uint16_t)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
	return b;
}
inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 b) { return b.__x; }
inline __nv_bfloat16 __ushort_as_bfloat16(unsigned short u) { __nv_bfloat16 b; b.__x = u; return b; }
inline float __bfloat162float(__nv_bfloat16 b)
{
	uint32_t x = (uint32_t)b.__x << 16;
	float f;
	memcpy(&f, &x, 4);
	return f;
}
inline __half __float2half_rn(float f)
{
	uint32_t x;
	memcpy(&x, &f, 4);
	uint16_t sign = (uint16_t)((x >> 16) & 0x8000u), h;
	x &= 0x7fffffffu;
	if (x > 0x7f800000u)
		h = 0x7fff;                                        /* NaN */
	else if (x >= 0x477ff000u)                             /* >= 65520: infinity */
		h = 0x7c00;
	else if (x < 0x38800000u) {                            /* below 2^-14: subnormal */
		float a;
		memcpy(&a, &x, 4);
		h = (uint16_t)nearbyintf(a * 16777216.0f);     /* units of 2^-24, ties to even */
	} else {
		uint32_t mant = x & 0x7fffffu, rest = mant & 0x1fffu;
		h = (uint16_t)((((x >> 23) - 112u) << 10) | (mant >> 13));
		if (rest > 0x1000u || (rest == 0x1000u && (h & 1u)))
			h++;
	}
	__half r;
	r.__x = sign | h;
	return r;
}
inline float __half2float(__half v)
{
	uint32_t sign = (uint32_t)(v.__x & 0x8000u) << 16, e = (v.__x >> 10) & 31u, m = v.__x & 1023u;
	float f;
	if (e == 0) {
		f = (float)m * (1.0f / 16777216.0f);
		return sign ? -f : f;
	}
	uint32_t x = sign | (e == 31 ? 0x7f800000u | (m << 13) : ((e + 112u) << 23) | (m << 13));
	memcpy(&f, &x, 4);
	return f;
}

#endif
