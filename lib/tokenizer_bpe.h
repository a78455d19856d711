/* tokenizer_bpe.h: the BPE model, hash maps and UTF-8 helpers behind
 * tokenizer.h (internal: only lib/tokenizer*.c include it).
 *
 * A bpe_model maps a "word" (one pre-tokenized piece) to ids exactly as HF
 * tokenizers' models/bpe does: ignore_merges, continuing_subword_prefix,
 * end_of_word_suffix, byte fallback, unk fusing, and the merge loop driven by
 * a heap of (rank, position) pairs.
 *
 *     bpe_model m; bpe_init(&m);
 *     bpe_vocab_add(&m, "a", 1, 0); ...          // every vocab entry
 *     bpe_merge_add(&m, "a", 1, "b", 1, rank);   // -1 if a token is missing
 *     bpe_word(&m, scratch, word, len, mapped, out_ids);
 *     bpe_free(&m);
 *
 * Ownership: the model copies every string into its arena. bpe_scratch is
 * per-thread working memory (tokenizer.c keeps one per thread). Failure: the
 * add functions return -1 + lora_err; bpe_word returns -1 + lora_err only when
 * unk_token is needed but missing from the vocabulary (as HF does).
 */
#ifndef LORA_TOKENIZER_BPE_H
#define LORA_TOKENIZER_BPE_H
#include <stddef.h>
#include <stdint.h>

/* ---- growable arrays ------------------------------------------------------- */

typedef struct { int32_t *v; size_t n, cap; } ivec;
typedef struct { char *s; size_t n, cap; } sbuf;

void ivec_push(ivec *a, int32_t x);
void ivec_grow(ivec *a, size_t extra);
void sbuf_add(sbuf *b, const void *p, size_t n);
void sbuf_grow(sbuf *b, size_t extra);
static inline void sbuf_addc(sbuf *b, char c) { sbuf_grow(b, 1); b->s[b->n++] = c; }

/* ---- UTF-8 ------------------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at s (n bytes left), 0 if invalid. */
size_t utf8_valid_len(const unsigned char *s, size_t n);
/* Decode the (valid) char at s; *cl gets its length. */
uint32_t utf8_get(const unsigned char *s, size_t *cl);
/* Encode cp into out (4 bytes room); returns the length. */
int utf8_put(uint32_t cp, char *out);
/* Append s with every ill-formed subsequence replaced by U+FFFD, maximal
 * subparts as Rust's from_utf8_lossy and Python's errors='replace' do. */
void utf8_lossy(sbuf *out, const char *s, size_t n);
/* Bytes before the first ill-formed sequence (n if there is none). */
size_t utf8_valid_prefix(const char *s, size_t n);
/* 1 if the n bytes are valid UTF-8. */
int utf8_is_valid(const char *s, size_t n);
/* 1 if the n bytes (n >= 1) are the start of one UTF-8 character, short of its end. */
int utf8_is_cut(const char *s, size_t n);

/* GPT-2's byte <-> unicode table (FORMATS.md 6.0). */
extern char bytemap_str[256][3];       /* UTF-8 of the char for byte b */
extern uint8_t bytemap_len[256];
void bytemap_init(void);
/* Byte of code point cp in the table, or -1. */
int bytemap_byte(uint32_t cp);

/* ---- string -> id map ----------------------------------------------------------- */

typedef struct {
	const char **key;      /* (n) strings in the arena */
	uint32_t *klen;        /* (n) */
	int32_t *val;          /* (n) */
	uint64_t *khash;       /* (n) */
	size_t n, cap;
	uint32_t *slot;        /* (mask+1) index+1, 0 = empty */
	size_t mask;
} strmap;

uint64_t hash_bytes(const void *p, size_t n);
/* Insert or overwrite (later wins, as a Rust HashMap collect does). k is
 * not copied: it must live as long as the map (put it in an arena). */
void strmap_set(strmap *m, const char *k, size_t klen, int32_t v);
/* -1 if absent. */
int32_t strmap_get(const strmap *m, const char *k, size_t klen);
void strmap_free(strmap *m);

/* ---- arena -------------------------------------------------------------------- */

typedef struct arena_blk arena_blk;
typedef struct { arena_blk *head; } arena;
char *arena_strndup(arena *a, const char *s, size_t n);   /* NUL-terminated */
void arena_free(arena *a);

/* ---- BPE model ---------------------------------------------------------------- */

typedef struct { uint64_t key; uint32_t rank; int32_t new_id; } bpe_merge;

typedef struct {
	strmap vocab;          /* token string -> id */
	arena mem;
	bpe_merge *merges;     /* (mask+1) open addressing on (a << 32 | b) */
	size_t nmerges, mmask;
	uint8_t *in_merge;     /* (in_merge_n) 1 if the id is in some merge pair */
	size_t in_merge_n;
	uint32_t *edge_cp;     /* (edge_n, 2) first and last code point of each id's string */
	size_t edge_n;
	uint64_t *joins;       /* (jmask+1) set of last_cp(a) << 32 | first_cp(b) over the merges */
	size_t jmask, njoins;
	char *unk_token;       /* NULL if none */
	char *prefix, *suffix; /* continuing_subword_prefix, end_of_word_suffix; NULL if none */
	size_t prefix_len, suffix_len;
	int byte_fallback, fuse_unk, ignore_merges;
	int32_t byte_tok[256]; /* id of "<0xXX>", -1 if absent */
	int32_t fast_raw[128]; /* id of the 1-char ASCII token, -1 */
	int32_t fast_map[256]; /* id of bytemap char of b, -1 */
	/* "Word specials": whole words that map straight to an id (CLIP's
	 * <start_of_text>, as open_clip's bpe cache does). */
	strmap specials;
} bpe_model;

typedef struct {
	struct bpe_sym *sym; size_t symcap;
	struct bpe_heapent *heap;        /* (3 * symcap) */
	sbuf ws, tmp;
	/* cache: run of initial ids -> merged ids */
	struct bpe_centry *ctab;
	uint32_t cgen;
	size_t cused;
	ivec ckeys, cvals;
} bpe_scratch;

/* Forget the cached runs (call when the scratch moves to another model). */
void bpe_scratch_clear(bpe_scratch *s);

void bpe_init(bpe_model *m);
void bpe_free(bpe_model *m);
void bpe_scratch_free(bpe_scratch *s);
/* Call once all vocab and options are set, before any merge_add. */
void bpe_finish_vocab(bpe_model *m);
void bpe_merges_reserve(bpe_model *m, size_t n);
/* Add merge (a, b) with rank. -1 + lora_err if a, b or a+b is not in vocab. */
int bpe_merge_add(bpe_model *m, const char *a, size_t alen, const char *b, size_t blen, uint32_t rank);
/* Append the ids of one word. mapped: the bytes are raw and every byte stands
 * for its bytemap char (the ByteLevel pre-tokenizer). 0 or -1. */
int bpe_word(const bpe_model *m, bpe_scratch *s, const char *w, size_t len, int mapped, ivec *out);

#endif
