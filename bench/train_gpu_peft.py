#!/usr/bin/env python3
"""train_gpu_peft.py: the reference side of bench/train-gpu.sh: LoRA training
tokens/s and peak GPU memory with PyTorch + transformers + PEFT, bf16 base
model, SDPA attention, fp32 LoRA weights (PEFT's autocast_adapter_dtype), on
the same configs as bench/train_gpu.c, and the GPU's dense bf16 matmul rate.

  python3 bench/train_gpu_peft.py --model DIR 4:512:q,v:8 1:2048:all-linear:16
  python3 bench/train_gpu_peft.py --matmul

For each config "B:T:targets:r" (targets q,v or all-linear; alpha = 2r, no
dropout): a fresh random-weight LlamaForCausalLM from DIR/config.json built in
bf16 on the GPU (random is random: the timing does not depend on the values),
get_peft_model, AdamW (lr 1e-4), `warmup` steps, then `steps` timed steps of
forward + backward + clip_grad_norm_(1.0) + step + zero_grad on random ids.
Peak memory is torch.cuda.max_memory_allocated over the config (weights
included). Out of memory: retried with gradient checkpointing, then reported.
Prints one "result impl=peft ..." line per config, as train_gpu does.
"""
import argparse
import gc
import json
import os
import statistics
import time

import torch

TARGETS = {"q,v": ["q_proj", "v_proj"],
           "all-linear": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]}


def matmul_rate(n=8192, reps=20):
    """Dense bf16 matmul TFLOP/s: median of reps timed products (events),
    rotating three input sets so the inputs never sit in L2."""
    ab = [(torch.randn(n, n, device="cuda", dtype=torch.bfloat16),
           torch.randn(n, n, device="cuda", dtype=torch.bfloat16)) for _ in range(3)]
    for i in range(5):
        torch.matmul(*ab[i % 3])
    times = []
    for i in range(reps):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        torch.matmul(*ab[i % 3])
        e.record()
        torch.cuda.synchronize()
        times.append(s.elapsed_time(e) / 1e3)
    return 2 * n ** 3 / statistics.median(times) / 1e12


def sync(dev):
    if dev == "cuda":
        torch.cuda.synchronize()


def run_config(model_dir, spec, steps, warmup, dev):
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM
    B, T, targets, r = spec.split(":")
    B, T, r = int(B), int(T), int(r)
    cfg = LlamaConfig.from_pretrained(model_dir)
    cfg.use_cache = False
    for ckpt in (0, 1):
        model = opt = None
        gc.collect()
        if dev == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        try:
            torch.set_default_dtype(torch.bfloat16)
            with torch.device(dev):
                model = LlamaForCausalLM._from_config(cfg, attn_implementation="sdpa",
                                                      dtype=torch.bfloat16)
            torch.set_default_dtype(torch.float32)
            if ckpt:
                model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            lc = LoraConfig(r=r, lora_alpha=2 * r, lora_dropout=0.0,
                            target_modules=TARGETS[targets], task_type="CAUSAL_LM")
            model = get_peft_model(model, lc)      # adapter weights in fp32
            model.train()
            params = [p for p in model.parameters() if p.requires_grad]
            opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.0)
            g = torch.Generator(device=dev).manual_seed(1234)
            losses = []
            for s in range(warmup + steps):
                if s == warmup:
                    sync(dev)
                    t0 = time.perf_counter()
                ids = torch.randint(0, cfg.vocab_size, (B, T), device=dev, generator=g)
                loss = model(input_ids=ids, labels=ids).loss
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                opt.step()
                opt.zero_grad(set_to_none=True)
                losses.append(loss.item())
            sync(dev)
            dt = time.perf_counter() - t0
            ntr = sum(p.numel() for p in params)
            mem = torch.cuda.max_memory_allocated() / 2**20 if dev == "cuda" else 0
            print(f"result impl=peft B={B} T={T} targets={targets} r={r} ckpt={ckpt} status=ok "
                  f"tokens_per_s={B * T * steps / dt:.1f} step_ms={1e3 * dt / steps:.2f} "
                  f"mem_mib={mem:.0f} trainable={ntr} "
                  f"loss_first={losses[0]:.4f} loss_last={losses[-1]:.4f}", flush=True)
            break
        except torch.OutOfMemoryError as e:
            torch.set_default_dtype(torch.float32)
            msg = str(e).splitlines()[0]
            if ckpt:
                print(f"result impl=peft B={B} T={T} targets={targets} r={r} ckpt=1 status=oom "
                      f"msg=\"{msg}\"", flush=True)
        finally:
            del model, opt
            gc.collect()
            if dev == "cuda":
                torch.cuda.empty_cache()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", help="model folder (config.json)")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--matmul", action="store_true", help="print the dense bf16 matmul rate")
    ap.add_argument("--device", default="cuda", help="cuda; cpu only checks the script")
    ap.add_argument("configs", nargs="*")
    a = ap.parse_args()
    import transformers, peft
    print(f"# torch {torch.__version__} transformers {transformers.__version__} "
          f"peft {peft.__version__} on "
          f"{torch.cuda.get_device_name() if a.device == 'cuda' else a.device}", flush=True)
    if a.matmul:
        print(f"matmul bf16_tflops={matmul_rate():.1f}", flush=True)
    for spec in a.configs:
        run_config(a.model, spec, a.steps, a.warmup, a.device)


if __name__ == "__main__":
    main()
