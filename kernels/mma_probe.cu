/* mma_probe.cu: see probe.h. */
#include "common.cuh"
#include "mma.cuh"

extern "C" {
#include "probe.h"
}

#define LDX 24                   /* the tile's row stride, padded as attention's */

__global__ void mma_probe_kernel(const uint16_t *x, const float *c01, const uint32_t *a,
                                 const uint32_t *b, const float *c, uint32_t *out)
{
	extern __shared__ __align__(128) unsigned char smem[];
	__nv_bfloat16 *t = (__nv_bfloat16 *)smem;
	int lane = threadIdx.x;
	for (int i = lane; i < 256; i += 32)
		t[i / 16 * LDX + i % 16] = __ushort_as_bfloat16(x[i]);
	__syncwarp();
	uint32_t *o = out + lane * 4;         /* this lane's 4 words of each result */
	frag_a(o, t, LDX, lane);
	frag_bt(o + 128, t, LDX, lane);
	frag_b(o + 256, t, LDX, lane);
	pack_a(o + 384, c01 + lane * 8, c01 + lane * 8 + 4);
	float d[4];
	for (int j = 0; j < 4; j++)
		d[j] = c[lane * 4 + j];
	mma_bf16(d, a + lane * 4, b + lane * 2);
	for (int j = 0; j < 4; j++)
		o[512 + j] = __float_as_uint(d[j]);
}

void cuda_mma_probe(const uint16_t *x, const float *c01, const uint32_t *a, const uint32_t *b,
                    const float *c, uint32_t *out)
{
	mma_probe_kernel<<<1, 32, 16 * LDX * 2, cuda_stream()>>>(x, c01, a, b, c, out);
	CUDA_LAUNCH_CHECK();
}
