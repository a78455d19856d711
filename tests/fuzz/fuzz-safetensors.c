/* fuzz-safetensors: st_open_buffer on arbitrary bytes, then everything a
 * reader does with a file it accepted: look up every tensor and metadata key,
 * convert small tensors to f32, and group LoRA modules (lib/loraformat.c).
 * Seeds: tests/fuzz/corpus/safetensors (fixtures, good and bad). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "loraformat.h"     /* lora_format_open */
#include "safetensors.h"    /* st_open_buffer, st_find, st_tensor_to_f32 */
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	st_file *f = st_open_buffer(data, size, "fuzz");
	if (!f)
		return 0;
	for (int i = 0; i < f->ntensors; i++) {
		const st_tensor *t = &f->tensors[i];
		LORA_ASSERT(st_find(f, t->name) == t);
		LORA_ASSERT((const uint8_t *)t->data >= data &&
		            (const uint8_t *)t->data + t->nbytes <= data + size);
		if (t->numel <= 4096) {
			float *v = lora_xmalloc((size_t)t->numel * 4 + 4);
			st_tensor_to_f32(t, v);
			free(v);
		}
	}
	for (int i = 0; i < f->nmeta; i++)
		LORA_ASSERT(st_meta(f, f->meta_keys[i]) != NULL);
	lora_format *lf = lora_format_open(f, "");
	if (lf)
		lora_format_check(lf);
	lora_format_free(lf);
	st_close(f);
	return 0;
}
