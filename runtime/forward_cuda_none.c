/* Built without CUDA: the GPU forward pass says so. */
#include "forward_cuda.h"

int spill_cu_state_init(spill_cu_state *s, const spill_model *m, spill_mem *mem, int n_ctx, int max_batch, spill_err *err) {
    (void)m, (void)mem, (void)n_ctx, (void)max_batch;
    memset(s, 0, sizeof *s);
    return spill_err_set(err, "--device cuda: this build of spill has no CUDA support (configure with the CUDA toolkit "
                              "installed); use --device cpu");
}

void spill_cu_state_free(spill_cu_state *s) { memset(s, 0, sizeof *s); }

int spill_cu_forward(spill_cu_state *s, const int *tokens, int n, int pos, spill_err *err) {
    (void)s, (void)tokens, (void)n, (void)pos;
    return spill_err_set(err, "this build of spill has no CUDA support");
}

int spill_cu_state_init_params(spill_cu_state *s, const spill_model *m, spill_mem *mem, const spill_cu_params *p,
                               spill_err *err) {
    return spill_cu_state_init(s, m, mem, p->n_ctx, p->max_batch, err);
}
