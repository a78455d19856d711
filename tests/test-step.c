/* test-step.c: the optimizer step's backend calls. One training step of a
 * small model in LoRA mode (every linear layer adapted) must make exactly
 * one adamw_update, one sumsq_segments, one zero for zero_grad and one
 * scale each for the 1/ntokens normalisation and for clipping, however many
 * tensors the adapter has; the fused calls must give bit for bit what
 * per-tensor calls give (the same step replayed on a copy of every tensor
 * in its own buffer); full fine-tuning has one gradient run and one AdamW
 * call per stretch of equal weight decay. Also the run bookkeeping of
 * lora_params and the adapter's one buffer (growing, reserved, order A0,
 * B0, A1, ...). sumsq_segments itself is checked in test-ops. The model is the engine's llama_gqa
 * fixture (tests/gen/gen_llama.py); the counts need no reference. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "llama.h"
#include "lora.h"
#include "optim.h"
#include "test.h"
#include "util.h"

#define MODEL "tests/fixtures/engine/llama_gqa"

/* ---- a counting copy of the CPU backend ---------------------------------------- */

static const lora_backend *cpu;
static lora_backend cnt;
static struct { int adamw, sumsq, segs, scale, zero; } calls;

static void c_adamw(float *p, const float *g, float *m, float *v, size_t n, float lr,
                    float b1, float b2, float eps, float wd, double bc1, double bc2)
{
	calls.adamw++;
	cpu->adamw_update(p, g, m, v, n, lr, b1, b2, eps, wd, bc1, bc2);
}
static double c_sumsq(const float *x, size_t n)
{
	calls.sumsq++;
	return cpu->sumsq(x, n);
}
static void c_segs(const float *x, const size_t *off, int nseg, double *out)
{
	calls.segs++;
	cpu->sumsq_segments(x, off, nseg, out);
}
static void c_scale(float *x, float s, size_t n)
{
	calls.scale++;
	cpu->scale(x, s, n);
}
static void c_zero(void *p, size_t bytes)
{
	calls.zero++;
	cpu->zero(p, bytes);
}

/* ---- runs of the param list -------------------------------------------------------- */

static void test_runs(void)
{
	float *d = lora_xcalloc(100, sizeof(float)), *g = lora_xcalloc(100, sizeof(float));
	float *d2 = lora_xcalloc(10, sizeof(float)), *g2 = lora_xcalloc(10, sizeof(float));
	lora_params ps = { 0 };
	lora_params_add(&ps, "a", d, g, 2, (int64_t[]){ 2, 5 }, 1);            /* [0, 10) */
	lora_params_add(&ps, "b", d + 10, g + 10, 1, (int64_t[]){ 20 }, 1);   /* follows */
	lora_params_add(&ps, "c", d + 30, g + 30, 1, (int64_t[]){ 5 }, 0);    /* decay changes */
	lora_params_add(&ps, "d", d + 35, g + 35, 1, (int64_t[]){ 5 }, 0);
	lora_params_add(&ps, "e", d2, g + 40, 1, (int64_t[]){ 10 }, 0);      /* data elsewhere */
	lora_params_add(&ps, "f", d + 50, g2, 1, (int64_t[]){ 10 }, 0);       /* grad elsewhere */
	lora_params_add(&ps, "z", d + 60, g2 + 10, 1, (int64_t[]){ 0 }, 0);   /* empty, follows */
	test_cond("runs: total and offsets", ps.total == 60 && ps.off[0] == 0 && ps.off[2] == 30 &&
	          ps.off[4] == 40 && ps.off[6] == 60 && ps.off[7] == 60);
	test_cond("runs: grads a..e are one run, f.. another", ps.ngrad_runs == 2 &&
	          ps.grad_runs[0].first == 0 && ps.grad_runs[0].count == 5 && ps.grad_runs[0].n == 50 &&
	          ps.grad_runs[1].first == 5 && ps.grad_runs[1].count == 2 && ps.grad_runs[1].n == 10);
	test_cond("runs: step runs split at decay, data and grad", ps.nstep_runs == 4 &&
	          ps.step_runs[0].count == 2 && ps.step_runs[0].n == 30 &&
	          ps.step_runs[1].first == 2 && ps.step_runs[1].count == 2 &&
	          ps.step_runs[2].first == 4 && ps.step_runs[2].count == 1 &&
	          ps.step_runs[3].first == 5 && ps.step_runs[3].count == 2);
	lora_params_free(&ps);
	test_cond("runs: free clears", ps.n == 0 && !ps.off && !ps.grad_runs && !ps.step_runs);
	free(d); free(g); free(d2); free(g2);
}

/* ---- the adapter's one buffer --------------------------------------------------------- */

static void test_adapter_buffer(const lora_backend *be)
{
	lora_adapter_config cfg = lora_adapter_config_default();
	cfg.r = 3;
	lora_adapter *ad = lora_adapter_new(&cfg, be);
	/* no reserve: the buffer grows and moves; values must survive */
	lora_adapter_add(ad, "m0", 5, 7);
	lora_adapter_init(ad, 1);
	float *a0 = lora_xmalloc(15 * sizeof(float)), *a1 = lora_xmalloc(15 * sizeof(float));
	be->download(a0, ad->mods[0].A, 15 * sizeof(float));
	be->upload(ad->mods[0].dB, (float[]){ 9 }, sizeof(float));
	for (int i = 1; i < 6; i++)
		lora_adapter_add(ad, i % 2 ? "mx" : "my", 4 + i, 11 - i);
	be->download(a1, ad->mods[0].A, 15 * sizeof(float));
	test_cond("adapter: A survives growth", !memcmp(a0, a1, 15 * sizeof(float)));
	float g9 = 0;
	be->download(&g9, ad->mods[0].dB, sizeof(float));
	test_cond("adapter: dB survives growth", g9 == 9);
	int order = ad->mods[0].A == ad->data && ad->mods[0].dA == ad->grad;
	for (int i = 0; i < ad->n; i++) {
		lora_module *m = &ad->mods[i];
		order &= m->B == m->A + (size_t)m->r * m->in && m->dB == m->dA + (size_t)m->r * m->in;
		order &= m->dA - ad->grad == m->A - ad->data;
		if (i + 1 < ad->n)
			order &= ad->mods[i + 1].A == m->B + (size_t)m->out * m->r;
	}
	test_cond("adapter: A0, B0, A1, B1, ... in one buffer, grads alike", order);
	lora_params ps = { 0 };
	lora_params_add_adapter(&ps, ad);
	test_cond("adapter: its params are one run of each kind",
	          ps.n == 12 && ps.ngrad_runs == 1 && ps.nstep_runs == 1 && ps.total == ad->used);
	lora_params_free(&ps);
	lora_adapter_free(ad);

	/* reserved: exactly one allocation of each buffer */
	size_t used0, used1;
	be->mem_info(&used0, NULL, NULL);
	ad = lora_adapter_new(&cfg, be);
	lora_adapter_reserve(ad, 3 * (5 + 7) * 4);
	float *d = ad->data;
	for (int i = 0; i < 4; i++)
		lora_adapter_add(ad, "m", 5, 7);
	be->mem_info(&used1, NULL, NULL);
	test_cond("adapter: a reserve is used as is", ad->data == d && ad->used == ad->cap &&
	          used1 - used0 == 2 * ad->cap * sizeof(float));
	lora_adapter_free(ad);
	free(a0);
	free(a1);
}

/* ---- one training step ---------------------------------------------------------------- */

/* Every tensor of ps copied into a buffer of its own (data and grad): the
 * per-tensor path the fused one must reproduce. */
static lora_params split_copy(const lora_params *ps, float **keep)
{
	lora_params r = { 0 };
	for (int i = 0; i < ps->n; i++) {
		const lora_param *p = &ps->p[i];
		float *d = cpu->alloc((p->n + 1) * sizeof(float));   /* +1: never adjacent */
		float *g = cpu->alloc((p->n + 1) * sizeof(float));
		cpu->copy(d, p->data, p->n * sizeof(float));
		cpu->copy(g, p->grad, p->n * sizeof(float));
		lora_params_add(&r, p->name, d, g, p->ndim, p->shape, p->decay);
		keep[2 * i] = d;
		keep[2 * i + 1] = g;
	}
	return r;
}

static float *keep_m, *keep_v;     /* the moments after the previous step */

static int same_data(const lora_params *a, const lora_params *b)
{
	int same = a->n == b->n;
	for (int i = 0; same && i < a->n; i++)
		same = !memcmp(a->p[i].data, b->p[i].data, a->p[i].n * sizeof(float)) &&
		       !memcmp(a->p[i].grad, b->p[i].grad, a->p[i].n * sizeof(float));
	return same;
}

static void test_step(int full)
{
	const char *mode = full ? "full" : "lora";
	char what[160];
	lora_llama *m = lora_llama_load(MODEL, &cnt, full);
	snprintf(what, sizeof what, "%s: model loads", mode);
	test_cond(what, m != NULL);
	if (!m) {
		printf("      %s\n", lora_errmsg());
		return;
	}
	if (!full) {
		lora_adapter_config cfg = lora_adapter_config_default();
		cfg.r = 4;
		cfg.targets = (1u << LORA_MOD_COUNT) - 1;
		test_cond("lora: adapter on every linear layer", lora_llama_add_lora(m, &cfg, 3) == 0);
		/* B = 0 at init would make half the gradients 0: give B values */
		lora_adapter *ad = m->lora;
		float *h = lora_xmalloc(ad->used * sizeof(float));
		lora_rng g = { 11 };
		for (size_t i = 0; i < ad->used; i++)
			h[i] = (lora_rng_uniform(&g) - 0.5f) * 0.2f;
		for (int i = 0; i < ad->n; i++)
			cnt.upload(ad->mods[i].B, h + (ad->mods[i].B - ad->data),
			           (size_t)ad->mods[i].out * ad->mods[i].r * sizeof(float));
		free(h);
	}
	int B = 2, T = 8;
	test_cond("plan", lora_llama_plan(m, B, T, 0) == 0);
	int32_t ids[16], tg[16];
	for (int i = 0; i < B * T; i++) {
		ids[i] = (i * 37 + 5) % m->cfg.vocab_size;
		tg[i] = i % 5 == 4 ? LORA_IGNORE_INDEX : (i * 53 + 1) % m->cfg.vocab_size;
	}
	lora_params *ps = lora_llama_params(m);
	lora_adamw *opt = lora_adamw_new(ps, &cnt, &(lora_adamw_config){ .lr = 1e-2f, .beta1 = 0.9f,
	                                    .beta2 = 0.99f, .eps = 1e-8f, .weight_decay = 0.1f });
	/* two steps: the second has non-zero moments */
	for (int s = 0; s < 2; s++) {
		memset(&calls, 0, sizeof calls);
		lora_params_zero_grad(ps, &cnt);
		int zeros = calls.zero;
		lora_llama_forward(m, ids, tg, B, T);
		lora_llama_backward(m);
		float **keep = lora_xmalloc(2 * ps->n * sizeof(float *));
		lora_params ref = split_copy(ps, keep);
		memset(&calls, 0, sizeof calls);
		/* train.c's step: 1/ntokens, clip (small max norm: it scales), AdamW */
		lora_params_scale_grad(ps, &cnt, 0.5f);
		float norm = lora_clip_grad_norm(ps, &cnt, 1e-3f);
		lora_adamw_step(opt, 1e-2f);
		if (!full) {
			snprintf(what, sizeof what, "lora step %d: %d tensors, one run of each kind", s,
			         ps->n);
			test_cond(what, ps->n == 2 * 7 * m->cfg.n_layers && ps->ngrad_runs == 1 &&
			          ps->nstep_runs == 1);
			snprintf(what, sizeof what, "lora step %d: zero_grad is 1 zero (got %d)", s, zeros);
			test_cond(what, zeros == 1);
			snprintf(what, sizeof what, "lora step %d: 1 adamw_update (got %d)", s, calls.adamw);
			test_cond(what, calls.adamw == 1);
			snprintf(what, sizeof what, "lora step %d: 1 sumsq_segments, no sumsq (got %d, %d)",
			         s, calls.segs, calls.sumsq);
			test_cond(what, calls.segs == 1 && calls.sumsq == 0);
			snprintf(what, sizeof what, "lora step %d: 2 scales (got %d)", s, calls.scale);
			test_cond(what, calls.scale == 2);
		} else {
			int changes = 0;       /* weights are one buffer: runs split at decay only */
			for (int i = 1; i < ps->n; i++)
				changes += ps->p[i].decay != ps->p[i - 1].decay;
			printf("      full mode: %d tensors, %d grad runs, %d step runs\n", ps->n,
			       ps->ngrad_runs, ps->nstep_runs);
			snprintf(what, sizeof what, "full step %d: one grad run, a step run per decay "
			         "stretch (%d)", s, changes + 1);
			test_cond(what, ps->ngrad_runs == 1 && ps->nstep_runs == changes + 1 &&
			          changes > 0);
			snprintf(what, sizeof what, "full step %d: adamw_update once per step run", s);
			test_cond(what, calls.adamw == ps->nstep_runs);
			snprintf(what, sizeof what, "full step %d: sumsq_segments once per grad run", s);
			test_cond(what, calls.segs == ps->ngrad_runs && calls.sumsq == 0);
			snprintf(what, sizeof what, "full step %d: zero once per grad run", s);
			test_cond(what, zeros == ps->ngrad_runs);
		}
		/* the same step tensor by tensor, moments copied from before the step */
		lora_adamw *ro = lora_adamw_new(&ref, cpu, &opt->cfg);
		ro->step = opt->step - 1;
		if (s == 1) {
			cpu->copy(ro->m, keep_m, ps->total * sizeof(float));
			cpu->copy(ro->v, keep_v, ps->total * sizeof(float));
		}
		snprintf(what, sizeof what, "%s step %d: the reference is one run per tensor", mode, s);
		test_cond(what, ref.nstep_runs == ref.n && ref.ngrad_runs == ref.n);
		for (int i = 0; i < ref.n; i++)
			cpu->scale(ref.p[i].grad, 0.5f, ref.p[i].n);
		float rnorm = lora_clip_grad_norm(&ref, cpu, 1e-3f);
		lora_adamw_step(ro, 1e-2f);
		snprintf(what, sizeof what, "%s step %d: norm = per-tensor norm, bit for bit", mode, s);
		test_cond(what, norm == rnorm && norm > 1e-3f);
		snprintf(what, sizeof what, "%s step %d: params and grads = per-tensor path, bit for bit",
		         mode, s);
		test_cond(what, same_data(ps, &ref));
		snprintf(what, sizeof what, "%s step %d: moments = per-tensor path, bit for bit", mode, s);
		test_cond(what, !memcmp(opt->m, ro->m, ps->total * sizeof(float)) &&
		          !memcmp(opt->v, ro->v, ps->total * sizeof(float)));
		/* keep this step's moments for the next reference */
		if (!keep_m) {
			keep_m = lora_xmalloc(ps->total * sizeof(float));
			keep_v = lora_xmalloc(ps->total * sizeof(float));
		}
		memcpy(keep_m, opt->m, ps->total * sizeof(float));
		memcpy(keep_v, opt->v, ps->total * sizeof(float));
		lora_adamw_free(ro);
		for (int i = 0; i < 2 * ref.n; i++)
			cpu->free(keep[i]);
		free(keep);
		lora_params_free(&ref);
	}
	free(keep_m);
	free(keep_v);
	keep_m = keep_v = NULL;
	lora_adamw_free(opt);
	lora_llama_free(m);
}

/* Llama-2-7B's shapes (32 layers, C 4096, I 11008), an adapter on every
 * linear layer: 448 tensors, still one call of each kind per step. r = 1
 * keeps it small; the counts do not depend on r. */
static void test_7b_counts(void)
{
	lora_adapter_config cfg = lora_adapter_config_default();
	cfg.r = 1;
	lora_adapter *ad = lora_adapter_new(&cfg, &cnt);
	static const int in[7] = { 4096, 4096, 4096, 4096, 4096, 4096, 11008 };
	static const int out[7] = { 4096, 4096, 4096, 4096, 11008, 11008, 4096 };
	size_t total = 0;
	for (int k = 0; k < 7; k++)
		total += 32 * (size_t)(in[k] + out[k]);
	lora_adapter_reserve(ad, total);
	for (int l = 0; l < 32; l++)
		for (int k = 0; k < 7; k++)
			lora_adapter_add(ad, lora_mod_name(k), in[k], out[k]);
	lora_params ps = { 0 };
	lora_params_add_adapter(&ps, ad);
	lora_adamw *o = lora_adamw_new(&ps, &cnt, &(lora_adamw_config){ .lr = 1e-3f, .beta1 = 0.9f,
	                                  .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 0 });
	memset(&calls, 0, sizeof calls);
	lora_params_zero_grad(&ps, &cnt);
	lora_params_scale_grad(&ps, &cnt, 0.5f);
	lora_clip_grad_norm(&ps, &cnt, 1.0f);
	lora_adamw_step(o, 1e-3f);
	printf("      7B-shaped adapter, all linear layers: %d tensors; one step: %d zero, %d scale, "
	       "%d sumsq_segments, %d sumsq, %d adamw_update\n", ps.n, calls.zero, calls.scale,
	       calls.segs, calls.sumsq, calls.adamw);
	test_cond("7B shapes: 448 tensors", ps.n == 448 && ps.total == total);
	test_cond("7B shapes: one call of each kind", calls.zero == 1 && calls.scale == 1 &&
	          calls.segs == 1 && calls.sumsq == 0 && calls.adamw == 1);
	lora_adamw_free(o);
	lora_params_free(&ps);
	lora_adapter_free(ad);
}

int main(void)
{
	cpu = lora_backend_cpu();
	cnt = *cpu;
	cnt.adamw_update = c_adamw;
	cnt.sumsq = c_sumsq;
	cnt.sumsq_segments = c_segs;
	cnt.scale = c_scale;
	cnt.zero = c_zero;
	test_runs();
	test_adapter_buffer(cpu);
	test_step(0);
	test_step(1);
	test_7b_counts();
	return test_report();
}
