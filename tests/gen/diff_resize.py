#!/usr/bin/env python3
"""Differential test: lora-resize against Pillow on random images and options.

Each case makes a random image (size 1..400 a side or --max-side, extreme aspect ratios
included; noise, gradients, flat areas, hard edges; RGB, L, RGBA, LA, P with
transparency; PNG, or JPEG of random quality, chroma subsampling,
progressive or not, with restart markers or not; an EXIF orientation
sometimes), picks a random mode (crop, fit, bucket), filter, size,
--no-upscale and background, runs bin/lora-resize on it and compares the
output's size and every pixel with Pillow's resize + crop + paste, computed
with the geometry formulas of tests/gen/gen_resize.py (written from Pillow and
kohya's sd-scripts, not from the C code).

Not part of make check (it takes a minute and needs Pillow); run it after a
change to lib/resample.c, lib/image.c or lib/bucket.c:

    python3 tests/gen/diff_resize.py [--n 300] [--seed 1] [--max-side 400] [--keep DIR]

Prints one line per mismatch and a summary; exits 1 on any mismatch.
"""
import argparse
import glob
import os
import random
import shutil
import subprocess
import sys
import tempfile

import numpy as np
from PIL import Image, ImageOps

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_resize as G  # noqa: E402  (geometry formulas and Pillow's flatten)

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")


def random_size(rnd, m):
    kind = rnd.random()
    if kind < 0.15:
        return rnd.randint(1, 4), rnd.randint(1, m)            # a sliver
    if kind < 0.3:
        return rnd.randint(1, m), rnd.randint(1, 4)
    if kind < 0.4:
        s = rnd.randint(1, m * 3 // 4)
        return s, s
    return rnd.randint(1, m), rnd.randint(1, m)


def random_pixels(rnd, w, h, ch):
    g = np.random.default_rng(rnd.getrandbits(32))
    kind = rnd.randrange(4)
    if kind == 0:                                              # noise
        a = g.integers(0, 256, (h, w, ch))
    elif kind == 1:                                            # gradients
        y, x = np.mgrid[0:h, 0:w]
        a = np.stack([(x * rnd.randint(1, 9) + y * rnd.randint(0, 9) + c * 40) % 256 for c in range(ch)], -1)
    elif kind == 2:                                            # blocks with hard edges
        bx, by = rnd.randint(1, 40), rnd.randint(1, 40)
        cols = g.integers(0, 256, ((h + by - 1) // by, (w + bx - 1) // bx, ch))
        a = np.repeat(np.repeat(cols, by, 0), bx, 1)[:h, :w]
    else:                                                      # black and white
        a = (g.integers(0, 2, (h, w, 1)) * 255).repeat(ch, -1)
    return a.astype(np.uint8)


def random_image(rnd, w, h):
    mode = rnd.choice(["RGB", "RGB", "L", "RGBA", "LA", "P"])
    if mode == "P":
        im = Image.fromarray(random_pixels(rnd, w, h, 3), "RGB").quantize(rnd.choice([2, 16, 256]))
        if rnd.random() < 0.5:
            im.info["transparency"] = rnd.randrange(len(im.getpalette()) // 3)
        return im
    ch = {"RGB": 3, "L": 1, "RGBA": 4, "LA": 2}[mode]
    a = random_pixels(rnd, w, h, ch)
    if mode in ("RGBA", "LA") and rnd.random() < 0.5:
        a[..., -1] = rnd.choice([0, 255])                     # fully clear or opaque
    return Image.fromarray(a[..., 0] if ch == 1 else a, mode)


def random_case(rnd, max_side=400):
    w, h = random_size(rnd, max_side)
    im = random_image(rnd, w, h)
    jpeg = None
    if im.mode in ("RGB", "L") and rnd.random() < 0.3:       # Pillow's save options
        jpeg = dict(quality=rnd.choice([30, 75, 90, 100]), subsampling=rnd.randrange(3),
                    progressive=rnd.random() < 0.3, restart_marker_blocks=rnd.choice([0, 0, 1, 7]))
    orient = rnd.randint(1, 8) if rnd.random() < 0.2 else 0  # EXIF orientation (0: none)
    mode = rnd.choice(["crop", "crop", "fit", "bucket"])
    size = rnd.choice([rnd.randint(8, 64), rnd.randint(16, 320), 64, 128, 256])   # -s takes 8 and up
    case = dict(w=w, h=h, orient=orient, im=im.mode + ("+trns" if "transparency" in im.info else ""), jpeg=jpeg, mode=mode, size=size,
                filt=rnd.choice(list(G.FILTERS)), nu=rnd.random() < 0.3,
                bg=rnd.choice([(255, 255, 255), (0, 0, 0), tuple(rnd.randrange(256) for _ in range(3))]))
    if mode == "bucket":
        step = rnd.choice([8, 16, 32, 64])
        bmin = step * rnd.randint(1, 4)
        bmax = bmin + step * rnd.randint(0, 16)
        size = max(size, bmin)
        case.update(size=size, bucket=(bmin, bmax, step))
    return im, case


def expected(src_path, case):
    im = G.flatten(ImageOps.exif_transpose(Image.open(src_path)), case["bg"])
    w, h, size = im.size[0], im.size[1], case["size"]
    if case["mode"] == "crop":
        g = G.geom_crop(w, h, size, case["nu"])
    elif case["mode"] == "fit":
        g = G.geom_fit(w, h, size, case["nu"])
    else:
        bmin, bmax, step = case["bucket"]
        g = G.geom_bucket(w, h, size, bmin, bmax, step, case["nu"])
    x0, y0, ow, oh = g["box"]
    if min(g["dw"], g["dh"], ow, oh) < 1:
        return None                                   # kohya's bucket is empty
    r = im.resize((g["dw"], g["dh"]), G.FILTERS[case["filt"]]).crop((x0, y0, x0 + ow, y0 + oh))
    canvas = Image.new("RGB", g["canvas"], case["bg"])
    canvas.paste(r, g["at"])
    return canvas


def run_case(binary, tmp, i, im, case):
    src = os.path.join(tmp, "in-%d.%s" % (i, "jpg" if case["jpeg"] else "png"))
    opts = dict(case["jpeg"] or {})
    if "transparency" in im.info:
        opts["transparency"] = im.info["transparency"]
    if case["orient"]:
        exif = Image.Exif()
        exif[0x0112] = case["orient"]
        opts["exif"] = exif                           # APP1 in a JPEG, eXIf in a PNG
    try:
        im.save(src, **opts)
    except OSError:
        # Pillow 13 cannot write some tiny progressive JPEGs ("Suspension
        # not allowed here"): write that one baseline
        opts["progressive"] = case["jpeg"]["progressive"] = False
        im.save(src, **opts)
    try:
        want = expected(src, case)
    except (ValueError, ZeroDivisionError) as e:      # a geometry Pillow or kohya refuses
        return "mismatch", "the reference fails: %s" % e
    out = os.path.join(tmp, "out-%d" % i)
    cmd = [binary, "-s", str(case["size"]), "--filter", case["filt"], "--min-size", "0",
           "--background", "%d,%d,%d" % case["bg"], "-o", out, "-j", "1"]
    if case["mode"] == "fit":
        cmd.append("--fit")
    if case["mode"] == "bucket":
        bmin, bmax, step = case["bucket"]
        cmd += ["--bucket", "--bucket-min", str(bmin), "--bucket-max", str(bmax), "--bucket-step", str(step)]
    if case["nu"]:
        cmd.append("--no-upscale")
    cmd.append(src)
    p = subprocess.run(cmd, capture_output=True, text=True)
    if want is None:
        # kohya's bucket of zero width or height: lora-resize skips the image
        # with a warning naming it, and the batch still succeeds
        if p.returncode == 0 and not p.stdout.strip() and src in p.stderr and "skipped" in p.stderr:
            return "skip", "empty bucket"
        return "mismatch", "Pillow gives an empty image; lora-resize exit %d, %r" % (p.returncode, p.stderr)
    if p.returncode != 0:
        return "mismatch", "exit %d: %s" % (p.returncode, p.stderr.strip()[:200])
    line = p.stdout.strip().split("\t")
    got = Image.open(line[0]).convert("RGB")
    if got.size != want.size:
        return "mismatch", "size %s, Pillow %s" % (got.size, want.size)
    d = np.abs(np.asarray(got, np.int16) - np.asarray(want, np.int16))
    if d.max():
        return "mismatch", "%d pixels differ, by up to %d" % ((d.max(-1) > 0).sum(), d.max())
    return "ok", ""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(ROOT, "bin", "lora-resize"))
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--max-side", type=int, default=400, help="largest image side")
    ap.add_argument("--keep", help="copy each mismatching input here")
    a = ap.parse_args()
    rnd = random.Random(a.seed)
    counts = {"ok": 0, "skip": 0, "mismatch": 0}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(a.n):
            im, case = random_case(rnd, a.max_side)
            what, why = run_case(a.bin, tmp, i, im, case)
            counts[what] += 1
            if what == "mismatch":
                print("case %d: %s: %s" % (i, case, why))
                if a.keep:
                    os.makedirs(a.keep, exist_ok=True)
            # inputs go as they came (up to --max-side squared pixels each)
            for f in glob.glob(os.path.join(tmp, "in-%d.*" % i)):
                if what == "mismatch" and a.keep:
                    shutil.copy(f, a.keep)
                os.remove(f)
            shutil.rmtree(os.path.join(tmp, "out-%d" % i), ignore_errors=True)
    print("%d cases: %d equal to Pillow, %d mismatches, %d skipped for an empty bucket" %
          (a.n, counts["ok"], counts["mismatch"], counts["skip"]))
    return 1 if counts["mismatch"] else 0


if __name__ == "__main__":
    sys.exit(main())
