/* probe.h: one warp of the tensor-core instructions kernels/attention_mma.cu
 * builds on (kernels/mma.cuh), run on given registers, for
 * tests/test-cuda-mma.c to compare with the layouts CUTLASS documents
 * (tests/gen/gen_mma.py). Not an op: no use outside that test.
 *
 * Device pointers (the backend's alloc); launched on the backend's stream.
 *   x     (16, 16) bf16 bits: a tile, staged in shared memory at stride 24
 *   c01   (32, 8) lane l's C fragments of two 16 x 8 tiles (pack_a's input)
 *   a, b, c  (32, 4), (32, 2), (32, 4): lane l's registers of one mma
 *   out   (5, 32, 4) words: frag_a(x), frag_bt(x), frag_b(x), pack_a(c01)
 *         and the mma's D (fp32 bits) of each lane */
#ifndef LORA_PROBE_H
#define LORA_PROBE_H
#include <stdint.h>

void cuda_mma_probe(const uint16_t *x, const float *c01, const uint32_t *a, const uint32_t *b,
                    const float *c, uint32_t *out);

#endif
