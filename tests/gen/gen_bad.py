#!/usr/bin/env python3
"""Write the malformed-file corpus tests/fixtures/safetensors/bad/.

    python3 tests/gen/gen_bad.py

Each file breaks one rule of the format (FORMATS.md §1.3). Every one of them
must make lora-inspect exit 1 with exactly one line on stderr
(tests/lora-inspect.sh). bad/REFERENCE.tsv records what the reference Python
package says of each file (safetensors.deserialize): the reference rejects
every single-file case except where noted there.
"""
import json
import os
import struct
import sys

import safetensors

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "safetensors", "bad")


def st(header, data=b"", pad=True, raw_header=None):
    """Assemble a file from a header (dict or raw bytes) and a data buffer."""
    h = raw_header if raw_header is not None else json.dumps(header, separators=(",", ":")).encode()
    if pad:
        h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


def t(dtype, shape, off):
    return {"dtype": dtype, "shape": shape, "data_offsets": off}


GOOD = st({"a": t("F32", [2], [0, 8]), "b": t("F16", [2], [8, 12])}, b"\0" * 12)

CASES = {
    "empty": b"",
    "short": b"\x10\x00\x00",
    "header-past-end": struct.pack("<Q", 1000) + b'{"a":1}',
    "header-over-limit": struct.pack("<Q", 100_000_001) + b"{}      ",
    "header-length-huge": struct.pack("<Q", 2**63 + 5) + b"{}      ",
    "truncated-data": GOOD[:-3],
    "trailing-bytes": GOOD + b"\0\0\0\0",
    "overlap": st({"a": t("F32", [2], [0, 8]), "b": t("F32", [2], [4, 12])}, b"\0" * 12),
    "gap": st({"a": t("F32", [2], [0, 8]), "b": t("F32", [2], [12, 20])}, b"\0" * 20),
    "not-from-zero": st({"a": t("F32", [2], [8, 16])}, b"\0" * 16),
    "out-of-bounds": st({"a": t("F32", [2], [0, 8]), "b": t("F32", [4], [8, 24])}, b"\0" * 12),
    "offsets-reversed": st({"a": t("F32", [0], [8, 0])}, b"\0" * 8),
    "offsets-three": st({"a": t("F32", [2], [0, 8, 8])}, b"\0" * 8),
    "offsets-negative": st({"a": t("F32", [2], [-8, 0])}, b"\0" * 8),
    "offsets-string": st({"a": t("F32", [2], ["0", "8"])}, b"\0" * 8),
    "wrong-byte-count": st({"a": t("F32", [2], [0, 12])}, b"\0" * 12),
    "wrong-byte-count-scalar": st({"a": t("F64", [], [0, 4])}, b"\0" * 4),
    "bad-dtype": st({"a": t("F17", [2], [0, 8])}, b"\0" * 8),
    "dtype-lowercase": st({"a": t("f32", [2], [0, 8])}, b"\0" * 8),
    "dtype-number": st({"a": t(32, [2], [0, 8])}, b"\0" * 8),
    "shape-negative": st({"a": t("F32", [-2], [0, 8])}, b"\0" * 8),
    "shape-float": st({"a": t("F32", [2.0], [0, 8])}, b"\0" * 8),
    "shape-not-array": st({"a": t("F32", 2, [0, 8])}, b"\0" * 8),
    "shape-overflow": st({"a": t("F32", [2**40, 2**40, 2**40], [0, 8])}, b"\0" * 8),
    "shape-too-many-dims": st({"a": t("U8", [1] * 40, [0, 1])}, b"\0"),
    "f4-half-byte": st({"a": t("F4", [3], [0, 2])}, b"\0" * 2),
    "invalid-json": st(None, raw_header=b'{"a":{"dtype":"F32",'),
    "not-an-object": st(None, raw_header=b"[1,2,3]"),
    "entry-not-object": st({"a": [1, 2]}),
    "nested-deep": st(None, raw_header=b'{"__metadata__":' + b"[" * 5000 + b"]" * 5000 + b"}"),
    "nested-deep-entry": st(None, raw_header=b'{"a":' + b'{"x":' * 5000 + b"1" + b"}" * 5000 + b"}"),
    "meta-number": st({"__metadata__": {"format": "pt", "steps": 500}}),
    "meta-null": st({"__metadata__": {"a": None}}),
    "meta-nested": st({"__metadata__": {"a": {"b": "c"}}}),
    "meta-not-object": st({"__metadata__": "pt"}),
    "duplicate-name": st(None, raw_header=b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},'
                                          b'"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}',
                         data=b"\0" * 8),
    "extra-field": st({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8], "extra": 1}}, b"\0" * 8),
    "missing-field": st({"a": {"dtype": "F32", "data_offsets": [0, 8]}}, b"\0" * 8),
    "non-utf8-name": st(None, raw_header=b'{"a\xff\xfe":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}',
                        data=b"\0" * 8),
    "non-utf8-meta": st(None, raw_header=b'{"__metadata__":{"k":"\xc3\x28"}}'),
    "nul-in-header": st(None, raw_header=b'{"a":{"dtype":"F32","shape":[2],\0"data_offsets":[0,8]}}',
                        data=b"\0" * 8),
    "garbage-after-json": st(None, raw_header=b'{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}x',
                             data=b"\0" * 8),
}

INDEX = {
    # shard names are relative to bad/; ok-shard.safetensors is a valid file
    "index-missing-shard.safetensors.index.json":
        {"metadata": {"total_size": 8}, "weight_map": {"a": "no-such-shard.safetensors"}},
    "index-wrong-shard.safetensors.index.json":
        {"metadata": {}, "weight_map": {"a": "ok-shard.safetensors", "zz": "ok-shard.safetensors"}},
    "index-path-escape.safetensors.index.json":
        {"weight_map": {"a": "../kohya.safetensors"}},
    "index-no-weight-map.safetensors.index.json": {"metadata": {}},
}


def main():
    os.makedirs(OUT, exist_ok=True)
    rows = []
    for name, blob in CASES.items():
        with open(os.path.join(OUT, name + ".safetensors"), "wb") as f:
            f.write(blob)
        try:
            safetensors.deserialize(blob)
            verdict = "accepted"
        except Exception as e:
            verdict = "rejected: " + str(e).splitlines()[0][:100]
        rows.append((name + ".safetensors", verdict))
    # an index over a good shard, and indexes that break
    with open(os.path.join(OUT, "ok-shard.safetensors"), "wb") as f:   # valid: skipped by the test
        f.write(st({"a": t("F32", [2], [0, 8])}, b"\0" * 8))
    for name, idx in INDEX.items():
        with open(os.path.join(OUT, name), "w") as f:
            json.dump(idx, f)
        rows.append((name, "(no reference: huggingface_hub index)"))
    with open(os.path.join(OUT, "invalid-json.safetensors.index.json"), "w") as f:
        f.write('{"weight_map": {"a": ')
    rows.append(("invalid-json.safetensors.index.json", "(no reference: invalid JSON)"))
    with open(os.path.join(OUT, "REFERENCE.tsv"), "w") as f:
        f.write("# file\tsafetensors %s deserialize()\n" % safetensors.__version__)
        for r in rows:
            f.write("%s\t%s\n" % r)
    acc = [r[0] for r in rows if r[1] == "accepted"]
    print("%d files; the reference accepts: %s" % (len(rows), ", ".join(acc) or "none"))


if __name__ == "__main__":
    sys.exit(main())
