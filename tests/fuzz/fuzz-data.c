/* fuzz-data.c: the dataset loader, split, shuffle and batching on arbitrary
 * file contents, read three times: as an .ids file (no tokenizer); as a
 * .txt file, or a .jsonl one when it starts with '{', with the demo's
 * tokenizer (examples/demo/base/tokenizer.json; fuzz-run runs from the
 * repository root); and cut in three files, each named by its first byte
 * ('{' .jsonl, a digit .ids, else .txt), read by three reader threads that
 * may read ahead one byte, .jsonl and .ids files in pieces of 1 to 13
 * bytes (data.h). NULL with a message or a dataset whose
 * batches hold only in-vocabulary ids and valid targets; never a crash. */
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

/* Write the n files, load the folder, check the batches, remove them. */
static void load(const char *d, int n, const char *const *names, const uint8_t *const *data,
                 const size_t *size, const lora_tokenizer *t, int vocab, size_t ahead,
                 size_t piece)
{
	char file[3][96];
	for (int i = 0; i < n; i++) {
		snprintf(file[i], sizeof file[i], "%s/%s", d, names[i]);
		FILE *f = fopen(file[i], "wb");
		if (!f)
			abort();
		fwrite(data[i], 1, size[i], f);
		fclose(f);
	}
	lora_data_opts o = {.dir = d, .tok = t, .max_seq_length = 16, .vocab_size = vocab,
	                    .val_split = size[0] % 3 ? 0.3 : 0, .seed = size[0],
	                    .model_bos_id = -1, .model_eos_id = -1, .read_ahead = ahead,
	                    .piece = piece};
	lora_dataset *ds = lora_dataset_load(&o);
	for (int i = 0; i < n; i++)
		unlink(file[i]);
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
		setenv("LORA_THREADS", "3", 1);
		tok = lora_tokenizer_load("examples/demo/base/tokenizer.json");
		if (!tok) {
			fprintf(stderr, "fuzz-data: %s\n", lora_errmsg());
			abort();
		}
	}
	const char *name[3] = {"x.ids"};
	const uint8_t *part[3] = {data, data + size / 3, data + 2 * size / 3};
	size_t len[3] = {size, size / 3, size - 2 * size / 3};
	load(dir[0], 1, name, part, len, NULL, 1000, 0, 0);
	name[0] = size && data[0] == '{' ? "x.jsonl" : "x.txt";
	load(dir[1], 1, name, part, len, tok, lora_tokenizer_vocab_size(tok), 0, 0);
	static const char *const named[3][3] = {
		{"a.txt", "b.txt", "c.txt"}, {"a.jsonl", "b.jsonl", "c.jsonl"}, {"a.ids", "b.ids", "c.ids"},
	};
	len[0] = size / 3;
	len[1] = 2 * size / 3 - size / 3;
	for (int i = 0; i < 3; i++) {
		int c = len[i] ? part[i][0] : 0;
		name[i] = named[c == '{' ? 1 : c >= '0' && c <= '9' ? 2 : 0][i];
	}
	load(dir[1], 3, name, part, len, tok, lora_tokenizer_vocab_size(tok), 1, 1 + size % 13);
	return 0;
}
