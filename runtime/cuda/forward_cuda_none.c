/* Built without CUDA: the GPU device exists only to say so. */
#include "device.h"

const spill_device_iface spill_cuda_device = {.name = "cuda"}; /* no placer: nothing can be planned for it */

int spill_cuda_open(const spill_device_params *p, spill_device *out, spill_err *err) {
    (void)p, (void)out;
    return spill_err_set(err, "--device cuda: this build of spill has no CUDA support (configure with the CUDA toolkit "
                              "installed); use --device cpu");
}
