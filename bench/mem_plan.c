/* mem_plan.c: the device memory our engine plans for LoRA training on a
 * model shape, for bench/memory.sh. For each CONFIG "B:T:targets:r" (alpha
 * 2r, no dropout, no checkpointing: bench/train_gpu.c's runs) it prints
 *
 *   plan impl=ours B=4 T=512 targets=q,v r=8 total_mib=... weights_mib=...
 *        trainable_mib=... activations_mib=... layer_kb_per_token=...
 *
 * total is everything the run holds (a step allocates nothing more), and
 * layer_kb_per_token what one more layer adds per token of the batch
 * (the plan for n_layers + 1 minus the plan for n_layers, over B·T).
 * The plan is computed from config.json alone (lora_llama_memory), on the
 * backend given by -d: "cuda" on the CPU emulator (link against
 * build/sim/liblora.a, as bench/memory.sh does) is the plan of a GPU run.
 * Usage: mem_plan [-d device] model_dir config...
 */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "backend.h"     /* lora_backend_get */
#include "link_cuda.h"   /* the kernels linked in */
#include "llama.h"       /* lora_llama_config_load, lora_llama_memory */
#include "lora.h"        /* lora_adapter_config, lora_targets_parse */
#include "util.h"        /* lora_errmsg, lora_die */

int main(int argc, char **argv)
{
	const char *device = "cuda";
	int opt;
	while ((opt = getopt(argc, argv, "d:")) != -1)
		if (opt == 'd')
			device = optarg;
		else
			return 2;
	if (argc - optind < 2) {
		fprintf(stderr, "usage: mem_plan [-d device] model_dir B:T:targets:r ...\n");
		return 2;
	}
	const lora_backend *be = lora_backend_get(device);
	lora_llama_config c;
	if (!be || lora_llama_config_load(argv[optind], &c) != 0)
		lora_die("%s", lora_errmsg());
	for (int i = optind + 1; i < argc; i++) {
		int B, T, r;
		char targets[64];
		lora_adapter_config lc = lora_adapter_config_default();
		if (sscanf(argv[i], "%d:%d:%63[^:]:%d", &B, &T, targets, &r) != 4 || B < 1 || T < 1 ||
		    r < 1 || lora_targets_parse(targets, &lc.targets) != 0)
			lora_die("bad config '%s' (B:T:targets:r)", argv[i]);
		lc.r = r;
		lc.alpha = 2.0f * r;
		lc.dropout = 0;
		lora_llama_opts o = { .lora = &lc };
		lora_llama_mem m = lora_llama_memory(&c, be, B, T, &o);
		c.n_layers++;
		lora_llama_mem m1 = lora_llama_memory(&c, be, B, T, &o);
		c.n_layers--;
		double mib = 1048576.0;
		printf("plan impl=ours B=%d T=%d targets=%s r=%d total_mib=%.0f weights_mib=%.0f "
		       "trainable_mib=%.1f activations_mib=%.0f layer_kb_per_token=%.1f\n", B, T,
		       targets, r, m.total / mib, m.weights / mib,
		       (m.trainable + m.grads + m.optimizer) / mib, m.activations / mib,
		       (double)(m1.activations - m.activations) / 1e3 / ((double)B * T));
	}
	return 0;
}
