/* spill-server: an OpenAI-compatible HTTP server over one model, many users at once: continuous
 * batching (runtime/scheduler.c) decodes every running sequence in one engine step, so the weights are
 * read once per step for all of them. SIGTERM or SIGINT: stop taking requests, finish the running and
 * waiting ones, then exit. */
#include <libgen.h>
#include <signal.h>
#include <unistd.h>

#include "cli.h"
#include "engine.h"
#include "http.h"
#include "platform.h"
#include "scheduler.h"

typedef spill_server_opts opts;

static int open_engine(const opts *o, const spill_profile *prof, spill_engine **e, spill_err *err) {
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
    p.cuda_graphs = o->env.cuda_graphs;
    p.threads = o->threads ? o->threads : o->env.threads;
    p.host_node = o->env.host_node;
    p.profile = prof;
    return spill_engine_open(&p, e, err);
}

int main(int argc, char **argv) {
    opts o;
    spill_options env;
    spill_err err = {{0}};
    spill_options_defaults(&env);
    int rc = spill_options_from_env(&env, stderr, &err) ? -1 : spill_server_cli(&o, &env, argc, argv, stdout, &err);
    if (rc) {
        if (rc < 0) fprintf(stderr, "spill-server: %s\n", err.msg);
        return rc < 0 ? 2 : 0;
    }
    char default_model[4096];
    if (!o.model && !(o.model = getenv("SPILL_MODEL"), o.model && *o.model)) {
        const char *home = getenv("HOME");
        snprintf(default_model, sizeof default_model, "%s/.cache/spill/%s", home ? home : ".", SPILL_DEFAULT_MODEL_NAME);
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
    /* a profile that is not there is a wrong flag, as in spill-generate: exit 2 */
    if ((o.profile || o.profile_file) &&
        (o.profile_file ? spill_profile_load(o.profile_file, &prof, &err) : spill_profile_named(o.profile, &prof, NULL, 0, &err))) {
        status = 2;
        goto out;
    }
    if (open_engine(&o, o.profile || o.profile_file ? &prof : NULL, &e, &err)) goto out;
    spill_sched_params sp = {o.max_waiting, o.chunk, o.budget, o.itl_target};
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
