#!/usr/bin/env python3
"""lora-train vs PyTorch + PEFT on the CPU: tokens/s and peak memory (RSS)
for a ~20M-parameter LLaMA, LoRA r=8 on q_proj,v_proj, sequence 256, batch 4,
AdamW, gradient clipping, same threads, same random-weight model, same data.
Run: sh bench/train.sh [THREADS] [STEPS]   (prints a table; results go in
bench/RESULTS-train.md by hand)."""
import os, sys
import json, re, resource, shutil, subprocess, tempfile, time

THREADS = int(sys.argv[1]) if len(sys.argv) > 1 else os.cpu_count()
STEPS = int(sys.argv[2]) if len(sys.argv) > 2 else 8
B, T = 4, 256
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = dict(architectures=['LlamaForCausalLM'], model_type='llama', vocab_size=4096,
              hidden_size=512, intermediate_size=1376, num_hidden_layers=6,
              num_attention_heads=8, num_key_value_heads=8, max_position_embeddings=512,
              rms_norm_eps=1e-5, rope_theta=10000.0, hidden_act='silu',
              tie_word_embeddings=True, bos_token_id=0, eos_token_id=1, torch_dtype='float32')

MAKE_MODEL = r'''
import json, sys, torch
from transformers import LlamaConfig, LlamaForCausalLM
torch.manual_seed(0)
m = LlamaForCausalLM(LlamaConfig(**json.loads(sys.argv[2])))
m.save_pretrained(sys.argv[1], safe_serialization=True)
print(sum(p.numel() for p in m.parameters()))
'''

def make_model(d):
    # in a child process: a parent holding torch would have its RSS counted
    # in the peak RSS of the children it forks (before their exec)
    p = subprocess.run([sys.executable, '-c', MAKE_MODEL, d, json.dumps(CONFIG)],
                       capture_output=True, text=True, check=True)
    shutil.copy(os.path.join(ROOT, 'examples', 'demo', 'base', 'tokenizer.json'), d)
    return int(p.stdout.split()[-1])

def make_data(d):
    import random
    r = random.Random(1)
    os.makedirs(d)
    rows = [[r.randrange(2, 4096) for _ in range(T)] for _ in range(B * (STEPS + 2))]
    with open(os.path.join(d, 'bench.ids'), 'w') as f:
        for row in rows:
            f.write(' '.join(map(str, row)) + '\n')
    return rows

def run_ours(model, data, out):
    exe = os.path.join(ROOT, 'bin', 'lora-train')
    cmd = [exe, '--base_model', model, '--train_data_dir', data, '--output_dir', out,
           '--max_seq_length', str(T), '--batch_size', str(B), '--max_steps', str(STEPS),
           '--lora_rank', '8', '--lora_alpha', '16', '--target_modules', 'q_proj,v_proj',
           '--logging_steps', '1', '--save_steps', '0', '--device', 'cpu', '--seed', '1']
    env = dict(os.environ, LORA_THREADS=str(THREADS))
    with tempfile.TemporaryFile('w+') as so, tempfile.TemporaryFile('w+') as se:
        p = subprocess.Popen(cmd, env=env, stdout=so, stderr=se)
        _, status, ru = os.wait4(p.pid, 0)     # this child's own peak RSS
        p.returncode = os.waitstatus_to_exitcode(status)
        so.seek(0); se.seek(0)
        out, err = so.read(), se.read()
    if p.returncode:
        sys.exit('lora-train failed:\n' + err)
    # per-step tok/s lines; skip the first step (warm-up), as for torch
    tps = [float(x) for x in re.findall(r'tok/s=([0-9.]+)', out)][1:]
    return B * T * len(tps) / sum(B * T / x for x in tps), ru.ru_maxrss / 1024

TORCH_CODE = r'''
import json, resource, sys, time, torch
from transformers import LlamaForCausalLM
from peft import LoraConfig, get_peft_model
model_dir, rows_file, threads, B, T, steps = sys.argv[1:7]
threads, B, T, steps = int(threads), int(B), int(T), int(steps)
torch.set_num_threads(threads)
rows = json.load(open(rows_file))
m = LlamaForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32)
m = get_peft_model(m, LoraConfig(r=8, lora_alpha=16, target_modules=['q_proj', 'v_proj'],
                                 lora_dropout=0.0, task_type='CAUSAL_LM'))
m.train()
opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=2e-4, weight_decay=0.01)
times = []
for s in range(steps):
    x = torch.tensor(rows[s * B:(s + 1) * B])
    t0 = time.perf_counter()
    loss = m(input_ids=x, labels=x).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_([p for p in m.parameters() if p.requires_grad], 1.0)
    opt.step()
    opt.zero_grad()
    times.append(time.perf_counter() - t0)
print(json.dumps({"tps": B * T * (steps - 1) / sum(times[1:]),
                  "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
'''

def run_torch(model, rows, tmp):
    rf = os.path.join(tmp, 'rows.json')
    json.dump(rows, open(rf, 'w'))
    p = subprocess.run([sys.executable, '-c', TORCH_CODE, model, rf, str(THREADS), str(B), str(T),
                        str(STEPS)], capture_output=True, text=True,
                       env=dict(os.environ, OMP_NUM_THREADS=str(THREADS)))
    if p.returncode:
        sys.exit('torch failed:\n' + p.stderr)
    return json.loads(p.stdout.strip().splitlines()[-1])

def main():
    with tempfile.TemporaryDirectory() as tmp:
        model = os.path.join(tmp, 'model')
        n = make_model(model)
        rows = make_data(os.path.join(tmp, 'data'))
        tps_ours, rss_ours = run_ours(model, os.path.join(tmp, 'data'), os.path.join(tmp, 'out'))
        t = run_torch(model, rows, tmp)
        print(f'LLaMA {n / 1e6:.1f}M params, LoRA r=8 q,v, batch {B} x seq {T}, '
              f'{STEPS} steps (first one not timed), {THREADS} threads')
        print(f'{"":14} {"tokens/s":>10} {"peak RSS MiB":>13}')
        print(f'{"lora-train":14} {tps_ours:10.0f} {rss_ours:13.0f}')
        print(f'{"torch+peft":14} {t["tps"]:10.0f} {t["rss"]:13.0f}')
        print(f'{"ratio":14} {tps_ours / t["tps"]:9.2f}x {rss_ours / t["rss"]:12.2f}x')

main()
