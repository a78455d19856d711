#!/bin/sh
# Tool test for lora-train: usage and synopsis, config errors, the plan,
# full training from random init, LoRA on top of it, outputs and logs,
# checkpoint retention, SIGKILL + resume and SIGINT + resume giving the same
# adapter bit for bit as an uninterrupted run, and each bad-input error.
# The numbers themselves (ops, model, optimizer) are checked against PyTorch
# by the engine's golden tests; the data pipeline by test-data.
T=$TMPDIR
LT=$BIN/lora-train
F=$FIXTURES
D=$(dirname "$0")/..
export LORA_THREADS=2
[ -x "$LT" ] || { echo "lora-train is not built (it needs lib/llama.c)"; exit 77; }
. "$(dirname "$0")/lib.sh"
# run lora-train, keep stdout in $T/out, stderr in $T/err, status in $rc
try() { "$LT" "$@" >"$T/out" 2>"$T/err"; rc=$?; }

# ---- usage and synopsis ---------------------------------------------------------
. "$D/tests/synopsis.sh"
check "--help prints the man page SYNOPSIS" synopsis_matches "$LT" "$D/man/lora-train.1"
"$LT" --help >/dev/null; check "--help exits 0" [ $? -eq 0 ]
try; check "no arguments: usage error (2)" [ $rc -eq 2 ]
try --lora_rnak 4; check "unknown option: 2" [ $rc -eq 2 ]
check "unknown option names the nearest" has "$T/err" "did you mean '--lora_rank'"
try --base_model m --learning_rat 1e-3; check "a cut-short key is not taken as the key it starts: 2" [ $rc -eq 2 ]
check "a cut-short key names the full one" has "$T/err" "unknown option '--learning_rat' (did you mean '--learning_rate'?)"
try --base_model m --lora_ran=4; check "a cut-short --key=value: 2" [ $rc -eq 2 ]

# ---- config errors ---------------------------------------------------------------
printf 'base_model: m\nlerning_rate: 1\n' >"$T/bad.yaml"
try "$T/bad.yaml"; check "unknown key: exit 1" [ $rc -eq 1 ]
check "unknown key named with the nearest" has "$T/err" "line 2: unknown key 'lerning_rate' (did you mean 'learning_rate'?)"
try --base_model m --train_data_dir d; check "missing output_dir: 1" [ $rc -eq 1 ]
check "missing output_dir named" has "$T/err" "output_dir is required"
try --base_model m --train_data_dir d --output_dir o --lora_rank 0
check "range error" has "$T/err" "lora_rank: 0 is out of range"
try --base_model m --train_data_dir d --output_dir o --lora_rank 1e400
check "1e400 is no integer (no overflow)" has "$T/err" "lora_rank: '1e400' is not an integer"
try --base_model m --train_data_dir d --output_dir o --save_steps 1e30
check "1e30 is out of range" has "$T/err" "save_steps: 1e30 is out of range"

printf 'lora_rnak: 4\n' | "$LT" -c - >/dev/null 2>"$T/err"
check "config on stdin (-c -)" has "$T/err" "'<stdin>': line 1: unknown key 'lora_rnak'"

# ---- a tiny base model: config.json + tokenizer.json, random init -----------------
mkdir -p "$T/base" "$T/data" "$T/qa"
cp "$F/train/tiny-config.json" "$T/base/config.json"
cp "$D/examples/demo/base/tokenizer.json" "$T/base/tokenizer.json"
cp "$F/data/text/a.txt" "$F/data/text/b.txt" "$T/data/"
i=0; while [ $i -lt 12 ]; do cat "$F/data/text/a.txt" >>"$T/data/c.txt"; i=$((i+1)); done
cp "$F/data/text/c.jsonl" "$T/qa/"

try --base_model "$T/base" --train_data_dir "$T/data" --output_dir "$T/full" \
	--train_mode full --max_seq_length 32 --batch_size 4 --max_steps 30 \
	--learning_rate 0.01 --logging_steps 5 --save_steps 10 --save_total_limit 2 --dry-run
check "dry run: exit 0" [ $rc -eq 0 ]
check "dry run: params and %" has "$T/out" "trainable (100.0000%)"
check "dry run: the precision" has "$T/out" "^params: .*, train_mode full, precision fp32$"
check "dry run: steps" has "$T/out" "in all"
check "dry run: memory" has "$T/out" "memory on cpu:"
check "dry run: the device" has "$T/out" "device: cpu, "
check "dry run: largest batch" has "$T/out" "largest batch_size that fits"
check "dry run writes nothing" [ ! -e "$T/full" ]

# ---- the shipped configs (examples/): every key known, every value in range -----
n=0
for y in "$D"/examples/*.yaml "$D"/examples/demo/*.yaml; do
	n=$((n+1))
	try "$y" --base_model "$T/base" --train_data_dir "$T/data" --output_dir "$T/ex" \
		--max_seq_length 32 --dry-run
	if [ $rc -eq 0 ] && ! grep -q "warning" "$T/err"; then
		ok "examples: a dry run takes $(basename "$y") without a warning"
	else
		bad "examples: a dry run of $(basename "$y"): exit $rc"; sed 's/^/    /' "$T/err"
	fi
done
check "examples: five configs found" [ $n -eq 5 ]

try --base_model "$T/base" --train_data_dir "$T/data" --output_dir "$T/full" \
	--train_mode full --max_seq_length 32 --batch_size 4 --max_steps 30 \
	--learning_rate 0.01 --logging_steps 5 --save_steps 10 --save_total_limit 2
check "full training from random init: exit 0" [ $rc -eq 0 ]
[ $rc -eq 0 ] || sed 's/^/    /' "$T/err"
check "random init announced" has "$T/out" "random init"
for f in model.safetensors config.json tokenizer.json config.yaml logs/train.log logs/loss.csv; do
	check "full: $f written" [ -s "$T/full/$f" ]
done
check "train.log: the header, then the plan" \
	sh -c 'sed -n 1p "$1" | grep -q "^---- lora-train " && sed -n 2p "$1" | grep -q "^model: "' - \
	"$T/full/logs/train.log"
grep '^memory on cpu:' "$T/out" >"$T/mem-line"
check "train.log: the plan's lines as stdout said them" \
	sh -c 'grep "^memory on cpu:" "$1" | cmp -s - "$2"' - "$T/full/logs/train.log" "$T/mem-line"
ev=$(ls "$T/full/logs/" | grep -c '^events\.out\.tfevents\.')
check "full: an event file" [ "$ev" -eq 1 ]
check "pipe: one line per logging step" [ "$(grep -c '^step=[0-9]* epoch=' "$T/out")" -eq 6 ]
first=$(grep '^step=5 ' "$T/out" | sed 's/.* loss=\([0-9.]*\).*/\1/')
last=$(grep '^step=30 ' "$T/out" | sed 's/.* loss=\([0-9.]*\).*/\1/')
check "full: loss goes down ($first -> $last)" awk "BEGIN { exit !($last < $first) }"
check "save_total_limit 2 keeps two checkpoints" [ "$(ls "$T/full/checkpoints" | wc -l)" -eq 2 ]
check "newest checkpoint is step 30" [ -s "$T/full/checkpoints/step-000030/trainer_state.json" ]
check "loss.csv: header + 6 rows" [ "$(wc -l <"$T/full/logs/loss.csv")" -eq 7 ]
"$LT" -n -c "$T/full/config.yaml" >/dev/null 2>&1
check "resolved config reloads" [ $? -eq 0 ]

# ---- LoRA on the trained base --------------------------------------------------------
LORA_OPTS="--max_seq_length 32 --batch_size 2 --gradient_accumulation_steps 2 --max_steps 12
	--learning_rate 0.01 --lora_dropout 0.1 --target_modules q_proj,v_proj,down_proj
	--save_steps 1 --save_total_limit 2 --logging_steps 1 --val_split 0.2 --eval_steps 4"
lora() {   # lora OUTDIR [extra options]: run in the foreground
	o=$1; shift
	# shellcheck disable=SC2086
	try --base_model "$T/full" --train_data_dir "$T/data" --output_dir "$o" $LORA_OPTS "$@"
}
lora_bg() {   # the same in the background; $pid is lora-train's own pid
	o=$1; shift
	# shellcheck disable=SC2086
	( exec "$LT" --base_model "$T/full" --train_data_dir "$T/data" --output_dir "$o" \
		$LORA_OPTS "$@" >"$T/out" 2>"$T/err" ) &
	pid=$!
}
lora "$T/A"
check "lora: exit 0" [ $rc -eq 0 ]
[ $rc -eq 0 ] || sed 's/^/    /' "$T/err"
check "lora: adapter_model.safetensors" [ -s "$T/A/adapter_model.safetensors" ]
check "lora: adapter_config.json" has "$T/A/adapter_config.json" '"peft_type": "LORA"'
check "lora: eval at step 0 (the base alone)" has "$T/out" "^step=0 eval_loss="
check "lora: eval every eval_steps" has "$T/out" "^step=8 .*eval_loss="
check "lora: checkpoint holds a PEFT adapter" [ -s "$T/A/checkpoints/step-000012/adapter_model.safetensors" ]

# the same run again: bit-identical (determinism is what resume builds on)
lora "$T/A2"
check "same config, same adapter" cmp -s "$T/A/adapter_model.safetensors" "$T/A2/adapter_model.safetensors"

# a new run (no resume) into a folder holding an earlier run's checkpoints:
# refused, and the folder left as it was (before, the new run's checkpoints
# were deleted at once by save_total_limit, the earlier run's outranking them)
ls "$T/A2/checkpoints" >"$T/ck-before"
cp "$T/A2/config.yaml" "$T/A2.yaml"
lora "$T/A2" --lora_rank 4
check "a new run over an earlier run's checkpoints: exit 1" [ $rc -eq 1 ]
check "... says so and how to go on" has "$T/err" \
	"output_dir '$T/A2' holds checkpoints of an earlier run (the newest $T/A2/checkpoints/step-000012): continue it with resume: auto"
check "... in one line (beside the no-GPU notice)" [ "$(grep -v 'notice: no usable GPU' "$T/err" | grep -c .)" -eq 1 ]
ls "$T/A2/checkpoints" >"$T/ck-after"
check "... adapter, config.yaml and checkpoints as they were" sh -c \
	'cmp -s "$1/A/adapter_model.safetensors" "$1/A2/adapter_model.safetensors" &&
	 cmp -s "$1/A2.yaml" "$1/A2/config.yaml" && cmp -s "$1/ck-before" "$1/ck-after"' - "$T"
lora "$T/A2" --lora_rank 4 --dry-run
check "... a dry run: exit 0 with the same as a warning" sh -c \
	'[ "$1" -eq 0 ] && grep -q "warning: output_dir .* holds checkpoints of an earlier run" "$2"' - $rc "$T/err"

# gradient accumulation: 2 micro-batches of 2 make the step one batch of 4
# makes (the loss is the mean over all the step's predicted tokens), also
# when the micro-batches hold different numbers of answer tokens
mkdir -p "$T/acc"
i=0
while [ $i -lt 16 ]; do
	ans=$(awk "BEGIN { for (j = 0; j <= ($i * 7) % 5; j++) printf \" word%d\", j }")
	printf '{"prompt": "Question %d: say something.", "completion": "%s"}\n' $i "$ans" >>"$T/acc/q.jsonl"
	i=$((i+1))
done
ACC="--base_model $T/full --train_data_dir $T/acc --max_seq_length 32 --max_steps 4
	--learning_rate 0.01 --lora_dropout 0 --val_split 0 --save_steps 100 --logging_steps 1"
# shellcheck disable=SC2086
try $ACC --output_dir "$T/acc1" --batch_size 4 --gradient_accumulation_steps 1
check "accumulation: batch 4 x 1 runs" [ $rc -eq 0 ]
# shellcheck disable=SC2086
try $ACC --output_dir "$T/acc2" --batch_size 2 --gradient_accumulation_steps 2
check "accumulation: batch 2 x 2 runs" [ $rc -eq 0 ]
md=$("$BIN/lora-inspect" --diff "$T/acc1/adapter_model.safetensors" "$T/acc2/adapter_model.safetensors" 2>/dev/null |
	awk -F'\t' '$1 == "differ" { if ($NF > m) m = $NF } END { print m + 0 }')
check "accumulation: 2 x 2 gives the adapter of 4 x 1 (max diff $md)" awk "BEGIN { exit !($md < 1e-5) }"

# SIGKILL at a random step, then resume: auto
lora_bg "$T/B"
n=$(awk 'BEGIN { srand(); print 1 + int(rand() * 6) }')
while [ ! -d "$T/B/checkpoints/step-$(printf %06d "$n")" ] && kill -0 $pid 2>/dev/null; do sleep 0.01; done
kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
echo "  killed after checkpoint $n"
lora "$T/B" --resume auto
check "resume after SIGKILL: exit 0" [ $rc -eq 0 ]
check "resume: says where it resumed" has "$T/out" "resume: from"
at=$(sed -n 's/^resume: from .* at step \([0-9]*\) .*/\1/p' "$T/out")
check "resume: from a step before the end (step ${at:-?})" [ "${at:-99}" -lt 12 ]
check "SIGKILL + resume gives the uninterrupted adapter" cmp -s "$T/A/adapter_model.safetensors" "$T/B/adapter_model.safetensors"
check "no temporary checkpoint folders left" [ -z "$(ls -a "$T/B/checkpoints" | grep '^\.tmp')" ]

cp "$T/B/config.yaml" "$T/B.yaml"
cp "$T/B/logs/train.log" "$T/B.log"
lora "$T/B" --resume auto --batch_size 3
check "resume with other batching refused" has "$T/err" "resume with the same batching"
check "... config.yaml and train.log as they were" sh -c \
	'cmp -s "$1/B.yaml" "$1/B/config.yaml" && cmp -s "$1/B.log" "$1/B/logs/train.log"' - "$T"

# SIGINT: finish the step, checkpoint, exit 1; then resume
# (signalled once the plan is in train.log: the handler is installed by then)
lora_bg "$T/C" --save_steps 100
while ! grep -q '^params:' "$T/C/logs/train.log" 2>/dev/null; do
	kill -0 $pid 2>/dev/null || break; sleep 0.02; done
kill -INT $pid; wait $pid; rc=$?
check "SIGINT: exit 1" [ $rc -eq 1 ]
check "SIGINT: says how to continue" has "$T/err" "interrupted: stopped after step"
# (the step it lands after depends on timing: one of the first few)
check "SIGINT: wrote a checkpoint" sh -c 'for f in "$1"/checkpoints/step-*/trainer_state.json; do
	[ -s "$f" ] && exit 0; done; exit 1' - "$T/C"
lora "$T/C" --save_steps 100 --resume auto
check "SIGINT + resume gives the uninterrupted adapter" cmp -s "$T/A/adapter_model.safetensors" "$T/C/adapter_model.safetensors"

# SIGINT while the data and the model load: stop there with nothing written.
# The base's tokenizer.json is a FIFO. The writer's open returns once
# lora-train has opened the other end (its handler is installed by then);
# the signal comes while lora-train waits to read, and the tokenizer after it.
mkdir -p "$T/fifo"
cp "$T/full/config.json" "$T/full/model.safetensors" "$T/fifo/"
mkfifo "$T/fifo/tokenizer.json"
# shellcheck disable=SC2086
( exec "$LT" --base_model "$T/fifo" --train_data_dir "$T/data" --output_dir "$T/I" \
	$LORA_OPTS >"$T/out" 2>"$T/err" ) &
pid=$!
( exec 3>"$T/fifo/tokenizer.json"; kill -INT $pid; cat "$T/full/tokenizer.json" >&3 ) &
wpid=$!
i=0; while kill -0 $pid 2>/dev/null && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done
kill -9 $pid $wpid 2>/dev/null
wait $pid; rc=$?
wait $wpid 2>/dev/null
check "SIGINT while loading: exit 1" [ $rc -eq 1 ]
check "... says so" has "$T/err" "interrupted before the first step; nothing written"
check "... and makes no output_dir" [ ! -e "$T/I" ]

# two runs into one folder: the second is refused while the first trains
lora_bg "$T/L" --max_steps 100000 --save_steps 100000
# (train.log has the plan before config.yaml is written: wait for both)
while ! { grep -q '^params:' "$T/L/logs/train.log" && [ -f "$T/L/config.yaml" ]; } 2>/dev/null; do
	kill -0 $pid 2>/dev/null || break; sleep 0.02; done
cp "$T/L/config.yaml" "$T/L.yaml"
# (12 steps: without the lock it would finish, exit 0, and fail the check)
"$LT" --base_model "$T/full" --train_data_dir "$T/data" --output_dir "$T/L" $LORA_OPTS \
	--save_steps 100000 >"$T/out2" 2>"$T/err2"
rc2=$?
running=0; kill -0 $pid 2>/dev/null && running=1
kill -INT $pid; wait $pid
check "a second run into a folder in use: exit 1" [ $rc2 -eq 1 ]
check "... says so" has "$T/err2" "output_dir '$T/L' is in use by another lora-train run"
check "... while the first ran on" [ $running -eq 1 ]
check "... and changed nothing" cmp -s "$T/L.yaml" "$T/L/config.yaml"

# a terminal gets one progress line rewritten in place (script(1) gives a tty)
if command -v script >/dev/null 2>&1; then
	script -qc "'$LT' --base_model '$T/full' --train_data_dir '$T/data' --output_dir '$T/tty' \
		--max_seq_length 32 --batch_size 2 --max_steps 4 --logging_steps 1" /dev/null >"$T/tty.out" 2>&1
	check "tty: progress line rewritten in place" has "$T/tty.out" "$(printf '\r\033')\[Kstep 2/4  loss"
	check "tty: no per-step log lines on the terminal" [ "$(grep -c 'step=[0-9]* epoch=' "$T/tty.out")" -eq 0 ]
	check "tty: train.log still has them" [ "$(grep -c '^step=[0-9]* epoch=' "$T/tty/logs/train.log")" -eq 4 ]
	check "tty: the data load is announced, then the line is cleared" \
		has "$T/tty.out" "reading and tokenizing '$T/data' ...$(printf '\r\033')\[K"
	check "tty: train.log does not have it" [ "$(grep -c 'reading and tokenizing' "$T/tty/logs/train.log")" -eq 0 ]
fi

# init_lora: start from the adapter of run A; its rank wins over lora_rank
try --base_model "$T/full" --train_data_dir "$T/data" --output_dir "$T/inc" --max_seq_length 32 \
	--batch_size 2 --max_steps 2 --init_lora "$T/A" --lora_rank 4
check "init_lora: exit 0" [ $rc -eq 0 ]
check "init_lora: the adapter's rank is used" has "$T/inc/config.yaml" "^lora_rank: 8"
check "init_lora: says so" has "$T/err" "init_lora: rank 8"

# gradient checkpointing recomputes the same numbers
lora "$T/GC" --gradient_checkpointing true
check "gradient_checkpointing: the same adapter" cmp -s "$T/A/adapter_model.safetensors" "$T/GC/adapter_model.safetensors"

# full training: SIGKILL + resume gives the uninterrupted model too
full() {   # full OUTDIR [extra]: 20 steps of full training on the trained base
	o=$1; shift
	try --base_model "$T/full" --train_data_dir "$T/data" --output_dir "$o" --train_mode full \
		--max_seq_length 32 --batch_size 4 --max_steps 20 --learning_rate 0.003 \
		--save_steps 2 --logging_steps 5 "$@"
}
full "$T/F1"
( exec "$LT" --base_model "$T/full" --train_data_dir "$T/data" --output_dir "$T/F2" --train_mode full \
	--max_seq_length 32 --batch_size 4 --max_steps 20 --learning_rate 0.003 \
	--save_steps 2 --logging_steps 5 >/dev/null 2>&1 ) &
pid=$!
while [ ! -d "$T/F2/checkpoints/step-000006" ] && kill -0 $pid 2>/dev/null; do sleep 0.02; done
kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
full "$T/F2" --resume auto
check "full: SIGKILL + resume gives the uninterrupted model" cmp -s "$T/F1/model.safetensors" "$T/F2/model.safetensors"

# instruction data: loss only on answers
try --base_model "$T/full" --train_data_dir "$T/qa" --output_dir "$T/qa-out" --max_seq_length 64 \
	--batch_size 2 --max_steps 3 --logging_steps 1
check "jsonl prompt/completion/instruction data: exit 0" [ $rc -eq 0 ]

# ---- bad input ---------------------------------------------------------------------------
mkdir -p "$T/notok" "$T/empty" "$T/small"
cp "$T/full/config.json" "$T/full/model.safetensors" "$T/notok/"
try --base_model "$T/notok" --train_data_dir "$T/data" --output_dir "$T/x1" --max_seq_length 32
check "missing tokenizer: 1" [ $rc -eq 1 ]
check "missing tokenizer: named" has "$T/err" "needs a tokenizer"
try --base_model "$T/full" --train_data_dir "$T/empty" --output_dir "$T/x2" --max_seq_length 32
check "empty dataset named" has "$T/err" "no training data"
# answers cut off by max_seq_length: skipped with a warning, or an error when
# none is left
mkdir -p "$T/cut"
i=0
while [ $i -lt 6 ]; do
	if [ $i -lt 2 ]; then q="Hi $i"; else q="Explain thing $i in a long detailed way, every part of it, please"; fi
	printf '{"instruction": "%s", "output": "ok"}\n' "$q" >>"$T/cut/q.jsonl"
	i=$((i+1))
done
try --base_model "$T/full" --train_data_dir "$T/cut" --output_dir "$T/x5" --max_seq_length 64 --dry-run
check "answers cut off: warned and counted" has "$T/err" "4 examples with no token to learn"
rm "$T/cut/q.jsonl"
i=0
while [ $i -lt 3 ]; do
	printf '{"instruction": "Explain thing %d in a long detailed way, every part of it, please", "output": "ok"}\n' $i >>"$T/cut/q.jsonl"
	i=$((i+1))
done
try --base_model "$T/full" --train_data_dir "$T/cut" --output_dir "$T/x5" --max_seq_length 64 --dry-run
check "every answer cut off: an error that says so" has "$T/err" "all 3 examples lose their answer"
# tok/s counts training time only: an evaluation that ends a window was
# once taken off that window (it runs after it), which made its tok/s 0
try --device cpu --base_model "$T/full" --train_data_dir "$T/data" --output_dir "$T/x10" --max_seq_length 32 \
	--max_steps 4 --batch_size 1 --logging_steps 1 --eval_steps 2 --val_split 0.5 --save_steps 0
check "evaluation at every other step: exit 0" [ $rc -eq 0 ]
check "... tok/s is above 0 on every step line" sh -c '[ "$(grep -c "^step=[1-4] .*tok/s=" "$1")" -eq 4 ] &&
	! grep -q "tok/s=0 " "$1"' - "$T/out"
# entries that are not data are named in a warning, and training goes on
mkdir -p "$T/mixed/part2"; cp "$T/data/a.txt" "$T/mixed/"; echo '# about' >"$T/mixed/README.md"
try --device cpu --base_model "$T/full" --train_data_dir "$T/mixed" --output_dir "$T/x9" --max_seq_length 32 --dry-run
check "other entries: exit 0" [ $rc -eq 0 ]
check "... named in one warning" has "$T/err" "warning: '$T/mixed': 'README.md' and 1 other not read (only .txt, .jsonl and .ids files directly in it are)"
rm "$T/mixed/a.txt"
try --device cpu --base_model "$T/full" --train_data_dir "$T/mixed" --output_dir "$T/x9" --max_seq_length 32 --dry-run
check "only other entries: exit 1, naming them" sh -c '[ $1 -eq 1 ] && grep -q "no training data: .README.md. and 1 other not read" "$2"' - $rc "$T/err"
# a Latin-1 file among UTF-8 ones: one line naming file, line and byte; nothing written
mkdir -p "$T/latin1"; cp "$T/data/a.txt" "$T/latin1/"
printf 'Caf\351 au lait\n' >"$T/latin1/menu.txt"
try --device cpu --base_model "$T/full" --train_data_dir "$T/latin1" --output_dir "$T/x8" --max_seq_length 32
check "Latin-1 text: exit 1" [ $rc -eq 1 ]
check "... one line naming the file, line and byte" sh -c '[ "$(grep -c . "$1")" -eq 1 ] &&
	grep -q "$2/latin1/menu.txt.: line 1, byte 4: 0xE9 is not UTF-8" "$1"' - "$T/err" "$T"
check "... output_dir not made" [ ! -e "$T/x8" ]
try --base_model "$T/full" --train_data_dir "$T/data" --output_dir "$T/x3" --max_seq_length 128
check "sequence longer than the context" has "$T/err" "longer than the model's context (64"
sed 's/"vocab_size": 4096/"vocab_size": 1000/' "$T/base/config.json" >"$T/small/config.json"
cp "$T/base/tokenizer.json" "$T/small/"
try --base_model "$T/small" --train_data_dir "$T/data" --output_dir "$T/x4" --max_seq_length 32 --train_mode full
check "vocab/model mismatch" has "$T/err" "tokenizer and model do not match"
try --base_model "$T/base" --train_data_dir "$T/data" --output_dir "$T/x5" --max_seq_length 32
check "LoRA on a weightless base refused" has "$T/err" "only be trained from random init with train_mode: full"
# truncated base weights: one line naming the file, before output_dir is made
mkdir -p "$T/trunc"; cp "$T/full/config.json" "$T/full/tokenizer.json" "$T/trunc/"
head -c 5000 "$T/full/model.safetensors" >"$T/trunc/model.safetensors"
try --device cpu --base_model "$T/trunc" --train_data_dir "$T/data" --output_dir "$T/x7" --max_seq_length 32 --max_steps 3
check "truncated base weights: exit 1" [ $rc -eq 1 ]
check "... one line naming the file" sh -c '[ "$(grep -c . "$1")" -eq 1 ] &&
	grep -q "$2/trunc/model.safetensors.*truncated" "$1"' - "$T/err" "$T"
check "... output_dir not made" [ ! -e "$T/x7" ]
# NaN: poison the last float of the base weights
mkdir -p "$T/nan"; cp "$T/full/config.json" "$T/full/tokenizer.json" "$T/nan/"
cp "$T/full/model.safetensors" "$T/nan/model.safetensors"
sz=$(wc -c <"$T/nan/model.safetensors")
printf '\000\000\300\177' | dd of="$T/nan/model.safetensors" bs=1 seek=$((sz - 4)) conv=notrunc 2>/dev/null
try --base_model "$T/nan" --train_data_dir "$T/data" --output_dir "$T/x6" --max_seq_length 32 --max_steps 3
check "NaN loss: exit 1" [ $rc -eq 1 ]
check "NaN loss: names the step" has "$T/err" "is NaN at step 1"
check "NaN loss: no adapter written" [ ! -e "$T/x6/adapter_model.safetensors" ]

# ---- a full disk: small tmpfs folders (need root; skipped otherwise) ----------------
# 24 KiB holds config.yaml and the logs but not the adapter; 40 KiB also
# the adapter but not the last step's checkpoint, which comes after it.
FD="--device cpu --base_model $T/full --train_data_dir $T/data --max_seq_length 32 --batch_size 2
	--max_steps 3 --target_modules q_proj,v_proj,down_proj --save_steps 100 --logging_steps 1"
# shellcheck disable=SC2086
try $FD --output_dir "$T/fdref"
mkdir -p "$T/fd1" "$T/fd2"
if mount -t tmpfs -o size=24k tmpfs "$T/fd1" 2>/dev/null; then
	# shellcheck disable=SC2086
	try $FD --output_dir "$T/fd1/o"
	find "$T/fd1" -type f | sed "s|^$T/fd1/o/||" | sort >"$T/left"
	umount "$T/fd1"
	check "full disk at the adapter: exit 1" [ $rc -eq 1 ]
	check "... one line naming the file and the reason" has "$T/err" \
		"^lora-train: cannot write '$T/fd1/o/adapter_model.safetensors': No space left on device"
	check "... in one line" [ "$(grep -c . "$T/err")" -eq 1 ]
	check "... no adapter and no temporary file left" \
		[ "$(grep -v '^logs/events' "$T/left" | tr '\n' ' ')" = "config.yaml logs/loss.csv logs/train.log " ]
else
	echo "skip full disk: cannot mount a tmpfs (not root)"
fi
if mount -t tmpfs -o size=40k tmpfs "$T/fd2" 2>/dev/null; then
	# shellcheck disable=SC2086
	try $FD --output_dir "$T/fd2/o"
	cp "$T/fd2/o/adapter_model.safetensors" "$T/fd2.st" 2>/dev/null
	ls -A "$T/fd2/o/checkpoints" >"$T/left" 2>/dev/null
	umount "$T/fd2"
	check "full disk at the last checkpoint: exit 1" [ $rc -eq 1 ]
	check "... says so, and that the adapter is written" has "$T/err" \
		"checkpoint: cannot write .*: No space left on device; $T/fd2/o/adapter_model.safetensors is written"
	check "... the adapter is the whole run's" cmp -s "$T/fd2.st" "$T/fdref/adapter_model.safetensors"
	check "... no temporary checkpoint left" [ ! -s "$T/left" ]
fi

finish
