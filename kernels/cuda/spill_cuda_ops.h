/* The forward pass's operations on the GPU, callable from C. One .cu file per op holds its kernel
 * and its launcher; each has a CPU twin in kernels/ops.c or kernels/quant.c that tests/test_cuda_ops.c
 * (label gpu) compares it with. Pointers are device (or managed / mapped) memory; `stream` is a
 * cudaStream_t (NULL: the legacy stream). Every launcher checks its launch and returns 0, or -1 with
 * the failing call named. Without CUDA in the build they all say so. Kernels know nothing of placement.
 * Never run on a GPU by the session that wrote them: docs/gpu.md. */
#ifndef SPILL_CUDA_OPS_H
#define SPILL_CUDA_OPS_H

#include "spill_common.h"
#include "spill_kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- queues, events and copies: how the runtime orders work on the GPU without calling CUDA ----
 * A queue is a cudaStream_t (non-blocking), an event a cudaEvent_t without timing. Copies are
 * cudaMemcpyDefault: source and destination may be device, managed, pinned or mapped memory (a
 * copy from pageable memory is synchronous: the runtime stages it). Only in a CUDA build. */
int spill_cu_queue_create(void **queue, spill_err *err);
/* waits for what is queued, then destroys it; NULL is a no-op */
void spill_cu_queue_free(void *queue);
int spill_cu_queue_sync(void *queue, spill_err *err);
int spill_cu_event_create(void **event, spill_err *err);
void spill_cu_event_free(void *event);
/* the event completes when what `queue` holds now has run */
int spill_cu_event_record(void *event, void *queue, spill_err *err);
/* what is queued on `queue` from now on waits for the event */
int spill_cu_queue_wait(void *queue, void *event, spill_err *err);
/* the host waits until the event has completed (at once for one never recorded) */
int spill_cu_event_sync(void *event, spill_err *err);
/* pinned host memory (cudaMallocHost: page-locked, page-aligned, read by the GPU in place through the
 * same pointer under unified addressing) */
int spill_cu_host_alloc(void **p, size_t n, spill_err *err);
void spill_cu_host_free(void *p);
int spill_cu_copy_async(void *dst, const void *src, size_t n, void *queue, spill_err *err);
/* synchronous */
int spill_cu_copy(void *dst, const void *src, size_t n, spill_err *err);

/* ---- CUDA graphs: a step captured from a queue and replayed as one launch (only in a CUDA build) ----
 * begin puts the queue in capture mode (thread-local: a call on this thread that a graph cannot hold,
 * such as a synchronize, a copy from pageable memory or an allocation, fails and spoils the capture
 * rather than running out of order). end takes the graph: with launch, it updates the executable graph
 * kept from the last capture in place when the kernels are the same (new arguments), else instantiates
 * it anew, and launches it on the queue; without launch (the step failed) it discards it. An error from
 * end leaves the queue out of capture mode; nothing captured has run. */
typedef struct spill_cu_graph spill_cu_graph;
int spill_cu_graph_create(spill_cu_graph **out, spill_err *err);
void spill_cu_graph_free(spill_cu_graph *g);
int spill_cu_graph_begin(spill_cu_graph *g, void *queue, spill_err *err);
int spill_cu_graph_end(spill_cu_graph *g, void *queue, int launch, spill_err *err);
void spill_cu_graph_counts(const spill_cu_graph *g, uint64_t *launches, uint64_t *instantiated, uint64_t *updated);

/* out[r] = x[r] / rms(x[r]) * w for n_rows rows of dim values */
int spill_cu_rmsnorm(float *out, const float *x, const float *w, int n_rows, int dim, float eps, void *stream,
                     spill_err *err);
/* the same of gathered rows: out[r] = x[rows[r]] / rms(x[rows[r]]) * w, rows a device array of n_rows
 * row indices */
int spill_cu_rmsnorm_rows(float *out, const float *x, const int *rows, const float *w, int n_rows, int dim, float eps,
                          void *stream, spill_err *err);
/* RoPE in place on n_tok rows of n_heads x head_dim, token t at position pos[t] (device); inv_freq
 * (device, rot_dims/2 values) or NULL for base^(-2i/rot_dims); adjacent pairs (GGUF Llama) or
 * rotate-half. Twin: spill_rope, token by token. */
int spill_cu_rope(float *x, int n_tok, int n_heads, int head_dim, int rot_dims, const int *pos, float base,
                  const float *inv_freq, int adjacent, void *stream, spill_err *err);
/* in place: each of `rows` rows of n values becomes softmax(row * scale) */
int spill_cu_softmax(float *x, int rows, int n, float scale, void *stream, spill_err *err);
/* out = silu(gate) * up over n values */
int spill_cu_swiglu(float *out, const float *gate, const float *up, int64_t n, void *stream, spill_err *err);
/* out += x over n values */
int spill_cu_add(float *out, const float *x, int64_t n, void *stream, spill_err *err);
/* each of `rows` rows of out (cols wide) += bias (cols), as spill_add_rows */
int spill_cu_add_rows(float *out, const float *bias, int rows, int cols, void *stream, spill_err *err);
/* out[i] = row ids[i] of a table of `cols`-wide rows, dequantized (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q6_K) */
int spill_cu_get_rows(float *out, const void *table, spill_dtype type, int64_t cols, const int *ids, int n,
                      void *stream, spill_err *err);
/* Causal attention over the paged KV cache, flash-decoding, for a whole step in one launch: as
 * spill_flash_attention_tiles (kernels/flash.c, its twin; per sequence the same result as
 * spill_attention_paged). tiles is a device array of n_tiles tiles (spill_flash_tiles of each of the
 * step's sequences) over the n_tok rows of q and out, none reaching past max_len positions; each
 * tile's sequence has its block list at blocks + tile.table, a device array of device pointers to
 * elements of kv_type (F32, F16 or BF16; sums in F32). partial is scratch of
 * spill_flash_partial_floats(n_heads, n_kv_heads, head_dim) floats, whatever the context and the
 * number of sequences. n_tiles <= 65535. */
int spill_cu_attention(float *out, const float *q, const void *const *blocks, spill_dtype kv_type, int T,
                       const spill_flash_tile *tiles, int n_tiles, int n_tok, int max_len, int n_heads, int n_kv_heads,
                       int head_dim, float scale, float *partial, void *stream, spill_err *err);
/* K and V rows of n_tok tokens into the paged cache, rounded to kv_type (nearest even): token t at
 * position pos[t] of the sequence whose block list is at blocks + table[t] (pos, table and blocks are
 * device arrays), as spill_kv_store_paged token by token */
int spill_cu_kv_store(void *const *blocks, spill_dtype kv_type, int T, int kv_dim, const int *pos, const int *table,
                      int n_tok, const float *k, const float *v, void *stream, spill_err *err);
/* the k largest of n values into idx[k], val[k] (device), ordered as spill_topk */
int spill_cu_topk(const float *x, int n, int k, int *idx, float *val, void *stream, spill_err *err);
/* *out = the index of the largest of n values (the first, on ties) */
int spill_cu_argmax(const float *x, int n, int *out, void *stream, spill_err *err);

/* Decode's matmul on weights as the file holds them, as spill_gemv (kernels/gemv.c, its twin):
 * out[t*ldo + r] = dot(row r of w, x[t]) for 1..SPILL_GEMV_MAX_TOK tokens; F32, F16, BF16, Q8_0, Q4_0,
 * Q4_1, Q4_K, Q6_K */
int spill_cu_gemv(float *out, int64_t ldo, const void *w, spill_dtype type, int64_t rows, int64_t cols, const float *x,
                  int n_tok, void *stream, spill_err *err);
/* rows x cols of w dequantized into out (BF16, rows cols apart), as spill_dequant_bf16: prefill's tiles */
int spill_cu_dequant_bf16(void *out, const void *w, spill_dtype type, int64_t rows, int64_t cols, void *stream,
                          spill_err *err);

/* cuBLAS: out[t][r] = dot(W row r, x[t]) for n_tok tokens; W is rows x cols of F16, BF16 or F32; x is
 * F32 (converted to a 16-bit W's type into `scratch`, which holds n_tok*cols 16-bit values; unused for
 * F32); FP32 accumulation (F32 weights: without TF32). */
typedef struct spill_cu_blas spill_cu_blas;
int spill_cu_blas_create(spill_cu_blas **out, spill_err *err);
void spill_cu_blas_destroy(spill_cu_blas *b);
int spill_cu_gemm(spill_cu_blas *b, float *out, const void *w, spill_dtype wtype, int64_t rows, int64_t cols,
                  const float *x, int n_tok, void *scratch, void *stream, spill_err *err);
/* the same into an output whose token rows are ldo >= rows apart: the rows of a matrix split between
 * tiers are two GEMMs, into out and out + split */
int spill_cu_gemm_ld(spill_cu_blas *b, float *out, int64_t ldo, const void *w, spill_dtype wtype, int64_t rows, int64_t cols,
                     const float *x, int n_tok, void *scratch, void *stream, spill_err *err);

#ifdef __cplusplus
}
#endif
#endif
