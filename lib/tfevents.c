/* tfevents.c: see tfevents.h. Hand-rolled protobuf for the three messages
 * we need, and the TFRecord framing. */
#include "tfevents.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

/* ---- CRC-32C (reflected polynomial 0x82F63B78), table driven -------------- */

static uint32_t crc_table[256];

static void crc_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = (c >> 1) ^ (c & 1 ? 0x82F63B78u : 0);
		crc_table[i] = c;
	}
}

uint32_t lora_crc32c(const void *data, size_t n)
{
	static int ready;
	if (!__atomic_load_n(&ready, __ATOMIC_ACQUIRE)) {
		crc_init();                 /* idempotent: racing threads write the same table */
		__atomic_store_n(&ready, 1, __ATOMIC_RELEASE);
	}
	const uint8_t *p = data;
	uint32_t c = 0xFFFFFFFFu;
	for (size_t i = 0; i < n; i++)
		c = crc_table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
	return c ^ 0xFFFFFFFFu;
}

uint32_t lora_crc32c_masked(const void *data, size_t n)
{
	uint32_t c = lora_crc32c(data, n);
	return ((c >> 15) | (c << 17)) + 0xA282EAD8u;
}

static void put_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

void lora_tfrecord_frame(uint8_t *out, const uint8_t *payload, size_t n)
{
	put_le64(out, n);
	put_le32(out + 8, lora_crc32c_masked(out, 8));
	memcpy(out + 12, payload, n);
	put_le32(out + 12 + n, lora_crc32c_masked(payload, n));
}

/* ---- protobuf wire format ---------------------------------------------------- */

static size_t varint(uint8_t *p, uint64_t v)
{
	size_t n = 0;
	while (v >= 0x80) {
		p[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	p[n++] = (uint8_t)v;
	return n;
}

size_t lora_tfevents_encode(uint8_t *out, double wall_time, int64_t step, const char *tag,
                            float value, const char *version)
{
	size_t n = 0;
	uint64_t bits;
	memcpy(&bits, &wall_time, 8);
	out[n++] = 0x09;                            /* Event.wall_time, fixed64 */
	put_le64(out + n, bits);
	n += 8;
	if (!tag) {
		size_t l = strlen(version);
		out[n++] = 0x1A;                        /* Event.file_version */
		n += varint(out + n, l);
		memcpy(out + n, version, l);
		return n + l;
	}
	if (step) {                                 /* proto3: 0 is omitted */
		out[n++] = 0x10;                        /* Event.step, varint */
		n += varint(out + n, (uint64_t)step);
	}
	size_t tl = strlen(tag);
	uint8_t tmp[16];
	size_t value_len = 1 + varint(tmp, tl) + tl + 5;        /* tag + simple_value */
	size_t summary_len = 1 + varint(tmp, value_len) + value_len;
	out[n++] = 0x2A;                            /* Event.summary */
	n += varint(out + n, summary_len);
	out[n++] = 0x0A;                            /* Summary.value */
	n += varint(out + n, value_len);
	out[n++] = 0x0A;                            /* Value.tag */
	n += varint(out + n, tl);
	memcpy(out + n, tag, tl);
	n += tl;
	out[n++] = 0x15;                            /* Value.simple_value, fixed32 */
	uint32_t fb;
	memcpy(&fb, &value, 4);
	put_le32(out + n, fb);
	return n + 4;
}

/* ---- the writer ------------------------------------------------------------------ */

struct lora_tfevents {
	int fd;
	char *path;
};

double lora_tfevents_now(void)
{
	struct timeval tv;
	gettimeofday(&tv, NULL);
	return (double)tv.tv_sec + tv.tv_usec * 1e-6;
}

static int write_event(lora_tfevents *ev, const uint8_t *payload, size_t n)
{
	uint8_t stackbuf[512];
	uint8_t *rec = n + 16 <= sizeof stackbuf ? stackbuf : lora_xmalloc(n + 16);
	lora_tfrecord_frame(rec, payload, n);
	size_t off = 0;
	int rc = 0;
	while (off < n + 16) {
		ssize_t w = write(ev->fd, rec + off, n + 16 - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			rc = lora_err("cannot write '%s':", ev->path);
			break;
		}
		off += (size_t)w;
	}
	if (rec != stackbuf)
		free(rec);
	return rc;
}

lora_tfevents *lora_tfevents_open_at(const char *logdir, const char *name, double wall_time)
{
	char host[256] = "localhost";
	if (gethostname(host, sizeof host - 1) < 0)
		strcpy(host, "localhost");
	host[sizeof host - 1] = 0;
	lora_tfevents *ev = lora_xcalloc(1, sizeof *ev);
	ev->path = name ? lora_xasprintf("%s/%s", logdir, name)
	                : lora_xasprintf("%s/events.out.tfevents.%lld.%s", logdir,
	                                 (long long)wall_time, host);
	ev->fd = open(ev->path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
	if (ev->fd < 0) {
		lora_err("cannot create '%s':", ev->path);
		free(ev->path);
		free(ev);
		return NULL;
	}
	uint8_t buf[128];
	size_t n = lora_tfevents_encode(buf, wall_time, 0, NULL, 0, "brain.Event:2");
	if (write_event(ev, buf, n) < 0) {
		lora_tfevents_close(ev);
		return NULL;
	}
	return ev;
}

lora_tfevents *lora_tfevents_open(const char *logdir, const char *name)
{
	return lora_tfevents_open_at(logdir, name, lora_tfevents_now());
}

int lora_tfevents_scalar(lora_tfevents *ev, const char *tag, int64_t step, float value,
                         double wall_time)
{
	size_t tl = strlen(tag);
	if (tl > 4096)
		return lora_err("'%s': tag too long", ev->path);
	uint8_t stackbuf[256];
	uint8_t *buf = 64 + tl <= sizeof stackbuf ? stackbuf : lora_xmalloc(64 + tl);
	size_t n = lora_tfevents_encode(buf, wall_time, step, tag, value, NULL);
	int rc = write_event(ev, buf, n);
	if (buf != stackbuf)
		free(buf);
	return rc;
}

const char *lora_tfevents_path(const lora_tfevents *ev) { return ev->path; }

int lora_tfevents_close(lora_tfevents *ev)
{
	if (!ev)
		return 0;
	int rc = 0;
	if (ev->fd >= 0 && close(ev->fd) < 0)
		rc = lora_err("cannot close '%s':", ev->path);
	free(ev->path);
	free(ev);
	return rc;
}
