/* fixture.h: a tensor of a fixture file (written by a tests/gen script) as a
 * fresh f32 array, for the engine's golden tests.
 *
 *     float *w = fixture_f32(f, "logits", &n, "tests/gen/gen_llama.py");
 *     ... free(w);
 *
 * A missing tensor or an unconvertible dtype ends the test (exit 1) with a
 * line saying which script regenerates the fixture. One spare element is
 * allocated so that a 0-element tensor still gets a pointer.
 * fixture_ids and fixture_targets turn HF input_ids / labels into ours. */
#ifndef LORA_TEST_FIXTURE_H
#define LORA_TEST_FIXTURE_H
#include <stdio.h>
#include <stdlib.h>
#include "backend.h"       /* LORA_IGNORE_INDEX */
#include "safetensors.h"
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
#endif
