/* The disk tier (runtime/disk.c, policies/plan.c plan_disk).
 *  - planning: a host limit below what the weights and the KV cache need puts whole layers on disk,
 *    evenly spaced, with a ring of slots counted in the limit; too small a limit is an error with the
 *    numbers; the cost model charges the disk's bytes at its bandwidth;
 *  - running: at every host limit from "everything fits" down to the smallest that plans, the greedy
 *    tokens are those of the run with everything in memory, with O_DIRECT + io_uring and with the
 *    mmap comparison, on stories260K (GGUF, tensors 32-byte aligned: every read is widened) and the
 *    tiny Llama-3 safetensors fixture; each decode step reads the disk layers' bytes from the file;
 *  - a file system without O_DIRECT is read through the page cache, with the same tokens;
 *  - `test_disk smollm2`: SmolLM2 at half its size in host memory (its own ctest). */

#include "spill_policy.h"
#include "engine.h"
#include "test_util.h"

enum { N_GEN = 24, MAXP = 32 };

/* The tiny models are smaller than the allocator's 2 MiB chunks: their runs bring an allocator without
 * a limit (the plan alone decides what goes to disk), SmolLM2's the engine's own with the limit. */
static spill_mem *unlimited;

static int own_mem; /* SmolLM2: the engine's own allocator, the limit enforced */

static spill_engine *open_lim(const char *model, uint64_t limit, const char *io, int ctx, spill_err *err) {
    spill_engine_params p = spill_engine_defaults();
    if (!own_mem && !unlimited && !(unlimited = spill_mem_create("host", err))) return NULL;
    p.mem = own_mem ? NULL : unlimited;
    p.model = model;
    p.ctx = ctx;
    p.batch = 16;
    p.threads = 2;
    p.quiet = 1;
    p.policy = "host";
    p.host_limit = limit;
    p.disk_io = io;
    spill_engine *e = NULL;
    return spill_engine_open(&p, &e, err) ? NULL : e;
}

static void greedy(spill_engine *e, const char *text, int *out) {
    spill_err err = {{0}};
    int *t = NULL, n = 0;
    const spill_model *m = spill_engine_model(e);
    assert_int_equal(spill_tokenize(&m->tok, text, strlen(text), 1, 0, &t, &n, &err), 0);
    assert_true(n > 0 && n <= MAXP);
    if (spill_engine_forward(e, 0, t, n, 0, &err)) fail_msg("%s", err.msg);
    for (int i = 0; i < N_GEN; i++) {
        out[i] = argmax_logit(spill_engine_logits(e), m->hp.vocab);
        if (spill_engine_forward(e, 0, &out[i], 1, n + i, &err)) fail_msg("%s", err.msg);
    }
    free(t);
}

/* From a limit where everything fits down to the smallest that plans: the same tokens every time. */
static void sweep(const char *model, const char *text, int ctx, int expect_direct) {
    spill_err err = {{0}};
    int ref[N_GEN], got[N_GEN];
    spill_engine *e = open_lim(model, 0, NULL, ctx, &err);
    if (!e) fail_msg("%s", err.msg);
    greedy(e, text, ref);
    uint64_t host = spill_engine_plan(e)->bytes[SPILL_TIER_HOST];
    spill_engine_free(e);
    int max_disk = 0, runs = 0;
    for (uint64_t limit = host + (host >> 3); limit > host / 8; limit -= host / 16) {
        const char *modes[] = {"uring", "mmap"};
        for (int m = 0; m < 2; m++) {
            e = open_lim(model, limit, modes[m], ctx, &err);
            if (!e) {
                printf("%s: host limit %.2f MiB: %s\n", model, limit / 1048576.0, err.msg);
                assert_non_null(strstr(err.msg, "--host-limit"));
                assert_non_null(strstr(err.msg, "MiB"));
                goto smallest;
            }
            const spill_plan *plan = spill_engine_plan(e);
            assert_true(plan->bytes[SPILL_TIER_HOST] <= limit);
            greedy(e, text, got);
            spill_engine_stats st;
            spill_engine_get_stats(e, &st);
            if (memcmp(got, ref, sizeof ref)) {
                fprintf(stderr, "%s limit %llu (%s, %d layers on disk):", model, (unsigned long long)limit, modes[m], st.disk_layers);
                for (int i = 0; i < N_GEN; i++) fprintf(stderr, " %d/%d", got[i], ref[i]);
                fprintf(stderr, "\n");
                fail();
            }
            if (st.disk_layers) {
                /* every step read every disk layer's tensors: the prompt's steps and N_GEN decode steps */
                assert_true(plan->disk_slots >= 1 && plan->disk_slots < st.disk_layers && plan->disk_bytes > 0);
                assert_true(st.disk_used >= (uint64_t)N_GEN * plan->disk_bytes / 2);
                assert_true(st.disk_read >= st.disk_used);
                /* each layer read once a step: only the 4 KiB widening on top of its bytes */
                assert_true(st.disk_read <= st.disk_used + st.disk_used / 8);
                if (m == 0 && expect_direct >= 0) assert_int_equal(st.disk_direct, expect_direct);
            } else {
                assert_int_equal(plan->disk_slots, 0);
            }
            if (st.disk_layers > max_disk) max_disk = st.disk_layers;
            printf("%s: host limit %.2f MiB, %s: %d layers on disk, %.2f MiB read from the file%s, the same %d tokens\n",
                   model, limit / 1048576.0, modes[m], st.disk_layers, st.disk_read / 1048576.0,
                   st.disk_layers ? (st.disk_direct ? " (O_DIRECT)" : " (page cache)") : "", N_GEN);
            spill_engine_free(e);
            runs++;
        }
    }
smallest:
    /* the sweep reached plans with layers on disk: all but one of stories260K's five, one of two for the
       two-layer fixture (the ring holds fewer layers than there are on disk) */
    assert_true(max_disk >= (spill_engine_model(e = open_lim(model, 0, NULL, ctx, &err))->hp.n_layers > 2 ? 2 : 1));
    spill_engine_free(e);
    assert_true(runs >= 4);
}

static void test_stories(void **s) {
    (void)s;
    sweep(stories_path(), "Once upon a time", 64, 1);
}

static void test_hf(void **s) {
    (void)s;
    sweep(SPILL_FIXTURES_DIR "/hf-llama3", "Hello, my name is", 64, 1);
}

/* A file system without O_DIRECT (tmpfs before Linux 6.6, some network file systems): the disk tier
 * says so and reads through the page cache, with the same tokens. SPILL_DISK_NO_DIRECT=1 takes that
 * path on any file system. */
static void test_no_o_direct(void **s) {
    (void)s;
    setenv("SPILL_DISK_NO_DIRECT", "1", 1);
    sweep(stories_path(), "Once upon a time", 64, 0);
    unsetenv("SPILL_DISK_NO_DIRECT");
}

/* 8 layers of 100 MiB (1 MiB of KV each), a 50 MiB embedding and head: the planning tests' model */
enum { L = 8 };
static int plan_regions(spill_region r[2 * L + 3]) {
    int n = spill_region_count(L);
    assert_int_equal(n, 2 * L + 3);
    memset(r, 0, sizeof(spill_region) * (size_t)n);
    for (int l = 0; l < L; l++) {
        r[spill_region_layer(L, l)] = (spill_region){"blk", 100 << 20, l, SPILL_REGION_WEIGHT, 1.0, 50 << 20, NULL};
        r[spill_region_kv(L, l)] = (spill_region){"kv", 1 << 20, l, SPILL_REGION_KV, 1.0, 0, NULL};
    }
    r[spill_region_embd(L)] = (spill_region){"token_embd", 50 << 20, -1, SPILL_REGION_WEIGHT, 1e-4, 0, NULL};
    r[spill_region_output(L)] = (spill_region){"output", 50 << 20, -1, SPILL_REGION_WEIGHT, 1.0, 25 << 20, NULL};
    r[spill_region_out_norm(L)] = (spill_region){"output_norm", 4096, -1, SPILL_REGION_WEIGHT, 1.0, 0, NULL};
    return n;
}

/* planning alone: evenly spaced layers, the ring counted, the error, the cost */
static void test_plan(void **s) {
    (void)s;
    spill_region r[2 * L + 3];
    int n = plan_regions(r);
    spill_profile prof;
    spill_err err = {{0}};
    assert_int_equal(spill_profile_builtin("cpu", &prof, &err), 0);
    prof.disk_bw = 2e9;
    /* 908 MiB in all; a limit of 600 MiB: 4 layers go (400 MiB, less a 300 MiB ring of 3 slots) ... */
    spill_plan_params pp = {"host", {0, 600ull << 20}, 1, &prof, {0, 1, NULL, 1}};
    spill_plan plan;
    assert_int_equal(spill_plan_make(r, n, &pp, &plan, &err), 0);
    int on[L], k = 0;
    for (int l = 0; l < L; l++) on[l] = plan.region[spill_region_layer(L, l)].on_disk, k += on[l];
    printf("on disk:");
    for (int l = 0; l < L; l++) printf(" %d", on[l]);
    printf("; host %.0f MiB, disk %.0f MiB per step, %d slots\n", plan.bytes[SPILL_TIER_HOST] / 1048576.0,
           plan.disk_bytes / 1048576.0, plan.disk_slots);
    assert_true(plan.bytes[SPILL_TIER_HOST] <= 600ull << 20);
    assert_int_equal(plan.disk_bytes, (uint64_t)k * (100 << 20));
    /* three slots do not fit beside what stays; two do, one filling while one computes */
    assert_int_equal(plan.disk_slots, 2);
    assert_int_equal(plan.disk_ahead, 1);
    assert_int_equal(plan.disk_slot_bytes, 100 << 20);
    /* evenly spaced: no two neighbours on disk while fewer than half are */
    assert_true(k >= 1);
    if (2 * k <= L)
        for (int l = 0; l + 1 < L; l++) assert_false(on[l] && on[l + 1]);
    /* the KV cache and the embedding never go */
    for (int l = 0; l < L; l++) assert_int_equal(plan.region[spill_region_kv(L, l)].on_disk, 0);
    assert_int_equal(plan.region[spill_region_embd(L)].on_disk, 0);
    /* the cost: at least the disk bytes at the disk's rate */
    assert_true(plan.predicted.step_s >= (double)plan.disk_bytes / prof.disk_bw * 0.999);
    /* every policy under the same limit; auto's sub-plan was sent to disk once, not again on top
       (auto once counted its disk layers out of host memory twice: 2^64 - 34 MiB in spill-plan) */
    static const char *const pols[] = {"fault", "pin", "auto"};
    for (int i = 0; i < 3; i++) {
        spill_plan_params pq = pp;
        pq.policy = pols[i];
        spill_plan q;
        if (spill_plan_make(r, n, &pq, &q, &err)) fail_msg("%s: %s", pols[i], err.msg);
        printf("%s: host %.0f MiB, disk %.0f MiB, %d slots\n", pols[i], q.bytes[SPILL_TIER_HOST] / 1048576.0,
               q.disk_bytes / 1048576.0, q.disk_slots);
        assert_true(q.bytes[SPILL_TIER_HOST] <= 600ull << 20);
        assert_int_equal(q.disk_bytes, plan.disk_bytes);
        assert_int_equal(q.bytes[SPILL_TIER_HOST], plan.bytes[SPILL_TIER_HOST]);
        spill_plan_free(&q);
    }
    spill_plan_free(&plan);
    /* no limit, or a limit everything fits in: no disk */
    pp.budget[SPILL_TIER_HOST] = 2000ull << 20;
    assert_int_equal(spill_plan_make(r, n, &pp, &plan, &err), 0);
    assert_int_equal(plan.disk_slots, 0);
    spill_plan_free(&plan);
    /* below the floor (embedding, head, KV, the ring): an error with the numbers */
    pp.budget[SPILL_TIER_HOST] = 200ull << 20;
    assert_int_equal(spill_plan_make(r, n, &pp, &plan, &err), -1);
    printf("%s\n", err.msg);
    assert_non_null(strstr(err.msg, "--host-limit 200.0 MiB"));
    assert_non_null(strstr(err.msg, "308.0 MiB")); /* 108 MiB that stay and two slots of 100 */
}

/* With a GPU, a streamed layer's home counts as host memory and may go to disk: it leaves the ring (not
 * streamed, host tier, read by the GPU in place, never read-mostly); on a CPU-only profile streamed
 * layers never go (the CPU's ring copies from homes the disk tier does not fill). */
static void test_plan_gpu(void **s) {
    (void)s;
    spill_region r[2 * L + 3];
    int n = plan_regions(r);
    spill_profile gpu;
    spill_err err = {{0}};
    assert_int_equal(spill_profile_builtin("h100-pcie", &gpu, &err), 0);
    /* stream with HBM for the head and a ring: every layer streamed; the host limit sends some to disk */
    spill_plan_params pp = {"stream", {400ull << 20, 600ull << 20}, 1, &gpu, {0, 1, NULL, 1}};
    spill_plan plan;
    if (spill_plan_make(r, n, &pp, &plan, &err)) fail_msg("%s", err.msg);
    int on = 0, ring = 0;
    for (int l = 0; l < L; l++) {
        const spill_region_plan *rp = &plan.region[spill_region_layer(L, l)];
        if (rp->on_disk) {
            on++;
            assert_false(rp->streamed);
            assert_int_equal(rp->tier, SPILL_TIER_HOST);
            assert_true((rp->advice & SPILL_PLACE_GPU_READS) && !(rp->advice & SPILL_PLACE_READ_MOSTLY));
            assert_int_equal(rp->prefetch_at, -1);
        }
        ring += rp->streamed;
    }
    printf("stream on h100-pcie, host limit 600 MiB: %d of %d layers on disk, %d still streamed; host %.0f MiB\n", on, L,
           ring, plan.bytes[SPILL_TIER_HOST] / 1048576.0);
    assert_true(on > 0 && plan.disk_slots > 0);
    assert_true(plan.bytes[SPILL_TIER_HOST] <= 600ull << 20);
    assert_int_equal(plan.disk_bytes, (uint64_t)on * (100 << 20));
    /* the cost: the disk's bytes at its rate at least, and no copy of a layer on disk */
    assert_true(plan.predicted.step_s >= (double)plan.disk_bytes / gpu.disk_bw * 0.999);
    spill_plan_free(&plan);
    /* the same plan on a CPU-only profile keeps its streamed layers out of the disk tier */
    spill_profile cpu;
    assert_int_equal(spill_profile_builtin("cpu", &cpu, &err), 0);
    pp.profile = &cpu;
    if (!spill_plan_make(r, n, &pp, &plan, &err)) {
        for (int l = 0; l < L; l++) {
            const spill_region_plan *rp = &plan.region[spill_region_layer(L, l)];
            assert_false(rp->streamed && rp->on_disk);
            if (rp->on_disk) assert_false(rp->tier != SPILL_TIER_HOST);
        }
        spill_plan_free(&plan);
    }
}

static void test_bad_flags(void **s) {
    (void)s;
    spill_err err = {{0}};
    assert_null(open_lim(stories_path(), 64 << 10, NULL, 64, &err));
    assert_non_null(strstr(err.msg, "--host-limit"));
    assert_null(open_lim(stories_path(), 0, "aio", 64, &err));
    assert_non_null(strstr(err.msg, "--disk-io 'aio'"));
}

static void test_smollm2(void **s) {
    (void)s;
    own_mem = 1;
    const char *m = smollm_path();
    require_file(m, "scripts/fetch-model.sh fetches it");
    spill_err err = {{0}};
    int ref[N_GEN], got[N_GEN];
    spill_engine *e = open_lim(m, 0, NULL, 128, &err);
    if (!e) fail_msg("%s", err.msg);
    greedy(e, "The capital of France is", ref);
    uint64_t host = spill_engine_plan(e)->bytes[SPILL_TIER_HOST];
    spill_engine_free(e);
    const char *modes[] = {"uring", "mmap"};
    for (int k = 0; k < 2; k++) {
        e = open_lim(m, host / 2 + (host >> 3), modes[k], 128, &err);
        if (!e) fail_msg("%s", err.msg);
        greedy(e, "The capital of France is", got);
        spill_engine_stats st;
        spill_engine_get_stats(e, &st);
        printf("SmolLM2 at %.1f MiB of host memory, %s: %d layers on disk, the same tokens: %s\n",
               (host / 2 + (host >> 3)) / 1048576.0, modes[k], st.disk_layers, memcmp(got, ref, sizeof ref) ? "no" : "yes");
        assert_true(st.disk_layers >= 10);
        assert_memory_equal(got, ref, sizeof ref);
        spill_engine_free(e);
    }
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "smollm2")) {
        const struct CMUnitTest one[] = {cmocka_unit_test(test_smollm2)};
        return cmocka_run_group_tests(one, NULL, NULL);
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plan),
        cmocka_unit_test(test_plan_gpu),
        cmocka_unit_test(test_bad_flags),
        cmocka_unit_test(test_stories),
        cmocka_unit_test(test_hf),
        cmocka_unit_test(test_no_o_direct),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    spill_mem_free(unlimited);
    return rc;
}
