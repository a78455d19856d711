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
 * source is copied as is), P and dS before their products; scores,
 * softmax statistics, D and all accumulators are fp32; out is rounded once
 * to A. Blocks of 4 warps own 64 rows (16 per warp) and walk tiles of 64:
 *   forward:  own = queries (Q fragments in registers); S, online softmax,
 *             O += P·V
 *   dq:       own = queries; S, dP = dO·Vᵀ, dS = P∘(dP − D), dQ += dS·K
 *   dk, dv:   own = keys of one KV head, every query head of its group,
 *             queries in steps of QS; Sᵀ = K·Qᵀ, dPᵀ = V·dOᵀ, dV += Pᵀ·dO,
 *             dK += dSᵀ·Q
 * Every block owns what it writes: no atomics, the same bits every run.
 */
#include "common.cuh"
#include "mma.cuh"

typedef __nv_bfloat16 bf16;

#define MM_ROWS 64               /* own rows per block, other rows per tile */
#define MM_THREADS 128           /* 4 warps x 16 rows */

/* ---- staging ----------------------------------------------------------------------------------- */

/* 8 consecutive elements as 8 bf16 (16 bytes). */
__device__ __forceinline__ uint4 load8(const bf16 *p)
{
	return *(const uint4 *)p;
}
__device__ __forceinline__ uint4 load8(const float *p)
{
	float4 a = *(const float4 *)p, b = *(const float4 *)(p + 4);
	uint4 r;
	r.x = pack_bf16(a.x, a.y);
	r.y = pack_bf16(a.z, a.w);
	r.z = pack_bf16(b.x, b.y);
	r.w = pack_bf16(b.z, b.w);
	return r;
}

/* Rows [r0, r0 + 64) of head h of batch b of a (B, T, H, HS) tensor as bf16
 * rows of stride HS + 8, 16 bytes per thread and step; rows at or past T
 * are zero. All threads. */
template <int HS, typename S>
__device__ __forceinline__ void stage(bf16 *dst, const S *src, int b, int h, int H, int T, int r0)
{
	constexpr int LDH = HS + 8, CH = HS / 8;
	size_t rs = (size_t)H * HS;
	const S *base = src + (size_t)b * T * rs + (size_t)h * HS;
	for (int i = threadIdx.x; i < MM_ROWS * CH; i += blockDim.x) {
		int r = i / CH, c = i % CH * 8, t = r0 + r;
		uint4 v = { 0, 0, 0, 0 };
		if (t < T)
			v = load8(base + (size_t)t * rs + c);
		*(uint4 *)(dst + r * LDH + c) = v;
	}
}

/* Rows [r0, r0 + 64) of a (B, NH, T) row statistic (lse or D); 0 past T. */
__device__ __forceinline__ void stage_stat(float *dst, const float *row, int T, int r0)
{
	for (int i = threadIdx.x; i < MM_ROWS; i += blockDim.x)
		dst[i] = r0 + i < T ? row[r0 + i] : 0.0f;
}

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

/* ---- kernels ---------------------------------------------------------------------------------- */

template <int HS, typename A>
__global__ void __launch_bounds__(MM_THREADS)
att_mma_fwd_kernel(A *out, float *lse, const A *q, const A *k, const A *v, int T, int NH,
                   int NKV, float scale)
{
	constexpr int LDH = HS + 8, KS = HS / 16, NO = HS / 8, NS = MM_ROWS / 8;
	extern __shared__ __align__(128) unsigned char smem[];
	bf16 *Qs = (bf16 *)smem, *Ks = Qs + MM_ROWS * LDH, *Vs = Ks + MM_ROWS * LDH;
	int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, c2 = (lane & 3) * 2;
	int q0 = heavy_first(MM_ROWS), b = blockIdx.y / NH, h = blockIdx.y % NH, hk = h / (NH / NKV);
	int w0 = q0 + warp * 16, r0 = w0 + g, r1 = r0 + 8;   /* the lane's two query rows */

	stage<HS>(Qs, q, b, h, NH, T, q0);
	__syncthreads();
	uint32_t qa[KS][4];
#pragma unroll
	for (int kk = 0; kk < KS; kk++)
		frag_a(qa[kk], Qs + warp * 16 * LDH + kk * 16, LDH, lane);
	float o[NO][4], m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f;
#pragma unroll
	for (int n = 0; n < NO; n++)
		o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;

	int last = min(q0 + MM_ROWS, T) - 1;
	for (int k0 = 0; k0 <= last; k0 += MM_ROWS) {
		__syncthreads();
		stage<HS>(Ks, k, b, hk, NKV, T, k0);
		stage<HS>(Vs, v, b, hk, NKV, T, k0);
		__syncthreads();
		if (w0 >= T || k0 > w0 + 15)         /* nothing of this tile for the warp */
			continue;
		float s[NS][4];
#pragma unroll
		for (int n = 0; n < NS; n++)
			s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
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
				s[n][j] = r0 < T && u <= r0 ? s[n][j] * scale : -INFINITY;
				s[n][2 + j] = r1 < T && u <= r1 ? s[n][2 + j] * scale : -INFINITY;
				x0 = fmaxf(x0, s[n][j]);
				x1 = fmaxf(x1, s[n][2 + j]);
			}
		float n0 = fmaxf(m0, quad_max(x0)), n1 = fmaxf(m1, quad_max(x1));
		float f0 = n0 == -INFINITY ? 1.0f : expf(m0 - n0);
		float f1 = n1 == -INFINITY ? 1.0f : expf(m1 - n1);
		m0 = n0;
		m1 = n1;
		float e0 = 0.0f, e1 = 0.0f;          /* the lane's share of the row sums */
#pragma unroll
		for (int n = 0; n < NS; n++)
#pragma unroll
			for (int j = 0; j < 2; j++) {
				s[n][j] = s[n][j] == -INFINITY ? 0.0f : expf(s[n][j] - n0);
				s[n][2 + j] = s[n][2 + j] == -INFINITY ? 0.0f : expf(s[n][2 + j] - n1);
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
		mm_py<NO, MM_ROWS / 16>(o, s, Vs, LDH, lane);
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
			lrow[r0] = m0 + logf(l0);
		if (r1 < T)
			lrow[r1] = m1 + logf(l1);
	}
}

/* dS for a C fragment element: P∘(dP − D)·scale where the key u is
 * causal for the query t (t < T implied by the caller's bounds), else 0. */
__device__ __forceinline__ float ds_of(float s, float dp, float L, float D, float scale, bool ok)
{
	return ok ? expf(s * scale - L) * (dp - D) * scale : 0.0f;
}

template <int HS, typename A>
__global__ void __launch_bounds__(MM_THREADS)
att_mma_dq_kernel(float *dq, const float *dout, const float *lse, const float *D, const A *q,
                  const A *k, const A *v, int T, int NH, int NKV, float scale)
{
	constexpr int LDH = HS + 8, KS = HS / 16, NO = HS / 8, NS = MM_ROWS / 8;
	extern __shared__ __align__(128) unsigned char smem[];
	bf16 *Qs = (bf16 *)smem, *Gs = Qs + MM_ROWS * LDH, *Ks = Gs + MM_ROWS * LDH;
	bf16 *Vs = Ks + MM_ROWS * LDH;
	int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, c2 = (lane & 3) * 2;
	int q0 = heavy_first(MM_ROWS), b = blockIdx.y / NH, h = blockIdx.y % NH, hk = h / (NH / NKV);
	int w0 = q0 + warp * 16, r0 = w0 + g, r1 = r0 + 8;
	const float *lrow = lse + ((size_t)b * NH + h) * T, *drow = D + ((size_t)b * NH + h) * T;
	float L0 = r0 < T ? lrow[r0] : 0.0f, L1 = r1 < T ? lrow[r1] : 0.0f;
	float D0 = r0 < T ? drow[r0] : 0.0f, D1 = r1 < T ? drow[r1] : 0.0f;

	stage<HS>(Qs, q, b, h, NH, T, q0);
	stage<HS>(Gs, dout, b, h, NH, T, q0);
	float acc[NO][4];
#pragma unroll
	for (int n = 0; n < NO; n++)
		acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.0f;
	int last = min(q0 + MM_ROWS, T) - 1;
	for (int k0 = 0; k0 <= last; k0 += MM_ROWS) {
		__syncthreads();
		stage<HS>(Ks, k, b, hk, NKV, T, k0);
		stage<HS>(Vs, v, b, hk, NKV, T, k0);
		__syncthreads();
		if (w0 >= T || k0 > w0 + 15)
			continue;
		float s[NS][4], dp[NS][4];
#pragma unroll
		for (int n = 0; n < NS; n++)
#pragma unroll
			for (int j = 0; j < 4; j++)
				s[n][j] = dp[n][j] = 0.0f;
		mm_xyt<NS, KS>(s, Qs + warp * 16 * LDH, LDH, Ks, LDH, lane);
		mm_xyt<NS, KS>(dp, Gs + warp * 16 * LDH, LDH, Vs, LDH, lane);
#pragma unroll
		for (int n = 0; n < NS; n++)
#pragma unroll
			for (int j = 0; j < 2; j++) {
				int u = k0 + n * 8 + c2 + j;
				s[n][j] = ds_of(s[n][j], dp[n][j], L0, D0, scale, r0 < T && u <= r0);
				s[n][2 + j] = ds_of(s[n][2 + j], dp[n][2 + j], L1, D1, scale, r1 < T && u <= r1);
			}
		mm_py<NO, MM_ROWS / 16>(acc, s, Ks, LDH, lane);
	}
	size_t qs = (size_t)NH * HS;
	float *gb = dq + (size_t)b * T * qs + (size_t)h * HS;
#pragma unroll
	for (int n = 0; n < NO; n++) {
		if (r0 < T)
			*(float2 *)(gb + (size_t)r0 * qs + n * 8 + c2) = make_float2(acc[n][0], acc[n][1]);
		if (r1 < T)
			*(float2 *)(gb + (size_t)r1 * qs + n * 8 + c2) = make_float2(acc[n][2], acc[n][3]);
	}
}

/* Queries per step in dk, dv: the score fragments are (16, QS) for each of
 * S and dP beside the (16, HS) accumulators of dK and dV. */
template <int HS> struct dkv_step { static constexpr int QS = HS == 128 ? 32 : 64; };

template <int HS, typename A>
__global__ void __launch_bounds__(MM_THREADS)
att_mma_dkv_kernel(float *dk, float *dv, const float *dout, const float *lse, const float *D,
                   const A *q, const A *k, const A *v, int T, int NH, int NKV, float scale)
{
	constexpr int LDH = HS + 8, KS = HS / 16, NO = HS / 8;
	constexpr int QS = dkv_step<HS>::QS, NS = QS / 8;
	extern __shared__ __align__(128) unsigned char smem[];
	bf16 *Kw = (bf16 *)smem, *Vw = Kw + MM_ROWS * LDH;                /* own keys */
	bf16 *Qs = Vw + MM_ROWS * LDH, *Gs = Qs + MM_ROWS * LDH;          /* query tile */
	float *Lc = (float *)(Gs + MM_ROWS * LDH), *Dc = Lc + MM_ROWS;
	int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, c2 = (lane & 3) * 2;
	int k0 = blockIdx.x * MM_ROWS, b = blockIdx.y / NKV, hk = blockIdx.y % NKV;
	int rep = NH / NKV;
	int u0 = k0 + warp * 16, ua = u0 + g, ub = ua + 8;   /* the lane's two keys */

	stage<HS>(Kw, k, b, hk, NKV, T, k0);
	stage<HS>(Vw, v, b, hk, NKV, T, k0);
	float ak[NO][4], av[NO][4];
#pragma unroll
	for (int n = 0; n < NO; n++)
#pragma unroll
		for (int j = 0; j < 4; j++)
			ak[n][j] = av[n][j] = 0.0f;
	for (int h = hk * rep; h < (hk + 1) * rep; h++) {
		const float *lrow = lse + ((size_t)b * NH + h) * T, *drow = D + ((size_t)b * NH + h) * T;
		for (int q0 = k0; q0 < T; q0 += MM_ROWS) {   /* earlier queries see no own key */
			__syncthreads();
			stage<HS>(Qs, q, b, h, NH, T, q0);
			stage<HS>(Gs, dout, b, h, NH, T, q0);
			stage_stat(Lc, lrow, T, q0);
			stage_stat(Dc, drow, T, q0);
			__syncthreads();
			if (u0 >= T)
				continue;
#pragma unroll
			for (int sq = 0; sq < MM_ROWS; sq += QS) {
				if (q0 + sq + QS - 1 < u0 || q0 + sq >= T)  /* no query sees a key */
					continue;
				float s[NS][4], dp[NS][4];
#pragma unroll
				for (int n = 0; n < NS; n++)
#pragma unroll
					for (int j = 0; j < 4; j++)
						s[n][j] = dp[n][j] = 0.0f;
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
							p = expf(s[n][j] * scale - Lc[c]);
						s[n][j] = p;
						dp[n][j] = p * (dp[n][j] - Dc[c]) * scale;
					}
				mm_py<NO, QS / 16>(av, s, Gs + sq * LDH, LDH, lane);
				mm_py<NO, QS / 16>(ak, dp, Qs + sq * LDH, LDH, lane);
			}
		}
	}
	size_t ks = (size_t)NKV * HS;
	size_t koff = (size_t)b * T * ks + (size_t)hk * HS;
#pragma unroll
	for (int n = 0; n < NO; n++) {
		if (ua < T) {
			*(float2 *)(dk + koff + (size_t)ua * ks + n * 8 + c2) = make_float2(ak[n][0], ak[n][1]);
			*(float2 *)(dv + koff + (size_t)ua * ks + n * 8 + c2) = make_float2(av[n][0], av[n][1]);
		}
		if (ub < T) {
			*(float2 *)(dk + koff + (size_t)ub * ks + n * 8 + c2) = make_float2(ak[n][2], ak[n][3]);
			*(float2 *)(dv + koff + (size_t)ub * ks + n * 8 + c2) = make_float2(av[n][2], av[n][3]);
		}
	}
}

/* ---- launchers ------------------------------------------------------------------------------- */

template <int HS> static size_t tiles_smem(int tiles, int stats)
{
	return (size_t)tiles * MM_ROWS * (HS + 8) * 2 + (size_t)stats * MM_ROWS * 4;
}

template <typename F>
static void optin(F kernel, size_t smem)
{
	if (smem > 48 * 1024)
		CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
		                                (int)smem));
}

/* One instantiation per (HS, A), each with its own opt-in (`ready`). */
template <int HS, typename A>
static void mma_forward(A *out, float *saved, const A *q, const A *k, const A *v,
                        int B, int T, int NH, int NKV)
{
	static int ready;
	size_t smem = tiles_smem<HS>(3, 0);
	if (!ready) {
		optin(att_mma_fwd_kernel<HS, A>, smem);
		ready = 1;
	}
	dim3 grid((T + MM_ROWS - 1) / MM_ROWS, B * NH);
	att_mma_fwd_kernel<HS, A><<<grid, MM_THREADS, smem, cuda_stream()>>>(
		out, saved, q, k, v, T, NH, NKV, 1.0f / sqrtf((float)HS));
	CUDA_LAUNCH_CHECK();
}

template <int HS, typename A>
static void mma_backward(float *dq, float *dk, float *dv, const float *dout, const float *saved,
                         const float *D, const A *q, const A *k, const A *v,
                         int B, int T, int NH, int NKV)
{
	static int ready;
	size_t sq = tiles_smem<HS>(4, 0), sk = tiles_smem<HS>(4, 2);
	if (!ready) {
		optin(att_mma_dq_kernel<HS, A>, sq);
		optin(att_mma_dkv_kernel<HS, A>, sk);
		ready = 1;
	}
	float scale = 1.0f / sqrtf((float)HS);
	dim3 gq((T + MM_ROWS - 1) / MM_ROWS, B * NH), gk((T + MM_ROWS - 1) / MM_ROWS, B * NKV);
	att_mma_dq_kernel<HS, A><<<gq, MM_THREADS, sq, cuda_stream()>>>(
		dq, dout, saved, D, q, k, v, T, NH, NKV, scale);
	CUDA_LAUNCH_CHECK();
	att_mma_dkv_kernel<HS, A><<<gk, MM_THREADS, sk, cuda_stream()>>>(
		dk, dv, dout, saved, D, q, k, v, T, NH, NKV, scale);
	CUDA_LAUNCH_CHECK();
}

void cuda_attention_mma_forward(void *out, float *saved, const void *q, const void *k,
                                const void *v, lora_dtype adt, int B, int T, int NH, int NKV,
                                int HS)
{
	ADTYPE_DISPATCH(adt, A,
		(HS == 64 ? mma_forward<64, A> : mma_forward<128, A>)(
			(A *)out, saved, (const A *)q, (const A *)k, (const A *)v, B, T, NH, NKV));
}

void cuda_attention_mma_backward(float *dq, float *dk, float *dv, const float *dout,
                                 const float *saved, const float *D, const void *q,
                                 const void *k, const void *v, lora_dtype adt, int B, int T,
                                 int NH, int NKV, int HS)
{
	ADTYPE_DISPATCH(adt, A,
		(HS == 64 ? mma_backward<64, A> : mma_backward<128, A>)(
			dq, dk, dv, dout, saved, D, (const A *)q, (const A *)k, (const A *)v, B, T, NH,
			NKV));
}
