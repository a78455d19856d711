#!/usr/bin/env python3
"""Expected datasets for tests/test-data.c, computed independently of lib/data.c:
HF `tokenizers` (PyPI) for the token ids, and a Python re-implementation of
the documented splitmix64 / Fisher-Yates split and epoch orders (data.h).
Writes tests/fixtures/data/{ids,text,many}.expect.json, and the files of
tests/fixtures/data/many/ (seeded).
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

COUNTS = {}

def finish(exs, T):
    """cut to T, drop short / no-target examples (data.h); how many of
    each in COUNTS."""
    out = []
    COUNTS.update(ntruncated=0, ndropped=0)
    for ids, tgt in exs:
        COUNTS['ntruncated'] += len(ids) > T
        ids, tgt = ids[:T], tgt[:T]
        if len(ids) < 2 or not any(tgt[1:]):
            COUNTS['ndropped'] += 1
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

def ids_examples(path):
    exs = []
    for line in open(path):
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
    return exs

def ids_dataset(T):
    exs = []
    for f in sorted(glob.glob(os.path.join(FIX, 'ids', '*.ids'))):
        exs += ids_examples(f)
    return finish(exs, T)

def make_many():
    """tests/fixtures/data/many: 26 small files of all three kinds, in an
    order where .txt tails carry across files and end at the other kinds,
    for loading with several reader threads (test-data.c). Seeded, so the
    files come out the same each run."""
    import random
    rnd = random.Random(26)
    words = ('the of and to in a that is be it by for as with on not this are which '
             'Congress nation peace war trade people law year government states '
             'café naïve über 東京 — “quoted” 2026').split()
    text = lambda n: ' '.join(rnd.choice(words) for _ in range(n))
    d = os.path.join(FIX, 'many')
    os.makedirs(d, exist_ok=True)
    for f in glob.glob(os.path.join(d, '*')):
        os.remove(f)
    kinds = 'ttjtittjtjitttijttjtitjtti'
    for i, k in enumerate(kinds):
        name = os.path.join(d, '%02d.%s' % (i, {'t': 'txt', 'j': 'jsonl', 'i': 'ids'}[k]))
        with open(name, 'w', encoding='utf-8', newline='') as fh:
            if k == 't':
                # 1 to 150 words: some files end inside a chunk, some span two
                fh.write(text(rnd.choice([1, 3, 20, 45, 80, 150])) + '\n')
            elif k == 'j':
                for _ in range(rnd.randint(1, 4)):
                    o = rnd.choice([{'text': text(rnd.randint(2, 30))},
                                    {'prompt': text(5), 'completion': text(rnd.randint(1, 60))},
                                    {'instruction': text(4), 'input': text(rnd.randint(0, 3)),
                                     'output': text(6)}])
                    fh.write(json.dumps(o, ensure_ascii=False) + '\n')
            else:
                for _ in range(rnd.randint(1, 3)):
                    a = [str(rnd.randrange(32000)) for _ in range(rnd.randint(1, 80))]
                    if rnd.random() < 0.5:
                        fh.write(' '.join(a) + '\n')
                    else:
                        fh.write(' '.join(a[:3]) + '\t' + ' '.join(a[3:]) + '\n')
    with open(os.path.join(d, 'notes.md'), 'w') as fh:
        fh.write('not data: counted and named, not read\n')

ALPACA_IN = ("Below is an instruction that describes a task, paired with an input that provides "
             "further context. Write a response that appropriately completes the request.\n\n"
             "### Instruction:\n{}\n\n### Input:\n{}\n\n### Response:\n")
ALPACA = ("Below is an instruction that describes a task. Write a response that appropriately "
          "completes the request.\n\n### Instruction:\n{}\n\n### Response:\n")

def text_dataset(tok, T, folder='text'):
    enc = lambda s: tok.encode(s, add_special_tokens=False).ids
    bos, eos = tok.token_to_id('<s>'), tok.token_to_id('</s>')
    exs, stream = [], []
    files = [f for f in glob.glob(os.path.join(FIX, folder, '*'))
             if f.endswith(('.txt', '.jsonl', '.ids'))]
    files.sort(key=lambda f: os.path.basename(f).encode())
    for f in files:
        if f.endswith('.txt'):
            stream += enc(open(f, encoding='utf-8').read()) + [eos]
            while len(stream) >= T:
                exs.append((stream[:T], [1] * T)); stream = stream[T:]
            continue
        if stream:
            exs.append((stream, [1] * len(stream))); stream = []
        if f.endswith('.ids'):
            exs += ids_examples(f)
            continue
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

make_many()
d = text_dataset(tok, 64, 'many')
out = dict(max_seq_length=64, seed=3, val_split=0.1, B=4,
           examples=[dict(ids=i, target=t) for i, t in d])
out.update(split_and_orders(d, 3, 0.1, 2, 4))
out.update(COUNTS)
out['nfiles'] = [len(glob.glob(os.path.join(FIX, 'many', '*.' + k))) for k in ('txt', 'jsonl', 'ids')]
json.dump(out, open(os.path.join(FIX, 'many.expect.json'), 'w'), indent=0)
print('many:', len(d), 'examples')
