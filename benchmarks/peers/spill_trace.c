/* spill-trace MODEL POS TOKEN... : runs the tokens one at a time on the CPU and writes every
 * intermediate tensor of position POS (spill_engine_params.trace; names as llama.cpp's graph has them) to
 * stdout as records: int32 name length, name, int64 count, count floats. trace_compare.py reads them
 * beside llama.cpp's own (its eval callback) and reports which tensors differ in which bits. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"

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
    tctx c = {0, want, stdout};
    spill_engine_params p = spill_engine_defaults();
    p.model = argv[1];
    p.ctx = n_tok;
    p.batch = 1;
    p.threads = 1;
    p.quiet = 1;
    p.trace = on_trace;
    p.trace_ctx = &c;
    spill_engine *e;
    if (spill_engine_open(&p, &e, &err)) {
        fprintf(stderr, "spill-trace: %s\n", err.msg);
        return 1;
    }
    int rc = 0;
    for (int i = 0; i <= want && !rc; i++) {
        int t = atoi(argv[3 + i]);
        c.pos = i;
        if (spill_engine_forward(e, 0, &t, 1, i, &err)) {
            fprintf(stderr, "spill-trace: %s\n", err.msg);
            rc = 1;
        }
    }
    if (!rc && fflush(stdout)) rc = 1;
    spill_engine_free(e);
    return rc;
}
