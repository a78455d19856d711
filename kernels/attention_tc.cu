/* attention_tc.cu: the same causal GQA attention as attention.cu on the
 * tensor cores: bf16 tiles through WMMA (16x16x16, fp32 accumulators),
 * flash-attention-2 style, for head sizes 64 and 128. attention.cu picks it
 * for bf16 runs (the default precision); test-cuda-ops checks it against
 * the CPU (on the emulator in CI; never yet on a GPU).
 *
 * Numerics: q, k, v and out are in the activation dtype (kernels are
 * templates on its element type A). q, k, v and dout are rounded to bf16
 * when a tile is staged in shared memory (a BF16 source is copied as is),
 * as are the probabilities P and dS before their products; scores, the
 * softmax statistics, D and all accumulators are fp32, and out is written
 * in A (rounded once from fp32). With BF16 q, k, v, out that is what
 * PyTorch's bf16 SDPA sees and does. Same saved layout as attention.cu: the
 * log-sum-exp (B, NH, T), and D = rowsum(dout ∘ out) (B, NH, T) in the
 * scratch.
 *
 * A block has 4 warps and owns 64 rows (16 per warp), walking tiles of 64
 * other rows; each warp's 16 x 64 score tile goes through shared memory for
 * the elementwise softmax work (two lanes per row, 32 columns each).
 *   forward:  own = queries; S = Q·Kᵀ, online softmax, O += P·V
 *   dq:       own = queries; S, dP = dO·Vᵀ, dS = P∘(dP − D), dQ = dS·K
 *   dk, dv:   own = keys of one KV head, every query head of its group;
 *             Sᵀ = K·Qᵀ, dPᵀ = V·dOᵀ, dV = Pᵀ·dO, dK = dSᵀ·Q (over the group's heads)
 * Every block owns what it writes: no atomics.
 */
#include "common.cuh"

#include <mma.h>

using namespace nvcuda;
typedef __nv_bfloat16 bf16;

#define TC_ROWS 64                /* own rows per block, other rows per tile */
#define TC_THREADS 128            /* 4 warps x 16 rows */
#define LDT (TC_ROWS + 4)         /* fp32 score tile row stride */
#define LDB (TC_ROWS + 8)         /* bf16 score tile row stride */

typedef wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> frag_a;
typedef wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major> frag_bt;  /* Xᵀ of a row-major X */
typedef wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major> frag_b;
typedef wmma::fragment<wmma::accumulator, 16, 16, 16, float> frag_c;

/* ---- tile helpers (one warp) ------------------------------------------------------ */

/* D (16, 64) fp32 = A (16, HS) · B (64, HS)ᵀ, A and B bf16 row-major. */
template <int HS>
__device__ __forceinline__ void mm_abt(float *D, const bf16 *A, const bf16 *B)
{
	constexpr int LDH = HS + 8;
#pragma unroll
	for (int n = 0; n < TC_ROWS / 16; n++) {
		frag_c c;
		wmma::fill_fragment(c, 0.0f);
#pragma unroll
		for (int kk = 0; kk < HS / 16; kk++) {
			frag_a a;
			frag_bt b;
			wmma::load_matrix_sync(a, A + kk * 16, LDH);
			wmma::load_matrix_sync(b, B + n * 16 * LDH + kk * 16, LDH);
			wmma::mma_sync(c, a, b, c);
		}
		wmma::store_matrix_sync(D + n * 16, c, LDT, wmma::mem_row_major);
	}
}

/* Acc (16, HS) fp32 += P (16, 64) · X (64, HS), P and X bf16 row-major. */
template <int HS>
__device__ __forceinline__ void mm_acc_pb(float *Acc, const bf16 *P, const bf16 *X)
{
	constexpr int LDH = HS + 8, LDO = HS + 4;
#pragma unroll
	for (int n = 0; n < HS / 16; n++) {
		frag_c c;
		wmma::load_matrix_sync(c, Acc + n * 16, LDO, wmma::mem_row_major);
#pragma unroll
		for (int kk = 0; kk < TC_ROWS / 16; kk++) {
			frag_a a;
			frag_b b;
			wmma::load_matrix_sync(a, P + kk * 16, LDB);
			wmma::load_matrix_sync(b, X + kk * 16 * LDH + n * 16, LDH);
			wmma::mma_sync(c, a, b, c);
		}
		wmma::store_matrix_sync(Acc + n * 16, c, LDO, wmma::mem_row_major);
	}
}

/* Stage rows [r0, r0 + 64) of a (B, T, H, HS) tensor of float or bf16 S
 * (head h of batch b) as bf16 rows of stride HS + 8; rows at or past T are
 * zero. A bf16 source goes through float unchanged. All threads. */
template <int HS, typename S>
__device__ __forceinline__ void stage(bf16 *dst, const S *src, int b, int h, int H,
                                      int T, int r0)
{
	constexpr int LDH = HS + 8;
	size_t rs = (size_t)H * HS;
	const S *base = src + (size_t)b * T * rs + (size_t)h * HS;
	for (int i = threadIdx.x; i < TC_ROWS * HS; i += blockDim.x) {
		int r = i / HS, d = i % HS, t = r0 + r;
		dst[r * LDH + d] = __float2bfloat16_rn(t < T ? ldw(base, (size_t)t * rs + d) : 0.0f);
	}
}

/* Column j (0..31) of lane's half of a 16 x 64 fp32 tile row (lanes 2i and
 * 2i+1 share row i), rotated so that a warp's 32 lanes touch 32 different
 * banks at each j: with the row stride LDT = 68 ≡ 4 (mod 32) words, row i
 * starts at bank 4i, so rows i and i + 8 and the two halves of a row would
 * collide (4-way) if every lane walked from column 0; the offset
 * 2·(lane & 1) + (i >> 3) separates them. w: the half's width (32, or HS/2
 * for the output rows, stride HS + 4 ≡ 4 as well). */
__device__ __forceinline__ int half_col(int lane, int j, int w)
{
	return (lane & 1) * w + ((j + 2 * (lane & 1) + (lane >> 4)) & (w - 1));
}

/* ---- kernels ---------------------------------------------------------------------------- */

template <int HS, typename A>
__global__ void __launch_bounds__(TC_THREADS)
att_tc_fwd_kernel(A *out, float *lse, const A *q, const A *k, const A *v,
                  int T, int NH, int NKV, float scale)
{
	constexpr int LDH = HS + 8, LDO = HS + 4;
	extern __shared__ __align__(128) unsigned char smem[];
	bf16 *Qs = (bf16 *)smem, *Ks = Qs + TC_ROWS * LDH, *Vs = Ks + TC_ROWS * LDH;
	bf16 *Ps = Vs + TC_ROWS * LDH;                          /* (64, LDB) */
	float *Ss = (float *)(Ps + TC_ROWS * LDB);              /* (64, LDT) */
	float *Os = Ss + TC_ROWS * LDT;                         /* (64, LDO) */
	float *Ms = Os + TC_ROWS * LDO, *Ls = Ms + TC_ROWS, *Cs = Ls + TC_ROWS;
	int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
	int q0 = heavy_first(TC_ROWS), b = blockIdx.y / NH, h = blockIdx.y % NH, hk = h / (NH / NKV);

	stage<HS>(Qs, q, b, h, NH, T, q0);
	for (int i = threadIdx.x; i < TC_ROWS * LDO; i += blockDim.x)
		Os[i] = 0.0f;
	for (int i = threadIdx.x; i < TC_ROWS; i += blockDim.x) {
		Ms[i] = -INFINITY;
		Ls[i] = 0.0f;
	}
	int w0 = q0 + warp * 16;                 /* the warp's first query */
	int last = min(q0 + TC_ROWS, T) - 1;
	for (int k0 = 0; k0 <= last; k0 += TC_ROWS) {
		__syncthreads();
		stage<HS>(Ks, k, b, hk, NKV, T, k0);
		stage<HS>(Vs, v, b, hk, NKV, T, k0);
		__syncthreads();
		if (w0 >= T || k0 > w0 + 15)         /* nothing of this tile for the warp */
			continue;
		float *S = Ss + warp * 16 * LDT;
		mm_abt<HS>(S, Qs + warp * 16 * LDH, Ks);
		__syncwarp();
		/* softmax: lanes 2i and 2i+1 share row i, 32 columns each */
		int r = warp * 16 + (lane >> 1), t = q0 + r;
		float mold = Ms[r], lold = Ls[r], mx = -INFINITY;
		for (int j = 0; j < 32; j++) {
			int c = half_col(lane, j, 32), u = k0 + c;
			float s = (t < T && u <= t) ? S[(r - warp * 16) * LDT + c] * scale : -INFINITY;
			S[(r - warp * 16) * LDT + c] = s;
			mx = fmaxf(mx, s);
		}
		mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
		float mnew = fmaxf(mold, mx), sum = 0.0f;
		bf16 *P = Ps + r * LDB;
		for (int j = 0; j < 32; j++) {
			int c = half_col(lane, j, 32);
			float s = S[(r - warp * 16) * LDT + c];
			float p = s == -INFINITY ? 0.0f : expf(s - mnew);
			P[c] = __float2bfloat16_rn(p);
			sum += p;
		}
		sum += __shfl_xor_sync(0xffffffffu, sum, 1);
		float corr = mnew == -INFINITY ? 1.0f : expf(mold - mnew);
		__syncwarp();
		if ((lane & 1) == 0) {
			Ms[r] = mnew;
			Ls[r] = lold * corr + sum;
			Cs[r] = corr;
		}
		/* rescale the warp's output rows, then O += P·V */
		float *O = Os + warp * 16 * LDO;
		for (int j = 0; j < HS / 2; j++)
			O[(r - warp * 16) * LDO + half_col(lane, j, HS / 2)] *= corr;
		__syncwarp();
		mm_acc_pb<HS>(O, Ps + warp * 16 * LDB, Vs);
		__syncwarp();
	}
	__syncthreads();
	size_t qs = (size_t)NH * HS;
	A *ob = out + (size_t)b * T * qs + (size_t)h * HS;
	for (int i = threadIdx.x; i < TC_ROWS * HS; i += blockDim.x) {
		int r = i / HS, d = i % HS, t = q0 + r;
		if (t < T)
			ob[(size_t)t * qs + d] = from_f32<A>(Os[r * LDO + d] / Ls[r]);
	}
	for (int r = threadIdx.x; r < TC_ROWS; r += blockDim.x)
		if (q0 + r < T)
			lse[((size_t)b * NH + h) * T + q0 + r] = Ms[r] + logf(Ls[r]);
}

template <int HS, typename A>
__global__ void __launch_bounds__(TC_THREADS)
att_tc_dq_kernel(float *dq, const float *dout, const float *lse, const float *D, const A *q,
                 const A *k, const A *v, int T, int NH, int NKV, float scale)
{
	constexpr int LDH = HS + 8, LDO = HS + 4;
	extern __shared__ __align__(128) unsigned char smem[];
	bf16 *Qs = (bf16 *)smem, *Gs = Qs + TC_ROWS * LDH, *Ks = Gs + TC_ROWS * LDH;
	bf16 *Vs = Ks + TC_ROWS * LDH, *dSb = Vs + TC_ROWS * LDH;      /* (64, LDB) */
	float *Ss = (float *)(dSb + TC_ROWS * LDB), *dPs = Ss + TC_ROWS * LDT;
	float *dQs = dPs + TC_ROWS * LDT;                               /* (64, LDO) */
	float *Lr = dQs + TC_ROWS * LDO, *Dr = Lr + TC_ROWS;
	int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
	int q0 = heavy_first(TC_ROWS), b = blockIdx.y / NH, h = blockIdx.y % NH, hk = h / (NH / NKV);
	const float *lrow = lse + ((size_t)b * NH + h) * T, *drow = D + ((size_t)b * NH + h) * T;

	stage<HS>(Qs, q, b, h, NH, T, q0);
	stage<HS>(Gs, dout, b, h, NH, T, q0);
	for (int i = threadIdx.x; i < TC_ROWS * LDO; i += blockDim.x)
		dQs[i] = 0.0f;
	for (int i = threadIdx.x; i < TC_ROWS; i += blockDim.x) {
		Lr[i] = q0 + i < T ? lrow[q0 + i] : 0.0f;
		Dr[i] = q0 + i < T ? drow[q0 + i] : 0.0f;
	}
	int w0 = q0 + warp * 16;
	int last = min(q0 + TC_ROWS, T) - 1;
	for (int k0 = 0; k0 <= last; k0 += TC_ROWS) {
		__syncthreads();
		stage<HS>(Ks, k, b, hk, NKV, T, k0);
		stage<HS>(Vs, v, b, hk, NKV, T, k0);
		__syncthreads();
		if (w0 >= T || k0 > w0 + 15)
			continue;
		float *S = Ss + warp * 16 * LDT, *dP = dPs + warp * 16 * LDT;
		mm_abt<HS>(S, Qs + warp * 16 * LDH, Ks);
		mm_abt<HS>(dP, Gs + warp * 16 * LDH, Vs);
		__syncwarp();
		int rr = lane >> 1, r = warp * 16 + rr, t = q0 + r;
		for (int j = 0; j < 32; j++) {
			int c = half_col(lane, j, 32), u = k0 + c;
			float ds = 0.0f;
			if (t < T && u <= t) {
				float p = expf(S[rr * LDT + c] * scale - Lr[r]);
				ds = p * (dP[rr * LDT + c] - Dr[r]) * scale;
			}
			dSb[r * LDB + c] = __float2bfloat16_rn(ds);
		}
		__syncwarp();
		mm_acc_pb<HS>(dQs + warp * 16 * LDO, dSb + warp * 16 * LDB, Ks);
		__syncwarp();
	}
	__syncthreads();
	size_t qs = (size_t)NH * HS;
	float *gb = dq + (size_t)b * T * qs + (size_t)h * HS;
	for (int i = threadIdx.x; i < TC_ROWS * HS; i += blockDim.x) {
		int r = i / HS, d = i % HS, t = q0 + r;
		if (t < T)
			gb[(size_t)t * qs + d] = dQs[r * LDO + d];
	}
}

template <int HS, typename A>
__global__ void __launch_bounds__(TC_THREADS)
att_tc_dkv_kernel(float *dk, float *dv, const float *dout, const float *lse, const float *D,
                  const A *q, const A *k, const A *v, int T, int NH, int NKV,
                  float scale)
{
	constexpr int LDH = HS + 8, LDO = HS + 4;
	extern __shared__ __align__(128) unsigned char smem[];
	bf16 *Kw = (bf16 *)smem, *Vw = Kw + TC_ROWS * LDH;              /* own keys */
	bf16 *Qs = Vw + TC_ROWS * LDH, *Gs = Qs + TC_ROWS * LDH;       /* query tile */
	bf16 *Pb = Gs + TC_ROWS * LDH, *dSb = Pb + TC_ROWS * LDB;      /* (64, LDB) */
	float *St = (float *)(dSb + TC_ROWS * LDB), *dPt = St + TC_ROWS * LDT;
	float *dKs = dPt + TC_ROWS * LDT, *dVs = dKs + TC_ROWS * LDO;   /* (64, LDO) */
	float *Lc = dVs + TC_ROWS * LDO, *Dc = Lc + TC_ROWS;
	int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
	int k0 = blockIdx.x * TC_ROWS, b = blockIdx.y / NKV, hk = blockIdx.y % NKV;
	int rep = NH / NKV;

	stage<HS>(Kw, k, b, hk, NKV, T, k0);
	stage<HS>(Vw, v, b, hk, NKV, T, k0);
	for (int i = threadIdx.x; i < TC_ROWS * LDO; i += blockDim.x)
		dKs[i] = dVs[i] = 0.0f;
	int u0 = k0 + warp * 16;                  /* the warp's first key */
	for (int h = hk * rep; h < (hk + 1) * rep; h++) {
		const float *lrow = lse + ((size_t)b * NH + h) * T, *drow = D + ((size_t)b * NH + h) * T;
		for (int q0 = k0; q0 < T; q0 += TC_ROWS) {   /* earlier queries see no own key */
			__syncthreads();
			stage<HS>(Qs, q, b, h, NH, T, q0);
			stage<HS>(Gs, dout, b, h, NH, T, q0);
			for (int i = threadIdx.x; i < TC_ROWS; i += blockDim.x) {
				Lc[i] = q0 + i < T ? lrow[q0 + i] : 0.0f;
				Dc[i] = q0 + i < T ? drow[q0 + i] : 0.0f;
			}
			__syncthreads();
			if (u0 >= T)
				continue;
			float *S = St + warp * 16 * LDT, *dP = dPt + warp * 16 * LDT;
			mm_abt<HS>(S, Kw + warp * 16 * LDH, Qs);      /* (16 keys, 64 queries) */
			mm_abt<HS>(dP, Vw + warp * 16 * LDH, Gs);
			__syncwarp();
			int rr = lane >> 1, r = warp * 16 + rr, u = k0 + r;
			for (int j = 0; j < 32; j++) {
				int c = half_col(lane, j, 32), t = q0 + c;
				float p = 0.0f, ds = 0.0f;
				if (u < T && t < T && t >= u) {
					p = expf(S[rr * LDT + c] * scale - Lc[c]);
					ds = p * (dP[rr * LDT + c] - Dc[c]) * scale;
				}
				Pb[r * LDB + c] = __float2bfloat16_rn(p);
				dSb[r * LDB + c] = __float2bfloat16_rn(ds);
			}
			__syncwarp();
			mm_acc_pb<HS>(dVs + warp * 16 * LDO, Pb + warp * 16 * LDB, Gs);
			mm_acc_pb<HS>(dKs + warp * 16 * LDO, dSb + warp * 16 * LDB, Qs);
			__syncwarp();
		}
	}
	__syncthreads();
	size_t ks = (size_t)NKV * HS;
	size_t koff = (size_t)b * T * ks + (size_t)hk * HS;
	for (int i = threadIdx.x; i < TC_ROWS * HS; i += blockDim.x) {
		int r = i / HS, d = i % HS, u = k0 + r;
		if (u < T) {
			dk[koff + (size_t)u * ks + d] = dKs[r * LDO + d];
			dv[koff + (size_t)u * ks + d] = dVs[r * LDO + d];
		}
	}
}

/* ---- launchers ------------------------------------------------------------------------------- */

template <int HS> static size_t fwd_smem(void)
{
	return 3 * TC_ROWS * (HS + 8) * 2 + TC_ROWS * LDB * 2 +
	       (TC_ROWS * LDT + TC_ROWS * (HS + 4) + 3 * TC_ROWS) * 4;
}
template <int HS> static size_t dq_smem(void)
{
	return 4 * TC_ROWS * (HS + 8) * 2 + TC_ROWS * LDB * 2 +
	       (2 * TC_ROWS * LDT + TC_ROWS * (HS + 4) + 2 * TC_ROWS) * 4;
}
template <int HS> static size_t dkv_smem(void)
{
	return 4 * TC_ROWS * (HS + 8) * 2 + 2 * TC_ROWS * LDB * 2 +
	       (2 * TC_ROWS * LDT + 2 * TC_ROWS * (HS + 4) + 2 * TC_ROWS) * 4;
}

template <typename F>
static void optin(F kernel, size_t smem)
{
	CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
}

int cuda_attention_tc_supports(int HS)
{
	return HS == 64 || HS == 128;
}

/* Whether the WMMA kernels of the forward (bwd 0) or the backward fit the
 * GPU's shared memory per block (at HS 128 they need more than an sm_8x
 * consumer GPU's 99 KiB). */
int cuda_attention_tc_fits(int HS, int bwd)
{
	size_t need = HS == 64 ? (bwd ? dkv_smem<64>() : fwd_smem<64>())
	                       : (bwd ? dkv_smem<128>() : fwd_smem<128>());
	return need <= cuda_smem_optin();
}

/* One instantiation per (HS, A), each with its own smem opt-in (`ready`). */
template <int HS, typename A>
static void tc_forward(A *out, float *saved, const A *q, const A *k, const A *v,
                       int B, int T, int NH, int NKV)
{
	static int ready;
	if (!ready) {
		optin(att_tc_fwd_kernel<HS, A>, fwd_smem<HS>());
		ready = 1;
	}
	dim3 grid((T + TC_ROWS - 1) / TC_ROWS, B * NH);
	att_tc_fwd_kernel<HS, A><<<grid, TC_THREADS, fwd_smem<HS>(), cuda_stream()>>>(
		out, saved, q, k, v, T, NH, NKV, 1.0f / sqrtf((float)HS));
	CUDA_LAUNCH_CHECK();
}

template <int HS, typename A>
static void tc_backward(float *dq, float *dk, float *dv, const float *dout, const float *saved,
                        const float *D, const A *q, const A *k, const A *v,
                        int B, int T, int NH, int NKV)
{
	static int ready;
	if (!ready) {
		optin(att_tc_dq_kernel<HS, A>, dq_smem<HS>());
		optin(att_tc_dkv_kernel<HS, A>, dkv_smem<HS>());
		ready = 1;
	}
	float scale = 1.0f / sqrtf((float)HS);
	dim3 gq((T + TC_ROWS - 1) / TC_ROWS, B * NH), gk((T + TC_ROWS - 1) / TC_ROWS, B * NKV);
	att_tc_dq_kernel<HS, A><<<gq, TC_THREADS, dq_smem<HS>(), cuda_stream()>>>(
		dq, dout, saved, D, q, k, v, T, NH, NKV, scale);
	CUDA_LAUNCH_CHECK();
	att_tc_dkv_kernel<HS, A><<<gk, TC_THREADS, dkv_smem<HS>(), cuda_stream()>>>(
		dk, dv, dout, saved, D, q, k, v, T, NH, NKV, scale);
	CUDA_LAUNCH_CHECK();
}

void cuda_attention_tc_forward(void *out, float *saved, const void *q, const void *k,
                               const void *v, lora_dtype adt, int B, int T, int NH, int NKV,
                               int HS)
{
	ADTYPE_DISPATCH(adt, A,
		(HS == 64 ? tc_forward<64, A> : tc_forward<128, A>)(
			(A *)out, saved, (const A *)q, (const A *)k, (const A *)v, B, T, NH, NKV));
}

void cuda_attention_tc_backward(float *dq, float *dk, float *dv, const float *dout,
                                const float *saved, const float *D, const void *q,
                                const void *k, const void *v, lora_dtype adt, int B, int T,
                                int NH, int NKV, int HS)
{
	ADTYPE_DISPATCH(adt, A,
		(HS == 64 ? tc_backward<64, A> : tc_backward<128, A>)(
			dq, dk, dv, dout, saved, D, (const A *)q, (const A *)k, (const A *)v, B, T, NH,
			NKV));
}
