/* A tokenizer.json (runtime/text/tokenizer_hf.c and the pipeline it builds), then encode/decode round
 * trips of fuzzed text. Input: the tokenizer.json's bytes, a NUL byte, then the text (a valid
 * tokenizer.json has no NUL byte; without one the text is a fixed sentence). */
#include <string.h>

#include "fuzz.h"
#include "tokenizer.h"

static void round_trip(const spill_tokenizer *t, const char *text, size_t len, int add_special, int parse_special) {
    int *ids = NULL, n = 0;
    spill_err err;
    if (spill_tokenize(t, text, len, add_special, parse_special, &ids, &n, &err)) {
        FUZZ_CHECK(err.msg[0]);
        return;
    }
    for (int i = 0; i < n; i++) FUZZ_CHECK(ids[i] >= 0 && ids[i] < t->n_vocab);
    char *out = NULL;
    size_t out_len = 0;
    if (spill_detokenize(t, ids, n, !parse_special, &out, &out_len, &err) == 0) {
        FUZZ_CHECK(out && out[out_len] == '\0');
        /* and once more through the tokenizer: the decoded text is text like any other */
        int *again = NULL, n2 = 0;
        if (spill_tokenize(t, out, out_len, 0, parse_special, &again, &n2, &err) == 0)
            for (int i = 0; i < n2; i++) FUZZ_CHECK(again[i] >= 0 && again[i] < t->n_vocab);
        free(again);
    }
    free(out);
    char buf[16];
    for (int i = 0; i < n; i++) {
        int w = spill_token_to_bytes(t, ids[i], buf, sizeof buf);
        FUZZ_CHECK(w >= 0);
        spill_token_is_eog(t, ids[i]);
    }
    free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *nul = memchr(data, 0, size);
    size_t json_len = nul ? (size_t)(nul - data) : size;
    static const char fixed[] = "Hello, world! <s> 123 \xE2\x80\x94 caf\xC3\xA9\n\n  \xF0\x9F\x98\x80";
    const char *text = nul ? (const char *)nul + 1 : fixed;
    size_t text_len = nul ? size - json_len - 1 : sizeof fixed - 1;
    spill_tokenizer t;
    spill_err err;
    if (spill_tokenizer_init_json(&t, fuzz_file("tokenizer.json", data, json_len), &err)) {
        FUZZ_CHECK(err.msg[0]);
        return 0;
    }
    FUZZ_CHECK(t.n_vocab > 0);
    round_trip(&t, text, text_len, 1, 1);
    round_trip(&t, text, text_len, 0, 0);
    spill_token_find(&t, text, text_len < 64 ? text_len : 64);
    spill_tokenizer_free(&t);
    return 0;
}
