/* Built without CUDA: the GPU operations exist only to say so. */
#include "spill_cuda_ops.h"

#define NO_CUDA(name) spill_err_set(err, "%s: this build of spill has no CUDA support", name)

int spill_cu_rmsnorm(float *out, const float *x, const float *w, int n_rows, int dim, float eps, void *stream,
                     spill_err *err) {
    (void)out, (void)x, (void)w, (void)n_rows, (void)dim, (void)eps, (void)stream;
    return NO_CUDA("rmsnorm");
}
int spill_cu_rmsnorm_rows(float *out, const float *x, const int *rows, const float *w, int n_rows, int dim, float eps,
                          void *stream, spill_err *err) {
    (void)out, (void)x, (void)rows, (void)w, (void)n_rows, (void)dim, (void)eps, (void)stream;
    return NO_CUDA("rmsnorm");
}
int spill_cu_rope(float *x, int n_tok, int n_heads, int head_dim, int rot_dims, const int *pos, float base,
                  const float *inv_freq, int adjacent, void *stream, spill_err *err) {
    (void)x, (void)n_tok, (void)n_heads, (void)head_dim, (void)rot_dims, (void)pos, (void)base, (void)inv_freq;
    (void)adjacent, (void)stream;
    return NO_CUDA("rope");
}
int spill_cu_softmax(float *x, int rows, int n, float scale, void *stream, spill_err *err) {
    (void)x, (void)rows, (void)n, (void)scale, (void)stream;
    return NO_CUDA("softmax");
}
int spill_cu_swiglu(float *out, const float *gate, const float *up, int64_t n, void *stream, spill_err *err) {
    (void)out, (void)gate, (void)up, (void)n, (void)stream;
    return NO_CUDA("swiglu");
}
int spill_cu_add(float *out, const float *x, int64_t n, void *stream, spill_err *err) {
    (void)out, (void)x, (void)n, (void)stream;
    return NO_CUDA("add");
}
int spill_cu_add_rows(float *out, const float *bias, int rows, int cols, void *stream, spill_err *err) {
    (void)out, (void)bias, (void)rows, (void)cols, (void)stream;
    return NO_CUDA("add_rows");
}
int spill_cu_get_rows(float *out, const void *table, spill_dtype type, int64_t cols, const int *ids, int n,
                      void *stream, spill_err *err) {
    (void)out, (void)table, (void)type, (void)cols, (void)ids, (void)n, (void)stream;
    return NO_CUDA("get_rows");
}
int spill_cu_attention(float *out, const float *q, const void *const *blocks, spill_dtype kv_type, int T,
                       const spill_flash_tile *tiles, int n_tiles, int n_tok, int max_len, int n_heads, int n_kv_heads,
                       int head_dim, float scale, float *partial, void *stream, spill_err *err) {
    (void)out, (void)q, (void)blocks, (void)kv_type, (void)T, (void)tiles, (void)n_tiles, (void)n_tok, (void)max_len;
    (void)n_heads, (void)n_kv_heads, (void)head_dim;
    (void)scale, (void)partial, (void)stream;
    return NO_CUDA("attention");
}
int spill_cu_argmax(const float *x, int n, int *out, void *stream, spill_err *err) {
    (void)x, (void)n, (void)out, (void)stream;
    return NO_CUDA("argmax");
}
int spill_cu_blas_create(spill_cu_blas **out, spill_err *err) {
    *out = NULL;
    return NO_CUDA("cuBLAS");
}
void spill_cu_blas_destroy(spill_cu_blas *b) { (void)b; }
int spill_cu_gemm(spill_cu_blas *b, float *out, const void *w, spill_dtype wtype, int64_t rows, int64_t cols,
                  const float *x, int n_tok, void *scratch, void *stream, spill_err *err) {
    (void)b, (void)out, (void)w, (void)wtype, (void)rows, (void)cols, (void)x, (void)n_tok, (void)scratch, (void)stream;
    return NO_CUDA("gemm");
}
int spill_cu_gemm_ld(spill_cu_blas *b, float *out, int64_t ldo, const void *w, spill_dtype wtype, int64_t rows, int64_t cols,
                     const float *x, int n_tok, void *scratch, void *stream, spill_err *err) {
    (void)b, (void)out, (void)ldo, (void)w, (void)wtype, (void)rows, (void)cols, (void)x, (void)n_tok, (void)scratch,
        (void)stream;
    return NO_CUDA("gemm");
}
int spill_cu_kv_store(void *const *blocks, spill_dtype kv_type, int T, int kv_dim, const int *pos, const int *table,
                      int n_tok, const float *k, const float *v, void *stream, spill_err *err) {
    (void)blocks, (void)kv_type, (void)T, (void)kv_dim, (void)pos, (void)table, (void)n_tok, (void)k, (void)v, (void)stream;
    return NO_CUDA("kv_store");
}
int spill_cu_topk(const float *x, int n, int k, int *idx, float *val, void *stream, spill_err *err) {
    (void)x, (void)n, (void)k, (void)idx, (void)val, (void)stream;
    return NO_CUDA("topk");
}
int spill_cu_gemv(float *out, int64_t ldo, const void *w, spill_dtype type, int64_t rows, int64_t cols, const float *x,
                  int n_tok, void *stream, spill_err *err) {
    (void)out, (void)ldo, (void)w, (void)type, (void)rows, (void)cols, (void)x, (void)n_tok, (void)stream;
    return NO_CUDA("gemv");
}
int spill_cu_dequant_bf16(void *out, const void *w, spill_dtype type, int64_t rows, int64_t cols, void *stream,
                          spill_err *err) {
    (void)out, (void)w, (void)type, (void)rows, (void)cols, (void)stream;
    return NO_CUDA("dequant_bf16");
}
