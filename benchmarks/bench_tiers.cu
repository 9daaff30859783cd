// GPU tier bandwidths (spill-bench tiers). A read kernel streams a buffer with 16-byte loads and
// folds it into one value per block, so the loads cannot be optimised away; transfers are timed
// with events. Every CUDA call is checked; a way that this platform does not offer (pageable memory
// without HMM/ATS) is reported as not measured, with the reason. It states its placements
// through alloc/'s cuda_compat.h like the CUDA backends do. Never
// run on a GPU by the session that wrote it (docs/results.md says what has run where).
#include "spill_cuda_bench.h"

#include <cuda_runtime.h>

#include "cuda_compat.h"
#include "spill_cuda_check.h"

#include <algorithm>
#include <vector>

#define TRY(call)                                                                                        \
    do {                                                                                                 \
        if (SPILL_CU_CHECK(call, err)) goto fail;                                                        \
    } while (0)

__global__ static void read_kernel(const uint4 *p, size_t n, unsigned *sink) {
    unsigned acc = 0;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        uint4 v = p[i];
        acc ^= v.x ^ v.y ^ v.z ^ v.w;
    }
    if (acc == 0x9e3779b9u) sink[blockIdx.x] = acc; // practically never true, but the compiler cannot know
}

static void stats(std::vector<double> &v, spill_bw_result *r) {
    std::sort(v.begin(), v.end());
    r->med = v[v.size() / 2];
    r->min = v.front();
    r->max = v.back();
    r->ok = 1;
}

// Time `reps` runs of `op` (work queued on the default stream) between two events; `setup` runs
// untimed before each. Bytes per second of each run go into r (median, min, max).
template <class Setup, class Op>
static int time_runs(size_t bytes, int reps, Setup setup, Op op, spill_bw_result *r, spill_err *err) {
    cudaEvent_t a = nullptr, b = nullptr;
    std::vector<double> v;
    TRY(cudaEventCreate(&a));
    TRY(cudaEventCreate(&b));
    for (int i = 0; i < reps; i++) {
        TRY(setup());
        TRY(cudaEventRecord(a));
        TRY(op());
        TRY(cudaEventRecord(b));
        TRY(cudaEventSynchronize(b));
        float ms = 0;
        TRY(cudaEventElapsedTime(&ms, a, b));
        v.push_back((double)bytes / (ms * 1e-3));
    }
    stats(v, r);
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    return 0;
fail:
    if (a) cudaEventDestroy(a);
    if (b) cudaEventDestroy(b);
    return -1;
}

static cudaError_t nothing() { return cudaSuccess; }

// the read kernel over p (bytes), once untimed first: first touch, TLB, migration
static int time_reads(const void *p, size_t bytes, int reps, unsigned *sink, int sms, spill_bw_result *r, spill_err *err) {
    auto launch = [=] {
        read_kernel<<<sms * 4, 512>>>((const uint4 *)p, bytes / 16, sink);
        return cudaGetLastError();
    };
    TRY(launch());
    TRY(cudaDeviceSynchronize());
    return time_runs(bytes, reps, nothing, launch, r, err);
fail:
    return -1;
}

extern "C" int spill_cuda_bench_tiers(int device, size_t bytes, int reps, spill_bw_result *out, int *n, spill_err *err) {
    *n = 0;
    int count = 0, sms = 0, pageable = 0, cma = 0;
    void *hbm = nullptr, *hbm2 = nullptr, *pinned = nullptr, *managed = nullptr, *sys = nullptr;
    unsigned *sink = nullptr;
    const spill_cu_loc on_host = {SPILL_CU_LOC_HOST, 0}, on_gpu = {SPILL_CU_LOC_DEVICE, device};
    bytes = bytes / 16 * 16;
    if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) return spill_err_set(err, "no CUDA device");
    TRY(cudaSetDevice(device));
    TRY(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
    TRY(cudaDeviceGetAttribute(&pageable, cudaDevAttrPageableMemoryAccess, device));
    TRY(cudaDeviceGetAttribute(&cma, cudaDevAttrConcurrentManagedAccess, device));
    TRY(cudaMalloc(&sink, sizeof(unsigned) * (size_t)sms * 4));

    // 1. HBM
    snprintf(out[*n].name, sizeof out[*n].name, "gpu reads hbm");
    TRY(cudaMalloc(&hbm, bytes));
    TRY(cudaMemset(hbm, 1, bytes));
    if (time_reads(hbm, bytes, reps, sink, sms, &out[*n], err)) goto fail;
    (*n)++;
    // 2. mapped pinned host memory, read in place
    snprintf(out[*n].name, sizeof out[*n].name, "gpu reads host (mapped pinned)");
    TRY(cudaHostAlloc(&pinned, bytes, cudaHostAllocMapped));
    memset(pinned, 2, bytes);
    {
        void *dp = nullptr;
        TRY(cudaHostGetDevicePointer(&dp, pinned, 0));
        if (time_reads(dp, bytes, reps, sink, sms, &out[*n], err)) goto fail;
    }
    (*n)++;
    // 3. managed memory, preferred location host, accessed-by the GPU: read in place, no migration
    snprintf(out[*n].name, sizeof out[*n].name, "gpu reads host (managed, preferred host, accessed-by)");
    if (!cma) {
        snprintf(out[*n].note, sizeof out[*n].note, "no concurrent managed access on this device");
    } else {
        TRY(cudaMallocManaged(&managed, bytes, cudaMemAttachGlobal));
        memset(managed, 3, bytes); // first touch on the CPU: pages in host memory
        TRY(spill_cu_advise(managed, bytes, cudaMemAdviseSetPreferredLocation, on_host));
        TRY(spill_cu_advise(managed, bytes, cudaMemAdviseSetAccessedBy, on_gpu));
        if (time_reads(managed, bytes, reps, sink, sms, &out[*n], err)) goto fail;
    }
    (*n)++;
    // 4. pageable system memory (HMM or ATS)
    snprintf(out[*n].name, sizeof out[*n].name, "gpu reads host (pageable malloc)");
    if (!pageable) {
        snprintf(out[*n].note, sizeof out[*n].note, "the GPU cannot read pageable memory here (no HMM/ATS)");
    } else {
        sys = malloc(bytes);
        if (!sys) {
            spill_err_set(err, "out of host memory");
            goto fail;
        }
        memset(sys, 4, bytes);
        if (time_reads(sys, bytes, reps, sink, sms, &out[*n], err)) goto fail;
    }
    (*n)++;
    // 5./6. prefetch migration host -> device and back (managed), each run starting on the other side
    for (int dir = 0; dir < 2; dir++) {
        spill_bw_result *r = &out[*n];
        snprintf(r->name, sizeof r->name, dir ? "prefetch device -> host (managed)" : "prefetch host -> device (managed)");
        if (!managed) {
            snprintf(r->note, sizeof r->note, "no managed memory measurement on this device");
        } else {
            spill_cu_loc to = dir ? on_host : on_gpu, from = dir ? on_gpu : on_host;
            auto start = [=] {
                cudaError_t e = spill_cu_prefetch(managed, bytes, from, 0);
                return e != cudaSuccess ? e : cudaDeviceSynchronize();
            };
            auto move = [=] { return spill_cu_prefetch(managed, bytes, to, 0); };
            if (time_runs(bytes, reps, start, move, r, err)) goto fail;
        }
        (*n)++;
    }
    // 7. pinned cudaMemcpyAsync host -> device
    snprintf(out[*n].name, sizeof out[*n].name, "copy host -> device (pinned cudaMemcpyAsync)");
    TRY(cudaMalloc(&hbm2, bytes));
    {
        auto copy = [=] { return cudaMemcpyAsync(hbm2, pinned, bytes, cudaMemcpyHostToDevice, 0); };
        if (time_runs(bytes, reps, nothing, copy, &out[*n], err)) goto fail;
    }
    (*n)++;
    cudaFree(hbm);
    cudaFree(hbm2);
    cudaFreeHost(pinned);
    if (managed) cudaFree(managed);
    free(sys);
    cudaFree(sink);
    return 0;
fail:
    if (hbm) cudaFree(hbm);
    if (hbm2) cudaFree(hbm2);
    if (pinned) cudaFreeHost(pinned);
    if (managed) cudaFree(managed);
    free(sys);
    if (sink) cudaFree(sink);
    return -1;
}
