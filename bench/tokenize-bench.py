#!/usr/bin/env python3
"""Tokenizer throughput on the whole State of the Union corpus: lora-tokenize
against HF `tokenizers` (Rust), single-threaded and batched, in the same run;
for GPT-2 also against tiktoken (Rust), built from the same files.

    python3 bench/tokenize-bench.py [--shared ../shared] [--bin bin] [--reps 3]

lora-tokenize runs as `--file --count` over all files (load time measured on
an empty input and subtracted); HF runs encode() in a loop (one thread) and
encode_batch() (all threads), timed after loading. Best of --reps runs.
"""
import argparse
import glob
import os
import subprocess
import sys
import time


def best(fn, reps):
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return min(ts)


def main():
    ap = argparse.ArgumentParser()
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--shared", default=os.path.join(here, "..", "..", "shared"))
    ap.add_argument("--bin", default=os.path.join(here, "..", "bin"))
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    files = sorted(glob.glob(os.path.join(a.shared, "data/text/sotu/*.txt")))
    texts = [open(f, "rb").read().decode("utf-8", "replace") for f in files]
    mb = sum(len(t.encode()) for t in texts) / 1e6
    nthreads = os.cpu_count()
    tdir = os.path.join(a.shared, "data/tokenizers")
    cases = [("spm32k", os.path.join(tdir, "spm32k/tokenizer.json")),
             ("llama3", os.path.join(tdir, "llama3/tokenizer.json")),
             ("gpt2", os.path.join(tdir, "gpt2/vocab.bpe"))]
    tool = os.path.join(a.bin, "lora-tokenize")
    print("corpus: %d files, %.2f MB; %d CPU threads" % (len(files), mb, nthreads))
    print("%-8s %14s %14s %7s %14s %14s %7s" % ("tokenizer", "HF 1 thr MB/s", "ours 1 thr", "ratio",
                                                 "HF batch MB/s", "ours %d thr" % nthreads, "ratio"))
    for name, path in cases:
        if name == "gpt2":
            g = os.path.dirname(path)
            tk = Tokenizer(models.BPE.from_file(os.path.join(g, "encoder.json"), path))
            tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
            tk.decoder = decoders.ByteLevel()
        else:
            tk = Tokenizer.from_file(path)
        os.environ["RAYON_NUM_THREADS"] = str(nthreads)
        hf1 = best(lambda: [tk.encode(t, add_special_tokens=False) for t in texts], a.reps)
        hfb = best(lambda: tk.encode_batch(texts, add_special_tokens=False), a.reps)

        def run(threads, args):
            env = dict(os.environ, LORA_THREADS=str(threads))
            subprocess.run([tool, "-t", path, "--file", "--count"] + args, env=env, check=True,
                           stdout=subprocess.DEVNULL)
        ours = {}
        for th in (1, nthreads):
            load = best(lambda: run(th, ["/dev/null"]), a.reps)
            full = best(lambda: run(th, files), a.reps)
            ours[th] = max(full - load, 1e-6)
        print("%-8s %14.2f %14.2f %7.2f %14.2f %14.2f %7.2f" % (
            name, mb / hf1, mb / ours[1], hf1 / ours[1], mb / hfb, mb / ours[nthreads], hfb / ours[nthreads]))
        sys.stdout.flush()
        if name == "gpt2":
            # a second, faster reference for byte-level BPE: tiktoken (Rust)
            sys.path.insert(0, os.path.join(here, "..", "tests", "gen"))
            import gen_tokenizer
            tt = gen_tokenizer.tiktoken_gpt2(a.shared)
            t1 = best(lambda: [tt.encode_ordinary(t) for t in texts], a.reps)
            tb = best(lambda: tt.encode_ordinary_batch(texts, num_threads=nthreads), a.reps)
            print("%-8s %14.2f %14.2f %7.2f %14.2f %14.2f %7.2f" % (
                "tiktoken", mb / t1, mb / ours[1], t1 / ours[1], mb / tb, mb / ours[nthreads], tb / ours[nthreads]))


if __name__ == "__main__":
    main()
