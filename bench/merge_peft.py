#!/usr/bin/env python3
"""merge_peft.py MODEL ADAPTER OUT: the usual user script: transformers loads
the model (BF16), PEFT loads the adapter, merge_and_unload, save_pretrained
with the same shard size."""
import os
import sys

import torch
from peft import PeftModel
from transformers import LlamaForCausalLM

model, adapter, out = sys.argv[1:4]
torch.set_num_threads(int(os.environ.get("LORA_THREADS", os.cpu_count())))
m = LlamaForCausalLM.from_pretrained(model, torch_dtype=torch.bfloat16)
m = PeftModel.from_pretrained(m, adapter).merge_and_unload()
m.save_pretrained(out, max_shard_size="1200MB")
# lora-merge fsyncs what it writes (temp + fsync + rename); so do we, unless
# BENCH_SYNC=0, so that both times end with the data on disk
if os.environ.get("BENCH_SYNC", "1") != "0":
    for f in os.listdir(out):
        fd = os.open(os.path.join(out, f), os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
