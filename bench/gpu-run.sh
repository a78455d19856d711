#!/bin/sh
# gpu-run.sh: what one device call runs on the GPU box, from the repo root,
# with build/gpu-bundle (bench/gpu-bundle.sh) carried:
#
#   sh bench/gpu-run.sh first              THE FIRST CALL OF A GPU SESSION: the
#                                          op tests, the end-to-end test (the
#                                          benchmark's models are written in
#                                          the background meanwhile), the
#                                          benchmark (TinyLlama, then 7B, each
#                                          with a per-op profile), lora-train on
#                                          the GPU vs the CPU, then the op
#                                          timings, in that order, each under its
#                                          own time limit and all inside
#                                          DEADLINE seconds (default 420): what
#                                          does not fit is reported "not run"
#   sh bench/gpu-run.sh tests              tensor-core fragments vs CUTLASS's
#                                          layouts, CUDA op tests + end-to-end test
#                                          (+ the op tests with LORA_CUDA_ATTN=fp32,
#                                          the attention ones with =wmma and
#                                          LORA_CUDA_ATTN_ROWS=64)
#                                          + lora-train on the GPU vs the CPU
#                                          + random models through lora-train
#                                          against the CPU and PyTorch for 4
#                                          minutes (tests/gen/diff_cuda.py;
#                                          DIFF_SECONDS, DIFF_SEED)
#   sh bench/gpu-run.sh bench tinyllama    training benchmark, one model (then
#                                          a per-op profile of our steps:
#                                          profile-tinyllama.log)
#   sh bench/gpu-run.sh bench llama2-7b
#   sh bench/gpu-run.sh ops                time of each op at 7B/TinyLlama shapes
#                                          (+ attention on the WMMA kernels, the
#                                          mma ones with 4 warps a block, and
#                                          with dk, dv unsplit for GQA)
#   sh bench/gpu-run.sh sanitize           compute-sanitizer over the op tests:
#                                          memcheck on all of test-cuda-ops and
#                                          test-cuda-mma, racecheck, synccheck and
#                                          initcheck on the attention ones (what
#                                          the emulator cannot see: races between
#                                          warps, a barrier a lane skips, reads of
#                                          memory no one wrote); run it when the
#                                          tests fail
#   sh bench/gpu-run.sh ncu [REGEX]        Nsight Compute's sections for the
#                                          kernels matching REGEX (default
#                                          att_mma) in the attention timings:
#                                          ncu.log
#   sh bench/gpu-run.sh all                tests, ops and bench, no time limit
#                                          but the call's (more than the 15
#                                          minutes of device time a session has
#                                          now: use first)
#
# What comes back from a device call is at most 8 files, so every log goes
# to ${TMPDIR:-/tmp}/gpu/logs and is packed into $OUT/logs.tgz after each
# step (a call stopped at its limit still brings back what finished); the
# benchmark's table is also $OUT/table.md, and each step's one-line result
# is appended to $OUT/summary.txt. Every step runs under `timeout` (its own
# limit, cut to what is left of DEADLINE less RESERVE, default 20 s, for
# packing); a step with under 15 s left is not run. Exit 1 if any step
# failed, was stopped or was not run.
#
# LORA_CUDA_ATTN=fp32 in the environment of a bench run times the training
# with the CUDA-core attention instead of the tensor cores; LORA_CUDA_ACT=fp32
# with fp32 saved activations instead of bf16 (the plan before 2026-11-23's
# third session: more memory, a conversion before each GEMM).
# For checking this script without a GPU (tests/bench-gpu-run.sh does, with
# stand-ins): GPU_BIN (the binaries, default the bundle's), BENCH_SHAPES
# (default "tinyllama llama2-7b"), DEVICE (cuda; cpu with the shape tiny)
# and STEP_LIMIT (a cap on every step's limit). A step stopped at its limit
# gets SIGTERM, then SIGKILL 5 s later, with everything it started.
set -u
T0=$(date +%s)
# no core files: a crashed GPU program's would be large and slow to write,
# inside the call's time (its log and exit status say what happened)
ulimit -c 0 2>/dev/null
OUT=${OUT:-bench/results-tmp}
what=${1:-all}
[ $# -gt 0 ] && shift
case $what in
first | tests | all | ops | sanitize | ncu | bench) ;;
*) echo "gpu-run.sh: unknown mode '$what' (first, tests, bench, ops, sanitize, ncu, all)" >&2; exit 2 ;;
esac
case $what in
first) DEADLINE=${DEADLINE:-420} ;;
*) DEADLINE=${DEADLINE:-86400} ;;
esac
RESERVE=${RESERVE:-20}
SHAPES=${BENCH_SHAPES:-tinyllama llama2-7b}
WORK=${WORK:-/tmp/lora-bench}          # the benchmark's models (train-gpu.sh's)
export WORK
G=${TMPDIR:-/tmp}/gpu
L=$G/logs
rm -rf "$L"
mkdir -p "$OUT" "$L"
: >"$OUT/summary.txt"
if [ -z "${GPU_BIN:-}" ]; then
	tar -xJf build/gpu-bundle/bundle.tar.xz -C "$G" ||
		{ echo "gpu-run.sh: no build/gpu-bundle/bundle.tar.xz (run bench/gpu-bundle.sh here, carry build/gpu-bundle)"; exit 1; }
	GPU_BIN=$G/bin
	# the bundle's libraries, and cuBLAS: the toolkit's, else the pip
	# wheel PyTorch uses (with GPU_BIN given, LD_LIBRARY_PATH is the caller's)
	cub=$(ls /usr/local/cuda/lib64/libcublas.so.13 2>/dev/null ||
	      find / -xdev -name 'libcublas.so.13' 2>/dev/null | head -1)
	export LD_LIBRARY_PATH="$G/lib:$(dirname "${cub:-/usr/local/cuda/lib64/x}"):${LD_LIBRARY_PATH:-}"
fi
B=$GPU_BIN
{ nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv ||
  echo "no nvidia-smi"; } 2>&1 | tee "$L/gpu.txt"
rc=0

say() { echo "$*" | tee -a "$OUT/summary.txt"; }
# seconds left of DEADLINE, less RESERVE
left() { echo $((DEADLINE - RESERVE - ($(date +%s) - T0))); }

# The logs so far into $OUT/logs.tgz (replaced whole, so a call stopped
# while packing still has the previous one).
pack() {
	tar -czf "$OUT/logs.part" -C "$L" . 2>/dev/null && mv -f "$OUT/logs.part" "$OUT/logs.tgz"
}

# step NAME LIMIT PATTERN CMD...: CMD, its stdout and stderr to $L/NAME.log,
# under timeout (LIMIT seconds, or what is left of DEADLINE less RESERVE if
# that is less; not run under 15 s); one line for the summary, then the
# log's lines matching PATTERN (none if PATTERN is empty).
step() {
	st_name=$1 st_lim=$2 st_pat=$3
	shift 3
	st_left=$(left)
	if [ "$st_left" -lt 15 ]; then
		say "$st_name: not run (${st_left}s left of DEADLINE=${DEADLINE}s less RESERVE=${RESERVE}s)"
		rc=1
		return
	fi
	[ "$st_lim" -gt "$st_left" ] && st_lim=$st_left
	[ -n "${STEP_LIMIT:-}" ] && [ "$st_lim" -gt "$STEP_LIMIT" ] && st_lim=$STEP_LIMIT
	st_t=$(date +%s)
	timeout -k 5 "$st_lim" "$@" >"$L/$st_name.log" 2>&1
	st_r=$?
	st_dt=$(($(date +%s) - st_t))
	case $st_r in
	0) st_s=ok ;;
	77) st_s=$(tail -1 "$L/$st_name.log") ;;
	124 | 137) st_s="STOPPED at its ${st_lim}s limit"; rc=1 ;;
	*) st_s="FAILED (exit $st_r)"; rc=1 ;;
	esac
	say "$st_name: $st_s (${st_dt}s)"
	[ -n "$st_pat" ] && grep -E "$st_pat" "$L/$st_name.log" | head -40
	pack
}

TESTS='^FAIL|passed|skipped'
# lora-train itself on the GPU against the CPU (the memory and no-GPU parts
# of this test need the emulator and are skipped here)
lora_train_cuda() {
	# a fresh folder: a second call on the same warm machine must not find
	# the first one's output_dirs (lora-train refuses to overwrite checkpoints)
	rm -rf "$G/lt"
	mkdir -p "$G/lt"
	step lora-train-cuda "$1" '^FAIL|passed' env LT="$B/lora-train" FIXTURES="$(pwd)/tests/fixtures" \
		TMPDIR="$G/lt" sh tests/lora-train-cuda.sh
}
# models: write the benchmark's model folders in the background (the 7B's
# 13.5 GB take a minute or more), while the tests run
# (in a process group of their own, which the end of the script stops)
models() {
	mkdir -p "$WORK"
	rm -f "$L/models.done"
	setsid sh -c 'done=$1; shift
	for shape; do
		[ -f "$WORK/$shape/model.safetensors" ] ||
			python3 bench/make_random_llama.py --shape "$shape" --out "$WORK/$shape"
	done
	: >"$done"' sh "$L/models.done" $SHAPES >"$L/models.log" 2>&1 &
	models_pid=$!
}
models_pid=
# bench SHAPE LIMIT: the training benchmark for one model (bench/train-gpu.sh,
# logs in $L/bench-SHAPE/), then $OUT/table.md from every model's so far.
# With models writing it, first wait (inside DEADLINE) until its file is
# there (make_random_llama.py renames it into place whole) or the writer
# is done (then, if it failed, train-gpu.sh tries again and says why not).
bench() {
	while [ -n "$models_pid" ] && [ ! -f "$WORK/$1/model.safetensors" ] &&
	      [ ! -f "$L/models.done" ] &&
	      [ "$(left)" -ge 15 ]; do
		sleep 1
	done
	step "bench-$1" "$2" '^\||^result|^#|^profile' env PROFILE="${PROFILE:-1}" \
		TRAIN_GPU="$B/train_gpu" OUT="$L/bench-$1" DEVICE="${DEVICE:-cuda}" sh bench/train-gpu.sh "$1"
	cat "$L"/bench-*/train-gpu.log >"$L/train-gpu-all.log" 2>/dev/null
	python3 bench/gpu_table.py "$L/train-gpu-all.log" >"$OUT/table.md" 2>"$L/table.err" || rc=1
	pack
}

case $what in
first)
	# in the order of what the issue needs most: the op tests, the model end
	# to end, the benchmark; then lora-train and the op timings if time is
	# left. The benchmark's models are written meanwhile.
	models
	step test-cuda-mma 60 "$TESTS" "$B/test-cuda-mma"
	step test-cuda-ops 150 "$TESTS" "$B/test-cuda-ops"
	step test-cuda-llama 90 "$TESTS" "$B/test-cuda-llama"
	for shape in $SHAPES; do
		bench "$shape" 240
	done
	lora_train_cuda 120
	step ops_gpu 120 '' "$B/ops_gpu"
	[ -f "$OUT/table.md" ] && { echo "== $OUT/table.md"; cat "$OUT/table.md"; }
	;;
tests | all)
	# the default kernels (both attention paths), then the bf16 runs on
	# the fp32 attention kernels too
	step test-cuda-mma 600 "$TESTS" "$B/test-cuda-mma"
	step test-cuda-ops 600 "$TESTS" "$B/test-cuda-ops"
	step test-cuda-llama 600 "$TESTS" "$B/test-cuda-llama"
	step test-cuda-ops-fp32 600 "$TESTS" env LORA_CUDA_ATTN=fp32 "$B/test-cuda-ops"
	step test-cuda-ops-wmma 600 "$TESTS" env LORA_CUDA_ATTN=wmma LORA_TEST_ONLY=attention "$B/test-cuda-ops"
	step test-cuda-ops-rows64 600 "$TESTS" env LORA_CUDA_ATTN_ROWS=64 LORA_TEST_ONLY=attention "$B/test-cuda-ops"
	step test-cuda-llama-act32 600 "$TESTS" env LORA_CUDA_ACT=fp32 "$B/test-cuda-llama"
	lora_train_cuda 600
	# random models and runs through lora-train: the GPU's gradients against
	# the CPU's and PyTorch's (tests/gen/diff_cuda.py; new cases for 240 s,
	# the last one given a minute to finish)
	ds=${DIFF_SECONDS:-240}
	step diff-cuda $((ds + 60)) '^ *[0-9]+ FAIL|^      |^diff_cuda:' python3 tests/gen/diff_cuda.py \
		--lt "$B/lora-train" --n 10000 --seed "${DIFF_SEED:-1}" --seconds "$ds"
	;;
esac
if [ "$what" = ops ] || [ "$what" = all ]; then
	step ops_gpu 600 '' "$B/ops_gpu" "$@"
	# attention_tc.cu's WMMA kernels and the mma ones with 4 warps per
	# block beside the default (mma, 8 warps)
	step ops_gpu-wmma 600 '' env LORA_CUDA_ATTN=wmma "$B/ops_gpu" -a "$@"
	step ops_gpu-rows64 600 '' env LORA_CUDA_ATTN_ROWS=64 "$B/ops_gpu" -a "$@"
	# the backward with 32-row tiles (what a 99 KiB GPU such as an RTX 4090
	# runs at HS 128), to see what those GPUs give up
	step ops_gpu-kt32 600 '' env LORA_CUDA_ATTN_KT=32 "$B/ops_gpu" -a "$@"
	# and dk, dv with a GQA head group in one block (TinyLlama's lines)
	step ops_gpu-split1 600 '' env LORA_CUDA_ATTN_SPLIT=1 "$B/ops_gpu" -a "$@"
	cat "$L"/ops_gpu*.log
fi
if [ "$what" = sanitize ]; then
	cs=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null ||
	     find / -xdev -name compute-sanitizer -type f 2>/dev/null | head -1)
	[ -n "$cs" ] || { echo "gpu-run.sh: no compute-sanitizer on this machine"; exit 1; }
	# each tool within its own time limit, so that one slow tool leaves the
	# rest their turn inside the call's 10 minutes (exit 97: errors found)
	SAN='^=+ (ERROR|Invalid|Race|Barrier|Uninitialized)|ERROR SUMMARY|^FAIL|passed|skipped'
	san() {         # san TOOL TEST LOG [VAR=VALUE ...]
		sa_tool=$1 sa_test=$2 sa_log=sanitize-$3
		shift 3
		step "$sa_log" 150 "$SAN" env "$@" "$cs" --tool "$sa_tool" --error-exitcode 97 --print-limit 20 "$B/$sa_test"
	}
	san memcheck test-cuda-mma mma-memcheck
	san memcheck test-cuda-ops ops-memcheck
	san racecheck test-cuda-ops attention-racecheck LORA_TEST_ONLY=attention
	san synccheck test-cuda-ops attention-synccheck LORA_TEST_ONLY=attention
	san initcheck test-cuda-ops attention-initcheck LORA_TEST_ONLY=attention
fi
if [ "$what" = ncu ]; then
	# Nsight Compute on the kernels whose names match REGEX (default: the
	# tensor-core attention) in ops_gpu's attention timings, 4 launches after
	# 2 skipped, clocks left alone (METHOD.md): where the time goes inside
	# a kernel (speed of light, occupancy, memory and issue stalls)
	nc=$(command -v ncu || ls /usr/local/cuda/bin/ncu 2>/dev/null ||
	     find / -xdev -name ncu -type f 2>/dev/null | head -1)
	[ -n "$nc" ] || { echo "gpu-run.sh: no ncu on this machine"; exit 1; }
	re=${1:-att_mma}
	[ $# -gt 0 ] && shift
	step ncu 400 '^  [a-z_]+.*\(|Duration|Compute \(SM\) Throughput|Memory Throughput|Achieved Occupancy|Registers Per Thread' \
		"$nc" --clock-control none --kernel-name "regex:$re" --launch-skip 2 \
		--launch-count 4 --section SpeedOfLight --section Occupancy --section LaunchStats \
		--section MemoryWorkloadAnalysis --section ComputeWorkloadAnalysis \
		--section WarpStateStats "$B/ops_gpu" -a -r 1 "$@"
fi
if [ "$what" = bench ] || [ "$what" = all ]; then
	# PROFILE=1 (default): each op's GPU time in a real step, after the timed runs
	for shape in ${*:-$SHAPES}; do
		bench "$shape" 100000
	done
	cat "$OUT/table.md"
fi
[ -n "$models_pid" ] && kill -- "-$models_pid" 2>/dev/null
pack
say "gpu-run.sh $what: exit $rc after $(($(date +%s) - T0))s; logs in \$OUT/logs.tgz"
exit $rc
