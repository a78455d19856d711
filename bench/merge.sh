#!/bin/sh
# bench/merge.sh: bake LoRAs into multi-GB models with lora-merge and with
# PyTorch scripts doing the same; print time, CPU time, peak RSS and ratios.
#   llama: a rank-16 PEFT LoRA on every linear layer of a 2.2 GB
#          TinyLlama-shaped BF16 checkpoint in 2 shards (bench/merge_gen.py);
#          references bench/merge_ref.py (per-shard safetensors + torch) and
#          bench/merge_peft.py (transformers + PEFT merge_and_unload).
#   sd:    a rank-32 kohya LoRA (UNet attentions + text encoder) on a
#          full-size 1.9 GB F16 SD 1.5 single file (bench/merge_gen_sd.py);
#          reference bench/merge_ref_sd.py.
# Data is generated in $BENCH_DIR (default /tmp/lora-merge-bench, ~12 GB with
# the outputs) and kept for reruns. Each run starts with the model in the
# page cache. The Python scripts fsync their outputs as lora-merge does
# (BENCH_SYNC=0: not).
#   resize (only when asked: the reference takes ~10 minutes): --rank 8 on the
#          sd LoRA against bench/merge_resize_ref.py (sd-scripts' way: full
#          ΔW, torch.linalg.svd per module).
# Usage: sh bench/merge.sh [BIN_DIR]   (default bin; BENCH_MODEL=llama|sd|both|
#        resize, default both; BENCH_PEFT=0 skips the transformers+PEFT reference)
set -e
B=${1:-bin}
D=${BENCH_DIR:-/tmp/lora-merge-bench}
M=${BENCH_MODEL:-both}

# measure NAME CMD...: wall seconds, CPU seconds, max RSS (KB) via GNU time
measure() {
	name=$1; shift
	/usr/bin/time -f "%e %M %U %S" -o "$D/time-$name" "$@" >/dev/null 2>"$D/log-$name" ||
		{ cat "$D/log-$name"; exit 1; }
	read -r t rss u s <"$D/time-$name"
	eval "t_$name=$t rss_$name=$rss cpu_$name=$(echo "$u + $s" | bc -l)"
}
header() { printf '%-24s %9s %9s %12s %10s\n' tool seconds "cpu s" "peak RSS MB" "RSS/model"; }
row() {   # label name model-bytes
	eval "t=\$t_$2 c=\$cpu_$2 r=\$rss_$2"
	printf '%-24s %9.2f %9.2f %12.0f %9.1f%%\n' "$1" "$t" "$c" "$((r / 1024))" "$(echo "$r * 1024 * 100 / $3" | bc -l)"
}
ratio() { echo "$1 / $2" | bc -l; }

if [ "$M" = llama ] || [ "$M" = both ]; then
	[ -f "$D/model/config.json" ] || python3 bench/merge_gen.py "$D"
	msize=$(du -sb "$D/model" | cut -f1)
	warm() { cat "$D"/model/*.safetensors >/dev/null; }
	rm -rf "$D/out-c" "$D/out-torch" "$D/out-peft"
	warm; measure c "$B/lora-merge" -b "$D/model" -o "$D/out-c" "$D/adapter"
	warm; measure torch python3 bench/merge_ref.py "$D/model" "$D/adapter" "$D/out-torch"
	[ "${BENCH_PEFT:-1}" = 0 ] || { warm; measure peft python3 bench/merge_peft.py "$D/model" "$D/adapter" "$D/out-peft"; }
	python3 - "$D" <<'PY'
import sys, glob
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
print(f"llama check: lora-merge vs pytorch on layers 0 and 21: max relative difference {worst:.2e}")
PY
	printf 'LLaMA bake: %.2f GB BF16 model, 2 shards, PEFT rank 16 on 154 modules\n' "$(echo "$msize / 1000000000" | bc -l)"
	header
	row lora-merge c "$msize"
	row "pytorch (per shard)" torch "$msize"
	[ "${BENCH_PEFT:-1}" = 0 ] || row "transformers+peft" peft "$msize"
	printf 'speed-up vs pytorch %.1fx' "$(ratio "$t_torch" "$t_c")"
	[ "${BENCH_PEFT:-1}" = 0 ] || printf ', vs transformers+peft %.1fx' "$(ratio "$t_peft" "$t_c")"
	printf '\n\n'
fi

if [ "$M" = sd ] || [ "$M" = both ]; then
	S=$D/sd
	[ -f "$S/style.safetensors" ] || python3 bench/merge_gen_sd.py "$S"
	msize=$(stat -c %s "$S/sd15.safetensors")
	rm -f "$S/out-c.safetensors" "$S/out-torch.safetensors"
	cat "$S/sd15.safetensors" >/dev/null
	measure sdc "$B/lora-merge" -b "$S/sd15.safetensors" -o "$S/out-c.safetensors" "$S/style.safetensors"
	cat "$S/sd15.safetensors" >/dev/null
	measure sdtorch python3 bench/merge_ref_sd.py "$S/sd15.safetensors" "$S/style.safetensors" "$S/out-torch.safetensors"
	if cmp -s "$S/out-c.safetensors" "$S/out-torch.safetensors"; then same="byte-identical files"; else same="files DIFFER"; fi
	printf 'SD 1.5 bake: %.2f GB F16 single file, kohya rank 32 on 264 modules (%s)\n' "$(echo "$msize / 1000000000" | bc -l)" "$same"
	header
	row lora-merge sdc "$msize"
	row "pytorch" sdtorch "$msize"
	printf 'speed-up vs pytorch %.1fx\n' "$(ratio "$t_sdtorch" "$t_sdc")"
fi

if [ "$M" = resize ]; then
	S=$D/sd
	[ -f "$S/style.safetensors" ] || python3 bench/merge_gen_sd.py "$S"
	lsize=$(stat -c %s "$S/style.safetensors")
	measure rc "$B/lora-merge" -d f16 -r 8 -o "$S/r8-c.safetensors" "$S/style.safetensors"
	"$B/lora-merge" -d f16 -r 8 -o "$S/r8-c.safetensors" "$S/style.safetensors" >"$S/r8-c.tsv"
	measure rtorch sh -c "python3 bench/merge_resize_ref.py '$S/style.safetensors' 8 '$S/r8-torch.safetensors' >'$S/r8-torch.tsv'"
	worst=$(tail -n +2 "$S/r8-c.tsv" | cut -f4 | paste - "$S/r8-torch.tsv" |
		awk -F'\t' '{ d = $1 - $5; if (d < 0) d = -d; if (d > w) w = d } END { printf "%.1e", w }')
	printf 'resize rank 32 -> 8: kohya LoRA, 264 modules (energy kept agrees to %s)\n' "$worst"
	header
	row lora-merge rc "$lsize"
	row "pytorch (full SVD)" rtorch "$lsize"
	printf 'speed-up vs pytorch %.0fx\n' "$(ratio "$t_rtorch" "$t_rc")"
fi
