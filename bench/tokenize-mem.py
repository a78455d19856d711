#!/usr/bin/env python3
"""Peak memory and time to tokenize one big document: the whole State of the
Union corpus joined --copies times into one file (5 copies: 54 MB), encoded
as a single text by lora-tokenize --file and by HF `tokenizers` (Rust) in the
same run. This is a user's single big corpus file, which lora-train reads as
one document.

    python3 bench/tokenize-mem.py [--shared ../shared] [--bin bin] [--copies 5]

Each side runs as its own process; peak RSS is that process's ru_maxrss
(os.wait4), so it includes the program itself: "empty" is the same command on
an empty file. Both sides write only the id count.
"""
import argparse
import glob
import os
import subprocess
import sys
import tempfile
import time

HF = r"""
import sys
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
path, text = sys.argv[1], sys.argv[2]
if path.endswith(".bpe"):
    g = path.rsplit("/", 1)[0]
    tk = Tokenizer(models.BPE.from_file(g + "/encoder.json", path))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
else:
    tk = Tokenizer.from_file(path)
s = open(text, "rb").read().decode("utf-8", "replace")
print(len(tk.encode(s, add_special_tokens=False).ids))
"""


def run(cmd):
    """(stdout, seconds, peak RSS in MB) of one child process."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE)
    out = p.stdout.read()
    _, status, ru = os.wait4(p.pid, 0)
    dt = time.perf_counter() - t0
    if status != 0:
        sys.exit("failed: %s" % " ".join(cmd))
    return (out.split() or [b""])[0].decode(), dt, ru.ru_maxrss / 1024


def main():
    ap = argparse.ArgumentParser()
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--shared", default=os.path.join(here, "..", "..", "shared"))
    ap.add_argument("--bin", default=os.path.join(here, "..", "bin"))
    ap.add_argument("--copies", type=int, default=5)
    a = ap.parse_args()
    files = sorted(glob.glob(os.path.join(a.shared, "data/text/sotu/*.txt")))
    corpus = b"".join(open(f, "rb").read() for f in files) * a.copies
    tdir = os.path.join(a.shared, "data/tokenizers")
    tool = os.path.join(a.bin, "lora-tokenize")
    with tempfile.TemporaryDirectory() as d:
        big, empty = os.path.join(d, "big.txt"), os.path.join(d, "empty.txt")
        open(big, "wb").write(corpus)
        open(empty, "wb").close()
        print("one document: %d copies of %d files, %.1f MB" % (a.copies, len(files), len(corpus) / 1e6))
        print("%-9s %10s %9s %9s %9s %9s %9s %7s %7s" % ("tokenizer", "ids", "HF MB", "HF empty", "ours MB",
                                                       "ours empty", "MB ratio", "HF s", "ours s"))
        for name in ("spm32k", "llama3", "gpt2"):
            path = os.path.join(tdir, name, "vocab.bpe" if name == "gpt2" else "tokenizer.json")
            hf_n, hf_t, hf_m = run([sys.executable, "-c", HF, path, big])
            _, _, hf_m0 = run([sys.executable, "-c", HF, path, empty])
            our_n, our_t, our_m = run([tool, "-t", path, "--file", "--count", big])
            _, _, our_m0 = run([tool, "-t", path, "--file", "--count", empty])
            if hf_n != our_n:
                sys.exit("%s: HF gives %s ids, lora-tokenize %s" % (name, hf_n, our_n))
            print("%-9s %10s %9.0f %9.0f %9.0f %9.0f %9.2f %7.2f %7.2f" % (
                name, our_n, hf_m, hf_m0, our_m, our_m0, our_m / hf_m, hf_t, our_t))


if __name__ == "__main__":
    main()
