#!/usr/bin/env python3
"""check_peft_load.py: does an adapter written by our code load in PEFT and
give the logits our forward gives? Run by hand (needs torch, transformers,
peft); CI cannot. It runs build/rel/tests/test-llama with LORA_TEST_OUT set,
which trains each golden case for 10 steps and writes <out>/<case>/
adapter_model.safetensors + adapter_config.json + logits.f32 (our logits on
the fixture's ids, eval mode), then loads each with
PeftModel.from_pretrained on the HF base model and compares.

    make build/rel/tests/test-llama && python3 tests/gen/check_peft_load.py
"""
import os, subprocess, sys, tempfile
import numpy as np
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM
from peft import PeftModel

root = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
fix = os.path.join(root, "tests", "fixtures", "engine")
out = tempfile.mkdtemp(prefix="peft-check-")
scratch = tempfile.mkdtemp(prefix="peft-scratch-")
env = dict(os.environ, LORA_TEST_OUT=out, TMPDIR=scratch)
r = subprocess.run([os.path.join(root, "build", "rel", "tests", "test-llama")], cwd=root, env=env,
                   capture_output=True, text=True)
print(r.stdout.strip().splitlines()[-1])
bad = 0
for case in sorted(os.listdir(out)):
    d = os.path.join(out, case)
    if not os.path.exists(os.path.join(d, "adapter_config.json")):
        continue
    base = AutoModelForCausalLM.from_pretrained(os.path.join(fix, case), dtype=torch.float32)
    model = PeftModel.from_pretrained(base, d).eval()
    ids = load_file(os.path.join(fix, case, "golden.safetensors"))["ids"].long()
    with torch.no_grad():
        want = model(input_ids=ids).logits.numpy()
    got = np.fromfile(os.path.join(d, "logits.f32"), dtype=np.float32).reshape(want.shape)
    diff = np.abs(got - want).max()
    ok = diff <= 1e-4 * np.abs(want).max()
    bad += not ok
    print(f"{'ok  ' if ok else 'FAIL'} {case}: PeftModel.from_pretrained(our adapter) logits "
          f"max diff {diff:.3g} (max |logit| {np.abs(want).max():.3g})")
sys.exit(1 if bad or r.returncode else 0)
