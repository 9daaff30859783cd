/* One weight row against several tokens at once (prefill, batched decode, speculative verification).
 *
 * spill_vec_dot takes one row and one token. With a batch, the matmul used to call it once per token
 * while the row sat in L1: the bytes were read once, but the row was decoded (nibbles unpacked, its
 * scales converted) once per token, and batched steps were compute-bound at about the single-token
 * rate. Here a row's block is decoded once and multiplied with SPILL_DOTS_TILE tokens, and the
 * activations' block scales are converted to floats once per matmul (spill_dots_prepare).
 *
 * Each token's result is bit-identical to spill_vec_dot on that token (on one CPU: BF16's vdpbf16ps, where
 * the CPU has it, flushes subnormal sums that other CPUs' kernels keep, kernels/dots_bf16.c): the integer block sums are
 * exact, and the float steps (scale product, fused multiply-add per lane, the pairwise reduction, the
 * Q4_1 min term) are the same operations in the same order. So batching never changes a greedy token,
 * and tests/test_quant.c compares this with spill_vec_dot for every type, length and tile remainder.
 * F32, F16 and BF16 rows are widened to floats once for the tile's tokens (no scales to prepare),
 * two or three rows per tile, and against a single token four rows go together: their sums are independent
 * chains, so the FMA units need not wait out one chain's latency (that wait held 16-bit decode and
 * prefill below what memory and the FMA units allow).
 * The tiles are AVX2 (kernels/dots_avx2.c), used when kernels/cpu.c chose AVX2 for this CPU, and NEON
 * (kernels/dot_neon.h, the table's `tile`: one row against 4 tokens, nothing prepared); other types,
 * CPUs and architectures take the tokens one at a time, several rows at once where the chosen table
 * has a rows kernel (AVX2, NEON), else one row at a time. */
#include "dot.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define T SPILL_DOTS_TILE
/* the fewest tokens for which the AVX2 panel (kernels/dots_avx2.c) takes Q4_1, Q4_0 and Q8_0: where it beat the
   one-token rows kernel and the tiles on the matmul harness, rows 576 and 1536 wide (docs/results.md). Q8_0's
   lanes take one more instruction than Q4_1's (its signs), it lays out twice the bytes of the 4-bit panels
   and its tiles are the fastest, so its panel needs more tokens to pay for laying it out. A chunk of a
   batch's tokens goes to the panel only with as many (spill_vec_dots_panel). */
#define PANEL_FROM_AVX2(w) ((w) == SPILL_DT_Q8_0 ? 3 * T : 2)

static void dots_each(spill_dtype w, int64_t n, const void *wrow, const uint8_t *act, uint64_t stride, int nt,
                      float *out, int64_t ldo) {
    for (int t = 0; t < nt; t++) out[(int64_t)t * ldo] = spill_vec_dot(w, n, wrow, act + (uint64_t)t * stride);
}

int spill_dots_tiled(spill_dtype w) {
#if defined(SPILL_DOT_AVX2)
    /* asked once: spill_vec_dots asks for every row of every batched matmul */
    static atomic_int avx2; /* 0: not asked yet, 1: no, 2: yes */
    int a = atomic_load_explicit(&avx2, memory_order_relaxed);
    if (!a) {
        a = spill_isa_best() == SPILL_ISA_AVX2 ? 2 : 1;
        atomic_store_explicit(&avx2, a, memory_order_relaxed);
    }
    if (a == 2)
        return w == SPILL_DT_Q8_0 || w == SPILL_DT_Q4_0 || w == SPILL_DT_Q4_1 || w == SPILL_DT_F32 || w == SPILL_DT_F16 ||
               w == SPILL_DT_BF16 || w == SPILL_DT_Q4_K || w == SPILL_DT_Q6_K;
#endif
    (void)w;
    return 0;
}

/* the tiles that take something prepared once per matmul: the activations' block scales as floats
   (Q8_0, Q4_0, Q4_1), or F16 activations widened to floats (exactly; widening them in the tile, once
   per row, made F16 tiles half as fast as BF16's); with AVX-512 the F32, F16 and BF16 tiles' activations
   laid out in pairs of tokens (kernels/dots_avx512.c) */
static int wide512(spill_dtype w) {
#if defined(SPILL_DOT_AVX512)
    return spill_cpu_wide512(w);
#else
    (void)w;
    return 0;
#endif
}
/* the K-quants' VNNI tiles (kernels/dots_vnni.c), which take their activations laid out in pairs of tokens */
static int kq_vnni(spill_dtype w) {
#if defined(SPILL_DOT_AVX512_VNNI)
    return (w == SPILL_DT_Q4_K || w == SPILL_DT_Q6_K) && spill_cpu_avx512_vnni();
#else
    (void)w;
    return 0;
#endif
}
#if defined(SPILL_DOT_AVX2)
/* the Q8_0, Q4_0, Q4_1 panel of kernels/dots_vnni.c */
static int vnni_panel(spill_dtype w) {
#if defined(SPILL_DOT_AVX512_VNNI)
    return (w == SPILL_DT_Q8_0 || w == SPILL_DT_Q4_0 || w == SPILL_DT_Q4_1) && spill_dots_tiled(w) && spill_cpu_avx512_vnni();
#else
    (void)w;
    return 0;
#endif
}
#endif
static int scaled(spill_dtype w) {
    return (w == SPILL_DT_Q8_0 || w == SPILL_DT_Q4_0 || w == SPILL_DT_Q4_1 || w == SPILL_DT_F16 || wide512(w) ||
            kq_vnni(w)) &&
           spill_dots_tiled(w);
}

/* floats prepared per tile of T tokens */
static size_t per_tile(spill_dtype w, int64_t n) {
    if (!scaled(w)) return 0;
    if (w == SPILL_DT_BF16) return SPILL_BF16_TILE_FLOATS(n); /* scaled(): vdpbf16ps's tiles */
    if (w == SPILL_DT_F16 || wide512(w)) return (size_t)T * (size_t)n;
    if (kq_vnni(w)) return (size_t)(n / SPILL_QK_K) * SPILL_KQ_PREP;
    /* block scales; Q4_0 also the sums of its activations (16 lanes of 16 bits, or 8 of 32 for the VNNI
       tiles), per block and token; Q8_0 for the VNNI tiles its activations + 128 */
    int more = w == SPILL_DT_Q4_0;
#if defined(SPILL_DOT_AVX512_VNNI)
    /* and for the panel (kernels/dots_vnni.c) Q8_0's -128 * the lane sums */
    if (w == SPILL_DT_Q8_0 && spill_cpu_avx512_vnni()) return (size_t)(n / SPILL_QK) * (8 + 16 * T);
#endif
    return (size_t)(n / SPILL_QK) * (more ? 8 + 8 * T : 8);
}

size_t spill_dots_scales_len(spill_dtype w, int64_t n, int nt) {
    /* Q8_0, Q4_0 and Q4_1 also lay out a partial last tile (for the panels), BF16 with vdpbf16ps for its tile */
    int partial = w == SPILL_DT_Q8_0 || w == SPILL_DT_Q4_0 || w == SPILL_DT_Q4_1 || (w == SPILL_DT_BF16 && wide512(w));
    return (size_t)(partial ? (nt + T - 1) / T : nt / T) * per_tile(w, n);
}

void spill_dots_prepare(spill_dtype w, int64_t n, const void *act, uint64_t stride, int nt, float *sc) {
#if defined(SPILL_DOT_AVX2)
    if (!scaled(w)) return;
#if defined(SPILL_DOT_AVX512_VNNI)
    if (kq_vnni(w)) {
        spill_dots_prepare_kquant_vnni(n, act, stride, nt, sc);
        return;
    }
#endif
    spill_dots_prepare_avx2(w, n, act, stride, nt, sc);
#else
    (void)w, (void)n, (void)act, (void)stride, (void)nt, (void)sc;
#endif
}

void spill_vec_dots(spill_dtype w, int64_t n, const void *wrows, uint64_t row_bytes, int nr, const void *act,
                    uint64_t stride, int nt, const float *sc, float *out, int64_t ldo) {
    const uint8_t *w8 = wrows, *a8 = act;
    int t = 0;
#if defined(SPILL_DOT_AVX2)
    if (spill_dots_tiled(w)) {
        size_t pt = per_tile(w, n); /* once per call, not once per tile */
#if defined(SPILL_DOT_AVX512_VNNI)
        if (sc && (w == SPILL_DT_Q8_0 || w == SPILL_DT_Q4_0 || w == SPILL_DT_Q4_1) && spill_cpu_avx512_vnni())
            for (; t + 2 * T <= nt; t += 2 * T) /* two tiles at once */
                spill_dots_quant_vnni(w, 2, n, w8, row_bytes, nr, a8 + (uint64_t)t * stride, stride,
                                      sc + (size_t)(t / T) * pt, pt, out + (int64_t)t * ldo, ldo);
        if (sc && kq_vnni(w)) {
            for (; t + 2 * T <= nt; t += 2 * T) /* two tiles at once */
                spill_dots_kquant_vnni(w, 2, n, w8, row_bytes, nr, sc + (size_t)(t / T) * pt, pt, out + (int64_t)t * ldo, ldo);
            for (; t + T <= nt; t += T)
                spill_dots_kquant_vnni(w, 1, n, w8, row_bytes, nr, sc + (size_t)(t / T) * pt, pt, out + (int64_t)t * ldo, ldo);
        }
#endif
#if defined(SPILL_DOT_AVX512)
        if (sc && wide512(w))
            for (; t + 2 * T <= nt; t += 2 * T) /* two tiles at once */
                spill_dots_wide_avx512(w, 2, n, w8, row_bytes, nr, sc + (size_t)(t / T) * pt, pt, out + (int64_t)t * ldo, ldo);
#endif
        if (sc && w == SPILL_DT_Q4_0 && !t) /* without VNNI: the rows unpacked once for the tiles */
            t = spill_dots_q4_0_unpacked_avx2(n, w8, row_bytes, nr, a8, stride, nt, sc, pt, out, ldo);
        if (sc || !pt)
            for (; t + T <= nt; t += T)
                spill_dots4_avx2(w, n, w8, row_bytes, nr, a8 + (uint64_t)t * stride, stride,
                                 pt ? sc + (size_t)(t / T) * pt : NULL, out + (int64_t)t * ldo, ldo);
#if defined(SPILL_DOT_AVX512_BF16)
        if (sc && t < nt && w == SPILL_DT_BF16 && wide512(w)) { /* the last 1-3 tokens: a tile padded with zeros */
            spill_dots_bf16_avx512(1, nt - t, n, w8, row_bytes, nr, sc + (size_t)(t / T) * pt, pt, out + (int64_t)t * ldo, ldo);
            t = nt;
        }
#endif
    }
#else
    (void)sc;
#endif
#if defined(SPILL_DOT_AVX512_VNNI)
    /* the tokens past the tiles (or fewer than a tile), 8 rows and up to 3 tokens at once */
    if (t < nt && (w == SPILL_DT_Q8_0 || w == SPILL_DT_Q4_0 || w == SPILL_DT_Q4_1) && spill_dots_tiled(w) &&
        spill_cpu_avx512_vnni()) {
        int done = spill_dots_quant_rows_multi_vnni(w, n, w8, row_bytes, nr, a8 + (uint64_t)t * stride, stride, nt - t,
                                                    out + (int64_t)t * ldo, ldo);
        if (done) { /* the rows left over, one token at a time below */
            w8 += (uint64_t)done * row_bytes, out += done, nr -= done;
            if (!nr) return;
        }
    }
#endif
    for (; t + T <= nt; t += T) /* a table's own tiles (NEON), which need nothing prepared */
        if (!spill_vec_dot_tile(w, n, w8, row_bytes, nr, a8 + (uint64_t)t * stride, stride, out + (int64_t)t * ldo, ldo))
            break;
    for (; t < nt; t++)
        if (!spill_vec_dot_rows(w, n, w8, row_bytes, nr, a8 + (uint64_t)t * stride, out + (int64_t)t * ldo)) break;
    for (int r = 0; r < nr; r++)
        dots_each(w, n, w8 + (uint64_t)r * row_bytes, a8 + (uint64_t)t * stride, stride, nt - t, out + (int64_t)t * ldo + r,
                  ldo);
}

int spill_dots_rows_together(spill_dtype w, int batch) {
#if defined(SPILL_DOT_AVX512_VNNI)
    if ((w == SPILL_DT_Q8_0 || w == SPILL_DT_Q4_0 || w == SPILL_DT_Q4_1 || w == SPILL_DT_Q4_K || w == SPILL_DT_Q6_K) &&
        spill_dots_tiled(w) && spill_cpu_avx512_vnni())
        return 8;
#endif
    /* AVX2's F32 and F16 tiles take 3 rows at a time (kernels/dots_avx2.c) */
    if ((w == SPILL_DT_F16 || w == SPILL_DT_F32) && batch >= T && spill_dots_tiled(w) && !wide512(w)) return 6;
    return SPILL_DOTS_ROWS;
}

/* which panel a matmul of w takes, asked once per call of the functions below */
typedef enum { PANEL_NONE, PANEL_KQ_VNNI, PANEL_VNNI, PANEL_AVX2 } panel_kind;
static panel_kind panel_of(spill_dtype w) {
#if defined(SPILL_DOT_AVX2)
    /* SPILL_PANEL=0 keeps to the tiles (benchmarks compare both; the bits are the same), asked once */
    static atomic_int off; /* 0: not asked yet, 1: panels, 2: tiles only */
    int o = atomic_load_explicit(&off, memory_order_relaxed);
    if (!o) {
        const char *e = getenv("SPILL_PANEL");
        o = e && !strcmp(e, "0") ? 2 : 1;
        atomic_store_explicit(&off, o, memory_order_relaxed);
    }
    if (o != 1) return PANEL_NONE;
    if (kq_vnni(w)) return PANEL_KQ_VNNI;
    if (vnni_panel(w)) return PANEL_VNNI;
    /* the AVX2 panel (kernels/dots_avx2.c) where the VNNI one is not taken */
    if ((w == SPILL_DT_Q8_0 || w == SPILL_DT_Q4_0 || w == SPILL_DT_Q4_1) && spill_dots_tiled(w)) return PANEL_AVX2;
#else
    (void)w;
#endif
    return PANEL_NONE;
}

int spill_dots_panel_ok(spill_dtype w) { return panel_of(w) != PANEL_NONE; }

size_t spill_dots_panel_bytes(spill_dtype w, int64_t n) {
    (void)n; /* no panels on this CPU's build */
    switch (panel_of(w)) {
#if defined(SPILL_DOT_AVX512_VNNI)
    case PANEL_KQ_VNNI: return spill_dots_kpanel_bytes(n);
    case PANEL_VNNI: return spill_dots_qpanel_bytes(n);
#endif
#if defined(SPILL_DOT_AVX2)
    case PANEL_AVX2: return spill_dots_qpanel_bytes_avx2(w, n);
#endif
    default: return 0;
    }
}

int spill_dots_panel_from(spill_dtype w) {
    switch (panel_of(w)) {
    case PANEL_NONE: return 0;
    case PANEL_AVX2: return PANEL_FROM_AVX2(w);
    default: return w == SPILL_DT_Q4_1 ? T : 2 * T;
    }
}

void spill_vec_dots_panel(spill_dtype w, int64_t n, const void *wrows, uint64_t row_bytes, int nr, const void *act,
                          uint64_t stride, int nt, const float *sc, void *panel, float *out, int64_t ldo) {
    int t = 0;
#if defined(SPILL_DOT_AVX2)
    SPILL_ASSERT(nr >= 1 && nr <= SPILL_DOTS_PANEL);
    const panel_kind k = sc ? panel_of(w) : PANEL_NONE;
    if (k != PANEL_NONE && nt >= (k == PANEL_AVX2 ? PANEL_FROM_AVX2(w) : T)) {
        /* the tokens spill_dots_prepare laid out: the K-quants' whole tiles, the others' every token */
        t = k == PANEL_KQ_VNNI ? nt / T * T : nt;
        /* the rows after these (the next panel's, where the caller goes on), fetched while these compute */
        const uint8_t *next = (const uint8_t *)wrows + (uint64_t)nr * row_bytes;
        const uint64_t next_len = (uint64_t)SPILL_DOTS_PANEL * row_bytes;
        const size_t pt = per_tile(w, n);
        switch (k) {
#if defined(SPILL_DOT_AVX512_VNNI)
        case PANEL_KQ_VNNI:
            spill_dots_kpanel_pack_vnni(w, n, wrows, row_bytes, nr, panel);
            spill_dots_kpanel_vnni(w, n, panel, nr, act, stride, t, sc, pt, out, ldo, next, next_len);
            break;
        case PANEL_VNNI:
            spill_dots_panel_pack_vnni(w, n, wrows, row_bytes, nr, panel);
            spill_dots_panel_vnni(w, n, panel, nr, act, stride, t, sc, pt, out, ldo, next, next_len);
            break;
#endif
        default:
            SPILL_ASSERT(k == PANEL_AVX2);
            spill_dots_panel_pack_avx2(w, n, wrows, row_bytes, nr, panel);
            spill_dots_panel_avx2(w, n, panel, nr, act, stride, t, sc, pt, out, ldo, next, next_len);
            break;
        }
    }
#else
    (void)panel, (void)sc;
#endif
    if (t < nt)
        spill_vec_dots(w, n, wrows, row_bytes, nr, (const uint8_t *)act + (uint64_t)t * stride, stride, nt - t, NULL,
                       out + (int64_t)t * ldo, ldo);
}
