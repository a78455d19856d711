/* tokenizer_bpe.c: see tokenizer_bpe.h. The merge loop mirrors HF tokenizers'
 * models/bpe/word.rs merge_all; the per-character setup mirrors model.rs
 * merge_word. */
#include "tokenizer_bpe.h"
#include "util.h"

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

size_t utf8_valid_len(const unsigned char *s, size_t n)
{
	unsigned c = s[0];
	if (c < 0x80)
		return 1;
	size_t need;
	unsigned lo = 0x80, hi = 0xBF;
	if (c >= 0xC2 && c <= 0xDF) need = 1;
	else if (c == 0xE0) { need = 2; lo = 0xA0; }
	else if (c == 0xED) { need = 2; hi = 0x9F; }
	else if (c >= 0xE1 && c <= 0xEF) need = 2;
	else if (c == 0xF0) { need = 3; lo = 0x90; }
	else if (c >= 0xF1 && c <= 0xF3) need = 3;
	else if (c == 0xF4) { need = 3; hi = 0x8F; }
	else return 0;
	if (n < need + 1)
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
	unsigned c = s[0];
	size_t need;
	unsigned lo = 0x80, hi = 0xBF;
	if (c >= 0xC2 && c <= 0xDF) need = 1;
	else if (c == 0xE0) { need = 2; lo = 0xA0; }
	else if (c == 0xED) { need = 2; hi = 0x9F; }
	else if (c >= 0xE1 && c <= 0xEF) need = 2;
	else if (c == 0xF0) { need = 3; lo = 0x90; }
	else if (c >= 0xF1 && c <= 0xF3) need = 3;
	else if (c == 0xF4) { need = 3; hi = 0x8F; }
	else return 1;
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

int utf8_is_valid(const char *s, size_t n)
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
			return 0;
		i += l;
	}
	return 1;
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

void bytemap_init(void)
{
	/* Idempotent and race-free in effect: every writer stores the same values. */
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
	arena_free(&m->mem);
	memset(m, 0, sizeof *m);
}

void bpe_scratch_free(bpe_scratch *s)
{
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
	/* a repeated pair: the later line wins, as HF's HashMap collect does */
	m->merges[j] = (bpe_merge){ key, rank, in };
	return 0;
}

/* ---- BPE model: encoding one word ---------------------------------------------------------- */

struct bpe_sym { int32_t id, prev, next; int32_t alive; };
struct bpe_heapent { uint32_t rank, pos; int32_t new_id; };

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
	if (s->symcap < wl + 1) {
		free(s->sym);
		free(s->heap);
		s->symcap = wl + 64;
		s->sym = lora_xmalloc(s->symcap * sizeof *s->sym);
		s->heap = lora_xmalloc(s->symcap * 3 * sizeof *s->heap);
		s->heapcap = s->symcap * 3;
	}
	struct bpe_sym *sym = s->sym;
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
				sym[ns++] = (struct bpe_sym){ unk_id, 0, 0, 1 };
				have_unk = 0;
			}
			sym[ns++] = (struct bpe_sym){ id, 0, 0, 1 };
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
				if (ns + sl + 2 > s->symcap) {
					s->symcap = (ns + sl + 2) * 2;
					s->sym = sym = lora_xrealloc(s->sym, s->symcap * sizeof *sym);
					free(s->heap);
					s->heap = lora_xmalloc(s->symcap * 3 * sizeof *s->heap);
					s->heapcap = s->symcap * 3;
				}
				if (have_unk) {
					/* HF keeps a pending unk across byte-fallback chars */
				}
				for (size_t k = 0; k < sl; k++)
					sym[ns++] = (struct bpe_sym){ m->byte_tok[(unsigned char)sp[k]], 0, 0, 1 };
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
				sym[ns++] = (struct bpe_sym){ unk_id, 0, 0, 1 };
			}
		}
		i += cl;
	}
	if (have_unk)
		sym[ns++] = (struct bpe_sym){ unk_id, 0, 0, 1 };
	if (ns == 0)
		return 0;
	for (size_t k = 0; k < ns; k++) {
		sym[k].prev = (int32_t)k - 1;
		sym[k].next = k + 1 < ns ? (int32_t)k + 1 : -1;
	}

	/* The merge loop (word.rs merge_all). */
	struct bpe_heapent *heap = s->heap;
	size_t nh = 0;
	if (m->nmerges) {
		for (size_t k = 0; k + 1 < ns; k++) {
			const bpe_merge *mg = merge_find(m, sym[k].id, sym[k + 1].id);
			if (mg)
				heap_push(heap, &nh, (struct bpe_heapent){ mg->rank, (uint32_t)k, mg->new_id });
		}
	}
	while (nh) {
		struct bpe_heapent top = heap_pop(heap, &nh);
		struct bpe_sym *cur = &sym[top.pos];
		if (!cur->alive || cur->next < 0)
			continue;
		struct bpe_sym *right = &sym[cur->next];
		const bpe_merge *mg = merge_find(m, cur->id, right->id);
		if (!mg || mg->new_id != top.new_id)
			continue;
		cur->id = top.new_id;
		right->alive = 0;
		cur->next = right->next;
		if (right->next >= 0)
			sym[right->next].prev = (int32_t)top.pos;
		if (cur->prev >= 0) {
			mg = merge_find(m, sym[cur->prev].id, cur->id);
			if (mg)
				heap_push(heap, &nh, (struct bpe_heapent){ mg->rank, (uint32_t)cur->prev, mg->new_id });
		}
		if (cur->next >= 0) {
			mg = merge_find(m, cur->id, sym[cur->next].id);
			if (mg)
				heap_push(heap, &nh, (struct bpe_heapent){ mg->rank, top.pos, mg->new_id });
		}
	}
	ivec_grow(out, ns);
	for (int32_t k = 0; k >= 0; k = sym[k].next)
		out->v[out->n++] = sym[k].id;
	return 0;
}
