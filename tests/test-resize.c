/* test-resize: lib/image, lib/resample and lib/bucket against Pillow and
 * kohya's bucket code, through the fixtures of tests/gen/gen_resize.py
 * (tests/fixtures/resize/manifest.tsv). Expected pixels are gzipped PPMs,
 * read here with zlib, so the check does not lean on our own PNG decoder. */
#include "test.h"

#include "bucket.h"
#include "image.h"
#include "resample.h"
#include "util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

static char dir[4096];
static int drafts;   /* resize checks also run with --jpeg-draft */

static char *fx(const char *name)
{
	return lora_xasprintf("%s/%s", dir, name);
}

/* ---- helpers ----------------------------------------------------------------- */

/* Read a gzipped binary PPM (P6, maxval 255) into an RGB image. */
static int read_ppm_gz(const char *name, lora_image *im)
{
	char *path = fx(name);
	gzFile g = gzopen(path, "rb");
	free(path);
	memset(im, 0, sizeof *im);
	if (!g)
		return -1;
	char hdr[64];
	int w, h, maxv;
	if (!gzgets(g, hdr, sizeof hdr) || strcmp(hdr, "P6\n") != 0 ||
	    !gzgets(g, hdr, sizeof hdr) || sscanf(hdr, "%d %d", &w, &h) != 2 ||
	    !gzgets(g, hdr, sizeof hdr) || sscanf(hdr, "%d", &maxv) != 1 || maxv != 255) {
		gzclose(g);
		return -1;
	}
	size_t n = (size_t)w * h * 3;
	im->px = lora_xmalloc(n);
	int got = gzread(g, im->px, (unsigned)n);
	gzclose(g);
	if (got != (int)n) {
		lora_image_free(im);
		return -1;
	}
	im->w = w;
	im->h = h;
	im->channels = 3;
	return 0;
}

static int decode_file(const char *name, lora_image *im)
{
	char *path = fx(name);
	size_t len;
	char *buf = lora_read_file(path, &len);
	free(path);
	if (!buf)
		return -1;
	lora_image_opts o = { .max_pixels = 100000000 };
	int r = lora_image_decode((uint8_t *)buf, len, &o, im);
	free(buf);
	return r;
}

/* PSNR in dB (INFINITY when equal) and the largest absolute difference. */
static double psnr(const lora_image *a, const lora_image *b, int *maxdiff)
{
	size_t n = (size_t)a->w * a->h * 3;
	double se = 0;
	int md = 0;
	for (size_t i = 0; i < n; i++) {
		int d = a->px[i] - b->px[i];
		se += (double)d * d;
		if (abs(d) > md)
			md = abs(d);
	}
	*maxdiff = md;
	return se == 0 ? INFINITY : 10 * log10(255.0 * 255.0 / (se / n));
}

static int same_shape(const lora_image *a, const lora_image *b)
{
	return a->w == b->w && a->h == b->h && a->channels == 3 && b->channels == 3;
}

static int split(char *line, char **f, int max)
{
	int n = 0;
	for (char *s = strtok(line, "\t\n"); s && n < max; s = strtok(NULL, "\t\n"))
		f[n++] = s;
	return n;
}

static const uint8_t white[3] = { 255, 255, 255 };

/* ---- manifest checks ------------------------------------------------------------- */

static void check_decode(char **f)
{
	lora_image got, want;
	char msg[256];
	int ok = decode_file(f[1], &got) == 0;
	snprintf(msg, sizeof msg, "decode %s: %s", f[1], ok ? "ok" : lora_errmsg());
	test_cond(msg, ok);
	if (!ok)
		return;
	lora_image_flatten(&got, white);
	test_cond("expected ppm readable", read_ppm_gz(f[2], &want) == 0);
	snprintf(msg, sizeof msg, "decode %s: size %dx%d", f[1], got.w, got.h);
	test_cond(msg, same_shape(&got, &want));
	if (same_shape(&got, &want)) {
		int md;
		double p = psnr(&got, &want, &md);
		printf("decode  %-24s %3dx%-3d  psnr %6.2f dB  maxdiff %d\n", f[1], got.w, got.h, p, md);
		snprintf(msg, sizeof msg, "decode %s matches Pillow (%s)", f[1], f[3]);
		test_cond(msg, strcmp(f[3], "exact") == 0 ? md == 0 : p >= 45);
	}
	lora_image_free(&got);
	lora_image_free(&want);
}

static void check_exif(char **f)
{
	lora_image got, want, up;
	char msg[256];
	int ok = decode_file(f[1], &got) == 0;
	snprintf(msg, sizeof msg, "decode %s", f[1]);
	test_cond(msg, ok);
	if (!ok)
		return;
	read_ppm_gz(f[3], &want);
	read_ppm_gz(f[4], &up);
	snprintf(msg, sizeof msg, "%s (orientation %s) comes out %dx%d, upright", f[1], f[2], got.w, got.h);
	test_cond(msg, same_shape(&got, &want) && same_shape(&got, &up));
	if (same_shape(&got, &want) && same_shape(&got, &up)) {
		int md, md2;
		double p = psnr(&got, &want, &md), q = psnr(&got, &up, &md2);
		printf("exif    %-24s o=%s  vs Pillow exif_transpose %6.2f dB (maxdiff %d), vs upright source %5.2f dB\n",
		       f[1], f[2], p, md, q);
		snprintf(msg, sizeof msg, "%s equals Pillow's exif_transpose", f[1]);
		test_cond(msg, p >= 45);
		snprintf(msg, sizeof msg, "%s looks like the upright source", f[1]);
		test_cond(msg, q >= 30);
	}
	lora_image_free(&got);
	lora_image_free(&want);
	lora_image_free(&up);
}

static void check_buckets(char **f)
{
	lora_buckets b;
	int size = atoi(f[1]), n = atoi(f[5]);
	test_cond("buckets init", lora_buckets_init(&b, size, atoi(f[2]), atoi(f[3]), atoi(f[4]), 0) == 0);
	char msg[128];
	snprintf(msg, sizeof msg, "buckets for size %d: %d (kohya %d)", size, b.n, n);
	test_cond(msg, b.n == n);
	char *save, *tok = strtok_r(f[6], " ", &save);
	int i = 0, same = 1;
	for (; tok && i < b.n; tok = strtok_r(NULL, " ", &save), i++) {
		int w, h;
		sscanf(tok, "%dx%d", &w, &h);
		same &= b.resos[i].w == w && b.resos[i].h == h;
	}
	snprintf(msg, sizeof msg, "bucket list for size %d equals kohya's", size);
	test_cond(msg, same && i == n);
	lora_buckets_free(&b);
}

static void check_bucket(char **f)
{
	lora_buckets b;
	int size = atoi(f[1]), nu = atoi(f[5]), w = atoi(f[6]), h = atoi(f[7]);
	lora_buckets_init(&b, size, atoi(f[2]), atoi(f[3]), atoi(f[4]), nu);
	lora_reso k, r;
	lora_buckets_select(&b, w, h, &k, &r);
	char msg[200];
	snprintf(msg, sizeof msg, "bucket %dx%d size %d no_upscale %d: %dx%d resized %dx%d, kohya %sx%s %sx%s",
	         w, h, size, nu, k.w, k.h, r.w, r.h, f[8], f[9], f[10], f[11]);
	test_cond(msg, k.w == atoi(f[8]) && k.h == atoi(f[9]) && r.w == atoi(f[10]) && r.h == atoi(f[11]));
	lora_buckets_free(&b);
}

static int draft_cb(void *ctx, int w, int h, int orientation)
{
	const lora_geom *g = ctx;
	return orientation >= 5 ? lora_jpeg_draft_denom(w, h, g->dh, g->dw)
	                        : lora_jpeg_draft_denom(w, h, g->dw, g->dh);
}

/* --jpeg-draft: decode at 1/d in the DCT, resize to the same geometry. */
static void check_draft(const char *name, const lora_geom *g, lora_filter filt,
                        const lora_image *want)
{
	char *path = fx(name);
	size_t len;
	char *buf = lora_read_file(path, &len);
	free(path);
	lora_image im;
	lora_image_opts o = { .max_pixels = 0, .jpeg_shrink = draft_cb, .ctx = (void *)g };
	if (!buf || lora_image_decode((uint8_t *)buf, len, &o, &im) < 0) {
		free(buf);
		test_cond("draft decode", 0);
		return;
	}
	free(buf);
	lora_image out = { g->ow, g->oh, 3, lora_xmalloc((size_t)g->ow * g->oh * 3) };
	lora_resample(im.px, im.w, im.h, 3, g->dw, g->dh, g->x0, g->y0, g->ow, g->oh, filt, out.px);
	int md;
	double p = psnr(&out, want, &md);
	printf("draft   %-12s decoded at %4dx%-4d -> %3dx%-3d  psnr %6.2f dB against Pillow's full-size resize\n",
	       name, im.w, im.h, out.w, out.h, p);
	char msg[200];
	snprintf(msg, sizeof msg, "--jpeg-draft %s: PSNR %.2f >= 40 dB", name, p);
	test_cond(msg, p >= 40);
	lora_image_free(&im);
	lora_image_free(&out);
}

static void check_resize(char **f)
{
	/* resize src filter mode size noup bg bucket dw dh x0 y0 ow oh cw ch px py expect */
	lora_image im, want;
	char msg[300];
	if (decode_file(f[1], &im) < 0) {
		test_cond("decode resize source", 0);
		return;
	}
	unsigned bg3[3];
	int bk[3];
	sscanf(f[6], "%u,%u,%u", &bg3[0], &bg3[1], &bg3[2]);
	sscanf(f[7], "%d,%d,%d", &bk[0], &bk[1], &bk[2]);
	uint8_t bg[3] = { (uint8_t)bg3[0], (uint8_t)bg3[1], (uint8_t)bg3[2] };
	lora_image_flatten(&im, bg);
	int size = atoi(f[4]), nu = atoi(f[5]);
	lora_filter filt = (lora_filter)lora_filter_parse(f[2]);
	lora_geom g;
	lora_buckets b = { 0 };
	if (strcmp(f[3], "crop") == 0)
		lora_geom_crop(im.w, im.h, size, nu, &g);
	else if (strcmp(f[3], "fit") == 0)
		lora_geom_fit(im.w, im.h, size, nu, &g);
	else {
		lora_buckets_init(&b, size, bk[0], bk[1], bk[2], nu);
		lora_geom_bucket(&b, im.w, im.h, &g);
		lora_buckets_free(&b);
	}
	int want_g[10];
	for (int i = 0; i < 10; i++)
		want_g[i] = atoi(f[8 + i]);
	int got_g[10] = { g.dw, g.dh, g.x0, g.y0, g.ow, g.oh, g.cw, g.ch, g.px, g.py };
	snprintf(msg, sizeof msg, "geometry %s %s %d: resize %dx%d, window %dx%d+%d+%d, canvas %dx%d+%d+%d",
	         f[1], f[3], size, g.dw, g.dh, g.ow, g.oh, g.x0, g.y0, g.cw, g.ch, g.px, g.py);
	test_cond(msg, memcmp(got_g, want_g, sizeof got_g) == 0);

	lora_image out = { g.cw, g.ch, 3, lora_xmalloc((size_t)g.cw * g.ch * 3) };
	uint8_t *win = lora_xmalloc((size_t)g.ow * g.oh * 3);
	for (size_t i = 0; i < (size_t)g.cw * g.ch; i++)
		memcpy(out.px + 3 * i, bg, 3);
	test_cond("resample", lora_resample(im.px, im.w, im.h, 3, g.dw, g.dh, g.x0, g.y0, g.ow, g.oh,
	                                    filt, win) == 0);
	for (int y = 0; y < g.oh; y++)
		memcpy(out.px + ((size_t)(g.py + y) * g.cw + g.px) * 3, win + (size_t)y * g.ow * 3,
		       (size_t)g.ow * 3);
	free(win);
	read_ppm_gz(f[18], &want);
	if (same_shape(&out, &want)) {
		int md;
		double p = psnr(&out, &want, &md);
		printf("resize  %-12s %-8s %-6s %4d -> %3dx%-3d  psnr %6.2f dB  maxdiff %d\n",
		       f[1], f[2], f[3], size, out.w, out.h, p, md);
		/* The resampler is Pillow's to the byte. A JPEG source also goes
		 * through libjpeg, which is not ours and may round differently
		 * from the libjpeg-turbo in Pillow's wheel: a PSNR floor there. */
		int jpeg = strstr(f[1], ".jpg") != NULL;
		if (jpeg) {
			snprintf(msg, sizeof msg, "%s %s %s %d: PSNR %.2f >= 40 dB against Pillow", f[1], f[2], f[3], size, p);
			test_cond(msg, p >= 40);
		} else {
			snprintf(msg, sizeof msg, "%s %s %s %d: equals Pillow (max diff %d)", f[1], f[2], f[3], size, md);
			test_cond(msg, md == 0);
		}
		if (jpeg && strcmp(f[3], "fit") != 0 && g.cw == g.ow) {
			check_draft(f[1], &g, filt, &want);
			drafts++;
		}
	} else {
		test_cond("resize output size equals Pillow's", 0);
	}
	lora_image_free(&out);
	lora_image_free(&want);
	lora_image_free(&im);
}

/* ---- properties that need no fixture ------------------------------------------------ */

/* Lanczos resize of RGB src (sw x sh) to dw x dh: does the window
 * ow x oh at (x0, y0) equal that region of the full resize? */
static int window_is_crop(const uint8_t *src, int sw, int sh, int dw, int dh,
                          int x0, int y0, int ow, int oh)
{
	uint8_t *full = lora_xmalloc((size_t)dw * dh * 3), *part = lora_xmalloc((size_t)ow * oh * 3);
	int ok = lora_resample(src, sw, sh, 3, dw, dh, 0, 0, dw, dh, LORA_FILTER_LANCZOS, full) == 0 &&
	         lora_resample(src, sw, sh, 3, dw, dh, x0, y0, ow, oh, LORA_FILTER_LANCZOS, part) == 0;
	for (int y = 0; ok && y < oh; y++)
		ok = memcmp(part + (size_t)y * ow * 3, full + ((size_t)(y + y0) * dw + x0) * 3,
		            (size_t)ow * 3) == 0;
	free(full);
	free(part);
	return ok;
}

static void test_resample_properties(void)
{
	/* a constant image stays constant through every filter, up and down */
	uint8_t src[37 * 23 * 3], dst[61 * 61 * 3];
	for (size_t i = 0; i < sizeof src; i++)
		src[i] = (uint8_t)(i % 3 == 0 ? 200 : i % 3 == 1 ? 17 : 99);
	for (int f = 0; f < LORA_FILTER_COUNT; f++) {
		int sizes[][2] = { { 5, 3 }, { 61, 40 }, { 37, 23 }, { 11, 61 } };
		for (int s = 0; s < 4; s++) {
			int w = sizes[s][0], h = sizes[s][1], ok = 1;
			lora_resample(src, 37, 23, 3, w, h, 0, 0, w, h, (lora_filter)f, dst);
			for (int i = 0; i < w * h; i++)
				ok &= dst[3 * i] == 200 && dst[3 * i + 1] == 17 && dst[3 * i + 2] == 99;
			test_cond("constant image stays constant", ok);
		}
	}
	/* box filter halving = 2x2 block mean rounded half up (22-bit fixed point) */
	uint8_t g[8 * 6], out[4 * 3];
	for (int i = 0; i < 48; i++)
		g[i] = (uint8_t)((i * 37 + 11) % 256);
	lora_resample(g, 8, 6, 1, 4, 3, 0, 0, 4, 3, LORA_FILTER_BOX, out);
	int ok = 1;
	for (int y = 0; y < 3; y++)
		for (int x = 0; x < 4; x++) {
			/* horizontal pass rounds first, as Pillow's */
			int r0 = (g[(2 * y) * 8 + 2 * x] + g[(2 * y) * 8 + 2 * x + 1] + 1) / 2;
			int r1 = (g[(2 * y + 1) * 8 + 2 * x] + g[(2 * y + 1) * 8 + 2 * x + 1] + 1) / 2;
			ok &= out[y * 4 + x] == (r0 + r1 + 1) / 2;
		}
	test_cond("box 2x downscale = rounded 2x2 mean", ok);
	/* a window equals the same region of the full resize; the same pixels
	 * read as 23x37 and shrunk to 20x12 take the vertical pass first
	 * (Pillow 13), over the columns the window's taps reach */
	test_cond("window = crop of the full resize",
	          window_is_crop(src, 37, 23, 50, 40, 13, 21, 20, 10));
	test_cond("window = crop of the full resize, vertical pass first",
	          window_is_crop(src, 23, 37, 20, 12, 5, 3, 10, 6));
	uint8_t part[20 * 10 * 3];
	test_cond("window outside the image is refused",
	          lora_resample(src, 37, 23, 3, 50, 40, 40, 0, 20, 10, LORA_FILTER_BOX, part) < 0);
	test_cond("filter names", lora_filter_parse("bicubic") == LORA_FILTER_BICUBIC &&
	                          lora_filter_parse("nearest") < 0);
}

static void test_exif_parser(void)
{
	uint8_t le[] = { 'I', 'I', 42, 0, 8, 0, 0, 0, 1, 0, 0x12, 0x01, 3, 0, 1, 0, 0, 0, 6, 0, 0, 0 };
	uint8_t be[] = { 'M', 'M', 0, 42, 0, 0, 0, 8, 0, 1, 0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 8, 0, 0 };
	test_cond("exif little-endian orientation 6", lora_exif_orientation(le, sizeof le) == 6);
	test_cond("exif big-endian orientation 8", lora_exif_orientation(be, sizeof be) == 8);
	test_cond("exif truncated entry -> 1", lora_exif_orientation(le, 15) == 1);
	le[4] = 200;
	test_cond("exif IFD offset past the end -> 1", lora_exif_orientation(le, sizeof le) == 1);
	be[19] = 9;
	test_cond("exif orientation 9 -> 1", lora_exif_orientation(be, sizeof be) == 1);
}

static void test_bad_input(void)
{
	lora_image im;
	lora_image_opts o = { .max_pixels = 1000 };
	const uint8_t junk[] = "hello, not an image";
	test_cond("non-image refused", lora_image_decode(junk, sizeof junk, &o, &im) < 0 &&
	                               strstr(lora_errmsg(), "not a PNG or JPEG"));
	char *path = fx("cat.png");
	size_t len;
	char *buf = lora_read_file(path, &len);
	free(path);
	test_cond("pixel limit checked from the header",
	          lora_image_decode((uint8_t *)buf, len, &o, &im) < 0 &&
	          strstr(lora_errmsg(), "pixel limit"));
	o.max_pixels = 0;
	test_cond("truncated PNG refused", lora_image_decode((uint8_t *)buf, len / 2, &o, &im) < 0);
	free(buf);
	path = fx("photo.jpg");
	buf = lora_read_file(path, &len);
	free(path);
	test_cond("truncated JPEG refused", lora_image_decode((uint8_t *)buf, len * 2 / 3, &o, &im) < 0 &&
	                                    strstr(lora_errmsg(), "truncated"));
	free(buf);
}

/* Our PNG writer (own filters + libdeflate) read back by libpng; JPEG by libjpeg. */
static void test_encoders(void)
{
	lora_image src;
	if (decode_file("cat.png", &src) < 0) {
		test_cond("decode cat.png for the encoder test", 0);
		return;
	}
	for (int level = 1; level <= 12; level += 5) {
		char *buf = NULL;
		size_t len = 0;
		FILE *fp = open_memstream(&buf, &len);
		int r = lora_image_write_png(&src, fp, level);
		fclose(fp);
		lora_image back;
		lora_image_opts o = { 0 };
		int ok = r == 0 && lora_image_decode((uint8_t *)buf, len, &o, &back) == 0;
		char msg[100];
		snprintf(msg, sizeof msg, "PNG level %d (%zu bytes) reads back through libpng, same pixels", level, len);
		test_cond(msg, ok && same_shape(&src, &back) &&
		          memcmp(src.px, back.px, (size_t)src.w * src.h * 3) == 0);
		if (ok)
			lora_image_free(&back);
		free(buf);
	}
	char *buf = NULL;
	size_t len = 0;
	FILE *fp = open_memstream(&buf, &len);
	int r = lora_image_write_jpeg(&src, fp, 95);
	fclose(fp);
	lora_image back;
	lora_image_opts o = { 0 };
	int ok = r == 0 && lora_image_decode((uint8_t *)buf, len, &o, &back) == 0;
	test_cond("JPEG q95 reads back", ok && same_shape(&src, &back));
	if (ok && same_shape(&src, &back)) {
		int md;
		double p = psnr(&src, &back, &md);
		printf("jpeg q95 round trip: %.2f dB\n", p);
		test_cond("JPEG q95 round trip >= 35 dB", p >= 35);
	}
	if (ok)
		lora_image_free(&back);
	free(buf);
	lora_image_free(&src);
}

int main(void)
{
	const char *e = getenv("FIXTURES");
	snprintf(dir, sizeof dir, "%s/resize", e ? e : "tests/fixtures");
	char *path = fx("manifest.tsv");
	FILE *fp = fopen(path, "r");
	free(path);
	test_cond("manifest.tsv opens (run tests/gen/gen_resize.py)", fp != NULL);
	if (!fp)
		return test_report();
	char line[8192];
	int counts[5] = { 0 };
	while (fgets(line, sizeof line, fp)) {
		if (line[0] == '#')
			continue;
		char *f[24];
		int n = split(line, f, 24);
		if (n >= 4 && strcmp(f[0], "decode") == 0) { check_decode(f); counts[0]++; }
		else if (n >= 5 && strcmp(f[0], "exif") == 0) { check_exif(f); counts[1]++; }
		else if (n >= 7 && strcmp(f[0], "buckets") == 0) { check_buckets(f); counts[2]++; }
		else if (n >= 12 && strcmp(f[0], "bucket") == 0) { check_bucket(f); counts[3]++; }
		else if (n >= 19 && strcmp(f[0], "resize") == 0) { check_resize(f); counts[4]++; }
		else test_cond("manifest line understood", 0);
	}
	fclose(fp);
	printf("manifest: %d decode, %d exif, %d bucket lists, %d bucket picks, %d resizes\n",
	       counts[0], counts[1], counts[2], counts[3], counts[4]);
	test_cond("manifest has every kind of check",
	          counts[0] >= 20 && counts[1] >= 9 && counts[2] >= 1 && counts[3] >= 100 && counts[4] >= 10);
	test_cond("some JPEG resizes also ran as drafts", drafts >= 3);
	{
		/* 640x427 to 144x96: 1/2 leaves 320x214 >= 2x; 1/4 would not */
		test_cond("draft denominator 2", lora_jpeg_draft_denom(640, 427, 144, 96) == 2);
		test_cond("draft denominator 1 when it would go under 2x",
		          lora_jpeg_draft_denom(640, 427, 192, 128) == 1);
		test_cond("draft denominator capped at 8", lora_jpeg_draft_denom(8000, 6000, 10, 10) == 8);
	}
	test_resample_properties();
	test_exif_parser();
	test_bad_input();
	test_encoders();
	return test_report();
}
