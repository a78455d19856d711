/* config.h: lora-train's configuration: YAML file + --key value overrides.
 *
 * Every key of DESIGN.md §3 (plus logging_steps) lives in one table in
 * config.c with its type, range and default. A config file is YAML (JSON is
 * valid YAML): a top-level mapping of key: value, parsed with libyaml.
 * Command-line overrides use the same names and the same checks. An unknown
 * key is an error that names the nearest known key (edit distance).
 *
 *     lora_config c;
 *     lora_config_init(&c);                          // every default
 *     if (lora_config_load(&c, "my.yaml") < 0 ||     // file over defaults
 *         lora_config_set(&c, "lora_rank", "16") < 0 || // --lora_rank 16
 *         lora_config_resolve(&c) < 0)               // required keys, derived defaults
 *             lora_die("%s", lora_errmsg());
 *     lora_config_write(&c, "out/config.yaml");      // every key, reloadable
 *     lora_config_free(&c);
 *
 * Ownership: the struct owns its strings (malloc'd); lora_config_free frees
 * them. lora_config_to_yaml returns a malloc'd string (free()).
 *
 * Failure: load/set/resolve/write return -1 and set lora_errmsg() to one line
 * naming the file, line and key: "'a.yaml': line 3: unknown key 'lora_rnak'
 * (did you mean 'lora_rank'?)". On failure the struct stays valid (some keys
 * may already hold new values) and must still be freed.
 *
 * Conventions for values: a YAML null (`~`, `null`, empty) sets a key back to
 * "unset" where the key has no fixed default (output_name, tokenizer, ...),
 * else to its default. Numbers may be written plain or quoted; YAML 1.1 bools
 * (true/false/yes/no/on/off) are accepted for booleans. target_modules is a
 * YAML list, or on the command line "q_proj,v_proj" (or "all-linear").
 */
#ifndef LORA_CONFIG_H
#define LORA_CONFIG_H
#include <stddef.h>

typedef struct {
	int n;
	char **v;           /* (n) owned strings */
} lora_strlist;

typedef struct {
	char *task_type;                /* "text-generation" | "image" | NULL: from base_model */
	char *base_model;               /* required */
	char *train_data_dir;           /* required */
	char *metadata_path;            /* NULL: train_data_dir/metadata.* */
	char *tokenizer;                /* NULL: from base_model */
	long lora_rank;                 /* 8 */
	double lora_alpha;              /* 16 */
	double lora_dropout;            /* 0 */
	lora_strlist target_modules;    /* n == 0: unset; text default [q_proj, v_proj] */
	long batch_size;                /* 4 */
	long gradient_accumulation_steps; /* 1 */
	long epochs;                    /* 10 */
	long max_steps;                 /* 0: from epochs */
	double learning_rate;           /* 2e-4 */
	char *optimizer;                /* "AdamW" */
	char *scheduler;                /* "cosine" | "constant" | "linear" */
	long warmup_steps;              /* 0 */
	double weight_decay;            /* 0.01 */
	double adam_beta1, adam_beta2, adam_epsilon; /* 0.9, 0.999, 1e-8 */
	double max_grad_norm;           /* 1.0; 0: no clipping */
	int use_rslora;                 /* false */
	int gradient_checkpointing;     /* false */
	double val_split;               /* 0 */
	long eval_steps;                /* 100 */
	char *train_mode;               /* "lora" | "full" */
	long resolution;                /* 512 */
	int enable_bucket;              /* false */
	long max_seq_length;            /* 512 */
	long seed;                      /* 42 */
	char *output_dir;               /* required */
	char *output_name;              /* NULL: last component of output_dir */
	long save_steps;                /* 100; 0: only at the end */
	long save_total_limit;          /* 3; 0: keep every checkpoint */
	char *logging_dir;              /* NULL: output_dir/logs */
	long logging_steps;             /* 10: one log line / CSV row every N steps */
	char *resume;                   /* NULL | "auto" | checkpoint folder */
	char *init_lora;                /* NULL | PEFT adapter folder or file */
	char *device;                   /* "auto" | "cpu" | "cuda" | "cuda:N" */
	char *precision;                /* NULL (cpu: fp32, cuda: bf16) | "fp32" | "bf16" | "fp16" */
} lora_config;

/* Fill every key with its default. Free with lora_config_free. */
void lora_config_init(lora_config *c);
void lora_config_free(lora_config *c);          /* NULL ok; c is reset to zeros */

/* Read a YAML file and set every key it names (over what c already holds). */
int lora_config_load(lora_config *c, const char *path);
/* The same from memory; name is used in messages. For tests and fuzzing. */
int lora_config_load_string(lora_config *c, const char *buf, size_t len, const char *name);
/* Set one key from its text form, with the file's checks (--key value).
 * val NULL or "null" resets the key. */
int lora_config_set(lora_config *c, const char *key, const char *val);

/* Check that required keys are set and cross-key rules hold, and fill
 * derived defaults (output_name, logging_dir, target_modules for text).
 * task_type and tokenizer stay for the caller, who knows the base model. */
int lora_config_resolve(lora_config *c);

/* The whole config as YAML, one "key: value" line per key in table order,
 * unset keys as null. Reading it back gives the same config. free(). */
char *lora_config_to_yaml(const lora_config *c);
/* One key's value in the same YAML text form ("16.0", "[q_proj, v_proj]",
 * "null"). malloc'd (free()); NULL + lora_err for an unknown key. */
char *lora_config_get(const lora_config *c, const char *key);
/* Write lora_config_to_yaml atomically to path. */
int lora_config_write(const lora_config *c, const char *path);

/* Key table access (for getopt long options and the man page test). */
int lora_config_nkeys(void);
const char *lora_config_key(int i);             /* NULL past the end */
/* The known key nearest to s by edit distance. */
const char *lora_config_nearest(const char *s);

#endif
