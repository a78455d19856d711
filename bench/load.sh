#!/bin/sh
# load.sh: the host's share of loading frozen weights for a GPU run, before
# upload_from (widened to fp32 and rounded back on the host) and after (the
# file's bytes as they are), on a TinyLlama-shaped bf16 model with random
# weights (bench/make_random_llama.py: needs torch) or on MODEL_DIR.
#   sh bench/load.sh [MODEL_DIR]
# Prints each path's seconds for bf16 weights (the file's own dtype) and
# for fp16 weights (what Llama-2's fp16 files into bf16 weights cost);
# results in bench/RESULTS-load.md.
set -e
cd "$(dirname "$0")/.."
make -s all >/dev/null
mkdir -p build/bench
cc -O2 -std=c11 -D_GNU_SOURCE -Ilib -o build/bench/load_host bench/load_host.c \
	build/rel/lib/safetensors.o build/rel/lib/dtype.o build/rel/lib/util.o -ljansson -lm -lpthread
m=${1:-}
if [ -z "$m" ]; then
	m=${TMPDIR:-/tmp}/lora-bench-tinyllama
	[ -f "$m/model.safetensors" ] ||
		python3 bench/make_random_llama.py --shape tinyllama --out "$m" >/dev/null
fi
cat "$m"/*.safetensors >/dev/null       # page cache warm for both paths
echo "$m: $(du -sh "$m" | cut -f1)"
for dt in bf16 fp16; do
	build/bench/load_host "$m/model.safetensors" $dt
done
