/* spill-generate: load a model, run a prompt, stream the continuation. stdout carries the prompt
 * and the generated text only; everything else goes to stderr. */
#include "chat.h"
#include "engine.h"
#include "spill_platform.h"
#include "sampler.h"
#include "spill_options.h"

#include <errno.h>
#include <strings.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_PROMPT "Once upon a time"
#define DEFAULT_MODEL_NAME "SmolLM2-135M-Instruct.Q4_1.gguf"

typedef struct opts {
    const char *model, *prompt, *prompt_file, *profile, *profile_file;
    int n_predict, top_k, threads, chat, verbose, ctx, batch, use_mmap, seed_set, n_parallel, kv_block, policy_set;
    float temp, top_p;
    uint64_t seed;
    spill_options env; /* the SPILL_* table: defaults < environment < the flags below */
} opts;

static void usage(FILE *f) {
    fprintf(f,
        "usage: spill-generate [-m MODEL.gguf] [-p PROMPT] [options]\n"
        "\n"
        "Generate text with a Llama-family model. stdout gets the prompt and the continuation, streamed;\n"
        "stderr gets load progress and a closing line with token counts, speeds and bytes per memory tier.\n"
        "\n"
        "  -m, --model FILE      GGUF model file (default: $SPILL_MODEL, else ~/.cache/spill/" DEFAULT_MODEL_NAME ",\n"
        "                        fetched once by scripts/fetch-model.sh)\n"
        "  -p, --prompt TEXT     prompt (default: \"" DEFAULT_PROMPT "\")\n"
        "  -f, --file FILE       read the prompt from FILE instead\n"
        "  -n, --n-predict N     generate at most N tokens (default: 128); stops earlier at end of text\n"
        "      --temp T          sampling temperature; 0 is greedy and deterministic (default: 0.8)\n"
        "      --top-k K         sample only among the K most likely tokens; 0 = all (default: 40)\n"
        "      --top-p P         sample only among the most likely tokens whose mass reaches P (default: 0.95)\n"
        "      --seed S          seed for sampling; the same seed gives the same text (default: from the clock)\n"
        "      --chat            wrap the prompt in the model's chat template (ChatML for SmolLM2) as one user\n"
        "                        turn and stop at the end of the assistant's turn\n"
        "  -t, --threads N       CPU threads (default: $SPILL_THREADS, else all online CPUs)\n"
        "  -c, --ctx-size N      context length in tokens: prompt plus generated (default: min(4096, model's))\n"
        "  -b, --batch-size N    prompt tokens processed per forward step (default: 32)\n"
        "      --n-parallel N    generate N continuations of the prompt (1..64, default 1); they share the\n"
        "                        prompt's KV blocks, and each sample uses seed S+i. With N > 1 the texts are\n"
        "                        printed one after another when all are done, not streamed\n"
        "      --kv-block N      tokens per KV cache block, a power of two (default: 64)\n"
        "      --policy NAME     placement policy: host (everything in host memory, the CPU default), fault,\n"
        "                        pin, stream or auto (see spill-plan --help). On the CPU, HBM is emulated in\n"
        "                        host memory so that any plan runs, with the same tokens\n"
        "      --profile NAME    hardware profile the plan is made for: gh200-96, gh200-144, h100-pcie,\n"
        "                        h200-pcie or cpu (default: cpu)\n"
        "      --profile-file F  a hardware profile in JSON\n"
        "      --device NAME     where the forward pass runs: auto, cpu or cuda (default: auto, which is\n"
        "                        cpu until the GPU path has been run on a GPU). cuda runs every matmul\n"
        "                        through cuBLAS over memory placed by the plan (default policy pin,\n"
        "                        profile gh200-96 or h100-pcie from the GPU); it has never run on a GPU\n"
        "                        yet (docs/gpu.md)\n"
        "      --backend NAME    memory backend: auto, host, system, cuda-managed or cuda-device\n"
        "                        (default: auto = host, since the forward pass runs on the CPU)\n"
        "      --hbm-budget SIZE most GPU memory to use, e.g. 80G (default: free HBM minus 1G)\n"
        "      --host-limit SIZE most host memory to allocate, e.g. 16G; the file itself, when read in\n"
        "                        place, is not counted (default: what the machine has)\n"
        "      --alloc-log FILE  write a CSV line per memory-backend call to FILE\n"
        "      --no-mmap         copy weights into memory from the allocator instead of reading the file in place\n"
        "  -v, --verbose         print model details, the plan and the backend on stderr\n"
        "  -h, --help            show this help\n"
        "\n"
        "Every SPILL_* environment variable (spill-info --options lists them) sets the flag of the same\n"
        "name; a flag on the command line wins. SPILL_STATS=1 prints memory statistics at exit.\n");
}

static int parse_int(const char *flag, const char *v, long lo, long hi, int *out) {
    char *end;
    errno = 0;
    long x = v ? strtol(v, &end, 10) : 0;
    if (!v || errno || *end || end == v || x < lo || x > hi) {
        fprintf(stderr, "spill-generate: %s expects an integer in %ld..%ld, got '%s'\n", flag, lo, hi, v ? v : "(nothing)");
        return -1;
    }
    *out = (int)x;
    return 0;
}

static int parse_float(const char *flag, const char *v, float *out) {
    char *end;
    errno = 0;
    float x = v ? strtof(v, &end) : 0;
    if (!v || errno || *end || end == v) {
        fprintf(stderr, "spill-generate: %s expects a number, got '%s'\n", flag, v ? v : "(nothing)");
        return -1;
    }
    *out = x;
    return 0;
}

static int parse_args(int argc, char **argv, opts *o) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define IS(s, l) (!strcmp(a, s) || !strcmp(a, l))
#define NEEDV() do { if (!v) { fprintf(stderr, "spill-generate: %s needs a value\n", a); return -1; } i++; } while (0)
        if (IS("-h", "--help")) { usage(stdout); exit(0); }
        else if (IS("-m", "--model")) { NEEDV(); o->model = v; }
        else if (IS("-p", "--prompt")) { NEEDV(); o->prompt = v; }
        else if (IS("-f", "--file")) { NEEDV(); o->prompt_file = v; }
        else if (IS("-n", "--n-predict")) { NEEDV(); if (parse_int(a, v, 0, 1 << 24, &o->n_predict)) return -1; }
        else if (!strcmp(a, "--temp")) { NEEDV(); if (parse_float(a, v, &o->temp)) return -1; }
        else if (!strcmp(a, "--top-k")) { NEEDV(); if (parse_int(a, v, 0, 1 << 24, &o->top_k)) return -1; }
        else if (!strcmp(a, "--top-p")) { NEEDV(); if (parse_float(a, v, &o->top_p)) return -1; }
        else if (!strcmp(a, "--seed")) {
            NEEDV();
            char *end;
            errno = 0;
            unsigned long long s = strtoull(v, &end, 10);
            if (errno || *end || end == v || *v == '-') { fprintf(stderr, "spill-generate: --seed expects a non-negative integer, got '%s'\n", v); return -1; }
            o->seed = s;
            o->seed_set = 1;
        }
        else if (!strcmp(a, "--chat")) o->chat = 1;
        else if (IS("-t", "--threads")) { NEEDV(); if (parse_int(a, v, 1, 1024, &o->threads)) return -1; }
        else if (IS("-c", "--ctx-size")) { NEEDV(); if (parse_int(a, v, 1, 1 << 24, &o->ctx)) return -1; }
        else if (IS("-b", "--batch-size")) { NEEDV(); if (parse_int(a, v, 1, 4096, &o->batch)) return -1; }
        else if (!strcmp(a, "--profile")) { NEEDV(); o->profile = v; }
        else if (!strcmp(a, "--n-parallel")) { NEEDV(); if (parse_int(a, v, 1, 64, &o->n_parallel)) return -1; }
        else if (!strcmp(a, "--kv-block")) {
            NEEDV();
            if (parse_int(a, v, 1, 65536, &o->kv_block)) return -1;
            if (o->kv_block & (o->kv_block - 1)) {
                fprintf(stderr, "spill-generate: --kv-block expects a power of two, got %d\n", o->kv_block);
                return -1;
            }
        }
        else if (!strcmp(a, "--profile-file")) { NEEDV(); o->profile_file = v; }
        else if ((!strcmp(a, "--policy") && (o->policy_set = 1)) || !strcmp(a, "--device") || !strcmp(a, "--backend") ||
                 !strcmp(a, "--hbm-budget") || !strcmp(a, "--host-limit") || !strcmp(a, "--alloc-log")) {
            NEEDV();
            spill_err err;
            if (spill_options_set(&o->env, a, v, &err)) {
                fprintf(stderr, "spill-generate: %s\n", err.msg);
                return -1;
            }
        }
        else if (!strcmp(a, "--no-mmap")) o->use_mmap = 0;
        else if (IS("-v", "--verbose")) o->verbose = 1;
        else {
            fprintf(stderr, "spill-generate: unknown argument '%s' (see --help)\n", a);
            return -1;
        }
#undef IS
#undef NEEDV
    }
    return 0;
}

static char *read_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "spill-generate: --file %s: %s\n", path, strerror(errno));
        return NULL;
    }
    size_t cap = 4096, n = 0;
    char *b = malloc(cap);
    for (;;) {
        if (!b) break;
        if (n + 1 >= cap) {
            if (cap > (1u << 30)) {
                fprintf(stderr, "spill-generate: --file %s is larger than 1 GiB\n", path);
                free(b);
                b = NULL;
                break;
            }
            char *nb = realloc(b, cap *= 2);
            if (!nb) { free(b); b = NULL; break; }
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

/* --n-parallel N: the prompt was run once as sequence 0; sequences 1..N-1 share its KV blocks
 * (copy-on-write) and each continues with its own sampler, one token per sequence per round. The
 * texts go to stdout one after another at the end. */
static int decode_parallel(const opts *o, spill_model *model, const spill_engine *e, int n_prompt, int n_ctx, int *n_gen,
                           int *n_fwd, spill_err *err) {
    spill_kv *kv = spill_engine_kv(e);
    int N = o->n_parallel, rc = -1;
    spill_sampler *smp = calloc((size_t)N, sizeof *smp);
    int *next = calloc((size_t)N, sizeof *next), *done = calloc((size_t)N, sizeof *done), *count = calloc((size_t)N, sizeof *count);
    char **text = calloc((size_t)N, sizeof *text);
    size_t *len = calloc((size_t)N, sizeof *len);
    float *logits0 = malloc(sizeof(float) * (size_t)model->hp.vocab);
    int made = 0;
    if (!smp || !next || !done || !count || !text || !len || !logits0) {
        spill_err_set(err, "out of memory");
        goto out;
    }
    memcpy(logits0, spill_engine_logits(e), sizeof(float) * (size_t)model->hp.vocab);
    for (int i = 0; i < N; i++, made++) {
        if (spill_sampler_init(&smp[i], model->hp.vocab, o->temp, o->top_k, o->top_p, o->seed + (uint64_t)i, err)) goto out;
        if (i && spill_kv_fork(kv, 0, i, err)) goto out;
        next[i] = spill_sampler_sample(&smp[i], logits0);
    }
    for (int pos = n_prompt, live = N; live && !interrupted; pos++) {
        live = 0;
        for (int i = 0; i < N; i++) {
            if (done[i]) continue;
            if (spill_token_is_eog(&model->tok, next[i]) || count[i] >= o->n_predict) {
                done[i] = 1;
                spill_kv_release(kv, i);
                continue;
            }
            char piece[512];
            int pl = spill_token_to_bytes(&model->tok, next[i], piece, sizeof piece);
            if (pl > (int)sizeof piece) pl = (int)sizeof piece;
            char *t = realloc(text[i], len[i] + (size_t)pl + 1);
            if (!t) {
                spill_err_set(err, "out of memory");
                goto out;
            }
            text[i] = t;
            memcpy(text[i] + len[i], piece, (size_t)pl);
            len[i] += (size_t)pl;
            count[i]++;
            (*n_gen)++;
            if (count[i] >= o->n_predict || pos >= n_ctx) {
                done[i] = 1;
                spill_kv_release(kv, i);
                continue;
            }
            if (spill_engine_forward(e, i, &next[i], 1, pos, err)) goto out;
            (*n_fwd)++;
            next[i] = spill_sampler_sample(&smp[i], spill_engine_logits(e));
            live++;
        }
    }
    for (int i = 0; i < N; i++) {
        fputs(o->prompt, stdout);
        if (o->chat) fputc('\n', stdout);
        if (len[i]) fwrite(text[i], 1, len[i], stdout);
        fputs(i + 1 < N ? "\n\n" : "\n", stdout);
    }
    rc = 0;
out:
    for (int i = 0; i < made; i++) spill_sampler_free(&smp[i]);
    for (int i = 0; text && i < N; i++) free(text[i]);
    free(smp), free(next), free(done), free(count), free(text), free(len), free(logits0);
    return rc;
}

int main(int argc, char **argv) {
    opts o = {.n_predict = 128, .top_k = 40, .temp = 0.8f, .top_p = 0.95f, .batch = 32, .use_mmap = 1, .n_parallel = 1};
    {
        spill_err err;
        spill_options_defaults(&o.env);
        if (spill_options_from_env(&o.env, stderr, &err)) {
            fprintf(stderr, "spill-generate: %s\n", err.msg);
            return 2;
        }
    }
    if (parse_args(argc, argv, &o)) return 2;
    if (o.env.log) o.verbose = 1;
    if (!o.threads) o.threads = o.env.threads;
    int use_cuda = !strcmp(o.env.device, "cuda");
    spill_gpu_info gpu;
    memset(&gpu, 0, sizeof gpu);
    if (use_cuda) {
        spill_err gerr;
        if (spill_gpu_query(0, &gpu, &gerr)) {
            fprintf(stderr, "spill-generate: --device cuda: %s\n", gerr.msg);
            return 1;
        }
        /* a GPU run plans for a GPU: fill HBM (pin) unless a policy was chosen */
        if (!o.policy_set && !getenv("SPILL_POLICY")) snprintf(o.env.policy, sizeof o.env.policy, "pin");
        if (!o.profile && !o.profile_file) o.profile = gpu.uses_host_page_tables ? "gh200-96" : "h100-pcie";
        if (!o.env.hbm_budget)
            o.env.hbm_budget = gpu.free_mem > o.env.hbm_reserve ? gpu.free_mem - o.env.hbm_reserve : 0;
    }
    char default_model[4096];
    if (!o.model) o.model = getenv("SPILL_MODEL");
    if (!o.model || !*o.model) {
        const char *home = getenv("HOME");
        snprintf(default_model, sizeof default_model, "%s/.cache/spill/%s", home ? home : ".", DEFAULT_MODEL_NAME);
        if (access(default_model, R_OK)) {
            fprintf(stderr, "spill-generate: no model given and the default %s is not there; pass -m MODEL.gguf or run "
                            "scripts/fetch-model.sh once\n", default_model);
            return 2;
        }
        o.model = default_model;
    }
    char *prompt_buf = NULL;
    if (o.prompt_file) {
        if (!(prompt_buf = read_file(o.prompt_file))) return 2;
        o.prompt = prompt_buf;
    }
    if (!o.prompt) o.prompt = DEFAULT_PROMPT;
    if (!o.seed_set) o.seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    if (!o.threads) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        o.threads = n > 0 ? (int)n : 1;
    }

    int rc = 1;
    spill_err err = {{0}};
    {
        /* check the sampling flags before spending time on a load */
        spill_sampler probe;
        if (spill_sampler_init(&probe, 1, o.temp, o.top_k, o.top_p, 1, &err)) {
            fprintf(stderr, "spill-generate: %s\n", err.msg);
            free(prompt_buf);
            return 2;
        }
        spill_sampler_free(&probe);
    }
    spill_mem *mem = NULL;
    spill_pool *pool = NULL;
    spill_model model;
    spill_state st;
    spill_sampler smp;
    int have_model = 0, have_state = 0, have_sampler = 0, have_cuda = 0;
    spill_cu_state cs;
    memset(&cs, 0, sizeof cs);
    char *text = NULL;
    int *toks = NULL;

    spill_profile prof;
    if (o.profile_file ? spill_profile_load(o.profile_file, &prof, &err)
                       : spill_profile_builtin(o.profile ? o.profile : "cpu", &prof, &err)) {
        rc = 2;
        goto out;
    }
    {
        /* the forward pass runs on the CPU, so "auto" means host memory; a plan with HBM in it runs
           with host memory standing in for HBM */
        int cpu_auto = !strcmp(o.env.backend, "auto") && !use_cuda;
        int emulate = strcasecmp(o.env.policy, "host") != 0;
        spill_mem_config mc = {0};
        mc.backend = cpu_auto ? (emulate ? "emulated" : "host") : o.env.backend;
        mc.limit[SPILL_TIER_HBM] = o.env.hbm_budget;
        mc.limit[SPILL_TIER_HOST] = o.env.host_limit;
        mc.log_path = o.env.alloc_log;
        if (!(mem = spill_mem_open(&mc, &err))) goto out;
        if (use_cuda && (!strcmp(spill_mem_backend_name(mem), "cuda-device") || !strcmp(spill_mem_backend_name(mem), "host") ||
                         !strcmp(spill_mem_backend_name(mem), "emulated"))) {
            spill_err_set(&err, "--device cuda needs the cuda-managed (or system) memory backend; '%s' cannot hold a KV "
                                "cache the CPU also writes", spill_mem_backend_name(mem));
            goto out;
        }
        if (o.verbose)
            fprintf(stderr, "spill: memory backend '%s' (%s)\n", spill_mem_backend_name(mem),
                    cpu_auto ? (emulate ? "auto: the forward pass runs on the CPU; host memory stands in for HBM"
                                        : "auto: the forward pass runs on the CPU")
                             : spill_mem_backend_reason(mem));
    }
    fprintf(stderr, "spill: loading %s\n", o.model);
    spill_model_params mp = {.policy = o.env.policy, .use_mmap = o.use_mmap, .ctx = o.ctx, .profile = &prof,
                             .hbm_budget = o.env.hbm_budget, .for_gpu = use_cuda, .gpu_batch = o.batch};
    if (spill_model_load(&model, o.model, &mp, mem, &err)) goto out;
    have_model = 1;
    int n_ctx = model.n_ctx;
    if (o.verbose) {
        const spill_plan *pl = &model.plan;
        fprintf(stderr, "spill: plan %s%s%s for profile %s, HBM budget %.1f MiB: hbm %.1f MiB, host %.1f MiB",
                pl->policy, strcmp(pl->policy, pl->chosen) ? " -> " : "", strcmp(pl->policy, pl->chosen) ? pl->chosen : "",
                prof.name, mib(o.env.hbm_budget), mib(pl->bytes[SPILL_TIER_HBM]), mib(pl->bytes[SPILL_TIER_HOST]));
        if (pl->ring_slots)
            fprintf(stderr, ", ring %d x %.1f MiB, %d ahead", pl->ring_slots, mib(pl->ring_slot_bytes), pl->ring_ahead);
        fprintf(stderr, "; predicted %.1f tok/s decode (a prediction of the cost model for %s)\n", pl->predicted.tok_s,
                prof.name);
    }
    if (!(pool = spill_pool_create(o.threads))) {
        spill_err_set(&err, "cannot start %d threads", o.threads);
        goto out;
    }
    if (use_cuda) {
        /* on Grace (ATS) the GPU reads the mapped file where the plan leaves weights in host memory */
        spill_cu_params cp = {n_ctx, o.batch, o.n_parallel, o.kv_block, gpu.uses_host_page_tables > 0 && o.use_mmap};
        if (spill_cu_state_init_params(&cs, &model, mem, &cp, &err)) {
            /* what to try next: a smaller budget leaves more in host memory; the CPU always works */
            size_t l = strlen(err.msg);
            snprintf(err.msg + l, sizeof err.msg - l, "; with a smaller --hbm-budget (now %.0f MiB) more of the model stays in "
                     "host memory, or run with --device cpu", mib(o.env.hbm_budget));
            goto out;
        }
        have_cuda = 1;
        if (o.verbose) {
            fprintf(stderr, "spill: on the GPU: weights hbm %.1f MiB, host %.1f MiB (%.1f MiB of it read from the mapped file)",
                    mib(cs.weight_bytes[SPILL_TIER_HBM]), mib(cs.weight_bytes[SPILL_TIER_HOST]), mib(cs.mapped_bytes));
            if (cs.n_slots)
                fprintf(stderr, ", ring %d x %.1f MiB filled %d ahead on a second stream", cs.n_slots, mib(cs.slot_bytes),
                        cs.ahead);
            fputc('\n', stderr);
        }
    } else {
        spill_state_params sp = {n_ctx, o.batch, o.n_parallel, o.kv_block};
        if (spill_state_init_params(&st, &model, &sp, pool, &err)) goto out;
        have_state = 1;
    }
    const spill_engine eng = {&st, use_cuda ? &cs : NULL};
    if (spill_sampler_init(&smp, model.hp.vocab, o.temp, o.top_k, o.top_p, o.seed, &err)) {
        rc = 2;
        goto out;
    }
    have_sampler = 1;

    const char *to_tokenize = o.prompt;
    if (o.chat) {
        if (spill_chat_format(model.chat_template, o.prompt, &text, &err)) goto out;
        to_tokenize = text;
    }
    int n_prompt = 0;
    /* BOS is added when the model asks for it, unless the text already starts with it */
    if (spill_tokenize(&model.tok, to_tokenize, strlen(to_tokenize), 0, 1, &toks, &n_prompt, &err)) goto out;
    if (model.tok.add_bos && (n_prompt == 0 || toks[0] != model.tok.bos)) {
        int *t2 = malloc(sizeof(int) * (size_t)(n_prompt + 1));
        if (!t2) { spill_err_set(&err, "out of memory"); goto out; }
        t2[0] = model.tok.bos;
        memcpy(t2 + 1, toks, sizeof(int) * (size_t)n_prompt);
        free(toks);
        toks = t2;
        n_prompt++;
    }
    if (n_prompt == 0) {
        fprintf(stderr, "spill-generate: the prompt is empty and the model adds no BOS token; nothing to start from\n");
        rc = 2;
        goto out;
    }
    if (n_prompt >= n_ctx) {
        fprintf(stderr, "spill-generate: the prompt is %d tokens but the context holds %d; raise -c/--ctx-size (the model allows %d)\n",
                n_prompt, n_ctx, model.hp.ctx_train);
        rc = 2;
        goto out;
    }
    if (o.verbose) {
        fprintf(stderr, "spill: prompt tokens:");
        for (int i = 0; i < n_prompt; i++) fprintf(stderr, " %d", toks[i]);
        fprintf(stderr, "\nspill: %d threads, context %d, KV blocks of %d tokens (%.1f KiB per layer), seed %llu\n",
                spill_pool_size(pool), n_ctx, spill_engine_kv(&eng)->T, spill_engine_kv(&eng)->part_bytes / 1024.0, (unsigned long long)o.seed);
    }
    signal(SIGINT, on_sigint);
    if (o.n_parallel == 1) {
        fputs(o.prompt, stdout);
        if (o.chat) fputc('\n', stdout);
        fflush(stdout);
    }

    double t0 = spill_now();
    for (int i = 0; i < n_prompt; i += o.batch) {
        int nb = n_prompt - i < o.batch ? n_prompt - i : o.batch;
        if (spill_engine_forward(&eng, 0, toks + i, nb, i, &err)) goto out;
    }
    double t1 = spill_now();
    int n_gen = 0, n_fwd = 0;
    char piece[512];
    if (o.n_parallel == 1) {
        int pos = n_prompt;
        while (n_gen < o.n_predict && !interrupted) {
            int next = spill_sampler_sample(&smp, spill_engine_logits(&eng));
            if (spill_token_is_eog(&model.tok, next)) break;
            n_gen++;
            int pl = spill_token_to_bytes(&model.tok, next, piece, sizeof piece);
            fwrite(piece, 1, (size_t)(pl < (int)sizeof piece ? pl : (int)sizeof piece), stdout);
            fflush(stdout);
            if (n_gen == o.n_predict) break;
            if (pos >= n_ctx) {
                fprintf(stderr, "\nspill: stopped: the context of %d tokens is full (raise -c/--ctx-size)\n", n_ctx);
                break;
            }
            if (spill_engine_forward(&eng, 0, &next, 1, pos, &err)) goto out;
            pos++;
            n_fwd++;
        }
    } else if (decode_parallel(&o, &model, &eng, n_prompt, n_ctx, &n_gen, &n_fwd, &err)) {
        goto out;
    }
    double t2 = spill_now();
    if (o.n_parallel == 1) fputc('\n', stdout);
    fflush(stdout);
    if (interrupted) fprintf(stderr, "spill: interrupted\n");
    spill_exec_stats xs = spill_engine_stats(&eng);
    const spill_kv *kvp = spill_engine_kv(&eng);
    const uint64_t *wb = spill_engine_weight_bytes(&eng);
    fprintf(stderr,
            "spill: prompt %d tokens, generated %d tokens, prefill %.2f tok/s, decode %.2f tok/s | weights: hbm %.2f MiB, host %.2f MiB | "
            "KV cache: hbm %.2f MiB, host %.2f MiB, %llu blocks (peak %llu), %llu shared, %llu copied on write | read: hbm %.2f MiB, host %.2f MiB, prefetched %.2f MiB, waited %.1f ms | "
            "backend %s, policy %s\n",
            n_prompt, n_gen, n_prompt / (t1 - t0), n_fwd ? n_fwd / (t2 - t1) : 0.0,
            mib(wb[SPILL_TIER_HBM]), mib(wb[SPILL_TIER_HOST]),
            mib(kvp->st.bytes[SPILL_TIER_HBM]), mib(kvp->st.bytes[SPILL_TIER_HOST]),
            (unsigned long long)kvp->st.blocks_in_use, (unsigned long long)kvp->st.blocks_peak,
            (unsigned long long)kvp->st.shared, (unsigned long long)kvp->st.cow_copies,
            mib(xs.read[SPILL_TIER_HBM]), mib(xs.read[SPILL_TIER_HOST]), mib(xs.prefetched),
            xs.wait_s * 1e3, spill_mem_backend_name(mem),
            strcmp(model.plan.policy, model.plan.chosen) ? model.plan.chosen : model.plan.policy);
    if (o.env.stats) spill_mem_print_stats(mem, stderr);
    rc = 0;
out:
    if (rc && err.msg[0]) fprintf(stderr, "spill-generate: %s\n", err.msg);
    free(toks);
    free(text);
    free(prompt_buf);
    if (have_sampler) spill_sampler_free(&smp);
    if (have_state) spill_state_free(&st);
    if (have_cuda) spill_cu_state_free(&cs);
    if (have_model) spill_model_free(&model);
    spill_pool_free(pool);
    spill_mem_free(mem);
    return rc;
}
