/* link_cuda.h: a benchmark runs the CUDA backend linked in (the kernels in
 * liblora.a), not the lora-cuda.so a tool loads. lib/backend.c refers to
 * lora_backend_cuda weakly, and a weak reference does not pull
 * kernels/backend_cuda.o out of the archive: this reference does, so that
 * device "cuda" finds the kernels without a lora-cuda.so. */
#ifndef LORA_BENCH_LINK_CUDA_H
#define LORA_BENCH_LINK_CUDA_H
#ifdef LORA_CUDA
#include "backend.h"
const lora_backend *(*volatile lora_bench_keep_cuda)(int) = lora_backend_cuda;
#endif
#endif
