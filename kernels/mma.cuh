/* mma.cuh: the warp-level tensor-core instructions that attention_mma.cu
 * uses, mma.sync.m16n8k16 (bf16 in, fp32 accumulate) and ldmatrix.x4, with
 * fragments in registers whose layout the PTX ISA documents, so that a
 * score tile can go from the accumulator of one product straight into the
 * A operand of the next (no trip through shared memory). On the CPU
 * emulator they are tests/cudasim/cudasim.h's sim::mma_16816 and
 * sim::ldmatrix_x4, which follow the same documented layout.
 *
 * Fragments (g = lane / 4, c = lane % 4; bf16 pairs, lower index in the
 * low half):
 *   A (16 x 16, row major): a[0] = A[g][2c..2c+1], a[1] = A[g+8][2c..],
 *                           a[2] = A[g][2c+8..], a[3] = A[g+8][2c+8..]
 *   B (16 x 8):             b[0] = B[2c..2c+1][g], b[1] = B[2c+8..2c+9][g]
 *   C, D (16 x 8, fp32):    C[g][2c], C[g][2c+1], C[g+8][2c], C[g+8][2c+1]
 * so the C fragments of two adjacent 8-column tiles, packed to bf16, are
 * the A fragment of the 16 columns they cover (pack_a).
 */
#ifndef LORA_MMA_CUH
#define LORA_MMA_CUH

#include "common.cuh"

#include <cuda_bf16.h>
#include <stdint.h>

/* d += a·b */
__device__ __forceinline__ void mma_bf16(float d[4], const uint32_t a[4], const uint32_t b[2])
{
#ifdef CUDASIM_H
	sim::mma_16816(__FILE__, __LINE__, d, a, b, d);
#else
	asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
	             "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
	             : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
	             : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#endif
}

/* Four 8x8 bf16 matrices from shared memory, each transposed if TRANS;
 * lane l gives the address of row l % 8 of matrix l / 8 (16-byte
 * aligned). */
template <bool TRANS>
__device__ __forceinline__ void ldsm_x4(uint32_t r[4], const __nv_bfloat16 *p)
{
#ifdef CUDASIM_H
	sim::ldmatrix_x4(__FILE__, __LINE__, r, p, TRANS);
#else
	unsigned s = (unsigned)__cvta_generic_to_shared(p);
	if (TRANS)
		asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
		             : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(s) : "memory");
	else
		asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
		             : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(s) : "memory");
#endif
}

/* ---- cp.async (sm_80+): global -> shared copies in the background ----------------------
 * A copy is issued, its group committed, and the data may be read only
 * after a cp_async_wait<n> that leaves at most the n most recent groups
 * in flight (and, for other threads' copies, a __syncthreads after it). */
__device__ __forceinline__ void cp_async16(void *dst, const void *src)
{
#ifdef CUDASIM_H
	sim::cp_async(dst, src, 16);
#else
	unsigned s = (unsigned)__cvta_generic_to_shared(dst);
	asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" : : "r"(s), "l"(src) : "memory");
#endif
}

__device__ __forceinline__ void cp_async_commit(void)
{
#ifdef CUDASIM_H
	sim::cp_async_commit();
#else
	asm volatile("cp.async.commit_group;\n" : : : "memory");
#endif
}

template <int N>
__device__ __forceinline__ void cp_async_wait(void)
{
#ifdef CUDASIM_H
	sim::cp_async_wait(N);
#else
	asm volatile("cp.async.wait_group %0;\n" : : "n"(N) : "memory");
#endif
}

/* ---- fragments from a row-major bf16 tile in shared memory (stride ld) -----------------
 * The three ways attention reads a tile X:
 *   frag_a:  the A fragment of X[0..16)[0..16)
 *   frag_bt: B = Xᵀ, for X·Yᵀ products: the B fragments of columns
 *            (rows of X) 0..8 in r[0..1] and 8..16 in r[2..3], k = X's
 *            columns 0..16
 *   frag_b:  B = X, for P·X products: k = X's rows 0..16, the B fragments
 *            of X's columns 0..8 in r[0..1] and 8..16 in r[2..3] */

__device__ __forceinline__ void frag_a(uint32_t r[4], const __nv_bfloat16 *x, int ld, int lane)
{
	ldsm_x4<false>(r, x + (lane & 15) * ld + (lane >> 4) * 8);
}

__device__ __forceinline__ void frag_bt(uint32_t r[4], const __nv_bfloat16 *x, int ld, int lane)
{
	ldsm_x4<false>(r, x + ((lane & 7) + (lane >> 4) * 8) * ld + ((lane >> 3) & 1) * 8);
}

__device__ __forceinline__ void frag_b(uint32_t r[4], const __nv_bfloat16 *x, int ld, int lane)
{
	ldsm_x4<true>(r, x + (lane & 15) * ld + (lane >> 4) * 8);
}

/* Two fp32 values as a bf16 pair (lo in the low half), each rounded to
 * nearest even. */
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi)
{
	return (uint32_t)__bfloat16_as_ushort(__float2bfloat16_rn(hi)) << 16 |
	       __bfloat16_as_ushort(__float2bfloat16_rn(lo));
}

/* The A fragment of 16 columns from the C fragments of its two 8-column
 * halves. */
__device__ __forceinline__ void pack_a(uint32_t a[4], const float c0[4], const float c1[4])
{
	a[0] = pack_bf16(c0[0], c0[1]);
	a[1] = pack_bf16(c0[2], c0[3]);
	a[2] = pack_bf16(c1[0], c1[1]);
	a[3] = pack_bf16(c1[2], c1[3]);
}

#endif
