/* loraformat.h: what kind of .safetensors file this is, and its LoRA modules.
 *
 * Recognises kohya/A1111 SD LoRAs, HF PEFT LoRAs, diffusers SD LoRAs (FORMATS.md
 * §3-§4), SD 1.5 single-file checkpoints and HF LLaMA checkpoints from the
 * tensor names, and groups a LoRA's tensors into modules: the down (A) and up
 * (B) matrices, the alpha, and the name of the base weight they modify.
 *
 *     st_file *f = st_open("style.safetensors");
 *     lora_format *lf = lora_format_open(f, NULL);  // PEFT: reads adapter_config.json beside f
 *     for (int i = 0; i < lf->nmodules; i++) {
 *         const lora_module *m = &lf->modules[i];   // W[m->base + ".weight"] += m->scale * up @ down
 *         printf("%s r=%d alpha=%g\n", m->base, m->rank, m->alpha);
 *     }
 *     lora_format_free(lf);                          // before st_close(f)
 *
 * Ownership: lora_format_open's result is freed by lora_format_free; its
 * st_tensor pointers point into f, which must outlive it. Failure: NULL and
 * lora_errmsg() only for an unreadable or malformed adapter_config.json; an
 * unknown file is LORA_KIND_UNKNOWN with no modules, and a module missing its
 * up or down half is kept with that pointer NULL (lora_format_check says so).
 */
#ifndef LORA_LORAFORMAT_H
#define LORA_LORAFORMAT_H
#include "safetensors.h"

typedef enum {
	LORA_KIND_UNKNOWN,
	LORA_KIND_KOHYA,        /* lora_unet_*.lora_down.weight, .lora_up.weight, .alpha */
	LORA_KIND_PEFT,         /* base_model.model.*.lora_A.weight, .lora_B.weight */
	LORA_KIND_DIFFUSERS,    /* unet.* / text_encoder.* with .lora_A/.lora_B (or .lora.down) */
	LORA_KIND_SD15,         /* SD 1.5 single file: model.diffusion_model.* */
	LORA_KIND_LLAMA,        /* HF LLaMA: model.layers.N.self_attn.q_proj.weight */
	LORA_KIND_COUNT
} lora_kind;

typedef enum {
	LORA_PART_UNET,         /* SD UNet */
	LORA_PART_TEXT,         /* SD text encoder (CLIP; lora_te, lora_te1, text_encoder) */
	LORA_PART_TEXT2,        /* SDXL second text encoder (lora_te2, text_encoder_2) */
	LORA_PART_LM,           /* a language model (PEFT) */
	LORA_PART_OTHER,
	LORA_PART_COUNT
} lora_part;

typedef enum {
	LORA_ALPHA_TENSOR,      /* the file's <module>.alpha scalar */
	LORA_ALPHA_CONFIG,      /* adapter_config.json lora_alpha / alpha_pattern */
	LORA_ALPHA_METADATA,    /* diffusers lora_adapter_metadata: <part>.lora_alpha / alpha_pattern */
	LORA_ALPHA_DEFAULT,     /* none given: alpha = rank (scale 1), as A1111/diffusers do */
} lora_alpha_source;

typedef struct {
	char *name;             /* key prefix in the file: "lora_te_text_model_encoder_layers_0_mlp_fc1" */
	char *path;             /* module path in the model's own names: "text_model.encoder.layers.0.mlp.fc1" */
	char *base;             /* base weight without ".weight": SD 1.5 single-file (LDM) name
	                           "cond_stage_model.transformer.text_model.encoder.layers.0.mlp.fc1",
	                           HF name for PEFT "model.layers.0.self_attn.q_proj" */
	lora_part part;
	const st_tensor *down;  /* (r, in) or (r, Cin, kh, kw); kohya lora_down, PEFT lora_A; or NULL */
	const st_tensor *up;    /* (out, r) or (Cout, r, 1, 1); kohya lora_up, PEFT lora_B; or NULL */
	const st_tensor *alpha_t; /* () kohya alpha scalar, or NULL */
	int rank;               /* down->shape[0] (up->shape[1] if no down) */
	double alpha;           /* see alpha_from */
	lora_alpha_source alpha_from;
	double scale;           /* alpha / rank; alpha / sqrt(rank) with use_rslora */
} lora_module;

typedef struct {
	lora_kind kind;
	int nmodules;
	lora_module *modules;   /* (nmodules) sorted by name */
	int nother;             /* tensors of the file that belong to no module */
	char *config_path;      /* the adapter_config.json that was read, or NULL */
	char *base_model;       /* adapter_config base_model_name_or_path, kohya ss_sd_model_name, or NULL */
	int use_rslora;         /* adapter_config use_rslora */
	int config_rank;        /* adapter_config r (0 if none) */
	double config_alpha;    /* adapter_config lora_alpha (0 if none) */
} lora_format;

/* The kind of file, from tensor names only (reads no data). */
lora_kind lora_kind_detect(const st_file *f);
const char *lora_kind_name(lora_kind k);     /* "kohya", "peft", "diffusers", "sd15", "llama", "unknown" */
const char *lora_kind_desc(lora_kind k);     /* "kohya/A1111 SD LoRA", ... */
int lora_kind_is_lora(lora_kind k);
const char *lora_part_name(lora_part p);     /* "unet", "text_encoder", "text_encoder_2", "lm", "other" */

/* Detect and group. config: path of adapter_config.json, NULL to look for one
 * beside f->path (PEFT only), "" for none. NULL + lora_err on a bad config. */
lora_format *lora_format_open(const st_file *f, const char *config);
void lora_format_free(lora_format *lf);     /* NULL ok */
/* 0 if every module has both halves, matching ranks and a scalar alpha;
 * else -1 and lora_errmsg() names the first bad module. */
int lora_format_check(const lora_format *lf);

/* SD names. Map a diffusers UNet module path ("down_blocks.0.attentions.0.proj_in")
 * to the LDM single-file one ("model.diffusion_model.input_blocks.1.1.proj_in"),
 * FORMATS.md §2.8; a path already in LDM form gets the prefix only. free(). */
char *lora_sd_unet_to_ldm(const char *path);
/* kohya "lora_unet_down_blocks_0_attentions_0_proj_in" (prefix removed or not)
 * back to dots: "down_blocks.0.attentions.0.proj_in". free(). */
char *lora_kohya_to_path(const char *name);

#endif
