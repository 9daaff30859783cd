/* SmolLM2-135M-Instruct Q4_1 against llama.cpp on the same file (fixtures written by
 * tests/gen_smollm2_fixtures.py): tokenization of a fixed set of strings, chat formatting, and
 * the first 32 greedy token ids for plain and chat prompts. */
#include "chat.h"
#include "forward.h"
#include "sampler.h"
#include "test_util.h"

static spill_mem *mem;
static spill_model model;
static spill_pool *pool;

static int setup(void **state) {
    (void)state;
    spill_err err = {{0}};
    mem = spill_mem_create("host", &err);
    assert_non_null(mem);
    spill_model_params mp = {.use_mmap = 1};
    if (spill_model_load(&model, smollm_path(), &mp, mem, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    pool = spill_pool_create(2);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    spill_model_free(&model);
    spill_pool_free(pool);
    spill_mem_free(mem);
    return 0;
}

static FILE *open_fixture(void) {
    FILE *f = fopen(SPILL_FIXTURES_DIR "/smollm2_llamacpp.tsv", "r");
    assert_non_null(f);
    return f;
}

static void test_tokenize_matches_llamacpp(void **state) {
    (void)state;
    FILE *f = open_fixture();
    char line[1 << 16];
    int checked = 0;
    while (fgets(line, sizeof line, f)) {
        char *fl[8];
        if (line[0] == '#' || split_tabs(line, fl, 8) < 3 || strcmp(fl[0], "tok")) continue;
        size_t tl;
        char *text = hex_decode(fl[1], strlen(fl[1]), &tl);
        int want[4096];
        int nw = parse_ids(fl[2], strlen(fl[2]), want, 4096);
        int *got = NULL, ng = 0;
        spill_err err = {{0}};
        assert_int_equal(spill_tokenize(&model.tok, text, tl, 0, 1, &got, &ng, &err), 0);
        if (ng != nw || memcmp(got, want, sizeof(int) * (size_t)nw)) {
            fprintf(stderr, "tokenization of '%s' differs:\n  llama.cpp:", text);
            for (int i = 0; i < nw; i++) fprintf(stderr, " %d", want[i]);
            fprintf(stderr, "\n  spill:    ");
            for (int i = 0; i < ng; i++) fprintf(stderr, " %d", got[i]);
            fprintf(stderr, "\n");
        }
        assert_int_equal(ng, nw);
        assert_memory_equal(got, want, sizeof(int) * (size_t)nw);
        /* decoding inverts encoding */
        char buf[1 << 16];
        size_t o = 0;
        for (int i = 0; i < ng; i++) {
            if (model.tok.types[got[i]] == SPILL_TOKTYPE_CONTROL) { /* control tokens print nothing; compare their text */
                size_t l = strlen(model.tok.text_buf + model.tok.text_off[got[i]]);
                memcpy(buf + o, model.tok.text_buf + model.tok.text_off[got[i]], l);
                o += l;
            } else {
                o += (size_t)spill_token_to_bytes(&model.tok, got[i], buf + o, (int)(sizeof buf - o));
            }
        }
        assert_int_equal(o, tl);
        assert_memory_equal(buf, text, tl);
        free(got);
        free(text);
        checked++;
    }
    fclose(f);
    assert_true(checked >= 10);
}

static void test_greedy_matches_llamacpp(void **state) {
    (void)state;
    FILE *f = open_fixture();
    char line[1 << 16];
    int checked = 0, total_match = 0;
    while (fgets(line, sizeof line, f)) {
        char *fl[8];
        if (line[0] == '#' || split_tabs(line, fl, 8) < 6 || strcmp(fl[0], "gen")) continue;
        size_t pl, fmtl;
        char *prompt = hex_decode(fl[2], strlen(fl[2]), &pl);
        char *formatted = hex_decode(fl[3], strlen(fl[3]), &fmtl);
        int want_prompt[4096], want_gen[64];
        int nwp = parse_ids(fl[4], strlen(fl[4]), want_prompt, 4096);
        int nwg = parse_ids(fl[5], strlen(fl[5]), want_gen, 64);
        spill_err err = {{0}};
        if (!strcmp(fl[1], "chat")) {
            char *mine = NULL;
            assert_int_equal(spill_chat_format(model.chat_template, prompt, &mine, &err), 0);
            assert_string_equal(mine, formatted);
            free(mine);
        }
        int *toks = NULL, nt = 0;
        assert_int_equal(spill_tokenize(&model.tok, formatted, fmtl, 0, 1, &toks, &nt, &err), 0);
        assert_int_equal(nt, nwp);
        assert_memory_equal(toks, want_prompt, sizeof(int) * (size_t)nt);

        spill_state st;
        assert_int_equal(spill_state_init(&st, &model, 512, 64, pool, &err), 0);
        assert_int_equal(spill_forward(&st, toks, nt, 0, &err), 0);
        spill_sampler smp;
        assert_int_equal(spill_sampler_init(&smp, model.hp.vocab, 0, 0, 1, 1, &err), 0);
        /* Follow llama.cpp's tokens. Every step must pick the same token, except where the two
         * best candidates are a near-tie in spill's own logits (within NEAR_TIE), where the
         * order of float rounding legitimately decides; after such a tie the texts may differ, so
         * the comparison stops there and the count of equal tokens is reported. */
        const float NEAR_TIE = 0.1f;
        int match = 0, pos = nt, tie = 0;
        for (int i = 0; i < nwg; i++) {
            int mine = spill_sampler_sample(&smp, st.logits);
            if (mine != want_gen[i]) {
                float gap = st.logits[mine] - st.logits[want_gen[i]];
                printf("  step %d: spill picks %d, llama.cpp %d; logit gap %.4f\n", i, mine, want_gen[i], gap);
                assert_true(gap < NEAR_TIE);
                tie = 1;
                break;
            }
            match++;
            assert_int_equal(spill_forward(&st, &want_gen[i], 1, pos++, &err), 0);
        }
        printf("%s '%s': %d/%d greedy tokens equal llama.cpp's%s\n", fl[1], prompt, match, nwg,
               tie ? " (then a near-tie)" : "");
        total_match += match == nwg;
        spill_sampler_free(&smp);
        spill_state_free(&st);
        free(toks);
        free(prompt);
        free(formatted);
        checked++;
    }
    fclose(f);
    assert_true(checked >= 5);
    printf("%d of %d prompts agree on all tokens\n", total_match, checked);
    /* at least one prompt must agree all the way: a systematic error would break every one */
    assert_true(total_match >= 1);
}

int main(void) {
    require_file(smollm_path(), "fetch it with scripts/fetch-model.sh");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tokenize_matches_llamacpp),
        cmocka_unit_test(test_greedy_matches_llamacpp),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
