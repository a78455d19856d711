#!/usr/bin/env python3
"""Expected datasets for tests/test-data.c, computed independently of lib/data.c:
HF `tokenizers` (PyPI) for the token ids, and a Python re-implementation of
the documented splitmix64 / Fisher-Yates split and epoch orders (data.h).
Writes tests/fixtures/data/{ids,text}.expect.json.
Run: python3 tests/gen/data.py"""
import glob, json, os
HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, '..', 'fixtures', 'data')
SHARED = os.path.join(HERE, '..', '..', '..', 'shared')
M64 = (1 << 64) - 1
IGNORE = -100

def splitmix(state):
    state[0] = (state[0] + 0x9E3779B97F4A7C15) & M64
    z = state[0]
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)

def shuffle(a, seed):
    st = [seed & M64]
    for i in range(len(a) - 1, 0, -1):
        j = (splitmix(st) * (i + 1)) >> 64
        a[i], a[j] = a[j], a[i]
    return a

def finish(exs, T):
    """cut to T, drop short / no-target examples (data.h)."""
    out = []
    for ids, tgt in exs:
        ids, tgt = ids[:T], tgt[:T]
        if len(ids) < 2 or not any(tgt[1:]):
            continue
        out.append((ids, tgt))
    return out

def split_and_orders(exs, seed, val_split, epochs, B):
    n = len(exs)
    perm = list(range(n))
    nval = 0
    if val_split > 0:
        nval = max(1, int(val_split * n + 0.5))
        shuffle(perm, seed ^ 0x5EED5EED5EED5EED)
    val, train = sorted(perm[:nval]), sorted(perm[nval:])
    orders = [shuffle(list(train), seed + 0xD1B54A32D192ED03 * (e + 1)) for e in range(epochs)]
    # the first batch of epoch 0, as lora_batch_make lays it out
    idx = orders[0][:B]
    T = max(len(exs[i][0]) for i in idx)
    ids, targets = [], []
    for i in idx:
        e_ids, e_t = exs[i]
        for t in range(T):
            ids.append(e_ids[t] if t < len(e_ids) else PAD)
            targets.append(e_ids[t + 1] if t + 1 < len(e_ids) and e_t[t + 1] else IGNORE)
    return dict(val=val, train=train, orders=orders, batch_T=T, batch_ids=ids,
                batch_targets=targets)

def ids_dataset(T):
    exs = []
    for f in sorted(glob.glob(os.path.join(FIX, 'ids', '*.ids'))):
        for line in open(f):
            line = line.rstrip('\n')
            if not line.strip(' \t\r'):
                continue
            parts = line.split('\t')
            nums = lambda s: [int(x) for x in s.replace(',', ' ').split()]
            if len(parts) == 1:
                ids = nums(parts[0]); tgt = [1] * len(ids)
            else:
                p, a = nums(parts[0]), nums(parts[1])
                ids = p + a; tgt = [0] * len(p) + [1] * len(a)
            exs.append((ids, tgt))
    return finish(exs, T)

ALPACA_IN = ("Below is an instruction that describes a task, paired with an input that provides "
             "further context. Write a response that appropriately completes the request.\n\n"
             "### Instruction:\n{}\n\n### Input:\n{}\n\n### Response:\n")
ALPACA = ("Below is an instruction that describes a task. Write a response that appropriately "
          "completes the request.\n\n### Instruction:\n{}\n\n### Response:\n")

def text_dataset(tok, T):
    enc = lambda s: tok.encode(s, add_special_tokens=False).ids
    bos, eos = tok.token_to_id('<s>'), tok.token_to_id('</s>')
    exs, stream = [], []
    files = sorted(glob.glob(os.path.join(FIX, 'text', '*.txt')) +
                   glob.glob(os.path.join(FIX, 'text', '*.jsonl')))
    files.sort(key=lambda f: os.path.basename(f))
    for f in files:
        if f.endswith('.txt'):
            stream += enc(open(f, encoding='utf-8').read()) + [eos]
            while len(stream) >= T:
                exs.append((stream[:T], [1] * T)); stream = stream[T:]
            continue
        if stream:
            exs.append((stream, [1] * len(stream))); stream = []
        for line in open(f, encoding='utf-8'):
            if not line.strip():
                continue
            o = json.loads(line)
            ids, tgt = [bos], [1]
            def add(s, t):
                e = enc(s); ids.extend(e); tgt.extend([t] * len(e))
            if 'text' in o:
                add(o['text'], 1)
            elif 'prompt' in o:
                add(o['prompt'], 0); add(o['completion'], 1)
            else:
                p = ALPACA_IN.format(o['instruction'], o['input']) if o.get('input') else \
                    ALPACA.format(o['instruction'])
                add(p, 0); add(o['output'], 1)
            ids.append(eos); tgt.append(1)
            exs.append((ids, tgt))
    if stream:
        exs.append((stream, [1] * len(stream)))
    return finish(exs, T)

PAD = 0
d = ids_dataset(12)
out = dict(max_seq_length=12, seed=7, val_split=0.2, B=3,
           examples=[dict(ids=i, target=t) for i, t in d])
out.update(split_and_orders(d, 7, 0.2, 3, 3))
json.dump(out, open(os.path.join(FIX, 'ids.expect.json'), 'w'), indent=0)
print('ids:', len(d), 'examples')

from tokenizers import Tokenizer
tok = Tokenizer.from_file(os.path.join(SHARED, 'data', 'tokenizers', 'spm32k', 'tokenizer.json'))
PAD = tok.token_to_id('</s>')
d = text_dataset(tok, 64)
out = dict(max_seq_length=64, seed=42, val_split=0.25, B=4,
           examples=[dict(ids=i, target=t) for i, t in d])
out.update(split_and_orders(d, 42, 0.25, 2, 4))
json.dump(out, open(os.path.join(FIX, 'text.expect.json'), 'w'), indent=0)
print('text:', len(d), 'examples')
