#!/usr/bin/env python3
"""mem_peft.py: what PyTorch + transformers + PEFT keep for the backward of a
LoRA training step, measured on the CPU, for bench/memory.sh.

  python3 bench/mem_peft.py --model DIR 4:512:q,v:8 1:2048:all-linear:16

For each config "B:T:targets:r" (alpha 2r, no dropout, bf16 base model, SDPA
attention, fp32 adapter: bench/train_gpu_peft.py's runs) it builds the
model with 1 and with 2 layers, runs one forward with labels under
torch.autograd.graph.saved_tensors_hooks, and adds up the distinct storages
autograd saves (parameters excluded), plus the logits the output keeps. The
difference is what one layer keeps per token; the rest is the head. It
prints

  plan impl=peft B=4 T=512 targets=q,v r=8 layer_kb_per_token=...
       head_kb_per_token=... weights_mib=... trainable_mib=... lower_bound_mib=...

lower_bound = weights + LoRA weights, gradients and AdamW moments + what
the forward keeps at the config's B·T and layer count: PEFT's peak on a GPU
(torch.cuda.max_memory_allocated) is at least this, plus the backward's
temporaries (the fp32 gradient of the logits, one layer's gradients) and the
allocator's rounding. Measured at min(B·T, 512) tokens: everything saved per
layer grows linearly with the tokens (SDPA saves q, k, v, out and the
log-sum-exp; the T×T matrix is never kept), on the CPU as on CUDA (the
flash kernels keep the same tensors).
"""
import argparse
import warnings

import torch

TARGETS = {"q,v": ["q_proj", "v_proj"],
           "all-linear": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]}


def saved_bytes(model_dir, layers, tokens, targets, r):
    """Bytes autograd keeps after one forward with `layers` layers, the
    number of base-model and of LoRA parameters."""
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM
    cfg = LlamaConfig.from_pretrained(model_dir)
    cfg.num_hidden_layers = layers
    cfg.use_cache = False
    torch.manual_seed(0)
    torch.set_default_dtype(torch.bfloat16)
    model = LlamaForCausalLM._from_config(cfg, attn_implementation="sdpa", dtype=torch.bfloat16)
    torch.set_default_dtype(torch.float32)
    model = get_peft_model(model, LoraConfig(r=r, lora_alpha=2 * r, lora_dropout=0.0,
                                             target_modules=TARGETS[targets], task_type="CAUSAL_LM"))
    model.train()
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    ntrain = sum(p.numel() for p in model.parameters() if p.requires_grad)
    nbase = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    seen = {}

    def pack(t):
        st = t.untyped_storage()
        if st.data_ptr() not in params:
            seen[st.data_ptr()] = st.nbytes()
        return t

    ids = torch.randint(0, cfg.vocab_size, (1, tokens))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(input_ids=ids, labels=ids)
    lg = out.logits.untyped_storage()
    if lg.data_ptr() not in seen:
        seen[lg.data_ptr()] = lg.nbytes()
    return sum(seen.values()), nbase, ntrain


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True, help="model folder (config.json)")
    ap.add_argument("configs", nargs="+")
    a = ap.parse_args()
    warnings.filterwarnings("ignore")
    from transformers import LlamaConfig
    L = LlamaConfig.from_pretrained(a.model).num_hidden_layers
    for spec in a.configs:
        B, T, targets, r = spec.split(":")
        B, T, r = int(B), int(T), int(r)
        n = min(B * T, 512)
        s1, b1, tr1 = saved_bytes(a.model, 1, n, targets, r)
        s2, b2, tr2 = saved_bytes(a.model, 2, n, targets, r)
        layer, head = (s2 - s1) / n, (2 * s1 - s2) / n
        nparams = b1 + (L - 1) * (b2 - b1)         # the full model's, from 1 and 2 layers
        trainable = (tr2 - tr1) * L * 16           # fp32 weight, gradient, two moments
        lower = 2 * nparams + trainable + (L * layer + head) * B * T
        mib = 2 ** 20
        print(f"plan impl=peft B={B} T={T} targets={targets} r={r} "
              f"layer_kb_per_token={layer / 1e3:.1f} head_kb_per_token={head / 1e3:.1f} "
              f"weights_mib={2 * nparams / mib:.0f} trainable_mib={trainable / mib:.1f} "
              f"lower_bound_mib={lower / mib:.0f}", flush=True)


if __name__ == "__main__":
    main()
