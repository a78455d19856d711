#!/bin/sh
# lora-train vs PyTorch + PEFT, tokens/s and peak RSS on the CPU, same run.
# Needs python3 with torch, transformers, peft; builds bin/lora-train first.
# Usage: sh bench/train.sh [THREADS] [STEPS]
cd "$(dirname "$0")/.." || exit 1
make -s bin/lora-train || exit 1
exec python3 bench/train.py "$@"
