#!/bin/sh
# Run every unit test (build/<flavour>/tests/test-*) and every tool test
# (tests/lora-*.sh), print one line per test and a closing
# "N passed, N failed, N skipped" line. Exit status 77 means skipped.
# Usage: tests/run.sh [BUILD_DIR]     (default build/san)
# Tool tests see: $BIN (folder of the tools under test), $FIXTURES, $SHARED,
# $TMPDIR (a scratch folder of their own), and the sanitizers' options.
B=${1:-build/san}
mkdir -p "$B/bin"
export BIN="$(cd "$B/bin" && pwd)"
export FIXTURES="$(pwd)/tests/fixtures"
export SHARED="$(cd .. && pwd)/shared"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
# exit 66 on a report; OpenBLAS's own threads are suppressed (tests/tsan.supp)
export TSAN_OPTIONS="${TSAN_OPTIONS:-suppressions=$(pwd)/tests/tsan.supp exitcode=66}"
pass=0 fail=0 skip=0 failed=""
mkdir -p build/test-logs
run() {
	name=$1; shift
	log=build/test-logs/$name.log
	t0=$(date +%s)
	tmp=$(mktemp -d)
	TMPDIR=$tmp "$@" >"$log" 2>&1
	rc=$?
	rm -rf "$tmp"
	dt=$(( $(date +%s) - t0 ))
	case $rc in
	0)  pass=$((pass+1)); echo "ok    $name (${dt}s)" ;;
	77) skip=$((skip+1)); echo "skip  $name: $(tail -1 "$log")" ;;
	*)  fail=$((fail+1)); failed="$failed $name"
	    echo "FAIL  $name (exit $rc)"; tail -25 "$log" | sed 's/^/      /' ;;
	esac
}
for t in "$B"/tests/test-* build/rel/tests/test-cuda-*; do
	[ -x "$t" ] || continue
	run "$(basename "$t")" "$t"
done
# The unit tests again under ThreadSanitizer (make TSAN=1 san-tests).
# A TSan program that cannot start on this kernel (its address layout) is a skip.
tsan_ok=1
p=build/tsan/bin/lora-train
[ -x $p ] && ! $p --help >/dev/null 2>&1 && tsan_ok=0
for t in build/tsan/tests/test-*; do
	[ -x "$t" ] || continue
	case $t in *-tool) continue ;; esac     # these run the tools in $BIN, not TSan's
	if [ $tsan_ok = 0 ]; then
		skip=$((skip+1)); echo "skip  tsan-$(basename "$t"): TSan programs do not start here"
		continue
	fi
	run "tsan-$(basename "$t")" "$t"
done
# The CUDA tests on the CPU emulator (make SIM=1 cuda-tests).
for t in build/sim/tests/test-cuda-*; do
	[ -x "$t" ] || continue
	run "sim-$(basename "$t")" "$t"
done
# The WMMA attention kernels (attention_tc.cu), kept beside the default
# mma ones (attention_mma.cu) to compare: their tests on the emulator too.
t=build/sim/tests/test-cuda-ops
# And the mma kernels with 4 warps per block (the default is 8).
[ -x "$t" ] && run sim-test-cuda-ops-wmma env LORA_CUDA_ATTN=wmma LORA_TEST_ONLY=attention "$t"
[ -x "$t" ] && run sim-test-cuda-ops-rows64 env LORA_CUDA_ATTN_ROWS=64 LORA_TEST_ONLY=attention "$t"
# And on an emulated RTX 4090 (compute capability 8.9, 99 KiB of shared
# memory per block), where attention at HS 128 runs the mma kernels with 4
# warps, the backward with 32-row tiles: the shapes that fit.
[ -x "$t" ] && run sim-test-cuda-ops-sm89 env CUDASIM_CC=8.9 CUDASIM_SMEM_OPTIN=99K \
	LORA_TEST_ATTN_MAX_HS=128 LORA_TEST_ONLY=attention "$t"
# The 32-row backward at every head size, on the default GPU.
[ -x "$t" ] && run sim-test-cuda-ops-kt32 env LORA_CUDA_ATTN_KT=32 LORA_TEST_ONLY=attention "$t"
# The model with fp32 saved activations beside bf16 weights (other buffers
# hold the bf16 gradients then: swiglu's in dgate and dup).
t=build/sim/tests/test-cuda-llama
[ -x "$t" ] && run sim-test-cuda-llama-act32 env LORA_CUDA_ACT=fp32 "$t"
for t in tests/lora-*.sh tests/bench-*.sh; do
	[ -f "$t" ] || continue
	run "$(basename "$t" .sh)" sh "$t"
done
[ -n "$failed" ] && echo "failed:$failed"
echo "$pass passed, $fail failed, $skip skipped"
[ $fail -eq 0 ]
