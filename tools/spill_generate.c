/* spill-generate: load a model, run a prompt, stream the continuation. stdout carries the prompt
 * and the generated text only; everything else goes to stderr. */
#include <errno.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include "chat.h"
#include "cli.h"
#include "engine.h"
#include "platform.h"
#include "sampler.h"
#include "spec.h"

typedef spill_generate_opts opts;

static char *read_prompt(const char *path, spill_err *err) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        spill_err_set(err, "--file %s: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 4096, n = 0;
    char *b = malloc(cap);
    while (b) {
        if (n + 1 >= cap) {
            char *nb = cap > (1u << 30) ? NULL : realloc(b, cap *= 2);
            if (!nb) {
                spill_err_set(err, "--file %s: %s", path, cap > (1u << 30) ? "larger than 1 GiB" : "out of memory");
                free(b);
                b = NULL;
                break;
            }
            b = nb;
        }
        size_t r = fread(b + n, 1, cap - n - 1, f);
        if (!r) break;
        n += r;
    }
    fclose(f);
    if (b) b[n] = 0;
    return b;
}

static volatile sig_atomic_t interrupted = 0;
static void on_sigint(int sig) { (void)sig; interrupted = 1; }

static double mib(uint64_t b) { return (double)b / (1 << 20); }

/* The prompt as token ids: the chat template when asked for, then the tokenizer's own BOS/EOS rules. */
static int prompt_tokens(const opts *o, const spill_model *m, int n_ctx, int **toks, int *n, spill_err *err) {
    char *text = NULL;
    const char *src = o->prompt;
    if (o->chat) {
        if (spill_chat_format(m->chat_template, o->prompt, &text, err)) return -1;
        src = text;
    }
    int rc = spill_tokenize(&m->tok, src, strlen(src), 1, 1, toks, n, err);
    free(text);
    if (rc) return -1;
    if (*n == 0) return spill_err_set(err, "the prompt is empty and the model adds no BOS token; nothing to start from");
    if (*n >= n_ctx)
        return spill_err_set(err, "the prompt is %d tokens but the context holds %d; raise -c/--ctx-size (the model allows %d)",
                             *n, n_ctx, m->hp.ctx_train);
    return 0;
}

/* Decode one sequence, streaming each piece to stdout. */
static int decode_one(spill_engine *e, spill_sampler *smp, const opts *o, int n_prompt, int *n_gen, int *n_fwd,
                      spill_err *err) {
    const spill_model *m = spill_engine_model(e);
    int n_ctx = spill_engine_ctx(e), pos = n_prompt;
    char piece[512];
    while (*n_gen < o->n_predict && !interrupted) {
        int next = spill_sampler_sample(smp, spill_engine_logits(e));
        if (spill_token_is_eog(&m->tok, next)) break;
        (*n_gen)++;
        spill_sampler_accept(smp, next);
        int pl = spill_token_to_bytes(&m->tok, next, piece, sizeof piece);
        fwrite(piece, 1, (size_t)(pl < (int)sizeof piece ? pl : (int)sizeof piece), stdout);
        fflush(stdout);
        if (*n_gen == o->n_predict) break;
        if (pos >= n_ctx) {
            fprintf(stderr, "\nspill: stopped: the context of %d tokens is full (raise -c/--ctx-size)\n", n_ctx);
            break;
        }
        if (spill_engine_forward(e, 0, &next, 1, pos++, err)) return -1;
        (*n_fwd)++;
    }
    fputc('\n', stdout);
    return 0;
}

/* --draft-skip: rounds of self-speculative decoding (spec.h) from the last prompt token, which the
 * prefill left unrun; each round's tokens are streamed as they come. */
static int decode_spec(spill_engine *e, spill_sampler *smp, spill_spec *sp, const opts *o, const int *toks, int n_prompt,
                       int *n_gen, spill_err *err) {
    const spill_model *m = spill_engine_model(e);
    int n_ctx = spill_engine_ctx(e), pos = n_prompt - 1, last = toks[n_prompt - 1];
    int *buf = malloc(sizeof(int) * (size_t)(o->draft_k + 1));
    if (!buf) return spill_err_set(err, "out of memory");
    char piece[512];
    int done = 0;
    while (!done && *n_gen < o->n_predict && !interrupted) {
        if (pos >= n_ctx) {
            fprintf(stderr, "\nspill: stopped: the context of %d tokens is full (raise -c/--ctx-size)\n", n_ctx);
            break;
        }
        int n = spill_spec_round(sp, smp, last, pos, buf, err);
        if (n < 0) {
            free(buf);
            return -1;
        }
        for (int i = 0; i < n && !done; i++) {
            if (spill_token_is_eog(&m->tok, buf[i]) || *n_gen == o->n_predict) {
                done = 1;
                break;
            }
            (*n_gen)++;
            int pl = spill_token_to_bytes(&m->tok, buf[i], piece, sizeof piece);
            fwrite(piece, 1, (size_t)(pl < (int)sizeof piece ? pl : (int)sizeof piece), stdout);
        }
        fflush(stdout);
        last = buf[n - 1];
        pos += n;
    }
    fputc('\n', stdout);
    free(buf);
    return 0;
}

/* --n-parallel N: the prompt was run once as sequence 0; sequences 1..N-1 share its KV blocks
 * (copy-on-write) and each continues with its own sampler, one token per sequence per round. The
 * texts go to stdout one after another at the end. */
typedef struct par_seq {
    spill_sampler smp;
    int next, done, count;
    char *text;
    size_t len;
} par_seq;

static int decode_parallel(spill_engine *e, const opts *o, const int *toks, int n_prompt, int *n_gen, int *n_fwd,
                           spill_err *err) {
    const spill_model *m = spill_engine_model(e);
    spill_kv *kv = spill_engine_kv(e);
    int N = o->n_parallel, V = m->hp.vocab, n_ctx = spill_engine_ctx(e), rc = -1;
    par_seq *sq = calloc((size_t)N, sizeof *sq);
    float *logits0 = malloc(sizeof(float) * (size_t)V);
    if (!sq || !logits0) {
        spill_err_set(err, "out of memory");
        goto out;
    }
    memcpy(logits0, spill_engine_logits(e), sizeof(float) * (size_t)V);
    for (int i = 0; i < N; i++) {
        float *l = malloc(sizeof(float) * (size_t)V);
        if (!l) {
            spill_err_set(err, "out of memory");
            goto out;
        }
        memcpy(l, logits0, sizeof(float) * (size_t)V);
        spill_logit_adjust pen = {NULL, NULL, 0, o->presence_penalty, o->frequency_penalty, o->repeat_penalty,
                                  o->repeat_last_n < 0 || o->repeat_last_n >= n_ctx ? 0 : o->repeat_last_n};
        int bad = spill_sampler_init(&sq[i].smp, V, o->temp, o->top_k, o->top_p, o->seed + (uint64_t)i, err) ||
                  spill_sampler_adjust(&sq[i].smp, &pen, err) ||
                  (i && spill_kv_fork(kv, 0, i, err));
        if (!bad) spill_sampler_context(&sq[i].smp, toks, n_prompt);
        if (!bad) sq[i].next = spill_sampler_sample(&sq[i].smp, l);
        free(l);
        if (bad) goto out;
    }
    /* one step per round: the next token of every live sequence together, each weight read once */
    int *tok = malloc(sizeof(int) * (size_t)N), *seq = malloc(sizeof(int) * (size_t)N), *pos = malloc(sizeof(int) * (size_t)N);
    int *who = malloc(sizeof(int) * (size_t)N);
    if (!tok || !seq || !pos || !who) {
        free(tok), free(seq), free(pos), free(who);
        spill_err_set(err, "out of memory");
        goto out;
    }
    int failed = 0;
    for (int p = n_prompt, live = N; live && !interrupted && !failed; p++) {
        live = 0;
        for (int i = 0; i < N; i++) {
            par_seq *q = &sq[i];
            if (q->done) continue;
            char piece[512];
            int pl = spill_token_is_eog(&m->tok, q->next) || q->count >= o->n_predict
                         ? -1 : spill_token_to_bytes(&m->tok, q->next, piece, sizeof piece);
            if (pl >= 0) {
                if (pl > (int)sizeof piece) pl = (int)sizeof piece;
                char *t = realloc(q->text, q->len + (size_t)pl + 1);
                if (!t) {
                    spill_err_set(err, "out of memory");
                    failed = 1;
                    break;
                }
                q->text = t;
                memcpy(q->text + q->len, piece, (size_t)pl);
                q->len += (size_t)pl;
                q->count++;
                (*n_gen)++;
                spill_sampler_accept(&q->smp, q->next);
            }
            if (pl < 0 || q->count >= o->n_predict || p >= n_ctx) {
                q->done = 1;
                spill_kv_release(kv, i);
                continue;
            }
            tok[live] = q->next, seq[live] = i, pos[live] = p, who[live] = i;
            live++;
        }
        if (failed) break;
        /* in steps of at most the engine's batch */
        for (int k = 0; k < live; k += spill_engine_batch(e)) {
            int nb = live - k < spill_engine_batch(e) ? live - k : spill_engine_batch(e);
            spill_batch b = {nb, tok + k, seq + k, pos + k, NULL, NULL, 0};
            uint8_t keep[64];
            for (int t = 0; t < nb; t++) keep[t] = 1;
            b.out = keep;
            if (spill_engine_step(e, &b, err)) {
                failed = 1;
                break;
            }
            (*n_fwd) += nb;
            for (int t = 0; t < nb; t++) sq[who[k + t]].next = spill_sampler_sample(&sq[who[k + t]].smp, spill_engine_logits_at(e, t));
        }
    }
    free(tok), free(seq), free(pos), free(who);
    if (failed) goto out;
    for (int i = 0; i < N; i++) {
        fputs(o->prompt, stdout);
        if (o->chat) fputc('\n', stdout);
        if (sq[i].len) fwrite(sq[i].text, 1, sq[i].len, stdout);
        fputs(i + 1 < N ? "\n\n" : "\n", stdout);
    }
    rc = 0;
out:
    for (int i = 0; sq && i < N; i++) {
        spill_sampler_free(&sq[i].smp);
        free(sq[i].text);
    }
    free(sq), free(logits0);
    return rc;
}

static void report(spill_engine *e, int n_prompt, int n_gen, int n_fwd, double t0, double t1, double t2, int stats) {
    spill_engine_stats st;
    spill_engine_get_stats(e, &st);
    spill_mem *mem = spill_engine_mem(e);
    const spill_plan *plan = spill_engine_plan(e);
    fprintf(stderr,
            "spill: prompt %d tokens, generated %d tokens, prefill %.2f tok/s, decode %.2f tok/s | weights: hbm %.2f MiB, "
            "host %.2f MiB | KV cache: hbm %.2f MiB, host %.2f MiB, %llu blocks (peak %llu), %llu shared, %llu copied on "
            "write | read: hbm %.2f MiB, host %.2f MiB, prefetched %.2f MiB, waited %.1f ms | backend %s, policy %s\n",
            n_prompt, n_gen, n_prompt / (t1 - t0), n_fwd ? n_fwd / (t2 - t1) : 0.0, mib(st.weights[SPILL_TIER_HBM]),
            mib(st.weights[SPILL_TIER_HOST]), mib(st.kv.bytes[SPILL_TIER_HBM]), mib(st.kv.bytes[SPILL_TIER_HOST]),
            (unsigned long long)st.kv.blocks_in_use, (unsigned long long)st.kv.blocks_peak,
            (unsigned long long)st.kv.shared, (unsigned long long)st.kv.cow_copies, mib(st.read[SPILL_TIER_HBM]),
            mib(st.read[SPILL_TIER_HOST]), mib(st.prefetched), st.wait_s * 1e3, spill_mem_backend_name(mem), plan->chosen);
    if (st.disk_layers)
        fprintf(stderr, "spill: disk tier: %d layers read from the model file every step (%s), %.2f MiB read, %.2f MiB "
                        "of it tensors, waited %.1f ms\n", st.disk_layers, st.disk_direct ? "O_DIRECT" : "through the page cache",
                mib(st.disk_read), mib(st.disk_used), st.disk_wait_s * 1e3);
    if (stats) spill_mem_print_stats(mem, stderr);
}

static void describe(spill_engine *e, const int *toks, int n_prompt, uint64_t seed) {
    const spill_plan *plan = spill_engine_plan(e);
    spill_mem *mem = spill_engine_mem(e);
    spill_engine_stats st;
    spill_engine_get_stats(e, &st);
    int chose = strcmp(plan->policy, plan->chosen) != 0;
    fprintf(stderr, "spill: memory backend '%s' (%s)\n", spill_mem_backend_name(mem), spill_mem_backend_reason(mem));
    fprintf(stderr, "spill: plan %s%s%s for profile %s, HBM budget %.1f MiB: hbm %.1f MiB, host %.1f MiB", plan->policy,
            chose ? " -> " : "", chose ? plan->chosen : "", spill_engine_profile(e)->name, mib(spill_engine_hbm_budget(e)),
            mib(plan->bytes[SPILL_TIER_HBM]), mib(plan->bytes[SPILL_TIER_HOST]));
    if (plan->ring_slots) fprintf(stderr, ", ring %d x %.1f MiB, %d ahead", plan->ring_slots, mib(plan->ring_slot_bytes), plan->ring_ahead);
    if (plan->disk_slots)
        fprintf(stderr, ", disk %.1f MiB per step into %d x %.1f MiB host slots, %d ahead", mib(plan->disk_bytes),
                plan->disk_slots, mib(plan->disk_slot_bytes), plan->disk_ahead);
    fprintf(stderr, "; predicted %.1f tok/s decode (the cost model's prediction for %s)\n", plan->predicted.tok_s,
            spill_engine_profile(e)->name);
    fprintf(stderr, "spill: on the %s: weights hbm %.1f MiB, host %.1f MiB (%.1f MiB of it read from the mapped file)",
            spill_engine_device(e), mib(st.weights[SPILL_TIER_HBM]), mib(st.weights[SPILL_TIER_HOST]), mib(st.mapped));
    if (st.ring_slots) fprintf(stderr, ", ring %d x %.1f MiB filled %d ahead", st.ring_slots, mib(st.slot_bytes), st.ring_ahead);
    fprintf(stderr, "\nspill: prompt tokens:");
    for (int i = 0; i < n_prompt; i++) fprintf(stderr, " %d", toks[i]);
    const spill_kv *kv = spill_engine_kv(e);
    fprintf(stderr, "\nspill: %d threads, context %d, KV blocks of %d tokens (%s, %.1f KiB per layer), seed %llu\n",
            spill_engine_threads(e), spill_engine_ctx(e), kv->T, spill_kv_type_name(kv->type), kv->part_bytes / 1024.0,
            (unsigned long long)seed);
}

int main(int argc, char **argv) {
    opts o;
    spill_options env;
    spill_err err = {{0}};
    spill_options_defaults(&env);
    int rc = spill_options_from_env(&env, stderr, &err) ? -1 : spill_generate_cli(&o, &env, argc, argv, stdout, &err);
    if (rc) {
        if (rc < 0) fprintf(stderr, "spill-generate: %s\n", err.msg);
        return rc < 0 ? 2 : 0;
    }
    spill_sampler smp = {0};
    /* from here Ctrl-C is ours: during the load it ends the program once the load returns (exit 130,
       nothing generated); during the prompt or the decode it ends the generation with what it has */
    signal(SIGINT, on_sigint);
    char default_model[4096], *prompt_buf = NULL;
    if (!o.model && !(o.model = getenv("SPILL_MODEL"), o.model && *o.model)) {
        const char *home = getenv("HOME");
        snprintf(default_model, sizeof default_model, "%s/.cache/spill/%s", home ? home : ".", SPILL_DEFAULT_MODEL_NAME);
        if (access(default_model, R_OK)) {
            fprintf(stderr, "spill-generate: no model given and the default %s is not there; pass -m MODEL.gguf or run "
                            "scripts/fetch-model.sh once\n", default_model);
            return 2;
        }
        o.model = default_model;
    }
    if (o.prompt_file && !(o.prompt = prompt_buf = read_prompt(o.prompt_file, &err))) {
        fprintf(stderr, "spill-generate: %s\n", err.msg);
        return 2;
    }
    if (!o.prompt) o.prompt = SPILL_GENERATE_DEFAULT_PROMPT;
    if (!o.seed_set) o.seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);

    spill_profile prof;
    spill_engine *e = NULL;
    spill_spec sp = {0};
    int spec_on = 0;
    int *toks = NULL, n_prompt = 0, n_gen = 0, n_fwd = 0, status = 1;
    spill_engine_params ep = spill_engine_defaults();
    ep.model = o.model;
    ep.device = o.env.device;
    ep.backend = o.env.backend;
    ep.policy = o.policy_set || getenv("SPILL_POLICY") ? o.env.policy : NULL; /* else the device's default */
    ep.hbm_budget = o.env.hbm_budget;
    ep.hbm_reserve = o.env.hbm_reserve;
    ep.host_limit = o.env.host_limit;
    ep.disk_io = o.disk_io;
    ep.alloc_log = o.env.alloc_log[0] ? o.env.alloc_log : NULL;
    ep.use_mmap = o.use_mmap;
    ep.ctx = o.ctx;
    ep.batch = o.batch;
    ep.n_seqs = o.n_parallel;
    ep.kv_block = o.kv_block;
    SPILL_ASSERT(spill_kv_type_parse(o.env.kv_type, &ep.kv_type) == 0); /* the option table checked it */
    ep.cuda_graphs = o.env.cuda_graphs;
    ep.threads = o.threads ? o.threads : o.env.threads;
    ep.host_node = o.env.host_node;
    ep.tokenizer_pre = o.env.tokenizer_pre[0] ? o.env.tokenizer_pre : NULL;
    if (o.profile || o.profile_file) {
        if (o.profile_file ? spill_profile_load(o.profile_file, &prof, &err)
                           : spill_profile_named(o.profile, &prof, NULL, 0, &err)) {
            status = 2;
            goto out;
        }
        ep.profile = &prof;
    }
    if (spill_engine_open(&ep, &e, &err)) goto out;
    spill_logit_adjust pen = {NULL, NULL, 0, o.presence_penalty, o.frequency_penalty, o.repeat_penalty,
                              o.repeat_last_n < 0 || o.repeat_last_n >= spill_engine_ctx(e) ? 0 : o.repeat_last_n};
    if (spill_sampler_init(&smp, spill_engine_model(e)->hp.vocab, o.temp, o.top_k, o.top_p, o.seed, &err) ||
        spill_sampler_adjust(&smp, &pen, &err))
        goto out;
    if (o.draft_skip) {
        int L = spill_engine_model(e)->hp.n_layers;
        uint8_t *skip = calloc((size_t)L, 1);
        int bad = !skip || spill_draft_resolve(&ep, L, o.draft_skip, o.draft_file, 0, skip, &err) ||
                  spill_spec_init(&sp, e, 0, skip, o.draft_k, o.draft_vocab, &err);
        free(skip);
        if (bad) {
            if (!err.msg[0]) spill_err_set(&err, "out of memory");
            status = 2;
            goto out;
        }
        spec_on = 1;
    }
    if (prompt_tokens(&o, spill_engine_model(e), spill_engine_ctx(e), &toks, &n_prompt, &err)) {
        status = 2;
        goto out;
    }
    if (interrupted) {
        fprintf(stderr, "spill: interrupted while loading; nothing was generated\n");
        status = 130;
        goto out;
    }
    if (o.verbose || o.env.log) describe(e, toks, n_prompt, o.seed);
    spill_sampler_context(&smp, toks, n_prompt); /* the repetition penalty counts the prompt too */
    if (o.n_parallel == 1) {
        fputs(o.prompt, stdout);
        if (o.chat) fputc('\n', stdout);
        fflush(stdout);
    }
    double t0 = spill_now();
    /* with a draft the last prompt token starts the first round */
    int n_pre = spec_on ? n_prompt - 1 : n_prompt;
    if (n_pre > 0 && spill_engine_prefill(e, 0, toks, n_pre, 0, &interrupted, &err)) goto out;
    double t1 = spill_now();
    if (spec_on) {
        if (decode_spec(e, &smp, &sp, &o, toks, n_prompt, &n_gen, &err)) goto out;
        n_fwd = n_gen;
    } else if (o.n_parallel == 1 ? decode_one(e, &smp, &o, n_prompt, &n_gen, &n_fwd, &err)
                                 : decode_parallel(e, &o, toks, n_prompt, &n_gen, &n_fwd, &err)) {
        goto out;
    }
    double t2 = spill_now();
    fflush(stdout);
    if (interrupted) fprintf(stderr, "spill: interrupted\n");
    report(e, n_prompt, n_gen, n_fwd, t0, t1, t2, o.env.stats);
    if (spec_on) {
        const spill_spec_stats *ss = &sp.st;
        char vocab_note[64] = "";
        if (sp.head_rows) snprintf(vocab_note, sizeof vocab_note, ", draft vocabulary %d of %d", sp.head_rows, sp.vocab);
        fprintf(stderr, "spill: draft: %llu of %llu proposals kept (acceptance %.1f%%), %.2f tokens per verification step "
                        "(%llu rounds of k=%d%s); time in the draft %.2f s, in verification %.2f s\n",
                (unsigned long long)ss->accepted, (unsigned long long)ss->drafted,
                ss->drafted ? 100.0 * (double)ss->accepted / (double)ss->drafted : 0.0,
                ss->rounds ? (double)ss->produced / (double)ss->rounds : 0.0, (unsigned long long)ss->rounds, o.draft_k,
                vocab_note, ss->draft_s, ss->verify_s);
    }
    status = 0;
out:
    if (status && err.msg[0]) fprintf(stderr, "spill-generate: %s\n", err.msg);
    spill_sampler_free(&smp);
    spill_spec_free(&sp);
    spill_engine_free(e);
    free(toks);
    free(prompt_buf);
    return status;
}
