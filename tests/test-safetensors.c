/* test-safetensors.c: lib/safetensors.c and lib/dtype.c against files and
 * values written by the reference Python packages (tests/gen/gen_safetensors.py).
 *
 * 1. every fixture reads back as the reference reader saw it (expected.json:
 *    header size, metadata in order, names, dtypes, shapes, offsets, the raw
 *    bytes and their f32 conversion as torch computes it);
 * 2. our writer reproduces the reference files byte for byte (tensors
 *    declared in reverse order and written in pieces, out of order);
 * 3. the sharded checkpoint opens as one file with the same tensors;
 * 4. F32 -> F16/BF16 rounding and F16/BF16/F8 -> F32 match torch bit for bit;
 * 5. writer misuse fails cleanly and leaves no file behind.
 */
#include <errno.h>
#include <glob.h>
#include <jansson.h>
#include <signal.h>
#include <string.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

#include "test.h"
#include "safetensors.h"   /* st_open, st_writer_*, st_tensor_to_f32 */
#include "util.h"          /* lora_read_file, lora_errmsg */

#define FIX "tests/fixtures/safetensors/"

static uint64_t fnv(const void *p, size_t n)
{
	const unsigned char *b = p;
	uint64_t h = 0xcbf29ce484222325ULL;
	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 0x100000001b3ULL;
	return h;
}

static uint64_t hex64(const char *s) { return strtoull(s, NULL, 16); }

static int f32_same(uint32_t a, uint32_t b)
{
	float fa, fb;
	memcpy(&fa, &a, 4);
	memcpy(&fb, &b, 4);
	if (isnan(fa) || isnan(fb))
		return isnan(fa) && isnan(fb);
	return a == b;
}


/* ---- 1. reading ---------------------------------------------------------------- */

static void check_tensor(const char *file, const st_tensor *t, json_t *e)
{
	char what[512];
	snprintf(what, sizeof what, "%s: %s", file, t->name);
	test_cond(what, !strcmp(t->name, json_string_value(json_object_get(e, "name"))));
	test_cond(what, !strcmp(lora_dtype_name(t->dtype),
	                        json_string_value(json_object_get(e, "dtype"))));
	json_t *shape = json_object_get(e, "shape");
	int shape_ok = t->ndim == (int)json_array_size(shape);
	int64_t numel = 1;
	for (int d = 0; shape_ok && d < t->ndim; d++) {
		shape_ok = t->shape[d] == json_integer_value(json_array_get(shape, d));
		numel *= t->shape[d];
	}
	test_cond(what, shape_ok && t->numel == numel);
	json_t *off = json_object_get(e, "offsets");
	int64_t b = json_integer_value(json_array_get(off, 0));
	int64_t end = json_integer_value(json_array_get(off, 1));
	test_cond(what, (int64_t)t->offset == b && (int64_t)t->nbytes == end - b);
	test_cond(what, fnv(t->data, t->nbytes) == hex64(json_string_value(json_object_get(e, "fnv"))));

	json_t *bits = json_object_get(e, "f32bits");
	json_t *f32fnv = json_object_get(e, "f32fnv");
	if (!bits && !f32fnv)
		return;
	float *v = lora_xmalloc((size_t)t->numel * 4 + 4);
	int rc = st_tensor_to_f32(t, v);
	if (rc != 0)
		printf("      %s: %s\n", what, lora_errmsg());
	test_cond(what, rc == 0);
	if (rc == 0 && bits) {
		int ok = (int64_t)json_array_size(bits) == t->numel;
		for (int64_t i = 0; ok && i < t->numel; i++) {
			uint32_t u;
			memcpy(&u, &v[i], 4);
			ok = f32_same(u, (uint32_t)json_integer_value(json_array_get(bits, i)));
			if (!ok)
				printf("      %s[%lld]: got %08x want %08llx\n", what, (long long)i, u,
				       (long long)json_integer_value(json_array_get(bits, i)));
		}
		test_cond(what, ok);
	}
	if (rc == 0 && f32fnv)
		test_cond(what, fnv(v, (size_t)t->numel * 4) == hex64(json_string_value(f32fnv)));
	free(v);
}

static void check_file(const char *rel, json_t *exp)
{
	char path[512];
	snprintf(path, sizeof path, FIX "%s", rel);
	st_file *f = st_open(path);
	if (!f)
		printf("      %s\n", lora_errmsg());
	test_cond(rel, f != NULL);
	if (!f)
		return;
	test_cond(rel, f->header_bytes == (uint64_t)json_integer_value(json_object_get(exp, "header_bytes")));
	test_cond(rel, f->file_bytes == (uint64_t)json_integer_value(json_object_get(exp, "file_bytes")));
	test_cond(rel, f->nshards == 1);
	json_t *meta = json_object_get(exp, "meta");
	test_cond(rel, f->nmeta == (int)json_array_size(meta));
	for (int i = 0; i < f->nmeta && i < (int)json_array_size(meta); i++) {
		const char *k = json_string_value(json_array_get(json_array_get(meta, i), 0));
		const char *v = json_string_value(json_array_get(json_array_get(meta, i), 1));
		test_cond("metadata key in header order", !strcmp(f->meta_keys[i], k));
		test_cond("metadata value", !strcmp(f->meta_vals[i], v));
		test_cond("st_meta", st_meta(f, k) && !strcmp(st_meta(f, k), v));
	}
	test_cond("st_meta of a missing key", st_meta(f, "no such key") == NULL);
	json_t *ts = json_object_get(exp, "tensors");
	test_cond(rel, f->ntensors == (int)json_array_size(ts));
	for (int i = 0; i < f->ntensors && i < (int)json_array_size(ts); i++) {
		check_tensor(rel, &f->tensors[i], json_array_get(ts, i));
		test_cond("st_find", st_find(f, f->tensors[i].name) == &f->tensors[i]);
	}
	test_cond("st_find of a missing name", st_find(f, "no such tensor") == NULL);
	st_close(f);
}

/* ---- 2. byte-identical writing -------------------------------------------------- */

static char *tmpname(const char *base)
{
	const char *d = getenv("TMPDIR");
	return lora_xasprintf("%s/%s", d && *d ? d : "/tmp", base);
}

/* Rewrite a reference file with our writer: declare the tensors in reverse,
 * write each in two pieces, second half first; mode 1 writes float tensors
 * through st_writer_write_f32 instead. Returns 1 if the bytes are identical. */
static int rewrite_same(const char *rel, int mode)
{
	char path[512];
	snprintf(path, sizeof path, FIX "%s", rel);
	st_file *f = st_open(path);
	if (!f)
		return 0;
	/* ST_KEEP=dir keeps our files for tests/gen/check_writer.py */
	const char *keep = getenv("ST_KEEP");
	char *out;
	if (keep) {
		out = lora_xasprintf("%s/%s.%d", keep, rel, mode);
		for (char *c = out + strlen(keep) + 1; *c; c++)
			if (*c == '/')
				*c = '_';
	} else {
		out = tmpname("rewrite.safetensors");
	}
	unlink(out);
	st_writer *w = st_writer_open(out);
	int ok = w != NULL;
	for (int i = 0; ok && i < f->nmeta; i++)
		ok = st_writer_meta(w, f->meta_keys[i], f->meta_vals[i]) == 0;
	for (int i = f->ntensors - 1; ok && i >= 0; i--) {
		const st_tensor *t = &f->tensors[i];
		ok = st_writer_add(w, t->name, t->dtype, t->ndim, t->shape) == 0;
	}
	for (int i = 0; ok && i < f->ntensors; i++) {
		const st_tensor *t = &f->tensors[i];
		lora_dtype d = t->dtype;
		if (mode == 1 && (d == LORA_DTYPE_F32 || d == LORA_DTYPE_F16 || d == LORA_DTYPE_BF16)) {
			float *v = lora_xmalloc((size_t)t->numel * 4 + 4);
			ok = st_tensor_to_f32(t, v) == 0 && st_writer_write_f32(w, t->name, v) == 0;
			free(v);
			continue;
		}
		size_t half = t->nbytes / 2;
		const char *p = t->data;
		ok = st_writer_write(w, t->name, half, p + half, t->nbytes - half) == 0 &&
		     (half == 0 || st_writer_write(w, t->name, 0, p, half) == 0);
	}
	if (!ok) {
		printf("      %s: %s\n", rel, lora_errmsg());
		st_writer_abort(w);
	} else if (st_writer_close(w) != 0) {
		printf("      %s: %s\n", rel, lora_errmsg());
		ok = 0;
	}
	size_t la = 0, lb = 0;
	char *a = ok ? lora_read_file(path, &la) : NULL;
	char *b = ok ? lora_read_file(out, &lb) : NULL;
	int same = a && b && la == lb && !memcmp(a, b, la);
	if (ok && !same)
		printf("      %s: our file differs (%zu vs %zu bytes)\n", rel, lb, la);
	free(a);
	free(b);
	if (!keep)
		unlink(out);
	free(out);
	st_close(f);
	return same;
}

/* ---- 3. sharded ----------------------------------------------------------------------- */

static void check_sharded(json_t *exp)
{
	const char *rel = "llama/model.safetensors.index.json";
	st_file *f = st_open(FIX "llama/model.safetensors.index.json");
	if (!f)
		printf("      %s\n", lora_errmsg());
	test_cond("sharded checkpoint opens", f != NULL);
	if (!f)
		return;
	json_t *ts = json_object_get(exp, "tensors");
	test_cond("sharded: shard count", f->nshards == json_integer_value(json_object_get(exp, "nshards")));
	test_cond("sharded: tensor count", f->ntensors == (int)json_object_size(ts));
	const char *name;
	json_t *e;
	int n = 0;
	json_object_foreach(ts, name, e) {
		const st_tensor *t = st_find(f, name);
		test_cond(name, t != NULL);
		if (!t)
			continue;
		const char *shard = json_string_value(json_object_get(e, "shard"));
		const char *sp = f->shard_paths[t->shard];
		test_cond("sharded: tensor in its shard",
		          strlen(sp) >= strlen(shard) && !strcmp(sp + strlen(sp) - strlen(shard), shard));
		test_cond("sharded: dtype", !strcmp(lora_dtype_name(t->dtype),
		                                    json_string_value(json_object_get(e, "dtype"))));
		json_t *shape = json_object_get(e, "shape");
		int ok = t->ndim == (int)json_array_size(shape);
		for (int d = 0; ok && d < t->ndim; d++)
			ok = t->shape[d] == json_integer_value(json_array_get(shape, d));
		test_cond("sharded: shape", ok);
		float *v = lora_xmalloc((size_t)t->numel * 4);
		test_cond("sharded: convert", st_tensor_to_f32(t, v) == 0);
		test_cond(name, fnv(v, (size_t)t->numel * 4) ==
		                hex64(json_string_value(json_object_get(e, "f32fnv"))));
		free(v);
		n++;
	}
	test_cond(rel, n == f->ntensors);
	st_close(f);
}

/* ---- 4. conversions ------------------------------------------------------------------- */

static int h16_isnan(uint16_t h, int bf)
{
	return bf ? (h & 0x7f80) == 0x7f80 && (h & 0x7f) : (h & 0x7c00) == 0x7c00 && (h & 0x3ff);
}

static void check_conv(void)
{
	st_file *f = st_open(FIX "conv.safetensors");
	test_cond("conv.safetensors opens", f != NULL);
	if (!f)
		return;
	const st_tensor *in = st_find(f, "f32_in");
	const st_tensor *r16 = st_find(f, "f16_ref");
	const st_tensor *rbf = st_find(f, "bf16_ref");
	test_cond("conv: tensors", in && r16 && rbf && in->numel == r16->numel && in->numel == rbf->numel);
	if (!(in && r16 && rbf))
		return;
	size_t n = (size_t)in->numel;
	uint32_t *x = lora_xmalloc(n * 4);
	uint16_t *a = lora_xmalloc(n * 2), *b = lora_xmalloc(n * 2);
	uint16_t *bulk16 = lora_xmalloc(n * 2), *bulkbf = lora_xmalloc(n * 2);
	memcpy(x, in->data, n * 4);
	memcpy(a, r16->data, n * 2);
	memcpy(b, rbf->data, n * 2);
	test_cond("lora_convert F32->F16", lora_convert(bulk16, LORA_DTYPE_F16, x, LORA_DTYPE_F32, n) == 0);
	test_cond("lora_convert F32->BF16", lora_convert(bulkbf, LORA_DTYPE_BF16, x, LORA_DTYPE_F32, n) == 0);
	int bad16 = 0, badbf = 0, badbulk = 0;
	for (size_t i = 0; i < n; i++) {
		float v;
		memcpy(&v, &x[i], 4);
		uint16_t h = lora_f32_to_f16(v), g = lora_f32_to_bf16(v);
		int ok16 = isnan(v) ? h16_isnan(h, 0) : h == a[i];
		int okbf = isnan(v) ? h16_isnan(g, 1) : g == b[i];
		if (!ok16 && bad16++ < 5)
			printf("      f32 %08x -> f16 got %04x want %04x\n", x[i], h, a[i]);
		if (!okbf && badbf++ < 5)
			printf("      f32 %08x -> bf16 got %04x want %04x\n", x[i], g, b[i]);
		if (bulk16[i] != h || bulkbf[i] != g)
			badbulk++;
	}
	printf("      %zu f32 values converted: %d f16 and %d bf16 mismatches\n", n, bad16, badbf);
	test_cond("f32 -> f16 rounds as torch (RNE, overflow, subnormals, NaN)", bad16 == 0);
	test_cond("f32 -> bf16 rounds as torch", badbf == 0);
	test_cond("lora_convert agrees with the scalar functions", badbulk == 0);
	free(x); free(a); free(b); free(bulk16); free(bulkbf);

	/* f16 -> f32, all 65536 patterns */
	const st_tensor *all = st_find(f, "f16_all_f32");
	test_cond("conv: f16_all_f32", all && all->numel == 65536);
	if (all) {
		int bad = 0;
		for (uint32_t i = 0; i < 65536; i++) {
			float v = lora_f16_to_f32((uint16_t)i);
			uint32_t got, want;
			memcpy(&got, &v, 4);
			memcpy(&want, (const char *)all->data + 4 * i, 4);
			if (!f32_same(got, want) && bad++ < 5)
				printf("      f16 %04x -> got %08x want %08x\n", i, got, want);
		}
		test_cond("f16 -> f32 for all 65536 values", bad == 0);
		/* the bulk path (F16C on x86-64), at odd lengths and offsets */
		uint16_t *h = lora_xmalloc(65536 * 2 + 2);
		float *o = lora_xmalloc(65536 * 4);
		for (uint32_t i = 0; i < 65536; i++)
			h[i + 1] = (uint16_t)i;
		bad = 0;
		test_cond("lora_convert F16->F32",
		          lora_convert(o, LORA_DTYPE_F32, h + 1, LORA_DTYPE_F16, 65533) == 0);
		for (uint32_t i = 0; i < 65533; i++) {
			uint32_t got, want;
			memcpy(&got, &o[i], 4);
			memcpy(&want, (const char *)all->data + 4 * i, 4);
			if (!f32_same(got, want) && bad++ < 5)
				printf("      bulk f16 %04x -> got %08x want %08x\n", i, got, want);
		}
		test_cond("bulk f16 -> f32 for all values", bad == 0);
		free(h);
		free(o);
	}
	const st_tensor *bi = st_find(f, "bf16_in"), *bo = st_find(f, "bf16_in_f32");
	test_cond("conv: bf16_in", bi && bo && bi->numel == bo->numel);
	if (bi && bo) {
		int bad = 0;
		float *v = lora_xmalloc((size_t)bi->numel * 4);
		test_cond("bf16 tensor -> f32", st_tensor_to_f32(bi, v) == 0);
		for (int64_t i = 0; i < bi->numel; i++) {
			uint16_t h;
			uint32_t got, want, g2;
			memcpy(&h, (const char *)bi->data + 2 * i, 2);
			float s = lora_bf16_to_f32(h);
			memcpy(&got, &s, 4);
			memcpy(&g2, &v[i], 4);
			memcpy(&want, (const char *)bo->data + 4 * i, 4);
			if ((!f32_same(got, want) || !f32_same(g2, want)) && bad++ < 5)
				printf("      bf16 %04x -> got %08x want %08x\n", h, got, want);
		}
		test_cond("bf16 -> f32", bad == 0);
		free(v);
	}
	static const struct { const char *name; lora_dtype d; } f8[] = {
		{"f8_e4m3_f32", LORA_DTYPE_F8_E4M3}, {"f8_e5m2_f32", LORA_DTYPE_F8_E5M2},
		{"f8_e4m3fnuz_f32", LORA_DTYPE_F8_E4M3FNUZ}, {"f8_e5m2fnuz_f32", LORA_DTYPE_F8_E5M2FNUZ},
		{"f8_e8m0_f32", LORA_DTYPE_F8_E8M0},
	};
	for (size_t k = 0; k < sizeof f8 / sizeof f8[0]; k++) {
		const st_tensor *t = st_find(f, f8[k].name);
		test_cond(f8[k].name, t && t->numel == 256);
		if (!t)
			continue;
		int bad = 0;
		uint8_t src[256];
		float bulk[256];
		for (int i = 0; i < 256; i++)
			src[i] = (uint8_t)i;
		int rc = lora_convert(bulk, LORA_DTYPE_F32, src, f8[k].d, 256);
		for (int i = 0; i < 256; i++) {
			float v = lora_f8_to_f32((uint8_t)i, f8[k].d);
			uint32_t got, want, gb;
			memcpy(&got, &v, 4);
			memcpy(&gb, &bulk[i], 4);
			memcpy(&want, (const char *)t->data + 4 * i, 4);
			if ((!f32_same(got, want) || (rc == 0 && !f32_same(gb, want))) && bad++ < 3)
				printf("      %s %02x -> got %08x want %08x\n", f8[k].name, i, got, want);
		}
		test_cond(f8[k].name, rc == 0 && bad == 0);
	}
	st_close(f);
}

/* ---- 5. writer misuse ------------------------------------------------------------------ */

/* Is a temporary file of the writer's (PATH.tmp.XXXXXX) left beside path? */
static int tmp_left(const char *path)
{
	char *pat = lora_xasprintf("%s.tmp.*", path);
	glob_t g;
	int n = glob(pat, 0, NULL, &g) == 0 ? (int)g.gl_pathc : 0;
	if (n)
		globfree(&g);
	free(pat);
	return n;
}

static void check_writer_errors(void)
{
	char *out = tmpname("bad-write.safetensors");
	unlink(out);
	float d[4] = {1, 2, 3, 4};
	st_writer *w = st_writer_open(out);
	test_cond("writer opens", w != NULL);
	test_cond("declare", st_writer_add(w, "a", LORA_DTYPE_F32, 1, (int64_t[]){4}) == 0);
	test_cond("duplicate name rejected", st_writer_add(w, "a", LORA_DTYPE_F32, 1, (int64_t[]){4}) == -1);
	test_cond("__metadata__ as a name rejected",
	          st_writer_add(w, "__metadata__", LORA_DTYPE_F32, 1, (int64_t[]){1}) == -1);
	test_cond("negative dimension rejected", st_writer_add(w, "n", LORA_DTYPE_F32, 1, (int64_t[]){-1}) == -1);
	test_cond("half-byte F4 tensor rejected", st_writer_add(w, "h", LORA_DTYPE_F4, 1, (int64_t[]){3}) == -1);
	test_cond("write of an undeclared tensor rejected", st_writer_write(w, "b", 0, d, 4) == -1);
	test_cond("write past the end rejected", st_writer_write(w, "a", 8, d, 12) == -1);
	test_cond("partial write", st_writer_write(w, "a", 0, d, 8) == 0);
	test_cond("declare after write rejected", st_writer_add(w, "c", LORA_DTYPE_F32, 0, NULL) == -1);
	test_cond("close with missing bytes fails", st_writer_close(w) == -1);
	test_cond("message names the tensor", strstr(lora_errmsg(), "'a'") != NULL);
	test_cond("no file left after a failed close", access(out, F_OK) != 0);

	w = st_writer_open(out);
	st_writer_add(w, "a", LORA_DTYPE_F32, 1, (int64_t[]){4});
	st_writer_write(w, "a", 0, d, 16);
	st_writer_abort(w);
	test_cond("no file left after abort", access(out, F_OK) != 0);

	/* FORMATS.md 1.4 test vector: an empty dict */
	w = st_writer_open(out);
	test_cond("empty file written", w && st_writer_close(w) == 0);
	size_t n = 0;
	char *b = lora_read_file(out, &n);
	static const unsigned char want[16] = {8, 0, 0, 0, 0, 0, 0, 0, '{', '}', ' ', ' ', ' ', ' ', ' ', ' '};
	test_cond("empty file bytes", b && n == 16 && !memcmp(b, want, 16));
	free(b);
	unlink(out);

	/* A disk that fills up part way through a write: RLIMIT_FSIZE stops the
	 * header's write short (then EFBIG). The message must give that reason,
	 * not whatever errno an earlier call left behind. */
	struct rlimit old, lim;
	getrlimit(RLIMIT_FSIZE, &old);
	lim = old;
	lim.rlim_cur = 20;
	signal(SIGXFSZ, SIG_IGN);
	w = st_writer_open(out);
	st_writer_add(w, "a_tensor_name_that_makes_the_header_long", LORA_DTYPE_F32, 1, (int64_t[]){4});
	setrlimit(RLIMIT_FSIZE, &lim);
	errno = ENOENT;
	int wr = st_writer_write(w, "a_tensor_name_that_makes_the_header_long", 0, d, 16);
	setrlimit(RLIMIT_FSIZE, &old);
	test_cond("a header cut short by the file size limit fails", wr == -1);
	test_cond("... and says why (not a stale errno)",
	          strstr(lora_errmsg(), strerror(EFBIG)) != NULL);
	if (!strstr(lora_errmsg(), strerror(EFBIG)))
		printf("      message: %s\n", lora_errmsg());
	test_cond("... the close fails too", st_writer_close(w) == -1);
	test_cond("... and leaves no file", access(out, F_OK) != 0 && !tmp_left(out));
	w = st_writer_open(out);
	st_writer_add(w, "a", LORA_DTYPE_F32, 1, (int64_t[]){1024});
	float big[1024] = {0};
	lim.rlim_cur = 1000;
	setrlimit(RLIMIT_FSIZE, &lim);
	errno = ENOENT;
	wr = st_writer_write(w, "a", 0, big, sizeof big);
	setrlimit(RLIMIT_FSIZE, &old);
	test_cond("data cut short by the file size limit fails, saying why",
	          wr == -1 && strstr(lora_errmsg(), strerror(EFBIG)) != NULL);
	st_writer_abort(w);
	signal(SIGXFSZ, SIG_DFL);
	unlink(out);
	free(out);

	test_cond("st_open of a missing file fails", st_open("tests/fixtures/no-such.safetensors") == NULL);
	test_cond("message names the file", strstr(lora_errmsg(), "no-such.safetensors") != NULL);
	st_close(NULL);
	st_writer_abort(NULL);
}

int main(void)
{
	json_error_t jerr;
	json_t *exp = json_load_file(FIX "expected.json", 0, &jerr);
	if (!exp) {
		printf("cannot read expected.json: %s\n", jerr.text);
		return 1;
	}
	const char *rel;
	json_t *e;
	int nfiles = 0;
	json_object_foreach(exp, rel, e) {
		if (strstr(rel, "index.json"))
			continue;
		check_file(rel, e);
		nfiles++;
	}
	test_cond("all fixture files checked", nfiles >= 9);

	static const char *same[] = {
		"dtypes.safetensors", "edge.safetensors", "empty.safetensors",
		"example.safetensors", "peft/adapter_model.safetensors",
		"llama1/model.safetensors", "llama/model-00002-of-00006.safetensors",
		"diffusers/pytorch_lora_weights.safetensors",
	};
	for (size_t i = 0; i < sizeof same / sizeof same[0]; i++) {
		char d[256];
		snprintf(d, sizeof d, "writer reproduces %s byte for byte", same[i]);
		test_cond(d, rewrite_same(same[i], 0));
		snprintf(d, sizeof d, "writer reproduces %s via st_writer_write_f32", same[i]);
		test_cond(d, rewrite_same(same[i], 1));
	}
	check_sharded(json_object_get(exp, "llama/model.safetensors.index.json"));
	check_conv();
	check_writer_errors();
	/* an error that adds the tensor's name to the converter's message keeps
	 * both (lora_err given lora_errmsg() as an argument) */
	static const uint8_t fp4[1] = { 0x21 };
	st_tensor t4 = { .name = "w4", .dtype = LORA_DTYPE_F4, .numel = 2, .data = fp4 };
	float out4[2];
	test_cond("tensor name + converter's message", st_tensor_to_f32(&t4, out4) < 0 &&
	          !strcmp(lora_errmsg(), "tensor 'w4': cannot convert F4 to F32"));
	json_decref(exp);
	return test_report();
}
