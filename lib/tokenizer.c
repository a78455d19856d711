/* tokenizer.c: see tokenizer.h. Reading order: the structs, the loaders
 * (tokenizer.json, GPT-2 pair, CLIP), then encode's pipeline in HF's order
 * (added tokens -> normalizer -> pre-tokenizer -> BPE model -> post-processor),
 * then decode's decoder chain. The BPE model itself is tokenizer_bpe.c. */
#include "tokenizer.h"
#include "tokenizer_bpe.h"   // bpe_model, strmap, sbuf, utf8_*, bytemap_*
#include "util.h"            // lora_err, lora_x*

#define PCRE2_CODE_UNIT_WIDTH 8
#include <jansson.h>
#include <pcre2.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <utf8proc.h>
#include <zlib.h>

/* ---- components ---------------------------------------------------------------- */

enum { N_SEQ, N_PREPEND, N_REPLACE, N_NFC, N_NFD, N_NFKC, N_NFKD, N_LOWER, N_STRIP, N_CLIP };
enum { P_SEQ, P_SPLIT, P_METASPACE, P_BYTELEVEL, P_DIGITS, P_WSPLIT };
enum { D_SEQ, D_BYTELEVEL, D_REPLACE, D_BYTEFALLBACK, D_FUSE, D_STRIP, D_METASPACE, D_BPE };
enum { B_REMOVED, B_ISOLATED, B_MERGED_PREV, B_MERGED_NEXT, B_CONTIGUOUS };
enum { PS_ALWAYS, PS_FIRST, PS_NEVER };

/* A pattern: literal string, regex, or (lit_len 0, re NULL) nothing. */
typedef struct {
	char *lit;
	size_t lit_len;
	pcre2_code *re;
	pcre2_code *re_ext;    /* re with the code points PCRE2's tables lack, if any */
} pattern;

typedef struct comp {
	int type;
	struct comp *sub;      /* (nsub) Sequence members */
	int nsub;
	pattern pat;           /* Replace, Split */
	char *str;             /* Prepend text, Replace content, Metaspace replacement, Strip content */
	size_t str_len;
	int a, b;              /* Strip left/right or start/stop; Split behavior/invert;
	                          Metaspace prepend scheme/split; ByteLevel add_prefix_space/use_regex;
	                          Digits individual */
} comp;

typedef struct {
	char *content;         /* as matched (normalized for normalized tokens) */
	size_t len;
	int32_t id;
	int special, lstrip, rstrip, single_word, normalized;
} added_tok;

typedef struct { int32_t child, sibling, tok; uint8_t byte; } trie_node;
typedef struct { trie_node *n; size_t nn, cap; uint8_t first[256]; } trie;

struct lora_tokenizer {
	bpe_model bpe;
	comp *norm, *pre, *dec;    /* NULL if none */
	const comp **pt;           /* (npt) pre's stages, flattened */
	int npt;
	int has_decoder;
	added_tok *added;          /* (nadded) */
	size_t nadded;
	trie raw_trie, norm_trie;  /* added tokens matched before / after normalizing */
	int32_t *post_pre, *post_post; /* ids the post-processor puts around a single sequence */
	size_t npost_pre, npost_post;
	char **id_tok;             /* (nid) id -> token string, NULL for holes */
	size_t nid;
	strmap added_map;          /* added token content -> id */
	uint8_t *is_special;       /* (nid) */
	int bos, eos, pad, ctx_len;
	unsigned long serial;
	arena mem;
};

/* ---- per-thread scratch: BPE buffers, word cache, regex match data -------------------- */

#define CACHE_SLOTS 32768
#define CACHE_MAXWORD 256

typedef struct { uint64_t h; uint32_t koff, klen, ioff, ilen, gen; } cache_ent;

typedef struct {
	unsigned long serial;      /* tokenizer this cache belongs to */
	bpe_scratch bs;
	cache_ent *tab;            /* (CACHE_SLOTS) */
	size_t used;
	uint32_t gen;              /* entries of other generations are empty */
	sbuf keys;
	ivec ids;
	pcre2_match_data *md;
} tcache;

static pthread_key_t tc_key;
static pthread_once_t tc_once = PTHREAD_ONCE_INIT;
static _Thread_local tcache *tl_tc;
static atomic_ulong serial_next = 1;

static void tc_free(void *p)
{
	tcache *c = p;
	if (!c)
		return;
	bpe_scratch_free(&c->bs);
	free(c->tab);
	free(c->keys.s);
	free(c->ids.v);
	if (c->md)
		pcre2_match_data_free(c->md);
	free(c);
}

static void tc_key_init(void) { pthread_key_create(&tc_key, tc_free); }

static void tc_clear(tcache *c)
{
	bpe_scratch_clear(&c->bs);
	if (++c->gen == 0) {
		memset(c->tab, 0, CACHE_SLOTS * sizeof *c->tab);
		c->gen = 1;
	}
	c->used = 0;
	c->keys.n = 0;
	c->ids.n = 0;
}

static tcache *tc_get(const lora_tokenizer *t)
{
	tcache *c = tl_tc;
	if (c && c->serial == t->serial)
		return c;
	if (!c) {
		pthread_once(&tc_once, tc_key_init);
		c = lora_xcalloc(1, sizeof *c);
		c->tab = lora_xcalloc(CACHE_SLOTS, sizeof *c->tab);
		c->md = pcre2_match_data_create(1, NULL);
		if (!c->md)
			LORA_ASSERT(!"pcre2_match_data_create failed");
		tl_tc = c;
		pthread_setspecific(tc_key, c);
	}
	tc_clear(c);
	c->serial = t->serial;
	return c;
}

/* Encode one pre-tokenized word through the cache. */
static int model_word(const lora_tokenizer *t, tcache *c, const char *w, size_t len, int mapped, ivec *out)
{
	if (len == 0)
		return 0;
	if (len >= CACHE_MAXWORD)
		return bpe_word(&t->bpe, &c->bs, w, len, mapped, out);
	uint64_t h = hash_bytes(w, len) ^ (uint64_t)mapped;
	size_t j = h & (CACHE_SLOTS - 1);
	for (;;) {
		cache_ent *e = &c->tab[j];
		if (e->gen != c->gen)
			break;
		if (e->h == h && e->klen == len && memcmp(c->keys.s + e->koff, w, len) == 0) {
			ivec_grow(out, e->ilen);
			memcpy(out->v + out->n, c->ids.v + e->ioff, e->ilen * sizeof(int32_t));
			out->n += e->ilen;
			return 0;
		}
		j = (j + 1) & (CACHE_SLOTS - 1);
	}
	size_t n0 = out->n;
	if (bpe_word(&t->bpe, &c->bs, w, len, mapped, out) < 0)
		return -1;
	if (c->used * 2 >= CACHE_SLOTS || c->keys.n > (64u << 20)) {
		tc_clear(c);
		j = h & (CACHE_SLOTS - 1);
	}
	cache_ent *e = &c->tab[j];
	e->h = h;
	e->gen = c->gen;
	e->koff = (uint32_t)c->keys.n;
	e->klen = (uint32_t)len;
	e->ioff = (uint32_t)c->ids.n;
	e->ilen = (uint32_t)(out->n - n0);
	sbuf_add(&c->keys, w, len);
	ivec_grow(&c->ids, e->ilen);
	memcpy(c->ids.v + c->ids.n, out->v + n0, e->ilen * sizeof(int32_t));
	c->ids.n += e->ilen;
	c->used++;
	return 0;
}

/* ---- patterns ------------------------------------------------------------------------ */

/* HF compiles its regexes with Oniguruma, we with PCRE2: the same syntax
 * for everything tokenizers use, but not always the same classes.
 * - \s: Oniguruma's is Unicode White_Space; PCRE2's also takes U+180E.
 * - \h: in Ruby syntax (HF's onig default) a hex digit.
 * - \p{..}, \d, \w: each engine takes them from its own Unicode tables
 *   (tokenizers 0.23's Oniguruma: Unicode 16; Debian 12's PCRE2: 14), so
 *   letters and digits assigned since (CJK extensions H and I, Kawi, ...)
 *   would split differently. unicode_hf.h (tests/gen/gen_unicode.py) has
 *   for each general category, \d and \w the PCRE2 items inside Oniguruma's
 *   class and the ranges that complete it. Oniguruma's \w is letters, marks,
 *   Nd, Nl, Pc and some more, PCRE2's letters, numbers and '_'.
 * - \p{Script}: Oniguruma's is the Script property, PCRE2's (10.40 on)
 *   Script_Extensions (\p{Han} takes 、 and 。); \p{sc:Script} is the former.
 * Where only PCRE2's meaning can be written (a negated class inside [...], a
 * class gen_unicode.py leaves out, a script's new characters), it
 * is kept. */
#define WS_CLASS "\\t\\n\\x0B\\f\\r \\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"
#include "unicode_hf.h"

/* The row of sorted table t (n rows) whose [0] is cp, or with [0] <= cp <=
 * [1] if ranges; -1 if none (unicode_hf.h's tables). */
static long cp_table_find(const uint32_t (*t)[2], size_t n, uint32_t cp, int ranges)
{
	if (!n || cp < t[0][0])  /* below every row: most text, at no search */
		return -1;
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t m = lo + (hi - lo) / 2;
		if (cp < t[m][0])
			hi = m;
		else if (cp > (ranges ? t[m][1] : t[m][0]))
			lo = m + 1;
		else
			return (long)m;
	}
	return -1;
}

#define CP_ROWS(t) (sizeof(t) / sizeof((t)[0]))
#define CP_IN(t, cp) (cp_table_find((t), CP_ROWS(t), (cp), 1) >= 0)

/* Offset of the first code point of s[from, n) (valid UTF-8) in ranges t
 * (n rows; *cl its length), or n if none. */
static size_t find_cp_in(const char *s, size_t n, size_t from, const uint32_t (*t)[2], size_t nt, size_t *cl)
{
	const unsigned char *u = (const unsigned char *)s;
	for (size_t i = from; i < n; i += *cl) {
		*cl = 1;
		if (u[i] >= 0xC0 && cp_table_find(t, nt, utf8_get(u + i, cl), 1) >= 0)
			return i;
	}
	return n;
}

static const struct onig_class *onig_class_find(const char *name, size_t n)
{
	char k[64];
	size_t m = 0;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];
		if (c == '_' || c == ' ' || c == '-')
			continue;
		if (m + 1 >= sizeof k)
			return NULL;
		k[m++] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
	}
	k[m] = 0;
	for (size_t i = 0; i < sizeof onig_classes / sizeof onig_classes[0]; i++)
		if (!strcmp(k, onig_classes[i].name) || (onig_classes[i].alias[0] && !strcmp(k, onig_classes[i].alias)))
			return &onig_classes[i];
	return NULL;
}

/* Whether PCRE2 knows \p{sc:name}: a script, not a binary property. */
static int pcre2_is_script(const char *name, size_t n)
{
	char re[96];
	if (n + 8 > sizeof re)
		return 0;
	int l = snprintf(re, sizeof re, "\\p{sc:%.*s}", (int)n, name);
	int err;
	PCRE2_SIZE off;
	pcre2_code *c = pcre2_compile((PCRE2_SPTR)re, (size_t)l, PCRE2_UTF | PCRE2_UCP, &err, &off, NULL);
	pcre2_code_free(c);
	return c != NULL;
}

/* A class escape: name[0, nn) is the class (for \p, \P; "d" or "w" for
 * those), neg whether it is negated, incls whether inside [...]. Writes
 * Oniguruma's meaning where PCRE2 can say it (with the code points PCRE2's
 * tables lack if ext, else *omitted = 1 if there are any); 0 if not. */
static int onig_class_out(sbuf *o, const char *name, size_t nn, int neg, int incls, int ext, int *omitted)
{
	const struct onig_class *k = onig_class_find(name, nn);
	if (k) {
		if (incls && neg)
			return 0;
		const char *extra = ext ? k->extra : "";
		if (!ext && k->extra[0])
			*omitted = 1;
		/* one PCRE2 item stays bare: \p{L}+ runs much faster than [\p{L}]+ */
		int bare = !incls && !extra[0] && !strchr(k->base + 1, '\\');
		if (!incls && !bare)
			sbuf_add(o, neg ? "[^" : "[", neg ? 2 : 1);
		sbuf_add(o, k->base, strlen(k->base));
		if (bare && neg)         /* \p{X} -> \P{X}, \d -> \D */
			o->s[o->n - strlen(k->base) + 1] ^= 0x20;
		sbuf_add(o, extra, strlen(extra));
		if (!incls && !bare)
			sbuf_addc(o, ']');
		return 1;
	}
	if (nn == 1 || !pcre2_is_script(name, nn))
		return 0;
	sbuf_add(o, neg ? "\\P{sc:" : "\\p{sc:", 6);
	sbuf_add(o, name, nn);
	sbuf_addc(o, '}');
	return 1;
}

/* re in PCRE2's terms, with (ext) or without the code points PCRE2's Unicode
 * tables lack; returns whether there were any (then both are needed). */
static int onig_to_pcre(sbuf *o, const char *re, size_t len, int ext)
{
	int incls = 0, omitted = 0;
	for (size_t i = 0; i < len; i++) {
		char c = re[i];
		if (c == '\\' && i + 1 < len) {
			char d = re[++i];
			const char *cls = d == 's' || d == 'S' ? WS_CLASS : d == 'h' || d == 'H' ? "0-9a-fA-F" : NULL;
			if (cls && incls && (d == 's' || d == 'h')) {
				sbuf_add(o, cls, strlen(cls));
				continue;
			} else if (cls && !incls) {
				sbuf_add(o, d == 's' || d == 'h' ? "[" : "[^", d == 's' || d == 'h' ? 1 : 2);
				sbuf_add(o, cls, strlen(cls));
				sbuf_addc(o, ']');
				continue;
			}
			if (d == 'd' || d == 'D' || d == 'w' || d == 'W') {
				char n = (char)(d | 0x20);
				if (onig_class_out(o, &n, 1, d == 'D' || d == 'W', incls, ext, &omitted))
					continue;
			} else if ((d == 'p' || d == 'P') && i + 1 < len) {
				/* \pL or \p{name}; an unclosed brace is left to PCRE2 */
				const char *name = re + i + 1;
				size_t nn = 1, skip = 1;      /* the bytes after the 'p' */
				if (*name == '{') {
					const char *e = memchr(name, '}', len - (size_t)(name - re));
					nn = e ? (size_t)(e - name) - 1 : 0;
					skip = nn + 2;
					name++;
				}
				int neg = d == 'P';
				if (nn && *name == '^') {
					neg = !neg;
					name++;
					nn--;
				}
				if (nn && onig_class_out(o, name, nn, neg, incls, ext, &omitted)) {
					i += skip;
					continue;
				}
			}
			sbuf_addc(o, '\\');
			sbuf_addc(o, d);
			continue;
		}
		if (c == '[' && !incls) {
			incls = 1;
			sbuf_addc(o, c);
			if (i + 1 < len && re[i + 1] == '^')
				sbuf_addc(o, re[++i]);
			if (i + 1 < len && re[i + 1] == ']')   /* a leading ] is literal */
				sbuf_addc(o, re[++i]);
			continue;
		}
		if (c == '[' && incls && i + 1 < len && re[i + 1] == ':') {   /* [:alpha:] */
			const char *e = memmem(re + i, len - i, ":]", 2);
			if (e) {
				sbuf_add(o, re + i, (size_t)(e + 2 - (re + i)));
				i = (size_t)(e + 1 - re);
				continue;
			}
		}
		if (c == ']' && incls)
			incls = 0;
		sbuf_addc(o, c);
	}
	return omitted;
}

static pcre2_code *pattern_compile(const char *re0, size_t len0, uint32_t opt, int ext, int *omitted, int *err,
                                   PCRE2_SIZE *off)
{
	sbuf rb = { 0 };
	*omitted = onig_to_pcre(&rb, re0, len0, ext);
	pcre2_code *re = pcre2_compile((PCRE2_SPTR)(rb.s ? rb.s : ""), rb.n, opt, err, off, NULL);
	free(rb.s);
	if (re)
		pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);   /* falls back to the interpreter */
	return re;
}

static int pattern_regex(pattern *p, const char *re0, size_t len0, int caseless, const char *what)
{
	int err;
	PCRE2_SIZE off;
	uint32_t opt = PCRE2_UTF | PCRE2_UCP | PCRE2_MULTILINE | (caseless ? PCRE2_CASELESS : 0);
	if (len0 == PCRE2_ZERO_TERMINATED)
		len0 = strlen(re0);
	int omitted;
	p->re = pattern_compile(re0, len0, opt, 0, &omitted, &err, &off);
	if (p->re && omitted)    /* the same with the new code points: for text that has some */
		p->re_ext = pattern_compile(re0, len0, opt, 1, &omitted, &err, &off);
	if (!p->re || (omitted && !p->re_ext)) {
		PCRE2_UCHAR msg[256];
		pcre2_get_error_message(err, msg, sizeof msg);
		return lora_err("%s regex '%.*s': %s at offset %zu", what, (int)len0, re0, (char *)msg, (size_t)off);
	}
	return 0;
}

/* Next match of p in s[0, n) at or after `from`. 1 + [*ms, *me) or 0.
 * ext: s may hold code points only p->re_ext knows (pattern_ext). */
static int pattern_next(const pattern *p, tcache *c, const char *s, size_t n, size_t from, size_t *ms, size_t *me,
                        int ext)
{
	if (p->re) {
		pcre2_code *re = ext && p->re_ext ? p->re_ext : p->re;
		for (;;) {
			if (from > n)
				return 0;
			int rc = pcre2_match(re, (PCRE2_SPTR)s, n, from, PCRE2_NO_UTF_CHECK, c->md, NULL);
			if (rc < 0)
				return 0;
			PCRE2_SIZE *ov = pcre2_get_ovector_pointer(c->md);
			if (ov[1] > ov[0] || ov[0] > from) {   /* callers step over empty matches */
				*ms = ov[0];
				*me = ov[1];
				return 1;
			}
			/* empty match at `from`: step one character */
			if (from >= n)
				return 0;
			from++;
			while (from < n && ((unsigned char)s[from] & 0xC0) == 0x80)
				from++;
		}
	}
	if (!p->lit_len || from >= n)
		return 0;
	const char *f = memmem(s + from, n - from, p->lit, p->lit_len);
	if (!f)
		return 0;
	*ms = (size_t)(f - s);
	*me = *ms + p->lit_len;
	return 1;
}

static void pattern_free(pattern *p)
{
	free(p->lit);
	if (p->re)
		pcre2_code_free(p->re);
	if (p->re_ext)
		pcre2_code_free(p->re_ext);
}

/* pattern_next's ext for subject s[0, n), one pass per subject: whether it
 * holds a code point of some class's extra, the only way p->re_ext can
 * match where p->re does not. */
static int pattern_ext(const pattern *p, const char *s, size_t n)
{
	size_t cl;
	return p->re_ext && find_cp_in(s, n, 0, onig_extra_all, CP_ROWS(onig_extra_all), &cl) < n;
}

/* ---- component JSON parsing --------------------------------------------------------------- */

static const char *jstr(json_t *o, const char *k)
{
	json_t *v = json_object_get(o, k);
	return json_is_string(v) ? json_string_value(v) : NULL;
}

static int jbool(json_t *o, const char *k, int def)
{
	json_t *v = json_object_get(o, k);
	return json_is_boolean(v) ? json_is_true(v) : def;
}

static int parse_pattern(json_t *o, pattern *p, const char *what)
{
	json_t *pat = json_object_get(o, "pattern");
	json_t *s = json_object_get(pat, "String"), *r = json_object_get(pat, "Regex");
	if (json_is_string(s)) {
		size_t n = json_string_length(s);
		if (n == 0)
			return lora_err("%s: empty String pattern is not supported", what);
		p->lit = lora_xmalloc(n + 1);
		memcpy(p->lit, json_string_value(s), n + 1);
		p->lit_len = n;
		return 0;
	}
	if (json_is_string(r))
		return pattern_regex(p, json_string_value(r), json_string_length(r), 0, what);
	return lora_err("%s: missing pattern", what);
}

static void comp_clear(comp *c)
{
	for (int i = 0; i < c->nsub; i++)
		comp_clear(&c->sub[i]);
	free(c->sub);
	pattern_free(&c->pat);
	free(c->str);
}

static void comp_free(comp *c)
{
	if (!c)
		return;
	comp_clear(c);
	free(c);
}

static void set_str(comp *c, const char *s)
{
	c->str_len = strlen(s);
	c->str = lora_xstrdup(s);
}

/* One char (as UTF-8) from a JSON string field, or def. */
static int char_field(json_t *o, const char *k, const char *def, comp *c, const char *what)
{
	const char *s = jstr(o, k);
	if (!s)
		s = def;
	size_t cl;
	if (!*s || !utf8_is_valid(s, strlen(s)) || (utf8_get((const unsigned char *)s, &cl), s[cl]))
		return lora_err("%s: '%s' must be one character", what, k);
	set_str(c, s);
	return 0;
}

/* The head a normalizer, pre_tokenizer, decoder and post_processor share:
 * its "type", or NULL (said) when it has none or nests deeper than `limit`. */
static const char *comp_type(json_t *o, int depth, int limit, const char *what)
{
	const char *type = jstr(o, "type");
	if (!type)
		lora_err("%s without a type", what);
	else if (depth > limit) {
		lora_err("%s nested too deeply", what);
		type = NULL;
	}
	return type;
}

static comp *parse_normalizer(json_t *o, int depth);
static comp *parse_pretok(json_t *o, int depth);
static comp *parse_decoder(json_t *o, int depth);

typedef comp *(*parse_fn)(json_t *, int);

static comp *parse_seq(json_t *o, const char *key, parse_fn fn, int depth, const char *what)
{
	json_t *arr = json_object_get(o, key);
	if (!json_is_array(arr)) {
		lora_err("%s Sequence without '%s'", what, key);
		return NULL;
	}
	comp *c = lora_xcalloc(1, sizeof *c);
	c->type = N_SEQ;   /* == P_SEQ == D_SEQ */
	c->nsub = (int)json_array_size(arr);
	c->sub = lora_xcalloc(c->nsub ? c->nsub : 1, sizeof *c->sub);
	for (int i = 0; i < c->nsub; i++) {
		comp *s = fn(json_array_get(arr, i), depth + 1);
		if (!s) {
			c->nsub = i;
			comp_free(c);
			return NULL;
		}
		c->sub[i] = *s;
		free(s);
	}
	return c;
}

static comp *parse_normalizer(json_t *o, int depth)
{
	const char *type = comp_type(o, depth, 16, "normalizer");
	if (!type)
		return NULL;
	if (!strcmp(type, "Sequence"))
		return parse_seq(o, "normalizers", parse_normalizer, depth, "normalizer");
	comp *c = lora_xcalloc(1, sizeof *c);
	if (!strcmp(type, "Prepend")) {
		c->type = N_PREPEND;
		const char *p = jstr(o, "prepend");
		if (!p) {
			lora_err("normalizer Prepend without 'prepend'");
			goto fail;
		}
		set_str(c, p);
	} else if (!strcmp(type, "Replace")) {
		c->type = N_REPLACE;
		if (parse_pattern(o, &c->pat, "normalizer Replace") < 0)
			goto fail;
		const char *s = jstr(o, "content");
		if (!s) {
			lora_err("normalizer Replace without 'content'");
			goto fail;
		}
		set_str(c, s);
	} else if (!strcmp(type, "NFC")) c->type = N_NFC;
	else if (!strcmp(type, "NFD")) c->type = N_NFD;
	else if (!strcmp(type, "NFKC")) c->type = N_NFKC;
	else if (!strcmp(type, "NFKD")) c->type = N_NFKD;
	else if (!strcmp(type, "Lowercase")) c->type = N_LOWER;
	else if (!strcmp(type, "Strip")) {
		c->type = N_STRIP;
		c->a = jbool(o, "strip_left", 1);
		c->b = jbool(o, "strip_right", 1);
	} else {
		lora_err("unsupported normalizer '%s'", type);
		goto fail;
	}
	return c;
fail:
	comp_free(c);
	return NULL;
}

static int parse_behavior(const char *b)
{
	if (!b) return -1;
	if (!strcmp(b, "Removed")) return B_REMOVED;
	if (!strcmp(b, "Isolated")) return B_ISOLATED;
	if (!strcmp(b, "MergedWithPrevious")) return B_MERGED_PREV;
	if (!strcmp(b, "MergedWithNext")) return B_MERGED_NEXT;
	if (!strcmp(b, "Contiguous")) return B_CONTIGUOUS;
	return -1;
}

static comp *parse_pretok(json_t *o, int depth)
{
	const char *type = comp_type(o, depth, 16, "pre_tokenizer");
	if (!type)
		return NULL;
	if (!strcmp(type, "Sequence"))
		return parse_seq(o, "pretokenizers", parse_pretok, depth, "pre_tokenizer");
	comp *c = lora_xcalloc(1, sizeof *c);
	if (!strcmp(type, "Split")) {
		c->type = P_SPLIT;
		if (parse_pattern(o, &c->pat, "pre_tokenizer Split") < 0)
			goto fail;
		c->a = parse_behavior(jstr(o, "behavior"));
		if (c->a < 0) {
			lora_err("pre_tokenizer Split: unsupported behavior '%s'",
			         jstr(o, "behavior") ? jstr(o, "behavior") : "(none)");
			goto fail;
		}
		c->b = jbool(o, "invert", 0);
	} else if (!strcmp(type, "Metaspace")) {
		c->type = P_METASPACE;
		if (char_field(o, "replacement", "\xE2\x96\x81", c, "pre_tokenizer Metaspace") < 0)
			goto fail;
		const char *ps = jstr(o, "prepend_scheme");
		if (!ps)
			c->a = jbool(o, "add_prefix_space", 1) ? PS_ALWAYS : PS_NEVER;
		else if (!strcmp(ps, "always")) c->a = PS_ALWAYS;
		else if (!strcmp(ps, "first")) c->a = PS_FIRST;
		else if (!strcmp(ps, "never")) c->a = PS_NEVER;
		else {
			lora_err("pre_tokenizer Metaspace: unknown prepend_scheme '%s'", ps);
			goto fail;
		}
		c->b = jbool(o, "split", 1);
	} else if (!strcmp(type, "ByteLevel")) {
		c->type = P_BYTELEVEL;
		c->a = jbool(o, "add_prefix_space", 1);
		c->b = jbool(o, "use_regex", 1);
		if (c->b && pattern_regex(&c->pat, "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+",
		                          PCRE2_ZERO_TERMINATED, 0, "ByteLevel") < 0)
			goto fail;
	} else if (!strcmp(type, "Digits")) {
		c->type = P_DIGITS;
		c->a = jbool(o, "individual_digits", 0);
	} else if (!strcmp(type, "WhitespaceSplit")) {
		c->type = P_WSPLIT;
	} else {
		lora_err("unsupported pre_tokenizer '%s'", type);
		goto fail;
	}
	return c;
fail:
	comp_free(c);
	return NULL;
}

static comp *parse_decoder(json_t *o, int depth)
{
	const char *type = comp_type(o, depth, 16, "decoder");
	if (!type)
		return NULL;
	if (!strcmp(type, "Sequence"))
		return parse_seq(o, "decoders", parse_decoder, depth, "decoder");
	comp *c = lora_xcalloc(1, sizeof *c);
	if (!strcmp(type, "ByteLevel")) c->type = D_BYTELEVEL;
	else if (!strcmp(type, "ByteFallback")) c->type = D_BYTEFALLBACK;
	else if (!strcmp(type, "Fuse")) c->type = D_FUSE;
	else if (!strcmp(type, "Replace")) {
		c->type = D_REPLACE;
		if (parse_pattern(o, &c->pat, "decoder Replace") < 0)
			goto fail;
		const char *s = jstr(o, "content");
		if (!s) {
			lora_err("decoder Replace without 'content'");
			goto fail;
		}
		set_str(c, s);
	} else if (!strcmp(type, "Strip")) {
		c->type = D_STRIP;
		if (char_field(o, "content", " ", c, "decoder Strip") < 0)
			goto fail;
		json_t *a = json_object_get(o, "start"), *b = json_object_get(o, "stop");
		c->a = json_is_integer(a) ? (int)json_integer_value(a) : 0;
		c->b = json_is_integer(b) ? (int)json_integer_value(b) : 0;
		if (c->a < 0 || c->b < 0 || c->a > 1000000 || c->b > 1000000) {
			lora_err("decoder Strip: bad start/stop");
			goto fail;
		}
	} else if (!strcmp(type, "Metaspace")) {
		c->type = D_METASPACE;
		if (char_field(o, "replacement", "\xE2\x96\x81", c, "decoder Metaspace") < 0)
			goto fail;
		const char *ps = jstr(o, "prepend_scheme");
		if (!ps)
			c->a = jbool(o, "add_prefix_space", 1) ? PS_ALWAYS : PS_NEVER;
		else
			c->a = !strcmp(ps, "never") ? PS_NEVER : PS_ALWAYS;
	} else if (!strcmp(type, "BPEDecoder")) {
		c->type = D_BPE;
		const char *s = jstr(o, "suffix");
		set_str(c, s ? s : "</w>");
	} else {
		lora_err("unsupported decoder '%s'", type);
		goto fail;
	}
	return c;
fail:
	comp_free(c);
	return NULL;
}

/* ---- added tokens and their trie ------------------------------------------------------------ */

static int32_t trie_node_new(trie *t, uint8_t byte)
{
	if (t->nn == t->cap) {
		t->cap = t->cap ? t->cap * 2 : 64;
		t->n = lora_xrealloc(t->n, t->cap * sizeof *t->n);
	}
	t->n[t->nn] = (trie_node){ -1, -1, -1, byte };
	return (int32_t)t->nn++;
}

static void trie_add(trie *t, const char *s, size_t len, int32_t tok)
{
	if (!len)
		return;
	if (!t->nn)
		trie_node_new(t, 0);
	int32_t cur = 0;
	for (size_t i = 0; i < len; i++) {
		uint8_t b = (uint8_t)s[i];
		int32_t ch = t->n[cur].child;
		while (ch >= 0 && t->n[ch].byte != b)
			ch = t->n[ch].sibling;
		if (ch < 0) {
			ch = trie_node_new(t, b);
			t->n[ch].sibling = t->n[cur].child;
			t->n[cur].child = ch;
		}
		cur = ch;
	}
	if (t->n[cur].tok < 0)      /* the first token with this content wins */
		t->n[cur].tok = tok;
	t->first[(uint8_t)s[0]] = 1;
}

/* Longest token starting at s[i]: its index and length, or -1. */
static int32_t trie_match(const trie *t, const char *s, size_t n, size_t i, size_t *mlen)
{
	int32_t cur = 0, best = -1;
	for (size_t k = i; k < n; k++) {
		int32_t ch = t->n[cur].child;
		while (ch >= 0 && t->n[ch].byte != (uint8_t)s[k])
			ch = t->n[ch].sibling;
		if (ch < 0)
			break;
		cur = ch;
		if (t->n[cur].tok >= 0) {
			best = t->n[cur].tok;
			*mlen = k + 1 - i;
		}
	}
	return best;
}

/* ---- Unicode helpers ------------------------------------------------------------------------------ */

static int is_ws(uint32_t cp)    /* Rust char::is_whitespace (White_Space) */
{
	return (cp >= 9 && cp <= 13) || cp == 32 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
	       (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
	       cp == 0x205F || cp == 0x3000;
}

/* Rust regex's Unicode \w: letters, marks, Nd, Nl, connector punctuation,
 * joiners (what HF's single_word test uses), and what hf_word adds (the
 * other alphabetic characters, and those of Unicode 16). */
static int is_word_cp(uint32_t cp)
{
	utf8proc_category_t c = utf8proc_category((utf8proc_int32_t)cp);
	return (c >= UTF8PROC_CATEGORY_LU && c <= UTF8PROC_CATEGORY_LO) ||
	       (c >= UTF8PROC_CATEGORY_MN && c <= UTF8PROC_CATEGORY_ME) || c == UTF8PROC_CATEGORY_ND ||
	       c == UTF8PROC_CATEGORY_NL || c == UTF8PROC_CATEGORY_PC || cp == 0x200C || cp == 0x200D ||
	       CP_IN(hf_word, cp);
}

/* Rust's char::is_numeric (HF's Digits): N*, with Rust's newer Unicode. */
static int is_numeric_cp(uint32_t cp)
{
	utf8proc_category_t c = utf8proc_category((utf8proc_int32_t)cp);
	return (c >= UTF8PROC_CATEGORY_ND && c <= UTF8PROC_CATEGORY_NO) ||
	       CP_IN(hf_numeric, cp);
}

/* Code point ending at s[end) (valid UTF-8, end > 0). */
static uint32_t cp_before(const char *s, size_t end)
{
	size_t i = end - 1, cl;
	while (i > 0 && ((unsigned char)s[i] & 0xC0) == 0x80)
		i--;
	return utf8_get((const unsigned char *)s + i, &cl);
}

/* ---- added-token splitting (added_vocabulary.rs find_matches) ------------------------------------------ */

typedef struct { size_t off, len; int32_t id; int first; } seg;
typedef struct { seg *v; size_t n, cap; } segvec;

static void seg_push(segvec *a, size_t off, size_t len, int32_t id, int first)
{
	if (a->n == a->cap) {
		a->cap = a->cap ? a->cap * 2 : 16;
		a->v = lora_xrealloc(a->v, a->cap * sizeof *a->v);
	}
	a->v[a->n++] = (seg){ off, len, id, first };
}

/* Split s[0, n) on the tokens of tr. first: s starts at original offset 0. */
static void split_added(const lora_tokenizer *t, const trie *tr, const char *s, size_t n, int first, segvec *out)
{
	size_t start_off = 0, i = 0;
	if (tr->nn) {
		while (i < n) {
			if (!tr->first[(uint8_t)s[i]]) {
				i++;
				continue;
			}
			size_t mlen = 0;
			int32_t k = trie_match(tr, s, n, i, &mlen);
			if (k < 0) {
				i++;
				continue;
			}
			const added_tok *a = &t->added[k];
			size_t ms = i, me = i + mlen;
			if (a->single_word) {
				int sp = ms == 0 || !is_word_cp(cp_before(s, ms));
				size_t cl;
				int ep = me == n || !is_word_cp(utf8_get((const unsigned char *)s + me, &cl));
				if (!sp || !ep) {
					i = me;   /* the matcher resumes after the rejected match */
					continue;
				}
			}
			if (a->lstrip) {
				size_t ns = ms;
				while (ns > 0) {
					uint32_t cp = cp_before(s, ns);
					if (!is_ws(cp))
						break;
					char tmp[4];
					ns -= (size_t)utf8_put(cp, tmp);
				}
				ms = ns > start_off ? ns : start_off;
			}
			if (a->rstrip) {
				while (me < n) {
					size_t cl;
					uint32_t cp = utf8_get((const unsigned char *)s + me, &cl);
					if (!is_ws(cp))
						break;
					me += cl;
				}
			}
			if (start_off < ms)
				seg_push(out, start_off, ms - start_off, -1, first && start_off == 0);
			seg_push(out, ms, me - ms, a->id, 0);
			start_off = i = me;
		}
	}
	if (start_off < n || n == 0)
		seg_push(out, start_off, n - start_off, -1, first && start_off == 0);
}

/* ---- normalizers ------------------------------------------------------------------------------------------ */

static int is_ascii(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] >= 0x80)
			return 0;
	return 1;
}

static int is_cased(uint32_t cp)
{
	utf8proc_category_t c = utf8proc_category((utf8proc_int32_t)cp);
	return c == UTF8PROC_CATEGORY_LU || c == UTF8PROC_CATEGORY_LL || c == UTF8PROC_CATEGORY_LT;
}

static int is_case_ignorable(uint32_t cp)
{
	utf8proc_category_t c = utf8proc_category((utf8proc_int32_t)cp);
	return c == UTF8PROC_CATEGORY_MN || c == UTF8PROC_CATEGORY_ME || c == UTF8PROC_CATEGORY_CF ||
	       c == UTF8PROC_CATEGORY_LM || c == UTF8PROC_CATEGORY_SK || cp == '\'' || cp == '.' || cp == ':' ||
	       cp == 0xB7 || cp == 0x387 || cp == 0x5F4 || cp == 0x2018 || cp == 0x2019 || cp == 0x2024 ||
	       cp == 0xFE13 || cp == 0xFE52 || cp == 0xFE55 || cp == 0xFF07 || cp == 0xFF0E || cp == 0xFF1A;
}

/* Python's Final_Sigma rule for U+03A3 at s[i] (cl bytes). */
static int final_sigma(const char *s, size_t n, size_t i, size_t cl)
{
	size_t j = i, l;
	int before = 0, after = 0;
	while (j > 0) {
		uint32_t cp = cp_before(s, j);
		char tmp[4];
		j -= (size_t)utf8_put(cp, tmp);
		if (is_case_ignorable(cp))
			continue;
		before = is_cased(cp);
		break;
	}
	for (j = i + cl; j < n; j += l) {
		uint32_t cp = utf8_get((const unsigned char *)s + j, &l);
		if (is_case_ignorable(cp))
			continue;
		after = is_cased(cp);
		break;
	}
	return before && !after;
}

/* Lowercase per character as Rust's char::to_lowercase (HF's Lowercase:
 * utf8proc's table, with the pairs Rust's newer Unicode adds, hf_lower);
 * python: Python's str.lower() instead (utf8proc's table and the context
 * rule for final sigma). */
static void lowercase(sbuf *out, const char *s, size_t n, int python)
{
	for (size_t i = 0; i < n;) {
		unsigned char b = (unsigned char)s[i];
		if (b < 0x80) {
			sbuf_addc(out, (char)(b >= 'A' && b <= 'Z' ? b + 32 : b));
			i++;
			continue;
		}
		size_t cl;
		uint32_t cp = utf8_get((const unsigned char *)s + i, &cl);
		i += cl;
		if (cp == 0x130) {       /* the one unconditional multi-char lowercase */
			sbuf_add(out, "i\xCC\x87", 3);
			continue;
		}
		if (cp == 0x3A3 && python && final_sigma(s, n, i - cl, cl)) {
			sbuf_add(out, "\xCF\x82", 2);
			continue;
		}
		long k = python ? -1 : cp_table_find(hf_lower, CP_ROWS(hf_lower), cp, 0);
		char tmp[4];
		int l = utf8_put(k >= 0 ? hf_lower[k][1] : (uint32_t)utf8proc_tolower((utf8proc_int32_t)cp), tmp);
		sbuf_add(out, tmp, (size_t)l);
	}
}

static void utf8proc_norm(sbuf *out, const char *s, size_t n, int opt)
{
	if (!n)
		return;
	utf8proc_uint8_t *dst = NULL;
	utf8proc_ssize_t r = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &dst, (utf8proc_option_t)opt);
	if (r < 0) {                 /* cannot happen on valid UTF-8: keep the text */
		sbuf_add(out, s, n);
		return;
	}
	sbuf_add(out, dst, (size_t)r);
	free(dst);
}

/* NFC, NFD, NFKC, NFKD: utf8proc's. hf: as HF's normalizers, whose older
 * tables know nothing of some code points (hf_norm_keep: no decomposition,
 * combining class 0): such a one stays as it is, and so, being a starter,
 * cuts the text in two that are normalized apart. Else as Python's
 * unicodedata (CLIP's ftfy), whose tables are about utf8proc's age. */
static void unicode_norm(sbuf *out, const char *s, size_t n, int type, int hf)
{
	if (is_ascii(s, n)) {
		sbuf_add(out, s, n);
		return;
	}
	int opt = UTF8PROC_STABLE;
	if (type == N_NFC) opt |= UTF8PROC_COMPOSE;
	if (type == N_NFD) opt |= UTF8PROC_DECOMPOSE;
	if (type == N_NFKC) opt |= UTF8PROC_COMPOSE | UTF8PROC_COMPAT;
	if (type == N_NFKD) opt |= UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT;
	size_t from = 0, i, cl;
	while (hf && (i = find_cp_in(s, n, from, hf_norm_keep, CP_ROWS(hf_norm_keep), &cl)) < n) {
		utf8proc_norm(out, s + from, i - from, opt);
		sbuf_add(out, s + i, cl);
		from = i + cl;
	}
	utf8proc_norm(out, s + from, n - from, opt);
}

static void replace_all(tcache *c, const pattern *p, const char *rep, size_t rlen, sbuf *out, const char *s, size_t n)
{
	size_t pos = 0, ms, me;
	int ext = pattern_ext(p, s, n);
	while (pattern_next(p, c, s, n, pos, &ms, &me, ext)) {
		if (me == ms) {          /* empty regex match: insert, step one char */
			sbuf_add(out, s + pos, ms - pos);
			sbuf_add(out, rep, rlen);
			if (ms >= n) {
				pos = n;
				break;
			}
			size_t cl;
			utf8_get((const unsigned char *)s + ms, &cl);
			sbuf_add(out, s + ms, cl);
			pos = ms + cl;
			continue;
		}
		sbuf_add(out, s + pos, ms - pos);
		sbuf_add(out, rep, rlen);
		pos = me;
	}
	if (pos < n)
		sbuf_add(out, s + pos, n - pos);
}

static void clip_clean(sbuf *out, const char *s, size_t n);

/* Apply normalizer c to s[0, n), appending to out. */
static void normalize(const comp *c, tcache *tc, sbuf *out, const char *s, size_t n)
{
	switch (c->type) {
	case N_SEQ: {
		sbuf a = { 0 }, b = { 0 };
		sbuf_add(&a, s, n);
		for (int i = 0; i < c->nsub; i++) {
			b.n = 0;
			normalize(&c->sub[i], tc, &b, a.s, a.n);
			sbuf t = a;
			a = b;
			b = t;
		}
		sbuf_add(out, a.s, a.n);
		free(a.s);
		free(b.s);
		return;
	}
	case N_PREPEND:
		if (n)
			sbuf_add(out, c->str, c->str_len);
		sbuf_add(out, s, n);
		return;
	case N_REPLACE:
		replace_all(tc, &c->pat, c->str, c->str_len, out, s, n);
		return;
	case N_NFC: case N_NFD: case N_NFKC: case N_NFKD:
		unicode_norm(out, s, n, c->type, 1);
		return;
	case N_LOWER:
		lowercase(out, s, n, 0);
		return;
	case N_STRIP: {
		size_t a = 0, b = n, cl;
		if (c->a)
			while (a < b && is_ws(utf8_get((const unsigned char *)s + a, &cl)))
				a += cl;
		if (c->b)
			while (b > a) {
				uint32_t cp = cp_before(s, b);
				if (!is_ws(cp))
					break;
				char tmp[4];
				b -= (size_t)utf8_put(cp, tmp);
			}
		sbuf_add(out, s + a, b - a);
		return;
	}
	case N_CLIP:
		clip_clean(out, s, n);
		return;
	}
	LORA_ASSERT(!"bad normalizer");
}

/* ---- pre-tokenizers ---------------------------------------------------------------------------------------- */

/* The pre-tokenizer runs as a pipeline of its stages (a Sequence's members,
 * flattened), the model last. A stage turns each piece it is given into
 * pieces for the next stage and hands them on PT_BATCH at a time, so what a
 * stage holds is a batch, not a document: a 50 MB text enters as one piece
 * and never has all its millions of words listed at once. Splits and merges
 * stay within one input piece, so batching changes no result. */
#define PT_BATCH 1024

typedef struct { size_t off, len; int first; } piece;

typedef struct {
	const char *s;         /* the bytes the pieces index: buf.s, or the input's */
	sbuf buf;              /* bytes this stage wrote (own) */
	piece *p;              /* (n) */
	size_t n, cap;
	int own;
	int mapped;            /* bytes stand for bytemap chars (ByteLevel ran last) */
} plist;

static void piece_push(plist *l, size_t off, size_t len, int first)
{
	if (!len)
		return;               /* HF drops empty splits */
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 64;
		l->p = lora_xrealloc(l->p, l->cap * sizeof *l->p);
	}
	l->p[l->n++] = (piece){ off, len, first };
}

typedef struct {
	const lora_tokenizer *t;
	tcache *tc;
	ivec *out;             /* the model's ids */
	plist *lv;             /* (2 * npt) per stage: its output, its materialized input */
	int rc;                /* -1 once the model failed; the rest is skipped */
} ptrun;

static void pt_stage(ptrun *r, int k, const plist *in);

/* Hand stage k's pieces to stage k + 1 (or the model) and forget them. */
static void pt_flush(ptrun *r, int k)
{
	plist *o = &r->lv[2 * k];
	if (!o->n)
		return;
	if (o->own)
		o->s = o->buf.s;
	pt_stage(r, k + 1, o);
	o->n = 0;
}

/* A split behavior applied to the spans of one piece as they come: each span
 * is a stretch of the piece, matched (m) or not, in order. */
typedef struct {
	ptrun *r;
	int k, behavior, first;
	size_t base;           /* the piece's offset in the stage's bytes */
	int have, prev;        /* a pending piece [cs, ce); the last span's m */
	size_t cs, ce;
} splitter;

static void split_emit(splitter *b, size_t s, size_t e)
{
	plist *o = &b->r->lv[2 * b->k];
	piece_push(o, b->base + s, e - s, b->first && s == 0);
	if (o->n >= PT_BATCH)
		pt_flush(b->r, b->k);
}

static void split_span(splitter *b, size_t s, size_t e, int m)
{
	switch (b->behavior) {
	case B_REMOVED:
		if (!m)
			split_emit(b, s, e);
		return;
	case B_ISOLATED:
		split_emit(b, s, e);
		return;
	case B_MERGED_PREV:       /* a match joins the stretch before it */
	case B_CONTIGUOUS:        /* like spans join */
		if (b->have && (b->behavior == B_MERGED_PREV ? m && !b->prev : m == b->prev)) {
			b->ce = e;
		} else {
			if (b->have)
				split_emit(b, b->cs, b->ce);
			b->cs = s;
			b->ce = e;
			b->have = 1;
		}
		b->prev = m;
		return;
	case B_MERGED_NEXT:       /* a match joins the unmatched stretch after it */
		if (b->have) {
			b->have = 0;
			if (!m) {
				split_emit(b, b->cs, e);
				return;
			}
			split_emit(b, b->cs, b->ce);
		}
		if (m) {
			b->cs = s;
			b->ce = e;
			b->have = 1;
		} else {
			split_emit(b, s, e);
		}
		return;
	}
}

static void split_end(splitter *b)
{
	if (b->have)              /* only the merging behaviors hold a piece back */
		split_emit(b, b->cs, b->ce);
	b->have = 0;
}

/* Matches of a pattern inside s[0, n), as spans covering all of it. */
static void pattern_spans(const pattern *p, tcache *c, const char *s, size_t n, int invert, splitter *b)
{
	size_t prev = 0, pos = 0, ms, me;
	int ext = pattern_ext(p, s, n);
	while (!b->r->rc && pattern_next(p, c, s, n, pos, &ms, &me, ext)) {
		if (prev != ms)
			split_span(b, prev, ms, invert);
		split_span(b, ms, me, !invert);
		prev = me;
		if (me == ms) {          /* empty match: step one char */
			if (ms >= n)
				break;
			size_t cl;
			utf8_get((const unsigned char *)s + ms, &cl);
			pos = ms + cl;
		} else {
			pos = me;
		}
	}
	if (prev != n)
		split_span(b, prev, n, invert);
	split_end(b);
}

/* Spans of single characters for which pred holds (a char pattern). */
static void pred_spans(int (*pred)(uint32_t, const void *), const void *ctx, const char *s, size_t n, splitter *b)
{
	size_t prev = 0, i = 0, cl;
	while (i < n && !b->r->rc) {
		uint32_t cp = utf8_get((const unsigned char *)s + i, &cl);
		if (pred(cp, ctx)) {
			if (prev != i)
				split_span(b, prev, i, 0);
			split_span(b, i, i + cl, 1);
			prev = i + cl;
		}
		i += cl;
	}
	if (prev != n)
		split_span(b, prev, n, 0);
	split_end(b);
}

static int pred_numeric(uint32_t cp, const void *ctx) { (void)ctx; return is_numeric_cp(cp); }
static int pred_ws(uint32_t cp, const void *ctx) { (void)ctx; return is_ws(cp); }
static int pred_char(uint32_t cp, const void *ctx) { return cp == *(const uint32_t *)ctx; }

/* The pieces of in, their bytes written as the bytemap chars they stand for. */
static const plist *materialize(const plist *in, plist *m)
{
	m->n = 0;
	m->buf.n = 0;
	for (size_t i = 0; i < in->n; i++) {
		const piece *p = &in->p[i];
		size_t off = m->buf.n;
		for (size_t k = 0; k < p->len; k++) {
			unsigned char b = (unsigned char)in->s[p->off + k];
			sbuf_add(&m->buf, bytemap_str[b], bytemap_len[b]);
		}
		piece_push(m, off, m->buf.n - off, p->first);
	}
	m->s = m->buf.s;
	return m;
}

/* Stage k over the pieces of in; k == npt is the model. */
static void pt_stage(ptrun *r, int k, const plist *in)
{
	if (k == r->t->npt) {
		for (size_t i = 0; i < in->n && !r->rc; i++)
			r->rc = model_word(r->t, r->tc, in->s + in->p[i].off, in->p[i].len, in->mapped, r->out);
		return;
	}
	const comp *c = r->t->pt[k];
	if (in->mapped)
		in = materialize(in, &r->lv[2 * k + 1]);
	plist *o = &r->lv[2 * k];
	o->n = 0;
	o->buf.n = 0;
	o->own = c->type == P_METASPACE || c->type == P_BYTELEVEL;
	o->mapped = c->type == P_BYTELEVEL;
	o->s = o->own ? NULL : in->s;
	size_t cl;
	uint32_t rcp = c->type == P_METASPACE ? utf8_get((const unsigned char *)c->str, &cl) : 0;
	for (size_t i = 0; i < in->n && !r->rc; i++) {
		const piece *p = &in->p[i];
		const char *s = in->s + p->off;
		splitter b = { .r = r, .k = k, .behavior = c->a, .first = p->first, .base = p->off };
		switch (c->type) {
		case P_SPLIT:
			pattern_spans(&c->pat, r->tc, s, p->len, c->b, &b);
			break;
		case P_DIGITS:
		case P_WSPLIT:
			b.behavior = c->type == P_WSPLIT ? B_REMOVED : c->a ? B_ISOLATED : B_CONTIGUOUS;
			pred_spans(c->type == P_DIGITS ? pred_numeric : pred_ws, NULL, s, p->len, &b);
			break;
		case P_METASPACE:
		case P_BYTELEVEL: {
			/* the piece rewritten into o's bytes, then split there */
			size_t off = o->buf.n;
			if (c->type == P_METASPACE) {
				/* the space is replaced first, so a leading ' ' counts as the replacement */
				int starts = (p->len >= c->str_len && !memcmp(s, c->str, c->str_len)) || (p->len && s[0] == ' ');
				if (p->len && !starts && (c->a == PS_ALWAYS || (c->a == PS_FIRST && p->first)))
					sbuf_add(&o->buf, c->str, c->str_len);
				for (size_t j = 0; j < p->len; j++) {
					if (s[j] == ' ')
						sbuf_add(&o->buf, c->str, c->str_len);
					else
						sbuf_addc(&o->buf, s[j]);
				}
			} else {
				if (c->a && p->len && s[0] != ' ')
					sbuf_addc(&o->buf, ' ');
				sbuf_add(&o->buf, s, p->len);
			}
			size_t len = o->buf.n - off;
			b.base = off;
			if (!c->b) {
				split_emit(&b, 0, len);
			} else if (c->type == P_METASPACE) {
				b.behavior = B_MERGED_NEXT;
				pred_spans(pred_char, &rcp, o->buf.s + off, len, &b);
			} else {
				b.behavior = B_ISOLATED;
				pattern_spans(&c->pat, r->tc, o->buf.s + off, len, 0, &b);
			}
			if (!o->n)
				o->buf.n = 0;  /* all handed on: the bytes can go */
			break;
		}
		default:
			LORA_ASSERT(!"bad pre_tokenizer");
		}
	}
	pt_flush(r, k);
}

/* The pre-tokenizer's stages in order, Sequences flattened. */
static void pt_flatten(lora_tokenizer *t, const comp *c)
{
	if (c->type == P_SEQ) {
		for (int i = 0; i < c->nsub; i++)
			pt_flatten(t, &c->sub[i]);
		return;
	}
	t->pt = lora_xrealloc(t->pt, (size_t)(t->npt + 1) * sizeof *t->pt);
	t->pt[t->npt++] = c;
}

/* ---- encode ---------------------------------------------------------------------------------------------------- */

/* Normalize, pre-tokenize and run the model over one text segment. */
static int encode_segment(const lora_tokenizer *t, tcache *tc, const char *s, size_t n, int first, ivec *out)
{
	sbuf norm = { 0 };
	const char *ns = s;
	size_t nn = n;
	if (t->norm) {
		normalize(t->norm, tc, &norm, s, n);
		ns = norm.s ? norm.s : "";
		nn = norm.n;
	}
	segvec sv = { 0 };
	split_added(t, &t->norm_trie, ns, nn, first, &sv);
	ptrun r = { .t = t, .tc = tc, .out = out };
	r.lv = lora_xcalloc(2 * (size_t)t->npt + 1, sizeof *r.lv);
	for (size_t i = 0; i < sv.n && !r.rc; i++) {
		const seg *g = &sv.v[i];
		if (g->id >= 0) {
			ivec_push(out, g->id);
			continue;
		}
		if (!g->len)
			continue;
		piece whole = { g->off, g->len, g->first };
		plist in = { .s = ns, .p = &whole, .n = 1 };
		pt_stage(&r, 0, &in);
	}
	for (int k = 0; k < 2 * t->npt; k++) {
		free(r.lv[k].buf.s);
		free(r.lv[k].p);
	}
	free(r.lv);
	free(sv.v);
	free(norm.s);
	return r.rc;
}

int lora_tokenizer_encode(const lora_tokenizer *t, const char *text, size_t len,
                          int add_special, int32_t **ids, size_t *n)
{
	*ids = NULL;
	*n = 0;
	tcache *tc = tc_get(t);
	sbuf clean = { 0 };
	if (!utf8_is_valid(text, len)) {
		utf8_lossy(&clean, text, len);
		text = clean.s;
		len = clean.n;
	}
	ivec out = { 0 };
	if (add_special)
		for (size_t i = 0; i < t->npost_pre; i++)
			ivec_push(&out, t->post_pre[i]);
	segvec sv = { 0 };
	split_added(t, &t->raw_trie, text ? text : "", len, 1, &sv);
	int rc = 0;
	for (size_t i = 0; i < sv.n && rc == 0; i++) {
		const seg *g = &sv.v[i];
		if (g->id >= 0)
			ivec_push(&out, g->id);
		else
			rc = encode_segment(t, tc, text + g->off, g->len, g->first, &out);
	}
	free(sv.v);
	free(clean.s);
	if (rc < 0) {
		free(out.v);
		return -1;
	}
	if (add_special)
		for (size_t i = 0; i < t->npost_post; i++)
			ivec_push(&out, t->post_post[i]);
	if (!out.v)
		out.v = lora_xmalloc(sizeof *out.v);
	*ids = out.v;
	*n = out.n;
	return 0;
}

int lora_tokenizer_encode_fixed(const lora_tokenizer *t, const char *text, size_t len,
                                size_t n, int32_t *out)
{
	int32_t *ids;
	size_t m;
	if (lora_tokenizer_encode(t, text, len, 0, &ids, &m) < 0)
		return -1;
	size_t k = 0;
	if (t->bos >= 0 && k < n)
		out[k++] = t->bos;
	for (size_t i = 0; i < m && k < n; i++)
		out[k++] = ids[i];
	if (t->eos >= 0 && n > 0) {
		if (k < n)
			out[k++] = t->eos;
		else
			out[n - 1] = t->eos;
	}
	free(ids);
	size_t real = k;
	int32_t pad = t->pad >= 0 ? t->pad : t->eos >= 0 ? t->eos : 0;
	while (k < n)
		out[k++] = pad;
	return (int)real;
}

/* ---- decode ------------------------------------------------------------------------------------------------------ */

typedef struct { sbuf *v; size_t n, cap; } slist;

static sbuf *slist_push(slist *l)
{
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 64;
		l->v = lora_xrealloc(l->v, l->cap * sizeof *l->v);
	}
	l->v[l->n] = (sbuf){ 0 };
	return &l->v[l->n++];
}

static void slist_free(slist *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i].s);
	free(l->v);
	*l = (slist){ 0 };
}

static void decode_chain(const comp *c, tcache *tc, slist *l)
{
	slist out = { 0 };
	switch (c->type) {
	case D_SEQ:
		for (int i = 0; i < c->nsub; i++)
			decode_chain(&c->sub[i], tc, l);
		return;
	case D_BYTELEVEL: {
		sbuf raw = { 0 };
		for (size_t i = 0; i < l->n; i++) {
			const sbuf *s = &l->v[i];
			size_t start = raw.n, k = 0, cl;
			int ok = 1;
			while (k < s->n) {
				uint32_t cp = utf8_get((const unsigned char *)s->s + k, &cl);
				int b = bytemap_byte(cp);
				if (b < 0) {
					ok = 0;
					break;
				}
				sbuf_addc(&raw, (char)b);
				k += cl;
			}
			if (!ok) {
				raw.n = start;
				sbuf_add(&raw, s->s, s->n);
			}
		}
		utf8_lossy(slist_push(&out), raw.s ? raw.s : "", raw.n);
		free(raw.s);
		break;
	}
	case D_REPLACE:
		for (size_t i = 0; i < l->n; i++)
			replace_all(tc, &c->pat, c->str, c->str_len, slist_push(&out), l->v[i].s ? l->v[i].s : "", l->v[i].n);
		break;
	case D_BYTEFALLBACK: {
		sbuf bytes = { 0 };
		for (size_t i = 0; i <= l->n; i++) {
			int byte = -1;
			if (i < l->n) {
				const sbuf *s = &l->v[i];
				if (s->n == 6 && !memcmp(s->s, "<0x", 3) && s->s[5] == '>') {
					char h[3] = { s->s[3], s->s[4], 0 };
					char *end;
					long v = strtol(h, &end, 16);
					if (*end == 0 && h[0] != '-' && h[0] != ' ' && v >= 0 && v < 256)
						byte = (int)v;
				}
			}
			if (byte >= 0) {
				sbuf_addc(&bytes, (char)byte);
				continue;
			}
			if (bytes.n) {
				if (utf8_is_valid(bytes.s, bytes.n))
					sbuf_add(slist_push(&out), bytes.s, bytes.n);
				else
					for (size_t k = 0; k < bytes.n; k++)
						sbuf_add(slist_push(&out), "\xEF\xBF\xBD", 3);
				bytes.n = 0;
			}
			if (i < l->n)
				sbuf_add(slist_push(&out), l->v[i].s, l->v[i].n);
		}
		free(bytes.s);
		break;
	}
	case D_FUSE: {
		sbuf *s = slist_push(&out);
		for (size_t i = 0; i < l->n; i++)
			sbuf_add(s, l->v[i].s, l->v[i].n);
		break;
	}
	case D_STRIP:
		/* drop up to `start` leading and `stop` trailing copies of the char */
		for (size_t i = 0; i < l->n; i++) {
			const char *s = l->v[i].s ? l->v[i].s : "";
			size_t n = l->v[i].n, a = 0, b = n, cl = c->str_len;
			for (int k = 0; k < c->a && n - a >= cl && !memcmp(s + a, c->str, cl); k++)
				a += cl;
			for (int k = 0; k < c->b && b - a >= cl && !memcmp(s + b - cl, c->str, cl); k++)
				b -= cl;
			sbuf_add(slist_push(&out), s + a, b - a);
		}
		break;
	case D_METASPACE:
		for (size_t i = 0; i < l->n; i++) {
			sbuf *o = slist_push(&out);
			const char *s = l->v[i].s ? l->v[i].s : "";
			size_t n = l->v[i].n;
			for (size_t k = 0; k < n;) {
				if (n - k >= c->str_len && !memcmp(s + k, c->str, c->str_len)) {
					if (!(i == 0 && c->a != PS_NEVER))
						sbuf_addc(o, ' ');
					k += c->str_len;
				} else {
					sbuf_addc(o, s[k++]);
				}
			}
		}
		break;
	case D_BPE:
		for (size_t i = 0; i < l->n; i++) {
			pattern p = { c->str, c->str_len, NULL, NULL };
			const char *rep = i + 1 == l->n ? "" : " ";
			if (c->str_len)
				replace_all(tc, &p, rep, strlen(rep), slist_push(&out), l->v[i].s ? l->v[i].s : "", l->v[i].n);
			else
				sbuf_add(slist_push(&out), l->v[i].s, l->v[i].n);
		}
		break;
	default:
		LORA_ASSERT(!"bad decoder");
	}
	slist_free(l);
	*l = out;
}

char *lora_tokenizer_decode(const lora_tokenizer *t, const int32_t *ids, size_t n, int skip_special)
{
	return lora_tokenizer_decode_n(t, ids, n, skip_special, NULL);
}

char *lora_tokenizer_decode_n(const lora_tokenizer *t, const int32_t *ids, size_t n, int skip_special, size_t *len)
{
	tcache *tc = tc_get(t);
	slist l = { 0 };
	for (size_t i = 0; i < n; i++) {
		int32_t id = ids[i];
		if (id < 0 || (size_t)id >= t->nid || !t->id_tok[id])
			continue;
		if (skip_special && t->is_special[id])
			continue;
		sbuf_add(slist_push(&l), t->id_tok[id], strlen(t->id_tok[id]));
	}
	if (t->dec) {
		decode_chain(t->dec, tc, &l);
	} else if (l.n) {
		/* no decoder: tokens joined by spaces */
		slist j = { 0 };
		sbuf *s = slist_push(&j);
		for (size_t i = 0; i < l.n; i++) {
			if (i)
				sbuf_addc(s, ' ');
			sbuf_add(s, l.v[i].s, l.v[i].n);
		}
		slist_free(&l);
		l = j;
	}
	sbuf res = { 0 };
	for (size_t i = 0; i < l.n; i++)
		sbuf_add(&res, l.v[i].s, l.v[i].n);
	slist_free(&l);
	sbuf_grow(&res, 0);
	res.s[res.n] = 0;
	if (len)
		*len = res.n;
	return res.s;
}

/* ---- CLIP text cleaning ---------------------------------------------------------------------------------------------- */

/* Python's html.unescape for numeric references and the common named ones. */
static const struct { const char *name; const char *rep; int semi_optional; } html_ents[] = {
	{ "amp", "&", 1 }, { "lt", "<", 1 }, { "gt", ">", 1 }, { "quot", "\"", 1 },
	{ "apos", "'", 0 }, { "nbsp", "\xC2\xA0", 1 }, { "copy", "\xC2\xA9", 1 },
	{ "reg", "\xC2\xAE", 1 }, { "hellip", "\xE2\x80\xA6", 0 }, { "mdash", "\xE2\x80\x94", 0 },
	{ "ndash", "\xE2\x80\x93", 0 }, { "lsquo", "\xE2\x80\x98", 0 }, { "rsquo", "\xE2\x80\x99", 0 },
	{ "ldquo", "\xE2\x80\x9C", 0 }, { "rdquo", "\xE2\x80\x9D", 0 },
};

/* cp1252 for 0x80-0x9F, as Python's html module maps &#128; etc. */
static const uint16_t cp1252[32] = {
	0x20AC, 0x81, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160, 0x2039, 0x0152, 0x8D, 0x017D, 0x8F,
	0x90, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014, 0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x9D, 0x017E, 0x0178,
};

static void html_unescape(sbuf *out, const char *s, size_t n)
{
	for (size_t i = 0; i < n;) {
		if (s[i] != '&') {
			sbuf_addc(out, s[i++]);
			continue;
		}
		size_t j = i + 1;
		if (j < n && s[j] == '#') {
			j++;
			int hex = j < n && (s[j] == 'x' || s[j] == 'X');
			if (hex)
				j++;
			size_t d0 = j;
			uint64_t v = 0;
			while (j < n && (hex ? ((s[j] >= '0' && s[j] <= '9') || ((s[j] | 32) >= 'a' && (s[j] | 32) <= 'f'))
			                     : (s[j] >= '0' && s[j] <= '9'))) {
				int d = s[j] <= '9' ? s[j] - '0' : (s[j] | 32) - 'a' + 10;
				if (v < 0x1000000)
					v = v * (hex ? 16 : 10) + (uint64_t)d;
				j++;
			}
			if (j == d0) {
				sbuf_addc(out, s[i++]);
				continue;
			}
			if (j < n && s[j] == ';')
				j++;
			uint32_t cp;
			if (v >= 0x80 && v <= 0x9F)
				cp = cp1252[v - 0x80];
			else if (v == 0 || (v >= 0xD800 && v <= 0xDFFF) || v > 0x10FFFF)
				cp = 0xFFFD;
			else
				cp = (uint32_t)v;
			int invalid = (cp >= 0x1 && cp <= 0x8) || (cp >= 0xE && cp <= 0x1F) || (cp >= 0x7F && cp <= 0x9F) ||
			              (cp >= 0xFDD0 && cp <= 0xFDEF) || cp == 0xB || (cp & 0xFFFE) == 0xFFFE;
			if (!invalid || (v >= 0x80 && v <= 0x9F)) {
				char tmp[4];
				sbuf_add(out, tmp, (size_t)utf8_put(cp, tmp));
			}
			i = j;
			continue;
		}
		int done = 0;
		for (size_t k = 0; k < sizeof html_ents / sizeof html_ents[0]; k++) {
			size_t l = strlen(html_ents[k].name);
			if (n - j >= l && !memcmp(s + j, html_ents[k].name, l)) {
				int semi = j + l < n && s[j + l] == ';';
				if (!semi && !html_ents[k].semi_optional)
					continue;
				sbuf_add(out, html_ents[k].rep, strlen(html_ents[k].rep));
				i = j + l + semi;
				done = 1;
				break;
			}
		}
		if (!done)
			sbuf_addc(out, s[i++]);
	}
}

static int is_pyspace(uint32_t cp)   /* Python str.isspace */
{
	return is_ws(cp) || (cp >= 0x1C && cp <= 0x1F);
}

/* open_clip's clean 'lower': basic_clean (ftfy.fix_text, which we replace by
 * NFC + straight quotes, then html.unescape twice, strip), whitespace_clean
 * (\s+ -> ' ', strip), lower(). */
static void clip_clean(sbuf *out, const char *s, size_t n)
{
	sbuf a = { 0 }, b = { 0 };
	unicode_norm(&a, s, n, N_NFC, 0);
	/* ftfy's uncurl_quotes */
	for (size_t i = 0; i < a.n;) {
		size_t cl;
		uint32_t cp = utf8_get((const unsigned char *)a.s + i, &cl);
		if (cp == 0x2018 || cp == 0x2019 || cp == 0x201A || cp == 0x201B)
			sbuf_addc(&b, '\'');
		else if (cp == 0x201C || cp == 0x201D || cp == 0x201E || cp == 0x201F)
			sbuf_addc(&b, '"');
		else
			sbuf_add(&b, a.s + i, cl);
		i += cl;
	}
	a.n = 0;
	html_unescape(&a, b.s ? b.s : "", b.n);
	b.n = 0;
	html_unescape(&b, a.s ? a.s : "", a.n);
	/* str.strip() (isspace), regex \s+ -> ' ' (White_Space), strip() again */
	const char *p = b.s ? b.s : "";
	size_t lo = 0, hi = b.n, cl;
	while (lo < hi && is_pyspace(utf8_get((const unsigned char *)p + lo, &cl)))
		lo += cl;
	while (hi > lo && is_pyspace(cp_before(p, hi))) {
		char tmp[4];
		hi -= (size_t)utf8_put(cp_before(p, hi), tmp);
	}
	a.n = 0;
	for (size_t i = lo; i < hi;) {
		uint32_t cp = utf8_get((const unsigned char *)p + i, &cl);
		if (is_ws(cp)) {
			sbuf_addc(&a, ' ');
			while (i < hi && is_ws(utf8_get((const unsigned char *)p + i, &cl)))
				i += cl;
			continue;
		}
		sbuf_add(&a, p + i, cl);
		i += cl;
	}
	p = a.s ? a.s : "";
	lo = 0;
	hi = a.n;
	while (lo < hi && is_pyspace(utf8_get((const unsigned char *)p + lo, &cl)))
		lo += cl;
	while (hi > lo && is_pyspace(cp_before(p, hi))) {
		char tmp[4];
		hi -= (size_t)utf8_put(cp_before(p, hi), tmp);
	}
	lowercase(out, p + lo, hi - lo, 1);
	free(a.s);
	free(b.s);
}

/* ---- loading: common parts ------------------------------------------------------------------------------------------------- */

static lora_tokenizer *tok_new(void)
{
	lora_tokenizer *t = lora_xcalloc(1, sizeof *t);
	bpe_init(&t->bpe);
	t->bos = t->eos = t->pad = -1;
	t->serial = atomic_fetch_add(&serial_next, 1);
	return t;
}

void lora_tokenizer_free(lora_tokenizer *t)
{
	if (!t)
		return;
	if (tl_tc && tl_tc->serial == t->serial) {
		tc_free(tl_tc);
		tl_tc = NULL;
		pthread_setspecific(tc_key, NULL);
	}
	bpe_free(&t->bpe);
	comp_free(t->norm);
	comp_free(t->pre);
	free(t->pt);
	comp_free(t->dec);
	free(t->added);
	free(t->raw_trie.n);
	free(t->norm_trie.n);
	free(t->post_pre);
	free(t->post_post);
	free(t->id_tok);
	free(t->is_special);
	strmap_free(&t->added_map);
	arena_free(&t->mem);
	free(t);
}

#define MAX_ID (1 << 22)   /* 4M ids: 16x the largest vocabularies in use */

/* Record id -> token for id_to_token (the first spelling seen wins for added,
 * the model's otherwise as HF's id_to_token checks added tokens first). */
static void set_id_tok(lora_tokenizer *t, int32_t id, const char *s, int overwrite)
{
	if ((size_t)id >= t->nid) {
		size_t n = t->nid ? t->nid : 1024;
		while (n <= (size_t)id)
			n *= 2;
		t->id_tok = lora_xrealloc(t->id_tok, n * sizeof *t->id_tok);
		t->is_special = lora_xrealloc(t->is_special, n);
		memset(t->id_tok + t->nid, 0, (n - t->nid) * sizeof *t->id_tok);
		memset(t->is_special + t->nid, 0, n - t->nid);
		t->nid = n;
	}
	if (overwrite || !t->id_tok[id])
		t->id_tok[id] = (char *)s;
}

static void finish_ids(lora_tokenizer *t)
{
	/* trim nid to max id + 1 */
	size_t n = t->nid;
	while (n > 0 && !t->id_tok[n - 1])
		n--;
	t->nid = n;
}

/* Add one added token (content/id/flags); the model vocab is left alone. */
static void add_added(lora_tokenizer *t, const char *content, size_t len, int32_t id, int special,
                      int lstrip, int rstrip, int single_word, int normalized)
{
	t->added = lora_xrealloc(t->added, (t->nadded + 1) * sizeof *t->added);
	char *c = arena_strndup(&t->mem, content, len);
	t->added[t->nadded++] = (added_tok){ c, len, id, special, lstrip, rstrip, single_word, normalized };
	strmap_set(&t->added_map, c, len, id);
	set_id_tok(t, id, c, 1);
	if (special)
		t->is_special[id] = 1;
}

static void build_tries(lora_tokenizer *t)
{
	tcache *tc = tc_get(t);
	for (size_t i = 0; i < t->nadded; i++) {
		added_tok *a = &t->added[i];
		if (!a->normalized || !t->norm) {
			trie_add(a->normalized ? &t->norm_trie : &t->raw_trie, a->content, a->len, (int32_t)i);
			continue;
		}
		sbuf nb = { 0 };
		normalize(t->norm, tc, &nb, a->content, a->len);
		char *c = arena_strndup(&t->mem, nb.s ? nb.s : "", nb.n);
		trie_add(&t->norm_trie, c, nb.n, (int32_t)i);
		/* HF's id -> token (what decode reads) is the normalized form too:
		 * "<x>" added to a Llama-2 tokenizer is "▁<x>", decoded " <x>" */
		set_id_tok(t, a->id, c, 1);
		free(nb.s);
	}
}

/* ---- loading: tokenizer.json ------------------------------------------------------------------------------------------------- */

static int32_t lookup_any(const lora_tokenizer *t, const char *s)
{
	int32_t id = strmap_get(&t->added_map, s, strlen(s));
	return id >= 0 ? id : strmap_get(&t->bpe.vocab, s, strlen(s));
}

static int parse_post(lora_tokenizer *t, json_t *o, int depth)
{
	const char *type = comp_type(o, depth, 8, "post_processor");
	if (!type)
		return -1;
	if (!strcmp(type, "ByteLevel"))
		return 0;
	if (!strcmp(type, "Sequence")) {
		json_t *arr = json_object_get(o, "processors");
		if (!json_is_array(arr))
			return lora_err("post_processor Sequence without 'processors'");
		for (size_t i = 0; i < json_array_size(arr); i++)
			if (parse_post(t, json_array_get(arr, i), depth + 1) < 0)
				return -1;
		return 0;
	}
	if (!strcmp(type, "TemplateProcessing")) {
		json_t *single = json_object_get(o, "single"), *sp = json_object_get(o, "special_tokens");
		if (!json_is_array(single))
			return lora_err("post_processor TemplateProcessing without 'single'");
		int seen_a = 0;
		for (size_t i = 0; i < json_array_size(single); i++) {
			json_t *it = json_array_get(single, i);
			json_t *stok = json_object_get(it, "SpecialToken"), *seq = json_object_get(it, "Sequence");
			if (seq) {
				seen_a = 1;
				continue;
			}
			const char *name = jstr(stok, "id");
			if (!name)
				return lora_err("post_processor TemplateProcessing: bad item in 'single'");
			json_t *ids = json_object_get(json_object_get(sp, name), "ids");
			if (!json_is_array(ids))
				return lora_err("post_processor TemplateProcessing: special token '%s' has no ids", name);
			for (size_t k = 0; k < json_array_size(ids); k++) {
				json_t *v = json_array_get(ids, k);
				if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= MAX_ID)
					return lora_err("post_processor TemplateProcessing: bad id for '%s'", name);
				int32_t id = (int32_t)json_integer_value(v);
				int32_t **arr = seen_a ? &t->post_post : &t->post_pre;
				size_t *cnt = seen_a ? &t->npost_post : &t->npost_pre;
				*arr = lora_xrealloc(*arr, (*cnt + 1) * sizeof **arr);
				(*arr)[(*cnt)++] = id;
			}
		}
		return 0;
	}
	if (!strcmp(type, "RobertaProcessing") || !strcmp(type, "BertProcessing")) {
		json_t *cls = json_object_get(o, "cls"), *sep = json_object_get(o, "sep");
		json_t *ci = json_array_get(cls, 1), *si = json_array_get(sep, 1);
		if (!json_is_integer(ci) || !json_is_integer(si) || json_integer_value(ci) < 0 ||
		    json_integer_value(si) < 0 || json_integer_value(ci) >= MAX_ID || json_integer_value(si) >= MAX_ID)
			return lora_err("post_processor %s: bad cls/sep", type);
		t->post_pre = lora_xrealloc(t->post_pre, (t->npost_pre + 1) * sizeof *t->post_pre);
		t->post_pre[t->npost_pre++] = (int32_t)json_integer_value(ci);
		t->post_post = lora_xrealloc(t->post_post, (t->npost_post + 1) * sizeof *t->post_post);
		t->post_post[t->npost_post++] = (int32_t)json_integer_value(si);
		return 0;
	}
	return lora_err("unsupported post_processor '%s'", type);
}

static int parse_bpe_model(lora_tokenizer *t, json_t *m)
{
	const char *type = jstr(m, "type");
	if (!type) {
		/* old files omit the type; a BPE model has merges */
		if (!json_object_get(m, "merges"))
			return lora_err("model without a type");
	} else if (strcmp(type, "BPE")) {
		return lora_err("unsupported model '%s'", type);
	}
	json_t *dropout = json_object_get(m, "dropout");
	if (json_is_number(dropout) && json_number_value(dropout) != 0.0)
		return lora_err("BPE dropout is not supported");
	bpe_model *b = &t->bpe;
	const char *s;
	if ((s = jstr(m, "unk_token")))
		b->unk_token = arena_strndup(&b->mem, s, strlen(s));
	if ((s = jstr(m, "continuing_subword_prefix")) && *s) {
		b->prefix = arena_strndup(&b->mem, s, strlen(s));
		b->prefix_len = strlen(s);
	}
	if ((s = jstr(m, "end_of_word_suffix")) && *s) {
		b->suffix = arena_strndup(&b->mem, s, strlen(s));
		b->suffix_len = strlen(s);
	}
	b->fuse_unk = jbool(m, "fuse_unk", 0);
	b->byte_fallback = jbool(m, "byte_fallback", 0);
	b->ignore_merges = jbool(m, "ignore_merges", 0);
	json_t *vocab = json_object_get(m, "vocab"), *merges = json_object_get(m, "merges");
	if (!json_is_object(vocab))
		return lora_err("model has no vocab object");
	const char *k;
	json_t *v;
	json_object_foreach(vocab, k, v) {
		if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= MAX_ID)
			return lora_err("vocab entry '%s' has a bad id", k);
		size_t kl = strlen(k);   /* jansson rejects NUL in keys by default */
		char *c = arena_strndup(&b->mem, k, kl);
		int32_t id = (int32_t)json_integer_value(v);
		strmap_set(&b->vocab, c, kl, id);
		set_id_tok(t, id, c, 0);
	}
	bpe_finish_vocab(b);
	if (merges && !json_is_array(merges))
		return lora_err("model merges is not a list");
	size_t nm = json_array_size(merges);
	bpe_merges_reserve(b, nm);
	for (size_t i = 0; i < nm; i++) {
		json_t *e = json_array_get(merges, i);
		const char *a, *bb;
		size_t al, bl;
		if (json_is_string(e)) {
			const char *str = json_string_value(e);
			const char *sp = strchr(str, ' ');
			if (!sp || strchr(sp + 1, ' '))
				return lora_err("merge %zu '%s' is not 'a b'", i, str);
			a = str;
			al = (size_t)(sp - str);
			bb = sp + 1;
			bl = strlen(bb);
		} else if (json_is_array(e) && json_array_size(e) == 2 && json_is_string(json_array_get(e, 0)) &&
		           json_is_string(json_array_get(e, 1))) {
			a = json_string_value(json_array_get(e, 0));
			al = json_string_length(json_array_get(e, 0));
			bb = json_string_value(json_array_get(e, 1));
			bl = json_string_length(json_array_get(e, 1));
		} else {
			return lora_err("merge %zu is neither 'a b' nor [a, b]", i);
		}
		if (bpe_merge_add(b, a, al, bb, bl, (uint32_t)i) < 0)
			return -1;
	}
	return 0;
}

/* bos/eos/pad from tokenizer_config.json beside path, when present. */
static void read_config(lora_tokenizer *t, const char *path)
{
	const char *slash = strrchr(path, '/');
	char *cfg = slash ? lora_xasprintf("%.*s/tokenizer_config.json", (int)(slash - path), path)
	                  : lora_xstrdup("tokenizer_config.json");
	json_t *c = json_load_file(cfg, JSON_DECODE_INT_AS_REAL, NULL);   /* model_max_length overflows */
	free(cfg);
	if (!c)
		return;
	const char *keys[3] = { "bos_token", "eos_token", "pad_token" };
	int *dst[3] = { &t->bos, &t->eos, &t->pad };
	for (int i = 0; i < 3; i++) {
		json_t *v = json_object_get(c, keys[i]);
		const char *s = json_is_string(v) ? json_string_value(v) : jstr(v, "content");
		if (s && *dst[i] < 0)
			*dst[i] = lookup_any(t, s);
	}
	json_decref(c);
}

static lora_tokenizer *load_json(const char *path, json_t *root, int config)
{
	lora_tokenizer *t = tok_new();
	json_t *v;
	if ((v = json_object_get(root, "truncation")) && !json_is_null(v)) {
		lora_err("'%s': truncation in tokenizer.json is not supported (set it to null; use --max-len)", path);
		goto fail;
	}
	if ((v = json_object_get(root, "padding")) && !json_is_null(v)) {
		lora_err("'%s': padding in tokenizer.json is not supported (set it to null; use --pad)", path);
		goto fail;
	}
	if (parse_bpe_model(t, json_object_get(root, "model")) < 0)
		goto fail_named;
	if ((v = json_object_get(root, "normalizer")) && !json_is_null(v) && !(t->norm = parse_normalizer(v, 0)))
		goto fail_named;
	if ((v = json_object_get(root, "pre_tokenizer")) && !json_is_null(v) && !(t->pre = parse_pretok(v, 0)))
		goto fail_named;
	if ((v = json_object_get(root, "decoder")) && !json_is_null(v) && !(t->dec = parse_decoder(v, 0)))
		goto fail_named;
	if ((v = json_object_get(root, "post_processor")) && !json_is_null(v) && parse_post(t, v, 0) < 0)
		goto fail_named;
	json_t *added = json_object_get(root, "added_tokens");
	for (size_t i = 0; i < json_array_size(added); i++) {
		json_t *a = json_array_get(added, i);
		json_t *id = json_object_get(a, "id"), *content = json_object_get(a, "content");
		if (!json_is_integer(id) || json_integer_value(id) < 0 || json_integer_value(id) >= MAX_ID ||
		    !json_is_string(content)) {
			lora_err("added token %zu has no valid id/content", i);
			goto fail_named;
		}
		int special = jbool(a, "special", 0);
		add_added(t, json_string_value(content), json_string_length(content), (int32_t)json_integer_value(id),
		          special, jbool(a, "lstrip", 0), jbool(a, "rstrip", 0), jbool(a, "single_word", 0),
		          jbool(a, "normalized", !special));
	}
	build_tries(t);
	finish_ids(t);
	if (t->npost_pre)
		t->bos = t->post_pre[0];
	if (t->npost_post)
		t->eos = t->post_post[t->npost_post - 1];
	if (config)
		read_config(t, path);
	return t;
fail_named:
	{
		char *m = lora_xstrdup(lora_errmsg());
		lora_err("'%s': %s", path, m);
		free(m);
	}
fail:
	lora_tokenizer_free(t);
	return NULL;
}

/* ---- loading: GPT-2 pair and CLIP ------------------------------------------------------------------------------------------------ */

/* Read a file, gunzipping when it is gzip'd. NUL-terminated; free(). */
static char *read_maybe_gz(const char *path, size_t *len)
{
	gzFile g = gzopen(path, "rb");
	if (!g) {
		lora_err("cannot open '%s':", path);
		return NULL;
	}
	sbuf b = { 0 };
	for (;;) {
		sbuf_grow(&b, 1 << 16);
		int r = gzread(g, b.s + b.n, 1 << 16);
		if (r < 0) {
			lora_err("cannot read '%s': bad gzip data", path);
			gzclose(g);
			free(b.s);
			return NULL;
		}
		if (r == 0)
			break;
		b.n += (size_t)r;
	}
	gzclose(g);
	sbuf_grow(&b, 0);
	b.s[b.n] = 0;
	*len = b.n;
	return b.s;
}

/* Merge lines "a b" from text (skipping a "#version" first line); at most max. */
static int add_merge_lines(lora_tokenizer *t, const char *path, const char *text, size_t len, size_t max)
{
	size_t rank = 0, line = 0;
	for (size_t i = 0; i < len && rank < max;) {
		const char *nl = memchr(text + i, '\n', len - i);
		size_t e = nl ? (size_t)(nl - text) : len;
		const char *s = text + i;
		size_t l = e - i;
		i = e + 1;
		line++;
		if (l && s[l - 1] == '\r')
			l--;
		if (line == 1 && l >= 8 && !memcmp(s, "#version", 8))
			continue;
		if (!l)
			continue;
		const char *sp = memchr(s, ' ', l);
		if (!sp || memchr(sp + 1, ' ', l - (size_t)(sp + 1 - s)))
			return lora_err("'%s' line %zu: not a merge 'a b'", path, line);
		if (bpe_merge_add(&t->bpe, s, (size_t)(sp - s), sp + 1, l - (size_t)(sp + 1 - s), (uint32_t)rank) < 0) {
			char *m = lora_xstrdup(lora_errmsg());
			lora_err("'%s' line %zu: %s", path, line, m);
			free(m);
			return -1;
		}
		rank++;
	}
	return 0;
}

static lora_tokenizer *load_gpt2(const char *enc_path, const char *bpe_path)
{
	lora_tokenizer *t = tok_new();
	json_error_t je;
	json_t *enc = json_load_file(enc_path, 0, &je);
	char *merges = NULL;
	if (!enc) {
		lora_err("'%s': %s (line %d)", enc_path, je.text, je.line);
		goto fail;
	}
	if (!json_is_object(enc)) {
		lora_err("'%s': not a JSON object of token -> id", enc_path);
		goto fail;
	}
	const char *k;
	json_t *v;
	json_object_foreach(enc, k, v) {
		if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= MAX_ID) {
			lora_err("'%s': entry '%s' has a bad id", enc_path, k);
			goto fail;
		}
		char *c = arena_strndup(&t->bpe.mem, k, strlen(k));
		strmap_set(&t->bpe.vocab, c, strlen(k), (int32_t)json_integer_value(v));
		set_id_tok(t, (int32_t)json_integer_value(v), c, 0);
	}
	bpe_finish_vocab(&t->bpe);
	size_t len;
	if (!(merges = read_maybe_gz(bpe_path, &len)))
		goto fail;
	bpe_merges_reserve(&t->bpe, 50000);
	if (add_merge_lines(t, bpe_path, merges, len, SIZE_MAX) < 0)
		goto fail;
	/* HF GPT2TokenizerFast: ByteLevel(add_prefix_space=false) pre-tokenizer
	 * and decoder, <|endoftext|> as the special token, bos = eos. */
	t->pre = lora_xcalloc(1, sizeof *t->pre);
	t->pre->type = P_BYTELEVEL;
	t->pre->a = 0;
	t->pre->b = 1;
	if (pattern_regex(&t->pre->pat, "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+",
	                  PCRE2_ZERO_TERMINATED, 0, "ByteLevel") < 0)
		goto fail;
	t->dec = lora_xcalloc(1, sizeof *t->dec);
	t->dec->type = D_BYTELEVEL;
	int32_t eot = strmap_get(&t->bpe.vocab, "<|endoftext|>", 13);
	if (eot >= 0) {
		add_added(t, "<|endoftext|>", 13, eot, 1, 0, 0, 0, 0);
		t->bos = t->eos = eot;
	}
	build_tries(t);
	finish_ids(t);
	json_decref(enc);
	free(merges);
	return t;
fail:
	json_decref(enc);
	free(merges);
	lora_tokenizer_free(t);
	return NULL;
}

static lora_tokenizer *load_clip(const char *path)
{
	size_t len;
	char *text = read_maybe_gz(path, &len);
	if (!text)
		return NULL;
	lora_tokenizer *t = tok_new();
	bpe_model *b = &t->bpe;
	/* The merges: lines 1 .. 48894 after the header (open_clip's slice). */
	const size_t nmerge = 49152 - 256 - 2;
	const char **ml = lora_xmalloc(nmerge * sizeof *ml);
	size_t *mlen = lora_xmalloc(nmerge * sizeof *mlen), nm = 0, line = 0;
	for (size_t i = 0; i < len && nm < nmerge;) {
		const char *nl = memchr(text + i, '\n', len - i);
		size_t e = nl ? (size_t)(nl - text) : len;
		if (line++ > 0) {
			ml[nm] = text + i;
			mlen[nm++] = e - i;
		}
		i = e + 1;
	}
	if (nm < nmerge) {
		lora_err("'%s': %zu merges, CLIP's vocabulary needs %zu", path, nm, nmerge);
		goto fail;
	}
	/* vocab: 256 byte chars, the same with </w>, each merge joined, specials */
	int32_t id = 0;
	int bs[256], k = 0;   /* bytes in bytes_to_unicode order */
	for (int c = 0; c < 256; c++)
		if ((c >= 0x21 && c <= 0x7E) || (c >= 0xA1 && c <= 0xAC) || c >= 0xAE)
			bs[k++] = c;
	for (int c = 0; c < 256; c++)
		if (!((c >= 0x21 && c <= 0x7E) || (c >= 0xA1 && c <= 0xAC) || c >= 0xAE))
			bs[k++] = c;
	for (int pass = 0; pass < 2; pass++)
		for (int i = 0; i < 256; i++) {
			char tmp[8];
			size_t l = bytemap_len[bs[i]];
			memcpy(tmp, bytemap_str[bs[i]], l);
			if (pass)
				memcpy(tmp + l, "</w>", 4), l += 4;
			char *c = arena_strndup(&b->mem, tmp, l);
			strmap_set(&b->vocab, c, l, id);
			set_id_tok(t, id++, c, 1);
		}
	for (size_t i = 0; i < nm; i++) {
		const char *s = ml[i];
		size_t l = mlen[i];
		/* Python's merge.split() splits on any whitespace run */
		char *c = lora_xmalloc(l + 1);
		size_t cl = 0;
		int parts = 0, in = 0;
		for (size_t j = 0; j < l; j++) {
			int sp = s[j] == ' ' || s[j] == '\t' || s[j] == '\r' || s[j] == '\v' || s[j] == '\f';
			if (!sp) {
				if (!in)
					parts++;
				c[cl++] = s[j];
			}
			in = !sp;
		}
		if (parts != 2) {
			free(c);
			lora_err("'%s' line %zu: not a merge 'a b'", path, i + 2);
			goto fail;
		}
		char *ac = arena_strndup(&b->mem, c, cl);
		free(c);
		strmap_set(&b->vocab, ac, cl, id);
		set_id_tok(t, id++, ac, 1);
	}
	const char *spec[2] = { "<start_of_text>", "<end_of_text>" };
	for (int i = 0; i < 2; i++) {
		char *c = arena_strndup(&b->mem, spec[i], strlen(spec[i]));
		strmap_set(&b->vocab, c, strlen(c), id);
		strmap_set(&b->specials, c, strlen(c), id);
		set_id_tok(t, id, c, 1);
		t->is_special[id] = 1;
		id++;
	}
	b->suffix = arena_strndup(&b->mem, "</w>", 4);
	b->suffix_len = 4;
	bpe_finish_vocab(b);
	bpe_merges_reserve(b, nm);
	for (size_t i = 0; i < nm; i++) {
		const char *s = ml[i];
		size_t l = mlen[i];
		const char *sp = memchr(s, ' ', l);
		if (!sp) {
			lora_err("'%s' line %zu: not a merge 'a b'", path, i + 2);
			goto fail;
		}
		size_t bl = l - (size_t)(sp + 1 - s);
		while (bl && (sp[1 + bl - 1] == '\r' || sp[1 + bl - 1] == ' '))
			bl--;
		if (bpe_merge_add(b, s, (size_t)(sp - s), sp + 1, bl, (uint32_t)i) < 0) {
			char *m = lora_xstrdup(lora_errmsg());
			lora_err("'%s' line %zu: %s", path, i + 2, m);
			free(m);
			goto fail;
		}
	}
	/* open_clip's pipeline: clean, findall(regex), bytes -> chars, BPE. */
	t->norm = lora_xcalloc(1, sizeof *t->norm);
	t->norm->type = N_CLIP;
	t->pre = lora_xcalloc(1, sizeof *t->pre);
	t->pre->type = P_SEQ;
	t->pre->nsub = 2;
	t->pre->sub = lora_xcalloc(2, sizeof *t->pre->sub);
	t->pre->sub[0].type = P_SPLIT;
	t->pre->sub[0].a = B_REMOVED;
	t->pre->sub[0].b = 1;
	if (pattern_regex(&t->pre->sub[0].pat,
	                  "<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+",
	                  PCRE2_ZERO_TERMINATED, 1, "CLIP") < 0)
		goto fail;
	t->pre->sub[1].type = P_BYTELEVEL;
	t->dec = lora_xcalloc(1, sizeof *t->dec);
	t->dec->type = D_SEQ;
	t->dec->nsub = 2;
	t->dec->sub = lora_xcalloc(2, sizeof *t->dec->sub);
	t->dec->sub[0].type = D_BYTELEVEL;
	t->dec->sub[1].type = D_REPLACE;
	t->dec->sub[1].pat.lit = lora_xstrdup("</w>");
	t->dec->sub[1].pat.lit_len = 4;
	set_str(&t->dec->sub[1], " ");
	t->bos = id - 2;
	t->eos = id - 1;
	t->pad = id - 1;   /* SD 1.5's HF tokenizer pads with <|endoftext|>; open_clip uses 0 */
	t->ctx_len = 77;
	t->post_pre = lora_xmalloc(sizeof(int32_t));
	t->post_pre[0] = t->bos;
	t->npost_pre = 1;
	t->post_post = lora_xmalloc(sizeof(int32_t));
	t->post_post[0] = t->eos;
	t->npost_post = 1;
	finish_ids(t);
	free(ml);
	free(mlen);
	free(text);
	return t;
fail:
	free(ml);
	free(mlen);
	free(text);
	lora_tokenizer_free(t);
	return NULL;
}

/* ---- loading: dispatch --------------------------------------------------------------------------------------------------------- */

static int exists(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

static int ends_with(const char *s, const char *suf)
{
	size_t a = strlen(s), b = strlen(suf);
	return a >= b && !strcmp(s + a - b, suf);
}

/* dir/name for the folder of path. free(). */
static char *beside(const char *path, const char *name)
{
	const char *slash = strrchr(path, '/');
	return slash ? lora_xasprintf("%.*s/%s", (int)(slash - path), path, name) : lora_xstrdup(name);
}

static lora_tokenizer *load_path(const char *path);

/* What every loader's tokenizer needs before it encodes. */
static lora_tokenizer *ready(lora_tokenizer *t)
{
	if (t && t->pre)
		pt_flatten(t, t->pre);
	return t;
}

lora_tokenizer *lora_tokenizer_load(const char *path)
{
	return ready(load_path(path));
}

static lora_tokenizer *load_path(const char *path)
{
	struct stat st;
	if (stat(path, &st) != 0) {
		lora_err("cannot open '%s':", path);
		return NULL;
	}
	if (S_ISDIR(st.st_mode)) {
		char *p = lora_xasprintf("%s/tokenizer.json", path);
		lora_tokenizer *t = NULL;
		if (exists(p)) {
			t = load_path(p);
		} else {
			char *e = lora_xasprintf("%s/encoder.json", path);
			if (exists(e))
				t = load_path(e);
			else
				lora_err("'%s': no tokenizer.json or encoder.json in this folder", path);
			free(e);
		}
		free(p);
		return t;
	}
	const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
	if (strstr(base, "bpe_simple_vocab") || ends_with(base, ".txt.gz"))
		return load_clip(path);
	if (ends_with(base, ".bpe") || !strcmp(base, "merges.txt")) {
		char *e = beside(path, "encoder.json");
		if (!exists(e)) {
			free(e);
			e = beside(path, "vocab.json");
		}
		lora_tokenizer *t = exists(e) ? load_gpt2(e, path) : NULL;
		if (!t && !exists(e))
			lora_err("'%s': no encoder.json or vocab.json beside it", path);
		free(e);
		return t;
	}
	json_error_t je;
	json_t *root = json_load_file(path, 0, &je);
	if (!root) {
		lora_err("'%s': not a tokenizer file: %s (line %d)", path, je.text, je.line);
		return NULL;
	}
	lora_tokenizer *t = NULL;
	if (json_is_object(root) && json_is_object(json_object_get(root, "model"))) {
		t = load_json(path, root, 1);
	} else if (json_is_object(root)) {
		json_decref(root);
		root = NULL;
		char *m = beside(path, "vocab.bpe");
		if (!exists(m)) {
			free(m);
			m = beside(path, "merges.txt");
		}
		if (exists(m))
			t = load_gpt2(path, m);
		else
			lora_err("'%s': no \"model\" key, and no vocab.bpe or merges.txt beside it", path);
		free(m);
	} else {
		lora_err("'%s': not a tokenizer.json (expected a JSON object)", path);
	}
	json_decref(root);
	return t;
}

lora_tokenizer *lora_tokenizer_load_json(const char *data, size_t len, const char *name)
{
	json_error_t je;
	json_t *root = json_loadb(data, len, 0, &je);
	if (!root) {
		lora_err("'%s': not a tokenizer.json: %s (line %d)", name, je.text, je.line);
		return NULL;
	}
	lora_tokenizer *t = NULL;
	if (json_is_object(root) && json_is_object(json_object_get(root, "model")))
		t = load_json(name, root, 0);
	else
		lora_err("'%s': not a tokenizer.json (no \"model\" object)", name);
	json_decref(root);
	return ready(t);
}

/* ---- accessors ------------------------------------------------------------------------------------------------------------------ */

int lora_tokenizer_vocab_size(const lora_tokenizer *t) { return (int)t->nid; }
int lora_tokenizer_bos_id(const lora_tokenizer *t) { return t->bos; }
int lora_tokenizer_eos_id(const lora_tokenizer *t) { return t->eos; }
int lora_tokenizer_pad_id(const lora_tokenizer *t) { return t->pad; }
int lora_tokenizer_context_len(const lora_tokenizer *t) { return t->ctx_len; }

const char *lora_tokenizer_id_to_token(const lora_tokenizer *t, int id)
{
	if (id < 0 || (size_t)id >= t->nid)
		return NULL;
	return t->id_tok[id];
}

int lora_tokenizer_token_to_id(const lora_tokenizer *t, const char *tok)
{
	return lookup_any(t, tok);
}

size_t lora_utf8_valid_prefix(const char *s, size_t n)
{
	return utf8_valid_prefix(s, n);
}

int lora_utf8_cut(const char *s, size_t n)
{
	return utf8_is_cut(s, n);
}
