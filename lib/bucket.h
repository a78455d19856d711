/* bucket.h: target geometry: square crop, padded fit, or kohya's buckets.
 *
 * A lora_geom says how one upright w x h image becomes a training image:
 * resize it to dw x dh, keep the window [x0, x0+ow) x [y0, y0+oh), place that
 * on a cw x ch canvas at (px, py) (the canvas is the window except in fit
 * mode). Crop: the short side becomes size, int(long * size / short + 0.5),
 * centre window with floor offsets. Fit: the long side becomes size, padded.
 *
 * lora_buckets_init builds model_util.make_bucket_resolutions((size, size),
 * reso_min, reso_max, step): every width w = reso_min, reso_min+step, ... up
 * to reso_max paired with h = min(reso_max, (size^2 // w) // step * step)
 * (both orientations, plus the square), sorted. lora_buckets_select is
 * train_util.BucketManager.select_bucket: the bucket whose aspect ratio is
 * nearest the image's (first in sorted order on ties), and the size to resize
 * to before the centre crop; with no_upscale the image is only shrunk (to at
 * most size^2 pixels) and the bucket is its size rounded down to the step.
 *
 *     lora_buckets b;
 *     lora_buckets_init(&b, 512, 256, 1024, 64, 0);
 *     lora_reso bucket, resized;
 *     lora_buckets_select(&b, 4000, 3000, &bucket, &resized); // 576x448, 597x448
 *     lora_buckets_free(&b);
 *
 * Ownership: b owns its arrays; lora_buckets_free releases them.
 * Failure: init returns -1 (lora_errmsg) on nonsense limits or no bucket.
 */
#ifndef LORA_BUCKET_H
#define LORA_BUCKET_H

typedef struct { int w, h; } lora_reso;

typedef struct {
	long long max_area;  /* size * size */
	int reso_min, reso_max, step;
	int no_upscale;
	int n;
	lora_reso *resos;    /* (n) sorted by (w, h) */
	double *ar;          /* (n) w / h */
} lora_buckets;

int lora_buckets_init(lora_buckets *b, int size, int reso_min, int reso_max, int step,
                      int no_upscale);
void lora_buckets_free(lora_buckets *b);
typedef struct {
	int dw, dh;          /* resize the whole image to this */
	int x0, y0, ow, oh;  /* then keep this window of it */
	int cw, ch, px, py;  /* placed at (px, py) on a cw x ch canvas */
} lora_geom;

/* 0, or -1 (lora_errmsg) when the image cannot produce a training image. */
int lora_geom_crop(int w, int h, int size, int no_upscale, lora_geom *g);
int lora_geom_fit(int w, int h, int size, int no_upscale, lora_geom *g);
int lora_geom_bucket(const lora_buckets *b, int w, int h, lora_geom *g);

/* Bucket and resize target for a w x h image (w, h >= 1). With no_upscale a
 * bucket side may be 0 for an image smaller than step: the caller skips it. */
void lora_buckets_select(const lora_buckets *b, int w, int h, lora_reso *bucket,
                         lora_reso *resized);

#endif
