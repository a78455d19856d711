/* test-merge-tool.c: lora-merge's outputs against the references of
 * tests/gen/gen_merge.py. Runs $BIN/lora-merge (tests/run.sh sets BIN) in
 * $TMPDIR; skipped (77) when BIN is not set.
 *
 * 1. bake kohya_a:0.6 + kohya_b:0.4 into the F16 SD 1.5 single file: every
 *    tensor equals float64 W + Σ w·s·B·A rounded to F16 (within one F16
 *    step of the reference; the reference was checked against diffusers'
 *    fuse_lora), untouched tensors byte-identical, metadata kept;
 * 2. bake peft_a:0.7 + peft_b:0.5 (rank_pattern, alpha_pattern) into the
 *    3-shard BF16 LLaMA folder: same shard names and tensors per shard,
 *    values within one BF16 step of the reference (checked against PEFT's
 *    merge_and_unload), config/tokenizer/index files copied byte for byte;
 * 3. the concatenated merge's up'·down'·alpha'/r' equals numpy's ΔW;
 * 4. --rank k: error of each module = sqrt(Σ discarded s²) of numpy's SVD,
 *    and the report on stdout says the same;
 * 5. round trips kohya -> diffusers -> kohya (byte-identical file),
 *    kohya -> PEFT -> kohya and PEFT -> kohya -> PEFT (identical files),
 *    PEFT -> kohya refused for an LLM, diffusers
 *    (made by diffusers) -> kohya equals the kohya original.
 */
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test.h"
#include "dtype.h"        /* lora_f16_to_f32 */
#include "loraconv.h"     /* lora_conv_from_kohya */
#include "safetensors.h"  /* st_open */
#include "util.h"         /* lora_read_file */

#define FIX "tests/fixtures/merge/"

static const char *bin, *tmp;

static int run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int run(const char *fmt, ...)
{
	char cmd[4096];
	int n = snprintf(cmd, sizeof cmd, "'%s/lora-merge' ", bin);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cmd + n, sizeof cmd - n, fmt, ap);
	va_end(ap);
	int st = system(cmd);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 255;
}

static char *tp(const char *name)
{
	return lora_xasprintf("%s/%s", tmp, name);
}

static int same_bytes(const char *a, const char *b)
{
	size_t na, nb;
	char *pa = lora_read_file(a, &na), *pb = lora_read_file(b, &nb);
	int ok = pa && pb && na == nb && !memcmp(pa, pb, na);
	free(pa);
	free(pb);
	return ok;
}

static float *f32(const st_tensor *t)
{
	float *p = lora_xmalloc((size_t)t->numel * 4 + 4);
	LORA_ASSERT(st_tensor_to_f32(t, p) == 0);
	return p;
}

/* One step of the dtype at |x| (F16 / BF16 / F32). */
static double step(lora_dtype d, double x)
{
	int mant = d == LORA_DTYPE_F16 ? 10 : d == LORA_DTYPE_BF16 ? 7 : 23;
	double ax = fabs(x);
	if (ax < 6.1e-5 && d == LORA_DTYPE_F16)
		return ldexp(1, -24);
	int e;
	frexp(ax, &e);
	return ldexp(1, e - 1 - mant);
}

/* Every tensor of got equals ref's within one step of the dtype (same names,
 * dtypes, shapes). Returns the number of tensors that differ at all. */
static int compare_model(const st_file *got, const st_file *ref, const char *what, int *bad)
{
	int differ = 0;
	*bad = 0;
	if (got->ntensors != ref->ntensors) {
		printf("      %s: %d tensors, reference %d\n", what, got->ntensors, ref->ntensors);
		(*bad)++;
	}
	for (int i = 0; i < ref->ntensors; i++) {
		const st_tensor *r = &ref->tensors[i], *g = st_find(got, r->name);
		if (!g || g->dtype != r->dtype || g->ndim != r->ndim ||
		    memcmp(g->shape, r->shape, sizeof(int64_t) * r->ndim)) {
			printf("      %s: %s missing or of another type/shape\n", what, r->name);
			(*bad)++;
			continue;
		}
		if (!memcmp(g->data, r->data, r->nbytes))
			continue;
		differ++;
		if (!lora_dtype_is_float(r->dtype)) {
			(*bad)++;
			continue;
		}
		float *a = f32(g), *b = f32(r);
		for (int64_t j = 0; j < r->numel; j++)
			if (fabs((double)a[j] - b[j]) > step(r->dtype, b[j]) * 1.0001) {
				printf("      %s: %s[%lld] = %.8g, reference %.8g\n", what, r->name,
				       (long long)j, a[j], b[j]);
				(*bad)++;
				break;
			}
		free(a);
		free(b);
	}
	return differ;
}

/* ---- 1, 2: baking --------------------------------------------------------------------- */

static void test_bake_sd(void)
{
	char *o = tp("sd_baked.safetensors");
	int rc = run("-o '%s' --base " FIX "sd15_tiny.safetensors " FIX "kohya_a.safetensors:0.6 "
	             FIX "kohya_b.safetensors:0.4", o);
	test_cond("bake SD: exit 0", rc == 0);
	st_file *g = st_open(o), *r = st_open(FIX "ref_bake_sd.safetensors");
	st_file *base = st_open(FIX "sd15_tiny.safetensors");
	test_cond("bake SD: output opens", g && r && base);
	if (g && r && base) {
		int bad, differ = compare_model(g, r, "bake SD", &bad);
		test_cond("bake SD: every tensor within one F16 step of float64 W + Σ w·s·B·A", bad == 0);
		test_cond("bake SD: the reference's tensors match bit for bit but for a few ties", differ <= 5);
		int changed = 0, kept = 1;
		for (int i = 0; i < base->ntensors; i++) {
			const st_tensor *b = &base->tensors[i], *t = st_find(g, b->name);
			if (t && memcmp(t->data, b->data, b->nbytes))
				changed++;
			const st_tensor *rt = st_find(r, b->name);
			if (t && rt && !memcmp(rt->data, b->data, b->nbytes))
				kept &= !memcmp(t->data, b->data, b->nbytes);
		}
		test_cond("bake SD: 289 weights changed", changed == 289);
		test_cond("bake SD: the rest byte-identical (VAE, buffers, int64 position_ids)", kept);
		test_cond("bake SD: metadata kept", st_meta(g, "format") && !strcmp(st_meta(g, "format"), "pt"));
	}
	st_close(g);
	st_close(r);
	st_close(base);
	free(o);
}

static void test_bake_llama(void)
{
	char *o = tp("llama_baked");
	int rc = run("-o '%s' -b " FIX "llama_tiny " FIX "peft_a:0.7 " FIX "peft_b/adapter_model.safetensors:0.5", o);
	test_cond("bake LLaMA: exit 0", rc == 0);
	static const char *copied[] = {"config.json", "generation_config.json", "tokenizer_config.json",
	                               "special_tokens_map.json", "model.safetensors.index.json"};
	for (size_t i = 0; i < sizeof copied / sizeof *copied; i++) {
		char *a = lora_xasprintf(FIX "llama_tiny/%s", copied[i]), *b = lora_xasprintf("%s/%s", o, copied[i]);
		test_cond(copied[i], same_bytes(a, b));
		free(a);
		free(b);
	}
	char *ix = lora_xasprintf("%s/model.safetensors.index.json", o);
	st_file *g = st_open(ix), *r = st_open(FIX "ref_bake_llama.safetensors");
	st_file *base = st_open(FIX "llama_tiny/model.safetensors.index.json");
	test_cond("bake LLaMA: sharded output opens", g && r && base);
	if (g && r && base) {
		int bad;
		compare_model(g, r, "bake LLaMA", &bad);
		test_cond("bake LLaMA: every tensor within one BF16 step of float64 W + Σ w·s·B·A", bad == 0);
		test_cond("bake LLaMA: 3 shards", g->nshards == 3);
		int same_shard = 1;
		for (int i = 0; i < base->ntensors; i++) {
			const st_tensor *t = st_find(g, base->tensors[i].name);
			const char *s1 = strrchr(base->shard_paths[base->tensors[i].shard], '/');
			const char *s2 = t ? strrchr(g->shard_paths[t->shard], '/') : NULL;
			same_shard &= s2 && !strcmp(s1, s2);
		}
		test_cond("bake LLaMA: each tensor in the shard it was in", same_shard);
		/* q_proj of layer 1 has rank 3 in peft_b (rank_pattern), v_proj alpha 6 */
		const st_tensor *q = st_find(g, "model.layers.1.self_attn.q_proj.weight");
		const st_tensor *q0 = st_find(base, "model.layers.1.self_attn.q_proj.weight");
		test_cond("bake LLaMA: q_proj changed", q && q0 && memcmp(q->data, q0->data, q->nbytes));
	}
	st_close(g);
	st_close(r);
	st_close(base);
	free(ix);
	free(o);
}

/* ---- 3, 4: merged adapters --------------------------------------------------------------- */

/* ΔW of kohya module k of f: (alpha/r)·up·down, flattened (out, in). */
static float *kohya_dw(const st_file *f, const char *k, int *r_out, int64_t *n)
{
	char nm[512];
	snprintf(nm, sizeof nm, "%s.lora_down.weight", k);
	const st_tensor *d = st_find(f, nm);
	snprintf(nm, sizeof nm, "%s.lora_up.weight", k);
	const st_tensor *u = st_find(f, nm);
	snprintf(nm, sizeof nm, "%s.alpha", k);
	const st_tensor *a = st_find(f, nm);
	if (!d || !u || !a)
		return NULL;
	int r = (int)d->shape[0];
	int64_t out = u->shape[0], in = d->numel / r;
	float alpha, *pu = f32(u), *pd = f32(d);
	LORA_ASSERT(st_tensor_to_f32(a, &alpha) == 0);
	float *dw = lora_xcalloc((size_t)(out * in), 4);
	for (int64_t o = 0; o < out; o++)
		for (int j = 0; j < r; j++)
			for (int64_t i = 0; i < in; i++)
				dw[o * in + i] += alpha / r * pu[o * r + j] * pd[j * in + i];
	free(pu);
	free(pd);
	*r_out = r;
	*n = out * in;
	return dw;
}

/* Compare every module of a merged kohya file with ref_delta; with sv, the
 * error must be the discarded singular values' norm for rank k. */
static void check_merged(const char *path, int k, const char *what)
{
	st_file *f = st_open(path), *ref = st_open(FIX "ref_delta.safetensors");
	test_cond(what, f && ref);
	if (!f || !ref)
		return;
	int n = 0, ok = 0, ok_rank = 0;
	double worst = 0;
	for (int i = 0; i < f->ntensors; i++) {
		const char *name = f->tensors[i].name;
		const char *suf = strstr(name, ".lora_down.weight");
		if (!suf)
			continue;
		char *stem = lora_xasprintf("%.*s", (int)(suf - name), name);
		char *canon = lora_conv_from_kohya(stem);
		char *svn = lora_xasprintf("%s.sv", canon ? canon : "");
		const st_tensor *rt = canon ? st_find(ref, canon) : NULL, *rs = st_find(ref, svn);
		int r;
		int64_t cnt;
		float *dw = kohya_dw(f, stem, &r, &cnt);
		n++;
		if (rt && rs && dw && cnt == rt->numel) {
			float *want = f32(rt);
			double *sv = lora_xmalloc(rs->nbytes);
			memcpy(sv, rs->data, rs->nbytes);
			double e = 0, disc = 0;
			for (int64_t j = 0; j < cnt; j++)
				e += ((double)dw[j] - want[j]) * ((double)dw[j] - want[j]);
			e = sqrt(e);
			for (int64_t j = k > 0 ? k : rs->numel; j < rs->numel; j++)
				disc += sv[j] * sv[j];
			disc = sqrt(disc);
			double err = fabs(e - disc) / sv[0];
			worst = fmax(worst, err);
			ok += err < 1e-5;
			int nrank = 0;     /* numerical rank of the reference ΔW */
			for (int64_t j = 0; j < rs->numel; j++)
				nrank += sv[j] > 1e-6 * sv[0];
			ok_rank += k <= 0 || r == (k < nrank ? k : nrank);
			free(want);
			free(sv);
		}
		free(dw);
		free(stem);
		free(canon);
		free(svn);
	}
	printf("%s: %d modules, worst |error - discarded| / s0 = %.2e\n", what, n, worst);
	test_cond(what, n == 289 && ok == n);
	if (k > 0)
		test_cond("--rank: every module has the requested rank", ok_rank == n);
	st_close(f);
	st_close(ref);
}

static void test_merge(void)
{
	char *o = tp("m.safetensors");
	int rc = run("-o '%s' " FIX "kohya_a.safetensors:0.6 " FIX "kohya_b.safetensors:0.4", o);
	test_cond("merge: exit 0", rc == 0);
	check_merged(o, 0, "concatenated merge: ΔW = Σ w·s·B·A (numpy)");
	st_file *f = st_open(o);
	if (f) {
		test_cond("merge: kohya metadata kept",
		          st_meta(f, "ss_network_module") && !strcmp(st_meta(f, "ss_network_module"), "networks.lora"));
		test_cond("merge: inputs recorded", st_meta(f, "lora_merge_inputs") != NULL);
		const st_tensor *a = st_find(f, "lora_unet_mid_block_attentions_0_proj_in.alpha");
		float v = 0;
		test_cond("merge: alpha = new rank (2 + 3)", a && st_tensor_to_f32(a, &v) == 0 && v == 5.0f);
		st_close(f);
	}
	free(o);

	for (int k = 1; k <= 3; k++) {
		char *o2 = tp("r.safetensors"), *rep = tp("r.tsv");
		rc = run("--rank %d -o '%s' " FIX "kohya_a.safetensors:0.6 " FIX "kohya_b.safetensors:0.4 >'%s'",
		         k, o2, rep);
		test_cond("--rank: exit 0", rc == 0);
		char what[64];
		snprintf(what, sizeof what, "--rank %d: error = discarded singular values", k);
		check_merged(o2, k, what);
		/* the report: one line per module with the same error */
		size_t len;
		char *txt = lora_read_file(rep, &len);
		int lines = 0, ok = 0;
		st_file *ref = st_open(FIX "ref_delta.safetensors");
		for (char *p = txt, *line; txt && ref && (line = strsep(&p, "\n")) != NULL;) {
			char name[400];
			int rin, rout;
			double en, err;
			if (sscanf(line, "%399s %d %d %lf %lf", name, &rin, &rout, &en, &err) != 5)
				continue;
			lines++;
			char *svn = lora_xasprintf("%s.sv", name);
			const st_tensor *rs = st_find(ref, svn);
			if (rs) {
				double *sv = lora_xmalloc(rs->nbytes), all = 0, disc = 0;
				memcpy(sv, rs->data, rs->nbytes);
				for (int j = 0; j < rs->numel; j++) {
					all += sv[j] * sv[j];
					if (j >= k)
						disc += sv[j] * sv[j];
				}
				ok += fabs(err - sqrt(disc)) <= 1e-4 * sv[0] + 1e-6 &&
				      fabs(en - (all - disc) / all) <= 1e-5;
				free(sv);
			}
			free(svn);
		}
		test_cond("--rank: report has a correct line per module", lines == 289 && ok == 289);
		st_close(ref);
		free(txt);
		free(o2);
		free(rep);
	}
}

/* ---- 5. conversions ------------------------------------------------------------------------- */

/* Same modules (by canonical name), same tensor bytes and dtypes, same alpha. */
static int same_kohya(const char *a, const char *b)
{
	st_file *fa = st_open(a), *fb = st_open(b);
	int ok = fa && fb && fa->ntensors == fb->ntensors;
	for (int i = 0; ok && i < fa->ntensors; i++) {
		const char *n = fa->tensors[i].name, *dot = strchr(n, '.');
		char *stem = lora_xasprintf("%.*s", (int)(dot - n), n);
		char *c = lora_conv_from_kohya(stem), *k = c ? lora_conv_to_kohya(c) : NULL;
		char *nb = lora_xasprintf("%s%s", k ? k : "", dot);
		const st_tensor *ta = &fa->tensors[i], *tb = st_find(fb, nb);
		ok = tb && ta->dtype == tb->dtype && ta->nbytes == tb->nbytes &&
		     ta->ndim == tb->ndim && !memcmp(ta->shape, tb->shape, sizeof(int64_t) * ta->ndim) &&
		     !memcmp(ta->data, tb->data, ta->nbytes);
		if (!ok)
			printf("      %s vs %s: %s differs\n", a, b, n);
		free(stem);
		free(c);
		free(k);
		free(nb);
	}
	st_close(fa);
	st_close(fb);
	return ok;
}

static int same_meta(const char *a, const char *b)
{
	st_file *fa = st_open(a), *fb = st_open(b);
	int ok = fa && fb;
	for (int i = 0; ok && i < fa->nmeta; i++) {
		const char *v = st_meta(fb, fa->meta_keys[i]);
		ok = v && !strcmp(v, fa->meta_vals[i]);
	}
	st_close(fa);
	st_close(fb);
	return ok;
}

static void test_convert(void)
{
	char *d = tp("a.diffusers.safetensors"), *k = tp("a.back.safetensors");
	test_cond("kohya -> diffusers", run("--to diffusers -o '%s' " FIX "kohya_a.safetensors", d) == 0);
	test_cond("diffusers -> kohya", run("--to kohya -o '%s' '%s'", k, d) == 0);
	test_cond("kohya -> diffusers -> kohya: identical file", same_bytes(k, FIX "kohya_a.safetensors"));
	st_file *f = st_open(d);
	test_cond("diffusers output: lora_adapter_metadata", f && st_meta(f, "lora_adapter_metadata"));
	test_cond("diffusers output: PEFT keys",
	          f && st_find(f, "unet.down_blocks.0.attentions.0.proj_in.lora_A.weight"));
	st_close(f);

	char *p = tp("b.peft"), *kb = tp("b.back.safetensors");
	test_cond("kohya -> peft", run("--to peft -o '%s' " FIX "kohya_b.safetensors", p) == 0);
	test_cond("peft -> kohya", run("--to kohya -o '%s' '%s'", kb, p) == 0);
	test_cond("kohya -> peft -> kohya: same modules, bytes and alphas",
	          same_kohya(FIX "kohya_b.safetensors", kb));
	test_cond("kohya -> peft -> kohya: metadata kept", same_meta(FIX "kohya_b.safetensors", kb));
	char *pa = tp("a.peft"), *ka = tp("a.peft.back.safetensors");
	test_cond("kohya a (conv ranks, alpha_pattern) -> peft -> kohya",
	          run("--to peft -o '%s' " FIX "kohya_a.safetensors", pa) == 0 &&
	          run("--to kohya -o '%s' '%s'", ka, pa) == 0 && same_bytes(ka, FIX "kohya_a.safetensors"));

	/* and the other way: PEFT -> kohya -> PEFT gives the same folder */
	char *pa2 = tp("a.peft2");
	test_cond("peft -> kohya -> peft", run("--to peft -o '%s' '%s'", pa2, ka) == 0);
	static const char *files[] = {"unet/adapter_model.safetensors", "unet/adapter_config.json"};
	for (int i = 0; i < 2; i++) {
		char *f1 = lora_xasprintf("%s/%s", pa, files[i]), *f2 = lora_xasprintf("%s/%s", pa2, files[i]);
		test_cond("peft -> kohya -> peft: identical file", same_bytes(f1, f2));
		free(f1);
		free(f2);
	}
	free(pa2);

	char *dk = tp("da.safetensors");
	test_cond("diffusers (made by diffusers) -> kohya",
	          run("--to kohya -o '%s' " FIX "diffusers_a.safetensors", dk) == 0);
	test_cond("diffusers_a -> kohya equals kohya_a", same_kohya(FIX "kohya_a.safetensors", dk));

	char *lk = tp("l.safetensors");
	test_cond("LLM adapter -> kohya refused (exit 1)",
	          run("--to kohya -o '%s' " FIX "peft_a 2>/dev/null", lk) == 1 && access(lk, F_OK) != 0);
	char *lp = tp("l.peft"), *lpcfg = tp("l.peft/adapter_model.safetensors");
	test_cond("PEFT -> PEFT copy", run("-o '%s' " FIX "peft_b", lp) == 0 &&
	          same_bytes(lpcfg, FIX "peft_b/adapter_model.safetensors"));
	free(d);
	free(k);
	free(p);
	free(kb);
	free(pa);
	free(ka);
	free(dk);
	free(lk);
	free(lp);
	free(lpcfg);
}

int main(void)
{
	bin = getenv("BIN");
	tmp = getenv("TMPDIR");
	if (!bin || !tmp) {
		printf("BIN and TMPDIR not set: run through tests/run.sh\n");
		return 77;
	}
	char *tool = lora_xasprintf("%s/lora-merge", bin);
	if (access(tool, X_OK) != 0) {
		printf("no %s\n", tool);
		free(tool);
		return 77;
	}
	free(tool);
	test_bake_sd();
	test_bake_llama();
	test_merge();
	test_convert();
	return test_report();
}
