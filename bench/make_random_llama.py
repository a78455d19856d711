#!/usr/bin/env python3
"""make_random_llama.py: write a LLaMA model folder with random bf16 weights
(config.json + model.safetensors), shaped like a real model, for the GPU
training benchmark (bench/train-gpu.sh). Nothing is downloaded: the shapes
are the published configs of the two models.

  python3 bench/make_random_llama.py --shape tinyllama --out /tmp/m/tinyllama
  python3 bench/make_random_llama.py --shape llama2-7b --out /tmp/m/llama2-7b
  python3 bench/make_random_llama.py --shape llama2-7b --out DIR --config-only

Weights are N(0, 0.02) (the models' initializer_range), norms 1; drawn on
the GPU when there is one. The folder loads in lora-train and in
transformers (LlamaForCausalLM.from_pretrained).
"""
import argparse
import json
import os
import time

import torch
from safetensors.torch import save_file

SHAPES = {
    # a few MB, for checking the benchmark scripts on a machine without a GPU
    "tiny": dict(hidden_size=256, intermediate_size=688, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, vocab_size=1000,
                 max_position_embeddings=2048, rope_theta=10000.0, rms_norm_eps=1e-5),
    # TinyLlama/TinyLlama-1.1B-intermediate-step-1431k-3T config.json
    "tinyllama": dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22,
                      num_attention_heads=32, num_key_value_heads=4, vocab_size=32000,
                      max_position_embeddings=2048, rope_theta=10000.0, rms_norm_eps=1e-5),
    # meta-llama/Llama-2-7b-hf config.json
    "llama2-7b": dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                      num_attention_heads=32, num_key_value_heads=32, vocab_size=32000,
                      max_position_embeddings=4096, rope_theta=10000.0, rms_norm_eps=1e-5),
}


def config_dict(shape):
    s = SHAPES[shape]
    return {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu",
        "attention_bias": False, "attention_dropout": 0.0, "mlp_bias": False,
        "bos_token_id": 1, "eos_token_id": 2, "initializer_range": 0.02,
        "pretraining_tp": 1, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
        "use_cache": False, "rope_scaling": None, **s,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", choices=sorted(SHAPES), required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--config-only", action="store_true",
                    help="write config.json only (bench/memory.sh)")
    a = ap.parse_args()
    c = config_dict(a.shape)
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(c, f, indent=2, sort_keys=True)
    if a.config_only:
        return
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    g = torch.Generator(device=dev).manual_seed(a.seed)
    C, I, L = c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"]
    NH, NKV, V = c["num_attention_heads"], c["num_key_value_heads"], c["vocab_size"]
    HS = C // NH
    shapes = {"model.embed_tokens.weight": (V, C), "model.norm.weight": (C,),
              "lm_head.weight": (V, C)}
    for i in range(L):
        p = f"model.layers.{i}."
        shapes.update({
            p + "input_layernorm.weight": (C,), p + "post_attention_layernorm.weight": (C,),
            p + "self_attn.q_proj.weight": (NH * HS, C), p + "self_attn.k_proj.weight": (NKV * HS, C),
            p + "self_attn.v_proj.weight": (NKV * HS, C), p + "self_attn.o_proj.weight": (C, NH * HS),
            p + "mlp.gate_proj.weight": (I, C), p + "mlp.up_proj.weight": (I, C),
            p + "mlp.down_proj.weight": (C, I),
        })
    t0 = time.time()
    tensors = {}
    for name, shp in shapes.items():
        if name.endswith("norm.weight"):
            t = torch.ones(shp, dtype=torch.bfloat16, device=dev)
        else:
            t = (torch.randn(shp, generator=g, device=dev, dtype=torch.float32) * 0.02).to(torch.bfloat16)
        tensors[name] = t.cpu()
    n = sum(t.numel() for t in tensors.values())
    # to a temporary name, then renamed: a model.safetensors that exists is
    # whole (bench/gpu-run.sh starts a benchmark when it appears)
    path = os.path.join(a.out, "model.safetensors")
    save_file(tensors, path + ".tmp", metadata={"format": "pt"})
    os.replace(path + ".tmp", path)
    print(f"{a.shape}: {n / 1e9:.3g} B params in {a.out} ({time.time() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
