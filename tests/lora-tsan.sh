#!/bin/sh
# The tools' threads under ThreadSanitizer (make TSAN=1 all: build/tsan/bin).
# lora-train: the threaded data loader on a folder of 26 .txt, .jsonl and
# .ids files, then full training, LoRA with dropout and gradient
# checkpointing, a checkpoint and a resume, each on 4 CPU threads with
# evaluation. Then lora-merge (its bake and conversion threads) on that
# adapter, lora-inspect --stats on the merged model, lora-resize -j 4 on the
# fixture images and lora-tokenize on the data, 4 threads each. Each run must
# end with exit 0 and no TSan report (a report makes TSan exit 66).
# TSAN_OPTIONS comes from tests/run.sh (tests/tsan.supp suppresses OpenBLAS's
# own threads there, and says why).
T=$TMPDIR
D=$(dirname "$0")/..
F=$FIXTURES
B=$D/build/tsan/bin
LT=$B/lora-train
[ -x "$LT" ] || { echo "no ThreadSanitizer build ($B: make TSAN=1 all)"; exit 77; }
. "$(dirname "$0")/lib.sh"
export LORA_THREADS=4
# a program built for TSan that cannot start here (some kernels' address
# layouts) is a skip, not a failure
"$LT" --help >/dev/null 2>"$T/err" || { echo "the TSan build does not start here: $(head -1 "$T/err")"; exit 77; }
# tool TOOL ARGS...: run build/tsan/bin/TOOL, stdout in $T/out, stderr in
# $T/err, status in $rc
tool() { t=$1; shift; "$B/$t" "$@" >"$T/out" 2>"$T/err"; rc=$?; }
try() { tool lora-train "$@"; }
clean() { [ $rc -eq 0 ] && ! grep -q "ThreadSanitizer" "$T/err" || { sed -n '1,30p' "$T/err"; false; }; }

mkdir -p "$T/base"
# the .ids files hold ids below 32000
sed 's/"vocab_size": 4096/"vocab_size": 32000/' "$F/train/tiny-config.json" >"$T/base/config.json"
cp "$D/examples/demo/base/tokenizer.json" "$T/base/tokenizer.json"
RUN="--train_data_dir $F/data/many --max_seq_length 32 --batch_size 4 --eval_steps 3
     --save_steps 3 --val_split 0.2 --logging_steps 1"
# shellcheck disable=SC2086
try --base_model "$T/base" --output_dir "$T/full" --train_mode full $RUN --max_steps 6
check "full fine-tuning, 4 threads: exit 0, no race" clean
check "... read all 26 files" has "$T/out" "from 15 .txt, 6 .jsonl, 5 .ids files"
LORA="--base_model $T/full --output_dir $T/lora --lora_rank 4 --target_modules all-linear
      --lora_dropout 0.1 --gradient_checkpointing true"
# shellcheck disable=SC2086
try $LORA $RUN --max_steps 3
check "LoRA, dropout, checkpointing: exit 0, no race" clean
# shellcheck disable=SC2086
try $LORA $RUN --max_steps 6 --resume auto
check "... resumed from its checkpoint: exit 0, no race" clean
check "... from step 3" has "$T/out" "resum.*step 3"

tool lora-merge -b "$T/full" -o "$T/merged" "$T/lora"
check "lora-merge: exit 0, no race" clean
tool lora-inspect -s "$T/merged/model.safetensors"
check "lora-inspect --stats: exit 0, no race" clean
# shellcheck disable=SC2046
tool lora-resize -j 4 -o "$T/img" -s 64 $(ls "$F"/resize/*.png | head -12)
check "lora-resize -j 4: exit 0, no race" clean
tool lora-tokenize -t "$T/base/tokenizer.json" "$F"/data/many/*.txt
check "lora-tokenize: exit 0, no race" clean
finish
