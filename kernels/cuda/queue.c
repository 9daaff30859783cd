/* Queues, events and copies for the runtime (spill_cuda_ops.h): the CUDA runtime calls that order
 * work, behind the one check. C against the runtime API; built only with CUDA. */
#include <cuda_runtime_api.h>

#include "spill_cuda_check.h"
#include "spill_cuda_ops.h"

int spill_cu_queue_create(void **queue, spill_err *err) {
    cudaStream_t s = NULL;
    *queue = NULL;
    SPILL_CU_TRY(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    *queue = s;
    return 0;
}

void spill_cu_queue_free(void *queue) {
    if (!queue) return;
    (void)cudaStreamSynchronize((cudaStream_t)queue);
    (void)cudaStreamDestroy((cudaStream_t)queue);
}

int spill_cu_queue_sync(void *queue, spill_err *err) {
    SPILL_CU_TRY(cudaStreamSynchronize((cudaStream_t)queue));
    return 0;
}

int spill_cu_event_create(void **event, spill_err *err) {
    cudaEvent_t e = NULL;
    *event = NULL;
    SPILL_CU_TRY(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    *event = e;
    return 0;
}

void spill_cu_event_free(void *event) {
    if (event) (void)cudaEventDestroy((cudaEvent_t)event);
}

int spill_cu_event_record(void *event, void *queue, spill_err *err) {
    SPILL_CU_TRY(cudaEventRecord((cudaEvent_t)event, (cudaStream_t)queue));
    return 0;
}

int spill_cu_queue_wait(void *queue, void *event, spill_err *err) {
    SPILL_CU_TRY(cudaStreamWaitEvent((cudaStream_t)queue, (cudaEvent_t)event, 0));
    return 0;
}

int spill_cu_copy_async(void *dst, const void *src, size_t n, void *queue, spill_err *err) {
    SPILL_CU_TRY(cudaMemcpyAsync(dst, src, n, cudaMemcpyDefault, (cudaStream_t)queue));
    return 0;
}

int spill_cu_copy(void *dst, const void *src, size_t n, spill_err *err) {
    SPILL_CU_TRY(cudaMemcpy(dst, src, n, cudaMemcpyDefault));
    return 0;
}
