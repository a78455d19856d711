#!/usr/bin/env python3
"""merge_ref_sd.py MODEL LORA OUT: bake a kohya LoRA into an SD 1.5 single
file as the usual scripts do (load it whole, W += (alpha/r)·up@down in
float32 for each module, cast, save). Module names: tests/gen/gen_merge.py's
LDM table, the same mapping diffusers' converter confirms."""
import os
import sys

import torch
from safetensors.torch import load_file, save_file

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "gen"))
from gen_merge import unet_to_ldm  # noqa: E402

model, lora, out = sys.argv[1:4]
torch.set_num_threads(int(os.environ.get("LORA_THREADS", os.cpu_count())))
W = load_file(model)
L = load_file(lora)
words = ["down_blocks", "up_blocks", "mid_block", "transformer_blocks", "to_q", "to_k", "to_v",
         "to_out", "proj_in", "proj_out", "text_model", "self_attn", "q_proj", "k_proj", "v_proj",
         "out_proj"]
for k in [k for k in L if k.endswith(".lora_down.weight")]:
    name = k[: -len(".lora_down.weight")]
    down, up, alpha = L[k].float(), L[name + ".lora_up.weight"].float(), L[name + ".alpha"].item()
    if name.startswith("lora_unet_"):
        p = name[len("lora_unet_"):]
        for w in words:
            p = p.replace(w, w.replace("_", "#"))
        p = p.replace("_", ".").replace("#", "_")
        key = "model.diffusion_model." + unet_to_ldm(p) + ".weight"
    else:
        p = name[len("lora_te_"):]
        for w in words:
            p = p.replace(w, w.replace("_", "#"))
        key = "cond_stage_model.transformer." + p.replace("_", ".").replace("#", "_") + ".weight"
    w = W[key]
    r = down.shape[0]
    d = (up.reshape(up.shape[0], r) @ down.reshape(r, -1)).reshape(w.shape)
    W[key] = (w.float() + (alpha / r) * d).to(w.dtype)
save_file(W, out, metadata={"format": "pt"})
if os.environ.get("BENCH_SYNC", "1") != "0":
    fd = os.open(out, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
