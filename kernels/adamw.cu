/* adamw.cu: torch.optim.AdamW's single-tensor step in one elementwise kernel
 * (the same float expressions as the CPU reference, step size and bias
 * corrections computed on the host), the Σx² for gradient-norm clipping
 * (per-thread double sums, one atomic add per block, then a copy back: it
 * synchronises), the Σx² of many segments at once, and x *= s.
 * The optimizer (lib/optim.c) calls adamw_update once per run of trainable
 * tensors that are contiguous in memory: in LoRA mode every A and B is one
 * buffer (lib/lora.c), so a step is one AdamW launch over all of them.
 *
 * sumsq_segments is deterministic (no atomics): pass 1 gives every block a
 * fixed chunk of SEG_CHUNK values of one segment and writes its double sum
 * to partials[block]; pass 2 gives every segment a warp that adds its
 * chunks' partials in a fixed tree. The table that maps blocks to segments
 * (offsets and the first chunk of each segment) stays on the device and is
 * uploaded again only when the offsets change: in training they are the
 * same every step, so a call is two launches and one copy back.
 */
#include "common.cuh"

#include <string.h>     /* memcmp */

/* ---- kernels ---------------------------------------------------------------------- */

__global__ void adamw_kernel(float *p, const float *g, float *m, float *v, size_t n,
                             float beta1, float beta2, float eps, float step_size,
                             float bc2_sqrt, float decay)
{
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
	     i += (size_t)gridDim.x * blockDim.x) {
		float gi = g[i], pi = p[i] * decay;
		float mi = m[i] + (1.0f - beta1) * (gi - m[i]);
		float vi = v[i] * beta2 + (1.0f - beta2) * gi * gi;
		float denom = sqrtf(vi) / bc2_sqrt + eps;
		p[i] = pi - step_size * (mi / denom);
		m[i] = mi;
		v[i] = vi;
	}
}

__global__ void sumsq_kernel(double *out, const float *x, size_t n)
{
	__shared__ double sh[32];
	double s = 0;
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
	     i += (size_t)gridDim.x * blockDim.x)
		s += (double)x[i] * x[i];
	for (int o = 16; o > 0; o >>= 1)
		s += __shfl_xor_sync(0xffffffffu, s, o);
	int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
	if (lane == 0)
		sh[warp] = s;
	__syncthreads();
	if (warp == 0) {
		s = lane < (int)(blockDim.x >> 5) ? sh[lane] : 0.0;
		for (int o = 16; o > 0; o >>= 1)
			s += __shfl_xor_sync(0xffffffffu, s, o);
		if (lane == 0)
			atomicAdd(out, s);
	}
}

/* Block sum of a double in a fixed order (the same tree every run), valid
 * in thread 0. blockDim.x is a multiple of 32, at most 1024. */
static __device__ double block_sum_fixed(double s)
{
	__shared__ double sh[32];
	for (int o = 16; o > 0; o >>= 1)
		s += __shfl_xor_sync(0xffffffffu, s, o);
	int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
	__syncthreads();         /* sh may still be read by a previous call */
	if (lane == 0)
		sh[warp] = s;
	__syncthreads();
	s = 0;
	if (warp == 0) {
		s = lane < (int)(blockDim.x >> 5) ? sh[lane] : 0.0;
		for (int o = 16; o > 0; o >>= 1)
			s += __shfl_xor_sync(0xffffffffu, s, o);
	}
	return s;
}

#define SEG_CHUNK 8192      /* values per pass-1 block */
#define SEG_THREADS 256

/* pass 1: block b is chunk b - cstart[k] of segment k, the k with
 * cstart[k] <= b < cstart[k+1] (empty segments own no chunk). off and
 * cstart are (nseg + 1); off relative to x. */
__global__ void sumsq_chunks_kernel(double *partials, const float *x, const size_t *off,
                                    const size_t *cstart, int nseg)
{
	size_t b = blockIdx.x;
	int lo = 0, hi = nseg - 1;          /* the last k with cstart[k] <= b */
	while (lo < hi) {
		int mid = (lo + hi + 1) / 2;
		if (cstart[mid] <= b)
			lo = mid;
		else
			hi = mid - 1;
	}
	size_t start = off[lo] + (b - cstart[lo]) * SEG_CHUNK;
	size_t end = start + SEG_CHUNK < off[lo + 1] ? start + SEG_CHUNK : off[lo + 1];
	double s = 0;
	for (size_t i = start + threadIdx.x; i < end; i += blockDim.x)
		s += (double)x[i] * x[i];
	s = block_sum_fixed(s);
	if (threadIdx.x == 0)
		partials[b] = s;
}

/* pass 2: the warp of block k adds the partials of segment k's chunks
 * (a few per LoRA tensor; 16K for a 7B embedding in full fine-tuning). */
__global__ void sumsq_segsum_kernel(double *out, const double *partials, const size_t *cstart)
{
	int k = blockIdx.x;
	double s = 0;
	for (size_t i = cstart[k] + threadIdx.x; i < cstart[k + 1]; i += 32)
		s += partials[i];
	for (int o = 16; o > 0; o >>= 1)
		s += __shfl_xor_sync(0xffffffffu, s, o);
	if (threadIdx.x == 0)
		out[k] = s;
}

__global__ void scale_kernel(float *x, float s, size_t n)
{
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
	     i += (size_t)gridDim.x * blockDim.x)
		x[i] *= s;
}

/* ---- launchers ------------------------------------------------------------------------- */

void cuda_adamw_update(float *p, const float *g, float *m, float *v, size_t n, float lr,
                       float beta1, float beta2, float eps, float wd, double bc1, double bc2)
{
	if (!n)
		return;
	float step_size = (float)(lr / bc1);
	float bc2_sqrt = (float)sqrt(bc2);
	float decay = 1.0f - lr * wd;
	adamw_kernel<<<cuda_blocks(n, 256), 256, 0, cuda_stream()>>>(
		p, g, m, v, n, beta1, beta2, eps, step_size, bc2_sqrt, decay);
	CUDA_LAUNCH_CHECK();
}

double cuda_sumsq(const float *x, size_t n)
{
	double *d = (double *)cuda_workspace(sizeof(double)), s = 0;
	CUDA_CHECK(cudaMemsetAsync(d, 0, sizeof(double), cuda_stream()));
	if (n) {
		unsigned blocks = cuda_blocks(n, 256);
		if (blocks > 1024)
			blocks = 1024;
		sumsq_kernel<<<blocks, 256, 0, cuda_stream()>>>(d, x, n);
		CUDA_LAUNCH_CHECK();
	}
	CUDA_CHECK(cudaMemcpyAsync(&s, d, sizeof(double), cudaMemcpyDeviceToHost, cuda_stream()));
	CUDA_CHECK(cudaStreamSynchronize(cuda_stream()));
	return s;
}

/* The device side of sumsq_segments: [off (nseg+1) | cstart (nseg+1)] as
 * size_t, then partials (nchunks) and out (nseg) as double, in one buffer
 * that only grows; `tab` is the host copy of what the device table holds. */
static struct {
	void *buf;
	size_t bytes;
	size_t *tab;             /* host copy, 2 * (nseg + 1) */
	int nseg;                /* of the table on the device; -1: none */
	size_t *want;            /* host scratch for the table of this call */
	int want_cap;
} seg = { NULL, 0, NULL, -1, NULL, 0 };

void cuda_sumsq_segments(const float *x, const size_t *offsets, int nseg, double *out)
{
	if (nseg <= 0)
		return;
	size_t ntab = 2 * ((size_t)nseg + 1);
	if ((int)ntab > seg.want_cap) {
		seg.want = (size_t *)lora_xrealloc(seg.want, ntab * sizeof(size_t));
		seg.want_cap = (int)ntab;
	}
	size_t *roff = seg.want, *cstart = seg.want + nseg + 1;
	cstart[0] = 0;
	for (int k = 0; k <= nseg; k++) {
		LORA_ASSERT(offsets[k] >= offsets[0] && (k == 0 || offsets[k] >= offsets[k - 1]));
		roff[k] = offsets[k] - offsets[0];
		if (k > 0)
			cstart[k] = cstart[k - 1] + (roff[k] - roff[k - 1] + SEG_CHUNK - 1) / SEG_CHUNK;
	}
	size_t nchunks = cstart[nseg];
	LORA_ASSERT(nchunks < 0x7fffffffu);
	size_t tab_bytes = ntab * sizeof(size_t);
	size_t need = tab_bytes + (nchunks + (size_t)nseg) * sizeof(double);
	int fresh = 0;
	if (need > seg.bytes) {
		cuda_buffer_free(seg.buf);          /* synchronises */
		seg.bytes = need + need / 8;
		seg.buf = cuda_buffer_alloc(seg.bytes);
		fresh = 1;
	}
	if (fresh || seg.nseg != nseg || memcmp(seg.tab, seg.want, tab_bytes)) {
		seg.tab = (size_t *)lora_xrealloc(seg.tab, tab_bytes);
		memcpy(seg.tab, seg.want, tab_bytes);
		seg.nseg = nseg;
		/* from the host copy, which lives until the next upload */
		CUDA_CHECK(cudaMemcpyAsync(seg.buf, seg.tab, tab_bytes, cudaMemcpyHostToDevice,
		                           cuda_stream()));
	}
	const size_t *d_off = (const size_t *)seg.buf, *d_cstart = d_off + nseg + 1;
	double *d_part = (double *)((char *)seg.buf + tab_bytes), *d_out = d_part + nchunks;
	if (nchunks) {
		sumsq_chunks_kernel<<<(unsigned)nchunks, SEG_THREADS, 0, cuda_stream()>>>(
			d_part, x, d_off, d_cstart, nseg);
		CUDA_LAUNCH_CHECK();
	}
	sumsq_segsum_kernel<<<(unsigned)nseg, 32, 0, cuda_stream()>>>(d_out, d_part, d_cstart);
	CUDA_LAUNCH_CHECK();
	CUDA_CHECK(cudaMemcpyAsync(out, d_out, (size_t)nseg * sizeof(double),
	                           cudaMemcpyDeviceToHost, cuda_stream()));
	CUDA_CHECK(cudaStreamSynchronize(cuda_stream()));
}

void cuda_scale(float *x, float s, size_t n)
{
	if (!n)
		return;
	scale_kernel<<<cuda_blocks(n, 256), 256, 0, cuda_stream()>>>(x, s, n);
	CUDA_LAUNCH_CHECK();
}
