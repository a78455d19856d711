/* backend.c: picking the backend for a device string (the one place in lib/
 * that knows whether CUDA is compiled in), and the RoPE tables. */
#include "backend.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"        /* lora_err */

/* ---- device selection -----------------------------------------------------------
 * In a CUDA build the tools do not link the CUDA backend: they load it, the
 * first time a run asks for a GPU, from lora-cuda.so (kernels/, with cuBLAS
 * and the CUDA runtime). So a CPU run never maps cuBLAS (about 150 MiB), and
 * a binary built with CUDA still starts, and falls back to the CPU, on a
 * machine without the CUDA libraries. The CUDA tests and the benchmarks link
 * the kernels in: then the weak references below are the kernels' own
 * functions and nothing is loaded. */

#ifdef LORA_CUDA
#include <dlfcn.h>
#include <limits.h>
#include <unistd.h>

#pragma weak lora_backend_cuda
#pragma weak lora_backend_cuda_plan
#pragma weak cuda_profile_report
void cuda_profile_report(const char *label);      /* kernels/backend_cuda.cu */

static struct cuda_entry {
	const lora_backend *(*get)(int dev);
	const lora_backend *(*plan)(void);
	void (*report)(const char *label);
} cuda;
static int cuda_state;          /* 0 not tried, 1 ready, -1 failed (cuda_why says why) */
static char cuda_why[2 * PATH_MAX + 128];

/* dlopen path into cuda (1), or 0 with cuda_why set. A library refused
 * stays loaded: closing it would run its destructors (the CUDA runtime's
 * among them) in the middle of the run, for nothing. */
static int cuda_open(const char *path)
{
	void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		const char *e = dlerror();
		snprintf(cuda_why, sizeof cuda_why, "cannot load the CUDA backend: %s",
		         e ? e : path);
		return 0;
	}
	const unsigned *abi = dlsym(h, "lora_cuda_abi");
	if (abi && *abi != LORA_BACKEND_ABI) {
		snprintf(cuda_why, sizeof cuda_why, "'%s' is from another build of lora-* (its op "
		         "table %u, this program's %u): build both with make (or make install again)",
		         path, *abi, LORA_BACKEND_ABI);
		return 0;
	}
	*(void **)&cuda.get = dlsym(h, "lora_backend_cuda");
	*(void **)&cuda.plan = dlsym(h, "lora_backend_cuda_plan");
	*(void **)&cuda.report = dlsym(h, "cuda_profile_report");
	if (!abi || !cuda.get || !cuda.plan || !cuda.report) {
		snprintf(cuda_why, sizeof cuda_why, "'%s' is not this build's CUDA backend "
		         "(lora_cuda_abi or lora_backend_cuda missing)", path);
		return 0;
	}
	return 1;
}

/* The CUDA backend's entry points: linked in, or loaded from
 * $LORA_CUDA_LIB, else lora-cuda.so beside the program, else
 * ../lib/lora/lora-cuda.so from it (make install). NULL + lora_err. */
static const struct cuda_entry *cuda_entry(void)
{
	if (!cuda_state && lora_backend_cuda) {
		cuda.get = lora_backend_cuda;
		cuda.plan = lora_backend_cuda_plan;
		cuda.report = cuda_profile_report;
		cuda_state = 1;
	}
	if (!cuda_state) {
		const char *env = getenv("LORA_CUDA_LIB");
		char exe[PATH_MAX], path[PATH_MAX + 32];
		ssize_t n;
		if (env && *env)
			cuda_state = cuda_open(env) ? 1 : -1;
		else if ((n = readlink("/proc/self/exe", exe, sizeof exe - 1)) <= 0) {
			snprintf(cuda_why, sizeof cuda_why, "cannot find the CUDA backend "
			         "lora-cuda.so: /proc/self/exe unreadable (set LORA_CUDA_LIB)");
			cuda_state = -1;
		} else {
			exe[n] = 0;
			char *slash = strrchr(exe, '/');
			*slash = 0;             /* the program's folder (exe is absolute) */
			snprintf(path, sizeof path, "%s/lora-cuda.so", exe);
			if (access(path, F_OK))
				snprintf(path, sizeof path, "%s/../lib/lora/lora-cuda.so", exe);
			if (access(path, F_OK)) {
				snprintf(cuda_why, sizeof cuda_why, "this build's CUDA backend lora-cuda.so is "
				         "in neither '%s' nor '%s/../lib/lora' (set LORA_CUDA_LIB)", exe, exe);
				cuda_state = -1;
			} else
				cuda_state = cuda_open(path) ? 1 : -1;
		}
	}
	if (cuda_state < 0) {
		lora_err("%s", cuda_why);
		return NULL;
	}
	return &cuda;
}

/* Whether an NVIDIA driver is here (its libcuda.so.1 loads): without one
 * there is no GPU, and loading the backend (and with it cuBLAS) would cost
 * a CPU run 150 MiB for nothing. The emulator needs no driver. */
static int have_driver(void)
{
#ifndef LORA_CUDA_SIM
	static int known;
	static char why[512];        /* "" once the driver has loaded */
	if (!known++ && !dlopen("libcuda.so.1", RTLD_LAZY | RTLD_LOCAL)) {
		const char *e = dlerror();
		if (!e || strstr(e, "cannot open shared object file"))
			snprintf(why, sizeof why, "no CUDA GPU found (no NVIDIA driver: "
			         "libcuda.so.1 not found)");
		else
			snprintf(why, sizeof why, "no CUDA GPU found (the NVIDIA driver's %s)", e);
	}
	if (*why) {
		lora_err("%s", why);
		return 0;
	}
#endif
	return 1;
}
#endif

static const lora_backend *get_cuda(int dev)
{
#ifdef LORA_CUDA
	const struct cuda_entry *c = lora_backend_cuda || have_driver() ? cuda_entry() : NULL;
	return c ? c->get(dev) : NULL;
#else
	(void)dev;
	lora_err("device 'cuda': this build has no CUDA support (rebuild with nvcc on PATH)");
	return NULL;
#endif
}

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
	const struct cuda_entry *c;
	if (device && cuda_index(device) >= 0 && (c = cuda_entry()))
		return c->plan();      /* kernels/backend_cuda.cu */
#endif
	(void)device;
	return NULL;
}

void lora_backend_profile(const char *label)
{
#ifdef LORA_CUDA
	if (cuda_state > 0)        /* no backend loaded: nothing was timed */
		cuda.report(label);
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
