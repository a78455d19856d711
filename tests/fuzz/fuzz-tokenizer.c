/* fuzz-tokenizer: fuzzed tokenizer.json files and input text must never crash
 * lib/tokenizer. Input layout: if it holds a NUL byte, the bytes before it are
 * a tokenizer.json and the bytes after it the text; otherwise the whole input
 * is text for the fixture tokenizers (tests/fixtures/tokenizer/var-*.json and
 * CLIP), each of which encodes and decodes it. */
#include "tokenizer.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

static lora_tokenizer *fixed[8];
static int nfixed;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	static const char *files[] = {
		"tests/fixtures/tokenizer/var-wordpiece.json", "tests/fixtures/tokenizer/var-clip.json",
		"tests/fixtures/tokenizer/var-metaspace.json", "tests/fixtures/tokenizer/var-splits.json",
		"tests/fixtures/tokenizer/var-nosplit.json", "tests/fixtures/tokenizer/var-classes.json",
		"tests/fixtures/tokenizer/bpe_simple_vocab_16e6.txt.gz",
	};
	for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
		if ((fixed[nfixed] = lora_tokenizer_load(files[i])))
			nfixed++;
	return 0;
}

static void run(const lora_tokenizer *t, const char *text, size_t len)
{
	for (int sp = 0; sp < 2; sp++) {
		int32_t *ids;
		size_t n;
		if (lora_tokenizer_encode(t, text, len, sp, &ids, &n) < 0)
			continue;
		size_t dl;
		char *d = lora_tokenizer_decode_n(t, ids, n, sp, &dl);
		/* ids from this tokenizer are always in range */
		for (size_t i = 0; i < n; i++)
			if (ids[i] < 0 || ids[i] >= lora_tokenizer_vocab_size(t))
				abort();
		free(d);
		free(ids);
	}
	/* decode arbitrary ids too */
	int32_t ids[16];
	size_t n = len / 4 < 16 ? len / 4 : 16;
	memcpy(ids, text, n * 4);
	free(lora_tokenizer_decode(t, ids, n, 0));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *s = (const char *)data;
	const char *nul = memchr(s, 0, size);
	if (!nul) {
		for (int i = 0; i < nfixed; i++)
			run(fixed[i], s, size);
		return 0;
	}
	lora_tokenizer *t = lora_tokenizer_load_json(s, (size_t)(nul - s), "fuzz");
	if (t) {
		run(t, nul + 1, size - (size_t)(nul - s) - 1);
		lora_tokenizer_free(t);
	}
	return 0;
}
