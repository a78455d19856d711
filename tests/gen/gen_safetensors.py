#!/usr/bin/env python3
"""Write the safetensors fixtures with the reference writers.

Everything under tests/fixtures/safetensors/ (except bad/, see gen_bad.py) is
made here by the reference Python `safetensors` package (0.8), PyTorch, HF
transformers / PEFT and diffusers; expected values come from the same
packages, so the C tests compare against code written outside this project.

    python3 tests/gen/gen_safetensors.py        # rewrites the fixtures

The reference writer keeps metadata in a hash map, so files with several
metadata keys come out in a different key order on each run (the content is
the same); expected.json records the order of the committed files.

Files:
  dtypes.safetensors     one tensor per dtype the reference can write, 1 meta key
  edge.safetensors       0-dim, empty and odd-shaped tensors, no metadata
  empty.safetensors      no tensors at all ({} + 6 spaces)
  meta.safetensors       several metadata keys, escapes, UTF-8 names
  conv.safetensors       F32 -> F16/BF16 rounding and F16/F8 -> F32 tables (torch)
  expected.json          per file: header size, file size, metadata (in header
                         order), and per tensor: dtype, shape, offsets, raw
                         bytes (hex) and the f32 value bits as torch computes them
  llama/                 tiny LlamaForCausalLM, sharded by transformers (index.json)
  llama1/                the same model in one file
  peft/                  PEFT LoRA adapter (adapter_model.safetensors + config)
  diffusers/             diffusers SD LoRA (save_lora_weights, unet + text encoder)
  kohya.safetensors      kohya-style SD 1.5 LoRA, real key names, ss_* metadata
  kohya-b.safetensors    kohya.safetensors changed for --diff
  sd15.safetensors       tiny SD 1.5 single-file checkpoint (LDM key names)
  nonfinite.safetensors  NaN and Inf values for --stats
  stats.tsv              numpy's min/max/mean/std/L2/NaN/Inf of kohya + nonfinite
  diff.tsv               numpy's largest |a-b| for common tensors of kohya vs kohya-b
"""
import ctypes
import json
import os
import re
import shutil
import struct
import sys

import numpy as np
import torch
from safetensors import TensorSpec, serialize, safe_open
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "fixtures", "safetensors")
rng = np.random.default_rng(20261123)
torch.manual_seed(20261123)

TORCH = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16,
    "BF16": torch.bfloat16, "I64": torch.int64, "I32": torch.int32,
    "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool,
    "F8_E4M3": torch.float8_e4m3fn, "F8_E4M3FNUZ": torch.float8_e4m3fnuz,
    "F8_E5M2": torch.float8_e5m2, "F8_E5M2FNUZ": torch.float8_e5m2fnuz,
    "F8_E8M0": torch.float8_e8m0fnu, "C64": torch.complex64,
    "U64": torch.uint64, "U32": torch.uint32, "U16": torch.uint16,
}
BITS = {"F64": 64, "F32": 32, "F16": 16, "BF16": 16, "I64": 64, "I32": 32,
        "I16": 16, "I8": 8, "U8": 8, "BOOL": 8, "F8_E4M3": 8, "F8_E4M3FNUZ": 8,
        "F8_E5M2": 8, "F8_E5M2FNUZ": 8, "F8_E8M0": 8, "C64": 64, "U64": 64,
        "U32": 32, "U16": 16, "F4": 4}
SPEC = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16",
        "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8",
        "BOOL": "bool", "F8_E4M3": "float8_e4m3fn", "F8_E4M3FNUZ": "float8_e4m3fnuz",
        "F8_E5M2": "float8_e5m2", "F8_E5M2FNUZ": "float8_e5m2fnuz",
        "F8_E8M0": "float8_e8m0fnu", "C64": "complex64", "U64": "uint64",
        "U32": "uint32", "U16": "uint16", "F4": "float4_e2m1fn_x2"}


def path(*p):
    return os.path.join(OUT, *p)


def write_raw(fname, tensors, metadata=None):
    """tensors: {name: (dtype string, shape, bytes)} -> reference serialize()."""
    bufs, specs = [], {}
    for name, (dt, shape, data) in tensors.items():
        b = ctypes.create_string_buffer(bytes(data), max(len(data), 1))
        bufs.append(b)
        sh = list(shape)
        if dt == "F4":      # the spec takes the packed storage shape
            sh = sh[:-1] + [sh[-1] // 2]
        specs[name] = TensorSpec(dtype=SPEC[dt], shape=sh,
                                 data_ptr=ctypes.addressof(b), data_len=len(data))
    blob = serialize(specs, metadata)
    with open(fname, "wb") as f:
        f.write(blob)


def f32bits(t):
    """torch tensor (any float/int dtype) -> list of f32 bit patterns."""
    x = t.reshape(-1).to(torch.float32).numpy()
    return [int(v) for v in x.view(np.uint32)]


def fnv(b):
    """FNV-1a 64 of bytes, as 16 hex digits (the C test computes the same)."""
    h = 0xcbf29ce484222325
    for c in b:
        h = ((h ^ c) * 0x100000001b3) & 0xffffffffffffffff
    return "%016x" % h


def f32fnv(t):
    return fnv(t.reshape(-1).to(torch.float32).numpy().astype("<f4").tobytes())


def describe(fname, full=False):
    """Read a file back with the reference reader: the expected.json entry."""
    raw = open(fname, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])          # keeps header order
    meta = header.pop("__metadata__", None) or {}
    ents = []
    with safe_open(fname, "pt") as f:
        for name, e in header.items():
            b, end = e["data_offsets"]
            data = raw[8 + n + b:8 + n + end]
            ent = {"name": name, "dtype": e["dtype"], "shape": e["shape"],
                   "offsets": [b, end], "fnv": fnv(data)}
            dt = e["dtype"]
            if dt in TORCH and dt not in ("C64", "U64", "I64", "U32"):
                t = f.get_tensor(name)          # (64-bit ints are not exact in f32)
                if full:
                    ent["hex"] = data.hex()
                    ent["f32bits"] = f32bits(t)     # NaN bits may differ: compare as NaN
                else:
                    ent["f32fnv"] = f32fnv(t)
            ents.append(ent)
    ents.sort(key=lambda e: (e["offsets"][0], e["offsets"][1]))
    return {"header_bytes": n, "file_bytes": len(raw),
            "meta": [[k, v] for k, v in meta.items()], "tensors": ents}


def rand_bytes(dt, shape):
    n = int(np.prod(shape)) if shape else 1
    nbytes = n * BITS[dt] // 8
    if dt == "BOOL":
        return rng.integers(0, 2, nbytes, dtype=np.uint8).tobytes()
    if dt in ("F32", "F64", "F16", "BF16"):
        t = torch.from_numpy(rng.standard_normal(n).astype(np.float32) * 3)
        return t.to(TORCH[dt]).numpy().tobytes() if dt != "BF16" else \
            t.to(torch.bfloat16).view(torch.int16).numpy().tobytes()
    if dt == "C64":
        return rng.standard_normal(2 * n).astype(np.float32).tobytes()
    if dt == "F8_E8M0":      # avoid 0xff (NaN) so values stay finite
        return rng.integers(100, 160, nbytes, dtype=np.uint8).tobytes()
    return rng.integers(0, 256, nbytes, dtype=np.uint8).tobytes()


# ---- plain format fixtures ----------------------------------------------------

def gen_format():
    # every dtype the reference writer knows, in a deliberately unsorted dict
    shapes = {"F64": [3], "F32": [2, 3], "F16": [5], "BF16": [2, 2], "I64": [2],
              "I32": [3], "I16": [3], "I8": [4], "U8": [4], "BOOL": [5],
              "F8_E4M3": [6], "F8_E4M3FNUZ": [3], "F8_E5M2": [6],
              "F8_E5M2FNUZ": [3], "F8_E8M0": [4], "C64": [2], "U64": [2],
              "U32": [2], "U16": [3], "F4": [2, 4]}
    order = list(shapes)[::-1]          # not the writer's order
    tensors = {("t_" + d.lower()): (d, shapes[d], rand_bytes(d, shapes[d])) for d in order}
    write_raw(path("dtypes.safetensors"), tensors, {"format": "pt"})

    save_file({
        "scalar_f32": torch.tensor(3.25),
        "scalar_bf16": torch.tensor(-2.5, dtype=torch.bfloat16),
        "scalar_i64": torch.tensor(7, dtype=torch.int64),
        "empty_f32": torch.zeros(0),
        "empty_f16": torch.zeros(2, 0, 3, dtype=torch.float16),
        "z_after": torch.arange(6, dtype=torch.float32).reshape(1, 2, 3, 1),
        "a_first": torch.tensor([1.0, 2.0]),
    }, path("edge.safetensors"))

    save_file({}, path("empty.safetensors"))

    save_file({
        "w": torch.tensor([1.0, 2.0]),
        "uni\u00e9\u4e2d.weight": torch.tensor([0.5], dtype=torch.float16),
        "quote\"back\\slash": torch.tensor([1], dtype=torch.uint8),
    }, path("meta.safetensors"), metadata={
        "format": "pt", "ss_network_dim": "16",
        "json": json.dumps({"a": [1, 2], "b": "x\ny"}),
        "caf\u00e9": "\u00fcber \u2603 tab\there", "empty": ""})

    # the FORMATS.md §1.1 example, byte for byte
    save_file({"w": torch.tensor([1.0, 2.0])}, path("example.safetensors"),
              metadata={"format": "pt"})


def gen_conv():
    """F32 -> F16 / BF16 as torch rounds (RNE), F16 and F8 -> F32 tables."""
    sp = []
    def f(bits):
        sp.append(bits & 0xffffffff)
    for b in (0x00000000, 0x80000000, 0x7f800000, 0xff800000, 0x7fc00000,
              0xffc00000, 0x7f800001, 0x7fbfffff, 0xff812345, 0x00000001,
              0x807fffff, 0x00400000, 0x7f7fffff, 0xff7fffff, 0x3f800000):
        f(b)
    for v in (65504.0, 65519.99, 65520.0, 65536.0, -65520.0, 2.0**-24, 2.0**-25,
              2.0**-25 * 1.0000001, 3 * 2.0**-26, 2.0**-14, 2.0**-14 - 2.0**-25,
              6.1e-5, 1e-8, 3.3895314e38, 3.3961776e38, 1.0 / 3, 0.1, 1e-40):
        f(int(np.array([v], np.float32).view(np.uint32)[0]))
        f(int(np.array([-v], np.float32).view(np.uint32)[0]))
    # exact ties and near-ties for both targets around many exponents
    for e in range(-30, 20):
        base = np.array([2.0**e], np.float32).view(np.uint32)[0]
        for m in (0x1000, 0x2000, 0x3000, 0x8000, 0x18000, 0x7fff, 0x8001, 0x17fff):
            for s in (0, 0x80000000):
                f(int(base) + m | s)
    bits = rng.integers(0, 2**32, 12000, dtype=np.uint64).astype(np.uint32)
    scaled = (rng.standard_normal(6000) * np.exp(rng.uniform(-25, 15, 6000))).astype(np.float32)
    x = np.concatenate([np.array(sp, np.uint32), bits, scaled.view(np.uint32)])
    xf = torch.from_numpy(x.view(np.float32).copy())
    f16 = xf.to(torch.float16)
    bf16 = xf.to(torch.bfloat16)
    all16 = torch.arange(65536, dtype=torch.int32).to(torch.int16)
    f16_all = all16.view(torch.float16).to(torch.float32)
    bf16_some = torch.from_numpy(rng.integers(0, 65536, 4096).astype(np.int16))
    t = {
        "f32_in": xf,
        "f16_ref": f16,
        "bf16_ref": bf16,
        "f16_all_f32": f16_all,
        "bf16_in": bf16_some.view(torch.bfloat16),
        "bf16_in_f32": bf16_some.view(torch.bfloat16).to(torch.float32),
    }
    all8 = torch.arange(256, dtype=torch.int32).to(torch.uint8)
    for name, dt in (("e4m3", torch.float8_e4m3fn), ("e5m2", torch.float8_e5m2),
                     ("e4m3fnuz", torch.float8_e4m3fnuz),
                     ("e5m2fnuz", torch.float8_e5m2fnuz), ("e8m0", torch.float8_e8m0fnu)):
        t["f8_" + name + "_f32"] = all8.view(dt).to(torch.float32)
    save_file(t, path("conv.safetensors"))


# ---- model-shaped fixtures ------------------------------------------------------

def tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM
    cfg = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32,
                      num_hidden_layers=2, num_attention_heads=2,
                      num_key_value_heads=1, max_position_embeddings=32)
    torch.manual_seed(1)
    return LlamaForCausalLM(cfg)


def gen_llama():
    m = tiny_llama().to(torch.bfloat16)
    for d in ("llama", "llama1"):
        shutil.rmtree(path(d), ignore_errors=True)
    m.save_pretrained(path("llama"), max_shard_size="3KB", safe_serialization=True)
    m.save_pretrained(path("llama1"), safe_serialization=True)
    for d in ("llama", "llama1"):
        for junk in ("generation_config.json",):
            p = path(d, junk)
            if os.path.exists(p):
                os.remove(p)


def gen_peft():
    from peft import LoraConfig, get_peft_model
    m = tiny_llama()
    m.name_or_path = "tiny-random-llama"      # what PEFT copies into the config
    cfg = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "o_proj"],
                     rank_pattern={"o_proj": 2}, alpha_pattern={"o_proj": 4},
                     task_type="CAUSAL_LM")
    pm = get_peft_model(m, cfg)
    with torch.no_grad():
        for n, p in pm.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.02)
    shutil.rmtree(path("peft"), ignore_errors=True)
    pm.save_pretrained(path("peft"))
    for junk in ("README.md",):
        p = path("peft", junk)
        if os.path.exists(p):
            os.remove(p)


def gen_diffusers():
    from diffusers import UNet2DConditionModel, StableDiffusionPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict
    from transformers import CLIPTextConfig, CLIPTextModel
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(16, 32), norm_num_groups=8, cross_attention_dim=16,
        attention_head_dim=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"))
    te = CLIPTextModel(CLIPTextConfig(hidden_size=16, intermediate_size=32,
                                      num_hidden_layers=2, num_attention_heads=2,
                                      vocab_size=100, max_position_embeddings=16))
    unet.add_adapter(LoraConfig(r=4, lora_alpha=4, init_lora_weights="gaussian",
                                target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    te.add_adapter(LoraConfig(r=2, lora_alpha=2, init_lora_weights="gaussian",
                              target_modules=["q_proj", "k_proj", "v_proj", "out_proj"]))
    shutil.rmtree(path("diffusers"), ignore_errors=True)
    StableDiffusionPipeline.save_lora_weights(
        path("diffusers"), unet_lora_layers=get_peft_model_state_dict(unet),
        text_encoder_lora_layers=get_peft_model_state_dict(te), safe_serialization=True)


KOHYA_UNET = [  # (diffusers parent path, child, kind, in, out)
    ("down_blocks.0.attentions.0", "proj_in", "conv1", 8, 8),
    ("down_blocks.0.attentions.0", "transformer_blocks.0.attn1.to_q", "lin", 8, 8),
    ("down_blocks.0.attentions.0", "transformer_blocks.0.attn1.to_k", "lin", 8, 8),
    ("down_blocks.0.attentions.0", "transformer_blocks.0.attn1.to_v", "lin", 8, 8),
    ("down_blocks.0.attentions.0", "transformer_blocks.0.attn1.to_out.0", "lin", 8, 8),
    ("down_blocks.0.attentions.0", "transformer_blocks.0.attn2.to_k", "lin", 12, 8),
    ("down_blocks.0.attentions.0", "transformer_blocks.0.ff.net.0.proj", "lin", 8, 64),
    ("down_blocks.0.attentions.0", "transformer_blocks.0.ff.net.2", "lin", 32, 8),
    ("mid_block.attentions.0", "transformer_blocks.0.attn1.to_q", "lin", 16, 16),
    ("up_blocks.3.attentions.2", "proj_out", "conv1", 8, 8),
    ("down_blocks.0.resnets.0", "conv1", "conv3", 8, 8),
]
KOHYA_TE = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
            "self_attn.out_proj", "mlp.fc1", "mlp.fc2"]


def kohya_tensors():
    t = {}
    def add(lora_name, kind, cin, cout, r, alpha):
        if kind == "lin":
            down, up = torch.randn(r, cin), torch.randn(cout, r) * 0.1
        elif kind == "conv1":
            down, up = torch.randn(r, cin, 1, 1), torch.randn(cout, r, 1, 1) * 0.1
        else:
            down, up = torch.randn(r, cin, 3, 3), torch.randn(cout, r, 1, 1) * 0.1
        t[lora_name + ".lora_down.weight"] = down.half()
        t[lora_name + ".lora_up.weight"] = up.half()
        t[lora_name + ".alpha"] = torch.tensor(float(alpha)).half()
    for parent, child, kind, cin, cout in KOHYA_UNET:
        name = "lora_unet_" + (parent + "." + child).replace(".", "_")
        if kind == "conv3":
            add(name, kind, cin, cout, 2, 1)
        else:
            add(name, kind, cin, cout, 4, 2)
    for layer in (0, 11):
        for child in KOHYA_TE:
            name = "lora_te_text_model_encoder_layers_%d_%s" % (layer, child.replace(".", "_"))
            cin, cout = (8, 32) if child == "mlp.fc1" else (32, 8) if child == "mlp.fc2" else (8, 8)
            add(name, "lin", cin, cout, 4, 2)
    return t


KOHYA_META = {
    "ss_network_module": "networks.lora", "ss_network_dim": "4",
    "ss_network_alpha": "2.0",
    "ss_network_args": json.dumps({"conv_dim": "2", "conv_alpha": "1"}),
    "ss_base_model_version": "sd_v1", "ss_v2": "False",
    "ss_sd_model_name": "v1-5-pruned-emaonly.safetensors",
    "ss_resolution": "(512, 512)", "ss_learning_rate": "0.0001",
    "ss_unet_lr": "0.0001", "ss_text_encoder_lr": "5e-05",
    "ss_lr_scheduler": "cosine", "ss_optimizer": "bitsandbytes.optim.adamw.AdamW8bit",
    "ss_num_train_images": "50", "ss_num_epochs": "10", "ss_epoch": "10",
    "ss_steps": "500", "ss_max_train_steps": "500", "ss_batch_size_per_device": "2",
    "ss_mixed_precision": "fp16", "ss_clip_skip": "None", "ss_seed": "42",
    "ss_output_name": "tiny_style",
    "ss_training_started_at": "1763800000.0", "ss_training_finished_at": "1763803600.0",
    "modelspec.architecture": "stable-diffusion-v1/lora",
    "modelspec.title": "tiny_style",
}


def gen_kohya():
    torch.manual_seed(5)
    t = kohya_tensors()
    save_file(t, path("kohya.safetensors"), metadata=KOHYA_META)
    b = dict(t)
    k1 = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_up.weight"
    b[k1] = (t[k1].float() + 0.25).half()                    # changed values
    k2 = "lora_te_text_model_encoder_layers_0_mlp_fc1.lora_down.weight"
    b[k2] = t[k2].float()                                     # changed dtype
    k3 = "lora_unet_mid_block_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight"
    b[k3] = torch.randn(2, 16).half()                         # changed shape
    del b["lora_te_text_model_encoder_layers_11_mlp_fc2.alpha"]   # only in A
    b["lora_te_text_model_encoder_layers_11_mlp_fc2.scale"] = torch.tensor(1.0).half()  # only in B
    save_file(b, path("kohya-b.safetensors"), metadata=KOHYA_META)
    with open(path("diff.tsv"), "w") as f:
        for k in sorted(set(t) & set(b)):
            if t[k].shape != b[k].shape:
                continue
            d = (t[k].double() - b[k].double()).abs().max().item() if t[k].numel() else 0.0
            f.write("%s\t%.9g\n" % (k, d))


def gen_sd15():
    torch.manual_seed(6)
    t = {
        "model.diffusion_model.input_blocks.0.0.weight": torch.randn(8, 4, 3, 3),
        "model.diffusion_model.input_blocks.0.0.bias": torch.randn(8),
        "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight": torch.randn(8, 8),
        "model.diffusion_model.input_blocks.1.1.proj_in.weight": torch.randn(8, 8, 1, 1),
        "model.diffusion_model.middle_block.1.transformer_blocks.0.attn2.to_k.weight": torch.randn(8, 12),
        "model.diffusion_model.out.2.weight": torch.randn(4, 8, 3, 3),
        "model.diffusion_model.time_embed.0.weight": torch.randn(16, 8),
        "first_stage_model.encoder.conv_in.weight": torch.randn(8, 3, 3, 3),
        "first_stage_model.quant_conv.weight": torch.randn(8, 8, 1, 1),
        "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight": torch.randn(20, 8),
        "cond_stage_model.transformer.text_model.encoder.layers.0.self_attn.q_proj.weight": torch.randn(8, 8),
        "cond_stage_model.transformer.text_model.final_layer_norm.weight": torch.ones(8),
        "alphas_cumprod": torch.linspace(0.999, 0.005, 10),
    }
    save_file({k: v.half() if v.dim() > 1 else v for k, v in t.items()}, path("sd15.safetensors"))


def gen_nonfinite():
    save_file({
        "ok": torch.tensor([1.0, -2.0, 3.0, 0.5]),
        "bad_bf16": torch.tensor([1.0, float("nan"), float("inf"), -float("inf"), 2.0],
                                 dtype=torch.bfloat16),
        "bad_f32": torch.tensor([[float("nan"), 1.0], [2.0, float("nan")]]),
    }, path("nonfinite.safetensors"))


def stats_rows(fname):
    rows = []
    with safe_open(fname, "pt") as f:
        for k in f.keys():
            x = f.get_tensor(k).double().reshape(-1).numpy()
            nan = int(np.isnan(x).sum())
            inf = int(np.isinf(x).sum())
            y = x[np.isfinite(x)]
            if len(y) == 0:
                rows.append((k, "nan", "nan", "nan", "nan", "nan", nan, inf))
                continue
            rows.append((k, "%.9g" % y.min(), "%.9g" % y.max(), "%.9g" % y.mean(),
                         "%.9g" % y.std(), "%.9g" % np.sqrt((y * y).sum()), nan, inf))
    return rows


def gen_stats():
    with open(path("stats.tsv"), "w") as f:
        f.write("# file\tname\tmin\tmax\tmean\tstd\tl2\tnan\tinf\n")
        for fn in ("kohya.safetensors", "nonfinite.safetensors", "sd15.safetensors"):
            for r in stats_rows(path(fn)):
                f.write(fn + "\t" + "\t".join(str(v) for v in r) + "\n")


# ---- module names: kohya -> diffusers -> LDM ------------------------------------

# FORMATS.md §2.8 (diffusers' convert_diffusers_to_original_stable_diffusion),
# checked below against diffusers' own convert_ldm_unet_checkpoint.
RES = [("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("norm2", "out_layers.0"),
       ("conv2", "out_layers.3"), ("time_emb_proj", "emb_layers.1"), ("conv_shortcut", "skip_connection")]
def res(rest):
    for a, b in RES:
        if rest == a or rest.startswith(a + "."):
            return b + rest[len(a):]
    return rest
def to_ldm(p):
    P = "model.diffusion_model."
    m = re.match(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", p)
    if m:
        i, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
        return P + "input_blocks.%d.%d.%s" % (3*i+j+1, 1 if kind == "attentions" else 0, rest if kind == "attentions" else res(rest))
    m = re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv(.*)", p)
    if m:
        return P + "input_blocks.%d.0.op%s" % (3*int(m[1])+3, m[2])
    m = re.match(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", p)
    if m:
        i, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
        return P + "output_blocks.%d.%d.%s" % (3*i+j, 1 if kind == "attentions" else 0, rest if kind == "attentions" else res(rest))
    m = re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.(.*)", p)
    if m:
        i = int(m[1]); return P + "output_blocks.%d.%d.%s" % (3*i+2, 2 if i else 1, m[2])
    m = re.match(r"mid_block\.resnets\.(\d+)\.(.*)", p)
    if m:
        return P + "middle_block.%d.%s" % (2*int(m[1]), res(m[2]))
    m = re.match(r"mid_block\.attentions\.0\.(.*)", p)
    if m:
        return P + "middle_block.1." + m[1]
    for a, b in (("conv_in", "input_blocks.0.0"), ("conv_out", "out.2"), ("conv_norm_out", "out.0"),
                 ("time_embedding.linear_1", "time_embed.0"), ("time_embedding.linear_2", "time_embed.2")):
        if p == a or p.startswith(a + "."):
            return P + b + p[len(a):]
    return P + p


def sd15_unet():
    from diffusers import UNet2DConditionModel
    # SD 1.5's block structure (4 levels, 2 resnets down / 3 up) at tiny width
    return UNet2DConditionModel(sample_size=8, block_out_channels=(8, 8, 8, 8),
                                layers_per_block=2, norm_num_groups=4,
                                cross_attention_dim=8, attention_head_dim=2)


def gen_names():
    """names.tsv: kohya name, module path (diffusers' kohya converter), LDM name."""
    import re
    import diffusers.loaders.lora_conversion_utils as L
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint
    unet = sd15_unet()
    sd = unet.state_dict()
    ck = {to_ldm(k): torch.full(v.shape, float(n)) for n, (k, v) in enumerate(sd.items())}
    out = convert_ldm_unet_checkpoint(ck, unet.config)
    bad = [k for n, (k, v) in enumerate(sd.items()) if k not in out or not torch.all(out[k] == n)]
    assert not bad, "to_ldm disagrees with diffusers: %s" % bad[:5]

    mods = [n for n, m in unet.named_modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]
    te = ["text_model.encoder.layers.%d.%s" % (i, c) for i in range(12) for c in KOHYA_TE]
    kd = {}
    for n in mods:
        kd["lora_unet_" + n.replace(".", "_")] = ("unet", n)
    for n in te:
        kd["lora_te_" + n.replace(".", "_")] = ("text_encoder", n)
    sdl = {}
    for k in kd:
        sdl[k + ".lora_down.weight"] = torch.zeros(1, 1)
        sdl[k + ".lora_up.weight"] = torch.zeros(1, 1)
        sdl[k + ".alpha"] = torch.tensor(1.0)
    conv = L._convert_non_diffusers_lora_to_diffusers(dict(sdl))[0]
    got = set()
    for k in conv:
        m = re.match(r"(.*?)(\.lora\.down\.weight|\.lora_linear_layer\.down\.weight|_lora\.down\.weight)$", k)
        if m:
            p = m[1].replace(".processor.", ".")
            if p.startswith("text_encoder."):      # old processor names of CLIP attention
                p = re.sub(r"self_attn\.to_(q|k|v)$", r"self_attn.\1_proj", p)
                p = re.sub(r"self_attn\.to_out$", "self_attn.out_proj", p)
            elif p.endswith(".to_out"):
                p += ".0"
            got.add(p)
    with open(path("names.tsv"), "w") as f:
        f.write("# kohya name\tmodule path (diffusers' kohya converter)\tLDM base name\n")
        for k, (part, n) in sorted(kd.items()):
            assert part + "." + n in got, "diffusers maps %s elsewhere" % k
            base = to_ldm(n) if part == "unet" else "cond_stage_model.transformer." + n
            f.write("%s\t%s\t%s\n" % (k, n, base))


def gen_modules():
    """modules.tsv: per LoRA module of each fixture, rank, alpha, scale as the
    reference libraries (PEFT's LoraLayer.scaling) or the file itself say."""
    from peft import PeftModel
    rows = []
    m = PeftModel.from_pretrained(tiny_llama(), path("peft"))
    for n, mod in m.named_modules():
        if hasattr(mod, "scaling") and isinstance(getattr(mod, "scaling"), dict) and "default" in mod.scaling:
            p = n[len("base_model.model."):]
            rows.append(("peft/adapter_model.safetensors", p, mod.r["default"],
                         mod.lora_alpha["default"], mod.scaling["default"]))
    with safe_open(path("kohya.safetensors"), "pt") as f:
        for k in sorted(f.keys()):
            if k.endswith(".lora_down.weight"):
                name = k[:-len(".lora_down.weight")]
                r = f.get_tensor(k).shape[0]
                a = f.get_tensor(name + ".alpha").float().item()
                rows.append(("kohya.safetensors", name, r, a, a / r))
    with safe_open(path("diffusers", "pytorch_lora_weights.safetensors"), "pt") as f:
        for k in sorted(f.keys()):
            if k.endswith(".lora_A.weight"):
                name = k[:-len(".lora_A.weight")]
                r = f.get_tensor(k).shape[0]
                rows.append(("diffusers/pytorch_lora_weights.safetensors", name, r, r, 1.0))
    with open(path("modules.tsv"), "w") as f:
        f.write("# file\tmodule (PEFT: path; others: key prefix)\trank\talpha\tscale\n")
        for r in rows:
            f.write("%s\t%s\t%d\t%.9g\t%.9g\n" % r)


def gen_listings():
    """listing/*.tsv: name, dtype, shape, params per tensor in file order, as
    the reference reader reports them (lora-inspect's table); meta.tsv: the
    metadata of meta.safetensors in header order, escaped as --meta does."""
    os.makedirs(path("listing"), exist_ok=True)
    files = {"dtypes": ["dtypes.safetensors"], "edge": ["edge.safetensors"],
             "kohya": ["kohya.safetensors"], "peft": ["peft/adapter_model.safetensors"]}
    idx = json.load(open(path("llama", "model.safetensors.index.json")))
    files["llama-sharded"] = ["llama/" + s for s in sorted(set(idx["weight_map"].values()))]
    for out, fns in files.items():
        with open(path("listing", out + ".tsv"), "w") as f:
            for fn in fns:
                raw = open(path(fn), "rb").read()
                n = struct.unpack("<Q", raw[:8])[0]
                h = json.loads(raw[8:8 + n])
                h.pop("__metadata__", None)
                for name, e in sorted(h.items(), key=lambda kv: kv[1]["data_offsets"]):
                    numel = int(np.prod(e["shape"])) if e["shape"] else 1
                    f.write("%s\t%s\t[%s]\t%d\n" % (name, e["dtype"],
                            ",".join(str(d) for d in e["shape"]), numel))
    esc = lambda s: s.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    with safe_open(path("meta.safetensors"), "pt") as f:
        pass
    raw = open(path("meta.safetensors"), "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    meta = json.loads(raw[8:8 + n])["__metadata__"]
    with open(path("listing", "meta.tsv"), "w") as f:
        for k, v in meta.items():
            f.write("%s\t%s\n" % (esc(k), esc(v)))


def gen_expected():
    exp = {}
    for fn in ("dtypes.safetensors", "edge.safetensors", "empty.safetensors",
               "meta.safetensors", "example.safetensors", "kohya.safetensors",
               "peft/adapter_model.safetensors", "diffusers/pytorch_lora_weights.safetensors",
               "llama1/model.safetensors"):
        exp[fn] = describe(path(fn), full=fn in ("dtypes.safetensors", "edge.safetensors",
                                                 "example.safetensors"))
    # the sharded checkpoint: every tensor of every shard, keyed by name
    idx = json.load(open(path("llama", "model.safetensors.index.json")))
    sh = {}
    for name, shard in sorted(idx["weight_map"].items()):
        with safe_open(path("llama", shard), "pt") as f:
            sh[name] = {"shard": shard, "f32fnv": f32fnv(f.get_tensor(name)),
                        "dtype": f.get_slice(name).get_dtype(),
                        "shape": list(f.get_slice(name).get_shape())}
    exp["llama/model.safetensors.index.json"] = {"tensors": sh,
                                                 "nshards": len(set(idx["weight_map"].values()))}
    with open(path("expected.json"), "w") as f:
        json.dump(exp, f, indent=0, ensure_ascii=True)
        f.write("\n")


def main():
    os.makedirs(OUT, exist_ok=True)
    gen_format()
    gen_conv()
    gen_llama()
    gen_peft()
    gen_diffusers()
    gen_kohya()
    gen_sd15()
    gen_nonfinite()
    gen_stats()
    gen_names()
    gen_modules()
    gen_listings()
    gen_expected()
    total = 0
    for root, _, files in os.walk(OUT):
        if "/bad" in root:
            continue
        for fn in files:
            total += os.path.getsize(os.path.join(root, fn))
    print("wrote %s (%d KB)" % (OUT, total // 1024))


if __name__ == "__main__":
    sys.exit(main())
