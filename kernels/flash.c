/* Flash-decoding attention on the CPU: the twin of kernels/cuda/attention.cu, step for step (see
 * spill_kernels.h). One "block" is (tile of up to SPILL_FLASH_QTILE query tokens, KV head, split of
 * the positions); it walks its positions in tiles of SPILL_FLASH_TILE with an online softmax for every
 * query head of its group and every token of its tile, so each K and V row is read once per group and
 * token tile (prefill reads the cache a quarter as often as one token per block would). With more than one split, the blocks leave partial
 * results (unnormalised output, running max, running sum) that a second pass combines. */
#include <math.h>
#include <stdlib.h>

#include "spill_kernels.h"

int spill_flash_tiles(spill_flash_tile *tiles, int t0, int n_tok, int pos0, int table) {
    int n = 0;
    for (int t = 0; t < n_tok; t += SPILL_FLASH_QTILE)
        tiles[n++] = (spill_flash_tile){t0 + t, n_tok - t < SPILL_FLASH_QTILE ? n_tok - t : SPILL_FLASH_QTILE, pos0 + t, table};
    return n;
}

int spill_flash_splits(int n_tiles, int n_kv_heads, int max_len) {
    /* blocks before splitting: one per tile of query tokens and KV head */
    int64_t rows = (int64_t)n_tiles * n_kv_heads;
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
    /* splits > 1 only while token tiles * n_kv_heads * splits <= SPILL_FLASH_BLOCKS, and a tile holds at
       most SPILL_FLASH_QTILE tokens of n_heads / n_kv_heads rows each */
    return (uint64_t)SPILL_FLASH_BLOCKS * SPILL_FLASH_QTILE * (uint64_t)(n_heads / n_kv_heads) * ((uint64_t)head_dim + 2);
}

/* One block: up to SPILL_FLASH_QTILE query tokens t0.. (nt of them) x the `group` query heads of KV
 * head kvh (row qr = ti * group + g), over positions [p0, p1); token t0 + ti sees positions below
 * pos0 + t0 + ti + 1 (causal: the others score -inf). o (rows x hd), m and l (rows) receive the
 * unnormalised output, the running max and sum; a row that saw no position keeps m = -inf, l = 0. */
static void flash_block(const float *q, int q_stride, const void *const *blocks, spill_dtype kv_type, int T, int kv_dim,
                        int hd, int group, int kvh, int nt, int len0, int p0, int p1, float scale, float *o, float *m,
                        float *l, float *tile) {
    float s[SPILL_FLASH_TILE];
    const float *krow[SPILL_FLASH_TILE], *vrow[SPILL_FLASH_TILE];
    int rows = nt * group;
    size_t eb = spill_kv_type_bytes(kv_type), row = (size_t)kv_dim * eb, off = (size_t)kvh * (size_t)hd * eb;
    for (int r = 0; r < rows; r++) m[r] = -INFINITY, l[r] = 0;
    for (int i = 0; i < rows * hd; i++) o[i] = 0;
    for (int pt = p0; pt < p1; pt += SPILL_FLASH_TILE) {
        int n = p1 - pt < SPILL_FLASH_TILE ? p1 - pt : SPILL_FLASH_TILE;
        /* the tile's K and V rows as floats, once for every row of the block (the GPU's shared-memory
           tile): F32 rows are read where they lie, 16-bit ones converted into `tile` */
        for (int j = 0; j < n; j++) {
            int p = pt + j;
            const uint8_t *kb = (const uint8_t *)blocks[p / T] + (size_t)(p % T) * row + off;
            krow[j] = spill_kv_row_get(kv_type, kb, tile + (size_t)j * hd, hd);
            vrow[j] = spill_kv_row_get(kv_type, kb + (size_t)T * row, tile + (size_t)(SPILL_FLASH_TILE + j) * hd, hd);
        }
        for (int r = 0; r < rows; r++) {
            int ti = r / group, g = r % group, len = len0 + ti;
            const float *qr = q + (int64_t)ti * q_stride + (int64_t)g * hd;
            float mx = m[r];
            for (int j = 0; j < n; j++) {
                int p = pt + j;
                if (p >= len) {
                    s[j] = -INFINITY;
                    continue;
                }
                const float *k = krow[j];
                float d = 0;
                for (int i = 0; i < hd; i++) d = fmaf(qr[i], k[i], d);
                s[j] = d * scale;
                if (s[j] > mx) mx = s[j];
            }
            if (mx == -INFINITY) continue; /* nothing this row may see yet */
            float corr = m[r] == -INFINITY ? 0.0f : expf(m[r] - mx), sum = 0;
            for (int j = 0; j < n; j++) {
                s[j] = expf(s[j] - mx);
                sum += s[j];
            }
            l[r] = l[r] * corr + sum, m[r] = mx;
            float *orow = o + (int64_t)r * hd;
            for (int i = 0; i < hd; i++) {
                float acc = orow[i] * corr;
                for (int j = 0; j < n; j++) acc = fmaf(s[j], vrow[j][i], acc);
                orow[i] = acc;
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

int spill_flash_attention_tiles(float *out, const float *q, const void *const *blocks, spill_dtype kv_type, int T,
                                const spill_flash_tile *tiles, int n_tiles, int n_tok, int max_len, int n_heads,
                                int n_kv_heads, int head_dim, float scale, float *partial) {
    int group = n_heads / n_kv_heads, kv_dim = n_kv_heads * head_dim, hd = head_dim;
    int splits = spill_flash_splits(n_tiles, n_kv_heads, max_len), chunk = spill_flash_chunk(max_len, splits);
    int qrows = SPILL_FLASH_QTILE * group;
    SPILL_ASSERT(spill_kv_type_bytes(kv_type));
    /* o, m, l of the rows, then the tile's K and V rows as floats */
    float *o = malloc(sizeof(float) * ((size_t)qrows * (size_t)(hd + 2) + 2 * (size_t)SPILL_FLASH_TILE * (size_t)hd));
    if (!o) return -1;
    float *m = o + (int64_t)qrows * hd, *l = m + qrows, *tile = l + qrows;
    int64_t rows = (int64_t)n_tok * n_heads;
    float *ml = partial + rows * splits * hd;
    for (int ti = 0; ti < n_tiles; ti++)
        for (int kvh = 0; kvh < n_kv_heads; kvh++)
            for (int sp = 0; sp < splits; sp++) {
                const spill_flash_tile *u = &tiles[ti];
                int t0 = u->t0, nt = u->nt;
                SPILL_ASSERT(nt >= 1 && nt <= SPILL_FLASH_QTILE && t0 >= 0 && t0 + nt <= n_tok && u->pos0 >= 0 &&
                             u->pos0 + nt <= max_len);
                int len0 = u->pos0 + 1, last = len0 + nt - 1; /* the first and the last token's lengths */
                int p0 = sp * chunk, p1 = p0 + chunk < last ? p0 + chunk : last;
                const float *qt = q + ((int64_t)t0 * n_heads + (int64_t)kvh * group) * hd;
                flash_block(qt, n_heads * hd, blocks + u->table, kv_type, T, kv_dim, hd, group, kvh, nt, len0, p0, p1, scale,
                            o, m, l, tile);
                for (int qr = 0; qr < nt * group; qr++) {
                    int64_t r = (int64_t)(t0 + qr / group) * n_heads + (int64_t)kvh * group + qr % group;
                    if (splits == 1) {
                        for (int i = 0; i < hd; i++) out[r * hd + i] = o[(int64_t)qr * hd + i] / l[qr];
                    } else {
                        for (int i = 0; i < hd; i++) partial[(r * splits + sp) * hd + i] = o[(int64_t)qr * hd + i];
                        ml[2 * (r * splits + sp)] = m[qr], ml[2 * (r * splits + sp) + 1] = l[qr];
                    }
                }
            }
    free(o);
    if (splits > 1) spill_flash_combine(out, partial, (int)rows, splits, hd);
    return 0;
}

int spill_flash_attention(float *out, const float *q, const void *const *blocks, spill_dtype kv_type, int T, int n_tok,
                          int pos0, int n_heads, int n_kv_heads, int head_dim, float scale, float *partial) {
    spill_flash_tile *tiles = malloc(sizeof *tiles * (size_t)((n_tok + SPILL_FLASH_QTILE - 1) / SPILL_FLASH_QTILE + 1));
    if (!tiles) return -1;
    int n = spill_flash_tiles(tiles, 0, n_tok, pos0, 0);
    int rc = spill_flash_attention_tiles(out, q, blocks, kv_type, T, tiles, n, n_tok, pos0 + n_tok, n_heads, n_kv_heads,
                                         head_dim, scale, partial);
    free(tiles);
    return rc;
}
