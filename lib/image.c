/* image.c: see image.h. PNG via libpng, JPEG via libjpeg(-turbo), both read
 * from memory; library errors longjmp back to the decode function, so every
 * local that changes after setjmp and is read after the jump is volatile. */
#include "image.h"
#include "util.h"

#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <libdeflate.h>
#include <jerror.h>
#include <png.h>

/* ---- common -------------------------------------------------------------- */

lora_image_format lora_image_sniff(const uint8_t *buf, size_t len)
{
	static const uint8_t png_sig[8] = { 0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n' };
	if (len >= 8 && memcmp(buf, png_sig, 8) == 0)
		return LORA_IMAGE_PNG;
	if (len >= 3 && buf[0] == 0xff && buf[1] == 0xd8 && buf[2] == 0xff)
		return LORA_IMAGE_JPEG;
	return LORA_IMAGE_UNKNOWN;
}

void lora_image_free(lora_image *im)
{
	if (!im)
		return;
	free(im->px);
	memset(im, 0, sizeof *im);
}

static int check_size(long long w, long long h, long long max_pixels)
{
	if (w <= 0 || h <= 0)
		return lora_err("zero-size image (%lldx%lld)", w, h);
	if (max_pixels > 0 && w * h > max_pixels)
		return lora_err("%lldx%lld is over the pixel limit %lld (see --max-pixels)",
		                w, h, max_pixels);
	/* Our buffers are indexed with size_t, rows with int. */
	if (w > INT_MAX / 4 || h > INT_MAX / 4 || w * h > (long long)(SIZE_MAX / 8))
		return lora_err("%lldx%lld is too large", w, h);
	return 0;
}

/* ---- EXIF orientation ----------------------------------------------------------- */

static unsigned rd16(const uint8_t *p, int be) { return be ? (p[0] << 8 | p[1]) : (p[1] << 8 | p[0]); }
static uint32_t rd32(const uint8_t *p, int be)
{
	return be ? ((uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3])
	          : ((uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0]);
}

int lora_exif_orientation(const uint8_t *t, size_t len)
{
	if (len < 8)
		return 1;
	int be;
	if (t[0] == 'I' && t[1] == 'I')
		be = 0;
	else if (t[0] == 'M' && t[1] == 'M')
		be = 1;
	else
		return 1;
	if (rd16(t + 2, be) != 42)
		return 1;
	uint32_t ifd = rd32(t + 4, be);
	if (ifd > len - 2)
		return 1;
	unsigned n = rd16(t + ifd, be);
	for (unsigned i = 0; i < n; i++) {
		size_t e = (size_t)ifd + 2 + 12 * (size_t)i;
		if (e + 12 > len)
			return 1;
		if (rd16(t + e, be) != 0x0112)
			continue;
		unsigned type = rd16(t + e + 2, be);
		unsigned v = type == 3 ? rd16(t + e + 8, be) : type == 4 ? rd32(t + e + 8, be) : 0;
		return v >= 1 && v <= 8 ? (int)v : 1;
	}
	return 1;
}

void lora_image_orient(lora_image *im, int o)
{
	if (o < 2 || o > 8 || !im->px)
		return;
	int w = im->w, h = im->h, c = im->channels;
	int swap = o >= 5;
	int ow = swap ? h : w, oh = swap ? w : h;
	uint8_t *dst = lora_xmalloc((size_t)w * h * c);
	const uint8_t *src = im->px;
	/* out(x, y) = src(sx, sy); sx = ax + bx*x + cx*y, sy likewise. */
	for (int y = 0; y < oh; y++) {
		uint8_t *d = dst + (size_t)y * ow * c;
		for (int x = 0; x < ow; x++, d += c) {
			int sx, sy;
			switch (o) {
			case 2: sx = w - 1 - x; sy = y; break;
			case 3: sx = w - 1 - x; sy = h - 1 - y; break;
			case 4: sx = x; sy = h - 1 - y; break;
			case 5: sx = y; sy = x; break;
			case 6: sx = y; sy = h - 1 - x; break;
			case 7: sx = w - 1 - y; sy = h - 1 - x; break;
			default: sx = w - 1 - y; sy = x; break;   /* 8 */
			}
			memcpy(d, src + ((size_t)sy * w + sx) * c, c);
		}
	}
	free(im->px);
	im->px = dst;
	im->w = ow;
	im->h = oh;
}

void lora_image_flatten(lora_image *im, const uint8_t bg[3])
{
	if (im->channels != 4)
		return;
	size_t n = (size_t)im->w * im->h;
	uint8_t *p = im->px, *q = im->px;
	/* Pillow's AlphaComposite.c with an opaque destination: 7 extra bits of
	 * precision, division by 255 as ((x >> 8) + x) >> 8 with rounding. */
	for (size_t i = 0; i < n; i++, p += 4, q += 3) {
		unsigned a = p[3];
		if (a == 0) {
			q[0] = bg[0]; q[1] = bg[1]; q[2] = bg[2];
			continue;
		}
		unsigned c1 = a << 7, c2 = (255u << 7) - c1;
		for (int k = 0; k < 3; k++) {
			uint32_t t = p[k] * c1 + bg[k] * c2 + (0x80u << 7);
			q[k] = (uint8_t)(((t >> 8) + t) >> 8 >> 7);
		}
	}
	im->channels = 3;
	im->px = lora_xrealloc(im->px, n ? n * 3 : 1);
}

/* ---- PNG ------------------------------------------------------------------ */

typedef struct {
	jmp_buf jb;
	char msg[200];
	const uint8_t *buf;
	size_t len, pos;
} png_ctx;

static void png_error_cb(png_structp png, png_const_charp msg)
{
	png_ctx *c = png_get_error_ptr(png);
	snprintf(c->msg, sizeof c->msg, "%s", msg);
	longjmp(c->jb, 1);
}

static void png_warn_cb(png_structp png, png_const_charp msg) { (void)png; (void)msg; }

static void png_read_cb(png_structp png, png_bytep out, size_t n)
{
	png_ctx *c = png_get_io_ptr(png);
	if (n > c->len - c->pos)
		png_error(png, "truncated");
	memcpy(out, c->buf + c->pos, n);
	c->pos += n;
}

/* Decode (o != NULL) or only probe (o == NULL, out == NULL). */
static int png_decode(const uint8_t *buf, size_t len, const lora_image_opts *o,
                      lora_image *out, lora_image_info *info)
{
	png_ctx c = { .buf = buf, .len = len };
	png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &c, png_error_cb, png_warn_cb);
	if (!png)
		return lora_err("out of memory");
	png_infop pi = png_create_info_struct(png);
	uint8_t *volatile px = NULL;
	png_bytep *volatile rows = NULL;
	if (!pi || setjmp(c.jb)) {
		free(px);
		free(rows);
		png_destroy_read_struct(&png, pi ? &pi : NULL, NULL);
		return lora_err("%s", c.msg[0] ? c.msg : "out of memory");
	}
	png_set_read_fn(png, &c, png_read_cb);
	png_set_user_limits(png, 0x7fffffff, 0x7fffffff);
	png_set_crc_action(png, PNG_CRC_DEFAULT, PNG_CRC_WARN_DISCARD);
	png_read_info(png, pi);
	png_uint_32 w, h;
	int depth, ctype, interlace;
	png_get_IHDR(png, pi, &w, &h, &depth, &ctype, &interlace, NULL, NULL);
	int has_trns = png_get_valid(png, pi, PNG_INFO_tRNS) != 0;
	int orient = 1;
#ifdef PNG_eXIf_SUPPORTED
	png_bytep exif = NULL;
	png_uint_32 nexif = 0;
	if (png_get_eXIf_1(png, pi, &nexif, &exif) && exif)
		orient = lora_exif_orientation(exif, nexif);
#endif
	if (info) {
		info->format = LORA_IMAGE_PNG;
		info->w = (int)w;
		info->h = (int)h;
		info->orientation = orient;
		info->has_alpha = (ctype & PNG_COLOR_MASK_ALPHA) || has_trns;
	}
	if (!out) {
		png_destroy_read_struct(&png, &pi, NULL);
		return 0;
	}
	if (check_size(w, h, o ? o->max_pixels : 0) < 0) {
		png_destroy_read_struct(&png, &pi, NULL);
		return -1;
	}
	if (depth == 16)
		png_set_strip_16(png);             /* high byte, as Pillow */
	if (ctype == PNG_COLOR_TYPE_PALETTE)
		png_set_palette_to_rgb(png);
	if (ctype == PNG_COLOR_TYPE_GRAY && depth < 8)
		png_set_expand_gray_1_2_4_to_8(png);
	if (has_trns)
		png_set_tRNS_to_alpha(png);
	if (ctype == PNG_COLOR_TYPE_GRAY || ctype == PNG_COLOR_TYPE_GRAY_ALPHA)
		png_set_gray_to_rgb(png);
	png_set_interlace_handling(png);
	png_read_update_info(png, pi);
	int ch = png_get_channels(png, pi);
	if ((ch != 3 && ch != 4) || png_get_rowbytes(png, pi) != (size_t)w * ch)
		png_error(png, "unsupported PNG layout");
	px = lora_xmalloc((size_t)w * h * ch);
	rows = lora_xmalloc(h * sizeof *rows);
	for (png_uint_32 y = 0; y < h; y++)
		rows[y] = px + (size_t)y * w * ch;
	png_read_image(png, rows);
	png_read_end(png, NULL);
	png_destroy_read_struct(&png, &pi, NULL);
	free(rows);
	*out = (lora_image){ (int)w, (int)h, ch, px };
	lora_image_orient(out, orient);
	return 0;
}

/* PNG writer: rows filtered with libpng's heuristic (per row, the filter
 * whose output has the smallest sum of absolute signed bytes), the whole
 * image compressed in one call by libdeflate (2-3x faster than zlib at the
 * same level and ratio), written as IHDR, one IDAT, IEND. */
static int put_chunk(FILE *fp, const char *tag, const uint8_t *data, size_t n)
{
	uint8_t hdr[8] = { (uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n,
	                   (uint8_t)tag[0], (uint8_t)tag[1], (uint8_t)tag[2], (uint8_t)tag[3] };
	uint32_t crc = libdeflate_crc32(0, hdr + 4, 4);
	if (n)  /* libdeflate_crc32(crc, NULL, 0) returns the initial value, not crc */
		crc = libdeflate_crc32(crc, data, n);
	uint8_t tail[4] = { (uint8_t)(crc >> 24), (uint8_t)(crc >> 16), (uint8_t)(crc >> 8), (uint8_t)crc };
	return fwrite(hdr, 1, 8, fp) == 8 && (n == 0 || fwrite(data, 1, n, fp) == n) &&
	       fwrite(tail, 1, 4, fp) == 4 ? 0 : -1;
}

/* Filter one row of n bytes (bpp bytes per pixel) into out[0..n]; prev is
 * the previous unfiltered row (all zero for the first row). cand: 5 scratch
 * rows of n bytes. One loop per filter so each vectorizes (GCC: -O3 and an
 * AVX2 clone chosen at run time). */
#if defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_THREAD__)
__attribute__((optimize("O3"), target_clones("avx2", "default")))
#endif
static void filter_row(const uint8_t *cur, const uint8_t *prev, size_t n, int bpp,
                       uint8_t *cand[5], uint8_t *out)
{
	size_t k = (size_t)bpp < n ? (size_t)bpp : n;
	uint8_t *c0 = cand[0], *c1 = cand[1], *c2 = cand[2], *c3 = cand[3], *c4 = cand[4];
	for (size_t i = 0; i < k; i++) {        /* no left neighbour: a = c = 0 */
		c1[i] = cur[i];
		c3[i] = (uint8_t)(cur[i] - (prev[i] >> 1));
		c4[i] = (uint8_t)(cur[i] - prev[i]);
	}
	for (size_t i = 0; i < n; i++) {
		c0[i] = cur[i];
		c2[i] = (uint8_t)(cur[i] - prev[i]);
	}
	for (size_t i = k; i < n; i++)
		c1[i] = (uint8_t)(cur[i] - cur[i - bpp]);
	for (size_t i = k; i < n; i++)
		c3[i] = (uint8_t)(cur[i] - ((cur[i - bpp] + prev[i]) >> 1));
	for (size_t i = k; i < n; i++) {
		int16_t a = cur[i - bpp], b = prev[i], c = prev[i - bpp];
		int16_t p = a + b - c;
		int16_t pa = p > a ? p - a : a - p, pb = p > b ? p - b : b - p, pc = p > c ? p - c : c - p;
		int16_t pr = pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
		c4[i] = (uint8_t)(cur[i] - pr);
	}
	unsigned best_sum = UINT_MAX;
	int best = 0;
	for (int f = 0; f < 5; f++) {
		const uint8_t *o = cand[f];
		unsigned sum = 0;
		for (size_t i = 0; i < n; i++) {
			int v = (int8_t)o[i];
			sum += (unsigned)(v < 0 ? -v : v);
		}
		if (sum < best_sum) {
			best_sum = sum;
			best = f;
		}
	}
	out[0] = (uint8_t)best;
	memcpy(out + 1, cand[best], n);
}

int lora_image_write_png(const lora_image *im, FILE *fp, int level)
{
	LORA_ASSERT(im->channels == 3);
	size_t stride = (size_t)im->w * 3, raw_n = (size_t)im->h * (stride + 1);
	uint8_t *raw = lora_xmalloc(raw_n), *scratch = lora_xmalloc(6 * stride);
	uint8_t *cand[5];
	for (int f = 0; f < 5; f++)
		cand[f] = scratch + f * stride;
	uint8_t *zero = scratch + 5 * stride;
	memset(zero, 0, stride);
	for (int y = 0; y < im->h; y++)
		filter_row(im->px + y * stride, y ? im->px + (y - 1) * stride : zero, stride, 3, cand,
		           raw + y * (stride + 1));
	free(scratch);
	struct libdeflate_compressor *c = libdeflate_alloc_compressor(level < 0 ? 6 : level > 12 ? 12 : level);
	if (!c) {
		free(raw);
		return lora_err("out of memory");
	}
	size_t cap = libdeflate_zlib_compress_bound(c, raw_n);
	uint8_t *z = lora_xmalloc(cap);
	size_t zn = libdeflate_zlib_compress(c, raw, raw_n, z, cap);
	libdeflate_free_compressor(c);
	free(raw);
	LORA_ASSERT(zn > 0);
	static const uint8_t sig[8] = { 0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n' };
	uint8_t ihdr[13] = { (uint8_t)(im->w >> 24), (uint8_t)(im->w >> 16), (uint8_t)(im->w >> 8), (uint8_t)im->w,
	                     (uint8_t)(im->h >> 24), (uint8_t)(im->h >> 16), (uint8_t)(im->h >> 8), (uint8_t)im->h,
	                     8, 2, 0, 0, 0 };
	int r = fwrite(sig, 1, 8, fp) == 8 && put_chunk(fp, "IHDR", ihdr, 13) == 0 &&
	        put_chunk(fp, "IDAT", z, zn) == 0 && put_chunk(fp, "IEND", NULL, 0) == 0;
	free(z);
	if (!r || ferror(fp))
		return lora_err("write error:");
	return 0;
}

/* ---- JPEG ---------------------------------------------------------------------- */

typedef struct {
	struct jpeg_error_mgr pub;
	jmp_buf jb;
	char msg[JMSG_LENGTH_MAX];
} jpeg_ctx;

static void jpeg_error_cb(j_common_ptr ci)
{
	jpeg_ctx *c = (jpeg_ctx *)ci->err;
	ci->err->format_message(ci, c->msg);
	longjmp(c->jb, 1);
}

/* Warnings: a premature end of data is an error (as Pillow says "image file
 * is truncated"); other corrupt-data warnings are tolerated, as by Pillow. */
static void jpeg_emit_cb(j_common_ptr ci, int level)
{
	jpeg_ctx *c = (jpeg_ctx *)ci->err;
	if (level < 0 && ci->err->msg_code == JWRN_JPEG_EOF) {
		snprintf(c->msg, sizeof c->msg, "truncated");
		longjmp(c->jb, 1);
	}
	if (level < 0)
		ci->err->num_warnings++;
}

static void jpeg_output_cb(j_common_ptr ci) { (void)ci; }

/* Hostile progressive files can hold thousands of tiny scans, each costing a
 * pass over the whole coefficient buffer: cap them, like TurboJPEG does. */
static void jpeg_progress_cb(j_common_ptr ci)
{
	j_decompress_ptr d = (j_decompress_ptr)ci;
	if (d->input_scan_number > 500) {
		jpeg_ctx *c = (jpeg_ctx *)ci->err;
		snprintf(c->msg, sizeof c->msg, "too many progressive scans");
		longjmp(c->jb, 1);
	}
}

static int jpeg_orientation(j_decompress_ptr ci)
{
	for (jpeg_saved_marker_ptr m = ci->marker_list; m; m = m->next)
		if (m->marker == JPEG_APP0 + 1 && m->data_length > 6 &&
		    memcmp(m->data, "Exif\0\0", 6) == 0)
			return lora_exif_orientation(m->data + 6, m->data_length - 6);
	return 1;
}

static int jpeg_decode(const uint8_t *buf, size_t len, const lora_image_opts *o,
                       lora_image *out, lora_image_info *info)
{
	struct jpeg_decompress_struct ci;
	jpeg_ctx c;
	struct jpeg_progress_mgr prog = { .progress_monitor = jpeg_progress_cb };
	uint8_t *volatile px = NULL;
	uint8_t *volatile row = NULL;
	ci.err = jpeg_std_error(&c.pub);
	c.pub.error_exit = jpeg_error_cb;
	c.pub.emit_message = jpeg_emit_cb;
	c.pub.output_message = jpeg_output_cb;
	c.msg[0] = 0;
	if (setjmp(c.jb)) {
		free(px);
		free(row);
		jpeg_destroy_decompress(&ci);
		return lora_err("%s", c.msg);
	}
	jpeg_create_decompress(&ci);
	ci.progress = &prog;
	jpeg_mem_src(&ci, buf, (unsigned long)len);
	jpeg_save_markers(&ci, JPEG_APP0 + 1, 0xffff);
	jpeg_read_header(&ci, TRUE);
	int orient = jpeg_orientation(&ci);
	int cmyk = ci.jpeg_color_space == JCS_CMYK || ci.jpeg_color_space == JCS_YCCK;
	if (info) {
		info->format = LORA_IMAGE_JPEG;
		info->w = (int)ci.image_width;
		info->h = (int)ci.image_height;
		info->orientation = orient;
		info->has_alpha = 0;
	}
	if (!out) {
		jpeg_destroy_decompress(&ci);
		return 0;
	}
	if (check_size(ci.image_width, ci.image_height, o ? o->max_pixels : 0) < 0) {
		jpeg_destroy_decompress(&ci);
		return -1;
	}
	if (o && o->jpeg_shrink) {
		int d = o->jpeg_shrink(o->ctx, (int)ci.image_width, (int)ci.image_height, orient);
		if (d == 2 || d == 4 || d == 8) {
			ci.scale_num = 1;
			ci.scale_denom = d;
		}
	}
	ci.out_color_space = cmyk ? JCS_CMYK : JCS_RGB;
	jpeg_start_decompress(&ci);
	int w = (int)ci.output_width, h = (int)ci.output_height;
	if (ci.output_components != (cmyk ? 4 : 3))
		ERREXIT(&ci, JERR_BAD_J_COLORSPACE);
	px = lora_xmalloc((size_t)w * h * 3);
	if (cmyk)
		row = lora_xmalloc((size_t)w * 4);
	/* An Adobe APP14 marker means the CMYK samples are stored inverted
	 * (Photoshop); Pillow then reads them as "CMYK;I". */
	int inverted = cmyk && ci.saw_Adobe_marker;
	while (ci.output_scanline < ci.output_height) {
		int y = (int)ci.output_scanline;
		uint8_t *dst = px + (size_t)y * w * 3;
		if (!cmyk) {
			JSAMPROW r = dst;
			jpeg_read_scanlines(&ci, &r, 1);
			continue;
		}
		JSAMPROW r = row;
		if (jpeg_read_scanlines(&ci, &r, 1) != 1)
			continue;
		/* Pillow's cmyk2rgb: nk = 255-k; out = nk - c*nk/255 (rounded). */
		for (int x = 0; x < w; x++) {
			const uint8_t *s = row + 4 * x;
			int k = inverted ? 255 - s[3] : s[3];
			int nk = 255 - k;
			for (int j = 0; j < 3; j++) {
				int cc = inverted ? 255 - s[j] : s[j];
				int t = cc * nk + 128;
				int v = nk - (((t >> 8) + t) >> 8);
				dst[3 * x + j] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
			}
		}
	}
	jpeg_finish_decompress(&ci);
	jpeg_destroy_decompress(&ci);
	free(row);
	*out = (lora_image){ w, h, 3, px };
	lora_image_orient(out, orient);
	return 0;
}

int lora_image_write_jpeg(const lora_image *im, FILE *fp, int quality)
{
	struct jpeg_compress_struct ci;
	jpeg_ctx c;
	ci.err = jpeg_std_error(&c.pub);
	c.pub.error_exit = jpeg_error_cb;
	c.pub.output_message = jpeg_output_cb;
	if (setjmp(c.jb)) {
		jpeg_destroy_compress(&ci);
		return ferror(fp) ? lora_err("write error:") : lora_err("%s", c.msg);
	}
	LORA_ASSERT(im->channels == 3);
	jpeg_create_compress(&ci);
	jpeg_stdio_dest(&ci, fp);
	ci.image_width = im->w;
	ci.image_height = im->h;
	ci.input_components = 3;
	ci.in_color_space = JCS_RGB;
	jpeg_set_defaults(&ci);
	jpeg_set_quality(&ci, quality, TRUE);
	jpeg_start_compress(&ci, TRUE);
	while (ci.next_scanline < ci.image_height) {
		JSAMPROW r = im->px + (size_t)ci.next_scanline * im->w * 3;
		jpeg_write_scanlines(&ci, &r, 1);
	}
	jpeg_finish_compress(&ci);
	jpeg_destroy_compress(&ci);
	if (ferror(fp))
		return lora_err("write error:");
	return 0;
}

int lora_jpeg_draft_denom(int w, int h, int need_w, int need_h)
{
	int d = 1;
	while (d < 8 && (w + 2 * d - 1) / (2 * d) >= 2 * (long long)need_w &&
	       (h + 2 * d - 1) / (2 * d) >= 2 * (long long)need_h)
		d *= 2;
	return d;
}

/* ---- dispatch ---------------------------------------------------------------- */

int lora_image_probe(const uint8_t *buf, size_t len, lora_image_info *info)
{
	memset(info, 0, sizeof *info);
	switch (lora_image_sniff(buf, len)) {
	case LORA_IMAGE_PNG: return png_decode(buf, len, NULL, NULL, info);
	case LORA_IMAGE_JPEG: return jpeg_decode(buf, len, NULL, NULL, info);
	default:
		return len ? lora_err("not a PNG or JPEG file") : lora_err("empty file");
	}
}

int lora_image_decode(const uint8_t *buf, size_t len, const lora_image_opts *o,
                      lora_image *out)
{
	memset(out, 0, sizeof *out);
	switch (lora_image_sniff(buf, len)) {
	case LORA_IMAGE_PNG: return png_decode(buf, len, o, out, NULL);
	case LORA_IMAGE_JPEG: return jpeg_decode(buf, len, o, out, NULL);
	default:
		return len ? lora_err("not a PNG or JPEG file") : lora_err("empty file");
	}
}
