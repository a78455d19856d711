/* fuzz-image: hostile PNG/JPEG bytes through probe, decode (with and without
 * DCT shrinking), orientation, flattening, resampling and both encoders.
 * Nothing may crash, leak or hang; errors are fine. */
#include "bucket.h"
#include "image.h"
#include "resample.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>

static int shrink(void *ctx, int w, int h, int orientation)
{
	(void)ctx; (void)orientation;
	return w > 64 && h > 64 ? 2 : 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	lora_image_info info;
	lora_image_probe(data, size, &info);
	lora_image im;
	lora_image_opts o = { .max_pixels = 1 << 20 };
	if (size && data[0] & 1)
		o.jpeg_shrink = shrink;
	if (lora_image_decode(data, size, &o, &im) < 0)
		return 0;
	static const uint8_t bg[3] = { 10, 20, 30 };
	lora_image_flatten(&im, bg);
	lora_geom g;
	if (lora_geom_crop(im.w, im.h, 24, 0, &g) == 0) {
		uint8_t out[24 * 24 * 3];
		lora_filter f = (lora_filter)(size % LORA_FILTER_COUNT);
		if (lora_resample(im.px, im.w, im.h, 3, g.dw, g.dh, g.x0, g.y0, g.ow, g.oh, f, out) == 0) {
			lora_image small = { 24, 24, 3, out };
			char *buf = NULL;
			size_t len = 0;
			FILE *fp = open_memstream(&buf, &len);
			if (fp) {
				if (size & 2)
					lora_image_write_jpeg(&small, fp, 80);
				else
					lora_image_write_png(&small, fp, 1);
				fclose(fp);
			}
			free(buf);
		}
	}
	lora_image_free(&im);
	return 0;
}
