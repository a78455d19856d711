#!/usr/bin/env python3
"""gen_mma.py: the register contents of the tensor-core fragments that
kernels/mma.cuh builds on, derived from NVIDIA CUTLASS's CuTe layouts (not
from the PTX reading mma.cuh and the emulator share), for
tests/test-cuda-mma.c. Writes tests/fixtures/engine/mma.safetensors.

The layouts (facts from CUTLASS include/cute/atom/mma_traits_sm80.hpp, MMA
SM80_16x8x16_F32BF16BF16F32_TN, and copy_traits_sm75.hpp, SM75_U32x4_LDSM_N
and SM75_U16x8_LDSM_T) map (thread, value) to a flat index of the operand,
column-major over its logical shape: A (M 16, K 16), B (N 8, K 16), C (M
16, N 8); for ldmatrix, bits of the 4 x 8 rows of 128 bits the lanes point
at (lane l gives row l). A 32-bit register holds values 2i (low half) and
2i + 1 (high half).

Tensors (all F32, every value exact in bf16 or a small integer):
  x (16, 16)            a bf16 tile (stored at a row stride of 24 by the test)
  frag_a (32, 4, 2)     the A fragment of x (mma.cuh frag_a)
  frag_bt (32, 4, 2)    B = xᵀ: n-tiles 0-7 in registers 0-1, 8-15 in 2-3 (frag_bt)
  frag_b (32, 4, 2)     B = x (k = x's rows): the same split of x's columns (frag_b)
  m (16, 16), c01 (32, 8), pack_a (32, 4, 2)
                        the C fragments of m's two 16 x 8 halves, and the A
                        fragment of m (pack_a of the halves)
  a (32, 4, 2), b (32, 2, 2), c (32, 4), d (32, 4)
                        one mma: the lanes' A, B, C registers and D = A·B + C
                        (small integers: exact in fp32)

    python3 tests/gen/gen_mma.py
"""
import os
import struct
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "fixtures", "engine", "mma.safetensors")


def flat(shape):
    return [s for x in shape for s in flat(x)] if isinstance(shape, tuple) else [shape]


def evaluate(shape, stride, i):
    """A CuTe layout at flat coordinate i (colexicographic over its modes)."""
    out = 0
    for n, d in zip(flat(shape), flat(stride)):
        out += (i % n) * d
        i //= n
    return out


def tv(layout, t, v):
    (ts, vs), (td, vd) = layout
    return evaluate(ts, td, t) + evaluate(vs, vd, v)


# MMA_Traits<SM80_16x8x16_F16F16F16F16_TN> (the bf16 F32 version inherits it)
A_LAYOUT = (((4, 8), (2, 2, 2)), ((32, 1), (16, 8, 128)))   # (T32, V8) -> (M16, K16)
B_LAYOUT = (((4, 8), (2, 2)), ((16, 1), (8, 64)))           # (T32, V4) -> (N8, K16)
C_LAYOUT = (((4, 8), (2, 2)), ((32, 1), (16, 8)))           # SM80_16x8_Row: (M16, N8)
# Copy_Traits<SM75_U32x4_LDSM_N> and <SM75_U16x8_LDSM_T>: (thread, bit)
LDSM_N = (((32,), (32, 4)), ((32,), (1, 1024)))
LDSM_T = (((4, 8), (16, 2, 4)), ((256, 16), (1, 128, 1024)))


def values(layout, mat, nv):
    """(32, nv): lane t's values of mat, given in the layout's own (rows,
    columns) coordinates, flat index column-major."""
    rows = mat.shape[0]
    r = np.zeros((32, nv), np.float32)
    for t in range(32):
        for v in range(nv):
            i = tv(layout, t, v)
            r[t, v] = mat[i % rows, i // rows]
    return r


def frag_a(mat):
    """(32, 4, 2): lane t's A registers for a 16 x 16 (M, K) matrix."""
    return values(A_LAYOUT, mat, 8).reshape(32, 4, 2)


def frag_bn(bnk):
    """(32, 2, 2): lane t's B registers for B given as (N 8, K 16)."""
    return values(B_LAYOUT, bnk, 4).reshape(32, 2, 2)


def frag_c(mn):
    """(32, 4): lane t's C values for a 16 x 8 (M, N) matrix."""
    return values(C_LAYOUT, mn, 4)


def ldsm(layout, rows):
    """(32, 4, 2): lane t's registers after ldmatrix x4 of rows (32, 8) of
    16-bit values, lane l pointing at row l (bits: row b // 128, column
    b % 128 // 16)."""
    r = np.zeros((32, 4, 2), np.float32)
    for t in range(32):
        for reg in range(4):
            for half in range(2):
                b = tv(layout, t, reg * 32 + half * 16)
                assert b % 16 == 0
                r[t, reg, half] = rows[b // 128, b % 128 // 16]
    return r


def check_ldsm_against_mma(x):
    """The fragment loads of mma.cuh in CuTe terms, each two ways: the
    matrices the lanes point at, through the ldmatrix layouts, must give
    the operand fragments of the MMA layouts. Both are CUTLASS's facts;
    this only checks the reading of them (a mismatch stops the script)."""
    # frag_a: lanes 0-15 rows 0-15 at column 0, lanes 16-31 at column 8
    rows = np.array([x[l % 16, (l // 16) * 8:(l // 16) * 8 + 8] for l in range(32)])
    assert (ldsm(LDSM_N, rows) == frag_a(x)).all()
    # frag_bt: lane l -> row (l % 8) + (l // 16)·8, column ((l // 8) % 2)·8
    rows = np.array([x[l % 8 + l // 16 * 8, l // 8 % 2 * 8:l // 8 % 2 * 8 + 8] for l in range(32)])
    want = np.concatenate([frag_bn(x[0:8, :]), frag_bn(x[8:16, :])], axis=1)
    assert (ldsm(LDSM_N, rows) == want).all()
    # frag_b: as frag_a's addresses, transposed
    rows = np.array([x[l % 16, (l // 16) * 8:(l // 16) * 8 + 8] for l in range(32)])
    want = np.concatenate([frag_bn(x[:, 0:8].T), frag_bn(x[:, 8:16].T)], axis=1)
    assert (ldsm(LDSM_T, rows) == want).all()


def bf16_exact(a):
    u = np.asarray(a, np.float32).view(np.uint32)
    return ((u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000).view(np.float32)


def write_safetensors(path, tensors):
    header, blobs, off = {}, [], 0
    for name, arr in tensors.items():
        data = np.ascontiguousarray(arr, "<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(arr.shape),
                        "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    import json
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
    os.replace(tmp, path)


def main():
    rng = np.random.default_rng(20261123)
    x = bf16_exact(rng.standard_normal((16, 16)))
    check_ldsm_against_mma(x)
    m = bf16_exact(rng.standard_normal((16, 16)))
    A = rng.integers(-4, 5, (16, 16)).astype(np.float32)
    Bkn = rng.integers(-4, 5, (16, 8)).astype(np.float32)
    C = rng.integers(-8, 9, (16, 8)).astype(np.float32)
    D = A.astype(np.float64) @ Bkn + C
    t = {
        "x": x,
        "frag_a": frag_a(x),
        "frag_bt": np.concatenate([frag_bn(x[0:8, :]), frag_bn(x[8:16, :])], axis=1),
        "frag_b": np.concatenate([frag_bn(x[:, 0:8].T), frag_bn(x[:, 8:16].T)], axis=1),
        "m": m,
        "c01": np.concatenate([frag_c(m[:, 0:8]), frag_c(m[:, 8:16])], axis=1),
        "pack_a": frag_a(m),
        "a": frag_a(A),
        "b": frag_bn(Bkn.T),
        "c": frag_c(C),
        "d": frag_c(D.astype(np.float32)),
    }
    write_safetensors(OUT, t)
    print("wrote", os.path.relpath(OUT), file=sys.stderr)


if __name__ == "__main__":
    main()
