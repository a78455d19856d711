/* ops_cpu.c: the CPU reference backend: every op of backend.h, forward and
 * backward, in fp32. Matrix products go to OpenBLAS (cblas_sgemm, threaded
 * by OpenBLAS, attention too, head by head); norms and the loss are
 * threaded over rows with lora_parallel_for. Read an op's comment in
 * backend.h first; the code below follows it line by line.
 */
#include "backend.h"

#include <cblas.h>       /* cblas_sgemm, openblas_set_num_threads */
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util.h"        /* LORA_ASSERT, lora_parallel_for, lora_nthreads */

static int nthreads = 1;

/* ---- memory ----------------------------------------------------------------- */
/* Each block carries a 64-byte header with its size, for mem_info. */

#define HDR 64
static _Atomic size_t mem_used, mem_peak;

static void *cpu_alloc(size_t bytes)
{
	char *p = calloc(1, bytes + HDR);
	if (!p) {
		lora_err("out of memory allocating %zu bytes", bytes);
		return NULL;
	}
	*(size_t *)p = bytes;
	size_t now = atomic_fetch_add(&mem_used, bytes) + bytes;
	size_t peak = atomic_load(&mem_peak);
	while (now > peak && !atomic_compare_exchange_weak(&mem_peak, &peak, now))
		;
	return p + HDR;
}

static void cpu_free(void *q)
{
	if (!q)
		return;
	char *p = (char *)q - HDR;
	atomic_fetch_sub(&mem_used, *(size_t *)p);
	free(p);
}

static void cpu_copy(void *dst, const void *src, size_t n) { if (n) memmove(dst, src, n); }
static void cpu_zero(void *p, size_t n) { if (n) memset(p, 0, n); }
static void cpu_sync(void) {}

static void cpu_upload_from(void *dst, lora_dtype dt, const void *src, lora_dtype st, size_t n)
{
	LORA_ASSERT(dt == LORA_DTYPE_F32);
	LORA_ASSERT(lora_convert(dst, dt, src, st, n) == 0);
}

static void cpu_upload_f32(void *dst, lora_dtype dt, const float *src, size_t n)
{
	cpu_upload_from(dst, dt, src, LORA_DTYPE_F32, n);
}

static void cpu_mem_info(size_t *used, size_t *peak, size_t *cap)
{
	if (used)
		*used = atomic_load(&mem_used);
	if (peak)
		*peak = atomic_load(&mem_peak);
	if (cap)
		*cap = (size_t)sysconf(_SC_PHYS_PAGES) * (size_t)sysconf(_SC_PAGESIZE);
}

/* A parallel loop over [0, n) in chunks, so that tiny items do not pay one
 * dispatch each. fn(ctx, lo, hi). */
typedef struct {
	void (*fn)(void *ctx, int lo, int hi);
	void *ctx;
	int n, chunk;
} range_job;

static void range_item(void *vctx, int i, int tid)
{
	(void)tid;
	range_job *j = vctx;
	int lo = i * j->chunk, hi = lo + j->chunk < j->n ? lo + j->chunk : j->n;
	j->fn(j->ctx, lo, hi);
}

static void parallel_range(int n, int min_chunk, void (*fn)(void *, int, int), void *ctx)
{
	if (n <= 0)
		return;
	int chunks = nthreads * 4;
	int chunk = (n + chunks - 1) / chunks;
	if (chunk < min_chunk)
		chunk = min_chunk;
	int items = (n + chunk - 1) / chunk;
	if (items <= 1 || nthreads == 1) {
		fn(ctx, 0, n);
		return;
	}
	range_job j = { fn, ctx, n, chunk };
	lora_parallel_for(items, nthreads, range_item, &j);
}

/* ---- embedding ------------------------------------------------------------- */

static void embedding_forward(float *out, const int32_t *ids, const void *wte,
                              lora_dtype wdt, int N, int C)
{
	LORA_ASSERT(wdt == LORA_DTYPE_F32);
	const float *w = wte;
	for (int n = 0; n < N; n++)
		memcpy(out + (size_t)n * C, w + (size_t)ids[n] * C, C * sizeof(float));
}

static void embedding_backward(float *dwte, const float *dout, const int32_t *ids, int N, int C)
{
	for (int n = 0; n < N; n++) {
		float *d = dwte + (size_t)ids[n] * C;
		const float *g = dout + (size_t)n * C;
		for (int c = 0; c < C; c++)
			d[c] += g[c];
	}
}

/* ---- RMSNorm ----------------------------------------------------------------- */

typedef struct {
	float *out, *rstd, *dinp, *dw, *copy;
	const float *inp, *w, *dout, *crstd;
	int C;
	float eps;
} norm_ctx;

static void rmsnorm_rows(void *vc, int lo, int hi)
{
	norm_ctx *c = vc;
	int C = c->C;
	for (int n = lo; n < hi; n++) {
		const float *x = c->inp + (size_t)n * C;
		double ss = 0;
		for (int i = 0; i < C; i++)
			ss += (double)x[i] * x[i];
		float r = 1.0f / sqrtf((float)(ss / C) + c->eps);
		c->rstd[n] = r;
		float *y = c->out + (size_t)n * C;
		for (int i = 0; i < C; i++)
			y[i] = (x[i] * r) * c->w[i];
		if (c->copy)
			memcpy(c->copy + (size_t)n * C, x, (size_t)C * sizeof(float));
	}
}

static void rmsnorm_forward(void *out, lora_dtype odt, float *rstd, const float *inp,
                            float *copy, const void *w, lora_dtype wdt, int N, int C, float eps)
{
	LORA_ASSERT(wdt == LORA_DTYPE_F32 && odt == LORA_DTYPE_F32);
	norm_ctx c = { .out = out, .rstd = rstd, .inp = inp, .copy = copy, .w = w, .C = C,
	               .eps = eps };
	parallel_range(N, 16, rmsnorm_rows, &c);
}

/* y = x·r·w, r = (mean x² + eps)^-1/2:
 * dx_i = r·w_i·dy_i − r³/C · x_i · Σ_j dy_j·w_j·x_j ;  dw_i = Σ_n dy_i·x_i·r. */
static void rmsnorm_back_rows(void *vc, int lo, int hi)
{
	norm_ctx *c = vc;
	int C = c->C;
	for (int n = lo; n < hi; n++) {
		const float *x = c->inp + (size_t)n * C, *dy = c->dout + (size_t)n * C;
		float r = c->crstd[n];
		double dot = 0;
		for (int i = 0; i < C; i++)
			dot += (double)dy[i] * c->w[i] * x[i];
		float k = (float)(dot * r * r * r / C);
		float *dx = c->dinp + (size_t)n * C;
		for (int i = 0; i < C; i++)
			dx[i] += r * c->w[i] * dy[i] - k * x[i];
	}
}

static void rmsnorm_backward(float *dinp, void *dinp_b, float *dw, const float *dout,
                             const float *inp, const void *w, lora_dtype wdt, const float *rstd,
                             int N, int C)
{
	LORA_ASSERT(wdt == LORA_DTYPE_F32 && !dinp_b);
	norm_ctx c = { .dinp = dinp, .dout = dout, .inp = inp, .w = w, .crstd = rstd, .C = C };
	if (dinp)
		parallel_range(N, 16, rmsnorm_back_rows, &c);
	if (dw)
		for (int n = 0; n < N; n++) {
			const float *x = inp + (size_t)n * C, *dy = dout + (size_t)n * C;
			for (int i = 0; i < C; i++)
				dw[i] += dy[i] * x[i] * rstd[n];
		}
}

/* ---- linear -------------------------------------------------------------------- */

static void linear_forward(void *vout, int acc, lora_dtype odt, const void *inp, lora_dtype idt,
                           const void *w, const void *bias, lora_dtype wdt, int N, int C, int OC)
{
	LORA_ASSERT(wdt == LORA_DTYPE_F32 && idt == LORA_DTYPE_F32 && odt == LORA_DTYPE_F32);
	float *out = vout;
	if (C == 0 && !acc)        /* nothing to multiply: out = bias */
		memset(out, 0, (size_t)N * OC * sizeof(float));
	else           /* beta 0 does not read out */
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, OC, C,
		            1.0f, inp, C, w, C, acc ? 1.0f : 0.0f, out, OC);
	if (bias) {
		const float *b = bias;
		for (int n = 0; n < N; n++)
			for (int o = 0; o < OC; o++)
				out[(size_t)n * OC + o] += b[o];
	}
}

static void linear_backward(float *dinp, int acc, float *dw, float *dbias, const void *doutv,
                            lora_dtype ddt, const void *inp, lora_dtype idt, const void *w,
                            lora_dtype wdt, int N, int C, int OC)
{
	LORA_ASSERT(wdt == LORA_DTYPE_F32 && idt == LORA_DTYPE_F32 && ddt == LORA_DTYPE_F32);
	const float *dout = doutv;
	if (dinp && OC == 0 && !acc)       /* nothing to multiply, dinp = 0 */
		memset(dinp, 0, (size_t)N * C * sizeof(float));
	else if (dinp)  /* (N, C) (+)= (N, OC) · (OC, C); beta 0 does not read dinp */
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, C, OC,
		            1.0f, dout, OC, w, C, acc ? 1.0f : 0.0f, dinp, C);
	if (dw)         /* (OC, C) += (N, OC)ᵀ · (N, C) */
		cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC, C, N,
		            1.0f, dout, OC, inp, C, 1.0f, dw, C);
	if (dbias)
		for (int n = 0; n < N; n++)
			for (int o = 0; o < OC; o++)
				dbias[o] += dout[(size_t)n * OC + o];
}

/* ---- LoRA branch ------------------------------------------------------------------ */

/* xd = drop(x): element i kept with probability 1-p, scaled by 1/(1-p). */
static void dropout_apply(float *xd, const float *x, size_t n, float p, uint64_t seed)
{
	float s = 1.0f / (1.0f - p);
	for (size_t i = 0; i < n; i++)
		xd[i] = lora_dropout_u(seed, i) < p ? 0.0f : x[i] * s;
}

/* [A_0; A_1; ...] (R, C): A_0 itself for one branch, else stacked in dst */
static const float *lora_stack(float *dst, const lora_branch *br, int nb, int C)
{
	if (nb == 1)
		return br[0].A;
	float *d = dst;
	for (int i = 0; i < nb; i++) {
		memcpy(d, br[i].A, (size_t)br[i].r * C * sizeof(float));
		d += (size_t)br[i].r * C;
	}
	return dst;
}

static void lora_down(float *h, const void *inp, lora_dtype idt, const lora_branch *br, int nb,
                      float p, int N, int C, float *scratch)
{
	LORA_ASSERT(idt == LORA_DTYPE_F32);
	int R = lora_branch_rank(br, nb);
	if (p > 0) {   /* a mask per branch: h_i (N, r_i) = drop_i(x) · A_iᵀ */
		for (int i = 0, o = 0; i < nb; o += br[i++].r) {
			dropout_apply(scratch, inp, (size_t)N * C, p, br[i].seed);
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, br[i].r, C,
			            1.0f, scratch, C, br[i].A, C, 0.0f, h + o, R);
		}
		return;
	}
	/* h (N, R) = x · [A_0; A_1; ...]ᵀ */
	const float *A = lora_stack(scratch, br, nb, C);
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, R, C,
	            1.0f, inp, C, A, C, 0.0f, h, R);
}

static void lora_up(void *out, int acc, lora_dtype odt, const float *h, int ldh, const float *B,
                    float scale, int N, int OC, int r)
{
	LORA_ASSERT(odt == LORA_DTYPE_F32 && r > 0);
	/* out (N, OC) (+)= scale · h · Bᵀ */
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, OC, r,
	            scale, h, ldh, B, r, acc ? 1.0f : 0.0f, out, OC);
}

static void lora_up_backward(float *dh, float *dB, const float *dout, const float *h, int ldh,
                             const float *B, float scale, int N, int OC, int r)
{
	/* dB (OC, r) += scale · doutᵀ · h ; dh (N, r) = scale · dout · B */
	cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC, r, N,
	            scale, dout, OC, h, ldh, 1.0f, dB, r);
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, r, OC,
	            scale, dout, OC, B, r, 0.0f, dh, ldh);
}

static void lora_down_backward(float *dinp, int acc, const float *dh, const void *inp,
                               lora_dtype idt, const lora_branch *br, int nb, float p, int N,
                               int C, float *scratch)
{
	LORA_ASSERT(idt == LORA_DTYPE_F32);
	int R = lora_branch_rank(br, nb);
	if (p > 0) {
		float s = 1.0f / (1.0f - p);
		for (int i = 0, o = 0; i < nb; o += br[i++].r) {
			/* dA_i (r, C) += dh_iᵀ · drop_i(x) */
			dropout_apply(scratch, inp, (size_t)N * C, p, br[i].seed);
			cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, br[i].r, C, N,
			            1.0f, dh + o, R, scratch, C, 1.0f, br[i].dA, C);
			if (!dinp)
				continue;
			/* dinp (N, C) (+)= drop_i'(dh_i · A_i) */
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, C, br[i].r,
			            1.0f, dh + o, R, br[i].A, C, 0.0f, scratch, C);
			int add = acc || i > 0;
			for (size_t e = 0; e < (size_t)N * C; e++) {
				float v = lora_dropout_u(br[i].seed, e) < p ? 0.0f : scratch[e] * s;
				dinp[e] = add ? dinp[e] + v : v;
			}
		}
		return;
	}
	if (nb == 1) {
		cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, R, C, N,
		            1.0f, dh, R, inp, C, 1.0f, br[0].dA, C);
		if (dinp)
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, C, R,
			            1.0f, dh, R, br[0].A, C, acc ? 1.0f : 0.0f, dinp, C);
		return;
	}
	/* [dA_0; dA_1; ...] (R, C) = dhᵀ · x into the scratch, added to each dA_i */
	cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, R, C, N,
	            1.0f, dh, R, inp, C, 0.0f, scratch, C);
	const float *g = scratch;
	for (int i = 0; i < nb; g += (size_t)br[i++].r * C)
		for (size_t e = 0; e < (size_t)br[i].r * C; e++)
			br[i].dA[e] += g[e];
	if (!dinp)
		return;
	/* dinp (N, C) (+)= dh · [A_0; A_1; ...] */
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, C, R,
	            1.0f, dh, R, lora_stack(scratch, br, nb, C), C, acc ? 1.0f : 0.0f, dinp, C);
}

/* ---- RoPE -------------------------------------------------------------------------- */

static void rope_apply(float *x, const float *fc, const float *fs, int B, int T,
                       int NH, int HS, float sign)
{
	int half = HS / 2;
	for (int b = 0; b < B; b++)
		for (int t = 0; t < T; t++) {
			const float *c = fc + (size_t)t * half, *s = fs + (size_t)t * half;
			for (int h = 0; h < NH; h++) {
				float *v = x + (((size_t)b * T + t) * NH + h) * HS;
				for (int j = 0; j < half; j++) {
					float x1 = v[j], x2 = v[j + half], sn = sign * s[j];
					v[j] = x1 * c[j] - x2 * sn;
					v[j + half] = x2 * c[j] + x1 * sn;
				}
			}
		}
}

static void rope_forward(void *out, const void *x, lora_dtype adt, const float *fc,
                         const float *fs, int B, int T, int NH, int HS)
{
	LORA_ASSERT(adt == LORA_DTYPE_F32);
	if (out != x)
		memcpy(out, x, (size_t)B * T * NH * HS * sizeof(float));
	rope_apply(out, fc, fs, B, T, NH, HS, 1.0f);
}

/* The rotation is orthogonal: its transpose is the rotation by −angle. */
static void rope_backward(float *dinp, void *dinp_b, const float *dout, const float *fc,
                          const float *fs, int B, int T, int NH, int HS)
{
	LORA_ASSERT(dinp && !dinp_b);
	if (dinp != dout)
		memcpy(dinp, dout, (size_t)B * T * NH * HS * sizeof(float));
	rope_apply(dinp, fc, fs, B, T, NH, HS, -1.0f);
}

/* ---- causal attention (GQA) -------------------------------------------------------------
 * saved = the softmax probabilities P (B, NH, T, T), exactly 0 above the
 * diagonal. Per (batch, head) the work is four or five matrix products with
 * the head's rows strided in q/k/v (lda = NH*HS or NKV*HS), so OpenBLAS does
 * them, threaded; the causal half is computed and then masked (twice the
 * flops of a triangular loop, still far faster than scalar code). Query
 * head h reads KV head h / (NH/NKV). */

static size_t attention_saved_floats(int B, int T, int NH)
{
	return (size_t)B * NH * T * T;
}

static size_t attention_scratch_floats(int B, int T, int NH, int NKV, int HS)
{
	(void)B; (void)NH; (void)NKV; (void)HS;
	return (size_t)T * T;
}

static float dot(const float *a, const float *b, int n)
{
	double s = 0;
	for (int i = 0; i < n; i++)
		s += (double)a[i] * b[i];
	return (float)s;
}

/* Row t of S: softmax over u <= t, zero beyond. */
static void causal_softmax_rows(float *S, int T)
{
	for (int t = 0; t < T; t++) {
		float *p = S + (size_t)t * T, mx = -INFINITY;
		for (int u = 0; u <= t; u++)
			if (p[u] > mx)
				mx = p[u];
		double sum = 0;
		for (int u = 0; u <= t; u++) {
			p[u] = expf(p[u] - mx);
			sum += p[u];
		}
		float inv = (float)(1.0 / sum);
		for (int u = 0; u <= t; u++)
			p[u] *= inv;
		for (int u = t + 1; u < T; u++)
			p[u] = 0.0f;
	}
}

static void attention_forward(void *outv, float *saved, const void *qv, const void *kv,
                              const void *vv, lora_dtype adt, int B, int T, int NH, int NKV,
                              int HS, int bf16)
{
	(void)bf16;                   /* the reference is fp32 throughout */
	LORA_ASSERT(NKV > 0 && NH % NKV == 0 && adt == LORA_DTYPE_F32);
	const float *q = qv, *k = kv, *v = vv;
	float *out = outv;
	int qs = NH * HS, ks = NKV * HS, rep = NH / NKV;
	float scale = 1.0f / sqrtf((float)HS);
	for (int b = 0; b < B; b++)
		for (int h = 0; h < NH; h++) {
			const float *qb = q + (size_t)b * T * qs + (size_t)h * HS;
			const float *kb = k + (size_t)b * T * ks + (size_t)(h / rep) * HS;
			const float *vb = v + (size_t)b * T * ks + (size_t)(h / rep) * HS;
			float *ob = out + (size_t)b * T * qs + (size_t)h * HS;
			float *P = saved + ((size_t)b * NH + h) * T * T;
			/* S (T, T) = scale · q · kᵀ ; P = causal softmax(S) ; o = P · v */
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, HS,
			            scale, qb, qs, kb, ks, 0.0f, P, T);
			causal_softmax_rows(P, T);
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, HS, T,
			            1.0f, P, T, vb, ks, 0.0f, ob, qs);
		}
}

/* With o = P·v: dv += Pᵀ·do, dP = do·vᵀ, dS = P ∘ (dP − rowsum(do ∘ o)),
 * dq += scale·dS·k, dk += scale·dSᵀ·q. P is 0 above the diagonal, so dS is
 * too without a mask. */
static void attention_backward(float *dq, float *dk, float *dv, const float *dout,
                               const float *saved, const void *qv, const void *kv,
                               const void *vv, const void *outv, lora_dtype adt, int B, int T,
                               int NH, int NKV, int HS, float *scratch, int bf16)
{
	(void)bf16;
	LORA_ASSERT(adt == LORA_DTYPE_F32);
	const float *q = qv, *k = kv, *v = vv, *out = outv;
	int qs = NH * HS, ks = NKV * HS, rep = NH / NKV;
	float scale = 1.0f / sqrtf((float)HS);
	float *dS = scratch;                          /* (T, T) */
	/* written: zero, then each head's products add (a KV head's several) */
	memset(dq, 0, (size_t)B * T * qs * sizeof(float));
	memset(dk, 0, (size_t)B * T * ks * sizeof(float));
	memset(dv, 0, (size_t)B * T * ks * sizeof(float));
	for (int b = 0; b < B; b++)
		for (int h = 0; h < NH; h++) {
			size_t qo = (size_t)b * T * qs + (size_t)h * HS;
			size_t ko = (size_t)b * T * ks + (size_t)(h / rep) * HS;
			const float *P = saved + ((size_t)b * NH + h) * T * T;
			cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, HS, T,
			            1.0f, P, T, dout + qo, qs, 1.0f, dv + ko, ks);
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, HS,
			            1.0f, dout + qo, qs, v + ko, ks, 0.0f, dS, T);
			for (int t = 0; t < T; t++) {
				float D = dot(dout + qo + (size_t)t * qs, out + qo + (size_t)t * qs, HS);
				const float *p = P + (size_t)t * T;
				float *d = dS + (size_t)t * T;
				for (int u = 0; u < T; u++)
					d[u] = p[u] * (d[u] - D) * scale;
			}
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, HS, T,
			            1.0f, dS, T, k + ko, ks, 1.0f, dq + qo, qs);
			cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, HS, T,
			            1.0f, dS, T, q + qo, qs, 1.0f, dk + ko, ks);
		}
}

/* ---- SwiGLU and residual ------------------------------------------------------------------ */

static void swiglu_forward(void *outv, const void *gatev, const void *upv, lora_dtype adt,
                           size_t N)
{
	LORA_ASSERT(adt == LORA_DTYPE_F32);
	float *out = outv;
	const float *gate = gatev, *up = upv;
	for (size_t i = 0; i < N; i++) {
		float g = gate[i];
		out[i] = g / (1.0f + expf(-g)) * up[i];
	}
}

static void swiglu_backward(float *dgate, float *dup, void *dgate_b, void *dup_b,
                            const float *dout, const void *gatev, const void *upv, lora_dtype adt,
                            size_t N)
{
	/* fp32 only: bf16 copies are for the CUDA backend's bf16 GEMMs */
	LORA_ASSERT(adt == LORA_DTYPE_F32 && dgate && dup && !dgate_b && !dup_b);
	const float *gate = gatev, *up = upv;
	for (size_t i = 0; i < N; i++) {
		float g = gate[i], s = 1.0f / (1.0f + expf(-g)), silu = g * s;
		dgate[i] = dout[i] * up[i] * (s + silu * (1.0f - s));
		dup[i] = dout[i] * silu;
	}
}

static void add_forward(float *out, const float *a, const float *b, size_t N)
{
	for (size_t i = 0; i < N; i++)
		out[i] = a[i] + b[i];
}

/* ---- cross-entropy ----------------------------------------------------------------------------- */

typedef struct {
	float *losses, *dlogits;
	const float *logits;
	const int32_t *targets;
	int V;
	float dloss;
} ce_ctx;

/* max and log Σ exp(x − max) of one row */
static void row_lse(const float *x, int V, float *mx_out, double *lse_out)
{
	float mx = -INFINITY;
	for (int i = 0; i < V; i++)
		if (x[i] > mx)
			mx = x[i];
	double s = 0;
	for (int i = 0; i < V; i++)
		s += expf(x[i] - mx);
	*mx_out = mx;
	*lse_out = log(s);
}

static void ce_fwd_rows(void *vc, int lo, int hi)
{
	ce_ctx *c = vc;
	for (int n = lo; n < hi; n++) {
		int t = c->targets[n];
		if (t == LORA_IGNORE_INDEX) {
			c->losses[n] = 0;
			continue;
		}
		LORA_ASSERT(t >= 0 && t < c->V);
		const float *x = c->logits + (size_t)n * c->V;
		float mx;
		double lse;
		row_lse(x, c->V, &mx, &lse);
		c->losses[n] = (float)(lse - ((double)x[t] - mx));
	}
}

static void crossentropy_forward(float *losses, const float *logits, const int32_t *targets,
                                 int N, int V)
{
	ce_ctx c = { .losses = losses, .logits = logits, .targets = targets, .V = V };
	parallel_range(N, 4, ce_fwd_rows, &c);
}

static void ce_bwd_rows(void *vc, int lo, int hi)
{
	ce_ctx *c = vc;
	int V = c->V;
	for (int n = lo; n < hi; n++) {
		int t = c->targets[n];
		const float *x = c->logits + (size_t)n * V;
		float *d = c->dlogits + (size_t)n * V;
		if (t == LORA_IGNORE_INDEX) {
			memset(d, 0, V * sizeof(float));
			continue;
		}
		float mx;
		double lse;
		row_lse(x, V, &mx, &lse);
		float l = (float)lse;
		for (int i = 0; i < V; i++)
			d[i] = c->dloss * expf(x[i] - mx - l);
		d[t] -= c->dloss;
	}
}

static void crossentropy_backward(float *dlogits, const float *logits, const int32_t *targets,
                                  float dloss, int N, int V)
{
	ce_ctx c = { .dlogits = dlogits, .logits = logits, .targets = targets, .V = V, .dloss = dloss };
	parallel_range(N, 4, ce_bwd_rows, &c);
}

/* ---- optimizer helpers ------------------------------------------------------------------------- */

static void adamw_update(float *p, const float *g, float *m, float *v, size_t n,
                         float lr, float beta1, float beta2, float eps, float wd,
                         double bc1, double bc2)
{
	float step_size = (float)(lr / bc1);
	float bc2_sqrt = (float)sqrt(bc2);
	float decay = 1.0f - lr * wd;
	for (size_t i = 0; i < n; i++) {
		p[i] *= decay;
		m[i] += (1.0f - beta1) * (g[i] - m[i]);
		v[i] = v[i] * beta2 + (1.0f - beta2) * g[i] * g[i];
		float denom = sqrtf(v[i]) / bc2_sqrt + eps;
		p[i] -= step_size * (m[i] / denom);
	}
}

static double sumsq(const float *x, size_t n)
{
	double s = 0;
	for (size_t i = 0; i < n; i++)
		s += (double)x[i] * x[i];
	return s;
}

/* segment by segment, each summed exactly as sumsq sums it (same order, so
 * the same doubles) */
static void sumsq_segments(const float *x, const size_t *off, int nseg, double *out)
{
	for (int k = 0; k < nseg; k++) {
		LORA_ASSERT(off[k + 1] >= off[k]);
		out[k] = sumsq(x + (off[k] - off[0]), off[k + 1] - off[k]);
	}
}

static void scale(float *x, float s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		x[i] *= s;
}

/* ---- the table ------------------------------------------------------------------------------------ */

static const lora_backend cpu = {
	.name = "cpu",
	.wdtype = LORA_DTYPE_F32,
	.is_host = 1,
	.alloc = cpu_alloc, .free = cpu_free,
	.upload = cpu_copy, .download = cpu_copy, .copy = cpu_copy, .zero = cpu_zero,
	.upload_f32 = cpu_upload_f32, .upload_from = cpu_upload_from,
	.sync = cpu_sync, .mem_info = cpu_mem_info,
	.embedding_forward = embedding_forward, .embedding_backward = embedding_backward,
	.rmsnorm_forward = rmsnorm_forward, .rmsnorm_backward = rmsnorm_backward,
	.linear_forward = linear_forward, .linear_backward = linear_backward,
	.lora_down = lora_down, .lora_up = lora_up,
	.lora_up_backward = lora_up_backward, .lora_down_backward = lora_down_backward,
	.rope_forward = rope_forward, .rope_backward = rope_backward,
	.attention_saved_floats = attention_saved_floats,
	.attention_scratch_floats = attention_scratch_floats,
	.attention_forward = attention_forward, .attention_backward = attention_backward,
	.swiglu_forward = swiglu_forward, .swiglu_backward = swiglu_backward,
	.add_forward = add_forward,
	.crossentropy_forward = crossentropy_forward,
	.crossentropy_backward = crossentropy_backward,
	.adamw_update = adamw_update, .sumsq = sumsq, .sumsq_segments = sumsq_segments,
	.scale = scale,
};

const lora_backend *lora_backend_cpu(void)
{
	static int inited;
	if (!inited) {
		nthreads = lora_nthreads();
		if (nthreads < 1)
			nthreads = 1;
		openblas_set_num_threads(nthreads);
		inited = 1;
	}
	return &cpu;
}
