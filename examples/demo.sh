#!/bin/sh
# The README's tour (make demo): train a small LLaMA from scratch on
# 19th-century State of the Union addresses (train_mode: full, random init),
# then a LoRA on modern addresses, and compare the held-out loss on modern
# text of the base alone and of base + LoRA. A few minutes on a 2-core CPU.
# Everything goes to demo/ (git-ignored). Data: ../shared/data/text/sotu
# (public domain), or $SOTU.
set -e
cd "$(dirname "$0")/.."
BIN=${BIN:-bin}
SOTU=${SOTU:-../shared/data/text/sotu}
[ -d "$SOTU" ] || { echo "demo: no State of the Union texts in $SOTU (set SOTU=...)" >&2; exit 1; }
rm -rf demo
mkdir -p demo/data/19th-century demo/data/21st-century
cp "$SOTU"/18[5-9]*.txt demo/data/19th-century/
cp "$SOTU"/20*.txt demo/data/21st-century/
echo "demo: $(ls demo/data/19th-century | wc -l) addresses 1850-1899, $(ls demo/data/21st-century | wc -l) from 2001-2021"

echo
echo "== 1. a base model from scratch: lora-train examples/demo/base.yaml"
"$BIN"/lora-train examples/demo/base.yaml

echo
echo "== 2. a LoRA on modern addresses: lora-train examples/demo/lora.yaml"
"$BIN"/lora-train examples/demo/lora.yaml

# loss.csv: step,epoch,loss,lr,grad_norm,eval_loss,...; the first eval row is
# step 0 (the base alone), the last one the finished adapter.
csv=demo/lora-modern/logs/loss.csv
base=$(awk -F, 'NR > 1 && $6 != "" { print $6; exit }' "$csv")
lora=$(awk -F, 'NR > 1 && $6 != "" { v = $6 } END { print v }' "$csv")
echo
echo "== held-out loss on modern addresses (5% of 2001-2021, never trained on)"
printf '   base model alone:  %.4f  (perplexity %.1f)\n' "$base" "$(awk "BEGIN { print exp($base) }")"
printf '   base + LoRA:       %.4f  (perplexity %.1f)\n' "$lora" "$(awk "BEGIN { print exp($lora) }")"
echo "   adapter: demo/lora-modern/adapter_model.safetensors ($(wc -c <demo/lora-modern/adapter_model.safetensors) bytes)"

echo
echo "== 3. a look inside with lora-inspect"
a=demo/lora-modern/adapter_model.safetensors
echo "\$ lora-inspect $a    (the summary lines)"
"$BIN"/lora-inspect "$a" | grep '^#' | grep -v '^# module'
echo
echo "\$ lora-inspect --stats --filter '*layers.0.self_attn.*' $a"
echo "   (name, dtype, shape, params, min, max, mean, std, L2 norm, NaN count, Inf count)"
"$BIN"/lora-inspect --stats --filter '*layers.0.self_attn.*' "$a" | grep -v '^#'
echo
echo "\$ lora-inspect --diff (checkpoint at step 40 vs the final adapter) | head -5"
"$BIN"/lora-inspect --diff demo/lora-modern/checkpoints/step-000040/adapter_model.safetensors "$a" | head -5
echo
echo "demo: done. Try: man -l man/lora-train.1, $BIN/lora-inspect --json $a | jq ."
