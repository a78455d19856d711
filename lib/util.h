/* util.h: errors, memory, atomic files, threads and time for every lib/ module.
 *
 * Errors (STYLE.md rule 5). Broken invariants: LORA_ASSERT aborts with
 * file:line. Everything in lib/ that can fail returns -1 or NULL after calling
 * lora_err(), and the caller reads the message with lora_errmsg(). lib/ never
 * exits; only cmd/ calls lora_die().
 *
 *     st_file *f = st_open(path);
 *     if (!f) lora_die("%s", lora_errmsg());   // "lora-inspect: 'x': truncated"
 *
 * Memory: lora_xmalloc and friends abort with the size on failure; free with
 * free(). Files: lora_afile writes to "<path>.tmp.XXXXXX" in the same folder and
 * renames on commit, so a reader never sees a half-written file.
 */
#ifndef LORA_UTIL_H
#define LORA_UTIL_H
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* ---- errors ------------------------------------------------------------- */

/* Set this thread's error message and return -1. A format ending in ':'
 * gets ": strerror(errno)" appended (git's convention). lora_errmsg() may
 * be an argument: lora_err("'%s': %s", path, lora_errmsg()). */
int lora_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The last message set by lora_err on this thread ("" if none). */
const char *lora_errmsg(void);

#define LORA_ASSERT(x) do { if (!(x)) lora_assert_fail(#x, __FILE__, __LINE__); } while (0)
void lora_assert_fail(const char *expr, const char *file, int line) __attribute__((noreturn));

/* ---- for cmd/ only ------------------------------------------------------- */

extern const char *lora_progname;      /* set by main: lora_progname = "lora-x" */
/* "<prog>: msg\n" on stderr, exit(1). A format ending in ':' appends strerror. */
void lora_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
/* "<prog>: warning: msg\n" on stderr. */
void lora_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Close stdout and die if any write to it failed (full disk, closed pipe). */
void lora_stdout_close(void);
/* Parse a whole decimal integer / float in [lo, hi]; 0 ok, -1 + lora_err. */
int lora_parse_long(const char *s, long lo, long hi, long *out);
int lora_parse_double(const char *s, double lo, double hi, double *out);

/* ---- memory ---------------------------------------------------------------- */

void *lora_xmalloc(size_t n);          /* abort on failure; free() */
void *lora_xcalloc(size_t n, size_t size);
void *lora_xrealloc(void *p, size_t n);
char *lora_xstrdup(const char *s);
char *lora_xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- atomic files ------------------------------------------------------------ */

typedef struct {
	FILE *fp;       /* write through this */
	int fd;         /* or this (same file) */
	char *path;     /* final name */
	char *tmp;      /* temporary name in the same folder */
	int nosync;     /* set to 1 to skip the fsync in commit (see below) */
} lora_afile;

/* Create a temporary file beside path. 0 or -1 (lora_err names path). */
int lora_afile_open(lora_afile *f, const char *path);
/* Flush, fsync, close and rename onto path. On any failure the temporary is
 * removed, path is untouched, and -1 is returned. Frees f's strings.
 * With f->nosync the fsync is skipped: a reader still never sees a partial
 * file, but after a power cut the file may be empty. For batches of many
 * small files whose caller syncs the file system once at the end. */
int lora_afile_commit(lora_afile *f);
/* Close and remove the temporary; path untouched. Safe on a committed f. */
void lora_afile_abort(lora_afile *f);

/* Read a whole file; *len gets its size; NUL-terminated; free(). NULL on error. */
char *lora_read_file(const char *path, size_t *len);
/* Text as Python reads it with "utf-8-sig" and universal newlines, for the
 * tools that read text files. lora_bom_len: 3 when s starts with a UTF-8
 * byte-order mark (it marks the encoding and is not text), else 0.
 * lora_newlines: \r\n and a lone \r become \n in place; returns the new
 * length and NUL-terminates (s has room: the length only shrinks). */
size_t lora_bom_len(const char *s, size_t n);
size_t lora_newlines(char *s, size_t n);

/* ---- threads and time -------------------------------------------------------- */

/* Threads to use: $LORA_THREADS if set, else the online CPU count. */
int lora_nthreads(void);
/* Run fn(ctx, i, tid) for i in [0, n) on nthreads threads (tid in
 * [0, nthreads)); items are handed out dynamically. Returns when all ran. */
void lora_parallel_for(int n, int nthreads, void (*fn)(void *ctx, int i, int tid), void *ctx);
/* Monotonic seconds. */
double lora_time(void);

#endif
