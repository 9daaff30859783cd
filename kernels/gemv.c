/* The CPU twins of kernels/cuda/gemv.cu: the fused dequantize-GEMV of decode, and the expansion of
 * quantized rows to BF16 tiles for prefill's cuBLAS. They decode the blocks with the GPU's own
 * decoder (kernels/cuda/dequant.cuh, compiled here as C) and sum in the GPU's order: lane L of a
 * warp takes pieces L, L+32, ... of 8 values of the row, then the 32 lanes are added by a butterfly. */
#include "spill_kernels.h"
#include "cuda/dequant.cuh"

void spill_gemv(float *out, int64_t ldo, const void *w, spill_dtype type, int64_t rows, int64_t cols, const float *x,
                int n_tok) {
    uint64_t rb = spill_dtype_row_bytes(type, (uint64_t)cols);
    int64_t nch = (cols + SPILL_DQ_CHUNK - 1) / SPILL_DQ_CHUNK;
    float lane[32][SPILL_GEMV_MAX_TOK], next[32][SPILL_GEMV_MAX_TOK], v[SPILL_DQ_CHUNK];
    SPILL_ASSERT(n_tok >= 1 && n_tok <= SPILL_GEMV_MAX_TOK && rb);
    for (int64_t r = 0; r < rows; r++) {
        const uint8_t *row = (const uint8_t *)w + (uint64_t)r * rb;
        memset(lane, 0, sizeof lane);
        for (int64_t c = 0; c < nch; c++) {
            int n = spill_dq_chunk(type, row, cols, c, v);
            for (int t = 0; t < n_tok; t++) {
                const float *xc = x + (int64_t)t * cols + c * SPILL_DQ_CHUNK;
                float acc = lane[c % 32][t];
                for (int j = 0; j < n; j++) acc = fmaf(v[j], xc[j], acc);
                lane[c % 32][t] = acc;
            }
        }
        for (int off = 16; off; off >>= 1) { /* __shfl_xor_sync: every lane adds its partner's value */
            for (int l = 0; l < 32; l++)
                for (int t = 0; t < n_tok; t++) next[l][t] = lane[l][t] + lane[l ^ off][t];
            memcpy(lane, next, sizeof lane);
        }
        for (int t = 0; t < n_tok; t++) out[(int64_t)t * ldo + r] = lane[0][t];
    }
}

void spill_dequant_bf16(uint16_t *out, const void *w, spill_dtype type, int64_t rows, int64_t cols) {
    uint64_t rb = spill_dtype_row_bytes(type, (uint64_t)cols);
    int64_t nch = (cols + SPILL_DQ_CHUNK - 1) / SPILL_DQ_CHUNK;
    float v[SPILL_DQ_CHUNK];
    SPILL_ASSERT(rb);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < nch; c++) {
            int n = spill_dq_chunk(type, (const uint8_t *)w + (uint64_t)r * rb, cols, c, v);
            for (int j = 0; j < n; j++) out[r * cols + c * SPILL_DQ_CHUNK + j] = spill_fp32_to_bf16(v[j]);
        }
}
