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

int spill_cu_event_sync(void *event, spill_err *err) {
    SPILL_CU_TRY(cudaEventSynchronize((cudaEvent_t)event));
    return 0;
}

int spill_cu_host_alloc(void **p, size_t n, spill_err *err) {
    *p = NULL;
    SPILL_CU_TRY(cudaMallocHost(p, n));
    return 0;
}

void spill_cu_host_free(void *p) {
    if (p) (void)cudaFreeHost(p);
}

int spill_cu_copy_async(void *dst, const void *src, size_t n, void *queue, spill_err *err) {
    SPILL_CU_TRY(cudaMemcpyAsync(dst, src, n, cudaMemcpyDefault, (cudaStream_t)queue));
    return 0;
}

int spill_cu_copy(void *dst, const void *src, size_t n, spill_err *err) {
    SPILL_CU_TRY(cudaMemcpy(dst, src, n, cudaMemcpyDefault));
    return 0;
}

/* ---- CUDA graphs: one captured step, replayed ---- */
struct spill_cu_graph {
    cudaGraphExec_t exec; /* NULL until the first capture is instantiated */
    int capturing;
    uint64_t launches, instantiated, updated;
};

int spill_cu_graph_create(spill_cu_graph **out, spill_err *err) {
    *out = calloc(1, sizeof **out);
    return *out ? 0 : spill_err_set(err, "out of memory");
}

void spill_cu_graph_free(spill_cu_graph *g) {
    if (!g) return;
    if (g->exec) (void)cudaGraphExecDestroy(g->exec);
    free(g);
}

int spill_cu_graph_begin(spill_cu_graph *g, void *queue, spill_err *err) {
    /* thread-local: a call on this thread that the capture cannot hold (a synchronize, a pageable copy,
       a cudaMalloc) fails and invalidates the capture instead of running out of order */
    SPILL_CU_TRY(cudaStreamBeginCapture((cudaStream_t)queue, cudaStreamCaptureModeThreadLocal));
    g->capturing = 1;
    return 0;
}

int spill_cu_graph_end(spill_cu_graph *g, void *queue, int launch, spill_err *err) {
    cudaStream_t s = (cudaStream_t)queue;
    cudaGraph_t graph = NULL;
    g->capturing = 0;
    cudaError_t e = cudaStreamEndCapture(s, &graph);
    if (e != cudaSuccess || !launch) {
        /* nothing captured ran; the stream is out of capture mode whatever the reason */
        (void)cudaGetLastError();
        if (graph) (void)cudaGraphDestroy(graph);
        if (e != cudaSuccess)
            return spill_err_set(err, "cudaStreamEndCapture: %s (the step did something a graph cannot hold)",
                                 cudaGetErrorString(e));
        return 0;
    }
    int rc = 0;
    if (g->exec) {
        /* same kernels, new arguments (positions, lengths): update the executable graph in place */
#if CUDART_VERSION >= 12000
        cudaGraphExecUpdateResultInfo info;
        e = cudaGraphExecUpdate(g->exec, graph, &info);
#else
        cudaGraphNode_t bad = NULL;
        enum cudaGraphExecUpdateResult res;
        e = cudaGraphExecUpdate(g->exec, graph, &bad, &res);
#endif
        if (e == cudaSuccess) g->updated++;
        else {
            (void)cudaGetLastError(); /* a changed shape: instantiate anew */
            (void)cudaGraphExecDestroy(g->exec);
            g->exec = NULL;
        }
    }
    if (!g->exec) {
#if CUDART_VERSION >= 12000
        e = cudaGraphInstantiate(&g->exec, graph, 0);
#else
        e = cudaGraphInstantiate(&g->exec, graph, NULL, NULL, 0);
#endif
        if (e != cudaSuccess) {
            (void)cudaGetLastError();
            g->exec = NULL;
            rc = spill_err_set(err, "cudaGraphInstantiate: %s", cudaGetErrorString(e));
        } else g->instantiated++;
    }
    (void)cudaGraphDestroy(graph);
    if (rc) return rc;
    e = cudaGraphLaunch(g->exec, s);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return spill_err_set(err, "cudaGraphLaunch: %s", cudaGetErrorString(e));
    }
    g->launches++;
    return 0;
}

void spill_cu_graph_counts(const spill_cu_graph *g, uint64_t *launches, uint64_t *instantiated, uint64_t *updated) {
    *launches = g ? g->launches : 0;
    *instantiated = g ? g->instantiated : 0;
    *updated = g ? g->updated : 0;
}
