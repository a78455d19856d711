/* tfevents.h: TensorBoard event files with scalar curves (FORMATS.md §7).
 *
 * Writes logdir/events.out.tfevents.<unix_seconds>.<hostname>: TFRecord
 * framing (length, masked CRC-32C of the length, an Event protobuf, masked
 * CRC-32C of the data), a first Event with file_version "brain.Event:2", then
 * one Event per scalar (wall_time, step, summary{value{tag, simple_value}}),
 * byte for byte what tensorboardX's add_scalar writes. Each record is
 * written with one write() and flushed, so TensorBoard can tail the file and
 * a kill leaves at most a truncated last record (which the reader skips).
 *
 *     lora_tfevents *ev = lora_tfevents_open("out/logs", NULL);   // now
 *     lora_tfevents_scalar(ev, "train/loss", 120, 1.9342f, lora_tfevents_now());
 *     lora_tfevents_close(ev);
 *
 * Ownership: open returns a writer freed by close. Failure: open and scalar
 * return NULL / -1 with lora_errmsg naming the file.
 */
#ifndef LORA_TFEVENTS_H
#define LORA_TFEVENTS_H
#include <stddef.h>
#include <stdint.h>

typedef struct lora_tfevents lora_tfevents;

/* Create a new event file in logdir (which must exist). name: the file name
 * to use, or NULL for events.out.tfevents.<now>.<hostname>. The file-version
 * record is written at once with wall_time now. */
lora_tfevents *lora_tfevents_open(const char *logdir, const char *name);
/* The same with an explicit wall time for the first record (tests). */
lora_tfevents *lora_tfevents_open_at(const char *logdir, const char *name, double wall_time);
/* Append one scalar event. 0/-1. */
int lora_tfevents_scalar(lora_tfevents *ev, const char *tag, int64_t step, float value,
                         double wall_time);
/* The path of the file (owned by ev). */
const char *lora_tfevents_path(const lora_tfevents *ev);
int lora_tfevents_close(lora_tfevents *ev);   /* NULL ok; 0/-1 */

/* Seconds since the epoch, as a double (time.time()). */
double lora_tfevents_now(void);

/* ---- the pieces, for tests ---------------------------------------------------- */

uint32_t lora_crc32c(const void *data, size_t n);        /* Castagnoli */
uint32_t lora_crc32c_masked(const void *data, size_t n); /* TFRecord mask */
/* Frame an Event payload as a TFRecord into out (n + 16 bytes). */
void lora_tfrecord_frame(uint8_t *out, const uint8_t *payload, size_t n);
/* Serialise an Event: file_version when tag is NULL (version string in
 * `version`), else a scalar. Returns the payload length; out must hold
 * 64 + strlen(tag or version) bytes. */
size_t lora_tfevents_encode(uint8_t *out, double wall_time, int64_t step, const char *tag,
                            float value, const char *version);

#endif
