/* Built without CUDA: there is no GPU tier to measure. */
#include "spill_cuda_bench.h"

int spill_cuda_bench_tiers(int device, size_t bytes, int reps, spill_bw_result *out, int *n, spill_err *err) {
    (void)device, (void)bytes, (void)reps, (void)out;
    *n = 0;
    return spill_err_set(err, "this build of spill has no CUDA support");
}
