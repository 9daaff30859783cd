/* Which instruction sets the CPU kernels may use: what this build compiled (CMake adds the SIMD
 * files the compiler can build for the target, whatever the build machine is) and what this CPU
 * reports, asked once. x86-64: CPUID for AVX2, FMA and F16C, and XGETBV for whether the OS saves the
 * 256-bit registers. aarch64: NEON is part of the architecture; the int8 dot product (SDOT) is in
 * the kernel's HWCAP (Neoverse V2, i.e. Grace, has it). */
#include "dot.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif
#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#endif

const char *spill_isa_name(spill_isa isa) {
    switch (isa) {
    case SPILL_ISA_PORTABLE: return "portable";
    case SPILL_ISA_AVX2: return "avx2";
    case SPILL_ISA_NEON: return "neon";
    case SPILL_ISA_NEON_DOTPROD: return "neon-dotprod";
    default: return "unknown";
    }
}

const spill_dot_table *spill_dot_table_of(spill_isa isa) {
    switch (isa) {
    case SPILL_ISA_PORTABLE: return &spill_dot_portable;
#if defined(SPILL_DOT_AVX2)
    case SPILL_ISA_AVX2: return &spill_dot_avx2;
#endif
#if defined(SPILL_DOT_NEON)
    case SPILL_ISA_NEON: return &spill_dot_neon;
#endif
#if defined(SPILL_DOT_NEON_DOTPROD)
    case SPILL_ISA_NEON_DOTPROD: return &spill_dot_neon_dotprod;
#endif
    default: return NULL;
    }
}

#if defined(__x86_64__) || defined(__i386__)
static int cpu_has_avx2_fma_f16c(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    int fma = (c >> 12) & 1, osxsave = (c >> 27) & 1, avx = (c >> 28) & 1, f16c = (c >> 29) & 1;
    if (!(fma && osxsave && avx && f16c)) return 0;
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    (void)hi;
    if ((lo & 6) != 6) return 0; /* the OS saves the SSE and AVX state */
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    return (b >> 5) & 1;
}
#endif

#if defined(SPILL_DOT_AVX512)
/* AVX-512 F, VL and DQ, with the OS saving the opmask and all 32 512-bit registers (XCR0 bits 5-7) */
static int cpu_has_avx512(void) {
    if (!cpu_has_avx2_fma_f16c()) return 0;
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    int f = (b >> 16) & 1, dq = (b >> 17) & 1, vl = (b >> 31) & 1;
    if (!(f && dq && vl)) return 0;
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    (void)hi;
    return (lo & 0xe6) == 0xe6;
}

/* and BW and VNNI (vpdpbusd) */
static int cpu_has_avx512_vnni(void) {
    unsigned a, b, c, d;
    if (!cpu_has_avx512() || !__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    return ((b >> 30) & 1) && ((c >> 11) & 1);
}

static int avx512_off(void) {
    const char *e = getenv("SPILL_AVX512"); /* 0: keep to the AVX2 tiles (tests compare both) */
    return e && !strcmp(e, "0");
}

/* A CPU feature asked once (CPUID traps to the hypervisor in a VM and costs microseconds; getenv
 * walks the environment) and kept in *known: 0 not asked yet, 1 no, 2 yes. */
static int asked_once(atomic_int *known, int (*has)(void)) {
    int k = atomic_load_explicit(known, memory_order_relaxed);
    if (!k) {
        k = has() ? 2 : 1;
        atomic_store_explicit(known, k, memory_order_relaxed);
    }
    return k == 2;
}
static int avx512_vnni_usable(void) { return !avx512_off() && cpu_has_avx512_vnni(); }
static int avx512_usable(void) { return !avx512_off() && cpu_has_avx512(); }

int spill_cpu_avx512_vnni(void) {
    static atomic_int known;
    return asked_once(&known, avx512_vnni_usable);
}

int spill_cpu_avx512(void) {
    static atomic_int known;
    return asked_once(&known, avx512_usable);
}

/* AVX-512 BF16 (CPUID leaf 7, sub-leaf 1, EAX bit 5) with AVX-512 F, VL, DQ, BW, and vdpbf16ps giving the
   bits kernels/dot.h defines */
static int avx512_bf16_usable(void) {
#if defined(SPILL_DOT_AVX512_BF16)
    const char *e = getenv("SPILL_DPBF16"); /* 0: the fused multiply-adds (tests compare both) */
    if ((e && !strcmp(e, "0")) || !avx512_vnni_usable()) return 0; /* VNNI's check includes BW */
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || a < 1) return 0; /* no sub-leaf 1 */
    if (!__get_cpuid_count(7, 1, &a, &b, &c, &d) || !((a >> 5) & 1)) return 0;
    return spill_dpbf16_matches();
#else
    return 0;
#endif
}

int spill_cpu_avx512_bf16(void) {
    static atomic_int known;
    return asked_once(&known, avx512_bf16_usable);
}

int spill_cpu_wide512(spill_dtype w) {
    if (w == SPILL_DT_F32 || w == SPILL_DT_F16) return spill_cpu_avx512();
    return w == SPILL_DT_BF16 && spill_cpu_avx512_bf16();
}
#endif

int spill_kernels_avx512(void) {
#if defined(SPILL_DOT_AVX512)
    return spill_isa_best() == SPILL_ISA_AVX2 && spill_cpu_avx512();
#else
    return 0;
#endif
}

int spill_kernels_avx512_bf16(void) {
#if defined(SPILL_DOT_AVX512)
    return spill_isa_best() == SPILL_ISA_AVX2 && spill_cpu_avx512_bf16();
#else
    return 0;
#endif
}

int spill_kernels_avx512_vnni(void) {
#if defined(SPILL_DOT_AVX512) && defined(SPILL_DOT_AVX512_VNNI)
    return spill_isa_best() == SPILL_ISA_AVX2 && spill_cpu_avx512_vnni();
#else
    return 0;
#endif
}

void spill_scores_f32(int64_t n, const float *rows, int64_t rs, int nr, const float *q, int64_t qs, int nq, float *out,
                      int64_t ldo) {
#if defined(SPILL_DOT_AVX512)
    if (spill_kernels_avx512()) {
        spill_scores_f32_avx512(n, rows, rs, nr, q, qs, nq, out, ldo);
        return;
    }
#endif
#if defined(SPILL_DOT_AVX2)
    if (spill_isa_best() == SPILL_ISA_AVX2 && spill_scores_f32_avx2(n, rows, rs, nr, q, qs, nq, out, ldo)) return;
#endif
    spill_vec_dots(SPILL_DT_F32, n, rows, sizeof(float) * (uint64_t)rs, nr, q, sizeof(float) * (uint64_t)qs, nq, NULL, out,
                   ldo);
}

void spill_attn_values(float *const *out, const float *att, int64_t ld, const int *lens, int nq, const float *v, int64_t vs,
                       int p0, int np, int hd) {
#if defined(SPILL_DOT_AVX512)
    if (spill_kernels_avx512()) {
        spill_attn_values_avx512(out, att, ld, lens, nq, v, vs, p0, np, hd);
        return;
    }
#endif
#if defined(SPILL_DOT_AVX2)
    if (spill_isa_best() == SPILL_ISA_AVX2) {
        spill_attn_values_avx2(out, att, ld, lens, nq, v, vs, p0, np, hd);
        return;
    }
#endif
#if defined(SPILL_DOT_NEON)
    spill_attn_values_neon(out, att, ld, lens, nq, v, vs, p0, np, hd);
#else
    spill_attn_values_c(out, att, ld, lens, nq, v, vs, p0, np, hd);
#endif
}

void spill_widen_rows(spill_dtype t, const void *src, uint64_t stride, int nr, int n, float *dst) {
#if defined(SPILL_DOT_AVX2)
    if (spill_isa_best() == SPILL_ISA_AVX2) {
        spill_widen_rows_avx2(t, src, stride, nr, n, dst);
        return;
    }
#endif
#if defined(SPILL_DOT_NEON)
    spill_widen_rows_neon(t, src, stride, nr, n, dst);
#else
    spill_widen_rows_c(t, src, stride, nr, n, dst);
#endif
}

static int cpu_has(spill_isa isa) {
    switch (isa) {
    case SPILL_ISA_PORTABLE: return 1;
#if defined(__x86_64__) || defined(__i386__)
    case SPILL_ISA_AVX2: return cpu_has_avx2_fma_f16c();
#endif
#if defined(__aarch64__)
    case SPILL_ISA_NEON: return 1;
#if defined(__linux__) && defined(HWCAP_ASIMDDP)
    case SPILL_ISA_NEON_DOTPROD: return (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
#endif
#endif
    default: return 0;
    }
}

int spill_isa_available(spill_isa isa) {
    if ((int)isa < 0 || (int)isa >= SPILL_ISA_COUNT) return 0;
    static atomic_int known[SPILL_ISA_COUNT];
    int k = atomic_load_explicit(&known[isa], memory_order_relaxed);
    if (!k) { /* asked once per ISA */
        k = spill_dot_table_of(isa) != NULL && cpu_has(isa) ? 2 : 1;
        atomic_store_explicit(&known[isa], k, memory_order_relaxed);
    }
    return k == 2;
}

spill_isa spill_isa_best(void) {
    /* asked once: the attention kernels ask per KV block */
    static atomic_int known; /* 0 not asked yet, else the ISA + 1 */
    int k = atomic_load_explicit(&known, memory_order_relaxed);
    if (k) return (spill_isa)(k - 1);
    static const spill_isa order[] = {SPILL_ISA_NEON_DOTPROD, SPILL_ISA_NEON, SPILL_ISA_AVX2};
    spill_isa best = SPILL_ISA_PORTABLE;
    for (size_t i = 0; i < sizeof order / sizeof *order; i++)
        if (spill_isa_available(order[i])) {
            best = order[i];
            break;
        }
    atomic_store_explicit(&known, (int)best + 1, memory_order_relaxed);
    return best;
}
