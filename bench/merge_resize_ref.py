#!/usr/bin/env python3
"""merge_resize_ref.py LORA RANK OUT: resize a kohya LoRA the way
sd-scripts' networks/resize_lora.py does it: per module form ΔW = up@down in
float32, torch.linalg.svd, keep the top RANK (up = U·S, down = Vh), alpha =
RANK so that the scale is 1; report the energy kept."""
import os
import sys

import torch
from safetensors.torch import load_file, save_file

lora, rank, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
torch.set_num_threads(int(os.environ.get("LORA_THREADS", os.cpu_count())))
L = load_file(lora)
res = {}
for k in [k for k in L if k.endswith(".lora_down.weight")]:
    n = k[: -len(".lora_down.weight")]
    down, up = L[k].float(), L[n + ".lora_up.weight"].float()
    r = down.shape[0]
    scale = L[n + ".alpha"].item() / r
    dw = scale * (up.reshape(up.shape[0], r) @ down.reshape(r, -1))
    U, S, Vh = torch.linalg.svd(dw, full_matrices=False)
    k2 = min(rank, S.shape[0])
    res[n + ".lora_up.weight"] = (U[:, :k2] * S[:k2]).reshape(up.shape[0], k2, *up.shape[2:]).contiguous().half()
    res[n + ".lora_down.weight"] = Vh[:k2].reshape(k2, *down.shape[1:]).contiguous().half()
    res[n + ".alpha"] = torch.tensor(float(k2)).half()
    print(f"{n}\t{r}\t{k2}\t{(S[:k2] ** 2).sum().item() / (S ** 2).sum().item():.6f}")
save_file(res, out)
