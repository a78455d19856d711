/* fixture.h: a tensor of a fixture file (written by a tests/gen script) as a
 * fresh f32 array, for the engine's golden tests.
 *
 *     float *w = fixture_f32(f, "logits", &n, "tests/gen/gen_llama.py");
 *     ... free(w);
 *
 * A missing tensor or an unconvertible dtype ends the test (exit 1) with a
 * line saying which script regenerates the fixture. One spare element is
 * allocated so that a 0-element tensor still gets a pointer.
 * fixture_ids and fixture_targets turn HF input_ids / labels into ours;
 * fixture_close compares an array with its reference the way the engine
 * tests judge gradients; fixture_grads downloads every gradient. */
#ifndef LORA_TEST_FIXTURE_H
#define LORA_TEST_FIXTURE_H
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "backend.h"       /* LORA_IGNORE_INDEX */
#include "llama.h"         /* lora_llama_forward_backward */
#include "lora.h"          /* lora_params */
#include "safetensors.h"
#include "test.h"          /* test_cond */
#include "util.h"

static inline float *fixture_f32(const st_file *f, const char *name, int64_t *n, const char *gen)
{
	const st_tensor *t = st_find(f, name);
	if (!t) {
		printf("FAIL fixture has no '%s' (regenerate with %s)\n", name, gen);
		exit(1);
	}
	float *p = lora_xcalloc((size_t)t->numel + 1, sizeof(float));
	if (st_tensor_to_f32(t, p) != 0) {    /* F64 fixtures convert too */
		printf("FAIL %s (regenerate with %s)\n", lora_errmsg(), gen);
		exit(1);
	}
	if (n)
		*n = t->numel;
	return p;
}

/* Token ids stored as floats in a fixture -> int32 (malloc'd). */
static inline int32_t *fixture_ids(const float *f, int n)
{
	int32_t *r = lora_xmalloc((size_t)n * sizeof(int32_t));
	for (int i = 0; i < n; i++)
		r[i] = (int32_t)f[i];
	return r;
}

/* HF labels (B, T) -> our targets (malloc'd): position t predicts
 * labels[t+1]; the last position predicts nothing. */
static inline int32_t *fixture_targets(const float *labels, int B, int T)
{
	int32_t *t = lora_xmalloc((size_t)B * T * sizeof(int32_t));
	for (int b = 0; b < B; b++)
		for (int i = 0; i < T; i++)
			t[b * T + i] = i + 1 < T ? (int32_t)labels[b * T + i + 1] : LORA_IGNORE_INDEX;
	return t;
}

/* |got - want| <= rtol·(|want| + floor·max|want|) + 1e-9 per element, NaN
 * fails: the absolute part is relative to the array's largest value, so
 * tiny entries of a gradient are judged against the gradient's size. The
 * first 5 mismatches and the largest difference are printed; 1 if all hold. */
static inline int fixture_close(const char *what, const float *got, const float *want,
                                int64_t n, double rtol, double floor)
{
	double amax = 0, maxd = 0;
	for (int64_t i = 0; i < n; i++)
		if (fabs(want[i]) > amax)
			amax = fabs(want[i]);
	int bad = 0;
	for (int64_t i = 0; i < n; i++) {
		double d = fabs((double)got[i] - want[i]);
		if (d > maxd || isnan(d))
			maxd = isnan(d) ? INFINITY : d;
		if (!(d <= rtol * (fabs(want[i]) + floor * amax) + 1e-9)) {
			if (bad < 5)
				printf("      %s[%lld]: got %.9g want %.9g\n", what, (long long)i, got[i], want[i]);
			bad++;
		}
	}
	if (bad)
		printf("      %s: %d of %lld differ, max abs diff %.3g (max |want| %.3g)\n", what, bad,
		       (long long)n, maxd, amax);
	test_cond(what, bad == 0);
	return bad == 0;
}

/* Every gradient of ps, downloaded from be into one malloc'd array. */
static inline float *fixture_grads(const lora_params *ps, const lora_backend *be)
{
	float *g = lora_xmalloc(ps->total * sizeof(float) + 4), *q = g;
	for (int i = 0; i < ps->n; i++) {
		be->download(q, ps->p[i].grad, ps->p[i].n * sizeof(float));
		q += ps->p[i].n;
	}
	return g;
}

/* lora_llama_forward_backward (the head's backward inside the forward)
 * against the lora_llama_forward and lora_llama_backward just run on the
 * same batch, which gave loss and the gradients g: the same bits (rtol 0),
 * or within rtol of the largest where the backend's sums are not in a fixed order (CUDA's
 * atomics in the full fine-tuning gradients of the norms and embedding). */
static inline void fixture_fused_same(lora_llama *m, const int32_t *ids, const int32_t *tg,
                                      int B, int T, float loss, const float *g, double rtol,
                                      const char *name)
{
	lora_params *ps = lora_llama_params(m);
	lora_params_zero_grad(ps, m->be);
	float l = lora_llama_forward_backward(m, ids, tg, B, T);
	float *g2 = fixture_grads(ps, m->be);
	char what[640];
	snprintf(what, sizeof what, "%s: forward_backward gives the same loss, bit for bit", name);
	test_cond(what, memcmp(&l, &loss, sizeof l) == 0);
	if (rtol > 0) {
		snprintf(what, sizeof what, "%s: forward_backward gives the same gradients", name);
		fixture_close(what, g2, g, ps->total, rtol, 1);
	} else {
		snprintf(what, sizeof what, "%s: forward_backward gives the same gradients, bit for bit",
		         name);
		test_cond(what, memcmp(g2, g, ps->total * sizeof(float)) == 0);
	}
	free(g2);
}
#endif
