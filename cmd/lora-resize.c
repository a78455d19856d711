/* lora-resize: turn a folder of real-world images into a training set.
 *
 * Each input (argument, or first tab-separated field of a stdin line) is
 * read, decoded (lib/image), made upright, flattened over the background,
 * resized and cropped (lib/resample) to the training size, a kohya bucket
 * (lib/bucket) or padded to a square, and written atomically into --out.
 * Images run in parallel (-j); results print in input order.
 */
#include "bucket.h"    // lora_buckets_init, lora_geom_crop/fit/bucket
#include "image.h"     // lora_image_decode, lora_image_flatten, lora_image_write_png
#include "resample.h"  // lora_resample, lora_filter_parse
#include "util.h"      // lora_die, lora_afile, lora_parallel_for

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

static const char usage_str[] =
	"usage: lora-resize [--bucket] [--dedupe] [--fit] [--jpeg-draft] [--no-upscale]\n"
	"                   [--background color] [--bucket-max n] [--bucket-min n]\n"
	"                   [--bucket-step n] [--filter name] [-j n] [--max-pixels n]\n"
	"                   [--min-size n] [--quality q] [-s size] -o dir [image ...]\n";

static void usage(int status)
{
	fputs(usage_str, status ? stderr : stdout);
	exit(status);
}

/* ---- options and per-image state ------------------------------------------------ */

enum { MODE_CROP, MODE_FIT, MODE_BUCKET };

typedef struct {
	const char *out_dir;
	int size, mode, no_upscale, dedupe, jobs, quality;   /* quality 0 = PNG */
	int jpeg_draft;
	long min_size;                                      /* -1 = size / 2 */
	long long max_pixels;
	uint8_t bg[3];
	lora_filter filter;
	lora_buckets buckets;
} options;

enum { ST_PENDING, ST_OK, ST_SKIP, ST_ERR };

typedef struct {
	char *path;       /* input path */
	char *pass;       /* passthrough fields (NULL if none) */
	char *out;        /* output path, unique in the batch */
	int dup_of;       /* --dedupe: index of the first identical input, or -1 */
	int status;       /* ST_* */
	int w, h;         /* written size */
	char *msg;        /* diagnostic for ST_SKIP / ST_ERR */
} item;

typedef struct {
	options *o;
	item *items;
	int n;
	pthread_mutex_t lock;
	int next_print;   /* first item not yet reported */
	int failed;
} batch;

/* ---- one image ------------------------------------------------------------------------ */

static int write_image(const options *o, const lora_image *im, const char *path)
{
	lora_afile f;
	if (lora_afile_open(&f, path) < 0)
		return -1;
	/* No fsync per file: a batch of hundreds of small files would wait on
	 * the disk once each (3x the whole CPU time here); main() syncs the
	 * output folder's file system once at the end instead. */
	f.nosync = 1;
	int r = o->quality ? lora_image_write_jpeg(im, f.fp, o->quality)
	                   : lora_image_write_png(im, f.fp, 6);
	if (r < 0) {
		char *msg = lora_xstrdup(lora_errmsg());
		lora_afile_abort(&f);
		lora_err("'%s': %s", path, msg);
		free(msg);
		return -1;
	}
	return lora_afile_commit(&f);
}

/* opts.jpeg_shrink for --jpeg-draft: ctx is the upright image's geometry. */
static int draft_denom(void *ctx, int w, int h, int orientation)
{
	const lora_geom *g = ctx;
	return orientation >= 5 ? lora_jpeg_draft_denom(w, h, g->dh, g->dw)
	                        : lora_jpeg_draft_denom(w, h, g->dw, g->dh);
}

static void process(item *it, const options *o)
{
	size_t len;
	char *buf = lora_read_file(it->path, &len);
	lora_image im = { 0 };
	uint8_t *out = NULL;
	if (!buf)
		goto fail_plain;
	lora_image_info info;
	if (lora_image_probe((uint8_t *)buf, len, &info) < 0)
		goto fail;
	int w = info.orientation >= 5 ? info.h : info.w;
	int h = info.orientation >= 5 ? info.w : info.h;
	if (w <= 0 || h <= 0) {
		lora_err("zero-size image (%dx%d)", w, h);
		goto fail;
	}
	long min_size = o->min_size >= 0 ? o->min_size : o->size / 2;
	if (w < min_size || h < min_size) {
		it->status = ST_SKIP;
		it->msg = lora_xasprintf("'%s': %dx%d is smaller than the minimum size %ld, skipped",
		                         it->path, w, h, min_size);
		free(buf);
		return;
	}
	/* The geometry comes from the header's size, so a draft (smaller)
	 * decode resizes to exactly the same output as a full one. */
	lora_geom p;
	int r = o->mode == MODE_BUCKET ? lora_geom_bucket(&o->buckets, w, h, &p)
	      : o->mode == MODE_FIT ? lora_geom_fit(w, h, o->size, o->no_upscale, &p)
	      : lora_geom_crop(w, h, o->size, o->no_upscale, &p);
	if (r < 0) {
		it->status = ST_SKIP;
		it->msg = lora_xasprintf("'%s': %s, skipped", it->path, lora_errmsg());
		free(buf);
		return;
	}
	lora_image_opts dopt = { .max_pixels = o->max_pixels };
	if (o->jpeg_draft) {
		dopt.jpeg_shrink = draft_denom;
		dopt.ctx = &p;
	}
	if (lora_image_decode((uint8_t *)buf, len, &dopt, &im) < 0)
		goto fail;
	free(buf);
	buf = NULL;
	lora_image_flatten(&im, o->bg);
	out = lora_xmalloc((size_t)p.cw * p.ch * 3);
	if (p.cw != p.ow || p.ch != p.oh) {
		for (size_t i = 0; i < (size_t)p.cw * p.ch; i++)
			memcpy(out + 3 * i, o->bg, 3);
		uint8_t *tmp = lora_xmalloc((size_t)p.ow * p.oh * 3);
		if (lora_resample(im.px, im.w, im.h, 3, p.dw, p.dh, p.x0, p.y0, p.ow, p.oh,
		                  o->filter, tmp) < 0) {
			free(tmp);
			goto fail;
		}
		for (int y = 0; y < p.oh; y++)
			memcpy(out + ((size_t)(p.py + y) * p.cw + p.px) * 3, tmp + (size_t)y * p.ow * 3,
			       (size_t)p.ow * 3);
		free(tmp);
	} else if (lora_resample(im.px, im.w, im.h, 3, p.dw, p.dh, p.x0, p.y0, p.ow, p.oh,
	                         o->filter, out) < 0) {
		goto fail;
	}
	lora_image_free(&im);
	lora_image res = { p.cw, p.ch, 3, out };
	if (write_image(o, &res, it->out) < 0) {
		free(out);
		it->status = ST_ERR;
		it->msg = lora_xstrdup(lora_errmsg());
		return;
	}
	free(out);
	it->status = ST_OK;
	it->w = p.cw;
	it->h = p.ch;
	return;
fail:
	it->status = ST_ERR;
	it->msg = lora_xasprintf("'%s': %s", it->path, lora_errmsg());
	goto cleanup;
fail_plain:   /* lora_errmsg already names the file */
	it->status = ST_ERR;
	it->msg = lora_xstrdup(lora_errmsg());
cleanup:
	free(buf);
	free(out);
	lora_image_free(&im);
}

/* Report finished items in input order; called with b->lock held. */
static void report(batch *b)
{
	while (b->next_print < b->n && b->items[b->next_print].status != ST_PENDING) {
		item *it = &b->items[b->next_print++];
		switch (it->status) {
		case ST_OK:
			printf("%s\t%d\t%d%s%s\n", it->out, it->w, it->h, it->pass ? "\t" : "",
			       it->pass ? it->pass : "");
			break;
		case ST_SKIP:
			fflush(stdout);
			lora_warn("%s", it->msg);
			break;
		default:
			fflush(stdout);
			fprintf(stderr, "%s: %s\n", lora_progname, it->msg);
			b->failed = 1;
		}
		fflush(stdout);
		free(it->msg);
		it->msg = NULL;
	}
}

static void work(void *ctx, int i, int tid)
{
	(void)tid;
	batch *b = ctx;
	item *it = &b->items[i];
	item done = *it;
	if (it->dup_of >= 0) {
		done.status = ST_SKIP;
		done.msg = lora_xasprintf("'%s': duplicate of '%s', skipped", it->path,
		                          b->items[it->dup_of].path);
	} else {
		done.status = ST_PENDING;
		process(&done, b->o);
	}
	pthread_mutex_lock(&b->lock);
	*it = done;
	report(b);
	pthread_mutex_unlock(&b->lock);
}

/* ---- output names ------------------------------------------------------------------------ */

typedef struct {
	char **slot;
	size_t cap;
} nameset;

static uint64_t str_hash(const char *s)
{
	uint64_t h = 1469598103934665603ULL;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return h;
}

/* Add s (taking ownership) unless present; 1 if added, 0 if present. */
static int nameset_add(nameset *ns, char *s)
{
	size_t i = str_hash(s) & (ns->cap - 1);
	for (; ns->slot[i]; i = (i + 1) & (ns->cap - 1))
		if (strcmp(ns->slot[i], s) == 0)
			return 0;
	ns->slot[i] = s;
	return 1;
}

/* "dir/a/cat.photo.jpg" -> "<out>/cat.photo<-k>.png", unique in the batch. */
static void assign_names(batch *b)
{
	nameset ns = { 0 };
	ns.cap = 16;
	while (ns.cap < 2 * (size_t)b->n + 16)
		ns.cap *= 2;
	ns.slot = lora_xcalloc(ns.cap, sizeof *ns.slot);
	const char *ext = b->o->quality ? "jpg" : "png";
	for (int i = 0; i < b->n; i++) {
		const char *base = strrchr(b->items[i].path, '/');
		base = base ? base + 1 : b->items[i].path;
		char *stem = lora_xstrdup(*base ? base : "image");
		char *dot = strrchr(stem, '.');
		if (dot && dot != stem)
			*dot = 0;
		char *name = lora_xasprintf("%s.%s", stem, ext);
		for (int k = 1; !nameset_add(&ns, name); k++) {
			free(name);
			name = lora_xasprintf("%s-%d.%s", stem, k, ext);
		}
		b->items[i].out = lora_xasprintf("%s/%s", b->o->out_dir, name);
		free(stem);
	}
	for (size_t i = 0; i < ns.cap; i++)
		free(ns.slot[i]);
	free(ns.slot);
}

/* ---- --dedupe ------------------------------------------------------------------------------ */

typedef struct {
	uint64_t key;   /* crc32 << 32 | adler32 */
	long long size; /* -1 if unreadable */
} digest;

static void digest_one(void *ctx, int i, int tid)
{
	(void)tid;
	void **c = ctx;
	batch *b = c[0];
	digest *d = c[1];
	size_t len;
	char *buf = lora_read_file(b->items[i].path, &len);
	if (!buf) {
		d[i].size = -1;
		return;
	}
	uLong crc = crc32(0, (const Bytef *)buf, (uInt)0), ad = adler32(1, NULL, 0);
	for (size_t off = 0; off < len; off += 1u << 30) {
		uInt n = (uInt)(len - off < (1u << 30) ? len - off : 1u << 30);
		crc = crc32(crc, (const Bytef *)buf + off, n);
		ad = adler32(ad, (const Bytef *)buf + off, n);
	}
	d[i].key = (uint64_t)crc << 32 | (ad & 0xffffffffu);
	d[i].size = (long long)len;
	free(buf);
}

static int same_bytes(const char *a, const char *b)
{
	size_t la, lb;
	char *x = lora_read_file(a, &la), *y = lora_read_file(b, &lb);
	int same = x && y && la == lb && memcmp(x, y, la) == 0;
	free(x);
	free(y);
	return same;
}

static void find_duplicates(batch *b)
{
	digest *d = lora_xcalloc(b->n, sizeof *d);
	void *ctx[2] = { b, d };
	lora_parallel_for(b->n, b->o->jobs, digest_one, ctx);
	/* index by key with a small open-addressing table of first occurrences */
	size_t cap = 16;
	while (cap < 2 * (size_t)b->n + 16)
		cap *= 2;
	int *first = lora_xmalloc(cap * sizeof *first);
	for (size_t i = 0; i < cap; i++)
		first[i] = -1;
	for (int i = 0; i < b->n; i++) {
		if (d[i].size < 0)
			continue;
		size_t h = (size_t)((d[i].key ^ (uint64_t)d[i].size * 0x9e3779b97f4a7c15ULL) >> 7) & (cap - 1);
		for (; first[h] >= 0; h = (h + 1) & (cap - 1)) {
			int j = first[h];
			if (d[j].key == d[i].key && d[j].size == d[i].size &&
			    same_bytes(b->items[j].path, b->items[i].path)) {
				b->items[i].dup_of = j;
				break;
			}
		}
		if (b->items[i].dup_of < 0 && first[h] < 0)
			first[h] = i;
	}
	free(first);
	free(d);
}

/* ---- inputs and main ------------------------------------------------------------------------- */

static void add_item(batch *b, size_t *cap, const char *path, const char *pass)
{
	if ((size_t)b->n == *cap)
		b->items = lora_xrealloc(b->items, (*cap = *cap ? 2 * *cap : 64) * sizeof *b->items);
	b->items[b->n++] = (item){ .path = lora_xstrdup(path),
	                           .pass = pass ? lora_xstrdup(pass) : NULL, .dup_of = -1 };
}

static int parse_color(const char *s, uint8_t rgb[3])
{
	unsigned r, g, b;
	char end;
	if (strcmp(s, "white") == 0) { rgb[0] = rgb[1] = rgb[2] = 255; return 0; }
	if (strcmp(s, "black") == 0) { rgb[0] = rgb[1] = rgb[2] = 0; return 0; }
	if (*s == '#')
		s++;
	if (strlen(s) == 6 && strspn(s, "0123456789abcdefABCDEF") == 6 &&
	    sscanf(s, "%2x%2x%2x", &r, &g, &b) == 3)
		goto ok;
	if (sscanf(s, "%u,%u,%u%c", &r, &g, &b, &end) == 3 && r < 256 && g < 256 && b < 256)
		goto ok;
	return -1;
ok:
	rgb[0] = (uint8_t)r; rgb[1] = (uint8_t)g; rgb[2] = (uint8_t)b;
	return 0;
}

static long num(const char *opt, const char *s, long lo, long hi)
{
	long v;
	if (lora_parse_long(s, lo, hi, &v) < 0) {
		fprintf(stderr, "%s: %s: %s\n", lora_progname, opt, lora_errmsg());
		usage(2);
	}
	return v;
}

enum { O_BG = 256, O_BUCKET, O_BMAX, O_BMIN, O_BSTEP, O_DEDUPE, O_FILTER, O_FIT,
       O_MAXPIX, O_MINSIZE, O_NOUP, O_QUALITY, O_DRAFT };

int main(int argc, char **argv)
{
	lora_progname = "lora-resize";
	static const struct option longopts[] = {
		{ "background", required_argument, NULL, O_BG },
		{ "bucket", no_argument, NULL, O_BUCKET },
		{ "bucket-max", required_argument, NULL, O_BMAX },
		{ "bucket-min", required_argument, NULL, O_BMIN },
		{ "bucket-step", required_argument, NULL, O_BSTEP },
		{ "dedupe", no_argument, NULL, O_DEDUPE },
		{ "filter", required_argument, NULL, O_FILTER },
		{ "fit", no_argument, NULL, O_FIT },
		{ "help", no_argument, NULL, 'h' },
		{ "jobs", required_argument, NULL, 'j' },
		{ "jpeg-draft", no_argument, NULL, O_DRAFT },
		{ "max-pixels", required_argument, NULL, O_MAXPIX },
		{ "min-size", required_argument, NULL, O_MINSIZE },
		{ "no-upscale", no_argument, NULL, O_NOUP },
		{ "out", required_argument, NULL, 'o' },
		{ "quality", required_argument, NULL, O_QUALITY },
		{ "size", required_argument, NULL, 's' },
		{ NULL, 0, NULL, 0 },
	};
	options o = { .size = 512, .mode = MODE_CROP, .min_size = -1, .max_pixels = 100000000,
	              .bg = { 255, 255, 255 }, .filter = LORA_FILTER_LANCZOS,
	              .jobs = lora_nthreads() };
	int bmin = 256, bmax = 1024, bstep = 64, c, fit = 0, bucket = 0;
	while ((c = getopt_long(argc, argv, "hj:o:s:", longopts, NULL)) != -1) {
		switch (c) {
		case O_BG:
			if (parse_color(optarg, o.bg) < 0) {
				fprintf(stderr, "%s: --background: bad colour '%s' (want RRGGBB, r,g,b, "
				        "white or black)\n", lora_progname, optarg);
				usage(2);
			}
			break;
		case O_BUCKET: bucket = 1; break;
		case O_BMAX: bmax = (int)num("--bucket-max", optarg, 1, 1 << 16); break;
		case O_BMIN: bmin = (int)num("--bucket-min", optarg, 1, 1 << 16); break;
		case O_BSTEP: bstep = (int)num("--bucket-step", optarg, 1, 1 << 16); break;
		case O_DEDUPE: o.dedupe = 1; break;
		case O_FILTER: {
			int f = lora_filter_parse(optarg);
			if (f < 0) {
				fprintf(stderr, "%s: --filter: unknown filter '%s' (lanczos, bicubic, box)\n",
				        lora_progname, optarg);
				usage(2);
			}
			o.filter = (lora_filter)f;
			break;
		}
		case O_FIT: fit = 1; break;
		case 'h': usage(0); break;
		case 'j': o.jobs = (int)num("-j", optarg, 1, 1024); break;
		case O_DRAFT: o.jpeg_draft = 1; break;
		case O_MAXPIX: o.max_pixels = num("--max-pixels", optarg, 1, 1L << 40); break;
		case O_MINSIZE: o.min_size = num("--min-size", optarg, 0, 1 << 30); break;
		case O_NOUP: o.no_upscale = 1; break;
		case 'o': o.out_dir = optarg; break;
		case O_QUALITY: o.quality = (int)num("--quality", optarg, 1, 100); break;
		case 's': o.size = (int)num("--size", optarg, 8, 1 << 15); break;
		default: usage(2);
		}
	}
	if (!o.out_dir) {
		fprintf(stderr, "%s: missing -o dir\n", lora_progname);
		usage(2);
	}
	if (fit && bucket) {
		fprintf(stderr, "%s: --fit and --bucket do not mix\n", lora_progname);
		usage(2);
	}
	for (size_t n = strlen(o.out_dir); n > 1 && o.out_dir[n - 1] == '/'; n--)
		((char *)o.out_dir)[n - 1] = 0;          /* "out/" -> "out": clean paths */
	o.mode = bucket ? MODE_BUCKET : fit ? MODE_FIT : MODE_CROP;
	if (bucket && lora_buckets_init(&o.buckets, o.size, bmin, bmax, bstep, o.no_upscale) < 0) {
		fprintf(stderr, "%s: %s\n", lora_progname, lora_errmsg());
		usage(2);
	}
	struct stat st;
	if (stat(o.out_dir, &st) < 0) {
		if (mkdir(o.out_dir, 0777) < 0)
			lora_die("cannot create '%s':", o.out_dir);
	} else if (!S_ISDIR(st.st_mode)) {
		lora_die("'%s' is not a directory", o.out_dir);
	}

	batch b = { .o = &o };
	size_t cap = 0;
	if (optind < argc) {
		for (int i = optind; i < argc; i++)
			add_item(&b, &cap, argv[i], NULL);
	} else {
		char *line = NULL;
		size_t lcap = 0;
		ssize_t n;
		while ((n = getline(&line, &lcap, stdin)) > 0) {
			while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
				line[--n] = 0;
			if (n == 0)
				continue;
			char *tab = strchr(line, '\t');
			if (tab)
				*tab++ = 0;
			if (*line)
				add_item(&b, &cap, line, tab);
		}
		if (ferror(stdin))
			lora_die("cannot read standard input:");
		free(line);
	}
	assign_names(&b);
	if (o.dedupe)
		find_duplicates(&b);
	pthread_mutex_init(&b.lock, NULL);
	lora_parallel_for(b.n, o.jobs, work, &b);
	pthread_mutex_destroy(&b.lock);
	int dfd = open(o.out_dir, O_RDONLY | O_DIRECTORY);
	if (dfd < 0 || syncfs(dfd) < 0) {
		fprintf(stderr, "%s: cannot sync '%s': %s\n", lora_progname, o.out_dir, strerror(errno));
		b.failed = 1;
	}
	if (dfd >= 0)
		close(dfd);
	for (int i = 0; i < b.n; i++) {
		free(b.items[i].path);
		free(b.items[i].pass);
		free(b.items[i].out);
	}
	free(b.items);
	lora_buckets_free(&o.buckets);
	lora_stdout_close();
	return b.failed ? 1 : 0;
}
