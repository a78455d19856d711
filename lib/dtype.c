/* dtype.c: see dtype.h. */
#include "dtype.h"

#include <math.h>
#include <string.h>

#include "util.h"

/* ---- names ----------------------------------------------------------------- */

static const struct {
	const char *name;
	int bits;
} info[LORA_DTYPE_COUNT] = {
	[LORA_DTYPE_BOOL] = { "BOOL", 8 },
	[LORA_DTYPE_F4] = { "F4", 4 },
	[LORA_DTYPE_F6_E2M3] = { "F6_E2M3", 6 },
	[LORA_DTYPE_F6_E3M2] = { "F6_E3M2", 6 },
	[LORA_DTYPE_U8] = { "U8", 8 },
	[LORA_DTYPE_I8] = { "I8", 8 },
	[LORA_DTYPE_F8_E5M2] = { "F8_E5M2", 8 },
	[LORA_DTYPE_F8_E4M3] = { "F8_E4M3", 8 },
	[LORA_DTYPE_F8_E8M0] = { "F8_E8M0", 8 },
	[LORA_DTYPE_F8_E4M3FNUZ] = { "F8_E4M3FNUZ", 8 },
	[LORA_DTYPE_F8_E5M2FNUZ] = { "F8_E5M2FNUZ", 8 },
	[LORA_DTYPE_I16] = { "I16", 16 },
	[LORA_DTYPE_U16] = { "U16", 16 },
	[LORA_DTYPE_F16] = { "F16", 16 },
	[LORA_DTYPE_BF16] = { "BF16", 16 },
	[LORA_DTYPE_I32] = { "I32", 32 },
	[LORA_DTYPE_U32] = { "U32", 32 },
	[LORA_DTYPE_F32] = { "F32", 32 },
	[LORA_DTYPE_C64] = { "C64", 64 },
	[LORA_DTYPE_F64] = { "F64", 64 },
	[LORA_DTYPE_I64] = { "I64", 64 },
	[LORA_DTYPE_U64] = { "U64", 64 },
};

const char *lora_dtype_name(lora_dtype d)
{
	return (unsigned)d < LORA_DTYPE_COUNT ? info[d].name : "?";
}

int lora_dtype_parse(const char *s)
{
	for (int d = 0; d < LORA_DTYPE_COUNT; d++)
		if (strcmp(s, info[d].name) == 0)
			return d;
	return -1;
}

int lora_dtype_bits(lora_dtype d)
{
	return (unsigned)d < LORA_DTYPE_COUNT ? info[d].bits : 0;
}

int lora_dtype_is_float(lora_dtype d)
{
	switch (d) {
	case LORA_DTYPE_F16: case LORA_DTYPE_BF16: case LORA_DTYPE_F32: case LORA_DTYPE_F64:
	case LORA_DTYPE_F8_E5M2: case LORA_DTYPE_F8_E4M3: case LORA_DTYPE_F8_E8M0:
	case LORA_DTYPE_F8_E4M3FNUZ: case LORA_DTYPE_F8_E5M2FNUZ:
		return 1;
	default:
		return 0;
	}
}

/* ---- scalar conversions ---------------------------------------------------------- */

static inline uint32_t f2u(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float u2f(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

float lora_f16_to_f32(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000) << 16;
	uint32_t e = (h >> 10) & 0x1f, m = h & 0x3ff;
	if (e == 0) {                       /* zero or subnormal: m * 2^-24 */
		float v = (float)m * 0x1p-24f;
		return sign ? -v : v;
	}
	if (e == 31)                        /* Inf / NaN, payload kept */
		return u2f(sign | 0x7f800000u | (m << 13));
	return u2f(sign | ((e + 112) << 23) | (m << 13));
}

uint16_t lora_f32_to_f16(float f)
{
	uint32_t x = f2u(f);
	uint16_t sign = (x >> 16) & 0x8000;
	uint32_t ax = x & 0x7fffffffu;
	if (ax > 0x7f800000u)               /* NaN: keep it quiet and keep top payload */
		return sign | 0x7e00 | ((ax >> 13) & 0x3ff);
	if (ax >= 0x477ff000u)              /* >= 65520 rounds to Inf (and Inf) */
		return sign | 0x7c00;
	if (ax < 0x38800000u) {             /* below 2^-14: F16 subnormal or zero */
		/* Adding 0.5 puts the F16 subnormal unit (2^-24) in the last
		 * mantissa bit, so the FPU rounds to nearest even for us. */
		float t = u2f(ax) + 0.5f;
		return sign | (uint16_t)(f2u(t) - 0x3f000000u);
	}
	uint32_t odd = (ax >> 13) & 1;
	ax += 0xc8000fffu + odd;            /* rebias 127 -> 15, round to nearest even */
	return sign | (uint16_t)(ax >> 13);
}

float lora_bf16_to_f32(uint16_t h)
{
	return u2f((uint32_t)h << 16);
}

uint16_t lora_f32_to_bf16(float f)
{
	uint32_t x = f2u(f);
	if ((x & 0x7fffffffu) > 0x7f800000u)
		return (uint16_t)((x >> 16) | 0x40);   /* quiet NaN */
	x += 0x7fffu + ((x >> 16) & 1);
	return (uint16_t)(x >> 16);
}

/* A generic minifloat: ebits exponent bits, mbits mantissa bits, bias. */
static float minifloat(uint32_t v, int ebits, int mbits, int bias)
{
	uint32_t m = v & ((1u << mbits) - 1);
	uint32_t e = (v >> mbits) & ((1u << ebits) - 1);
	float r = e == 0 ? ldexpf((float)m, 1 - bias - mbits)
	                 : ldexpf((float)(m | (1u << mbits)), (int)e - bias - mbits);
	return (v >> (ebits + mbits)) & 1 ? -r : r;
}

float lora_f8_to_f32(uint8_t v, lora_dtype d)
{
	switch (d) {
	case LORA_DTYPE_F8_E4M3:            /* "fn": no Inf, S.1111.111 is NaN */
		if ((v & 0x7f) == 0x7f)
			return NAN;
		return minifloat(v, 4, 3, 7);
	case LORA_DTYPE_F8_E5M2:            /* IEEE-like */
		if ((v & 0x7c) == 0x7c)
			return (v & 3) ? NAN : (v & 0x80 ? -INFINITY : INFINITY);
		return minifloat(v, 5, 2, 15);
	case LORA_DTYPE_F8_E4M3FNUZ:        /* "fnuz": 0x80 is the only NaN */
		if (v == 0x80)
			return NAN;
		return minifloat(v, 4, 3, 8);
	case LORA_DTYPE_F8_E5M2FNUZ:
		if (v == 0x80)
			return NAN;
		return minifloat(v, 5, 2, 16);
	case LORA_DTYPE_F8_E8M0:            /* a power-of-two scale */
		return v == 0xff ? NAN : ldexpf(1.0f, (int)v - 127);
	default:
		return NAN;
	}
}

/* ---- array conversion ---------------------------------------------------------- */

/* Element i of src (unaligned) as double. Returns 0, or -1 for a type that
 * has no scalar value here (sub-byte floats, C64). */
static int load(const unsigned char *p, lora_dtype t, size_t i, double *out)
{
	union { uint8_t u8; int8_t i8; uint16_t u16; int16_t i16; uint32_t u32; int32_t i32;
		uint64_t u64; int64_t i64; float f; double d; } u;
	switch (t) {
	case LORA_DTYPE_BOOL: *out = p[i] != 0; return 0;
	case LORA_DTYPE_U8: *out = p[i]; return 0;
	case LORA_DTYPE_I8: memcpy(&u.i8, p + i, 1); *out = u.i8; return 0;
	case LORA_DTYPE_F8_E5M2: case LORA_DTYPE_F8_E4M3: case LORA_DTYPE_F8_E8M0:
	case LORA_DTYPE_F8_E4M3FNUZ: case LORA_DTYPE_F8_E5M2FNUZ:
		*out = lora_f8_to_f32(p[i], t); return 0;
	case LORA_DTYPE_I16: memcpy(&u.i16, p + 2 * i, 2); *out = u.i16; return 0;
	case LORA_DTYPE_U16: memcpy(&u.u16, p + 2 * i, 2); *out = u.u16; return 0;
	case LORA_DTYPE_F16: memcpy(&u.u16, p + 2 * i, 2); *out = lora_f16_to_f32(u.u16); return 0;
	case LORA_DTYPE_BF16: memcpy(&u.u16, p + 2 * i, 2); *out = lora_bf16_to_f32(u.u16); return 0;
	case LORA_DTYPE_I32: memcpy(&u.i32, p + 4 * i, 4); *out = u.i32; return 0;
	case LORA_DTYPE_U32: memcpy(&u.u32, p + 4 * i, 4); *out = u.u32; return 0;
	case LORA_DTYPE_F32: memcpy(&u.f, p + 4 * i, 4); *out = u.f; return 0;
	case LORA_DTYPE_F64: memcpy(&u.d, p + 8 * i, 8); *out = u.d; return 0;
	case LORA_DTYPE_I64: memcpy(&u.i64, p + 8 * i, 8); *out = (double)u.i64; return 0;
	case LORA_DTYPE_U64: memcpy(&u.u64, p + 8 * i, 8); *out = (double)u.u64; return 0;
	default: return -1;
	}
}

/* F16 -> F32 in bulk. On x86-64 with F16C (every CPU since 2012) the
 * hardware converts 8 at a time, exactly (NaNs come out quiet); elsewhere
 * the scalar function. 4x faster than the scalar loop for lora-inspect -s. */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#include <immintrin.h>
/* AVX usable (CPU and OS) and F16C present. clang 14 has no "f16c" for
 * __builtin_cpu_supports, so F16C is read from CPUID leaf 1, ECX bit 29. */
static int have_f16c(void)
{
	static _Atomic int cached = -1;     /* lora_parallel_for threads call this */
	if (cached < 0) {
		unsigned a, b, c, d;
		cached = __builtin_cpu_supports("avx") && __get_cpuid(1, &a, &b, &c, &d) &&
		         (c & (1u << 29));
	}
	return cached;
}

__attribute__((target("avx,f16c")))
static size_t f16_to_f32_f16c(float *o, const unsigned char *s, size_t n)
{
	size_t i = 0;
	for (; i + 8 <= n; i += 8)
		_mm256_storeu_ps(o + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(s + 2 * i))));
	return i;
}
#endif

static void f16_to_f32_bulk(float *o, const unsigned char *s, size_t n)
{
	size_t i = 0;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
	if (have_f16c())
		i = f16_to_f32_f16c(o, s, n);
#endif
	for (; i < n; i++) {
		uint16_t h;
		memcpy(&h, s + 2 * i, 2);
		o[i] = lora_f16_to_f32(h);
	}
}

int lora_convert(void *dst, lora_dtype dt, const void *src, lora_dtype st, size_t n)
{
	const unsigned char *s = src;
	unsigned char *d = dst;
	/* Fast paths for the pairs model loading and saving use. */
	if (dt == st && (dt == LORA_DTYPE_F32 || dt == LORA_DTYPE_F16 ||
	                 dt == LORA_DTYPE_BF16 || dt == LORA_DTYPE_F64)) {
		memmove(dst, src, n * (lora_dtype_bits(dt) / 8));
		return 0;
	}
	if (dt == LORA_DTYPE_F32 && (st == LORA_DTYPE_BF16 || st == LORA_DTYPE_F16)) {
		float *o = dst;
		if (st == LORA_DTYPE_F16) {
			f16_to_f32_bulk(o, s, n);
			return 0;
		}
		for (size_t i = 0; i < n; i++) {
			uint16_t h;
			memcpy(&h, s + 2 * i, 2);
			o[i] = lora_bf16_to_f32(h);
		}
		return 0;
	}
	if (st == LORA_DTYPE_F32 && (dt == LORA_DTYPE_BF16 || dt == LORA_DTYPE_F16)) {
		for (size_t i = 0; i < n; i++) {
			float f;
			memcpy(&f, s + 4 * i, 4);
			uint16_t h = dt == LORA_DTYPE_BF16 ? lora_f32_to_bf16(f) : lora_f32_to_f16(f);
			memcpy(d + 2 * i, &h, 2);
		}
		return 0;
	}
	if (dt != LORA_DTYPE_F32 && dt != LORA_DTYPE_F64 && dt != LORA_DTYPE_F16 &&
	    dt != LORA_DTYPE_BF16)
		return lora_err("cannot convert %s to %s", lora_dtype_name(st), lora_dtype_name(dt));
	for (size_t i = 0; i < n; i++) {
		double v;
		if (load(s, st, i, &v) != 0)
			return lora_err("cannot convert %s to %s", lora_dtype_name(st),
			                lora_dtype_name(dt));
		float f = (float)v;
		uint16_t h;
		switch (dt) {
		case LORA_DTYPE_F32: memcpy(d + 4 * i, &f, 4); break;
		case LORA_DTYPE_F64: memcpy(d + 8 * i, &v, 8); break;
		case LORA_DTYPE_F16: h = lora_f32_to_f16(f); memcpy(d + 2 * i, &h, 2); break;
		default: h = lora_f32_to_bf16(f); memcpy(d + 2 * i, &h, 2); break;
		}
	}
	return 0;
}
