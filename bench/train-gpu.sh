#!/bin/sh
# train-gpu.sh: LoRA training tokens/s and peak GPU memory, this toolkit
# (bench/train_gpu.c on the CUDA backend) against PyTorch + transformers +
# PEFT (bf16, SDPA attention; bench/train_gpu_peft.py) on the same GPU in the
# same run, for a TinyLlama-1.1B- and a Llama-2-7B-shaped model with random
# bf16 weights (bench/make_random_llama.py: nothing is downloaded), sequence
# 512 and 2048, r=8 on q,v and r=16 on all linear layers; MFU against the
# GPU's measured dense bf16 matmul rate. Prints the table last
# (bench/gpu_table.py) and writes it to $OUT/table.md.
#
# Usage: sh bench/train-gpu.sh [tinyllama] [llama2-7b]     (default: both)
# Env:   TRAIN_GPU  the train_gpu binary (default build/gpu/bin/train_gpu)
#        WORK       scratch for the model folders (default /tmp/lora-bench)
#        OUT        logs and table (default bench/results-tmp)
#        STEPS      timed steps per config (default 10, after 2 warm-up)
#        DEVICE     cuda (default); cpu with the shape "tiny" checks the
#                   scripts on a machine without a GPU
#        PROFILE    1: then ours once more per model, 3 steps with
#                   LORA_CUDA_PROFILE=1: each op's GPU time in a real step
#                   (not in the table; to $OUT/profile-MODEL.log)
# Tokens per step: 4096 for TinyLlama (B 8 x 512, B 2 x 2048), 2048 for
# Llama-2-7B (B 4 x 512, B 1 x 2048), the same for both implementations.
set -eu
TRAIN_GPU=${TRAIN_GPU:-build/gpu/bin/train_gpu}
WORK=${WORK:-/tmp/lora-bench}
OUT=${OUT:-bench/results-tmp}
STEPS=${STEPS:-10}
DEVICE=${DEVICE:-cuda}
shapes=${*:-tinyllama llama2-7b}
mkdir -p "$WORK" "$OUT"
log=$OUT/train-gpu.log
: >"$log"
export PYTHONUNBUFFERED=1
echo "# gpu $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo unknown)" | tee -a "$log"
echo "# date $(date -u +%Y-%m-%dT%H:%MZ)" | tee -a "$log"
echo "# attention kernels: ${LORA_CUDA_ATTN:-tensor cores in bf16 runs (default)}" | tee -a "$log"
echo "# saved activations: ${LORA_CUDA_ACT:-bf16 in bf16 runs (default)}" | tee -a "$log"
[ "$DEVICE" = cuda ] && python3 bench/train_gpu_peft.py --matmul 2>&1 | grep -v -i warn | tee -a "$log"
for shape in $shapes; do
	case $shape in
	tiny) cfgs="2:64:q,v:8 1:128:all-linear:16" ;;
	tinyllama) cfgs="8:512:q,v:8 8:512:all-linear:16 2:2048:q,v:8 2:2048:all-linear:16" ;;
	llama2-7b) cfgs="4:512:q,v:8 4:512:all-linear:16 1:2048:q,v:8 1:2048:all-linear:16" ;;
	*) echo "train-gpu.sh: unknown model shape '$shape' (tinyllama, llama2-7b, tiny)" >&2; exit 2 ;;
	esac
	# (not through a pipe: its status would be tee's, and a run without its
	# model would go on to time PEFT alone)
	if [ ! -f "$WORK/$shape/model.safetensors" ]; then
		python3 bench/make_random_llama.py --shape "$shape" --out "$WORK/$shape" >"$WORK/make-$shape.log" 2>&1 ||
			{ cat "$WORK/make-$shape.log" >&2; echo "train-gpu.sh: could not write the $shape model in $WORK" >&2; exit 1; }
		tee -a "$log" <"$WORK/make-$shape.log"
	fi
	echo "model name=$shape dir=$WORK/$shape" >>"$log"
	# ours first, then PEFT: each process has the GPU to itself
	"$TRAIN_GPU" -d "$DEVICE" -s "$STEPS" "$WORK/$shape" $cfgs 2>&1 | tee -a "$log" || echo "# train_gpu failed" | tee -a "$log"
	python3 bench/train_gpu_peft.py --device "$DEVICE" --steps "$STEPS" --model "$WORK/$shape" $cfgs 2>&1 |
		grep -v -i warn | tee -a "$log" || echo "# peft failed" | tee -a "$log"
	if [ "${PROFILE:-0}" = 1 ]; then
		LORA_CUDA_PROFILE=1 "$TRAIN_GPU" -d "$DEVICE" -s 3 -w 1 "$WORK/$shape" $cfgs \
			>"$OUT/profile-$shape.log" 2>&1 || echo "# profile run failed" | tee -a "$log"
		grep -E '^profile|^  (op|attention|linear|lora|crossentropy)' "$OUT/profile-$shape.log" || true
	fi
done
python3 bench/gpu_table.py "$log" | tee "$OUT/table.md"
