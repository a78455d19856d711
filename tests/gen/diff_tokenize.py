#!/usr/bin/env python3
"""Differential test of lora-tokenize against HF tokenizers on random text.

    python3 tests/gen/diff_tokenize.py [--bin bin/lora-tokenize] [--n 2000]
        [--rounds 10] [--seed 1] [--shared ../shared] [--only NAME] [--save F]

Each round makes --n random strings (runs of ASCII words, digits of several
scripts, punctuation, contractions, every kind of Unicode space and line
separator, control characters, letters of many scripts, combining marks,
Hangul jamo, compatibility characters, marks newer than HF's normalization
tables, emoji sequences, the tokenizers' own
special and added tokens, and random code points anywhere in Unicode) and
checks, for every tokenizer the fixtures cover (spm32k, llama3, the GPT-2
pair, the var-* files in tests/fixtures/tokenizer, the demo's BPE):

  encode   `lora-tokenize -t TOK --jsonl text` == encode(s, add_special_tokens=False)
  decode   `lora-tokenize -t TOK --decode`     == decode(ids, skip_special_tokens=False)

A mismatch prints the string (repr), both id lists and the first place they
differ, and the script exits 1 after the round. Not part of make check (it
needs Python and the reference library); the fixed strings it finds worth
keeping go into gen_tokenizer.py's HARD list, which is.
"""
import argparse
import json
import os
import random
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..")
FX = os.path.join(ROOT, "tests", "fixtures", "tokenizer")

sys.path.insert(0, HERE)
from gen_tokenizer import hf_tokenizers  # noqa: E402  (the same reference objects)


def cps(a, b):
    return [chr(c) for c in range(a, b + 1) if not 0xD800 <= c <= 0xDFFF]


SCRIPTS = [cps(0xC0, 0x24F), cps(0x370, 0x3FF), cps(0x400, 0x4FF), cps(0x5D0, 0x5EA),
           cps(0x620, 0x64A), cps(0x900, 0x97F), cps(0xE01, 0xE5B), cps(0xAC00, 0xAC60),
           cps(0x4E00, 0x4E80), cps(0x3040, 0x30FF), cps(0xFF01, 0xFF5E), cps(0x10A0, 0x10FF),
           cps(0x1E00, 0x1EFF), cps(0x1F00, 0x1FFF)]
DIGITS = [cps(0x30, 0x39), cps(0x660, 0x669), cps(0x966, 0x96F), cps(0xFF10, 0xFF19),
          ["\u00b2", "\u00b3", "\u00b9", "\u00bc", "\u2160", "\u2460", "\u3007", "\U0001D7CE"]]
SPACES = [" ", "  ", "\t", "\n", "\r", "\r\n", "\x0b", "\x0c", "\x85", "\u00a0", "\u1680",
          "\u2000", "\u2003", "\u2009", "\u200a", "\u200b", "\u2028", "\u2029", "\u202f",
          "\u205f", "\u3000", "\ufeff", "   \n", " \n\n "]
PUNCT = list("!\"#$%&()*+,-./:;<=>?@[\\]^_`{|}~'") + ["...", "--", "\u2019", "\u201c", "\u201d",
                                                      "\u2014", "\u00bf", "\u3001", "\u3002", "\u00b7"]
CONTRACTIONS = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "'Ll", "\u2019s", "'"]
COMBINING = cps(0x300, 0x36F) + ["\u0323", "\u0331", "\u093c", "\u094d", "\u0e31", "\u05b0", "\u064b"]
JAMO = cps(0x1100, 0x1112) + cps(0x1161, 0x1175) + cps(0x11A8, 0x11C2)
COMPAT = ["\ufb01", "\ufb02", "\u2126", "\u212b", "\u212a", "\u00b5", "\u017f", "\u0130", "\u0131",
          "\u00df", "\u1e9e", "\u01c5", "\u03a3", "\u03c2", "\u2460", "\u33cf", "\u00bd", "\u2122",
          "\uff21", "\u0149", "\u1f80", "\u0390", "\u0345", "\u1e98", "\u00aa", "\u2070"]
EMOJI = ["\U0001F600", "\U0001F44D\U0001F3FD", "\U0001F468\u200d\U0001F469\u200d\U0001F467",
         "\U0001F1EB\U0001F1F7", "\u2764\ufe0f", "\U0001F3F3\ufe0f\u200d\U0001F308", "\u263a",
         "\U0001FAE0", "\U0001F9D1\U0001F3FF\u200d\U0001F4BB", "#\ufe0f\u20e3"]
# marks and decomposable characters newer than HF's normalization tables,
# mixed with old marks of several combining classes (lib/unicode_hf.h)
NEWMARKS = [chr(c) for c in (0x7FD, 0x898, 0x8CA, 0x9FE, 0xC3C, 0xD3B, 0xD3C, 0xEBA, 0x1715, 0x1ABF, 0x1AC5,
                             0x1DF6, 0xA82C, 0x11935, 0x11930, 0x11938, 0x1E130, 0x32FF, 0xA7F2, 0x1FBF5,
                             0x301, 0x323, 0x334, 0x5B0, 0x64B, 0x93C, 0x94D, 0x302, 0x327, 0x345)]
CONTROL = [chr(c) for c in range(1, 32) if c not in (10, 13)] + ["\x7f", "\x80", "\x9f"]


def rand_cp(r):
    while True:
        c = r.choice([r.randrange(0x20, 0x800), r.randrange(0x800, 0x10000),
                      r.randrange(0x10000, 0x110000)])
        if not 0xD800 <= c <= 0xDFFF:
            return chr(c)


def word(r, alpha, lo=1, hi=10):
    return "".join(r.choice(alpha) for _ in range(r.randint(lo, hi)))


def piece(r, specials):
    k = r.random()
    if k < 0.22:
        w = word(r, "abcdefghijklmnopqrstuvwxyz")
        return r.choice([w, w.capitalize(), w.upper()])
    if k < 0.30:
        return word(r, r.choice(DIGITS), 1, 14)
    if k < 0.45:
        return r.choice(SPACES)
    if k < 0.53:
        return word(r, PUNCT, 1, 4)
    if k < 0.58:
        return r.choice(CONTRACTIONS)
    if k < 0.68:
        return word(r, r.choice(SCRIPTS), 1, 8)
    if k < 0.72:
        return r.choice(r.choice(SCRIPTS)) + word(r, COMBINING, 1, 3)
    if k < 0.74:
        return word(r, JAMO, 2, 6)
    if k < 0.78:
        return r.choice(COMPAT)
    if k < 0.82:
        return r.choice(EMOJI)
    if k < 0.84:
        return r.choice(CONTROL)
    if k < 0.87:
        return r.choice("aeoAO\u0d15\u0915\u05d0\u0627\U00011900") + word(r, NEWMARKS, 1, 4)
    if k < 0.90 and specials:
        s = r.choice(specials)
        return r.choice([s, " " + s, s + " ", s.upper(), s[:-1]])
    return "".join(rand_cp(r) for _ in range(r.randint(1, 3)))


def rand_text(r, specials):
    n = r.choice([0, 1, 2, 3, 5, 8, 13, 30, 60])
    return "".join(piece(r, specials) for _ in range(n))


def references(shared):
    from tokenizers import Tokenizer
    toks = hf_tokenizers(shared)
    files = {"spm32k": os.path.join(shared, "data/tokenizers/spm32k/tokenizer.json"),
             "llama3": os.path.join(shared, "data/tokenizers/llama3/tokenizer.json"),
             "gpt2": os.path.join(shared, "data/tokenizers/gpt2/vocab.bpe")}
    for f in sorted(os.listdir(FX)):
        if f.startswith("var-") and f.endswith(".json"):
            files[f[:-5]] = os.path.join(FX, f)
            toks[f[:-5]] = Tokenizer.from_file(files[f[:-5]])
    demo = os.path.join(ROOT, "examples", "demo", "base", "tokenizer.json")
    files["demo"] = demo
    toks["demo"] = Tokenizer.from_file(demo)
    return toks, files


def run(cmd, data):
    p = subprocess.run(cmd, input=data, capture_output=True)
    if p.returncode != 0:
        raise RuntimeError("%s: exit %d: %s" % (" ".join(cmd), p.returncode, p.stderr.decode()[:300]))
    return p.stdout


def first_diff(a, b):
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return min(len(a), len(b))


SAVE = None


def check_encode(bin_, name, tf, tk, texts):
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
        for s in texts:
            f.write(json.dumps({"text": s}) + "\n")
    try:
        out = run([bin_, "-t", tf, "--jsonl", "text", f.name], b"").decode().split("\n")
    finally:
        os.unlink(f.name)
    want = tk.encode_batch(texts, add_special_tokens=False)
    bad = 0
    for i, (s, e) in enumerate(zip(texts, want)):
        got = [int(x) for x in out[i].split()] if i < len(out) else None
        if got != e.ids:
            bad += 1
            if SAVE:
                SAVE.write(json.dumps({"tok": name, "text": s}) + "\n")
            if bad <= 5:
                j = first_diff(got or [], e.ids)
                print("ENCODE %s: %r\n   want %s\n   got  %s\n   first difference at id %d (%r)"
                      % (name, s, e.ids, got, j, [tk.id_to_token(x) for x in e.ids[j:j + 3]]))
    return bad, [e.ids for e in want]


def check_decode(bin_, name, tf, tk, idss):
    idss = [ids for ids in idss if ids]
    want = [tk.decode(ids, skip_special_tokens=False) for ids in idss]
    data = "".join(" ".join(map(str, ids)) + "\n" for ids in idss).encode()
    got = run([bin_, "-t", tf, "--decode"], data)
    if got == "".join(w + "\n" for w in want).encode("utf-8", "surrogatepass"):
        return 0
    bad = 0   # find the records one at a time
    for ids, w in zip(idss, want):
        g = run([bin_, "-t", tf, "--decode"], (" ".join(map(str, ids)) + "\n").encode())
        if g != (w + "\n").encode():
            bad += 1
            if bad <= 5:
                print("DECODE %s: %s\n   want %r\n   got  %r" % (name, ids, w, g.decode("utf-8", "replace")[:-1]))
    return bad


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(ROOT, "bin", "lora-tokenize"))
    ap.add_argument("--shared", default=os.path.join(ROOT, "..", "shared"))
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--only")
    ap.add_argument("--save", help="append each mismatching string here (JSON lines: tok, text)")
    a = ap.parse_args()
    global SAVE
    SAVE = open(a.save, "a") if a.save else None
    toks, files = references(a.shared)
    if a.only:
        toks = {a.only: toks[a.only]}
    total = 0
    for rnd in range(a.rounds):
        for name, tk in toks.items():
            r = random.Random("%d-%d-%s" % (a.seed, rnd, name))
            specials = [t.content for t in tk.get_added_tokens_decoder().values()][:200]
            texts = [rand_text(r, specials) for _ in range(a.n)]
            be, idss = check_encode(a.bin, name, files[name], tk, texts)
            bd = check_decode(a.bin, name, files[name], tk, idss)
            print("round %d %-14s %d strings: %d encode, %d decode mismatches" % (rnd, name, a.n, be, bd),
                  flush=True)
            total += be + bd
    print("total mismatches:", total)
    return 1 if total else 0


if __name__ == "__main__":
    sys.exit(main())
