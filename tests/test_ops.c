/* The element-wise ops of the forward pass (kernels/ops.c): spill_expf against libm's exp, softmax and
 * SwiGLU against a double reference, and their vectorized loops against the scalar definition bit for
 * bit (the compiler turns their loops into AVX-512, AVX2 or NEON code; every lane must do what the
 * scalar code says, which is what makes the results the same on every CPU). */
#include "spill_kernels.h"
#include "test_util.h"

#include <float.h>
#include <math.h>

static float ulp_of(double v) { return (float)(nextafterf((float)fabs(v), INFINITY) - (float)fabs(v)); }

/* within 2 ulp of the exact value over the whole normal range, exactly 1 at 0, the edges as documented */
static void test_expf_accuracy(void **s) {
    (void)s;
    double worst = 0;
    float at = 0;
    for (float x = -87.3f; x < 88.7f; x += 1.0f / 4096) { /* ~720,000 points, every binade of the result */
        double want = exp((double)x);
        float got = spill_expf(x);
        double e = fabs((double)got - want) / ulp_of(want);
        if (e > worst) worst = e, at = x;
    }
    for (int i = 0; i < 200000; i++) { /* small |x|: r near 0, where the polynomial's first terms decide */
        float x = ((float)i - 100000.0f) * 1e-6f;
        double want = exp((double)x), e = fabs((double)spill_expf(x) - want) / ulp_of(want);
        if (e > worst) worst = e, at = x;
    }
    printf("spill_expf: worst %.3f ulp at %g\n", worst, (double)at);
    assert_true(worst <= 2.0);
    assert_true(spill_expf(0.0f) == 1.0f);
    assert_true(spill_expf(-0.0f) == 1.0f);
    assert_true(spill_expf(-INFINITY) == 0.0f);
    assert_true(spill_expf(-100.0f) == 0.0f);
    assert_true(spill_expf(INFINITY) == INFINITY);
    assert_true(spill_expf(89.0f) == INFINITY);
    assert_true(isnan(spill_expf(NAN)));
    assert_true(spill_expf(88.7f) > 1e38f && spill_expf(88.7f) < INFINITY);
    assert_true(spill_expf(-87.3f) > 0.0f && spill_expf(-87.3f) >= FLT_MIN);
}

static uint64_t rng = 88172645463325252ull;
static float frand(float lo, float hi) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return lo + (hi - lo) * (float)(rng >> 40) / (float)(1 << 24);
}

/* softmax: the scalar definition (kernels/ops.c) bit for bit at every length around the vector widths,
   and the exact softmax within a few ulp */
static void test_softmax(void **s) {
    (void)s;
    for (int n = 1; n <= 300; n += n < 40 ? 1 : 13) {
        float x[300], got[300], want[300];
        float scale = 0.125f;
        for (int i = 0; i < n; i++) x[i] = frand(-400, 400); /* scaled: -50..50, some weights under 2^-126 */
        memcpy(got, x, sizeof(float) * (size_t)n);
        spill_softmax(got, n, scale);
        /* the definition, one value at a time */
        float max = -INFINITY;
        for (int i = 0; i < n; i++) {
            want[i] = x[i] * scale;
            max = want[i] > max ? want[i] : max;
        }
        double acc[8] = {0};
        for (int i = 0; i < n; i++) acc[i % 8] += (double)(want[i] = spill_expf(want[i] - max));
        float inv = (float)(1.0 / (((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]))));
        for (int i = 0; i < n; i++) want[i] *= inv;
        assert_memory_equal(got, want, sizeof(float) * (size_t)n);
        /* against the exact softmax */
        /* of the same arguments (x * scale - max, rounded to float as the kernel has them) */
        double sum = 0, total = 0;
        for (int i = 0; i < n; i++) sum += exp((double)(x[i] * scale - max));
        for (int i = 0; i < n; i++) {
            double p = exp((double)(x[i] * scale - max)) / sum;
            if (!(fabs(got[i] - p) <= 4 * ulp_of(p) + 1e-38)) printf("n %d i %d got %a want %a\n", n, i, (double)got[i], p);
            assert_true(fabs(got[i] - p) <= 4 * ulp_of(p) + 1e-38);
            total += got[i];
        }
        assert_true(fabs(total - 1.0) < 1e-5);
    }
    float one[1] = {-3e38f}; /* a single score, however large, has all the weight */
    spill_softmax(one, 1, 1.0f);
    assert_true(one[0] == 1.0f);
}

static void test_swiglu(void **s) {
    (void)s;
    enum { N = 1001 };
    float g[N], u[N], got[N];
    for (int i = 0; i < N; i++) g[i] = frand(-100, 100), u[i] = frand(-3, 3);
    g[0] = 0, g[1] = -0.0f, g[2] = 1e-30f, g[3] = -89.5f, g[4] = 89.5f;
    spill_swiglu(got, g, u, N);
    for (int i = 0; i < N; i++) {
        float want = g[i] / (1.0f + spill_expf(-g[i])) * u[i];
        assert_memory_equal(&got[i], &want, sizeof(float));
        double exact = (double)g[i] / (1.0 + exp(-(double)g[i])) * u[i];
        if (!(fabs(got[i] - exact) <= 6 * ulp_of(exact) + 1e-36)) printf("g %a u %a got %a want %a\n", (double)g[i], (double)u[i], (double)got[i], exact);
        assert_true(fabs(got[i] - exact) <= 6 * ulp_of(exact) + 1e-36);
    }
    assert_true(got[3] == 0.0f || got[3] == -0.0f); /* silu of a large negative gate: 0, not NaN */
}

/* the maximum passes NaNs over, at any position around the 16 lanes; the exponentials' sum divides
   before exp, as the sampler's temperature needs */
static void test_max_and_exp_sum(void **s) {
    (void)s;
    float x[70] = {0};
    assert_true(spill_maxf(x, 0) == -INFINITY);
    for (int n = 1; n <= 70; n++)
        for (int at = 0; at < n; at++) {
            for (int i = 0; i < n; i++) x[i] = (float)((i * 7) % 11) - 20.0f;
            x[at] = 5.0f;
            if (at + 1 < n) x[at + 1] = NAN;
            assert_true(spill_maxf(x, n) == 5.0f);
        }
    float y[70];
    for (int i = 0; i < 70; i++) x[i] = (float)i / 10.0f;
    double sum = spill_exp_sum(y, x, 70, 6.9f, 0.7f), want = 0;
    for (int i = 0; i < 70; i++) {
        float e = spill_expf((x[i] - 6.9f) / 0.7f);
        assert_memory_equal(&y[i], &e, sizeof e);
        want += exp(((double)x[i] - 6.9) / 0.7);
    }
    assert_true(fabs(sum - want) < 1e-5 * want);
}

/* attention's value sums (spill_attn_values, SIMD where the CPU has it) equal the scalar definition bit
   for bit: any width (registers and the elements past them), any number of queries (groups of 4 and the
   rest), strided rows, queries that see none, part or all of the block */
static void test_attn_values(void **s) {
    (void)s;
    enum { NQ = 9, NP = 37, HD = 136, VS = 141, LD = 80 };
    static float v[NP * VS], att[NQ * LD], got[NQ][HD], want[NQ][HD];
    uint32_t r = 12345;
    for (int i = 0; i < NP * VS; i++) v[i] = (float)((r = r * 1664525u + 1013904223u) >> 8) / (1 << 24) - 0.5f;
    for (int i = 0; i < NQ * LD; i++) att[i] = (float)((r = r * 1664525u + 1013904223u) >> 8) / (1 << 24);
    static const int hds[] = {1, 3, 4, 12, 16, 20, 48, 64, 80, 96, 112, 128, 136}; /* 3 registers a pass: 12 (NEON), 48, 112 */
    static const int nps[] = {1, 7, 16, 37};
    int checked = 0;
    for (size_t h = 0; h < sizeof hds / sizeof *hds; h++)
        for (size_t k = 0; k < sizeof nps / sizeof *nps; k++)
            for (int nq = 1; nq <= NQ; nq++) {
                int hd = hds[h], np = nps[k], p0 = 40, lens[NQ];
                float *outp[NQ];
                for (int i = 0; i < nq; i++) {
                    lens[i] = p0 + np - (i * 5) % (np + 3) + 1; /* past the block, inside it, or before it */
                    outp[i] = got[i];
                    for (int d = 0; d < hd; d++) got[i][d] = want[i][d] = (float)(i - d) / 7.0f;
                }
                for (int p = p0; p < p0 + np; p++)
                    for (int i = 0; i < nq; i++)
                        if (p < lens[i])
                            for (int d = 0; d < hd; d++)
                                want[i][d] = fmaf(att[i * LD + p], v[(p - p0) * VS + d], want[i][d]);
                spill_attn_values(outp, att, LD, lens, nq, v, VS, p0, np, hd);
                for (int i = 0; i < nq; i++) assert_memory_equal(got[i], want[i], sizeof(float) * (size_t)hd);
                checked++;
            }
    assert_int_equal(checked, 13 * 4 * NQ);
}

/* attention's scores against F32 keys (spill_scores_f32: two keys per register with AVX-512, groups of 8, 6
   or 4 keys against 1, 2 or 3 queries with AVX2) equal spill_dot_f32 per key and query bit for bit: widths
   with and without values past the last 8, odd and even numbers of keys, whole groups and the keys left
   over, 1 to 9 queries (groups of 4 and the rest), strided keys and outputs */
static void test_scores_f32(void **s) {
    (void)s;
    enum { NR = 13, RS = 141, NQ = 9, QS = 137, LD = 19 };
    static float k[NR * RS], q[NQ * QS], out[NQ * LD];
    uint32_t r = 777;
    for (int i = 0; i < NR * RS; i++) k[i] = (float)((r = r * 1664525u + 1013904223u) >> 8) / (1 << 24) - 0.5f;
    for (int i = 0; i < NQ * QS; i++) q[i] = (float)((r = r * 1664525u + 1013904223u) >> 8) / (1 << 24) - 0.5f;
    static const int ns[] = {1, 7, 8, 20, 64, 80, 128, 136};
    int checked = 0;
    for (size_t a = 0; a < sizeof ns / sizeof *ns; a++)
        for (int nr = 1; nr <= NR; nr += 3)
            for (int nq = 1; nq <= NQ; nq++) {
                for (int i = 0; i < NQ * LD; i++) out[i] = -1.0f;
                spill_scores_f32(ns[a], k, RS, nr, q, QS, nq, out, LD);
                for (int i = 0; i < nq; i++)
                    for (int j = 0; j < nr; j++) {
                        float want = spill_dot_f32(k + j * RS, q + i * QS, ns[a]);
                        assert_memory_equal(&out[i * LD + j], &want, sizeof want);
                    }
                assert_true(out[nq > 1 ? (nq - 1) * LD + nr : nr] == -1.0f); /* nothing past the keys */
                checked++;
            }
    assert_int_equal(checked, 8 * 5 * NQ);
}

/* 16-bit rows widened (the SIMD twin where the CPU has one) give spill_dequant_row's floats, bit for bit:
   every finite F16 and BF16 value's bits (subnormals included), rows apart in memory, every tail length */
static void test_widen_rows(void **s) {
    (void)s;
    enum { NR = 5, N = 75, RS = 83 };
    static uint16_t src[NR * RS];
    static float got[NR * N], want[NR * N];
    spill_dtype types[] = {SPILL_DT_F16, SPILL_DT_BF16};
    uint32_t r = 4242;
    int checked = 0;
    for (int k = 0; k < 2; k++)
        for (int pass = 0; pass < 4; pass++) {
            for (int i = 0; i < NR * RS; i++) {
                uint16_t h = (uint16_t)((r = r * 1664525u + 1013904223u) >> 16);
                if (pass == 1) h &= 0x83ff; /* F16 subnormals and zeros; BF16 small numbers */
                int exp_max = types[k] == SPILL_DT_F16 ? ((h >> 10) & 0x1f) == 0x1f : ((h >> 7) & 0xff) == 0xff;
                if (exp_max) h ^= 0x4000; /* no infinities or NaNs */
                src[i] = h;
            }
            for (int n = 1; n <= N; n += pass == 3 ? 1 : 37) {
                for (int i = 0; i < NR * N; i++) got[i] = -7.0f, want[i] = -7.0f;
                spill_widen_rows(types[k], src, RS * 2, NR, n, got);
                for (int j = 0; j < NR; j++) spill_dequant_row(types[k], src + j * RS, want + j * n, n);
                assert_memory_equal(got, want, sizeof(float) * NR * N); /* nothing past nr rows of n written */
                checked++;
            }
        }
    assert_int_equal(checked, 2 * (3 * 3 + N));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_expf_accuracy),
        cmocka_unit_test(test_softmax),
        cmocka_unit_test(test_swiglu),
        cmocka_unit_test(test_max_and_exp_sum),
        cmocka_unit_test(test_attn_values),
        cmocka_unit_test(test_scores_f32),
        cmocka_unit_test(test_widen_rows),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
