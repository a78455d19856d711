/* util.c: see util.h. */
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- errors ------------------------------------------------------------- */

static _Thread_local char errbuf[1024];

static void vformat(char *buf, size_t n, const char *fmt, va_list ap, int err)
{
	vsnprintf(buf, n, fmt, ap);
	size_t len = strlen(fmt);
	if (len && fmt[len - 1] == ':') {
		size_t l = strlen(buf);
		snprintf(buf + l, n - l, " %s", strerror(err));
	}
}

int lora_err(const char *fmt, ...)
{
	/* formatted aside: an argument may be lora_errmsg() itself, the
	 * message a caller adds its file name to */
	char buf[sizeof errbuf];
	int e = errno;
	va_list ap;
	va_start(ap, fmt);
	vformat(buf, sizeof buf, fmt, ap, e);
	va_end(ap);
	memcpy(errbuf, buf, sizeof buf);
	errno = e;
	return -1;
}

const char *lora_errmsg(void) { return errbuf; }

void lora_assert_fail(const char *expr, const char *file, int line)
{
	fprintf(stderr, "%s:%d: assertion failed: %s\n", file, line, expr);
	abort();
}

/* ---- for cmd/ only ------------------------------------------------------- */

const char *lora_progname = "lora";

void lora_die(const char *fmt, ...)
{
	char buf[2048];
	int e = errno;
	va_list ap;
	va_start(ap, fmt);
	vformat(buf, sizeof buf, fmt, ap, e);
	va_end(ap);
	fflush(stdout);
	fprintf(stderr, "%s: %s\n", lora_progname, buf);
	exit(1);
}

void lora_warn(const char *fmt, ...)
{
	char buf[2048];
	int e = errno;
	va_list ap;
	va_start(ap, fmt);
	vformat(buf, sizeof buf, fmt, ap, e);
	va_end(ap);
	fprintf(stderr, "%s: warning: %s\n", lora_progname, buf);
}

void lora_stdout_close(void)
{
	if (fflush(stdout) != 0 || ferror(stdout) || fclose(stdout) != 0)
		lora_die("error writing to standard output:");
}

int lora_parse_long(const char *s, long lo, long hi, long *out)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (!*s || *end || errno)
		return lora_err("'%s' is not an integer", s);
	if (v < lo || v > hi)
		return lora_err("%ld is out of range [%ld, %ld]", v, lo, hi);
	*out = v;
	return 0;
}

int lora_parse_double(const char *s, double lo, double hi, double *out)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (!*s || *end || errno || isnan(v))
		return lora_err("'%s' is not a number", s);
	if (v < lo || v > hi)
		return lora_err("%g is out of range [%g, %g]", v, lo, hi);
	*out = v;
	return 0;
}

/* ---- memory ---------------------------------------------------------------- */

static void oom(size_t n)
{
	fprintf(stderr, "%s: out of memory allocating %zu bytes\n", lora_progname, n);
	abort();
}

void *lora_xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		oom(n);
	return p;
}

void *lora_xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);
	if (!p)
		oom(n * size);
	return p;
}

void *lora_xrealloc(void *p, size_t n)
{
	p = realloc(p, n ? n : 1);
	if (!p)
		oom(n);
	return p;
}

char *lora_xstrdup(const char *s)
{
	size_t n = strlen(s) + 1;
	return memcpy(lora_xmalloc(n), s, n);
}

char *lora_xasprintf(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *s;
	if (vasprintf(&s, fmt, ap) < 0)
		oom(strlen(fmt));
	va_end(ap);
	return s;
}

/* ---- atomic files ------------------------------------------------------------ */

int lora_afile_open(lora_afile *f, const char *path)
{
	memset(f, 0, sizeof *f);
	f->fd = -1;
	f->tmp = lora_xasprintf("%s.tmp.XXXXXX", path);
	f->fd = mkstemp(f->tmp);
	if (f->fd < 0) {
		lora_err("cannot create '%s':", f->tmp);
		free(f->tmp);
		f->tmp = NULL;
		return -1;
	}
	fchmod(f->fd, 0644);
	f->fp = fdopen(f->fd, "wb");
	if (!f->fp) {
		lora_err("cannot open '%s':", f->tmp);
		close(f->fd);
		unlink(f->tmp);
		free(f->tmp);
		f->tmp = NULL;
		return -1;
	}
	f->path = lora_xstrdup(path);
	return 0;
}

int lora_afile_commit(lora_afile *f)
{
	int rc = 0;
	if (fflush(f->fp) != 0 || ferror(f->fp))
		rc = lora_err("cannot write '%s':", f->path);
	else if (!f->nosync && fsync(f->fd) != 0 && errno != EINVAL)
		rc = lora_err("cannot write '%s':", f->path);
	if (fclose(f->fp) != 0 && rc == 0)
		rc = lora_err("cannot write '%s':", f->path);
	f->fp = NULL;
	f->fd = -1;
	if (rc == 0 && rename(f->tmp, f->path) != 0)
		rc = lora_err("cannot rename '%s' to '%s':", f->tmp, f->path);
	if (rc != 0)
		unlink(f->tmp);
	free(f->tmp);
	free(f->path);
	f->tmp = f->path = NULL;
	return rc;
}

void lora_afile_abort(lora_afile *f)
{
	if (f->fp)
		fclose(f->fp);
	f->fp = NULL;
	f->fd = -1;
	if (f->tmp)
		unlink(f->tmp);
	free(f->tmp);
	free(f->path);
	f->tmp = f->path = NULL;
}

char *lora_read_file(const char *path, size_t *len)
{
	FILE *fp = fopen(path, "rb");
	if (!fp) {
		lora_err("cannot open '%s':", path);
		return NULL;
	}
	size_t cap = 1 << 16, n = 0;
	char *buf = lora_xmalloc(cap);
	for (;;) {
		if (n + 1 >= cap)
			buf = lora_xrealloc(buf, cap *= 2);
		size_t r = fread(buf + n, 1, cap - n - 1, fp);
		n += r;
		if (r == 0)
			break;
	}
	if (ferror(fp)) {
		lora_err("cannot read '%s':", path);
		fclose(fp);
		free(buf);
		return NULL;
	}
	fclose(fp);
	buf[n] = 0;
	if (len)
		*len = n;
	return buf;
}

size_t lora_bom_len(const char *s, size_t n)
{
	return n >= 3 && !memcmp(s, "\xEF\xBB\xBF", 3) ? 3 : 0;
}

size_t lora_newlines(char *s, size_t n)
{
	size_t w = 0;
	for (size_t r = 0; r < n; r++) {
		char c = s[r];
		s[w++] = c == '\r' ? '\n' : c;
		if (c == '\r' && r + 1 < n && s[r + 1] == '\n')
			r++;
	}
	s[w] = 0;
	return w;
}

/* ---- threads and time -------------------------------------------------------- */

int lora_nthreads(void)
{
	const char *s = getenv("LORA_THREADS");
	if (s && atoi(s) > 0)
		return atoi(s);
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (int)n : 1;
}

typedef struct {
	void (*fn)(void *ctx, int i, int tid);
	void *ctx;
	int n;
	atomic_int next;
} pfor_job;

typedef struct {
	pfor_job *job;
	int tid;
} pfor_arg;

static void *pfor_worker(void *p)
{
	pfor_arg *a = p;
	for (;;) {
		int i = atomic_fetch_add(&a->job->next, 1);
		if (i >= a->job->n)
			break;
		a->job->fn(a->job->ctx, i, a->tid);
	}
	return NULL;
}

void lora_parallel_for(int n, int nthreads, void (*fn)(void *ctx, int i, int tid), void *ctx)
{
	if (nthreads > n)
		nthreads = n;
	if (nthreads <= 1) {
		for (int i = 0; i < n; i++)
			fn(ctx, i, 0);
		return;
	}
	pfor_job job = { fn, ctx, n, 0 };
	pthread_t th[nthreads];
	pfor_arg args[nthreads];
	for (int t = 0; t < nthreads; t++) {
		args[t] = (pfor_arg){ &job, t };
		if (t > 0 && pthread_create(&th[t], NULL, pfor_worker, &args[t]) != 0)
			LORA_ASSERT(!"pthread_create failed");
	}
	pfor_worker(&args[0]);
	for (int t = 1; t < nthreads; t++)
		pthread_join(th[t], NULL);
}

double lora_time(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}
