/* Built without the CUDA toolkit: there are no GPUs to ask about. */
#include "spill_platform.h"

int spill_gpu_count(int *n, spill_err *err) {
    *n = 0;
    return spill_err_set(err, "this build of spill has no CUDA support (configure with the CUDA toolkit "
                              "installed); spill runs on the CPU (--device cpu)");
}

int spill_gpu_query(int device, spill_gpu_info *g, spill_err *err) {
    memset(g, 0, sizeof *g);
    int n;
    (void)device;
    return spill_gpu_count(&n, err);
}
