#!/usr/bin/env python3
"""merge_ref.py MODEL ADAPTER OUT: the PyTorch way to bake a PEFT LoRA into an
HF checkpoint, as merge scripts do it: per shard, load it (safetensors),
W += (alpha/r)·B@A in float32, cast back, save it; copy the other files.
Already lean (one shard in memory at a time, not the whole model)."""
import json
import os
import shutil
import sys

import torch
from safetensors.torch import load_file, save_file

model, adapter, out = sys.argv[1:4]
torch.set_num_threads(int(os.environ.get("LORA_THREADS", os.cpu_count())))
cfg = json.load(open(f"{adapter}/adapter_config.json"))
scale = cfg["lora_alpha"] / cfg["r"]
ad = load_file(f"{adapter}/adapter_model.safetensors")
os.makedirs(out, exist_ok=True)
index = json.load(open(f"{model}/model.safetensors.index.json"))
for shard in sorted(set(index["weight_map"].values())):
    sd = load_file(f"{model}/{shard}")
    for name, w in sd.items():
        stem = "base_model.model." + name[: -len(".weight")]
        if stem + ".lora_A.weight" in ad:
            A, B = ad[stem + ".lora_A.weight"], ad[stem + ".lora_B.weight"]
            sd[name] = (w.float() + scale * (B.float() @ A.float())).to(w.dtype)
    save_file(sd, f"{out}/{shard}", metadata={"format": "pt"})
    del sd
for f in os.listdir(model):
    if not f.endswith(".safetensors"):
        shutil.copy(f"{model}/{f}", f"{out}/{f}")
# lora-merge fsyncs what it writes (temp + fsync + rename); so do we, unless
# BENCH_SYNC=0, so that both times end with the data on disk
if os.environ.get("BENCH_SYNC", "1") != "0":
    for f in os.listdir(out):
        fd = os.open(os.path.join(out, f), os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
