/* spill-trace MODEL POS TOKEN... : runs the tokens one at a time on the CPU and writes every
 * intermediate tensor of position POS (spill_state.trace; names as llama.cpp's graph has them) to
 * stdout as records: int32 name length, name, int64 count, count floats. trace_compare.py reads them
 * beside llama.cpp's own (its eval callback) and reports which tensors differ in which bits. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "forward.h"

typedef struct tctx {
    int pos, want;
    FILE *out;
} tctx;

static void on_trace(void *ctx, const char *name, int layer, const float *x, int64_t n) {
    tctx *c = ctx;
    if (c->pos != c->want) return;
    char key[64];
    if (layer >= 0) snprintf(key, sizeof key, "%s-%d", name, layer);
    else snprintf(key, sizeof key, "%s", name);
    int32_t kl = (int32_t)strlen(key);
    fwrite(&kl, sizeof kl, 1, c->out);
    fwrite(key, 1, (size_t)kl, c->out);
    fwrite(&n, sizeof n, 1, c->out);
    fwrite(x, sizeof *x, (size_t)n, c->out);
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: spill-trace MODEL POS TOKEN...  (writes position POS's intermediates to stdout)\n");
        return 2;
    }
    int want = atoi(argv[2]), n_tok = argc - 3;
    if (want < 0 || want >= n_tok) {
        fprintf(stderr, "spill-trace: POS %d is not one of the %d tokens' positions\n", want, n_tok);
        return 2;
    }
    spill_err err = {{0}};
    spill_mem *mem = spill_mem_create("host", &err);
    if (!mem) {
        fprintf(stderr, "spill-trace: %s\n", err.msg);
        return 1;
    }
    spill_model m;
    spill_model_params mp = {.use_mmap = 1};
    if (spill_model_load(&m, argv[1], &mp, mem, &err)) {
        fprintf(stderr, "spill-trace: %s\n", err.msg);
        spill_mem_free(mem);
        return 1;
    }
    spill_pool *pool = spill_pool_create(1);
    spill_state st;
    int rc = 1;
    if (!pool || spill_state_init(&st, &m, n_tok, 1, pool, &err)) {
        fprintf(stderr, "spill-trace: %s\n", pool ? err.msg : "cannot start a thread");
        goto out_model;
    }
    tctx c = {0, want, stdout};
    st.trace = on_trace;
    st.trace_ctx = &c;
    for (int i = 0; i <= want; i++) {
        int t = atoi(argv[3 + i]);
        c.pos = i;
        if (spill_forward(&st, &t, 1, i, &err)) {
            fprintf(stderr, "spill-trace: %s\n", err.msg);
            goto out_state;
        }
    }
    rc = fflush(stdout) ? 1 : 0;
out_state:
    spill_state_free(&st);
out_model:
    spill_pool_free(pool);
    spill_model_free(&m);
    spill_mem_free(mem);
    return rc;
}
