/* Continuous batching (see sched.h). */
#include "scheduler.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>

#include "sampler.h"
#include "spill_policy.h"

typedef struct req {
    int id;
    int *tokens;       /* the prompt, then what was generated: what a recompute after preemption feeds */
    int n_tokens, cap;
    int n_prompt, n_gen, max_tokens;
    spill_sampler smp;
    char **stop;
    int n_stop;
    char *text;        /* generated text */
    size_t text_len, text_cap, sent; /* sent: bytes given to the sink */
    int tokens_unsent;
    int logprobs, top_logprobs;
    spill_token_logprob *lp; /* (cap_lp) each generated token's, when asked */
    size_t *lp_end;          /* where each one's text ends in text[] */
    int n_lp, cap_lp, lp_sent;
    spill_token_logprob next_lp; /* the token just sampled, until take_token keeps it */
    spill_token_logprob *plp; /* (n_prompt) the prompt's, while they are wanted and not sent */
    spill_sched_sink sink;
    void *user;
    int slot;          /* the engine's sequence, -1 while waiting */
    int computed;      /* positions of tokens[] in the KV cache */
    int cancelled;
    int leader;        /* a sibling of spill_sched_submit_n: the first's id, until admitted (else 0) */
    uint64_t admitted; /* admission order, for choosing whom to preempt */
    spill_finish finish;
    char error[256];
    struct req *next;  /* the waiting queue */
} req;

struct spill_sched {
    spill_engine *e;
    const spill_model *m;
    spill_kv *kv;
    int n_slots, batch, chunk, budget, max_waiting, ctx;
    int n_dec; /* decoding tokens at the head of the batch build() made */
    double target;  /* --itl-target in seconds (0: none) */
    spill_pace pace; /* the steps' times, for the target; st.step_cap the most tokens a step may hold */
    req **running;     /* (n_slots) by slot */
    req *wait_head, *wait_tail;
    int n_waiting, n_running, next_id;
    uint64_t admit_clock;
    int stopping, drain;
    pthread_t thread;
    int have_thread;
    pthread_mutex_t lock;
    pthread_cond_t cv;
    spill_sched_stats st;
    /* The engine step runs outside the lock and writes the KV cache; meanwhile the statistics (any
       thread, under the lock) read this copy of the cache's numbers, taken before the step began. */
    int in_step;
    spill_kv_stats kv_st;
    int kv_free;
    /* one step's batch */
    int *tok, *seq, *pos;
    uint8_t *out;
    req **owner; /* (batch) the request each output belongs to */
    req **pick_req; /* (batch) the requests that sample this step, in output order */
    float **pick_logits;
    int *picked;
    int *pick_pos; /* (batch) the position each output is at */
    float *lp_scratch; /* (the pool's threads, vocab) a prompt position's log probabilities (echo) */
    int *order;   /* (n_slots) the slots with prompt left, by admission */
};

const char *spill_finish_name(spill_finish f) {
    switch (f) {
    case SPILL_FINISH_STOP: return "stop";
    case SPILL_FINISH_LENGTH: return "length";
    case SPILL_FINISH_CANCELLED: return "cancelled";
    case SPILL_FINISH_ERROR: return "error";
    default: return "none";
    }
}

static void req_free(req *r) {
    if (!r) return;
    spill_sampler_free(&r->smp);
    for (int i = 0; i < r->n_stop; i++) free(r->stop[i]);
    free(r->stop);
    free(r->tokens);
    free(r->text);
    free(r->lp);
    free(r->lp_end);
    free(r->plp);
    free(r);
}

/* ---- text: whole UTF-8 sequences, never part of a stop string ---- */

static int append_text(req *r, const char *s, size_t n) {
    if (r->text_len + n + 1 > r->text_cap) {
        size_t cap = (r->text_len + n + 1) * 2;
        char *t = realloc(r->text, cap);
        if (!t) return -1;
        r->text = t;
        r->text_cap = cap;
    }
    memcpy(r->text + r->text_len, s, n);
    r->text_len += n;
    r->text[r->text_len] = 0;
    return 0;
}

/* bytes at the end of text[0..n) that begin a UTF-8 sequence not complete yet */
static size_t utf8_tail(const char *t, size_t n) {
    for (size_t k = 1; k <= 3 && k <= n; k++) {
        unsigned char c = (unsigned char)t[n - k];
        if ((c & 0xC0) == 0x80) continue; /* a continuation byte: look further back */
        size_t want = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
        return want > k ? k : 0;
    }
    return 0;
}

/* A stop string in the text generated so far ends it there: 1 when one was found. */
static int find_stop(req *r) {
    size_t best = SIZE_MAX;
    for (int i = 0; i < r->n_stop; i++) {
        const char *hit = strstr(r->text, r->stop[i]);
        if (hit && (size_t)(hit - r->text) < best) best = (size_t)(hit - r->text);
    }
    if (best == SIZE_MAX) return 0;
    r->text_len = best;
    r->text[best] = 0;
    return 1;
}

/* how much of the text may go to the client now */
static size_t safe_end(const req *r) {
    size_t end = r->text_len;
    /* hold back a suffix that could still become a stop string */
    for (int i = 0; i < r->n_stop; i++) {
        size_t sl = strlen(r->stop[i]);
        for (size_t k = sl - 1; k > 0; k--)
            if (k <= r->text_len && !memcmp(r->text + r->text_len - k, r->stop[i], k)) {
                if (r->text_len - k < end) end = r->text_len - k;
                break;
            }
    }
    return end - utf8_tail(r->text, end);
}

static void emit(req *r, int final) {
    size_t end = final ? r->text_len : safe_end(r);
    if (end < r->sent) end = r->sent;
    /* the log probabilities of the tokens whose text is all sent with this; at the end also those of
       tokens that a stop string cut, for the part of their text before it */
    int lp_to = r->lp_sent;
    if (!(final && r->finish == SPILL_FINISH_ERROR))
        while (lp_to < r->n_lp &&
               (r->lp_end[lp_to] <= end || (final && (lp_to ? r->lp_end[lp_to - 1] : 0) < end)))
            lp_to++;
    if (end > r->sent || r->tokens_unsent || lp_to > r->lp_sent || final) {
        r->sink(r->user, r->text + r->sent, end - r->sent, r->tokens_unsent, r->lp ? r->lp + r->lp_sent : NULL,
                lp_to - r->lp_sent, final ? r->finish : SPILL_FINISH_NONE);
        r->sent = end;
        r->tokens_unsent = 0;
        r->lp_sent = lp_to;
    }
}

/* ---- the queue and the slots (under the lock) ---- */

static void queue_push(spill_sched *s, req *r, int front) {
    r->next = NULL;
    if (front) {
        r->next = s->wait_head;
        s->wait_head = r;
        if (!s->wait_tail) s->wait_tail = r;
    } else {
        if (s->wait_tail) s->wait_tail->next = r;
        else s->wait_head = r;
        s->wait_tail = r;
    }
    s->n_waiting++;
}

static void release_slot(spill_sched *s, req *r) {
    if (r->slot < 0) return;
    spill_kv_release(s->kv, r->slot);
    s->running[r->slot] = NULL;
    s->n_running--;
    r->slot = -1;
}

/* longest prefix r shares with a running sequence's computed positions, at least one block long */
static int shared_prefix(spill_sched *s, const req *r, int *src) {
    int best = 0;
    *src = -1;
    for (int i = 0; i < s->n_slots; i++) {
        const req *o = s->running[i];
        if (!o || o == r) continue;
        int lim = o->computed < r->n_tokens - 1 ? o->computed : r->n_tokens - 1, k = 0;
        while (k < lim && o->tokens[k] == r->tokens[k]) k++;
        if (k > best) best = k, *src = i;
    }
    return best >= s->kv->T ? best : 0;
}

static int blocks_for(const spill_sched *s, int n) { return (n + s->kv->T - 1) / s->kv->T; }

/* a sibling (spill_sched_submit_n) whose first is computing the prompt they share: it waits, to share
   the first's blocks rather than compute the prompt again */
static int waits_for_first(const spill_sched *s, const req *r) {
    if (!r->leader || r->plp || r->n_tokens - 1 < s->kv->T) return 0;
    for (int i = 0; i < s->n_slots; i++) {
        const req *l = s->running[i];
        if (l && l->id == r->leader) return !l->cancelled && l->computed < r->n_tokens - 1;
    }
    return 0; /* the first has ended (or waits, preempted: then it is ahead in the queue) */
}

/* Admit in the queue's order while a slot is free and the KV cache holds the prompt; siblings that wait
   for their first are stepped past (they keep their place at the front). */
static void admit(spill_sched *s) {
    req **pp = &s->wait_head, *prev = NULL;
    /* with a target step time, no more running sequences than a step's predicted tokens */
    while (*pp && s->n_running < s->n_slots && (!s->target || s->n_running < s->st.step_cap)) {
        req *r = *pp;
        if (r->cancelled || waits_for_first(s, r)) { /* a cancelled one leaves the queue at the next step */
            prev = r;
            pp = &r->next;
            continue;
        }
        int src = -1, reuse = r->plp ? 0 : shared_prefix(s, r, &src); /* plp: every position's logits */
        /* the rest of the prompt, and one block to decode into */
        int need = blocks_for(s, r->n_tokens) - reuse / s->kv->T + 1;
        if (s->n_running && need > spill_kv_blocks_free(s->kv)) break;
        int slot = 0;
        while (s->running[slot]) slot++;
        spill_err err;
        if (reuse ? spill_kv_fork_prefix(s->kv, src, slot, reuse, &err) : spill_kv_seq_open(s->kv, slot, &err)) break;
        *pp = r->next; /* out of the queue */
        if (s->wait_tail == r) s->wait_tail = prev;
        s->n_waiting--;
        r->slot = slot;
        r->leader = 0;
        r->computed = reuse;
        r->admitted = ++s->admit_clock;
        s->running[slot] = r;
        s->n_running++;
        if (s->n_running > s->st.max_running) s->st.max_running = s->n_running;
        s->st.reused_tokens += (uint64_t)reuse;
    }
}

/* ---- one step ---- */

/* Give back the most recently admitted sequence's blocks; it waits at the front to be recomputed. */
static int preempt(spill_sched *s) {
    req *v = NULL;
    for (int i = 0; i < s->n_slots; i++)
        if (s->running[i] && (!v || s->running[i]->admitted > v->admitted)) v = s->running[i];
    if (!v || s->n_running < 2) return -1;
    release_slot(s, v);
    v->computed = 0;
    queue_push(s, v, 1);
    s->st.preempted++;
    return 0;
}

/* The batch: one token of each decoding sequence, then prompt chunks, the longest-admitted prompt first
 * (in slot order a newcomer in a low slot would take the budget step after step from one admitted
 * earlier in a high one: at 16 clients asking 4 tokens each, a prompt waited 22 s); 0 tokens when
 * nothing runs. */
static int build(spill_sched *s) {
    int n = 0, cap = s->batch, n_pre = 0;
    for (int i = 0; i < s->n_slots; i++) {
        req *r = s->running[i];
        if (!r || r->cancelled || r->n_tokens - r->computed < 1) continue;
        if (r->n_tokens - r->computed > 1) {
            /* prompts to feed, by admission (insertion into a list of at most n_slots) */
            int k = n_pre++;
            while (k > 0 && s->running[s->order[k - 1]]->admitted > r->admitted) {
                s->order[k] = s->order[k - 1];
                k--;
            }
            s->order[k] = i;
            continue;
        }
        if (n == cap) continue;
        s->tok[n] = r->tokens[r->computed];
        s->seq[n] = r->slot;
        s->pos[n] = r->computed;
        s->out[n] = 1;
        s->owner[n] = r;
        n++;
    }
    s->n_dec = n;
    /* beside decoding sequences, prompts get the budget, or what fills the step to one token per running
       sequence (a step of all of them decoding: no longer than the steps their clients will see anyway) if
       that is more. One token per slot instead made steps of 32 tokens beside 15 decoding sequences under
       --parallel 32 at 16 clients, the tail of their inter-token latency */
    if (n && s->budget > 0) {
        int allow = n + s->budget > s->n_running ? n + s->budget : s->n_running;
        if (allow < cap) cap = allow;
    }
    /* with a target step time, prompts beside decoding tokens only up to the predicted tokens, but at
       least one a step, so that a prompt admitted before the prediction shrank still goes on */
    if (n && s->target) {
        int allow = s->st.step_cap > n + 1 ? s->st.step_cap : n + 1;
        if (allow < cap) cap = allow;
    }
    for (int j = 0; j < n_pre && n < cap; j++) {
        req *r = s->running[s->order[j]];
        int left = r->n_tokens - r->computed;
        int c = left < s->chunk ? left : s->chunk;
        if (c > cap - n) c = cap - n;
        for (int k = 0; k < c; k++) {
            s->tok[n] = r->tokens[r->computed + k];
            s->seq[n] = r->slot;
            s->pos[n] = r->computed + k;
            s->out[n] = r->computed + k == r->n_tokens - 1 || (r->plp && r->computed + k < r->n_prompt - 1);
            s->owner[n] = r;
            n++;
        }
    }
    return n;
}

static int blocks_needed(spill_sched *s, int n) {
    int need = 0;
    for (int t = 0; t < n; t++)
        if (t == 0 || s->seq[t] != s->seq[t - 1]) {
            int e = t;
            while (e + 1 < n && s->seq[e + 1] == s->seq[t]) e++;
            need += spill_kv_blocks_needed(s->kv, s->seq[t], s->pos[t], e - t + 1);
        }
    return need;
}

/* a request is over: its blocks go back at once, its sink hears the reason */
static void finish(spill_sched *s, req *r, spill_finish f, int locked) {
    if (!locked) pthread_mutex_lock(&s->lock);
    /* siblings waiting for its prompt take their share of it before its blocks go (it may end in the step
       that computed the prompt: max_tokens 1, an end-of-generation or stop string at once); not when it was
       cancelled (its siblings were too: the client went away) or failed */
    if ((f == SPILL_FINISH_STOP || f == SPILL_FINISH_LENGTH) && r->slot >= 0)
        for (const req *w = s->wait_head; w; w = w->next)
            if (w->leader == r->id) {
                admit(s);
                break;
            }
    release_slot(s, r);
    s->st.finished++;
    if (f == SPILL_FINISH_CANCELLED) s->st.cancelled++;
    pthread_mutex_unlock(&s->lock);
    r->finish = f;
    if (f == SPILL_FINISH_ERROR && r->error[0]) {
        r->text_len = r->sent; /* the message replaces what was not sent */
        append_text(r, r->error, strlen(r->error));
    }
    emit(r, 1);
    req_free(r);
    if (locked) pthread_mutex_lock(&s->lock);
}

/* A token sampled for r: the end, or text. */
static void take_token(spill_sched *s, req *r, int id) {
    const spill_tokenizer *tok = &s->m->tok;
    if (spill_token_is_eog(tok, id)) {
        r->finish = SPILL_FINISH_STOP;
        return;
    }
    r->n_gen++;
    r->tokens_unsent++;
    spill_sampler_accept(&r->smp, id); /* the penalties count generated tokens */
    r->tokens[r->n_tokens++] = id; /* room was made at submit: prompt + max_tokens */
    char piece[512];
    int pl = spill_token_to_bytes(tok, id, piece, sizeof piece);
    if (pl > (int)sizeof piece) pl = (int)sizeof piece;
    if (append_text(r, piece, (size_t)pl)) {
        r->finish = SPILL_FINISH_ERROR;
        snprintf(r->error, sizeof r->error, "out of memory");
        return;
    }
    if (r->logprobs) { /* grown as tokens come: a long context's max_tokens would hold megabytes per request */
        if (r->n_lp == r->cap_lp) {
            int cap = r->cap_lp ? 2 * r->cap_lp : 16; /* test_logprobs grows it once */
            spill_token_logprob *lp = realloc(r->lp, sizeof *lp * (size_t)cap);
            if (lp) r->lp = lp;
            size_t *end = lp ? realloc(r->lp_end, sizeof *end * (size_t)cap) : NULL;
            if (end) r->lp_end = end;
            if (!lp || !end) {
                r->finish = SPILL_FINISH_ERROR;
                snprintf(r->error, sizeof r->error, "out of memory for the log probabilities");
                return;
            }
            r->cap_lp = cap;
        }
        r->lp[r->n_lp] = r->next_lp;
        r->lp_end[r->n_lp++] = r->text_len;
    }
    if (r->n_stop && find_stop(r)) r->finish = SPILL_FINISH_STOP;
    else if (r->n_gen >= r->max_tokens || r->n_tokens >= s->ctx) r->finish = SPILL_FINISH_LENGTH;
}

/* Each request samples with its own sampler and scratch, so a step's outputs are sampled over the
 * engine's pool, whoever comes taking the next. One after another on this thread, 16 sequences'
 * sampling (SmolLM2's 49152 words) took ~3% of a decode step while the other threads waited; Llama 3's
 * vocabulary is 2.6 times larger. */
typedef struct sample_job {
    spill_sched *s;
    int n;
    _Atomic int next;
} sample_job;

static void sample_worker(void *ctx, int ith, int nth) {
    sample_job *j = ctx;
    spill_sched *s = j->s;
    (void)nth;
    for (int i; (i = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed)) < j->n;) {
        req *r = s->pick_req[i];
        const float *logits = s->pick_logits[i];
        int p = s->pick_pos[i];
        s->picked[i] = -1;
        if (p < r->n_tokens - 1) { /* a prompt position: the next prompt token's log probability, with this
                                      thread's scratch (a request's one sample a step has its sampler's) */
            spill_logprobs(logits, s->m->hp.vocab, s->lp_scratch + (size_t)ith * (size_t)s->m->hp.vocab, r->tokens[p + 1],
                           r->top_logprobs, &r->plp[p + 1]);
            continue;
        }
        if (!r->max_tokens) continue; /* the prompt only */
        int id = s->picked[i] = spill_sampler_sample(&r->smp, logits);
        if (r->logprobs) spill_sampler_logprobs(&r->smp, logits, id, r->top_logprobs, &r->next_lp);
    }
}

/* the prompt's log probabilities, once all are computed: a sink call of their own, before any text */
static void send_prompt_lp(req *r) {
    if (!r->plp || r->computed < r->n_prompt || r->finish == SPILL_FINISH_ERROR) return;
    r->plp[0] = (spill_token_logprob){.id = r->tokens[0], .logprob = NAN};
    r->sink(r->user, "", 0, 0, r->plp, r->n_prompt, SPILL_FINISH_NONE);
    free(r->plp);
    r->plp = NULL;
}

static int step(spill_sched *s) {
    pthread_mutex_lock(&s->lock);
    /* the cancelled ones go first, so that their blocks are free for this step */
    for (int i = 0; i < s->n_slots; i++)
        if (s->running[i] && s->running[i]->cancelled) finish(s, s->running[i], SPILL_FINISH_CANCELLED, 1);
    for (req **pp = &s->wait_head; *pp;) {
        req *r = *pp;
        if (!r->cancelled) {
            pp = &r->next;
            continue;
        }
        *pp = r->next;
        if (s->wait_tail == r) {
            s->wait_tail = NULL;
            for (req *q = s->wait_head; q; q = q->next) s->wait_tail = q;
        }
        s->n_waiting--;
        finish(s, r, SPILL_FINISH_CANCELLED, 1);
    }
    admit(s);
    int n = build(s);
    while (n && blocks_needed(s, n) > spill_kv_blocks_free(s->kv) && !preempt(s)) n = build(s);
    s->kv_st = s->kv->st;
    s->kv_free = spill_kv_blocks_free(s->kv);
    s->in_step = n > 0;
    pthread_mutex_unlock(&s->lock);
    if (!n) return 0;
    spill_batch b = {n, s->tok, s->seq, s->pos, s->out, NULL, 0};
    spill_err err = {{0}};
    double t0 = spill_now();
    int rc = spill_engine_step(s->e, &b, &err);
    double dt = spill_now() - t0;
    pthread_mutex_lock(&s->lock);
    s->in_step = 0;
    s->st.steps++;
    s->st.step_tokens += (uint64_t)n;
    if (s->n_dec && n - s->n_dec > s->st.max_mixed_prompt) s->st.max_mixed_prompt = n - s->n_dec;
    s->st.busy_s += dt;
    if (s->target && !rc) {
        spill_pace_add(&s->pace, n, dt);
        s->st.step_cap = spill_pace_cap(&s->pace, s->target, s->batch);
    }
    pthread_mutex_unlock(&s->lock);
    /* what each request fed is in the cache now; the ones whose last token ran sample the next. When
       the step failed, every request in it ends with the engine's message. */
    int o = 0, generated = 0;
    for (int t = 0; t < n && !rc; t++)
        if (s->out[t]) {
            s->pick_req[o] = s->owner[t];
            s->pick_logits[o] = spill_engine_logits_at(s->e, o);
            s->pick_pos[o] = s->pos[t];
            o++;
        }
    sample_job sj = {s, o, 0};
    if (o > 1) spill_pool_share(spill_engine_pool(s->e), sample_worker, &sj);
    else if (o) sample_worker(&sj, 0, 1);
    o = 0;
    for (int t = 0; t < n; t++) {
        req *r = s->owner[t];
        if (rc) {
            r->finish = SPILL_FINISH_ERROR;
            snprintf(r->error, sizeof r->error, "%.250s", err.msg);
            continue;
        }
        r->computed++;
        if (!s->out[t]) continue;
        int id = s->picked[o++];
        if (s->pos[t] < r->n_tokens - 1) continue; /* a prompt position's log probability */
        if (!r->max_tokens) {
            r->finish = SPILL_FINISH_LENGTH;
            continue;
        }
        int before = r->n_gen;
        take_token(s, r, id);
        generated += r->n_gen - before;
    }
    pthread_mutex_lock(&s->lock);
    s->st.generated_tokens += (uint64_t)generated;
    pthread_mutex_unlock(&s->lock);
    /* each request once: the last of its tokens in the batch */
    for (int t = 0; t < n; t++) {
        req *r = s->owner[t];
        if (t + 1 < n && s->owner[t + 1] == r) continue;
        send_prompt_lp(r);
        if (r->finish != SPILL_FINISH_NONE) finish(s, r, r->finish, 0);
        else if (s->out[t]) emit(r, 0);
    }
    return n;
}

static void *sched_main(void *arg) {
    spill_sched *s = arg;
    for (;;) {
        pthread_mutex_lock(&s->lock);
        while (!s->stopping && !s->n_running && !s->n_waiting) pthread_cond_wait(&s->cv, &s->lock);
        int done = s->stopping && (!s->drain || (!s->n_running && !s->n_waiting));
        if (s->stopping && !s->drain) {
            for (int i = 0; i < s->n_slots; i++)
                if (s->running[i]) s->running[i]->cancelled = 1;
            for (req *r = s->wait_head; r; r = r->next) r->cancelled = 1;
        }
        pthread_mutex_unlock(&s->lock);
        if (done) {
            step(s); /* ends the cancelled ones */
            break;
        }
        step(s);
    }
    return NULL;
}

/* ---- the public side ---- */

int spill_sched_open(spill_sched **out, spill_engine *e, const spill_sched_params *p, spill_err *err) {
    *out = NULL;
    spill_sched *s = calloc(1, sizeof *s);
    if (!s) return spill_err_set(err, "out of memory");
    s->e = e;
    s->m = spill_engine_model(e);
    s->kv = spill_engine_kv(e);
    s->n_slots = s->kv->max_seqs;
    s->batch = spill_engine_batch(e);
    s->chunk = p && p->prefill_chunk > 0 && p->prefill_chunk < s->batch ? p->prefill_chunk : s->batch;
    s->budget = p && p->prefill_budget > 0 ? p->prefill_budget : 0;
    s->target = p && p->itl_target_ms > 0 ? p->itl_target_ms / 1000.0 : 0;
    s->st.step_cap = s->target ? 1 : 0; /* nothing timed yet: one sequence first */
    s->max_waiting = p && p->max_waiting > 0 ? p->max_waiting : 64;
    s->ctx = spill_engine_ctx(e);
    s->running = calloc((size_t)s->n_slots, sizeof *s->running);
    s->tok = malloc(sizeof(int) * (size_t)s->batch);
    s->seq = malloc(sizeof(int) * (size_t)s->batch);
    s->pos = malloc(sizeof(int) * (size_t)s->batch);
    s->out = malloc((size_t)s->batch);
    s->owner = malloc(sizeof *s->owner * (size_t)s->batch);
    s->pick_req = malloc(sizeof *s->pick_req * (size_t)s->batch);
    s->pick_logits = malloc(sizeof *s->pick_logits * (size_t)s->batch);
    s->picked = malloc(sizeof(int) * (size_t)s->batch);
    s->pick_pos = malloc(sizeof(int) * (size_t)s->batch);
    s->lp_scratch = malloc(sizeof(float) * (size_t)spill_pool_size(spill_engine_pool(e)) * (size_t)s->m->hp.vocab);
    s->order = malloc(sizeof(int) * (size_t)s->n_slots);
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cv, NULL);
    if (!s->running || !s->tok || !s->seq || !s->pos || !s->out || !s->owner || !s->order || !s->pick_req || !s->pick_logits ||
        !s->picked || !s->pick_pos || !s->lp_scratch) {
        spill_sched_free(s);
        return spill_err_set(err, "out of memory");
    }
    spill_kv_release(s->kv, 0); /* every sequence is the scheduler's */
    if (pthread_create(&s->thread, NULL, sched_main, s)) {
        spill_sched_free(s);
        return spill_err_set(err, "cannot start the scheduler's thread");
    }
    s->have_thread = 1;
    *out = s;
    return 0;
}

void spill_sched_stop(spill_sched *s, int drain) {
    pthread_mutex_lock(&s->lock);
    if (!s->stopping) {
        s->stopping = 1;
        s->drain = drain;
    } else if (!drain) {
        s->drain = 0;
    }
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->lock);
    if (s->have_thread) {
        pthread_join(s->thread, NULL);
        s->have_thread = 0;
    }
}

void spill_sched_free(spill_sched *s) {
    if (!s) return;
    spill_sched_stop(s, 0);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->cv);
    free(s->running), free(s->tok), free(s->seq), free(s->pos), free(s->out), free(s->owner), free(s->order);
    free(s->pick_req), free(s->pick_logits), free(s->picked), free(s->pick_pos), free(s->lp_scratch);
    free(s);
}

/* one request's record (max_tokens: q's, clamped to the context), checked against the scheduler's fixed
   sizes (no lock) */
static req *req_new(spill_sched *s, const spill_request *q, int max_tokens, uint64_t seed, spill_sched_sink sink,
                    void *user, spill_err *err) {
    req *r = calloc(1, sizeof *r);
    if (!r) {
        spill_err_set(err, "out of memory");
        return NULL;
    }
    r->slot = -1;
    r->sink = sink;
    r->user = user;
    r->n_prompt = r->n_tokens = q->n_prompt;
    r->max_tokens = max_tokens;
    r->cap = q->n_prompt + max_tokens + 1;
    /* a repetition window at least as long as the sequence can grow is every token: no ring that size */
    spill_logit_adjust adj = q->adjust ? *q->adjust : (spill_logit_adjust){0};
    if (adj.repeat_window >= r->cap) adj.repeat_window = 0;
    if (spill_sampler_init(&r->smp, s->m->hp.vocab, q->temp, q->top_k, q->top_p, seed, err) ||
        spill_sampler_adjust(&r->smp, q->adjust ? &adj : NULL, err)) {
        req_free(r);
        return NULL;
    }
    spill_sampler_context(&r->smp, q->prompt, q->n_prompt); /* the repetition penalty counts the prompt too */
    r->tokens = malloc(sizeof(int) * (size_t)r->cap);
    r->stop = q->n_stop ? calloc((size_t)q->n_stop, sizeof *r->stop) : NULL;
    r->logprobs = q->logprobs != 0;
    r->top_logprobs = q->top_logprobs;
    if (q->prompt_logprobs) r->plp = calloc((size_t)q->n_prompt, sizeof *r->plp);
    if (!r->tokens || (q->n_stop && !r->stop) || (q->prompt_logprobs && !r->plp)) {
        req_free(r);
        spill_err_set(err, "out of memory");
        return NULL;
    }
    memcpy(r->tokens, q->prompt, sizeof(int) * (size_t)q->n_prompt);
    for (int i = 0; i < q->n_stop; i++) {
        if (!q->stop[i][0]) continue; /* an empty stop string would stop everything at once */
        if (!(r->stop[r->n_stop] = strdup(q->stop[i]))) {
            req_free(r);
            spill_err_set(err, "out of memory");
            return NULL;
        }
        r->n_stop++;
    }
    return r;
}

void spill_sched_limits(const spill_sched *s, int *slots, int *max_waiting) {
    *slots = s->n_slots; /* both fixed at open */
    *max_waiting = s->max_waiting;
}

int spill_sched_submit(spill_sched *s, const spill_request *q, spill_sched_sink sink, void *user, int *id, int *full,
                       spill_err *err) {
    return spill_sched_submit_n(s, q, 1, sink, &user, id, full, err);
}

int spill_sched_submit_n(spill_sched *s, const spill_request *q, int n, spill_sched_sink sink, void *const *users, int *ids,
                         int *full, spill_err *err) {
    *full = 0;
    if (n < 1) return spill_err_set(err, "n is %d; at least 1 sequence", n);
    if (n > s->n_slots + s->max_waiting)
        return spill_err_set(err, "n is %d; this server runs %d sequences and queues %d more", n, s->n_slots,
                             s->max_waiting);
    if (q->n_prompt < 1) return spill_err_set(err, "the prompt is empty (no tokens, and the model adds no BOS)");
    if (q->n_prompt >= s->ctx)
        return spill_err_set(err, "the prompt is %d tokens but the context holds %d", q->n_prompt, s->ctx);
    if (q->max_tokens < 0 && !q->prompt_logprobs)
        return spill_err_set(err, "max_tokens -1 generates nothing; without prompt_logprobs there is nothing to compute");
    int max_tokens = q->max_tokens < 0                                         ? 0
                     : q->max_tokens > 0 && q->max_tokens < s->ctx - q->n_prompt ? q->max_tokens
                                                                                 : s->ctx - q->n_prompt;
    int need = blocks_for(s, q->n_prompt + max_tokens);
    if (need > s->kv->max_blocks)
        return spill_err_set(err, "the prompt and max_tokens need %d KV blocks of %d tokens; the cache has %d in all", need,
                             s->kv->T, s->kv->max_blocks);
    for (int i = 0; i < q->n_prompt; i++)
        if (q->prompt[i] < 0 || q->prompt[i] >= s->m->hp.vocab)
            return spill_err_set(err, "token id %d is outside the vocabulary of %d", q->prompt[i], s->m->hp.vocab);
    if ((q->logprobs || q->prompt_logprobs) && (q->top_logprobs < 0 || q->top_logprobs > SPILL_MAX_TOP_LOGPROBS))
        return spill_err_set(err, "top_logprobs %d is out of range; use 0 to %d", q->top_logprobs, SPILL_MAX_TOP_LOGPROBS);
    req **rs = calloc((size_t)n, sizeof *rs);
    if (!rs) return spill_err_set(err, "out of memory");
    for (int i = 0; i < n; i++)
        if (!(rs[i] = req_new(s, q, max_tokens, q->seed + (uint64_t)i, sink, users[i], err))) {
            while (i--) req_free(rs[i]);
            free(rs);
            return -1;
        }
    pthread_mutex_lock(&s->lock);
    /* requests that free slots take at the next step are not waiting for one: only those beyond the free
       slots count against max_waiting (else a burst arriving between two steps was refused with a slot
       still free: one slot, one waiting place, six requests at once got one 200 and five 429s); n
       siblings go in together or not at all */
    int free_slots = s->n_slots - s->n_running;
    if (s->stopping || s->n_waiting + n - free_slots > s->max_waiting) {
        *full = 1;
        s->st.rejected++;
        int stopping = s->stopping;
        pthread_mutex_unlock(&s->lock);
        for (int i = 0; i < n; i++) req_free(rs[i]);
        free(rs);
        return spill_err_set(err, stopping ? "the server is shutting down" : "%d requests are waiting already; retry later",
                             s->max_waiting);
    }
    for (int i = 0; i < n; i++) {
        req *r = rs[i];
        r->id = ++s->next_id;
        r->leader = i ? rs[0]->id : 0;
        ids[i] = r->id;
        queue_push(s, r, 0);
    }
    s->st.requests += (uint64_t)n;
    s->st.prompt_tokens += (uint64_t)q->n_prompt * (uint64_t)n;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->lock);
    free(rs);
    return 0;
}

void spill_sched_cancel(spill_sched *s, int id) {
    pthread_mutex_lock(&s->lock);
    for (int i = 0; i < s->n_slots; i++)
        if (s->running[i] && s->running[i]->id == id) s->running[i]->cancelled = 1;
    for (req *r = s->wait_head; r; r = r->next)
        if (r->id == id) r->cancelled = 1;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->lock);
}

void spill_sched_get_stats(spill_sched *s, spill_sched_stats *out) {
    pthread_mutex_lock(&s->lock);
    *out = s->st;
    out->running = s->n_running;
    out->waiting = s->n_waiting;
    out->kv_blocks = s->kv->max_blocks;
    out->kv_blocks_free = s->in_step ? s->kv_free : spill_kv_blocks_free(s->kv);
    out->kv = s->in_step ? s->kv_st : s->kv->st;
    pthread_mutex_unlock(&s->lock);
}
