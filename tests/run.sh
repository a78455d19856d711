#!/bin/sh
# Run every unit test (build/<flavour>/tests/test-*) and every tool test
# (tests/lora-*.sh), print one line per test and a closing
# "N passed, N failed, N skipped" line. Exit status 77 means skipped.
# Usage: tests/run.sh [BUILD_DIR]     (default build/san)
# Tool tests see: $BIN (folder of the tools under test), $FIXTURES, $SHARED,
# $TMPDIR (a scratch folder of their own), and the sanitizers' options.
# The tests run in two lanes side by side where there are 2 CPUs or more
# (TEST_JOBS=1: one after the other): the emulator's long CPU-bound runs
# of the CUDA op tests in one, the rest in the other, which nearly halves
# the wall time on CI's 2 cores. Each test has its own scratch folder and
# log, so neither lane sees the other.
B=${1:-build/san}
mkdir -p "$B/bin"
export BIN="$(cd "$B/bin" && pwd)"
export FIXTURES="$(pwd)/tests/fixtures"
export SHARED="$(cd .. && pwd)/shared"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
# exit 66 on a report; OpenBLAS's own threads are suppressed (tests/tsan.supp)
export TSAN_OPTIONS="${TSAN_OPTIONS:-suppressions=$(pwd)/tests/tsan.supp exitcode=66}"
L=build/test-logs
mkdir -p $L
R=$L/results            # one line per test, "ok|skip|FAIL NAME", from both lanes
: >$R
run() {
	name=$1; shift
	log=$L/$name.log
	t0=$(date +%s)
	tmp=$(mktemp -d)
	TMPDIR=$tmp "$@" >"$log" 2>&1
	rc=$?
	rm -rf "$tmp"
	dt=$(( $(date +%s) - t0 ))
	case $rc in
	0)  echo "ok $name" >>$R; echo "ok    $name (${dt}s)" ;;
	77) echo "skip $name" >>$R; echo "skip  $name: $(tail -1 "$log")" ;;
	*)  echo "FAIL $name" >>$R
	    echo "FAIL  $name (exit $rc)"; tail -25 "$log" | sed 's/^/      /' ;;
	esac
}

# The CUDA op tests on the CPU emulator (make SIM=1 cuda-tests), at each
# of the kernels' configurations: most of the suite's time.
lane_sim_ops() {
	t=build/sim/tests/test-cuda-ops
	[ -x "$t" ] || return 0
	run sim-test-cuda-ops "$t"
	# The WMMA attention kernels (attention_tc.cu), kept beside the default
	# mma ones (attention_mma.cu) to compare: their tests on the emulator too.
	run sim-test-cuda-ops-wmma env LORA_CUDA_ATTN=wmma LORA_TEST_ONLY=attention "$t"
	# And the mma kernels with 4 warps per block (the default is 8).
	run sim-test-cuda-ops-rows64 env LORA_CUDA_ATTN_ROWS=64 LORA_TEST_ONLY=attention "$t"
	# And on an emulated RTX 4090 (compute capability 8.9, 99 KiB of shared
	# memory per block), where attention at HS 128 runs the mma kernels with 4
	# warps, the backward with 32-row tiles: the shapes that fit.
	run sim-test-cuda-ops-sm89 env CUDASIM_CC=8.9 CUDASIM_SMEM_OPTIN=99K \
		LORA_TEST_ATTN_MAX_HS=128 LORA_TEST_ONLY=attention "$t"
	# The 32-row backward at every head size, on the default GPU.
	run sim-test-cuda-ops-kt32 env LORA_CUDA_ATTN_KT=32 LORA_TEST_ONLY=attention "$t"
	# lora-train on the emulator (its CUDA backend loaded as on a GPU)
	[ -f tests/lora-train-cuda.sh ] && run lora-train-cuda sh tests/lora-train-cuda.sh
	return 0
}

lane_rest() {
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
			run "tsan-$(basename "$t")" sh -c 'echo "TSan programs do not start here"; exit 77'
		else
			run "tsan-$(basename "$t")" "$t"
		fi
	done
	# The other CUDA tests on the emulator.
	for t in build/sim/tests/test-cuda-*; do
		[ -x "$t" ] || continue
		case $t in */test-cuda-ops) continue ;; esac   # lane_sim_ops
		run "sim-$(basename "$t")" "$t"
	done
	# The model with fp32 saved activations beside bf16 weights (other buffers
	# hold the bf16 gradients then: swiglu's in dgate and dup).
	t=build/sim/tests/test-cuda-llama
	[ -x "$t" ] && run sim-test-cuda-llama-act32 env LORA_CUDA_ACT=fp32 "$t"
	for t in tests/lora-*.sh tests/bench-*.sh; do
		[ -f "$t" ] || continue
		case $t in */lora-train-cuda.sh) continue ;; esac   # lane_sim_ops
		run "$(basename "$t" .sh)" sh "$t"
	done
	return 0
}

jobs=${TEST_JOBS:-$(nproc 2>/dev/null || echo 1)}
if [ "$jobs" -ge 2 ]; then
	lane_sim_ops >$L/lane-sim.out 2>&1 &
	sim=$!
	lane_rest
	wait $sim || echo "FAIL lane-sim (the lane itself: exit $?)" >>$R
	cat $L/lane-sim.out
else
	lane_rest
	lane_sim_ops
fi
pass=$(grep -c '^ok ' $R) fail=$(grep -c '^FAIL ' $R) skip=$(grep -c '^skip ' $R)
[ $fail -gt 0 ] && echo "failed:$(sed -n 's/^FAIL / /p' $R | tr -d '\n')"
echo "$pass passed, $fail failed, $skip skipped"
[ $fail -eq 0 ]
