/* dtype.h: the element types of safetensors, and F32 <-> F16 <-> BF16.
 *
 *     lora_dtype d = lora_dtype_parse("BF16");      // LORA_DTYPE_BF16, or -1
 *     uint16_t h = lora_f32_to_bf16(1.5f);          // round to nearest even
 *     lora_convert(dst, LORA_DTYPE_F32, src, LORA_DTYPE_BF16, n);
 *
 * Conversions round to nearest, ties to even; NaN stays NaN (quiet), Inf stays
 * Inf, values past the target's range become Inf, F16 subnormals are exact.
 */
#ifndef LORA_DTYPE_H
#define LORA_DTYPE_H
#include <stddef.h>
#include <stdint.h>

/* In the reference writer's alignment order (safetensors' Dtype enum). */
typedef enum {
	LORA_DTYPE_BOOL,
	LORA_DTYPE_F4,
	LORA_DTYPE_F6_E2M3,
	LORA_DTYPE_F6_E3M2,
	LORA_DTYPE_U8,
	LORA_DTYPE_I8,
	LORA_DTYPE_F8_E5M2,
	LORA_DTYPE_F8_E4M3,
	LORA_DTYPE_F8_E8M0,
	LORA_DTYPE_F8_E4M3FNUZ,
	LORA_DTYPE_F8_E5M2FNUZ,
	LORA_DTYPE_I16,
	LORA_DTYPE_U16,
	LORA_DTYPE_F16,
	LORA_DTYPE_BF16,
	LORA_DTYPE_I32,
	LORA_DTYPE_U32,
	LORA_DTYPE_F32,
	LORA_DTYPE_C64,
	LORA_DTYPE_F64,
	LORA_DTYPE_I64,
	LORA_DTYPE_U64,
	LORA_DTYPE_COUNT
} lora_dtype;

const char *lora_dtype_name(lora_dtype d);   /* "BF16" */
int lora_dtype_parse(const char *s);         /* lora_dtype, or -1 if unknown */
int lora_dtype_bits(lora_dtype d);           /* 1..64: BOOL 8, F4 4, F6 6, F16 16 */
int lora_dtype_is_float(lora_dtype d);       /* F16, BF16, F32, F64 and the F8s */

float lora_f16_to_f32(uint16_t h);
uint16_t lora_f32_to_f16(float f);
float lora_bf16_to_f32(uint16_t h);
uint16_t lora_f32_to_bf16(float f);
/* One FP8 byte (E4M3 "fn": no Inf, 0x7f/0xff NaN; E5M2 IEEE-like) to f32. */
float lora_f8_to_f32(uint8_t v, lora_dtype d);

/* Convert n elements between any two of F32, F16, BF16, F64 and the F8s
 * (as source), plus integer sources (I8..U64, BOOL) to F32. src may be
 * unaligned. Returns 0, or -1 (lora_err) for an unsupported pair. */
int lora_convert(void *dst, lora_dtype dst_type, const void *src, lora_dtype src_type, size_t n);

#endif
