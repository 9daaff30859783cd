/* The engine (see engine.h): memory, model, plan, threads and one device, opened in that order and
 * freed in the reverse. */
#include "engine.h"

#include <math.h>
#include <strings.h>
#include <unistd.h>

#include "device.h"
#include "platform.h"
#include "spill_platform.h"
#include "spill_topology.h"

struct spill_engine {
    const spill_device_iface *dev_iface;
    spill_device dev;
    char device[8];
    spill_mem *mem;
    int own_mem;
    spill_model model;
    spill_profile profile;
    spill_region *regions;
    int n_regions;
    spill_plan plan;
    spill_pool *pool;
    int n_ctx, batch, threads;
    uint64_t hbm_budget;
    int *seq_buf, *pos_buf; /* (batch) for spill_engine_forward's one-sequence step */
    uint8_t *no_out;        /* (batch) zeros: a prompt chunk that keeps no logits (spill_engine_prefill) */
    int n_out;              /* outputs the last step kept */
};

spill_engine_params spill_engine_defaults(void) {
    spill_engine_params p;
    memset(&p, 0, sizeof p);
    p.device = "auto";
    p.backend = "auto";
    p.use_mmap = 1;
    p.hbm_reserve = 1ull << 30;
    p.cuda_graphs = 1;
    p.host_node = -1;
    return p;
}

static double mib(uint64_t b) { return (double)b / (1 << 20); }

/* What the device needs of the memory, said by capability. */
static int check_caps(const spill_engine *e, spill_err *err) {
    unsigned caps = spill_mem_caps(e->mem), need;
    const char *why;
    if (e->dev_iface == &spill_cuda_device) {
        need = SPILL_MEM_GPU_READS_HOST | SPILL_MEM_CPU_READS_HBM;
        why = "the GPU reads weights left in host memory, and the CPU writes the KV cache the GPU reads";
    } else {
        need = caps & SPILL_MEM_HBM ? SPILL_MEM_CPU_READS_HBM : 0;
        why = "the forward pass runs on the CPU and reads whatever the plan puts in HBM";
    }
    if ((caps & need) == need) return 0;
    char have[128], want[128];
    spill_mem_caps_str(caps, have, sizeof have);
    spill_mem_caps_str(need, want, sizeof want);
    return spill_err_set(err, "--device %s needs memory with %s (%s); the '%s' backend has %s%s", e->device, want, why,
                         spill_mem_backend_name(e->mem), have,
                         e->dev_iface == &spill_cuda_device ? "; use --backend cuda-managed (or system)" : "; use --backend host");
}

/* Bytes the arena adds on top of a plan's HBM bytes: each HBM block of weights (one per advice), the
 * KV cache's blocks and the ring round up to whole 2 MiB chunks. */
static uint64_t plan_slack(const spill_plan *plan, int n_layers) {
    unsigned seen[SPILL_PLACED_BLOCKS];
    int n_seen = 0, kv = 0;
    for (int r = 0; r < plan->n; r++) {
        const spill_region_plan *rp = &plan->region[r];
        if (!rp->hbm_bytes || rp->streamed) continue;
        if (r >= spill_region_kv(n_layers, 0) && r < spill_region_kv(n_layers, n_layers)) {
            kv = 1;
            continue;
        }
        int k = 0;
        while (k < n_seen && seen[k] != rp->advice) k++;
        if (k == n_seen && n_seen < SPILL_PLACED_BLOCKS) seen[n_seen++] = rp->advice;
    }
    return (uint64_t)(n_seen + kv + (plan->ring_slots > 0)) * SPILL_ARENA_GRAIN;
}

/* The plan for the budget left once the device's work buffers and the arena's rounding are taken. */
static int make_plan(spill_engine *e, const spill_engine_params *p, spill_err *err) {
    const spill_placer_iface *placer = e->dev_iface->placer;
    if (spill_model_regions(&e->model, spill_placer_bytes, placer, e->n_ctx, 1, p->kv_type, &e->regions, &e->n_regions,
                            err))
        return -1;
    uint64_t budget = e->hbm_budget;
    if (budget) {
        int n_seqs = p->n_seqs > 0 ? p->n_seqs : 1;
        uint64_t w = placer->work_bytes(&e->model.hp, e->n_ctx, e->batch, n_seqs, p->kv_block);
        if (w >= budget)
            return spill_err_set(err, "an HBM budget of %.1f MiB does not hold the %s's work buffers (%.1f MiB for a "
                                      "context of %d, batches of %d and %d sequences); raise --hbm-budget or lower "
                                      "-c/--ctx-size, -b/--batch-size or the sequences (--parallel, --n-parallel)",
                                 mib(budget), placer->device, mib(w), e->n_ctx, e->batch, n_seqs);
        budget -= w;
    }
    /* the host limit: what the plan may put in host memory. When the engine's own allocator enforces the
       limit, its arena rounds the host allocations the plan does not count (work buffers, the KV cache's
       blocks, the disk ring) up to 2 MiB chunks: keep four of them aside */
    uint64_t host = p->host_limit;
    if (host && e->own_mem) {
        uint64_t aside = 4 * SPILL_ARENA_GRAIN;
        if (host <= aside + SPILL_ARENA_GRAIN)
            return spill_err_set(err, "--host-limit: the limit is %llu bytes (%.1f MiB), and the allocator's rounding alone "
                                      "takes %.0f MiB of it; give at least %.0f MiB", (unsigned long long)host, mib(host),
                                 mib(aside), mib(aside + 2 * SPILL_ARENA_GRAIN));
        host -= aside;
    }
    spill_plan_params pp = {p->policy, {budget, host}, p->use_mmap, &e->profile, {0, 1, NULL, 1}};
    if (spill_plan_make(e->regions, e->n_regions, &pp, &e->plan, err)) return -1;
    /* the budget limits what alloc/ really holds, and its arena rounds to 2 MiB chunks per placement:
       plan again with that slack taken off, so that carrying the plan out stays within the budget */
    uint64_t slack = plan_slack(&e->plan, e->model.hp.n_layers), taken = 0;
    /* planning again with less may split a region and so add a block of another advice: repeat until
       the slack taken covers the plan's blocks (a few rounds at most: there are few distinct advices) */
    for (int round = 0; budget && slack > taken && round < 8; round++) {
        spill_plan_free(&e->plan);
        /* nothing left after the rounding: the plan puts nothing in HBM, or says what it needs */
        pp.budget[SPILL_TIER_HBM] = budget > slack ? budget - slack : 0;
        if (spill_plan_make(e->regions, e->n_regions, &pp, &e->plan, err)) {
            size_t l = strlen(err->msg);
            snprintf(err->msg + l, sizeof err->msg - l, " (%.1f MiB of the budget go to 2 MiB chunk rounding)", mib(slack));
            return -1;
        }
        taken = slack;
        uint64_t again = plan_slack(&e->plan, e->model.hp.n_layers);
        if (again > slack) slack = again;
    }
    return 0;
}

/* The device and what it defaults to: the GPU's are read from the driver. */
static int choose_device(spill_engine *e, spill_engine_params *p, int *read_mapped, spill_err *err) {
    const char *d = p->device && *p->device ? p->device : "auto";
    if (!strcasecmp(d, "auto") || !strcasecmp(d, "cpu")) { /* auto: the CPU until the GPU path has run on a GPU */
        e->dev_iface = &spill_cpu_device;
        snprintf(e->device, sizeof e->device, "cpu");
        if (!p->policy) p->policy = "host";
        return 0;
    }
    if (strcasecmp(d, "cuda")) return spill_err_set(err, "--device '%s' is not one of auto, cpu, cuda", d);
    e->dev_iface = &spill_cuda_device;
    snprintf(e->device, sizeof e->device, "cuda");
    spill_gpu_info gpu;
    spill_err gerr;
    if (!e->dev_iface->placer)
        return spill_err_set(err, "--device cuda: this build of spill has no CUDA support; run on the CPU with --device cpu");
    if (spill_gpu_query(0, &gpu, &gerr)) {
        /* no driver or no device (spill_gpu_count fails too): the platform's message points to --device cpu */
        int n_gpus;
        spill_err cerr;
        int none = spill_gpu_count(&n_gpus, &cerr) != 0;
        return spill_err_set(err, "--device cuda: %s%s", gerr.msg, none ? "" : "; run on the CPU with --device cpu");
    }
    if (!p->policy) p->policy = "pin"; /* a GPU run fills HBM */
    if (!p->profile && spill_profile_named("auto", &e->profile, NULL, 0, err)) return -1; /* from the attributes */
    if (!p->hbm_budget) p->hbm_budget = gpu.free_mem > p->hbm_reserve ? gpu.free_mem - p->hbm_reserve : 0;
    /* on Grace (ATS) the GPU reads the mapped file where the plan leaves weights in host memory */
    *read_mapped = gpu.uses_host_page_tables > 0 && p->use_mmap;
    return 0;
}

static int open_mem(spill_engine *e, const spill_engine_params *p, spill_err *err) {
    if (p->mem) {
        e->mem = p->mem;
        return 0;
    }
    const char *backend = p->backend && *p->backend ? p->backend : "auto";
    /* on the CPU, "auto" is host memory; a plan with HBM in it runs with host memory standing in */
    spill_mem_config mc = {0};
    if (!strcasecmp(backend, "auto") && e->dev_iface == &spill_cpu_device) {
        int emulate = strcasecmp(p->policy, "host") != 0;
        backend = emulate ? "emulated" : "host";
        mc.why = emulate ? "auto: the forward pass runs on the CPU; host memory stands in for HBM"
                         : "auto: the forward pass runs on the CPU";
    }
    mc.backend = backend;
    mc.limit[SPILL_TIER_HBM] = p->hbm_budget;
    mc.limit[SPILL_TIER_HOST] = p->host_limit;
    mc.log_path = p->alloc_log;
    if (!(e->mem = spill_mem_open(&mc, err))) return -1;
    e->own_mem = 1;
    return 0;
}

int spill_engine_open(const spill_engine_params *given, spill_engine **out, spill_err *err) {
    *out = NULL;
    spill_engine_params p = *given;
    spill_engine *e = calloc(1, sizeof *e);
    if (!e) return spill_err_set(err, "out of memory");
    double t0 = spill_now();
    int read_mapped = 0;
    if (!p.model || !*p.model) {
        spill_err_set(err, "no model given");
        goto fail;
    }
    if (p.profile) e->profile = *p.profile;
    else if (spill_profile_builtin("cpu", &e->profile, err)) goto fail;
    if (choose_device(e, &p, &read_mapped, err) || open_mem(e, &p, err) || check_caps(e, err)) goto fail;
    e->hbm_budget = p.hbm_budget;
    e->batch = p.batch > 0 ? p.batch : 64;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    if (p.host_node < -1) {
        spill_err_set(err, "--host-node %d: a NUMA node's number, or -1 for the system's choice", p.host_node);
        goto fail;
    }
    if (p.host_node >= 0) { /* before the model's pages are read, so that they land on that node too */
        int node_cpus, bound;
        if (spill_numa_bind(p.host_node, "--host-node", &node_cpus, &bound, err)) goto fail;
        ncpu = node_cpus;
        if (!p.quiet && bound)
            fprintf(stderr, "spill: threads and host memory on NUMA node %d (%d CPUs)\n", p.host_node, node_cpus);
        else if (!p.quiet)
            fprintf(stderr, "spill: --host-node 0: no NUMA policy for this process; nothing bound\n");
    }
    e->threads = p.threads > 0 ? p.threads : ncpu > 0 ? (int)ncpu : 1;
    if (!p.quiet) fprintf(stderr, "spill: loading %s\n", p.model);
    if (spill_model_load_with(&e->model, p.model, p.tokenizer_pre, err)) goto fail;
    const spill_hparams *hp = &e->model.hp;
    e->n_ctx = p.ctx ? p.ctx : (hp->ctx_train < 4096 ? hp->ctx_train : 4096);
    if (e->n_ctx < 1 || e->n_ctx > hp->ctx_train) {
        spill_err_set(err, "--ctx-size %d: this model allows 1..%d tokens", e->n_ctx, hp->ctx_train);
        goto fail;
    }
    if (hp->sliding_window && e->n_ctx > hp->sliding_window) {
        spill_err_set(err, "%s: this model attends through a sliding window of %d tokens, which spill does not implement "
                           "yet; use -c/--ctx-size %d or less", p.model, hp->sliding_window, hp->sliding_window);
        goto fail;
    }
    if (!spill_kv_type_bytes(p.kv_type)) {
        spill_err_set(err, "--kv-type: type %d (%s) is not one of f32|f16|bf16", (int)p.kv_type, spill_dtype_name(p.kv_type));
        goto fail;
    }
    if (make_plan(e, &p, err)) goto fail;
    if (!(e->pool = spill_pool_create(e->threads))) {
        spill_err_set(err, "cannot start %d threads", e->threads);
        goto fail;
    }
    e->threads = spill_pool_size(e->pool); /* fewer where the system refused some */
    e->seq_buf = malloc(sizeof(int) * (size_t)e->batch);
    e->pos_buf = malloc(sizeof(int) * (size_t)e->batch);
    e->no_out = calloc((size_t)e->batch, 1);
    if (!e->seq_buf || !e->pos_buf || !e->no_out) {
        spill_err_set(err, "out of memory");
        goto fail;
    }
    spill_disk_mode disk_mode;
    if (spill_disk_mode_parse(p.disk_io && *p.disk_io ? p.disk_io : NULL, &disk_mode, err)) goto fail;
    /* the mmap comparison hands the mapped file's pages to the computation and drops them when the host
       is done with a layer: a GPU would read pageable file pages (no ATS: an illegal address), or lose
       them while its kernels still run */
    if (disk_mode == SPILL_DISK_MMAP && e->plan.disk_slots > 0 && e->dev_iface == &spill_cuda_device) {
        spill_err_set(err, "--disk-io mmap reads layers through the file's mapping, which the GPU cannot be handed; "
                           "with --device cuda the disk tier reads with uring (O_DIRECT into pinned slots)");
        goto fail;
    }
    /* the ring's copies come from the streamed layers' homes in host memory; from pageable memory the
       GPU stages each copy and the host waits for it, so the ring could not run beside the layers */
    if (e->plan.ring_slots > 0 && e->dev_iface == &spill_cuda_device && (spill_mem_caps(e->mem) & SPILL_MEM_HOST_PAGEABLE)) {
        spill_err_set(err, "--policy %s streams layers through a ring of %d HBM slots, but the '%s' backend's host "
                           "memory is pageable: each copy from it is staged and synchronous, so the ring cannot "
                           "overlap the layers; use --backend cuda-managed, or --policy pin (reads in place)",
                      e->plan.chosen, e->plan.ring_slots, spill_mem_backend_name(e->mem));
        goto fail;
    }
    spill_device_params dp = {&e->model, e->regions, &e->plan, e->mem, e->pool, e->n_ctx, e->batch,
                              p.n_seqs > 0 ? p.n_seqs : 1, p.kv_block, p.kv_blocks, read_mapped, disk_mode, p.trace,
                              p.trace_ctx, p.cuda_graphs, p.kv_type};
    if (p.trace && e->dev_iface != &spill_cpu_device) {
        spill_err_set(err, "tracing intermediate tensors runs on the CPU only (--device cpu)");
        goto fail;
    }
    int rc = e->dev_iface == &spill_cpu_device ? spill_cpu_open(&dp, &e->dev, err) : spill_cuda_open(&dp, &e->dev, err);
    if (rc) {
        if (e->dev_iface == &spill_cuda_device) {
            /* what to try next: a smaller budget leaves more in host memory; the CPU always works */
            size_t l = strlen(err->msg);
            snprintf(err->msg + l, sizeof err->msg - l, "; with a smaller --hbm-budget (now %.0f MiB) more of the model "
                     "stays in host memory, or run with --device cpu", mib(e->hbm_budget));
        }
        goto fail;
    }
    if (!p.quiet) {
        spill_engine_stats st;
        spill_engine_get_stats(e, &st);
        const spill_plan *plan = &e->plan;
        int chose = strcmp(plan->policy, plan->chosen) != 0;
        fprintf(stderr, "spill: loaded %s: %d layers, dim %d, %d heads (%d kv), vocab %d, %.2f MiB of weights in %.2f s "
                        "(%s, policy %s%s%s, %s)\n",
                p.model, hp->n_layers, hp->dim, hp->n_heads, hp->n_kv_heads, hp->vocab,
                mib(st.weights[SPILL_TIER_HBM] + st.weights[SPILL_TIER_HOST]), spill_now() - t0, e->device, plan->policy,
                chose ? " -> " : "", chose ? plan->chosen : "",
                p.use_mmap ? "weights in host memory read from the file where they lie" : "weights copied");
    }
    *out = e;
    return 0;
fail:
    spill_engine_free(e);
    return -1;
}

void spill_engine_free(spill_engine *e) {
    if (!e) return;
    if (e->dev.iface) e->dev.iface->free(e->dev.ctx);
    spill_pool_free(e->pool);
    spill_plan_free(&e->plan);
    spill_regions_free(e->regions);
    spill_model_free(&e->model);
    if (e->own_mem) spill_mem_free(e->mem);
    free(e->seq_buf);
    free(e->pos_buf);
    free(e->no_out);
    free(e);
}

/* What every device may take for granted about a batch. */
static int check_batch(spill_engine *e, const spill_batch *b, spill_err *err) {
    if (b->n < 1 || b->n > e->batch) return spill_err_set(err, "forward: batch of %d tokens; 1..%d allowed", b->n, e->batch);
    spill_kv *kv = spill_engine_kv(e);
    int vocab = e->model.hp.vocab;
    for (int t = 0; t < b->n; t++)
        if (b->pos[t] >= e->n_ctx)
            return spill_err_set(err, "the context is full: sequence %d would need position %d but the context holds %d "
                                      "(raise -c/--ctx-size)", b->seq[t], b->pos[t], e->n_ctx);
    for (int t = 0; t < b->n; t++) {
        if (b->token[t] < 0 || b->token[t] >= vocab)
            return spill_err_set(err, "token id %d is outside the vocabulary of %d", b->token[t], vocab);
        int s = b->seq[t];
        if (spill_kv_len(kv, s) < 0) return spill_err_set(err, "sequence %d is not open (the cache holds 0..%d)", s, kv->max_seqs - 1);
        if (t > 0 && s == b->seq[t - 1]) {
            if (b->pos[t] != b->pos[t - 1] + 1)
                return spill_err_set(err, "forward: sequence %d's tokens must be at consecutive positions (%d after %d)", s,
                                     b->pos[t], b->pos[t - 1]);
            continue;
        }
        /* the first token of a sequence's run: no other run of it in this batch, no gap after what it holds */
        for (int u = 0; u < t; u++)
            if (b->seq[u] == s) return spill_err_set(err, "forward: sequence %d appears twice in one batch", s);
        if (b->pos[t] < 0 || b->pos[t] > spill_kv_len(kv, s))
            return spill_err_set(err, "forward: sequence %d holds %d positions; a step cannot start at %d", s,
                                 spill_kv_len(kv, s), b->pos[t]);
    }
    return 0;
}

int spill_engine_step(spill_engine *e, const spill_batch *b, spill_err *err) {
    e->n_out = 0;
    /* a model file truncated under the mapping would be a SIGBUS in the forward pass: an error instead */
    if (spill_model_check_files(&e->model, err) || check_batch(e, b, err) || e->dev.iface->forward(e->dev.ctx, b, err))
        return -1;
    for (int t = 0; t < b->n; t++) e->n_out += b->out ? b->out[t] != 0 : t == b->n - 1;
    /* head_rows: the other logits -inf, whatever rows the device computed (the GPU computes them all) */
    int V = e->model.hp.vocab;
    if (b->head_rows > 0 && b->head_rows < V)
        for (int i = 0; i < e->n_out; i++) {
            float *row = e->dev.iface->logits(e->dev.ctx, i);
            for (int v = b->head_rows; v < V; v++) row[v] = -INFINITY;
        }
    return 0;
}

int spill_engine_forward(spill_engine *e, int seq, const int *tokens, int n, int pos, spill_err *err) {
    if (n < 1 || n > e->batch) return spill_err_set(err, "forward: batch of %d tokens; 1..%d allowed", n, e->batch);
    for (int t = 0; t < n; t++) e->seq_buf[t] = seq, e->pos_buf[t] = pos + t;
    spill_batch b = {n, tokens, e->seq_buf, e->pos_buf, NULL, NULL, 0};
    return spill_engine_step(e, &b, err);
}

int spill_engine_prefill(spill_engine *e, int seq, const int *tokens, int n, int pos, volatile const sig_atomic_t *stop,
                         spill_err *err) {
    if (n < 1) return spill_err_set(err, "prefill: %d tokens; at least 1 needed", n);
    for (int i = 0; i < n; i += e->batch) {
        if (stop && *stop) return 0;
        int nb = n - i < e->batch ? n - i : e->batch;
        for (int t = 0; t < nb; t++) e->seq_buf[t] = seq, e->pos_buf[t] = pos + i + t;
        /* only the last token's logits are wanted: the chunks before it skip the output matmul */
        spill_batch b = {nb, tokens + i, e->seq_buf, e->pos_buf, i + nb < n ? e->no_out : NULL, NULL, 0};
        if (spill_engine_step(e, &b, err)) return -1;
    }
    return 0;
}

float *spill_engine_logits(spill_engine *e) { return e->dev.iface->logits(e->dev.ctx, e->n_out > 0 ? e->n_out - 1 : 0); }
float *spill_engine_logits_at(spill_engine *e, int i) {
    SPILL_ASSERT(i >= 0 && i < e->n_out);
    return e->dev.iface->logits(e->dev.ctx, i);
}
int spill_engine_n_outputs(const spill_engine *e) { return e->n_out; }
spill_pool *spill_engine_pool(spill_engine *e) { return e->pool; }
spill_kv *spill_engine_kv(spill_engine *e) { return e->dev.iface->kv(e->dev.ctx); }
void spill_engine_get_stats(const spill_engine *e, spill_engine_stats *out) { e->dev.iface->stats(e->dev.ctx, out); }
const spill_model *spill_engine_model(const spill_engine *e) { return &e->model; }
const spill_plan *spill_engine_plan(const spill_engine *e) { return &e->plan; }
const spill_region *spill_engine_regions(const spill_engine *e, int *n) {
    if (n) *n = e->n_regions;
    return e->regions;
}
const spill_profile *spill_engine_profile(const spill_engine *e) { return &e->profile; }
spill_mem *spill_engine_mem(spill_engine *e) { return e->mem; }
int spill_engine_ctx(const spill_engine *e) { return e->n_ctx; }
int spill_engine_batch(const spill_engine *e) { return e->batch; }
int spill_engine_threads(const spill_engine *e) { return e->threads; }
uint64_t spill_engine_hbm_budget(const spill_engine *e) { return e->hbm_budget; }
const char *spill_engine_device(const spill_engine *e) { return e->device; }
