/* test-tokenizer: lib/tokenizer against the ids HF tokenizers and open_clip
 * produced (tests/gen/gen_tokenizer.py -> tests/fixtures/tokenizer/). Under
 * ASan this checks every hard string and a sample of the State of the Union
 * addresses; tests/lora-tokenize.sh checks all of them with the release build. */
#include "test.h"
#include "tokenizer.h"
#include "util.h"

#include <jansson.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

static const char *fixtures, *shared;

/* hex string -> bytes (malloc'd, NUL-terminated) */
static char *unhex(const char *h, size_t *n)
{
	size_t l = strlen(h) / 2;
	char *s = lora_xmalloc(l + 1);
	for (size_t i = 0; i < l; i++) {
		unsigned v;
		sscanf(h + 2 * i, "%2x", &v);
		s[i] = (char)v;
	}
	s[l] = 0;
	*n = l;
	return s;
}

static int ids_eq(const int32_t *a, size_t na, json_t *want)
{
	if (!json_is_array(want) || json_array_size(want) != na)
		return 0;
	for (size_t i = 0; i < na; i++)
		if (json_integer_value(json_array_get(want, i)) != a[i])
			return 0;
	return 1;
}

static void show(const char *what, const char *text, const int32_t *ids, size_t n, json_t *want)
{
	printf("  %s for %.60s:\n    got ", what, text);
	for (size_t i = 0; i < n && i < 40; i++)
		printf(" %d", ids[i]);
	printf("\n    want");
	for (size_t i = 0; i < json_array_size(want) && i < 40; i++)
		printf(" %lld", (long long)json_integer_value(json_array_get(want, i)));
	printf("\n");
}

static void check_hard(const lora_tokenizer *t, const char *name)
{
	char *path = lora_xasprintf("%s/tokenizer/hard-%s.jsonl", fixtures, name);
	FILE *fp = fopen(path, "r");
	test_cond(path, fp != NULL);
	if (!fp) {
		free(path);
		return;
	}
	char *line = NULL;
	size_t cap = 0;
	int nline = 0, bad = 0;
	while (getline(&line, &cap, fp) > 0) {
		nline++;
		json_t *o = json_loads(line, 0, NULL);
		size_t n, dn, dsn;
		char *text = unhex(json_string_value(json_object_get(o, "text")), &n);
		char *dec = unhex(json_string_value(json_object_get(o, "dec")), &dn);
		char *decs = unhex(json_string_value(json_object_get(o, "dec_skip")), &dsn);
		int32_t *ids, *ids2;
		size_t ni, ni2;
		int ok = lora_tokenizer_encode(t, text, n, 0, &ids, &ni) == 0 &&
		         lora_tokenizer_encode(t, text, n, 1, &ids2, &ni2) == 0;
		if (!ok) {
			bad++;
			printf("  %s: encode failed: %s\n", name, lora_errmsg());
			continue;
		}
		int e1 = ids_eq(ids, ni, json_object_get(o, "ids"));
		int e2 = ids_eq(ids2, ni2, json_object_get(o, "ids_special"));
		if (!e1)
			show(name, text, ids, ni, json_object_get(o, "ids"));
		if (!e2)
			show("special", text, ids2, ni2, json_object_get(o, "ids_special"));
		size_t l1, l2;
		char *d1 = lora_tokenizer_decode_n(t, ids, ni, 0, &l1);
		char *d2 = lora_tokenizer_decode_n(t, ids2, ni2, 1, &l2);
		int e3 = l1 == dn && !memcmp(d1, dec, dn);
		int e4 = l2 == dsn && !memcmp(d2, decs, dsn);
		if (!e3)
			printf("  %s decode of %.40s: got '%s' want '%s'\n", name, text, d1, dec);
		if (!e4)
			printf("  %s decode(skip) of %.40s: got '%s' want '%s'\n", name, text, d2, decs);
		/* decode(encode(x)) == x wherever the reference round-trips */
		if (json_is_true(json_object_get(o, "roundtrip")) && !(l1 == n && !memcmp(d1, text, n)))
			e3 = 0, printf("  %s: %.40s does not round-trip\n", name, text);
		bad += !(e1 && e2 && e3 && e4);
		free(d1);
		free(d2);
		free(ids);
		free(ids2);
		free(text);
		free(dec);
		free(decs);
		json_decref(o);
	}
	free(line);
	fclose(fp);
	char *msg = lora_xasprintf("%s: %d hard strings match HF tokenizers (%d differ)", name, nline, bad);
	test_cond(msg, nline > 50 && bad == 0);
	free(msg);
	free(path);
}

/* The SOTU documents whose index % every == 0, against the crc32 fixture. */
static void check_sotu(const lora_tokenizer *t, const char *name, int every)
{
	char *path = lora_xasprintf("%s/tokenizer/sotu-%s.txt", fixtures, name);
	FILE *fp = fopen(path, "r");
	test_cond(path, fp != NULL);
	if (!fp) {
		free(path);
		return;
	}
	char file[256], crc[16], md5[40];
	size_t count;
	int k = 0, checked = 0, bad = 0;
	while (fscanf(fp, "%255s %zu %15s %39s", file, &count, crc, md5) == 4) {
		if (k++ % every)
			continue;
		char *doc = lora_xasprintf("%s/data/text/sotu/%s", shared, file);
		size_t len;
		char *text = lora_read_file(doc, &len);
		free(doc);
		if (!text) {
			printf("  %s\n", lora_errmsg());
			bad++;
			continue;
		}
		int32_t *ids;
		size_t n;
		if (lora_tokenizer_encode(t, text, len, 0, &ids, &n) < 0) {
			bad++;
			free(text);
			continue;
		}
		/* crc32 of the ids as "1 2 3" */
		uLong c = crc32(0, NULL, 0);
		char buf[16];
		for (size_t i = 0; i < n; i++) {
			int l = snprintf(buf, sizeof buf, i ? " %d" : "%d", ids[i]);
			c = crc32(c, (const Bytef *)buf, (uInt)l);
		}
		char got[16];
		snprintf(got, sizeof got, "%08lx", c);
		if (n != count || strcmp(got, crc)) {
			printf("  %s %s: %zu ids crc %s, want %zu crc %s\n", name, file, n, got, count, crc);
			bad++;
		}
		/* decode(encode(x)) == x (HF round-trips every address with each
		 * of the three tokenizers) */
		char *d = lora_tokenizer_decode(t, ids, n, 0);
		if (strlen(d) != len || memcmp(d, text, len)) {
			printf("  %s %s: decode does not round-trip\n", name, file);
			bad++;
		}
		free(d);
		free(ids);
		free(text);
		checked++;
	}
	fclose(fp);
	char *msg = lora_xasprintf("%s: %d SOTU documents match (%d differ)", name, checked, bad);
	test_cond(msg, checked > 0 && bad == 0);
	free(msg);
	free(path);
}

static void check_clip(void)
{
	char *vp = lora_xasprintf("%s/tokenizer/bpe_simple_vocab_16e6.txt.gz", fixtures);
	lora_tokenizer *t = lora_tokenizer_load(vp);
	test_cond("load CLIP vocab", t != NULL);
	free(vp);
	if (!t) {
		printf("  %s\n", lora_errmsg());
		return;
	}
	test_cond("CLIP vocab size 49408", lora_tokenizer_vocab_size(t) == 49408);
	test_cond("CLIP bos 49406", lora_tokenizer_bos_id(t) == 49406);
	test_cond("CLIP eos 49407", lora_tokenizer_eos_id(t) == 49407);
	test_cond("CLIP context 77", lora_tokenizer_context_len(t) == 77);
	char *path = lora_xasprintf("%s/tokenizer/clip-captions.jsonl", fixtures);
	FILE *fp = fopen(path, "r");
	test_cond(path, fp != NULL);
	char *line = NULL;
	size_t cap = 0;
	int nline = 0, bad = 0;
	while (fp && getline(&line, &cap, fp) > 0) {
		nline++;
		json_t *o = json_loads(line, 0, NULL);
		size_t n, dn;
		char *text = unhex(json_string_value(json_object_get(o, "text")), &n);
		char *dec = unhex(json_string_value(json_object_get(o, "dec")), &dn);
		int32_t *ids;
		size_t ni;
		if (lora_tokenizer_encode(t, text, n, 0, &ids, &ni) < 0) {
			bad++;
			continue;
		}
		int e1 = ids_eq(ids, ni, json_object_get(o, "ids"));
		if (!e1)
			show("clip", text, ids, ni, json_object_get(o, "ids"));
		/* open_clip's tokenize() row: sot + ids + eot, cut to 77 with eot
		 * last, zero padded (we pad with 49407, SD 1.5's choice) */
		int32_t row[77];
		int real = lora_tokenizer_encode_fixed(t, text, n, 77, row);
		for (int i = real; i < 77; i++)
			if (row[i] == lora_tokenizer_pad_id(t))
				row[i] = 0;
		int e2 = real > 0 && ids_eq(row, 77, json_object_get(o, "tok77"));
		if (!e2)
			show("clip tok77", text, row, 77, json_object_get(o, "tok77"));
		char *d = lora_tokenizer_decode(t, ids, ni, 0);
		int e3 = strlen(d) == dn && !memcmp(d, dec, dn);
		if (!e3)
			printf("  clip decode of %.40s: got '%s' want '%s'\n", text, d, dec);
		bad += !(e1 && e2 && e3);
		free(d);
		free(ids);
		free(text);
		free(dec);
		json_decref(o);
	}
	free(line);
	if (fp)
		fclose(fp);
	char *msg = lora_xasprintf("clip: %d captions match open_clip (%d differ)", nline, bad);
	test_cond(msg, nline > 50 && bad == 0);
	free(msg);
	free(path);
	lora_tokenizer_free(t);
}

/* Encoding on many threads at once gives the serial result. */
typedef struct { const lora_tokenizer *t; char **docs; size_t *lens; int32_t **ids; size_t *n; } par_ctx;

static void par_fn(void *ctx, int i, int tid)
{
	(void)tid;
	par_ctx *c = ctx;
	lora_tokenizer_encode(c->t, c->docs[i % 4], c->lens[i % 4], 1, &c->ids[i], &c->n[i]);
}

static void check_threads(const lora_tokenizer *t)
{
	static const char *s[4] = { "Hello world, threads!", "The quick brown fox.\n\nSecond paragraph 123.",
	                            "emoji \xF0\x9F\x98\x80 and CJK \xE6\xBC\xA2", "<s> special </s> again" };
	par_ctx c = { t, (char **)s, (size_t[4]){ 0 }, NULL, NULL };
	for (int i = 0; i < 4; i++)
		c.lens[i] = strlen(s[i]);
	int32_t *ids[64];
	size_t n[64];
	c.ids = ids;
	c.n = n;
	lora_parallel_for(64, 4, par_fn, &c);
	int ok = 1;
	for (int i = 0; i < 64; i++) {
		ok &= n[i] == n[i % 4] && !memcmp(ids[i], ids[i % 4], n[i] * sizeof(int32_t));
	}
	for (int i = 0; i < 64; i++)
		free(ids[i]);
	test_cond("parallel encodes equal serial ones", ok);
}

/* Load `json` from a temporary tokenizer.json. */
static lora_tokenizer *load_json(const char *json)
{
	const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	char *p = lora_xasprintf("%s/tok-bad.json", tmp);
	FILE *fp = fopen(p, "w");
	fputs(json, fp);
	fclose(fp);
	lora_tokenizer *t = lora_tokenizer_load(p);
	remove(p);
	free(p);
	return t;
}

/* Whether `json` loads. */
static int loads(const char *json)
{
	lora_tokenizer *t = load_json(json);
	if (!t) {
		printf("  error '%s'\n", lora_errmsg());
		return 0;
	}
	lora_tokenizer_free(t);
	return 1;
}

/* Whether `json` fails to load with an error that says `want`, as a bad
 * file must. */
static int load_fails(const char *json, const char *want)
{
	lora_tokenizer *t = load_json(json);
	if (t) {
		lora_tokenizer_free(t);
		return 0;
	}
	if (!strstr(lora_errmsg(), want)) {
		printf("  error '%s' does not say '%s'\n", lora_errmsg(), want);
		return 0;
	}
	return 1;
}

/* The smallest model a test tokenizer.json can have. */
#define MODEL "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]}"

/* `{"<key>": {"type":"Sequence","<list>":[ ... depth times ... {"type":"<leaf>"} ]}, model}` */
static char *nested(const char *key, const char *list, const char *leaf, int depth)
{
	char *s = lora_xasprintf("{\"%s\":", key);
	for (int i = 0; i < depth; i++) {
		char *n = lora_xasprintf("%s{\"type\":\"Sequence\",\"%s\":[", s, list);
		free(s);
		s = n;
	}
	char *n = lora_xasprintf("%s{\"type\":\"%s\"}", s, leaf);
	free(s);
	s = n;
	for (int i = 0; i < depth; i++) {
		n = lora_xasprintf("%s]}", s);
		free(s);
		s = n;
	}
	n = lora_xasprintf("%s," MODEL "}", s);
	free(s);
	return n;
}

static void check_errors(void)
{
	static const struct { const char *name, *json, *want; } bad[] = {
		{ "unsupported normalizer is an error",
		  "{\"normalizer\":{\"type\":\"Precompiled\",\"precompiled_charsmap\":\"\"}," MODEL "}",
		  "Precompiled" },
		{ "unsupported model is an error", "{\"model\":{\"type\":\"Unigram\",\"vocab\":[]}}", "Unigram" },
		{ "merge result missing is an error",
		  "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1},\"merges\":[\"a b\"]}}", "ab" },
		{ "normalizer without a type", "{\"normalizer\":{}," MODEL "}", "normalizer without a type" },
		{ "pre_tokenizer without a type", "{\"pre_tokenizer\":{\"x\":1}," MODEL "}",
		  "pre_tokenizer without a type" },
		{ "decoder without a type", "{\"decoder\":{}," MODEL "}", "decoder without a type" },
		{ "post_processor without a type", "{\"post_processor\":{}," MODEL "}",
		  "post_processor without a type" },
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		test_cond(bad[i].name, load_fails(bad[i].json, bad[i].want));
	/* Sequences nest 16 deep (post_processor 8) and no deeper. */
	static const struct { const char *key, *list, *leaf, *want; int limit; } deep[] = {
		{ "normalizer", "normalizers", "Lowercase", "normalizer nested too deeply", 16 },
		{ "pre_tokenizer", "pretokenizers", "WhitespaceSplit", "pre_tokenizer nested too deeply", 16 },
		{ "decoder", "decoders", "Fuse", "decoder nested too deeply", 16 },
		{ "post_processor", "processors", "ByteLevel", "post_processor nested too deeply", 8 },
	};
	for (size_t i = 0; i < sizeof deep / sizeof deep[0]; i++) {
		char *ok = nested(deep[i].key, deep[i].list, deep[i].leaf, deep[i].limit);
		char *over = nested(deep[i].key, deep[i].list, deep[i].leaf, deep[i].limit + 1);
		test_cond(deep[i].want, load_fails(over, deep[i].want) && loads(ok));
		free(ok);
		free(over);
	}
#undef MODEL
	lora_tokenizer *t = lora_tokenizer_load("/nonexistent/tokenizer.json");
	test_cond("missing file is an error", t == NULL && strstr(lora_errmsg(), "/nonexistent"));
}

int main(void)
{
	fixtures = getenv("FIXTURES") ? getenv("FIXTURES") : "tests/fixtures";
	shared = getenv("SHARED") ? getenv("SHARED") : "../shared";
	static const char *names[3] = { "spm32k", "llama3", "gpt2" };
	static const char *files[3] = { "spm32k/tokenizer.json", "llama3", "gpt2/vocab.bpe" };
	static const int bos[3] = { 1, 128000, 50256 }, eos[3] = { 2, 128001, 50256 };
	static const int vsize[3] = { 32000, 128256, 50257 };
	char *tdir = lora_xasprintf("%s/data/tokenizers", shared);
	struct stat st;
	int have_shared = stat(tdir, &st) == 0;
	free(tdir);
	if (!have_shared)
		printf("note: no %s/data/tokenizers: real-tokenizer checks skipped\n", shared);
	for (int k = 0; k < 3 && have_shared; k++) {
		char *p = lora_xasprintf("%s/data/tokenizers/%s", shared, files[k]);
		lora_tokenizer *t = lora_tokenizer_load(p);
		free(p);
		test_cond(names[k], t != NULL);
		if (!t) {
			printf("  %s\n", lora_errmsg());
			continue;
		}
		test_cond("bos id", lora_tokenizer_bos_id(t) == bos[k]);
		test_cond("eos id", lora_tokenizer_eos_id(t) == eos[k]);
		test_cond("no pad token", lora_tokenizer_pad_id(t) == -1);
		test_cond("vocab size", lora_tokenizer_vocab_size(t) == vsize[k]);
		const char *tok = lora_tokenizer_id_to_token(t, 1000);
		test_cond("id_to_token / token_to_id", tok && lora_tokenizer_token_to_id(t, tok) == 1000);
		test_cond("token_to_id of a missing token", lora_tokenizer_token_to_id(t, "\x01no such token") == -1);
		check_hard(t, names[k]);
		check_sotu(t, names[k], 25);
		if (k == 0)
			check_threads(t);
		lora_tokenizer_free(t);
	}
	/* small tokenizers trained by the generator, one per group of components */
	static const char *vars[] = { "wordpiece", "clip", "metaspace", "splits", "nosplit", "classes" };
	for (size_t k = 0; k < sizeof vars / sizeof vars[0]; k++) {
		char *p = lora_xasprintf("%s/tokenizer/var-%s.json", fixtures, vars[k]);
		char *name = lora_xasprintf("var-%s", vars[k]);
		lora_tokenizer *t = lora_tokenizer_load(p);
		test_cond(p, t != NULL);
		if (!t)
			printf("  %s\n", lora_errmsg());
		else
			check_hard(t, name);
		lora_tokenizer_free(t);
		free(p);
		free(name);
	}
	check_clip();
	check_errors();
	return test_report();
}
