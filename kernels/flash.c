/* Flash-decoding attention on the CPU: the twin of kernels/cuda/attention.cu, step for step (see
 * spill_kernels.h). One "block" is (query token, KV head, split of the positions); it walks its
 * positions in tiles of SPILL_FLASH_TILE with an online softmax for every query head of its group,
 * so each K and V row is read once per group. With more than one split, the blocks leave partial
 * results (unnormalised output, running max, running sum) that a second pass combines. */
#include <math.h>
#include <stdlib.h>

#include "spill_kernels.h"

int spill_flash_splits(int n_tok, int n_kv_heads, int max_len) {
    int64_t rows = (int64_t)n_tok * n_kv_heads;
    if (rows <= 0 || rows * 2 > SPILL_FLASH_BLOCKS) return 1;
    int64_t s = SPILL_FLASH_BLOCKS / rows;
    int64_t by_len = ((int64_t)max_len + SPILL_FLASH_MIN_CHUNK - 1) / SPILL_FLASH_MIN_CHUNK;
    if (s > by_len) s = by_len;
    return s < 1 ? 1 : (int)s;
}

int spill_flash_chunk(int max_len, int splits) {
    int c = (max_len + splits - 1) / splits;
    return (c + SPILL_FLASH_TILE - 1) / SPILL_FLASH_TILE * SPILL_FLASH_TILE;
}

uint64_t spill_flash_partial_floats(int n_heads, int n_kv_heads, int head_dim) {
    /* splits > 1 only while n_tok * n_kv_heads * splits <= SPILL_FLASH_BLOCKS */
    return (uint64_t)SPILL_FLASH_BLOCKS * (uint64_t)(n_heads / n_kv_heads) * ((uint64_t)head_dim + 2);
}

/* One block: positions [p0, p1) of token t's keys for the `group` query heads of KV head kvh.
 * o (group x hd), m and l (group) receive the unnormalised output, the running max and sum. */
static void flash_block(const float *q, const float *const *blocks, int T, int kv_dim, int hd, int group, int kvh,
                        int p0, int p1, float scale, float *o, float *m, float *l) {
    float s[SPILL_FLASH_TILE];
    for (int g = 0; g < group; g++) m[g] = -INFINITY, l[g] = 0;
    for (int i = 0; i < group * hd; i++) o[i] = 0;
    for (int pt = p0; pt < p1; pt += SPILL_FLASH_TILE) {
        int n = p1 - pt < SPILL_FLASH_TILE ? p1 - pt : SPILL_FLASH_TILE;
        for (int g = 0; g < group; g++) {
            const float *qg = q + (int64_t)g * hd;
            float mx = m[g];
            for (int j = 0; j < n; j++) {
                int p = pt + j;
                const float *k = blocks[p / T] + (int64_t)(p % T) * kv_dim + (int64_t)kvh * hd;
                float d = 0;
                for (int i = 0; i < hd; i++) d = fmaf(qg[i], k[i], d);
                s[j] = d * scale;
                if (s[j] > mx) mx = s[j];
            }
            float corr = m[g] == -INFINITY ? 0.0f : expf(m[g] - mx), sum = 0;
            for (int j = 0; j < n; j++) {
                s[j] = expf(s[j] - mx);
                sum += s[j];
            }
            l[g] = l[g] * corr + sum, m[g] = mx;
            float *og = o + (int64_t)g * hd;
            for (int i = 0; i < hd; i++) {
                float acc = og[i] * corr;
                for (int j = 0; j < n; j++) {
                    int p = pt + j;
                    const float *v = blocks[p / T] + (int64_t)T * kv_dim + (int64_t)(p % T) * kv_dim + (int64_t)kvh * hd;
                    acc = fmaf(s[j], v[i], acc);
                }
                og[i] = acc;
            }
        }
    }
}

void spill_flash_combine(float *out, const float *partial, int rows, int splits, int hd) {
    const float *ml = partial + (int64_t)rows * splits * hd;
    for (int r = 0; r < rows; r++) {
        float M = -INFINITY;
        for (int sp = 0; sp < splits; sp++) {
            float m = ml[2 * ((int64_t)r * splits + sp)];
            if (m > M) M = m;
        }
        float L = 0;
        for (int sp = 0; sp < splits; sp++) {
            const float *mlp = ml + 2 * ((int64_t)r * splits + sp);
            if (mlp[0] != -INFINITY) L += mlp[1] * expf(mlp[0] - M);
        }
        for (int i = 0; i < hd; i++) {
            float acc = 0;
            for (int sp = 0; sp < splits; sp++) {
                const float *mlp = ml + 2 * ((int64_t)r * splits + sp);
                if (mlp[0] != -INFINITY)
                    acc = fmaf(partial[((int64_t)r * splits + sp) * hd + i], expf(mlp[0] - M), acc);
            }
            out[(int64_t)r * hd + i] = acc / L;
        }
    }
}

int spill_flash_attention(float *out, const float *q, const float *const *blocks, int T, int n_tok, int pos0, int n_heads,
                          int n_kv_heads, int head_dim, float scale, float *partial) {
    int group = n_heads / n_kv_heads, kv_dim = n_kv_heads * head_dim, hd = head_dim, max_len = pos0 + n_tok;
    int splits = spill_flash_splits(n_tok, n_kv_heads, max_len), chunk = spill_flash_chunk(max_len, splits);
    float *o = malloc(sizeof(float) * (size_t)group * (size_t)(hd + 2));
    if (!o) return -1;
    float *m = o + (int64_t)group * hd, *l = m + group;
    int64_t rows = (int64_t)n_tok * n_heads;
    float *ml = partial + rows * splits * hd;
    for (int t = 0; t < n_tok; t++)
        for (int kvh = 0; kvh < n_kv_heads; kvh++)
            for (int sp = 0; sp < splits; sp++) {
                int len = pos0 + t + 1, p0 = sp * chunk, p1 = p0 + chunk < len ? p0 + chunk : len;
                const float *qt = q + ((int64_t)t * n_heads + (int64_t)kvh * group) * hd;
                flash_block(qt, blocks, T, kv_dim, hd, group, kvh, p0, p1, scale, o, m, l);
                for (int g = 0; g < group; g++) {
                    int64_t r = (int64_t)t * n_heads + (int64_t)kvh * group + g;
                    if (splits == 1) {
                        for (int i = 0; i < hd; i++) out[r * hd + i] = o[(int64_t)g * hd + i] / l[g];
                    } else {
                        for (int i = 0; i < hd; i++) partial[(r * splits + sp) * hd + i] = o[(int64_t)g * hd + i];
                        ml[2 * (r * splits + sp)] = m[g], ml[2 * (r * splits + sp) + 1] = l[g];
                    }
                }
            }
    free(o);
    if (splits > 1) spill_flash_combine(out, partial, (int)rows, splits, hd);
    return 0;
}
