#!/usr/bin/env python3
"""gen_bf16_ref.py: how far PyTorch's own bf16 training step is from its fp32
one, on the engine's golden cases (tests/fixtures/engine/<case>/): the yardstick
for tests/test-cuda-llama.c's bf16 run ("within bf16 rounding").

For each case: transformers + PEFT in fp32, then the same model with the frozen
weights in bf16, the LoRA weights in fp32 and the forward under
torch.autocast(bfloat16) (what a PEFT user trains with, and what our CUDA
backend's precision: bf16 does). Writes tests/fixtures/engine/bf16_reference.json:
per case the normwise relative error ‖bf16 − fp32‖₂ / ‖fp32‖₂ of the logits
and of the LoRA gradients, and the loss's relative error.

    python3 tests/gen/gen_bf16_ref.py
"""
import json, os
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM
from peft import PeftModel

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "engine"))
CASES = ["llama_gqa", "qwen2_bias", "llama_tied", "mistral"]


def step(d, ids, labels, bf16):
    base = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32)
    if bf16:
        base = base.to(torch.bfloat16)
    model = PeftModel.from_pretrained(base, os.path.join(d, "adapter"), is_trainable=True)
    for n, p in model.named_parameters():
        if "lora_" in n:
            p.data = p.data.float()
    model.train()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        res = model(input_ids=ids, labels=labels)
    res.loss.backward()
    grads = torch.cat([p.grad.float().flatten() for n, p in model.named_parameters() if p.requires_grad])
    return res.logits.detach().float(), grads, float(res.loss)


def rel(a, b):
    return float((a - b).norm() / b.norm())


def main():
    out = {}
    for case in CASES:
        d = os.path.join(ROOT, case)
        g = load_file(os.path.join(d, "golden.safetensors"))
        ids, labels = g["ids"].long(), g["labels"].long()
        l32, g32, loss32 = step(d, ids, labels, False)
        l16, g16, loss16 = step(d, ids, labels, True)
        out[case] = {"logits": rel(l16, l32), "grads": rel(g16, g32),
                     "loss": abs(loss16 - loss32) / abs(loss32)}
        print(case, out[case])
    with open(os.path.join(ROOT, "bf16_reference.json"), "w") as f:
        json.dump(out, f, indent=2, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
