/* data.c: see data.h. */
#include "data.h"
#include "backend.h"            /* LORA_IGNORE_INDEX */
#include "tokenizer.h"          /* lora_utf8_valid_prefix */
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>            /* json_loadb for .jsonl lines */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- random numbers ------------------------------------------------------------ */

uint64_t lora_splitmix64(uint64_t *s)
{
	uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
	return z ^ (z >> 31);
}

static uint64_t below(uint64_t *s, uint64_t k)
{
	return (uint64_t)(((unsigned __int128)lora_splitmix64(s) * k) >> 64);
}

static void shuffle(int *a, int n, uint64_t state)
{
	for (int i = n - 1; i > 0; i--) {
		int j = (int)below(&state, (uint64_t)i + 1);
		int t = a[i];
		a[i] = a[j];
		a[j] = t;
	}
}

static int cmp_int(const void *a, const void *b)
{
	int x = *(const int *)a, y = *(const int *)b;
	return (x > y) - (x < y);
}

/* ---- building examples ----------------------------------------------------------- */

typedef struct {
	lora_dataset *d;
	const lora_data_opts *o;
	int bos, eos;
	/* the current example being built */
	int32_t *ids;
	uint8_t *tgt;
	int n, cap;
	int pack;              /* .txt: emit every max_seq_length ids as they come */
} builder;

static void emit(builder *b);

/* Free d's examples and their array (not d). */
static void examples_free(lora_dataset *d)
{
	for (int i = 0; i < d->n; i++) {
		free(d->ex[i].ids);
		free(d->ex[i].target);
	}
	free(d->ex);
}

/* The next slot of d->ex, grown 1024 at a time. */
static lora_example *new_example(lora_dataset *d)
{
	if (d->n % 1024 == 0)
		d->ex = lora_xrealloc(d->ex, ((size_t)d->n + 1024) * sizeof *d->ex);
	return &d->ex[d->n++];
}

static void push(builder *b, int32_t id, int target)
{
	if (b->n == b->cap) {
		b->cap = b->cap ? 2 * b->cap : 256;
		b->ids = lora_xrealloc(b->ids, (size_t)b->cap * sizeof *b->ids);
		b->tgt = lora_xrealloc(b->tgt, (size_t)b->cap);
	}
	b->ids[b->n] = id;
	b->tgt[b->n] = (uint8_t)target;
	b->n++;
	if (b->pack && b->n == b->o->max_seq_length)
		emit(b);
}

/* Finish the current example: cut, drop, or store it. */
static void emit(builder *b)
{
	lora_dataset *d = b->d;
	int n = b->n;
	b->n = 0;
	if (n > b->o->max_seq_length) {
		n = b->o->max_seq_length;
		d->ntruncated++;
	}
	int ntgt = 0;
	for (int i = 1; i < n; i++)
		ntgt += b->tgt[i];
	if (n < 2 || !ntgt) {
		d->ndropped++;
		return;
	}
	lora_example *e = new_example(d);
	e->n = n;
	e->ids = lora_xmalloc((size_t)n * sizeof *e->ids);
	e->target = lora_xmalloc((size_t)n);
	memcpy(e->ids, b->ids, (size_t)n * sizeof *e->ids);
	memcpy(e->target, b->tgt, (size_t)n);
	if (n > d->max_len)
		d->max_len = n;
	d->ntokens += (size_t)n;
	d->ntargets += (size_t)ntgt;
}

/* s[0..len) as ids (*ids: free it); -1 + lora_err naming the file. */
static int tokenize(const lora_data_opts *o, const char *path, long line, const char *s,
                    size_t len, int32_t **ids, size_t *n)
{
	if (lora_tokenizer_encode(o->tok, s, len, 0, ids, n) == 0)
		return 0;
	if (line)
		return lora_err("'%s': line %ld: %s", path, line, lora_errmsg());
	return lora_err("'%s': %s", path, lora_errmsg());
}

static int encode(builder *b, const char *path, long line, const char *s, size_t len, int target)
{
	int32_t *ids;
	size_t n;
	if (tokenize(b->o, path, line, s, len, &ids, &n) < 0)
		return -1;
	for (size_t i = 0; i < n; i++)
		push(b, ids[i], target);
	free(ids);
	return 0;
}

/* The whole lines of bytes [from, to) of a file (*len bytes, NUL-ended;
 * free it): from the first '\n' at or after byte from - 1 (or the start,
 * for from = 0) to the first at or after byte to - 1 (or the end), so the
 * pieces [0, a), [a, b), ... of a file hold each line once. *at_start: the
 * piece starts the file. NULL + lora_errmsg on error. */
static char *read_piece(const char *path, size_t from, size_t to, size_t *len, int *at_start)
{
	FILE *fp = fopen(path, "rb");
	if (!fp) {
		lora_err("cannot open '%s':", path);
		return NULL;
	}
	size_t at[2] = {0, 0}, edge[2] = {from, to};
	int c = 0;
	for (int k = 0; k < 2; k++) {
		if (edge[k] == 0)
			continue;
		if (fseeko(fp, (off_t)edge[k] - 1, SEEK_SET) != 0)
			goto fail;
		size_t pos = edge[k] - 1;
		while ((c = getc(fp)) != EOF && c != '\n')
			pos++;
		if (ferror(fp))
			goto fail;
		at[k] = c == '\n' ? pos + 1 : pos;
	}
	*len = at[1] > at[0] ? at[1] - at[0] : 0;
	char *s = lora_xmalloc(*len + 1);
	if (fseeko(fp, (off_t)at[0], SEEK_SET) != 0 || fread(s, 1, *len, fp) != *len) {
		free(s);
		goto fail;
	}
	s[*len] = 0;
	fclose(fp);
	*at_start = at[0] == 0;
	return s;
fail:
	lora_err("cannot read '%s':", path);
	fclose(fp);
	return NULL;
}

/* Read a data file, or with to > 0 the piece [from, to) of one
 * (read_piece); *off is where its content starts (past a UTF-8
 * byte-order mark, which marks the encoding and is not text). The text
 * formats (.txt, .jsonl; text = 1) are UTF-8, read strictly as Python's
 * open() and HF datasets read them: a UTF-16 byte-order mark, a byte that
 * is not UTF-8 or a NUL (UTF-16 text has one in every ASCII character) is
 * an error naming the line, so a Latin-1 or UTF-16 file is never trained on
 * as replacement characters or NULs; and with Python's universal newlines
 * (*len shrinks). NULL + lora_errmsg on error. */
static char *read_data(const char *path, int text, size_t from, size_t to, size_t *off,
                       size_t *len)
{
	int at_start = 1;
	char *s = to ? read_piece(path, from, to, len, &at_start) : lora_read_file(path, len);
	if (!s)
		return NULL;
	size_t n = *len;
	*off = at_start ? lora_bom_len(s, n) : 0;
	if (!text)
		return s;
	if (at_start && n >= 2 && (!memcmp(s, "\xFF\xFE", 2) || !memcmp(s, "\xFE\xFF", 2))) {
		lora_err("'%s': UTF-16 text (it starts with a UTF-16 byte-order mark): "
		         "convert it to UTF-8, e.g. iconv -f UTF-16 -t UTF-8", path);
		free(s);
		return NULL;
	}
	size_t bad = *off + lora_utf8_valid_prefix(s + *off, n - *off);
	const char *nul = memchr(s + *off, '\0', bad - *off);
	if (nul)
		bad = (size_t)(nul - s);
	if (bad == n) {
		/* a file saved on Windows trains as the same text */
		*len = *off + lora_newlines(s + *off, n - *off);
		return s;
	}
	long line = 1;
	size_t col = bad - *off + 1;
	for (size_t i = 0; i < bad; i++)
		if (s[i] == '\n') {
			line++;
			col = bad - i;
		}
	if (nul)
		lora_err("'%s': line %ld, byte %zu: a NUL byte, so not UTF-8 text (UTF-16?): "
		         "convert it, e.g. iconv -f UTF-16 -t UTF-8", path, line, col);
	else if (lora_utf8_cut(s + bad, n - bad))
		lora_err("'%s': line %ld, byte %zu: the file ends inside a UTF-8 character "
		         "(0x%02X starts one): was it cut short when it was split or copied?",
		         path, line, col, (unsigned char)s[bad]);
	else
		lora_err("'%s': line %ld, byte %zu: 0x%02X is not UTF-8 (Latin-1 or Windows-1252 "
		         "text?): convert it, e.g. iconv -f WINDOWS-1252 -t UTF-8", path, line, col,
		         (unsigned char)s[bad]);
	free(s);
	return NULL;
}

/* .txt: the ids of the whole file (*ids: free it). Packing them waits for
 * the files before it (see merge). */
static int read_txt(const lora_data_opts *o, const char *path, int32_t **ids, size_t *n)
{
	size_t start, len;
	char *s = read_data(path, 1, 0, 0, &start, &len);
	if (!s)
		return -1;
	int rc = tokenize(o, path, 0, s + start, len - start, ids, n);
	free(s);
	return rc;
}

static const char *str_field(json_t *o, const char *k, int *present)
{
	json_t *v = json_object_get(o, k);
	*present = v != NULL && !json_is_null(v);
	return json_is_string(v) ? json_string_value(v) : NULL;
}

static int load_jsonl_line(builder *b, const char *path, long line, const char *s, size_t len)
{
	json_error_t je;
	json_t *o = json_loadb(s, len, JSON_REJECT_DUPLICATES, &je);
	if (!o)
		return lora_err("'%s': line %ld: %s", path, line, je.text);
	int rc = -1;
	int has_text, has_prompt, has_compl, has_instr, has_input, has_output;
	if (!json_is_object(o)) {
		lora_err("'%s': line %ld: expected a JSON object", path, line);
		goto out;
	}
	const char *text = str_field(o, "text", &has_text);
	const char *prompt = str_field(o, "prompt", &has_prompt);
	const char *compl = str_field(o, "completion", &has_compl);
	const char *instr = str_field(o, "instruction", &has_instr);
	const char *input = str_field(o, "input", &has_input);
	const char *output = str_field(o, "output", &has_output);
	if ((has_text && !text) || (has_prompt && !prompt) || (has_compl && !compl) ||
	    (has_instr && !instr) || (has_input && !input) || (has_output && !output)) {
		lora_err("'%s': line %ld: text fields must be strings", path, line);
		goto out;
	}
	if (b->bos >= 0)
		push(b, b->bos, 1);
	if (text) {
		if (encode(b, path, line, text, strlen(text), 1) < 0)
			goto out;
	} else if (prompt && compl) {
		if (encode(b, path, line, prompt, strlen(prompt), 0) < 0 ||
		    encode(b, path, line, compl, strlen(compl), 1) < 0)
			goto out;
	} else if (instr && output) {
		char *p;
		if (input && *input)
			p = lora_xasprintf("Below is an instruction that describes a task, paired with an "
			                   "input that provides further context. Write a response that "
			                   "appropriately completes the request.\n\n### Instruction:\n%s"
			                   "\n\n### Input:\n%s\n\n### Response:\n", instr, input);
		else
			p = lora_xasprintf("Below is an instruction that describes a task. Write a "
			                   "response that appropriately completes the request.\n\n"
			                   "### Instruction:\n%s\n\n### Response:\n", instr);
		int r = encode(b, path, line, p, strlen(p), 0);
		free(p);
		if (r < 0 || encode(b, path, line, output, strlen(output), 1) < 0)
			goto out;
	} else {
		/* chat data (OpenAI's and TRL's "messages", ShareGPT's
		 * "conversations") needs a chat template: say so by name */
		const char *chat = json_object_get(o, "messages") ? "messages" :
		                   json_object_get(o, "conversations") ? "conversations" : NULL;
		if (chat)
			lora_err("'%s': line %ld: chat data (\"%s\") is not supported: write each "
			         "conversation as a \"prompt\" (the turns so far, in the model's chat "
			         "format) and a \"completion\" (the reply to learn)", path, line, chat);
		else
			lora_err("'%s': line %ld: expected a \"text\", \"prompt\"+\"completion\" or "
			         "\"instruction\"+\"output\" field", path, line);
		goto out;
	}
	if (b->eos >= 0)
		push(b, b->eos, 1);
	emit(b);
	rc = 0;
out:
	b->n = 0;
	json_decref(o);
	return rc;
}

/* Parse decimal ids separated by spaces or commas in s[0..len). */
static int parse_ids(builder *b, const char *path, long line, const char *s, size_t len, int target)
{
	size_t i = 0;
	while (i < len) {
		while (i < len && (s[i] == ' ' || s[i] == ',' || s[i] == '\r'))
			i++;
		if (i == len)
			break;
		if (s[i] < '0' || s[i] > '9') {
			if (s[i] > ' ' && s[i] < 0x7F)
				return lora_err("'%s': line %ld: '%c' in a token-id list (expected ids "
				                "separated by spaces)", path, line, s[i]);
			return lora_err("'%s': line %ld: byte 0x%02X in a token-id list (expected ids "
			                "separated by spaces)", path, line, (unsigned char)s[i]);
		}
		long v = 0;
		while (i < len && s[i] >= '0' && s[i] <= '9') {
			v = v * 10 + (s[i++] - '0');
			if (v > INT32_MAX)
				return lora_err("'%s': line %ld: token id too large", path, line);
		}
		if (b->o->vocab_size > 0 && v >= b->o->vocab_size)
			return lora_err("'%s': line %ld: token id %ld is outside the model's vocabulary "
			                "(%d tokens): ids made with a different tokenizer?", path, line,
			                v, b->o->vocab_size);
		push(b, (int32_t)v, target);
	}
	return 0;
}

static int load_ids_line(builder *b, const char *path, long line, const char *s, size_t len)
{
	const char *tab = memchr(s, '\t', len);
	int rc;
	if (!tab) {
		rc = parse_ids(b, path, line, s, len, 1);
	} else {
		if (memchr(tab + 1, '\t', len - (size_t)(tab + 1 - s))) {
			b->n = 0;
			return lora_err("'%s': line %ld: expected 'ids' or 'prompt_ids<TAB>answer_ids'",
			                path, line);
		}
		rc = parse_ids(b, path, line, s, (size_t)(tab - s), 0);
		if (rc == 0)
			rc = parse_ids(b, path, line, tab + 1, len - (size_t)(tab + 1 - s), 1);
	}
	if (rc == 0)
		emit(b);
	b->n = 0;
	return rc;
}

/* The lines of a file, or of its piece [from, to) when to > 0 (whose line
 * numbers then count from the piece's start), each given to fn. */
static int load_lines(builder *b, const char *path, int text, size_t from, size_t to,
                      int (*fn)(builder *, const char *, long, const char *, size_t))
{
	size_t i, len;
	char *s = read_data(path, text, from, to, &i, &len);
	if (!s)
		return -1;
	long line = 0;
	int rc = 0;
	while (i < len && rc == 0) {
		char *nl = memchr(s + i, '\n', len - i);
		size_t e = nl ? (size_t)(nl - s) : len;
		line++;
		size_t k = i;
		while (k < e && (s[k] == ' ' || s[k] == '\t' || s[k] == '\r'))
			k++;
		if (k < e)
			rc = fn(b, path, line, s + i, e - i);
		i = e + 1;
	}
	free(s);
	return rc;
}

/* ---- the dataset ------------------------------------------------------------------- */

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int ext_kind(const char *name)
{
	size_t n = strlen(name);
	if (n > 4 && !strcmp(name + n - 4, ".txt")) return 0;
	if (n > 6 && !strcmp(name + n - 6, ".jsonl")) return 1;
	if (n > 4 && !strcmp(name + n - 4, ".ids")) return 2;
	return -1;
}

/* ---- reading the files, several at a time ------------------------------------ */

/* One data file. Reader threads read and tokenize files side by side
 * (read_one), taking them in name order; the results join the dataset one
 * by one in name order (merge), so the dataset is the same whatever the
 * number of threads. */
typedef struct {
	char *path;
	int kind;                   /* ext_kind's */
	size_t size;                /* bytes, to bound what is read ahead */
	size_t from, to;            /* to > 0: a piece of a .jsonl/.ids file (read_piece) */
	int first;                  /* the file's first piece, or the whole file */
	int done;                   /* read_one has finished it */
	int rc;                     /* read_one's; -1: err says why */
	char *err;
	int32_t *ids;               /* .txt: (nids) the whole file's ids */
	size_t nids;
	lora_dataset part;          /* .jsonl, .ids: its examples and counts */
} data_file;

/* Text the readers may read ahead of the merge, unless read_ahead says:
 * enough to keep each one busy, and a bound on what the files read but not
 * yet merged hold (their ids or examples: a few bytes of memory per byte of
 * text), which does not grow past 256 MiB on a machine of many cores. The
 * file the merge waits for is always read, whatever its size. */
#define READ_AHEAD_THREAD ((size_t)32 << 20)
#define READ_AHEAD_MAX ((size_t)256 << 20)
/* A .jsonl or .ids file over this size is read in pieces of about this
 * many bytes, by several threads, unless lora_data_opts.piece says. */
#define PIECE ((size_t)1 << 20)

typedef struct {
	const lora_data_opts *o;
	data_file *f;
	int nf, bos, eos;
	pthread_mutex_t mu;         /* guards the rest, and every f[].done */
	pthread_cond_t cv;          /* a file is done, merged, or stop is set */
	int next;                   /* the next file to read */
	int merged;                 /* files merged: f[merged] is the one waited for */
	size_t ahead, ahead_max;    /* bytes of files taken and not yet merged */
	int stop;                   /* an error: read no more */
} reader;

/* The examples of a .jsonl or .ids file (kind 1, 2), or of its piece
 * [from, to) when to > 0, added to d (each line is one). */
static int load_examples(const lora_data_opts *o, const char *path, int kind, int bos, int eos,
                         size_t from, size_t to, lora_dataset *d)
{
	builder b = {.d = d, .o = o, .bos = bos, .eos = eos};
	int rc = load_lines(&b, path, kind == 1, from, to,
	                    kind == 1 ? load_jsonl_line : load_ids_line);
	free(b.ids);
	free(b.tgt);
	return rc;
}

static void read_one(reader *r, data_file *f)
{
	if (f->kind != 2 && !r->o->tok) {
		f->rc = lora_err("'%s': text needs a tokenizer (none in base_model; set tokenizer:)",
		                 f->path);
	} else if (f->kind == 0) {
		f->rc = read_txt(r->o, f->path, &f->ids, &f->nids);
	} else {
		/* a .jsonl or .ids line is an example of its own: built here */
		f->rc = load_examples(r->o, f->path, f->kind, r->bos, r->eos, f->from, f->to,
		                      &f->part);
	}
	if (f->rc < 0)
		f->err = lora_xstrdup(lora_errmsg());
}

/* A reader thread: take the next file while the bytes read ahead allow,
 * read it, mark it done; until all are taken or stop. */
static void *reader_thread(void *p)
{
	reader *r = p;
	pthread_mutex_lock(&r->mu);
	for (;;) {
		while (!r->stop && r->next < r->nf && r->next > r->merged &&
		       r->ahead + r->f[r->next].size > r->ahead_max)
			pthread_cond_wait(&r->cv, &r->mu);
		if (r->stop || r->next == r->nf)
			break;
		data_file *f = &r->f[r->next++];
		r->ahead += f->size;
		pthread_mutex_unlock(&r->mu);
		read_one(r, f);
		pthread_mutex_lock(&r->mu);
		f->done = 1;
		pthread_cond_broadcast(&r->cv);
	}
	pthread_mutex_unlock(&r->mu);
	return NULL;
}

/* Add a file read by read_one to the dataset b builds. A .txt's ids and an
 * EOS join the running stream, which is cut into max_seq_length chunks as
 * it grows; its tail carries into the next .txt and ends before a file of
 * another kind. */
static void merge(builder *b, data_file *f)
{
	lora_dataset *d = b->d, *p = &f->part;
	if (f->kind == 0) {
		b->pack = 1;
		for (size_t i = 0; i < f->nids; i++)
			push(b, f->ids[i], 1);
		if (b->eos >= 0)
			push(b, b->eos, 1);
		b->pack = 0;
	} else {
		if (b->n)
			emit(b);
		for (int i = 0; i < p->n; i++)
			*new_example(d) = p->ex[i];
		p->n = 0;                       /* the examples are d's now */
		if (p->max_len > d->max_len)
			d->max_len = p->max_len;
		d->ntokens += p->ntokens;
		d->ntargets += p->ntargets;
		d->ntruncated += p->ntruncated;
		d->ndropped += p->ndropped;
	}
	d->nfiles[f->kind] += f->first;
}

/* The error of a piece of a file names a line counted from the piece's
 * start: read the whole file again, which stops at the same line and names
 * it counted from the file's. */
static void piece_error(const lora_data_opts *o, const data_file *f, int bos, int eos)
{
	lora_dataset scratch = {0};
	if (load_examples(o, f->path, f->kind, bos, eos, 0, 0, &scratch) == 0)
		lora_err("%s", f->err);  /* not seen again: the piece's own words */
	examples_free(&scratch);
}

/* Free what f holds and zero it (so freeing twice is harmless). */
static void data_file_free(data_file *f)
{
	examples_free(&f->part);
	free(f->ids);
	free(f->err);
	free(f->path);
	*f = (data_file){0};
}

lora_dataset *lora_dataset_load(const lora_data_opts *o)
{
	LORA_ASSERT(o->max_seq_length >= 2);
	DIR *dir = opendir(o->dir);
	if (!dir) {
		lora_err("cannot open '%s':", o->dir);
		return NULL;
	}
	char **names = NULL;
	int nnames = 0;
	struct dirent *de;
	while ((de = readdir(dir))) {
		if (de->d_name[0] == '.')
			continue;
		names = lora_xrealloc(names, ((size_t)nnames + 1) * sizeof *names);
		names[nnames++] = lora_xstrdup(de->d_name);
	}
	closedir(dir);
	if (nnames)
		qsort(names, (size_t)nnames, sizeof *names, cmp_str);

	/* the data files in name order; other entries are counted, and the
	 * first named, so the user hears of them */
	lora_dataset *d = lora_xcalloc(1, sizeof *d);
	data_file *f = NULL;
	int nf = 0;
	size_t piece = o->piece ? o->piece : PIECE;
	for (int i = 0; i < nnames; i++) {
		char *path = lora_xasprintf("%s/%s", o->dir, names[i]);
		int kind = ext_kind(names[i]);
		struct stat st;
		int found = stat(path, &st) == 0;
		if (kind < 0 || !found || !S_ISREG(st.st_mode)) {
			if (!d->nskipped++)
				d->skipped = lora_xasprintf("'%s%s'", names[i],
				                            found && S_ISDIR(st.st_mode) ? "/" : "");
			free(path);
		} else {
			/* .jsonl/.ids lines stand alone: a big file is cut in pieces */
			size_t size = (size_t)st.st_size;
			size_t n = kind > 0 && size > piece ? (size + piece - 1) / piece : 1;
			f = lora_xrealloc(f, ((size_t)nf + n) * sizeof *f);
			for (size_t k = 0; k < n; k++) {
				size_t to = n > 1 ? (k + 1 == n ? size : (k + 1) * piece) : 0;
				f[nf++] = (data_file){.path = k ? lora_xstrdup(path) : path, .kind = kind,
				                      .size = n > 1 ? to - k * piece : size,
				                      .from = k * piece, .to = to, .first = k == 0};
			}
		}
		free(names[i]);
	}
	free(names);
	if (d->nskipped > 1) {
		char *all = lora_xasprintf("%s and %d other%s", d->skipped, d->nskipped - 1,
		                           d->nskipped == 2 ? "" : "s");
		free(d->skipped);
		d->skipped = all;
	}

	builder b = {.d = d, .o = o, .bos = -1, .eos = -1};
	if (o->tok) {
		b.bos = lora_tokenizer_bos_id(o->tok);
		b.eos = lora_tokenizer_eos_id(o->tok);
		if (b.bos < 0)
			b.bos = o->model_bos_id;
		if (b.eos < 0)
			b.eos = o->model_eos_id;
		d->pad_id = lora_tokenizer_pad_id(o->tok);
		if (d->pad_id < 0)
			d->pad_id = b.eos >= 0 ? b.eos : 0;
	}
	/* lora_nthreads() readers take the files in order, the merge follows
	 * them in order; the first error in name order stops the load */
	int nt = lora_nthreads(), rc = 0;
	size_t done = 0, total = 0;
	for (int i = 0; i < nf; i++)
		total += f[i].size;
	if (nt > nf)
		nt = nf > 0 ? nf : 1;
	size_t ahead = READ_AHEAD_THREAD * (size_t)nt;
	reader r = {.o = o, .f = f, .nf = nf, .bos = b.bos, .eos = b.eos,
	            .ahead_max = o->read_ahead ? o->read_ahead :
	                         ahead < READ_AHEAD_MAX ? ahead : READ_AHEAD_MAX};
	pthread_t *th = lora_xmalloc((size_t)nt * sizeof *th);
	if (nt > 1) {
		pthread_mutex_init(&r.mu, NULL);
		pthread_cond_init(&r.cv, NULL);
		for (int t = 0; t < nt; t++)
			if (pthread_create(&th[t], NULL, reader_thread, &r) != 0)
				LORA_ASSERT(!"pthread_create failed");
	}
	for (int i = 0; i < nf && rc == 0; i++) {
		if (nt > 1) {
			pthread_mutex_lock(&r.mu);
			while (!f[i].done)
				pthread_cond_wait(&r.cv, &r.mu);
			pthread_mutex_unlock(&r.mu);
		} else {
			read_one(&r, &f[i]);
		}
		if (f[i].rc < 0) {
			rc = lora_err("%s", f[i].err);
			if (f[i].to && (f[i].kind == 2 || o->tok))   /* an error in its lines */
				piece_error(o, &f[i], b.bos, b.eos);
		} else {
			merge(&b, &f[i]);
		}
		size_t size = f[i].size;
		data_file_free(&f[i]);
		done += size;
		if (rc == 0 && o->progress)
			o->progress(o->progress_arg, done, total);
		if (nt > 1) {
			pthread_mutex_lock(&r.mu);
			r.merged = i + 1;
			r.ahead -= size;
			r.stop = rc < 0;
			pthread_cond_broadcast(&r.cv);
			pthread_mutex_unlock(&r.mu);
		}
	}
	if (nt > 1) {
		for (int t = 0; t < nt; t++)
			pthread_join(th[t], NULL);
		pthread_cond_destroy(&r.cv);
		pthread_mutex_destroy(&r.mu);
	}
	free(th);
	if (rc == 0 && b.n)
		emit(&b);
	for (int i = 0; i < nf; i++)
		data_file_free(&f[i]);
	free(f);
	free(b.ids);
	free(b.tgt);
	if (rc < 0) {
		lora_dataset_free(d);
		return NULL;
	}
	/* ids from a tokenizer can also exceed a smaller model vocabulary */
	for (int i = 0; i < d->n && o->vocab_size > 0; i++)
		for (int t = 0; t < d->ex[i].n; t++)
			if (d->ex[i].ids[t] < 0 || d->ex[i].ids[t] >= o->vocab_size) {
				lora_err("'%s': token id %d is outside the model's vocabulary (%d tokens): "
				         "tokenizer and model do not match", o->dir, d->ex[i].ids[t],
				         o->vocab_size);
				lora_dataset_free(d);
				return NULL;
			}
	if (d->n == 0) {
		int nread = d->nfiles[0] + d->nfiles[1] + d->nfiles[2];
		if (nread == 0 && d->nskipped)
			lora_err("'%s': no training data: %s not read (only .txt, .jsonl and .ids files "
			         "directly in it are)", o->dir, d->skipped);
		else if (nread == 0)
			lora_err("'%s': no training data (no .txt, .jsonl or .ids files)", o->dir);
		else if (d->ndropped && d->ntruncated)
			lora_err("'%s': empty dataset: all %d examples lose their answer when cut to "
			         "max_seq_length %d (raise max_seq_length)", o->dir, d->ndropped,
			         o->max_seq_length);
		else
			lora_err("'%s': empty dataset (no example with a token to learn)", o->dir);
		lora_dataset_free(d);
		return NULL;
	}

	/* held-out split */
	int *perm = lora_xmalloc((size_t)d->n * sizeof *perm);
	for (int i = 0; i < d->n; i++)
		perm[i] = i;
	int nval = 0;
	if (o->val_split > 0) {
		nval = (int)(o->val_split * d->n + 0.5);
		if (nval < 1)
			nval = 1;
		if (nval >= d->n) {
			lora_err("'%s': %d example%s: too few to hold out val_split %g", o->dir, d->n,
			         d->n == 1 ? "" : "s", o->val_split);
			free(perm);
			lora_dataset_free(d);
			return NULL;
		}
		shuffle(perm, d->n, o->seed ^ 0x5EED5EED5EED5EEDULL);
	}
	d->nval = nval;
	d->ntrain = d->n - nval;
	d->val = lora_xmalloc(((size_t)nval + 1) * sizeof *d->val);
	d->train = lora_xmalloc((size_t)d->ntrain * sizeof *d->train);
	memcpy(d->val, perm, (size_t)nval * sizeof *perm);
	memcpy(d->train, perm + nval, (size_t)d->ntrain * sizeof *perm);
	qsort(d->val, (size_t)nval, sizeof *d->val, cmp_int);
	qsort(d->train, (size_t)d->ntrain, sizeof *d->train, cmp_int);
	free(perm);
	return d;
}

void lora_dataset_free(lora_dataset *d)
{
	if (!d)
		return;
	examples_free(d);
	free(d->train);
	free(d->val);
	free(d->skipped);
	free(d);
}

void lora_dataset_order(const lora_dataset *d, uint64_t seed, int64_t epoch, int *order)
{
	memcpy(order, d->train, (size_t)d->ntrain * sizeof *order);
	shuffle(order, d->ntrain, seed + 0xD1B54A32D192ED03ULL * (uint64_t)(epoch + 1));
}

int lora_batch_make(const lora_dataset *d, const int *idx, int B, int32_t *ids,
                    int32_t *targets, int *ntargets)
{
	int T = 0, cnt = 0;
	for (int b = 0; b < B; b++)
		if (d->ex[idx[b]].n > T)
			T = d->ex[idx[b]].n;
	for (int b = 0; b < B; b++) {
		const lora_example *e = &d->ex[idx[b]];
		int32_t *row = ids + (size_t)b * T, *tr = targets + (size_t)b * T;
		for (int t = 0; t < T; t++) {
			row[t] = t < e->n ? e->ids[t] : d->pad_id;
			if (t + 1 < e->n && e->target[t + 1]) {
				tr[t] = e->ids[t + 1];
				cnt++;
			} else {
				tr[t] = LORA_IGNORE_INDEX;
			}
		}
	}
	if (ntargets)
		*ntargets = cnt;
	return T;
}
