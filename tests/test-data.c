/* test-data.c: lib/data.c against tests/fixtures/data/NAME.expect.json, made by
 * tests/gen/data.py (HF tokenizers for the ids, a Python re-implementation
 * of the documented split and shuffles). */
#include "data.h"
#include "tokenizer.h"
#include "test.h"
#include "util.h"

#include <dirent.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *fixtures(void)
{
	const char *f = getenv("FIXTURES");
	return f ? f : "tests/fixtures";
}

static const char *tmpdir(void)
{
	const char *t = getenv("TMPDIR");
	return t ? t : "/tmp";
}

static int ints_eq(json_t *a, const int32_t *v, int n)
{
	if ((int)json_array_size(a) != n)
		return 0;
	for (int i = 0; i < n; i++)
		if (json_integer_value(json_array_get(a, (size_t)i)) != v[i])
			return 0;
	return 1;
}

static int ints_eq_int(json_t *a, const int *v, int n)
{
	int32_t *t = lora_xmalloc((size_t)(n + 1) * sizeof *t);
	for (int i = 0; i < n; i++)
		t[i] = v[i];
	int r = ints_eq(a, t, n);
	free(t);
	return r;
}

/* Compare a loaded dataset with the generator's expectations. */
static void compare(const char *what, const lora_dataset *d, json_t *j)
{
	char m[256];
	json_t *exs = json_object_get(j, "examples");
	snprintf(m, sizeof m, "%s: %d examples", what, (int)json_array_size(exs));
	test_cond(m, d->n == (int)json_array_size(exs));
	for (int i = 0; i < d->n && i < (int)json_array_size(exs); i++) {
		json_t *e = json_array_get(exs, (size_t)i);
		snprintf(m, sizeof m, "%s: example %d ids", what, i);
		test_cond(m, ints_eq(json_object_get(e, "ids"), d->ex[i].ids, d->ex[i].n));
		int32_t *t = lora_xmalloc((size_t)d->ex[i].n * sizeof *t);
		for (int k = 0; k < d->ex[i].n; k++)
			t[k] = d->ex[i].target[k];
		snprintf(m, sizeof m, "%s: example %d targets", what, i);
		test_cond(m, ints_eq(json_object_get(e, "target"), t, d->ex[i].n));
		free(t);
	}
	snprintf(m, sizeof m, "%s: val split", what);
	test_cond(m, ints_eq_int(json_object_get(j, "val"), d->val, d->nval));
	snprintf(m, sizeof m, "%s: train split", what);
	test_cond(m, ints_eq_int(json_object_get(j, "train"), d->train, d->ntrain));
	uint64_t seed = (uint64_t)json_integer_value(json_object_get(j, "seed"));
	json_t *orders = json_object_get(j, "orders");
	int *order = lora_xmalloc((size_t)d->ntrain * sizeof *order);
	for (size_t e = 0; e < json_array_size(orders); e++) {
		lora_dataset_order(d, seed, (int64_t)e, order);
		snprintf(m, sizeof m, "%s: epoch %zu order", what, e);
		test_cond(m, ints_eq_int(json_array_get(orders, e), order, d->ntrain));
	}
	lora_dataset_order(d, seed, 0, order);
	int B = (int)json_integer_value(json_object_get(j, "B"));
	int Tmax = (int)json_integer_value(json_object_get(j, "max_seq_length"));
	int32_t *ids = lora_xmalloc((size_t)B * Tmax * sizeof *ids);
	int32_t *tg = lora_xmalloc((size_t)B * Tmax * sizeof *tg);
	int nt;
	int T = lora_batch_make(d, order, B, ids, tg, &nt);
	snprintf(m, sizeof m, "%s: batch T", what);
	test_cond(m, T == json_integer_value(json_object_get(j, "batch_T")));
	snprintf(m, sizeof m, "%s: batch ids", what);
	test_cond(m, ints_eq(json_object_get(j, "batch_ids"), ids, B * T));
	snprintf(m, sizeof m, "%s: batch targets", what);
	test_cond(m, ints_eq(json_object_get(j, "batch_targets"), tg, B * T));
	int cnt = 0;
	for (int i = 0; i < B * T; i++)
		cnt += tg[i] != -100;
	test_cond("ntargets", nt == cnt && cnt > 0);
	free(ids);
	free(tg);
	free(order);
}

/* Load o's folder and, when it loads, compare it with j; the dataset is
 * returned for more checks (free it). */
static lora_dataset *load_compare(const char *what, const lora_data_opts *o, json_t *j)
{
	char m[256];
	lora_dataset *d = lora_dataset_load(o);
	if (!d)
		printf("      %s\n", lora_errmsg());
	snprintf(m, sizeof m, "%s: loads", what);
	test_cond(m, d != NULL);
	if (d && j)
		compare(what, d, j);
	return d;
}

static json_t *load_expect(const char *name)
{
	char *p = lora_xasprintf("%s/data/%s.expect.json", fixtures(), name);
	json_error_t je;
	json_t *j = json_load_file(p, 0, &je);
	if (!j)
		printf("cannot load %s: %s\n", p, je.text);
	free(p);
	return j;
}

static void write_bytes(const char *path, const char *s, size_t n)
{
	FILE *f = fopen(path, "wb");
	LORA_ASSERT(f);
	LORA_ASSERT(fwrite(s, 1, n, f) == n);
	fclose(f);
}

static void write_file(const char *path, const char *s)
{
	write_bytes(path, s, strlen(s));
}

/* The fixture folder's files NAMES copied to a new folder, each starting
 * with a UTF-8 byte-order mark (how = 'b') or with every \n written as \r\n
 * (how = 'c', as an editor on Windows saves them), must load as the fixture
 * does: compared with its expectations j under o's options, then removed. */
static void compare_copies(const char *what, const char *fixture, const char *const *names,
                           char how, lora_data_opts o, json_t *j)
{
	char *dir = lora_xasprintf("%s/data-%c-%s-%d", tmpdir(), how, fixture, (int)getpid());
	mkdir(dir, 0755);
	for (int i = 0; names[i]; i++) {
		char *src = lora_xasprintf("%s/data/%s/%s", fixtures(), fixture, names[i]);
		char *dst = lora_xasprintf("%s/%s", dir, names[i]);
		size_t n, m = 0;
		char *s = lora_read_file(src, &n);
		LORA_ASSERT(s);
		char *b = lora_xmalloc(2 * n + 3);
		if (how == 'b') {
			memcpy(b, "\xEF\xBB\xBF", 3);
			m = 3;
		}
		for (size_t k = 0; k < n; k++) {
			if (how == 'c' && s[k] == '\n')
				b[m++] = '\r';
			b[m++] = s[k];
		}
		write_bytes(dst, b, m);
		free(b);
		free(s);
		free(src);
		free(dst);
	}
	o.dir = dir;
	lora_dataset_free(load_compare(what, &o, j));
	for (int i = 0; names[i]; i++) {
		char *p = lora_xasprintf("%s/%s", dir, names[i]);
		unlink(p);
		free(p);
	}
	rmdir(dir);
	free(dir);
}

/* LORA_THREADS as it was, to put back with threads_restore */
static char *threads_save(void)
{
	const char *env = getenv("LORA_THREADS");
	return env ? lora_xstrdup(env) : NULL;
}

static void threads_restore(char *saved)
{
	if (saved)
		setenv("LORA_THREADS", saved, 1);
	else
		unsetenv("LORA_THREADS");
	free(saved);
}

/* The fixture, its copies with byte-order marks and with \r\n line ends
 * (compare_copies), each .jsonl/.ids file read in pieces of `piece` bytes
 * by 3 threads: all as the fixture's expectations j. */
static void compare_in_pieces(const char *fixture, const char *const *names, size_t piece,
                              lora_data_opts o, json_t *j)
{
	char m[256];
	char *saved = threads_save();
	setenv("LORA_THREADS", "3", 1);
	o.piece = piece;
	snprintf(m, sizeof m, "%s in pieces of %zu bytes", fixture, piece);
	lora_dataset_free(load_compare(m, &o, j));
	snprintf(m, sizeof m, "%s with byte-order marks, in pieces", fixture);
	compare_copies(m, fixture, names, 'b', o, j);
	snprintf(m, sizeof m, "%s with \\r\\n line ends, in pieces", fixture);
	compare_copies(m, fixture, names, 'c', o, j);
	threads_restore(saved);
}

/* progress: the calls it gets, and whether done grew and ended at total */
typedef struct { int calls, grew; size_t done, total; } progress_log;

static void log_progress(void *arg, size_t done, size_t total)
{
	progress_log *p = arg;
	p->grew += p->calls++ == 0 ? done > 0 : done > p->done;
	p->done = done;
	p->total = total;
}

/* Many files of all kinds, read by several threads (data.h): the same
 * dataset for any number of threads and any read-ahead, and the first bad
 * file in name order is the one named. */
static void many_files(const lora_tokenizer *tok)
{
	char m[256];
	char *saved = threads_save();
	json_t *j = load_expect("many");
	test_cond("many expect", j != NULL);
	char *dir = lora_xasprintf("%s/data/many", fixtures());
	lora_data_opts o = {.dir = dir, .tok = tok, .max_seq_length = 64, .vocab_size = 32000,
	                    .val_split = 0.1, .seed = 3, .model_bos_id = 1, .model_eos_id = 2};
	/* threads, and the bytes they may read ahead in all (0: the default;
	 * 1: only the file the merge waits for, so the readers wait for it) */
	static const struct { const char *threads; size_t ahead, piece; } runs[] = {
		{"1", 0, 0}, {"2", 0, 0}, {"5", 0, 0}, {"40", 0, 0}, {"3", 1, 0}, {"4", 700, 0},
		/* .jsonl and .ids files cut in pieces of so many bytes */
		{"1", 0, 1}, {"3", 0, 50}, {"4", 300, 120},
	};
	json_t *nf = json_object_get(j, "nfiles");
	/* the bytes of the data files, which progress counts (notes.md aside) */
	size_t bytes = 0;
	DIR *dd = opendir(dir);
	for (struct dirent *de; dd && (de = readdir(dd));) {
		struct stat st;
		char *fp = lora_xasprintf("%s/%s", dir, de->d_name);
		if (strstr(de->d_name, ".txt") || strstr(de->d_name, ".jsonl") ||
		    strstr(de->d_name, ".ids"))
			bytes += stat(fp, &st) == 0 ? (size_t)st.st_size : 0;
		free(fp);
	}
	if (dd)
		closedir(dd);
	for (size_t r = 0; r < sizeof runs / sizeof *runs && j; r++) {
		setenv("LORA_THREADS", runs[r].threads, 1);
		o.read_ahead = runs[r].ahead;
		o.piece = runs[r].piece;
		progress_log pl = {0};
		o.progress = log_progress;
		o.progress_arg = &pl;
		snprintf(m, sizeof m, "many files, %s thread%s, read-ahead %zu, pieces of %zu",
		         runs[r].threads, strcmp(runs[r].threads, "1") ? "s" : "", runs[r].ahead,
		         runs[r].piece);
		lora_dataset *d = load_compare(m, &o, j);
		snprintf(m, sizeof m, "many files, %s threads: files counted", runs[r].threads);
		test_cond(m, d && d->nfiles[0] == json_integer_value(json_array_get(nf, 0)) &&
		          d->nfiles[1] == json_integer_value(json_array_get(nf, 1)) &&
		          d->nfiles[2] == json_integer_value(json_array_get(nf, 2)) &&
		          d->nskipped == 1 && !strcmp(d->skipped, "'notes.md'"));
		snprintf(m, sizeof m, "many files, %s threads: cut and dropped counted", runs[r].threads);
		test_cond(m, d && d->ntruncated == json_integer_value(json_object_get(j, "ntruncated")) &&
		          d->ndropped == json_integer_value(json_object_get(j, "ndropped")));
		snprintf(m, sizeof m, "many files, %s threads: progress after each file, up to the "
		         "data files' bytes", runs[r].threads);
		test_cond(m, (runs[r].piece ? pl.calls > 26 : pl.calls == 26) && pl.grew == pl.calls &&
		          pl.done == pl.total && pl.total == bytes && bytes > 0);
		lora_dataset_free(d);
	}
	o.progress = NULL;
	o.piece = 0;
	json_decref(j);
	free(dir);

	/* twelve files, three of them bad: the first by name is the error */
	dir = lora_xasprintf("%s/data-many-bad-%d", tmpdir(), (int)getpid());
	mkdir(dir, 0755);
	char *p[12];
	for (int i = 0; i < 12; i++) {
		p[i] = lora_xasprintf("%s/%02d.%s", dir, i, i % 3 == 2 ? "jsonl" : i % 3 ? "ids" : "txt");
		write_file(p[i], i % 3 == 2 ? "{\"text\": \"ok\"}\n" : i % 3 ? "1 2 3\n" : "some text\n");
	}
	write_file(p[5], "{\"text\": \"ok\"}\n{\"text\": 3}\n");
	write_file(p[7], "1 2 x\n");
	write_file(p[9], "caf\xE9\n");
	o.dir = dir;
	o.val_split = 0;
	static const char *const threads[] = {"1", "3", "12"};
	for (int r = 0; r < 3; r++) {
		setenv("LORA_THREADS", threads[r], 1);
		for (size_t ahead = 0; ahead <= 1; ahead++) {
			o.read_ahead = ahead;
			snprintf(m, sizeof m, "three bad files, %s threads, read-ahead %zu: the first named",
			         threads[r], ahead);
			test_cond(m, !lora_dataset_load(&o) &&
			          strstr(lora_errmsg(), "05.jsonl': line 2: text fields must be strings"));
		}
	}
	write_file(p[5], "{\"text\": \"ok\"}\n");
	test_cond("the next bad one, 12 threads", !lora_dataset_load(&o) &&
	          strstr(lora_errmsg(), "07.ids': line 1: 'x' in a token-id list"));
	write_file(p[7], "1 2 3\n");
	test_cond("the last bad one, 12 threads", !lora_dataset_load(&o) &&
	          strstr(lora_errmsg(), "09.txt': line 1, byte 4: 0xE9 is not UTF-8"));
	write_file(p[9], "some text\n");
	/* a bad line in a late piece of a big file is named by its line in
	 * the file */
	char *big = lora_xasprintf("%s/99.jsonl", dir), *bigids = lora_xasprintf("%s/98.ids", dir);
	static const struct { int line; const char *bad, *want; } cases[] = {
		{47, "{\"text\": 3}", "99.jsonl': line 47: text fields must be strings"},
		{52, "{\"text\": \"caf\xE9\"}", "99.jsonl': line 52, byte 14: 0xE9 is not UTF-8"},
		{58, "{\"text\": \"x\"", "99.jsonl': line 58: "},
	};
	setenv("LORA_THREADS", "3", 1);
	o.piece = 64;
	for (int c = 0; c < 3; c++) {
		FILE *fp = fopen(big, "wb");
		LORA_ASSERT(fp);
		for (int line = 1; line <= 60; line++)
			fprintf(fp, "%s\n", line == cases[c].line ? cases[c].bad : "{\"text\": \"ok then\"}");
		fclose(fp);
		snprintf(m, sizeof m, "pieces of 64 bytes: %s", cases[c].want);
		test_cond(m, !lora_dataset_load(&o) && strstr(lora_errmsg(), cases[c].want));
	}
	unlink(big);
	FILE *fp = fopen(bigids, "wb");
	LORA_ASSERT(fp);
	for (int line = 1; line <= 40; line++)
		fprintf(fp, "%s\n", line == 33 ? "1 2 y" : "1 2 3 4 5");
	fclose(fp);
	test_cond("pieces of 64 bytes: 98.ids' line 33", !lora_dataset_load(&o) &&
	          strstr(lora_errmsg(), "98.ids': line 33: 'y' in a token-id list"));
	/* a byte-order mark is skipped at the start of a file only, not at
	 * the start of a piece */
	write_file(bigids, "1 2 3\n1 2 3\n1 2 3\n1 2 3\n1 2 3\n\xEF\xBB\xBF" "4 5\n1 2 3\n");
	o.piece = 6;
	test_cond("pieces of 6 bytes: a mark starting piece 6 is not skipped", !lora_dataset_load(&o) &&
	          strstr(lora_errmsg(), "98.ids': line 6: byte 0xEF in a token-id list"));
	unlink(bigids);
	free(big);
	free(bigids);
	o.piece = 0;
	lora_dataset *d = lora_dataset_load(&o);
	test_cond("none bad: 4 + 4 + 4 files", d && d->nfiles[0] == 4 && d->nfiles[1] == 4 &&
	          d->nfiles[2] == 4);
	lora_dataset_free(d);
	for (int i = 0; i < 12; i++) {
		unlink(p[i]);
		free(p[i]);
	}
	rmdir(dir);
	free(dir);
	threads_restore(saved);
}

int main(void)
{
	/* ids datasets need no tokenizer */
	json_t *j = load_expect("ids");
	test_cond("ids expect", j != NULL);
	char *dir = lora_xasprintf("%s/data/ids", fixtures());
	lora_data_opts o = {.dir = dir, .max_seq_length = 12, .vocab_size = 1000,
	                    .val_split = 0.2, .seed = 7,
	                    .model_bos_id = -1, .model_eos_id = -1};
	lora_dataset *d = load_compare("ids", &o, j);
	if (d) {
		test_cond("three truncated", d->ntruncated == 3);
		test_cond("two dropped (1 token; no answer)", d->ndropped == 2);
		test_cond("2 .ids files", d->nfiles[2] == 2 && d->nfiles[0] == 0);
		test_cond("pad 0 without tokenizer", d->pad_id == 0);
	}
	lora_dataset_free(d);
	/* a UTF-8 byte-order mark at the start of a file is skipped */
	static const char *const ids_names[] = { "a.ids", "b.ids", NULL };
	compare_copies("ids with a byte-order mark", "ids", ids_names, 'b', o, j);
	compare_copies("ids with \\r\\n line ends", "ids", ids_names, 'c', o, j);
	/* the same, each file read in pieces of 7 bytes */
	compare_in_pieces("ids", ids_names, 7, o, j);
	json_decref(j);
	const char *tmp = tmpdir();

	/* errors */
	o.vocab_size = 100;
	test_cond("vocab mismatch", !lora_dataset_load(&o) &&
	          strstr(lora_errmsg(), "a.ids': line 6: token id 100 is outside the model's vocabulary (100 tokens)"));
	char *e = lora_xasprintf("%s/data-empty-%d", tmp, (int)getpid());
	mkdir(e, 0755);
	o.dir = e;
	o.vocab_size = 0;
	test_cond("no data", !lora_dataset_load(&o) && strstr(lora_errmsg(), "no training data"));
	/* other entries are counted and named, not read; hidden ones pass */
	char *sub = lora_xasprintf("%s/sub", e), *md = lora_xasprintf("%s/notes.md", e);
	char *hid = lora_xasprintf("%s/.hidden", e);
	mkdir(sub, 0755);
	test_cond("only a subfolder: no data, and it is named", !lora_dataset_load(&o) &&
	          strstr(lora_errmsg(), "no training data: 'sub/' not read (only .txt, .jsonl and "
	                 ".ids files directly in it are)"));
	char *f = lora_xasprintf("%s/x.ids", e);
	write_file(f, "\n5\n");
	test_cond("empty dataset", !lora_dataset_load(&o) && strstr(lora_errmsg(), "empty dataset"));
	/* ... and beside data they are counted and named */
	write_file(md, "# notes\n");
	write_file(hid, "x\n");
	write_file(f, "1 2 3\n4 5 6\n");
	d = lora_dataset_load(&o);
	test_cond("an .ids file beside a subfolder and a .md file: loads", d != NULL);
	test_cond("... the two others counted", d && d->nskipped == 2 &&
	          !strcmp(d->skipped, "'notes.md' and 1 other"));
	lora_dataset_free(d);
	unlink(md);
	unlink(hid);
	rmdir(sub);
	free(sub);
	free(md);
	free(hid);
	write_file(f, "1 2 x\n");
	test_cond("bad id", !lora_dataset_load(&o) &&
	          strstr(lora_errmsg(), "x.ids': line 1: 'x' in a token-id list"));
	write_file(f, "1 2\n3 \xC3\xA9\n");
	test_cond("a non-ASCII byte in ids is named by its value", !lora_dataset_load(&o) &&
	          strstr(lora_errmsg(), "x.ids': line 2: byte 0xC3 in a token-id list"));
	write_file(f, "1 2\t3\t4\n");
	test_cond("3 fields", !lora_dataset_load(&o) && strstr(lora_errmsg(), "prompt_ids<TAB>answer_ids"));
	write_file(f, "1 2 3\n");
	o.val_split = 0.5;
	test_cond("too few for val", !lora_dataset_load(&o) && strstr(lora_errmsg(), "too few"));
	o.val_split = 0;
	unlink(f);
	free(f);
	f = lora_xasprintf("%s/y.jsonl", e);
	write_file(f, "{\"text\": \"hi\"}\n");
	test_cond("text needs tokenizer", !lora_dataset_load(&o) &&
	          strstr(lora_errmsg(), "y.jsonl': text needs a tokenizer"));
	o.piece = 5;
	test_cond("text needs tokenizer, in pieces", !lora_dataset_load(&o) &&
	          strstr(lora_errmsg(), "y.jsonl': text needs a tokenizer"));
	o.piece = 0;
	unlink(f);
	free(f);
	rmdir(e);
	free(e);
	o.dir = "/nonexistent";
	test_cond("missing dir", !lora_dataset_load(&o) && strstr(lora_errmsg(), "cannot open '/nonexistent'"));
	free(dir);

	/* text datasets: the tokenizer helper's tokenizer on the shared spm32k
	 * vocabulary, against HF tokenizers' ids */
	const char *shared = getenv("SHARED") ? getenv("SHARED") : "../shared";
	char *tp = lora_xasprintf("%s/data/tokenizers/spm32k/tokenizer.json", shared);
	/* without the shared data (a clone on its own) these checks are
	 * skipped, as test-tokenizer's are; a file that is there must load */
	struct stat tst;
	lora_tokenizer *tok = NULL;
	if (stat(tp, &tst) != 0) {
		printf("note: no %s: text dataset checks skipped\n", tp);
	} else {
		tok = lora_tokenizer_load(tp);
		if (!tok)
			printf("      %s\n", lora_errmsg());
		test_cond("spm32k tokenizer loads", tok != NULL);
	}
	if (tok) {
		j = load_expect("text");
		char *tdir = lora_xasprintf("%s/data/text", fixtures());
		lora_data_opts ot = {.dir = tdir, .tok = tok, .max_seq_length = 64,
		                     .vocab_size = 32000, .val_split = 0.25, .seed = 42,
		                     .model_bos_id = 1, .model_eos_id = 2};  /* Mistral's config.json */
		d = load_compare("text", &ot, j);
		if (d) {
			test_cond("pad is EOS", d->pad_id == 2);
			test_cond("2 .txt + 1 .jsonl", d->nfiles[0] == 2 && d->nfiles[1] == 1);
		}
		lora_dataset_free(d);
		/* the same files, each starting with a UTF-8 byte-order mark */
		static const char *const text_names[] = { "a.txt", "b.txt", "c.jsonl", NULL };
		compare_copies("text with byte-order marks", "text", text_names, 'b', ot, j);
		/* ... and with Windows line ends, which Python's text mode reads as \n */
		compare_copies("text with \\r\\n line ends", "text", text_names, 'c', ot, j);
		/* c.jsonl in pieces of 40 bytes */
		compare_in_pieces("text", text_names, 40, ot, j);
		json_decref(j);
		/* a tokenizer larger than the model */
		ot.vocab_size = 1000;
		test_cond("tokenizer/model mismatch", !lora_dataset_load(&ot) &&
		          strstr(lora_errmsg(), "tokenizer and model do not match"));
		free(tdir);
		many_files(tok);
		/* bad JSON lines name file and line */
		char *e2 = lora_xasprintf("%s/data-json-%d", tmp, (int)getpid());
		mkdir(e2, 0755);
		char *f2 = lora_xasprintf("%s/q.jsonl", e2);
		ot.dir = e2;
		ot.vocab_size = 32000;
		ot.val_split = 0;
		write_file(f2, "{\"text\": \"ok\"}\n{\"text\": 3}\n");
		test_cond("non-string text", !lora_dataset_load(&ot) &&
		          strstr(lora_errmsg(), "q.jsonl': line 2: text fields must be strings"));
		write_file(f2, "{\"text\": \"ok\"}\n\n{\"prompt\": \"a\"}\n");
		test_cond("missing completion", !lora_dataset_load(&ot) &&
		          strstr(lora_errmsg(), "q.jsonl': line 3: expected a \"text\""));
		write_file(f2, "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}\n");
		test_cond("chat data named", !lora_dataset_load(&ot) &&
		          strstr(lora_errmsg(), "q.jsonl': line 1: chat data (\"messages\") is not supported"));
		write_file(f2, "{\"text\": \"ok\"\n");
		test_cond("bad json", !lora_dataset_load(&ot) && strstr(lora_errmsg(), "q.jsonl': line 1: "));
		/* text that is not UTF-8 is an error naming line and byte, as
		 * Python's strict decode stops there; never U+FFFD */
		write_file(f2, "{\"text\": \"ok\"}\n{\"text\": \"caf\xE9\"}\n");
		test_cond("Latin-1 in .jsonl", !lora_dataset_load(&ot) &&
		          strstr(lora_errmsg(), "q.jsonl': line 2, byte 14: 0xE9 is not UTF-8"));
		write_file(f2, "{\"text\": \"\xED\xA0\x80\"}\n");
		test_cond("an encoded surrogate is not UTF-8", !lora_dataset_load(&ot) &&
		          strstr(lora_errmsg(), "q.jsonl': line 1, byte 11: 0xED is not UTF-8"));
		unlink(f2);
		free(f2);
		f2 = lora_xasprintf("%s/t.txt", e2);
		write_file(f2, "caf\xC3\xA9\nna\xEFve\n");
		test_cond("Latin-1 in .txt", !lora_dataset_load(&ot) &&
		          strstr(lora_errmsg(), "t.txt': line 2, byte 3: 0xEF is not UTF-8"));
		write_bytes(f2, "\xFF\xFEh\0i\0", 6);
		test_cond("UTF-16 with its byte-order mark", !lora_dataset_load(&ot) &&
		          strstr(lora_errmsg(), "t.txt': UTF-16 text"));
		write_bytes(f2, "h\0i\0\n\0", 6);
		test_cond("UTF-16 without a byte-order mark: its NULs", !lora_dataset_load(&ot) &&
		          strstr(lora_errmsg(), "t.txt': line 1, byte 2: a NUL byte"));
		write_bytes(f2, "\xEF\xBB\xBFna\xC3", 6);
		test_cond("a character cut off by the end of the file; the byte count leaves out the mark",
		          !lora_dataset_load(&ot) &&
		          strstr(lora_errmsg(), "t.txt': line 1, byte 3: the file ends inside a UTF-8 character (0xC3"));
		write_bytes(f2, "ok\nx \xF0\x9F\x98", 7);
		test_cond("three bytes of a four-byte character at the end: cut off", !lora_dataset_load(&ot) &&
		          strstr(lora_errmsg(), "t.txt': line 2, byte 3: the file ends inside a UTF-8 character (0xF0"));
		write_bytes(f2, "na\xC3 x", 5);
		test_cond("the same byte before more text: not UTF-8", !lora_dataset_load(&ot) &&
		          strstr(lora_errmsg(), "t.txt': line 1, byte 3: 0xC3 is not UTF-8"));
		write_bytes(f2, "na\xE0\x80", 4);
		test_cond("an ill-formed pair at the end is not a cut-off character", !lora_dataset_load(&ot) &&
		          strstr(lora_errmsg(), "t.txt': line 1, byte 3: 0xE0 is not UTF-8"));
		unlink(f2);
		rmdir(e2);
		free(f2);
		free(e2);
		lora_tokenizer_free(tok);
	}
	free(tp);

	/* splitmix64 first output for state 0 (the published test value) */
	uint64_t s = 0;
	test_cond("splitmix64", lora_splitmix64(&s) == 0xE220A8397B1DCDAFULL);
	return test_report();
}
