/* bucket.h: aspect-ratio buckets as kohya's sd-scripts makes and picks them.
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
/* Bucket and resize target for a w x h image (w, h >= 1). With no_upscale a
 * bucket side may be 0 for an image smaller than step: the caller skips it. */
void lora_buckets_select(const lora_buckets *b, int w, int h, lora_reso *bucket,
                         lora_reso *resized);

#endif
