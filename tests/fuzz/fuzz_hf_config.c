/* A Hugging Face config.json read and checked into hyperparameters (runtime/formats/hf_config.c). */
#include "fuzz.h"
#include "hf_config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    spill_hf_config c;
    spill_err err;
    const char *path = fuzz_file("config.json", data, size);
    /* the dtype override too: the input's first byte picks it */
    static const char *const dtypes[] = {NULL, "bf16", "f16", "f32"};
    if (spill_hf_config_read(path, dtypes[size ? data[0] & 3 : 0], &c, &err) == 0) {
        FUZZ_CHECK(c.hp.n_layers > 0 && c.hp.dim > 0 && c.hp.n_heads > 0 && c.hp.n_kv_heads > 0);
        FUZZ_CHECK(c.hp.n_heads % c.hp.n_kv_heads == 0);
        FUZZ_CHECK(c.dtype_bytes == 2 || c.dtype_bytes == 4);
    } else {
        FUZZ_CHECK(err.msg[0]);
    }
    return 0;
}
