/* fixture.h: a tensor of a fixture file (written by a tests/gen script) as a
 * fresh f32 array, for the engine's golden tests.
 *
 *     float *w = fixture_f32(f, "logits", &n, "tests/gen/gen_llama.py");
 *     ... free(w);
 *
 * A missing tensor or an unconvertible dtype ends the test (exit 1) with a
 * line saying which script regenerates the fixture. One spare element is
 * allocated so that a 0-element tensor still gets a pointer. */
#ifndef LORA_TEST_FIXTURE_H
#define LORA_TEST_FIXTURE_H
#include <stdio.h>
#include <stdlib.h>
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
#endif
