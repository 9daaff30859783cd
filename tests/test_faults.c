/* Faults in the middle of a run, each of which must end in a clear error and lose nothing:
 *  - the model file truncated (or rewritten) in place after it was mapped: reading the mapping past
 *    the new end would be a SIGBUS; the engine checks the files before every step and says what
 *    happened instead. A file replaced by a rename keeps working (the mapping holds the old one).
 *  - the host memory budget exhausted in the middle of a decode: the step fails naming the limit;
 *    with the limit raised the same step succeeds and gives the same tokens as a run that never
 *    failed.
 *  - KV blocks exhausted at admission: a request the cache cannot hold at all is refused; requests
 *    that do not fit beside the running ones wait and then give the text they give alone.
 *  - a profile or plot written to a full disk (a file size limit of 0, or /dev/full): an error, and
 *    the destination as it was, with no temporary file left behind.
 *  - SIGINT to spill-generate during the load and during the decode: a clean exit (130 with nothing
 *    generated, or 0 with the text so far and the report), never a crash, the allocation log whole. */
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <time.h>

#include "engine.h"
#include "scheduler.h"
#include "synthetic.h"
#include "spill_alloc.h"
#include "test_util.h"

static char dir[256];

static int setup(void **state) {
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/spill-faults-XXXXXX");
    assert_non_null(mkdtemp(dir));
    return 0;
}

static int teardown(void **state) {
    (void)state;
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd);
}

static void copy_file(const char *from, const char *to) {
    FILE *a = fopen(from, "rb"), *b = fopen(to, "wb");
    assert_non_null(a);
    assert_non_null(b);
    char buf[1 << 16];
    for (size_t n; (n = fread(buf, 1, sizeof buf, a)) > 0;) assert_int_equal(fwrite(buf, 1, n, b), n);
    fclose(a);
    assert_int_equal(fclose(b), 0);
}

static spill_engine *engine_at(const char *path, int ctx, int batch, int kv_block) {
    spill_err err = {{0}};
    spill_engine_params p = spill_engine_defaults();
    p.model = path;
    p.ctx = ctx;
    p.batch = batch;
    p.kv_block = kv_block;
    p.threads = 2;
    p.quiet = 1;
    spill_engine *e = NULL;
    if (spill_engine_open(&p, &e, &err)) fail_msg("%s: %s", path, err.msg);
    return e;
}

static const int prompt4[4] = {1, 403, 407, 261};

/* ---- the model file changed under the mapping ---- */

static void test_model_truncated(void **state) {
    (void)state;
    char path[512];
    snprintf(path, sizeof path, "%s/trunc.gguf", dir);
    copy_file(stories_path(), path);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    spill_engine *e = engine_at(path, 64, 8, 0);
    spill_err err = {{0}};
    assert_int_equal(spill_engine_forward(e, 0, prompt4, 4, 0, &err), 0);
    spill_engine_stats st;
    spill_engine_get_stats(e, &st);
    assert_true(st.mapped > 0); /* the weights are read in place from the mapping */
    /* in place, to half: the pages past the new end would fault with SIGBUS if read */
    assert_int_equal(truncate(path, sb.st_size / 2), 0);
    int next = 5;
    assert_int_equal(spill_engine_forward(e, 0, &next, 1, 4, &err), -1);
    assert_non_null(strstr(err.msg, path));
    assert_non_null(strstr(err.msg, "truncated while in use"));
    spill_engine_free(e);
}

static void test_model_rewritten_in_place(void **state) {
    (void)state;
    char path[512];
    snprintf(path, sizeof path, "%s/rewrite.gguf", dir);
    copy_file(stories_path(), path);
    spill_engine *e = engine_at(path, 64, 8, 0);
    spill_err err = {{0}};
    assert_int_equal(spill_engine_forward(e, 0, prompt4, 4, 0, &err), 0);
    /* another model of the same size written over it (what `cp other.gguf model.gguf` does) */
    struct timespec later[2] = {{0, UTIME_OMIT}, {time(NULL) + 100, 0}};
    copy_file(stories_path(), path);
    assert_int_equal(utimensat(AT_FDCWD, path, later, 0), 0); /* a coarse clock may not have ticked */
    int next = 5;
    assert_int_equal(spill_engine_forward(e, 0, &next, 1, 4, &err), -1);
    assert_non_null(strstr(err.msg, "modified while in use"));
    spill_engine_free(e);
}

static void test_model_replaced_by_rename(void **state) {
    (void)state;
    char path[512], other[512];
    snprintf(path, sizeof path, "%s/renamed.gguf", dir);
    snprintf(other, sizeof other, "%s/new.gguf", dir);
    copy_file(stories_path(), path);
    spill_engine *e = engine_at(path, 64, 8, 0);
    spill_err err = {{0}};
    assert_int_equal(spill_engine_forward(e, 0, prompt4, 4, 0, &err), 0);
    int vocab = spill_engine_model(e)->hp.vocab;
    int want = argmax_logit(spill_engine_logits(e), vocab);
    /* the safe way to update a model: a new file renamed over the old one; then the old one deleted */
    copy_file(stories_path(), other);
    assert_int_equal(truncate(other, 100), 0);
    assert_int_equal(rename(other, path), 0);
    assert_int_equal(spill_engine_forward(e, 0, &want, 1, 4, &err), 0);
    unlink(path);
    int next = argmax_logit(spill_engine_logits(e), vocab);
    assert_int_equal(spill_engine_forward(e, 0, &next, 1, 5, &err), 0);
    spill_engine_free(e);
}

/* ---- the host budget exhausted in the middle of a decode ---- */

/* greedy decode from pos for n tokens; returns the step that failed (or n), tokens in out */
static int decode(spill_engine *e, int first, int pos, int n, int *out, spill_err *err) {
    int vocab = spill_engine_model(e)->hp.vocab, tok = first;
    for (int i = 0; i < n; i++) {
        if (spill_engine_forward(e, 0, &tok, 1, pos + i, err)) return i;
        out[i] = tok = argmax_logit(spill_engine_logits(e), vocab);
    }
    return n;
}

static void test_host_budget_mid_decode(void **state) {
    (void)state;
    /* blocks of 1024 tokens: the second block's KV (5 layers x 256 KiB) needs memory the arena does not
       have yet, at position 1024 */
    enum { PROMPT = 1000, GEN = 60 };
    int *prompt = malloc(sizeof(int) * PROMPT), ref[GEN], got[GEN];
    spill_engine *e = engine_at(stories_path(), 2048, 128, 1024);
    int vocab = spill_engine_model(e)->hp.vocab;
    for (int i = 0; i < PROMPT; i++) prompt[i] = i ? 1 + (i * 37) % (vocab - 1) : 1;
    spill_err err = {{0}};
    for (int i = 0; i < PROMPT; i += 125) assert_int_equal(spill_engine_forward(e, 0, prompt + i, 125, i, &err), 0);
    int first = argmax_logit(spill_engine_logits(e), vocab);
    assert_int_equal(decode(e, first, PROMPT, GEN, ref, &err), GEN); /* the reference: no limit */
    spill_engine_free(e);

    e = engine_at(stories_path(), 2048, 128, 1024);
    for (int i = 0; i < PROMPT; i += 125) assert_int_equal(spill_engine_forward(e, 0, prompt + i, 125, i, &err), 0);
    assert_int_equal(argmax_logit(spill_engine_logits(e), vocab), first);
    spill_mem *mem = spill_engine_mem(e);
    spill_mem_stats st;
    spill_mem_get_stats(mem, &st);
    uint64_t held = st.reserved[SPILL_TIER_HOST].current;
    spill_mem_set_limit(mem, SPILL_TIER_HOST, held); /* nothing more from here */
    int failed_at = decode(e, first, PROMPT, GEN, got, &err);
    assert_true(failed_at < GEN);
    assert_true(PROMPT + failed_at >= 1024); /* it failed where the new block began, not before */
    assert_non_null(strstr(err.msg, "limit"));
    for (int i = 0; i < failed_at; i++) assert_int_equal(got[i], ref[i]);
    /* nothing was lost: with room again, the same step goes on and the tokens are the reference's */
    spill_mem_set_limit(mem, SPILL_TIER_HOST, 0);
    int tok = failed_at ? got[failed_at - 1] : first;
    assert_int_equal(decode(e, tok, PROMPT + failed_at, GEN - failed_at, got + failed_at, &err), GEN - failed_at);
    for (int i = 0; i < GEN; i++) assert_int_equal(got[i], ref[i]);
    spill_engine_free(e);
    free(prompt);
}

/* ---- KV blocks exhausted at admission ---- */

typedef struct result {
    pthread_mutex_t lock;
    pthread_cond_t cv;
    char text[4096];
    size_t len;
    int tokens, done;
    spill_finish finish;
} result;

static void sink(void *user, const char *text, size_t len, int n_tokens, const spill_token_logprob *lp,
                 int n_lp, spill_finish finish) {
    (void)lp, (void)n_lp;
    result *r = user;
    pthread_mutex_lock(&r->lock);
    if (r->len + len < sizeof r->text) memcpy(r->text + r->len, text, len), r->len += len;
    r->tokens += n_tokens;
    if (finish != SPILL_FINISH_NONE) r->finish = finish, r->done = 1, pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->lock);
}

static void wait_done(result *r) {
    pthread_mutex_lock(&r->lock);
    while (!r->done) pthread_cond_wait(&r->cv, &r->lock);
    pthread_mutex_unlock(&r->lock);
}

static spill_sched *sched_open(spill_engine **e, int kv_blocks) {
    spill_err err = {{0}};
    spill_engine_params p = spill_engine_defaults();
    p.model = stories_path();
    p.ctx = 256;
    p.batch = 32;
    p.n_seqs = 4;
    p.kv_block = 16;
    p.kv_blocks = kv_blocks;
    p.threads = 2;
    p.quiet = 1;
    if (spill_engine_open(&p, e, &err)) fail_msg("%s", err.msg);
    spill_sched *s = NULL;
    spill_sched_params sp = {0};
    if (spill_sched_open(&s, *e, &sp, &err)) fail_msg("%s", err.msg);
    return s;
}

static void run_requests(int kv_blocks, int n, const spill_request *req, result *res) {
    spill_engine *e;
    spill_sched *s = sched_open(&e, kv_blocks);
    spill_err err = {{0}};
    for (int i = 0; i < n; i++) {
        memset(&res[i], 0, sizeof res[i]);
        pthread_mutex_init(&res[i].lock, NULL);
        pthread_cond_init(&res[i].cv, NULL);
        int id, full = 0;
        if (spill_sched_submit(s, &req[i], sink, &res[i], &id, &full, &err)) fail_msg("%s", err.msg);
    }
    for (int i = 0; i < n; i++) wait_done(&res[i]);
    spill_sched_stats st;
    spill_sched_get_stats(s, &st);
    assert_int_equal(st.kv_blocks_free, st.kv_blocks); /* every block given back */
    spill_sched_free(s);
    spill_engine_free(e);
}

static void test_kv_exhausted_at_admission(void **state) {
    (void)state;
    int p[3][40];
    for (int k = 0; k < 3; k++)
        for (int i = 0; i < 40; i++) p[k][i] = i ? 1 + (i * 13 + k * 101) % 500 : 1;
    spill_request req[3];
    for (int k = 0; k < 3; k++) req[k] = (spill_request){p[k], 40, 40, 0.0f, 1.0f, 0, 0, NULL, 0, 0, 0, 0, NULL};
    /* alone, with room for everyone */
    result alone[3], tight[3];
    run_requests(0, 3, req, alone);
    /* 6 blocks of 16 tokens: one request (80 positions = 5 blocks) at a time; the others wait at admission */
    run_requests(6, 3, req, tight);
    for (int k = 0; k < 3; k++) {
        assert_int_equal(tight[k].finish, alone[k].finish);
        assert_int_equal(tight[k].tokens, alone[k].tokens);
        assert_int_equal(tight[k].len, alone[k].len);
        assert_memory_equal(tight[k].text, alone[k].text, alone[k].len);
    }
    /* a request that the whole cache cannot hold is refused at once, with the numbers */
    spill_engine *e;
    spill_sched *s = sched_open(&e, 6);
    spill_request big = {p[0], 40, 100, 0.0f, 1.0f, 0, 0, NULL, 0, 0, 0, 0, NULL};
    result r;
    memset(&r, 0, sizeof r);
    int id, full = 0;
    spill_err err = {{0}};
    assert_int_equal(spill_sched_submit(s, &big, sink, &r, &id, &full, &err), -1);
    assert_int_equal(full, 0);
    assert_non_null(strstr(err.msg, "KV blocks"));
    spill_sched_free(s);
    spill_engine_free(e);
}

/* ---- output to a full disk ---- */

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    fclose(f);
    return buf;
}

/* files in dir whose name starts with prefix */
static int count_files(const char *prefix) {
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) n += !strncmp(e->d_name, prefix, strlen(prefix));
    closedir(d);
    return n;
}

static void test_full_disk(void **state) {
    (void)state;
    char dst[512], cmd[8192], errf[512];
    snprintf(dst, sizeof dst, "%s/prof.json", dir);
    snprintf(errf, sizeof errf, "%s/bench.err", dir);
    /* no file yet: a write that cannot complete leaves none (a file size limit of 0 bytes stands for the
       full disk; SIGXFSZ ignored, so that the write fails with EFBIG instead of killing the program) */
    /* (the disk is measured by reading the model, so that the profile is the only file written) */
    /* (stderr goes through a pipe, which the limit does not apply to; the exit status follows it) */
    snprintf(cmd, sizeof cmd, "{ (trap '' XFSZ; ulimit -f 0; exec " SPILL_BIN_DIR "/spill-bench tiers --size 4M --reps 5 "
             "--disk-file '%s' --profile-out '%s' 2>&1 >/dev/null); echo \"exit=$?\"; } | cat > '%s'",
             stories_path(), dst, errf);
    assert_int_equal(system(cmd), 0);
    char *msg = slurp(errf);
    assert_non_null(msg);
    assert_non_null(strstr(msg, "exit=1"));
    assert_non_null(strstr(msg, "--profile-out"));
    assert_non_null(strstr(msg, "nothing was written"));
    assert_int_equal(access(dst, F_OK), -1);
    assert_int_equal(count_files("prof.json"), 0); /* no temporary left */
    /* an old profile is kept as it was */
    FILE *f = fopen(dst, "w");
    fputs("{\"old\": true}\n", f);
    fclose(f);
    assert_int_equal(system(cmd), 0);
    assert_non_null(strstr(slurp(errf), "exit=1"));
    assert_string_equal(slurp(dst), "{\"old\": true}\n");
    assert_int_equal(count_files("prof.json"), 1);
    /* /dev/full itself (not a regular file: written directly) is an error too, not a crash */
    snprintf(cmd, sizeof cmd, SPILL_BIN_DIR "/spill-bench tiers --size 4M --reps 5 --disk-file '%s' --profile-out /dev/full "
             ">/dev/null 2>'%s'", stories_path(), errf);
    int st = system(cmd);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 1);
    assert_non_null(strstr(slurp(errf), "No space left on device"));
    /* and the plot of spill-bench placement (on a profile measured beforehand, with no limit) */
    char plot[512], prof[512];
    snprintf(plot, sizeof plot, "%s/plot.svg", dir);
    snprintf(prof, sizeof prof, "%s/measured.json", dir);
    snprintf(cmd, sizeof cmd, SPILL_BIN_DIR "/spill-bench tiers --size 4M --reps 5 --disk-file '%s' --profile-out '%s' "
             ">/dev/null 2>&1", stories_path(), prof);
    assert_int_equal(system(cmd), 0);
    assert_non_null(strstr(slurp(prof), "\"name\""));
    snprintf(cmd, sizeof cmd, "{ (trap '' XFSZ; ulimit -f 0; exec " SPILL_BIN_DIR "/spill-bench placement -m '%s' "
             "--profile-file '%s' --prompt-tokens 8 --gen-tokens 8 --budgets 64M --policies pin --reps 1 --plot '%s' "
             "2>&1 >/dev/null); echo \"exit=$?\"; } | cat > '%s'", stories_path(), prof, plot, errf);
    assert_int_equal(system(cmd), 0);
    msg = slurp(errf);
    assert_non_null(strstr(msg, "exit=1"));
    assert_non_null(strstr(msg, "--plot"));
    assert_int_equal(count_files("plot.svg"), 0);
}

/* ---- SIGINT to spill-generate ---- */

enum { WAIT_TIME, WAIT_OUTPUT, WAIT_LOADING };

/* Does the file at path hold needle (within its first 64 KiB)? */
static int file_has(const char *path, const char *needle) {
    char buf[1 << 16];
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    return strstr(buf, needle) != NULL;
}

static long file_size(const char *path) {
    struct stat sb;
    return stat(path, &sb) ? -1 : (long)sb.st_size;
}

/* Start spill-generate with args and SIGINT it: after `after_ms` (WAIT_TIME), once stdout has
 * something past the prompt (WAIT_OUTPUT), or once stderr says the load began (WAIT_LOADING); its exit
 * status (or 1000 + the signal that ended it) and its stderr. */
static int run_interrupted(const char *const *args, int after_ms, int wait, char *err_text, size_t cap,
                           const char *out_path) {
    char err_path[512];
    snprintf(err_path, sizeof err_path, "%s/gen.err", dir);
    /* gone before the child starts: the waits below must not read the last run's output */
    unlink(err_path);
    unlink(out_path);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int o = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600), e = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        dup2(o, 1), dup2(e, 2);
        char *argv[64];
        int n = 0;
        argv[n++] = (char *)SPILL_BIN_DIR "/spill-generate";
        for (int i = 0; args[i]; i++) argv[n++] = (char *)args[i];
        argv[n] = NULL;
        execv(argv[0], argv);
        _exit(127);
    }
    if (wait == WAIT_LOADING) {
        for (int k = 0; k < 20000 && !file_has(err_path, "spill: loading "); k++) usleep(200);
    } else if (wait == WAIT_OUTPUT) {
        struct stat sb;
        for (int k = 0; k < 20000; k++) { /* the prompt is "Once"; generated text follows it */
            if (!stat(out_path, &sb) && sb.st_size > 40) break;
            usleep(1000);
        }
    } else {
        usleep((useconds_t)after_ms * 1000);
    }
    kill(pid, SIGINT);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    FILE *f = fopen(err_path, "r");
    size_t n = f ? fread(err_text, 1, cap - 1, f) : 0;
    err_text[n] = 0;
    if (f) fclose(f);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 1000 + WTERMSIG(st);
}

static void test_sigint(void **state) {
    (void)state;
    char out[512], log[512], err[1 << 16];
    snprintf(out, sizeof out, "%s/gen.out", dir);
    snprintf(log, sizeof log, "%s/alloc.csv", dir);
    /* during the decode: the text so far, the report, exit 0, and the allocation log whole */
    const char *decode_args[] = {"-m", stories_path(), "-p", "Once", "-n", "1000000", "--temp", "0.8", "--ctx-size", "2048",
                                 "--alloc-log", log, NULL};
    int rc = run_interrupted(decode_args, 0, WAIT_OUTPUT, err, sizeof err, out);
    if (rc != 0) fail_msg("spill-generate ended with %d after SIGINT during the decode:\n%s", rc, err);
    assert_non_null(strstr(err, "spill: interrupted"));
    assert_non_null(strstr(err, "decode"));
    char *csv = slurp(log);
    assert_non_null(csv);
    size_t n = strlen(csv);
    assert_true(n > 0 && csv[n - 1] == '\n'); /* no half line */
    /* during the load (and at every moment around it): never a crash; 130 and nothing generated when
       the load was under way, or what was generated so far */
    char big[512];
    snprintf(big, sizeof big, "%s/synthetic.gguf", dir);
    spill_synth_spec spec;
    spill_err serr = {{0}};
    assert_int_equal(spill_synth_parse("tiny:vocab=32000:type=f32", &spec, &serr), 0);
    assert_int_equal(spill_synth_write(&spec, big, 1, NULL, &serr), 0);
    const char *load_args[] = {"-m", big, "--no-mmap", "-p", "Once", "-n", "1000000", "--temp", "0.8", NULL};
    /* at moments around the load, timed: any outcome but a crash */
    for (int ms = 1; ms <= 60; ms += 7) {
        rc = run_interrupted(load_args, ms, WAIT_TIME, err, sizeof err, out);
        /* 1000 + SIGINT: it came before main took the signal (the default action, nothing begun) */
        if (rc != 0 && rc != 130 && rc != 1000 + SIGINT) fail_msg("SIGINT after %d ms: exit %d\n%s", ms, rc, err);
        if (rc == 130 && !strstr(err, "interrupted while loading")) fail_msg("SIGINT after %d ms: exit 130 but\n%s", ms, err);
        assert_null(strstr(err, "AddressSanitizer"));
    }
    /* once the load has said it began (waited for, not timed): 130 and nothing generated. The load of
       this 70 MiB file takes tens of milliseconds, the wait polls every 0.2 ms; a machine busy enough
       to let the whole load pass unseen gets more tries, and each one is checked anyway */
    int saw_load = 0;
    for (int k = 0; k < 10 && !saw_load; k++) {
        rc = run_interrupted(load_args, 0, WAIT_LOADING, err, sizeof err, out);
        if (rc != 0 && rc != 130) fail_msg("SIGINT once loading: exit %d\n%s", rc, err);
        if (rc == 130) {
            if (!strstr(err, "interrupted while loading")) fail_msg("SIGINT once loading: exit 130 but\n%s", err);
            assert_int_equal(file_size(out), 0); /* nothing generated, not even the prompt */
            saw_load = 1;
        }
        assert_null(strstr(err, "AddressSanitizer"));
    }
    assert_true(saw_load);
}

int main(void) {
    require_file(stories_path(), "the small test models live in tests/models");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_model_truncated),
        cmocka_unit_test(test_model_rewritten_in_place),
        cmocka_unit_test(test_model_replaced_by_rename),
        cmocka_unit_test(test_host_budget_mid_decode),
        cmocka_unit_test(test_kv_exhausted_at_admission),
        cmocka_unit_test(test_full_disk),
        cmocka_unit_test(test_sigint),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
