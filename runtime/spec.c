/* Self-speculative decoding (see spec.h): the round, and the calibration that picks the layers. */
#include "spec.h"

#include <errno.h>
#include <math.h>
#include <sys/stat.h>

#include "spill_file.h"
#include "spill_json.h"

int spill_spec_init(spill_spec *sp, spill_engine *e, int seq, const uint8_t *skip, int k, int draft_vocab, spill_err *err) {
    memset(sp, 0, sizeof *sp);
    const spill_hparams *hp = &spill_engine_model(e)->hp;
    int batch = spill_engine_batch(e);
    if (k < 1 || k + 1 > batch)
        return spill_err_set(err, "--draft-k %d: a round verifies k+1 tokens in one step, so k must be 1..%d with "
                                  "--batch-size %d", k, batch - 1, batch);
    int n_skip = 0;
    for (int l = 0; l < hp->n_layers; l++) n_skip += skip[l] != 0;
    if (!n_skip) return spill_err_set(err, "--draft-skip: the draft skips no layer, so it is the model itself");
    if (draft_vocab < 0 || draft_vocab > hp->vocab)
        return spill_err_set(err, "--draft-vocab %d: the draft's vocabulary must be 1..%d (this model's), or 0 for all of it",
                             draft_vocab, hp->vocab);
    sp->e = e;
    sp->seq = seq;
    sp->k = k;
    sp->n_layers = hp->n_layers;
    sp->vocab = hp->vocab;
    sp->head_rows = draft_vocab < hp->vocab ? draft_vocab : 0;
    sp->skip = malloc((size_t)hp->n_layers);
    sp->q = malloc(sizeof(float) * (size_t)k * (size_t)hp->vocab);
    sp->p = malloc(sizeof(float) * (size_t)hp->vocab);
    sp->tok = malloc(sizeof(int) * (size_t)(k + 1));
    sp->pos = malloc(sizeof(int) * (size_t)(k + 1));
    sp->seqv = malloc(sizeof(int) * (size_t)(k + 1));
    sp->out = malloc((size_t)(k + 1));
    if (!sp->skip || !sp->q || !sp->p || !sp->tok || !sp->pos || !sp->seqv || !sp->out) {
        spill_spec_free(sp);
        return spill_err_set(err, "out of memory for the draft");
    }
    memcpy(sp->skip, skip, (size_t)hp->n_layers);
    return 0;
}

void spill_spec_free(spill_spec *sp) {
    free(sp->skip);
    free(sp->q);
    free(sp->p);
    free(sp->tok);
    free(sp->pos);
    free(sp->seqv);
    free(sp->out);
    memset(sp, 0, sizeof *sp);
}

int spill_spec_round(spill_spec *sp, spill_sampler *smp, int last, int pos, int *out, spill_err *err) {
    spill_engine *e = sp->e;
    int V = sp->vocab, n_ctx = spill_engine_ctx(e);
    /* the verification writes positions pos..pos+k, all inside the context */
    int k = sp->k < n_ctx - 1 - pos ? sp->k : n_ctx - 1 - pos;
    if (k < 0) return spill_err_set(err, "speculative round at position %d: the context of %d tokens is full", pos, n_ctx);
    /* the draft: k steps of the model without the skipped layers, each proposing the next token */
    double t0 = spill_now();
    int cur = last;
    for (int i = 0; i < k; i++) {
        int p = pos + i;
        spill_batch b = {.n = 1, .token = &cur, .seq = &sp->seq, .pos = &p, .skip = sp->skip, .head_rows = sp->head_rows};
        if (spill_engine_step(e, &b, err)) return -1;
        float *q = sp->q + (size_t)i * (size_t)V;
        spill_sampler_probs(smp, spill_engine_logits(e), q); /* past head_rows: -inf on every device */
        sp->tok[i + 1] = cur = spill_sampler_draw(smp, q);
    }
    double t1 = spill_now();
    sp->st.draft_s += t1 - t0;
    /* the verification: the whole model over last and the k proposals, every output kept */
    sp->tok[0] = last;
    for (int i = 0; i <= k; i++) {
        sp->pos[i] = pos + i;
        sp->seqv[i] = sp->seq;
        sp->out[i] = 1;
    }
    spill_batch b = {.n = k + 1, .token = sp->tok, .seq = sp->seqv, .pos = sp->pos, .out = sp->out};
    if (spill_engine_step(e, &b, err)) return -1;
    sp->st.verify_s += spill_now() - t1;
    int n = 0;
    for (int i = 0; i <= k; i++) {
        spill_sampler_probs(smp, spill_engine_logits_at(e, i), sp->p);
        if (i == k) { /* every proposal kept: one more from the model's last distribution */
            out[n++] = spill_sampler_draw(smp, sp->p);
            break;
        }
        const float *q = sp->q + (size_t)i * (size_t)V;
        int d = sp->tok[i + 1];
        /* keep d with probability min(1, p(d)/q(d)); q(d) > 0 since d was drawn from q */
        if (sp->p[d] >= q[d] || (double)spill_sampler_uniform(smp) * q[d] < sp->p[d]) {
            out[n++] = d;
            continue;
        }
        /* refused: draw from what p has beyond q */
        double mass = 0;
        for (int x = 0; x < V; x++) {
            float r = sp->p[x] - q[x];
            sp->p[x] = r > 0 ? r : 0;
            mass += sp->p[x];
        }
        SPILL_ASSERT(mass > 0); /* p(d) < q(d), so p exceeds q somewhere */
        out[n++] = spill_sampler_draw(smp, sp->p);
        break;
    }
    sp->st.rounds++;
    sp->st.drafted += (uint64_t)k;
    sp->st.accepted += (uint64_t)(n - 1);
    sp->st.produced += (uint64_t)n;
    /* the sequence keeps last and the kept proposals; the refused ones' entries go */
    return spill_kv_truncate(spill_engine_kv(e), sp->seq, pos + n, err) ? -1 : n;
}

/* ---------------------------------------------------------------- calibration */

/* Short texts of different kinds (story, dialogue, code, facts, a list), so that no one register
 * decides which layers look idle. */
static const char *const calib_prompts[] = {
    "Once upon a time, there was a little girl named Lily. She loved to play in the park with her dog.",
    "The mitochondrion is the organelle in which cells turn nutrients into usable energy.",
    "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
    "User: What is the capital of France?\nAssistant: The capital of France is Paris.",
    "Ingredients: two cups of flour, one egg, a pinch of salt, and half a cup of milk.",
    "In 1969, astronauts landed on the Moon and walked on its surface for the first time.",
    "The quick brown fox jumps over the lazy dog, and then it runs back into the forest.",
    "Dear team, the meeting is moved to Thursday at ten; please bring the quarterly numbers.",
};

typedef struct calib {
    int dim, n_layers;
    float *prev;   /* (batch, dim) the input of the next layer */
    double *sum;   /* (n_layers) */
    uint64_t count; /* tokens seen by layer 0 */
    int cap;       /* rows prev holds */
} calib;

static void on_trace(void *ctx, const char *name, int layer, const float *x, int64_t n) {
    calib *c = ctx;
    int rows = (int)(n / c->dim);
    if (rows > c->cap) return; /* cannot happen: the engine's batch bounds it */
    if (!strcmp(name, "inp_embd")) {
        memcpy(c->prev, x, sizeof(float) * (size_t)n);
        c->count += (uint64_t)rows;
    } else if (!strcmp(name, "l_out") && layer >= 0 && layer < c->n_layers) {
        for (int t = 0; t < rows; t++) {
            const float *a = c->prev + (size_t)t * (size_t)c->dim, *b = x + (size_t)t * (size_t)c->dim;
            double ab = 0, aa = 0, bb = 0;
            for (int i = 0; i < c->dim; i++) {
                ab += (double)a[i] * b[i];
                aa += (double)a[i] * a[i];
                bb += (double)b[i] * b[i];
            }
            c->sum[layer] += aa > 0 && bb > 0 ? ab / sqrt(aa * bb) : 0;
        }
        memcpy(c->prev, x, sizeof(float) * (size_t)n);
    }
}

int spill_draft_calibrate(const spill_engine_params *base, double *cos, int n_layers, spill_err *err) {
    spill_engine_params p = *base;
    p.device = "cpu";
    p.backend = "auto";
    p.mem = NULL;
    p.policy = "host";
    p.profile = NULL;
    p.hbm_budget = 0;
    p.host_limit = 0;
    p.alloc_log = NULL;
    p.ctx = 128;
    p.batch = 64;
    p.n_seqs = 1;
    p.kv_blocks = 0;
    p.quiet = 1;
    calib c = {0};
    p.trace = on_trace;
    p.trace_ctx = &c;
    spill_engine *e = NULL;
    int *toks = NULL, rc = -1;
    if (spill_engine_open(&p, &e, err)) return -1;
    const spill_model *m = spill_engine_model(e);
    if (m->hp.n_layers != n_layers) {
        spill_err_set(err, "calibration: the model has %d layers, not %d", m->hp.n_layers, n_layers);
        goto out;
    }
    c.dim = m->hp.dim;
    c.n_layers = n_layers;
    c.cap = p.batch;
    c.prev = malloc(sizeof(float) * (size_t)p.batch * (size_t)c.dim);
    c.sum = calloc((size_t)n_layers, sizeof *c.sum);
    if (!c.prev || !c.sum) {
        spill_err_set(err, "out of memory for calibration");
        goto out;
    }
    for (size_t i = 0; i < sizeof calib_prompts / sizeof *calib_prompts; i++) {
        int n = 0;
        free(toks);
        toks = NULL;
        if (spill_tokenize(&m->tok, calib_prompts[i], strlen(calib_prompts[i]), 1, 0, &toks, &n, err)) goto out;
        if (n > p.batch) n = p.batch;
        if (spill_kv_truncate(spill_engine_kv(e), 0, 0, err) || (n && spill_engine_forward(e, 0, toks, n, 0, err))) goto out;
    }
    if (!c.count) {
        spill_err_set(err, "calibration: the prompts gave no tokens");
        goto out;
    }
    for (int l = 0; l < n_layers; l++) cos[l] = c.sum[l] / (double)c.count;
    rc = 0;
out:
    free(toks);
    free(c.prev);
    free(c.sum);
    spill_engine_free(e);
    return rc;
}

void spill_draft_path(const char *model, char *out, size_t n) {
    struct stat st;
    if (!stat(model, &st) && S_ISDIR(st.st_mode)) snprintf(out, n, "%s/spill-draft.json", model);
    else snprintf(out, n, "%s.spill-draft.json", model);
}

/* what identifies the model: the file's size (a directory: its config.json's, and the safetensors
   are named by it) */
static int64_t model_bytes(const char *model) {
    struct stat st;
    if (stat(model, &st)) return -1;
    if (!S_ISDIR(st.st_mode)) return (int64_t)st.st_size;
    char cfg[4096];
    snprintf(cfg, sizeof cfg, "%s/config.json", model);
    return stat(cfg, &st) ? -1 : (int64_t)st.st_size;
}

int spill_draft_load(const char *path, const char *model, double *cos, int n_layers, spill_err *err) {
    struct stat st;
    if (stat(path, &st)) {
        if (errno == ENOENT) {
            spill_err_set(err, "%s: not there yet", path);
            return 0;
        }
        return spill_err_set(err, "%s: %s", path, strerror(errno));
    }
    spill_json *j = NULL;
    if (spill_json_parse_file(path, 1 << 20, &j, err)) return -1;
    int rc = -1;
    int64_t layers, bytes;
    const spill_json *a = spill_json_get_type(j, "cosine", SPILL_JSON_ARRAY);
    if (j->type != SPILL_JSON_OBJECT ||
        spill_json_get_int(j, "n_layers", 1, 1 << 20, -1, &layers, path, err) ||
        spill_json_get_int(j, "model_bytes", -1, INT64_MAX, -2, &bytes, path, err))
        goto out;
    if (layers != n_layers || bytes != model_bytes(model)) {
        spill_err_set(err, "%s was written for another model (%lld layers, %lld bytes)", path, (long long)layers,
                      (long long)bytes);
        rc = 0;
        goto out;
    }
    if (!a || a->n != (size_t)n_layers) {
        spill_err_set(err, "%s: \"cosine\" must be an array of %d numbers", path, n_layers);
        goto out;
    }
    for (int l = 0; l < n_layers; l++) {
        if (a->items[l].type != SPILL_JSON_NUMBER || !(fabs(a->items[l].number) <= 1.000001)) {
            spill_err_set(err, "%s: cosine[%d] must be a number in [-1, 1]", path, l);
            goto out;
        }
        cos[l] = a->items[l].number;
    }
    rc = 1;
out:
    spill_json_free(j);
    return rc;
}

int spill_draft_save(const char *path, const char *model, const double *cos, int n_layers, spill_err *err) {
    spill_file_out o;
    if (spill_file_begin(&o, path, "the draft's calibration", err)) return -1;
    fprintf(o.f, "{\"format\": \"spill-draft 1\", \"model_bytes\": %lld, \"n_layers\": %d, \"prompts\": %d,\n \"cosine\": [",
            (long long)model_bytes(model), n_layers, (int)(sizeof calib_prompts / sizeof *calib_prompts));
    for (int l = 0; l < n_layers; l++) fprintf(o.f, "%s%.9f", l ? ", " : "", cos[l]);
    fprintf(o.f, "]}\n");
    return spill_file_commit(&o, err);
}

int spill_draft_choose(const double *cos, int n_layers, int n, uint8_t *skip, spill_err *err) {
    if (n < 1 || n > n_layers - 2)
        return spill_err_set(err, "--draft-skip %d: this model has %d layers, and the draft keeps the first and the last, "
                                  "so 1..%d may be skipped", n, n_layers, n_layers - 2);
    memset(skip, 0, (size_t)n_layers);
    for (int i = 0; i < n; i++) {
        int best = -1;
        for (int l = 1; l < n_layers - 1; l++)
            if (!skip[l] && (best < 0 || cos[l] > cos[best])) best = l;
        skip[best] = 1;
    }
    return 0;
}

int spill_draft_parse(const char *spec, int n_layers, uint8_t *skip, int *count, spill_err *err) {
    if (!spec || !*spec) return spill_err_set(err, "--draft-skip: empty; give a count (8) or layers (3,5,10-14)");
    if (!strpbrk(spec, ",-")) {
        char *end;
        errno = 0;
        long v = strtol(spec, &end, 10);
        if (*end || errno || v < 1 || v > n_layers - 2)
            return spill_err_set(err, "--draft-skip '%s': a count must be 1..%d for this model of %d layers (the first "
                                      "and last are kept)", spec, n_layers - 2, n_layers);
        *count = (int)v;
        return 0;
    }
    memset(skip, 0, (size_t)n_layers);
    *count = -1;
    const char *s = spec;
    int any = 0;
    while (*s) {
        char *end;
        long a = strtol(s, &end, 10), b = a;
        if (end == s) return spill_err_set(err, "--draft-skip '%s': expected a layer number at '%s'", spec, s);
        s = end;
        if (*s == '-') {
            b = strtol(++s, &end, 10);
            if (end == s) return spill_err_set(err, "--draft-skip '%s': a range needs an end, at '%s'", spec, s);
            s = end;
        }
        if (a < 0 || b >= n_layers || a > b)
            return spill_err_set(err, "--draft-skip '%s': layers %ld-%ld are not within 0..%d", spec, a, b, n_layers - 1);
        for (long l = a; l <= b; l++) skip[l] = 1, any++;
        if (*s == ',') s++;
        else if (*s) return spill_err_set(err, "--draft-skip '%s': unexpected '%c'", spec, *s);
    }
    if (!any) return spill_err_set(err, "--draft-skip '%s': no layer given", spec);
    int n = 0;
    for (int l = 0; l < n_layers; l++) n += skip[l];
    if (n == n_layers) return spill_err_set(err, "--draft-skip '%s': every layer skipped leaves no draft", spec);
    return 0;
}

int spill_draft_resolve(const spill_engine_params *base, int n_layers, const char *spec, const char *calib_path, int quiet,
                        uint8_t *skip, spill_err *err) {
    int count;
    if (spill_draft_parse(spec, n_layers, skip, &count, err)) return -1;
    if (count < 0) return 0;
    char path[4096];
    if (calib_path) snprintf(path, sizeof path, "%s", calib_path);
    else spill_draft_path(base->model, path, sizeof path);
    double *cos = malloc(sizeof(double) * (size_t)n_layers);
    if (!cos) return spill_err_set(err, "out of memory");
    spill_err why = {{0}};
    int rc = spill_draft_load(path, base->model, cos, n_layers, &why);
    if (rc < 0) {
        free(cos);
        return spill_err_set(err, "%s (delete it to calibrate again)", why.msg);
    }
    if (rc == 0) {
        if (!quiet) fprintf(stderr, "spill: calibrating the draft (%s): each layer's effect on the hidden state over %d prompts\n",
                            why.msg, (int)(sizeof calib_prompts / sizeof *calib_prompts));
        double t0 = spill_now();
        if (spill_draft_calibrate(base, cos, n_layers, err)) {
            free(cos);
            return -1;
        }
        spill_err werr = {{0}};
        if (spill_draft_save(path, base->model, cos, n_layers, &werr))
            fprintf(stderr, "spill: warning: the calibration could not be kept (%s); it will run again next time\n", werr.msg);
        else if (!quiet)
            fprintf(stderr, "spill: calibrated in %.1f s, kept in %s\n", spill_now() - t0, path);
    }
    rc = spill_draft_choose(cos, n_layers, count, skip, err);
    if (!rc && !quiet) {
        fprintf(stderr, "spill: the draft skips %d of %d layers:", count, n_layers);
        for (int l = 0; l < n_layers; l++)
            if (skip[l]) fprintf(stderr, " %d (%.4f)", l, cos[l]);
        fprintf(stderr, " (cosine of each layer's output to its input)\n");
    }
    free(cos);
    return rc;
}
