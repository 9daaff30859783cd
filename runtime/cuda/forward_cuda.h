/* The CUDA device (internal to runtime/): its placer (place_cuda.c) and its state and forward pass
 * (forward_cuda.c), the same steps as the CPU's with the operations of kernels/cuda and cuBLAS for
 * every weight matmul, over memory the plan placed through alloc/ (cuda-managed or system).
 * The runtime reaches CUDA only through kernels/cuda (operations, queues, events, copies) and alloc/.
 *
 * Weights as the GPU holds them: as the file holds them (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K,
 * Q6_K), vectors F32, each tensor on a 256-byte boundary. F32/F16/BF16 matrices go through cuBLAS;
 * quantized ones through the fused dequantize-GEMV for up to SPILL_GEMV_MAX_TOK tokens and, for more,
 * as BF16 tiles of rows expanded into `wtile` and multiplied by cuBLAS. A matrix split by `pin` is
 * two matmuls into the two parts of the output. A streamed layer is copied into a ring slot on a
 * second queue while the layer before it runs: an event per slot says "copied" (the compute queue
 * waits on it) and another "used" (the copy queue waits on it before overwriting the slot). The KV
 * cache is runtime/kv.c's, its blocks where the plan puts each layer's cache. A step is one pass over
 * the layers for all its tokens, whatever sequences they belong to: each weight is read (and streamed)
 * once per step. Its runs (one sequence's consecutive tokens each) share every matmul and element-wise
 * operation; RoPE, the cache stores and attention are launched per run, over the run's own block list.
 * The block table (every run's blocks, layer by layer) goes to the GPU once per step.
 * What has and has not run on a GPU: docs/status.md. */
#ifndef SPILL_FORWARD_CUDA_H
#define SPILL_FORWARD_CUDA_H

#include "device.h"
#include "spill_cuda_ops.h"

/* One sequence's consecutive tokens in a step: tokens [t0, t0 + n) at positions pos.., its blocks at
 * `table` in each layer's row of the block table */
typedef struct spill_cu_run {
    int seq, t0, n, pos, table;
} spill_cu_run;

/* A step's layout in its int buffer of SPILL_CU_STEP_INTS(B) ints, for a batch of at most B tokens:
 * what the kernels read per token from device memory, so a step of many sequences is one launch per
 * operation and a decode step's graph keeps its arguments from step to step */
#define SPILL_CU_STEP_INTS(B) (4 * (B) + 4 * (B)) /* four per token, then at most one tile per token */
typedef struct spill_cu_step {
    int *ids;                /* token ids */
    int *pos;                /* each token's position */
    int *table;              /* where each token's sequence lists its blocks in a layer's row of the block table */
    int *kept;               /* the rows whose logits the step keeps */
    spill_flash_tile *tiles; /* attention's tiles (spill_flash_tiles of each run) */
} spill_cu_step;
static inline spill_cu_step spill_cu_step_layout(int *buf, int B) {
    return (spill_cu_step){buf, buf + B, buf + 2 * B, buf + 3 * B, (spill_flash_tile *)(buf + 4 * B)};
}

/* the sequences one step may hold: at most one run per token and one per sequence */
static inline int spill_cu_max_runs(int batch, int n_seqs) {
    int b = batch > 0 ? batch : 1, s = n_seqs > 0 ? n_seqs : 1;
    return b < s ? b : s;
}

typedef struct spill_cu_state {
    const spill_model *m;
    const spill_hparams *hp;
    spill_mem *mem;
    int n_ctx, max_batch, n_seqs;
    int read_mapped; /* the GPU reads the mapped file where the plan leaves weights in host memory (ATS) */
    void *queue;      /* compute */
    void *copy_queue; /* the ring's copies */
    int n_events;
    void **ready, **used; /* (n_events) per ring slot: copied, done reading */
    int n_disk_events;
    void **disk_used;     /* (n_disk_events) per disk slot: the computation done reading it */
    uint8_t *stage;   /* host-side conversion of weights before their copy */
    size_t stage_cap;
    float *stage_row;
    int64_t stage_row_cap;
    spill_placed placed;
    spill_exec exec;
    spill_kv kv;
    spill_cu_blas *blas;
    /* device work buffers, from the table in spill_cu_buffers */
    float *x, *xb, *xb2, *q, *k, *v, *hb, *hb2, *logits, *attn_partial, *rope_freq;
    void *scratch16;
    void *wtile; /* (spill_cu_tile_elems) BF16: rows of a quantized weight expanded for prefill's cuBLAS */
    /* (SPILL_CU_STEP_INTS(max_batch)) the step's layout, laid out by spill_cu_step_layout: token ids,
       each token's position and block-list offset, the kept tokens' rows, the attention tiles; built in
       step_host, copied to step_dev in one copy per step */
    int *step_dev, *step_host;
    int n_tiles, max_len, n_kept; /* the current step's tiles, longest sequence and kept tokens */
    void **blocks_dev;  /* (n_layers * max_runs * blocks per sequence) the KV block table: each block's first K
                           element, a step's runs side by side in each layer's row */
    void **blocks_host; /* the same in host memory the GPU can copy from */
    int max_runs;       /* sequences a step may hold: spill_cu_max_runs */
    spill_cu_run *runs; /* (max_runs) the current step's */
    float *logits_host;        /* (batch, vocab) the kept outputs of the last step */
    int n_out;
    uint64_t act_bytes;
    int graphs;              /* decode steps replayed as CUDA graphs (turned off if a capture is refused) */
    int graph_max_tok;       /* the widest step a graph may hold: a refused capture of a wider step lowers it */
    spill_cu_graph *graph[2]; /* whole steps, and drafts' steps with layers skipped */
} spill_cu_state;

/* The work buffers: sized from the hyperparameters, the context and the batch; s NULL: sizes only. */
typedef struct spill_cu_buffer {
    const char *what;
    uint64_t bytes;
    spill_tier tier;
    void **dst;
} spill_cu_buffer;
enum { SPILL_CU_BUFFERS = 17 };
/* The BF16 tile: whole rows of the widest matrix, at most SPILL_CU_TILE_ELEMS values (8 MiB), at least one row */
#define SPILL_CU_TILE_ELEMS (4u << 20)
uint64_t spill_cu_tile_elems(const spill_hparams *hp);
int spill_cu_buffers(const spill_hparams *hp, int n_ctx, int batch, int n_seqs, int kv_block, int has_rope_freq,
                     spill_cu_state *s, spill_cu_buffer *b);

extern const spill_placer_iface spill_cuda_placer;

#endif
