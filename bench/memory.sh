#!/bin/sh
# memory.sh: device memory of LoRA training, ours (the plan, exact: a step
# allocates nothing beyond it) against what PyTorch + transformers + PEFT
# keep (measured on the CPU with saved-tensor hooks: bench/mem_peft.py), for
# the GPU benchmark's shapes and configs. Runs without a GPU: our plan is the
# CUDA backend's, computed on the emulator (build/sim). Prints one markdown
# table. Needs torch, transformers and peft (pip) for the PEFT side.
# Usage: sh bench/memory.sh [shape ...]      (default: tinyllama llama2-7b)
set -eu
shapes=${*:-tinyllama llama2-7b}
make -s -j2 SIM=1 all >/dev/null
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
LIBS=$(make -s --no-print-directory --eval='print-libs: ; @echo $(LDLIBS) $(CUDA_LDLIBS)' print-libs SIM=1)
cc -O1 -g -std=c11 -D_GNU_SOURCE -DLORA_CUDA=1 -pthread -Ilib -fsanitize=address,undefined -o "$W/mem_plan" \
	bench/mem_plan.c build/sim/liblora.a $LIBS
configs="4:512:q,v:8 1:2048:q,v:8 4:512:all-linear:16 1:2048:all-linear:16"
echo "| model | B x T | LoRA | ours: total MiB | PEFT: lower bound MiB | ours / PEFT | per layer and token, ours / PEFT (KB) |"
echo "|---|---|---|---|---|---|---|"
for s in $shapes; do
	case $s in tinyllama) cf=$(echo "$configs" | sed 's/4:512/8:512/g; s/1:2048/2:2048/g') ;; *) cf=$configs ;; esac
	python3 bench/make_random_llama.py --shape "$s" --out "$W/$s" --config-only
	ASAN_OPTIONS=detect_leaks=0 "$W/mem_plan" -d cuda "$W/$s" $cf >"$W/ours"
	python3 bench/mem_peft.py --model "$W/$s" $cf >"$W/peft"
	paste -d ' ' "$W/ours" "$W/peft" | awk -v m="$s" '{
		side = 0
		for (i = 1; i <= NF; i++) {
			if ($i == "plan") side++
			split($i, kv, "=")
			if (side == 1) v[kv[1]] = kv[2]; else w[kv[1]] = kv[2]
		}
		printf "| %s | %s x %s | %s r=%s | %s | %s | %.2f | %s / %s |\n", m, v["B"], v["T"],
		       v["targets"], v["r"], v["total_mib"], w["lower_bound_mib"],
		       v["total_mib"] / w["lower_bound_mib"], v["layer_kb_per_token"], w["layer_kb_per_token"]
		delete v; delete w }'
done
