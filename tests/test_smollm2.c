/* SmolLM2-135M-Instruct Q4_1 against llama.cpp on the same file (fixtures written by
 * tests/gen_smollm2_fixtures.py): tokenization of a fixed set of strings, chat formatting, and
 * the first 32 greedy token ids for plain and chat prompts. */
#include "chat.h"
#include "engine.h"
#include "sampler.h"
#include "test_util.h"

static spill_engine *eng;
static const spill_model *model;

static int setup(void **state) {
    (void)state;
    eng = open_engine(smollm_path(), 512, 64, 2);
    model = spill_engine_model(eng);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    spill_engine_free(eng);
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
        assert_int_equal(spill_tokenize(&model->tok, text, tl, 0, 1, &got, &ng, &err), 0);
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
            if (model->tok.types[got[i]] == SPILL_TOKTYPE_CONTROL) { /* control tokens print nothing; compare their text */
                size_t l = strlen(model->tok.text_buf + model->tok.text_off[got[i]]);
                memcpy(buf + o, model->tok.text_buf + model->tok.text_off[got[i]], l);
                o += l;
            } else {
                o += (size_t)spill_token_to_bytes(&model->tok, got[i], buf + o, (int)(sizeof buf - o));
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

/* llama.cpp's four best candidates at one step, from the fixture's last field */
typedef struct {
    int id[4];
    float logit[4];
    int n;
} peer_top;

static int parse_tops(char *field, peer_top *tops, int max) {
    int steps = 0;
    for (char *save = NULL, *step = strtok_r(field, ",", &save); step && steps < max; step = strtok_r(NULL, ",", &save)) {
        peer_top *t = &tops[steps++];
        t->n = 0;
        for (char *s2 = NULL, *c = strtok_r(step, ";", &s2); c && t->n < 4; c = strtok_r(NULL, ";", &s2)) {
            assert_int_equal(sscanf(c, "%d:%f", &t->id[t->n], &t->logit[t->n]), 2);
            t->n++;
        }
        assert_true(t->n >= 2);
    }
    return steps;
}

/* Spill follows llama.cpp's 32 tokens (teacher forcing) and must pick llama.cpp's token at every
 * step, except at a near-tie: both engines rank the two candidates within NEAR_TIE logits of each
 * other. Both run the same Q8 activation quantization; a one-ulp difference in an activation (RoPE
 * angles, the order of a float sum) sometimes flips one rounding, which moves logits by up to about
 * 1 (docs/correctness.md) - two builds of llama.cpp itself pick differently on 4 of 5 prompts. A
 * prompt with no such step agrees token for token when both run freely. */
static void test_greedy_matches_llamacpp(void **state) {
    (void)state;
    const float NEAR_TIE = 0.5f;
    FILE *f = open_fixture();
    static char line[1 << 16];
    int checked = 0, total_match = 0, ties = 0;
    while (fgets(line, sizeof line, f)) {
        char *fl[8];
        if (line[0] == '#' || split_tabs(line, fl, 8) < 7 || strcmp(fl[0], "gen")) continue;
        size_t pl, fmtl;
        char *prompt = hex_decode(fl[2], strlen(fl[2]), &pl);
        char *formatted = hex_decode(fl[3], strlen(fl[3]), &fmtl);
        int want_prompt[4096], want_gen[64];
        peer_top tops[64];
        int nwp = parse_ids(fl[4], strlen(fl[4]), want_prompt, 4096);
        int nwg = parse_ids(fl[5], strlen(fl[5]), want_gen, 64);
        assert_int_equal(parse_tops(fl[6], tops, 64), nwg);
        spill_err err = {{0}};
        if (!strcmp(fl[1], "chat")) {
            char *mine = NULL;
            assert_int_equal(spill_chat_format(model->chat_template, prompt, &mine, &err), 0);
            assert_string_equal(mine, formatted);
            free(mine);
        }
        int *toks = NULL, nt = 0;
        assert_int_equal(spill_tokenize(&model->tok, formatted, fmtl, 0, 1, &toks, &nt, &err), 0);
        assert_int_equal(nt, nwp);
        assert_memory_equal(toks, want_prompt, sizeof(int) * (size_t)nt);

        /* each prompt from an empty sequence 0 */
        spill_kv_release(spill_engine_kv(eng), 0);
        assert_int_equal(spill_kv_seq_open(spill_engine_kv(eng), 0, &err), 0);
        assert_int_equal(spill_engine_forward(eng, 0, toks, nt, 0, &err), 0);
        float *logits = spill_engine_logits(eng);
        spill_sampler smp;
        assert_int_equal(spill_sampler_init(&smp, model->hp.vocab, 0, 0, 1, 1, &err), 0);
        int pos = nt, differ = 0, first = -1;
        for (int i = 0; i < nwg; i++) {
            const peer_top *pt = &tops[i];
            assert_int_equal(pt->id[0], want_gen[i]);
            int mine = spill_sampler_sample(&smp, logits);
            if (mine != want_gen[i]) {
                float gap = logits[mine] - logits[want_gen[i]];
                int k = 1;
                while (k < pt->n && pt->id[k] != mine) k++;
                float peer_gap = k < pt->n ? pt->logit[0] - pt->logit[k] : 1e9f;
                printf("  step %d: spill picks %d, llama.cpp %d; gap %.4f in spill, %.4f in llama.cpp\n", i, mine,
                       want_gen[i], gap, peer_gap);
                assert_true(gap < NEAR_TIE);
                assert_true(peer_gap < NEAR_TIE);
                differ++;
                if (first < 0) first = i;
            }
            assert_int_equal(spill_engine_forward(eng, 0, &want_gen[i], 1, pos++, &err), 0);
        }
        if (differ)
            printf("%s '%s': first %d of %d greedy tokens equal llama.cpp's, %d near-tie step(s)\n", fl[1], prompt,
                   first, nwg, differ);
        else
            printf("%s '%s': all %d greedy tokens equal llama.cpp's\n", fl[1], prompt, nwg);
        total_match += differ == 0;
        ties += differ;
        spill_sampler_free(&smp);
        free(toks);
        free(prompt);
        free(formatted);
        checked++;
    }
    fclose(f);
    assert_true(checked >= 5);
    printf("%d of %d prompts agree on all %d tokens; %d near-tie step(s) elsewhere\n", total_match, checked, 32, ties);
    /* The issue asks for at least 5 prompts that agree all the way. With the fixtures as written
     * (20 prompts, llama-cpp-python 0.3.16 built here with AVX-512), 5 do, in every build of spill
     * tried (gcc, clang, ASan, AVX-512, AVX2, plain x86-64). Which prompts agree is decided by
     * rounding: spill against itself with SiLU written as g * (1 / (1 + e)) instead of g / (1 + e)
     * agrees on 11 of the 20 (docs/correctness.md). A systematic error would break every prompt
     * at its first step, which the near-tie check above catches. */
    assert_true(total_match >= 5);
}

int main(void) {
    require_file(smollm_path(), "fetch it with scripts/fetch-model.sh");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tokenize_matches_llamacpp),
        cmocka_unit_test(test_greedy_matches_llamacpp),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
