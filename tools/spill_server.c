/* spill-server: an OpenAI-compatible HTTP server over one model, many users at once: continuous
 * batching (runtime/scheduler.c) decodes every running sequence in one engine step, so the weights are
 * read once per step for all of them. SIGTERM or SIGINT: stop taking requests, finish the running and
 * waiting ones, then exit. */
#include <libgen.h>
#include <signal.h>
#include <unistd.h>

#include "engine.h"
#include "http.h"
#include "platform.h"
#include "scheduler.h"
#include "spill_args.h"

#define DEFAULT_MODEL_NAME "SmolLM2-135M-Instruct.Q4_1.gguf"

static const char usage_head[] =
    "usage: spill-server [-m MODEL] [--host ADDR] [--port N] [options]\n"
    "\n"
    "An OpenAI-compatible server: POST /v1/completions and /v1/chat/completions (streamed as server-sent\n"
    "events with \"stream\": true), GET /v1/models, /health and /metrics (Prometheus text). Requests are\n"
    "batched continuously: every running sequence advances in one step. A full queue answers 429 with\n"
    "Retry-After; SIGTERM finishes what is running, then exits. Every SPILL_* variable (spill-info\n"
    "--options) sets the flag of the same name.\n"
    "\n";

typedef struct opts {
    const char *model, *host, *profile, *profile_file, *name;
    int port, ctx, batch, parallel, kv_block, kv_blocks, max_waiting, chunk, threads, use_mmap, help, policy_set;
    spill_options env;
} opts;

static void make_args(opts *o, spill_arg *a) {
    int n = 0;
#define ARG(...) a[n++] = (spill_arg)SPILL_ARG(__VA_ARGS__)
    ARG('m', "model", SPILL_ARG_STRING, &o->model, 0, 0, "PATH", "GGUF file or Hugging Face directory (default: $SPILL_MODEL, else\n"
        "~/.cache/spill/" DEFAULT_MODEL_NAME ", fetched once by scripts/fetch-model.sh)");
    ARG(0, "host", SPILL_ARG_STRING, &o->host, 0, 0, "ADDR", "the address to listen on (default: 127.0.0.1; 0.0.0.0 for every interface)");
    ARG(0, "port", SPILL_ARG_INT, &o->port, 0, 65535, "N", "the port (default: 8080; 0 = any free port, printed on stderr)");
    ARG(0, "name", SPILL_ARG_STRING, &o->name, 0, 0, "NAME", "the model's name in /v1/models and the answers (default: the file's)");
    ARG('c', "ctx-size", SPILL_ARG_INT, &o->ctx, 1, 1 << 24, "N", "context of each sequence in tokens (default: min(4096, the model's))");
    ARG('P', "parallel", SPILL_ARG_INT, &o->parallel, 1, 256, "N", "sequences decoded at once: the slots (default: 16); more requests wait");
    ARG('b', "batch-size", SPILL_ARG_INT, &o->batch, 1, 4096, "N", "tokens per engine step, decode and prompt chunks together (default: 64)");
    ARG(0, "prefill-chunk", SPILL_ARG_INT, &o->chunk, 1, 4096, "N", "prompt tokens of one request per step (default: the batch)");
    ARG(0, "max-waiting", SPILL_ARG_INT, &o->max_waiting, 1, 1 << 20, "N", "requests queued beyond the running ones before 429 (default: 64)");
    ARG(0, "kv-block", SPILL_ARG_INT, &o->kv_block, 1, 65536, "N", "tokens per KV cache block, a power of two (default: 64)");
    ARG(0, "kv-type", SPILL_ARG_OPTION, &o->env, 0, 0, "TYPE", "KV cache elements: f32, f16 or bf16 (as spill-generate)");
    ARG(0, "kv-blocks", SPILL_ARG_INT, &o->kv_blocks, 1, 1 << 24, "N", "KV cache blocks in all (default: every slot's whole context); fewer\n"
        "admit fewer requests at once and preempt (recompute) when they run out");
    ARG('t', "threads", SPILL_ARG_INT, &o->threads, 1, 1024, "N", "CPU threads (default: $SPILL_THREADS, else all online CPUs)");
    ARG(0, "device", SPILL_ARG_OPTION, &o->env, 0, 0, "NAME", "where the forward pass runs: auto, cpu or cuda (as spill-generate)");
    ARG(0, "policy", SPILL_ARG_OPTION, &o->env, 0, 0, "NAME", "placement policy: host, fault, pin, stream or auto (as spill-generate)");
    ARG(0, "profile", SPILL_ARG_STRING, &o->profile, 0, 0, "NAME", "hardware profile the plan is made for, or auto (as spill-generate)");
    ARG(0, "profile-file", SPILL_ARG_STRING, &o->profile_file, 0, 0, "FILE", "a hardware profile in JSON");
    ARG(0, "backend", SPILL_ARG_OPTION, &o->env, 0, 0, "NAME", "memory backend (as spill-generate)");
    ARG(0, "hbm-budget", SPILL_ARG_OPTION, &o->env, 0, 0, "SIZE", "most GPU memory to use (as spill-generate)");
    ARG(0, "host-limit", SPILL_ARG_OPTION, &o->env, 0, 0, "SIZE", "most host memory to allocate (as spill-generate)");
    ARG(0, "tokenizer-pre", SPILL_ARG_OPTION, &o->env, 0, 0, "TYPE", "GGUF: tokenize as this tokenizer.ggml.pre type (as spill-generate)");
    ARG(0, "no-mmap", SPILL_ARG_UNSET, &o->use_mmap, 0, 0, NULL, "copy weights into memory instead of reading the file in place");
    ARG('h', "help", SPILL_ARG_HELP, &o->help, 0, 0, NULL, "show this help");
    a[n] = (spill_arg)SPILL_ARG_END;
#undef ARG
}

static int open_engine(const opts *o, spill_profile *prof, spill_engine **e, spill_err *err) {
    spill_engine_params p = spill_engine_defaults();
    p.model = o->model;
    p.device = o->env.device;
    p.backend = o->env.backend;
    p.policy = o->policy_set || getenv("SPILL_POLICY") ? o->env.policy : NULL;
    p.hbm_budget = o->env.hbm_budget;
    p.hbm_reserve = o->env.hbm_reserve;
    p.host_limit = o->env.host_limit;
    p.alloc_log = o->env.alloc_log[0] ? o->env.alloc_log : NULL;
    p.tokenizer_pre = o->env.tokenizer_pre[0] ? o->env.tokenizer_pre : NULL;
    p.use_mmap = o->use_mmap;
    p.ctx = o->ctx;
    p.batch = o->batch;
    p.n_seqs = o->parallel;
    p.kv_block = o->kv_block;
    p.kv_blocks = o->kv_blocks;
    SPILL_ASSERT(spill_kv_type_parse(o->env.kv_type, &p.kv_type) == 0); /* the option table checked it */
    p.threads = o->threads ? o->threads : o->env.threads;
    if (o->profile || o->profile_file) {
        if (o->profile_file ? spill_profile_load(o->profile_file, prof, err) : spill_profile_named(o->profile, prof, NULL, 0, err))
            return -1;
        p.profile = prof;
    }
    return spill_engine_open(&p, e, err);
}

int main(int argc, char **argv) {
    opts o = {.host = "127.0.0.1", .port = 8080, .batch = 64, .parallel = 16, .use_mmap = 1};
    spill_err err = {{0}};
    spill_arg args[32];
    make_args(&o, args);
    spill_options_defaults(&o.env);
    int rc = spill_options_from_env(&o.env, stderr, &err) ? -1 : spill_args_parse(args, argc, argv, 1, usage_head, &err);
    if (rc) {
        if (rc < 0) fprintf(stderr, "spill-server: %s\n", err.msg);
        return rc < 0 ? 2 : 0;
    }
    for (int i = 1; i < argc; i++) o.policy_set |= !strcmp(argv[i], "--policy");
    if (o.kv_block & (o.kv_block - 1)) {
        fprintf(stderr, "spill-server: --kv-block expects a power of two, got %d\n", o.kv_block);
        return 2;
    }
    char default_model[4096];
    if (!o.model && !(o.model = getenv("SPILL_MODEL"), o.model && *o.model)) {
        const char *home = getenv("HOME");
        snprintf(default_model, sizeof default_model, "%s/.cache/spill/%s", home ? home : ".", DEFAULT_MODEL_NAME);
        if (access(default_model, R_OK)) {
            fprintf(stderr, "spill-server: no model given and the default %s is not there; pass -m MODEL or run "
                            "scripts/fetch-model.sh once\n", default_model);
            return 2;
        }
        o.model = default_model;
    }
    /* signals are taken by this thread alone (sigwait); every thread started from here blocks them */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN); /* a client gone mid-answer is an error of one write, not of the server */

    spill_profile prof;
    spill_engine *e = NULL;
    spill_sched *s = NULL;
    spill_http *h = NULL;
    int status = 1;
    if (open_engine(&o, &prof, &e, &err)) goto out;
    spill_sched_params sp = {o.max_waiting, o.chunk};
    if (spill_sched_open(&s, e, &sp, &err)) goto out;
    char name_buf[4096];
    snprintf(name_buf, sizeof name_buf, "%s", o.model);
    spill_http_params hp = {o.host, o.port, e, s, o.name ? o.name : basename(name_buf), 0, 0, 1};
    if (spill_http_start(&h, &hp, &err)) goto out;
    fprintf(stderr, "spill-server: listening on http://%s:%d (model %s, %d slots, context %d, batch %d)\n", o.host,
            spill_http_port(h), hp.model_name, o.parallel, spill_engine_ctx(e), spill_engine_batch(e));
    int sig = 0;
    sigwait(&sigs, &sig);
    fprintf(stderr, "spill-server: %s: finishing %d request(s), taking no more\n", sig == SIGTERM ? "SIGTERM" : "SIGINT",
            spill_http_active(h));
    spill_http_drain(h);
    spill_sched_stop(s, 1);
    /* the last answers leave their buffers before the connections close */
    for (int i = 0; i < 300 && spill_http_active(h); i++) usleep(10000);
    spill_sched_stats st;
    spill_sched_get_stats(s, &st);
    fprintf(stderr, "spill-server: %llu requests, %llu tokens generated in %.1f s of engine time (%.1f tok/s), "
                    "%llu cancelled, %llu preempted, %llu refused\n",
            (unsigned long long)st.requests, (unsigned long long)st.generated_tokens, st.busy_s,
            st.busy_s > 0 ? (double)st.generated_tokens / st.busy_s : 0.0, (unsigned long long)st.cancelled,
            (unsigned long long)st.preempted, (unsigned long long)st.rejected);
    status = 0;
out:
    if (status && err.msg[0]) fprintf(stderr, "spill-server: %s\n", err.msg);
    spill_http_stop(h);
    spill_sched_free(s);
    spill_engine_free(e);
    return status;
}
