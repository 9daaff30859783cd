/* spill-server's request bodies (server/api.c: spill_api_parse) for /v1/completions and
 * /v1/chat/completions against stories260K's tokenizer and vocabulary; an accepted request is
 * written back as a response and a stream chunk. The input's first byte picks the endpoint. */
#include <string.h>

#include "api.h"
#include "fuzz.h"

static spill_model model;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    spill_err err;
    if (spill_model_load(&model, SPILL_MODELS_DIR "/stories260k-f32.gguf", &err)) {
        fprintf(stderr, "fuzz_server: %s\n", err.msg);
        abort();
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int chat = data[0] & 1, ctx = 64;
    spill_api_req r;
    spill_api_err e;
    if (spill_api_parse(chat, (const char *)data + 1, size - 1, &model, ctx, &r, &e) == 0) {
        FUZZ_CHECK(r.n_tokens > 0 && r.n_tokens < ctx && r.tokens);
        for (int i = 0; i < r.n_tokens; i++) FUZZ_CHECK(r.tokens[i] >= 0 && r.tokens[i] < model.hp.vocab);
        FUZZ_CHECK(r.n_stop >= 0 && r.n_stop <= SPILL_API_MAX_STOP && r.max_tokens >= 0);
        FUZZ_CHECK(r.include_usage == 0 || (r.include_usage == 1 && r.stream));
        const char *text = r.prompt ? r.prompt : "";
        spill_api_write_response(fuzz_null(), &r, "id", 0, "model", text, strlen(text), SPILL_FINISH_STOP, r.n_tokens, 1);
        spill_api_write_chunk(fuzz_null(), &r, "id", 0, "model", 1, text, strlen(text), SPILL_FINISH_NONE, 0, 0);
        spill_api_write_chunk(fuzz_null(), &r, "id", 0, "model", 0, "", 0, SPILL_FINISH_LENGTH, r.n_tokens, 1);
    } else {
        FUZZ_CHECK(e.status >= 400 && e.status < 600 && e.msg[0]);
        spill_api_write_error(fuzz_null(), &e);
    }
    spill_api_req_free(&r);
    return 0;
}
