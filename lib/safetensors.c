/* safetensors.c: see safetensors.h. Validation follows the reference reader
 * (huggingface/safetensors tensor.rs, FORMATS.md §1.3) check for check. */
#include "safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

#define ST_MAX_INT 281474976710655LL   /* JSON schema: integers < 2^48 */

typedef struct {
	void *map;                  /* mmap'd shard, or NULL for a buffer */
	size_t len;
} shard;

typedef struct {
	shard *shards;              /* (nshards) */
	int *by_name;               /* (ntensors) tensor indices sorted by name */
	char **strings;             /* every string we own, freed at close */
	int nstrings, cap_strings;
} priv;

/* ---- helpers ------------------------------------------------------------------ */

static const char *keep(priv *p, const char *s)
{
	if (p->nstrings == p->cap_strings) {
		p->cap_strings = p->cap_strings ? 2 * p->cap_strings : 64;
		p->strings = lora_xrealloc(p->strings, p->cap_strings * sizeof *p->strings);
	}
	return p->strings[p->nstrings++] = lora_xstrdup(s);
}

static const char *base(const char *path)
{
	const char *s = strrchr(path, '/');
	return s ? s + 1 : path;
}

static int cmp_offset(const void *a, const void *b)
{
	const st_tensor *x = a, *y = b;
	if (x->offset != y->offset)
		return x->offset < y->offset ? -1 : 1;
	return x->nbytes < y->nbytes ? -1 : x->nbytes > y->nbytes;
}

static int cmp_name_idx(const void *a, const void *b, void *ctx)
{
	const st_tensor *ts = ctx;
	return strcmp(ts[*(const int *)a].name, ts[*(const int *)b].name);
}

/* Parse a non-negative JSON integer within the schema's range. */
static int json_uint(const json_t *v, int64_t *out)
{
	if (!json_is_integer(v))
		return -1;
	json_int_t x = json_integer_value(v);
	if (x < 0 || x > ST_MAX_INT)
		return -1;
	*out = x;
	return 0;
}

/* ---- parsing one buffer --------------------------------------------------------- */

/* Validate buf as one safetensors file and append its tensors and metadata
 * to f. name is for messages. Returns 0 or -1 (lora_err). */
static int parse(st_file *f, priv *p, const unsigned char *buf, size_t len,
                 const char *name, int shard_idx)
{
	if (len < 8)
		return lora_err("'%s': too small for a safetensors file (%zu bytes)", name, len);
	uint64_t n = 0;
	for (int i = 7; i >= 0; i--)
		n = n << 8 | buf[i];
	if (n > ST_MAX_HEADER)
		return lora_err("'%s': header length %llu exceeds the 100000000-byte limit",
		                name, (unsigned long long)n);
	if (n > len - 8)
		return lora_err("'%s': header length %llu runs past the end of the file (%zu bytes)",
		                name, (unsigned long long)n, len);
	json_error_t jerr;
	json_t *root = json_loadb((const char *)buf + 8, n, JSON_REJECT_DUPLICATES, &jerr);
	if (!root)
		return lora_err("'%s': invalid header JSON: %s (at byte %d)", name, jerr.text,
		                jerr.position);
	int rc = -1;
	if (!json_is_object(root)) {
		lora_err("'%s': header is not a JSON object", name);
		goto out;
	}
	size_t first = f->ntensors, count = json_object_size(root);
	f->tensors = lora_xrealloc(f->tensors, (first + count) * sizeof *f->tensors);
	const char *key;
	json_t *val;
	json_object_foreach(root, key, val) {
		if (strcmp(key, "__metadata__") == 0) {
			if (!json_is_object(val)) {
				lora_err("'%s': __metadata__ is not an object", name);
				goto out;
			}
			const char *mk;
			json_t *mv;
			json_object_foreach(val, mk, mv) {
				if (!json_is_string(mv)) {
					lora_err("'%s': metadata value of '%s' is not a string", name, mk);
					goto out;
				}
				if (st_meta(f, mk))
					continue;           /* sharded: the first shard wins */
				f->meta_keys = lora_xrealloc(f->meta_keys, (f->nmeta + 1) * sizeof(char *));
				f->meta_vals = lora_xrealloc(f->meta_vals, (f->nmeta + 1) * sizeof(char *));
				f->meta_keys[f->nmeta] = keep(p, mk);
				f->meta_vals[f->nmeta] = keep(p, json_string_value(mv));
				f->nmeta++;
			}
			continue;
		}
		st_tensor *t = &f->tensors[f->ntensors];
		memset(t, 0, sizeof *t);
		if (!json_is_object(val)) {
			lora_err("'%s': tensor '%s': entry is not an object", name, key);
			goto out;
		}
		json_t *jd = json_object_get(val, "dtype"), *js = json_object_get(val, "shape"),
		       *jo = json_object_get(val, "data_offsets");
		if (!jd || !js || !jo || json_object_size(val) != 3) {
			lora_err("'%s': tensor '%s': entry must have exactly dtype, shape and "
			         "data_offsets", name, key);
			goto out;
		}
		int dt = json_is_string(jd) ? lora_dtype_parse(json_string_value(jd)) : -1;
		if (dt < 0) {
			lora_err("'%s': tensor '%s': unknown dtype %s", name, key,
			         json_is_string(jd) ? json_string_value(jd) : "(not a string)");
			goto out;
		}
		if (!json_is_array(js) || json_array_size(js) > ST_MAX_DIMS) {
			lora_err("'%s': tensor '%s': shape is not an array of at most %d integers",
			         name, key, ST_MAX_DIMS);
			goto out;
		}
		int64_t b, e;
		if (!json_is_array(jo) || json_array_size(jo) != 2 ||
		    json_uint(json_array_get(jo, 0), &b) || json_uint(json_array_get(jo, 1), &e)) {
			lora_err("'%s': tensor '%s': data_offsets is not [begin, end]", name, key);
			goto out;
		}
		if (e < b) {
			lora_err("'%s': tensor '%s': invalid offsets [%lld, %lld]", name, key,
			         (long long)b, (long long)e);
			goto out;
		}
		t->ndim = (int)json_array_size(js);
		unsigned __int128 numel = 1;
		for (int d = 0; d < t->ndim; d++) {
			if (json_uint(json_array_get(js, d), &t->shape[d])) {
				lora_err("'%s': tensor '%s': shape has a bad dimension", name, key);
				goto out;
			}
			numel *= (uint64_t)t->shape[d];
			if (numel > (unsigned __int128)ST_MAX_INT * 64) {
				lora_err("'%s': tensor '%s': shape overflows", name, key);
				goto out;
			}
		}
		unsigned __int128 bits = numel * (unsigned)lora_dtype_bits(dt);
		if (bits % 8) {
			lora_err("'%s': tensor '%s': %s data is not a whole number of bytes", name,
			         key, json_string_value(jd));
			goto out;
		}
		if ((unsigned __int128)(e - b) != bits / 8) {
			lora_err("'%s': tensor '%s': byte range [%lld, %lld] does not match shape and "
			         "dtype (%llu bytes)", name, key, (long long)b, (long long)e,
			         (unsigned long long)(bits / 8));
			goto out;
		}
		t->name = keep(p, key);
		t->dtype = dt;
		t->numel = (int64_t)numel;
		t->nbytes = (size_t)(e - b);
		t->offset = (uint64_t)b;
		t->shard = shard_idx;
		f->ntensors++;
	}
	/* Tensors must tile the data buffer: sorted by offset, no gap, no overlap. */
	st_tensor *ts = f->tensors + first;
	size_t nt = f->ntensors - first;
	qsort(ts, nt, sizeof *ts, cmp_offset);
	uint64_t pos = 0, data_len = len - 8 - n;
	for (size_t i = 0; i < nt; i++) {
		if (ts[i].offset != pos) {
			lora_err("'%s': tensor '%s': data starts at %llu, expected %llu (%s)", name,
			         ts[i].name, (unsigned long long)ts[i].offset, (unsigned long long)pos,
			         ts[i].offset < pos ? "overlap" : "gap");
			goto out;
		}
		pos += ts[i].nbytes;
		if (pos > data_len) {
			lora_err("'%s': tensor '%s': data runs past the end of the file (truncated?)",
			         name, ts[i].name);
			goto out;
		}
		ts[i].data = buf + 8 + n + ts[i].offset;
	}
	if (pos != data_len) {
		lora_err("'%s': %llu bytes after the last tensor's data", name,
		         (unsigned long long)(data_len - pos));
		goto out;
	}
	f->header_bytes += n;
	f->file_bytes += len;
	rc = 0;
out:
	json_decref(root);
	return rc;
}

/* ---- opening --------------------------------------------------------------------- */

static st_file *file_new(const char *path)
{
	st_file *f = lora_xcalloc(1, sizeof *f);
	priv *p = lora_xcalloc(1, sizeof *p);
	f->priv = p;
	f->path = keep(p, path);
	return f;
}

static int add_shard(st_file *f, const char *path, const void *buf, size_t len)
{
	priv *p = f->priv;
	p->shards = lora_xrealloc(p->shards, (f->nshards + 1) * sizeof *p->shards);
	f->shard_paths = lora_xrealloc(f->shard_paths, (f->nshards + 1) * sizeof(char *));
	shard *s = &p->shards[f->nshards];
	s->map = NULL;
	s->len = 0;
	f->shard_paths[f->nshards] = keep(p, path);
	int idx = f->nshards++;
	if (!buf) {
		int fd = open(path, O_RDONLY);
		if (fd < 0)
			return lora_err("cannot open '%s':", path);
		struct stat st;
		if (fstat(fd, &st) != 0) {
			close(fd);
			return lora_err("cannot stat '%s':", path);
		}
		if (!S_ISREG(st.st_mode)) {
			close(fd);
			return lora_err("'%s': not a regular file", path);
		}
		len = (size_t)st.st_size;
		if (len > 0) {
			void *m = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
			if (m == MAP_FAILED) {
				close(fd);
				return lora_err("cannot map '%s':", path);
			}
			s->map = m;
			s->len = len;
			buf = m;
		} else {
			buf = "";
		}
		close(fd);
	}
	return parse(f, p, buf, len, path, idx);
}

/* Build the by-name index and reject duplicate names (across shards). */
static int finish(st_file *f)
{
	priv *p = f->priv;
	p->by_name = lora_xmalloc((f->ntensors + 1) * sizeof(int));
	for (int i = 0; i < f->ntensors; i++)
		p->by_name[i] = i;
	qsort_r(p->by_name, f->ntensors, sizeof(int), cmp_name_idx, f->tensors);
	for (int i = 1; i < f->ntensors; i++)
		if (strcmp(f->tensors[p->by_name[i]].name, f->tensors[p->by_name[i - 1]].name) == 0)
			return lora_err("'%s': tensor '%s' appears twice", f->path,
			                f->tensors[p->by_name[i]].name);
	return 0;
}

static int ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);
	return n >= m && strcmp(s + n - m, suffix) == 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* A *.safetensors.index.json: open every shard the weight_map names. */
static int open_index(st_file *f, const char *path)
{
	json_error_t jerr;
	json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
	if (!root)
		return lora_err("'%s': invalid index JSON: %s (line %d)", path, jerr.text, jerr.line);
	int rc = -1;
	json_t *wm = json_object_get(root, "weight_map");
	if (!json_is_object(wm)) {
		lora_err("'%s': index has no weight_map object", path);
		goto out;
	}
	const char *dir_end = strrchr(path, '/');
	int dirlen = dir_end ? (int)(dir_end - path + 1) : 0;
	const char *name;
	json_t *v;
	/* the shards in name order (model-00001-of-00004 first), each once */
	const char **files = lora_xcalloc(json_object_size(wm) + 1, sizeof *files);
	size_t nf = 0;
	json_object_foreach(wm, name, v) {
		if (!json_is_string(v)) {
			lora_err("'%s': weight_map entry '%s' is not a file name", path, name);
			free(files);
			goto out;
		}
		const char *file = json_string_value(v);
		if (strchr(file, '/') || strcmp(file, "..") == 0) {
			lora_err("'%s': shard name '%s' is not a plain file name", path, file);
			free(files);
			goto out;
		}
		files[nf++] = file;
	}
	qsort(files, nf, sizeof *files, cmp_str);
	for (size_t i = 0; i < nf; i++) {
		if (i && strcmp(files[i], files[i - 1]) == 0)
			continue;
		char *sp = lora_xasprintf("%.*s%s", dirlen, path, files[i]);
		int r = add_shard(f, sp, NULL, 0);
		free(sp);
		if (r) {
			free(files);
			goto out;
		}
	}
	free(files);
	if (finish(f))
		goto out;
	/* Every name in the map must be in the shard it names, and vice versa. */
	json_object_foreach(wm, name, v) {
		const st_tensor *t = st_find(f, name);
		if (!t || strcmp(base(f->shard_paths[t->shard]), json_string_value(v)) != 0) {
			lora_err("'%s': tensor '%s' is not in shard '%s'", path, name,
			         json_string_value(v));
			goto out;
		}
	}
	if ((size_t)f->ntensors != json_object_size(wm)) {
		lora_err("'%s': shards hold %d tensors but the weight_map names %zu", path,
		         f->ntensors, json_object_size(wm));
		goto out;
	}
	rc = 0;
out:
	json_decref(root);
	return rc;
}

st_file *st_open(const char *path)
{
	st_file *f = file_new(path);
	int rc = ends_with(path, ".json") ? open_index(f, path)
	                                  : (add_shard(f, path, NULL, 0) || finish(f));
	if (rc) {
		st_close(f);
		return NULL;
	}
	return f;
}

st_file *st_open_buffer(const void *buf, size_t len, const char *name)
{
	st_file *f = file_new(name);
	if (add_shard(f, name, buf ? buf : "", len) || finish(f)) {
		st_close(f);
		return NULL;
	}
	return f;
}

void st_close(st_file *f)
{
	if (!f)
		return;
	priv *p = f->priv;
	for (int i = 0; i < f->nshards; i++)
		if (p->shards[i].map)
			munmap(p->shards[i].map, p->shards[i].len);
	for (int i = 0; i < p->nstrings; i++)
		free(p->strings[i]);
	free(p->strings);
	free(p->shards);
	free(p->by_name);
	free(p);
	free(f->tensors);
	free(f->meta_keys);
	free(f->meta_vals);
	free(f->shard_paths);
	free(f);
}

const st_tensor *st_find(const st_file *f, const char *name)
{
	priv *p = f->priv;
	if (!p->by_name) {          /* still opening: linear */
		for (int i = 0; i < f->ntensors; i++)
			if (strcmp(f->tensors[i].name, name) == 0)
				return &f->tensors[i];
		return NULL;
	}
	int lo = 0, hi = f->ntensors - 1;
	while (lo <= hi) {
		int mid = (lo + hi) / 2;
		const st_tensor *t = &f->tensors[p->by_name[mid]];
		int c = strcmp(t->name, name);
		if (c == 0)
			return t;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid - 1;
	}
	return NULL;
}

const char *st_meta(const st_file *f, const char *key)
{
	for (int i = 0; i < f->nmeta; i++)
		if (strcmp(f->meta_keys[i], key) == 0)
			return f->meta_vals[i];
	return NULL;
}

int st_tensor_to_f32(const st_tensor *t, float *out)
{
	if (lora_convert(out, LORA_DTYPE_F32, t->data, t->dtype, (size_t)t->numel) != 0)
		return lora_err("tensor '%s': %s", t->name, lora_errmsg());
	return 0;
}

/* ---- writer ------------------------------------------------------------------------ */

typedef struct {
	char *name;
	lora_dtype dtype;
	int ndim;
	int64_t shape[ST_MAX_DIMS];
	uint64_t nbytes, begin, written;
} wtensor;

struct st_writer {
	lora_afile af;
	wtensor *t;
	int n, cap;
	char **mkeys, **mvals;
	int nmeta;
	int started;
	uint64_t data_start;        /* 8 + N */
	int failed;
};

st_writer *st_writer_open(const char *path)
{
	st_writer *w = lora_xcalloc(1, sizeof *w);
	if (lora_afile_open(&w->af, path) != 0) {
		free(w);
		return NULL;
	}
	return w;
}

int st_writer_meta(st_writer *w, const char *key, const char *val)
{
	if (w->started)
		return lora_err("'%s': metadata added after data was written", w->af.path);
	for (int i = 0; i < w->nmeta; i++)
		if (strcmp(w->mkeys[i], key) == 0) {
			free(w->mvals[i]);
			w->mvals[i] = lora_xstrdup(val);
			return 0;
		}
	w->mkeys = lora_xrealloc(w->mkeys, (w->nmeta + 1) * sizeof(char *));
	w->mvals = lora_xrealloc(w->mvals, (w->nmeta + 1) * sizeof(char *));
	w->mkeys[w->nmeta] = lora_xstrdup(key);
	w->mvals[w->nmeta] = lora_xstrdup(val);
	w->nmeta++;
	return 0;
}

int st_writer_add(st_writer *w, const char *name, lora_dtype dtype, int ndim, const int64_t *shape)
{
	if (w->started)
		return lora_err("'%s': tensor '%s' declared after data was written", w->af.path, name);
	if ((unsigned)dtype >= LORA_DTYPE_COUNT || ndim < 0 || ndim > ST_MAX_DIMS)
		return lora_err("'%s': tensor '%s': bad dtype or rank", w->af.path, name);
	if (strcmp(name, "__metadata__") == 0)
		return lora_err("'%s': '__metadata__' cannot name a tensor", w->af.path);
	for (int i = 0; i < w->n; i++)
		if (strcmp(w->t[i].name, name) == 0)
			return lora_err("'%s': tensor '%s' declared twice", w->af.path, name);
	unsigned __int128 bits = lora_dtype_bits(dtype);
	for (int d = 0; d < ndim; d++) {
		if (shape[d] < 0 || shape[d] > ST_MAX_INT)
			return lora_err("'%s': tensor '%s': bad dimension", w->af.path, name);
		bits *= (uint64_t)shape[d];
		if (bits > (unsigned __int128)ST_MAX_INT * 8)
			return lora_err("'%s': tensor '%s': too large", w->af.path, name);
	}
	if (bits % 8)
		return lora_err("'%s': tensor '%s': not a whole number of bytes", w->af.path, name);
	if (w->n == w->cap) {
		w->cap = w->cap ? 2 * w->cap : 64;
		w->t = lora_xrealloc(w->t, w->cap * sizeof *w->t);
	}
	wtensor *t = &w->t[w->n++];
	memset(t, 0, sizeof *t);
	t->name = lora_xstrdup(name);
	t->dtype = dtype;
	t->ndim = ndim;
	if (ndim)
		memcpy(t->shape, shape, ndim * sizeof *shape);
	t->nbytes = (uint64_t)(bits / 8);
	return 0;
}

/* Reference order: larger alignment (later in the Dtype enum) first, then name. */
static int cmp_write(const void *a, const void *b)
{
	const wtensor *x = a, *y = b;
	if (x->dtype != y->dtype)
		return x->dtype > y->dtype ? -1 : 1;
	return strcmp(x->name, y->name);
}

/* Append s as a JSON string the way serde_json writes it. */
typedef struct { char *p; size_t n, cap; } sbuf;

static void sb_put(sbuf *b, const char *s, size_t n)
{
	if (b->n + n + 1 > b->cap) {
		while (b->n + n + 1 > b->cap)
			b->cap = b->cap ? 2 * b->cap : 4096;
		b->p = lora_xrealloc(b->p, b->cap);
	}
	memcpy(b->p + b->n, s, n);
	b->n += n;
	b->p[b->n] = 0;
}

static void sb_str(sbuf *b, const char *s)
{
	sb_put(b, "\"", 1);
	for (; *s; s++) {
		unsigned char c = *s;
		char esc[8];
		switch (c) {
		case '"': sb_put(b, "\\\"", 2); break;
		case '\\': sb_put(b, "\\\\", 2); break;
		case '\b': sb_put(b, "\\b", 2); break;
		case '\f': sb_put(b, "\\f", 2); break;
		case '\n': sb_put(b, "\\n", 2); break;
		case '\r': sb_put(b, "\\r", 2); break;
		case '\t': sb_put(b, "\\t", 2); break;
		default:
			if (c < 0x20) {
				snprintf(esc, sizeof esc, "\\u%04x", c);
				sb_put(b, esc, 6);
			} else {
				sb_put(b, (const char *)s, 1);
			}
		}
	}
	sb_put(b, "\"", 1);
}

/* Write all n bytes at pos; 0, or -1 with errno set. A short write (the
 * disk filled up part way) is retried, so that the call after it says why
 * (ENOSPC) instead of errno keeping whatever an earlier call left there. */
static int pwrite_all(int fd, const void *data, size_t n, uint64_t pos)
{
	const char *p = data;
	while (n > 0) {
		ssize_t k = pwrite(fd, p, n, (off_t)pos);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return -1;
		if (k == 0) {
			errno = ENOSPC;
			return -1;
		}
		p += k;
		pos += (uint64_t)k;
		n -= (size_t)k;
	}
	return 0;
}

static int start(st_writer *w)
{
	if (w->n)
		qsort(w->t, w->n, sizeof *w->t, cmp_write);
	sbuf b = { 0 };
	char num[64];
	sb_put(&b, "{", 1);
	if (w->nmeta) {
		sb_put(&b, "\"__metadata__\":{", 16);
		for (int i = 0; i < w->nmeta; i++) {
			if (i)
				sb_put(&b, ",", 1);
			sb_str(&b, w->mkeys[i]);
			sb_put(&b, ":", 1);
			sb_str(&b, w->mvals[i]);
		}
		sb_put(&b, "}", 1);
	}
	uint64_t off = 0;
	for (int i = 0; i < w->n; i++) {
		wtensor *t = &w->t[i];
		t->begin = off;
		off += t->nbytes;
		if (i || w->nmeta)
			sb_put(&b, ",", 1);
		sb_str(&b, t->name);
		sb_put(&b, ":{\"dtype\":", 10);
		sb_str(&b, lora_dtype_name(t->dtype));
		sb_put(&b, ",\"shape\":[", 10);
		for (int d = 0; d < t->ndim; d++) {
			int k = snprintf(num, sizeof num, "%s%lld", d ? "," : "", (long long)t->shape[d]);
			sb_put(&b, num, k);
		}
		int k = snprintf(num, sizeof num, "],\"data_offsets\":[%llu,%llu]}",
		                 (unsigned long long)t->begin, (unsigned long long)off);
		sb_put(&b, num, k);
	}
	sb_put(&b, "}", 1);
	while (b.n % 8)
		sb_put(&b, " ", 1);
	int rc = 0;
	if (b.n > ST_MAX_HEADER) {
		rc = lora_err("'%s': header of %zu bytes exceeds the limit", w->af.path, b.n);
	} else {
		unsigned char len8[8];
		for (int i = 0; i < 8; i++)
			len8[i] = (unsigned char)((uint64_t)b.n >> (8 * i));
		if (pwrite_all(w->af.fd, len8, 8, 0) < 0 || pwrite_all(w->af.fd, b.p, b.n, 8) < 0)
			rc = lora_err("cannot write '%s':", w->af.path);
		w->data_start = 8 + b.n;
	}
	free(b.p);
	w->started = 1;
	if (rc)
		w->failed = 1;
	return rc;
}

static wtensor *wfind(st_writer *w, const char *name)
{
	for (int i = 0; i < w->n; i++)
		if (strcmp(w->t[i].name, name) == 0)
			return &w->t[i];
	return NULL;
}

int st_writer_write(st_writer *w, const char *name, uint64_t off, const void *data, size_t n)
{
	if (w->failed)
		return -1;
	if (!w->started && start(w) != 0)
		return -1;
	wtensor *t = wfind(w, name);
	if (!t)
		return lora_err("'%s': tensor '%s' was not declared", w->af.path, name);
	if (off > t->nbytes || n > t->nbytes - off)
		return lora_err("'%s': tensor '%s': write past its end", w->af.path, name);
	if (pwrite_all(w->af.fd, data, n, w->data_start + t->begin + off) < 0) {
		w->failed = 1;
		return lora_err("cannot write '%s':", w->af.path);
	}
	t->written += n;
	return 0;
}

int st_writer_write_f32(st_writer *w, const char *name, const float *data)
{
	wtensor *t = wfind(w, name);
	if (!t)
		return lora_err("'%s': tensor '%s' was not declared", w->af.path, name);
	size_t esize = lora_dtype_bits(t->dtype) / 8;
	if (t->dtype == LORA_DTYPE_F32 || !esize)
		return st_writer_write(w, name, 0, data, t->nbytes);
	/* Convert in pieces so memory stays small for big tensors. */
	size_t numel = t->nbytes / esize, chunk = 1 << 16;
	unsigned char *tmp = lora_xmalloc(chunk * esize);
	int rc = 0;
	for (size_t i = 0; i < numel && rc == 0; i += chunk) {
		size_t m = numel - i < chunk ? numel - i : chunk;
		rc = lora_convert(tmp, t->dtype, data + i, LORA_DTYPE_F32, m);
		if (rc == 0)
			rc = st_writer_write(w, name, i * esize, tmp, m * esize);
	}
	free(tmp);
	return rc;
}

static void writer_free(st_writer *w)
{
	for (int i = 0; i < w->n; i++)
		free(w->t[i].name);
	for (int i = 0; i < w->nmeta; i++) {
		free(w->mkeys[i]);
		free(w->mvals[i]);
	}
	free(w->t);
	free(w->mkeys);
	free(w->mvals);
	free(w);
}

int st_writer_close(st_writer *w)
{
	int rc = w->failed ? -1 : 0;
	if (rc == 0 && !w->started)
		rc = start(w);
	for (int i = 0; i < w->n && rc == 0; i++)
		if (w->t[i].written != w->t[i].nbytes)
			rc = lora_err("'%s': tensor '%s': %llu of %llu bytes written", w->af.path,
			              w->t[i].name, (unsigned long long)w->t[i].written,
			              (unsigned long long)w->t[i].nbytes);
	if (rc == 0)
		rc = lora_afile_commit(&w->af);
	else
		lora_afile_abort(&w->af);
	writer_free(w);
	return rc;
}

void st_writer_abort(st_writer *w)
{
	if (!w)
		return;
	lora_afile_abort(&w->af);
	writer_free(w);
}
