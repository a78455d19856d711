/* test-loraformat.c: lib/loraformat.c against names and scales from the references.
 *
 * names.tsv: every LoRA-able module of an SD 1.5-shaped UNet and of the CLIP
 *   text encoder: kohya name -> module path as diffusers' kohya converter maps
 *   it -> LDM single-file name (checked against diffusers' LDM converter).
 * modules.tsv: rank, alpha and scale per module of the PEFT (PEFT's own
 *   LoraLayer.scaling), kohya and diffusers fixtures.
 * Plus kind detection of every fixture.
 */
#include <stdlib.h>
#include <math.h>
#include <string.h>

#include "test.h"
#include "loraformat.h"     /* lora_format_open, lora_kind_detect, name mapping */
#include "util.h"

#define FIX "tests/fixtures/safetensors/"

/* Split a tab-separated line in place; returns the number of fields. */
static int split(char *line, char **f, int max)
{
	int n = 0;
	line[strcspn(line, "\n")] = 0;
	while (n < max) {
		f[n++] = line;
		char *t = strchr(line, '\t');
		if (!t)
			break;
		*t = 0;
		line = t + 1;
	}
	return n;
}

static void check_names(void)
{
	FILE *fp = fopen(FIX "names.tsv", "r");
	test_cond("names.tsv opens", fp != NULL);
	if (!fp)
		return;
	char line[1024];
	int n = 0, bad_path = 0, bad_ldm = 0;
	while (fgets(line, sizeof line, fp)) {
		char *f[3];
		if (line[0] == '#' || split(line, f, 3) != 3)
			continue;
		char *p = lora_kohya_to_path(f[0]);
		if (strcmp(p, f[1]) && bad_path++ < 5)
			printf("      %s -> %s, want %s\n", f[0], p, f[1]);
		if (!strncmp(f[0], "lora_unet_", 10)) {
			char *l = lora_sd_unet_to_ldm(p);
			if (strcmp(l, f[2]) && bad_ldm++ < 5)
				printf("      %s -> %s, want %s\n", p, l, f[2]);
			free(l);
		}
		free(p);
		n++;
	}
	fclose(fp);
	printf("      %d module names checked\n", n);
	test_cond("names.tsv has the SD 1.5 UNet and text encoder", n >= 280 + 72);
	test_cond("kohya names map to diffusers' module paths", bad_path == 0);
	test_cond("diffusers paths map to LDM names as diffusers' converter does", bad_ldm == 0);
}

static void check_modules(void)
{
	static const char *files[] = {
		"peft/adapter_model.safetensors", "kohya.safetensors",
		"diffusers/pytorch_lora_weights.safetensors",
	};
	static const lora_kind kinds[] = { LORA_KIND_PEFT, LORA_KIND_KOHYA, LORA_KIND_DIFFUSERS };
	for (int k = 0; k < 3; k++) {
		char path[256];
		snprintf(path, sizeof path, FIX "%s", files[k]);
		st_file *f = st_open(path);
		test_cond(files[k], f != NULL);
		if (!f)
			continue;
		lora_format *lf = lora_format_open(f, NULL);
		test_cond(files[k], lf != NULL);
		if (!lf)
			continue;
		test_cond("kind", lf->kind == kinds[k]);
		test_cond("complete modules", lora_format_check(lf) == 0);
		test_cond("no stray tensors", lf->nother == 0);
		if (kinds[k] == LORA_KIND_PEFT) {
			test_cond("adapter_config.json found", lf->config_path &&
			          strstr(lf->config_path, "peft/adapter_config.json"));
			test_cond("base model from the config", lf->base_model &&
			          !strcmp(lf->base_model, "tiny-random-llama"));
		}
		if (kinds[k] == LORA_KIND_KOHYA)
			test_cond("base model from ss_sd_model_name", lf->base_model &&
			          !strcmp(lf->base_model, "v1-5-pruned-emaonly.safetensors"));
		FILE *fp = fopen(FIX "modules.tsv", "r");
		char line[1024];
		int n = 0, bad = 0;
		while (fp && fgets(line, sizeof line, fp)) {
			char *c[5];
			if (line[0] == '#' || split(line, c, 5) != 5 || strcmp(c[0], files[k]))
				continue;
			n++;
			const lora_module *m = NULL;
			for (int i = 0; i < lf->nmodules; i++)
				if (!strcmp(kinds[k] == LORA_KIND_PEFT ? lf->modules[i].path : lf->modules[i].name, c[1]))
					m = &lf->modules[i];
			if (!m) {
				printf("      %s: no module %s\n", files[k], c[1]);
				bad++;
				continue;
			}
			int ok = m->rank == atoi(c[2]) && fabs(m->alpha - atof(c[3])) < 1e-6 &&
			         fabs(m->scale - atof(c[4])) < 1e-6 && m->down && m->up;
			if (!ok && bad++ < 5)
				printf("      %s: r %d alpha %g scale %g, want %s %s %s\n", c[1], m->rank,
				       m->alpha, m->scale, c[2], c[3], c[4]);
		}
		if (fp)
			fclose(fp);
		char d[256];
		snprintf(d, sizeof d, "%s: %d modules, rank/alpha/scale as the reference", files[k], n);
		test_cond(d, n > 0 && n == lf->nmodules && bad == 0);
		lora_format_free(lf);
		st_close(f);
	}
}

static void check_kohya_details(void)
{
	st_file *f = st_open(FIX "kohya.safetensors");
	lora_format *lf = f ? lora_format_open(f, NULL) : NULL;
	test_cond("kohya opens", lf != NULL);
	if (!lf)
		return;
	int te = 0, unet = 0, conv = 0;
	for (int i = 0; i < lf->nmodules; i++) {
		const lora_module *m = &lf->modules[i];
		te += m->part == LORA_PART_TEXT;
		unet += m->part == LORA_PART_UNET;
		conv += m->down->ndim == 4 && m->down->shape[2] == 3;
		test_cond("alpha from the tensor", m->alpha_from == LORA_ALPHA_TENSOR);
		if (!strcmp(m->name, "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_out_0"))
			test_cond("kohya base name",
			          !strcmp(m->base, "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn1.to_out.0"));
		if (!strcmp(m->name, "lora_te_text_model_encoder_layers_11_mlp_fc2"))
			test_cond("kohya text encoder base name",
			          !strcmp(m->base, "cond_stage_model.transformer.text_model.encoder.layers.11.mlp.fc2"));
	}
	test_cond("12 text encoder modules", te == 12);
	test_cond("11 UNet modules", unet == 11);
	test_cond("one 3x3 conv module", conv == 1);
	lora_format_free(lf);
	st_close(f);
}

static void check_kinds(void)
{
	static const struct { const char *file; lora_kind kind; } k[] = {
		{ "kohya.safetensors", LORA_KIND_KOHYA },
		{ "peft/adapter_model.safetensors", LORA_KIND_PEFT },
		{ "diffusers/pytorch_lora_weights.safetensors", LORA_KIND_DIFFUSERS },
		{ "sd15.safetensors", LORA_KIND_SD15 },
		{ "llama1/model.safetensors", LORA_KIND_LLAMA },
		{ "llama/model.safetensors.index.json", LORA_KIND_LLAMA },
		{ "dtypes.safetensors", LORA_KIND_UNKNOWN },
		{ "empty.safetensors", LORA_KIND_UNKNOWN },
	};
	for (size_t i = 0; i < sizeof k / sizeof k[0]; i++) {
		char path[256];
		snprintf(path, sizeof path, FIX "%s", k[i].file);
		st_file *f = st_open(path);
		test_cond(k[i].file, f && lora_kind_detect(f) == k[i].kind);
		lora_format *lf = f ? lora_format_open(f, NULL) : NULL;
		test_cond("non-LoRA files have no modules", lf && (lora_kind_is_lora(k[i].kind) || lf->nmodules == 0));
		lora_format_free(lf);
		st_close(f);
	}
	test_cond("kind names", !strcmp(lora_kind_name(LORA_KIND_PEFT), "peft") &&
	          !strcmp(lora_kind_desc(LORA_KIND_KOHYA), "kohya/A1111 SD LoRA"));
	/* a bad adapter_config.json is an error naming it */
	st_file *f = st_open(FIX "peft/adapter_model.safetensors");
	lora_format *lf = lora_format_open(f, FIX "names.tsv");
	test_cond("bad config rejected", lf == NULL && strstr(lora_errmsg(), "names.tsv"));
	lf = lora_format_open(f, "");
	test_cond("no config: alpha defaults to rank", lf && lf->nmodules && lf->modules[0].scale == 1.0 &&
	          lf->modules[0].alpha_from == LORA_ALPHA_DEFAULT);
	lora_format_free(lf);
	st_close(f);
}

/* diffusers' save_lora_weights keeps alphas in lora_adapter_metadata:
 * diffusers_a is kohya_a loaded into diffusers and saved back
 * (tests/gen/gen_merge.py), so every module's scale must equal the scale
 * kohya_a's alpha tensors give the same base weight. */
static void check_diffusers_metadata(void)
{
	st_file *fk = st_open("tests/fixtures/merge/kohya_a.safetensors");
	st_file *fd = st_open("tests/fixtures/merge/diffusers_a.safetensors");
	lora_format *k = fk ? lora_format_open(fk, NULL) : NULL;
	lora_format *d = fd ? lora_format_open(fd, NULL) : NULL;
	test_cond("diffusers_a and kohya_a open", k && d && d->kind == LORA_KIND_DIFFUSERS);
	int matched = 0, same = 0, from_meta = 0;
	for (int i = 0; d && k && i < d->nmodules; i++) {
		const lora_module *md = &d->modules[i];
		from_meta += md->alpha_from == LORA_ALPHA_METADATA;
		for (int j = 0; j < k->nmodules; j++)
			if (md->base && k->modules[j].base && !strcmp(md->base, k->modules[j].base)) {
				matched++;
				same += fabs(md->scale - k->modules[j].scale) < 1e-9;
				break;
			}
	}
	test_cond("diffusers modules matched to kohya ones", d && matched == d->nmodules && matched > 200);
	test_cond("alphas read from lora_adapter_metadata", d && from_meta == d->nmodules);
	test_cond("diffusers scale == kohya scale for every module", same == matched);
	printf("      diffusers_a: %d modules, %d with kohya_a's scale\n", matched, same);
	lora_format_free(k);
	lora_format_free(d);
	st_close(fk);
	st_close(fd);
}

int main(void)
{
	check_names();
	check_modules();
	check_kohya_details();
	check_kinds();
	check_diffusers_metadata();
	return test_report();
}
