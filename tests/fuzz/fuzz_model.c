/* The whole model load from a GGUF image (runtime/model.c: hyperparameters, the tensor table bound and
 * checked against them, the tokenizer, the chat template), then the regions a plan would place. */
#include <string.h>

#include "fuzz.h"
#include "model.h"

static uint64_t file_bytes(const void *ctx, const spill_weight *w) {
    (void)ctx;
    return spill_weight_bytes(w);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    spill_model m;
    spill_err err;
    if (spill_model_load(&m, fuzz_file("model.gguf", data, size), &err)) {
        FUZZ_CHECK(err.msg[0]);
        return 0;
    }
    FUZZ_CHECK(m.hp.n_layers > 0 && m.hp.dim > 0 && m.hp.vocab > 0);
    spill_region *r = NULL;
    int n = 0;
    if (spill_model_regions(&m, file_bytes, NULL, 16, 1, SPILL_DT_F32, &r, &n, &err) == 0) FUZZ_CHECK(n > 0);
    free(r);
    int *ids = NULL, nid = 0;
    if (spill_tokenize(&m.tok, "Once upon a time", 16, 1, 1, &ids, &nid, &err) == 0)
        for (int i = 0; i < nid; i++) FUZZ_CHECK(ids[i] >= 0 && ids[i] < m.tok.n_vocab);
    free(ids);
    spill_model_free(&m);
    return 0;
}
