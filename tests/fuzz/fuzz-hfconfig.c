/* fuzz-hfconfig.c: HF config.json (lora_llama_config_load) and PEFT
 * adapter_config.json (lora_adapter_read_config) on arbitrary bytes must
 * return 0 or -1 with a message, never crash or leak; a config that loads
 * must give a memory plan without overflow traps. The parsers read files, so
 * each input is written to a scratch folder first. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llama.h"
#include "lora.h"
#include "util.h"

static char dir[64];

static void cleanup(void)
{
	char path[128];
	snprintf(path, sizeof path, "%s/config.json", dir);
	remove(path);
	snprintf(path, sizeof path, "%s/adapter_config.json", dir);
	remove(path);
	remove(dir);
}

static void put(const char *name, const uint8_t *data, size_t size)
{
	char path[128];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	FILE *f = fopen(path, "wb");
	if (!f)
		abort();
	fwrite(data, 1, size, f);
	fclose(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!dir[0]) {
		strcpy(dir, "/tmp/fuzz-hfconfig-XXXXXX");
		if (!mkdtemp(dir))
			abort();
		atexit(cleanup);
	}
	put("config.json", data, size);
	lora_llama_config c;
	if (lora_llama_config_load(dir, &c) == 0) {
		lora_adapter_config lc = lora_adapter_config_default();
		lora_llama_opts o = { .lora = &lc };
		lora_llama_mem m = lora_llama_memory(&c, lora_backend_cpu(), 2, 16, &o);
		if (m.total < m.activations)
			abort();
	} else if (!lora_errmsg()[0]) {
		abort();
	}
	put("adapter_config.json", data, size);
	lora_adapter_config ac;
	if (lora_adapter_read_config(dir, &ac) == 0) {
		if (ac.r < 1 || !ac.targets)
			abort();
	}
	return 0;
}
