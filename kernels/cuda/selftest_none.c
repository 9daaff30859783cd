/* Built when CUDA is off: say so, so that callers need no #ifdef. */
#include "spill_cuda.h"

int spill_cuda_selftest(int device, spill_err *err) {
    (void)device;
    return spill_err_set(err, "this build of spill has no CUDA support (configure with nvcc present, or "
                              "-DSPILL_CUDA=ON); spill runs on the CPU");
}
