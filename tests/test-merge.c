/* test-merge.c: lib/loraconv.c and lib/lowrank.c against the references in
 * tests/fixtures/merge (tests/gen/gen_merge.py).
 *
 * 1. names: for each of the 289 modules of names.tsv, the kohya name (both
 *    UNet spellings) gives the module path diffusers loaded it into, the
 *    reverse gives kohya's name, and the base weight is the LDM key that
 *    diffusers' convert_ldm_unet_checkpoint maps to that module;
 *    non-SD1.5 names are refused;
 * 2. algebra: for every module of kohya_a:0.6 + kohya_b:0.4 the weighted
 *    sum of products equals numpy's float64 ΔW, the singular values of the
 *    factored truncation equal numpy's SVD, and the error of the rank-k
 *    truncation is sqrt(Σ_{i≥k} s_i²).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "test.h"
#include "loraconv.h"     /* lora_conv_* */
#include "lowrank.h"      /* lora_lowrank_* */
#include "safetensors.h"  /* st_open */
#include "util.h"         /* lora_read_file */

#define FIX "tests/fixtures/merge/"

static int streq(const char *a, const char *b) { return a && b && !strcmp(a, b); }

/* ---- 1. names ---------------------------------------------------------------------- */

static int nrows;
static char *rows[400][4];     /* kohya, kohya (LDM spelling), canonical, base weight */

static void load_names(void)
{
	size_t len;
	char *buf = lora_read_file(FIX "names.tsv", &len);
	test_cond("names.tsv readable", buf != NULL);
	if (!buf)
		return;
	for (char *p = buf, *line; (line = strsep(&p, "\n")) != NULL;) {
		if (!*line || *line == '#' || nrows == 400)
			continue;
		int k = 0;
		for (char *f; k < 4 && (f = strsep(&line, "\t")) != NULL;)
			rows[nrows][k++] = lora_xstrdup(f);
		test_cond("names.tsv: four fields", k == 4);
		if (k == 4)
			nrows++;
	}
	free(buf);
}

static void test_names(void)
{
	load_names();
	test_cond("names.tsv: 289 modules", nrows == 289);
	int ok_from = 0, ok_ldm = 0, ok_to = 0, ok_base = 0, ok_peft = 0, ok_ldm_rt = 0;
	for (int i = 0; i < nrows; i++) {
		char *a = lora_conv_from_kohya(rows[i][0]);
		char *b = lora_conv_from_kohya(rows[i][1]);
		char *k = lora_conv_to_kohya(rows[i][2]);
		char *w = lora_conv_base_weight(rows[i][2]);
		char *p = lora_conv_to_peft(rows[i][2]);
		const char *dot = strchr(rows[i][2], '.');
		char comp[32];
		snprintf(comp, sizeof comp, "%.*s", (int)(dot - rows[i][2]), rows[i][2]);
		char *q = lora_conv_from_peft(p, comp);
		ok_from += streq(a, rows[i][2]);
		ok_ldm += streq(b, rows[i][2]);
		ok_to += streq(k, rows[i][0]);
		ok_base += streq(w, rows[i][3]);
		ok_peft += streq(q, rows[i][2]) && !strncmp(p, "base_model.model.", 17) &&
		           !strcmp(p + 17, dot + 1);
		if (!streq(a, rows[i][2]) || !streq(b, rows[i][2]) || !streq(w, rows[i][3]))
			printf("      %s: got %s / %s / %s\n", rows[i][0], a, b, w);
		if (!strncmp(rows[i][2], "unet.", 5)) {
			char *l = lora_conv_unet_to_ldm(rows[i][2] + 5);
			char *d = l ? lora_conv_unet_from_ldm(l) : NULL;
			ok_ldm_rt += streq(d, rows[i][2] + 5);
			free(l);
			free(d);
		} else {
			ok_ldm_rt++;
		}
		free(a);
		free(b);
		free(k);
		free(w);
		free(p);
		free(q);
	}
	test_cond("kohya -> canonical (as diffusers loads it)", ok_from == nrows);
	test_cond("kohya LDM spelling -> canonical", ok_ldm == nrows);
	test_cond("canonical -> kohya", ok_to == nrows);
	test_cond("canonical -> LDM base weight", ok_base == nrows);
	test_cond("canonical <-> PEFT path", ok_peft == nrows);
	test_cond("UNet diffusers -> LDM -> diffusers", ok_ldm_rt == nrows);

	/* names that are not SD 1.5 modules */
	static const char *bad[] = {
		"lora_unet_down_blocks_3_attentions_0_proj_in",   /* no attention at level 3 */
		"lora_unet_up_blocks_0_attentions_0_proj_in",     /* nor in up block 0 */
		"lora_unet_down_blocks_4_resnets_0_conv1",
		"lora_unet_input_blocks_12_1_proj_in",
		"lora_unet_output_blocks_2_1_proj_in",            /* that one is an upsampler */
		"lora_unet_foo_bar",
		"lora_te_encoder_layers_0_mlp_fc1",               /* no text_model */
		"model_layers_0_q_proj",
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		char *c = lora_conv_from_kohya(bad[i]);
		test_cond(bad[i], c == NULL && strstr(lora_errmsg(), bad[i]));
		free(c);
	}
	/* an LDM path of 64 parts is 65 in diffusers' spelling (middle_block.1 ->
	 * mid_block.attentions.0), which nothing converts back: refused both ways
	 * (found by fuzz-loraconv); 63 parts still convert */
	for (int parts = 63; parts <= 64; parts++) {
		char *ldm = lora_xstrdup("middle_block.1");
		for (int i = 2; i < parts; i++) {
			char *t = lora_xasprintf("%s.x", ldm);
			free(ldm);
			ldm = t;
		}
		char *kn = lora_xasprintf("lora_unet_%s", ldm);
		for (char *q = kn; *q; q++)
			*q = *q == '.' ? '_' : *q;
		char *d = lora_conv_unet_from_ldm(ldm), *cn = lora_conv_from_kohya(kn);
		char *back = cn ? lora_conv_to_kohya(cn) : NULL, *c2 = back ? lora_conv_from_kohya(back) : NULL;
		if (parts == 63)
			test_cond("63-part LDM path: kohya -> canonical -> kohya -> canonical", d && cn && streq(c2, cn));
		else
			test_cond("64-part LDM path refused (its diffusers form has 65)", !d && !cn);
		free(ldm);
		free(kn);
		free(d);
		free(cn);
		free(back);
		free(c2);
	}
	/* LLM names */
	char *w = lora_conv_base_weight("model.layers.3.mlp.down_proj");
	test_cond("LLM base weight", streq(w, "model.layers.3.mlp.down_proj.weight"));
	free(w);
	char *c = lora_conv_from_peft("base_model.model.model.layers.0.self_attn.q_proj", NULL);
	test_cond("LLM PEFT path", streq(c, "model.layers.0.self_attn.q_proj"));
	test_cond("LLM arch", lora_conv_arch(c) == LORA_ARCH_LLM);
	char *k = lora_conv_to_kohya(c);
	test_cond("no kohya name for an LLM module", k == NULL);
	free(c);
	test_cond("SD arch", lora_conv_arch("unet.mid_block.attentions.0.proj_in") == LORA_ARCH_SD15);
}

/* ---- 2. algebra ------------------------------------------------------------------------ */

static float *f32(const st_tensor *t)
{
	float *p = lora_xmalloc((size_t)t->numel * 4);
	LORA_ASSERT(st_tensor_to_f32(t, p) == 0);
	return p;
}

/* Append w·(alpha/r)·B and A of kohya module k in file f to up (out, R) /
 * down (R, in) at column/row offset *off. */
static int append(const st_file *f, const char *k, double w, float *up, float *down,
                  int out, int R, int in, int *off)
{
	char n[512];
	snprintf(n, sizeof n, "%s.lora_down.weight", k);
	const st_tensor *d = st_find(f, n);
	snprintf(n, sizeof n, "%s.lora_up.weight", k);
	const st_tensor *u = st_find(f, n);
	snprintf(n, sizeof n, "%s.alpha", k);
	const st_tensor *a = st_find(f, n);
	if (!d || !u || !a)
		return 0;
	int r = (int)d->shape[0];
	float alpha, *pu = f32(u), *pd = f32(d);
	LORA_ASSERT(st_tensor_to_f32(a, &alpha) == 0);
	for (int o = 0; o < out; o++)
		for (int j = 0; j < r; j++)
			up[(size_t)o * R + *off + j] = (float)(w * alpha / r) * pu[o * r + j];
	memcpy(down + (size_t)*off * in, pd, (size_t)r * in * 4);
	*off += r;
	free(pu);
	free(pd);
	return r;
}

static double fro_diff(const float *a, const float *b, size_t n)
{
	double s = 0;
	for (size_t i = 0; i < n; i++)
		s += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
	return sqrt(s);
}

static double fro(const float *a, size_t n)
{
	double s = 0;
	for (size_t i = 0; i < n; i++)
		s += (double)a[i] * a[i];
	return sqrt(s);
}

static void test_algebra(void)
{
	st_file *fa = st_open(FIX "kohya_a.safetensors");
	st_file *fb = st_open(FIX "kohya_b.safetensors");
	st_file *fr = st_open(FIX "ref_delta.safetensors");
	test_cond("fixtures open", fa && fb && fr);
	if (!fa || !fb || !fr)
		return;
	int nmod = 0, ok_dw = 0, ok_sv = 0, ok_err = 0, ok_full = 0, ok_energy = 0;
	double worst_dw = 0, worst_sv = 0, worst_err = 0;
	for (int i = 0; i < nrows; i++) {
		const st_tensor *ref = st_find(fr, rows[i][2]);
		char svn[512];
		snprintf(svn, sizeof svn, "%s.sv", rows[i][2]);
		const st_tensor *rsv = st_find(fr, svn);
		if (!ref)
			continue;
		nmod++;
		int out = (int)ref->shape[0], in = (int)(ref->numel / out);
		int R = 8;
		float *up = lora_xcalloc((size_t)out * R, 4), *down = lora_xcalloc((size_t)R * in, 4);
		int off = 0;
		append(fa, rows[i][0], 0.6, up, down, out, R, in, &off);
		append(fb, rows[i][1], 0.4, up, down, out, R, in, &off);
		/* the factors are packed with leading dimension R; repack to off */
		float *u2 = lora_xmalloc((size_t)out * off * 4);
		for (int o = 0; o < out; o++)
			memcpy(u2 + (size_t)o * off, up + (size_t)o * R, (size_t)off * 4);
		float *dw = lora_xcalloc((size_t)out * in, 4), *want = f32(ref);
		lora_lowrank_addmul(dw, u2, down, out, off, in, 1.0f);
		double e = fro_diff(dw, want, (size_t)out * in) / fro(want, (size_t)out * in);
		worst_dw = fmax(worst_dw, e);
		ok_dw += e < 1e-6;

		int nsv = lora_lowrank_nsv(out, off, in);
		double *sv = lora_xmalloc((size_t)nsv * sizeof *sv);
		double *np = lora_xmalloc((size_t)rsv->numel * sizeof *np);
		memcpy(np, rsv->data, rsv->nbytes);
		float *tu = lora_xmalloc((size_t)out * off * 4), *td = lora_xmalloc((size_t)off * in * 4);
		int good_sv = 1, good_err = 1;
		for (int k = 0; k <= nsv; k++) {
			int kk = lora_lowrank_truncate(u2, down, out, off, in, k, tu, td, sv);
			if (kk != k) {
				good_sv = good_err = 0;
				break;
			}
			float *approx = lora_xcalloc((size_t)out * in, 4);
			lora_lowrank_addmul(approx, tu, td, out, k, in, 1.0f);
			/* error against numpy's ΔW; numpy's discarded singular values */
			double err = fro_diff(approx, want, (size_t)out * in);
			double disc = lora_lowrank_residual(np, (int)rsv->numel, k);
			double tol = 1e-5 * np[0];
			worst_err = fmax(worst_err, fabs(err - disc) / np[0]);
			good_err &= fabs(err - disc) <= tol;
			if (k == nsv)
				ok_full += err <= tol;
			free(approx);
		}
		for (int j = 0; j < nsv && j < rsv->numel; j++) {
			worst_sv = fmax(worst_sv, fabs(sv[j] - np[j]) / np[0]);
			good_sv &= fabs(sv[j] - np[j]) <= 1e-5 * np[0];
		}
		/* numpy's sv count is min(out, in); beyond nsv they are zero */
		for (int j = nsv; j < rsv->numel; j++)
			good_sv &= np[j] <= 1e-5 * np[0];
		double en = lora_lowrank_energy(sv, nsv, 1);
		double en_np = np[0] * np[0] / pow(lora_lowrank_residual(np, (int)rsv->numel, 0), 2);
		ok_energy += fabs(en - en_np) < 1e-6;
		ok_sv += good_sv;
		ok_err += good_err;
		free(up);
		free(down);
		free(u2);
		free(dw);
		free(want);
		free(sv);
		free(np);
		free(tu);
		free(td);
	}
	printf("algebra: %d modules; worst rel ΔW error %.2e, sv %.2e, truncation error %.2e\n",
	       nmod, worst_dw, worst_sv, worst_err);
	test_cond("modules with a reference ΔW", nmod == 289);
	test_cond("Σ w·s·B·A = numpy ΔW (f32 rounding)", ok_dw == nmod);
	test_cond("singular values = numpy's", ok_sv == nmod);
	test_cond("rank-k error = sqrt(Σ discarded s²), every k", ok_err == nmod);
	test_cond("full-rank truncation reproduces ΔW", ok_full == nmod);
	test_cond("energy of rank 1 = s0²/Σs²", ok_energy == nmod);
	st_close(fa);
	st_close(fb);
	st_close(fr);

	/* edge cases: zero product, rank 0, more rank than there is */
	float B[6] = {0}, A[6] = {1, 2, 3, 4, 5, 6}, U[6], D[6];
	double sv[2];
	int k = lora_lowrank_truncate(B, A, 3, 2, 3, 5, U, D, sv);
	test_cond("zero factor: k = min(rank, nsv)", k == 2);
	test_cond("zero factor: zero singular values", sv[0] == 0 && sv[1] == 0);
	test_cond("zero factor: energy 1", lora_lowrank_energy(sv, 2, 0) == 1.0);
	test_cond("rank 0", lora_lowrank_truncate(A, A, 3, 2, 3, 0, U, D, sv) == 0);
}

int main(void)
{
	test_names();
	test_algebra();
	for (int i = 0; i < nrows; i++)
		for (int k = 0; k < 4; k++)
			free(rows[i][k]);
	return test_report();
}
