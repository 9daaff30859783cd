/* A safetensors file: the 8-byte length, the JSON header, the tensors' offsets against the file. */
#include "fuzz.h"
#include "safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    spill_safetensors st = {0};
    spill_err err;
    if (spill_st_add_file(&st, fuzz_file("model.safetensors", data, size), &err) == 0) {
        for (int i = 0; i < st.n; i++) {
            const spill_st_tensor *t = &st.t[i];
            const spill_st_file *f = &st.files[t->file];
            FUZZ_CHECK(t->name && spill_st_find(&st, t->name));
            FUZZ_CHECK((const uint8_t *)t->data >= f->map && t->bytes <= f->size &&
                       (uint64_t)((const uint8_t *)t->data - f->map) <= f->size - t->bytes);
        }
    } else {
        FUZZ_CHECK(err.msg[0]);
    }
    spill_st_close(&st);
    return 0;
}
