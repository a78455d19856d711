#!/usr/bin/env python3
"""gen_merge.py: fixtures for lora-merge (tests/fixtures/merge/).

Everything here comes from the reference libraries, on tiny random models
with the real architectures and real module names:

  sd15_tiny.safetensors   an SD 1.5 single-file (LDM layout) checkpoint, F16:
                          a diffusers UNet2DConditionModel with SD 1.5's block
                          structure (channels 4/8/8/8) and a 2-layer
                          CLIPTextModel, renamed to LDM keys; the renaming is
                          verified by converting back with diffusers'
                          convert_ldm_unet_checkpoint.
  kohya_a.safetensors     kohya-format LoRA (F32, rank 2 alpha 1, conv rank 3
                          alpha 1.5) on every module kohya targets with
                          conv_dim: attentions, resnets, samplers; ss_* metadata.
  kohya_b.safetensors     kohya LoRA (F16, rank 3 alpha 2) on the attentions
                          and the text encoder, LDM-spelled UNet names
                          (lora_unet_input_blocks_1_1_...).
  kohya_bad.safetensors   4 modules of kohya_b, attn2.to_k's down one column too wide.
  kohya_dora.safetensors  2 modules of kohya_b and a DoRA dora_scale tensor.
  diffusers_a.safetensors kohya_a loaded into the UNet and text encoder by
                          diffusers and saved back by diffusers'
                          save_lora_weights (PEFT keys + lora_adapter_metadata).
  names.tsv               kohya name, LDM-spelled kohya name, canonical name
                          (the module path diffusers loaded the LoRA into),
                          base weight key in the LDM checkpoint.
  ref_bake_sd.safetensors W + 0.6·s_a·B_a·A_a + 0.4·s_b·B_b·A_b in float64,
                          rounded to F16 (checked against diffusers' fuse_lora).
  ref_delta.safetensors   per module: the float64 ΔW = Σ w_i·s_i·B_i·A_i
                          (F32, flattened to 2-D) and its singular values
                          ("<canon>.sv", F64).
  llama_tiny/             a tiny LlamaForCausalLM (BF16) saved by transformers
                          in 3 shards + config and tokenizer files.
  peft_a/, peft_b/        PEFT adapters for it (a: r 4 alpha 8 on all linear
                          layers; b: r 2 alpha 4 on q/v with a rank_pattern and
                          an alpha_pattern), saved by PEFT's save_pretrained.
  ref_bake_llama.safetensors  W + 0.7·a + 0.5·b in float64 rounded to BF16
                          (checked against PEFT's merge_and_unload).

Run from the repository root:  python3 tests/gen/gen_merge.py
With --check BIN_DIR it also converts the fixtures with BIN_DIR/lora-merge
and loads the results in diffusers and PEFT (reports what it checked).
"""
import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import torch
from safetensors.torch import load_file, save_file

OUT = "tests/fixtures/merge"
W_A, W_B = 0.6, 0.4           # SD bake weights
W_PA, W_PB = 0.7, 0.5         # LLaMA bake weights


def tiny_unet():
    from diffusers import UNet2DConditionModel
    return UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=2,
        block_out_channels=(4, 8, 8, 8), norm_num_groups=4, cross_attention_dim=8,
        attention_head_dim=2,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3)


def tiny_te():
    from transformers import CLIPTextConfig, CLIPTextModel
    cfg = CLIPTextConfig(vocab_size=64, hidden_size=8, intermediate_size=16, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=8, projection_dim=8)
    return CLIPTextModel(cfg)


# ---- diffusers -> LDM UNet names (FORMATS.md 2.8) ------------------------------------

RES = [("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("norm2", "out_layers.0"),
       ("conv2", "out_layers.3"), ("time_emb_proj", "emb_layers.1"),
       ("conv_shortcut", "skip_connection")]


def res_ldm(rest):
    for d, l in RES:
        if rest == d or rest.startswith(d + "."):
            return l + rest[len(d):]
    raise KeyError(rest)


def unet_to_ldm(p):
    return ".".join(x for x in _unet_to_ldm(p).split(".") if x)


def _unet_to_ldm(p):
    c = p.split(".")
    if c[0] == "time_embedding":
        return {"linear_1": "time_embed.0", "linear_2": "time_embed.2"}[c[1]] + "." + ".".join(c[2:])
    if c[0] == "conv_in":
        return "input_blocks.0.0." + ".".join(c[1:])
    if c[0] == "conv_norm_out":
        return "out.0." + ".".join(c[1:])
    if c[0] == "conv_out":
        return "out.2." + ".".join(c[1:])
    rest = ".".join(c[4:])
    if c[0] == "down_blocks":
        i, j = int(c[1]), int(c[3])
        if c[2] == "resnets":
            return f"input_blocks.{3*i+j+1}.0.{res_ldm(rest)}"
        if c[2] == "attentions":
            return f"input_blocks.{3*i+j+1}.1.{rest}"
        if c[2] == "downsamplers":
            return f"input_blocks.{3*i+3}.0.op." + ".".join(c[5:])
    if c[0] == "mid_block":
        j = int(c[2])
        rest = ".".join(c[3:])
        if c[1] == "resnets":
            return f"middle_block.{2*j}.{res_ldm(rest)}"
        return f"middle_block.1.{rest}"
    if c[0] == "up_blocks":
        i, j = int(c[1]), int(c[3])
        if c[2] == "resnets":
            return f"output_blocks.{3*i+j}.0.{res_ldm(rest)}"
        if c[2] == "attentions":
            return f"output_blocks.{3*i+j}.1.{rest}"
        if c[2] == "upsamplers":
            return f"output_blocks.{3*i+2}.{1 if i == 0 else 2}.{rest}"
    raise KeyError(p)


def tm(path):
    """HF CLIP paths with the text_model. level that real checkpoints and kohya
    names have (transformers 5 dropped it from CLIPTextModel's own tree)."""
    return path if path.startswith("text_model") else "text_model." + path


def kohya_targets(unet, te, conv):
    """(canonical, module) for what kohya's LoRANetwork targets (FORMATS.md 3.1)."""
    from diffusers.models.resnet import Downsample2D, ResnetBlock2D, Upsample2D
    from diffusers.models.transformers.transformer_2d import Transformer2DModel
    parents = (Transformer2DModel,) + ((ResnetBlock2D, Downsample2D, Upsample2D) if conv else ())
    out = []
    for pname, parent in unet.named_modules():
        if isinstance(parent, parents):
            for cname, child in parent.named_modules():
                if isinstance(child, (torch.nn.Linear, torch.nn.Conv2d)) and cname:
                    out.append(("unet." + pname + "." + cname, child))
    if te is not None:
        for pname, parent in te.named_modules():
            if type(parent).__name__ in ("CLIPAttention", "CLIPSdpaAttention", "CLIPMLP"):
                for cname, child in parent.named_modules():
                    if isinstance(child, torch.nn.Linear):
                        out.append(("text_encoder." + tm(pname) + "." + cname, child))
    return out


def make_kohya(targets, dim, alpha, conv_dim, conv_alpha, dtype, ldm_names, seed, meta):
    g = torch.Generator().manual_seed(seed)
    sd, info = {}, {}
    for canon, mod in targets:
        comp, path = canon.split(".", 1)
        if comp == "unet":
            kname = "lora_unet_" + (unet_to_ldm(path) if ldm_names else path).replace(".", "_")
        else:
            kname = "lora_te_" + path.replace(".", "_")
        if isinstance(mod, torch.nn.Conv2d):
            k = mod.kernel_size
            r, a = (conv_dim, conv_alpha) if k != (1, 1) else (dim, alpha)
            down = (torch.rand(r, mod.in_channels, *k, generator=g) * 2 - 1) / np.sqrt(mod.in_channels * k[0] * k[1])
            up = torch.randn(mod.out_channels, r, 1, 1, generator=g) * 0.5
        else:
            r, a = dim, alpha
            down = (torch.rand(r, mod.in_features, generator=g) * 2 - 1) / np.sqrt(mod.in_features)
            up = torch.randn(mod.out_features, r, generator=g) * 0.5
        sd[kname + ".lora_down.weight"] = down.to(dtype)
        sd[kname + ".lora_up.weight"] = up.to(dtype)
        sd[kname + ".alpha"] = torch.tensor(float(a)).to(dtype)
        info[canon] = kname
    m = {"ss_network_module": "networks.lora", "ss_network_dim": str(dim),
         "ss_network_alpha": str(float(alpha)), "ss_base_model_version": "sd_v1", "ss_v2": "False",
         "ss_network_args": json.dumps({"conv_dim": str(conv_dim), "conv_alpha": str(conv_alpha)})
         if conv_dim else "null"}
    m.update(meta)
    return sd, info, m


def kohya_delta(sd, kname, weight):
    """float64 weight·(alpha/r)·up@down, shaped like the target weight."""
    down = sd[kname + ".lora_down.weight"].double()
    up = sd[kname + ".lora_up.weight"].double()
    alpha = sd[kname + ".alpha"].double().item()
    r = down.shape[0]
    d = up.reshape(up.shape[0], r) @ down.reshape(r, -1)
    return weight * (alpha / r) * d, down.shape[1:]


def sd_part(dst):
    torch.manual_seed(0)
    unet, te = tiny_unet().eval(), tiny_te().eval()
    for p in list(unet.parameters()) + list(te.parameters()):   # no zero-init weights
        torch.nn.init.normal_(p, std=0.2)
    ldm = {}
    for k, v in unet.state_dict().items():
        stem, leaf = k.rsplit(".", 1)
        ldm["model.diffusion_model." + unet_to_ldm(stem) + "." + leaf] = v
    for k, v in te.state_dict().items():
        ldm["cond_stage_model.transformer." + tm(k)] = v
    # verify the renaming with diffusers' own LDM -> diffusers converter
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint
    back = convert_ldm_unet_checkpoint(ldm, dict(unet.config))
    ref = unet.state_dict()
    assert set(back) == set(ref), set(back) ^ set(ref)
    for k in ref:
        assert torch.equal(back[k], ref[k]), k
    print("gen_merge: LDM names verified by diffusers convert_ldm_unet_checkpoint")
    # the rest of a single-file checkpoint: VAE bits, buffers
    g = torch.Generator().manual_seed(1)
    ldm["first_stage_model.encoder.conv_in.weight"] = torch.randn(8, 3, 3, 3, generator=g)
    ldm["first_stage_model.quant_conv.weight"] = torch.randn(8, 8, 1, 1, generator=g)
    ldm["betas"] = torch.linspace(0.00085, 0.012, 16, dtype=torch.float64).float()
    base = {k: v.half().contiguous() for k, v in ldm.items()}
    base["cond_stage_model.transformer.text_model.embeddings.position_ids"] = torch.arange(8).reshape(1, 8)
    save_file(base, f"{dst}/sd15_tiny.safetensors", metadata={"format": "pt"})

    ta = kohya_targets(unet, te, conv=True)
    ta = [t for t in ta if t[0].startswith("unet.")]
    tb = kohya_targets(unet, te, conv=False)
    sda, ia, ma = make_kohya(ta, 2, 1.0, 3, 1.5, torch.float32, False, 10,
                             {"ss_output_name": "style_a", "ss_training_comment": "tiny fixture a"})
    sdb, ib, mb = make_kohya(tb, 3, 2.0, 0, 0, torch.float16, True, 11, {"ss_output_name": "style_b"})
    save_file(sda, f"{dst}/kohya_a.safetensors", metadata=ma)
    save_file(sdb, f"{dst}/kohya_b.safetensors", metadata=mb)
    # the same tensors under diffusers-spelled names (diffusers reads only those for SD 1.x)
    sdb_d = make_kohya(tb, 3, 2.0, 0, 0, torch.float16, False, 11, {})[0]

    # a LoRA that does not fit the base: attn2.to_k made for a 9-wide context
    bad = {k: v for k, v in sdb_d.items() if "down_blocks_0_attentions_0_transformer_blocks_0_attn2" in k}
    kb = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k"
    bad[kb + ".lora_down.weight"] = torch.cat([bad[kb + ".lora_down.weight"],
                                               torch.ones(3, 1, dtype=torch.float16)], 1)
    save_file(bad, f"{dst}/kohya_bad.safetensors", metadata=mb)
    # a DoRA-style kohya file: one module carries a dora_scale tensor
    extra = {k: v for k, v in sdb_d.items() if "down_blocks_0_attentions_0_proj_" in k}
    extra["lora_unet_down_blocks_0_attentions_0_proj_in.dora_scale"] = torch.ones(1, 4, 1, 1, dtype=torch.float16)
    save_file(extra, f"{dst}/kohya_dora.safetensors", metadata=mb)

    # names.tsv: canonical = where diffusers puts each kohya module
    from diffusers import StableDiffusionPipeline as P
    from peft.utils import get_peft_model_state_dict
    all_t = kohya_targets(unet, te, conv=True)
    sdn, iname, _ = make_kohya(all_t, 1, 1.0, 1, 1.0, torch.float32, False, 12, {})
    st, al = P.lora_state_dict(dict(sdn))
    u2, t2 = tiny_unet(), tiny_te()
    P.load_lora_into_unet(st, al, unet=u2, adapter_name="n")
    P.load_lora_into_text_encoder(st, al, text_encoder=t2, prefix="text_encoder", adapter_name="n")
    loaded = set()
    for comp, mdl in (("unet", u2), ("text_encoder", t2)):
        for k in get_peft_model_state_dict(mdl, adapter_name="n"):
            if ".lora_A." in k:
                m = k.split(".lora_A.")[0]
                loaded.add(comp + "." + (tm(m) if comp == "text_encoder" else m))
    assert loaded == set(iname), set(iname) ^ loaded
    with open(f"{dst}/names.tsv", "w") as f:
        f.write("# kohya\tkohya_ldm_spelling\tcanonical\tbase_weight\n")
        for canon, kname in sorted(iname.items()):
            comp, path = canon.split(".", 1)
            if comp == "unet":
                kl = "lora_unet_" + unet_to_ldm(path).replace(".", "_")
                bw = "model.diffusion_model." + unet_to_ldm(path) + ".weight"
            else:
                kl = kname
                bw = "cond_stage_model.transformer." + path + ".weight"
            assert bw in base, bw
            f.write(f"{kname}\t{kl}\t{canon}\t{bw}\n")
    print(f"gen_merge: names.tsv: {len(iname)} modules, as diffusers loads them")

    # reference bake, float64 from the F16 base
    mods = collections.OrderedDict()
    for canon, kname in ia.items():
        mods.setdefault(canon, []).append(kohya_delta(sda, kname, W_A))
    for canon, kname in ib.items():
        mods.setdefault(canon, []).append(kohya_delta(sdb, kname, W_B))
    out = {k: v.clone() for k, v in base.items()}
    delta = {}
    for canon, parts in mods.items():
        comp, path = canon.split(".", 1)
        bw = ("model.diffusion_model." + unet_to_ldm(path) if comp == "unet"
              else "cond_stage_model.transformer." + path) + ".weight"
        d = sum(p[0] for p in parts)
        W = base[bw].double()
        out[bw] = (W + d.reshape(W.shape)).half()
        delta[canon] = d.float().contiguous()
        delta[canon + ".sv"] = torch.from_numpy(np.linalg.svd(d.numpy(), compute_uv=False)).contiguous()
    save_file(out, f"{dst}/ref_bake_sd.safetensors")
    save_file(delta, f"{dst}/ref_delta.safetensors")

    # cross-check the formula with diffusers: load both adapters, fuse, compare (float32 model)
    u3, t3 = tiny_unet(), tiny_te()
    u3.load_state_dict(unet.state_dict())
    t3.load_state_dict(te.state_dict())
    for name, sdx in (("a", sda), ("b", sdb_d)):
        st, al = P.lora_state_dict(dict(sdx))
        P.load_lora_into_unet(st, al, unet=u3, adapter_name=name)
        if any(k.startswith("text_encoder.") for k in st):
            P.load_lora_into_text_encoder(st, al, text_encoder=t3, prefix="text_encoder", adapter_name=name)
    u3.set_adapters(["a", "b"], weights=[W_A, W_B])
    u3.fuse_lora(adapter_names=["a", "b"])
    from peft.tuners.lora import LoraLayer
    worst = 0.0
    for mname, mod in u3.named_modules():
        if isinstance(mod, LoraLayer):
            canon = "unet." + mname
            want = unet.get_submodule(mname).weight.double() + sum(p[0] for p in mods[canon]).reshape(mod.base_layer.weight.shape)
            worst = max(worst, (mod.base_layer.weight.double() - want).abs().max().item())
    assert worst < 1e-5, worst
    print(f"gen_merge: diffusers fuse_lora(a:{W_A}, b:{W_B}) matches W + Σ w·s·B·A (max diff {worst:.2e})")

    # a diffusers-made file: kohya_a loaded by diffusers, saved by diffusers
    u4 = tiny_unet()
    st, al = P.lora_state_dict(dict(sda))
    P.load_lora_into_unet(st, al, unet=u4, adapter_name="default_0")
    with tempfile.TemporaryDirectory() as tmp:
        P.save_lora_weights(tmp, unet_lora_layers=get_peft_model_state_dict(u4, adapter_name="default_0"),
                            unet_lora_adapter_metadata=u4.peft_config["default_0"].to_dict())
        shutil.copy(f"{tmp}/pytorch_lora_weights.safetensors", f"{dst}/diffusers_a.safetensors")
    return unet, te


# ---- LLaMA ------------------------------------------------------------------------------

def llama_part(dst):
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=40, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32,
                      tie_word_embeddings=False)
    model = LlamaForCausalLM(cfg).to(torch.bfloat16)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.3)
    d = f"{dst}/llama_tiny"
    shutil.rmtree(d, ignore_errors=True)
    model.save_pretrained(d, max_shard_size="6KB")
    with open(f"{d}/tokenizer_config.json", "w") as f:
        json.dump({"model_max_length": 32, "tokenizer_class": "PreTrainedTokenizerFast"}, f, indent=2)
    with open(f"{d}/special_tokens_map.json", "w") as f:
        json.dump({"bos_token": "<s>", "eos_token": "</s>"}, f, indent=2)
    shards = sorted(x for x in os.listdir(d) if x.endswith(".safetensors"))
    assert len(shards) >= 3, shards
    print(f"gen_merge: llama_tiny in {len(shards)} shards")

    all_lin = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    cfgs = {
        "peft_a": LoraConfig(r=4, lora_alpha=8, target_modules=all_lin, init_lora_weights=False),
        "peft_b": LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False,
                             rank_pattern={"model.layers.1.self_attn.q_proj": 3},
                             alpha_pattern={"v_proj": 6}),
    }
    deltas = collections.defaultdict(lambda: 0)
    for (name, lc), w, seed in zip(cfgs.items(), (W_PA, W_PB), (20, 21)):
        torch.manual_seed(seed)
        base = LlamaForCausalLM(cfg)
        pm = get_peft_model(base, lc)
        for n, p in pm.named_parameters():
            if "lora_" in n:
                torch.nn.init.normal_(p, std=0.3)
        pm.save_pretrained(f"{dst}/{name}")
        os.remove(f"{dst}/{name}/README.md") if os.path.exists(f"{dst}/{name}/README.md") else None
        from peft.tuners.lora import LoraLayer
        for mname, mod in pm.named_modules():
            if isinstance(mod, LoraLayer):
                A = mod.lora_A["default"].weight.double()
                B = mod.lora_B["default"].weight.double()
                s = mod.scaling["default"]
                key = mname.replace("base_model.model.", "", 1) + ".weight"
                deltas[key] = deltas[key] + w * s * (B @ A)
    sd = {}
    for f in shards:
        sd.update(load_file(f"{d}/{f}"))
    ref = {k: ((v.double() + deltas[k]).to(torch.bfloat16) if k in deltas else v) for k, v in sd.items()}
    save_file(ref, f"{dst}/ref_bake_llama.safetensors")

    # cross-check with PEFT: weighted sum of both adapters merged into a float32 model
    m32 = LlamaForCausalLM(cfg)
    m32.load_state_dict({k: v.float() for k, v in sd.items()})
    pm = PeftModel.from_pretrained(m32, f"{dst}/peft_a", adapter_name="a")
    pm.load_adapter(f"{dst}/peft_b", adapter_name="b")
    from peft.tuners.lora import LoraLayer
    for mod in pm.modules():
        if isinstance(mod, LoraLayer):
            for an, w in (("a", W_PA), ("b", W_PB)):
                if an in mod.scaling:
                    mod.scaling[an] *= w
    merged = pm.merge_and_unload(adapter_names=["a", "b"]).state_dict()
    worst = max((merged[k].double() - (sd[k].double() + deltas[k])).abs().max().item() for k in deltas)
    assert worst < 1e-4, worst
    print(f"gen_merge: PEFT merge_and_unload(a:{W_PA}, b:{W_PB}) matches W + Σ w·s·B·A (max diff {worst:.2e})")


# ---- optional: check the tool's outputs with the reference libraries -----------------

def check(bin_dir):
    tool = os.path.join(bin_dir, "lora-merge")
    from diffusers import StableDiffusionPipeline as P
    from peft import PeftModel
    from peft.utils import get_peft_model_state_dict
    with tempfile.TemporaryDirectory() as tmp:
        def run(*a):
            subprocess.run([tool, *a], check=True)
        # kohya -> diffusers: diffusers loads it with the same weights and scales
        run("--to", "diffusers", "-o", f"{tmp}/d.safetensors", f"{OUT}/kohya_a.safetensors")
        st, al, meta = P.lora_state_dict(f"{tmp}/d.safetensors", return_lora_metadata=True)
        u = tiny_unet()
        P.load_lora_into_unet(st, al, unet=u, adapter_name="x", metadata=meta)
        ref_st, ref_al = P.lora_state_dict(load_file(f"{OUT}/kohya_a.safetensors"))
        u2 = tiny_unet()
        P.load_lora_into_unet(ref_st, ref_al, unet=u2, adapter_name="x")
        from peft.tuners.lora import LoraLayer
        n = 0
        for (n1, m1), (n2, m2) in zip(u.named_modules(), u2.named_modules()):
            if isinstance(m1, LoraLayer):
                assert n1 == n2 and m1.scaling["x"] == m2.scaling["x"], (n1, m1.scaling, m2.scaling)
                assert torch.equal(m1.lora_A["x"].weight, m2.lora_A["x"].weight), n1
                assert torch.equal(m1.lora_B["x"].weight, m2.lora_B["x"].weight), n1
                n += 1
        print(f"check: kohya->diffusers output loads in diffusers: {n} modules, same weights and scales")
        # kohya -> PEFT (SD): PEFT loads the unet/ adapter onto a UNet with the same result
        run("--to", "peft", "-o", f"{tmp}/sdp", f"{OUT}/kohya_a.safetensors")
        u3 = PeftModel.from_pretrained(tiny_unet(), f"{tmp}/sdp/unet", adapter_name="x")
        n = 0
        for (n1, m1), (n2, m2) in zip(u3.base_model.model.named_modules(), u2.named_modules()):
            if isinstance(m1, LoraLayer):
                assert n1 == n2 and abs(m1.scaling["x"] - m2.scaling["x"]) < 1e-12, (n1, m1.scaling, m2.scaling)
                assert torch.equal(m1.lora_A["x"].weight, m2.lora_A["x"].weight), n1
                assert torch.equal(m1.lora_B["x"].weight, m2.lora_B["x"].weight), n1
                n += 1
        print(f"check: kohya->peft output loads in PEFT (PeftModel on the UNet): {n} modules, same weights and scales")
        # PEFT -> PEFT merge (weighted, concatenated) loads in PEFT and gives the weighted ΔW
        run("-o", f"{tmp}/p", f"{OUT}/peft_a:{W_PA}", f"{OUT}/peft_b:{W_PB}")
        from transformers import LlamaForCausalLM
        base = LlamaForCausalLM.from_pretrained(f"{OUT}/llama_tiny", torch_dtype=torch.float32)
        pm = PeftModel.from_pretrained(base, f"{tmp}/p")
        merged = pm.merge_and_unload().state_dict()
        ref = load_file(f"{OUT}/ref_bake_llama.safetensors")
        worst = max((merged[k] - ref[k].float()).abs().max().item() for k in ref)
        print(f"check: merged PEFT adapter loads in PEFT; merge_and_unload vs reference (bf16): max diff {worst:.3g}")
        assert worst < 0.07


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--check":
        check(sys.argv[2])
        return
    os.makedirs(OUT, exist_ok=True)
    sd_part(OUT)
    llama_part(OUT)
    total = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(OUT) for f in fs)
    print(f"gen_merge: wrote {OUT} ({total} bytes)")


if __name__ == "__main__":
    main()
