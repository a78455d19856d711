#!/usr/bin/env python3
"""Time lora-train takes to read and tokenize a folder of many .txt files
(the State of the Union addresses, --copies times over under new names),
or with --jsonl one .jsonl file of the same text (two sentences a line,
each line an example), with one reader thread and with all of them, against
HF `tokenizers` encoding the same texts (`encode_batch`, Rust threads over
all cores: what a PEFT user's tokenizing costs at best) in the same run.

    python3 bench/data-load.py [--shared ../shared] [--bin bin] [--copies 2]
                               [--tokenizer llama3] [--jsonl]

lora-train runs as `lora-train -n` (the plan: it loads the data and exits)
on a base folder with only a config.json (random weights, train_mode full);
its time for the data is the run's wall time minus the same run's on a
folder of one short file. The token counts of both sides are printed and
must agree (each file a document, EOS after each).
"""
import argparse
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HF = r"""
import sys, time
from tokenizers import Tokenizer
tk = Tokenizer.from_file(sys.argv[1])
import json
texts = [open(f, encoding="utf-8").read() for f in sys.argv[2:] if not f.endswith(".jsonl")]
texts += [json.loads(l)["text"] for f in sys.argv[2:] if f.endswith(".jsonl")
          for l in open(f, encoding="utf-8")]
t0 = time.perf_counter()
enc = tk.encode_batch(texts, add_special_tokens=False)
dt = time.perf_counter() - t0
print(sum(len(e.ids) for e in enc), dt)
"""


def lora_train(tool, cfg, threads):
    env = dict(os.environ, LORA_THREADS=str(threads))
    t0 = time.perf_counter()
    p = subprocess.run([tool, "-n", cfg], env=env, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        sys.exit("lora-train failed: " + p.stderr.strip())
    m = re.search(r"data: (\d+) examples.*?; (\d+) tokens", p.stdout + p.stderr)
    if "cut to max_seq_length" in p.stdout + p.stderr:
        sys.exit("lora-train cut examples: the token counts would not compare")
    return (int(m.group(2)), int(m.group(1))), dt


def main():
    ap = argparse.ArgumentParser()
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--shared", default=os.path.join(here, "..", "..", "shared"))
    ap.add_argument("--bin", default=os.path.join(here, "..", "bin"))
    ap.add_argument("--copies", type=int, default=2)
    ap.add_argument("--tokenizer", default="llama3")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--jsonl", action="store_true")
    a = ap.parse_args()
    tokjson = os.path.join(a.shared, "data/tokenizers", a.tokenizer, "tokenizer.json")
    tj = json.load(open(tokjson, encoding="utf-8"))
    ids = dict(tj["model"]["vocab"], **{t["content"]: t["id"] for t in tj["added_tokens"]})
    eos = [ids[t] for t in ("</s>", "<|end_of_text|>", "<|endoftext|>") if t in ids][0]
    files = sorted(glob.glob(os.path.join(a.shared, "data/text/sotu/*.txt")))
    tool = os.path.join(a.bin, "lora-train")
    nthreads = os.cpu_count()
    with tempfile.TemporaryDirectory() as d:
        base, data, one = (os.path.join(d, x) for x in ("base", "data", "one"))
        for x in (base, data, one):
            os.mkdir(x)
        shutil.copy(tokjson, base)
        json.dump(dict(architectures=["LlamaForCausalLM"], model_type="llama",
                       hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                       num_attention_heads=2, num_key_value_heads=2,
                       vocab_size=max(ids.values()) + 1, eos_token_id=eos,
                       max_position_embeddings=4096,
                       rms_norm_eps=1e-5), open(os.path.join(base, "config.json"), "w"))
        paths = []
        if a.jsonl:
            paths.append(os.path.join(data, "all.jsonl"))
            with open(paths[0], "w", encoding="utf-8") as fh:
                for c in range(a.copies):
                    for f in files:
                        sents = re.split(r"(?<=[.?!]) ", open(f, encoding="utf-8").read().strip())
                        for i in range(0, len(sents), 2):
                            fh.write(json.dumps({"text": " ".join(sents[i:i + 2])}) + "\n")
        else:
            for c in range(a.copies):
                for f in files:
                    p = os.path.join(data, "%d_%s" % (c, os.path.basename(f)))
                    shutil.copy(f, p)
                    paths.append(p)
        with open(os.path.join(one, "a.txt"), "w") as fh:
            fh.write("a short text\n")
        mb = sum(os.path.getsize(p) for p in paths) / 1e6
        cfgs = {}
        for name, folder in (("data", data), ("one", one)):
            cfgs[name] = os.path.join(d, name + ".yaml")
            with open(cfgs[name], "w") as fh:
                fh.write("base_model: %s\ntrain_data_dir: %s\noutput_dir: %s/out\n"
                         "train_mode: full\nmax_seq_length: 4096\nbatch_size: 1\n"
                         "max_steps: 1\ndevice: cpu\n" % (base, folder, d))
        best = lambda f: min((f() for _ in range(a.reps)), key=lambda r: r[1])
        _, t_empty = best(lambda: lora_train(tool, cfgs["one"], 1))
        rows = []
        for th in sorted({1, nthreads}):
            n, t = best(lambda: lora_train(tool, cfgs["data"], th))
            rows.append((th, n, max(t - t_empty, 1e-3)))
        hf = best(lambda: tuple(float(x) for x in subprocess.run(
            [sys.executable, "-c", HF, tokjson] + paths, capture_output=True, text=True,
            check=True).stdout.split()))
        hf_n, hf_t = int(hf[0]), hf[1]
        nlines = sum(1 for _ in open(paths[0], encoding="utf-8")) if a.jsonl else 0
        what = ("1 .jsonl file of %d lines" % nlines if a.jsonl else "%d files" % len(paths))
        print("%s (%d copies of %d addresses), %.1f MB; tokenizer %s; %d CPU threads; best of %d"
              % (what, a.copies, len(files), mb, a.tokenizer, nthreads, a.reps))
        print("%-28s %10s %8s %8s %9s" % ("", "tokens", "s", "MB/s", "HF / this"))
        print("%-28s %10d %8.2f %8.1f %9s" % ("HF encode_batch, %d thr" % nthreads, hf_n, hf_t,
                                              mb / hf_t, "1.00"))
        for th, (n, nex), t in rows:
            # lora-train adds an EOS to each file, and a BOS and/or EOS to each
            # .jsonl example; HF's count has none
            ok = nex == nlines and n - hf_n in (nlines, 2 * nlines) if a.jsonl else \
                n == hf_n + len(paths)
            if not ok:
                sys.exit("token counts differ: lora-train %d (%d examples), HF %d" % (n, nex, hf_n))
            print("%-28s %10d %8.2f %8.1f %9.2f" % ("lora-train data, %d thr" % th, n, t, mb / t,
                                                    hf_t / t))


if __name__ == "__main__":
    main()
