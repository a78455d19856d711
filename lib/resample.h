/* resample.h: separable antialiased image resampling, bit-exact with Pillow.
 *
 * Filters: Lanczos-3, bicubic (Keys, a = -0.5) and box, each stretched by the
 * scale factor when shrinking so it averages every input pixel (antialiasing).
 * Coefficients, support, pixel centres ((x + 0.5) * in/out), border handling
 * (taps outside the image are dropped and the rest renormalized), the 22-bit
 * fixed-point arithmetic and the pass order (horizontal, then vertical, each
 * rounded to 8 bits; vertical first when the height shrinks by more than
 * twice as many pixels as the width, as Pillow >= 13.0) follow Pillow's
 * libImaging/Resample.c, so
 *     lora_resample(.., dw, dh, x0, y0, ow, oh, ..)
 * equals Pillow's  im.resize((dw, dh), f).crop((x0, y0, x0 + ow, y0 + oh))
 * byte for byte, while only computing the pixels that survive the crop.
 *
 *     uint8_t *out = lora_xmalloc(512 * 512 * 3);
 *     lora_resample(rgb, 4000, 3000, 3, 683, 512, 85, 0, 512, 512,
 *                   LORA_FILTER_LANCZOS, out);      // short side 512, centre crop
 *
 * Ownership: the caller owns src and dst; scratch memory is internal.
 * Failure: invalid geometry returns -1 with lora_errmsg() set.
 */
#ifndef LORA_RESAMPLE_H
#define LORA_RESAMPLE_H
#include <stdint.h>

typedef enum {
	LORA_FILTER_LANCZOS,
	LORA_FILTER_BICUBIC,
	LORA_FILTER_BOX,
	LORA_FILTER_COUNT
} lora_filter;

/* "lanczos", "bicubic", "box" -> the filter; -1 if unknown. */
int lora_filter_parse(const char *name);
const char *lora_filter_name(lora_filter f);

/* Resize src (sh rows of sw pixels of ch bytes, 1 <= ch <= 4) to a virtual
 * dw x dh image and write its window [x0, x0+ow) x [y0, y0+oh) to dst
 * (oh rows of ow*ch bytes). The window must lie inside dw x dh. 0 or -1. */
int lora_resample(const uint8_t *src, int sw, int sh, int ch,
                  int dw, int dh, int x0, int y0, int ow, int oh,
                  lora_filter f, uint8_t *dst);

#endif
