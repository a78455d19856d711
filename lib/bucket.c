/* bucket.c: see bucket.h. Python's int(), // and float division are spelled
 * out so every number matches sd-scripts (library/model_util.py,
 * library/train_util.py). */
#include "bucket.h"
#include "util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int reso_cmp(const void *a, const void *b)
{
	const lora_reso *x = a, *y = b;
	return x->w != y->w ? (x->w > y->w) - (x->w < y->w) : (x->h > y->h) - (x->h < y->h);
}

static void add(lora_buckets *b, int w, int h)
{
	for (int i = 0; i < b->n; i++)
		if (b->resos[i].w == w && b->resos[i].h == h)
			return;
	b->resos = lora_xrealloc(b->resos, (b->n + 1) * sizeof *b->resos);
	b->resos[b->n++] = (lora_reso){ w, h };
}

int lora_buckets_init(lora_buckets *b, int size, int reso_min, int reso_max, int step,
                      int no_upscale)
{
	memset(b, 0, sizeof *b);
	if (size <= 0 || step <= 0 || reso_min <= 0 || reso_max < reso_min)
		return lora_err("bad bucket limits: size %d, min %d, max %d, step %d",
		                size, reso_min, reso_max, step);
	b->max_area = (long long)size * size;
	b->reso_min = reso_min;
	b->reso_max = reso_max;
	b->step = step;
	b->no_upscale = no_upscale;
	/* width = int(sqrt(max_area) // divisible) * divisible */
	int sq = (int)floor(sqrt((double)b->max_area) / step) * step;
	if (sq > 0)
		add(b, sq, sq);
	for (int w = reso_min; w <= reso_max; w += step) {
		long long h = (b->max_area / w) / step * step;
		if (h > reso_max)
			h = reso_max;
		if (h >= reso_min) {
			add(b, w, (int)h);
			add(b, (int)h, w);
		}
	}
	if (b->n == 0)
		return lora_err("no bucket fits: size %d, min %d, max %d, step %d",
		                size, reso_min, reso_max, step);
	qsort(b->resos, b->n, sizeof *b->resos, reso_cmp);
	b->ar = lora_xmalloc(b->n * sizeof *b->ar);
	for (int i = 0; i < b->n; i++)
		b->ar[i] = (double)b->resos[i].w / b->resos[i].h;
	return 0;
}

void lora_buckets_free(lora_buckets *b)
{
	if (!b)
		return;
	free(b->resos);
	free(b->ar);
	memset(b, 0, sizeof *b);
}

static int round_to_steps(double x, int step)
{
	int v = (int)(x + 0.5);
	return v - v % step;
}

void lora_buckets_select(const lora_buckets *b, int w, int h, lora_reso *bucket,
                         lora_reso *resized)
{
	double ar = (double)w / h;
	int step = b->step;
	if (!b->no_upscale) {
		lora_reso r = { 0, 0 };
		for (int i = 0; i < b->n; i++)
			if (b->resos[i].w == w && b->resos[i].h == h)
				r = b->resos[i];
		if (!r.w) {
			int best = 0;
			for (int i = 1; i < b->n; i++)
				if (fabs(b->ar[i] - ar) < fabs(b->ar[best] - ar))
					best = i;
			r = b->resos[best];
		}
		double ar_reso = (double)r.w / r.h;
		double scale = ar > ar_reso ? (double)r.h / h : (double)r.w / w;
		*bucket = r;
		resized->w = (int)(w * scale + 0.5);
		resized->h = (int)(h * scale + 0.5);
		return;
	}
	lora_reso rs = { w, h };
	if ((long long)w * h > b->max_area) {
		double rw = sqrt((double)b->max_area * ar);
		double rh = (double)b->max_area / rw;
		int bw = round_to_steps(rw, step);
		int bh_w = round_to_steps(bw / ar, step);
		if (bh_w < step)
			bh_w = step;
		double ar_w = (double)bw / bh_w;
		int bh = round_to_steps(rh, step);
		int bw_h = round_to_steps(bh * ar, step);
		if (bw_h < step)
			bw_h = step;
		double ar_h = bh ? (double)bw_h / bh : 0;
		if (fabs(ar_w - ar) < fabs(ar_h - ar))
			rs = (lora_reso){ bw, (int)(bw / ar + 0.5) };
		else
			rs = (lora_reso){ (int)(bh * ar + 0.5), bh };
	}
	*resized = rs;
	bucket->w = rs.w - rs.w % step;
	bucket->h = rs.h - rs.h % step;
}

/* ---- geometry ------------------------------------------------------------------ */

static int round_half(double x) { return (int)(x + 0.5); }

int lora_geom_crop(int w, int h, int size, int no_upscale, lora_geom *g)
{
	if (w <= 0 || h <= 0 || size <= 0)
		return lora_err("bad size %dx%d", w, h);
	int shortest = w < h ? w : h, side = size;
	double scale = (double)size / shortest;
	if (no_upscale && shortest < size) {
		side = shortest;
		scale = 1.0;
	}
	int dw = w == shortest ? side : round_half(w * scale);
	int dh = h == shortest ? side : round_half(h * scale);
	*g = (lora_geom){ dw, dh, (dw - side) / 2, (dh - side) / 2, side, side, side, side, 0, 0 };
	return 0;
}

int lora_geom_fit(int w, int h, int size, int no_upscale, lora_geom *g)
{
	if (w <= 0 || h <= 0 || size <= 0)
		return lora_err("bad size %dx%d", w, h);
	int longest = w > h ? w : h;
	double scale = (double)size / longest;
	if (no_upscale && longest < size)
		scale = 1.0;
	int dw = w == longest ? (int)(scale == 1.0 ? w : size) : round_half(w * scale);
	int dh = h == longest ? (int)(scale == 1.0 ? h : size) : round_half(h * scale);
	if (dw < 1) dw = 1;
	if (dh < 1) dh = 1;
	*g = (lora_geom){ dw, dh, 0, 0, dw, dh, size, size, (size - dw) / 2, (size - dh) / 2 };
	return 0;
}

int lora_geom_bucket(const lora_buckets *b, int w, int h, lora_geom *g)
{
	if (w <= 0 || h <= 0)
		return lora_err("bad size %dx%d", w, h);
	lora_reso k, r;
	lora_buckets_select(b, w, h, &k, &r);
	if (k.w <= 0 || k.h <= 0 || k.w > r.w || k.h > r.h)
		return lora_err("%dx%d fits no bucket", w, h);
	*g = (lora_geom){ r.w, r.h, (r.w - k.w) / 2, (r.h - k.h) / 2, k.w, k.h, k.w, k.h, 0, 0 };
	return 0;
}
