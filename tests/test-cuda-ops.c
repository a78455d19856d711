/* test-cuda-ops.c: every op of the CUDA backend, forward and backward,
 * against the CPU reference backend (lib/ops_cpu.c) on seeded random inputs
 * at several shapes, odd sizes included (STYLE.md rule 10).
 *
 * Both backends get the same numbers: a frozen weight is drawn on the host,
 * rounded to the GPU's weight dtype (BF16 or F16), and the CPU gets that
 * rounded value in F32; so what differs is only what the GPU does inside an
 * op (bf16 activations in linear, summation order, expf). Tolerances, per op:
 *
 *   linear, bf16/f16 weights: |gpu − cpu| <= (u + K·eps32) · Σ|x||w| per
 *     element (u = unit roundoff of the weight dtype, 2^-8 for bf16, 2^-11
 *     for f16: the fp32 activation is rounded once; K·eps32 bounds fp32
 *     accumulation of K products). The Σ|x||w| bound is computed by the CPU
 *     backend on absolute values.
 *   linear, f32 weights: (2·K·eps32) · Σ|x||w|.
 *   everything else is fp32 on both sides: k·eps32·(|cpu| + max|cpu|) with
 *     k stated at each check (reduction length, a few ulp for expf).
 *   add, scale, embedding: exact.
 * Gradients accumulate (+=), so every gradient buffer starts from the same
 * random values on both sides; outputs that the op overwrites start as NaN
 * on the GPU so that an element left unwritten fails.
 *
 * On a mismatch: the first 5 (index, gpu, cpu) pairs and the max difference.
 * Without CUDA in the build, or without a GPU, it prints why and exits 77.
 * LORA_TEST_SEED=N draws other inputs; LORA_TEST_ONLY=attention,linear runs
 * only the groups named.
 */
#include <float.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test.h"        /* test_cond, test_report */
#include "backend.h"     /* lora_backend, lora_backend_cpu, lora_backend_cuda */
#include "dtype.h"       /* lora_f32_to_bf16 & co */
#include "lora.h"        /* lora_rng */
#include "util.h"        /* lora_errmsg, lora_xmalloc */

#ifndef LORA_CUDA
int main(void)
{
	printf("skipped: this build has no CUDA backend (nvcc was not found)\n");
	return 77;
}
#else

#define EPS32 ((double)FLT_EPSILON)

static const lora_backend *cpu, *gpu;
static lora_rng rng;

/* ---- buffers ------------------------------------------------------------------- */

static float urand(float lo, float hi) { return lo + (hi - lo) * lora_rng_uniform(&rng); }

static float *host_rand(size_t n, float lo, float hi)
{
	float *h = lora_xmalloc((n ? n : 1) * sizeof(float));
	for (size_t i = 0; i < n; i++)
		h[i] = urand(lo, hi);
	return h;
}

static void *be_alloc(const lora_backend *be, size_t bytes)
{
	void *p = be->alloc(bytes);
	if (!p) {
		fprintf(stderr, "test-cuda-ops: %s: %s\n", be->name, lora_errmsg());
		exit(1);
	}
	return p;
}

/* GPU buffers are exactly n elements (1 byte when empty), so that on the
 * emulator ASan stops a kernel that reads or writes one element past the
 * end (the CPU side keeps 4 spare bytes). */
static size_t gbytes(size_t n, size_t esize) { return n ? n * esize : 1; }

/* The same n floats on both backends. */
typedef struct { float *c, *g; size_t n; } pair;

static pair pair_of(const float *h, size_t n)
{
	pair p = { be_alloc(cpu, n * 4 + 4), be_alloc(gpu, gbytes(n, 4)), n };
	cpu->upload(p.c, h, n * 4);
	gpu->upload(p.g, h, n * 4);
	return p;
}

static float round_to(float x, lora_dtype dt);

/* Random values rounded to dt (F32: as drawn), the same on both sides. */
static pair pair_rand_dt(size_t n, float lo, float hi, lora_dtype dt)
{
	float *h = host_rand(n, lo, hi);
	for (size_t i = 0; i < n; i++)
		h[i] = round_to(h[i], dt);
	pair p = pair_of(h, n);
	free(h);
	return p;
}

static pair pair_rand(size_t n, float lo, float hi)
{
	return pair_rand_dt(n, lo, hi, LORA_DTYPE_F32);
}

/* An output: zero on the CPU, NaN on the GPU (so unwritten elements fail). */
static pair pair_out(size_t n)
{
	float *h = lora_xmalloc((n ? n : 1) * 4);
	for (size_t i = 0; i < n; i++)
		h[i] = NAN;
	pair p = { be_alloc(cpu, n * 4 + 4), be_alloc(gpu, gbytes(n, 4)), n };
	gpu->upload(p.g, h, n * 4);
	free(h);
	return p;
}

static void pair_free(pair *p)
{
	cpu->free(p->c);
	gpu->free(p->g);
	p->c = p->g = NULL;
}

static float *download(const float *g, size_t n)
{
	float *h = lora_xmalloc((n ? n : 1) * 4);
	gpu->download(h, g, n * 4);
	return h;
}

/* A weight: values rounded to dt; F32 on the CPU, dt on the GPU. */
typedef struct { float *c; void *g; lora_dtype dt; size_t n; float *h; } wpair;

static float round_to(float x, lora_dtype dt)
{
	if (dt == LORA_DTYPE_BF16)
		return lora_bf16_to_f32(lora_f32_to_bf16(x));
	if (dt == LORA_DTYPE_F16)
		return lora_f16_to_f32(lora_f32_to_f16(x));
	return x;
}

/* A weight or activation: a->h (n values, already rounded to a->dt) in F32 on the
 * CPU and in a->dt on the GPU. */
static wpair act_alloc(size_t n, lora_dtype dt)
{
	wpair a = { be_alloc(cpu, n * 4 + 4), be_alloc(gpu, gbytes(n, dt == LORA_DTYPE_F32 ? 4 : 2)),
	            dt, n, lora_xmalloc((n ? n : 1) * 4) };
	return a;
}

static void act_upload(const wpair *a)
{
	cpu->upload(a->c, a->h, a->n * 4);
	gpu->upload_f32(a->g, a->dt, a->h, a->n);
}

/* Random values rounded to rdt (BF16 whenever dt is), stored in dt. */
static wpair act_rand(size_t n, float lo, float hi, lora_dtype rdt, lora_dtype dt)
{
	wpair a = act_alloc(n, dt);
	for (size_t i = 0; i < n; i++)
		a.h[i] = round_to(urand(lo, hi), dt == LORA_DTYPE_BF16 ? dt : rdt);
	act_upload(&a);
	return a;
}

static wpair wpair_rand(size_t n, float lo, float hi, lora_dtype dt)
{
	return act_rand(n, lo, hi, dt, dt);
}

static void wpair_free(wpair *w)
{
	cpu->free(w->c);
	gpu->free(w->g);
	free(w->h);
}

/* ---- comparison -------------------------------------------------------------------- */

static double maxabs(const float *x, size_t n)
{
	double m = 0;
	for (size_t i = 0; i < n; i++)
		if (fabs(x[i]) > m)
			m = fabs(x[i]);
	return m;
}

/* Pass when |gpu − cpu| <= bound[i] (if bound) + k·eps32·(|cpu| + max|cpu|)
 * + rel·|cpu| for every element; NaN never passes. want, got: host arrays. */
static int compare_host(const char *what, const float *want, const float *got, size_t n,
                        double k, const float *bound, double rel)
{
	double mx = maxabs(want, n), maxdiff = 0;
	size_t bad = 0;
	for (size_t i = 0; i < n; i++) {
		double d = fabs((double)got[i] - want[i]);
		double tol = k * EPS32 * (fabs(want[i]) + mx) + (bound ? bound[i] : 0) +
		             rel * fabs(want[i]);
		if (!(d <= tol)) {
			if (bad < 5)
				printf("      %s [%zu]: gpu %.9g cpu %.9g (tol %.3g)\n", what, i,
				       got[i], want[i], tol);
			bad++;
		}
		if (d > maxdiff || d != d)
			maxdiff = d;
	}
	if (bad)
		printf("      %s: %zu of %zu differ, maxdiff %.3g (max|cpu| %.3g)\n", what, bad,
		       n, maxdiff, mx);
	test_cond(what, bad == 0);
	return bad == 0;
}

static int compare(const char *what, const pair *p, double k, const float *bound)
{
	float *want = lora_xmalloc((p->n ? p->n : 1) * 4);
	cpu->download(want, p->c, p->n * 4);
	float *got = download(p->g, p->n);
	int ok = compare_host(what, want, got, p->n, k, bound, 0);
	free(want);
	free(got);
	return ok;
}

/* ---- activations in a dtype (backend.h: adt) ------------------------------------ */

/* n values of dt on the GPU, NaN (so unwritten elements fail). */
static void *gpu_out_dt(size_t n, lora_dtype dt)
{
	float *h = lora_xmalloc((n ? n : 1) * 4);
	for (size_t i = 0; i < n; i++)
		h[i] = NAN;
	void *g = be_alloc(gpu, gbytes(n, lora_dtype_bits(dt) / 8));
	gpu->upload_f32(g, dt, h, n);
	free(h);
	return g;
}

/* The CPU's fp32 result cpu_out against the GPU's g in dt, within the fp32
 * tolerance k (plus bound[i] if bound) plus rel·|cpu|: rel =
 * unit_roundoff(dt) covers one rounding to dt (at most half a unit in the
 * last place, 2^-9 relative for BF16). */
static int compare_dt_b(const char *what, const float *cpu_out, const void *g, lora_dtype dt,
                        size_t n, double k, const float *bound, double rel)
{
	size_t es = lora_dtype_bits(dt) / 8;
	float *want = lora_xmalloc((n ? n : 1) * 4), *got = lora_xmalloc((n ? n : 1) * 4);
	void *raw = lora_xmalloc((n ? n : 1) * es);
	cpu->download(want, cpu_out, n * 4);
	gpu->download(raw, g, n * es);
	lora_convert(got, LORA_DTYPE_F32, raw, dt, n);
	int ok = compare_host(what, want, got, n, k, bound, rel);
	free(want);
	free(got);
	free(raw);
	return ok;
}

static int compare_dt(const char *what, const float *cpu_out, const void *g, lora_dtype dt,
                      size_t n, double k, double rel)
{
	return compare_dt_b(what, cpu_out, g, dt, n, k, NULL, rel);
}

/* Elementwise bounds for linear: the CPU's product of absolute values. */
static float *abs_host(const float *x, size_t n)
{
	float *a = lora_xmalloc((n ? n : 1) * 4);
	for (size_t i = 0; i < n; i++)
		a[i] = fabsf(x[i]);
	return a;
}

static const char *dtname(lora_dtype dt) { return lora_dtype_name(dt); }

static double unit_roundoff(lora_dtype dt)
{
	return dt == LORA_DTYPE_BF16 ? 1.0 / 256 : dt == LORA_DTYPE_F16 ? 1.0 / 2048 : 0.0;
}

static const lora_dtype wdts[] = { LORA_DTYPE_F32, LORA_DTYPE_BF16, LORA_DTYPE_F16 };

/* ---- memory ------------------------------------------------------------------------------ */

static void test_memory(void)
{
	/* every op of the table is there */
	void (*const *fp)(void) = (void (*const *)(void))((const char *)gpu +
	                                                    offsetof(lora_backend, alloc));
	size_t nfp = (sizeof(lora_backend) - offsetof(lora_backend, alloc)) / sizeof(void (*)(void));
	int all = 1;
	for (size_t i = 0; i < nfp; i++)
		all &= fp[i] != NULL;
	test_cond("every entry of the CUDA table is set", all);
	test_cond("CUDA weights are BF16", gpu->wdtype == LORA_DTYPE_BF16);
	test_cond("CUDA memory is not host memory", gpu->is_host == 0);

	size_t used0, peak0, cap, used1, peak1, used2;
	gpu->mem_info(&used0, &peak0, &cap);
	size_t n = 1000003;
	float *d = be_alloc(gpu, n * 4);
	gpu->mem_info(&used1, &peak1, NULL);
	test_cond("alloc counts its bytes", used1 >= used0 + n * 4 && peak1 >= used1);
	float *h = download(d, n);
	test_cond("alloc returns zeroed memory", maxabs(h, n) == 0);
	free(h);
	gpu->free(d);
	gpu->mem_info(&used2, NULL, NULL);
	test_cond("free gives the bytes back", used2 == used0);
	test_cond("capacity is known", cap > 0);

	void *big = gpu->alloc(cap * 2);
	test_cond("an allocation beyond the GPU fails with NULL", big == NULL);
	test_cond("... and says out of GPU memory", strstr(lora_errmsg(), "out of GPU memory") != NULL);
	printf("      (message: %s)\n", lora_errmsg());
	gpu->free(big);
	gpu->mem_info(&used2, NULL, NULL);
	test_cond("a failed allocation counts nothing", used2 == used0);

	/* upload_f32 rounds as lora_f32_to_bf16 / _f16 do */
	size_t m = 4099;
	float *src = host_rand(m, -1000, 1000);
	src[0] = 0.0f; src[1] = -0.0f; src[2] = INFINITY; src[3] = 1e-30f; src[4] = 70000.0f;
	uint16_t *raw = lora_xmalloc(m * 2);
	for (int k = 1; k < 3; k++) {
		lora_dtype dt = wdts[k];
		void *g = be_alloc(gpu, m * 2);
		gpu->upload_f32(g, dt, src, m);
		gpu->download(raw, g, m * 2);
		size_t bad = 0;
		for (size_t i = 0; i < m; i++) {
			uint16_t want = dt == LORA_DTYPE_BF16 ? lora_f32_to_bf16(src[i]) : lora_f32_to_f16(src[i]);
			bad += raw[i] != want;
		}
		char what[64];
		snprintf(what, sizeof what, "upload_f32 to %s rounds as lib/dtype.c", dtname(dt));
		test_cond(what, bad == 0);
		gpu->free(g);
	}
	free(raw);

	/* upload_from: every pair of F32, BF16, F16 (source and buffer), from an
	 * unaligned host address, as lora_convert rounds on the host, bit for
	 * bit; the last size is over the 64 MiB workspace the GPU converts in */
	static const size_t ms[] = { 1, 4099, ((size_t)64 << 20) / 4 + 3 };
	for (size_t mi = 0; mi < sizeof ms / sizeof *ms; mi++) {
		size_t mm = ms[mi];
		float *vals = host_rand(mm, -1000, 1000);
		memcpy(vals, src, (mm < m ? mm : m) * sizeof *vals);
		if (mm > 8) {   /* f16 subnormal, bf16 and f16 ties, above f16's range */
			vals[5] = 3e-6f; vals[6] = 1.00390625f; vals[7] = 1.00048828125f;
			vals[8] = -1e5f;
		}
		for (int si = 0; si < 3; si++)
			for (int di = 0; di < 3; di++) {
				lora_dtype st = wdts[si], dt = wdts[di];
				size_t ss = lora_dtype_bits(st) / 8, ds = lora_dtype_bits(dt) / 8;
				unsigned char *file = lora_xmalloc(mm * ss + 1);   /* +1: unaligned */
				LORA_ASSERT(lora_convert(file + 1, st, vals, LORA_DTYPE_F32, mm) == 0);
				unsigned char *want = lora_xmalloc(mm * ds), *got = lora_xmalloc(mm * ds);
				LORA_ASSERT(lora_convert(want, dt, file + 1, st, mm) == 0);
				void *g = be_alloc(gpu, mm * ds);
				gpu->upload_from(g, dt, file + 1, st, mm);
				gpu->download(got, g, mm * ds);
				char what[96];
				snprintf(what, sizeof what, "upload_from %s to %s, n=%zu: as lora_convert, bit "
				         "for bit", dtname(st), dtname(dt), mm);
				test_cond(what, !memcmp(got, want, mm * ds));
				gpu->free(g);
				free(file); free(want); free(got);
			}
		free(vals);
	}
	free(src);

	/* copy and zero */
	pair a = pair_rand(777, -1, 1), b = pair_out(777);
	cpu->copy(b.c, a.c, 777 * 4);
	gpu->copy(b.g, a.g, 777 * 4);
	compare("copy", &b, 0, NULL);
	cpu->zero(b.c + 5, 100 * 4);
	gpu->zero(b.g + 5, 100 * 4);
	compare("zero", &b, 0, NULL);
	pair_free(&a);
	pair_free(&b);
}

/* ---- embedding ------------------------------------------------------------------------------- */

static void test_embedding(void)
{
	static const int shapes[][3] = { { 1, 1, 1 }, { 7, 3, 11 }, { 37, 64, 50 }, { 129, 130, 7 } };
	for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
		int N = shapes[s][0], C = shapes[s][1], V = shapes[s][2];
		int32_t *ids = lora_xmalloc(N * 4);
		for (int n = 0; n < N; n++)
			ids[n] = (int32_t)(lora_rng_next(&rng) % V);
		int32_t *idc = be_alloc(cpu, N * 4), *idg = be_alloc(gpu, N * 4);
		cpu->upload(idc, ids, N * 4);
		gpu->upload(idg, ids, N * 4);
		for (int k = 0; k < 3; k++) {
			wpair w = wpair_rand((size_t)V * C, -2, 2, wdts[k]);
			pair out = pair_out((size_t)N * C);
			cpu->embedding_forward(out.c, idc, w.c, LORA_DTYPE_F32, N, C);
			gpu->embedding_forward(out.g, idg, w.g, w.dt, N, C);
			char what[96];
			snprintf(what, sizeof what, "embedding_forward N=%d C=%d V=%d %s", N, C, V, dtname(w.dt));
			compare(what, &out, 0, NULL);
			pair_free(&out);
			wpair_free(&w);
		}
		/* backward: atomic adds in any order; fp32 sums of up to N rows */
		pair dw = pair_rand((size_t)V * C, -1, 1), dout = pair_rand((size_t)N * C, -1, 1);
		cpu->embedding_backward(dw.c, dout.c, idc, N, C);
		gpu->embedding_backward(dw.g, dout.g, idg, N, C);
		char what[96];
		snprintf(what, sizeof what, "embedding_backward N=%d C=%d V=%d", N, C, V);
		compare(what, &dw, 2.0 * N, NULL);
		pair_free(&dw);
		pair_free(&dout);
		cpu->free(idc);
		gpu->free(idg);
		free(ids);
	}
}

/* ---- RMSNorm ------------------------------------------------------------------------------------ */

static void test_rmsnorm(void)
{
	static const int shapes[][2] = { { 1, 1 }, { 3, 7 }, { 33, 64 }, { 17, 1000 }, { 64, 4096 } };
	for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
		int N = shapes[s][0], C = shapes[s][1];
		for (int k = 0; k < 3; k++) {
			lora_dtype dt = wdts[k];
			wpair w = wpair_rand(C, 0.5f, 1.5f, dt);
			pair x = pair_rand((size_t)N * C, -2, 2);
			pair out = pair_out((size_t)N * C), rstd = pair_out(N);
			float eps = 1e-5f;
			cpu->rmsnorm_forward(out.c, LORA_DTYPE_F32, rstd.c, x.c, NULL, w.c, LORA_DTYPE_F32, N, C,
			                     eps);
			gpu->rmsnorm_forward(out.g, LORA_DTYPE_F32, rstd.g, x.g, NULL, w.g, dt, N, C, eps);
			char what[96];
			/* fp32 sum of C squares vs the CPU's double: k = C/8 + 8 */
			snprintf(what, sizeof what, "rmsnorm_forward N=%d C=%d %s: rstd", N, C, dtname(dt));
			compare(what, &rstd, C / 8.0 + 8, NULL);
			snprintf(what, sizeof what, "rmsnorm_forward N=%d C=%d %s: out", N, C, dtname(dt));
			compare(what, &out, C / 8.0 + 8, NULL);

			pair dout = pair_rand((size_t)N * C, -1, 1), dx = pair_rand((size_t)N * C, -1, 1);
			pair dw = pair_rand(C, -1, 1);
			int with_dw = dt == LORA_DTYPE_F32;     /* trainable weights are F32 */
			cpu->rmsnorm_backward(dx.c, NULL, with_dw ? dw.c : NULL, dout.c, x.c, w.c,
			                      LORA_DTYPE_F32, rstd.c, N, C);
			gpu->rmsnorm_backward(dx.g, NULL, with_dw ? dw.g : NULL, dout.g, x.g, w.g, dt,
			                      rstd.g, N, C);
			snprintf(what, sizeof what, "rmsnorm_backward N=%d C=%d %s: dinp", N, C, dtname(dt));
			compare(what, &dx, C / 4.0 + 16, NULL);
			if (with_dw) {
				snprintf(what, sizeof what, "rmsnorm_backward N=%d C=%d: dw", N, C);
				compare(what, &dw, 2.0 * N + 16, NULL);
			}
			/* dinp's new value in bf16 too (the operand of o's and down's
			 * GEMMs in a bf16 run), written over NaN */
			double u = unit_roundoff(LORA_DTYPE_BF16);
			pair dx2 = pair_rand((size_t)N * C, -1, 1);
			void *db = gpu_out_dt((size_t)N * C, LORA_DTYPE_BF16);
			cpu->rmsnorm_backward(dx2.c, NULL, NULL, dout.c, x.c, w.c, LORA_DTYPE_F32, rstd.c,
			                      N, C);
			gpu->rmsnorm_backward(dx2.g, db, NULL, dout.g, x.g, w.g, dt, rstd.g, N, C);
			snprintf(what, sizeof what, "rmsnorm_backward N=%d C=%d %s: dinp beside BF16", N,
			         C, dtname(dt));
			compare(what, &dx2, C / 4.0 + 16, NULL);
			snprintf(what, sizeof what, "rmsnorm_backward N=%d C=%d %s: BF16 dinp", N, C,
			         dtname(dt));
			compare_dt(what, dx2.c, db, LORA_DTYPE_BF16, (size_t)N * C, (C / 4.0 + 16) * (1 + u),
			           u);
			gpu->free(db);
			pair_free(&dx2);
			/* a BF16 output (the saved ln1/ln2 of a bf16 run) */
			/* with the copy of inp (the next residual sum), written over NaN */
			void *ob = gpu_out_dt((size_t)N * C, LORA_DTYPE_BF16);
			pair cp = pair_out((size_t)N * C);
			cpu->rmsnorm_forward(out.c, LORA_DTYPE_F32, rstd.c, x.c, cp.c, w.c, LORA_DTYPE_F32, N,
			                     C, eps);
			gpu->rmsnorm_forward(ob, LORA_DTYPE_BF16, rstd.g, x.g, cp.g, w.g, dt, N, C, eps);
			snprintf(what, sizeof what, "rmsnorm_forward N=%d C=%d %s: copy of inp", N, C,
			         dtname(dt));
			compare(what, &cp, 0, NULL);
			pair_free(&cp);
			snprintf(what, sizeof what, "rmsnorm_forward N=%d C=%d %s: BF16 out", N, C, dtname(dt));
			compare_dt(what, out.c, ob, LORA_DTYPE_BF16, (size_t)N * C, C / 8.0 + 8,
			           unit_roundoff(LORA_DTYPE_BF16));
			gpu->free(ob);
			pair_free(&dout); pair_free(&dx); pair_free(&dw);
			pair_free(&x); pair_free(&out); pair_free(&rstd);
			wpair_free(&w);
		}
	}
}

/* ---- linear -------------------------------------------------------------------------------------- */

/* bound (M, N) = (u + K·eps32·f) · (|a| op |b|), computed by the CPU op fn
 * on absolute values; f = 1 for bf16/f16 and 2 for f32. */
static float *linear_bound_fwd(const float *x, const float *w, int N, int C, int OC, double u,
                               double f)
{
	float *ax = abs_host(x, (size_t)N * C), *aw = abs_host(w, (size_t)OC * C);
	float *cx = be_alloc(cpu, (size_t)N * C * 4 + 4), *cw = be_alloc(cpu, (size_t)OC * C * 4 + 4);
	float *co = be_alloc(cpu, (size_t)N * OC * 4 + 4);
	cpu->upload(cx, ax, (size_t)N * C * 4);
	cpu->upload(cw, aw, (size_t)OC * C * 4);
	cpu->linear_forward(co, 0, LORA_DTYPE_F32, cx, LORA_DTYPE_F32, cw, NULL, LORA_DTYPE_F32, N, C, OC);
	float *b = lora_xmalloc((size_t)N * OC * 4 + 4);
	cpu->download(b, co, (size_t)N * OC * 4);
	for (size_t i = 0; i < (size_t)N * OC; i++)
		b[i] = (float)((u + C * EPS32 * f) * b[i]) + 1e-30f;
	cpu->free(cx); cpu->free(cw); cpu->free(co);
	free(ax); free(aw);
	return b;
}

static float *host_of(const pair *p)
{
	float *h = lora_xmalloc(p->n * 4 + 4);
	cpu->download(h, p->c, p->n * 4);
	return h;
}

static void test_linear(void)
{
	/* the last two run the bf16 conversion in two row chunks (the 64 MiB
	 * workspace holds 1016 rows of 33000): forward, then dinp */
	static const int shapes[][3] = { { 1, 1, 1 }, { 3, 5, 7 }, { 33, 64, 17 }, { 64, 128, 96 },
	                                 { 130, 257, 129 }, { 256, 1024, 512 },
	                                 { 1100, 33000, 3 }, { 1100, 3, 33000 } };
	for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
		int N = shapes[s][0], C = shapes[s][1], OC = shapes[s][2];
		for (int k = 0; k < 3; k++) {
			lora_dtype dt = wdts[k];
			double u = unit_roundoff(dt), f = dt == LORA_DTYPE_F32 ? 2 : 1;
			wpair w = wpair_rand((size_t)OC * C, -1, 1, dt);
			wpair bias = wpair_rand(OC, -1, 1, dt);
			pair x = pair_rand((size_t)N * C, -2, 2), out = pair_out((size_t)N * OC);
			float *xh = host_of(&x);
			float *bound = linear_bound_fwd(xh, w.h, N, C, OC, u, f);
			char what[128];
			for (int wb = 0; wb < 2; wb++) {
				cpu->linear_forward(out.c, 0, LORA_DTYPE_F32, x.c, LORA_DTYPE_F32, w.c,
				                    wb ? bias.c : NULL, LORA_DTYPE_F32, N, C, OC);
				gpu->linear_forward(out.g, 0, LORA_DTYPE_F32, x.g, LORA_DTYPE_F32, w.g,
				                    wb ? bias.g : NULL, dt, N, C, OC);
				snprintf(what, sizeof what, "linear_forward N=%d C=%d OC=%d %s%s", N, C, OC,
				         dtname(dt), wb ? " +bias" : "");
				compare(what, &out, 4, bound);
			}
			/* acc 1 (a LoRA branch folded in): added to what out holds */
			pair z = pair_rand((size_t)N * OC, -1, 1);
			cpu->linear_forward(z.c, 1, LORA_DTYPE_F32, x.c, LORA_DTYPE_F32, w.c, bias.c,
			                    LORA_DTYPE_F32, N, C, OC);
			gpu->linear_forward(z.g, 1, LORA_DTYPE_F32, x.g, LORA_DTYPE_F32, w.g, bias.g, dt, N,
			                    C, OC);
			snprintf(what, sizeof what, "linear_forward N=%d C=%d OC=%d %s +bias, acc", N, C, OC,
			         dtname(dt));
			compare(what, &z, 4, bound);
			pair_free(&z);
			free(bound);
			if (dt == LORA_DTYPE_BF16) {   /* a BF16 input: no conversion, same bound */
				wpair xb = wpair_rand((size_t)N * C, -2, 2, LORA_DTYPE_BF16);
				bound = linear_bound_fwd(xb.h, w.h, N, C, OC, u, f);
				for (int wb = 0; wb < 2; wb++) {
					const void *bc = wb ? bias.c : NULL, *bg = wb ? bias.g : NULL;
					cpu->linear_forward(out.c, 0, LORA_DTYPE_F32, xb.c, LORA_DTYPE_F32, w.c, bc,
					                    LORA_DTYPE_F32, N, C, OC);
					gpu->linear_forward(out.g, 0, LORA_DTYPE_F32, xb.g, LORA_DTYPE_BF16, w.g, bg,
					                    dt, N, C, OC);
					snprintf(what, sizeof what, "linear_forward N=%d C=%d OC=%d BF16 input%s",
					         N, C, OC, wb ? " +bias" : "");
					compare(what, &out, 4, bound);
					/* and a BF16 output (q, k, v, gate, up of a bf16 run): the
					 * same bound plus one rounding to bf16 */
					void *ob = gpu_out_dt((size_t)N * OC, LORA_DTYPE_BF16);
					gpu->linear_forward(ob, 0, LORA_DTYPE_BF16, xb.g, LORA_DTYPE_BF16, w.g, bg,
					                    dt, N, C, OC);
					snprintf(what, sizeof what, "linear_forward N=%d C=%d OC=%d BF16 in/out%s",
					         N, C, OC, wb ? " +bias" : "");
					compare_dt_b(what, out.c, ob, LORA_DTYPE_BF16, (size_t)N * OC, 4 * (1 + u),
					             bound, u);
					gpu->free(ob);
				}
				pair z = pair_rand((size_t)N * OC, -1, 1);
				cpu->linear_forward(z.c, 1, LORA_DTYPE_F32, xb.c, LORA_DTYPE_F32, w.c, NULL,
				                    LORA_DTYPE_F32, N, C, OC);
				gpu->linear_forward(z.g, 1, LORA_DTYPE_F32, xb.g, LORA_DTYPE_BF16, w.g, NULL, dt,
				                    N, C, OC);
				snprintf(what, sizeof what, "linear_forward N=%d C=%d OC=%d BF16 input, acc", N,
				         C, OC);
				compare(what, &z, 4, bound);
				pair_free(&z);
				free(bound);
				wpair_free(&xb);
			}

			/* backward: dinp (N, C) += dout · w, bound (u + OC·eps)·|dout|·|w| */
			pair dout = pair_rand((size_t)N * OC, -1, 1), dx = pair_rand((size_t)N * C, -1, 1);
			float *gh = host_of(&dout);
			/* |dout|·|w| is the forward product with w transposed: build wᵀ */
			float *wt = lora_xmalloc((size_t)OC * C * 4 + 4);
			for (int o = 0; o < OC; o++)
				for (int c = 0; c < C; c++)
					wt[(size_t)c * OC + o] = w.h[(size_t)o * C + c];
			bound = linear_bound_fwd(gh, wt, N, OC, C, u, f);
			int train = dt == LORA_DTYPE_F32;
			pair dw = pair_rand((size_t)OC * C, -1, 1), db = pair_rand(OC, -1, 1);
			const lora_dtype F32 = LORA_DTYPE_F32;
			cpu->linear_backward(dx.c, 1, train ? dw.c : NULL, train ? db.c : NULL, dout.c, F32,
			                     x.c, F32, w.c, F32, N, C, OC);
			gpu->linear_backward(dx.g, 1, train ? dw.g : NULL, train ? db.g : NULL, dout.g, F32,
			                     x.g, F32, w.g, dt, N, C, OC);
			snprintf(what, sizeof what, "linear_backward N=%d C=%d OC=%d %s: dinp", N, C, OC,
			         dtname(dt));
			compare(what, &dx, 4, bound);
			/* acc 0 writes dinp (the GPU's starts as NaN, the CPU's as 0) */
			pair dx0 = pair_out((size_t)N * C);
			cpu->linear_backward(dx0.c, 0, NULL, NULL, dout.c, F32, x.c, F32, w.c, F32, N, C, OC);
			gpu->linear_backward(dx0.g, 0, NULL, NULL, dout.g, F32, x.g, F32, w.g, dt, N, C, OC);
			snprintf(what, sizeof what, "linear_backward N=%d C=%d OC=%d %s: dinp written", N, C,
			         OC, dtname(dt));
			compare(what, &dx0, 4, bound);
			pair_free(&dx0);
			free(bound);
			if (dt == LORA_DTYPE_BF16) {
				/* a BF16 dout (dgate, dup with no LoRA there): no conversion,
				 * the same product as an fp32 dout holding bf16 values */
				wpair db16 = wpair_rand((size_t)N * OC, -1, 1, LORA_DTYPE_BF16);
				bound = linear_bound_fwd(db16.h, wt, N, OC, C, u, f);
				for (int acc = 0; acc < 2; acc++) {
					pair d = acc ? pair_rand((size_t)N * C, -1, 1) : pair_out((size_t)N * C);
					cpu->linear_backward(d.c, acc, NULL, NULL, db16.c, F32, x.c, F32, w.c, F32, N,
					                     C, OC);
					gpu->linear_backward(d.g, acc, NULL, NULL, db16.g, LORA_DTYPE_BF16, x.g, F32,
					                     w.g, dt, N, C, OC);
					snprintf(what, sizeof what,
					         "linear_backward N=%d C=%d OC=%d BF16 dout: dinp%s", N, C, OC,
					         acc ? " +=" : " written");
					compare(what, &d, 4, bound);
					pair_free(&d);
				}
				free(bound);
				wpair_free(&db16);
			}
			if (train) {
				/* dw (OC, C) += doutᵀ·x: bound 2·N·eps·|dout|ᵀ·|x| */
				float *gT = lora_xmalloc((size_t)N * OC * 4 + 4), *xT = lora_xmalloc((size_t)N * C * 4 + 4);
				for (int n = 0; n < N; n++) {
					for (int o = 0; o < OC; o++)
						gT[(size_t)o * N + n] = gh[(size_t)n * OC + o];
					for (int c = 0; c < C; c++)
						xT[(size_t)c * N + n] = xh[(size_t)n * C + c];
				}
				bound = linear_bound_fwd(gT, xT, OC, N, C, 0, 2);
				snprintf(what, sizeof what, "linear_backward N=%d C=%d OC=%d: dw", N, C, OC);
				compare(what, &dw, 4, bound);
				free(bound);
				snprintf(what, sizeof what, "linear_backward N=%d C=%d OC=%d: dbias", N, C, OC);
				compare(what, &db, 2.0 * N + 4, NULL);
				free(gT);
				free(xT);
			}
			free(wt); free(gh); free(xh);
			pair_free(&dout); pair_free(&dx); pair_free(&dw); pair_free(&db);
			pair_free(&x); pair_free(&out);
			wpair_free(&w); wpair_free(&bias);
		}
	}
}

/* ---- LoRA ------------------------------------------------------------------------------------------- */

static void test_lora(void)
{
	/* r 40 > 32: lora_up's bf16 kernel sums h in chunks of 32; r <= 8 and
	 * <= 16 take its chunks of 8 and 16 */
	static const int shapes[][4] = { { 1, 3, 5, 1 }, { 7, 33, 17, 4 }, { 64, 128, 96, 8 },
	                                 { 9, 40, 70, 16 }, { 37, 100, 200, 40 },
	                                 { 256, 1024, 1024, 64 } };
	static const float ps[] = { 0.0f, 0.25f };
	size_t ns = sizeof shapes / sizeof *shapes;
	/* inp F32, then BF16 (a saved activation of a bf16 run: the GPU widens it
	 * to fp32 first, so the same values give the same fp32 bounds); groups
	 * of 1 and of 3 branches (q, k, v: one lora_down for the three), the
	 * three with different OC and r */
	for (size_t s = 0; s < 2 * ns - 1; s++)
		for (int nb = 1; nb <= 3; nb += 2)
			for (int pi = 0; pi < 2; pi++) {
				int N = shapes[s % ns][0], C = shapes[s % ns][1], OC0 = shapes[s % ns][2];
				int r0 = shapes[s % ns][3];
				int OC[3] = { OC0, OC0 / 2 + 1, OC0 + 3 };
				int r[3] = { r0, r0 > 1 ? r0 / 2 : 2, r0 };
				lora_dtype idt = s < ns ? LORA_DTYPE_F32 : LORA_DTYPE_BF16;
				float p = ps[pi], scale[3] = { 2.0f, 0.5f, 1.5f };
				int R = 0, col[3], OCs = 0;
				lora_branch bc[3], bg[3];
				pair A[3], B[3], out[3], dout[3], dA[3], dB[3];
				for (int i = 0; i < nb; i++) {
					uint64_t seed = lora_rng_next(&rng);
					A[i] = pair_rand((size_t)r[i] * C, -0.5f, 0.5f);
					B[i] = pair_rand((size_t)OC[i] * r[i], -0.5f, 0.5f);
					out[i] = pair_rand((size_t)N * OC[i], -1, 1);
					dout[i] = pair_rand((size_t)N * OC[i], -1, 1);
					dA[i] = pair_rand((size_t)r[i] * C, -1, 1);
					dB[i] = pair_rand((size_t)OC[i] * r[i], -1, 1);
					bc[i] = (lora_branch){ A[i].c, dA[i].c, r[i], seed };
					bg[i] = (lora_branch){ A[i].g, dA[i].g, r[i], seed };
					col[i] = R;
					R += r[i];
					OCs += OC[i];
				}
				wpair x = wpair_rand((size_t)N * C, -2, 2, idt);
				pair h = pair_out((size_t)N * R), dh = pair_out((size_t)N * R);
				pair scr = pair_out(lora_down_scratch_floats(N, C, R, nb, p, idt));
				pair dx = pair_rand((size_t)N * C, -1, 1);
				char what[128], shp[96];
				snprintf(shp, sizeof shp, "N=%d C=%d OC=%d r=%d nb=%d p=%g %s", N, C, OC0, r0,
				         nb, p, dtname(idt));
				cpu->lora_down(h.c, x.c, LORA_DTYPE_F32, bc, nb, p, N, C, scr.c);
				gpu->lora_down(h.g, x.g, idt, bg, nb, p, N, C, scr.g);
				/* fp32 GEMMs of length C then r: k = 2·(C + r) */
				snprintf(what, sizeof what, "lora_down %s: h", shp);
				compare(what, &h, 2.0 * C, NULL);
				for (int i = 0; i < nb; i++) {
					/* with a BF16 input, also a BF16 out (the q, k, v, gate, up
					 * of a bf16 run) starting from the same bf16 values */
					void *ob = NULL;
					size_t no = (size_t)N * OC[i];
					if (idt != LORA_DTYPE_F32) {
						float *oh = host_of(&out[i]);
						for (size_t e = 0; e < no; e++)
							oh[e] = round_to(oh[e], idt);
						cpu->upload(out[i].c, oh, no * 4);
						gpu->upload(out[i].g, oh, no * 4);
						ob = gpu_out_dt(no, idt);
						gpu->upload_f32(ob, idt, oh, no);
						free(oh);
					}
					cpu->lora_up(out[i].c, 1, LORA_DTYPE_F32, h.c + col[i], R, B[i].c, scale[i], N,
					             OC[i], r[i]);
					gpu->lora_up(out[i].g, 1, LORA_DTYPE_F32, h.g + col[i], R, B[i].g, scale[i], N,
					             OC[i], r[i]);
					snprintf(what, sizeof what, "lora_up %s: out %d", shp, i);
					compare(what, &out[i], 2.0 * (C + r[i]), NULL);
					/* acc 0: the branch alone, written over NaN */
					pair o0 = pair_out(no);
					cpu->lora_up(o0.c, 0, LORA_DTYPE_F32, h.c + col[i], R, B[i].c, scale[i], N,
					             OC[i], r[i]);
					gpu->lora_up(o0.g, 0, LORA_DTYPE_F32, h.g + col[i], R, B[i].g, scale[i], N,
					             OC[i], r[i]);
					snprintf(what, sizeof what, "lora_up %s: out %d, acc 0", shp, i);
					compare(what, &o0, 2.0 * (C + r[i]), NULL);
					pair_free(&o0);
					if (ob) {
						double u = unit_roundoff(idt);
						gpu->lora_up(ob, 1, idt, h.g + col[i], R, B[i].g, scale[i], N, OC[i], r[i]);
						snprintf(what, sizeof what, "lora_up %s: %s out %d", shp, dtname(idt), i);
						compare_dt(what, out[i].c, ob, idt, no, 2.0 * (C + r[i]) * (1 + u), u);
						gpu->free(ob);
					}
				}
				/* without dinp, with it (+=), with it written over NaN (acc 0) */
				pair dx0 = pair_out((size_t)N * C);
				for (int wd = 0; wd < 3; wd++) {
					for (int i = nb - 1; i >= 0; i--) {
						cpu->lora_up_backward(dh.c + col[i], dB[i].c, dout[i].c, h.c + col[i], R,
						                      B[i].c, scale[i], N, OC[i], r[i]);
						gpu->lora_up_backward(dh.g + col[i], dB[i].g, dout[i].g, h.g + col[i], R,
						                      B[i].g, scale[i], N, OC[i], r[i]);
					}
					if (!wd) {
						snprintf(what, sizeof what, "lora_up_backward %s: dh", shp);
						compare(what, &dh, 2.0 * OC0, NULL);
					}
					pair *d = wd == 2 ? &dx0 : &dx;
					cpu->lora_down_backward(wd ? d->c : NULL, wd < 2, dh.c, x.c, LORA_DTYPE_F32,
					                        bc, nb, p, N, C, scr.c);
					gpu->lora_down_backward(wd ? d->g : NULL, wd < 2, dh.g, x.g, idt, bg, nb, p,
					                        N, C, scr.g);
				}
				snprintf(what, sizeof what, "lora_down_backward %s: dinp, acc 0", shp);
				compare(what, &dx0, 2.0 * (OCs + R), NULL);
				pair_free(&dx0);
				for (int i = 0; i < nb; i++) {
					snprintf(what, sizeof what, "lora backward %s: dA %d", shp, i);
					compare(what, &dA[i], 4.0 * (N + OC[i]), NULL);
					snprintf(what, sizeof what, "lora backward %s: dB %d", shp, i);
					compare(what, &dB[i], 4.0 * (N + C), NULL);
				}
				snprintf(what, sizeof what, "lora_down_backward %s: dinp", shp);
				compare(what, &dx, 2.0 * (OCs + R), NULL);
				for (int i = 0; i < nb; i++) {
					pair_free(&A[i]); pair_free(&B[i]); pair_free(&out[i]);
					pair_free(&dout[i]); pair_free(&dA[i]); pair_free(&dB[i]);
				}
				wpair_free(&x); pair_free(&h); pair_free(&dh); pair_free(&scr); pair_free(&dx);
			}
}

/* ---- RoPE ---------------------------------------------------------------------------------------------- */

static void test_rope(void)
{
	static const int shapes[][4] = { { 1, 1, 1, 2 }, { 2, 5, 3, 6 }, { 1, 33, 4, 64 },
	                                 { 2, 17, 2, 128 } };
	for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
		int B = shapes[s][0], T = shapes[s][1], NH = shapes[s][2], HS = shapes[s][3];
		size_t nt = (size_t)T * (HS / 2), n = (size_t)B * T * NH * HS;
		float *ch = lora_xmalloc(nt * 4), *sh = lora_xmalloc(nt * 4);
		for (size_t i = 0; i < nt; i++) {
			float a = urand(-10, 10);
			ch[i] = cosf(a);
			sh[i] = sinf(a);
		}
		pair fc = pair_of(ch, nt), fs = pair_of(sh, nt), x = pair_rand(n, -2, 2);
		char what[96];
		/* out of place, F32 */
		pair o32 = pair_out(n);
		cpu->rope_forward(o32.c, x.c, LORA_DTYPE_F32, fc.c, fs.c, B, T, NH, HS);
		gpu->rope_forward(o32.g, x.g, LORA_DTYPE_F32, fc.g, fs.g, B, T, NH, HS);
		snprintf(what, sizeof what, "rope_forward B=%d T=%d NH=%d HS=%d out of place", B, T, NH, HS);
		compare(what, &o32, 4, NULL);
		pair_free(&o32);
		/* BF16 in place and out of place (the saved q, k of a bf16 run): the
		 * CPU on the same bf16 values in fp32, plus one rounding */
		double u = unit_roundoff(LORA_DTYPE_BF16);
		wpair xb = wpair_rand(n, -2, 2, LORA_DTYPE_BF16);
		void *o16 = gpu_out_dt(n, LORA_DTYPE_BF16);
		gpu->rope_forward(o16, xb.g, LORA_DTYPE_BF16, fc.g, fs.g, B, T, NH, HS);
		gpu->rope_forward(xb.g, xb.g, LORA_DTYPE_BF16, fc.g, fs.g, B, T, NH, HS);
		cpu->rope_forward(xb.c, xb.c, LORA_DTYPE_F32, fc.c, fs.c, B, T, NH, HS);
		snprintf(what, sizeof what, "rope_forward B=%d T=%d NH=%d HS=%d BF16 out of place", B,
		         T, NH, HS);
		compare_dt(what, xb.c, o16, LORA_DTYPE_BF16, n, 4 * (1 + u), u);
		snprintf(what, sizeof what, "rope_forward B=%d T=%d NH=%d HS=%d BF16 in place", B, T,
		         NH, HS);
		compare_dt(what, xb.c, xb.g, LORA_DTYPE_BF16, n, 4 * (1 + u), u);
		gpu->free(o16);
		wpair_free(&xb);
		cpu->rope_forward(x.c, x.c, LORA_DTYPE_F32, fc.c, fs.c, B, T, NH, HS);
		gpu->rope_forward(x.g, x.g, LORA_DTYPE_F32, fc.g, fs.g, B, T, NH, HS);
		snprintf(what, sizeof what, "rope_forward B=%d T=%d NH=%d HS=%d", B, T, NH, HS);
		compare(what, &x, 4, NULL);
		/* backward out of place (x is dout): fp32 alone, bf16 alone (a bf16
		 * run's q or k without LoRA), both (with LoRA), over NaN */
		pair want = pair_out(n);
		cpu->rope_backward(want.c, NULL, x.c, fc.c, fs.c, B, T, NH, HS);
		for (int mode = 0; mode < 3; mode++) {
			static const char *mn[] = { "fp32", "BF16 alone", "fp32 beside BF16" };
			pair d = pair_out(n);
			void *db = mode ? gpu_out_dt(n, LORA_DTYPE_BF16) : NULL;
			gpu->rope_backward(mode != 1 ? d.g : NULL, db, x.g, fc.g, fs.g, B, T, NH, HS);
			if (mode != 1) {
				cpu->copy(d.c, want.c, n * 4);
				snprintf(what, sizeof what, "rope_backward B=%d T=%d NH=%d HS=%d: %s", B, T,
				         NH, HS, mn[mode]);
				compare(what, &d, 8, NULL);
			}
			if (db) {
				snprintf(what, sizeof what, "rope_backward B=%d T=%d NH=%d HS=%d: BF16, %s",
				         B, T, NH, HS, mn[mode]);
				compare_dt(what, want.c, db, LORA_DTYPE_BF16, n, 8 * (1 + u), u);
				gpu->free(db);
			}
			pair_free(&d);
		}
		pair_free(&want);
		/* in place, fp32 */
		cpu->rope_backward(x.c, NULL, x.c, fc.c, fs.c, B, T, NH, HS);
		gpu->rope_backward(x.g, NULL, x.g, fc.g, fs.g, B, T, NH, HS);
		snprintf(what, sizeof what, "rope_backward B=%d T=%d NH=%d HS=%d", B, T, NH, HS);
		compare(what, &x, 8, NULL);
		pair_free(&fc); pair_free(&fs); pair_free(&x);
		free(ch); free(sh);
	}
}

/* ---- attention ----------------------------------------------------------------------------------------- */

/* In a bf16 run, head sizes 64 and 128 take the tensor-core kernels
 * (attention_tc.cu), which round q, k, v, dout, P and dS to bf16: there the
 * inputs are rounded to bf16 for both backends, and the tolerance is a few
 * bf16 roundings (u = 2^-8) of (|cpu| + max|cpu|): 4u forward, 16u backward.
 * (LORA_CUDA_ATTN=fp32 in the environment makes those runs take the fp32
 * kernels, which must pass the same, looser, bounds; LORA_CUDA_ATTN=tc makes
 * the fp32 runs at those head sizes take the tensor cores, so they are held
 * to the tensor-core bounds, with bf16 inputs, too.)
 *
 * A bf16 run also keeps q, k, v and out in BF16 (adt): those cases give the
 * GPU bf16 buffers holding the bf16 values the CPU gets in F32, so both
 * read the same inputs, and the GPU's out is its fp32 result rounded once
 * more to bf16: the forward bound above plus u·|cpu| per element
 * (act_compare). The backward then gets the CPU's out rounded to bf16 on
 * both sides (the out such a run saves), and its fp32 gradients are held
 * to the bounds of the F32 cases. */

/* compare() for an activation, the GPU's values widened to F32, with k
 * the bound for the fp32 result x. In BF16 the GPU rounded x once (to
 * nearest, unit roundoff u = 2^-8): |bf16(x) − cpu| <= u·|x| + |x − cpu|
 * <= u·|cpu| + (1 + u)·|x − cpu|, so the bound grows by u·|cpu| per element
 * and k by the factor 1 + u. */
static void act_compare(const char *what, const wpair *a, double k)
{
	double u = unit_roundoff(a->dt);
	compare_dt(what, a->c, a->g, a->dt, a->n, k * (1 + u), u);
}

/* The split cases (test_attention): the GPU's dk, dv of the first run (the
 * group in one block), which the next runs, on the same inputs, must match
 * to fp32 summation order: the CPU bounds above (bf16 rounding of P, dS)
 * are loose enough for the last keys' small gradients (few queries see
 * them) to hide a wrong sum there. */
static float *split_ref;
static int split_on;

/* One shape, forward and backward. bf: the op's bf16 flag; adt: the dtype
 * of q, k, v and out on the GPU. */
static void attention_case(int B, int T, int NH, int NKV, int HS, int bf, lora_dtype adt)
{
	const char *e = getenv("LORA_CUDA_ATTN");
	int tc = (HS == 64 || HS == 128) && (bf || (e && (!strcmp(e, "tc") || !strcmp(e, "wmma"))));
	lora_dtype dt = tc ? LORA_DTYPE_BF16 : LORA_DTYPE_F32;   /* rounding of the inputs */
	size_t nq = (size_t)B * T * NH * HS, nk = (size_t)B * T * NKV * HS;
	wpair q = act_rand(nq, -2, 2, dt, adt), k = act_rand(nk, -2, 2, dt, adt);
	wpair v = act_rand(nk, -2, 2, dt, adt), out = act_alloc(nq, adt);
	for (size_t i = 0; i < nq; i++)
		out.h[i] = NAN;              /* so that unwritten elements fail */
	act_upload(&out);
	float *sc = be_alloc(cpu, cpu->attention_saved_floats(B, T, NH) * 4 + 4);
	float *sg = be_alloc(gpu, gbytes(gpu->attention_saved_floats(B, T, NH), 4));
	cpu->attention_forward(out.c, sc, q.c, k.c, v.c, LORA_DTYPE_F32, B, T, NH, NKV, HS, bf);
	gpu->attention_forward(out.g, sg, q.g, k.g, v.g, adt, B, T, NH, NKV, HS, bf);
	char what[160], name[96];
	const char *split = getenv("LORA_CUDA_ATTN_SPLIT");
	snprintf(name, sizeof name, "B=%d T=%d NH=%d NKV=%d HS=%d%s%s%s%s", B, T, NH, NKV, HS,
	         tc ? " (tensor cores)" : "", adt == LORA_DTYPE_BF16 ? " BF16 q,k,v,out" : "",
	         split ? " split " : "", split ? split : "");
	/* scores: sums of HS products; softmax over T keys; o sums of T terms */
	double kf = tc ? 4.0 / 256 / EPS32 : 2.0 * HS + 2.0 * T + 16;
	snprintf(what, sizeof what, "attention_forward %s", name);
	act_compare(what, &out, kf);

	if (adt == LORA_DTYPE_BF16) {     /* both sides: the CPU's out rounded to bf16 */
		cpu->download(out.h, out.c, nq * 4);
		for (size_t i = 0; i < nq; i++)
			out.h[i] = round_to(out.h[i], adt);
		act_upload(&out);
	}
	/* dq, dk, dv are written: NaN on the GPU, so an accumulate fails */
	pair dout = pair_rand_dt(nq, -1, 1, dt), dq = pair_out(nq);
	pair dk = pair_out(nk), dv = pair_out(nk);
	float *xc = be_alloc(cpu, cpu->attention_scratch_floats(B, T, NH, NKV, HS) * 4 + 4);
	float *xg = be_alloc(gpu, gbytes(gpu->attention_scratch_floats(B, T, NH, NKV, HS), 4));
	cpu->attention_backward(dq.c, dk.c, dv.c, dout.c, sc, q.c, k.c, v.c, out.c, LORA_DTYPE_F32,
	                        B, T, NH, NKV, HS, xc, bf);
	gpu->attention_backward(dq.g, dk.g, dv.g, dout.g, sg, q.g, k.g, v.g, out.g, adt,
	                        B, T, NH, NKV, HS, xg, bf);
	double kb = tc ? 16.0 / 256 / EPS32 : 4.0 * HS + 4.0 * T * (NH / NKV) + 32;
	/* dq and dk come from dS = P∘(dP − D), a difference that cancels (to 0
	 * exactly at T = 1): their tolerance also scales with max|dv| (dv =
	 * Pᵀ·dO, of the gradients' size, no cancellation) */
	float *hv = host_of(&dv);
	float floor_v = (float)(kb * EPS32 * maxabs(hv, nk));
	float *bq = lora_xmalloc(nq * 4 + 4);
	for (size_t i = 0; i < nq; i++)
		bq[i] = floor_v;
	/* On the tensor cores dv is also held to its own size, element by
	 * element: P rounded to bf16 moves it by at most u/2 of Σ_t P·|dO|, the
	 * CPU's dv of |dout| (P >= 0), so 16u of that plus fp32 order; else a
	 * wrong value for a key that few queries see (the last ones) hides under
	 * the max|dv| term of the bound above. */
	float *bv = NULL;
	if (tc) {
		float *ad = host_of(&dout);
		for (size_t i = 0; i < nq; i++)
			ad[i] = fabsf(ad[i]);
		float *adc = be_alloc(cpu, nq * 4 + 4), *t1 = be_alloc(cpu, nq * 4 + 4);
		float *t2 = be_alloc(cpu, nk * 4 + 4), *t3 = be_alloc(cpu, nk * 4 + 4);
		cpu->upload(adc, ad, nq * 4);
		cpu->attention_backward(t1, t2, t3, adc, sc, q.c, k.c, v.c, out.c, LORA_DTYPE_F32,
		                        B, T, NH, NKV, HS, xc, bf);
		bv = lora_xmalloc(nk * 4 + 4);
		cpu->download(bv, t3, nk * 4);
		for (size_t i = 0; i < nk; i++)
			bv[i] *= 16.0f / 256;
		free(ad);
		cpu->free(adc); cpu->free(t1); cpu->free(t2); cpu->free(t3);
	}
	pair *grads[3] = { &dq, &dk, &dv };
	for (int g = 0; g < 3; g++) {
		snprintf(what, sizeof what, "attention_backward %s: d%c", name, "qkv"[g]);
		compare(what, grads[g], kb, g < 2 ? bq : NULL);
	}
	if (bv) {
		snprintf(what, sizeof what, "attention_backward %s: dv per element", name);
		compare(what, &dv, 64, bv);
		free(bv);
	}
	if (split_on) {
		float *gk = lora_xmalloc(2 * nk * 4 + 4);
		gpu->download(gk, dk.g, nk * 4);
		gpu->download(gk + nk, dv.g, nk * 4);
		if (!split_ref) {
			split_ref = gk;
		} else {
			/* 64 eps32 of max: fp32 order (4-5 seen); a lost part: ~1e6 */
			snprintf(what, sizeof what, "attention_backward %s: dk, dv against one block",
			         name);
			compare_host(what, split_ref, gk, 2 * nk, 64, NULL, 0);
			free(gk);
		}
	}
	free(hv);
	free(bq);
	wpair_free(&q); wpair_free(&k); wpair_free(&v); wpair_free(&out);
	pair_free(&dout); pair_free(&dq); pair_free(&dk); pair_free(&dv);
	cpu->free(sc); gpu->free(sg); cpu->free(xc); gpu->free(xg);
}

static void test_attention(void)
{
	static const int shapes[][5] = {      /* B, T, NH, NKV, HS */
		{ 1, 1, 1, 1, 4 }, { 2, 7, 4, 2, 6 }, { 1, 33, 4, 1, 16 }, { 2, 65, 6, 3, 64 },
		{ 1, 100, 4, 2, 128 }, { 1, 37, 2, 1, 200 }, { 1, 70, 2, 2, 256 }, { 1, 300, 2, 1, 64 },
		{ 2, 64, 2, 1, 64 }, { 1, 130, 4, 4, 128 }, { 1, 1, 2, 1, 128 },
	};
	/* each shape twice: an fp32 run (CUDA-core kernels) and a bf16 run
	 * (tensor-core kernels where HS is 64 or 128, with inputs that are
	 * bf16 values, as they are in such a run); elsewhere the bf16 run
	 * takes the same kernels as the fp32 run */
	/* LORA_TEST_ATTN_MAX_HS=n leaves out head sizes above n: on a GPU with
	 * 99 KiB of shared memory per block (sm_86, sm_89: tests/run.sh
	 * emulates one) the fp32 kernels stop at HS 196, a clear error above */
	const char *mh = getenv("LORA_TEST_ATTN_MAX_HS");
	int max_hs = mh && *mh ? atoi(mh) : 1 << 30;
	for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
		if (shapes[s][4] > max_hs) {
			printf("      skipped: HS=%d (LORA_TEST_ATTN_MAX_HS=%d)\n", shapes[s][4], max_hs);
			continue;
		}
		for (int bf = 0; bf < 1 + (shapes[s][4] == 64 || shapes[s][4] == 128); bf++)
			attention_case(shapes[s][0], shapes[s][1], shapes[s][2], shapes[s][3],
			               shapes[s][4], bf, LORA_DTYPE_F32);
	}
	/* q, k, v, out in BF16: the fp32 kernels (bf 0; odd HS, one of each
	 * NDL but 8) and the tensor cores (bf 1), odd T, GQA */
	static const int bshapes[][6] = {     /* B, T, NH, NKV, HS, bf */
		{ 2, 7, 4, 2, 6, 0 }, { 2, 37, 6, 2, 40, 0 }, { 1, 45, 4, 1, 128, 0 },
		{ 2, 65, 6, 3, 64, 1 }, { 1, 99, 4, 2, 128, 1 }, { 1, 1, 2, 1, 64, 1 },
	};
	for (size_t s = 0; s < sizeof bshapes / sizeof *bshapes; s++)
		attention_case(bshapes[s][0], bshapes[s][1], bshapes[s][2], bshapes[s][3],
		               bshapes[s][4], bshapes[s][5], LORA_DTYPE_BF16);
	/* A group of 4 query heads per KV head, its dk, dv in 1, 2 and (the
	 * choice at this size) 4 parts of the group (attention_mma.cu; the
	 * other kernels do not split, so they take this shape once) */
	const char *keep = getenv("LORA_CUDA_ATTN_SPLIT"), *e = getenv("LORA_CUDA_ATTN");
	int mma = !e || !strcmp(e, "tc");
	lora_rng r0 = rng;                  /* the same inputs for each */
	split_on = mma;
	for (int parts = 1; parts <= 2 && mma; parts++) {
		setenv("LORA_CUDA_ATTN_SPLIT", parts == 1 ? "1" : "2", 1);
		rng = r0;
		attention_case(2, 130, 8, 2, 64, 1, LORA_DTYPE_BF16);
	}
	if (keep)
		setenv("LORA_CUDA_ATTN_SPLIT", keep, 1);
	else
		unsetenv("LORA_CUDA_ATTN_SPLIT");
	rng = r0;
	attention_case(2, 130, 8, 2, 64, 1, LORA_DTYPE_BF16);
	split_on = 0;
	free(split_ref);
	split_ref = NULL;
}

/* ---- SwiGLU and add --------------------------------------------------------------------------------------- */

/* SwiGLU forward and backward, gate, up and out in adt on the GPU (BF16: a
 * bf16 run's saved activations; the gradients are fp32 either way). */
static void swiglu_case(size_t n, lora_dtype adt)
{
	char what[96];
	const char *dn = adt == LORA_DTYPE_F32 ? "" : " BF16";
	wpair g = wpair_rand(n, -8, 8, adt), u = wpair_rand(n, -2, 2, adt);
	pair out = pair_out(n), dout = pair_rand(n, -1, 1), dg = pair_out(n), du = pair_out(n);
	void *og = gpu_out_dt(n, adt);
	cpu->swiglu_forward(out.c, g.c, u.c, LORA_DTYPE_F32, n);
	gpu->swiglu_forward(og, g.g, u.g, adt, n);
	snprintf(what, sizeof what, "swiglu_forward N=%zu%s", n, dn);
	compare_dt(what, out.c, og, adt, n, 4, unit_roundoff(adt));
	cpu->swiglu_backward(dg.c, du.c, NULL, NULL, dout.c, g.c, u.c, LORA_DTYPE_F32, n);
	gpu->swiglu_backward(dg.g, du.g, NULL, NULL, dout.g, g.g, u.g, adt, n);
	snprintf(what, sizeof what, "swiglu_backward N=%zu%s: dgate", n, dn);
	compare(what, &dg, 8, NULL);
	snprintf(what, sizeof what, "swiglu_backward N=%zu%s: dup", n, dn);
	compare(what, &du, 8, NULL);
	/* the gradients rounded once to bf16 (a bf16 run's GEMM operands):
	 * alone, beside the fp32 ones, and (bf16 activations) over gate and up */
	double ur = unit_roundoff(LORA_DTYPE_BF16);
	for (int mode = 0; mode < (adt == LORA_DTYPE_BF16 ? 3 : 2); mode++) {
		static const char *mn[] = { "alone", "beside fp32", "over gate, up" };
		void *dgb = mode < 2 ? gpu_out_dt(n, LORA_DTYPE_BF16) : g.g;
		void *dub = mode < 2 ? gpu_out_dt(n, LORA_DTYPE_BF16) : u.g;
		pair dg2 = pair_out(n), du2 = pair_out(n);
		gpu->swiglu_backward(mode == 1 ? dg2.g : NULL, mode == 1 ? du2.g : NULL, dgb, dub,
		                     dout.g, g.g, u.g, adt, n);
		snprintf(what, sizeof what, "swiglu_backward N=%zu%s: BF16 dgate, %s", n, dn, mn[mode]);
		compare_dt(what, dg.c, dgb, LORA_DTYPE_BF16, n, 8 * (1 + ur), ur);
		snprintf(what, sizeof what, "swiglu_backward N=%zu%s: BF16 dup, %s", n, dn, mn[mode]);
		compare_dt(what, du.c, dub, LORA_DTYPE_BF16, n, 8 * (1 + ur), ur);
		if (mode == 1) {
			cpu->copy(dg2.c, dg.c, n * 4);
			cpu->copy(du2.c, du.c, n * 4);
			snprintf(what, sizeof what, "swiglu_backward N=%zu%s: dgate beside BF16", n, dn);
			compare(what, &dg2, 8, NULL);
			snprintf(what, sizeof what, "swiglu_backward N=%zu%s: dup beside BF16", n, dn);
			compare(what, &du2, 8, NULL);
		}
		if (mode < 2) {
			gpu->free(dgb);
			gpu->free(dub);
		}
		pair_free(&dg2);
		pair_free(&du2);
	}
	gpu->free(og);
	wpair_free(&g); wpair_free(&u);
	pair_free(&out); pair_free(&dout); pair_free(&dg); pair_free(&du);
}

static void test_elementwise(void)
{
	static const size_t sizes[] = { 1, 1000, 4099, 1 << 20 };
	for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
		size_t n = sizes[s];
		char what[96];
		swiglu_case(n, LORA_DTYPE_F32);
		swiglu_case(n, LORA_DTYPE_BF16);

		pair g = pair_rand(n, -8, 8), u = pair_rand(n, -2, 2), out = pair_out(n);
		cpu->add_forward(out.c, g.c, u.c, n);
		gpu->add_forward(out.g, g.g, u.g, n);
		snprintf(what, sizeof what, "add_forward N=%zu", n);
		compare(what, &out, 0, NULL);
		cpu->add_forward(g.c, g.c, u.c, n);      /* in place */
		gpu->add_forward(g.g, g.g, u.g, n);
		snprintf(what, sizeof what, "add_forward N=%zu in place", n);
		compare(what, &g, 0, NULL);
		cpu->scale(g.c, 0.37f, n);
		gpu->scale(g.g, 0.37f, n);
		snprintf(what, sizeof what, "scale N=%zu", n);
		compare(what, &g, 0, NULL);

		pair_free(&g); pair_free(&u); pair_free(&out);
	}
}

/* ---- cross-entropy ----------------------------------------------------------------------------------------- */

static void test_crossentropy(void)
{
	static const int shapes[][2] = { { 1, 1 }, { 5, 7 }, { 33, 1000 }, { 9, 32003 }, { 4, 128256 } };
	for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
		int N = shapes[s][0], V = shapes[s][1];
		int32_t *t = lora_xmalloc(N * 4);
		int count = 0;
		for (int n = 0; n < N; n++) {
			t[n] = (lora_rng_next(&rng) % 4 == 0 && N > 1) ? LORA_IGNORE_INDEX
			                                                : (int32_t)(lora_rng_next(&rng) % V);
			count += t[n] != LORA_IGNORE_INDEX;
		}
		int32_t *tc = be_alloc(cpu, N * 4), *tg = be_alloc(gpu, N * 4);
		cpu->upload(tc, t, N * 4);
		gpu->upload(tg, t, N * 4);
		pair x = pair_rand((size_t)N * V, -8, 8), loss = pair_out(N);
		cpu->crossentropy_forward(loss.c, x.c, tc, N, V);
		gpu->crossentropy_forward(loss.g, x.g, tg, N, V);
		char what[96];
		/* log Σ exp over V: each GPU thread sums V/512 terms, then a tree */
		double kv = 4.0 * (V / 512.0 + 64);
		snprintf(what, sizeof what, "crossentropy_forward N=%d V=%d", N, V);
		compare(what, &loss, kv, NULL);
		float dloss = 1.0f / (count ? count : 1);
		pair d = pair_out((size_t)N * V);
		for (int inplace = 0; inplace < 2; inplace++) {
			pair *dst = inplace ? &x : &d;
			cpu->crossentropy_backward(dst->c, x.c, tc, dloss, N, V);
			gpu->crossentropy_backward(dst->g, x.g, tg, dloss, N, V);
			/* relative error of exp(x − lse) is that of lse, plus the target's
			 * subtraction of dloss */
			snprintf(what, sizeof what, "crossentropy_backward N=%d V=%d%s", N, V,
			         inplace ? " in place" : "");
			compare(what, dst, kv * 10 + 8, NULL);
		}
		pair_free(&x); pair_free(&loss); pair_free(&d);
		cpu->free(tc); gpu->free(tg);
		free(t);
	}
}

/* ---- optimizer ------------------------------------------------------------------------------------------------ */

/* sumsq_segments on offsets[0..nseg] (relative to offsets[0]) of x: the
 * GPU's sums against the CPU's (double sums of the same floats, another
 * order: 1e-9 relative); twice in a row: bit for bit the same. */
static int segs_check(const char *what, const pair *x, const size_t *off, int nseg)
{
	double *a = lora_xmalloc((nseg + 1) * sizeof(double));
	double *b = lora_xmalloc((nseg + 1) * sizeof(double));
	double *b2 = lora_xmalloc((nseg + 1) * sizeof(double));
	for (int k = 0; k < nseg; k++)
		b[k] = b2[k] = NAN;
	cpu->sumsq_segments(x->c, off, nseg, a);
	gpu->sumsq_segments(x->g, off, nseg, b);
	gpu->sumsq_segments(x->g, off, nseg, b2);
	int bad = 0, same = 1;
	for (int k = 0; k < nseg; k++) {
		if (!(fabs(b[k] - a[k]) <= 1e-9 * a[k])) {
			if (bad < 5)
				printf("      %s: segment %d of %zu values: gpu %.17g cpu %.17g\n", what, k,
				       off[k + 1] - off[k], b[k], a[k]);
			bad++;
		}
		same &= b[k] == b2[k];
	}
	char w[160];
	snprintf(w, sizeof w, "%s (%d segments)", what, nseg);
	test_cond(w, bad == 0);
	snprintf(w, sizeof w, "%s: deterministic", what);
	test_cond(w, same);
	free(a);
	free(b);
	free(b2);
	return bad == 0;
}

static void test_sumsq_segments(void)
{
	/* odd sizes around the 8192-value chunk, empty ones at both ends and
	 * inside, offsets not starting at 0 (a run in the middle of a list) */
	static const size_t len[] = { 0, 1, 7, 8191, 8192, 8193, 0, 100003, 3, 16385, 0 };
	int nseg = sizeof len / sizeof *len;
	size_t off[sizeof len / sizeof *len + 1];
	off[0] = 12345;
	for (int k = 0; k < nseg; k++)
		off[k + 1] = off[k] + len[k];
	pair x = pair_rand(off[nseg] - off[0], -3, 3);
	segs_check("sumsq_segments odd sizes", &x, off, nseg);
	/* the same number of segments, other offsets: the device table must follow */
	size_t off2[sizeof len / sizeof *len + 1];
	for (int k = 0; k <= nseg; k++)
		off2[k] = off[k] - off[0];
	off2[2] += 1;
	off2[nseg - 1] -= 5;
	segs_check("sumsq_segments other offsets, same count", &x, off2, nseg);
	segs_check("sumsq_segments first offsets again", &x, off, nseg);
	/* one segment: the same as sumsq */
	size_t one[2] = { 0, off[nseg] - off[0] };
	double a = gpu->sumsq(x.g, one[1]), b = NAN;
	gpu->sumsq_segments(x.g, one, 1, &b);
	test_close("sumsq_segments one segment = sumsq", b, a, 1e-12, 0);
	/* all empty */
	size_t zeros[4] = { 9, 9, 9, 9 };
	double z[3] = { NAN, NAN, NAN };
	gpu->sumsq_segments(x.g, zeros, 3, z);
	test_cond("sumsq_segments: all segments empty", z[0] == 0 && z[1] == 0 && z[2] == 0);
	pair_free(&x);
	/* many segments (an adapter on every layer of a 7B model has 448) */
	int many = 1001;
	size_t *mo = lora_xmalloc((many + 1) * sizeof(size_t));
	mo[0] = 0;
	for (int k = 0; k < many; k++)
		mo[k + 1] = mo[k] + (k % 97 == 0 ? 0 : lora_rng_next(&rng) % 500);
	pair y = pair_rand(mo[many], -1, 1);
	segs_check("sumsq_segments many", &y, mo, many);
	pair_free(&y);
	free(mo);
}

static void test_optim(void)
{
	static const size_t sizes[] = { 1, 1000, 12345 };
	for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
		size_t n = sizes[s];
		pair p = pair_rand(n, -1, 1), m = pair_rand(n, -0.1f, 0.1f), v = pair_rand(n, 0, 0.01f);
		char what[96];
		for (int step = 1; step <= 3; step++) {
			pair g = pair_rand(n, -1, 1);
			double bc1 = 1 - pow(0.9, step), bc2 = 1 - pow(0.999, step);
			cpu->adamw_update(p.c, g.c, m.c, v.c, n, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f, bc1, bc2);
			gpu->adamw_update(p.g, g.g, m.g, v.g, n, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f, bc1, bc2);
			pair_free(&g);
		}
		snprintf(what, sizeof what, "adamw_update n=%zu, 3 steps: p", n);
		compare(what, &p, 16, NULL);
		snprintf(what, sizeof what, "adamw_update n=%zu, 3 steps: m", n);
		compare(what, &m, 16, NULL);
		snprintf(what, sizeof what, "adamw_update n=%zu, 3 steps: v", n);
		compare(what, &v, 16, NULL);
		pair_free(&p); pair_free(&m); pair_free(&v);
	}
	static const size_t ns[] = { 0, 1, 1000, (1 << 20) + 3 };
	for (size_t s = 0; s < sizeof ns / sizeof *ns; s++) {
		pair x = pair_rand(ns[s], -3, 3);
		double a = cpu->sumsq(x.c, ns[s]), b = gpu->sumsq(x.g, ns[s]);
		char what[64];
		snprintf(what, sizeof what, "sumsq n=%zu", ns[s]);
		test_close(what, b, a, 1e-9, 0);
		pair_free(&x);
	}
	test_sumsq_segments();
}

int main(void)
{
	const char *seed = getenv("LORA_TEST_SEED");
	rng.s = seed ? strtoull(seed, NULL, 10) : 20261123;
	cpu = lora_backend_cpu();
	gpu = lora_backend_cuda(0);
	if (!gpu) {
		printf("skipped: %s\n", lora_errmsg());
		return 77;
	}
	printf("CUDA backend %s vs cpu, seed %llu\n", gpu->name, (unsigned long long)rng.s);
	/* LORA_TEST_ONLY=attention,rope runs those groups only */
	const char *only = getenv("LORA_TEST_ONLY");
#define GROUP(name) if (!only || strstr(only, #name)) test_##name()
	GROUP(memory);
	GROUP(embedding);
	GROUP(rmsnorm);
	GROUP(linear);
	GROUP(lora);
	GROUP(rope);
	GROUP(attention);
	GROUP(elementwise);
	GROUP(crossentropy);
	GROUP(optim);
#undef GROUP
	size_t used, peak, cap;
	gpu->mem_info(&used, &peak, &cap);
	printf("GPU memory: %zu bytes held at the end, peak %zu, capacity %zu\n", used, peak, cap);
	return test_report();
}
#endif
