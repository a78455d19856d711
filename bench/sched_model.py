#!/usr/bin/env python3
"""sched_model.py: a model of how the causal attention grids of
kernels/attention_mma.cu fill a GPU, to choose the block order and the GQA
split of dk, dv without a GPU (docs/CUDA.md, "GQA dk, dv split").

Blocks take SMs in launch order (x fastest, then y), one block per SM at a
time (the mma kernels' registers allow one); a block takes its tile steps
plus one (staging its own rows, filling the pipeline). Printed: the time of
the slowest SM, for the old order (each head's row blocks heavy to light,
x = row block) and heavy first (y = row block, the heaviest at y = 0),
against the total work spread evenly. No timing: counts only.

    python3 bench/sched_model.py [SMS]       (default 132, an H100 SXM)
"""
import heapq
import sys

SMS = int(sys.argv[1]) if len(sys.argv) > 1 else 132
R, KT = 128, 64      # own rows per block (8 warps), other rows per tile


def makespan(works):
    free = [0.0] * SMS
    heapq.heapify(free)
    for w in works:
        heapq.heappush(free, heapq.heappop(free) + w + 1.0)
    return max(free)


def dkv(B, T, NH, NKV, S):
    """(row block, (batch, KV head), part, tile steps) of each dk, dv block."""
    hn = NH // NKV // S
    out = []
    for x in range((T + R - 1) // R):
        nq = (T - x * R + KT - 1) // KT
        for y in range(B * NKV):
            for z in range(S):
                out.append((x, y * S + z, hn * nq))
    return out


def fwd(B, T, NH):
    """(row block, (batch, head), tile steps): the forward, and dq."""
    nb = (T + R - 1) // R
    return [(x, y, 2 * (nb - x)) for x in range(nb) for y in range(B * NH)]


def orders(blocks):
    old = [w for _, _, w in sorted(blocks, key=lambda b: (b[1], b[0]))]
    new = [w for _, _, w in sorted(blocks, key=lambda b: (b[0], b[1]))]
    return makespan(old), makespan(new), sum(old) / SMS


print(f"{SMS} SMs; slowest SM's tile steps: old order, heavy first, even")
print("dk, dv (TinyLlama: 32 query heads, 4 KV heads)")
for B, T in [(2, 2048), (8, 512), (1, 4096), (1, 2048)]:
    for S in [1, 2, 4, 8]:
        bl = dkv(B, T, 32, 4, S)
        print("  B=%d T=%d parts %d blocks %4d: %4.0f %4.0f %4.0f"
              % ((B, T, S, len(bl)) + orders(bl)))
print("forward, dq (32 heads)")
for B, T in [(2, 2048), (8, 512), (4, 2048), (1, 4096), (16, 512)]:
    bl = fwd(B, T, 32)
    print("  B=%d T=%d blocks %4d: %4.0f %4.0f %4.0f" % ((B, T, len(bl)) + orders(bl)))
