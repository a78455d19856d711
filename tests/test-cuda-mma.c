/* test-cuda-mma.c: the tensor-core building blocks of the default bf16
 * attention (kernels/mma.cuh: ldmatrix-based fragment loads frag_a,
 * frag_bt, frag_b, the register repacking pack_a, and mma.sync m16n8k16)
 * against the register contents CUTLASS's CuTe layouts give for them
 * (tests/gen/gen_mma.py -> tests/fixtures/engine/mma.safetensors).
 *
 * attention_mma.cu is tested end to end by test-cuda-ops, but on the
 * emulator that only shows it agrees with the emulator's reading of the
 * PTX ISA, which mma.cuh shares. This test pins that reading to an
 * independent one: on the emulator it checks the emulator, on a GPU the
 * hardware. Every register is compared exactly (bf16 bits; D is a sum of
 * small integers, exact in fp32). On a mismatch each failing check names
 * the fragment and prints the first lanes that differ.
 *
 * Without CUDA in the build, or without a GPU, it prints why and exits 77.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test.h"        /* test_cond, test_report */
#include "backend.h"     /* lora_backend_cuda */
#include "dtype.h"       /* lora_f32_to_bf16 */
#include "fixture.h"     /* fixture_f32 */
#include "safetensors.h"
#include "util.h"

#ifndef LORA_CUDA
int main(void)
{
	printf("skipped: this build has no CUDA backend (nvcc was not found)\n");
	return 77;
}
#else
#include "../kernels/probe.h"

#define FIXTURE "tests/fixtures/engine/mma.safetensors"
#define GEN "tests/gen/gen_mma.py"

static const lora_backend *gpu;
static st_file *fx;

static float *get(const char *name, int64_t want)
{
	int64_t n;
	float *p = fixture_f32(fx, name, &n, GEN);
	if (n != want) {
		printf("FAIL fixture '%s' has %lld values, not %lld (regenerate with %s)\n", name,
		       (long long)n, (long long)want, GEN);
		exit(1);
	}
	return p;
}

/* (32, R, 2) bf16 values -> (32, R) registers, the first of a pair in
 * the low half */
static void pack(uint32_t *r, const float *v, int n)
{
	for (int i = 0; i < n; i++)
		r[i] = (uint32_t)lora_f32_to_bf16(v[2 * i + 1]) << 16 | lora_f32_to_bf16(v[2 * i]);
}

static void *up(const void *h, size_t bytes)
{
	void *d = gpu->alloc(bytes);
	if (!d) {
		fprintf(stderr, "test-cuda-mma: %s\n", lora_errmsg());
		exit(1);
	}
	gpu->upload(d, h, bytes);
	return d;
}

/* 128 registers of `got` against `want`; the first 4 lanes that differ */
static void check(const char *what, const uint32_t *got, const uint32_t *want)
{
	int bad = 0;
	for (int l = 0; l < 32; l++)
		for (int j = 0; j < 4; j++)
			if (got[l * 4 + j] != want[l * 4 + j] && bad++ < 4)
				printf("  %s: lane %d register %d: 0x%08x, CuTe's layout gives 0x%08x\n",
				       what, l, j, got[l * 4 + j], want[l * 4 + j]);
	if (bad)
		printf("  %s: %d of 128 registers differ from CuTe's layout\n", what, bad);
	test_cond(what, bad == 0);
}

int main(void)
{
	gpu = lora_backend_cuda(0);
	if (!gpu) {
		printf("skipped: %s\n", lora_errmsg());
		return 77;
	}
	if (!(fx = st_open(FIXTURE))) {
		printf("FAIL %s (regenerate with %s)\n", lora_errmsg(), GEN);
		return 1;
	}
	float *x = get("x", 256), *c01 = get("c01", 256), *fa = get("frag_a", 256);
	float *fbt = get("frag_bt", 256), *fb = get("frag_b", 256), *pa = get("pack_a", 256);
	float *a = get("a", 256), *b = get("b", 128), *c = get("c", 128), *d = get("d", 128);
	uint16_t xb[256];
	for (int i = 0; i < 256; i++)
		xb[i] = lora_f32_to_bf16(x[i]);
	uint32_t ar[128], br[64], want[5][128];
	pack(ar, a, 128);
	pack(br, b, 64);
	pack(want[0], fa, 128);
	pack(want[1], fbt, 128);
	pack(want[2], fb, 128);
	pack(want[3], pa, 128);
	memcpy(want[4], d, sizeof want[4]);
	uint16_t *xg = up(xb, sizeof xb);
	float *c01g = up(c01, 256 * 4), *cg = up(c, 128 * 4);
	uint32_t *ag = up(ar, sizeof ar), *bg = up(br, sizeof br);
	uint32_t *og = gpu->alloc(5 * 128 * 4), out[5][128];
	cuda_mma_probe(xg, c01g, ag, bg, cg, og);
	gpu->download(out, og, sizeof out);
	printf("tensor-core fragments on %s against CUTLASS's layouts\n", gpu->name);
	static const char *names[5] = {
		"ldmatrix x4 -> A fragment (frag_a)",
		"ldmatrix x4 -> B fragments of a transposed tile (frag_bt)",
		"ldmatrix x4.trans -> B fragments (frag_b)",
		"C fragments -> A fragment (pack_a)",
		"mma.sync m16n8k16 bf16: D = A·B + C",
	};
	for (int k = 0; k < 5; k++)
		check(names[k], out[k], want[k]);
	void *dev[] = { xg, c01g, cg, ag, bg, og };
	for (size_t i = 0; i < sizeof dev / sizeof *dev; i++)
		gpu->free(dev[i]);
	float *host[] = { x, c01, fa, fbt, fb, pa, a, b, c, d };
	for (size_t i = 0; i < sizeof host / sizeof *host; i++)
		free(host[i]);
	st_close(fx);
	return test_report();
}
#endif
