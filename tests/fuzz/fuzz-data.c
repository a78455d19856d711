/* fuzz-data.c: the dataset loader, split, shuffle and batching on arbitrary
 * file contents, read twice: as an .ids file (no tokenizer), and as a .txt
 * file, or a .jsonl one when it starts with '{', with the demo's tokenizer
 * (examples/demo/base/tokenizer.json; fuzz-run runs from the repository
 * root). NULL with a message or a dataset whose batches hold only
 * in-vocabulary ids and valid targets; never a crash. */
#include "data.h"
#include "tokenizer.h"
#include "util.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[2][64];
static lora_tokenizer *tok;

static void load(const char *d, const char *name, const uint8_t *data, size_t size,
                 const lora_tokenizer *t, int vocab)
{
	char file[96];
	snprintf(file, sizeof file, "%s/%s", d, name);
	FILE *f = fopen(file, "wb");
	if (!f)
		abort();
	fwrite(data, 1, size, f);
	fclose(f);
	lora_data_opts o = {.dir = d, .tok = t, .max_seq_length = 16, .vocab_size = vocab,
	                    .val_split = size % 3 ? 0.3 : 0, .seed = size,
	                    .model_bos_id = -1, .model_eos_id = -1};
	lora_dataset *ds = lora_dataset_load(&o);
	unlink(file);
	if (!ds)
		return;
	int *order = lora_xmalloc((size_t)ds->ntrain * sizeof *order);
	lora_dataset_order(ds, 7, 1, order);
	int32_t ids[4 * 16], tg[4 * 16];
	for (int i = 0; i < ds->ntrain; i += 4) {
		int b = ds->ntrain - i < 4 ? ds->ntrain - i : 4, nt;
		int T = lora_batch_make(ds, order + i, b, ids, tg, &nt);
		if (T < 2 || T > 16 || nt < 1)
			abort();
		for (int k = 0; k < b * T; k++)
			if (ids[k] < 0 || ids[k] >= vocab ||
			    (tg[k] != -100 && (tg[k] < 0 || tg[k] >= vocab)))
				abort();
	}
	free(order);
	lora_dataset_free(ds);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!dir[0][0]) {
		for (int i = 0; i < 2; i++) {
			snprintf(dir[i], sizeof dir[i], "/tmp/fuzz-data-XXXXXX");
			if (!mkdtemp(dir[i]))
				abort();
		}
		tok = lora_tokenizer_load("examples/demo/base/tokenizer.json");
		if (!tok) {
			fprintf(stderr, "fuzz-data: %s\n", lora_errmsg());
			abort();
		}
	}
	load(dir[0], "x.ids", data, size, NULL, 1000);
	load(dir[1], size && data[0] == '{' ? "x.jsonl" : "x.txt", data, size, tok,
	     lora_tokenizer_vocab_size(tok));
	return 0;
}
