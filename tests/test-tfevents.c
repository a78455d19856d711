/* test-tfevents.c: the TensorBoard writer against FORMATS.md §7.5's byte
 * vectors and against a file tensorboardX wrote for the same scalars
 * (tests/fixtures/tfevents/tbx.tfevents, made by tests/gen/tfevents.py).
 * With --write PATH it only writes those scalars to PATH (the generator
 * then reads our file back with TensorBoard's own reader). */
#include "test.h"
#include "tfevents.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char LONG[201];
static const struct { const char *tag; int64_t step; float v; double wt; } POINTS[] = {
	{"train/loss", 0, 2.5f, 1700000001.25}, {"train/lr", 1, 0.0002f, 1700000002.5},
	{"loss", 10, 0.5f, 1700000003.0}, {"eval/loss", 300, -1.75f, 1700000004.125},
	{"train/loss", 70000, 1e-30f, 1700000005.0}, {LONG, 123456789, 3.0e38f, 1700000006.0},
};
#define T0 1700000000.5

static int write_points(const char *dir, const char *name)
{
	lora_tfevents *ev = lora_tfevents_open_at(dir, name, T0);
	if (!ev)
		return -1;
	for (size_t i = 0; i < sizeof POINTS / sizeof POINTS[0]; i++)
		if (lora_tfevents_scalar(ev, POINTS[i].tag, POINTS[i].step, POINTS[i].v, POINTS[i].wt) < 0)
			return -1;
	return lora_tfevents_close(ev);
}

static int hexeq(const uint8_t *got, const char *hex)
{
	size_t n = 0;
	for (const char *p = hex; *p; ) {
		while (*p == ' ' || *p == '|') p++;
		if (!*p) break;
		unsigned v;
		if (sscanf(p, "%2x", &v) != 1 || got[n++] != v)
			return 0;
		p += 2;
	}
	return 1;
}

int main(int argc, char **argv)
{
	memset(LONG, 'x', 200);
	if (argc == 3 && !strcmp(argv[1], "--write")) {
		char *dir = lora_xstrdup(argv[2]), *slash = strrchr(dir, '/');
		LORA_ASSERT(slash);
		*slash = 0;
		if (write_points(dir, slash + 1) < 0) {
			fprintf(stderr, "%s\n", lora_errmsg());
			return 1;
		}
		free(dir);
		return 0;
	}

	/* CRC-32C and mask, FORMATS.md §7.2 / §7.5 */
	test_cond("crc32c check value", lora_crc32c("123456789", 9) == 0xE3069283u);
	uint8_t zero[8] = {0};
	test_cond("masked crc of 8 zero bytes", lora_crc32c_masked(zero, 8) == 0x07980329u);

	/* §7.5 byte-exact records */
	uint8_t pay[128], rec[160];
	size_t n = lora_tfevents_encode(pay, 1700000000.5, 0, NULL, 0, "brain.Event:2");
	test_cond("version payload is 24 bytes", n == 24);
	lora_tfrecord_frame(rec, pay, n);
	test_cond("version record", hexeq(rec,
		"18 00 00 00 00 00 00 00 | a3 7f 4b 22 |"
		"09 00 00 20 40 fc 54 d9 41 1a 0d 62 72 61 69 6e 2e 45 76 65 6e 74 3a 32"
		"| 2b 35 31 10"));
	n = lora_tfevents_encode(pay, 1700000000.5, 10, "loss", 0.5f, NULL);
	test_cond("scalar payload is 26 bytes", n == 26);
	lora_tfrecord_frame(rec, pay, n);
	test_cond("scalar record", hexeq(rec,
		"1a 00 00 00 00 00 00 00 | 12 9b d8 2d |"
		"09 00 00 20 40 fc 54 d9 41 10 0a 2a 0d 0a 0b 0a 04 6c 6f 73 73 15 00 00 00 3f"
		"| 3e ce e2 a6"));

	/* whole file against tensorboardX */
	const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	char name[64];
	snprintf(name, sizeof name, "events.out.tfevents.test%d", (int)getpid());
	test_cond("write", write_points(tmp, name) == 0);
	char *path = lora_xasprintf("%s/%s", tmp, name);
	char *fix = lora_xasprintf("%s/tfevents/tbx.tfevents",
	                           getenv("FIXTURES") ? getenv("FIXTURES") : "tests/fixtures");
	size_t la, lb;
	char *a = lora_read_file(path, &la), *b = lora_read_file(fix, &lb);
	test_cond("fixture readable", b != NULL);
	test_cond("same size as tensorboardX's file", a && b && la == lb);
	test_cond("same bytes as tensorboardX's file", a && b && la == lb && !memcmp(a, b, la));
	unlink(path);
	free(a);
	free(b);
	free(path);
	free(fix);

	/* errors */
	test_cond("bad dir", !lora_tfevents_open("/nonexistent/dir", NULL) &&
	                     strstr(lora_errmsg(), "/nonexistent/dir/events.out.tfevents."));
	return test_report();
}
