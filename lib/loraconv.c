/* loraconv.c: see loraconv.h. The UNet table is FORMATS.md §2.8 / §3.2. */
#include "loraconv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/* ---- helpers --------------------------------------------------------------- */

static int starts(const char *s, const char *p) { return strncmp(s, p, strlen(p)) == 0; }

/* Parse a whole non-negative decimal component (no sign, no leading junk). */
static int num(const char *s, int *out)
{
	if (!*s || strlen(s) > 6 || (s[0] == '0' && s[1]))   /* no "01": it would not map back */
		return -1;
	for (const char *p = s; *p; p++)
		if (*p < '0' || *p > '9')
			return -1;
	*out = atoi(s);
	return 0;
}

enum { MAX_PARTS = 64 };

/* Split a dotted path into at most MAX_PARTS non-empty components, in a
 * copy owned by *buf. -1 for an empty component or too many. */
static int split(const char *path, char **buf, char **comp)
{
	*buf = lora_xstrdup(path);
	int n = 0;
	for (char *p = *buf, *tok; (tok = strsep(&p, ".")) != NULL;) {
		if (n == MAX_PARTS || !*tok)
			return -1;
		comp[n++] = tok;
	}
	return n;
}

/* Join comp[from..n) with dots. "" when from == n. */
static char *join(char **comp, int from, int n)
{
	size_t len = 1;
	for (int i = from; i < n; i++)
		len += strlen(comp[i]) + 1;
	char *s = lora_xmalloc(len), *o = s;
	*o = 0;
	for (int i = from; i < n; i++)
		o += sprintf(o, "%s%s", i > from ? "." : "", comp[i]);
	return s;
}

/* ---- UNet resnet inner names ---------------------------------------------------- */

static const char *res_names[][2] = {      /* diffusers, LDM */
	{"norm1", "in_layers.0"}, {"conv1", "in_layers.2"},
	{"norm2", "out_layers.0"}, {"conv2", "out_layers.3"},
	{"time_emb_proj", "emb_layers.1"}, {"conv_shortcut", "skip_connection"},
};

/* rest of a resnet's name, renamed from column `from` of res_names to the
 * other (0: diffusers, 1: LDM); NULL when it names no resnet part. */
static char *res_rename(const char *rest, int from)
{
	for (size_t i = 0; i < sizeof res_names / sizeof *res_names; i++) {
		size_t l = strlen(res_names[i][from]);
		if (strncmp(rest, res_names[i][from], l) == 0 && (rest[l] == 0 || rest[l] == '.'))
			return lora_xasprintf("%s%s", res_names[i][!from], rest + l);
	}
	return NULL;
}

/* ---- UNet: diffusers -> LDM --------------------------------------------------- */

static char *with_rest(const char *head, char **comp, int from, int n)
{
	char *rest = join(comp, from, n);
	char *s = lora_xasprintf("%s%s%s", head, *rest ? "." : "", rest);
	free(rest);
	return s;
}

/* head + "." + comp[from..n) with the resnet part renamed (to_ldm: from the
 * diffusers spelling to LDM's, else back); NULL if it is no resnet part. */
static char *res_block(const char *head, char **comp, int from, int n, int to_ldm)
{
	if (from >= n)
		return NULL;
	char *rest = join(comp, from, n);
	char *r = res_rename(rest, to_ldm ? 0 : 1);
	free(rest);
	if (!r)
		return NULL;
	char *s = lora_xasprintf("%s.%s", head, r);
	free(r);
	return s;
}

static char *unet_to_ldm(char **c, int n)
{
	char head[64];
	int i, j;
	if (n >= 2 && !strcmp(c[0], "time_embedding")) {
		if (!strcmp(c[1], "linear_1"))
			return with_rest("time_embed.0", c, 2, n);
		if (!strcmp(c[1], "linear_2"))
			return with_rest("time_embed.2", c, 2, n);
		return NULL;
	}
	if (!strcmp(c[0], "conv_in"))
		return with_rest("input_blocks.0.0", c, 1, n);
	if (!strcmp(c[0], "conv_norm_out"))
		return with_rest("out.0", c, 1, n);
	if (!strcmp(c[0], "conv_out"))
		return with_rest("out.2", c, 1, n);
	if (n >= 4 && !strcmp(c[0], "down_blocks") && !num(c[1], &i) && !num(c[3], &j) && i <= 3) {
		if (!strcmp(c[2], "resnets") && j <= 1) {
			snprintf(head, sizeof head, "input_blocks.%d.0", 3 * i + j + 1);
			return res_block(head, c, 4, n, 1);
		}
		if (!strcmp(c[2], "attentions") && j <= 1 && i <= 2) {
			snprintf(head, sizeof head, "input_blocks.%d.1", 3 * i + j + 1);
			return with_rest(head, c, 4, n);
		}
		if (!strcmp(c[2], "downsamplers") && j == 0 && i <= 2 && n >= 5 && !strcmp(c[4], "conv")) {
			snprintf(head, sizeof head, "input_blocks.%d.0.op", 3 * i + 3);
			return with_rest(head, c, 5, n);
		}
		return NULL;
	}
	if (n >= 3 && !strcmp(c[0], "mid_block") && !num(c[2], &j)) {
		if (!strcmp(c[1], "resnets") && j <= 1) {
			snprintf(head, sizeof head, "middle_block.%d", 2 * j);
			return res_block(head, c, 3, n, 1);
		}
		if (!strcmp(c[1], "attentions") && j == 0)
			return with_rest("middle_block.1", c, 3, n);
		return NULL;
	}
	if (n >= 4 && !strcmp(c[0], "up_blocks") && !num(c[1], &i) && !num(c[3], &j) && i <= 3) {
		if (!strcmp(c[2], "resnets") && j <= 2) {
			snprintf(head, sizeof head, "output_blocks.%d.0", 3 * i + j);
			return res_block(head, c, 4, n, 1);
		}
		if (!strcmp(c[2], "attentions") && j <= 2 && i >= 1) {
			snprintf(head, sizeof head, "output_blocks.%d.1", 3 * i + j);
			return with_rest(head, c, 4, n);
		}
		if (!strcmp(c[2], "upsamplers") && j == 0 && i <= 2) {
			snprintf(head, sizeof head, "output_blocks.%d.%d", 3 * i + 2, i == 0 ? 1 : 2);
			return with_rest(head, c, 4, n);
		}
	}
	return NULL;
}

/* ---- UNet: LDM -> diffusers ---------------------------------------------------- */

static char *unet_from_ldm(char **c, int n)
{
	char head[64];
	int b, m;
	if (n >= 2 && !strcmp(c[0], "time_embed") && !num(c[1], &b)) {
		if (b == 0)
			return with_rest("time_embedding.linear_1", c, 2, n);
		if (b == 2)
			return with_rest("time_embedding.linear_2", c, 2, n);
		return NULL;
	}
	if (n >= 2 && !strcmp(c[0], "out") && !num(c[1], &b)) {
		if (b == 0)
			return with_rest("conv_norm_out", c, 2, n);
		if (b == 2)
			return with_rest("conv_out", c, 2, n);
		return NULL;
	}
	if (n >= 3 && !strcmp(c[0], "input_blocks") && !num(c[1], &b) && !num(c[2], &m)) {
		if (b == 0)
			return m == 0 ? with_rest("conv_in", c, 3, n) : NULL;
		if (b > 11)
			return NULL;
		int i = (b - 1) / 3, j = (b - 1) % 3;
		if (j == 2) {        /* 3, 6, 9: the downsamplers */
			if (m != 0 || i > 2 || n < 4 || strcmp(c[3], "op"))
				return NULL;
			snprintf(head, sizeof head, "down_blocks.%d.downsamplers.0.conv", i);
			return with_rest(head, c, 4, n);
		}
		if (m == 0) {
			snprintf(head, sizeof head, "down_blocks.%d.resnets.%d", i, j);
			return res_block(head, c, 3, n, 0);
		}
		if (m == 1 && i <= 2) {
			snprintf(head, sizeof head, "down_blocks.%d.attentions.%d", i, j);
			return with_rest(head, c, 3, n);
		}
		return NULL;
	}
	if (n >= 2 && !strcmp(c[0], "middle_block") && !num(c[1], &b)) {
		if (b == 1)
			return with_rest("mid_block.attentions.0", c, 2, n);
		if (b == 0 || b == 2) {
			snprintf(head, sizeof head, "mid_block.resnets.%d", b / 2);
			return res_block(head, c, 2, n, 0);
		}
		return NULL;
	}
	if (n >= 3 && !strcmp(c[0], "output_blocks") && !num(c[1], &b) && !num(c[2], &m) && b <= 11) {
		int i = b / 3, j = b % 3;
		int upsampler = (m == 2 && j == 2 && i >= 1) ||
		                (m == 1 && i == 0 && j == 2);
		if (upsampler) {
			if (i > 2 || n < 4 || strcmp(c[3], "conv"))
				return NULL;
			snprintf(head, sizeof head, "up_blocks.%d.upsamplers.0", i);
			return with_rest(head, c, 3, n);
		}
		if (m == 0) {
			snprintf(head, sizeof head, "up_blocks.%d.resnets.%d", i, j);
			return res_block(head, c, 3, n, 0);
		}
		if (m == 1 && i >= 1) {
			snprintf(head, sizeof head, "up_blocks.%d.attentions.%d", i, j);
			return with_rest(head, c, 3, n);
		}
	}
	return NULL;
}

/* `path` split at its dots, through one of the two converters above. */
static char *unet_conv(const char *path, char *(*conv)(char **c, int n))
{
	char *buf, *c[MAX_PARTS];
	int n = split(path, &buf, c);
	char *s = n > 0 ? conv(c, n) : NULL;
	free(buf);
	/* a result split() refuses (LDM's middle_block.1 is mid_block.attentions.0,
	 * one part more) converts back to nothing: refuse it here, so both ways agree */
	if (s) {
		int back = split(s, &buf, c);
		free(buf);
		if (back < 0) {
			free(s);
			s = NULL;
		}
	}
	if (!s)
		lora_err("'%s': not a Stable Diffusion 1.5 UNet module", path);
	return s;
}

char *lora_conv_unet_to_ldm(const char *path)
{
	return unet_conv(path, unet_to_ldm);
}

char *lora_conv_unet_from_ldm(const char *path)
{
	return unet_conv(path, unet_from_ldm);
}

/* ---- kohya names ---------------------------------------------------------------- */

/* Module-name words that contain '_' (SD UNet in both layouts, CLIP, LLaMA).
 * A kohya name is split at '_' and the longest run of pieces forming one of
 * these words is kept together. */
static const char *words[] = {
	"down_blocks", "up_blocks", "mid_block", "transformer_blocks", "to_q", "to_k",
	"to_v", "to_out", "proj_in", "proj_out", "time_emb_proj", "conv_shortcut",
	"time_embedding", "linear_1", "linear_2", "conv_in", "conv_out", "conv_norm_out",
	"input_blocks", "middle_block", "output_blocks", "skip_connection", "in_layers",
	"out_layers", "emb_layers", "time_embed", "text_model", "self_attn", "q_proj",
	"k_proj", "v_proj", "out_proj", "layer_norm1", "layer_norm2", "final_layer_norm",
	"token_embedding", "position_embedding", "text_projection", "gate_proj", "up_proj",
	"down_proj", "o_proj", "embed_tokens", "lm_head", "input_layernorm",
	"post_attention_layernorm", "add_embedding", "time_proj",
};

static int is_word(const char *s, size_t len)
{
	for (size_t i = 0; i < sizeof words / sizeof *words; i++)
		if (strlen(words[i]) == len && !strncmp(words[i], s, len))
			return 1;
	return 0;
}

/* "down_blocks_0_attentions_0_proj_in" -> "down_blocks.0.attentions.0.proj_in" */
static char *undo_underscores(const char *s)
{
	size_t len = strlen(s);
	char *out = lora_xmalloc(len + 1), *o = out;
	const char *p = s;
	while (*p) {
		/* the ends of runs of 3, 2 and 1 pieces starting at p */
		const char *end[3] = {0};
		const char *q = p;
		for (int k = 0; k < 3; k++) {
			const char *u = strchr(q, '_');
			end[k] = u ? u : p + strlen(p);
			if (!u)
				break;
			q = u + 1;
		}
		const char *e = end[0];
		for (int k = 2; k >= 1; k--)
			if (end[k] && is_word(p, (size_t)(end[k] - p))) {
				e = end[k];
				break;
			}
		if (o != out)
			*o++ = '.';
		memcpy(o, p, (size_t)(e - p));
		o += e - p;
		p = *e ? e + 1 : e;
	}
	*o = 0;
	return out;
}

/* A kohya lora_name: letters, digits and single '_' between pieces. */
static int kohya_ok(const char *s)
{
	if (!*s || *s == '_')
		return 0;
	for (const char *p = s; *p; p++) {
		int c = (unsigned char)*p;
		if (!(c == '_' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')))
			return 0;
		if (c == '_' && (p[1] == '_' || p[1] == 0))
			return 0;
	}
	return 1;
}

char *lora_conv_from_kohya(const char *kohya)
{
	if (!kohya_ok(kohya)) {
		lora_err("'%s': not a kohya LoRA module name", kohya);
		return NULL;
	}
	static const char *te[][2] = {
		{"lora_te_", "text_encoder"}, {"lora_te1_", "text_encoder"},
		{"lora_te2_", "text_encoder_2"},
	};
	for (size_t i = 0; i < 3; i++)
		if (starts(kohya, te[i][0])) {
			char *p = undo_underscores(kohya + strlen(te[i][0]));
			char *s = NULL;
			if (starts(p, "text_model."))
				s = lora_xasprintf("%s.%s", te[i][1], p);
			else
				lora_err("'%s': not a text-encoder module", kohya);
			free(p);
			return s;
		}
	if (!starts(kohya, "lora_unet_")) {
		lora_err("'%s': not a kohya LoRA module name", kohya);
		return NULL;
	}
	char *p = undo_underscores(kohya + strlen("lora_unet_"));
	char *d;
	if (starts(p, "input_blocks.") || starts(p, "middle_block.") || starts(p, "output_blocks.") ||
	    starts(p, "time_embed.") || starts(p, "out."))
		d = lora_conv_unet_from_ldm(p);
	else {
		/* diffusers spelling: check it maps, to reject foreign names early */
		char *l = lora_conv_unet_to_ldm(p);
		d = l ? lora_xstrdup(p) : NULL;
		free(l);
	}
	free(p);
	if (!d) {
		lora_err("'%s': not a Stable Diffusion 1.5 UNet module", kohya);
		return NULL;
	}
	char *s = lora_xasprintf("unet.%s", d);
	free(d);
	return s;
}

static char *dots_to_underscores(const char *prefix, const char *path)
{
	char *s = lora_xasprintf("%s%s", prefix, path);
	for (char *p = s; *p; p++)
		if (*p == '.')
			*p = '_';
	return s;
}

char *lora_conv_to_kohya(const char *canon)
{
	if (starts(canon, "unet."))
		return dots_to_underscores("lora_unet_", canon + 5);
	if (starts(canon, "text_encoder."))
		return dots_to_underscores("lora_te_", canon + 13);
	if (starts(canon, "text_encoder_2."))
		return dots_to_underscores("lora_te2_", canon + 15);
	lora_err("'%s': kohya names exist only for Stable Diffusion modules", canon);
	return NULL;
}

/* ---- PEFT ---------------------------------------------------------------------- */

lora_arch lora_conv_arch(const char *canon)
{
	if (starts(canon, "unet.") || starts(canon, "text_encoder.") || starts(canon, "text_encoder_2."))
		return LORA_ARCH_SD15;
	if (*canon)
		return LORA_ARCH_LLM;
	return LORA_ARCH_UNKNOWN;
}

char *lora_conv_from_peft(const char *path, const char *component)
{
	if (starts(path, "base_model.model."))
		path += strlen("base_model.model.");
	if (component && *component)
		return lora_xasprintf("%s.%s", component, path);
	return lora_xstrdup(path);
}

char *lora_conv_to_peft(const char *canon)
{
	const char *dot = strchr(canon, '.');
	if (lora_conv_arch(canon) == LORA_ARCH_SD15 && dot)
		canon = dot + 1;
	return lora_xasprintf("base_model.model.%s", canon);
}

/* ---- base weights ---------------------------------------------------------------- */

char *lora_conv_base_weight(const char *canon)
{
	if (starts(canon, "unet.")) {
		char *l = lora_conv_unet_to_ldm(canon + 5);
		if (!l)
			return NULL;
		char *s = lora_xasprintf("model.diffusion_model.%s.weight", l);
		free(l);
		return s;
	}
	if (starts(canon, "text_encoder."))
		return lora_xasprintf("cond_stage_model.transformer.%s.weight", canon + 13);
	if (lora_conv_arch(canon) == LORA_ARCH_LLM)
		return lora_xasprintf("%s.weight", canon);
	lora_err("'%s': no base weight for this module", canon);
	return NULL;
}
