/* test-ops.c: every op of the CPU backend against PyTorch autograd
 * (fixture from tests/gen/gen_ops.py: tests/fixtures/engine/ops.safetensors),
 * plus the optimizer, clipping and the LR schedules against torch and
 * transformers, LoRA dropout against an explicit masked computation, and
 * sumsq_segments against a naive loop and sumsq. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "lora.h"
#include "optim.h"
#include "safetensors.h"
#include "test.h"
#include "fixture.h"
#include "util.h"

static st_file *fx;
static const lora_backend *be;

/* Fixture tensor as a fresh f32 array; *n gets the element count. */
static float *get(const char *name, int64_t *n)
{
	return fixture_f32(fx, name, n, "tests/gen/gen_ops.py");
}

static const st_tensor *shape(const char *name) { return st_find(fx, name); }

static int32_t *get_ids(const char *name, int64_t *n)
{
	int64_t k;
	float *f = get(name, &k);
	int32_t *r = lora_xmalloc((k + 1) * sizeof(int32_t));
	for (int64_t i = 0; i < k; i++)
		r[i] = (int32_t)f[i];
	free(f);
	if (n)
		*n = k;
	return r;
}

/* Compare arrays elementwise; prints the first few mismatches and the max diff. */
static int close_arr(const char *what, const float *got, const float *want, int64_t n,
                     double rtol, double atol)
{
	int bad = 0;
	double maxd = 0;
	for (int64_t i = 0; i < n; i++) {
		double d = fabs((double)got[i] - want[i]);
		if (d > maxd || isnan(d))
			maxd = isnan(d) ? INFINITY : d;
		if (!(d <= atol + rtol * fabs(want[i]))) {
			if (bad < 5)
				printf("      %s[%lld]: got %.9g want %.9g\n", what, (long long)i, got[i], want[i]);
			bad++;
		}
	}
	if (bad)
		printf("      %s: %d of %lld differ, max abs diff %.3g\n", what, bad, (long long)n, maxd);
	test_cond(what, bad == 0);
	return bad == 0;
}

#define RT 1e-4
#define AT 1e-5

static void test_linear(void)
{
	int64_t n;
	const st_tensor *tw = shape("linear.w"), *tx = shape("linear.x");
	int N = tx->shape[0], C = tx->shape[1], OC = tw->shape[0];
	float *x = get("linear.x", 0), *w = get("linear.w", 0), *b = get("linear.b", 0);
	float *y = get("linear.y", &n), *dout = get("linear.dout", 0);
	float *out = lora_xcalloc(N * OC, 4), *dx = lora_xcalloc(N * C, 4);
	float *dw = lora_xcalloc(OC * C, 4), *db = lora_xcalloc(OC, 4);
	be->linear_forward(out, 0, LORA_DTYPE_F32, x, LORA_DTYPE_F32, w, b, LORA_DTYPE_F32, N, C, OC);
	close_arr("linear forward", out, y, n, RT, AT);
	/* acc 1: added to what out holds (the forward again: twice y) */
	be->linear_forward(out, 1, LORA_DTYPE_F32, x, LORA_DTYPE_F32, w, b, LORA_DTYPE_F32, N, C, OC);
	float *y2 = get("linear.y", 0);
	for (int i = 0; i < n; i++)
		y2[i] *= 2;
	close_arr("linear forward accumulates", out, y2, n, RT, AT);
	free(y2);
	for (int i = 0; i < N * C; i++)
		dx[i] = NAN;                 /* acc 0: dinp is written, not read */
	be->linear_backward(dx, 0, dw, db, dout, LORA_DTYPE_F32, x, LORA_DTYPE_F32, w, LORA_DTYPE_F32,
	                    N, C, OC);
	float *want = get("linear.dx", 0);
	close_arr("linear dinp", dx, want, N * C, RT, AT);
	free(want);
	want = get("linear.dw", 0);
	close_arr("linear dweight", dw, want, OC * C, RT, AT);
	free(want);
	want = get("linear.db", 0);
	close_arr("linear dbias", db, want, OC, RT, AT);
	free(want);
	/* accumulation: a second backward doubles; NULL grads are skipped */
	be->linear_backward(dx, 1, NULL, NULL, dout, LORA_DTYPE_F32, x, LORA_DTYPE_F32, w,
	                    LORA_DTYPE_F32, N, C, OC);
	want = get("linear.dx", 0);
	for (int i = 0; i < N * C; i++)
		want[i] *= 2;
	close_arr("linear dinp accumulates", dx, want, N * C, RT, AT);
	free(want);
	free(x); free(w); free(b); free(y); free(dout); free(out); free(dx); free(dw); free(db);
}

static void test_rmsnorm(void)
{
	const st_tensor *tx = shape("rmsnorm.x");
	int N = tx->shape[0], C = tx->shape[1];
	float *eps = get("rmsnorm.eps", 0);
	float *x = get("rmsnorm.x", 0), *w = get("rmsnorm.w", 0), *y = get("rmsnorm.y", 0);
	float *dout = get("rmsnorm.dout", 0), *wdx = get("rmsnorm.dx", 0), *wdw = get("rmsnorm.dw", 0);
	float *out = lora_xcalloc(N * C, 4), *rstd = lora_xcalloc(N, 4);
	float *dx = lora_xcalloc(N * C, 4), *dw = lora_xcalloc(C, 4);
	be->rmsnorm_forward(out, LORA_DTYPE_F32, rstd, x, NULL, w, LORA_DTYPE_F32, N, C, eps[0]);
	close_arr("rmsnorm forward", out, y, N * C, RT, AT);
	/* and the copy of inp (the next residual sum), bit for bit */
	float *cp = lora_xmalloc(N * C * 4);
	for (int i = 0; i < N * C; i++)
		cp[i] = NAN;
	be->rmsnorm_forward(out, LORA_DTYPE_F32, rstd, x, cp, w, LORA_DTYPE_F32, N, C, eps[0]);
	test_cond("rmsnorm forward: copy of inp", !memcmp(cp, x, (size_t)N * C * 4));
	close_arr("rmsnorm forward with a copy", out, y, N * C, RT, AT);
	free(cp);
	be->rmsnorm_backward(dx, NULL, dw, dout, x, w, LORA_DTYPE_F32, rstd, N, C);
	close_arr("rmsnorm dinp", dx, wdx, N * C, RT, AT);
	close_arr("rmsnorm dweight", dw, wdw, C, RT, AT);
	free(eps); free(x); free(w); free(y); free(dout); free(wdx); free(wdw);
	free(out); free(rstd); free(dx); free(dw);
}

/* A LoRA group of nb branches (A[i] (r[i], C), B[i] (OC[i], r[i]), scale
 * sc[i], dropout seed seed[i]) sharing the input x (N, C), through the four
 * ops in a model's order: lora_down, lora_up per branch; then
 * lora_up_backward per branch (from dout[i]) and lora_down_backward.
 * out[i] +=, dx += (acc 0: out[i] =, dx =), dA[i] +=, dB[i] +=. */
static void lora_group(int nb, int N, int C, const int *OC, const int *r, const float *sc,
                       float *const *A, float *const *B, const float *x, float p,
                       const uint64_t *seed, int acc, float **out, float *const *dout,
                       float *dx, float **dA, float **dB)
{
	lora_branch br[4];
	int R = 0, col[4];
	for (int i = 0; i < nb; i++) {
		br[i] = (lora_branch){ A[i], dA[i], r[i], seed[i] };
		col[i] = R;
		R += r[i];
	}
	float *h = lora_xmalloc((size_t)N * R * 4), *dh = lora_xmalloc((size_t)N * R * 4);
	size_t ns = lora_down_scratch_floats(N, C, R, nb, p, LORA_DTYPE_F32);
	float *scratch = lora_xmalloc((ns ? ns : 1) * 4);
	for (size_t e = 0; e < (size_t)N * R; e++)
		h[e] = dh[e] = NAN;          /* every column must be written */
	be->lora_down(h, x, LORA_DTYPE_F32, br, nb, p, N, C, scratch);
	for (int i = 0; i < nb; i++)
		be->lora_up(out[i], acc, LORA_DTYPE_F32, h + col[i], R, B[i], sc[i], N, OC[i], r[i]);
	for (int i = nb - 1; i >= 0; i--)
		be->lora_up_backward(dh + col[i], dB[i], dout[i], h + col[i], R, B[i], sc[i], N, OC[i],
		                     r[i]);
	be->lora_down_backward(dx, acc, dh, x, LORA_DTYPE_F32, br, nb, p, N, C, scratch);
	free(h); free(dh); free(scratch);
}

/* The group case "tag" of the fixture: nb branches "A<i>", "B<i>", ... */
static void test_lora_case(const char *tag, int nb)
{
	char k[64];
#define K(s) (snprintf(k, sizeof k, "%s.%s", tag, s), k)
#define KI(s, i) (snprintf(k, sizeof k, "%s.%s%d", tag, s, i), k)
	const st_tensor *tx = shape(K("x"));
	int N = tx->shape[0], C = tx->shape[1], OC[4], r[4];
	float sc[4], *A[4], *B[4], *out[4], *dout[4], *dA[4], *dB[4];
	uint64_t seed[4] = { 0 };
	float *x = get(K("x"), 0), *dx = lora_xcalloc(N * C, 4);
	for (int i = 0; i < nb; i++) {
		const st_tensor *tb = shape(KI("B", i));
		OC[i] = tb->shape[0];
		r[i] = tb->shape[1];
		float *s = get(KI("scale", i), 0);
		sc[i] = s[0];
		free(s);
		A[i] = get(KI("A", i), 0);
		B[i] = get(KI("B", i), 0);
		out[i] = get(KI("base", i), 0);
		dout[i] = get(KI("dout", i), 0);
		dA[i] = lora_xcalloc(r[i] * C, 4);
		dB[i] = lora_xcalloc(OC[i] * r[i], 4);
	}
	lora_group(nb, N, C, OC, r, sc, A, B, x, 0.0f, seed, 1, out, dout, dx, dA, dB);
	char what[96];
	float *w = get(K("dx"), 0);
	snprintf(what, sizeof what, "%s dinp", tag);
	close_arr(what, dx, w, N * C, RT, AT);
	free(w);
	for (int i = 0; i < nb; i++) {
		w = get(KI("y", i), 0);
		snprintf(what, sizeof what, "%s forward %d (out += branch)", tag, i);
		close_arr(what, out[i], w, N * OC[i], RT, AT);
		free(w);
		w = get(KI("dA", i), 0);
		snprintf(what, sizeof what, "%s dA %d", tag, i);
		close_arr(what, dA[i], w, r[i] * C, RT, AT);
		free(w);
		w = get(KI("dB", i), 0);
		snprintf(what, sizeof what, "%s dB %d", tag, i);
		close_arr(what, dB[i], w, OC[i] * r[i], RT, AT);
		free(w);
	}

	/* acc 0: out[i] = the branch alone (y - base), dx written over NaN */
	float *o0[4], *dA0[4], *dB0[4], *dx0 = lora_xmalloc(N * C * 4);
	for (int e = 0; e < N * C; e++)
		dx0[e] = NAN;
	for (int i = 0; i < nb; i++) {
		o0[i] = lora_xmalloc(N * OC[i] * 4);
		for (int e = 0; e < N * OC[i]; e++)
			o0[i][e] = NAN;
		dA0[i] = lora_xcalloc(r[i] * C, 4);
		dB0[i] = lora_xcalloc(OC[i] * r[i], 4);
	}
	lora_group(nb, N, C, OC, r, sc, A, B, x, 0.0f, seed, 0, o0, dout, dx0, dA0, dB0);
	w = get(K("dx"), 0);
	snprintf(what, sizeof what, "%s dinp, acc 0", tag);
	close_arr(what, dx0, w, N * C, RT, AT);
	free(w);
	for (int i = 0; i < nb; i++) {
		float *y = get(KI("y", i), 0), *base = get(KI("base", i), 0);
		for (int e = 0; e < N * OC[i]; e++)
			y[e] -= base[e];
		snprintf(what, sizeof what, "%s forward %d, acc 0 (out = branch)", tag, i);
		close_arr(what, o0[i], y, N * OC[i], RT, AT);
		free(y); free(base); free(o0[i]); free(dA0[i]); free(dB0[i]);
	}
	free(dx0);

	/* dropout p: each branch must equal the p = 0 op applied to the input
	 * masked explicitly with that branch's mask, and its share of dinp the
	 * masked p = 0 dinp. Each branch has its own mask. */
	float p = 0.3f;
	float *xm = lora_xmalloc(N * C * 4), *dxp = lora_xcalloc(N * C, 4);
	float *dxw = lora_xcalloc(N * C, 4), *dx1 = lora_xmalloc(N * C * 4);
	float *o1[4], *o2[4], *dA1[4], *dA2[4], *dB1[4], *dB2[4];
	for (int i = 0; i < nb; i++) {
		seed[i] = 99 + 7 * i;
		o1[i] = lora_xcalloc(N * OC[i], 4);
		o2[i] = lora_xcalloc(N * OC[i], 4);
		dA1[i] = lora_xcalloc(r[i] * C, 4);
		dA2[i] = lora_xcalloc(r[i] * C, 4);
		dB1[i] = lora_xcalloc(OC[i] * r[i], 4);
		dB2[i] = lora_xcalloc(OC[i] * r[i], 4);
	}
	for (int e = 0; e < N * C; e++)
		dxp[e] = NAN;                /* acc 0 here, += in the reference runs */
	for (int i = 0; i < nb; i++)
		for (int e = 0; e < N * OC[i]; e++)
			o1[i][e] = NAN;
	lora_group(nb, N, C, OC, r, sc, A, B, x, p, seed, 0, o1, dout, dxp, dA1, dB1);
	int dropped = 0, same = 1;
	for (int i = 0; i < nb; i++) {
		for (int e = 0; e < N * C; e++) {
			int drop = lora_dropout_u(seed[i], e) < p;
			dropped += drop;
			same &= drop == (lora_dropout_u(seed[0], e) < p);
			xm[e] = drop ? 0 : x[e] / (1 - p);
		}
		uint64_t s0 = 0;
		memset(dx1, 0, N * C * 4);
		lora_group(1, N, C, &OC[i], &r[i], &sc[i], &A[i], &B[i], xm, 0.0f, &s0, 1, &o2[i],
		           &dout[i], dx1, &dA2[i], &dB2[i]);
		for (int e = 0; e < N * C; e++)
			dxw[e] += lora_dropout_u(seed[i], e) < p ? 0 : dx1[e] / (1 - p);
		snprintf(what, sizeof what, "%s dropout forward %d", tag, i);
		close_arr(what, o1[i], o2[i], N * OC[i], RT, AT);
		snprintf(what, sizeof what, "%s dropout dA %d", tag, i);
		close_arr(what, dA1[i], dA2[i], r[i] * C, RT, AT);
		snprintf(what, sizeof what, "%s dropout dB %d", tag, i);
		close_arr(what, dB1[i], dB2[i], OC[i] * r[i], RT, AT);
	}
	test_cond("dropout drops some but not all", dropped > 0 && dropped < nb * N * C);
	if (nb > 1)
		test_cond("each branch has its own dropout mask", !same);
	snprintf(what, sizeof what, "%s dropout dinp", tag);
	close_arr(what, dxp, dxw, N * C, RT, AT);
	for (int i = 0; i < nb; i++) {
		free(o1[i]); free(o2[i]); free(dA1[i]); free(dA2[i]); free(dB1[i]); free(dB2[i]);
		free(A[i]); free(B[i]); free(out[i]); free(dout[i]); free(dA[i]); free(dB[i]);
	}
	free(xm); free(dxp); free(dxw); free(dx1); free(x); free(dx);
#undef K
#undef KI
}

static void test_lora(void)
{
	test_lora_case("lora", 1);
	test_lora_case("lora3", 3);
}

static void test_rope(const char *tag)
{
	char k[64];
#define K(s) (snprintf(k, sizeof k, "%s.%s", tag, s), k)
	const st_tensor *tx = shape(K("x"));
	int B = tx->shape[0], T = tx->shape[1], NH = tx->shape[2], HS = tx->shape[3];
	float *theta = get(K("theta"), 0);
	lora_rope_params rp = { .theta = theta[0] };
	if (shape(K("factor"))) {
		float *f = get(K("factor"), 0), *lf = get(K("low_freq_factor"), 0);
		float *hf = get(K("high_freq_factor"), 0), *om = get(K("original_max_pos"), 0);
		rp.factor = f[0]; rp.low_freq_factor = lf[0]; rp.high_freq_factor = hf[0];
		rp.original_max_pos = (int)om[0];
		free(f); free(lf); free(hf); free(om);
	}
	float *fc = lora_xmalloc(T * HS / 2 * 4), *fs = lora_xmalloc(T * HS / 2 * 4);
	lora_rope_table(fc, fs, T, HS, &rp);
	float *wc = get(K("cos"), 0), *ws = get(K("sin"), 0);
	char what[64];
	snprintf(what, sizeof what, "%s cos table", tag);
	close_arr(what, fc, wc, T * HS / 2, RT, 1e-6);
	snprintf(what, sizeof what, "%s sin table", tag);
	close_arr(what, fs, ws, T * HS / 2, RT, 1e-6);
	int64_t n;
	float *x = get(K("x"), &n), *y = get(K("y"), 0), *d = get(K("dout"), 0), *wdx = get(K("dx"), 0);
	be->rope_forward(x, x, LORA_DTYPE_F32, fc, fs, B, T, NH, HS);
	snprintf(what, sizeof what, "%s forward", tag);
	close_arr(what, x, y, n, RT, AT);
	/* out of place (written over NaN: the op writes, it does not add), then in place */
	float *dx = lora_xmalloc(n * sizeof(float));
	for (int64_t i = 0; i < n; i++)
		dx[i] = NAN;
	be->rope_backward(dx, NULL, d, fc, fs, B, T, NH, HS);
	snprintf(what, sizeof what, "%s backward, out of place", tag);
	close_arr(what, dx, wdx, n, RT, AT);
	free(dx);
	be->rope_backward(d, NULL, d, fc, fs, B, T, NH, HS);
	snprintf(what, sizeof what, "%s backward", tag);
	close_arr(what, d, wdx, n, RT, AT);
#undef K
	free(theta); free(fc); free(fs); free(wc); free(ws); free(x); free(y); free(d); free(wdx);
}

static void test_attention(const char *tag)
{
	char k[64], what[80];
#define K(s) (snprintf(k, sizeof k, "%s.%s", tag, s), k)
	const st_tensor *tq = shape(K("q"));
	int B = tq->shape[0], T = tq->shape[1], NH = tq->shape[2], HS = tq->shape[3];
	int NKV = shape(K("k"))->shape[2];
	int64_t nq, nk;
	float *q = get(K("q"), &nq), *kk = get(K("k"), &nk), *v = get(K("v"), 0);
	float *y = get(K("y"), 0), *dout = get(K("dout"), 0);
	float *out = lora_xcalloc(nq, 4), *saved = lora_xcalloc(be->attention_saved_floats(B, T, NH), 4);
	float *scr = lora_xcalloc(be->attention_scratch_floats(B, T, NH, NKV, HS) + 1, 4);
	float *dq = lora_xmalloc(nq * 4), *dk = lora_xmalloc(nk * 4), *dv = lora_xmalloc(nk * 4);
	for (int64_t i = 0; i < nq; i++)
		dq[i] = NAN;                 /* written, not accumulated */
	for (int64_t i = 0; i < nk; i++)
		dk[i] = dv[i] = NAN;
	be->attention_forward(out, saved, q, kk, v, LORA_DTYPE_F32, B, T, NH, NKV, HS, 0);
	snprintf(what, sizeof what, "%s forward (NH %d, NKV %d, HS %d)", tag, NH, NKV, HS);
	close_arr(what, out, y, nq, RT, AT);
	be->attention_backward(dq, dk, dv, dout, saved, q, kk, v, out, LORA_DTYPE_F32, B, T, NH, NKV, HS, scr, 0);
	float *w = get(K("dq"), 0);
	snprintf(what, sizeof what, "%s dq", tag);
	close_arr(what, dq, w, nq, RT, AT);
	free(w);
	w = get(K("dk"), 0);
	snprintf(what, sizeof what, "%s dk", tag);
	close_arr(what, dk, w, nk, RT, AT);
	free(w);
	w = get(K("dv"), 0);
	snprintf(what, sizeof what, "%s dv", tag);
	close_arr(what, dv, w, nk, RT, AT);
	free(w);
#undef K
	free(q); free(kk); free(v); free(y); free(dout); free(out); free(saved); free(scr);
	free(dq); free(dk); free(dv);
}

static void test_swiglu(void)
{
	int64_t n;
	float *g = get("swiglu.gate", &n), *u = get("swiglu.up", 0), *y = get("swiglu.y", 0);
	float *d = get("swiglu.dout", 0), *wg = get("swiglu.dgate", 0), *wu = get("swiglu.dup", 0);
	float *out = lora_xcalloc(n, 4), *dg = lora_xcalloc(n, 4), *du = lora_xcalloc(n, 4);
	be->swiglu_forward(out, g, u, LORA_DTYPE_F32, n);
	close_arr("swiglu forward", out, y, n, RT, AT);
	for (int64_t i = 0; i < n; i++)
		dg[i] = du[i] = NAN;          /* the backward writes, it does not add */
	be->swiglu_backward(dg, du, NULL, NULL, d, g, u, LORA_DTYPE_F32, n);
	close_arr("swiglu dgate", dg, wg, n, RT, AT);
	close_arr("swiglu dup", du, wu, n, RT, AT);
	be->add_forward(out, g, u, n);
	int ok = 1;
	for (int64_t i = 0; i < n; i++)
		ok &= out[i] == g[i] + u[i];
	test_cond("add forward", ok);
	free(g); free(u); free(y); free(d); free(wg); free(wu); free(out); free(dg); free(du);
}

static void test_ce(void)
{
	const st_tensor *tl = shape("ce.logits");
	int N = tl->shape[0], V = tl->shape[1];
	float *logits = get("ce.logits", 0), *wl = get("ce.losses", 0), *wloss = get("ce.loss", 0);
	float *wd = get("ce.dlogits", 0);
	int32_t *tg = get_ids("ce.targets", 0);
	float *losses = lora_xcalloc(N, 4);
	be->crossentropy_forward(losses, logits, tg, N, V);
	close_arr("crossentropy losses (0 where ignored)", losses, wl, N, RT, AT);
	int cnt = 0;
	double sum = 0;
	for (int i = 0; i < N; i++)
		if (tg[i] != LORA_IGNORE_INDEX) {
			cnt++;
			sum += losses[i];
		}
	test_close("crossentropy mean over non-ignored", sum / cnt, wloss[0], RT, AT);
	be->crossentropy_backward(logits, logits, tg, 1.0f / cnt, N, V);    /* in place */
	close_arr("crossentropy dlogits (in place)", logits, wd, N * V, RT, 1e-6);
	free(logits); free(wl); free(wloss); free(wd); free(tg); free(losses);
}

static void test_embedding(void)
{
	const st_tensor *tw = shape("emb.w");
	int V = tw->shape[0], C = tw->shape[1];
	int64_t N;
	int32_t *ids = get_ids("emb.ids", &N);
	float *w = get("emb.w", 0), *y = get("emb.y", 0), *d = get("emb.dout", 0), *wdw = get("emb.dw", 0);
	float *out = lora_xcalloc(N * C, 4), *dw = lora_xcalloc(V * C, 4);
	be->embedding_forward(out, ids, w, LORA_DTYPE_F32, N, C);
	close_arr("embedding forward", out, y, N * C, 0, 0);
	be->embedding_backward(dw, d, ids, N, C);
	close_arr("embedding dweight (repeated id accumulates)", dw, wdw, V * C, RT, AT);
	free(ids); free(w); free(y); free(d); free(wdw); free(out); free(dw);
}

static void test_adamw(void)
{
	int64_t n;
	float *p = get("adamw.p0", &n), *grads = get("adamw.grads", 0);
	float *lr = get("adamw.lr", 0), *b1 = get("adamw.beta1", 0), *b2 = get("adamw.beta2", 0);
	float *eps = get("adamw.eps", 0), *wd = get("adamw.wd", 0);
	float *g = lora_xcalloc(n, 4);
	lora_params ps = { 0 };
	lora_params_add(&ps, "p", p, g, 1, (int64_t[]){ n }, 1);
	lora_adamw *o = lora_adamw_new(&ps, be, &(lora_adamw_config){ .lr = lr[0], .beta1 = b1[0],
	                                  .beta2 = b2[0], .eps = eps[0], .weight_decay = wd[0] });
	for (int s = 0; s < 4; s++) {
		memcpy(g, grads + s * n, n * 4);
		lora_adamw_step(o, lr[0]);
	}
	float *w = get("adamw.p4", 0);
	close_arr("adamw params after 4 steps", p, w, n, RT, 1e-6);
	free(w);
	w = get("adamw.m4", 0);
	close_arr("adamw exp_avg", o->m, w, n, RT, 1e-6);
	free(w);
	w = get("adamw.v4", 0);
	close_arr("adamw exp_avg_sq", o->v, w, n, RT, 1e-7);
	free(w);
	test_cond("adamw counts steps", o->step == 4);
	lora_adamw_free(o);
	lora_params_free(&ps);
	free(p); free(grads); free(lr); free(b1); free(b2); free(eps); free(wd); free(g);
}

static void test_clip(void)
{
	int64_t na, nb;
	float *ga = get("clip.ga", &na), *gb = get("clip.gb", &nb), *mx = get("clip.max_norm", 0);
	float *wn = get("clip.norm", 0), *wa = get("clip.ca", 0), *wb = get("clip.cb", 0);
	lora_params ps = { 0 };
	lora_params_add(&ps, "a", ga, ga, 1, (int64_t[]){ na }, 1);
	lora_params_add(&ps, "b", gb, gb, 1, (int64_t[]){ nb }, 1);
	float norm = lora_clip_grad_norm(&ps, be, mx[0]);
	test_close("clip_grad_norm total norm", norm, wn[0], RT, 0);
	close_arr("clip_grad_norm clipped a", ga, wa, na, RT, 1e-7);
	close_arr("clip_grad_norm clipped b", gb, wb, nb, RT, 1e-7);
	lora_params_free(&ps);
	free(ga); free(gb); free(mx); free(wn); free(wa); free(wb);
}

/* sumsq_segments against a naive loop and against sumsq per segment */
static void test_sumsq_segments(void)
{
	/* odd sizes, empty segments at the start, middle and end */
	static const size_t len[] = { 0, 1, 7, 0, 1000, 33, 4097, 0, 2, 0 };
	int nseg = sizeof len / sizeof *len;
	size_t off[sizeof len / sizeof *len + 1], base = 5;    /* a run inside a list */
	off[0] = base;
	for (int k = 0; k < nseg; k++)
		off[k + 1] = off[k] + len[k];
	size_t n = off[nseg] - base;
	float *x = lora_xmalloc(n * sizeof(float));
	lora_rng g = { 7 };
	for (size_t i = 0; i < n; i++)
		x[i] = (lora_rng_uniform(&g) - 0.5f) * (i % 5 == 0 ? 1e3f : 1.0f);
	double out[sizeof len / sizeof *len];
	for (int k = 0; k < nseg; k++)
		out[k] = -1;
	be->sumsq_segments(x, off, nseg, out);
	int same = 1, naive = 1;
	for (int k = 0; k < nseg; k++) {
		const float *s = x + (off[k] - base);
		double want = 0;                         /* naive, independent of sumsq */
		for (size_t i = 0; i < len[k]; i++)
			want += (double)s[i] * (double)s[i];
		naive &= fabs(out[k] - want) <= 1e-12 * want;
		same &= out[k] == be->sumsq(s, len[k]);  /* bit for bit */
	}
	test_cond("sumsq_segments = naive double sums", naive);
	test_cond("sumsq_segments = sumsq per segment, bit for bit", same);
	test_cond("sumsq_segments: an empty segment is 0", out[0] == 0 && out[3] == 0 && out[9] == 0);
	test_cond("sumsq_segments: a 1-element segment", out[1] == (double)x[0] * x[0]);
	/* nseg 0 writes nothing */
	out[0] = -1;
	be->sumsq_segments(x, off, 0, out);
	test_cond("sumsq_segments: nseg 0 writes nothing", out[0] == -1);
	free(x);
}

static void test_sched(void)
{
	for (int k = 0; k < LORA_SCHED_COUNT; k++) {
		char name[64];
		snprintf(name, sizeof name, "sched.%s", lora_sched_name(k));
		int64_t n;
		float *w = get(name, &n);
		lora_schedule s = { .kind = k, .lr = 1.0f, .warmup_steps = 3, .total_steps = 11 };
		float *got = lora_xmalloc(n * 4);
		for (int64_t i = 0; i < n; i++)
			got[i] = (float)lora_schedule_lambda(&s, i);
		close_arr(name, got, w, n, 1e-6, 1e-7);
		test_cond("schedule name round-trips", lora_sched_parse(lora_sched_name(k)) == k);
		free(w);
		free(got);
	}
	test_cond("unknown schedule", lora_sched_parse("cosine_with_restarts") == -1);
}

int main(void)
{
	const char *path = "tests/fixtures/engine/ops.safetensors";
	fx = st_open(path);
	if (!fx) {
		printf("FAIL cannot open fixture: %s\n", lora_errmsg());
		return 1;
	}
	be = lora_backend_get("cpu");
	test_cond("cpu backend", be && !strcmp(be->name, "cpu"));
	test_cond("auto always gives a backend", lora_backend_get("auto") != NULL);
	test_cond("bad device is an error", lora_backend_get("gpu") == NULL);
	test_cond("bad cuda index is an error", lora_backend_get("cuda:x") == NULL);
	test_linear();
	test_rmsnorm();
	test_lora();
	test_rope("rope");
	test_rope("rope3");
	test_attention("attn");
	test_attention("attn1");
	test_attention("attnq");
	test_swiglu();
	test_ce();
	test_embedding();
	test_adamw();
	test_clip();
	test_sumsq_segments();
	test_sched();
	st_close(fx);
	return test_report();
}
