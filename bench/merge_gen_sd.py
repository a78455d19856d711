#!/usr/bin/env python3
"""merge_gen_sd.py DIR: a full-size SD 1.5 single-file checkpoint in the LDM
layout (diffusers' default UNet2DConditionModel = SD 1.5's, CLIP ViT-L/14 text
encoder, F16, random weights; 1.87 GB without a VAE, which a bake only copies)
and a kohya rank-32 LoRA on the 192 UNet attention modules and the 72
text-encoder modules, for bench/merge.sh."""
import os
import sys

import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "gen"))
from gen_merge import kohya_targets, make_kohya, tm, unet_to_ldm  # noqa: E402

d = sys.argv[1]
os.makedirs(d, exist_ok=True)
torch.manual_seed(0)
from diffusers import UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

unet = UNet2DConditionModel()          # defaults are SD 1.5's
te = CLIPTextModel(CLIPTextConfig())   # defaults are ViT-L/14's text tower
ldm = {}
for k, v in unet.state_dict().items():
    stem, leaf = k.rsplit(".", 1)
    ldm["model.diffusion_model." + unet_to_ldm(stem) + "." + leaf] = v.half()
for k, v in te.state_dict().items():
    ldm["cond_stage_model.transformer." + tm(k)] = v.half()
save_file(ldm, f"{d}/sd15.safetensors", metadata={"format": "pt"})
sd, _, meta = make_kohya(kohya_targets(unet, te, conv=False), 32, 16.0, 0, 0, torch.float16, False, 1, {})
save_file(sd, f"{d}/style.safetensors", metadata=meta)
print(f"merge_gen_sd: {os.path.getsize(f'{d}/sd15.safetensors') / 1e9:.2f} GB model, {len(sd) // 3} LoRA modules")
