/* For tests labelled `gpu`: skip with the driver's own reason when there is no usable device. */
#ifndef SPILL_GPU_UTIL_H
#define SPILL_GPU_UTIL_H

#include "spill_platform.h"
#include "test_util.h"

static inline void require_gpu(void) {
    int n = 0;
    spill_err err = {{0}};
    if (spill_gpu_count(&n, &err)) {
        printf("SKIPPED: %s\n", err.msg);
        fflush(stdout);
        exit(SPILL_TEST_SKIP);
    }
}

#endif
