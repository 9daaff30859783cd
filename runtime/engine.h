/* The engine: what a program opens to run a model. It owns the memory (alloc/), the model (its files,
 * tokenizer and regions), the plan (policies/), the thread pool and one device's state, and runs
 * forward steps of any sequence through that device's one small interface (device.h):
 *
 *   spill_engine *e;
 *   spill_engine_params p = spill_engine_defaults();
 *   p.model = "model.gguf";
 *   if (spill_engine_open(&p, &e, &err)) ...;
 *   spill_engine_forward(e, seq, tokens, n, pos, &err);   // logits of the last token:
 *   const float *logits = spill_engine_logits(e);
 *   spill_engine_free(e);
 *
 * Devices: "cpu" (kernels/, host memory; HBM regions of a plan emulated in host memory) and "cuda"
 * (kernels/cuda and cuBLAS over memory the plan placed). Each has a placer (place.h) that carries
 * the plan out and a forward pass; they give the same tokens for every policy and budget. */
#ifndef SPILL_ENGINE_H
#define SPILL_ENGINE_H

#include <signal.h>

#include "kv.h"
#include "model.h"
#include "spill_alloc.h"
#include "spill_policy.h"

typedef struct spill_engine spill_engine;

typedef struct spill_engine_params {
    const char *model;   /* a GGUF file or a Hugging Face directory */
    const char *device;  /* "auto" (= cpu), "cpu" or "cuda" */
    const char *backend; /* memory backend: "auto", "host", "emulated", "system", "cuda-managed", "cuda-device" */
    spill_mem *mem;      /* or an allocator of the caller's (not freed by the engine); backend is then unused */
    const char *policy;  /* NULL: the device's default (cpu: host; cuda: pin) */
    const spill_profile *profile; /* NULL: the device's default (cpu; cuda: picked from the GPU's attributes,
                                     spill_profile_pick) */
    uint64_t hbm_budget; /* bytes of HBM the plan and the allocator may use; 0: cpu none, cuda free - reserve */
    uint64_t hbm_reserve;  /* cuda with no budget: HBM left free */
    uint64_t host_limit; /* 0: what the machine has. Below what the plan leaves in host memory (weights,
                            the mapped file's pages included, and the KV cache), whole layers are read
                            from the model file every step instead (the disk tier, disk.h) */
    const char *disk_io; /* the disk tier's reads: "uring" (O_DIRECT + io_uring, the default) or "mmap"
                            (through the mapping, pages dropped after use: the comparison) */
    const char *alloc_log; /* CSV of backend calls, or NULL */
    int use_mmap;        /* weights the plan leaves in host memory are read where they lie in the file */
    int ctx;             /* positions per sequence; 0 = min(4096, the model's) */
    int batch;           /* tokens per forward step (prefill chunk); 0 = 64 */
    int n_seqs;          /* sequences the KV cache holds at once; 0 = 1 */
    int kv_block;        /* tokens per KV block (a power of two); 0 = the default */
    int kv_blocks;       /* physical KV blocks in all; 0 = enough for n_seqs full contexts */
    spill_dtype kv_type; /* K and V elements: SPILL_DT_F32 (0, the default), SPILL_DT_F16 or SPILL_DT_BF16 */
    int threads;         /* CPU threads; 0 = every online CPU (with host_node: that node's) */
    int host_node;       /* host NUMA node the threads run on and host memory is taken from first (the
                            calling thread and every thread it starts from spill_engine_open on, for
                            good: spill_numa_bind); -1 (the default) = the system's choice */
    int quiet;           /* no progress lines on stderr */
    int cuda_graphs;     /* cuda: replay decode steps as CUDA graphs (the default; SPILL_CUDA_GRAPHS) */
    const char *tokenizer_pre; /* GGUF: read tokenizer.ggml.pre as this known type; NULL = as written */
    /* cpu only: called with each intermediate tensor of a step as it is produced (names as
       llama.cpp's graph has them: attn_norm, Qcur, Kcur, Vcur, kqv_out, attn_out, ffn_inp, ffn_norm,
       ffn_gate, ffn_up, ffn_swiglu, ffn_out, l_out; layer -1 for result_norm, result_output) */
    void (*trace)(void *ctx, const char *name, int layer, const float *x, int64_t n);
    void *trace_ctx;
} spill_engine_params;

spill_engine_params spill_engine_defaults(void);

int spill_engine_open(const spill_engine_params *p, spill_engine **out, spill_err *err);
/* NULL is a no-op. */
void spill_engine_free(spill_engine *e);

/* One step over tokens of any number of sequences: every weight is read once for all of them (batched
 * decode, chunked prefill beside decode). Token i extends sequence seq[i] at position pos[i]; the
 * tokens of one sequence are consecutive positions, in order, starting at most at its length
 * (spill_kv_len), and attend to their own sequence only. out[i] = 1 keeps token i's logits (the
 * outputs are numbered in batch order); out NULL keeps the last token's only. The result of each
 * token does not depend on what else is in the batch. */
typedef struct spill_batch {
    int n;            /* tokens, 1..the engine's batch */
    const int *token; /* (n) */
    const int *seq;   /* (n) */
    const int *pos;   /* (n) */
    const uint8_t *out; /* (n) or NULL */
    /* (n_layers) or NULL: skip[l] = 1 runs the step without layer l (a layer-skip draft, spec.h):
       the hidden state passes it unchanged, its KV entries at these positions are not written, and a
       streamed one is not fetched */
    const uint8_t *skip;
    /* 0, or 1..vocab-1: the logits of tokens [0, head_rows) only; the others are -INFINITY on every device
       (a draft's reduced vocabulary, spec.h: a vocabulary's worth of head rows is a large part of a small
       model's bytes). The CPU's head multiplies only those rows; the GPU's computes every row. */
    int head_rows;
} spill_batch;
int spill_engine_step(spill_engine *e, const spill_batch *b, spill_err *err);
/* tokens[0..n) of sequence seq at positions pos..pos+n-1 (n <= batch, pos+n <= ctx): a step of one
 * sequence, keeping the last token's logits. Sequence 0 is open; others start by spill_kv_fork or
 * spill_kv_seq_open on spill_engine_kv. */
int spill_engine_forward(spill_engine *e, int seq, const int *tokens, int n, int pos, spill_err *err);
/* A prompt: tokens[0..n) of sequence seq from position pos, in steps of the engine's batch, keeping the
 * last token's logits only (the steps before the last compute none: the output matmul, a vocabulary's
 * worth of rows, is not repeated per step). When stop is not NULL and *stop becomes nonzero between
 * steps, it returns 0 with the prompt partly run. */
int spill_engine_prefill(spill_engine *e, int seq, const int *tokens, int n, int pos, volatile const sig_atomic_t *stop,
                         spill_err *err);
/* (vocab) the last kept output's logits of the last step, in host memory; the caller may change them
 * (a sampler scales them in place) until the next step overwrites them */
float *spill_engine_logits(spill_engine *e);
/* the i-th kept output of the last step (0 <= i < spill_engine_n_outputs) */
float *spill_engine_logits_at(spill_engine *e, int i);
int spill_engine_n_outputs(const spill_engine *e);
/* the engine's thread pool, idle between steps: the caller's own parallel work (the scheduler samples
 * a step's outputs over it) may run on it from the thread that runs the steps */
spill_pool *spill_engine_pool(spill_engine *e);
spill_kv *spill_engine_kv(spill_engine *e);

typedef struct spill_engine_stats {
    uint64_t weights[SPILL_TIER_COUNT]; /* weight bytes held per tier as this device holds them */
    uint64_t mapped;                    /* of the host ones, read in place from the model file */
    uint64_t read[SPILL_TIER_COUNT];    /* weight bytes the forward steps read from each tier */
    uint64_t prefetched;                /* bytes copied into the ring */
    double wait_s;                      /* time waited on the host for the ring's copies */
    int ring_slots, ring_ahead;
    uint64_t slot_bytes;
    uint64_t act_bytes;                 /* the device's work buffers */
    uint64_t disk_read, disk_used;      /* the disk tier: bytes read from the files, and of them tensor bytes */
    double disk_wait_s;                 /* time waited for the disk tier's reads */
    int disk_layers, disk_direct;       /* layers on disk; 1 when read with O_DIRECT */
    uint64_t graph_launches, graphs_made; /* cuda: steps replayed as CUDA graphs; graphs instantiated */
    spill_kv_stats kv;
} spill_engine_stats;
void spill_engine_get_stats(const spill_engine *e, spill_engine_stats *out);

const spill_model *spill_engine_model(const spill_engine *e);
const spill_plan *spill_engine_plan(const spill_engine *e);
const spill_region *spill_engine_regions(const spill_engine *e, int *n);
const spill_profile *spill_engine_profile(const spill_engine *e);
spill_mem *spill_engine_mem(spill_engine *e);
int spill_engine_ctx(const spill_engine *e);
int spill_engine_batch(const spill_engine *e);
int spill_engine_threads(const spill_engine *e);
uint64_t spill_engine_hbm_budget(const spill_engine *e);
const char *spill_engine_device(const spill_engine *e);

#endif
