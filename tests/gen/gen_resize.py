#!/usr/bin/env python3
"""Fixtures for lora-resize, made with Pillow (the independent reference).

Reads the committed real images in tests/fixtures/resize/ (see SOURCES there)
and writes beside them:
  exif-N.jpg         the cat photo stored so that EXIF orientation N (1..8)
                     makes it upright; exif-6.png the same through a PNG eXIf
  ct-*.png           every PNG colour type / bit depth / tRNS / interlace,
                     written by a small independent PNG writer below
  jpeg-*.jpg         progressive, grayscale and Adobe CMYK JPEGs (Pillow)
  *.ppm.gz           expected pixels: Pillow's decode (+ exif_transpose,
                     + alpha_composite over the background) and Pillow's
                     resize with the same filter, geometry and crop
  manifest.tsv       what the C test (tests/test-resize.c) checks

Usage: python3 tests/gen/gen_resize.py      (from the repository root)
"""
import gzip
import io
import math
import os
import random
import struct
import sys
import zlib

import numpy as np
from PIL import Image, ImageOps

D = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "resize")
FILTERS = {"lanczos": Image.LANCZOS, "bicubic": Image.BICUBIC, "box": Image.BOX}
manifest = []


def save_ppm_gz(im, name):
    """Expected pixels as gzipped binary PPM (P6): independent of libpng."""
    im = im.convert("RGB")
    w, h = im.size
    data = b"P6\n%d %d\n255\n" % (w, h) + im.tobytes()
    with open(os.path.join(D, name), "wb") as f:
        # mtime=0: byte-identical output on every run
        f.write(gzip.compress(data, 9, mtime=0))
    return name


def flatten(im, bg=(255, 255, 255)):
    """Pillow's decode to RGB with alpha composited over bg."""
    if im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info:
        rgba = im.convert("RGBA")
        base = Image.new("RGBA", im.size, tuple(bg) + (255,))
        return Image.alpha_composite(base, rgba).convert("RGB")
    return im.convert("RGB")


# ---- a small PNG writer, to cover what Pillow cannot write --------------------

def png_chunk(tag, data):
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def pack_rows(a, depth):
    """a: (h, w, c) samples -> list of raw row bytes (no filter byte)."""
    h, w, c = a.shape
    rows = []
    for y in range(h):
        s = a[y].reshape(-1)
        if depth == 16:
            rows.append(s.astype(">u2").tobytes())
        elif depth == 8:
            rows.append(s.astype(np.uint8).tobytes())
        else:
            per = 8 // depth
            n = (len(s) + per - 1) // per
            out = bytearray(n)
            for i, v in enumerate(s):
                out[i // per] |= int(v) << (8 - depth * (i % per + 1))
            rows.append(bytes(out))
    return rows


ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def write_png(name, a, ctype, depth, plte=None, trns=None, interlace=False, exif=None):
    h, w = a.shape[:2]
    if a.ndim == 2:
        a = a[:, :, None]
    raw = b""
    if interlace:
        for x0, y0, dx, dy in ADAM7:
            sub = a[y0::dy, x0::dx]
            if sub.shape[0] and sub.shape[1]:
                raw += b"".join(b"\0" + r for r in pack_rows(sub, depth))
    else:
        raw = b"".join(b"\0" + r for r in pack_rows(a, depth))
    out = b"\x89PNG\r\n\x1a\n"
    out += png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, ctype, 0, 0, int(interlace)))
    if plte is not None:
        out += png_chunk(b"PLTE", bytes(np.asarray(plte, np.uint8).reshape(-1)))
    if trns is not None:
        out += png_chunk(b"tRNS", trns)
    if exif is not None:
        out += png_chunk(b"eXIf", exif)
    out += png_chunk(b"IDAT", zlib.compress(raw, 9))
    out += png_chunk(b"IEND", b"")
    with open(os.path.join(D, name), "wb") as f:
        f.write(out)
    return name


# ---- decode checks ---------------------------------------------------------------

def decode_case(name, expect_img, how):
    """how: 'exact' (8-bit PNG), 'psnr' (JPEG: another libjpeg may round differently)."""
    manifest.append(["decode", name, save_ppm_gz(expect_img, name.rsplit(".", 1)[0] + ".ppm.gz"), how])


def colour_types():
    cat = Image.open(os.path.join(D, "cat.png")).convert("RGB")
    rgb = np.asarray(cat.crop((200, 60, 245, 91)))          # 45 x 31, odd sizes
    h, w = rgb.shape[:2]
    gray = np.asarray(cat.crop((200, 60, 245, 91)).convert("L"))
    yy, xx = np.mgrid[0:h, 0:w]
    alpha = ((xx * 255) // (w - 1)).astype(np.uint8)          # 0..255 ramp
    alpha[0:3, :] = 0
    rgb16 = rgb.astype(np.uint16) * 257 + (xx[..., None] * 13 + yy[..., None] * 7) % 251
    gray16 = gray.astype(np.uint16) * 257 + (xx * 29 + yy * 3) % 253
    a16 = alpha.astype(np.uint16) * 257 + (xx % 200)

    cases = []
    for d in (1, 2, 4):
        cases.append((write_png("ct-gray%d.png" % d, gray >> (8 - d), 0, d), "pil"))
    cases.append((write_png("ct-gray8.png", gray, 0, 8), "pil"))
    cases.append((write_png("ct-gray8-trns.png", gray, 0, 8, trns=struct.pack(">H", int(gray[5, 5]))), "pil"))
    cases.append((write_png("ct-gray16.png", gray16, 0, 16), "np"))
    cases.append((write_png("ct-gray16-adam7.png", gray16, 0, 16, interlace=True), "np"))
    cases.append((write_png("ct-graya8.png", np.dstack([gray, alpha]), 4, 8), "pil"))
    cases.append((write_png("ct-graya16.png", np.dstack([gray16, a16]), 4, 16), "np"))
    cases.append((write_png("ct-rgb8.png", rgb, 2, 8), "pil"))
    cases.append((write_png("ct-rgb8-adam7.png", rgb, 2, 8, interlace=True), "pil"))
    cases.append((write_png("ct-rgb8-trns.png", rgb, 2, 8, trns=struct.pack(">HHH", *map(int, rgb[7, 9]))), "pil"))
    cases.append((write_png("ct-rgb16.png", rgb16, 2, 16), "np"))
    cases.append((write_png("ct-rgba8.png", np.dstack([rgb, alpha]), 6, 8), "pil"))
    cases.append((write_png("ct-rgba8-adam7.png", np.dstack([rgb, alpha]), 6, 8, interlace=True), "pil"))
    cases.append((write_png("ct-rgba16.png", np.dstack([rgb16, a16[..., None]]), 6, 16), "np"))
    # palettes of 2, 4, 16 and 256 entries, with a partial tRNS
    q = cat.crop((200, 60, 245, 91)).quantize(256)
    pal = np.asarray(q.getpalette()[:768], np.uint8).reshape(-1, 3)
    idx = np.asarray(q)
    for d in (1, 2, 4, 8):
        n = 1 << d
        sub = (idx.astype(int) * n // 256).astype(np.uint8)
        p = pal[(np.arange(n) * 256 // n)]
        trns = bytes((i * 97) % 256 for i in range(max(1, n // 2)))
        cases.append((write_png("ct-pal%d.png" % d, sub, 3, d, plte=p, trns=trns), "pil"))
    cases.append((write_png("ct-pal4-adam7.png", (idx.astype(int) * 16 // 256).astype(np.uint8), 3, 4,
                            plte=pal[np.arange(16) * 16], interlace=True), "pil"))

    for name, ref in cases:
        im = Image.open(os.path.join(D, name))
        if ref == "pil":
            decode_case(name, flatten(im), "exact")
            continue
        # 16-bit: the expected 8-bit sample is the high byte (what Pillow keeps
        # for RGB;16B / RGBA;16B / LA;16B; for I;16 Pillow clips instead, so the
        # reference is computed here with numpy from the raw 16-bit samples).
        a = np.asarray(im) if im.mode.startswith("I;16") else None
        if a is not None:
            g8 = (a.astype(np.uint16) >> 8).astype(np.uint8)
            decode_case(name, Image.fromarray(np.dstack([g8] * 3)), "exact")
        elif name.startswith("ct-graya16"):
            g = (gray16 >> 8).astype(np.uint8)
            la = Image.fromarray(np.dstack([g, (a16 >> 8).astype(np.uint8)]), "LA")
            decode_case(name, flatten(la), "exact")
        else:
            assert im.mode in ("RGB", "RGBA"), (name, im.mode)
            hb = (rgb16 >> 8).astype(np.uint8)
            assert (np.asarray(im)[..., :3] == hb).all(), name     # Pillow keeps the high byte
            decode_case(name, flatten(im), "exact")


def jpegs():
    cat = Image.open(os.path.join(D, "cat.png")).convert("RGB").crop((100, 40, 260, 160))
    cat.save(os.path.join(D, "jpeg-progressive.jpg"), quality=90, progressive=True)
    cat.convert("L").save(os.path.join(D, "jpeg-gray.jpg"), quality=90)
    cat.convert("CMYK").save(os.path.join(D, "jpeg-cmyk.jpg"), quality=90)
    for n in ("jpeg-progressive.jpg", "jpeg-gray.jpg", "jpeg-cmyk.jpg"):
        im = Image.open(os.path.join(D, n))
        decode_case(n, im.convert("RGB"), "psnr")


INVERSE = {1: None, 2: Image.FLIP_LEFT_RIGHT, 3: Image.ROTATE_180, 4: Image.FLIP_TOP_BOTTOM,
           5: Image.TRANSPOSE, 6: Image.ROTATE_90, 7: Image.TRANSVERSE, 8: Image.ROTATE_270}


def exif_orientations():
    up = Image.open(os.path.join(D, "cat.png")).convert("RGB").crop((130, 50, 226, 114))  # 96 x 64
    up_name = save_ppm_gz(up, "exif-upright.ppm.gz")
    for o in range(1, 9):
        stored = up if INVERSE[o] is None else up.transpose(INVERSE[o])
        ex = Image.Exif()
        ex[0x0112] = o
        name = "exif-%d.jpg" % o
        stored.save(os.path.join(D, name), quality=95, exif=ex.tobytes())
        im = ImageOps.exif_transpose(Image.open(os.path.join(D, name)))
        assert im.size == up.size
        manifest.append(["exif", name, str(o), save_ppm_gz(im, "exif-%d.ppm.gz" % o), up_name])
    # PNG eXIf chunk, orientation 6
    stored = up.transpose(INVERSE[6])
    ex = Image.Exif()
    ex[0x0112] = 6
    write_png("exif-6.png", np.asarray(stored), 2, 8, exif=ex.tobytes()[6:] if ex.tobytes().startswith(b"Exif") else ex.tobytes())
    im = ImageOps.exif_transpose(Image.open(os.path.join(D, "exif-6.png")))
    assert im.size == up.size, im.size
    manifest.append(["exif", "exif-6.png", "6", save_ppm_gz(im, "exif-6png.ppm.gz"), up_name])


# ---- geometry: the reference formulas, written again in Python --------------------

def geom_crop(w, h, size, no_upscale):
    short = min(w, h)
    side, scale = size, size / short
    if no_upscale and short < size:
        side, scale = short, 1.0
    dw = side if w == short else int(w * scale + 0.5)
    dh = side if h == short else int(h * scale + 0.5)
    return dict(dw=dw, dh=dh, box=((dw - side) // 2, (dh - side) // 2, side, side), canvas=(side, side), at=(0, 0))


def geom_fit(w, h, size, no_upscale):
    long_ = max(w, h)
    scale = size / long_
    if no_upscale and long_ < size:
        scale = 1.0
    dw = (w if scale == 1.0 else size) if w == long_ else int(w * scale + 0.5)
    dh = (h if scale == 1.0 else size) if h == long_ else int(h * scale + 0.5)
    dw, dh = max(dw, 1), max(dh, 1)
    return dict(dw=dw, dh=dh, box=(0, 0, dw, dh), canvas=(size, size), at=((size - dw) // 2, (size - dh) // 2))


def make_bucket_resolutions(max_reso, min_size=256, max_size=1024, divisible=64):
    """kohya-ss/sd-scripts library/model_util.py"""
    max_width, max_height = max_reso
    max_area = max_width * max_height
    resos = set()
    width = int(math.sqrt(max_area) // divisible) * divisible
    resos.add((width, width))
    width = min_size
    while width <= max_size:
        height = min(max_size, int((max_area // width) // divisible) * divisible)
        if height >= min_size:
            resos.add((width, height))
            resos.add((height, width))
        width += divisible
    resos = list(resos)
    resos.sort()
    return resos


def select_bucket(resos, max_area, steps, no_upscale, image_width, image_height):
    """kohya-ss/sd-scripts library/train_util.py BucketManager.select_bucket"""
    def round_to_steps(x):
        x = int(x + 0.5)
        return x - x % steps
    aspect_ratio = image_width / image_height
    if not no_upscale:
        reso = (image_width, image_height)
        if reso not in set(resos):
            ars = np.array([w / h for w, h in resos])
            reso = resos[np.abs(ars - aspect_ratio).argmin()]
        ar_reso = reso[0] / reso[1]
        scale = reso[1] / image_height if aspect_ratio > ar_reso else reso[0] / image_width
        resized = (int(image_width * scale + 0.5), int(image_height * scale + 0.5))
    else:
        if image_width * image_height > max_area:
            rw = math.sqrt(max_area * aspect_ratio)
            rh = max_area / rw
            bw = round_to_steps(rw)
            bh_w = max(steps, round_to_steps(bw / aspect_ratio))
            ar_w = bw / bh_w
            bh = round_to_steps(rh)
            bw_h = max(steps, round_to_steps(bh * aspect_ratio))
            ar_h = bw_h / bh if bh else 0   # kohya divides by zero here
            if abs(ar_w - aspect_ratio) < abs(ar_h - aspect_ratio):
                resized = (bw, int(bw / aspect_ratio + 0.5))
            else:
                resized = (int(bh * aspect_ratio + 0.5), bh)
        else:
            resized = (image_width, image_height)
        reso = (resized[0] - resized[0] % steps, resized[1] - resized[1] % steps)
    return reso, resized


def geom_bucket(w, h, size, bmin, bmax, step, no_upscale):
    resos = make_bucket_resolutions((size, size), bmin, bmax, step)
    (bw, bh), (rw, rh) = select_bucket(resos, size * size, step, no_upscale, w, h)
    return dict(dw=rw, dh=rh, box=((rw - bw) // 2, (rh - bh) // 2, bw, bh), canvas=(bw, bh), at=(0, 0))


def buckets():
    rnd = random.Random(3)
    for size, bmin, bmax, step in ((512, 256, 1024, 64), (768, 320, 1536, 64), (256, 128, 512, 32), (1024, 512, 2048, 64)):
        resos = make_bucket_resolutions((size, size), bmin, bmax, step)
        manifest.append(["buckets", str(size), str(bmin), str(bmax), str(step), str(len(resos)),
                         " ".join("%dx%d" % r for r in resos)])
        sizes = [(rnd.randint(16, 6000), rnd.randint(16, 6000)) for _ in range(60)]
        sizes += [(r[0], r[1]) for r in resos[:5]] + [(4000, 3000), (3000, 4000), (512, 512), (1920, 1080), (100, 2000)]
        for w, h in sizes:
            for nu in (0, 1):
                g = geom_bucket(w, h, size, bmin, bmax, step, nu)
                manifest.append(["bucket", str(size), str(bmin), str(bmax), str(step), str(nu), str(w), str(h),
                                 str(g["box"][2]), str(g["box"][3]), str(g["dw"]), str(g["dh"])])


# ---- resize checks -------------------------------------------------------------------

def resize_case(src, filt, mode, size, no_upscale=0, bg=(255, 255, 255), bucket=(256, 1024, 64)):
    im = flatten(ImageOps.exif_transpose(Image.open(os.path.join(D, src))), bg)
    w, h = im.size
    if mode == "crop":
        g = geom_crop(w, h, size, no_upscale)
    elif mode == "fit":
        g = geom_fit(w, h, size, no_upscale)
    else:
        g = geom_bucket(w, h, size, bucket[0], bucket[1], bucket[2], no_upscale)
    x0, y0, ow, oh = g["box"]
    r = im.resize((g["dw"], g["dh"]), FILTERS[filt]).crop((x0, y0, x0 + ow, y0 + oh))
    canvas = Image.new("RGB", g["canvas"], tuple(bg))
    canvas.paste(r, g["at"])
    name = "rs-%s-%s-%s-%d%s.ppm.gz" % (src.rsplit(".", 1)[0], filt, mode, size, "-nu" if no_upscale else "")
    save_ppm_gz(canvas, name)
    manifest.append(["resize", src, filt, mode, str(size), str(no_upscale), "%d,%d,%d" % tuple(bg),
                     "%d,%d,%d" % bucket, str(g["dw"]), str(g["dh"]), str(x0), str(y0), str(ow), str(oh),
                     str(g["canvas"][0]), str(g["canvas"][1]), str(g["at"][0]), str(g["at"][1]), name])


def resizes():
    for src in ("photo.jpg", "cat.png", "pear.png"):
        for f in FILTERS:
            resize_case(src, f, "crop", 128)
    resize_case("cat.png", "lanczos", "crop", 160)
    resize_case("pear.png", "lanczos", "crop", 384)               # upscale
    resize_case("pear.png", "bicubic", "crop", 384)
    resize_case("pear.png", "lanczos", "crop", 384, no_upscale=1)
    resize_case("pear.png", "lanczos", "fit", 160, bg=(40, 80, 120))
    resize_case("asl_q.png", "bicubic", "fit", 128)
    resize_case("balloon.png", "lanczos", "crop", 128, bg=(0, 0, 0))
    resize_case("photo.jpg", "lanczos", "bucket", 192, bucket=(96, 384, 32))
    resize_case("cat.png", "bicubic", "bucket", 192, bucket=(96, 384, 32))
    resize_case("photo.jpg", "lanczos", "bucket", 192, no_upscale=1, bucket=(96, 384, 32))
    resize_case("exif-6.jpg", "lanczos", "crop", 48)
    resize_case("photo.jpg", "lanczos", "crop", 96)              # also run with --jpeg-draft
    # Taller than 2:1 and shrunk: Pillow >= 13.0 runs the vertical pass first
    Image.open(os.path.join(D, "cat.png")).crop((200, 0, 290, 300)).save(os.path.join(D, "tall.png"))
    for f in FILTERS:
        resize_case("tall.png", f, "crop", 64)
    resize_case("tall.png", "lanczos", "fit", 96, bg=(0, 0, 0))


def main():
    colour_types()
    jpegs()
    exif_orientations()
    buckets()
    resizes()
    with open(os.path.join(D, "manifest.tsv"), "w") as f:
        f.write("# made by tests/gen/gen_resize.py with Pillow %s; one check per line\n" % Image.__version__)
        for row in manifest:
            f.write("\t".join(row) + "\n")
    print("wrote %d checks to %s" % (len(manifest), D), file=sys.stderr)


if __name__ == "__main__":
    main()
