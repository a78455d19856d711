#!/bin/sh
# bench-gpu-run.sh: bench/gpu-run.sh, the script of a GPU session's one
# device call, with stand-ins for the GPU programs and for PyTorch: each
# step's result reaches the summary (ok, FAILED, skipped, STOPPED at its
# limit, not run), a step past its limit is killed with what it started
# even when it ignores SIGTERM, the call ends inside its DEADLINE, at most
# 8 files come back ($OUT: summary.txt, table.md, logs.tgz) with every log
# packed, and the table is made from both sides' result lines. No GPU, no
# PyTorch needed (the table needs a python3; without one that part is
# skipped). Run by tests/run.sh from the repository root.
T=$TMPDIR
. "$(dirname "$0")/lib.sh"
HAS_TAIL=12
REALPY=$(command -v python3)

# ---- stand-ins: the bundle's programs, and python3 for the bench scripts --------------
mkdir -p "$T/bin" "$T/py" "$T/slow"
standin() { printf '#!/bin/sh\n%s\n' "$2" >"$1"; chmod +x "$1"; }
standin "$T/bin/test-cuda-mma" 'echo "5 passed"'
standin "$T/bin/test-cuda-ops" 'echo "FAIL attention_backward dk B=1"; echo "1210 passed, 1 failed"; exit 1'
standin "$T/bin/test-cuda-llama" 'echo "skipped: no CUDA GPU found (stand-in)"; exit 77'
# lora-train: refuses an output_dir that holds an earlier run's checkpoints,
# as the real one does (without --resume)
standin "$T/bin/lora-train" 'o=; r=; while [ $# -gt 0 ]; do case $1 in --output_dir) o=$2 ;; --resume) r=1 ;; esac; shift; done
[ -z "$o" ] && exit 0
[ -d "$o/checkpoints" ] && [ -z "$r" ] && { echo "lora-train: $o holds checkpoints of an earlier run" >&2; exit 1; }
mkdir -p "$o/checkpoints"'
standin "$T/bin/ops_gpu" 'echo "linear_forward 1.0 ms"'
# train_gpu [-d dev] [-s steps] [-w warmup] DIR CONFIG...: one result per config
standin "$T/bin/train_gpu" 'while getopts d:s:w: c; do :; done; shift $((OPTIND - 1)); shift
for a; do IFS=:; set -- $a; unset IFS
echo "result impl=ours B=$1 T=$2 targets=$3 r=$4 ckpt=0 status=ok tokens_per_s=3000.0 step_ms=1 mem_mib=150 trainable=1"
done'
standin "$T/py/python3" 'case $1 in
bench/make_random_llama.py)
	[ -n "${FAIL_MODEL:-}" ] && { echo "stand-in: no space left on device" >&2; exit 1; }
	while [ $# -gt 0 ]; do [ "$1" = --out ] && out=$2; shift; done
	mkdir -p "$out"
	sleep 2     # the 7B takes a minute: the benchmark must wait for it
	echo "{\"hidden_size\": 256, \"intermediate_size\": 688, \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"vocab_size\": 1000}" >"$out/config.json"
	: >"$out/model.safetensors"
	echo "tiny: stand-in model in $out" ;;
bench/train_gpu_peft.py)
	shift
	for a; do
		case $a in
		--matmul) echo "matmul bf16_tflops=100.0" ;;
		*:*:*:*) IFS=:; set -- $a; unset IFS
		         echo "result impl=peft B=$1 T=$2 targets=$3 r=$4 ckpt=0 status=ok tokens_per_s=1500.0 step_ms=2 mem_mib=300 trainable=1" ;;
		esac
	done ;;
*) [ -n "$REALPY" ] && exec "$REALPY" "$@"; exit 1 ;;
esac'
# REALPY is read by the stand-in when it runs
export REALPY

# ---- a whole call: every kind of step result ------------------------------------------
OUT=$T/out1 GPU_BIN=$T/bin BENCH_SHAPES=tiny WORK=$T/work PATH="$T/py:$PATH" \
	sh bench/gpu-run.sh first >"$T/log1" 2>&1
rc=$?
S=$T/out1/summary.txt
check "a call with a failed step exits 1" [ $rc = 1 ]
check "... test-cuda-mma ok" has "$S" '^test-cuda-mma: ok'
check "... test-cuda-ops FAILED (exit 1)" has "$S" '^test-cuda-ops: FAILED (exit 1)'
check "... and its FAIL line printed" has "$T/log1" '^FAIL attention_backward dk B=1'
check "... test-cuda-llama skipped, with the reason" has "$S" '^test-cuda-llama: skipped: no CUDA GPU found (stand-in)'
check "... bench-tiny ok" has "$S" '^bench-tiny: ok'
check "... ops_gpu ok" has "$S" '^ops_gpu: ok'
check "... the closing line" has "$S" '^gpu-run.sh first: exit 1 after'
n=$(find "$T/out1" -type f | wc -l)
check "... at most 8 files come back ($n)" [ "$n" -le 8 ]
check "... none deeper than \$OUT" [ -z "$(find "$T/out1" -mindepth 2)" ]
mkdir -p "$T/logs1"
tar -xzf "$T/out1/logs.tgz" -C "$T/logs1"
check "... logs.tgz: test-cuda-ops.log" has "$T/logs1/test-cuda-ops.log" '1210 passed, 1 failed'
check "... logs.tgz: the benchmark's log" has "$T/logs1/bench-tiny/train-gpu.log" 'result impl=peft B=1 T=128'
check "... logs.tgz: lora-train-cuda.log" [ -s "$T/logs1/lora-train-cuda.log" ]
# LOG of lora-train-cuda.sh is there and none of its CPU runs failed
cpu_runs_pass() { [ -s "$1" ] && ! grep -q '^FAIL.*on the CPU' "$1"; }
check "... whose CPU runs pass" cpu_runs_pass "$T/logs1/lora-train-cuda.log"
check "... the model was written while the tests ran" has "$T/logs1/models.log" 'tiny: stand-in model'
check "... and the benchmark waited for it (did not write it again)" \
	[ -z "$(grep 'stand-in model' "$T/logs1/bench-tiny/train-gpu.log")" ]
check "... logs.tgz: ops_gpu.log" has "$T/logs1/ops_gpu.log" 'linear_forward'
if [ -n "$REALPY" ]; then
	M=$T/out1/table.md
	check "... table: the measured matmul rate" has "$M" 'dense bf16 matmul: 100 TFLOP/s'
	check "... table: q,v row, ours/PEFT 2.00x, both peaks" has "$M" \
		'^| tiny | 64 | 2 | r=8 q,v | 3000 | 1500 | 2.00x | 150 | 300 | [0-9.]*% | [0-9.]*% |$'
	check "... table: all-linear row" has "$M" '^| tiny | 128 | 1 | r=16 all-linear | 3000 | 1500 | 2.00x |'
else
	echo "skip table checks: no python3"
fi

# ---- a model that cannot be written: the benchmark fails at once -------------------------
t0=$(date +%s)
OUT=$T/out3 GPU_BIN=$T/bin BENCH_SHAPES=tiny WORK=$T/work3 PATH="$T/py:$PATH" FAIL_MODEL=1 \
	DEADLINE=120 sh bench/gpu-run.sh first >"$T/log3" 2>&1
dt=$(($(date +%s) - t0))
check "a model that cannot be written: bench-tiny FAILED" has "$T/out3/summary.txt" '^bench-tiny: FAILED'
mkdir -p "$T/logs3"
tar -xzf "$T/out3/logs.tgz" -C "$T/logs3"
check "... the reason in its log" has "$T/logs3/bench-tiny.log" 'no space left on device'
check "... and no table row" [ -z "$(grep '^| tiny' "$T/out3/table.md" 2>/dev/null)" ]
check "... without waiting for the DEADLINE (${dt}s)" [ "$dt" -le 40 ]
# the same machine's second call: lora-train-cuda starts afresh
check "a second call's lora-train-cuda CPU runs still pass" cpu_runs_pass "$T/logs3/lora-train-cuda.log"

# ---- a call out of time: steps stopped, then not run ------------------------------------
# Each stand-in ignores SIGTERM and waits for a child that sleeps and
# ignores it too (the worst case: a real step's python or test binary dies
# of SIGTERM), so only the SIGKILL 5 s after the limit, sent to the step's
# whole process group, ends both.
for p in test-cuda-mma test-cuda-ops test-cuda-llama train_gpu lora-train ops_gpu; do
	standin "$T/slow/$p" "trap '' TERM; echo \$\$ >>$T/pids
sh -c 'echo \$\$ >>$T/pids; exec sleep 120' &
wait"
done
t0=$(date +%s)
OUT=$T/out2 GPU_BIN=$T/slow BENCH_SHAPES=tiny WORK=$T/work PATH="$T/py:$PATH" \
	DEADLINE=25 RESERVE=0 STEP_LIMIT=2 sh bench/gpu-run.sh first >"$T/log2" 2>&1
rc=$?
dt=$(($(date +%s) - t0))
S=$T/out2/summary.txt
check "a call out of time exits 1" [ $rc = 1 ]
check "... test-cuda-mma STOPPED at its limit" has "$S" '^test-cuda-mma: STOPPED at its 2s limit'
check "... test-cuda-ops STOPPED at its limit" has "$S" '^test-cuda-ops: STOPPED at its 2s limit'
check "... test-cuda-llama not run" has "$S" '^test-cuda-llama: not run'
check "... the benchmark not run" has "$S" '^bench-tiny: not run'
check "... ops_gpu not run" has "$S" '^ops_gpu: not run'
check "... inside its DEADLINE (${dt}s of 25)" [ "$dt" -le 26 ]
# alive: in /proc and not a zombie (killed, not yet reaped by init)
alive=0
for p in $(cat "$T/pids"); do
	st=$(awk '{ print $3 }' "/proc/$p/stat" 2>/dev/null)
	[ -n "$st" ] && [ "$st" != Z ] && { alive=$((alive + 1)); kill -9 "$p"; }
done
check "... nothing it started still runs" [ "$alive" = 0 ]
check "... two stand-ins and their children were started" [ "$(wc -l <"$T/pids")" = 4 ]

finish
