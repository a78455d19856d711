/* load_host.c: the host's share of loading a model's frozen weights for a
 * GPU run, before and after upload_from (2026-11-24), for bench/load.sh.
 * For every tensor of a safetensors file, into a buffer standing in for
 * the device's (malloc'd per tensor, as the device buffers are):
 *
 *   widen   the old path: widen to a fresh fp32 copy, round back to the
 *           weights' dtype in 4 Mi-element chunks, copy each chunk;
 *   as-is   the new path: copy the file's bytes (the GPU converts when the
 *           dtypes differ, which the host does not see).
 *
 * Prints one line per path: "path=widen dtype=BF16 s=3.61". The bus and
 * the GPU are not counted: what is compared is the work the host does.
 * Usage: load_host FILE.safetensors [bf16|fp16]   (the weights' dtype)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dtype.h"         /* lora_convert */
#include "safetensors.h"   /* st_open */
#include "util.h"          /* lora_time, lora_xmalloc, lora_die */

int main(int argc, char **argv)
{
	if (argc < 2 || argc > 3) {
		fprintf(stderr, "usage: load_host FILE.safetensors [bf16|fp16]\n");
		return 2;
	}
	lora_dtype wdt = argc == 3 && !strcmp(argv[2], "fp16") ? LORA_DTYPE_F16 : LORA_DTYPE_BF16;
	st_file *f = st_open(argv[1]);
	if (!f)
		lora_die("%s", lora_errmsg());
	static const char *const names[2] = { "widen", "as-is" };
	for (int path = 0; path < 2; path++) {
		double t0 = lora_time();
		unsigned sum = 0;
		for (int i = 0; i < f->ntensors; i++) {
			const st_tensor *t = &f->tensors[i];
			size_t n = (size_t)t->numel, ws = (size_t)lora_dtype_bits(wdt) / 8;
			/* as-is: the file's bytes, in its dtype, are what crosses */
			unsigned char *dev = lora_xmalloc(path == 0 ? n * ws : t->nbytes);
			if (path == 0) {
				const size_t chunk = (size_t)1 << 22;
				float *h = lora_xmalloc(n * sizeof(float));
				unsigned char *tmp = lora_xmalloc((n < chunk ? n : chunk) * ws);
				if (lora_convert(h, LORA_DTYPE_F32, t->data, t->dtype, n) < 0)
					lora_die("%s", lora_errmsg());
				for (size_t j = 0; j < n; j += chunk) {
					size_t m = n - j < chunk ? n - j : chunk;
					lora_convert(tmp, wdt, h + j, LORA_DTYPE_F32, m);
					memcpy(dev + j * ws, tmp, m * ws);
				}
				free(tmp);
				free(h);
			} else {
				memcpy(dev, t->data, t->nbytes);
			}
			sum += dev[0];      /* keep the copies */
			free(dev);
		}
		printf("path=%s dtype=%s s=%.2f (%u)\n", names[path], lora_dtype_name(wdt),
		       lora_time() - t0, sum & 1);
	}
	st_close(f);
	return 0;
}
