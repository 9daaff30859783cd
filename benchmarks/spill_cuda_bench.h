/* GPU tier bandwidths for spill-bench: what each way of reaching memory delivers on this machine.
 * Built only with CUDA; without it spill_cuda_bench_tiers says so. */
#ifndef SPILL_CUDA_BENCH_H
#define SPILL_CUDA_BENCH_H

#include "spill_common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct spill_bw_result {
    char name[64];    /* "gpu reads hbm", "gpu reads host (managed, preferred host, accessed-by)" ... */
    int ok;           /* 0: not measured here; note says why */
    double med, min, max; /* bytes/s over the repetitions */
    char note[160];
} spill_bw_result;

enum { SPILL_GPU_BW_MAX = 8 };

/* Fill up to SPILL_GPU_BW_MAX results; *n = how many. -1 with a message when there is no GPU. */
int spill_cuda_bench_tiers(int device, size_t bytes, int reps, spill_bw_result *out, int *n, spill_err *err);

#ifdef __cplusplus
}
#endif
#endif
