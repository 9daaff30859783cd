/* spill-server's request bodies (server/api.c: spill_api_parse) for /v1/completions and
 * /v1/chat/completions against stories260K's tokenizer and vocabulary; an accepted request is
 * written back as a response and a stream chunk. The input's first byte picks the endpoint. */
#include <math.h>
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
        FUZZ_CHECK(r.n_stop >= 0 && r.n_stop <= SPILL_API_MAX_STOP && (r.max_tokens >= 0 || (r.max_tokens == -1 && r.echo)));
        FUZZ_CHECK(!r.echo || (!chat && r.echo_text));
        FUZZ_CHECK(r.n_bias >= 0 && r.n_bias <= SPILL_API_MAX_BIAS && (r.n_bias == 0 || (r.bias_id && r.bias)));
        for (int i = 0; i < r.n_bias; i++) {
            FUZZ_CHECK(r.bias_id[i] >= 0 && r.bias_id[i] < model.hp.vocab && r.bias[i] >= -100 && r.bias[i] <= 100);
            for (int k = 0; k < i; k++) FUZZ_CHECK(r.bias_id[k] != r.bias_id[i]);
        }
        FUZZ_CHECK(r.presence_penalty >= -2 && r.presence_penalty <= 2 && r.frequency_penalty >= -2 && r.frequency_penalty <= 2);
        FUZZ_CHECK(r.repeat_penalty >= 0 && r.repeat_penalty <= SPILL_REPEAT_MAX && r.repeat_window >= 0 &&
                   r.repeat_window <= SPILL_REPEAT_WINDOW_MAX);
        FUZZ_CHECK(r.include_usage == 0 || (r.include_usage == 1 && r.stream));
        FUZZ_CHECK(r.top_logprobs >= 0 && r.top_logprobs <= SPILL_MAX_TOP_LOGPROBS && (r.logprobs || !r.top_logprobs));
        const char *text = r.echo ? r.echo_text : r.prompt ? r.prompt : "";
        size_t len = r.echo ? r.echo_len : strlen(text);
        /* log probabilities of the prompt's tokens stand in for generated ones: every id and byte sequence */
        spill_token_logprob lp[8];
        int n_lp = r.n_tokens < 8 ? r.n_tokens : 8;
        for (int i = 0; i < n_lp; i++) {
            lp[i] = (spill_token_logprob){.id = r.tokens[i], .logprob = i ? -0.5f * (float)i : r.echo ? NAN : -INFINITY,
                                          .n_top = r.top_logprobs};
            for (int k = 0; k < r.top_logprobs; k++) lp[i].top_id[k] = r.tokens[(i + k) % r.n_tokens], lp[i].top_logprob[k] = -1;
        }
        FUZZ_CHECK(r.n >= 1 && r.n <= SPILL_API_MAX_N);
        spill_api_choice ch[2] = {{text, len, lp, n_lp, SPILL_FINISH_STOP}, {"", 0, NULL, 0, SPILL_FINISH_LENGTH}};
        spill_api_write_response(fuzz_null(), &r, "id", 0, "model", ch, 2, &model.tok, r.n_tokens, 1);
        size_t offset = 0;
        spill_api_write_chunk(fuzz_null(), &r, "id", 0, "model", 0, 1, text, len, &model.tok, lp, n_lp, &offset,
                              SPILL_FINISH_NONE);
        spill_api_write_chunk(fuzz_null(), &r, "id", 0, "model", 1, 0, "", 0, &model.tok, NULL, 0, &offset,
                              SPILL_FINISH_LENGTH);
        spill_api_write_usage_chunk(fuzz_null(), &r, "id", 0, "model", r.n_tokens, 1);
    } else {
        FUZZ_CHECK(e.status >= 400 && e.status < 600 && e.msg[0]);
        spill_api_write_error(fuzz_null(), &e);
    }
    spill_api_req_free(&r);
    return 0;
}
