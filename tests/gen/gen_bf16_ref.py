#!/usr/bin/env python3
"""gen_bf16_ref.py: how far PyTorch's own bf16 (and fp16) training step is from
its fp32 one, on the engine's golden cases (tests/fixtures/engine/<case>/): the
yardstick for tests/test-cuda-llama.c's bf16 and fp16 runs ("within bf16
rounding").

For each case: transformers + PEFT in fp32, then the same model with the frozen
weights in bf16, the LoRA weights in fp32 and the forward under
torch.autocast(bfloat16) (what a PEFT user trains with, and what our CUDA
backend's precision: bf16 does). Writes tests/fixtures/engine/bf16_reference.json:
per case the normwise relative error ‖bf16 − fp32‖₂ / ‖fp32‖₂ of the logits
and of the LoRA gradients, and the loss's relative error; then the golden
10 AdamW steps (gen_llama.py's loop: the fixture's batches and hp.*, warmup
+ cosine, clipping) in both precisions, and the largest relative difference
over the steps of the loss (steps_loss) and of the gradient norm before
clipping (steps_norm). AdamW divides each gradient by its running RMS, so
small gradients' rounding moves the weights by O(lr) and the two
trajectories part a little more each step: these are the yardsticks for the
loss curve and gradient norms.

The same five numbers with float16 in place of bfloat16 (the frozen weights
in fp16, autocast to float16: precision: fp16) go under each case's "fp16".

    python3 tests/gen/gen_bf16_ref.py [CASE ...]   (default: every case; named
                                                  cases are updated in place)
"""
import json, os, sys
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, get_cosine_schedule_with_warmup
from peft import PeftModel

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "engine"))
CASES = ["llama_gqa", "qwen2_bias", "llama_tied", "mistral", "llama_hs64"]


def load(d, half):
    """half: None (fp32), torch.bfloat16 or torch.float16."""
    base = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32)
    if half:
        base = base.to(half)
    model = PeftModel.from_pretrained(base, os.path.join(d, "adapter"), is_trainable=True)
    for n, p in model.named_parameters():
        if "lora_" in n:
            p.data = p.data.float()
    model.train()
    return model


def step(d, ids, labels, half):
    model = load(d, half)
    with torch.autocast("cpu", dtype=half or torch.bfloat16, enabled=half is not None):
        res = model(input_ids=ids, labels=labels)
    res.loss.backward()
    grads = torch.cat([p.grad.float().flatten() for n, p in model.named_parameters() if p.requires_grad])
    return res.logits.detach().float(), grads, float(res.loss)


def steps(d, g, half):
    """The golden AdamW steps: losses and gradient norms."""
    model = load(d, half)
    hp = {k[3:]: float(v) for k, v in g.items() if k.startswith("hp.")}
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=hp["lr"], betas=(hp["beta1"], hp["beta2"]), eps=hp["eps"],
                            weight_decay=hp["weight_decay"])
    sched = get_cosine_schedule_with_warmup(opt, int(hp["warmup"]), int(hp["total"]))
    losses, norms = [], []
    for i, l in zip(g["steps.ids"].long(), g["steps.labels"].long()):
        with torch.autocast("cpu", dtype=half or torch.bfloat16, enabled=half is not None):
            loss = model(input_ids=i, labels=l).loss
        losses.append(loss.item())
        loss.backward()
        norms.append(torch.nn.utils.clip_grad_norm_(params, hp["max_grad_norm"]).item())
        opt.step()
        sched.step()
        opt.zero_grad()
    return losses, norms


def rel(a, b):
    return float((a - b).norm() / b.norm())


def main():
    path = os.path.join(ROOT, "bf16_reference.json")
    out = json.load(open(path)) if len(sys.argv) > 1 else {}
    for case in sys.argv[1:] or CASES:
        d = os.path.join(ROOT, case)
        g = load_file(os.path.join(d, "golden.safetensors"))
        ids, labels = g["ids"].long(), g["labels"].long()
        l32, g32, loss32 = step(d, ids, labels, None)
        s32, n32 = steps(d, g, None)

        def against_fp32(half):
            lh, gh, lossh = step(d, ids, labels, half)
            sh, nh = steps(d, g, half)
            return {"logits": rel(lh, l32), "grads": rel(gh, g32),
                    "loss": abs(lossh - loss32) / abs(loss32),
                    "steps_loss": max(abs(a - b) / abs(b) for a, b in zip(sh, s32)),
                    "steps_norm": max(abs(a - b) / abs(b) for a, b in zip(nh, n32))}

        out[case] = against_fp32(torch.bfloat16)
        out[case]["fp16"] = against_fp32(torch.float16)
        print(case, out[case])
    with open(path, "w") as f:
        json.dump(out, f, indent=2, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
