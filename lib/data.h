/* data.h: text datasets for lora-train: load, split, shuffle, batch.
 *
 * A dataset is every .txt, .jsonl and .ids file directly inside a folder,
 * read in name order (byte order of the file names), turned into examples:
 * token sequences with a per-token "is a target" flag.
 *
 *   .txt    each file is one document; documents are tokenized (no special
 *           tokens), joined with EOS after each, and packed into chunks of
 *           max_seq_length tokens (the last chunk may be shorter). Loss on
 *           every token.
 *   .jsonl  one JSON object per line (blank lines skipped), one example each:
 *           {"text": T}                       BOS T EOS, loss on all
 *           {"prompt": P, "completion": C}    BOS P C EOS, loss on C EOS
 *           {"instruction": I, "input": X, "output": O}   (input optional)
 *                                             BOS alpaca(I, X) O EOS, loss on O EOS
 *           P, C, O are tokenized separately and concatenated (as TRL does).
 *           BOS/EOS: the tokenizer's, else the model's, else none.
 *   .ids    one example per line as lora-tokenize writes it, used as given
 *           (no BOS/EOS added): "ids" (decimal ids separated by spaces or
 *           commas), loss on all; or "prompt_ids<TAB>answer_ids", loss on
 *           the answer only.
 * Text (.txt, .jsonl) is UTF-8, read strictly: a UTF-16 byte-order mark, a
 * byte that is not UTF-8 or a NUL is an error naming file, line and byte;
 * \r\n and a lone \r are read as \n (Python's universal newlines).
 * A UTF-8 byte-order mark at the start of any of the three is skipped.
 * An example longer than max_seq_length is cut to it (counted in
 * ntruncated). Examples of fewer than 2 tokens, or with no target after the
 * first token, are dropped (counted in ndropped).
 *
 * The Alpaca prompt (Stanford Alpaca's template, the common convention):
 *   "Below is an instruction that describes a task, paired with an input that
 *   provides further context. Write a response that appropriately completes
 *   the request.\n\n### Instruction:\n{I}\n\n### Input:\n{X}\n\n### Response:\n"
 * and without an input (or an empty one):
 *   "Below is an instruction that describes a task. Write a response that
 *   appropriately completes the request.\n\n### Instruction:\n{I}\n\n### Response:\n"
 *
 * Randomness (documented so runs repeat): splitmix64 (state += 0x9E3779B97F4A7C15,
 * then the murmur3-style finaliser). Integers in [0, k) are the high 64 bits
 * of next() * k. val split: a Fisher-Yates shuffle of all example indices
 * with state seed ^ 0x5EED5EED5EED5EED; the first round(val_split * n)
 * (at least 1 when val_split > 0) are held out, both sets then kept in file
 * order. Epoch e's training order: a Fisher-Yates shuffle of the training
 * indices with state seed + 0xD1B54A32D192ED03 * (e + 1). So the order of
 * any epoch is a function of (seed, e) alone, which makes resume exact.
 *
 * Batches: B examples, right-padded to the longest of them (T <= max_seq_length);
 * ids (B, T) and targets (B, T) with targets[b][t] = ids of position t+1 when
 * that token is a target, else LORA_IGNORE_INDEX (-100); padding ids are
 * pad_id. This is HF's causal-LM shift done on the host.
 *
 *     lora_dataset *d = lora_dataset_load(&(lora_data_opts){ .dir = "data",
 *             .tok = tok, .max_seq_length = 512, .vocab_size = 32000,
 *             .val_split = 0.1, .seed = 42 });
 *     lora_dataset_order(d, 42, epoch, order);           // (d->ntrain)
 *     int T = lora_batch_make(d, order + i, B, ids, targets);
 *     lora_dataset_free(d);
 *
 * Threads: lora_nthreads() threads read and tokenize files side by side,
 * taking them in name order, while the calling thread joins their results
 * to the dataset in name order; so the dataset is the same for any number
 * of threads. A big .jsonl or .ids file is read in pieces, side by side
 * (its lines are examples of their own); one big .txt file is one thread's
 * work. What is read ahead of that join is bounded: read_ahead bytes of
 * text in all.
 *
 * Ownership: the dataset owns its examples; free with lora_dataset_free.
 * Failure: lora_dataset_load returns NULL with one line naming the file and
 * line (of the first bad file in name order): empty dataset, a .txt/.jsonl
 * without a tokenizer, text that is not UTF-8, bad JSON, an id outside the
 * model's vocabulary.
 */
#ifndef LORA_DATA_H
#define LORA_DATA_H
#include <stddef.h>
#include <stdint.h>
#include "tokenizer.h"   /* lora_tokenizer */

typedef struct {
	int32_t *ids;            /* (n) tokens */
	uint8_t *target;         /* (n) 1: a loss is taken on predicting this token */
	int n;
} lora_example;

typedef struct {
	const char *dir;         /* train_data_dir */
	const lora_tokenizer *tok;   /* NULL: only .ids files are allowed */
	int max_seq_length;
	int vocab_size;          /* the model's; ids must be below it (0: no check) */
	double val_split;
	uint64_t seed;
	/* The model's BOS/EOS (config.json bos_token_id/eos_token_id), used
	 * where the tokenizer reports none. Set to -1 when unknown (0 is a
	 * valid id). */
	int model_bos_id, model_eos_id;
	/* Bytes of text the reader threads may read ahead of the join, in all
	 * (0: 32 MiB per thread, at most 256 MiB; tests set it small to make
	 * the readers wait). */
	size_t read_ahead;
	/* A .jsonl or .ids file over this many bytes is read in pieces of this
	 * size (cut at line ends), side by side (0: 1 MiB). */
	size_t piece;
	/* Called (when set) on the calling thread as each file joins the
	 * dataset: bytes of the data files joined so far, and in all. */
	void (*progress)(void *arg, size_t done, size_t total);
	void *progress_arg;
} lora_data_opts;

typedef struct {
	int n;                   /* examples */
	lora_example *ex;        /* (n) in file order */
	int ntrain, nval;
	int *train;              /* (ntrain) indices into ex, ascending */
	int *val;                /* (nval) indices into ex, ascending */
	int32_t pad_id;          /* tokenizer pad, else EOS, else 0 */
	int max_len;             /* longest example */
	size_t ntokens;          /* sum of example lengths */
	size_t ntargets;         /* tokens with a loss (excluding position 0) */
	int nfiles[3];           /* .txt, .jsonl, .ids files read */
	int ntruncated, ndropped;
	int nskipped;            /* other entries of the folder (hidden ones aside):
	                          * other extensions, subfolders (not read) */
	char *skipped;           /* them in words: "'a.md'", "'a.md' and 2 others"
	                          * (the first by name; "'sub/'" for a folder) */
} lora_dataset;

lora_dataset *lora_dataset_load(const lora_data_opts *o);
void lora_dataset_free(lora_dataset *d);        /* NULL ok */

/* The training order of epoch `epoch` (0-based): a permutation of d->train
 * written to order (d->ntrain). */
void lora_dataset_order(const lora_dataset *d, uint64_t seed, int64_t epoch, int *order);

/* Fill ids and targets (B, T) for examples idx[0..B-1] (indices into d->ex),
 * T = the longest of them; rows are laid out with stride T. Returns T. The
 * buffers must hold B * max_seq_length values. *ntargets (may be NULL) gets
 * the number of non-ignored targets. */
int lora_batch_make(const lora_dataset *d, const int *idx, int B, int32_t *ids,
                    int32_t *targets, int *ntargets);

/* splitmix64, exposed for tests. */
uint64_t lora_splitmix64(uint64_t *state);

#endif
