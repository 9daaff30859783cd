/* What the engine asks of a device (internal to runtime/): a forward step of one sequence, the
 * last logits, the KV cache, statistics, free — one table per device, so that nothing above it
 * branches on which device runs. Each device also has a placer (place.h), which the engine asks
 * for byte counts before the plan is made. */
#ifndef SPILL_DEVICE_H
#define SPILL_DEVICE_H

#include "engine.h"
#include "place.h"
#include "spill_kernels.h"

typedef struct spill_device_iface {
    const char *name;
    const spill_placer_iface *placer;
    /* a checked batch (engine.c); outputs in batch order */
    int (*forward)(void *ctx, const spill_batch *b, spill_err *err);
    float *(*logits)(void *ctx, int i);
    spill_kv *(*kv)(void *ctx);
    void (*stats)(void *ctx, spill_engine_stats *out);
    void (*free)(void *ctx);
} spill_device_iface;

typedef struct spill_device {
    const spill_device_iface *iface;
    void *ctx;
} spill_device;

/* What a device is opened with: the model and the plan made for its placer's byte counts. */
typedef struct spill_device_params {
    const spill_model *model;
    const spill_region *regions;
    const spill_plan *plan;
    spill_mem *mem;
    spill_pool *pool;
    int n_ctx, batch, n_seqs, kv_block, kv_blocks;
    int read_mapped; /* cuda: the GPU reads system memory through the CPU's page tables (ATS) */
    spill_disk_mode disk_mode;
    void (*trace)(void *ctx, const char *name, int layer, const float *x, int64_t n);
    void *trace_ctx;
    int cuda_graphs; /* cuda: decode steps replayed as CUDA graphs where the plan allows */
    spill_dtype kv_type; /* the KV cache's elements: F32, F16 or BF16 */
} spill_device_params;

extern const spill_device_iface spill_cpu_device;  /* forward.c */
extern const spill_device_iface spill_cuda_device; /* cuda/forward_cuda.c */
int spill_cpu_open(const spill_device_params *p, spill_device *out, spill_err *err);
/* Fails with a message that suggests --device cpu when there is no usable GPU or CUDA build. */
int spill_cuda_open(const spill_device_params *p, spill_device *out, spill_err *err);

/* The placement's and the ring's numbers and the disk tier's, as every device reports them (place.c) */
void spill_exec_stats_into(const spill_exec *x, const spill_placed *placed, spill_engine_stats *out);

#endif
