/* backend.c: picking the backend for a device string (the one place in lib/
 * that knows whether CUDA is compiled in), and the RoPE tables. */
#include "backend.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"        /* lora_err */

/* ---- device selection ----------------------------------------------------------- */

static const lora_backend *get_cuda(int dev)
{
#ifdef LORA_CUDA
	return lora_backend_cuda(dev);     /* kernels/backend_cuda.cu */
#else
	(void)dev;
	lora_err("device 'cuda': this build has no CUDA support (rebuild with nvcc on PATH)");
	return NULL;
#endif
}

#ifdef LORA_CUDA
void cuda_profile_report(const char *label);      /* kernels/backend_cuda.cu */
#endif

/* The GPU index of "cuda" (0) or "cuda:N"; -1 for another name, -2 for a
 * bad "cuda:" one. */
static int cuda_index(const char *device)
{
	if (!strcmp(device, "cuda"))
		return 0;
	if (strncmp(device, "cuda:", 5))
		return -1;
	char *end;
	long d = strtol(device + 5, &end, 10);
	return end == device + 5 || *end || d < 0 || d > 1023 ? -2 : (int)d;
}

const lora_backend *lora_backend_plan(const char *device)
{
#ifdef LORA_CUDA
	if (device && cuda_index(device) >= 0)
		return lora_backend_cuda_plan();      /* kernels/backend_cuda.cu */
#endif
	(void)device;
	return NULL;
}

void lora_backend_profile(const char *label)
{
#ifdef LORA_CUDA
	cuda_profile_report(label);
#else
	(void)label;
#endif
}

const lora_backend *lora_backend_get(const char *device)
{
	if (!device || !strcmp(device, "auto")) {
		const lora_backend *be = get_cuda(0);
		if (be)
			return be;
		static int told;     /* one notice per run */
		if (!told++)
			fprintf(stderr, "%s: notice: no usable GPU (%s); using the CPU\n",
			        lora_progname, lora_errmsg());
		return lora_backend_cpu();
	}
	if (!strcmp(device, "cpu"))
		return lora_backend_cpu();
	int d = cuda_index(device);
	if (d >= 0)
		return get_cuda(d);
	lora_err("%s device '%s' (expected cpu, cuda, cuda:N or auto)", d == -2 ? "bad" : "unknown",
	         device);
	return NULL;
}

/* ---- RoPE tables --------------------------------------------------------------------
 * As transformers computes them: inv_freq in float32 from base ** (2i/d),
 * the llama3 adjustment (_compute_llama3_parameters), angle = float32
 * position · inv_freq, then cos/sin. Intermediate values are computed in
 * double and rounded to float where torch holds a float32 tensor. */

void lora_rope_table(float *cos_out, float *sin_out, int T, int HS, const lora_rope_params *rp)
{
	int half = HS / 2;
	float *inv = lora_xmalloc(half * sizeof(float));
	for (int i = 0; i < half; i++) {
		float e = (float)(2 * i) / (float)HS;
		inv[i] = (float)(1.0 / pow((double)rp->theta, (double)e));
	}
	if (rp->factor > 0) {
		double old = rp->original_max_pos, lf = rp->low_freq_factor, hf = rp->high_freq_factor;
		double low_wavelen = old / lf, high_wavelen = old / hf;
		for (int i = 0; i < half; i++) {
			float f = inv[i];
			float wavelen = (float)(2 * M_PI / f);
			float scaled = wavelen > low_wavelen ? f / rp->factor : f;
			if (!(wavelen < high_wavelen) && !(wavelen > low_wavelen)) {
				float s = (float)((old / wavelen - lf) / (hf - lf));
				scaled = (1 - s) * scaled / rp->factor + s * scaled;
			}
			inv[i] = scaled;
		}
	}
	for (int t = 0; t < T; t++)
		for (int i = 0; i < half; i++) {
			float a = (float)t * inv[i];
			cos_out[(size_t)t * half + i] = (float)cos((double)a);
			sin_out[(size_t)t * half + i] = (float)sin((double)a);
		}
	free(inv);
}

const lora_backend *lora_backend_with_wdtype(const lora_backend *be, lora_dtype wdt)
{
	static lora_backend copy;
	if (be->wdtype == wdt)
		return be;
	if (be->is_host || (wdt != LORA_DTYPE_F32 && wdt != LORA_DTYPE_F16 &&
	                    wdt != LORA_DTYPE_BF16)) {
		lora_err("the %s backend cannot keep weights in %s", be->name, lora_dtype_name(wdt));
		return NULL;
	}
	copy = *be;
	copy.wdtype = wdt;
	return &copy;
}
