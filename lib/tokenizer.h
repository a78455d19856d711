/* tokenizer.h: exact BPE tokenizers (HF tokenizer.json, GPT-2, CLIP).
 *
 * Loads a Hugging Face tokenizer.json (BPE model with its normalizers,
 * pre-tokenizers, post-processor and decoders), GPT-2's encoder.json +
 * vocab.bpe pair, or CLIP's bpe_simple_vocab_16e6.txt(.gz), and encodes /
 * decodes exactly as the reference libraries do (HF `tokenizers`, open_clip).
 *
 *     lora_tokenizer *t = lora_tokenizer_load("llama3/tokenizer.json");
 *     if (!t) lora_die("%s", lora_errmsg());
 *     int32_t *ids; size_t n;
 *     if (lora_tokenizer_encode(t, "Hello world", 11, 1, &ids, &n) < 0) ...
 *     char *s = lora_tokenizer_decode(t, ids, n, 1);   // "Hello world"
 *     free(ids); free(s); lora_tokenizer_free(t);
 *
 * Ownership: the tokenizer owns all its strings; id_to_token returns a
 * pointer into it (valid until free). encode/decode results are malloc'd and
 * freed by the caller with free(). A loaded tokenizer is read-only: encode
 * and decode may run on many threads at once. Each thread keeps a word cache
 * for the last tokenizer it used (freed at thread exit, or by
 * lora_tokenizer_free on that thread).
 *
 * Failure: load returns NULL and sets lora_errmsg() ("'f.json': unsupported
 * normalizer 'Precompiled'"); an unsupported component is always an error,
 * never a silently different tokenization. encode returns -1 only when the
 * model needs its unk_token and the vocabulary lacks it (HF fails there too);
 * invalid UTF-8 is not an error: it is read as Python's
 * bytes.decode("utf-8", "replace") would (see lora-tokenize(1)).
 */
#ifndef LORA_TOKENIZER_H
#define LORA_TOKENIZER_H
#include <stddef.h>
#include <stdint.h>

typedef struct lora_tokenizer lora_tokenizer;

/* Load a tokenizer.json, a GPT-2 encoder.json or vocab.bpe (the other file
 * of the pair is found beside it), or CLIP's bpe_simple_vocab_16e6.txt(.gz).
 * A folder means folder/tokenizer.json. NULL + lora_errmsg on error.
 * Free with lora_tokenizer_free. */
lora_tokenizer *lora_tokenizer_load(const char *path);
/* Load a tokenizer.json held in memory; name is used in messages (and no
 * tokenizer_config.json is looked for). */
lora_tokenizer *lora_tokenizer_load_json(const char *data, size_t len, const char *name);
void lora_tokenizer_free(lora_tokenizer *t);            /* NULL ok */

/* Encode len bytes of UTF-8 text. add_special: apply the post-processor
 * (BOS/EOS templates) as HF's encode(add_special_tokens=True) does.
 * *ids is malloc'd (free()), *n its length. 0 or -1. Thread-safe. Memory:
 * the ids and at most a few copies of the text (normalized, rewritten by a
 * pre-tokenizer), never a list of all its words: a big document can be one
 * call. */
int lora_tokenizer_encode(const lora_tokenizer *t, const char *text, size_t len,
                          int add_special, int32_t **ids, size_t *n);
/* A fixed-length row for a text encoder (CLIP's 77): BOS + ids + EOS (those
 * the tokenizer has), cut to n keeping EOS last as open_clip does, padded
 * with the pad id (EOS when there is none, 0 when neither). out has n slots.
 * Returns the count of ids before padding (<= n), or -1 as encode. */
int lora_tokenizer_encode_fixed(const lora_tokenizer *t, const char *text, size_t len,
                                size_t n, int32_t *out);
/* Decode ids to UTF-8 as HF decode(skip_special_tokens=skip_special).
 * malloc'd, NUL-terminated (free()). Unknown ids are skipped. */
char *lora_tokenizer_decode(const lora_tokenizer *t, const int32_t *ids, size_t n,
                            int skip_special);
/* The same, with *len set to the byte length (the text may hold NUL bytes). */
char *lora_tokenizer_decode_n(const lora_tokenizer *t, const int32_t *ids, size_t n,
                              int skip_special, size_t *len);

/* Highest id + 1, added tokens included (the rows an embedding needs; equal
 * to HF's get_vocab_size(with_added_tokens=True) for gap-free vocabularies). */
int lora_tokenizer_vocab_size(const lora_tokenizer *t);
/* BOS/EOS: the post-processor template's first/last special token, else
 * bos_token/eos_token of a tokenizer_config.json beside the file; GPT-2:
 * <|endoftext|> for both; CLIP: 49406/49407. Pad: pad_token of the config
 * (CLIP: 49407, as SD 1.5's HF tokenizer). */
int lora_tokenizer_bos_id(const lora_tokenizer *t);       /* -1 if none */
int lora_tokenizer_eos_id(const lora_tokenizer *t);       /* -1 if none */
int lora_tokenizer_pad_id(const lora_tokenizer *t);       /* -1 if none */
/* The model's context length when the format fixes one (77 for CLIP), else 0. */
int lora_tokenizer_context_len(const lora_tokenizer *t);
/* The token's string as stored in the vocabulary (e.g. "Ġworld", "▁the");
 * NULL if id is out of range. Owned by t. */
const char *lora_tokenizer_id_to_token(const lora_tokenizer *t, int id);
int lora_tokenizer_token_to_id(const lora_tokenizer *t, const char *tok); /* -1 */

/* Bytes of s before its first ill-formed UTF-8 sequence, n when there is
 * none: where Python's bytes.decode("utf-8") would stop. */
size_t lora_utf8_valid_prefix(const char *s, size_t n);
/* 1 if s[0, n) (n >= 1) is the start of one UTF-8 character and no more: a
 * character cut off where the text ends (Python: "unexpected end of data"). */
int lora_utf8_cut(const char *s, size_t n);

#endif
