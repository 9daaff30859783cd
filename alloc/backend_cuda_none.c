/* Built without the CUDA toolkit: the CUDA backends exist only to say so. */
#include "spill_backend.h"

int spill_backend_cuda_managed_init(spill_backend *out, int device, spill_err *err) {
    (void)out, (void)device;
    return spill_err_set(err, "backend 'cuda-managed' needs a CUDA build (this one was built without the CUDA "
                              "toolkit); use host");
}

int spill_backend_cuda_device_init(spill_backend *out, int device, spill_err *err) {
    (void)out, (void)device;
    return spill_err_set(err, "backend 'cuda-device' needs a CUDA build (this one was built without the CUDA "
                              "toolkit); use host");
}
