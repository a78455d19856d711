/* fuzz-data.c: the .ids dataset loader, split, shuffle and batching on
 * arbitrary file contents: NULL with a message or a dataset whose batches
 * hold only in-vocabulary ids and valid targets; never a crash. */
#include "data.h"
#include "util.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[64], file[96];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!dir[0]) {
		snprintf(dir, sizeof dir, "/tmp/fuzz-data-XXXXXX");
		if (!mkdtemp(dir))
			abort();
		snprintf(file, sizeof file, "%s/x.ids", dir);
	}
	FILE *f = fopen(file, "wb");
	if (!f)
		abort();
	fwrite(data, 1, size, f);
	fclose(f);
	lora_data_opts o = {.dir = dir, .max_seq_length = 16, .vocab_size = 1000,
	                    .val_split = size % 3 ? 0.3 : 0, .seed = size,
	                    .model_bos_id = -1, .model_eos_id = -1};
	lora_dataset *d = lora_dataset_load(&o);
	if (!d)
		return 0;
	int *order = lora_xmalloc((size_t)d->ntrain * sizeof *order);
	lora_dataset_order(d, 7, 1, order);
	int32_t ids[4 * 16], tg[4 * 16];
	for (int i = 0; i < d->ntrain; i += 4) {
		int b = d->ntrain - i < 4 ? d->ntrain - i : 4, nt;
		int T = lora_batch_make(d, order + i, b, ids, tg, &nt);
		if (T < 2 || T > 16 || nt < 1)
			abort();
		for (int k = 0; k < b * T; k++)
			if (ids[k] < 0 || ids[k] >= 1000 || (tg[k] != -100 && (tg[k] < 0 || tg[k] >= 1000)))
				abort();
	}
	free(order);
	lora_dataset_free(d);
	return 0;
}
