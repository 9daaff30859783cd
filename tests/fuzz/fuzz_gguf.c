/* A GGUF file's header, metadata and tensor table (runtime/formats/gguf.c, gguf_meta.c), then its
 * tokenizer (tokenizer.ggml.*) when it has one, on a fixed text. */
#include <string.h>

#include "fuzz.h"
#include "gguf.h"
#include "tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    spill_gguf g;
    spill_err err;
    if (spill_gguf_open(&g, fuzz_file("f.gguf", data, size), &err)) return 0;
    /* everything the table points at is inside the file */
    for (uint64_t i = 0; i < g.n_kv; i++) {
        const spill_gguf_kv *kv = &g.kv[i];
        FUZZ_CHECK((const uint8_t *)kv->key.ptr >= g.map && (const uint8_t *)kv->key.ptr + kv->key.len <= g.map + g.size);
        if (kv->type == SPILL_GGUF_ARRAY && kv->arr_type == SPILL_GGUF_STRING && kv->arr_count < (1u << 20)) {
            spill_str *s = malloc((kv->arr_count ? kv->arr_count : 1) * sizeof *s);
            spill_gguf_arr_strings(kv, s);
            for (uint64_t k = 0; k < kv->arr_count; k++)
                FUZZ_CHECK((const uint8_t *)s[k].ptr >= g.map && (const uint8_t *)s[k].ptr + s[k].len <= g.map + g.size);
            free(s);
        }
    }
    for (uint64_t i = 0; i < g.n_tensors; i++) {
        const spill_gguf_tensor *t = &g.tensors[i];
        FUZZ_CHECK((const uint8_t *)t->data >= g.map && t->bytes <= g.size &&
                   (uint64_t)((const uint8_t *)t->data - g.map) <= g.size - t->bytes);
        FUZZ_CHECK(spill_gguf_tensor_find(&g, "") || 1);
    }
    char arch[64];
    if (spill_gguf_arch(&g, arch, sizeof arch, &err) == 0) {
        spill_hparams hp;
        spill_gguf_hparams_read(&g, arch, &hp, &err);
    }
    uint32_t u;
    float f;
    int b;
    spill_str s;
    spill_gguf_get_u32(&g, "general.alignment", &u, &err);
    spill_gguf_get_f32(&g, "llama.rope.freq_base", &f, &err);
    spill_gguf_get_bool(&g, "tokenizer.ggml.add_bos_token", &b, &err);
    spill_gguf_get_str(&g, "tokenizer.chat_template", &s, &err);
    spill_tokenizer tok;
    if (spill_tokenizer_init(&tok, &g, &err) == 0) {
        static const char text[] = "Hello world, <|im_start|>user\n 12345 éà 日本語 \xF0\x9F\x98\x80 \xff bad";
        int *ids = NULL, n = 0;
        if (spill_tokenize(&tok, text, sizeof text - 1, 1, 1, &ids, &n, &err) == 0) {
            for (int i = 0; i < n; i++) FUZZ_CHECK(ids[i] >= 0 && ids[i] < tok.n_vocab);
            char *out = NULL;
            size_t len = 0;
            if (spill_detokenize(&tok, ids, n, 0, &out, &len, &err) == 0) FUZZ_CHECK(out && out[len] == '\0');
            free(out);
            char buf[8];
            for (int i = 0; i < n; i++) FUZZ_CHECK(spill_token_to_bytes(&tok, ids[i], buf, sizeof buf) >= 0);
        }
        free(ids);
        spill_tokenizer_free(&tok);
    }
    spill_gguf_close(&g);
    return 0;
}
