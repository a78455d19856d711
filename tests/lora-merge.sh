#!/bin/sh
# Tool test for lora-merge: usage, synopsis, mismatches, --force, bad input,
# no partial outputs. The numbers (baked weights, merged ΔW, SVD errors,
# round trips) are checked against the references by test-merge-tool.
T=$TMPDIR
M=$BIN/lora-merge
F=$FIXTURES/merge
. "$(dirname "$0")/lib.sh"
# run the tool; $rc = exit status, $T/err = stderr
try() { "$M" "$@" >"$T/out" 2>"$T/err"; rc=$?; }
says() { grep -q -- "$1" "$T/err"; }
none() { [ ! -e "$1" ] && [ -z "$(ls "$(dirname "$1")" | grep '\.tmp\.')" ]; }

# ---- usage and synopsis -------------------------------------------------------------
. "$(dirname "$0")/synopsis.sh"
check "--help prints the man page SYNOPSIS" synopsis_matches "$M" "$(dirname "$0")/../man/lora-merge.1"
"$M" --help >/dev/null; check "--help exits 0" [ $? -eq 0 ]

try; check "no arguments: usage error (2)" [ $rc -eq 2 ]
try "$F/kohya_a.safetensors"; check "no -o: usage error (2)" [ $rc -eq 2 ]
try -o "$T/x" -r 0 "$F/kohya_a.safetensors"; check "--rank 0: usage error" [ $rc -eq 2 ]
try -o "$T/x" -r 1x "$F/kohya_a.safetensors"; check "--rank 1x: usage error" [ $rc -eq 2 ]
try -o "$T/x" -t onnx "$F/kohya_a.safetensors"; check "--to onnx: usage error" [ $rc -eq 2 ]
try -o "$T/x" -d f8 "$F/kohya_a.safetensors"; check "--dtype f8: usage error" [ $rc -eq 2 ]
try -o "$T/x" -b "$F/sd15_tiny.safetensors" -r 2 "$F/kohya_a.safetensors"
check "--base with --rank: usage error" [ $rc -eq 2 ]
try -o "$T/x" --bogus "$F/kohya_a.safetensors"; check "unknown option: usage error" [ $rc -eq 2 ]
check "nothing written by usage errors" none "$T/x"

# ---- bad input ---------------------------------------------------------------------------
try -o "$T/x.safetensors" "$T/missing.safetensors"
check "missing adapter: exit 1" [ $rc -eq 1 ]
check "missing adapter: message names it" says "missing.safetensors"
printf 'not a safetensors file at all' >"$T/junk.safetensors"
try -o "$T/x.safetensors" "$T/junk.safetensors"
holds "junk adapter: exit 1, one line naming it" '[ $rc -eq 1 ] && says "junk.safetensors" && [ "$(wc -l <"$T/err")" -eq 1 ]'
# a truncated copy of a real adapter
head -c 5000 "$F/kohya_a.safetensors" >"$T/cut.safetensors"
try -o "$T/x.safetensors" "$T/cut.safetensors"
holds "truncated adapter: exit 1" '[ $rc -eq 1 ] && says "cut.safetensors"'
# a model is not an adapter
try -o "$T/x.safetensors" "$F/sd15_tiny.safetensors"
holds "a model given as adapter: exit 1" '[ $rc -eq 1 ] && says "not a LoRA file"'
check "no output after bad input" none "$T/x.safetensors"
try -o "$F/kohya_a.safetensors" "$F/kohya_a.safetensors"
holds "output = input refused" '[ $rc -eq 1 ] && says "overwrite"'
try -o "$T/x.safetensors" "$F/kohya_a.safetensors:0.6:"
holds "odd weight suffix: read as a path, reported" '[ $rc -eq 1 ] && says "kohya_a.safetensors:0.6:"'

# ---- mismatches and --force ------------------------------------------------------------------
try -o "$T/bad.safetensors" -b "$F/sd15_tiny.safetensors" "$F/kohya_bad.safetensors"
check "shape mismatch: exit 1" [ $rc -eq 1 ]
check "shape mismatch: names the module" says "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k"
check "shape mismatch: no output" none "$T/bad.safetensors"
try -o "$T/bad.safetensors" -f -b "$F/sd15_tiny.safetensors" "$F/kohya_bad.safetensors"
holds "--force: exit 0 with a warning naming the module" '[ $rc -eq 0 ] && says "warning:.*attn2.to_k"'
check "--force: output written" [ -s "$T/bad.safetensors" ]

try -o "$T/ll.safetensors" -b "$F/sd15_tiny.safetensors" "$F/peft_a"
check "LLaMA adapter on an SD model: exit 1" [ $rc -eq 1 ]
check "LLaMA adapter on an SD model: names a module" says "module 'model.layers.0."
check "LLaMA adapter on an SD model: no output" none "$T/ll.safetensors"
try -o "$T/mix.safetensors" "$F/kohya_a.safetensors" "$F/peft_a"
holds "SD + LLaMA adapters: exit 1, another model" '[ $rc -eq 1 ] && says "another model"'
try -o "$T/sdl" -b "$F/llama_tiny" "$F/kohya_b.safetensors"
holds "SD adapter on a LLaMA folder: exit 1" '[ $rc -eq 1 ] && says "no weight"'
holds "SD adapter on a LLaMA folder: no folder left" '[ ! -e "$T/sdl" ] || [ -z "$(ls "$T/sdl")" ]'
try -o "$T/d.safetensors" -t diffusers "$F/peft_a"
holds "--to diffusers for an LLM: exit 1" '[ $rc -eq 1 ] && says "peft"'


mkdir -p "$T/dora" && cp "$F/peft_b/"* "$T/dora/" &&
	sed 's/"use_dora": false/"use_dora": true/' "$F/peft_b/adapter_config.json" >"$T/dora/adapter_config.json"
try -o "$T/dd" "$T/dora"
holds "DoRA adapter refused, naming it" '[ $rc -eq 1 ] && says "dora.*use_dora"'

try -o "$T/dora.safetensors" "$F/kohya_dora.safetensors:0.5"
holds "dora_scale tensor: exit 1 naming it" '[ $rc -eq 1 ] && says "proj_in.dora_scale'\'': DoRA"'
try -f -o "$T/dora.safetensors" "$F/kohya_dora.safetensors:0.5"
holds "dora_scale tensor with --force: warning, the LoRA part merged" '[ $rc -eq 0 ] &&
	says "warning:.*dora_scale" && grep -q proj_out.lora_up "$T/dora.safetensors"'

# a failure half-way through a folder (shard 2 cannot be renamed into place):
# the shards already written go, what was there stays
mkdir -p "$T/half/model-00002-of-00003.safetensors"
try -o "$T/half" -b "$F/llama_tiny" "$F/peft_a"
holds "failure half-way: exit 1" '[ $rc -eq 1 ] && says "model-00002-of-00003"'
check "failure half-way: no shard, config or temporary left; the old entry kept" \
	[ "$(ls -A "$T/half")" = "model-00002-of-00003.safetensors" ]
try -o "$T/newdir" -t peft "$F/kohya_bad.safetensors" "$F/peft_a"
holds "failed PEFT output: no folder created" '[ $rc -eq 1 ] && [ ! -e "$T/newdir" ]'

# ---- outputs ------------------------------------------------------------------------------------
try -o "$T/r.safetensors" -r 2 "$F/kohya_b.safetensors"
check "resize: exit 0" [ $rc -eq 0 ]
holds "resize: report has a header and one line per module" \
	'[ "$(head -1 "$T/out")" = "$(printf "module\trank_in\trank_out\tenergy_kept\tfrobenius_error")" ] &&
	[ "$(wc -l <"$T/out")" -eq $((1 + $(grep -c attentions "$F/names.tsv") + $(grep -c "^lora_te" "$F/names.tsv"))) ]'
check "resize: energy in [0,1]" awk -F'\t' 'NR > 1 && ($4 < 0 || $4 > 1.000001) { exit 1 }' "$T/out"
check "resize: rank 3 -> 2 everywhere" awk -F'\t' 'NR > 1 && ($2 != 3 || $3 != 2) { exit 1 }' "$T/out"
try -o "$T/c.safetensors" "$F/kohya_a.safetensors"
check "plain copy: identical file" cmp -s "$T/c.safetensors" "$F/kohya_a.safetensors"
try -o "$T/h.safetensors" -d f16 "$F/kohya_a.safetensors:0.5"
holds "--dtype f16 merge: exit 0" '[ $rc -eq 0 ] && grep -q "\"F16\"" "$T/h.safetensors"'
try -o "$T/pf.safetensors" "$F/peft_a"
[ $rc -eq 0 ] && [ -s "$T/pf.safetensors/adapter_model.safetensors" ] && \
	says "warning: .*PEFT output is a folder"
check "PEFT output named .safetensors: a folder, with a warning" [ $? -eq 0 ]
try -o "$T/peft" -t peft "$F/peft_a:0.5" "$F/peft_b"
holds "PEFT merge: folder with config" '[ $rc -eq 0 ] && [ -s "$T/peft/adapter_config.json" ] &&
	grep -q "\"peft_type\": \"LORA\"" "$T/peft/adapter_config.json"'
try -o "$T/ix" -b "$F/llama_tiny/model.safetensors.index.json" "$F/peft_a"
holds "base given as its index.json: a folder like the base's" \
	'[ $rc -eq 0 ] && [ "$(ls "$T/ix" | tr "\n" " ")" = "$(ls "$F/llama_tiny" | tr "\n" " ")" ]'
check "no temporary files left" [ -z "$(ls "$T" "$T/peft" | grep '\.tmp\.')" ]

finish
