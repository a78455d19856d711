/* attention.cu: causal self-attention with grouped-query heads, flash style:
 * the (T, T) score matrix is never stored. The forward keeps one
 * log-sum-exp per query row, saved (B, NH, T); the backward recomputes the
 * probabilities from it, tile by tile.
 *
 * Layout: q (B, T, NH, HS), k and v (B, T, NKV, HS); query head h reads KV
 * head h / (NH/NKV). q, k, v and out are in the activation dtype (F32, or
 * BF16 in a bf16 run: the kernels are templates on its element type A);
 * everything else, and all arithmetic, is fp32 on the CUDA cores (written
 * to be checked, not to be fast; attention_tc.cu is the fast path). A BF16
 * q, k, v is read exactly and the BF16 out is the fp32 result rounded once
 * (to nearest even): the inputs and output PyTorch's bf16 SDPA sees.
 *
 * One scheme serves all three kernels. A block of 8 warps owns a tile of 32
 * "own" rows (4 per warp) of one (batch, head) and walks the tiles of 32
 * "other" rows that the causal mask lets it see, staged in shared memory.
 * For each own row, lane j scores other row j (a dot product over HS), the
 * warp combines the 32 scores with shuffles, and each lane accumulates the
 * output dimensions d = lane, lane + 32, ... (NDL of them) over the 32 other
 * rows. Rows of shared memory that lanes read one per lane are padded to
 * HS + 1 floats (no bank conflicts).
 *
 *   forward    own = queries, other = keys:   online softmax, o += p·v
 *   dq         own = queries, other = keys:   dq = scale·dS·k
 *   dk, dv     own = keys,    other = queries (of every head in the group):
 *              dv = Pᵀ·dO, dk = scale·dSᵀ·q (summed over the group's heads)
 * with P = exp(q·kᵀ·scale − lse), dS = P ∘ (dO·vᵀ − D), D = rowsum(dO ∘ O)
 * (a fourth, tiny kernel; D lives in the op's scratch (B, NH, T)). Each
 * block owns what it writes, so there are no atomics and the result does not
 * depend on scheduling.
 */
#include "common.cuh"

#define WARPS 8
#define RPW 4                     /* own rows per warp */
#define TILE (WARPS * RPW)        /* 32: own rows per block, other rows per tile */
#define MAX_HS 256

/* ---- kernels ---------------------------------------------------------------------- */

__device__ __forceinline__ float dot_sm(const float *a, const float *b, int n)
{
	float s = 0.0f;
	for (int d = 0; d < n; d++)
		s += a[d] * b[d];
	return s;
}

/* Rows [k0, k0 + TILE) of k and v (row stride ks; rows at or past T are
 * zero) into Ks and Vs as floats, rows padded to HSP. All threads. */
template <typename A>
__device__ __forceinline__ void stage_kv(float *Ks, float *Vs, const A *kb, const A *vb,
                                         int k0, int T, size_t ks, int HS, int HSP)
{
	for (int i = threadIdx.x; i < TILE * HS; i += blockDim.x) {
		int j = i / HS, d = i % HS, u = k0 + j;
		Ks[j * HSP + d] = u < T ? ldw(kb, (size_t)u * ks + d) : 0.0f;
		Vs[j * HSP + d] = u < T ? ldw(vb, (size_t)u * ks + d) : 0.0f;
	}
}

/* a[i] += w_j · X[j][lane + 32i] for j in [j0, jn), where lane j holds w_j:
 * the lane's output dimensions of a weighted sum of the staged rows X
 * (stride HSP). All lanes of the warp. */
template <int NDL>
__device__ __forceinline__ void acc_rows(float (&a)[NDL], float w, const float *X, int j0,
                                         int jn, int HS, int HSP)
{
	int lane = threadIdx.x & 31;
	for (int j = j0; j < jn; j++) {
		float wj = __shfl_sync(0xffffffffu, w, j);
#pragma unroll
		for (int i = 0; i < NDL; i++) {
			int d = lane + 32 * i;
			if (d < HS)
				a[i] += wj * X[j * HSP + d];
		}
	}
}

template <int NDL, typename A>
__global__ void __launch_bounds__(WARPS * 32)
att_fwd_kernel(A *out, float *lse, const A *q, const A *k, const A *v,
               int T, int NH, int NKV, int HS, float scale)
{
	extern __shared__ float sm[];
	const int HSP = HS + 1;
	float *Ks = sm, *Vs = Ks + TILE * HSP, *Qs = Vs + TILE * HSP;   /* Qs (TILE, HS) */
	int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
	int q0 = heavy_first(TILE), b = blockIdx.y / NH, h = blockIdx.y % NH, hk = h / (NH / NKV);
	size_t qs = (size_t)NH * HS, ks = (size_t)NKV * HS;
	const A *qb = q + (size_t)b * T * qs + (size_t)h * HS;
	const A *kb = k + (size_t)b * T * ks + (size_t)hk * HS;
	const A *vb = v + (size_t)b * T * ks + (size_t)hk * HS;

	for (int i = threadIdx.x; i < TILE * HS; i += blockDim.x) {
		int r = i / HS, d = i % HS, t = q0 + r;
		Qs[i] = t < T ? ldw(qb, (size_t)t * qs + d) : 0.0f;
	}
	float o[RPW][NDL], m[RPW], l[RPW];
#pragma unroll
	for (int rr = 0; rr < RPW; rr++) {
		m[rr] = -INFINITY;
		l[rr] = 0.0f;
#pragma unroll
		for (int i = 0; i < NDL; i++)
			o[rr][i] = 0.0f;
	}
	int last = min(q0 + TILE, T) - 1;
	for (int k0 = 0; k0 <= last; k0 += TILE) {
		__syncthreads();
		stage_kv(Ks, Vs, kb, vb, k0, T, ks, HS, HSP);
		__syncthreads();
#pragma unroll
		for (int rr = 0; rr < RPW; rr++) {
			int r = warp * RPW + rr, t = q0 + r;
			if (t >= T || k0 > t)          /* uniform across the warp */
				continue;
			int u = k0 + lane;
			float s = -INFINITY;
			if (u <= t)
				s = dot_sm(Qs + r * HS, Ks + lane * HSP, HS) * scale;
			float mnew = fmaxf(m[rr], warp_max(s));     /* finite: key k0 <= t */
			float p = u <= t ? expf(s - mnew) : 0.0f;
			float corr = expf(m[rr] - mnew);            /* 0 on the first tile */
			l[rr] = l[rr] * corr + warp_sum(p);
			m[rr] = mnew;
#pragma unroll
			for (int i = 0; i < NDL; i++)
				o[rr][i] *= corr;
			acc_rows<NDL>(o[rr], p, Vs, 0, min(TILE, t - k0 + 1), HS, HSP);
		}
	}
#pragma unroll
	for (int rr = 0; rr < RPW; rr++) {
		int t = q0 + warp * RPW + rr;
		if (t >= T)
			continue;
		float inv = 1.0f / l[rr];
		A *ot = out + (size_t)b * T * qs + (size_t)t * qs + (size_t)h * HS;
#pragma unroll
		for (int i = 0; i < NDL; i++) {
			int d = lane + 32 * i;
			if (d < HS)
				ot[d] = from_f32<A>(o[rr][i] * inv);
		}
		if (lane == 0)
			lse[((size_t)b * NH + h) * T + t] = m[rr] + logf(l[rr]);
	}
}

/* D (B, NH, T) = rowsum(dout ∘ out); one warp per (b, t, h) row. dob
 * (NULL: not wanted) gets dout rounded to bf16, as the mma kernels stage
 * it (by cp.async then, at half the bytes, instead of loads that wait). */
template <typename A>
__global__ void att_d_kernel(float *D, __nv_bfloat16 *dob, const float *dout, const A *out,
                             int T, int NH, int HS, size_t rows)
{
	size_t i = (blockIdx.x * (size_t)blockDim.x + threadIdx.x) >> 5;
	int lane = threadIdx.x & 31;
	if (i >= rows)
		return;
	const float *g = dout + i * HS;
	const A *o = out + i * HS;
	float s = 0.0f;
	for (int d = lane; d < HS; d += 32) {
		s += g[d] * ldw(o, d);
		if (dob)
			dob[i * HS + d] = from_f32<__nv_bfloat16>(g[d]);
	}
	s = warp_sum(s);
	size_t b = i / ((size_t)T * NH);
	int t = (int)((i / NH) % T), h = (int)(i % NH);
	if (lane == 0)
		D[(b * NH + h) * T + t] = s;
}

template <int NDL, typename A>
__global__ void __launch_bounds__(WARPS * 32)
att_dq_kernel(float *dq, const float *dout, const float *lse, const float *D, const A *q,
              const A *k, const A *v, int T, int NH, int NKV, int HS, float scale)
{
	extern __shared__ float sm[];
	const int HSP = HS + 1;
	float *Ks = sm, *Vs = Ks + TILE * HSP, *Qs = Vs + TILE * HSP, *Gs = Qs + TILE * HS;
	int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
	int q0 = heavy_first(TILE), b = blockIdx.y / NH, h = blockIdx.y % NH, hk = h / (NH / NKV);
	size_t qs = (size_t)NH * HS, ks = (size_t)NKV * HS;
	size_t qoff = (size_t)b * T * qs + (size_t)h * HS;
	const A *kb = k + (size_t)b * T * ks + (size_t)hk * HS;
	const A *vb = v + (size_t)b * T * ks + (size_t)hk * HS;
	const float *lrow = lse + ((size_t)b * NH + h) * T, *drow = D + ((size_t)b * NH + h) * T;

	for (int i = threadIdx.x; i < TILE * HS; i += blockDim.x) {
		int r = i / HS, d = i % HS, t = q0 + r;
		Qs[i] = t < T ? ldw(q, qoff + (size_t)t * qs + d) : 0.0f;
		Gs[i] = t < T ? dout[qoff + (size_t)t * qs + d] : 0.0f;
	}
	float acc[RPW][NDL], lt[RPW], dt[RPW];
#pragma unroll
	for (int rr = 0; rr < RPW; rr++) {
		int t = q0 + warp * RPW + rr;
		lt[rr] = t < T ? lrow[t] : 0.0f;
		dt[rr] = t < T ? drow[t] : 0.0f;
#pragma unroll
		for (int i = 0; i < NDL; i++)
			acc[rr][i] = 0.0f;
	}
	int last = min(q0 + TILE, T) - 1;
	for (int k0 = 0; k0 <= last; k0 += TILE) {
		__syncthreads();
		stage_kv(Ks, Vs, kb, vb, k0, T, ks, HS, HSP);
		__syncthreads();
#pragma unroll
		for (int rr = 0; rr < RPW; rr++) {
			int r = warp * RPW + rr, t = q0 + r;
			if (t >= T || k0 > t)
				continue;
			int u = k0 + lane;
			float ds = 0.0f;
			if (u <= t) {
				float s = dot_sm(Qs + r * HS, Ks + lane * HSP, HS) * scale;
				float dp = dot_sm(Gs + r * HS, Vs + lane * HSP, HS);
				float p = expf(s - lt[rr]);
				ds = p * (dp - dt[rr]) * scale;
			}
			acc_rows<NDL>(acc[rr], ds, Ks, 0, min(TILE, t - k0 + 1), HS, HSP);
		}
	}
#pragma unroll
	for (int rr = 0; rr < RPW; rr++) {
		int t = q0 + warp * RPW + rr;
		if (t >= T)
			continue;
		float *g = dq + qoff + (size_t)t * qs;
#pragma unroll
		for (int i = 0; i < NDL; i++) {
			int d = lane + 32 * i;
			if (d < HS)
				g[d] = acc[rr][i];
		}
	}
}

template <int NDL, typename A>
__global__ void __launch_bounds__(WARPS * 32)
att_dkv_kernel(float *dk, float *dv, const float *dout, const float *lse, const float *D,
               const A *q, const A *k, const A *v, int T, int NH, int NKV, int HS,
               float scale)
{
	extern __shared__ float sm[];
	const int HSP = HS + 1;
	float *Kr = sm, *Vr = Kr + TILE * HS;                 /* own key rows (TILE, HS) */
	float *Qs = Vr + TILE * HS, *Gs = Qs + TILE * HSP;    /* query tile (TILE, HSP) */
	float *Ls = Gs + TILE * HSP, *Ds = Ls + TILE;         /* (TILE) */
	int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
	int k0 = blockIdx.x * TILE, b = blockIdx.y / NKV, hk = blockIdx.y % NKV;
	int rep = NH / NKV;
	size_t qs = (size_t)NH * HS, ks = (size_t)NKV * HS;
	size_t koff = (size_t)b * T * ks + (size_t)hk * HS;

	for (int i = threadIdx.x; i < TILE * HS; i += blockDim.x) {
		int r = i / HS, d = i % HS, u = k0 + r;
		Kr[i] = u < T ? ldw(k, koff + (size_t)u * ks + d) : 0.0f;
		Vr[i] = u < T ? ldw(v, koff + (size_t)u * ks + d) : 0.0f;
	}
	float ak[RPW][NDL], av[RPW][NDL];
#pragma unroll
	for (int rr = 0; rr < RPW; rr++)
#pragma unroll
		for (int i = 0; i < NDL; i++)
			ak[rr][i] = av[rr][i] = 0.0f;

	for (int h = hk * rep; h < (hk + 1) * rep; h++) {
		size_t qoff = (size_t)b * T * qs + (size_t)h * HS;
		const float *lrow = lse + ((size_t)b * NH + h) * T, *drow = D + ((size_t)b * NH + h) * T;
		for (int q0 = k0; q0 < T; q0 += TILE) {     /* queries before k0 see no own key */
			__syncthreads();
			for (int i = threadIdx.x; i < TILE * HS; i += blockDim.x) {
				int j = i / HS, d = i % HS, t = q0 + j;
				Qs[j * HSP + d] = t < T ? ldw(q, qoff + (size_t)t * qs + d) : 0.0f;
				Gs[j * HSP + d] = t < T ? dout[qoff + (size_t)t * qs + d] : 0.0f;
			}
			for (int j = threadIdx.x; j < TILE; j += blockDim.x) {
				int t = q0 + j;
				Ls[j] = t < T ? lrow[t] : 0.0f;
				Ds[j] = t < T ? drow[t] : 0.0f;
			}
			__syncthreads();
#pragma unroll
			for (int rr = 0; rr < RPW; rr++) {
				int r = warp * RPW + rr, u = k0 + r;
				if (u >= T || q0 + TILE - 1 < u)   /* uniform across the warp */
					continue;
				int t = q0 + lane;
				float p = 0.0f, ds = 0.0f;
				if (t < T && t >= u) {
					float s = dot_sm(Qs + lane * HSP, Kr + r * HS, HS) * scale;
					float dp = dot_sm(Gs + lane * HSP, Vr + r * HS, HS);
					p = expf(s - Ls[lane]);
					ds = p * (dp - Ds[lane]) * scale;
				}
				int j0 = max(0, u - q0), jn = min(TILE, T - q0);
				acc_rows<NDL>(av[rr], p, Gs, j0, jn, HS, HSP);
				acc_rows<NDL>(ak[rr], ds, Qs, j0, jn, HS, HSP);
			}
		}
	}
#pragma unroll
	for (int rr = 0; rr < RPW; rr++) {
		int u = k0 + warp * RPW + rr;
		if (u >= T)
			continue;
		float *gk = dk + koff + (size_t)u * ks, *gv = dv + koff + (size_t)u * ks;
#pragma unroll
		for (int i = 0; i < NDL; i++) {
			int d = lane + 32 * i;
			if (d < HS) {
				gk[d] = ak[rr][i];
				gv[d] = av[rr][i];
			}
		}
	}
}

/* ---- launchers ------------------------------------------------------------------------- */

size_t cuda_attention_saved_floats(int B, int T, int NH)
{
	return (size_t)B * NH * T;          /* the log-sum-exp of each query row */
}

/* D = rowsum(dout ∘ out) (B, NH, T), then (each padded to 16 bytes) the
 * dk, dv sums of the mma kernels' parts of a GQA head group (none without
 * GQA) and dout in bf16 (B, T, NH, HS) for them. These two are counted
 * whenever HS has mma kernels: an fp32 run of such a model gets scratch it
 * does not use (the parts: at most 2·(NH − NKV)·B·T·HS floats, one per
 * query head past the first of a group; dout: B·T·NH·HS/2). */
static size_t d_floats(int B, int T, int NH)
{
	return ((size_t)B * NH * T + 3) / 4 * 4;
}

static size_t dob_floats(int B, int T, int NH, int HS)
{
	return ((size_t)B * T * NH * HS / 2 + 3) / 4 * 4;
}

size_t cuda_attention_scratch_floats(int B, int T, int NH, int NKV, int HS)
{
	size_t n = d_floats(B, T, NH);
	if (cuda_attention_tc_supports(HS) && NKV > 0 && NH % NKV == 0 &&
	    cuda_attention_mma_warps(HS, 1))
		n += cuda_attention_mma_parts_floats(B, T, NH, NKV, HS) + dob_floats(B, T, NH, HS);
	return n;
}

/* Dynamic shared memory of the fp32 kernels: the forward (0), dq (1) and
 * dk, dv (2). */
static size_t fp32_smem(int HS, int which)
{
	size_t t = TILE, hs = (size_t)HS;
	size_t n = which == 0 ? 2 * t * (hs + 1) + t * hs
	         : which == 1 ? 2 * t * (hs + 1) + 2 * t * hs
	                      : 2 * t * hs + 2 * t * (hs + 1) + 2 * t;
	return n * sizeof(float);
}

/* Whether this GPU runs attention at head size HS (0, or -1 and lora_err):
 * the fp32 kernels, every path's last resort, must fit its shared memory
 * per block (at HS 128 they need ~66 KiB: any GPU of compute capability 8.0
 * and up). Asked before a model loads (lora_llama_load, lora-train's plan),
 * so that a head size too large stops there and not in the first step. */
int cuda_attention_check(int HS)
{
	if (HS <= 0 || HS > MAX_HS)
		return lora_err("attention at head size %d: the CUDA kernels take 1 to %d", HS,
		                MAX_HS);
	size_t need = 0;
	for (int k = 0; k < 3; k++)
		if (fp32_smem(HS, k) > need)
			need = fp32_smem(HS, k);
	if (need > cuda_smem_optin())
		return lora_err("attention at head size %d needs %zu KiB of shared memory per block "
		                "and this GPU allows %zu KiB", HS, need >> 10, cuda_smem_optin() >> 10);
	return 0;
}

/* Shared memory above 48 KiB needs a per-kernel opt-in, asked for once per
 * kernel and size (*smem_set: the largest size already allowed). These
 * kernels need up to ~66 KiB at HS 128, which every GPU of compute
 * capability 8.0 and up has; at larger head sizes some do not. */
template <typename F>
static void smem_optin(F kernel, size_t smem, int *smem_set, int HS)
{
	if (smem > cuda_smem_optin()) {    /* refused before a model loads; an op called
	                                    * directly says why here */
		cuda_attention_check(HS);
		cuda_fail("attention", lora_errmsg(), __FILE__, __LINE__);
	}
	if ((int)smem > *smem_set) {
		CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
		                                (int)smem));
		*smem_set = (int)smem;
	}
}

#define NDL_DISPATCH(HS, NDL, ...) do { \
	LORA_ASSERT((HS) > 0 && (HS) <= MAX_HS); \
	if ((HS) <= 32) { const int NDL = 1; __VA_ARGS__; } \
	else if ((HS) <= 64) { const int NDL = 2; __VA_ARGS__; } \
	else if ((HS) <= 128) { const int NDL = 4; __VA_ARGS__; } \
	else { const int NDL = 8; __VA_ARGS__; } } while (0)

/* One "smem limit already set" slot per kernel instantiation: [A is BF16][NDL]. */
static int smem_fwd[2][4], smem_dq[2][4], smem_dkv[2][4];
template <typename A>
static int *slot(int (*set)[4], int ndl)
{
	return &set[sizeof(A) == 2][ndl == 1 ? 0 : ndl == 2 ? 1 : ndl == 4 ? 2 : 3];
}

/* The tensor-core paths, for bf16 runs where they have kernels for HS:
 * attention_mma.cu, or attention_tc.cu (WMMA) with LORA_CUDA_ATTN=wmma.
 * LORA_CUDA_ATTN=fp32 turns them off; =tc (mma) and =wmma turn them on for
 * fp32 runs too (to time or test one path against another). Returns 0 for
 * the fp32 kernels, 1 for mma, 2 for WMMA. */
static int use_tc(int HS, int bf16)
{
	static int mode = -2;         /* -1 fp32 always, 0 by the run, 1 mma, 2 wmma */
	if (mode == -2) {
		const char *e = getenv("LORA_CUDA_ATTN");
		mode = !e ? 0 : !strcmp(e, "tc") ? 1 : !strcmp(e, "wmma") ? 2 :
		       !strcmp(e, "fp32") ? -1 : 0;
	}
	if (mode < 0 || !(mode > 0 || bf16) || !cuda_attention_tc_supports(HS))
		return 0;
	return mode == 2 ? 2 : 1;
}

/* The path use_tc asks for, for the forward (bwd 0) or the backward, where
 * the GPU's shared memory per block holds it; else the next that fits
 * (WMMA, then mma in its smaller shapes, then the fp32 kernels). The two
 * directions may differ (WMMA's forward fits 99 KiB at HS 64, its
 * backward does not). Every path saves the same log-sum-exp, so any
 * backward follows any forward. */
static int use_tc_path(int HS, int bf16, int bwd)
{
	int t = use_tc(HS, bf16);
	if (t == 2 && !cuda_attention_tc_fits(HS, bwd))
		t = 1;
	if (t == 1 && !cuda_attention_mma_warps(HS, bwd))
		t = 0;
	return t;
}

void cuda_attention_forward(void *out, float *saved, const void *q, const void *k,
                            const void *v, lora_dtype adt, int B, int T, int NH, int NKV,
                            int HS, int bf16)
{
	LORA_ASSERT(NKV > 0 && NH % NKV == 0 && (size_t)B * NH <= 65535);
	if (B <= 0 || T <= 0)
		return;
	switch (use_tc_path(HS, bf16, 0)) {
	case 1:
		cuda_attention_mma_forward(out, saved, q, k, v, adt, B, T, NH, NKV, HS);
		return;
	case 2:
		cuda_attention_tc_forward(out, saved, q, k, v, adt, B, T, NH, NKV, HS);
		return;
	}
	float scale = 1.0f / sqrtf((float)HS);
	dim3 grid((T + TILE - 1) / TILE, B * NH);
	size_t smem = fp32_smem(HS, 0);
	ADTYPE_DISPATCH(adt, A, NDL_DISPATCH(HS, NDL,
		smem_optin(att_fwd_kernel<NDL, A>, smem, slot<A>(smem_fwd, NDL), HS);
		att_fwd_kernel<NDL, A><<<grid, WARPS * 32, smem, cuda_stream()>>>(
			(A *)out, saved, (const A *)q, (const A *)k, (const A *)v, T, NH, NKV, HS,
			scale)));
	CUDA_LAUNCH_CHECK();
}

void cuda_attention_backward(float *dq, float *dk, float *dv, const float *dout,
                             const float *saved, const void *q, const void *k, const void *v,
                             const void *out, lora_dtype adt, int B, int T, int NH, int NKV,
                             int HS, float *scratch, int bf16)
{
	LORA_ASSERT(NKV > 0 && NH % NKV == 0 && (size_t)B * NH <= 65535);
	if (B <= 0 || T <= 0)
		return;
	float scale = 1.0f / sqrtf((float)HS);
	float *D = scratch;
	size_t rows = (size_t)B * T * NH;
	int tc = use_tc_path(HS, bf16, 1);
	float *part = scratch + d_floats(B, T, NH);
	__nv_bfloat16 *dob = tc == 1 ? (__nv_bfloat16 *)(part + cuda_attention_mma_parts_floats(
	                                                         B, T, NH, NKV, HS)) : NULL;
	ADTYPE_DISPATCH(adt, A,
		att_d_kernel<A><<<(unsigned)((rows * 32 + 255) / 256), 256, 0, cuda_stream()>>>(
			D, dob, dout, (const A *)out, T, NH, HS, rows));
	CUDA_LAUNCH_CHECK();
	if (tc) {
		LORA_ASSERT(dq && dk && dv);
		if (tc == 1)
			cuda_attention_mma_backward(dq, dk, dv, part, dob, saved, D, q, k, v, adt, B, T,
			                            NH, NKV, HS);
		else
			cuda_attention_tc_backward(dq, dk, dv, dout, saved, D, q, k, v, adt, B, T, NH,
			                           NKV, HS);
		return;
	}
	if (dq) {
		dim3 grid((T + TILE - 1) / TILE, B * NH);
		size_t smem = fp32_smem(HS, 1);
		ADTYPE_DISPATCH(adt, A, NDL_DISPATCH(HS, NDL,
			smem_optin(att_dq_kernel<NDL, A>, smem, slot<A>(smem_dq, NDL), HS);
			att_dq_kernel<NDL, A><<<grid, WARPS * 32, smem, cuda_stream()>>>(
				dq, dout, saved, D, (const A *)q, (const A *)k, (const A *)v, T, NH, NKV,
				HS, scale)));
		CUDA_LAUNCH_CHECK();
	}
	if (dk || dv) {
		LORA_ASSERT(dk && dv);         /* the model always wants both or neither */
		dim3 grid((T + TILE - 1) / TILE, B * NKV);
		size_t smem = fp32_smem(HS, 2);
		ADTYPE_DISPATCH(adt, A, NDL_DISPATCH(HS, NDL,
			smem_optin(att_dkv_kernel<NDL, A>, smem, slot<A>(smem_dkv, NDL), HS);
			att_dkv_kernel<NDL, A><<<grid, WARPS * 32, smem, cuda_stream()>>>(
				dk, dv, dout, saved, D, (const A *)q, (const A *)k, (const A *)v, T, NH,
				NKV, HS, scale)));
		CUDA_LAUNCH_CHECK();
	}
}
