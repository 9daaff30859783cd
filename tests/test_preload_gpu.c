/* gpu: a real CUDA program under the preload shim allocates 1.5x its HBM budget (SPILL_HBM_BUDGET,
 * set by ctest to 256 MiB), writes every allocation on the device and reads it back: the part past
 * the budget lives in managed memory the GPU reads in place. Skips with the driver's reason
 * without a device. */
#include <cuda_runtime_api.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MiB ((size_t)1 << 20)

int main(void) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0) {
        printf("SKIPPED: no CUDA device (%s)\n", e ? cudaGetErrorString(e) : "none found");
        return 77;
    }
    enum { PIECES = 24 }; /* 24 x 16 MiB = 384 MiB = 1.5 x 256 MiB */
    void *p[PIECES];
    unsigned char *h = malloc(16 * MiB);
    for (int i = 0; i < PIECES; i++) {
        if ((e = cudaMalloc(&p[i], 16 * MiB))) {
            printf("cudaMalloc %d failed: %s\n", i, cudaGetErrorString(e));
            return 1;
        }
        if ((e = cudaMemset(p[i], i + 1, 16 * MiB)) || (e = cudaDeviceSynchronize())) {
            printf("cudaMemset %d failed: %s\n", i, cudaGetErrorString(e));
            return 1;
        }
    }
    for (int i = 0; i < PIECES; i++) {
        if ((e = cudaMemcpy(h, p[i], 16 * MiB, cudaMemcpyDefault))) {
            printf("cudaMemcpy %d failed: %s\n", i, cudaGetErrorString(e));
            return 1;
        }
        for (size_t k = 0; k < 16 * MiB; k += 4093)
            if (h[k] != (unsigned char)(i + 1)) {
                printf("piece %d byte %zu is %d, expected %d\n", i, k, h[k], i + 1);
                return 1;
            }
    }
    for (int i = 0; i < PIECES; i++)
        if ((e = cudaFree(p[i]))) {
            printf("cudaFree %d failed: %s\n", i, cudaGetErrorString(e));
            return 1;
        }
    free(h);
    printf("384 MiB through a 256 MiB budget: all pieces written and read back\n");
    return 0;
}
