/* train_gpu.c: LoRA training throughput of the engine on one backend, for
 * bench/train-gpu.sh. Loads a model folder once, then for each CONFIG
 * "B:T:targets:r" attaches a fresh adapter (alpha = 2r, no dropout, as
 * bench/train_gpu_peft.py), plans the arena (retrying with gradient
 * checkpointing if it does not fit), runs `warmup` steps and then `steps`
 * timed steps of zero_grad + forward + backward + clip(1.0) + AdamW on
 * random token ids, and prints one line per config:
 *
 *   result impl=ours B=4 T=512 targets=q,v r=8 ckpt=0 tokens_per_s=...
 *          step_ms=... mem_mib=... loss_first=... loss_last=...
 *
 * mem_mib is the backend's bytes in use after the warm-up (weights, adapter,
 * AdamW moments, activation arena, workspaces): nothing is allocated during
 * a step, so that is the run's peak. On out of memory: status=oom and the
 * message.
 *
 * With LORA_CUDA_PROFILE=1, the GPU time of each op over the timed steps
 * follows each config on stderr (lora_backend_profile).
 *
 * Build: bench/gpu-bundle.sh (static where it can, to carry to a GPU box).
 * Usage: train_gpu [-d device] [-s steps] [-w warmup] model_dir config...
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"     /* lora_backend_get */
#include "link_cuda.h"   /* the kernels linked in */
#include "llama.h"       /* lora_llama_* */
#include "lora.h"        /* lora_adapter_config, lora_targets_parse */
#include "optim.h"       /* lora_adamw, lora_clip_grad_norm */
#include "util.h"        /* lora_time, lora_errmsg */

static void usage(void)
{
	fprintf(stderr, "usage: train_gpu [-d device] [-s steps] [-w warmup] model_dir B:T:targets:r ...\n");
	exit(2);
}

/* Take the adapter off again so that the next config starts clean (the
 * model has no public call for it: this is what attach() set up). */
static void detach(lora_llama *m)
{
	lora_params_free(&m->params);
	memset(&m->params, 0, sizeof m->params);
	lora_adapter_free(m->lora);
	m->lora = NULL;
	for (int l = 0; l < m->cfg.n_layers; l++)
		for (int k = 0; k < LORA_MOD_COUNT; k++)
			m->layers[l].lora[k] = -1;
}

static void run_config(lora_llama *m, const char *spec, int steps, int warmup)
{
	const lora_backend *be = m->be;
	int B, T, r;
	char targets[128];
	if (sscanf(spec, "%d:%d:%127[^:]:%d", &B, &T, targets, &r) != 4 || B < 1 || T < 2 || r < 1) {
		fprintf(stderr, "train_gpu: bad config '%s' (expected B:T:targets:r)\n", spec);
		exit(2);
	}
	printf("# config B=%d T=%d targets=%s r=%d\n", B, T, targets, r);
	fflush(stdout);
	lora_adapter_config lc = lora_adapter_config_default();
	lc.r = r;
	lc.alpha = 2.0f * r;
	lc.dropout = 0;
	if (lora_targets_parse(targets, &lc.targets) != 0) {
		fprintf(stderr, "train_gpu: %s\n", lora_errmsg());
		exit(2);
	}
	if (lora_llama_add_lora(m, &lc, 42) != 0) {
		fprintf(stderr, "train_gpu: %s\n", lora_errmsg());
		exit(1);
	}
	int ckpt = 0;
	lora_llama_opts o = { .lora = &lc };
	lora_llama_mem need = lora_llama_memory(&m->cfg, be, B, T, &o);
	if (lora_llama_plan(m, B, T, 0) != 0) {
		fprintf(stderr, "# no room without checkpointing (%s); retrying with it\n", lora_errmsg());
		ckpt = 1;
		o.grad_ckpt = 1;
		need = lora_llama_memory(&m->cfg, be, B, T, &o);
		if (lora_llama_plan(m, B, T, 1) != 0) {
			printf("result impl=ours B=%d T=%d targets=%s r=%d ckpt=1 status=oom "
			       "planned_mib=%.0f msg=\"%s\"\n", B, T, targets, r,
			       need.total / 1048576.0, lora_errmsg());
			detach(m);
			return;
		}
	}
	int V = m->cfg.vocab_size, N = B * T;
	int32_t *ids = malloc((size_t)N * sizeof(int32_t)), *tg = malloc((size_t)N * sizeof(int32_t));
	lora_rng g = { 1234 };
	lora_params *ps = lora_llama_params(m);
	lora_adamw *opt = lora_adamw_new(ps, be, &(lora_adamw_config){ .lr = 1e-4f, .beta1 = 0.9f,
	                                 .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 0.0f });
	float loss_first = 0, loss_last = 0;
	double t0 = 0;
	for (int s = 0; s < warmup + steps; s++) {
		for (int i = 0; i < N; i++)
			ids[i] = (int32_t)(lora_rng_next(&g) % V);
		for (int i = 0; i < N; i++)
			tg[i] = i % T + 1 < T ? ids[i + 1] : LORA_IGNORE_INDEX;
		if (s == warmup) {
			be->sync();
			lora_backend_profile(NULL);     /* LORA_CUDA_PROFILE: timed steps only */
			t0 = lora_time();
		}
		lora_params_zero_grad(ps, be);
		float loss = lora_llama_forward_backward(m, ids, tg, B, T);    /* synchronises (loss) */
		lora_clip_grad_norm(ps, be, 1.0f);                     /* synchronises (norm) */
		lora_adamw_step(opt, 1e-4f);
		if (s == 0)
			loss_first = loss;
		loss_last = loss;
	}
	be->sync();
	double dt = lora_time() - t0;
	char label[160];
	snprintf(label, sizeof label, "%s, %d steps", spec, steps);
	lora_backend_profile(label);
	size_t used, peak, cap;
	be->mem_info(&used, &peak, &cap);
	printf("result impl=ours B=%d T=%d targets=%s r=%d ckpt=%d status=ok tokens_per_s=%.1f "
	       "step_ms=%.2f mem_mib=%.0f planned_mib=%.0f trainable=%zu loss_first=%.4f "
	       "loss_last=%.4f\n", B, T, targets, r, ckpt, (double)N * steps / dt,
	       1e3 * dt / steps, used / 1048576.0, need.total / 1048576.0, ps->total,
	       loss_first, loss_last);
	fflush(stdout);
	lora_adamw_free(opt);
	free(ids);
	free(tg);
	detach(m);
}

int main(int argc, char **argv)
{
	lora_progname = "train_gpu";
	const char *device = "cuda";
	int steps = 10, warmup = 2, c;
	while ((c = getopt(argc, argv, "d:s:w:")) != -1)
		switch (c) {
		case 'd': device = optarg; break;
		case 's': steps = atoi(optarg); break;
		case 'w': warmup = atoi(optarg); break;
		default: usage();
		}
	if (argc - optind < 2 || steps < 1 || warmup < 0)
		usage();
	const lora_backend *be = lora_backend_get(device);
	if (!be)
		lora_die("%s", lora_errmsg());
	double t = lora_time();
	lora_llama *m = lora_llama_load(argv[optind], be, 0);
	if (!m)
		lora_die("%s", lora_errmsg());
	size_t used, peak, cap;
	be->mem_info(&used, &peak, &cap);
	printf("# loaded %s on %s in %.1f s: %zu params, %.0f MiB of %.0f MiB\n", argv[optind],
	       be->name, lora_time() - t, m->n_params, used / 1048576.0, cap / 1048576.0);
	for (int i = optind + 1; i < argc; i++)
		run_config(m, argv[i], steps, warmup);
	lora_llama_free(m);
	return 0;
}
