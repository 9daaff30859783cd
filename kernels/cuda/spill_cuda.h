/* The CUDA side of kernels/, callable from C. Compiled only when the build finds nvcc
 * (SPILL_HAVE_CUDA); without it every entry point reports that the build has no CUDA.
 * Device discovery lives in alloc/spill_platform.h; kernels know nothing of placement. */
#ifndef SPILL_CUDA_H
#define SPILL_CUDA_H

#include "spill_common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Launch a kernel on `device` that writes a known pattern and read it back: proves that this
 * build's code (sm_90 SASS, or compute_90 PTX JIT-compiled for newer GPUs) runs on the device.
 * 0 on success; -1 with the failing call named (e.g. no kernel image for this GPU). */
int spill_cuda_selftest(int device, spill_err *err);

#ifdef __cplusplus
}
#endif
#endif
