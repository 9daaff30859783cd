#include "sampler.h"

#include <math.h>

#include "spill_kernels.h"

int spill_sampler_init(spill_sampler *s, int n_vocab, float temp, int top_k, float top_p, uint64_t seed, spill_err *err) {
    memset(s, 0, sizeof *s);
    if (!(temp >= 0) || temp > 100) return spill_err_set(err, "--temp %g is out of range; use 0 (greedy) to 100", temp);
    if (top_k < 0) return spill_err_set(err, "--top-k %d is out of range; use 0 (off) or a positive count", top_k);
    if (!(top_p > 0 && top_p <= 1)) return spill_err_set(err, "--top-p %g is out of range; use a value in (0, 1]", top_p);
    s->temp = temp;
    s->top_k = top_k;
    s->top_p = top_p;
    s->n_vocab = n_vocab;
    /* the seed through splitmix64's finalizer: xorshift64* from raw neighbouring seeds (S, S+1, ...: OpenAI's n,
       --n-parallel) drew nearly the same first numbers (0.620, 0.629, 0.618 for seeds 43-45) */
    uint64_t z = seed + 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    s->rng = z ? z : 0x853c49e6748fea9bull; /* xorshift's state must not be 0 */
    s->cand = malloc(sizeof *s->cand * (size_t)n_vocab);
    s->prob = malloc(sizeof *s->prob * (size_t)n_vocab);
    if (top_k > 0 && top_k < n_vocab) {
        s->top_id = malloc(sizeof *s->top_id * (size_t)top_k);
        s->top_p_val = malloc(sizeof *s->top_p_val * (size_t)top_k);
    }
    if (!s->cand || !s->prob || (top_k > 0 && top_k < n_vocab && (!s->top_id || !s->top_p_val))) {
        spill_sampler_free(s);
        return spill_err_set(err, "out of memory for the sampler");
    }
    return 0;
}

int spill_sampler_adjust(spill_sampler *s, const spill_logit_adjust *a, spill_err *err) {
    if (!a || (!a->n_bias && a->presence == 0 && a->frequency == 0 && (a->repeat == 0 || a->repeat == 1))) return 0;
    const int n = s->n_vocab;
    if (a->n_bias < 0 || a->n_bias > n) return spill_err_set(err, "logit bias: %d entries; at most one per token (%d)", a->n_bias, n);
    for (int i = 0; i < a->n_bias; i++) {
        if (a->bias_id[i] < 0 || a->bias_id[i] >= n)
            return spill_err_set(err, "logit bias: token %d is not in the vocabulary (0..%d)", a->bias_id[i], n - 1);
        if (!(fabsf(a->bias[i]) <= SPILL_LOGIT_BIAS_MAX))
            return spill_err_set(err, "logit bias %g for token %d is out of range; use -%d to %d", a->bias[i], a->bias_id[i],
                                 SPILL_LOGIT_BIAS_MAX, SPILL_LOGIT_BIAS_MAX);
    }
    if (!(fabsf(a->presence) <= SPILL_PENALTY_MAX))
        return spill_err_set(err, "presence penalty %g is out of range; use -%d to %d", a->presence, SPILL_PENALTY_MAX,
                             SPILL_PENALTY_MAX);
    if (!(fabsf(a->frequency) <= SPILL_PENALTY_MAX))
        return spill_err_set(err, "frequency penalty %g is out of range; use -%d to %d", a->frequency, SPILL_PENALTY_MAX,
                             SPILL_PENALTY_MAX);
    int rep = a->repeat != 0 && a->repeat != 1;
    if (rep && !(a->repeat >= SPILL_REPEAT_MIN && a->repeat <= SPILL_REPEAT_MAX))
        return spill_err_set(err, "repetition penalty %g is out of range; use %g to %g (1: off)", a->repeat,
                             (double)SPILL_REPEAT_MIN, (double)SPILL_REPEAT_MAX);
    if (rep && (a->repeat_window < 0 || a->repeat_window > SPILL_REPEAT_WINDOW_MAX))
        return spill_err_set(err, "repetition penalty window %d is out of range; use 0 (every token) or 1 to %d",
                             a->repeat_window, SPILL_REPEAT_WINDOW_MAX);
    int pen = a->presence != 0 || a->frequency != 0;
    size_t win = rep && a->repeat_window > 0 ? (size_t)a->repeat_window : 0;
    int *id = a->n_bias ? malloc(sizeof *id * (size_t)a->n_bias) : NULL, *count = pen ? calloc((size_t)n, sizeof *count) : NULL;
    int *seen = pen ? malloc(sizeof *seen * (size_t)n) : NULL;
    int *rcount = rep ? calloc((size_t)n, sizeof *rcount) : NULL, *rlist = rep ? malloc(sizeof *rlist * (size_t)n) : NULL;
    int *rpos = rep ? malloc(sizeof *rpos * (size_t)n) : NULL, *ring = win ? malloc(sizeof *ring * win) : NULL;
    float *bias = a->n_bias ? malloc(sizeof *bias * (size_t)a->n_bias) : NULL, *adj = malloc(sizeof *adj * (size_t)n);
    if ((a->n_bias && (!id || !bias)) || (pen && (!count || !seen)) || (rep && (!rcount || !rlist || !rpos)) ||
        (win && !ring) || !adj) {
        free(id), free(count), free(seen), free(bias), free(adj), free(rcount), free(rlist), free(rpos), free(ring);
        return spill_err_set(err, "out of memory for the sampler's logit changes");
    }
    if (a->n_bias) memcpy(id, a->bias_id, sizeof *id * (size_t)a->n_bias), memcpy(bias, a->bias, sizeof *bias * (size_t)a->n_bias);
    free(s->bias_id), free(s->bias), free(s->count), free(s->seen), free(s->adj);
    free(s->rcount), free(s->rlist), free(s->rpos), free(s->ring);
    s->bias_id = id, s->bias = bias, s->n_bias = a->n_bias, s->count = count, s->seen = seen, s->adj = adj, s->n_seen = 0;
    s->presence = a->presence, s->frequency = a->frequency;
    s->repeat = rep ? a->repeat : 0, s->window = (int)win;
    s->rcount = rcount, s->rlist = rlist, s->rpos = rpos, s->ring = ring, s->n_rlist = 0, s->ring_at = 0, s->ring_n = 0;
    return 0;
}

/* id enters the repetition window; the oldest token leaves it once it is full */
static void window_push(spill_sampler *s, int id) {
    if (!s->rcount || id < 0 || id >= s->n_vocab) return;
    if (s->window) {
        if (s->ring_n == s->window) {
            int old = s->ring[s->ring_at];
            if (!--s->rcount[old]) { /* out of the list: the last entry takes its place */
                int at = s->rpos[old], last = s->rlist[--s->n_rlist];
                s->rlist[at] = last, s->rpos[last] = at;
            }
        } else {
            s->ring_n++;
        }
        s->ring[s->ring_at] = id;
        s->ring_at = (s->ring_at + 1) % s->window;
    }
    if (!s->rcount[id]++) s->rpos[id] = s->n_rlist, s->rlist[s->n_rlist++] = id;
}

void spill_sampler_accept(spill_sampler *s, int id) {
    window_push(s, id);
    if (!s->count || id < 0 || id >= s->n_vocab) return;
    if (!s->count[id]++) s->seen[s->n_seen++] = id;
}

void spill_sampler_context(spill_sampler *s, const int *ids, int n) {
    if (!s->rcount) return;
    if (s->window && n > s->window) ids += n - s->window, n = s->window; /* the rest would leave at once */
    for (int i = 0; i < n; i++) window_push(s, ids[i]);
}

/* the logits the sampler picks from: the model's, or a copy with spill_sampler_adjust's changes */
static const float *adjusted(spill_sampler *s, const float *logits) {
    if (!s->adj) return logits;
    memcpy(s->adj, logits, sizeof *s->adj * (size_t)s->n_vocab);
    for (int i = 0; i < s->n_bias; i++) s->adj[s->bias_id[i]] += s->bias[i];
    for (int i = 0; i < s->n_rlist; i++) {
        float *l = &s->adj[s->rlist[i]];
        *l = *l > 0 ? *l / s->repeat : *l * s->repeat;
    }
    for (int i = 0; i < s->n_seen; i++) {
        int id = s->seen[i];
        s->adj[id] -= s->presence + (float)s->count[id] * s->frequency;
    }
    return s->adj;
}

void spill_sampler_free(spill_sampler *s) {
    free(s->bias_id);
    free(s->bias);
    free(s->count);
    free(s->seen);
    free(s->adj);
    free(s->rcount);
    free(s->rlist);
    free(s->rpos);
    free(s->ring);
    free(s->cand);
    free(s->prob);
    free(s->top_id);
    free(s->top_p_val);
    memset(s, 0, sizeof *s);
}

float spill_sampler_uniform(spill_sampler *s) {
    /* xorshift64* */
    s->rng ^= s->rng >> 12;
    s->rng ^= s->rng << 25;
    s->rng ^= s->rng >> 27;
    return (float)((s->rng * 0x2545F4914F6CDD1Dull) >> 40) / 16777216.0f;
}

static int cmp_desc(const void *a, const void *b) {
    const spill_prob *x = a, *y = b;
    if (x->p != y->p) return x->p > y->p ? -1 : 1;
    return x->id - y->id;
}

static int argmax(const float *logits, int n) {
    int best = 0; /* lowest id wins a tie */
    for (int i = 1; i < n; i++)
        if (logits[i] > logits[best]) best = i;
    return best;
}

/* of the candidates sorted by probability (the k first): how many top-p keeps, and their mass */
static int kept(const spill_sampler *s, int k, double *mass) {
    int keep = 0;
    *mass = 0;
    while (keep < k) {
        *mass += s->cand[keep++].p;
        if (*mass >= s->top_p) break;
    }
    return keep;
}

/* softmax at the temperature, then the k most likely sorted into s->cand; returns k */
static int candidates(spill_sampler *s, const float *logits);

int spill_sampler_sample(spill_sampler *s, const float *logits) {
    int n = s->n_vocab;
    logits = adjusted(s, logits);
    if (s->temp == 0) return argmax(logits, n);
    int k = candidates(s, logits);
    double mass;
    int keep = kept(s, k, &mass);
    float r = spill_sampler_uniform(s) * (float)mass;
    double acc = 0;
    for (int i = 0; i < keep; i++) {
        acc += s->cand[i].p;
        if (r < acc) return s->cand[i].id;
    }
    return s->cand[keep - 1].id;
}

static int candidates(spill_sampler *s, const float *logits) {
    int n = s->n_vocab;
    /* in vectorized loops (kernels/ops.c): one expf call per word of the vocabulary and a chain of
       double adds took ~6% of a 16-sequence batched decode, on the calling thread while the others waited */
    double sum = spill_exp_sum(s->prob, logits, n, spill_maxf(logits, n), s->temp);
    for (int i = 0; i < n; i++) s->prob[i] = (float)(s->prob[i] / sum);
    /* keep the k most likely (all when k is 0), then the smallest prefix whose mass reaches top_p;
     * both ways order by probability, then lower id */
    int k = s->top_k > 0 && s->top_k < n ? s->top_k : n;
    if (k < n) { /* select k without sorting the vocabulary */
        spill_topk(s->prob, n, k, s->top_id, s->top_p_val);
        for (int i = 0; i < k; i++) s->cand[i] = (spill_prob){.p = s->top_p_val[i], .id = s->top_id[i]};
    } else {
        for (int i = 0; i < n; i++) s->cand[i] = (spill_prob){.p = s->prob[i], .id = i};
        qsort(s->cand, (size_t)n, sizeof *s->cand, cmp_desc);
    }
    return k;
}

void spill_sampler_probs(spill_sampler *s, const float *logits, float *probs) {
    int n = s->n_vocab;
    logits = adjusted(s, logits);
    memset(probs, 0, sizeof(float) * (size_t)n);
    if (s->temp == 0) {
        probs[argmax(logits, n)] = 1;
        return;
    }
    int k = candidates(s, logits);
    double mass;
    int keep = kept(s, k, &mass);
    for (int i = 0; i < keep; i++) probs[s->cand[i].id] = (float)(s->cand[i].p / mass);
}

int spill_sampler_draw(spill_sampler *s, const float *probs) {
    int n = s->n_vocab, last = 0;
    double mass = 0;
    for (int i = 0; i < n; i++) mass += probs[i];
    double r = (double)spill_sampler_uniform(s) * mass, acc = 0;
    for (int i = 0; i < n; i++) {
        if (probs[i] <= 0) continue;
        acc += probs[i];
        last = i;
        if (r < acc) return i;
    }
    return last;
}

void spill_sampler_logprobs(spill_sampler *s, const float *logits, int id, int n_top, spill_token_logprob *out) {
    spill_logprobs(logits, s->n_vocab, s->prob, id, n_top, out);
}

void spill_logprobs(const float *logits, int n, float *scratch, int id, int n_top, spill_token_logprob *out) {
    if (n_top < 0) n_top = 0;
    if (n_top > SPILL_MAX_TOP_LOGPROBS) n_top = SPILL_MAX_TOP_LOGPROBS;
    if (n_top > n) n_top = n;
    /* log(sum e^(l - max)) + max, the sum in double */
    float mx = spill_maxf(logits, n);
    double lse = (double)mx + log(spill_exp_sum(scratch, logits, n, mx, 1.0f));
    out->id = id;
    out->logprob = (float)((double)logits[id] - lse);
    out->n_top = n_top;
    if (n_top) spill_topk(logits, n, n_top, out->top_id, out->top_logprob);
    for (int i = 0; i < n_top; i++) out->top_logprob[i] = (float)((double)out->top_logprob[i] - lse);
}
