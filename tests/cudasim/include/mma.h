/* mma.h: nvcuda::wmma for the CPU emulator (tests/cudasim/cudasim.h).
 * The layout of a fragment's elements across the lanes of a warp is opaque
 * in CUDA; here every lane holds the whole tile (row-major), which gives the
 * same results for code that uses only the documented operations (load,
 * store, fill, mma and element-wise loops over x[]). mma_sync multiplies in
 * fp32 with fp32 accumulation: products of bf16/fp16 values are exact.
 * Load, store and mma are warp collectives, but they do not order memory
 * between lanes: only __syncwarp (or __syncthreads) does. So here they do
 * not wait for the other lanes at all: a load reads memory when its lane
 * gets there, perhaps before the others have written what it reads, and a
 * store writes only its lane's share of the tile (element i by lane i % 32):
 * a lane that reads what others stored, or loads what others wrote, without
 * a barrier between, sees stale or NaN data. That all 32 lanes made the same
 * number of wmma calls is checked at the next barrier. */
#ifndef CUDASIM_MMA_H
#define CUDASIM_MMA_H
#include "../cudasim.h"

namespace nvcuda {
namespace wmma {

struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

template <class Use, int M, int N, int K, class T, class Layout = void>
struct fragment {
	static constexpr int rows = std::is_same<Use, matrix_b>::value ? K : M;
	static constexpr int cols = std::is_same<Use, matrix_a>::value ? K : N;
	enum { num_elements = rows * cols };
	T x[num_elements];
};

inline float to_f(float v) { return v; }
inline float to_f(__nv_bfloat16 v) { return __bfloat162float(v); }
inline float to_f(__half v) { return __half2float(v); }

inline void check_ptr(const void *p, unsigned ldm, size_t esize, const char *what)
{
	if ((uintptr_t)p % 32)
		sim::fail("wmma::%s: pointer %p is not 256-bit aligned", what, p);
	if ((ldm * esize) % 16)
		sim::fail("wmma::%s: ldm %u is not a multiple of 16 bytes", what, ldm);
}

template <class Use, int M, int N, int K, class T, class L>
inline void load_matrix_sync(fragment<Use, M, N, K, T, L> &f, const T *p, unsigned ldm)
{
	typedef fragment<Use, M, N, K, T, L> F;
	static_assert(!std::is_same<Use, accumulator>::value, "accumulator loads need a layout");
	sim::wmma_op();
	check_ptr(p, ldm, sizeof(T), "load_matrix_sync");
	bool row = std::is_same<L, row_major>::value;
	for (int i = 0; i < F::rows; i++)
		for (int j = 0; j < F::cols; j++)
			f.x[i * F::cols + j] = row ? p[(size_t)i * ldm + j] : p[i + (size_t)j * ldm];
}

template <int M, int N, int K, class T>
inline void load_matrix_sync(fragment<accumulator, M, N, K, T> &f, const T *p, unsigned ldm,
                             layout_t l)
{
	sim::wmma_op();
	check_ptr(p, ldm, sizeof(T), "load_matrix_sync");
	for (int i = 0; i < M; i++)
		for (int j = 0; j < N; j++)
			f.x[i * N + j] = l == mem_row_major ? p[(size_t)i * ldm + j] : p[i + (size_t)j * ldm];
}

template <int M, int N, int K, class T>
inline void store_matrix_sync(T *p, const fragment<accumulator, M, N, K, T> &f, unsigned ldm,
                              layout_t l)
{
	sim::wmma_op();
	check_ptr(p, ldm, sizeof(T), "store_matrix_sync");
	for (int e = sim::lane(); e < M * N; e += 32) {
		int i = e / N, j = e % N;
		(l == mem_row_major ? p[(size_t)i * ldm + j] : p[i + (size_t)j * ldm]) = f.x[e];
	}
}

template <class Use, int M, int N, int K, class T, class L, class V>
inline void fill_fragment(fragment<Use, M, N, K, T, L> &f, const V &v)
{
	for (int i = 0; i < fragment<Use, M, N, K, T, L>::num_elements; i++)
		f.x[i] = v;
}

template <int M, int N, int K, class T, class LA, class LB>
inline void mma_sync(fragment<accumulator, M, N, K, float> &d,
                     const fragment<matrix_a, M, N, K, T, LA> &a,
                     const fragment<matrix_b, M, N, K, T, LB> &b,
                     const fragment<accumulator, M, N, K, float> &c)
{
	sim::wmma_op();
	float r[M * N];
	for (int i = 0; i < M; i++)
		for (int j = 0; j < N; j++) {
			float s = c.x[i * N + j];
			for (int k = 0; k < K; k++)
				s += to_f(a.x[i * K + k]) * to_f(b.x[k * N + j]);
			r[i * N + j] = s;
		}
	memcpy(d.x, r, sizeof r);
}

}  /* namespace wmma */
}  /* namespace nvcuda */
#endif
