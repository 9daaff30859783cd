/* Built when CUDA is off: the probe says so, so callers need no #ifdef. */
#include "spill_cuda.h"

int spill_cuda_probe(spill_cuda_info *info, spill_err *err) {
    memset(info, 0, sizeof *info);
    return spill_err_set(err, "this build of spill has no CUDA support (configure with nvcc present, or "
                              "-DSPILL_CUDA=ON); spill runs on the CPU");
}
