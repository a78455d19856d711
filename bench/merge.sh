#!/bin/sh
# bench/merge.sh: bake a rank-16 PEFT LoRA into a 2.2 GB TinyLlama-shaped BF16
# checkpoint (2 shards) with lora-merge and with PyTorch scripts doing the
# same; print time, peak RSS and the ratios. Data is generated in $BENCH_DIR
# (default /tmp/lora-merge-bench, ~7 GB with the outputs) and kept for reruns.
# Each run starts with the model in the page cache (read once before).
# The Python scripts fsync their outputs as lora-merge does (BENCH_SYNC=0: not).
# Usage: sh bench/merge.sh [BIN_DIR]     (default bin; BENCH_PEFT=0 skips PEFT)
set -e
B=${1:-bin}
D=${BENCH_DIR:-/tmp/lora-merge-bench}
[ -f "$D/model/config.json" ] || python3 bench/merge_gen.py "$D"
msize=$(du -sb "$D/model" | cut -f1)
warm() { cat "$D"/model/*.safetensors >/dev/null; }
# measure NAME CMD...: wall seconds and max RSS (KB) via GNU time
measure() {
	name=$1; shift
	rm -rf "$D/out-$name"
	warm
	/usr/bin/time -f "%e %M %U %S" -o "$D/time-$name" "$@" >/dev/null
	read -r t rss u s <"$D/time-$name"
	eval "t_$name=$t rss_$name=$rss cpu_$name=$(echo "$u + $s" | bc -l)"
}
measure c "$B/lora-merge" -b "$D/model" -o "$D/out-c" "$D/adapter"
measure torch python3 bench/merge_ref.py "$D/model" "$D/adapter" "$D/out-torch"
[ "${BENCH_PEFT:-1}" = 0 ] || measure peft python3 bench/merge_peft.py "$D/model" "$D/adapter" "$D/out-peft"
# same result? (max |difference| over the adapted weights, in BF16 steps)
python3 - "$D" <<'PY'
import sys, glob, torch
from safetensors import safe_open
d = sys.argv[1]
def tensors(dirn):
    out = {}
    for f in sorted(glob.glob(f"{dirn}/*.safetensors")):
        h = safe_open(f, "pt")
        for k in h.keys():
            if "layers.0." in k or "layers.21." in k:
                out[k] = h.get_tensor(k).float()
    return out
c, t = tensors(f"{d}/out-c"), tensors(f"{d}/out-torch")
worst = max(((c[k] - t[k]).abs() / t[k].abs().clamp_min(1e-30)).max().item() for k in t)
print(f"check: lora-merge vs torch on layers 0 and 21: max relative difference {worst:.2e} (BF16 step 7.8e-3)")
PY
printf '%-24s %9s %9s %12s %10s\n' tool seconds "cpu s" "peak RSS MB" "RSS/model"
row() { printf '%-24s %9.2f %9.2f %12.0f %9.1f%%\n' "$1" "$2" "$3" "$(($4 / 1024))" "$(echo "$4 * 1024 * 100 / $msize" | bc -l)"; }
row "lora-merge" "$t_c" "$cpu_c" "$rss_c"
row "pytorch (per shard)" "$t_torch" "$cpu_torch" "$rss_torch"
[ "${BENCH_PEFT:-1}" = 0 ] || row "transformers+peft" "$t_peft" "$cpu_peft" "$rss_peft"
printf 'model %.2f GB; speed-up vs pytorch %.1fx' "$(echo "$msize / 1000000000" | bc -l)" "$(echo "$t_torch / $t_c" | bc -l)"
[ "${BENCH_PEFT:-1}" = 0 ] || printf ', vs transformers+peft %.1fx' "$(echo "$t_peft / $t_c" | bc -l)"
printf '\n'
