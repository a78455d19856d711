/* ops_gpu.c: time each op of a backend at the shapes of one Llama-2-7B and
 * one TinyLlama layer, to see where a training step goes (STYLE.md rule 10:
 * benchmarking apart from the tests). Inputs are random (never zeros), each
 * op runs 3 times untimed and then `reps` times between two syncs; the
 * table gives the mean time, and the rate against the op's FLOPs (matrix
 * ops, attention) or against the bytes it must move (everything else).
 *
 * Usage: ops_gpu [-a] [-d device] [-r reps] [-n tokens]  (default cuda, 20, 4096)
 *   -a: the tensor-core attention lines only (run it with LORA_CUDA_ATTN=wmma
 *       beside a plain run to compare attention_mma.cu with attention_tc.cu)
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"     /* lora_backend_get */
#include "link_cuda.h"   /* the kernels linked in */
#include "lora.h"        /* lora_rng */
#include "util.h"        /* lora_time, lora_die */

static const lora_backend *be;
static int reps = 20;
static int attn_only;          /* -a */
static lora_rng rng = { 7 };

static void *rand_buf(size_t n, lora_dtype dt, float lo, float hi)
{
	float *h = lora_xmalloc(n * sizeof(float));
	for (size_t i = 0; i < n; i++)
		h[i] = lo + (hi - lo) * lora_rng_uniform(&rng);
	void *d = be->alloc(n * (dt == LORA_DTYPE_F32 ? 4 : 2));
	if (!d)
		lora_die("%s", lora_errmsg());
	be->upload_f32(d, dt, h, n);
	free(h);
	return d;
}

static float *frand(size_t n) { return rand_buf(n, LORA_DTYPE_F32, -1, 1); }

/* ---- timing ------------------------------------------------------------------------ */

static void report(const char *op, const char *shape, double sec, double flops, double bytes)
{
	if (flops > 0)
		printf("%-46s %-34s %9.3f ms %8.1f TFLOP/s\n", op, shape, sec * 1e3, flops / sec / 1e12);
	else
		printf("%-46s %-34s %9.3f ms %8.1f GB/s\n", op, shape, sec * 1e3, bytes / sec / 1e9);
	fflush(stdout);
}

#define TIME(op, shape, flops, bytes, call) do { \
	for (int i_ = 0; i_ < 3; i_++) { call; } \
	be->sync(); \
	double t_ = lora_time(); \
	for (int i_ = 0; i_ < reps; i_++) { call; } \
	be->sync(); \
	report(op, shape, (lora_time() - t_) / reps, flops, bytes); } while (0)

/* Causal attention at one layer's shape (B sequences of T). With -a
 * (attn_only) the bf16 lines only: the tensor-core kernels, which
 * LORA_CUDA_ATTN=wmma switches to attention_tc.cu's. */
static void attention_ops(int B, int T, int NH, int NKV, int HS)
{
	char s[96];
	size_t nq = (size_t)B * T * NH * HS, nk = (size_t)B * T * NKV * HS;
	float *q = frand(nq), *k = frand(nk), *v = frand(nk), *o = frand(nq);
	float *dq = frand(nq), *dk = frand(nk), *dv = frand(nk);
	float *sv = frand(be->attention_saved_floats(B, T, NH));
	float *ax = frand(be->attention_scratch_floats(B, T, NH, NKV, HS));
	double afl = 2.0 * B * NH * (double)T * T * HS;     /* causal: half of 4·T²·HS */
	snprintf(s, sizeof s, "B=%d T=%d NH=%d NKV=%d HS=%d", B, T, NH, NKV, HS);
	/* fp32 CUDA cores, then the bf16 path (tensor cores for HS 64/128) with
	 * fp32 q, k, v, out, then with bf16 ones ("bf16 act": a bf16 run's) */
	if (!attn_only) {
		TIME("attention_forward fp32", s, afl, 0,
		     be->attention_forward(o, sv, q, k, v, LORA_DTYPE_F32, B, T, NH, NKV, HS, 0));
		TIME("attention_backward fp32", s, 2 * afl, 0,
		     be->attention_backward(dq, dk, dv, o, sv, q, k, v, o, LORA_DTYPE_F32, B, T, NH, NKV, HS, ax, 0));
	}
	TIME("attention_forward bf16", s, afl, 0,
	     be->attention_forward(o, sv, q, k, v, LORA_DTYPE_F32, B, T, NH, NKV, HS, 1));
	TIME("attention_backward bf16", s, 2 * afl, 0,
	     be->attention_backward(dq, dk, dv, o, sv, q, k, v, o, LORA_DTYPE_F32, B, T, NH, NKV, HS, ax, 1));
	void *qa = rand_buf(nq, LORA_DTYPE_BF16, -1, 1), *ka = rand_buf(nk, LORA_DTYPE_BF16, -1, 1);
	void *va = rand_buf(nk, LORA_DTYPE_BF16, -1, 1), *oa = rand_buf(nq, LORA_DTYPE_BF16, -1, 1);
	TIME("attention_forward bf16 act", s, afl, 0,
	     be->attention_forward(oa, sv, qa, ka, va, LORA_DTYPE_BF16, B, T, NH, NKV, HS, 1));
	TIME("attention_backward bf16 act", s, 2 * afl, 0,
	     be->attention_backward(dq, dk, dv, o, sv, qa, ka, va, oa, LORA_DTYPE_BF16, B, T, NH, NKV, HS, ax, 1));
	void *all[] = { q, k, v, o, dq, dk, dv, sv, ax, qa, ka, va, oa };
	for (size_t i = 0; i < sizeof all / sizeof *all; i++)
		be->free(all[i]);
}

static void layer(const char *name, int N, int C, int I, int NH, int NKV, int HS, int V, int r)
{
	char s[96];
	printf("---- %s: N=%d tokens, C=%d, I=%d, heads %d/%d x %d, V=%d, r=%d\n", name, N, C, I,
	       NH, NKV, HS, V, r);
	int T = N >= 2048 ? 2048 : N, B = N / T;
	lora_dtype wd = be->wdtype;
	size_t big = (size_t)N * (V > I ? V : I);
	float *x = frand((size_t)N * C), *y = frand(big), *z = frand(big), *u = frand(big);
	void *w = rand_buf((size_t)V * C > (size_t)I * C ? (size_t)V * C : (size_t)I * C, wd, -0.02f, 0.02f);

	/* a bf16 activation (what a bf16 run's matrix products read) */
	void *xb = rand_buf((size_t)N * (C > I ? C : I), LORA_DTYPE_BF16, -1, 1);
	void *yb = rand_buf((size_t)N * (C > I ? C : I), LORA_DTYPE_BF16, -1, 1);
	/* linear: q_proj, gate/up, down, lm_head */
	int shapes[][2] = { { C, NH * HS }, { C, I }, { I, C }, { C, V } };
	for (int i = 0; i < 4; i++) {
		int K = shapes[i][0], OC = shapes[i][1];
		float *in = K == C ? x : z;
		double fl = 2.0 * N * K * OC;
		snprintf(s, sizeof s, "N=%d C=%d OC=%d", N, K, OC);
		TIME("linear_forward", s, fl, 0, be->linear_forward(y, 0, LORA_DTYPE_F32, in, LORA_DTYPE_F32, w, NULL, wd, N, K, OC));
		if (wd == LORA_DTYPE_BF16 && i < 3)
			TIME("linear_forward bf16 in", s, fl, 0,
			     be->linear_forward(y, 0, LORA_DTYPE_F32, xb, LORA_DTYPE_BF16, w, NULL, wd, N, K, OC));
		if (wd == LORA_DTYPE_BF16 && i == 2)    /* down with its LoRA branch folded in */
			TIME("linear_forward bf16 in, acc", s, fl, 0,
			     be->linear_forward(y, 1, LORA_DTYPE_F32, xb, LORA_DTYPE_BF16, w, NULL, wd, N, K,
			                        OC));
		if (wd == LORA_DTYPE_BF16 && i < 2)     /* q, gate, up of a bf16 run */
			TIME("linear_forward bf16 in/out", s, fl, 0,
			     be->linear_forward(yb, 0, LORA_DTYPE_BF16, xb, LORA_DTYPE_BF16, w, NULL, wd, N, K,
			                        OC));
		TIME("linear_backward dinp", s, fl, 0,
		     be->linear_backward(z, 1, NULL, NULL, y, LORA_DTYPE_F32, in, LORA_DTYPE_F32, w, wd, N,
		                         K, OC));
		if (wd == LORA_DTYPE_BF16 && i < 2)     /* gate, up: a bf16 dout (no LoRA there) */
			TIME("linear_backward dinp, bf16 dout", s, fl, 0,
			     be->linear_backward(z, 1, NULL, NULL, yb, LORA_DTYPE_BF16, in, LORA_DTYPE_F32, w,
			                         wd, N, K, OC));
	}
	/* LoRA r = 8 and r on a C x C layer. Bytes: lora_down reads x (4 N·C;
	 * a bf16 x 2 N·C: it meets A split in three bf16 parts on the tensor
	 * cores), lora_up reads + writes out (8 N·OC; bf16 4; acc 0, the o and
	 * down branch folded into the GEMM, writes it: 4), lora_up_backward
	 * reads dout twice (dB, dh: 8 N·OC), lora_down_backward reads x (dA) and
	 * reads + writes dinp (12 N·C; bf16 x 10; acc 0, dinp's first writer,
	 * 8). The group of 3 (q, k, v)
	 * reads its x once. */
	int rmax = r > 8 ? r : 8;
	float *A = frand((size_t)3 * rmax * C), *Bm = frand((size_t)C * rmax);
	float *h = frand((size_t)N * 3 * rmax), *dh = frand((size_t)N * 3 * rmax);
	size_t nscr = lora_down_scratch_floats(N, C, 3 * rmax, 3, 0, LORA_DTYPE_BF16);
	if (nscr < (size_t)N * C + (size_t)3 * rmax * C)
		nscr = (size_t)N * C + (size_t)3 * rmax * C;
	float *scr = frand(nscr);
	float *dA = frand((size_t)3 * rmax * C);
	int ranks[2] = { 8, r };
	for (int i = 0; i < (r > 8 ? 2 : 1); i++) {
		int rr = r > 8 ? ranks[i] : r;
		lora_branch br[3];
		for (int k = 0; k < 3; k++)
			br[k] = (lora_branch){ A + (size_t)k * rr * C, dA + (size_t)k * rr * C, rr, 1 };
		snprintf(s, sizeof s, "N=%d C=%d OC=%d r=%d", N, C, C, rr);
		TIME("lora_down", s, 0, 4.0 * N * C,
		     be->lora_down(h, x, LORA_DTYPE_F32, br, 1, 0, N, C, scr));
		TIME("lora_up", s, 0, 8.0 * N * C,
		     be->lora_up(y, 1, LORA_DTYPE_F32, h, rr, Bm, 2.0f, N, C, rr));
		TIME("lora_up acc 0 (folded)", s, 0, 4.0 * N * C,
		     be->lora_up(y, 0, LORA_DTYPE_F32, h, rr, Bm, 2.0f, N, C, rr));
		TIME("lora_up bf16 out", s, 0, 4.0 * N * C,
		     be->lora_up(yb, 1, LORA_DTYPE_BF16, h, rr, Bm, 2.0f, N, C, rr));
		TIME("lora_up_backward", s, 0, 8.0 * N * C,
		     be->lora_up_backward(dh, Bm, y, h, rr, Bm, 2.0f, N, C, rr));
		TIME("lora_down_backward", s, 0, 12.0 * N * C,
		     be->lora_down_backward(z, 1, dh, x, LORA_DTYPE_F32, br, 1, 0, N, C, scr));
		TIME("lora_down_backward acc 0", s, 0, 8.0 * N * C,
		     be->lora_down_backward(z, 0, dh, x, LORA_DTYPE_F32, br, 1, 0, N, C, scr));
		TIME("lora_down bf16 in", s, 0, 2.0 * N * C,
		     be->lora_down(h, xb, LORA_DTYPE_BF16, br, 1, 0, N, C, scr));
		TIME("lora_down bf16 in, 3 branches", s, 0, 2.0 * N * C,
		     be->lora_down(h, xb, LORA_DTYPE_BF16, br, 3, 0, N, C, scr));
		TIME("lora_down_backward bf16 in, 3", s, 0, 10.0 * N * C,
		     be->lora_down_backward(z, 1, dh, xb, LORA_DTYPE_BF16, br, 3, 0, N, C, scr));
	}
	attention_ops(B, T, NH, NKV, HS);
	size_t nq = (size_t)N * NH * HS;
	float *q = frand(nq);
	/* RoPE, norms, SwiGLU, residual, loss, optimizer: bytes moved */
	float *cs = frand((size_t)T * HS / 2), *sn = frand((size_t)T * HS / 2);
	snprintf(s, sizeof s, "B=%d T=%d NH=%d HS=%d", B, T, NH, HS);
	TIME("rope_forward", s, 0, 8.0 * nq, be->rope_forward(q, q, LORA_DTYPE_F32, cs, sn, B, T, NH, HS));
	TIME("rope_forward bf16", s, 0, 4.0 * nq,
	     be->rope_forward(yb, yb, LORA_DTYPE_BF16, cs, sn, B, T, NH, HS));
	TIME("rope_backward", s, 0, 8.0 * nq,
	     be->rope_backward(q, NULL, q, cs, sn, B, T, NH, HS));
	TIME("rope_backward bf16 out", s, 0, 6.0 * nq,
	     be->rope_backward(NULL, yb, q, cs, sn, B, T, NH, HS));
	TIME("rope_backward fp32 + bf16", s, 0, 10.0 * nq,
	     be->rope_backward(q, yb, q, cs, sn, B, T, NH, HS));
	void *nw = rand_buf(C, wd, 0.5f, 1.5f);
	float *rs = frand(N);
	snprintf(s, sizeof s, "N=%d C=%d", N, C);
	TIME("rmsnorm_forward", s, 0, 8.0 * N * C,
	     be->rmsnorm_forward(y, LORA_DTYPE_F32, rs, x, NULL, nw, wd, N, C, 1e-5f));
	TIME("rmsnorm_forward bf16 out + copy", s, 0, 10.0 * N * C,
	     be->rmsnorm_forward(yb, LORA_DTYPE_BF16, rs, x, z, nw, wd, N, C, 1e-5f));
	TIME("rmsnorm_backward", s, 0, 16.0 * N * C,
	     be->rmsnorm_backward(z, NULL, NULL, y, x, nw, wd, rs, N, C));
	TIME("rmsnorm_backward + bf16 dinp", s, 0, 18.0 * N * C,
	     be->rmsnorm_backward(z, yb, NULL, y, x, nw, wd, rs, N, C));
	size_t ni = (size_t)N * I;
	snprintf(s, sizeof s, "N=%zu", ni);
	TIME("swiglu_forward", s, 0, 12.0 * ni, be->swiglu_forward(y, z, u, LORA_DTYPE_F32, ni));
	TIME("swiglu_backward", s, 0, 20.0 * ni,
	     be->swiglu_backward(y, u, NULL, NULL, z, z, u, LORA_DTYPE_F32, ni));
	if (wd == LORA_DTYPE_BF16) {    /* a bf16 run: bf16 gate, up; dgate, dup fp32 and/or bf16 */
		TIME("swiglu_backward bf16 act", s, 0, 16.0 * ni,
		     be->swiglu_backward(y, u, NULL, NULL, z, xb, yb, LORA_DTYPE_BF16, ni));
		TIME("swiglu_backward bf16 act, bf16 grads over them", s, 0, 12.0 * ni,
		     be->swiglu_backward(NULL, NULL, xb, yb, z, xb, yb, LORA_DTYPE_BF16, ni));
		TIME("swiglu_backward bf16 act, fp32 + bf16 grads", s, 0, 20.0 * ni,
		     be->swiglu_backward(y, u, xb, yb, z, xb, yb, LORA_DTYPE_BF16, ni));
	}
	snprintf(s, sizeof s, "N=%zu", (size_t)N * C);
	TIME("add_forward", s, 0, 12.0 * N * C, be->add_forward(y, y, x, (size_t)N * C));
	int32_t *tg = be->alloc((size_t)N * 4);
	{
		int32_t *ht = lora_xmalloc((size_t)N * 4);
		for (int i = 0; i < N; i++)
			ht[i] = (int32_t)(lora_rng_next(&rng) % V);
		be->upload(tg, ht, (size_t)N * 4);
		free(ht);
	}
	snprintf(s, sizeof s, "N=%d V=%d", N, V);
	TIME("crossentropy_forward", s, 0, 4.0 * N * V, be->crossentropy_forward(z, y, tg, N, V));
	TIME("crossentropy_backward", s, 0, 8.0 * N * V,
	     be->crossentropy_backward(y, y, tg, 1e-4f, N, V));
	size_t np = (size_t)C * r;
	snprintf(s, sizeof s, "n=%zu", np);
	float *p = frand(np), *g = frand(np), *m = frand(np), *vv = rand_buf(np, LORA_DTYPE_F32, 0, 1);
	TIME("adamw_update", s, 0, 28.0 * np, be->adamw_update(p, g, m, vv, np, 1e-4f, 0.9f, 0.999f,
	                                                      1e-8f, 0, 0.5, 0.5));
	void *all[] = { p, g, m, vv, u, x, y, z, w, A, Bm, h, scr, q, cs, sn, nw, rs, tg };
	for (size_t i = 0; i < sizeof all / sizeof *all; i++)
		be->free(all[i]);
}

int main(int argc, char **argv)
{
	lora_progname = "ops_gpu";
	const char *device = "cuda";
	int N = 4096, c;
	while ((c = getopt(argc, argv, "ad:r:n:")) != -1)
		switch (c) {
		case 'a': attn_only = 1; break;
		case 'd': device = optarg; break;
		case 'r': reps = atoi(optarg); break;
		case 'n': N = atoi(optarg); break;
		default:
			fprintf(stderr, "usage: ops_gpu [-a] [-d device] [-r reps] [-n tokens]\n");
			return 2;
		}
	if (reps < 1 || N < 1)
		lora_die("bad -r or -n");
	if (!(be = lora_backend_get(device)))
		lora_die("%s", lora_errmsg());
	printf("# ops on %s, weights %s, %d reps\n", be->name, lora_dtype_name(be->wdtype), reps);
	if (attn_only) {
		int T = N >= 2048 ? 2048 : N;
		static const char *vars[] = { "LORA_CUDA_ATTN", "LORA_CUDA_ATTN_ROWS",
		                              "LORA_CUDA_ATTN_KT", "LORA_CUDA_ATTN_SPLIT" };
		printf("---- attention,");
		for (int i = 0; i < 4; i++) {
			const char *e = getenv(vars[i]);
			printf(" %s=%s", vars[i], e ? e : "(unset)");
		}
		printf("\n");
		attention_ops(N / T, T, 32, 32, 128);
		attention_ops(N / T, T, 32, 4, 64);
		return 0;
	}
	layer("Llama-2-7B layer", N, 4096, 11008, 32, 32, 128, 32000, 16);
	layer("TinyLlama layer", N, 2048, 5632, 32, 4, 64, 32000, 16);
	return 0;
}
