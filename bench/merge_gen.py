#!/usr/bin/env python3
"""merge_gen.py DIR: a TinyLlama-1.1B-shaped random BF16 checkpoint (2.2 GB,
HF layout, 2 shards + index + config) and a PEFT rank-16 adapter on every
linear layer of every block, for bench/merge.sh. Random values: only the
shapes, names, dtypes and sizes matter for timing."""
import json
import os
import sys

import torch
from safetensors.torch import save_file

d = sys.argv[1]
os.makedirs(f"{d}/model", exist_ok=True)
os.makedirs(f"{d}/adapter", exist_ok=True)
V, H, I, L, NH, KV = 32000, 2048, 5632, 22, 32, 4
hd = H // NH
shapes = {"model.embed_tokens.weight": (V, H), "model.norm.weight": (H,), "lm_head.weight": (V, H)}
for i in range(L):
    p = f"model.layers.{i}."
    shapes.update({p + "input_layernorm.weight": (H,), p + "post_attention_layernorm.weight": (H,),
                   p + "self_attn.q_proj.weight": (NH * hd, H), p + "self_attn.k_proj.weight": (KV * hd, H),
                   p + "self_attn.v_proj.weight": (KV * hd, H), p + "self_attn.o_proj.weight": (H, NH * hd),
                   p + "mlp.gate_proj.weight": (I, H), p + "mlp.up_proj.weight": (I, H),
                   p + "mlp.down_proj.weight": (H, I)})
g = torch.Generator().manual_seed(0)
names = list(shapes)
half = len(names) // 2
wm, total = {}, 0
for k, part in enumerate((names[:half], names[half:])):
    fn = f"model-{k+1:05d}-of-00002.safetensors"
    sd = {n: (torch.randn(shapes[n], generator=g) * 0.02).to(torch.bfloat16) for n in part}
    save_file(sd, f"{d}/model/{fn}", metadata={"format": "pt"})
    for n in part:
        wm[n] = fn
        total += sd[n].numel() * 2
    del sd
json.dump({"metadata": {"total_size": total}, "weight_map": wm}, open(f"{d}/model/model.safetensors.index.json", "w"), indent=2)
json.dump({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": V, "hidden_size": H,
           "intermediate_size": I, "num_hidden_layers": L, "num_attention_heads": NH, "num_key_value_heads": KV,
           "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "max_position_embeddings": 2048,
           "tie_word_embeddings": False, "torch_dtype": "bfloat16"}, open(f"{d}/model/config.json", "w"), indent=2)
r, alpha = 16, 32
ad = {}
for n, s in shapes.items():
    if n.endswith("proj.weight"):
        stem = "base_model.model." + n[: -len(".weight")]
        ad[stem + ".lora_A.weight"] = torch.randn(r, s[1], generator=g) * 0.01
        ad[stem + ".lora_B.weight"] = torch.randn(s[0], r, generator=g) * 0.01
save_file(ad, f"{d}/adapter/adapter_model.safetensors", metadata={"format": "pt"})
json.dump({"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": r, "lora_alpha": alpha,
           "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
           "lora_dropout": 0.0, "bias": "none", "fan_in_fan_out": False, "use_rslora": False,
           "base_model_name_or_path": None, "inference_mode": True},
          open(f"{d}/adapter/adapter_config.json", "w"), indent=2)
print(f"merge_gen: {total / 1e9:.2f} GB model, {len(ad) // 2} LoRA modules in {d}")
