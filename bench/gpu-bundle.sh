#!/bin/sh
# gpu-bundle.sh: build, on this (GPU-less) machine, everything a GPU session
# runs, and pack it into build/gpu-bundle/bundle.tar.xz for the device tool
# (a GPU box has CUDA and PyTorch but no -dev packages and no network).
#
# Packs: test-cuda-mma, test-cuda-ops, test-cuda-llama, train_gpu, ops_gpu,
# and lora-train with the lora-cuda.so it loads. Each is linked statically
# against the Makefile's libraries (jansson, yaml, png, jpeg, pcre2,
# utf8proc, lapacke, openblas, zlib, ...) and the CUDA runtime; dynamically
# against glibc, libstdc++, cuBLAS/cuBLASLt (the GPU box's CUDA 13) and
# libgfortran, which is packed beside them.
# Usage: sh bench/gpu-bundle.sh     then see docs/CUDA.md
set -eu
make -j2 all cuda-tests
D=build/gpu
rm -rf "$D" && mkdir -p "$D/bin" "$D/lib" build/gpu-bundle
CFLAGS="-O2 -g -std=c11 -D_GNU_SOURCE -Wall -Wextra -pthread -Ilib -Itests -I/usr/include/x86_64-linux-gnu/openblas-pthread -DLORA_CUDA=1 -I/usr/local/cuda/include"
# the Makefile's libraries (CPU part), static except glibc's
cpu_libs=$(make -s --no-print-directory --eval='print-libs: ; @echo $(LDLIBS)' print-libs CUDA=0 |
	tr ' ' '\n' | grep -v -x -e -lm -e -lpthread -e -ldl -e -lrt | tr '\n' ' ')
HOST_LIBS="-Wl,-Bstatic $cpu_libs -Wl,-Bdynamic -lgfortran"
# cuBLAS dynamically (the GPU box's), the CUDA runtime statically
CUDA_LIBS="-L/usr/local/cuda/lib64 -lcublasLt -lcublas -lcudart_static -lstdc++ -ldl -lrt -lm -lpthread"
link() { cc $CFLAGS -o "$D/bin/$1" "$2" build/rel/liblora.a $HOST_LIBS $CUDA_LIBS; }
link test-cuda-mma tests/test-cuda-mma.c
link test-cuda-ops tests/test-cuda-ops.c
link test-cuda-llama tests/test-cuda-llama.c
link train_gpu bench/train_gpu.c
link ops_gpu bench/ops_gpu.c
# lora-train as the Makefile builds it: no CUDA in the program, which loads
# lora-cuda.so from beside itself (the kernels, cuBLAS, the CUDA runtime)
cc $CFLAGS -o "$D/bin/lora-train" cmd/lora-train.c build/rel/liblora.a \
	'-Wl,--export-dynamic-symbol=lora_*' $HOST_LIBS -ldl -lm -lpthread
cc -shared -o "$D/bin/lora-cuda.so" build/rel/kernels/*.o $CUDA_LIBS
for l in libgfortran.so.5 libquadmath.so.0; do
	p=$(ldconfig -p | awk -v l="$l" '$1 == l && /x86-64/ { print $NF; exit }')
	[ -n "$p" ] && cp -L "$p" "$D/lib/"
done
strip "$D"/bin/*
tar -cJf build/gpu-bundle/bundle.tar.xz -C "$D" bin lib
ls -la "$D/bin" "$D/lib" build/gpu-bundle/bundle.tar.xz
