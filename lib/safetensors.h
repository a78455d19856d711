/* safetensors.h: read and write .safetensors files (FORMATS.md §1).
 *
 * Reading maps the file read-only and validates everything the reference
 * reader validates; a sharded checkpoint (*.safetensors.index.json) opens as
 * one logical file whose tensors point into several mappings.
 *
 *     st_file *f = st_open("model.safetensors");      // or "...index.json"
 *     if (!f) die("%s", lora_errmsg());
 *     const st_tensor *t = st_find(f, "lm_head.weight");
 *     float *w = lora_xmalloc(t->numel * 4);
 *     st_tensor_to_f32(t, w);                          // any float dtype
 *     st_close(f);
 *
 * Writing streams: declare every tensor, then write their bytes in any order
 * and in any number of pieces; the file appears under its name only when
 * st_writer_close succeeds (temp file + rename). The layout is the
 * reference writer's: tensors sorted by dtype alignment (largest first), then
 * name; compact JSON with __metadata__ first; header padded with spaces to 8.
 *
 *     st_writer *w = st_writer_open("out.safetensors");
 *     st_writer_meta(w, "format", "pt");
 *     st_writer_add(w, "a", LORA_DTYPE_F32, 2, (int64_t[]){4, 8});
 *     st_writer_write(w, "a", 0, data, 4 * 8 * 4);
 *     if (st_writer_close(w) != 0) die("%s", lora_errmsg());
 *
 * Ownership: st_open's result and everything reachable from it (names, data
 * pointers) live until st_close. Errors: NULL / -1 and lora_errmsg() holds
 * one line that names the file.
 */
#ifndef LORA_SAFETENSORS_H
#define LORA_SAFETENSORS_H
#include <stddef.h>
#include <stdint.h>
#include "dtype.h"

#define ST_MAX_DIMS 16
#define ST_MAX_HEADER 100000000ULL   /* reference MAX_HEADER_SIZE */

typedef struct {
	const char *name;
	lora_dtype dtype;
	int ndim;                   /* 0 for a scalar */
	int64_t shape[ST_MAX_DIMS];
	int64_t numel;              /* product of shape (1 for a scalar) */
	size_t nbytes;
	const void *data;           /* in the read-only mapping; may be unaligned */
	int shard;                  /* index into st_file.shard_paths */
	uint64_t offset;            /* data_offsets[0] within its shard's buffer */
} st_tensor;

typedef struct {
	int ntensors;
	st_tensor *tensors;         /* (ntensors) in file order: by offset, shard by shard */
	int nmeta;
	const char **meta_keys;     /* (nmeta) __metadata__, in header order */
	const char **meta_vals;     /* (nmeta) */
	int nshards;                /* 1 for a single file */
	const char **shard_paths;   /* (nshards) */
	const char *path;           /* what was opened */
	uint64_t header_bytes;      /* N of the first shard (sum for sharded) */
	uint64_t file_bytes;        /* total of all shards */
	void *priv;
} st_file;

/* Open a .safetensors file or a *.safetensors.index.json. NULL on error. */
st_file *st_open(const char *path);
/* Validate and index an in-memory buffer (not copied; must outlive the
 * st_file). name is used in messages. For fuzzing and tests. */
st_file *st_open_buffer(const void *buf, size_t len, const char *name);
void st_close(st_file *f);                       /* NULL ok */

const st_tensor *st_find(const st_file *f, const char *name);   /* NULL if none */
const char *st_meta(const st_file *f, const char *key);         /* NULL if none */

/* Convert a tensor of F32/F16/BF16/F64/F8 (or integer) type into f32. 0/-1. */
int st_tensor_to_f32(const st_tensor *t, float *out);

/* ---- writer ------------------------------------------------------------------ */

typedef struct st_writer st_writer;

st_writer *st_writer_open(const char *path);     /* NULL on error */
/* Metadata: both strings copied. A repeated key replaces the value. */
int st_writer_meta(st_writer *w, const char *key, const char *val);
/* Declare a tensor (before the first write). Duplicate names are an error. */
int st_writer_add(st_writer *w, const char *name, lora_dtype dtype, int ndim, const int64_t *shape);
/* Write n bytes of the tensor's data starting at byte off within it. The
 * first call fixes the header; every byte of every tensor must be written
 * exactly once before close. */
int st_writer_write(st_writer *w, const char *name, uint64_t off, const void *data, size_t n);
/* Write the tensor's data given as f32, converting to its declared dtype. */
int st_writer_write_f32(st_writer *w, const char *name, const float *data);
/* Finish: check completeness, fsync, rename into place. Frees w. 0/-1. */
int st_writer_close(st_writer *w);
/* Give up: remove the temporary file, free w. NULL ok. */
void st_writer_abort(st_writer *w);

#endif
