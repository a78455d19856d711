/* lora-tokenize: text lines in, token-id lines out (and back with --decode).
 * See man/lora-tokenize.1. Records are read in batches and encoded on
 * lora_nthreads() threads; output keeps input order. */
#include "tokenizer.h"   // lora_tokenizer_load, _encode, _decode_n, _bos_id ...
#include "util.h"        // lora_die, lora_parse_long, lora_parallel_for

#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *fp)
{
	fputs("usage: lora-tokenize [-h] [--bos] [--count] [--decode] [--eos] [--field N] [--file]\n"
	      "                     [--jsonl KEY] [--max-len N] [--pad] [--skip-special] -t FILE [file ...]\n",
	      fp);
}

static struct {
	lora_tokenizer *tok;
	int bos, eos, count, decode, file, pad, skip_special;
	long field, max_len;
	const char *jsonl;
	int32_t pad_id;
} opt = { .max_len = -1 };

/* ---- one record ---------------------------------------------------------------------- */

typedef struct {
	char *line;        /* the record as read (no '\n'); owned */
	size_t len;
	const char *name;  /* source file, for messages */
	long lineno;
	char *out;         /* what to print (no '\n'); owned */
	size_t out_len;
	char *err;         /* error message, or NULL */
} rec;

static void append(char **buf, size_t *len, size_t *cap, const char *s, size_t n)
{
	if (*len + n + 1 > *cap) {
		*cap = (*len + n + 1) * 2;
		*buf = lora_xrealloc(*buf, *cap);
	}
	memcpy(*buf + *len, s, n);
	*len += n;
	(*buf)[*len] = 0;
}

static size_t fmt_int(char *b, long v)
{
	char tmp[24];
	size_t n = 0, k = 0;
	int neg = v < 0;
	unsigned long u = neg ? -(unsigned long)v : (unsigned long)v;
	do
		tmp[n++] = (char)('0' + u % 10);
	while (u /= 10);
	if (neg)
		b[k++] = '-';
	while (n)
		b[k++] = tmp[--n];
	return k;
}

/* Encode text into the printed form: "1 2 3" or the count. */
static char *encode_text(const char *text, size_t len, size_t *out_len, char **err)
{
	int32_t *ids;
	size_t n;
	if (lora_tokenizer_encode(opt.tok, text, len, 0, &ids, &n) < 0) {
		*err = lora_xstrdup(lora_errmsg());
		return NULL;
	}
	size_t total = n + (opt.bos ? 1 : 0) + (opt.eos ? 1 : 0);
	size_t keep = total;
	if (opt.max_len >= 0 && keep > (size_t)opt.max_len)
		keep = (size_t)opt.max_len;
	if (opt.pad && keep < (size_t)opt.max_len)
		keep = (size_t)opt.max_len;
	int32_t *all = lora_xmalloc((keep ? keep : 1) * sizeof *all);
	size_t k = 0;
	if (opt.bos && k < keep)
		all[k++] = lora_tokenizer_bos_id(opt.tok);
	for (size_t i = 0; i < n && k < keep; i++)
		all[k++] = ids[i];
	if (opt.eos && k < keep)
		all[k++] = lora_tokenizer_eos_id(opt.tok);
	else if (opt.eos && keep > 0 && total > keep)
		all[keep - 1] = lora_tokenizer_eos_id(opt.tok);   /* truncated: keep the EOS (open_clip) */
	while (k < keep)
		all[k++] = opt.pad_id;
	free(ids);
	char *s;
	if (opt.count) {
		s = lora_xasprintf("%zu", keep);
		*out_len = strlen(s);
	} else {
		s = lora_xmalloc(keep * 12 + 1);
		size_t o = 0;
		for (size_t i = 0; i < keep; i++) {
			if (i)
				s[o++] = ' ';
			o += fmt_int(s + o, all[i]);
		}
		s[o] = 0;
		*out_len = o;
	}
	free(all);
	return s;
}

/* "12 7 99" -> decoded text. */
static char *decode_ids(const char *s, size_t len, size_t *out_len, char **err)
{
	size_t cap = 64, n = 0;
	int32_t *ids = lora_xmalloc(cap * sizeof *ids);
	size_t i = 0;
	while (i < len) {
		while (i < len && (s[i] == ' ' || s[i] == '\r'))
			i++;
		if (i >= len)
			break;
		long v = 0;
		size_t d0 = i;
		while (i < len && s[i] >= '0' && s[i] <= '9' && i - d0 < 10)
			v = v * 10 + (s[i++] - '0');
		if (i == d0 || (i < len && s[i] != ' ' && s[i] != '\r') || v > INT32_MAX) {
			free(ids);
			*err = lora_xasprintf("not a token id: '%.*s'", (int)(len - d0 > 20 ? 20 : len - d0), s + d0);
			return NULL;
		}
		if (v >= lora_tokenizer_vocab_size(opt.tok)) {
			free(ids);
			*err = lora_xasprintf("token id %ld is out of range (vocabulary size %d)", v,
			                      lora_tokenizer_vocab_size(opt.tok));
			return NULL;
		}
		if (n == cap)
			ids = lora_xrealloc(ids, (cap *= 2) * sizeof *ids);
		ids[n++] = (int32_t)v;
	}
	char *text = lora_tokenizer_decode_n(opt.tok, ids, n, opt.skip_special, out_len);
	free(ids);
	return text;
}

static char *transform(const char *s, size_t len, size_t *out_len, char **err)
{
	return opt.decode ? decode_ids(s, len, out_len, err) : encode_text(s, len, out_len, err);
}

static void process(void *ctx, int i, int tid)
{
	(void)tid;
	rec *r = &((rec *)ctx)[i];
	if (opt.jsonl) {
		json_error_t je;
		json_t *o = json_loadb(r->line, r->len, JSON_DECODE_INT_AS_REAL, &je);
		json_t *v = json_is_object(o) ? json_object_get(o, opt.jsonl) : NULL;
		if (!o)
			r->err = lora_xasprintf("not JSON: %s", je.text);
		else if (!json_is_string(v))
			r->err = lora_xasprintf("no string \"%s\" in this JSON line", opt.jsonl);
		else
			r->out = transform(json_string_value(v), json_string_length(v), &r->out_len, &r->err);
		json_decref(o);
		return;
	}
	if (opt.field <= 0) {
		r->out = transform(r->line, r->len, &r->out_len, &r->err);
		return;
	}
	/* --field N: replace the N-th tab-separated field, pass the rest through */
	size_t fs = 0, fe;
	long f = 1;
	while (f < opt.field) {
		const char *tab = memchr(r->line + fs, '\t', r->len - fs);
		if (!tab) {
			r->err = lora_xasprintf("no field %ld (the line has %ld)", opt.field, f);
			return;
		}
		fs = (size_t)(tab - r->line) + 1;
		f++;
	}
	const char *tab = memchr(r->line + fs, '\t', r->len - fs);
	fe = tab ? (size_t)(tab - r->line) : r->len;
	size_t ml;
	char *mid = transform(r->line + fs, fe - fs, &ml, &r->err);
	if (!mid)
		return;
	size_t cap = 0;
	r->out = NULL;
	r->out_len = 0;
	append(&r->out, &r->out_len, &cap, r->line, fs);
	append(&r->out, &r->out_len, &cap, mid, ml);
	append(&r->out, &r->out_len, &cap, r->line + fe, r->len - fe);
	free(mid);
}

/* ---- batching ---------------------------------------------------------------------------- */

#define BATCH_RECS 4096
#define BATCH_BYTES (8u << 20)

static rec *batch;
static size_t nbatch, batch_bytes;

static void flush(void)
{
	if (!nbatch)
		return;
	lora_parallel_for((int)nbatch, lora_nthreads(), process, batch);
	for (size_t i = 0; i < nbatch; i++) {
		rec *r = &batch[i];
		if (r->err) {
			if (opt.file)
				lora_die("'%s': %s", r->name, r->err);
			lora_die("%s:%ld: %s", r->name, r->lineno, r->err);
		}
		fwrite(r->out, 1, r->out_len, stdout);
		if (opt.count && opt.file)
			printf(" %s", r->name);
		putchar('\n');
		free(r->out);
		free(r->line);
	}
	nbatch = batch_bytes = 0;
}

static void add_rec(char *line, size_t len, const char *name, long lineno)
{
	if (!batch)
		batch = lora_xcalloc(BATCH_RECS, sizeof *batch);
	batch[nbatch++] = (rec){ line, len, name, lineno, NULL, 0, NULL };
	batch_bytes += len;
	if (nbatch == BATCH_RECS || batch_bytes >= BATCH_BYTES)
		flush();
}

/* A UTF-8 byte-order mark at the start of an input is skipped, and line
 * ends are read as Python's text mode and lora-train read them: \r\n (and,
 * in --file mode, a lone \r) is a newline. */
static void read_input(FILE *fp, const char *name)
{
	if (opt.file) {
		char *buf = NULL;
		size_t len = 0, cap = 0, r;
		char tmp[1 << 16];
		while ((r = fread(tmp, 1, sizeof tmp, fp)) > 0)
			append(&buf, &len, &cap, tmp, r);
		if (ferror(fp))
			lora_die("cannot read '%s':", name);
		if (!buf)
			buf = lora_xstrdup("");
		size_t bom = lora_bom_len(buf, len);
		memmove(buf, buf + bom, len - bom);
		add_rec(buf, lora_newlines(buf, len - bom), name, 0);
		return;
	}
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	long lineno = 0;
	while ((n = getline(&line, &cap, fp)) >= 0) {
		lineno++;
		if (n > 0 && line[n - 1] == '\n')
			n--;
		if (n > 0 && line[n - 1] == '\r')   /* a Windows line end */
			n--;
		size_t skip = lineno == 1 ? lora_bom_len(line, (size_t)n) : 0;
		n -= (ssize_t)skip;
		char *copy = lora_xmalloc((size_t)n + 1);
		memcpy(copy, line + skip, (size_t)n);
		copy[n] = 0;
		add_rec(copy, (size_t)n, name, lineno);
	}
	free(line);
	if (ferror(fp))
		lora_die("cannot read '%s':", name);
}

int main(int argc, char **argv)
{
	lora_progname = "lora-tokenize";
	enum { O_BOS = 256, O_COUNT, O_DECODE, O_EOS, O_FIELD, O_FILE, O_JSONL, O_MAXLEN, O_PAD, O_SKIP };
	static const struct option lo[] = {
		{ "bos", no_argument, 0, O_BOS },
		{ "count", no_argument, 0, O_COUNT },
		{ "decode", no_argument, 0, O_DECODE },
		{ "eos", no_argument, 0, O_EOS },
		{ "field", required_argument, 0, O_FIELD },
		{ "file", no_argument, 0, O_FILE },
		{ "help", no_argument, 0, 'h' },
		{ "jsonl", required_argument, 0, O_JSONL },
		{ "max-len", required_argument, 0, O_MAXLEN },
		{ "pad", no_argument, 0, O_PAD },
		{ "skip-special", no_argument, 0, O_SKIP },
		{ "tokenizer", required_argument, 0, 't' },
		{ 0, 0, 0, 0 },
	};
	const char *tpath = NULL;
	int c;
	while ((c = getopt_long(argc, argv, "ht:", lo, NULL)) != -1) {
		switch (c) {
		case O_BOS: opt.bos = 1; break;
		case O_COUNT: opt.count = 1; break;
		case O_DECODE: opt.decode = 1; break;
		case O_EOS: opt.eos = 1; break;
		case O_FIELD:
			if (lora_parse_long(optarg, 1, 1000000, &opt.field) < 0) {
				fprintf(stderr, "lora-tokenize: --field: %s\n", lora_errmsg());
				return 2;
			}
			break;
		case O_FILE: opt.file = 1; break;
		case O_JSONL: opt.jsonl = optarg; break;
		case O_MAXLEN:
			if (lora_parse_long(optarg, 1, 1L << 30, &opt.max_len) < 0) {
				fprintf(stderr, "lora-tokenize: --max-len: %s\n", lora_errmsg());
				return 2;
			}
			break;
		case O_PAD: opt.pad = 1; break;
		case O_SKIP: opt.skip_special = 1; break;
		case 't': tpath = optarg; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	const char *bad = NULL;
	if (!tpath)
		bad = "-t FILE is required";
	else if (opt.pad && opt.max_len < 0)
		bad = "--pad needs --max-len";
	else if (opt.field && opt.jsonl)
		bad = "--field and --jsonl do not go together";
	else if (opt.file && (opt.field || opt.jsonl))
		bad = "--file reads whole files: no --field or --jsonl";
	else if (opt.decode && (opt.bos || opt.eos || opt.pad || opt.max_len >= 0 || opt.count))
		bad = "--decode takes no --bos, --eos, --max-len, --pad or --count";
	if (bad) {
		fprintf(stderr, "lora-tokenize: %s\n", bad);
		usage(stderr);
		return 2;
	}
	opt.tok = lora_tokenizer_load(tpath);
	if (!opt.tok)
		lora_die("%s", lora_errmsg());
	if (opt.bos && lora_tokenizer_bos_id(opt.tok) < 0)
		lora_die("'%s' has no BOS token", tpath);
	if (opt.eos && lora_tokenizer_eos_id(opt.tok) < 0)
		lora_die("'%s' has no EOS token", tpath);
	if (opt.pad) {
		opt.pad_id = lora_tokenizer_pad_id(opt.tok);
		if (opt.pad_id < 0)
			opt.pad_id = lora_tokenizer_eos_id(opt.tok);
		if (opt.pad_id < 0)
			lora_die("'%s' has neither a pad nor an EOS token to pad with", tpath);
	}
	if (optind == argc) {
		read_input(stdin, "<stdin>");
	} else {
		for (int i = optind; i < argc; i++) {
			FILE *fp = !strcmp(argv[i], "-") ? stdin : fopen(argv[i], "rb");
			if (!fp)
				lora_die("cannot open '%s':", argv[i]);
			read_input(fp, argv[i]);
			if (fp != stdin)
				fclose(fp);
		}
	}
	flush();
	free(batch);
	lora_tokenizer_free(opt.tok);
	lora_stdout_close();
	return 0;
}
