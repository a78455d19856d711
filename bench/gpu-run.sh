#!/bin/sh
# gpu-run.sh: what one device call runs on the GPU box, from the repo root,
# with build/gpu-bundle (bench/gpu-bundle.sh) carried:
#
#   sh bench/gpu-run.sh tests              tensor-core fragments vs CUTLASS's
#                                          layouts, CUDA op tests + end-to-end test
#                                          (+ the op tests with LORA_CUDA_ATTN=fp32,
#                                          the attention ones with =wmma and
#                                          LORA_CUDA_ATTN_ROWS=64)
#                                          + lora-train on the GPU vs the CPU
#   sh bench/gpu-run.sh bench tinyllama    training benchmark, one model (then
#                                          a per-op profile of our steps:
#                                          $OUT/profile-tinyllama.log)
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
#                                          $OUT/ncu.log
#   sh bench/gpu-run.sh all                tests, ops and bench (may pass 10
#                                          minutes)
#
# Logs and the table land in $OUT (the device tool brings them back).
# LORA_CUDA_ATTN=fp32 in the environment of a bench run times the training
# with the CUDA-core attention instead of the tensor cores; LORA_CUDA_ACT=fp32
# with fp32 saved activations instead of bf16 (the plan before 2026-11-23's
# third session: more memory, a conversion before each GEMM).
set -u
OUT=${OUT:-bench/results-tmp}
mkdir -p "$OUT" /tmp/gpu
tar -xJf build/gpu-bundle/bundle.tar.xz -C /tmp/gpu ||
	{ echo "gpu-run.sh: no build/gpu-bundle/bundle.tar.xz (run bench/gpu-bundle.sh here, carry build/gpu-bundle)"; exit 1; }
# cuBLAS: the toolkit's, else the pip wheel PyTorch uses
cub=$(ls /usr/local/cuda/lib64/libcublas.so.13 2>/dev/null ||
      find / -xdev -name 'libcublas.so.13' 2>/dev/null | head -1)
export LD_LIBRARY_PATH="/tmp/gpu/lib:$(dirname "${cub:-/usr/local/cuda/lib64/x}"):${LD_LIBRARY_PATH:-}"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv
what=${1:-all}
[ $# -gt 0 ] && shift
rc=0
if [ "$what" = tests ] || [ "$what" = all ]; then
	# the default kernels (both attention paths), then the bf16 runs on
	# the fp32 attention kernels too
	for t in test-cuda-mma test-cuda-ops test-cuda-llama test-cuda-ops:fp32 test-cuda-ops:wmma test-cuda-ops:rows64 test-cuda-llama:act32; do
		log=$OUT/$(echo "$t" | tr : -).log
		case $t in
		*:fp32) LORA_CUDA_ATTN=fp32 /tmp/gpu/bin/${t%:fp32} >"$log" 2>&1 ;;
		*:wmma) LORA_CUDA_ATTN=wmma LORA_TEST_ONLY=attention /tmp/gpu/bin/${t%:wmma} >"$log" 2>&1 ;;
		*:rows64) LORA_CUDA_ATTN_ROWS=64 LORA_TEST_ONLY=attention /tmp/gpu/bin/${t%:rows64} >"$log" 2>&1 ;;
		*:act32) LORA_CUDA_ACT=fp32 /tmp/gpu/bin/${t%:act32} >"$log" 2>&1 ;;
		*) /tmp/gpu/bin/$t >"$log" 2>&1 ;;
		esac
		r=$?
		echo "$t: exit $r"; grep -E '^FAIL|passed|skipped' "$log" | head -40
		[ $r -ne 0 ] && rc=1
	done
	# lora-train itself on the GPU against the CPU (the memory and no-GPU
	# parts of this test need the emulator and are skipped here)
	mkdir -p /tmp/gpu/lt
	LT=/tmp/gpu/bin/lora-train FIXTURES=$(pwd)/tests/fixtures TMPDIR=/tmp/gpu/lt \
		sh tests/lora-train-cuda.sh >"$OUT/lora-train-cuda.log" 2>&1
	r=$?
	echo "lora-train-cuda: exit $r"; grep -E '^FAIL|passed' "$OUT/lora-train-cuda.log"
	[ $r -ne 0 ] && rc=1
fi
if [ "$what" = ops ] || [ "$what" = all ]; then
	/tmp/gpu/bin/ops_gpu "$@" 2>&1 | tee "$OUT/ops_gpu.log" || rc=1
	# attention_tc.cu's WMMA kernels and the mma ones with 4 warps per
	# block beside the default (mma, 8 warps)
	LORA_CUDA_ATTN=wmma /tmp/gpu/bin/ops_gpu -a "$@" 2>&1 | tee -a "$OUT/ops_gpu.log" || rc=1
	LORA_CUDA_ATTN_ROWS=64 /tmp/gpu/bin/ops_gpu -a "$@" 2>&1 | tee -a "$OUT/ops_gpu.log" || rc=1
	# the backward with 32-row tiles (what a 99 KiB GPU such as an RTX 4090
	# runs at HS 128), to see what those GPUs give up
	LORA_CUDA_ATTN_KT=32 /tmp/gpu/bin/ops_gpu -a "$@" 2>&1 | tee -a "$OUT/ops_gpu.log" || rc=1
	# and dk, dv with a GQA head group in one block (TinyLlama's lines)
	LORA_CUDA_ATTN_SPLIT=1 /tmp/gpu/bin/ops_gpu -a "$@" 2>&1 | tee -a "$OUT/ops_gpu.log" || rc=1
fi
if [ "$what" = sanitize ]; then
	cs=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null ||
	     find / -xdev -name compute-sanitizer -type f 2>/dev/null | head -1)
	[ -n "$cs" ] || { echo "gpu-run.sh: no compute-sanitizer on this machine"; exit 1; }
	# each run within its own time limit, so that one slow tool leaves the rest
	# their turn inside the call's 10 minutes
	san() {         # san TOOL TEST LOG [VAR=VALUE ...]
		tool=$1 t=$2 log=$OUT/sanitize-$3.log
		shift 3
		env "$@" timeout 150 "$cs" --tool "$tool" --error-exitcode 97 --print-limit 20 \
			/tmp/gpu/bin/$t >"$log" 2>&1
		r=$?
		echo "sanitize $tool $t $*: exit $r (97: errors found, 124: time limit)"
		grep -E '^=+ (ERROR|Invalid|Race|Barrier|Uninitialized)|ERROR SUMMARY|^FAIL|passed|skipped' "$log" |
			head -12
		[ $r -ne 0 ] && rc=1
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
	timeout 400 "$nc" --clock-control none --kernel-name "regex:$re" --launch-skip 2 \
		--launch-count 4 --section SpeedOfLight --section Occupancy --section LaunchStats \
		--section MemoryWorkloadAnalysis --section ComputeWorkloadAnalysis \
		--section WarpStateStats /tmp/gpu/bin/ops_gpu -a -r 1 "$@" >"$OUT/ncu.log" 2>&1
	r=$?
	echo "ncu $re: exit $r (124: time limit); report in \$OUT/ncu.log"
	grep -E '^  [a-z_]+.*\(|Duration|Compute \(SM\) Throughput|Memory Throughput|Achieved Occupancy|Registers Per Thread' \
		"$OUT/ncu.log" | head -60
	[ $r -ne 0 ] && rc=1
fi
if [ "$what" = bench ] || [ "$what" = all ]; then
	# PROFILE=1: each op's GPU time in a real step, after the timed runs
	PROFILE=${PROFILE:-1} TRAIN_GPU=/tmp/gpu/bin/train_gpu OUT=$OUT sh bench/train-gpu.sh "$@" || rc=1
fi
exit $rc
