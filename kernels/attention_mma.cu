/* attention_mma.cu: causal GQA attention on the tensor cores with the score
 * tiles kept in registers (flash-attention-2 style), for head sizes 64 and
 * 128: the default for bf16 runs. Same numerics, saved layout and results
 * (to the order of fp32 sums) as attention_tc.cu, which does the same with
 * WMMA and a trip through shared memory for every score tile, and stays
 * as LORA_CUDA_ATTN=wmma (to compare the two).
 *
 * The products are mma.sync m16n8k16 (mma.cuh): a score tile S = Q·Kᵀ
 * stays in its accumulator fragments, the softmax works on them (a row's
 * values sit in the 4 lanes of a quad, reduced with two shuffles), and the
 * probabilities, packed to bf16, are the A fragments of P·V as they are.
 * Shared memory holds only the staged bf16 tiles (rows of HS + 8, so that
 * the 8 rows an ldmatrix phase reads fall in 8 different bank quads), read
 * with ldmatrix, transposed where a tile is a B operand along its rows.
 *
 * Numerics: q, k, v and dout are rounded to bf16 when staged (a bf16
 * source is copied as is, by cp.async; dout comes in bf16 from the
 * backward's D pass, so its tiles, streamed again for every block of keys
 * in dk, dv, load asynchronously at half the bytes), P and dS before their
 * products;
 * scores, softmax statistics, D and all accumulators are fp32; out is
 * rounded once to A. Blocks of W warps own 16·W rows (16 per warp) and
 * walk tiles of KT other rows, the next tile staged while the current one
 * is used; (W, KT) is (8, 64), or where the GPU's shared memory per block
 * is short (4, 64) and, backward only, (4, 32) (mma_config):
 *   forward:  own = queries (Q fragments in registers); S, online softmax,
 *             O += P·V
 *   dq:       own = queries; S, dP = dO·Vᵀ, dS = P∘(dP − D), dQ += dS·K
 *   dk, dv:   own = keys of one KV head, every query head of its group,
 *             queries in steps of QS; Sᵀ = K·Qᵀ, dPᵀ = V·dOᵀ, dV += Pᵀ·dO,
 *             dK += dSᵀ·Q
 * Why 8 warps: a staged 64-row K, V tile (32 KiB at HS 128, from L2) feeds
 * 2·16·W·64·HS·2 FLOPs of the forward, 64 FLOPs per byte with 4 warps,
 * under the ~140 an H100 needs to keep its tensor cores busy from L2
 * (~989 TFLOP/s over ~7 TB/s); 8 warps make it 128.
 * Every block owns what it writes: no atomics, the same bits every run.
 */
#include "common.cuh"
#include "mma.cuh"

typedef __nv_bfloat16 bf16;

/* Other rows per tile: 64 in the forward; in the backward a template
 * parameter KT, 64, or 32 where the GPU's shared memory per block is short
 * (mma_config). */
#define KT_FWD 64

/* ---- staging ----------------------------------------------------------------------------------- */

/* 8 consecutive elements to 8 bf16 (16 bytes) in shared memory: a bf16
 * source by cp.async (done at the cp_async_wait covering its group), a
 * float one converted on the way (done at once). */
__device__ __forceinline__ void copy8(bf16 *dst, const bf16 *src)
{
	cp_async16(dst, src);
}
__device__ __forceinline__ void copy8(bf16 *dst, const float *src)
{
	float4 a = *(const float4 *)src, b = *(const float4 *)(src + 4);
	uint4 r;
	r.x = pack_bf16(a.x, a.y);
	r.y = pack_bf16(a.z, a.w);
	r.z = pack_bf16(b.x, b.y);
	r.w = pack_bf16(b.z, b.w);
	*(uint4 *)dst = r;
}

/* Issue the staging of rows [r0, r0 + ROWS) of head h of batch b of a
 * (B, T, H, HS) tensor as bf16 rows of stride HS + 8, 16 bytes per thread
 * and step; rows at or past T are zero. All threads; the caller commits
 * and waits. */
template <int HS, int ROWS, typename S>
__device__ __forceinline__ void stage(bf16 *dst, const S *src, int b, int h, int H, int T, int r0)
{
	constexpr int LDH = HS + 8, CH = HS / 8;
	size_t rs = (size_t)H * HS;
	const S *base = src + (size_t)b * T * rs + (size_t)h * HS;
	for (int i = threadIdx.x; i < ROWS * CH; i += blockDim.x) {
		int r = i / CH, c = i % CH * 8, t = r0 + r;
		if (t < T)
			copy8(dst + r * LDH + c, base + (size_t)t * rs + c);
		else
			*(uint4 *)(dst + r * LDH + c) = make_uint4(0, 0, 0, 0);
	}
}

/* K and V rows [k0, k0 + KT) of KV head hk into dst (K, then V at KT rows). */
template <int HS, int KT, typename A>
__device__ __forceinline__ void stage_kv(bf16 *dst, const A *k, const A *v, int b, int hk, int NKV,
                                         int T, int k0)
{
	stage<HS, KT>(dst, k, b, hk, NKV, T, k0);
	stage<HS, KT>(dst + KT * (HS + 8), v, b, hk, NKV, T, k0);
}

/* One step of a double-buffered walk over tiles 0..ntiles-1 (tile 0
 * issued and committed before the loop): issue tile it + 1 (stage_tile(it
 * + 1), into buffer (it + 1) & 1), commit, wait for tile it, barrier. All
 * threads; a barrier at the end of the step frees the buffer for the one
 * after next. */
template <typename F>
__device__ __forceinline__ void pipeline_step(int it, int ntiles, F stage_tile)
{
	if (it + 1 < ntiles)
		stage_tile(it + 1);
	cp_async_commit();
	cp_async_wait<1>();
	__syncthreads();
}

/* The forward's and dq's K, V walk: pipeline_step over the (K tile, V
 * tile) pairs of KV head hk in the two buffers at KV, returning tile it's
 * K (its V follows KT rows later). */
template <int HS, int KT, typename A>
__device__ __forceinline__ const bf16 *kv_next(bf16 *KV, const A *k, const A *v, int b, int hk,
                                               int NKV, int T, int it, int ntiles)
{
	constexpr int BUF = 2 * KT * (HS + 8);
	pipeline_step(it, ntiles, [&](int j) {
		stage_kv<HS, KT>(KV + (j & 1) * BUF, k, v, b, hk, NKV, T, j * KT);
	});
	return KV + (it & 1) * BUF;
}

/* The C fragments of a (16, 8·NT) fp32 tile to rows ra and rb (= ra + 8)
 * of a row-major array of stride ld, column c2 of each 8: rows at or past
 * T are not written. */
template <int NT>
__device__ __forceinline__ void store_frags(float *p, size_t ld, int ra, int rb, int T, int c2,
                                            const float (*acc)[4])
{
#pragma unroll
	for (int n = 0; n < NT; n++) {
		if (ra < T)
			*(float2 *)(p + (size_t)ra * ld + n * 8 + c2) = make_float2(acc[n][0], acc[n][1]);
		if (rb < T)
			*(float2 *)(p + (size_t)rb * ld + n * 8 + c2) = make_float2(acc[n][2], acc[n][3]);
	}
}

/* Rows [r0, r0 + KT) of a (B, NH, T) row statistic (lse or D) times f; 0
 * past T. */
template <int KT>
__device__ __forceinline__ void stage_stat(float *dst, const float *row, int T, int r0, float f)
{
	for (int i = threadIdx.x; i < KT; i += blockDim.x)
		dst[i] = r0 + i < T ? row[r0 + i] * f : 0.0f;
}

/* The exponentials are exp2f of scores scaled by scale·log2(e): the
 * hardware's ex2, where expf adds a range reduction. They count: an SM
 * does ~16 per clock, so a 128 x 64 tile's 8192 take ~512 clocks, as long
 * as its HS-64 products at the full tensor rate (~4096 FLOP per clock).
 * The saved log-sum-exp stays in natural log. */
#define LOG2E 1.4426950408889634f
#define LN2 0.6931471805599453f

/* Quad reductions: a row of a C fragment lies in lanes 4g..4g+3. */
__device__ __forceinline__ float quad_max(float x)
{
	x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 1));
	return fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 2));
}
__device__ __forceinline__ float quad_sum(float x)
{
	x += __shfl_xor_sync(0xffffffffu, x, 1);
	return x + __shfl_xor_sync(0xffffffffu, x, 2);
}

/* acc (16 x 8·NT, C fragments) += X (16 x 16·KS, A fragments from
 * shared memory, stride ldx) · Yᵀ (Y: 8·NT rows of stride ldy). */
template <int NT, int KS>
__device__ __forceinline__ void mm_xyt(float (*acc)[4], const bf16 *x, int ldx, const bf16 *y,
                                       int ldy, int lane)
{
#pragma unroll
	for (int kk = 0; kk < KS; kk++) {
		uint32_t a[4];
		frag_a(a, x + kk * 16, ldx, lane);
#pragma unroll
		for (int n = 0; n < NT; n += 2) {
			uint32_t b[4];
			frag_bt(b, y + n * 8 * ldy + kk * 16, ldy, lane);
			mma_bf16(acc[n], a, b);
			mma_bf16(acc[n + 1], a, b + 2);
		}
	}
}

/* acc (16 x 8·NT) += P (16 x 16·KS, C fragments in p, packed to bf16) ·
 * Y (16·KS rows of stride ldy, 8·NT columns). */
template <int NT, int KS>
__device__ __forceinline__ void mm_py(float (*acc)[4], const float (*p)[4], const bf16 *y,
                                      int ldy, int lane)
{
#pragma unroll
	for (int kk = 0; kk < KS; kk++) {
		uint32_t a[4];
		pack_a(a, p[2 * kk], p[2 * kk + 1]);
#pragma unroll
		for (int n = 0; n < NT; n += 2) {
			uint32_t b[4];
			frag_b(b, y + kk * 16 * ldy + n * 8, ldy, lane);
			mma_bf16(acc[n], a, b);
			mma_bf16(acc[n + 1], a, b + 2);
		}
	}
}

template <int NT>
__device__ __forceinline__ void zero(float (*acc)[4])
{
#pragma unroll
	for (int n = 0; n < NT; n++)
		acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.0f;
}

/* ---- kernels ----------------------------------------------------------------------------------
 * W warps per block own 16·W rows. The tiles walked are double-buffered:
 * the next one is staged (cp.async) while the current one is used; every
 * iteration commits one group (perhaps empty) and waits for all but the
 * newest, then a barrier; a barrier at the end frees the buffer for the
 * iteration after next.
 *
 * Grids: x = the (batch, head) pair (and for dk, dv the part of a head
 * group), y = the block of own rows, the heaviest at y = 0 (causal work
 * grows with a query's row and shrinks with a key's). Blocks start in the
 * order of x + y·gridDim.x, so all the heavy blocks come first and the last
 * wave is light ones: longest first, the classic rule for a short tail.
 * (In a greedy model of one block per SM on 132 SMs that is 5-12% off the
 * forward's and dq's time at 7B and TinyLlama shapes against the order
 * with y slowest per head, and more for dk, dv split by heads.) */
__device__ __forceinline__ int heavy_row0(int rows, bool queries)
{
	return (queries ? gridDim.y - 1 - blockIdx.y : blockIdx.y) * rows;
}

template <int HS, int W, typename A>
__global__ void __launch_bounds__(32 * W)
att_mma_fwd_kernel(A *out, float *lse, const A *q, const A *k, const A *v, int T, int NH,
                   int NKV, float scale)
{
	constexpr int KT = KT_FWD;
	constexpr int QR = 16 * W, LDH = HS + 8, KS = HS / 16, NO = HS / 8, NS = KT / 8;
	extern __shared__ __align__(128) unsigned char smem[];
	bf16 *Qs = (bf16 *)smem, *KV = Qs + QR * LDH;      /* KV: 2 x (K tile, V tile) */
	int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, c2 = (lane & 3) * 2;
	int q0 = heavy_row0(QR, true), b = blockIdx.x / NH, h = blockIdx.x % NH;
	int hk = h / (NH / NKV);
	int w0 = q0 + warp * 16, r0 = w0 + g, r1 = r0 + 8;   /* the lane's two query rows */
	int ntiles = (min(q0 + QR, T) - 1) / KT + 1;
	float sl2 = scale * LOG2E;               /* scores in log2 units */

	stage<HS, QR>(Qs, q, b, h, NH, T, q0);
	stage_kv<HS, KT>(KV, k, v, b, hk, NKV, T, 0);
	cp_async_commit();
	float o[NO][4], m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f;
	zero<NO>(o);
	uint32_t qa[KS][4];
	for (int it = 0; it < ntiles; it++) {
		int k0 = it * KT;
		const bf16 *Ks = kv_next<HS, KT>(KV, k, v, b, hk, NKV, T, it, ntiles), *Vs = Ks + KT * LDH;
		if (it == 0)
#pragma unroll
			for (int kk = 0; kk < KS; kk++)
				frag_a(qa[kk], Qs + warp * 16 * LDH + kk * 16, LDH, lane);
		if (w0 < T && k0 <= w0 + 15) {       /* else nothing of this tile for the warp */
			float s[NS][4];
			zero<NS>(s);
#pragma unroll
			for (int kk = 0; kk < KS; kk++)
#pragma unroll
				for (int n = 0; n < NS; n += 2) {
					uint32_t bb[4];
					frag_bt(bb, Ks + n * 8 * LDH + kk * 16, LDH, lane);
					mma_bf16(s[n], qa[kk], bb);
					mma_bf16(s[n + 1], qa[kk], bb + 2);
				}
			/* scale and mask; row maxima */
			float x0 = -INFINITY, x1 = -INFINITY;
#pragma unroll
			for (int n = 0; n < NS; n++)
#pragma unroll
				for (int j = 0; j < 2; j++) {
					int u = k0 + n * 8 + c2 + j;
					s[n][j] = r0 < T && u <= r0 ? s[n][j] * sl2 : -INFINITY;
					s[n][2 + j] = r1 < T && u <= r1 ? s[n][2 + j] * sl2 : -INFINITY;
					x0 = fmaxf(x0, s[n][j]);
					x1 = fmaxf(x1, s[n][2 + j]);
				}
			float n0 = fmaxf(m0, quad_max(x0)), n1 = fmaxf(m1, quad_max(x1));
			float f0 = n0 == -INFINITY ? 1.0f : exp2f(m0 - n0);
			float f1 = n1 == -INFINITY ? 1.0f : exp2f(m1 - n1);
			m0 = n0;
			m1 = n1;
			float e0 = 0.0f, e1 = 0.0f;      /* the lane's share of the row sums */
#pragma unroll
			for (int n = 0; n < NS; n++)
#pragma unroll
				for (int j = 0; j < 2; j++) {
					s[n][j] = s[n][j] == -INFINITY ? 0.0f : exp2f(s[n][j] - n0);
					s[n][2 + j] = s[n][2 + j] == -INFINITY ? 0.0f : exp2f(s[n][2 + j] - n1);
					e0 += s[n][j];
					e1 += s[n][2 + j];
				}
			l0 = l0 * f0 + e0;
			l1 = l1 * f1 + e1;
#pragma unroll
			for (int n = 0; n < NO; n++) {
				o[n][0] *= f0;
				o[n][1] *= f0;
				o[n][2] *= f1;
				o[n][3] *= f1;
			}
			mm_py<NO, KT / 16>(o, s, Vs, LDH, lane);
		}
		__syncthreads();
	}
	l0 = quad_sum(l0);
	l1 = quad_sum(l1);
	size_t qs = (size_t)NH * HS;
	A *ob = out + (size_t)b * T * qs + (size_t)h * HS;
#pragma unroll
	for (int n = 0; n < NO; n++)
#pragma unroll
		for (int j = 0; j < 2; j++) {
			if (r0 < T)
				ob[(size_t)r0 * qs + n * 8 + c2 + j] = from_f32<A>(o[n][j] / l0);
			if (r1 < T)
				ob[(size_t)r1 * qs + n * 8 + c2 + j] = from_f32<A>(o[n][2 + j] / l1);
		}
	float *lrow = lse + ((size_t)b * NH + h) * T;
	if ((lane & 3) == 0) {
		if (r0 < T)
			lrow[r0] = (m0 + log2f(l0)) * LN2;
		if (r1 < T)
			lrow[r1] = (m1 + log2f(l1)) * LN2;
	}
}

/* dS for a C fragment element: P∘(dP − D)·scale where the key is causal
 * for the query (ok), else 0; L2: the query's lse·log2(e). */
__device__ __forceinline__ float ds_of(float s, float dp, float L2, float D, float sl2,
                                       float scale, bool ok)
{
	return ok ? exp2f(s * sl2 - L2) * (dp - D) * scale : 0.0f;
}

template <int HS, int W, int KT, typename A>
__global__ void __launch_bounds__(32 * W)
att_mma_dq_kernel(float *dq, const bf16 *dout, const float *lse, const float *D, const A *q,
                  const A *k, const A *v, int T, int NH, int NKV, float scale)
{
	constexpr int QR = 16 * W, LDH = HS + 8, KS = HS / 16, NO = HS / 8, NS = KT / 8;
	extern __shared__ __align__(128) unsigned char smem[];
	bf16 *Qs = (bf16 *)smem, *Gs = Qs + QR * LDH, *KV = Gs + QR * LDH;
	int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, c2 = (lane & 3) * 2;
	int q0 = heavy_row0(QR, true), b = blockIdx.x / NH, h = blockIdx.x % NH;
	int hk = h / (NH / NKV);
	int w0 = q0 + warp * 16, r0 = w0 + g, r1 = r0 + 8;
	int ntiles = (min(q0 + QR, T) - 1) / KT + 1;
	const float *lrow = lse + ((size_t)b * NH + h) * T, *drow = D + ((size_t)b * NH + h) * T;
	float L0 = r0 < T ? lrow[r0] * LOG2E : 0.0f, L1 = r1 < T ? lrow[r1] * LOG2E : 0.0f;
	float sl2 = scale * LOG2E;
	float D0 = r0 < T ? drow[r0] : 0.0f, D1 = r1 < T ? drow[r1] : 0.0f;

	stage<HS, QR>(Qs, q, b, h, NH, T, q0);
	stage<HS, QR>(Gs, dout, b, h, NH, T, q0);
	stage_kv<HS, KT>(KV, k, v, b, hk, NKV, T, 0);
	cp_async_commit();
	float acc[NO][4];
	zero<NO>(acc);
	for (int it = 0; it < ntiles; it++) {
		int k0 = it * KT;
		const bf16 *Ks = kv_next<HS, KT>(KV, k, v, b, hk, NKV, T, it, ntiles), *Vs = Ks + KT * LDH;
		if (w0 < T && k0 <= w0 + 15) {
			float s[NS][4], dp[NS][4];
			zero<NS>(s);
			zero<NS>(dp);
			mm_xyt<NS, KS>(s, Qs + warp * 16 * LDH, LDH, Ks, LDH, lane);
			mm_xyt<NS, KS>(dp, Gs + warp * 16 * LDH, LDH, Vs, LDH, lane);
#pragma unroll
			for (int n = 0; n < NS; n++)
#pragma unroll
				for (int j = 0; j < 2; j++) {
					int u = k0 + n * 8 + c2 + j;
					s[n][j] = ds_of(s[n][j], dp[n][j], L0, D0, sl2, scale, r0 < T && u <= r0);
					s[n][2 + j] = ds_of(s[n][2 + j], dp[n][2 + j], L1, D1, sl2, scale,
					                    r1 < T && u <= r1);
				}
			mm_py<NO, KT / 16>(acc, s, Ks, LDH, lane);
		}
		__syncthreads();
	}
	size_t qs = (size_t)NH * HS;
	store_frags<NO>(dq + (size_t)b * T * qs + (size_t)h * HS, qs, r0, r1, T, c2, acc);
}

/* Queries per step in dk, dv: the score fragments are (16, QS) for each of
 * S and dP beside the (16, HS) accumulators of dK and dV. */
template <int HS> struct dkv_step { static constexpr int QS = HS == 128 ? 32 : 64; };

/* The query heads of a KV head's group are split into S parts of NH/NKV/S
 * heads, one block each (for GQA: without it TinyLlama's dk, dv grid at
 * 2 x 2048 tokens is 128 blocks for 132 SMs, the heaviest doing twice the
 * mean). Part 0 writes dk, dv; part s > 0 writes its sums to part[s - 1]
 * (dk's, then dv's, each (B, T, NKV, HS)), added to dk, dv after in a fixed
 * order (att_mma_parts_kernel). */
template <int HS, int W, int KT, typename A>
__global__ void __launch_bounds__(32 * W)
att_mma_dkv_kernel(float *dk, float *dv, float *part, const bf16 *dout, const float *lse,
                   const float *D, const A *q, const A *k, const A *v, int T, int NH, int NKV,
                   int S, float scale)
{
	constexpr int KR = 16 * W, LDH = HS + 8, KS = HS / 16, NO = HS / 8;
	constexpr int QS = dkv_step<HS>::QS < KT ? dkv_step<HS>::QS : KT, NS = QS / 8;
	extern __shared__ __align__(128) unsigned char smem[];
	bf16 *Kw = (bf16 *)smem, *Vw = Kw + KR * LDH;                  /* own keys */
	bf16 *QG = Vw + KR * LDH;                    /* 2 x (Q tile, dO tile), KT rows each */
	float *LD = (float *)(QG + 4 * KT * LDH);    /* 2 x (lse·log2(e), D) of the tile's queries */
	int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, c2 = (lane & 3) * 2;
	int k0 = heavy_row0(KR, false), sp = blockIdx.x % S, b = blockIdx.x / S / NKV;
	int hk = blockIdx.x / S % NKV, rep = NH / NKV, hn = rep / S, h0 = hk * rep + sp * hn;
	int nq = (T - k0 + KT - 1) / KT;                   /* query tiles per head, from k0 */
	int u0 = k0 + warp * 16, ua = u0 + g, ub = ua + 8;   /* the lane's two keys */
	float sl2 = scale * LOG2E;

	/* tile it: head h0 + it / nq, queries from k0 + (it % nq)·KT
	 * (earlier queries see no own key) */
	auto issue = [&](int it) {
		int h = h0 + it / nq, q0 = k0 + it % nq * KT;
		bf16 *Qs = QG + (it & 1) * 2 * KT * LDH;
		float *L = LD + (it & 1) * 2 * KT;
		stage<HS, KT>(Qs, q, b, h, NH, T, q0);
		stage<HS, KT>(Qs + KT * LDH, dout, b, h, NH, T, q0);
		stage_stat<KT>(L, lse + ((size_t)b * NH + h) * T, T, q0, LOG2E);
		stage_stat<KT>(L + KT, D + ((size_t)b * NH + h) * T, T, q0, 1.0f);
	};
	stage<HS, KR>(Kw, k, b, hk, NKV, T, k0);
	stage<HS, KR>(Vw, v, b, hk, NKV, T, k0);
	issue(0);
	cp_async_commit();
	float ak[NO][4], av[NO][4];
	zero<NO>(ak);
	zero<NO>(av);
	for (int it = 0; it < hn * nq; it++) {
		int q0 = k0 + it % nq * KT;
		const bf16 *Qs = QG + (it & 1) * 2 * KT * LDH, *Gs = Qs + KT * LDH;
		const float *Lc = LD + (it & 1) * 2 * KT, *Dc = Lc + KT;
		pipeline_step(it, hn * nq, issue);
#pragma unroll
		for (int sq = 0; sq < KT; sq += QS) {
			/* no query of the step sees a key of the warp */
			if (u0 >= T || q0 + sq + QS - 1 < u0 || q0 + sq >= T)
				continue;
			float s[NS][4], dp[NS][4];
			zero<NS>(s);
			zero<NS>(dp);
			mm_xyt<NS, KS>(s, Kw + warp * 16 * LDH, LDH, Qs + sq * LDH, LDH, lane);
			mm_xyt<NS, KS>(dp, Vw + warp * 16 * LDH, LDH, Gs + sq * LDH, LDH, lane);
			/* Pᵀ into s, dSᵀ into dp */
#pragma unroll
			for (int n = 0; n < NS; n++)
#pragma unroll
				for (int j = 0; j < 4; j++) {
					int c = sq + n * 8 + c2 + (j & 1), t = q0 + c;
					int u = j < 2 ? ua : ub;
					float p = 0.0f;
					if (u < T && t < T && t >= u)
						p = exp2f(s[n][j] * sl2 - Lc[c]);
					s[n][j] = p;
					dp[n][j] = p * (dp[n][j] - Dc[c]) * scale;
				}
			mm_py<NO, QS / 16>(av, s, Gs + sq * LDH, LDH, lane);
			mm_py<NO, QS / 16>(ak, dp, Qs + sq * LDH, LDH, lane);
		}
		__syncthreads();
	}
	size_t ks = (size_t)NKV * HS, nk = (size_t)(gridDim.x / S / NKV) * T * ks;
	size_t koff = (size_t)b * T * ks + (size_t)hk * HS;
	if (sp) {
		dk = part + (size_t)(sp - 1) * 2 * nk;
		dv = dk + nk;
	}
	store_frags<NO>(dk + koff, ks, ua, ub, T, c2, ak);
	store_frags<NO>(dv + koff, ks, ua, ub, T, c2, av);
}

/* dk, dv (n floats each) += the S − 1 parts' sums, in part order: the same
 * bits every run for a given S. n is a multiple of 4; any grid (a
 * grid-stride loop, as cuda_blocks() expects). */
__global__ void att_mma_parts_kernel(float *dk, float *dv, const float *part, size_t n, int S)
{
	for (size_t i = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) * 4; i < 2 * n;
	     i += (size_t)gridDim.x * blockDim.x * 4) {
		float *d = i < n ? dk + i : dv + (i - n);
		float4 a = *(float4 *)d;
		for (int s = 1; s < S; s++) {
			float4 p = *(const float4 *)(part + (size_t)(s - 1) * 2 * n + i);
			a.x += p.x;
			a.y += p.y;
			a.z += p.z;
			a.w += p.w;
		}
		*(float4 *)d = a;
	}
}

/* ---- launchers ------------------------------------------------------------------------------- */

static size_t tiles_smem(int HS, int rows, int stats)
{
	return (size_t)rows * (HS + 8) * 2 + (size_t)stats * 4;
}

/* Dynamic shared memory of the forward (KT_FWD), and of the larger
 * backward kernel (dk, dv: dq's tiles plus the tiles' statistics), with W
 * warps and tiles of KT other rows. */
static size_t mma_smem(int HS, int W, int bwd, int KT)
{
	return bwd ? tiles_smem(HS, 32 * W + 4 * KT, 4 * KT) : tiles_smem(HS, 16 * W + 4 * KT, 0);
}

/* Warps per block and tile rows of the forward (bwd 0) or the backward:
 * the first of (8, 64), (4, 64), (4, 32) (the backward; the forward's
 * tiles are always 64 rows) whose shared memory the GPU gives a block.
 * 8 warps own 128 rows: each staged tile serves twice the rows it does
 * with 4, halving the L2 traffic per FLOP. The H100 and A100 take (8, 64);
 * a 99 KiB GPU (RTX 4090) at HS 128 the forward with 4 warps and the
 * backward with (4, 32), at HS 64 (8, 64). W = 0 when none fits.
 * LORA_CUDA_ATTN_ROWS=64 leaves out 8 warps and LORA_CUDA_ATTN_KT=32 the
 * 64-row backward tiles (to compare, and to test each on any GPU). */
struct mma_cfg { int W, KT; };

static mma_cfg mma_config(int HS, int bwd)
{
	static int w = 0, kt = 0;
	if (!w) {
		const char *e = getenv("LORA_CUDA_ATTN_ROWS"), *k = getenv("LORA_CUDA_ATTN_KT");
		w = e && !strcmp(e, "64") ? 4 : 8;
		kt = k && !strcmp(k, "32") ? 32 : 64;
	}
	static const mma_cfg cand[] = { { 8, 64 }, { 4, 64 }, { 4, 32 } };
	for (const mma_cfg &c : cand) {
		int KT = bwd ? c.KT : KT_FWD;
		if (c.W <= w && (!bwd || KT <= kt) && mma_smem(HS, c.W, bwd, KT) <= cuda_smem_optin())
			return { c.W, KT };
	}
	return { 0, 0 };
}

int cuda_attention_mma_warps(int HS, int bwd)
{
	return mma_config(HS, bwd).W;
}

template <typename F>
static void optin(F kernel, size_t smem)
{
	if (smem > 48 * 1024)
		CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
		                                (int)smem));
}

/* One instantiation per (HS, W, A), each with its own opt-in (`ready`). */
template <int HS, int W, typename A>
static void mma_forward(A *out, float *saved, const A *q, const A *k, const A *v,
                        int B, int T, int NH, int NKV)
{
	static int ready;
	size_t smem = mma_smem(HS, W, 0, KT_FWD);
	if (!ready) {
		optin(att_mma_fwd_kernel<HS, W, A>, smem);
		ready = 1;
	}
	dim3 grid(B * NH, (T + 16 * W - 1) / (16 * W));
	att_mma_fwd_kernel<HS, W, A><<<grid, 32 * W, smem, cuda_stream()>>>(
		out, saved, q, k, v, T, NH, NKV, 1.0f / sqrtf((float)HS));
	CUDA_LAUNCH_CHECK();
}

/* Parts of a head group in dk, dv (see att_mma_dkv_kernel): the fewest
 * that divide NH/NKV and give the grid 1.5 blocks per SM (one fits at a
 * time), so the heaviest key blocks, which start first, are not the tail
 * (bench/sched_model.py: within 6% of an even spread at TinyLlama's shapes);
 * LORA_CUDA_ATTN_SPLIT=n asks for n (rounded down to a divisor), to test
 * and time each. */
static int dkv_split(int B, int T, int NH, int NKV, int W)
{
	int rep = NH / NKV, want = 0;
	const char *e = getenv("LORA_CUDA_ATTN_SPLIT");
	if (e && atoi(e) > 0)
		want = atoi(e);
	size_t blocks = (size_t)((T + 16 * W - 1) / (16 * W)) * B * NKV;
	int s = 1;
	while (s < rep && (want ? s < want : 2 * blocks * s < 3 * (size_t)cuda_sm_count()))
		s++;
	while (rep % s || (want && s > want))
		s--;
	return s;
}

size_t cuda_attention_mma_parts_floats(int B, int T, int NH, int NKV, int HS)
{
	int W = cuda_attention_mma_warps(HS, 1);
	return W ? (size_t)(dkv_split(B, T, NH, NKV, W) - 1) * 2 * B * T * NKV * HS : 0;
}

template <int HS, int W, int KT, typename A>
static void mma_backward(float *dq, float *dk, float *dv, float *part, const bf16 *dout,
                         const float *saved, const float *D, const A *q, const A *k, const A *v,
                         int B, int T, int NH, int NKV)
{
	static int ready;
	size_t sq = tiles_smem(HS, 32 * W + 4 * KT, 0), sk = mma_smem(HS, W, 1, KT);
	if (!ready) {
		optin(att_mma_dq_kernel<HS, W, KT, A>, sq);
		optin(att_mma_dkv_kernel<HS, W, KT, A>, sk);
		ready = 1;
	}
	float scale = 1.0f / sqrtf((float)HS);
	int R = 16 * W, S = dkv_split(B, T, NH, NKV, W);
	dim3 gq(B * NH, (T + R - 1) / R), gk(B * NKV * S, (T + R - 1) / R);
	att_mma_dq_kernel<HS, W, KT, A><<<gq, 32 * W, sq, cuda_stream()>>>(
		dq, dout, saved, D, q, k, v, T, NH, NKV, scale);
	CUDA_LAUNCH_CHECK();
	att_mma_dkv_kernel<HS, W, KT, A><<<gk, 32 * W, sk, cuda_stream()>>>(
		dk, dv, part, dout, saved, D, q, k, v, T, NH, NKV, S, scale);
	CUDA_LAUNCH_CHECK();
	if (S > 1) {
		size_t n = (size_t)B * T * NKV * HS;
		att_mma_parts_kernel<<<cuda_blocks(2 * n / 4, 256), 256, 0, cuda_stream()>>>(
			dk, dv, part, n, S);
		CUDA_LAUNCH_CHECK();
	}
}

#define MMA_PICK(fn, HS, W, A) \
	(HS == 64 ? (W == 4 ? fn<64, 4, A> : fn<64, 8, A>) \
	          : (W == 4 ? fn<128, 4, A> : fn<128, 8, A>))
/* the backward's (W, KT): one of mma_config's three */
#define MMA_PICK_BWD(fn, HS, c, A) \
	(HS == 64 ? (c.W == 8 ? fn<64, 8, 64, A> : c.KT == 64 ? fn<64, 4, 64, A> : fn<64, 4, 32, A>) \
	          : (c.W == 8 ? fn<128, 8, 64, A> : c.KT == 64 ? fn<128, 4, 64, A> \
	                                                       : fn<128, 4, 32, A>))

void cuda_attention_mma_forward(void *out, float *saved, const void *q, const void *k,
                                const void *v, lora_dtype adt, int B, int T, int NH, int NKV,
                                int HS)
{
	int W = cuda_attention_mma_warps(HS, 0);
	LORA_ASSERT(W);
	ADTYPE_DISPATCH(adt, A,
		MMA_PICK(mma_forward, HS, W, A)(
			(A *)out, saved, (const A *)q, (const A *)k, (const A *)v, B, T, NH, NKV));
}

void cuda_attention_mma_backward(float *dq, float *dk, float *dv, float *part,
                                 const bf16 *dout, const float *saved, const float *D,
                                 const void *q, const void *k, const void *v, lora_dtype adt,
                                 int B, int T, int NH, int NKV, int HS)
{
	mma_cfg c = mma_config(HS, 1);
	LORA_ASSERT(c.W);
	ADTYPE_DISPATCH(adt, A,
		MMA_PICK_BWD(mma_backward, HS, c, A)(
			dq, dk, dv, part, dout, saved, D, (const A *)q, (const A *)k, (const A *)v, B, T,
			NH, NKV));
}
