/* The same greedy tokens on every machine: stories260K's continuations of a few prompts, with 1
 * thread and with 2, against tests/fixtures/greedy_tokens.tsv, written by this program on x86-64
 * (`test_tokens --write`). Run under qemu-aarch64 (scripts/aarch64.sh) it is the check that the
 * aarch64 build gives x86's tokens. `test_tokens smollm2` does the same for SmolLM2-135M.
 * A line of the fixture: model, prompt, then the ids of N_GEN greedy tokens after it. */
#include "engine.h"
#include "test_util.h"

enum { N_GEN = 48 };

static const char *which = "stories260k";

static const char *model_path(void) { return strcmp(which, "smollm2") ? stories_path() : smollm_path(); }

/* greedy ids after the prompt: the prompt in one batch, then one token a step */
static void greedy(const char *prompt, int threads, int *ids) {
    spill_err err = {{0}};
    spill_engine *e = open_engine(model_path(), 256, 64, threads);
    const spill_model *m = spill_engine_model(e);
    int *toks = NULL, nt = 0;
    assert_int_equal(spill_tokenize(&m->tok, prompt, strlen(prompt), 1, 0, &toks, &nt, &err), 0);
    assert_true(nt > 0 && nt <= 64);
    assert_int_equal(spill_engine_forward(e, 0, toks, nt, 0, &err), 0);
    for (int i = 0; i < N_GEN; i++) {
        ids[i] = argmax_logit(spill_engine_logits(e), m->hp.vocab);
        assert_int_equal(spill_engine_forward(e, 0, &ids[i], 1, nt + i, &err), 0);
    }
    free(toks);
    spill_engine_free(e);
}

static void test_fixture(void **s) {
    (void)s;
    FILE *f = fopen(SPILL_FIXTURES_DIR "/greedy_tokens.tsv", "r");
    assert_non_null(f);
    char line[8192];
    int checked = 0;
    while (fgets(line, sizeof line, f)) {
        char *fl[4];
        if (line[0] == '#' || split_tabs(line, fl, 4) != 3 || strcmp(fl[0], which)) continue;
        int want[N_GEN + 1];
        assert_int_equal(parse_ids(fl[2], strlen(fl[2]), want, N_GEN + 1), N_GEN);
        for (int threads = 1; threads <= 2; threads++) {
            int got[N_GEN];
            greedy(fl[1], threads, got);
            int same = 0;
            while (same < N_GEN && got[same] == want[same]) same++;
            printf("%s, \"%s\", %d thread%s: %d of %d tokens as on x86-64\n", which, fl[1], threads,
                   threads > 1 ? "s" : "", same, N_GEN);
            if (same < N_GEN) fail_msg("token %d is %d, x86-64 gave %d", same, got[same], want[same]);
        }
        checked++;
    }
    fclose(f);
    assert_true(checked >= 2);
}

/* test_tokens --write [smollm2]: the fixture's lines for this machine, on stdout */
static int write_fixture(void) {
    static const char *stories[] = {"Once upon a time", "The little dog saw a big red ball", "Tom and Sue went to"};
    static const char *smollm2[] = {"The capital of France is", "def fibonacci(n):"};
    const char **prompts = strcmp(which, "smollm2") ? stories : smollm2;
    size_t n = strcmp(which, "smollm2") ? sizeof stories / sizeof *stories : sizeof smollm2 / sizeof *smollm2;
    for (size_t p = 0; p < n; p++) {
        int ids[N_GEN];
        greedy(prompts[p], 1, ids);
        printf("%s\t%s\t", which, prompts[p]);
        for (int i = 0; i < N_GEN; i++) printf(i ? " %d" : "%d", ids[i]);
        printf("\n");
    }
    return 0;
}

int main(int argc, char **argv) {
    int write = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--write")) write = 1;
        else which = argv[i];
    }
    if (strcmp(which, "stories260k") && strcmp(which, "smollm2")) {
        fprintf(stderr, "test_tokens: unknown model '%s' (stories260k, smollm2)\n", which);
        return 2;
    }
    require_file(model_path(), "the model whose tokens the fixture holds");
    if (write) return write_fixture();
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_fixture)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
