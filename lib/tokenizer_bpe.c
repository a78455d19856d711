/* tokenizer_bpe.c: see tokenizer_bpe.h. The merge loop mirrors HF tokenizers'
 * models/bpe/word.rs merge_all; the per-character setup mirrors model.rs
 * merge_word. */
#include "tokenizer_bpe.h"
#include "util.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* ---- growable arrays ------------------------------------------------------- */

void ivec_grow(ivec *a, size_t extra)
{
	if (a->n + extra <= a->cap)
		return;
	size_t c = a->cap ? a->cap : 64;
	while (c < a->n + extra)
		c *= 2;
	a->v = lora_xrealloc(a->v, c * sizeof *a->v);
	a->cap = c;
}

void ivec_push(ivec *a, int32_t x)
{
	ivec_grow(a, 1);
	a->v[a->n++] = x;
}

void sbuf_grow(sbuf *b, size_t extra)
{
	if (b->n + extra + 1 <= b->cap)
		return;
	size_t c = b->cap ? b->cap : 256;
	while (c < b->n + extra + 1)
		c *= 2;
	b->s = lora_xrealloc(b->s, c);
	b->cap = c;
}

void sbuf_add(sbuf *b, const void *p, size_t n)
{
	sbuf_grow(b, n);
	if (n)
		memcpy(b->s + b->n, p, n);
	b->n += n;
}

/* ---- UTF-8 ------------------------------------------------------------------- */

/* A lead byte of a well-formed sequence (Unicode Table 3-7): how many
 * continuation bytes follow it and the range of the first; 0 for ASCII and
 * for a byte that starts no sequence. */
static size_t utf8_lead(unsigned c, unsigned *lo, unsigned *hi)
{
	*lo = 0x80;
	*hi = 0xBF;
	if (c >= 0xC2 && c <= 0xDF) return 1;
	if (c == 0xE0) { *lo = 0xA0; return 2; }
	if (c == 0xED) { *hi = 0x9F; return 2; }
	if (c >= 0xE1 && c <= 0xEF) return 2;
	if (c == 0xF0) { *lo = 0x90; return 3; }
	if (c >= 0xF1 && c <= 0xF3) return 3;
	if (c == 0xF4) { *hi = 0x8F; return 3; }
	return 0;
}

size_t utf8_valid_len(const unsigned char *s, size_t n)
{
	if (s[0] < 0x80)
		return 1;
	unsigned lo, hi;
	size_t need = utf8_lead(s[0], &lo, &hi);
	if (!need || n < need + 1)
		return 0;
	if (s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i <= need; i++)
		if (s[i] < 0x80 || s[i] > 0xBF)
			return 0;
	return need + 1;
}

/* Bytes of the maximal subpart of an ill-formed sequence at s (>= 1). */
static size_t utf8_bad_len(const unsigned char *s, size_t n)
{
	unsigned lo, hi;
	size_t need = utf8_lead(s[0], &lo, &hi);
	if (!need)
		return 1;
	size_t i = 1;
	if (i < n && s[i] >= lo && s[i] <= hi) {
		i++;
		while (i <= need && i < n && s[i] >= 0x80 && s[i] <= 0xBF)
			i++;
	}
	return i;
}

uint32_t utf8_get(const unsigned char *s, size_t *cl)
{
	unsigned c = s[0];
	if (c < 0x80) { *cl = 1; return c; }
	if (c < 0xE0) { *cl = 2; return ((c & 0x1F) << 6) | (s[1] & 0x3F); }
	if (c < 0xF0) { *cl = 3; return ((c & 0x0F) << 12) | ((s[1] & 0x3F) << 6) | (s[2] & 0x3F); }
	*cl = 4;
	return ((c & 0x07) << 18) | ((s[1] & 0x3F) << 12) | ((s[2] & 0x3F) << 6) | (s[3] & 0x3F);
}

int utf8_put(uint32_t cp, char *o)
{
	if (cp < 0x80) { o[0] = (char)cp; return 1; }
	if (cp < 0x800) { o[0] = (char)(0xC0 | (cp >> 6)); o[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
	if (cp < 0x10000) {
		o[0] = (char)(0xE0 | (cp >> 12)); o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
		o[2] = (char)(0x80 | (cp & 0x3F)); return 3;
	}
	o[0] = (char)(0xF0 | (cp >> 18)); o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
	o[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); o[3] = (char)(0x80 | (cp & 0x3F));
	return 4;
}

size_t utf8_valid_prefix(const char *s, size_t n)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t i = 0;
	while (i < n) {
		if (u[i] < 0x80) {
			i++;
			continue;
		}
		size_t l = utf8_valid_len(u + i, n - i);
		if (!l)
			break;
		i += l;
	}
	return i;
}

int utf8_is_valid(const char *s, size_t n)
{
	return utf8_valid_prefix(s, n) == n;
}

int utf8_is_cut(const char *s, size_t n)
{
	unsigned lo, hi;
	const unsigned char *u = (const unsigned char *)s;
	return utf8_lead(u[0], &lo, &hi) > 0 && utf8_bad_len(u, n) == n;
}

void utf8_lossy(sbuf *out, const char *s, size_t n)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t i = 0, run = 0;
	sbuf_grow(out, n);
	while (i < n) {
		size_t l = u[i] < 0x80 ? 1 : utf8_valid_len(u + i, n - i);
		if (l) {
			i += l;
			continue;
		}
		sbuf_add(out, s + run, i - run);
		sbuf_add(out, "\xEF\xBF\xBD", 3);
		i += utf8_bad_len(u + i, n - i);
		run = i;
	}
	sbuf_add(out, s + run, n - run);
}

/* ---- byte <-> unicode table -------------------------------------------------------- */

char bytemap_str[256][3];
uint8_t bytemap_len[256];
static int16_t cp_byte[324];

static pthread_once_t bytemap_once = PTHREAD_ONCE_INIT;

static void bytemap_fill(void)
{
	int n = 0;
	for (int b = 0; b < 256; b++) {
		int printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
		uint32_t cp = printable ? (uint32_t)b : 256u + (uint32_t)n++;
		char tmp[4];
		int l = utf8_put(cp, tmp);
		memcpy(bytemap_str[b], tmp, (size_t)l);
		bytemap_len[b] = (uint8_t)l;
		cp_byte[cp] = (int16_t)b;
	}
}

void bytemap_init(void) { pthread_once(&bytemap_once, bytemap_fill); }

int bytemap_byte(uint32_t cp)
{
	if (cp >= 324)
		return -1;
	int b = cp_byte[cp];
	/* cp_byte is 0 both for byte 0 (cp 256) and for unused slots */
	if (b == 0 && cp != 256)
		return -1;
	if (cp < 256 && !((cp >= 0x21 && cp <= 0x7E) || (cp >= 0xA1 && cp <= 0xAC) || cp >= 0xAE))
		return -1;
	return b;
}

/* ---- hashing and the string map ---------------------------------------------------- */

uint64_t hash_bytes(const void *p, size_t n)
{
	const unsigned char *s = p;
	uint64_t h = 0x9E3779B97F4A7C15ull ^ (n * 0xff51afd7ed558ccdull);
	while (n >= 8) {
		uint64_t k;
		memcpy(&k, s, 8);
		h = (h ^ k) * 0xff51afd7ed558ccdull;
		h ^= h >> 32;
		s += 8;
		n -= 8;
	}
	uint64_t k = 0;
	if (n)
		memcpy(&k, s, n);
	h = (h ^ k) * 0xc4ceb9fe1a85ec53ull;
	h ^= h >> 29;
	h *= 0x9E3779B97F4A7C15ull;
	h ^= h >> 32;
	return h;
}

static void strmap_rehash(strmap *m, size_t nslots)
{
	free(m->slot);
	m->slot = lora_xcalloc(nslots, sizeof *m->slot);
	m->mask = nslots - 1;
	for (size_t i = 0; i < m->n; i++) {
		size_t j = m->khash[i] & m->mask;
		while (m->slot[j])
			j = (j + 1) & m->mask;
		m->slot[j] = (uint32_t)i + 1;
	}
}

int32_t strmap_get(const strmap *m, const char *k, size_t klen)
{
	if (!m->slot)
		return -1;
	uint64_t h = hash_bytes(k, klen);
	size_t j = h & m->mask;
	for (;;) {
		uint32_t e = m->slot[j];
		if (!e)
			return -1;
		e--;
		if (m->khash[e] == h && m->klen[e] == klen && memcmp(m->key[e], k, klen) == 0)
			return m->val[e];
		j = (j + 1) & m->mask;
	}
}

void strmap_set(strmap *m, const char *k, size_t klen, int32_t v)
{
	if (!m->slot || (m->n + 1) * 2 > m->mask + 1)
		strmap_rehash(m, m->slot ? (m->mask + 1) * 2 : 1024);
	uint64_t h = hash_bytes(k, klen);
	size_t j = h & m->mask;
	for (;;) {
		uint32_t e = m->slot[j];
		if (!e)
			break;
		e--;
		if (m->khash[e] == h && m->klen[e] == klen && memcmp(m->key[e], k, klen) == 0) {
			m->val[e] = v;
			return;
		}
		j = (j + 1) & m->mask;
	}
	if (m->n == m->cap) {
		m->cap = m->cap ? m->cap * 2 : 1024;
		m->key = lora_xrealloc(m->key, m->cap * sizeof *m->key);
		m->klen = lora_xrealloc(m->klen, m->cap * sizeof *m->klen);
		m->val = lora_xrealloc(m->val, m->cap * sizeof *m->val);
		m->khash = lora_xrealloc(m->khash, m->cap * sizeof *m->khash);
	}
	m->key[m->n] = k;
	m->klen[m->n] = (uint32_t)klen;
	m->val[m->n] = v;
	m->khash[m->n] = h;
	m->slot[j] = (uint32_t)++m->n;
}

void strmap_free(strmap *m)
{
	free(m->key);
	free(m->klen);
	free(m->val);
	free(m->khash);
	free(m->slot);
	memset(m, 0, sizeof *m);
}

/* ---- arena --------------------------------------------------------------------------- */

struct arena_blk { arena_blk *next; size_t used, cap; char data[]; };

char *arena_strndup(arena *a, const char *s, size_t n)
{
	arena_blk *b = a->head;
	if (!b || b->used + n + 1 > b->cap) {
		size_t cap = n + 1 > (1u << 20) ? n + 1 : (1u << 20);
		b = lora_xmalloc(sizeof *b + cap);
		b->next = a->head;
		b->used = 0;
		b->cap = cap;
		a->head = b;
	}
	char *p = b->data + b->used;
	if (n)
		memcpy(p, s, n);
	p[n] = 0;
	b->used += n + 1;
	return p;
}

void arena_free(arena *a)
{
	for (arena_blk *b = a->head, *nx; b; b = nx) {
		nx = b->next;
		free(b);
	}
	a->head = NULL;
}

/* ---- BPE model: setup ------------------------------------------------------------------ */

void bpe_init(bpe_model *m)
{
	memset(m, 0, sizeof *m);
	bytemap_init();
}

void bpe_free(bpe_model *m)
{
	if (!m)
		return;
	strmap_free(&m->vocab);
	strmap_free(&m->specials);
	free(m->merges);
	free(m->in_merge);
	free(m->edge_cp);
	free(m->joins);
	arena_free(&m->mem);
	memset(m, 0, sizeof *m);
}

#define RUN_CACHE_SLOTS 16384
#define RUN_CACHE_MAX 64

struct bpe_centry { uint64_t h; uint32_t koff, klen, ooff, olen, gen; };

void bpe_scratch_clear(bpe_scratch *s)
{
	if (++s->cgen == 0) {
		if (s->ctab)
			memset(s->ctab, 0, RUN_CACHE_SLOTS * sizeof *s->ctab);
		s->cgen = 1;
	}
	s->cused = 0;
	s->ckeys.n = s->cvals.n = 0;
}

void bpe_scratch_free(bpe_scratch *s)
{
	free(s->ctab);
	free(s->ckeys.v);
	free(s->cvals.v);
	free(s->sym);
	free(s->heap);
	free(s->ws.s);
	free(s->tmp.s);
	memset(s, 0, sizeof *s);
}

void bpe_finish_vocab(bpe_model *m)
{
	static const char hex[] = "0123456789ABCDEF";
	for (int b = 0; b < 256; b++) {
		char name[7] = { '<', '0', 'x', hex[b >> 4], hex[b & 15], '>', 0 };
		m->byte_tok[b] = strmap_get(&m->vocab, name, 6);
		m->fast_map[b] = strmap_get(&m->vocab, bytemap_str[b], bytemap_len[b]);
		if (b < 128) {
			char c = (char)b;
			m->fast_raw[b] = strmap_get(&m->vocab, &c, 1);
		}
	}
	/* first and last code point of every token, for the join test */
	int32_t maxid = -1;
	for (size_t i = 0; i < m->vocab.n; i++)
		if (m->vocab.val[i] > maxid)
			maxid = m->vocab.val[i];
	free(m->edge_cp);
	m->edge_n = (size_t)(maxid + 1);
	m->edge_cp = lora_xcalloc(m->edge_n ? 2 * m->edge_n : 1, sizeof *m->edge_cp);
	for (size_t i = 0; i < m->vocab.n; i++) {
		const unsigned char *k = (const unsigned char *)m->vocab.key[i];
		size_t l = m->vocab.klen[i], cl;
		if (!l || !utf8_is_valid((const char *)k, l))
			continue;
		size_t j = l - 1;
		while (j > 0 && (k[j] & 0xC0) == 0x80)
			j--;
		m->edge_cp[2 * m->vocab.val[i]] = utf8_get(k, &cl);
		m->edge_cp[2 * m->vocab.val[i] + 1] = utf8_get(k + j, &cl);
	}
}

static void join_add(bpe_model *m, uint64_t key)
{
	if (!m->joins || (m->njoins + 1) * 2 > m->jmask + 1) {
		uint64_t *old = m->joins;
		size_t on = old ? m->jmask + 1 : 0, nn = old ? on * 2 : 1024;
		m->joins = lora_xmalloc(nn * sizeof *m->joins);
		memset(m->joins, 0xFF, nn * sizeof *m->joins);
		m->jmask = nn - 1;
		for (size_t i = 0; i < on; i++) {
			if (old[i] == UINT64_MAX)
				continue;
			size_t j = (old[i] * 0x9E3779B97F4A7C15ull >> 20) & m->jmask;
			while (m->joins[j] != UINT64_MAX)
				j = (j + 1) & m->jmask;
			m->joins[j] = old[i];
		}
		free(old);
	}
	size_t j = (key * 0x9E3779B97F4A7C15ull >> 20) & m->jmask;
	while (m->joins[j] != UINT64_MAX) {
		if (m->joins[j] == key)
			return;
		j = (j + 1) & m->jmask;
	}
	m->joins[j] = key;
	m->njoins++;
}

/* Can some merge ever join a symbol ending like id a to one starting like b? */
static inline int can_join(const bpe_model *m, int32_t a, int32_t b)
{
	if ((size_t)a >= m->edge_n || (size_t)b >= m->edge_n || !m->joins)
		return 1;
	uint64_t key = ((uint64_t)m->edge_cp[2 * a + 1] << 32) | m->edge_cp[2 * b];
	size_t j = (key * 0x9E3779B97F4A7C15ull >> 20) & m->jmask;
	for (;;) {
		uint64_t v = m->joins[j];
		if (v == key)
			return 1;
		if (v == UINT64_MAX)
			return 0;
		j = (j + 1) & m->jmask;
	}
}

void bpe_merges_reserve(bpe_model *m, size_t n)
{
	size_t slots = 1024;
	while (slots < 2 * n + 2)
		slots *= 2;
	free(m->merges);
	m->merges = lora_xmalloc(slots * sizeof *m->merges);
	for (size_t i = 0; i < slots; i++)
		m->merges[i].key = UINT64_MAX;
	m->mmask = slots - 1;
	m->nmerges = 0;
}

static inline uint64_t mix64(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	return x;
}

static inline const bpe_merge *merge_find(const bpe_model *m, int32_t a, int32_t b)
{
	uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
	size_t j = mix64(key) & m->mmask;
	for (;;) {
		const bpe_merge *e = &m->merges[j];
		if (e->key == key)
			return e;
		if (e->key == UINT64_MAX)
			return NULL;
		j = (j + 1) & m->mmask;
	}
}

int bpe_merge_add(bpe_model *m, const char *a, size_t alen, const char *b, size_t blen, uint32_t rank)
{
	int32_t ia = strmap_get(&m->vocab, a, alen);
	if (ia < 0)
		return lora_err("merge token '%.*s' is not in the vocabulary", (int)alen, a);
	int32_t ib = strmap_get(&m->vocab, b, blen);
	if (ib < 0)
		return lora_err("merge token '%.*s' is not in the vocabulary", (int)blen, b);
	size_t skip = m->prefix_len <= blen ? m->prefix_len : blen;
	char stackbuf[256];
	size_t nl = alen + blen - skip;
	char *nw = nl <= sizeof stackbuf ? stackbuf : lora_xmalloc(nl);
	memcpy(nw, a, alen);
	memcpy(nw + alen, b + skip, blen - skip);
	int32_t in = strmap_get(&m->vocab, nw, nl);
	if (in < 0) {
		lora_err("merge result '%.*s' is not in the vocabulary", (int)nl, nw);
		if (nw != stackbuf)
			free(nw);
		return -1;
	}
	if (nw != stackbuf)
		free(nw);
	if ((m->nmerges + 1) * 2 > m->mmask + 1) {
		/* grow: rehash into a table twice the size */
		bpe_merge *old = m->merges;
		size_t oslots = m->mmask + 1, n = m->nmerges;
		m->merges = NULL;
		bpe_merges_reserve(m, oslots);
		for (size_t i = 0; i < oslots; i++) {
			if (old[i].key == UINT64_MAX)
				continue;
			size_t j = mix64(old[i].key) & m->mmask;
			while (m->merges[j].key != UINT64_MAX)
				j = (j + 1) & m->mmask;
			m->merges[j] = old[i];
		}
		m->nmerges = n;
		free(old);
	}
	uint64_t key = ((uint64_t)(uint32_t)ia << 32) | (uint32_t)ib;
	size_t j = mix64(key) & m->mmask;
	while (m->merges[j].key != UINT64_MAX && m->merges[j].key != key)
		j = (j + 1) & m->mmask;
	if (m->merges[j].key == UINT64_MAX)
		m->nmerges++;
	int32_t hi = ia > ib ? ia : ib;
	if ((size_t)hi >= m->in_merge_n) {
		size_t n = m->in_merge_n ? m->in_merge_n : 1024;
		while (n <= (size_t)hi)
			n *= 2;
		m->in_merge = lora_xrealloc(m->in_merge, n);
		memset(m->in_merge + m->in_merge_n, 0, n - m->in_merge_n);
		m->in_merge_n = n;
	}
	m->in_merge[ia] = m->in_merge[ib] = 1;
	if ((size_t)ia < m->edge_n && (size_t)ib < m->edge_n)
		join_add(m, ((uint64_t)m->edge_cp[2 * ia + 1] << 32) | m->edge_cp[2 * ib]);
	/* a repeated pair: the later line wins, as HF's HashMap collect does */
	m->merges[j] = (bpe_merge){ key, rank, in };
	return 0;
}

/* ---- BPE model: encoding one word ---------------------------------------------------------- */

struct bpe_sym { int32_t id, prev, next; int32_t alive; };
struct bpe_heapent { uint32_t rank, pos; int32_t new_id, left, right; };

static inline int bpe_in_merge(const bpe_model *m, int32_t id)
{
	return (size_t)id < m->in_merge_n && m->in_merge[id];
}

static inline int heap_less(const struct bpe_heapent *a, const struct bpe_heapent *b)
{
	return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static void heap_push(struct bpe_heapent *h, size_t *n, struct bpe_heapent e)
{
	size_t i = (*n)++;
	while (i > 0) {
		size_t p = (i - 1) / 2;
		if (!heap_less(&e, &h[p]))
			break;
		h[i] = h[p];
		i = p;
	}
	h[i] = e;
}

static struct bpe_heapent heap_pop(struct bpe_heapent *h, size_t *n)
{
	struct bpe_heapent top = h[0], last = h[--*n];
	size_t i = 0, sz = *n;
	for (;;) {
		size_t l = 2 * i + 1;
		if (l >= sz)
			break;
		size_t c = (l + 1 < sz && heap_less(&h[l + 1], &h[l])) ? l + 1 : l;
		if (!heap_less(&h[c], &last))
			break;
		h[i] = h[c];
		i = c;
	}
	if (sz)
		h[i] = last;
	return top;
}

/* Look up one initial symbol: (prefix if !first) + c + (suffix if last). */
static int32_t sym_lookup(const bpe_model *m, bpe_scratch *s, const char *c, size_t cl, int first, int last)
{
	int pre = !first && m->prefix, suf = last && m->suffix;
	if (!pre && !suf)
		return strmap_get(&m->vocab, c, cl);
	s->tmp.n = 0;
	if (pre)
		sbuf_add(&s->tmp, m->prefix, m->prefix_len);
	sbuf_add(&s->tmp, c, cl);
	if (suf)
		sbuf_add(&s->tmp, m->suffix, m->suffix_len);
	return strmap_get(&m->vocab, s->tmp.s, s->tmp.n);
}

/* Merge symbols [rs, re) in place; links run within the stretch only. */
static void merge_run(const bpe_model *m, bpe_scratch *s, struct bpe_sym *sym, size_t rs, size_t re)
{
	for (size_t k = rs; k < re; k++) {
		sym[k].prev = k > rs ? (int32_t)k - 1 : -1;
		sym[k].next = k + 1 < re ? (int32_t)k + 1 : -1;
	}
	struct bpe_heapent *heap = s->heap;
	size_t nh = 0;
	for (size_t k = rs; k + 1 < re; k++) {
		const bpe_merge *mg = merge_find(m, sym[k].id, sym[k + 1].id);
		if (mg)
			heap_push(heap, &nh, (struct bpe_heapent){ mg->rank, (uint32_t)k, mg->new_id, sym[k].id, sym[k + 1].id });
	}
	while (nh) {
		struct bpe_heapent top = heap_pop(heap, &nh);
		struct bpe_sym *cur = &sym[top.pos];
		if (!cur->alive || cur->next < 0)
			continue;
		struct bpe_sym *right = &sym[cur->next];
		/* stale unless the pair is still the one pushed (symbols only grow,
		 * so the same ids mean the same merge, as HF's new_id check does) */
		if (cur->id != top.left || right->id != top.right)
			continue;
		cur->id = top.new_id;
		right->alive = 0;
		cur->next = right->next;
		if (right->next >= 0)
			sym[right->next].prev = (int32_t)top.pos;
		const bpe_merge *mg;
		if (cur->prev >= 0) {
			mg = merge_find(m, sym[cur->prev].id, cur->id);
			if (mg)
				heap_push(heap, &nh, (struct bpe_heapent){ mg->rank, (uint32_t)cur->prev, mg->new_id,
				                                           sym[cur->prev].id, cur->id });
		}
		if (cur->next >= 0) {
			mg = merge_find(m, cur->id, sym[cur->next].id);
			if (mg)
				heap_push(heap, &nh, (struct bpe_heapent){ mg->rank, top.pos, mg->new_id, cur->id,
				                                           sym[cur->next].id });
		}
	}
}

/* Merge the run sym[0, rl) and append its ids. Runs repeat, so they are cached. */
static void run_out(const bpe_model *m, bpe_scratch *s, size_t rl, ivec *out)
{
	struct bpe_sym *sym = s->sym;
	ivec_grow(out, rl);
	if (rl == 1) {
		out->v[out->n++] = sym[0].id;
		return;
	}
	uint64_t h = 0;
	struct bpe_centry *ce = NULL;
	if (rl <= RUN_CACHE_MAX) {
		int32_t key[RUN_CACHE_MAX];
		for (size_t k = 0; k < rl; k++)
			key[k] = sym[k].id;
		h = hash_bytes(key, rl * sizeof *key);
		if (!s->ctab) {
			s->ctab = lora_xcalloc(RUN_CACHE_SLOTS, sizeof *s->ctab);
			if (!s->cgen)
				s->cgen = 1;
		}
		size_t j = h & (RUN_CACHE_SLOTS - 1);
		for (;;) {
			ce = &s->ctab[j];
			if (ce->gen != s->cgen)
				break;
			if (ce->h == h && ce->klen == rl && !memcmp(s->ckeys.v + ce->koff, key, rl * sizeof *key))
				break;
			j = (j + 1) & (RUN_CACHE_SLOTS - 1);
		}
		if (ce->gen == s->cgen) {
			memcpy(out->v + out->n, s->cvals.v + ce->ooff, ce->olen * sizeof(int32_t));
			out->n += ce->olen;
			return;
		}
		if (s->cused * 2 >= RUN_CACHE_SLOTS || s->ckeys.n > (16u << 20)) {
			ce = NULL;     /* full: clear after this run */
		} else {
			ce->h = h;
			ce->gen = s->cgen;
			ce->koff = (uint32_t)s->ckeys.n;
			ce->klen = (uint32_t)rl;
			ivec_grow(&s->ckeys, rl);
			memcpy(s->ckeys.v + s->ckeys.n, key, rl * sizeof *key);
			s->ckeys.n += rl;
			s->cused++;
		}
	}
	size_t o0 = out->n;
	merge_run(m, s, sym, 0, rl);
	for (int32_t k = 0; k >= 0; k = sym[k].next)
		out->v[out->n++] = sym[k].id;
	if (ce) {
		ce->ooff = (uint32_t)s->cvals.n;
		ce->olen = (uint32_t)(out->n - o0);
		ivec_grow(&s->cvals, ce->olen);
		memcpy(s->cvals.v + s->cvals.n, out->v + o0, ce->olen * sizeof(int32_t));
		s->cvals.n += ce->olen;
	} else if (rl <= RUN_CACHE_MAX) {
		bpe_scratch_clear(s);
	}
}

/* Append one initial symbol to the run in s->sym[0, *ns). The merge loop
 * (word.rs merge_all) runs separately on the stretches that no merge can
 * cross: between two symbols where the last character of the left one and
 * the first of the right one never meet in a merge (a letter before
 * SentencePiece's '\u2581', say), and around symbols in no merge at all.
 * Merges never cross such a boundary, and the two sides do not interact, so
 * the result is that of one loop over the whole word. So when id cannot
 * join the run, the run is merged and written out first, and the symbols
 * held are one run's, however long the word. */
static void sym_push(const bpe_model *m, bpe_scratch *s, size_t *ns, int32_t id, ivec *out)
{
	if (*ns) {
		int32_t last = s->sym[*ns - 1].id;
		if (!(bpe_in_merge(m, last) && bpe_in_merge(m, id) && can_join(m, last, id))) {
			run_out(m, s, *ns, out);
			*ns = 0;
		}
	}
	if (*ns == s->symcap) {
		s->symcap = s->symcap ? 2 * s->symcap : 256;
		s->sym = lora_xrealloc(s->sym, s->symcap * sizeof *s->sym);
		free(s->heap);
		/* a run of n symbols pushes n - 1 pairs, then at most two per merge */
		s->heap = lora_xmalloc(3 * s->symcap * sizeof *s->heap);
	}
	s->sym[(*ns)++] = (struct bpe_sym){ id, 0, 0, 1 };
}

int bpe_word(const bpe_model *m, bpe_scratch *s, const char *w, size_t len, int mapped, ivec *out)
{
	if (len == 0)
		return 0;
	/* The word as the vocabulary spells it. */
	const char *ws = w;
	size_t wl = len;
	if (mapped) {
		s->ws.n = 0;
		sbuf_grow(&s->ws, 2 * len);
		for (size_t i = 0; i < len; i++) {
			unsigned char b = (unsigned char)w[i];
			memcpy(s->ws.s + s->ws.n, bytemap_str[b], bytemap_len[b]);
			s->ws.n += bytemap_len[b];
		}
		ws = s->ws.s;
		wl = s->ws.n;
	}
	if (m->specials.n) {
		int32_t id = strmap_get(&m->specials, ws, wl);
		if (id >= 0) {
			ivec_push(out, id);
			return 0;
		}
	}
	if (m->ignore_merges) {
		int32_t id = strmap_get(&m->vocab, ws, wl);
		if (id >= 0) {
			ivec_push(out, id);
			return 0;
		}
	}

	/* Initial symbols, one per character (model.rs merge_word). */
	size_t ns = 0;
	int32_t unk_id = -1;
	int have_unk = 0;
	const unsigned char *u = (const unsigned char *)ws;
	size_t i = 0, r = 0;   /* r: raw byte index when mapped */
	while (i < wl) {
		size_t cl;
		int32_t id;
		int first = i == 0;
		if (mapped) {
			/* the i-th mapped char stands for one raw byte */
			cl = (u[i] < 0x80) ? 1 : (u[i] < 0xE0 ? 2 : 3);
		} else {
			cl = (u[i] < 0x80) ? 1 : (u[i] < 0xE0 ? 2 : (u[i] < 0xF0 ? 3 : 4));
		}
		int last = i + cl >= wl;
		if ((!m->prefix || first) && (!m->suffix || !last) && (mapped || cl == 1))
			id = mapped ? m->fast_map[(unsigned char)w[r]] : m->fast_raw[u[i]];
		else
			id = sym_lookup(m, s, ws + i, cl, first, last);
		r++;
		if (id >= 0) {
			if (have_unk) {
				sym_push(m, s, &ns, unk_id, out);
				have_unk = 0;
			}
			sym_push(m, s, &ns, id, out);
			i += cl;
			continue;
		}
		if (m->byte_fallback) {
			/* one <0xXX> per byte of the full symbol string (prefix and
			 * suffix included), if all exist */
			const char *sp = ws + i;
			size_t sl = cl;
			int pre = !first && m->prefix, suf = last && m->suffix;
			if (pre || suf) {
				s->tmp.n = 0;
				if (pre)
					sbuf_add(&s->tmp, m->prefix, m->prefix_len);
				sbuf_add(&s->tmp, ws + i, cl);
				if (suf)
					sbuf_add(&s->tmp, m->suffix, m->suffix_len);
				sp = s->tmp.s;
				sl = s->tmp.n;
			}
			int ok = 1;
			for (size_t k = 0; k < sl; k++)
				if (m->byte_tok[(unsigned char)sp[k]] < 0)
					ok = 0;
			if (ok) {
				/* a pending unk stays pending across byte-fallback
				 * chars, as in HF (it lands after the bytes) */
				for (size_t k = 0; k < sl; k++)
					sym_push(m, s, &ns, m->byte_tok[(unsigned char)sp[k]], out);
				i += cl;
				continue;
			}
		}
		if (m->unk_token) {
			if (!have_unk) {
				unk_id = strmap_get(&m->vocab, m->unk_token, strlen(m->unk_token));
				if (unk_id < 0)
					return lora_err("unk token '%s' is not in the vocabulary", m->unk_token);
				have_unk = 1;
			} else if (!m->fuse_unk) {
				sym_push(m, s, &ns, unk_id, out);
			}
		}
		i += cl;
	}
	if (have_unk)
		sym_push(m, s, &ns, unk_id, out);
	if (ns)
		run_out(m, s, ns, out);
	return 0;
}
