/* Shared by every layer: error reporting, invariant checks, overflow-safe arithmetic, half floats.
 * Nothing here allocates or touches a device. */
#ifndef SPILL_COMMON_H
#define SPILL_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Memory tiers: the vocabulary shared by alloc/ (which places memory) and policies/ (which decides). */
typedef enum spill_tier {
    SPILL_TIER_HBM = 0,  /* GPU memory */
    SPILL_TIER_HOST = 1, /* CPU memory (LPDDR on Grace, DDR on x86) */
    SPILL_TIER_COUNT
} spill_tier;

/* Placement advice bits, carried from a plan (policies/) to the allocator (alloc/). */
enum {
    SPILL_PLACE_READ_MOSTLY = 1u << 0, /* cudaMemAdviseSetReadMostly where the backend has it */
    SPILL_PLACE_GPU_READS = 1u << 1,   /* the GPU reads it in place (accessed-by GPU) */
    SPILL_PLACE_CPU_READS = 1u << 2,   /* the CPU reads it in place (accessed-by CPU) */
    SPILL_PLACE_FAULTS = 1u << 3,      /* no preferred location: pages migrate to whoever faults on them */
};

/* An expected failure carries one line that names the file/flag, the value and the limit. */
typedef struct spill_err {
    char msg[1024];
} spill_err;

#if defined(__GNUC__)
#define SPILL_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define SPILL_PRINTF(a, b)
#endif

/* Always returns -1 so that `return spill_err_set(err, ...)` reads naturally. err may be NULL. */
int spill_err_set(spill_err *err, const char *fmt, ...) SPILL_PRINTF(2, 3);

/* Broken invariants (never bad input) abort with file, line and the failed expression. */
#define SPILL_ASSERT(x)                                                                         \
    do {                                                                                        \
        if (!(x)) {                                                                             \
            fprintf(stderr, "spill: %s:%d: invariant failed: %s\n", __FILE__, __LINE__, #x);    \
            abort();                                                                            \
        }                                                                                       \
    } while (0)

/* Overflow-safe size arithmetic: return 0 on success, -1 on overflow. */
static inline int spill_add_u64(uint64_t a, uint64_t b, uint64_t *out) {
    return __builtin_add_overflow(a, b, out) ? -1 : 0;
}
static inline int spill_mul_u64(uint64_t a, uint64_t b, uint64_t *out) {
    return __builtin_mul_overflow(a, b, out) ? -1 : 0;
}
static inline uint64_t spill_align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

/* IEEE half and bfloat16 conversions (exact for the widening direction). */
static inline float spill_fp16_to_fp32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ff;
    uint32_t bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: normalise */
            int e = -1;
            do {
                e++;
                man <<= 1;
            } while ((man & 0x400) == 0);
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ff) << 13);
        }
    } else if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (man << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* Round to nearest even, as the F16C instruction does. */
static inline uint16_t spill_fp32_to_fp16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t absx = x & 0x7fffffff;
    if (absx >= 0x7f800000u) /* inf or nan */
        return (uint16_t)(sign | 0x7c00 | (absx > 0x7f800000u ? 0x200 : 0));
    if (absx >= 0x477ff000u) /* rounds to >= 65520: overflow to inf */
        return (uint16_t)(sign | 0x7c00);
    if (absx < 0x38800000u) { /* result is subnormal or zero */
        if (absx < 0x33000000u) return (uint16_t)sign;
        uint32_t e = absx >> 23;
        uint32_t m = (absx & 0x7fffff) | 0x800000;
        /* value = m * 2^(e-150); the half subnormal unit is 2^-24, so q = m * 2^(e-126) */
        int shift = (int)(126 - e); /* 14..24 */
        uint32_t q = m >> shift;
        uint32_t rem = m & ((1u << shift) - 1);
        uint32_t half = 1u << (shift - 1);
        if (rem > half || (rem == half && (q & 1))) q++;
        return (uint16_t)(sign | q);
    }
    uint32_t e = (absx >> 23) - 127 + 15;
    uint32_t m = absx & 0x7fffff;
    uint32_t h = (e << 10) | (m >> 13);
    uint32_t rem = m & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) h++;
    return (uint16_t)(sign | h);
}

static inline float spill_bf16_to_fp32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static inline uint16_t spill_fp32_to_bf16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffff) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40); /* quiet nan */
    return (uint16_t)((x + 0x7fff + ((x >> 16) & 1)) >> 16);
}

/* Parse a size with an optional K/M/G/T suffix (powers of 1024). Returns 0 or -1. */
int spill_parse_size(const char *s, uint64_t *out);

/* Monotonic clock in seconds. */
double spill_now(void);

#ifdef __cplusplus
}
#endif
#endif
