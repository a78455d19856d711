/* test-llama.c: the LLaMA-family model against HF transformers + PEFT
 * (fixtures from tests/gen/gen_llama.py in tests/fixtures/engine/<case>/):
 * logits, loss, every LoRA gradient, gradient checkpointing, the losses,
 * gradient norms and learning rates of 10 AdamW steps (warmup + cosine,
 * clipping, weight decay) and the logits after them, the full fine-tuning
 * gradients, adapter save/load round trips, config errors and the memory
 * plan. Set LORA_TEST_OUT=dir to also write each trained adapter and its
 * logits there for tests/gen/check_peft_load.py. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "backend.h"
#include "llama.h"
#include "lora.h"
#include "optim.h"
#include "safetensors.h"
#include "test.h"
#include "fixture.h"
#include "util.h"

#define FIX "tests/fixtures/engine"
#define RT 1e-4

static const lora_backend *be;
static const char *tmpdir;

static float *get(st_file *f, const char *name, int64_t *n)
{
	return fixture_f32(f, name, n, "tests/gen/gen_llama.py");
}

static int close_arr(const char *what, const float *got, const float *want, int64_t n, double rtol)
{
	return fixture_close(what, got, want, n, rtol, 1e-2);
}

static void test_case(const char *name)
{
	char dir[256], path[700], what[600];
	snprintf(dir, sizeof dir, FIX "/%s", name);
	snprintf(path, sizeof path, "%s/golden.safetensors", dir);
	st_file *gf = st_open(path);
	if (!gf) {
		printf("FAIL %s\n", lora_errmsg());
		test_cond("fixture opens", 0);
		return;
	}
	printf("---- %s\n", name);
	const st_tensor *ti = st_find(gf, "ids");
	int B = ti->shape[0], T = ti->shape[1];
	float *fids = get(gf, "ids", 0), *flab = get(gf, "labels", 0);
	int32_t *ids = fixture_ids(fids, B * T), *tg = fixture_targets(flab, B, T);

	lora_llama *m = lora_llama_load(dir, be, 0);
	snprintf(what, sizeof what, "%s: load", name);
	test_cond(what, m != NULL);
	if (!m) {
		printf("      %s\n", lora_errmsg());
		goto out;
	}
	snprintf(path, sizeof path, "%s/adapter", dir);
	int rc = lora_llama_load_lora(m, path);
	if (rc)
		printf("      %s\n", lora_errmsg());
	snprintf(what, sizeof what, "%s: PEFT adapter loads", name);
	test_cond(what, rc == 0);
	if (rc)
		goto out;
	size_t used0, used1;
	be->mem_info(&used0, NULL, NULL);
	test_cond("plan", lora_llama_plan(m, B, T, 0) == 0);
	be->mem_info(&used1, NULL, NULL);
	lora_llama_opts o = { .lora = &m->lora->cfg };
	lora_llama_mem mem = lora_llama_memory(&m->cfg, be, B, T, &o);
	snprintf(what, sizeof what, "%s: planned activation bytes = allocated", name);
	test_cond(what, mem.activations == used1 - used0);
	o.grad_ckpt = 1;
	lora_llama_mem memc = lora_llama_memory(&m->cfg, be, B, T, &o);
	test_cond("checkpointing needs fewer activations", memc.activations < mem.activations);
	test_cond("lora param count", mem.trainable == m->params.total * sizeof(float));

	/* forward: loss and logits */
	int64_t nl;
	float *want_logits = get(gf, "logits", &nl), *want_loss = get(gf, "loss", 0);
	lora_params *ps = lora_llama_params(m);
	lora_params_zero_grad(ps, be);
	float loss = lora_llama_forward(m, ids, tg, B, T);
	snprintf(what, sizeof what, "%s: loss", name);
	test_close(what, loss, want_loss[0], RT, 0);
	float *logits = lora_xmalloc(nl * sizeof(float));
	lora_llama_logits(m, logits);
	snprintf(what, sizeof what, "%s: logits", name);
	close_arr(what, logits, want_logits, nl, RT);

	/* backward: every LoRA gradient */
	lora_llama_backward(m);
	int ngrad = 0;
	for (int i = 0; i < ps->n; i++) {
		char key[256];
		snprintf(key, sizeof key, "grad.%s", ps->p[i].name);
		int64_t n;
		float *want = get(gf, key, &n), *got = lora_xmalloc(n * sizeof(float));
		test_cond("grad size", (size_t)n == ps->p[i].n);
		be->download(got, ps->p[i].grad, n * sizeof(float));
		snprintf(what, sizeof what, "%s: %s", name, key);
		ngrad += close_arr(what, got, want, n, RT);
		free(want);
		free(got);
	}
	snprintf(what, sizeof what, "%s: every LoRA tensor of the fixture checked", name);
	int nfix = 0;
	for (int i = 0; i < gf->ntensors; i++)
		nfix += !strncmp(gf->tensors[i].name, "grad.", 5);
	test_cond(what, nfix == ps->n && ngrad == ps->n);

	/* gradient checkpointing: same loss, same gradients */
	float *g0 = fixture_grads(ps, be);
	fixture_fused_same(m, ids, tg, B, T, loss, g0, 0, name);
	test_cond("plan with checkpointing", lora_llama_plan(m, B, T, 1) == 0);
	lora_params_zero_grad(ps, be);
	float lossc = lora_llama_forward(m, ids, tg, B, T);
	lora_llama_backward(m);
	float *g1 = fixture_grads(ps, be);
	snprintf(what, sizeof what, "%s checkpointed", name);
	fixture_fused_same(m, ids, tg, B, T, lossc, g1, 0, what);
	snprintf(what, sizeof what, "%s: checkpointed loss", name);
	test_close(what, lossc, loss, 1e-6, 0);
	snprintf(what, sizeof what, "%s: checkpointed gradients", name);
	close_arr(what, g1, g0, ps->total, 1e-5);
	free(g1);

	/* the head in chunks of hr rows, the last one shorter (never the whole
	 * (N, V) logits): the fixture's loss, logits and gradients */
	int hr = 3;
	while (hr < B * T && (B * T) % hr == 0)
		hr++;
	char hrs[16];
	snprintf(hrs, sizeof hrs, "%d", hr);
	setenv("LORA_HEAD_ROWS", hrs, 1);
	test_cond("plan with a chunked head", lora_llama_plan(m, B, T, 0) == 0);
	unsetenv("LORA_HEAD_ROWS");
	test_cond("the head is chunked", hr < B * T);
	lora_params_zero_grad(ps, be);
	float lossh = lora_llama_forward(m, ids, tg, B, T);
	float *logitsh = lora_xmalloc(nl * sizeof(float));
	lora_llama_logits(m, logitsh);
	lora_llama_backward(m);
	g1 = fixture_grads(ps, be);
	snprintf(what, sizeof what, "%s, head in chunks of %d rows", name, hr);
	fixture_fused_same(m, ids, tg, B, T, lossh, g1, 0, what);
	snprintf(what, sizeof what, "%s: loss, head in chunks of %d rows", name, hr);
	test_close(what, lossh, want_loss[0], RT, 0);
	snprintf(what, sizeof what, "%s: logits, head in chunks of %d rows", name, hr);
	close_arr(what, logitsh, want_logits, nl, RT);
	snprintf(what, sizeof what, "%s: gradients, head in chunks of %d rows", name, hr);
	close_arr(what, g1, g0, ps->total, RT);
	test_cond("plan again, checkpointed", lora_llama_plan(m, B, T, 1) == 0);
	free(logitsh);
	free(g0);
	free(g1);

	/* 10 AdamW steps with the reference's schedule */
	float *lr = get(gf, "hp.lr", 0), *b1 = get(gf, "hp.beta1", 0), *b2 = get(gf, "hp.beta2", 0);
	float *eps = get(gf, "hp.eps", 0), *wd = get(gf, "hp.weight_decay", 0);
	float *mgn = get(gf, "hp.max_grad_norm", 0), *wu = get(gf, "hp.warmup", 0), *tot = get(gf, "hp.total", 0);
	int64_t S;
	float *sids = get(gf, "steps.ids", &S), *slab = get(gf, "steps.labels", 0);
	float *sloss = get(gf, "steps.loss", &S), *snorm = get(gf, "steps.norm", 0), *slr = get(gf, "steps.lr", 0);
	lora_adamw *opt = lora_adamw_new(ps, be, &(lora_adamw_config){ .lr = lr[0], .beta1 = b1[0],
	                                    .beta2 = b2[0], .eps = eps[0], .weight_decay = wd[0] });
	lora_schedule sch = { .kind = LORA_SCHED_COSINE, .lr = lr[0], .warmup_steps = (int64_t)wu[0],
	                      .total_steps = (int64_t)tot[0] };
	float *gl = lora_xmalloc(S * sizeof(float)), *gn = lora_xmalloc(S * sizeof(float));
	float *glr = lora_xmalloc(S * sizeof(float));
	for (int s = 0; s < S; s++) {
		int32_t *si = fixture_ids(sids + s * B * T, B * T), *st = fixture_targets(slab + s * B * T, B, T);
		lora_params_zero_grad(ps, be);
		gl[s] = lora_llama_forward(m, si, st, B, T);
		lora_llama_backward(m);
		gn[s] = lora_clip_grad_norm(ps, be, mgn[0]);
		glr[s] = lora_schedule_lr(&sch, opt->step);
		lora_adamw_step(opt, glr[s]);
		free(si);
		free(st);
	}
	snprintf(what, sizeof what, "%s: losses of 10 AdamW steps", name);
	close_arr(what, gl, sloss, S, RT);
	snprintf(what, sizeof what, "%s: gradient norms of the 10 steps", name);
	close_arr(what, gn, snorm, S, RT);
	snprintf(what, sizeof what, "%s: learning rates of the 10 steps", name);
	close_arr(what, glr, slr, S, 1e-6);
	float *want_final = get(gf, "final.logits", 0);
	m->training = 0;
	float nl2 = lora_llama_forward(m, ids, NULL, B, T);
	test_cond("forward without targets returns NaN", isnan(nl2));
	lora_llama_logits(m, logits);
	/* After 10 Adam steps fp32 rounding in near-zero gradients is amplified
	 * (Adam divides by sqrt(v)), so judge these against the largest logit:
	 * |got - want| <= 1e-4 * max|want|. */
	{
		double amax = 0, dmax = 0;
		for (int64_t i = 0; i < nl; i++) {
			amax = fmax(amax, fabs(want_final[i]));
			dmax = fmax(dmax, fabs(logits[i] - want_final[i]));
		}
		printf("      %s: logits after training: max diff %.3g of max %.3g\n", name, dmax, amax);
		test_cond("logits after training within 1e-4 of the largest", dmax <= 1e-4 * amax);
	}

	/* our adapter: save, reload into a fresh model, same logits */
	char out[600];
	snprintf(out, sizeof out, "%s/adapter-%s", tmpdir, name);
	rc = lora_llama_save_lora(m, out, dir);
	if (rc)
		printf("      %s\n", lora_errmsg());
	snprintf(what, sizeof what, "%s: adapter saves", name);
	test_cond(what, rc == 0);
	lora_llama *m2 = lora_llama_load(dir, be, 0);
	rc = m2 ? lora_llama_load_lora(m2, out) : -1;
	if (rc)
		printf("      %s\n", lora_errmsg());
	snprintf(what, sizeof what, "%s: saved adapter loads back", name);
	test_cond(what, rc == 0);
	if (rc == 0 && lora_llama_plan(m2, B, T, 0) == 0) {
		float *l2 = lora_xmalloc(nl * sizeof(float));
		m2->training = 0;
		lora_llama_forward(m2, ids, NULL, B, T);
		lora_llama_logits(m2, l2);
		snprintf(what, sizeof what, "%s: reloaded adapter gives the same logits", name);
		close_arr(what, l2, logits, nl, 1e-6);
		test_cond("same rank", m2->lora->cfg.r == m->lora->cfg.r &&
		          m2->lora->cfg.targets == m->lora->cfg.targets &&
		          m2->lora->cfg.use_rslora == m->lora->cfg.use_rslora &&
		          m2->lora->cfg.alpha == m->lora->cfg.alpha);
		free(l2);
	}
	lora_llama_free(m2);
	const char *to = getenv("LORA_TEST_OUT");
	if (to) {
		snprintf(out, sizeof out, "%s/%s", to, name);
		lora_llama_save_lora(m, out, dir);
		snprintf(path, sizeof path, "%s/logits.f32", out);
		FILE *fp = fopen(path, "wb");
		if (fp) {
			fwrite(logits, sizeof(float), nl, fp);
			fclose(fp);
		}
	}
	lora_adamw_free(opt);
	free(lr); free(b1); free(b2); free(eps); free(wd); free(mgn); free(wu); free(tot);
	free(sids); free(slab); free(sloss); free(snorm); free(slr); free(gl); free(gn); free(glr);
	free(want_final); free(want_logits); free(want_loss); free(logits);

	/* full fine-tuning: every weight's gradient */
	if (st_find(gf, "full.loss")) {
		lora_llama *f = lora_llama_load(dir, be, 1);
		test_cond("full mode loads", f != NULL);
		if (f && lora_llama_plan(f, B, T, 0) == 0) {
			lora_params *fp = lora_llama_params(f);
			lora_params_zero_grad(fp, be);
			float *wl = get(gf, "full.loss", 0);
			snprintf(what, sizeof what, "%s: full-mode loss", name);
			float lf = lora_llama_forward(f, ids, tg, B, T);
			test_close(what, lf, wl[0], RT, 0);
			lora_llama_backward(f);
			float *gfull = fixture_grads(fp, be);
			snprintf(what, sizeof what, "%s full", name);
			fixture_fused_same(f, ids, tg, B, T, lf, gfull, 0, what);
			free(gfull);
			int nf = 0;
			for (int i = 0; i < gf->ntensors; i++)
				nf += !strncmp(gf->tensors[i].name, "fullgrad.", 9);
			snprintf(what, sizeof what, "%s: full mode lists every weight once", name);
			test_cond(what, fp->n == nf && fp->total == f->n_params);
			for (int i = 0; i < fp->n; i++) {
				char key[256];
				snprintf(key, sizeof key, "fullgrad.%s", fp->p[i].name);
				int64_t n;
				float *want = get(gf, key, &n), *got = lora_xmalloc(n * sizeof(float));
				be->download(got, fp->p[i].grad, n * sizeof(float));
				snprintf(what, sizeof what, "%s: %s", name, key);
				close_arr(what, got, want, n, RT);
				free(want);
				free(got);
			}
			free(wl);
		}
		lora_llama_free(f);
	}
out:
	lora_llama_free(m);
	free(fids); free(flab); free(ids); free(tg);
	st_close(gf);
}

/* ---- config errors --------------------------------------------------------------------- */

static int write_config(const char *dir, const char *json)
{
	mkdir(dir, 0777);
	char path[300];
	snprintf(path, sizeof path, "%s/config.json", dir);
	FILE *f = fopen(path, "w");
	if (!f)
		return -1;
	fputs(json, f);
	fclose(f);
	return 0;
}

static void expect_error(const char *json, const char *needle)
{
	char dir[300], what[300];
	snprintf(dir, sizeof dir, "%s/cfg", tmpdir);
	write_config(dir, json);
	lora_llama_config c;
	int rc = lora_llama_config_load(dir, &c);
	snprintf(what, sizeof what, "config error names '%s'", needle);
	test_cond(what, rc == -1 && strstr(lora_errmsg(), needle));
	if (rc != -1 || !strstr(lora_errmsg(), needle))
		printf("      got: %s\n", rc ? lora_errmsg() : "(no error)");
}

static void test_configs(void)
{
	expect_error("{\"model_type\": \"gpt2\"}", "model_type 'gpt2'");
	expect_error("{\"model_type\": \"llama\", \"hidden_act\": \"gelu\"}", "hidden_act");
	expect_error("{\"model_type\": \"llama\", \"rope_scaling\": {\"type\": \"yarn\", \"factor\": 2}}",
	             "rope_scaling type 'yarn'");
	expect_error("{\"model_type\": \"llama\", \"rope_parameters\": {\"rope_type\": \"dynamic\"}}",
	             "rope_parameters type 'dynamic'");
	expect_error("{\"model_type\": \"qwen2\", \"use_sliding_window\": true}", "use_sliding_window");
	expect_error("{\"model_type\": \"llama\", \"hidden_size\": \"big\"}", "hidden_size");
	expect_error("{\"model_type\": \"llama\", \"num_attention_heads\": 6, \"num_key_value_heads\": 4}",
	             "inconsistent sizes");
	expect_error("{\"model_type\": \"llama\", \"attention_dropout\": 0.1}", "attention_dropout");
	expect_error("{\"model_type\": ", "config.json");
	char dir[300];
	snprintf(dir, sizeof dir, "%s/nonexistent", tmpdir);
	lora_llama_config c;
	test_cond("missing config.json", lora_llama_config_load(dir, &c) == -1 &&
	          strstr(lora_errmsg(), "No such file"));
	/* a transformers v4 Llama 3.2 style config */
	snprintf(dir, sizeof dir, "%s/cfg3", tmpdir);
	write_config(dir, "{\"model_type\": \"llama\", \"vocab_size\": 128256, \"hidden_size\": 2048,"
	             "\"num_attention_heads\": 32, \"num_key_value_heads\": 8, \"rope_theta\": 500000.0,"
	             "\"rope_scaling\": {\"factor\": 32.0, \"high_freq_factor\": 4.0, \"low_freq_factor\": 1.0,"
	             "\"original_max_position_embeddings\": 8192, \"rope_type\": \"llama3\"},"
	             "\"tie_word_embeddings\": true, \"eos_token_id\": [128001, 128008]}");
	int rc = lora_llama_config_load(dir, &c);
	test_cond("llama 3.2 config parses", rc == 0);
	test_cond("llama3 rope_scaling read", c.rope.factor == 32.0f && c.rope.theta == 500000.0f &&
	          c.rope.original_max_pos == 8192 && c.rope.high_freq_factor == 4.0f);
	test_cond("defaults: head_dim, intermediate", c.head_dim == 64 && c.intermediate_size == 11008);
	test_cond("eos from a list", c.eos_token_id == 128001 && c.tie_word_embeddings);
	/* memory plan scales as expected */
	lora_adapter_config lc = lora_adapter_config_default();
	lora_llama_opts o = { .lora = &lc };
	lora_llama_mem m1 = lora_llama_memory(&c, be, 1, 256, &o), m2 = lora_llama_memory(&c, be, 2, 256, &o);
	test_cond("activations grow with the batch", m2.activations > m1.activations &&
	          m2.weights == m1.weights && m1.weights == lora_llama_n_params(&c) * 4);
	int mb = lora_llama_max_batch(&c, be, 256, &o, m2.total, 64);
	test_cond("max batch for the memory of B = 2 is 2", mb == 2);
	test_cond("max batch 0 when nothing fits", lora_llama_max_batch(&c, be, 256, &o, m1.weights, 64) == 0);
	o.full = 1;
	lora_llama_mem mf = lora_llama_memory(&c, be, 1, 256, &o);
	test_cond("full mode: weights are trainable", mf.weights == 0 &&
	          mf.trainable == lora_llama_n_params(&c) * 4 && mf.optimizer == 2 * mf.trainable);
}

static void test_bad_model(void)
{
	/* plan beyond the context, a missing weight file */
	char dir[300];
	lora_llama *m = lora_llama_load(FIX "/llama_tied", be, 0);
	test_cond("load", m != NULL);
	if (m) {
		int rc = lora_llama_plan(m, 1, m->cfg.max_position_embeddings + 1, 0);
		test_cond("sequence longer than the context is an error",
		          rc == -1 && strstr(lora_errmsg(), "max_position_embeddings"));
		lora_adapter_config lc = lora_adapter_config_default();
		lc.targets = (1u << LORA_MOD_COUNT) - 1;
		lc.dropout = 0.1f;
		test_cond("add_lora", lora_llama_add_lora(m, &lc, 1) == 0);
		test_cond("second adapter refused", lora_llama_add_lora(m, &lc, 1) == -1);
		/* fresh PEFT init: B = 0, so the logits equal the base model's */
		test_cond("plan", lora_llama_plan(m, 1, 8, 0) == 0);
		int32_t ids[8] = { 1, 5, 9, 3, 7, 2, 8, 4 }, tg[8] = { 5, 9, 3, 7, 2, 8, 4, 6 };
		lora_params *ps = lora_llama_params(m);
		lora_params_zero_grad(ps, be);
		float l1 = lora_llama_forward(m, ids, tg, 1, 8);
		lora_llama_backward(m);
		test_cond("dropout run gives a finite loss", isfinite(l1));
		double sa = 0, sb = 0;
		for (int i = 0; i < ps->n; i++) {
			double s = be->sumsq(ps->p[i].grad, ps->p[i].n);
			if (strstr(ps->p[i].name, "lora_A"))
				sa += s;
			else
				sb += s;
		}
		test_cond("fresh adapter: dA = 0 (B = 0), dB != 0", sa == 0 && sb > 0);
		/* same seed: same dropout masks, same loss; grad_scale halves the grads */
		lora_params_zero_grad(ps, be);
		m->grad_scale = 0.5f;
		float l2 = lora_llama_forward(m, ids, tg, 1, 8);
		lora_llama_backward(m);
		double sb2 = 0;
		for (int i = 0; i < ps->n; i++)
			if (!strstr(ps->p[i].name, "lora_A"))
				sb2 += be->sumsq(ps->p[i].grad, ps->p[i].n);
		test_cond("dropout is a function of the seed", l2 == l1);
		test_close("grad_scale 0.5 scales the gradient", sqrt(sb2), 0.5 * sqrt(sb), 1e-5, 0);
		/* B = 0, so the masks show in dB only */
		m->dropout_seed = 12345;
		m->grad_scale = 1;
		lora_params_zero_grad(ps, be);
		lora_llama_forward(m, ids, tg, 1, 8);
		lora_llama_backward(m);
		double sb3 = 0;
		for (int i = 0; i < ps->n; i++)
			if (!strstr(ps->p[i].name, "lora_A"))
				sb3 += be->sumsq(ps->p[i].grad, ps->p[i].n);
		test_cond("another seed, other masks", sb3 != sb);
		m->training = 0;
		float l4 = lora_llama_forward(m, ids, tg, 1, 8);
		m->dropout_seed = 0;
		float l5 = lora_llama_forward(m, ids, tg, 1, 8);
		test_cond("eval mode: no dropout", l4 == l5);
		const lora_module *mo = &m->lora->mods[0];
		float *a = lora_xmalloc(mo->r * mo->in * sizeof(float));
		be->download(a, mo->A, mo->r * mo->in * sizeof(float));
		float bound = 1.0f / sqrtf((float)mo->in), amax = 0;
		for (int i = 0; i < mo->r * mo->in; i++)
			amax = fmaxf(amax, fabsf(a[i]));
		test_cond("A ~ U(+-1/sqrt(in))", amax <= bound && amax > 0.8f * bound);
		free(a);
		lora_llama_free(m);
	}
	snprintf(dir, sizeof dir, "%s/noweights", tmpdir);
	write_config(dir, "{\"model_type\": \"llama\", \"hidden_size\": 8, \"num_attention_heads\": 2,"
	             "\"intermediate_size\": 8, \"vocab_size\": 10, \"num_hidden_layers\": 1}");
	m = lora_llama_load(dir, be, 0);
	test_cond("missing weights is an error", m == NULL && strstr(lora_errmsg(), "model.safetensors"));
	/* a PEFT adapter whose shapes do not match the model */
	m = lora_llama_load(FIX "/mistral", be, 0);
	int rc = m ? lora_llama_load_lora(m, FIX "/llama_tied/adapter") : 0;
	test_cond("adapter for another model is an error", rc == -1 && strstr(lora_errmsg(), "shape"));
	if (rc != -1)
		printf("      got: %s\n", rc ? lora_errmsg() : "(no error)");
	lora_llama_free(m);
}

int main(void)
{
	be = lora_backend_get("cpu");
	tmpdir = getenv("TMPDIR");
	if (!tmpdir)
		tmpdir = "/tmp";
	test_case("llama_gqa");
	test_case("qwen2_bias");
	test_case("llama_tied");
	test_case("mistral");
	test_case("llama_hs64");
	test_configs();
	test_bad_model();
	return test_report();
}
