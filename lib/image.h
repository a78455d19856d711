/* image.h: decode PNG and JPEG into 8-bit RGB(A), orient, composite, encode.
 *
 * Encoding: PNG through our own writer (libpng's per-row filter heuristic,
 * one libdeflate call: 2-3x faster than zlib at a smaller size), JPEG
 * through libjpeg (4:2:0, the given quality).
 *
 * PNG goes through libpng (every colour type and bit depth, palettes, tRNS,
 * 16-bit, Adam7 interlace); JPEG through libjpeg(-turbo) (baseline,
 * progressive, grayscale, CMYK/YCCK with Adobe inversion). The EXIF
 * orientation (JPEG APP1, PNG eXIf) is read and applied, so pixels come out
 * upright. The results match Pillow's decoders: 16-bit samples keep their
 * high byte, low bit depths are scaled (1 -> 0/255, 2 -> x85, 4 -> x17), CMYK
 * converts as Pillow's cmyk2rgb, alpha composites as Image.alpha_composite.
 *
 *     lora_image im;
 *     lora_image_opts o = { .max_pixels = 100000000 };
 *     if (lora_image_decode(buf, len, &o, &im) < 0) die("%s", lora_errmsg());
 *     lora_image_flatten(&im, (uint8_t[3]){255, 255, 255});    // RGBA -> RGB
 *     lora_image_write_png(&im, fp, 6); lora_image_free(&im);
 *
 * Ownership: a decoded lora_image owns px; free it with lora_image_free (NULL
 * and zeroed images are fine). Input buffers are only read.
 * Failure: functions return -1 and set lora_errmsg() to a short reason
 * ("truncated", "not a PNG or JPEG file", "1000000x1000000 is over the pixel
 * limit 100000000"); they never crash on hostile bytes (libpng/libjpeg errors
 * are caught with setjmp/longjmp) and leave *out empty.
 */
#ifndef LORA_IMAGE_H
#define LORA_IMAGE_H
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum {
	LORA_IMAGE_UNKNOWN,
	LORA_IMAGE_PNG,
	LORA_IMAGE_JPEG,
	LORA_IMAGE_COUNT
} lora_image_format;

typedef struct {
	int w, h;         /* pixels */
	int channels;     /* 3 = RGB, 4 = RGBA (straight alpha) */
	uint8_t *px;      /* (h, w, channels), rows packed */
} lora_image;

typedef struct {
	long long max_pixels;  /* refuse images with w*h above this (0 = no limit);
	                          checked from the header, before any pixel decodes */
	/* Optional JPEG DCT-domain shrinking. Called once with the stored size
	 * (w, h, before orientation); returns a power of two 1, 2, 4 or 8 that
	 * the decoder may divide both sides by (rounded up). NULL = 1. */
	int (*jpeg_shrink)(void *ctx, int w, int h, int orientation);
	void *ctx;
} lora_image_opts;

/* What the header says, without decoding pixels. */
typedef struct {
	lora_image_format format;
	int w, h;            /* stored size, before orientation */
	int orientation;     /* EXIF orientation 1..8 (1 if absent or invalid) */
	int has_alpha;       /* alpha channel or tRNS */
} lora_image_info;

/* The format from the first bytes (magic numbers). */
lora_image_format lora_image_sniff(const uint8_t *buf, size_t len);
/* Parse the header only. 0 or -1. */
int lora_image_probe(const uint8_t *buf, size_t len, lora_image_info *info);
/* Decode, convert to RGB or RGBA (RGBA only when the file has alpha or
 * tRNS) and apply the EXIF orientation. 0 or -1; *out is owned by the caller. */
int lora_image_decode(const uint8_t *buf, size_t len, const lora_image_opts *o,
                      lora_image *out);
void lora_image_free(lora_image *im);

/* DCT-domain shrinking for a draft decode (opts.jpeg_shrink): the largest d
 * in {1, 2, 4, 8} such that the w x h image decoded at 1/d (sides rounded up)
 * is still at least twice need_w x need_h, as Pillow's draft() with
 * thumbnail's reducing_gap 2. Faster on big photos; no longer byte-exact
 * with a full-size resize (>= 40 dB in tests/test-resize). */
int lora_jpeg_draft_denom(int w, int h, int need_w, int need_h);

/* EXIF orientation from a TIFF-structured block ("II*\0..." or "MM\0*...");
 * 1 when absent or malformed. JPEG APP1 payloads start with "Exif\0\0":
 * skip those 6 bytes first. */
int lora_exif_orientation(const uint8_t *tiff, size_t len);
/* Apply EXIF orientation o (1..8) in place (Pillow's ImageOps.exif_transpose):
 * 2 mirror, 3 rotate 180, 4 flip, 5 transpose, 6 rotate 90 clockwise,
 * 7 transverse, 8 rotate 90 counter-clockwise. */
void lora_image_orient(lora_image *im, int o);
/* RGBA -> RGB over background bg (Pillow's alpha_composite rounding);
 * a no-op on RGB. */
void lora_image_flatten(lora_image *im, const uint8_t bg[3]);

/* Encoders, RGB only (channels 3); level is libdeflate's 1-12 (6 is about
 * zlib's 6 in speed, a little smaller). 0 or -1 ("write error: <strerror>"). */
int lora_image_write_png(const lora_image *im, FILE *fp, int level);
int lora_image_write_jpeg(const lora_image *im, FILE *fp, int quality);

#endif
