/* resample.c: see resample.h. The filter definitions, coefficient layout and
 * rounding mirror Pillow's libImaging/Resample.c so results match exactly. */
#include "resample.h"
#include "util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- filters ------------------------------------------------------------------ */

static double box_filter(double x)
{
	return x > -0.5 && x <= 0.5 ? 1.0 : 0.0;
}

static double bicubic_filter(double x)
{
	const double a = -0.5;
	if (x < 0.0)
		x = -x;
	if (x < 1.0)
		return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
	if (x < 2.0)
		return (((x - 5) * x + 8) * x - 4) * a;
	return 0.0;
}

static double sinc(double x)
{
	if (x == 0.0)
		return 1.0;
	x = x * M_PI;
	return sin(x) / x;
}

static double lanczos_filter(double x)
{
	return -3.0 <= x && x < 3.0 ? sinc(x) * sinc(x / 3) : 0.0;
}

static const struct {
	const char *name;
	double (*fn)(double);
	double support;
} filters[LORA_FILTER_COUNT] = {
	[LORA_FILTER_LANCZOS] = { "lanczos", lanczos_filter, 3.0 },
	[LORA_FILTER_BICUBIC] = { "bicubic", bicubic_filter, 2.0 },
	[LORA_FILTER_BOX] = { "box", box_filter, 0.5 },
};

int lora_filter_parse(const char *name)
{
	for (int i = 0; i < LORA_FILTER_COUNT; i++)
		if (strcmp(name, filters[i].name) == 0)
			return i;
	return -1;
}

const char *lora_filter_name(lora_filter f)
{
	return f < LORA_FILTER_COUNT ? filters[f].name : "?";
}

/* ---- coefficients ------------------------------------------------------------- */

/* 8 bits of result, 2 bits of headroom for negative lobes and overshoot. */
#define PRECISION_BITS (32 - 8 - 2)

typedef struct {
	int ksize;      /* taps per output pixel (max) */
	int *bounds;    /* (n, 2): first input index, tap count */
	int32_t *k;     /* (n, ksize): fixed-point weights */
} coeffs;

/* Pillow's precompute_coeffs + normalize_coeffs_8bpc for output pixels
 * [o0, o0+n) of a resize from in_size to out_size. */
static void coeffs_make(coeffs *c, int in_size, int out_size, int o0, int n, lora_filter f)
{
	double scale = (double)(float)in_size / out_size;
	double filterscale = scale < 1.0 ? 1.0 : scale;
	double support = filters[f].support * filterscale;
	int ksize = (int)ceil(support) * 2 + 1;
	double *w = lora_xmalloc(ksize * sizeof *w);
	c->ksize = ksize;
	c->bounds = lora_xmalloc(2 * (size_t)n * sizeof *c->bounds);
	c->k = lora_xcalloc((size_t)n * ksize, sizeof *c->k);
	for (int i = 0; i < n; i++) {
		int xx = o0 + i;
		double center = (xx + 0.5) * scale, ww = 0.0, ss = 1.0 / filterscale;
		int xmin = (int)(center - support + 0.5);
		if (xmin < 0)
			xmin = 0;
		int xmax = (int)(center + support + 0.5);
		if (xmax > in_size)
			xmax = in_size;
		xmax -= xmin;
		for (int x = 0; x < xmax; x++) {
			w[x] = filters[f].fn((x + xmin - center + 0.5) * ss);
			ww += w[x];
		}
		int32_t *k = c->k + (size_t)i * ksize;
		for (int x = 0; x < xmax; x++) {
			double v = ww != 0.0 ? w[x] / ww : w[x];
			k[x] = v < 0 ? (int32_t)(-0.5 + v * (1 << PRECISION_BITS))
			             : (int32_t)(0.5 + v * (1 << PRECISION_BITS));
		}
		c->bounds[2 * i] = xmin;
		c->bounds[2 * i + 1] = xmax;
	}
	free(w);
}

/* The input pixels [*first, *last) that c's n output pixels read. */
static void coeffs_span(const coeffs *c, int n, int *first, int *last)
{
	*first = c->bounds[0];
	*last = c->bounds[2 * (n - 1)] + c->bounds[2 * (n - 1) + 1];
}

static void coeffs_free(coeffs *c)
{
	free(c->bounds);
	free(c->k);
}

static inline uint8_t clip8(int32_t v)
{
	v >>= PRECISION_BITS;
	return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

/* ---- passes -------------------------------------------------------------------- */

/* The passes are integer multiply-adds over long contiguous rows: built at
 * -O3 (vectorized) and, with GCC, also for AVX2 with a run-time choice.
 * Integer sums do not depend on the order, so every variant is exact. Not
 * under ThreadSanitizer: the run-time choice (an ifunc resolver) runs before
 * TSan starts, and TSan's code in it crashes the program at load. */
#if defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_THREAD__)
#pragma GCC optimize("O3")
#define MULTIVERSION __attribute__((target_clones("avx2", "default")))
#else
#define MULTIVERSION
#endif

/* dst (w rows of h pixels) = src (h rows of w pixels) transposed; pixels of
 * ch bytes; in 32x32 tiles to stay in cache. RGB pixels move as 4-byte
 * words (the spare byte lands where the next pixel is written later) except
 * at the last column of src and the last row of dst. */
static void transpose(const uint8_t *src, int w, int h, int ch, uint8_t *dst)
{
	enum { T = 32 };
	for (int y0 = 0; y0 < h; y0 += T)
		for (int x0 = 0; x0 < w; x0 += T) {
			int y1 = y0 + T < h ? y0 + T : h, x1 = x0 + T < w ? x0 + T : w;
			for (int x = x0; x < x1; x++) {
				uint8_t *d = dst + ((size_t)x * h + y0) * ch;
				const uint8_t *s = src + ((size_t)y0 * w + x) * ch;
				size_t ss = (size_t)w * ch;
				int y = y0;
				if (ch == 3 && x < w - 1) {
					int ylast = y1 < h ? y1 : h - 1;
					for (; y < ylast; y++, d += 3, s += ss) {
						uint32_t v;
						memcpy(&v, s, 4);
						memcpy(d, &v, 4);
					}
				}
				for (; y < y1; y++, d += ch, s += ss)
					memcpy(d, s, ch);
			}
		}
}

/* src rows (stride bytes apart) are indexed from row0 (the first row held
 * in src); each output row is a weighted sum of rowlen bytes of whole input
 * rows: vectorizes over the row. */
MULTIVERSION static void pass_vertical(const uint8_t *src, size_t stride, int rowlen, int row0,
                          const coeffs *c, int oh, uint8_t *dst, int32_t *acc)
{
	const int32_t half = 1 << (PRECISION_BITS - 1);
	for (int yy = 0; yy < oh; yy++) {
		const int32_t *k = c->k + (size_t)yy * c->ksize;
		int ymin = c->bounds[2 * yy] - row0, n = c->bounds[2 * yy + 1];
		for (int i = 0; i < rowlen; i++)
			acc[i] = half;
		for (int y = 0; y < n; y++) {
			const uint8_t *in = src + (size_t)(ymin + y) * stride;
			int32_t ky = k[y];
			for (int i = 0; i < rowlen; i++)
				acc[i] += in[i] * ky;
		}
		uint8_t *out = dst + (size_t)yy * rowlen;
		for (int i = 0; i < rowlen; i++)
			out[i] = clip8(acc[i]);
	}
}

/* The horizontal pass over src (h rows of w pixels, the first of them
 * column col0 of the image c was made for) into dst (h rows of c's output
 * pixels). Columns become rows: the pass is then the vertical one
 * (vectorized over whole rows) between two transposes. */
static void pass_horizontal(const uint8_t *src, int w, int h, int ch, int col0,
                            const coeffs *c, int ow, uint8_t *dst)
{
	size_t tlen = (size_t)h * ch;
	uint8_t *t = lora_xmalloc((size_t)w * tlen), *u = lora_xmalloc((size_t)ow * tlen);
	int32_t *acc = lora_xmalloc(tlen * sizeof *acc);
	transpose(src, w, h, ch, t);
	pass_vertical(t, tlen, (int)tlen, col0, c, ow, u, acc);
	transpose(u, h, ow, ch, dst);
	free(acc);
	free(t);
	free(u);
}

/* ---- entry point ------------------------------------------------------------------ */

int lora_resample(const uint8_t *src, int sw, int sh, int ch,
                  int dw, int dh, int x0, int y0, int ow, int oh,
                  lora_filter f, uint8_t *dst)
{
	if (sw <= 0 || sh <= 0 || dw <= 0 || dh <= 0 || ow <= 0 || oh <= 0 ||
	    ch < 1 || ch > 4 || (unsigned)f >= LORA_FILTER_COUNT)
		return lora_err("resample: bad size %dx%d -> %dx%d", sw, sh, dw, dh);
	if (x0 < 0 || y0 < 0 || x0 > dw - ow || y0 > dh - oh)
		return lora_err("resample: window %dx%d+%d+%d outside %dx%d", ow, oh, x0, y0, dw, dh);
	int need_h = dw != sw, need_v = dh != sh;
	size_t rowlen = (size_t)ow * ch, srclen = (size_t)sw * ch;
	coeffs cv = { 0 }, chz = { 0 };
	if (need_v)
		coeffs_make(&cv, sh, dh, y0, oh, f);
	if (need_h)
		coeffs_make(&chz, sw, dw, x0, ow, f);

	if (need_h && sh > dh && sh - dh > 2 * ((long)sw - dw)) {
		/* Pillow 13 (PR #9549) runs the vertical pass first when the
		 * height shrinks more than twice as much as the width: over the
		 * columns [first, last) that the horizontal pass reads. */
		int first, last;
		coeffs_span(&chz, ow, &first, &last);
		size_t tlen = (size_t)(last - first) * ch;
		uint8_t *tmp = lora_xmalloc((size_t)oh * tlen);
		int32_t *acc = lora_xmalloc(tlen * sizeof *acc);
		pass_vertical(src + (size_t)first * ch, srclen, (int)tlen, 0, &cv, oh, tmp, acc);
		pass_horizontal(tmp, last - first, oh, ch, first, &chz, ow, dst);
		free(acc);
		free(tmp);
	} else {
		/* Horizontal (or a plain column crop) over the rows [first, last)
		 * that the vertical pass reads, then vertical. */
		int first = y0, last = y0 + oh;
		if (need_v)
			coeffs_span(&cv, oh, &first, &last);
		int nrows = last - first;
		uint8_t *tmp = need_v ? lora_xmalloc((size_t)nrows * rowlen) : dst;
		if (need_h)
			pass_horizontal(src + (size_t)first * srclen, sw, nrows, ch, 0, &chz, ow, tmp);
		else
			for (int y = 0; y < nrows; y++)
				memcpy(tmp + y * rowlen, src + (size_t)(first + y) * srclen + (size_t)x0 * ch,
				       rowlen);
		if (need_v) {
			int32_t *acc = lora_xmalloc(rowlen * sizeof *acc);
			pass_vertical(tmp, rowlen, (int)rowlen, first, &cv, oh, dst, acc);
			free(acc);
			free(tmp);
		}
	}
	if (need_v)
		coeffs_free(&cv);
	if (need_h)
		coeffs_free(&chz);
	return 0;
}
