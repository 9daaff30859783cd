/* spill-gemv-bench: the GPU's fused dequantize-GEMV (spill_cu_gemv, kernels/cuda/gemv.cu) alone, per
 * weight format and token count, as the bytes of weights it reads per second beside what a
 * device-to-device copy of the same buffer moves. Decode reads every weight once per token, so this
 * rate is the GPU's decode speed when the weights are in HBM (docs/results-gpu.md).
 *
 *   spill-gemv-bench [ROWS COLS [REPS]]   default 28672 8192 20 (Llama-3-70B's FFN up/gate)
 *
 * The matrix is 256 quantized random rows repeated (the rate does not depend on the values) and
 * larger than the GPU's L2 at every format; each rate is the median of REPS timed calls after two
 * untimed ones. Exits 77 without a GPU, as the gpu tests do. Built only with CUDA. */
#include <cuda_runtime_api.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "spill_cuda_ops.h"
#include "spill_kernels.h"

#define CK(call)                                                                                   \
    do {                                                                                           \
        cudaError_t e_ = (call);                                                                   \
        if (e_ != cudaSuccess) {                                                                   \
            fprintf(stderr, "spill-gemv-bench: %s: %s\n", #call, cudaGetErrorString(e_));          \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

static unsigned long long rng = 0x9E3779B97F4A7C15ull;
static float rnd(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((rng >> 40) & 0xFFFFFF) / 16777216.0f - 0.5f;
}

/* median milliseconds of reps calls of spill_cu_gemv (or of a copy when type < 0) */
static float time_ms(cudaEvent_t a, cudaEvent_t b, int reps, int type, float *out, const void *w, int64_t rows,
                     int64_t cols, const float *x, int nt, void *copy_to, size_t bytes) {
    float ms[64];
    for (int i = -2; i < reps; i++) {
        spill_err err = {{0}};
        CK(cudaEventRecord(a, 0));
        if (type < 0) CK(cudaMemcpyAsync(copy_to, w, bytes, cudaMemcpyDeviceToDevice, 0));
        else if (spill_cu_gemv(out, rows, w, (spill_dtype)type, rows, cols, x, nt, NULL, &err)) {
            fprintf(stderr, "spill-gemv-bench: %s\n", err.msg);
            exit(1);
        }
        CK(cudaEventRecord(b, 0));
        CK(cudaEventSynchronize(b));
        if (i >= 0) CK(cudaEventElapsedTime(&ms[i], a, b));
    }
    qsort(ms, (size_t)reps, sizeof *ms, cmp_float);
    return ms[reps / 2];
}

int main(int argc, char **argv) {
    int64_t rows = argc > 1 ? atoll(argv[1]) : 28672, cols = argc > 2 ? atoll(argv[2]) : 8192;
    int reps = argc > 3 ? atoi(argv[3]) : 20;
    if (argc > 4 || rows < 256 || cols < 256 || cols % 256 || rows > (1 << 20) || cols > (1 << 20) || reps < 1 ||
        reps > 64) {
        fprintf(stderr, "usage: spill-gemv-bench [ROWS COLS [REPS]]: ROWS 256..1048576, COLS a multiple of 256 up "
                        "to 1048576, REPS 1..64 (default 28672 8192 20)\n");
        return 2;
    }
    int ndev = 0;
    if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev < 1) {
        fprintf(stderr, "spill-gemv-bench: SKIPPED: no usable GPU\n");
        return 77;
    }
    struct cudaDeviceProp p;
    CK(cudaGetDeviceProperties(&p, 0));
    const spill_dtype types[] = {SPILL_DT_F32,  SPILL_DT_F16,  SPILL_DT_BF16, SPILL_DT_Q8_0,
                                 SPILL_DT_Q6_K, SPILL_DT_Q4_1, SPILL_DT_Q4_0, SPILL_DT_Q4_K};
    const int toks[] = {1, 2, 4, 8};
    size_t max_bytes = (size_t)spill_dtype_row_bytes(SPILL_DT_F32, (uint64_t)cols) * (size_t)rows;
    uint8_t *host = malloc(max_bytes);
    float *xf = malloc(sizeof(float) * (size_t)cols * SPILL_GEMV_MAX_TOK);
    if (!host || !xf) {
        fprintf(stderr, "spill-gemv-bench: out of memory for %zu bytes\n", max_bytes);
        return 1;
    }
    for (int64_t i = 0; i < cols * SPILL_GEMV_MAX_TOK; i++) xf[i] = rnd();
    void *dw, *dcopy;
    float *dx, *dout;
    CK(cudaMalloc(&dw, max_bytes));
    CK(cudaMalloc(&dcopy, max_bytes));
    CK(cudaMalloc((void **)&dx, sizeof(float) * (size_t)cols * SPILL_GEMV_MAX_TOK));
    CK(cudaMalloc((void **)&dout, sizeof(float) * (size_t)rows * SPILL_GEMV_MAX_TOK));
    CK(cudaMemcpy(dx, xf, sizeof(float) * (size_t)cols * SPILL_GEMV_MAX_TOK, cudaMemcpyHostToDevice));
    cudaEvent_t a, b;
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
    float copy_ms = time_ms(a, b, reps, -1, NULL, dw, rows, cols, NULL, 0, dcopy, max_bytes);
    double copy_gbs = 2.0 * (double)max_bytes / (copy_ms * 1e6);
    printf("spill-gemv-bench: %s (%d SMs, L2 %.0f MiB), a %lld x %lld matrix, median of %d\n", p.name,
           p.multiProcessorCount, p.l2CacheSize / 1048576.0, (long long)rows, (long long)cols, reps);
    printf("device-to-device copy of %.0f MiB: %.0f GB/s (read + written)\n\n", max_bytes / 1048576.0, copy_gbs);
    printf("| format | MiB | tokens | us | weights GB/s | %% of the copy's rate |\n|---|---:|---:|---:|---:|---:|\n");
    float *row = malloc(sizeof(float) * (size_t)cols);
    for (size_t k = 0; k < sizeof types / sizeof *types; k++) {
        size_t rb = (size_t)spill_dtype_row_bytes(types[k], (uint64_t)cols), bytes = rb * (size_t)rows;
        for (int64_t r = 0; r < 256; r++) {
            for (int64_t i = 0; i < cols; i++) row[i] = rnd();
            spill_quantize_row_ref(types[k], row, host + (size_t)r * rb, cols);
        }
        for (int64_t r = 256; r < rows; r++) memcpy(host + (size_t)r * rb, host + (size_t)(r % 256) * rb, rb);
        CK(cudaMemcpy(dw, host, bytes, cudaMemcpyHostToDevice));
        for (size_t t = 0; t < sizeof toks / sizeof *toks; t++) {
            float ms = time_ms(a, b, reps, (int)types[k], dout, dw, rows, cols, dx, toks[t], NULL, 0);
            double gbs = (double)bytes / (ms * 1e6);
            printf("| %s | %.0f | %d | %.1f | %.0f | %.0f%% |\n", spill_dtype_name(types[k]), bytes / 1048576.0, toks[t],
                   ms * 1e3, gbs, 100.0 * gbs / copy_gbs);
            fflush(stdout);
        }
    }
    CK(cudaFree(dw));
    CK(cudaFree(dcopy));
    CK(cudaFree(dx));
    CK(cudaFree(dout));
    free(host), free(xf), free(row);
    return 0;
}
