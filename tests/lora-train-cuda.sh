#!/bin/sh
# lora-train-cuda.sh: lora-train on the CUDA backend, end to end, against
# the same runs on the CPU backend: full fine-tuning in fp32 follows the CPU
# to print precision, a bf16 LoRA run within bf16 rounding; a LoRA run
# resumes to the same adapter bit for bit; accumulation, dropout and
# evaluation in fp32 give the CPU's numbers; a NaN stops the run; out of GPU
# memory is one clear line whose suggestions really fit (and are the
# largest that do); no GPU falls back to the CPU with `device: auto` and is
# an error with `device: cuda`, except in a dry run, which plans for a GPU.
#
# Without a GPU it runs the emulator build (make SIM=1 all: build/sim/bin),
# whose CUDASIM_MEM / CUDASIM_NO_GPU give it a small GPU or none. On a GPU
# machine: LT=build/rel/bin/lora-train sh tests/lora-train-cuda.sh runs the
# first part (the memory and no-GPU parts need the emulator and are skipped).
T=$TMPDIR
D=$(dirname "$0")/..
LT=${LT:-$D/build/sim/bin/lora-train}
F=$FIXTURES
export LORA_THREADS=2
[ -x "$LT" ] || { echo "no CUDA lora-train to test ($LT: make SIM=1 all builds the emulator's)"; exit 77; }
sim=0
case $LT in *build/sim/*) sim=1 ;; esac
. "$(dirname "$0")/lib.sh"
try() { "$LT" "$@" >"$T/out" 2>"$T/err"; rc=$?; }
# values LOG [KEY]: "step value" for each step line of LOG with KEY= (loss)
values() { sed -n "s/^step=\([0-9]*\) .*\<${2:-loss}=\([0-9.]*\).*/\1 \2/p" "$1"; }
# csv DIR COLUMN: "step value" for each row of DIR/logs/loss.csv with a value
# in COLUMN (loss, grad_norm, eval_loss: 6 decimals, where stdout has 4)
csv() {
	awk -F, -v c="$2" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == c) k = i; next }
		k && $k != "" { print $1, $k }' "$1/logs/loss.csv"
}
# closecsv DIR_A DIR_B RTOL COLUMN: loss.csv's COLUMN of runs A and B agree within RTOL
closecsv() { csv "$1" "$4" >"$T/la"; csv "$2" "$4" >"$T/lb"; agree "$3"; }
# close A B RTOL [KEY]: the step losses (or KEY) of logs A and B agree within RTOL (relative)
close() { values "$1" "$4" >"$T/la"; values "$2" "$4" >"$T/lb"; agree "$3"; }
# same A B: file A is not empty and equals B
same() { [ -s "$1" ] && cmp -s "$1" "$2"; }
agree() {
	[ -s "$T/la" ] && [ "$(wc -l <"$T/la")" = "$(wc -l <"$T/lb")" ] &&
	paste "$T/la" "$T/lb" | awk -v r="$1" '{ d = $2 - $4; if (d < 0) d = -d;
		if ($1 != $3 || d > r * $4) { print "  step " $1 ": " $2 " vs " $4; bad = 1 } }
		END { exit bad }'
}

# ---- a tiny base model, trained from random init on the CPU -----------------------
mkdir -p "$T/base" "$T/data"
cp "$F/train/tiny-config.json" "$T/base/config.json"
cp "$D/examples/demo/base/tokenizer.json" "$T/base/tokenizer.json"
cp "$F/data/text/a.txt" "$F/data/text/b.txt" "$T/data/"
i=0; while [ $i -lt 6 ]; do cat "$F/data/text/a.txt" >>"$T/data/c.txt"; i=$((i+1)); done
RUN="--train_data_dir $T/data --max_seq_length 32 --batch_size 4 --max_steps 6
     --learning_rate 0.01 --logging_steps 2"

# ---- full fine-tuning, fp32: the GPU follows the CPU --------------------------------
try --base_model "$T/base" --output_dir "$T/full-cpu" --train_mode full $RUN --device cpu
cp "$T/out" "$T/full-cpu.out"
check "full fine-tuning on the CPU: exit 0" [ $rc -eq 0 ]
try --base_model "$T/base" --output_dir "$T/full-gpu" --train_mode full $RUN --device cuda
check "full fine-tuning on cuda: exit 0" [ $rc -eq 0 ]
check "... on cuda:0" has "$T/out" "memory on cuda:0"
check "... names the GPU" has "$T/out" "device: cuda:0, "
check "... and its compute capability" has "$T/out" ", compute capability "
check "... fp32 (full fine-tuning trains fp32 weights)" has "$T/out" "frozen weights 0 B"
check "... step losses equal the CPU's to 1e-4" close "$T/out" "$T/full-cpu.out" 1e-4

# ---- LoRA, bf16 (the GPU default): within bf16 rounding of the CPU ------------------
try --base_model "$T/full-cpu" --output_dir "$T/lora-cpu" $RUN --device cpu
cp "$T/out" "$T/lora-cpu.out"
check "LoRA on the CPU: exit 0" [ $rc -eq 0 ]
try --base_model "$T/full-cpu" --output_dir "$T/lora-gpu" $RUN --device cuda
cp "$T/out" "$T/lora-gpu.out"
check "LoRA on cuda, bf16: exit 0" [ $rc -eq 0 ]
check "... frozen weights in bf16 (half the CPU's fp32 bytes)" has "$T/out" "frozen weights 292.3 KiB"
check "... the plan says bf16" has "$T/out" "^params: .*, precision bf16$"
check "... step losses within 1% of the CPU's" close "$T/out" "$T/lora-cpu.out" 1e-2
check "... adapter written" [ -s "$T/lora-gpu/adapter_model.safetensors" ]
check "... same tensors as the CPU's adapter" [ "$(wc -c <"$T/lora-gpu/adapter_model.safetensors")" = \
	"$(wc -c <"$T/lora-cpu/adapter_model.safetensors")" ]

try --base_model "$T/full-cpu" --output_dir "$T/lora-f16" $RUN --device cuda --precision fp16
check "LoRA on cuda, fp16: exit 0" [ $rc -eq 0 ]
check "... the plan says fp16" has "$T/out" "^params: .*, precision fp16$"
check "... frozen weights in fp16 (as many bytes as bf16)" has "$T/out" "frozen weights 292.3 KiB"
check "... step losses within 0.2% of the CPU's (test-cuda-llama holds fp16 to PyTorch's fp16)" close "$T/out" "$T/lora-cpu.out" 2e-3

try --base_model "$T/full-cpu" --output_dir "$T/lora-ckpt" $RUN --device cuda \
	--gradient_checkpointing true
check "LoRA on cuda with gradient checkpointing: exit 0" [ $rc -eq 0 ]
check "... plans less activation memory" [ "$(sed -n 's/.*activations \([0-9.]*\) .*/\1/p' "$T/out")" != \
	"$(sed -n 's/.*activations \([0-9.]*\) .*/\1/p' "$T/lora-cpu.out")" ]
check "... the same step losses as without (recomputed, not changed)" close "$T/out" "$T/lora-gpu.out" 1e-6

# ---- accumulation, dropout and evaluation on the GPU, in fp32: the CPU's numbers ----
ACC="--batch_size 2 --gradient_accumulation_steps 2 --val_split 0.2 --eval_steps 2
     --lora_dropout 0.1 --logging_steps 1"
# shellcheck disable=SC2086
try --base_model "$T/full-cpu" --output_dir "$T/acc-cpu" $RUN $ACC --device cpu
cp "$T/out" "$T/acc-cpu.out"
# shellcheck disable=SC2086
try --base_model "$T/full-cpu" --output_dir "$T/acc-gpu" $RUN $ACC --device cuda --precision fp32
check "LoRA on cuda, fp32, 2 x 2 accumulated, dropout, a validation split: exit 0" [ $rc -eq 0 ]
check "... step losses equal the CPU's to 2e-5" closecsv "$T/acc-gpu" "$T/acc-cpu" 2e-5 loss
check "... gradient norms to 2e-4" closecsv "$T/acc-gpu" "$T/acc-cpu" 2e-4 grad_norm
check "... evaluations at steps 0, 2, 4, 6" [ "$(values "$T/out" eval_loss | cut -d' ' -f1 | tr '\n' ' ')" = "0 2 4 6 " ]
check "... eval losses to 2e-5" closecsv "$T/acc-gpu" "$T/acc-cpu" 2e-5 eval_loss

# Q&A data (prompt tokens masked out of the loss), LoRA on every linear layer
# with rsLoRA's scale
mkdir -p "$T/qa"
i=0; while [ $i -lt 4 ]; do cat "$F/data/text/c.jsonl" >>"$T/qa/d.jsonl"; i=$((i+1)); done
QA="--train_data_dir $T/qa --max_seq_length 64 --batch_size 4 --max_steps 4 --learning_rate 0.01
    --logging_steps 1 --target_modules all-linear --use_rslora true"
# shellcheck disable=SC2086
try --base_model "$T/full-cpu" --output_dir "$T/qa-cpu" $QA --device cpu
cp "$T/out" "$T/qa-cpu.out"
# shellcheck disable=SC2086
try --base_model "$T/full-cpu" --output_dir "$T/qa-gpu" $QA --device cuda --precision fp32
check "Q&A data, all-linear, rsLoRA on cuda, fp32: exit 0" [ $rc -eq 0 ]
# r 8 x (in + out) over q 32+32, k 32+16, v 32+16, o 32+32, gate, up 32+64,
# down 64+32: 4096 per layer, 2 layers
check "... all 7 modules of both layers (8192 trainable)" has "$T/out" "^params: .* 8192 trainable"
check "... step losses equal the CPU's to 2e-5" closecsv "$T/qa-gpu" "$T/qa-cpu" 2e-5 loss
check "... gradient norms to 2e-4" closecsv "$T/qa-gpu" "$T/qa-cpu" 2e-4 grad_norm
# and a LoRA that starts from the bf16 run's adapter (init_lora)
# shellcheck disable=SC2086
try --base_model "$T/full-cpu" --output_dir "$T/init-cpu" $RUN --init_lora "$T/lora-gpu" --device cpu
cp "$T/out" "$T/init-cpu.out"
# shellcheck disable=SC2086
try --base_model "$T/full-cpu" --output_dir "$T/init-gpu" $RUN --init_lora "$T/lora-gpu" \
	--device cuda --precision fp32
check "init_lora on cuda, fp32: exit 0" [ $rc -eq 0 ]
check "... step losses equal the CPU's to 2e-5" closecsv "$T/init-gpu" "$T/init-cpu" 2e-5 loss
check "... and start below the fresh adapter's" sh -c \
	'a=$(sed -n "s/^step=2 .* loss=\([0-9.]*\).*/\1/p" "$1"); b=$(sed -n "s/^step=2 .* loss=\([0-9.]*\).*/\1/p" "$2");
	 awk -v a="$a" -v b="$b" "BEGIN { exit !(a != \"\" && a < b) }"' - "$T/out" "$T/lora-cpu.out"

# ---- resume on the GPU: the LoRA path is deterministic, so bit for bit -------------
# The same run with a checkpoint every 2 steps gives the same adapter; a new
# output_dir holding only its step-2 checkpoint, with --resume auto, goes on
# to that adapter too (the AdamW moments and the position go to the GPU and
# back through state.safetensors).
try --base_model "$T/full-cpu" --output_dir "$T/lora-s2" $RUN --device cuda \
	--save_steps 2 --save_total_limit 0
check "LoRA on cuda, a checkpoint every 2 steps: exit 0" [ $rc -eq 0 ]
check "... the same adapter, bit for bit (checkpoints change nothing)" \
	cmp -s "$T/lora-s2/adapter_model.safetensors" "$T/lora-gpu/adapter_model.safetensors"
mkdir -p "$T/lora-res/checkpoints"
cp -r "$T/lora-s2/checkpoints/step-000002" "$T/lora-res/checkpoints/"
try --base_model "$T/full-cpu" --output_dir "$T/lora-res" $RUN --device cuda --resume auto
check "resumed from step 2 on cuda: exit 0" [ $rc -eq 0 ]
check "... says so" has "$T/out" "resume: from .*step-000002 at step 2"
check "... trains steps 3 to 6 only" [ "$(values "$T/out" | cut -d' ' -f1 | tr '\n' ' ')" = "4 6 " ]
check "... the same adapter, bit for bit" \
	cmp -s "$T/lora-res/adapter_model.safetensors" "$T/lora-gpu/adapter_model.safetensors"
check "... the same last checkpoint's state" \
	cmp -s "$T/lora-res/checkpoints/step-000006/state.safetensors" \
	"$T/lora-s2/checkpoints/step-000006/state.safetensors"

# ---- a NaN on the GPU: stopped, named, nothing written -----------------------------
# the last float of the base weights made NaN (bf16 keeps it a NaN)
mkdir -p "$T/nan"
cp "$T/full-cpu/config.json" "$T/full-cpu/tokenizer.json" "$T/full-cpu/model.safetensors" "$T/nan/"
sz=$(wc -c <"$T/nan/model.safetensors")
printf '\000\000\300\177' | dd of="$T/nan/model.safetensors" bs=1 seek=$((sz - 4)) conv=notrunc 2>/dev/null
try --base_model "$T/nan" --output_dir "$T/lora-nan" $RUN --device cuda
check "NaN loss on cuda: exit 1" [ $rc -eq 1 ]
check "... names the step" has "$T/err" "loss is NaN at step 1: stopped"
check "... no adapter written" [ ! -e "$T/lora-nan/adapter_model.safetensors" ]

# ---- LORA_CUDA_PROFILE=1: each op's GPU time, printed at exit; results unchanged -----
export LORA_CUDA_PROFILE=1
try --base_model "$T/full-cpu" --output_dir "$T/lora-prof" $RUN --device cuda
unset LORA_CUDA_PROFILE
check "LoRA on cuda, profiled: exit 0" [ $rc -eq 0 ]
check "... prints the profile at exit" has "$T/err" "^profile (to the end) (cuda:0): .* ms in ops"
check "... attention_forward: 6 steps x 2 layers = 12 calls" \
	[ "$(awk '$1 == "attention_forward" { print $2 }' "$T/err")" = 12 ]
check "... the same step losses as unprofiled" close "$T/out" "$T/lora-gpu.out" 1e-9

# ---- where the backend comes from: lora-cuda.so beside the program, in
# ../lib/lora (make install) or at $LORA_CUDA_LIB; without it the CPU ----------------
SO=$(dirname "$LT")/lora-cuda.so
LORA_CUDA_LIB=$T/none.so try --base_model "$T/full-cpu" --output_dir "$T/noso" $RUN --device cuda
check "LORA_CUDA_LIB names no file, device cuda: exit 1" [ $rc -eq 1 ]
check "... one line naming the file" sh -c "[ \$(wc -l <'$T/err') = 1 ] &&
	grep -q \"^lora-train: cannot load the CUDA backend: $T/none.so: \" '$T/err'"
check "... writes nothing" [ ! -e "$T/noso" ]
LORA_CUDA_LIB=$T/none.so try --base_model "$T/full-cpu" --output_dir "$T/noso" $RUN --max_steps 2
check "... device auto: exit 0" [ $rc -eq 0 ]
check "... one notice, then the CPU" sh -c "grep -q 'notice: no usable GPU (cannot load the CUDA backend' '$T/err' &&
	grep -q '^memory on cpu:' '$T/out'"
z=$(ldconfig -p | awk '$1 == "libz.so.1" && /x86-64/ { print $NF; exit }')
if [ -n "$z" ]; then
	LORA_CUDA_LIB=$z try --base_model "$T/full-cpu" --output_dir "$T/noso" $RUN --device cuda
	check "LORA_CUDA_LIB names another library: exit 1, says so" sh -c "[ $rc -eq 1 ] &&
		grep -q \"'$z' is not this build's CUDA backend\" '$T/err'"
fi
# a library from another build (other headers: another op table) is refused
if command -v cc >/dev/null; then
	printf '%s\n' 'const unsigned lora_cuda_abi = 1;' 'void *lora_backend_cuda(int d) { return 0; }' \
		'void *lora_backend_cuda_plan(void) { return 0; }' 'void cuda_profile_report(const char *l) {}' \
		>"$T/old.c"
	cc -shared -fPIC -o "$T/old.so" "$T/old.c"
	LORA_CUDA_LIB=$T/old.so try --base_model "$T/full-cpu" --output_dir "$T/noso" $RUN --device cuda
	check "a lora-cuda.so from another build: exit 1, says so" sh -c "[ $rc -eq 1 ] &&
		grep -q \"'$T/old.so' is from another build of lora-\* (its op table 1, this program's [0-9]*)\" '$T/err'"
fi
mkdir -p "$T/lone" "$T/inst/bin" "$T/inst/lib/lora"
cp "$LT" "$T/lone/lora-train"
cp "$LT" "$T/inst/bin/lora-train"
cp "$SO" "$T/inst/lib/lora/lora-cuda.so"
"$T/lone/lora-train" --base_model "$T/full-cpu" --output_dir "$T/noso" $RUN --device cuda 2>"$T/err"
check "a lora-train with no lora-cuda.so beside it, device cuda: exit 1" [ $? -eq 1 ]
check "... says where it looked" has "$T/err" "lora-cuda.so is in neither '$T/lone' nor '$T/lone/../lib/lora' (set LORA_CUDA_LIB)"
"$T/inst/bin/lora-train" --base_model "$T/full-cpu" --output_dir "$T/inst/out" $RUN --device cuda \
	>"$T/out" 2>"$T/err"
check "installed (bin/lora-train, lib/lora/lora-cuda.so): trains on cuda" [ $? -eq 0 ]
check "... the same step losses as from the build folder" close "$T/out" "$T/lora-gpu.out" 1e-9

if [ $sim -eq 0 ]; then
	finish "memory and no-GPU checks need the emulator"
fi

# ---- out of GPU memory: one line, what fits, no adapter -----------------------------
export CUDASIM_MEM=140M
OOM="--base_model $T/full-cpu --train_data_dir $T/data --max_steps 1"
try $OOM --output_dir "$T/oom" --max_seq_length 64 --batch_size 64
check "activations larger than the GPU: exit 1" [ $rc -eq 1 ]
check "... says out of memory on cuda:0 and the need" has "$T/err" \
	"out of memory on cuda:0: batch 64 x 64 tokens need"
check "... in one line" [ "$(grep -c . "$T/err")" -eq 1 ]
check "... leaves output_dir as it was (not made)" [ ! -e "$T/oom" ]
nb=$(sed -n 's/.*; batch_size \([0-9]*\) fits at this length.*/\1/p' "$T/err")
nt=$(sed -n 's/.*, max_seq_length \([0-9]*\) at this batch_size.*/\1/p' "$T/err")
check "... suggests a batch_size and a max_seq_length" \
	sh -c '[ -n "$1" ] && [ -n "$2" ] && [ "$1" -gt 0 ]' - "$nb" "$nt"
check "... the plan's largest batch is the same" has "$T/out" "largest batch_size that fits at sequence 64: $nb"
try $OOM --output_dir "$T/oom-b" --max_seq_length 64 --batch_size "$nb"
check "the suggested batch_size $nb runs" [ $rc -eq 0 ]
try $OOM --output_dir "$T/oom-b1" --max_seq_length 64 --batch_size $((nb + 1))
check "... and batch_size $((nb + 1)) does not" [ $rc -eq 1 ]
cp "$T/oom-b/config.yaml" "$T/oom-b.yaml"
cp "$T/oom-b/logs/train.log" "$T/oom-b.log"
try $OOM --output_dir "$T/oom-b" --max_seq_length 64 --batch_size $((nb + 1)) --resume auto
check "... over a finished run: says out of memory" has "$T/err" "out of memory on cuda:0"
check "... config.yaml and train.log as they were" \
	sh -c 'cmp -s "$1/config.yaml" "$2.yaml" && cmp -s "$1/logs/train.log" "$2.log"' - "$T/oom-b" "$T/oom-b"
try $OOM --output_dir "$T/oom-t" --max_seq_length "$nt" --batch_size 64
check "the suggested max_seq_length $nt runs" [ $rc -eq 0 ]
# another process holds 30 MiB of the 140: the plan counts only what is free
export CUDASIM_MEM_TAKEN=30M
try $OOM --output_dir "$T/oom-x" --max_seq_length 64 --batch_size 64
ns=$(sed -n 's/.*; batch_size \([0-9]*\) fits at this length.*/\1/p' "$T/err")
check "memory held by another process: the plan suggests less ($ns < $nb)" \
	sh -c '[ -n "$1" ] && [ "$1" -gt 0 ] && [ "$1" -lt "$2" ]' - "$ns" "$nb"
try $OOM --output_dir "$T/oom-x" --max_seq_length 64 --batch_size "$ns"
check "... and batch_size $ns runs" [ $rc -eq 0 ]
try $OOM --output_dir "$T/oom-x1" --max_seq_length 64 --batch_size $((ns + 1))
check "... batch_size $((ns + 1)) is refused by the plan, not by a failed allocation" \
	sh -c '[ "$1" -eq 1 ] && grep -q "out of memory on cuda:0: batch" "$2"' - $rc "$T/err"
unset CUDASIM_MEM_TAKEN
CUDASIM_MEM=96.3M try $OOM --output_dir "$T/oom-w" --max_seq_length 8 --batch_size 1 --device cuda
check "weights larger than the GPU: exit 1" [ $rc -eq 1 ]
check "... says what the weights need" has "$T/err" "the weights, LoRA state and optimizer alone need"
unset CUDASIM_MEM

# ---- a GPU too small for the model's attention, and one too old ----------------------
# Head size 256 on a GPU with 99 KiB of shared memory per block (an RTX
# 4090): the attention kernels need 128 KiB. Said before the model loads.
mkdir -p "$T/hs256"
sed 's/"hidden_size": 32/"hidden_size": 512/' "$T/base/config.json" >"$T/hs256/config.json"
cp "$T/base/tokenizer.json" "$T/hs256/"
CUDASIM_SMEM_OPTIN=99K try --base_model "$T/hs256" --output_dir "$T/hs256-out" --train_mode full \
	$RUN --device cuda
check "head size 256 on a 99 KiB GPU: exit 1" [ $rc -eq 1 ]
check "... says what attention needs and what the GPU allows" has "$T/err" \
	"attention at head size 256 needs 128 KiB of shared memory per block and this GPU allows 99 KiB"
check "... in one line" [ "$(grep -c . "$T/err")" -eq 1 ]
check "... before the model loads (no random init)" sh -c "! grep -q '^init:' '$T/out'"
check "... writes nothing" [ ! -e "$T/hs256-out" ]
CUDASIM_CC=7.5 try --base_model "$T/full-cpu" --output_dir "$T/cc75" $RUN --device cuda
check "a GPU of compute capability 7.5, device cuda: exit 1" [ $rc -eq 1 ]
check "... says it needs 8.0" has "$T/err" "compute capability 7.5): the CUDA backend needs compute capability 8.0"
CUDASIM_CC=7.5 try --base_model "$T/full-cpu" --output_dir "$T/cc75a" $RUN --max_steps 2 --device auto
check "... device auto: exit 0" [ $rc -eq 0 ]
check "... on the CPU, with that reason" has "$T/err" "needs compute capability 8.0"

# a GPU the build has no machine code for (Blackwell, with CUDA_ARCHS 80 90)
# runs the PTX the driver compiles at first use: the device line says so
CUDASIM_CC=12.0 try --base_model "$T/full-cpu" --output_dir "$T/cc120" $RUN --device cuda --dry-run
check "a GPU of compute capability 12.0: the device line says the driver compiles the PTX" \
	has "$T/out" "compute capability 12.0, .*no machine code for it in this build: the driver compiles"
CUDASIM_CC=8.6 try --base_model "$T/full-cpu" --output_dir "$T/cc86" $RUN --device cuda --dry-run
check "... but not for 8.6, which runs sm_80's code" sh -c "grep -q '^device: cuda:0, .*compute capability 8.6' '$T/out' && ! grep -q 'PTX' '$T/out'"

# ---- no GPU ---------------------------------------------------------------------------
export CUDASIM_NO_GPU=1
try --base_model "$T/full-cpu" --output_dir "$T/auto" $RUN --max_steps 2 --device auto
check "no GPU, device auto: exit 0" [ $rc -eq 0 ]
check "... one notice, then the CPU" has "$T/err" "no usable GPU"
check "... trained on the CPU" has "$T/out" "memory on cpu:"
try --base_model "$T/full-cpu" --output_dir "$T/nogpu" $RUN --device cuda
check "no GPU, device cuda: exit 1" [ $rc -eq 1 ]
check "... says so" has "$T/err" "no CUDA GPU found"
check "... writes nothing" [ ! -e "$T/nogpu" ]
# a dry run plans for a GPU all the same: the memory line and the batch
# that fits 80 GiB are those of the emulated 80 GiB GPU's own dry run
PLAN="--base_model $T/full-cpu $RUN --lora_rank 4 --target_modules q_proj,k_proj,v_proj,gate_proj
      --max_seq_length 64 --device cuda --dry-run"
# shellcheck disable=SC2086
try $PLAN --output_dir "$T/plan"
check "no GPU, device cuda, dry run: exit 0" [ $rc -eq 0 ]
check "... says the plan is for a GPU" has "$T/err" "no CUDA GPU found.*; the plan below is for a GPU"
check "... and for which" has "$T/out" "^device: cuda, none here: planned for a GPU of 132 SMs"
check "... what it needs, workspaces included" has "$T/out" "^needs .* free on the GPU (with the backend's 96.0 MiB of workspaces)"
sed -n 's/^memory on cuda[:0-9]*: \(.*\) of .* available/\1/p' "$T/out" >"$T/plan-mem"
sed -n 's/^largest batch_size at sequence 64 with 16 \/ 24 \/ 40 \/ 48 \/ 80 GiB free on the GPU: .* \/ \([0-9]*\)$/\1/p' \
	"$T/out" >"$T/plan-b80"
sed -n 's/^\.\.\. with gradient_checkpointing: true: .* \/ \([0-9]*\)$/\1/p' "$T/out" >"$T/plan-c80"
check "... writes nothing" [ ! -e "$T/plan" ]
# shellcheck disable=SC2086
CUDASIM_NO_GPU= CUDASIM_MEM=80G try $PLAN --output_dir "$T/plan"
sed -n 's/^memory on cuda[:0-9]*: \(.*\) of .* available/\1/p' "$T/out" >"$T/gpu-mem"
sed -n 's/^largest batch_size that fits at sequence 64: \([0-9]*\)$/\1/p' "$T/out" >"$T/gpu-b80"
sed -n 's/^\.\.\. with gradient_checkpointing: true: \([0-9]*\)$/\1/p' "$T/out" >"$T/gpu-c80a"
check "... its memory line is the emulated GPU's" same "$T/plan-mem" "$T/gpu-mem"
check "... and its largest batch for 80 GiB ($(cat "$T/plan-b80"))" same "$T/plan-b80" "$T/gpu-b80"
# shellcheck disable=SC2086
CUDASIM_NO_GPU= CUDASIM_MEM=80G try $PLAN --gradient_checkpointing true --output_dir "$T/plan"
sed -n 's/^largest batch_size that fits at sequence 64: \([0-9]*\)$/\1/p' "$T/out" >"$T/gpu-c80"
check "... and with gradient checkpointing ($(cat "$T/plan-c80"))" same "$T/plan-c80" "$T/gpu-c80"
check "... which the GPU's own dry run names beside its plain batch" same "$T/gpu-c80a" "$T/gpu-c80"
unset CUDASIM_NO_GPU

# ---- the release build (bin/, make): its lora-cuda.so loads into its lora-train -----
# (the dry run's plan comes from the library, so dlopen has resolved every
# lora_* function it calls back; with no GPU, device auto is the CPU)
R=$D/bin
if [ -x "$R/lora-train" ] && [ -f "$R/lora-cuda.so" ]; then
	# shellcheck disable=SC2086
	"$R/lora-train" $PLAN --output_dir "$T/relplan" >"$T/out" 2>"$T/err"
	check "release lora-train, device cuda, dry run: exit 0" [ $? -eq 0 ]
	check "... its lora-cuda.so loaded (a GPU's or the plan's device line)" has "$T/out" "^device: cuda"
	"$R/lora-train" --base_model "$T/full-cpu" --output_dir "$T/relauto" $RUN --max_steps 2 \
		>"$T/out" 2>"$T/err"
	check "release lora-train, device auto: exit 0" [ $? -eq 0 ]
	check "... and no load error" sh -c "! grep -q 'cannot load\|lora-cuda.so is in neither' '$T/err'"
	if ! ldconfig -p | grep -q 'libcuda\.so\.1 '; then
		"$R/lora-train" --base_model "$T/full-cpu" --output_dir "$T/reldrv" $RUN --device cuda \
			>"$T/out" 2>"$T/err"
		check "no NVIDIA driver here, device cuda: exit 1" [ $? -eq 1 ]
		check "... says so" has "$T/err" "^lora-train: no CUDA GPU found (no NVIDIA driver: libcuda.so.1 not found)$"
	fi
fi

finish
