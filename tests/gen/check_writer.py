#!/usr/bin/env python3
"""Read the files our writer produced with the reference package (run by hand).

    make SAN=1 san-tests && python3 tests/gen/check_writer.py

Runs build/san/tests/test-safetensors with ST_KEEP set, so it keeps the
files it rewrote from the fixtures with lib/safetensors.c, then opens each
with the reference `safetensors` package and compares every tensor (dtype,
shape, bytes) and the metadata with the fixture it came from. Exit 1 on any
difference.
"""
import os
import subprocess
import sys
import tempfile

from safetensors import safe_open

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
FIX = os.path.join(ROOT, "tests", "fixtures", "safetensors")


def load(path):
    out = {}
    with safe_open(path, "np" if False else "pt") as f:
        meta = f.metadata()
        for k in f.keys():
            sl = f.get_slice(k)
            out[k] = (sl.get_dtype(), tuple(sl.get_shape()))
    raw = open(path, "rb").read()
    return meta, out, raw


def main():
    prog = os.path.join(ROOT, sys.argv[1] if len(sys.argv) > 1 else "build/san/tests/test-safetensors")
    bad = 0
    with tempfile.TemporaryDirectory() as d:
        env = dict(os.environ, ST_KEEP=d, TMPDIR=d)
        subprocess.run([prog], cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
        files = sorted(os.listdir(d))
        for fn in files:
            rel = fn.rsplit(".", 1)[0].replace("_", "/", 1) if fn.count("_") and \
                fn.split("_")[0] in ("peft", "llama1", "llama", "diffusers") else fn.rsplit(".", 1)[0]
            ref = os.path.join(FIX, rel)
            ours = os.path.join(d, fn)
            try:
                m1, t1, _ = load(ref)
                m2, t2, _ = load(ours)       # the reference reader validates our file
            except Exception as e:
                print("FAIL %s: %s" % (fn, e))
                bad += 1
                continue
            ok = m1 == m2 and t1 == t2
            # tensor data through the reference reader
            with safe_open(ref, "pt") as a, safe_open(ours, "pt") as b:
                for k in a.keys():
                    if t1[k][0] in ("F4",):
                        continue
                    x, y = a.get_tensor(k), b.get_tensor(k)
                    if x.dtype != y.dtype or x.shape != y.shape or \
                            not bytes(x.contiguous().view(-1).view(__import__("torch").uint8).numpy()) == \
                            bytes(y.contiguous().view(-1).view(__import__("torch").uint8).numpy()):
                        print("FAIL %s: tensor %s differs" % (fn, k))
                        ok = False
            print("%s %s (%d tensors, %d metadata keys)" % ("ok  " if ok else "FAIL", fn, len(t2), len(m2 or {})))
            bad += not ok
    print("%d files, %d bad" % (len(files), bad))
    return 1 if bad or not files else 0


if __name__ == "__main__":
    sys.exit(main())
