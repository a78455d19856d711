/* loraconv.h: LoRA module names across kohya, diffusers and PEFT, and the
 * base-model weight each module adapts (FORMATS.md §2.8, §3.2, §4.2, §5.2).
 *
 * Every module has one canonical name, the dotted module path in the
 * diffusers / HF tree with the component first:
 *
 *     SD 1.5 UNet        unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q
 *     SD 1.5 text enc.   text_encoder.text_model.encoder.layers.0.self_attn.q_proj
 *     LLaMA (HF)         model.layers.0.self_attn.q_proj
 *
 * The canonical name of an SD module is also its diffusers key stem
 * ("<canon>.lora_A.weight"); a LLaMA module's PEFT stem is
 * "base_model.model.<canon>". Usage:
 *
 *     char *c = lora_conv_from_kohya("lora_unet_mid_block_attentions_0_proj_in");
 *     char *k = lora_conv_to_kohya(c);        // back to the kohya name
 *     char *w = lora_conv_base_weight(c);     // "model.diffusion_model.middle_block.1.proj_in.weight"
 *     free(c); free(k); free(w);
 *
 * Kohya names are accepted in both spellings A1111 accepts: diffusers paths
 * (lora_unet_down_blocks_0_...) and LDM paths (lora_unet_input_blocks_1_1_...).
 *
 * Ownership: every returned string is malloc'ed; free() it. Errors: NULL and
 * lora_errmsg() names the module when a name does not fit the SD 1.5 layout.
 */
#ifndef LORA_LORACONV_H
#define LORA_LORACONV_H

typedef enum {
	LORA_ARCH_UNKNOWN,
	LORA_ARCH_SD15,       /* canonical names start with unet. / text_encoder. */
	LORA_ARCH_LLM,        /* HF causal LM paths (model.layers.N..., lm_head) */
	LORA_ARCH_COUNT
} lora_arch;

/* Which architecture a canonical name belongs to. */
lora_arch lora_conv_arch(const char *canon);

/* kohya lora_name ("lora_unet_..."/"lora_te_...", no ".lora_down.weight")
 * -> canonical. NULL if the name is not an SD 1.x UNet/text-encoder module. */
char *lora_conv_from_kohya(const char *kohya);
/* canonical -> kohya lora_name (diffusers-path spelling, as sd-scripts
 * writes it). NULL for a non-SD name. */
char *lora_conv_to_kohya(const char *canon);

/* PEFT module path (key minus ".lora_A.weight") -> canonical. Strips
 * "base_model.model."; an SD PEFT adapter has no component in its paths, so
 * component ("unet", "text_encoder" or NULL for an LLM) is prepended. */
char *lora_conv_from_peft(const char *path, const char *component);
/* canonical -> PEFT module path ("base_model.model." + path without the
 * component for SD). */
char *lora_conv_to_peft(const char *canon);

/* The base weight a module adapts, in the base's own layout: for SD the
 * single-file LDM key (model.diffusion_model.* / cond_stage_model.transformer.*),
 * for an LLM the HF key. Ends in ".weight". NULL if unmappable. */
char *lora_conv_base_weight(const char *canon);

/* SD 1.5 UNet module path: diffusers <-> LDM (both without the
 * "unet." / "model.diffusion_model." prefixes). NULL if unmappable. */
char *lora_conv_unet_to_ldm(const char *diffusers_path);
char *lora_conv_unet_from_ldm(const char *ldm_path);

#endif
