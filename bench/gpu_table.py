#!/usr/bin/env python3
"""gpu_table.py: the markdown table of bench/train-gpu.sh from its log.

Reads lines written by train_gpu (impl=ours), train_gpu_peft.py (impl=peft)
and train-gpu.sh ("model name=<shape> dir=<folder>" before each model's
results, "matmul bf16_tflops=X" once), and prints per config: tokens/s of
both, the ratio ours/peft, peak memory of both, and model FLOP utilisation
(MFU) of both against the measured dense bf16 matmul rate, with

    FLOPs per token = 4 · P + 6 · T · D · L

P = parameters of every matrix product (the layers' projections and the
lm_head; 2·P forward, 2·P for the input gradients: frozen weights get no
weight gradient), D = heads · head_dim, L = layers; 6·T·D·L is causal
attention (forward 2·T·D per layer and token, backward twice that).

  python3 bench/gpu_table.py log.txt
"""
import json
import os
import re
import sys


def kv(line):
    return dict(re.findall(r'(\w+)=("[^"]*"|\S+)', line))


def flops_per_token(cfg, T):
    C, I, L = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    NH, NKV, V = cfg["num_attention_heads"], cfg.get("num_key_value_heads") or cfg["num_attention_heads"], cfg["vocab_size"]
    HS = cfg.get("head_dim") or C // NH
    P = L * (C * NH * HS + 2 * C * NKV * HS + NH * HS * C + 3 * C * I) + V * C
    return 4 * P + 6 * T * NH * HS * L


def main():
    rows, model, cfgs, peak = {}, None, {}, None
    for line in open(sys.argv[1]):
        if line.startswith("model "):
            d = kv(line)
            model = d["name"]
            cfgs[model] = json.load(open(os.path.join(d["dir"], "config.json")))
        elif line.startswith("matmul "):
            peak = float(kv(line)["bf16_tflops"])
        elif line.startswith("result "):
            d = kv(line)
            key = (model, int(d["T"]), int(d["B"]), d["targets"], int(d["r"]))
            rows.setdefault(key, {})[d["impl"]] = d
    gpu, attn = "", ""
    for line in open(sys.argv[1]):
        if line.startswith("# gpu "):
            gpu = line[6:].strip()
        if line.startswith("# attention kernels: "):
            attn = line[21:].strip()
    print(f"GPU: {gpu or 'unknown'}; dense bf16 matmul: {peak or float('nan'):.0f} TFLOP/s "
          f"(measured); our attention kernels: {attn or '?'}\n")
    print("| model | seq | batch | LoRA | ours tok/s | PEFT tok/s | ratio | ours peak MiB | PEFT peak MiB | ours MFU | PEFT MFU |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for key in sorted(rows, key=lambda k: (k[0], k[1], k[3])):
        m, T, B, tg, r = key
        o, p = rows[key].get("ours", {}), rows[key].get("peft", {})

        def tps(d):
            return float(d["tokens_per_s"]) if d.get("status") == "ok" else None

        def cell(d, f):
            if not d:
                return "-"
            if d.get("status") != "ok":
                return d.get("status", "?")
            return f(d) + (" (ckpt)" if d.get("ckpt") == "1" else "")

        fpt = flops_per_token(cfgs[m], T)
        mfu = lambda d: f"{100 * float(d['tokens_per_s']) * fpt / (peak * 1e12):.1f}%" if peak else "-"
        ratio = f"{tps(o) / tps(p):.2f}x" if tps(o) and tps(p) else "-"
        speed = lambda d: "%.0f" % float(d["tokens_per_s"])
        mem = lambda d: d["mem_mib"]
        print(f"| {m} | {T} | {B} | r={r} {tg} | {cell(o, speed)} | {cell(p, speed)} | {ratio} "
              f"| {cell(o, mem)} | {cell(p, mem)} | {cell(o, mfu)} | {cell(p, mfu)} |")


if __name__ == "__main__":
    main()
