/* spill-bench: measure the tiers and the placements.
 *
 *   spill-bench tiers [--size 256M] [--reps 5] [--profile-out F.json] [--json | --csv]
 *   spill-bench placement (-m MODEL.gguf | --synthetic SPEC) [--budgets 25%,50%,75%,100%]
 *       [--policies fault,pin,stream,auto] [--device cpu] [--prompt-tokens 512] [--gen-tokens 128]
 *       [-t THREADS] [--profile-file F] [--json | --csv] [--plot F.svg]
 *
 * Speeds are measured here; predictions (the cost model's) are printed next to them and labelled.
 * Long runs report progress on stderr; Ctrl-C stops and prints what was measured so far. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "disk.h"
#include "engine.h"
#include "spill_alloc.h"
#include "spill_cuda_bench.h"
#include "spec.h"
#include "spill_json.h"
#include "spill_file.h"
#include "spill_platform.h"
#include "spill_topology.h"
#include "synthetic.h"

static volatile sig_atomic_t stop;
static void on_sigint(int s) {
    (void)s;
    stop = 1;
}

static double gb(double b) { return b / 1e9; }
static double mib(double b) { return b / 1048576.0; }

typedef spill_bench_fmt fmt;

/* ---------------------------------------------------------------- tiers */

typedef struct read_job {
    const uint64_t *p;
    size_t n; /* words */
    uint64_t out[256];
} read_job;

static void read_worker(void *ctx, int ith, int nth) {
    read_job *j = ctx;
    size_t a = j->n * (size_t)ith / (size_t)nth, b = j->n * (size_t)(ith + 1) / (size_t)nth;
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    size_t i = a;
    for (; i + 4 <= b; i += 4) s0 ^= j->p[i], s1 ^= j->p[i + 1], s2 ^= j->p[i + 2], s3 ^= j->p[i + 3];
    for (; i < b; i++) s0 ^= j->p[i];
    if (ith < 256) j->out[ith] = s0 ^ s1 ^ s2 ^ s3;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void summarize(double *v, int n, spill_bw_result *r) {
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    r->med = v[n / 2];
    r->min = v[0];
    r->max = v[n - 1];
    r->ok = 1;
}

/* the CPU reading memory bound to one NUMA node, every thread streaming its share */
static int cpu_read(spill_mem *mem, spill_pool *pool, int node, size_t bytes, int reps, spill_bw_result *r,
                    spill_err *err) {
    snprintf(r->name, sizeof r->name, "cpu reads host node %d", node);
    spill_placement pl = {SPILL_TIER_HOST, node, SPILL_PLACE_CPU_READS};
    uint64_t *p = spill_mem_alloc(mem, bytes, pl, "bandwidth buffer", err);
    if (!p) return -1;
    for (size_t i = 0; i < bytes / 8; i++) p[i] = i * 0x9E3779B97F4A7C15ull;
    read_job j = {p, bytes / 8, {0}};
    double v[64];
    spill_pool_run(pool, read_worker, &j); /* warm */
    for (int k = 0; k < reps && !stop; k++) {
        double t0 = spill_now();
        spill_pool_run(pool, read_worker, &j);
        v[k] = (double)bytes / (spill_now() - t0);
    }
    summarize(v, reps, r);
    spill_mem_put(mem, p, bytes);
    return 0;
}

/* host memcpy as the emulated ring's prefetch does it (what a CPU-side "transfer" moves): the source
 * read once, in layer-sized pieces of 2 MiB, each copied into the next of 4 slots that are used over
 * and over (so the target stays in the caches, as the ring's slots do). One 256 MiB memcpy into a
 * fresh target, measured before, ran at 20 GB/s on the development VM where this runs at 30, and the
 * cost model charged every streamed step the slower rate (docs/results.md, 2026-12-05). */
enum { COPY_SLOT = 2 << 20, COPY_SLOTS = 4 };
static int cpu_copy(spill_mem *mem, size_t bytes, int reps, spill_bw_result *r, spill_err *err) {
    snprintf(r->name, sizeof r->name, "cpu copies host -> ring slots (memcpy, 2 MiB pieces)");
    bytes = bytes / COPY_SLOT * COPY_SLOT;
    if (bytes < COPY_SLOT) bytes = COPY_SLOT;
    size_t ring = (size_t)COPY_SLOT * COPY_SLOTS;
    uint8_t *a = spill_mem_alloc(mem, bytes, spill_placement_host(), "copy source", err);
    uint8_t *b = a ? spill_mem_alloc(mem, ring, spill_placement_host(), "copy slots", err) : NULL;
    if (!b) {
        if (a) spill_mem_put(mem, a, bytes);
        return -1;
    }
    memset(a, 1, bytes);
    memset(b, 2, ring);
    double v[64];
    for (int k = 0; k < reps && !stop; k++) {
        double t0 = spill_now();
        for (size_t off = 0, i = 0; off < bytes; off += COPY_SLOT, i++)
            memcpy(b + (i % COPY_SLOTS) * COPY_SLOT, a + off, COPY_SLOT);
        v[k] = (double)bytes / (spill_now() - t0);
    }
    summarize(v, reps, r);
    spill_mem_put(mem, a, bytes);
    spill_mem_put(mem, b, ring);
    return 0;
}

/* multiply-adds per second of the forward pass's own matmul for weights of type t at B tokens, over a
 * stack of `wbytes` or more of weights shaped as decode meets them: layers of a Llama whose widths are
 * stack_shape (hidden D, k/v rows KV, feed-forward FF; by default 1024, 256, 2816: q and o D x D, k and
 * v KV x D, gate and up FF x D, down D x FF), in the forward pass's four passes a layer (q, k, v in one,
 * o, gate and up in one, down: runtime/forward.c's matmuls), the activations quantized once before each
 * (the first layer's weights quantized, the others copies of it). A format whose blocks do not divide D
 * and FF (the K-quants' 256 values at SmolLM2's 576) is rated at the default widths. At one token the
 * median of 3 timed passes of at least `secs` / 3 each, after one untimed; at more, one pass of at least
 * `secs` after one untimed (compute-bound, steadier, and slow for the K-quants); 0 when out of memory.
 * A single 8 MiB matrix, what this measured before, sat largely in the L3 cache and had none of a
 * step's smaller matrices and hand-offs: the cost model built on it predicted SmolLM2's 4- and 8-bit
 * decode 16-41% fast (docs/results.md); the 1024-wide stack in seven passes a layer still put SmolLM2's
 * 576-wide 4-bit decode 12-15% fast (docs/results.md, eighth session). */
enum { STACK_MATS = 7, STACK_GROUPS = 4 };
static const int stack_default[3] = SPILL_BENCH_STACK_DEFAULT;
/* the widths type t is rated at: shape, or the default where t's blocks do not divide D and FF */
static void stack_dims(spill_dtype t, const int shape[3], int d[3]) {
    uint32_t bv = spill_dtype_block_values(t);
    int fits = bv <= 1 || (shape[0] % (int)bv == 0 && shape[2] % (int)bv == 0);
    memcpy(d, fits ? shape : stack_default, sizeof stack_default);
}
static double cpu_macs(spill_pool *pool, spill_dtype t, const int stack_shape[3], size_t wbytes, int B, double secs) {
    int dims[3];
    stack_dims(t, stack_shape, dims);
    const int D = dims[0], KV = dims[1], FF = dims[2];
    const int shape[STACK_MATS][2] = {{D, D}, {KV, D}, {KV, D}, {D, D}, {FF, D}, {FF, D}, {D, FF}};
    /* the passes: matrices [first, first + count) share their activations */
    static const int group[STACK_GROUPS][2] = {{0, 3}, {3, 1}, {4, 2}, {6, 1}};
    uint64_t layer = 0;
    for (int m = 0; m < STACK_MATS; m++) layer += spill_dtype_row_bytes(t, (uint64_t)shape[m][1]) * (uint64_t)shape[m][0];
    int L = (int)((wbytes + layer - 1) / layer), n = L * STACK_MATS, wide = D > FF ? D : FF, rmax = wide > KV ? wide : KV;
    uint8_t **w = calloc((size_t)n, sizeof *w);
    uint8_t *act = malloc(spill_act_bytes(t, wide) * (uint64_t)B);
    float *x = malloc(sizeof(float) * (size_t)wide), *out = malloc(sizeof(float) * (size_t)rmax * 3 * (size_t)B);
    double f = 0, macs = 0;
    int ok = w && act && x && out;
    for (int i = 0; i < n && ok; i++) {
        int R = shape[i % STACK_MATS][0], C = shape[i % STACK_MATS][1];
        uint64_t rb = spill_dtype_row_bytes(t, (uint64_t)C);
        ok = (w[i] = malloc(rb * (uint64_t)R)) != NULL;
        if (ok && i >= STACK_MATS) memcpy(w[i], w[i % STACK_MATS], rb * (uint64_t)R);
        for (int r = 0; r < R && ok && i < STACK_MATS; r++) {
            if (r >= 64) { /* 64 rows quantized (the K-quants' reference quantizer is slow), then repeated */
                memcpy(w[i] + (uint64_t)r * rb, w[i] + (uint64_t)(r % 64) * rb, rb);
                continue;
            }
            for (int c = 0; c < C; c++) x[c] = (float)((r * 31 + c + i) % 17) * 0.01f - 0.08f;
            spill_quantize_row_ref(t, x, w[i] + (uint64_t)r * rb, C);
        }
        macs += (double)R * C * B;
    }
    if (ok) {
        double v[3] = {0, 0, 0};
        int timed = B > 1 ? 1 : 3;
        for (int k = -1; k < timed && !stop; k++) { /* a first pass untimed: the pages touched, the threads awake */
            double t0 = spill_now(), done = 0;
            do {
                for (int l = 0; l < L; l++) {
                    for (int g = 0; g < STACK_GROUPS; g++) {
                        int m0 = group[g][0], cnt = group[g][1], C = shape[m0][1];
                        uint64_t ab = spill_act_bytes(t, C);
                        for (int b = 0; b < B; b++) spill_act_quantize(t, x, act + (uint64_t)b * ab, C);
                        spill_matmul_part p[3];
                        for (int m = 0; m < cnt; m++) {
                            int R = shape[m0 + m][0];
                            float *o = out + (size_t)m * (size_t)rmax * (size_t)B;
                            p[m] = (spill_matmul_part){o, R, w[l * STACK_MATS + m0 + m], R};
                        }
                        spill_matmul_parts(pool, p, cnt, t, C, act, B);
                    }
                }
                done += macs;
            } while (k >= 0 && spill_now() - t0 < secs / timed);
            if (k >= 0) v[k] = done / (spill_now() - t0);
        }
        if (!stop && timed == 1) f = v[0];
        if (!stop && timed == 3) { /* the median of 3 */
            qsort(v, 3, sizeof *v, cmp_d);
            f = v[1];
        }
    }
    for (int i = 0; w && i < n; i++) free(w[i]);
    free(w), free(x), free(out), free(act);
    return f;
}

/* FLOP/s of the CPU in the forward pass's own matmul (Q8_0 weights, a batch of 32 tokens: the prefill
   case, where compute rather than memory sets the pace) */
static double cpu_flops(spill_pool *pool) { return 2.0 * cpu_macs(pool, SPILL_DT_Q8_0, stack_default, 1u << 20, 32, 0.3); }

/* The rate per weight format at 1 token (over --size bytes of layers, the bandwidth measurements' size:
   at the default 256 MiB, read from memory as decode reads them; a --size within the caches measures
   cached weights) and at SPILL_CPU_RATE_BATCH (over about 8 MiB: compute sets that pace): what the
   cost model charges a region of that format on the CPU (spill_profile.cpu_rate) */
static const spill_dtype rate_types[] = {SPILL_DT_F32, SPILL_DT_F16, SPILL_DT_BF16, SPILL_DT_Q8_0,
                                         SPILL_DT_Q4_0, SPILL_DT_Q4_1, SPILL_DT_Q4_K, SPILL_DT_Q6_K};
enum { N_RATE_TYPES = (int)(sizeof rate_types / sizeof *rate_types) };

typedef struct tiers_result {
    spill_bw_result r[SPILL_TOPO_MAX_NODES + SPILL_GPU_BW_MAX + 3];
    int n;
    double cpu_flops;
    double rate_one[N_RATE_TYPES], rate_batch[N_RATE_TYPES]; /* MAC/s, 0: not measured */
    size_t stack_bytes;                                      /* the one-token rate's weights */
    int stack[N_RATE_TYPES][3];                              /* the widths each format was rated at */
    spill_topology topo;
    char gpu_note[1100];
} tiers_result;

/* The disk: sequential reads as the disk tier makes them, of `file`, or of a temporary file of `bytes`
 * written (and synced) first in $TMPDIR (default /var/tmp: on disk where /tmp may be tmpfs). */
static int disk_read(const char *file, size_t bytes, int reps, spill_bw_result *r, int quiet, spill_err *err) {
    char tmp[4096] = "";
    if (!file) {
        const char *dir = getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/var/tmp";
        snprintf(tmp, sizeof tmp, "%s/spill-bench-disk-XXXXXX", dir);
        int fd = mkstemp(tmp);
        if (fd < 0) return spill_err_set(err, "a temporary file in %s for the disk measurement: %s (set TMPDIR, or "
                                              "--disk-file F)", dir, strerror(errno));
        if (!quiet) fprintf(stderr, "spill-bench: writing %.0f MiB to %s for the disk measurement\n", mib((double)bytes), tmp);
        uint8_t *b = malloc(1 << 20);
        int bad = !b;
        for (size_t o = 0; o < bytes && !bad; o += 1 << 20) {
            size_t n = bytes - o < (1u << 20) ? bytes - o : 1u << 20;
            for (size_t i = 0; i < n; i++) b[i] = (uint8_t)(i * 2654435761u >> 13 ^ o);
            bad = write(fd, b, n) != (ssize_t)n;
        }
        bad = bad || fsync(fd);
        int e = errno;
        free(b);
        close(fd);
        if (bad) {
            unlink(tmp);
            return spill_err_set(err, "writing %s for the disk measurement: %s", tmp, strerror(e));
        }
        file = tmp;
    }
    if (!quiet) fprintf(stderr, "spill-bench: disk reading %s (%d x)\n", file, reps);
    double v[64];
    int direct = 0;
    int rc = spill_disk_bench(file, bytes, reps, v, &direct, err);
    if (tmp[0]) unlink(tmp);
    if (rc) return -1;
    snprintf(r->name, sizeof r->name, "disk reads (%s, 1 MiB x 64 queued)", direct ? "O_DIRECT" : "page cache dropped");
    snprintf(r->note, sizeof r->note, "%s", file == tmp ? "a temporary file" : file);
    summarize(v, reps, r);
    return 0;
}

static const char *disk_file; /* --disk-file (cli.h) */

/* stack: the one-token rates' weights (cpu_macs); shape: their layers' widths (D, KV, FF); want: which of rate_types
   to rate (NULL: all) */
static int run_tiers(size_t bytes, size_t stack, const int shape[3], const int *want, int reps, int threads,
                     tiers_result *t, int quiet, spill_err *err) {
    memset(t, 0, sizeof *t);
    if (spill_topology_read(&t->topo, err)) return -1;
    spill_mem *mem = spill_mem_create("host", err);
    if (!mem) return -1;
    spill_pool *pool = spill_pool_create(threads);
    if (!pool) {
        spill_mem_free(mem);
        return spill_err_set(err, "cannot start %d threads", threads);
    }
    int rc = 0;
    for (int i = 0; i < t->topo.n_nodes && !stop && !rc; i++) {
        if (t->topo.node[i].gpu >= 0) continue; /* a GPU's memory node is measured from the GPU */
        if (!quiet) fprintf(stderr, "spill-bench: cpu reading node %d (%.0f MiB x %d)\n", t->topo.node[i].id, mib((double)bytes), reps);
        rc = cpu_read(mem, pool, t->topo.numa_available ? t->topo.node[i].id : -1, bytes, reps, &t->r[t->n], err);
        if (!rc) t->n++;
    }
    if (!rc && !stop) {
        if (!quiet) fprintf(stderr, "spill-bench: cpu memcpy\n");
        rc = cpu_copy(mem, bytes, reps, &t->r[t->n], err);
        if (!rc) t->n++;
    }
    if (!rc && !stop) t->cpu_flops = cpu_flops(pool);
    t->stack_bytes = stack;
    for (int i = 0; i < N_RATE_TYPES && !rc && !stop; i++) {
        if (want && !want[i]) continue;
        if (!quiet) fprintf(stderr, "spill-bench: cpu matmul %s at 1 and %d tokens\n", spill_dtype_name(rate_types[i]),
                            SPILL_CPU_RATE_BATCH);
        stack_dims(rate_types[i], shape, t->stack[i]);
        t->rate_one[i] = cpu_macs(pool, rate_types[i], shape, stack, 1, 0.25);
        t->rate_batch[i] = cpu_macs(pool, rate_types[i], shape, 8u << 20, SPILL_CPU_RATE_BATCH, 0.25);
    }
    if (!rc && !stop) {
        rc = disk_read(disk_file, bytes, reps, &t->r[t->n], quiet, err);
        if (!rc) t->n++;
    }
    spill_pool_free(pool);
    spill_mem_free(mem);
    if (rc) return -1;
    if (t->topo.n_gpus && !stop) {
        int n = 0;
        spill_err gerr;
        if (!quiet) fprintf(stderr, "spill-bench: GPU tiers on device 0\n");
        if (spill_cuda_bench_tiers(0, bytes, reps, &t->r[t->n], &n, &gerr))
            snprintf(t->gpu_note, sizeof t->gpu_note, "%s", gerr.msg);
        t->n += n;
    } else if (!t->topo.n_gpus) {
        snprintf(t->gpu_note, sizeof t->gpu_note, "%s", t->topo.gpu_note);
    }
    return 0;
}

static const spill_bw_result *find(const tiers_result *t, const char *prefix) {
    for (int i = 0; i < t->n; i++)
        if (t->r[i].ok && !strncmp(t->r[i].name, prefix, strlen(prefix))) return &t->r[i];
    return NULL;
}

/* A profile from what was measured: the cost model's view of this machine. */
static void tiers_profile(const tiers_result *t, spill_profile *p) {
    spill_err err;
    spill_profile_builtin("cpu", p, &err);
    char host[64] = "this machine";
    gethostname(host, sizeof host);
    host[sizeof host - 1] = 0;
    snprintf(p->name, sizeof p->name, "measured-%.40s", host);
    time_t now = time(NULL);
    char date[32];
    strftime(date, sizeof date, "%Y-%m-%d", gmtime(&now));
    snprintf(p->source, sizeof p->source, "spill-bench tiers on %.40s, %s", host, date);
    uint64_t host_cap = 0;
    double cpu_bw = 0;
    for (int i = 0; i < t->topo.n_nodes; i++)
        if (t->topo.node[i].gpu < 0) host_cap += t->topo.node[i].total;
    for (int i = 0; i < t->n; i++)
        if (t->r[i].ok && !strncmp(t->r[i].name, "cpu reads host", 14) && t->r[i].med > cpu_bw) cpu_bw = t->r[i].med;
    const spill_bw_result *cp = find(t, "cpu copies");
    p->capacity[SPILL_TIER_HOST] = host_cap;
    p->read_bw[SPILL_TIER_HOST][SPILL_PROC_CPU] = cpu_bw;
    p->flops[SPILL_PROC_CPU] = t->cpu_flops;
    p->n_cpu_rates = 0;
    for (int i = 0; i < N_RATE_TYPES && p->n_cpu_rates < SPILL_CPU_RATE_FORMATS; i++)
        if (t->rate_one[i] > 0 && t->rate_batch[i] > 0) {
            struct spill_cpu_rate *c = &p->cpu_rate[p->n_cpu_rates++];
            snprintf(c->format, sizeof c->format, "%s", spill_dtype_name(rate_types[i]));
            c->one = t->rate_one[i];
            c->batch = t->rate_batch[i];
        }
    const spill_bw_result *disk = find(t, "disk reads");
    if (disk) p->disk_bw = disk->med;
    const spill_bw_result *hbm = find(t, "gpu reads hbm");
    if (!hbm || !t->topo.n_gpus) {
        /* no GPU: HBM, when a plan asks for it, is emulated in host memory and reads at host speed */
        p->has_gpu = 0;
        p->read_bw[SPILL_TIER_HBM][SPILL_PROC_CPU] = cpu_bw;
        p->read_bw[SPILL_TIER_HBM][SPILL_PROC_GPU] = cpu_bw;
        p->read_bw[SPILL_TIER_HOST][SPILL_PROC_GPU] = cpu_bw;
        p->link_h2d = p->link_d2h = cp ? cp->med : cpu_bw;
        p->fault_bw = p->link_h2d / 4;
        return;
    }
    const spill_topo_gpu *g = &t->topo.gpu[0];
    p->has_gpu = 1;
    p->capacity[SPILL_TIER_HBM] = g->info.total_mem;
    p->read_bw[SPILL_TIER_HBM][SPILL_PROC_GPU] = hbm->med;
    const spill_bw_result *inplace = find(t, "gpu reads host (managed");
    if (!inplace) inplace = find(t, "gpu reads host (mapped");
    p->read_bw[SPILL_TIER_HOST][SPILL_PROC_GPU] = inplace ? inplace->med : 0;
    const spill_bw_result *d2h = find(t, "prefetch device -> host");
    const spill_bw_result *h2d = find(t, "copy host -> device");
    p->link_h2d = h2d ? h2d->med : 0;
    p->link_d2h = d2h ? d2h->med : p->link_h2d;
    p->read_bw[SPILL_TIER_HBM][SPILL_PROC_CPU] = p->link_d2h;
    const spill_bw_result *pf = find(t, "prefetch host -> device");
    p->fault_bw = (pf ? pf->med : p->link_h2d) / 4; /* an assumption: faults reach a quarter of prefetch */
    /* GPU FLOPs are not measured yet (tiers has no GEMM): Hopper's BF16 dense peak x 0.7, else 100 TFLOP/s */
    p->flops[SPILL_PROC_GPU] = g->info.cc_major == 9 ? 0.7 * 989e12 : 100e12;
}

static void print_tiers(const tiers_result *t, fmt f, FILE *o) {
    if (f == SPILL_BENCH_JSON) {
        fprintf(o, "{\"measurements\": [");
        for (int i = 0; i < t->n; i++) {
            fprintf(o, "%s\n  {\"name\": ", i ? "," : "");
            spill_json_write_str(o, t->r[i].name);
            if (t->r[i].ok)
                fprintf(o, ", \"median_bytes_per_s\": %.6g, \"min\": %.6g, \"max\": %.6g}", t->r[i].med, t->r[i].min, t->r[i].max);
            else {
                fprintf(o, ", \"measured\": false, \"note\": ");
                spill_json_write_str(o, t->r[i].note);
                fprintf(o, "}");
            }
        }
        fprintf(o, "\n], \"cpu_flops\": %.6g, \"cpu_rates\": {", t->cpu_flops);
        for (int i = 0, k = 0; i < N_RATE_TYPES; i++)
            if (t->rate_one[i] > 0)
                fprintf(o, "%s\"%s\": {\"one\": %.6g, \"batch\": %.6g, \"layer_widths\": [%d, %d, %d]}", k++ ? ", " : "",
                        spill_dtype_name(rate_types[i]), t->rate_one[i], t->rate_batch[i], t->stack[i][0], t->stack[i][1],
                        t->stack[i][2]);
        fprintf(o, "}, \"gpu_note\": ");
        spill_json_write_str(o, t->gpu_note);
        fprintf(o, "}\n");
        return;
    }
    if (f == SPILL_BENCH_CSV) {
        fprintf(o, "name,median_GBps,min_GBps,max_GBps,note\n");
        for (int i = 0; i < t->n; i++)
            fprintf(o, "\"%s\",%.3f,%.3f,%.3f,\"%s\"\n", t->r[i].name, gb(t->r[i].med), gb(t->r[i].min), gb(t->r[i].max),
                    t->r[i].note);
        return;
    }
    fprintf(o, "| measurement | median GB/s | min | max | note |\n|---|---:|---:|---:|---|\n");
    for (int i = 0; i < t->n; i++) {
        if (t->r[i].ok)
            fprintf(o, "| %s | %.2f | %.2f | %.2f | %s |\n", t->r[i].name, gb(t->r[i].med), gb(t->r[i].min), gb(t->r[i].max),
                    t->r[i].note);
        else
            fprintf(o, "| %s | - | - | - | not measured: %s |\n", t->r[i].name, t->r[i].note);
    }
    fprintf(o, "| cpu matmul (Q8_0, 32 tokens) | %.1f GFLOP/s | | | |\n", t->cpu_flops / 1e9);
    for (int i = 0; i < N_RATE_TYPES; i++)
        if (t->rate_one[i] > 0)
            fprintf(o, "| cpu matmul %s, layers %d,%d,%d wide | %.2f GMAC/s at 1 token (%.0f MiB) | | | %.2f GMAC/s at %d "
                       "tokens |\n", spill_dtype_name(rate_types[i]), t->stack[i][0], t->stack[i][1], t->stack[i][2],
                    t->rate_one[i] / 1e9, mib((double)t->stack_bytes), t->rate_batch[i] / 1e9, SPILL_CPU_RATE_BATCH);
    if (t->gpu_note[0]) fprintf(o, "\nGPU: %s\n", t->gpu_note);
}

/* ---------------------------------------------------------------- placement */

typedef struct row {
    char policy[32], chosen[32];
    double budget_frac;
    uint64_t budget;
    int ok;
    char error[1024];
    double prefill_tok_s, decode_tok_s;
    double w_hbm, w_host, kv_hbm, kv_host;
    double read_hbm_tok, read_host_tok; /* bytes read per decoded token */
    double prefetched, wait_ms;
    double bound_tok_s, pred_decode, pred_prefill;
    uint64_t tokens_hash;   /* the greedy tokens decoded, hashed: equal runs decode the same text */
    double disk_tok;        /* bytes read from disk per decoded token (the disk tier) */
    double storage_tok;     /* bytes the kernel fetched from storage for this process per decoded token
                               (/proc/self/io read_bytes; -1: unknown): what the page-cache path reads */
    double disk_bw_now;     /* the disk tier: the model file read with O_DIRECT just before and after the row */
    int disk_layers, disk_direct;
    char host_limit[32], disk_io[16];
    /* --draft-skip: decode with the self-speculative draft on the same engine */
    double draft_tok_s, accept, tau, pred_draft;
} row;

typedef struct place_opts {
    spill_bench_opts cli; /* the command line (cli.h) */
    int n_layers, vocab;
    uint8_t *skip; /* --draft-skip, resolved once */
} place_opts;

static int tok_of(int i, int vocab) { return 3 + (int)(((uint64_t)i * 7919u) % (uint64_t)(vocab > 4 ? vocab - 3 : 1)); }

/* The prompt: this text (repeated) as the model's tokenizer reads it, so that a draft is measured on
 * text and not on noise; made-up ids when the model has no usable tokenizer (a synthetic one). */
static const char bench_text[] =
    "The history of the printing press begins in the fifteenth century, when Johannes Gutenberg combined "
    "movable metal type, oil-based ink and a wooden screw press. Books became cheaper, and ideas travelled "
    "faster than ever before. Within fifty years, presses were running in more than two hundred cities "
    "across Europe, and the number of books in circulation grew from thousands to millions. ";

static void bench_prompt(const spill_model *m, int *toks, int n) {
    spill_err err = {{0}};
    int *t = NULL, nt = 0;
    if (m->tok.n_vocab > 0 && !spill_tokenize(&m->tok, bench_text, sizeof bench_text - 1, 0, 0, &t, &nt, &err) && nt > 0) {
        for (int i = 0; i < n; i++) toks[i] = t[i % nt];
    } else {
        for (int i = 0; i < n; i++) toks[i] = tok_of(i, m->hp.vocab);
    }
    free(t);
}

static int argmax(const float *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

/* The bound (the weight bytes one decode step reads, each at the bandwidth of where it is read from:
 * bh from HBM, bc from host memory) and the cost model's predictions for the plan that ran. */
static void finish_row(row *r, const spill_engine *e, const spill_profile *prof, const place_opts *po, double bh,
                       double bc) {
    int prompt = po->cli.prompt;
    double tmin = (bh > 0 ? r->read_hbm_tok / bh : 0) + (bc > 0 ? r->read_host_tok / bc : 0);
    r->bound_tok_s = tmin > 0 ? 1.0 / tmin : 0;
    spill_phase dec = {0, 1, NULL, 1}, pre = {1, prompt, NULL, 1};
    const spill_region *regions = spill_engine_regions(e, NULL);
    r->pred_decode = spill_cost_predict(regions, spill_engine_plan(e), prof, dec).tok_s;
    r->pred_prefill = spill_cost_predict(regions, spill_engine_plan(e), prof, pre).tok_s;
    if (po->skip) {
        int V = spill_engine_model(e)->hp.vocab, dv = po->cli.draft_vocab;
        double share = dv > 0 && dv < V ? (double)dv / V : 1;
        r->pred_draft = spill_cost_spec_tok_s(regions, spill_engine_plan(e), prof, po->skip, share, po->cli.draft_k, r->tau);
    }
    r->ok = 1;
}

/* The measurement of one point, on either engine: po->cli.prompt made-up tokens in batches of 64 (spill_engine_prefill), then
 * po->cli.gen greedy tokens; speeds, bytes as placed, and weight bytes read per decode step into r. */
/* The bytes the kernel has fetched from storage for this process (/proc/self/io read_bytes: page-cache
 * misses and direct reads alike); -1 where the kernel does not say. */
static double storage_read_bytes(void) {
    FILE *f = fopen("/proc/self/io", "r");
    if (!f) return -1;
    char line[128];
    double v = -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "read_bytes:", 11)) {
            v = strtod(line + 11, NULL);
            break;
        }
    fclose(f);
    return v;
}

static int measure(spill_engine *e, const place_opts *po, row *r, spill_err *err) {
    int vocab = spill_engine_model(e)->hp.vocab;
    int *toks = malloc(sizeof(int) * (size_t)po->cli.prompt), n_dec = 0, rc = -1;
    if (!toks) {
        spill_err_set(err, "out of memory");
        return -1;
    }
    bench_prompt(spill_engine_model(e), toks, po->cli.prompt);
    /* one untimed step first (its KV row is rewritten by the prompt): one-time costs - the GPU's module
     * loading and cuBLAS workspaces, first touches of fresh memory - are not prefill speed (on an H200
     * the first row of a sweep measured 4438 prefill tok/s, the same plan in the third row 19074) */
    if (spill_engine_forward(e, 0, toks, 1, 0, err)) goto out;
    double t0 = spill_now();
    if (spill_engine_prefill(e, 0, toks, po->cli.prompt, 0, &stop, err)) goto out;
    double t1 = spill_now(), io0 = storage_read_bytes();
    spill_engine_stats x0, x1;
    spill_engine_get_stats(e, &x0);
    int next = argmax(spill_engine_logits(e), vocab);
    r->tokens_hash = 1469598103934665603ull;
    for (int i = 0; i < po->cli.gen && !stop; i++) {
        r->tokens_hash = (r->tokens_hash ^ (uint64_t)next) * 1099511628211ull;
        if (spill_engine_forward(e, 0, &next, 1, po->cli.prompt + i, err)) goto out;
        next = argmax(spill_engine_logits(e), vocab);
        n_dec++;
    }
    double t2 = spill_now(), io1 = storage_read_bytes();
    if (stop) {
        spill_err_set(err, "interrupted before this point was measured");
        goto out;
    }
    r->storage_tok = n_dec && io0 >= 0 && io1 >= io0 ? (io1 - io0) / n_dec : -1;
    spill_engine_get_stats(e, &x1);
    r->prefill_tok_s = po->cli.prompt / (t1 - t0);
    r->decode_tok_s = n_dec ? n_dec / (t2 - t1) : 0;
    r->w_hbm = (double)x1.weights[SPILL_TIER_HBM];
    r->w_host = (double)x1.weights[SPILL_TIER_HOST];
    r->kv_hbm = (double)x1.kv.bytes[SPILL_TIER_HBM];
    r->kv_host = (double)x1.kv.bytes[SPILL_TIER_HOST];
    if (n_dec) {
        r->read_hbm_tok = (double)(x1.read[SPILL_TIER_HBM] - x0.read[SPILL_TIER_HBM]) / n_dec;
        r->read_host_tok = (double)(x1.read[SPILL_TIER_HOST] - x0.read[SPILL_TIER_HOST]) / n_dec;
        r->disk_tok = (double)(x1.disk_read - x0.disk_read) / n_dec;
    }
    r->disk_layers = x1.disk_layers;
    r->disk_direct = x1.disk_direct;
    r->prefetched = (double)x1.prefetched;
    r->wait_ms = x1.wait_s * 1e3;
    rc = 0;
out:
    free(toks);
    return rc;
}

/* The same decode with the draft (--draft-skip): the prompt but its last token, then rounds of
 * po->cli.draft_k proposals checked by one step, until po->cli.gen tokens. */
static int measure_draft(spill_engine *e, const place_opts *po, row *r, spill_err *err) {
    int vocab = spill_engine_model(e)->hp.vocab, rc = -1;
    int *toks = malloc(sizeof(int) * (size_t)po->cli.prompt), *buf = malloc(sizeof(int) * (size_t)(po->cli.draft_k + 1));
    spill_sampler smp;
    spill_spec sp;
    memset(&sp, 0, sizeof sp);
    if (!toks || !buf || spill_sampler_init(&smp, vocab, 0, 0, 1, 1, err)) {
        if (!err->msg[0]) spill_err_set(err, "out of memory");
        free(toks);
        free(buf);
        return -1;
    }
    bench_prompt(spill_engine_model(e), toks, po->cli.prompt);
    if (spill_kv_truncate(spill_engine_kv(e), 0, 0, err) || spill_spec_init(&sp, e, 0, po->skip, po->cli.draft_k, po->cli.draft_vocab, err)) goto out;
    if (po->cli.prompt > 1 && spill_engine_prefill(e, 0, toks, po->cli.prompt - 1, 0, &stop, err)) goto out;
    int last = toks[po->cli.prompt - 1], pos = po->cli.prompt - 1, got = 0;
    double t0 = spill_now();
    while (got < po->cli.gen && !stop) {
        int n = spill_spec_round(&sp, &smp, last, pos, buf, err);
        if (n < 0) goto out;
        got += n;
        last = buf[n - 1];
        pos += n;
    }
    double t1 = spill_now();
    if (stop) {
        spill_err_set(err, "interrupted before this point was measured");
        goto out;
    }
    r->draft_tok_s = got / (t1 - t0);
    r->accept = sp.st.drafted ? (double)sp.st.accepted / (double)sp.st.drafted : 0;
    r->tau = sp.st.rounds ? (double)sp.st.produced / (double)sp.st.rounds : 0;
    rc = 0;
out:
    spill_spec_free(&sp);
    spill_sampler_free(&smp);
    free(toks);
    free(buf);
    return rc;
}

/* One (budget, policy) point, measured on either device: the model loaded and the plan carried out
 * for this point's budget, then prefill and decode. On the CPU, HBM is emulated in host memory. */
static void run_point(const place_opts *po, const char *model, const spill_profile *plan_prof, const spill_profile *prof,
                      double cpu_bw, row *r) {
    spill_err err = {{0}};
    spill_engine_params p = spill_engine_defaults();
    p.model = model;
    p.device = po->cli.cuda ? "cuda" : "cpu";
    p.backend = po->cli.cuda ? "cuda-managed" : strcasecmp(r->policy, "host") ? "emulated" : "host";
    p.policy = r->policy;
    p.profile = plan_prof;
    p.hbm_budget = r->budget;
    p.ctx = po->cli.prompt + po->cli.gen;
    p.batch = 64;
    p.threads = po->cli.threads;
    p.quiet = 1;
    spill_engine *e = NULL;
    if (po->skip) p.ctx += po->cli.draft_k + 1; /* the last round may verify past the plain run's end */
    if (spill_engine_open(&p, &e, &err) || (snprintf(r->chosen, sizeof r->chosen, "%s", spill_engine_plan(e)->chosen),
                                            measure(e, po, r, &err)) ||
        (po->skip && measure_draft(e, po, r, &err))) {
        snprintf(r->error, sizeof r->error, "%s", err.msg[0] ? err.msg : "out of memory");
    } else if (po->cli.cuda) {
        finish_row(r, e, prof, po, prof->read_bw[SPILL_TIER_HBM][SPILL_PROC_GPU],
                   prof->read_bw[SPILL_TIER_HOST][SPILL_PROC_GPU]);
    } else {
        /* the CPU reads every tier at the CPU's bandwidth unless the profile is a GPU's */
        finish_row(r, e, prof, po, prof->has_gpu ? prof->read_bw[SPILL_TIER_HBM][SPILL_PROC_GPU] : cpu_bw,
                   prof->has_gpu ? prof->read_bw[SPILL_TIER_HOST][SPILL_PROC_GPU] : cpu_bw);
    }
    spill_engine_free(e);
}

static void print_rows(const row *rows, int n, fmt f, const place_opts *po, const char *model,
                       const spill_profile *plan_prof, const spill_profile *prof, FILE *o) {
    if (f == SPILL_BENCH_JSON) {
        fprintf(o, "{\"model\": ");
        spill_json_write_str(o, model);
        fprintf(o, ", \"profile\": ");
        spill_json_write_str(o, prof->name);
        fprintf(o, ", \"plans_made_for\": ");
        spill_json_write_str(o, plan_prof->name);
        fprintf(o, ", \"prompt_tokens\": %d, \"gen_tokens\": %d, \"threads\": %d, \"predictions_are\": \"cost-model "
                   "predictions, not measurements\", \"results\": [", po->cli.prompt, po->cli.gen, po->cli.threads);
        for (int i = 0; i < n; i++) {
            const row *r = &rows[i];
            fprintf(o, "%s\n  {\"policy\": \"%s\", \"budget_fraction\": %.4f, \"budget_bytes\": %llu", i ? "," : "",
                    r->policy, r->budget_frac, (unsigned long long)r->budget);
            if (!r->ok) {
                fprintf(o, ", \"error\": ");
                spill_json_write_str(o, r->error);
                fprintf(o, "}");
                continue;
            }
            fprintf(o, ", \"chosen\": \"%s\", \"prefill_tok_s\": %.4f, \"decode_tok_s\": %.4f, \"weights_hbm\": %.0f, "
                       "\"weights_host\": %.0f, \"kv_hbm\": %.0f, \"kv_host\": %.0f, \"read_hbm_per_token\": %.0f, "
                       "\"read_host_per_token\": %.0f, \"prefetched\": %.0f, \"prefetch_wait_ms\": %.3f, "
                       "\"bound_decode_tok_s\": %.4f, \"percent_of_bound\": %.2f, \"predicted_decode_tok_s\": %.4f, "
                       "\"predicted_prefill_tok_s\": %.4f",
                    r->chosen, r->prefill_tok_s, r->decode_tok_s, r->w_hbm, r->w_host, r->kv_hbm, r->kv_host, r->read_hbm_tok,
                    r->read_host_tok, r->prefetched, r->wait_ms, r->bound_tok_s,
                    r->bound_tok_s > 0 ? 100 * r->decode_tok_s / r->bound_tok_s : 0, r->pred_decode, r->pred_prefill);
            if (po->skip)
                fprintf(o, ", \"draft\": {\"decode_tok_s\": %.4f, \"acceptance\": %.4f, \"tokens_per_round\": %.4f, "
                           "\"speedup\": %.4f, \"predicted_decode_tok_s\": %.4f, \"predicted_speedup\": %.4f}",
                        r->draft_tok_s, r->accept, r->tau, r->decode_tok_s > 0 ? r->draft_tok_s / r->decode_tok_s : 0,
                        r->pred_draft, r->pred_decode > 0 ? r->pred_draft / r->pred_decode : 0);
            fprintf(o, "}");
        }
        fprintf(o, "\n]}\n");
        return;
    }
    if (f == SPILL_BENCH_CSV) {
        fprintf(o, "policy,chosen,budget_fraction,budget_bytes,prefill_tok_s,decode_tok_s,weights_hbm,weights_host,"
                   "read_hbm_per_token,read_host_per_token,prefetch_wait_ms,bound_decode_tok_s,percent_of_bound,"
                   "predicted_decode_tok_s,predicted_prefill_tok_s,error\n");
        for (int i = 0; i < n; i++) {
            const row *r = &rows[i];
            fprintf(o, "%s,%s,%.4f,%llu,%.4f,%.4f,%.0f,%.0f,%.0f,%.0f,%.3f,%.4f,%.2f,%.4f,%.4f,\"%s\"\n", r->policy,
                    r->chosen, r->budget_frac, (unsigned long long)r->budget, r->prefill_tok_s, r->decode_tok_s, r->w_hbm,
                    r->w_host, r->read_hbm_tok, r->read_host_tok, r->wait_ms, r->bound_tok_s,
                    r->bound_tok_s > 0 ? 100 * r->decode_tok_s / r->bound_tok_s : 0, r->pred_decode, r->pred_prefill,
                    r->error);
        }
        return;
    }
    fprintf(o, "| budget | policy | chooses | prefill tok/s | decode tok/s | HBM MiB (w+kv) | host MiB (w+kv) | read/token "
               "hbm MiB | host MiB | prefetch wait ms | bound tok/s | %% of bound | predicted decode | predicted prefill |\n");
    fprintf(o, "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (int i = 0; i < n; i++) {
        const row *r = &rows[i];
        char b[32];
        snprintf(b, sizeof b, "%.0f%% (%.0f MiB)", 100 * r->budget_frac, mib((double)r->budget));
        if (!r->ok) {
            fprintf(o, "| %s | %s | error: %s |||||||||||\n", b, r->policy, r->error);
            continue;
        }
        fprintf(o, "| %s | %s | %s | %.1f | %.2f | %.1f | %.1f | %.2f | %.2f | %.1f | %.2f | %.0f%% | %.2f | %.1f |\n", b,
                r->policy, r->chosen, r->prefill_tok_s, r->decode_tok_s, mib(r->w_hbm + r->kv_hbm), mib(r->w_host + r->kv_host),
                mib(r->read_hbm_tok), mib(r->read_host_tok), r->wait_ms, r->bound_tok_s,
                r->bound_tok_s > 0 ? 100 * r->decode_tok_s / r->bound_tok_s : 0, r->pred_decode, r->pred_prefill);
    }
    if (po->skip) {
        int ns = 0;
        char list[512] = "";
        for (int l = 0; l < po->n_layers; l++)
            if (po->skip[l] && ns++ < 64) snprintf(list + strlen(list), sizeof list - strlen(list), "%s%d", ns > 1 ? "," : "", l);
        char vocab_note[96] = "";
        if (po->cli.draft_vocab > 0 && po->cli.draft_vocab < po->vocab) snprintf(vocab_note, sizeof vocab_note, ", proposing tokens 0..%d only", po->cli.draft_vocab - 1);
        fprintf(o, "\nSelf-speculative decoding: the draft skips %d of %d layers (%s)%s, %d proposals per round; greedy, so the "
                   "tokens are plain decoding's.\n\n", ns, po->n_layers, list, vocab_note, po->cli.draft_k);
        fprintf(o, "| budget | policy | decode tok/s | with draft tok/s | proposals kept | tokens/round | speedup | "
                   "predicted speedup | predicted with draft tok/s |\n|---:|---|---:|---:|---:|---:|---:|---:|---:|\n");
        for (int i = 0; i < n; i++) {
            const row *r = &rows[i];
            if (!r->ok) continue;
            fprintf(o, "| %.0f%% (%.0f MiB) | %s | %.2f | %.2f | %.0f%% | %.2f | %.2fx | %.2fx | %.2f |\n", 100 * r->budget_frac,
                    mib((double)r->budget), r->policy, r->decode_tok_s, r->draft_tok_s, 100 * r->accept, r->tau,
                    r->decode_tok_s > 0 ? r->draft_tok_s / r->decode_tok_s : 0, r->pred_decode > 0 ? r->pred_draft / r->pred_decode : 0,
                    r->pred_draft);
        }
    }
    fprintf(o, "\nmodel %s, %d prompt tokens, %d generated, %d threads; plans made for %s; bound and predictions for %s "
               "(predictions are the cost model's, not measurements)\n", model, po->cli.prompt, po->cli.gen, po->cli.threads,
            plan_prof->name, prof->name);
}

/* decode tok/s against budget, one line per policy, the bound dashed: SVG written directly */
static int write_svg(const char *path, const row *rows, int n, spill_err *err) {
    spill_file_out out; /* whole or not at all: a full disk leaves no half plot */
    if (spill_file_begin(&out, path, "--plot", err)) return -1;
    FILE *f = out.f;
    const double W = 720, H = 440, L = 70, R = 170, T = 40, B = 60;
    double ymax = 0, xmax = 0;
    for (int i = 0; i < n; i++)
        if (rows[i].ok) {
            if (rows[i].decode_tok_s > ymax) ymax = rows[i].decode_tok_s;
            if (rows[i].bound_tok_s > ymax) ymax = rows[i].bound_tok_s;
            if (rows[i].budget_frac > xmax) xmax = rows[i].budget_frac;
        }
    if (ymax <= 0) ymax = 1;
    if (xmax <= 0) xmax = 1;
    ymax *= 1.1;
#define X(v) (L + (v) / xmax * (W - L - R))
#define Y(v) (H - B - (v) / ymax * (H - T - B))
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" font-family=\"sans-serif\" "
               "font-size=\"12\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n", W, H);
    fprintf(f, "<text x=\"%.0f\" y=\"22\" font-size=\"14\">decode tok/s vs HBM budget (measured; bound dashed)</text>\n", L);
    fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"black\"/>\n", L, H - B, W - R, H - B);
    fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"black\"/>\n", L, T, L, H - B);
    for (int k = 0; k <= 4; k++) {
        double yv = ymax * k / 4, xv = xmax * k / 4;
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%.3g</text>\n", L - 6, Y(yv) + 4, yv);
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", L, Y(yv), W - R, Y(yv));
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%.0f%%</text>\n", X(xv), H - B + 18, 100 * xv);
    }
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">HBM budget (share of weights + KV cache)</text>\n",
            (L + W - R) / 2, H - 18);
    static const char *colors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"};
    char seen[8][32];
    int ns = 0;
    for (int i = 0; i < n; i++) {
        int k = 0;
        while (k < ns && strcmp(seen[k], rows[i].policy)) k++;
        if (k == ns && ns < 8) snprintf(seen[ns++], sizeof seen[0], "%.31s", rows[i].policy);
    }
    for (int k = 0; k < ns; k++) {
        const char *c = colors[k % 6];
        fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", c);
        for (int i = 0; i < n; i++)
            if (rows[i].ok && !strcmp(rows[i].policy, seen[k])) fprintf(f, "%.1f,%.1f ", X(rows[i].budget_frac), Y(rows[i].decode_tok_s));
        fprintf(f, "\"/>\n");
        for (int i = 0; i < n; i++)
            if (rows[i].ok && !strcmp(rows[i].policy, seen[k]))
                fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n", X(rows[i].budget_frac), Y(rows[i].decode_tok_s), c);
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"2\"/>"
                   "<text x=\"%.1f\" y=\"%.1f\">%s</text>\n",
                W - R + 12, T + 16 + 18.0 * k, W - R + 36, T + 16 + 18.0 * k, c, W - R + 42, T + 20 + 18.0 * k, seen[k]);
    }
    /* the bound: the best any policy's reads allow at each budget */
    fprintf(f, "<polyline fill=\"none\" stroke=\"black\" stroke-dasharray=\"6,4\" points=\"");
    for (int i = 0; i < n; i++) {
        if (!rows[i].ok) continue;
        double best = 0;
        int first = 1;
        for (int j = 0; j < n; j++)
            if (rows[j].ok && rows[j].budget_frac == rows[i].budget_frac) {
                if (rows[j].bound_tok_s > best) best = rows[j].bound_tok_s;
                if (j < i) first = 0;
            }
        if (first) fprintf(f, "%.1f,%.1f ", X(rows[i].budget_frac), Y(best));
    }
    fprintf(f, "\"/>\n<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"black\" stroke-dasharray=\"6,4\"/>"
               "<text x=\"%.1f\" y=\"%.1f\">bound</text>\n</svg>\n",
            W - R + 12, T + 16 + 18.0 * ns, W - R + 36, T + 16 + 18.0 * ns, W - R + 42, T + 20 + 18.0 * ns);
#undef X
#undef Y
    return spill_file_commit(&out, err);
}

static void synth_progress(uint64_t done, uint64_t total) {
    static double last;
    double now = spill_now();
    if (now - last < 1 && done < total) return;
    last = now;
    fprintf(stderr, "\rspill-bench: writing the synthetic model: %.0f%% of %.1f GiB", 100.0 * (double)done / (double)total,
            (double)total / (1u << 30));
    if (done >= total) fputc('\n', stderr);
}

/* The model file's sequential O_DIRECT read rate now (up to 1 GiB of it, once); 0 when it cannot be read */
static void disk_rate_now(const char *model, double *bw) {
    spill_err err = {{0}};
    int direct = 0;
    double v[1] = {0};
    *bw = spill_disk_bench(model, 1ull << 30, 1, v, &direct, &err) ? 0 : v[0];
}

/* --disk-io pagecache: the comparison the disk tier is for, as a machine with no more memory than the
 * host limit has it. The whole model is mapped and read in place (no disk tier), in a child process
 * held to the limit by a memory cgroup, so the mapped file's pages compete for that memory with
 * everything else the process holds and the kernel's page cache decides what is read again. Needs a
 * memory cgroup this process may create: root, with cgroup v1's memory hierarchy or v2's memory
 * controller. */
static int put_text(const char *dir, const char *file, const char *text, spill_err *err) {
    char path[600];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    ssize_t n = fd < 0 ? -1 : write(fd, text, strlen(text));
    int e = errno;
    if (fd >= 0) close(fd);
    if (n != (ssize_t)strlen(text)) {
        spill_err_set(err, "--disk-io pagecache: cannot write '%s' to %s: %s", text, path, strerror(e));
        return -1;
    }
    return 0;
}

static int cgroup_make(uint64_t limit, char *dir, size_t dn, spill_err *err) {
    char v[32];
    snprintf(v, sizeof v, "%llu", (unsigned long long)limit);
    if (!access("/sys/fs/cgroup/memory/memory.limit_in_bytes", F_OK)) {
        snprintf(dir, dn, "/sys/fs/cgroup/memory/spill-bench-%d", (int)getpid());
    } else {
        /* v2: a child of this process's own cgroup ("0::/path" in /proc/self/cgroup) */
        char line[256] = "", own[256] = "";
        FILE *f = fopen("/proc/self/cgroup", "r");
        while (f && fgets(line, sizeof line, f))
            if (!strncmp(line, "0::", 3)) {
                snprintf(own, sizeof own, "%s", line + 3);
                own[strcspn(own, "\n")] = 0;
            }
        if (f) fclose(f);
        if (!own[0]) {
            spill_err_set(err, "--disk-io pagecache: no memory cgroup to use (neither cgroup v1's "
                               "/sys/fs/cgroup/memory nor a v2 entry in /proc/self/cgroup)");
            return -1;
        }
        snprintf(dir, dn, "/sys/fs/cgroup%s/spill-bench-%d", strcmp(own, "/") ? own : "", (int)getpid());
    }
    if (mkdir(dir, 0755) && errno != EEXIST) {
        spill_err_set(err, "--disk-io pagecache: cannot create the memory cgroup %s: %s (it needs root and a writable "
                           "cgroup hierarchy)", dir, strerror(errno));
        return -1;
    }
    char probe[600];
    snprintf(probe, sizeof probe, "%s/memory.limit_in_bytes", dir);
    const char *knob = !access(probe, F_OK) ? "memory.limit_in_bytes" : "memory.max";
    snprintf(probe, sizeof probe, "%s/%s", dir, knob);
    if (access(probe, F_OK)) {
        spill_err_set(err, "--disk-io pagecache: %s has no memory limit (the memory controller is not enabled in its "
                           "parent's cgroup.subtree_control)", dir);
        rmdir(dir);
        return -1;
    }
    if (put_text(dir, knob, v, err)) {
        rmdir(dir);
        return -1;
    }
    return 0;
}

/* The model's pages out of the page cache, so that the row starts with none of them in memory. */
static void drop_cached(const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    close(fd);
}

static void measure_pagecache(const spill_engine_params *p, const place_opts *po, uint64_t limit, row *r) {
    spill_err err = {{0}};
    char dir[512];
    const char *model = p->model;
    if (cgroup_make(limit, dir, sizeof dir, &err)) {
        snprintf(r->error, sizeof r->error, "%s", err.msg);
        return;
    }
    int fd[2];
    if (pipe(fd)) {
        snprintf(r->error, sizeof r->error, "--disk-io pagecache: pipe: %s", strerror(errno));
        rmdir(dir);
        return;
    }
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        close(fd[0]);
        row out = *r;
        char pidtext[32];
        snprintf(pidtext, sizeof pidtext, "%d", (int)getpid());
        spill_engine *e = NULL;
        int rc = put_text(dir, "cgroup.procs", pidtext, &err);
        if (!rc) {
            struct stat st;
            if (!stat(model, &st) && S_ISDIR(st.st_mode)) {
                spill_err_set(&err, "--disk-io pagecache: one model file (GGUF) only, not a directory");
                rc = -1;
            } else {
                drop_cached(model);
            }
        }
        if (!rc) rc = spill_engine_open(p, &e, &err) || measure(e, po, &out, &err);
        if (rc) {
            snprintf(out.error, sizeof out.error, "%s", err.msg);
        } else {
            out.ok = 1;
            out.disk_tok = out.storage_tok;
            out.disk_layers = 0;
            out.disk_direct = 0;
        }
        spill_engine_free(e);
        const char *b = (const char *)&out;
        size_t left = sizeof out;
        while (left) {
            ssize_t n = write(fd[1], b, left);
            if (n <= 0) break;
            b += n;
            left -= (size_t)n;
        }
        _exit(0);
    }
    close(fd[1]);
    row got;
    size_t have = 0;
    while (pid > 0 && have < sizeof got) {
        ssize_t n = read(fd[0], (char *)&got + have, sizeof got - have);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        have += (size_t)n;
    }
    close(fd[0]);
    int status = 0;
    while (pid > 0 && waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (pid < 0) {
        snprintf(r->error, sizeof r->error, "--disk-io pagecache: fork: %s", strerror(errno));
    } else if (have == sizeof got) {
        *r = got;
    } else if (WIFSIGNALED(status)) {
        snprintf(r->error, sizeof r->error,
                 "--disk-io pagecache: the run was killed by signal %d in a memory cgroup of %.1f MiB (what the "
                 "process itself holds does not fit that limit beside the page cache; raise it)", WTERMSIG(status),
                 mib((double)limit));
    } else {
        snprintf(r->error, sizeof r->error, "--disk-io pagecache: the run ended without a result (exit status %d)",
                 WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    }
    /* the cgroup goes once its last process has gone (v1 may need a moment to let go) */
    for (int i = 0; i < 50 && rmdir(dir) && errno == EBUSY; i++) usleep(20000);
}

/* where the plot goes must take a file now, not after the sweep; the lists were checked by the parser */
static int check_plot(const place_opts *po) {
    if (!po->cli.plot) return 0;
    spill_file_out out;
    spill_err err = {{0}};
    if (spill_file_begin(&out, po->cli.plot, "--plot", &err)) {
        fprintf(stderr, "spill-bench: %s\n", err.msg);
        return 2;
    }
    spill_file_abort(&out);
    return 0;
}

/* --host-limits: the disk tier. For each host limit (the first row: none, everything in memory) and
 * each --disk-io mode, the host policy with that limit: the layers past it are read from the model file
 * every step. The bound is the disk's measured rate over the bytes a token reads from it. */
static int run_disk_sweep(const place_opts *po, const char *model, const spill_profile *prof, double full) {
    row rows[64];
    int n = 0;
    char list[256];
    snprintf(list, sizeof list, "none,%s", po->cli.host_limits);
    char *sl = NULL;
    for (char *h = strtok_r(list, ",", &sl); h && n < 64 && !stop; h = strtok_r(NULL, ",", &sl)) {
        uint64_t limit = 0;
        if (strcmp(h, "none")) {
            if (spill_bench_parse_share(h, full, &limit, NULL)) {
                fprintf(stderr, "spill-bench: --host-limits: '%s' is neither a percentage nor a size\n", h);
                return 2;
            }
        }
        char modes[64];
        snprintf(modes, sizeof modes, "%s", limit ? po->cli.disk_io : "uring");
        char *sm = NULL;
        for (char *io = strtok_r(modes, ",", &sm); io && n < 64 && !stop; io = strtok_r(NULL, ",", &sm)) {
            row *r = &rows[n];
            memset(r, 0, sizeof *r);
            snprintf(r->policy, sizeof r->policy, "host");
            snprintf(r->host_limit, sizeof r->host_limit, "%.31s", h);
            snprintf(r->disk_io, sizeof r->disk_io, "%.15s", limit ? io : "-");
            r->budget = limit;
            r->budget_frac = limit ? (double)limit / full : 1;
            fprintf(stderr, "spill-bench: host limit %s (%.1f MiB), %s ...", h, mib((double)limit), limit ? io : "in memory");
            spill_err err = {{0}};
            spill_engine_params p = spill_engine_defaults();
            p.model = model;
            p.device = "cpu";
            p.policy = "host";
            p.profile = prof;
            p.host_limit = limit;
            p.disk_io = io;
            p.ctx = po->cli.prompt + po->cli.gen;
            p.batch = 64;
            p.threads = po->cli.threads;
            p.quiet = 1;
            spill_engine *e = NULL;
            /* a virtual or shared disk's rate moves from minute to minute (0.5 to 2.4 GB/s on the
               development VM): the bound of each row is the model file's own O_DIRECT read rate,
               measured just before and just after the row */
            double bw_before = 0, bw_after = 0;
            if (limit) disk_rate_now(model, &bw_before);
            if (limit && !strcasecmp(io, "pagecache")) {
                p.host_limit = 0; /* the whole model mapped: the memory cgroup holds the limit */
                p.disk_io = NULL;
                measure_pagecache(&p, po, limit, r);
            } else if (spill_engine_open(&p, &e, &err) || measure(e, po, r, &err)) {
                snprintf(r->error, sizeof r->error, "%s", err.msg);
            } else {
                r->pred_decode = spill_cost_predict(spill_engine_regions(e, NULL), spill_engine_plan(e), prof,
                                                    (spill_phase){0, 1, NULL, 1}).tok_s;
                r->ok = 1;
            }
            if (r->ok) {
                if (limit) disk_rate_now(model, &bw_after);
                r->disk_bw_now = bw_before > 0 && bw_after > 0 ? (bw_before + bw_after) / 2 : bw_before + bw_after;
                double bw = r->disk_bw_now > 0 ? r->disk_bw_now : prof->disk_bw;
                r->bound_tok_s = r->disk_tok > 0 && bw > 0 ? bw / r->disk_tok : 0;
                fprintf(stderr, " decode %.2f tok/s\n", r->decode_tok_s);
            } else {
                fprintf(stderr, " %s\n", r->error);
            }
            spill_engine_free(e);
            n++;
        }
    }
    FILE *o = stdout;
    if (po->cli.f == SPILL_BENCH_JSON) {
        fprintf(o, "{\"model\": ");
        spill_json_write_str(o, po->cli.synthetic ? po->cli.synthetic : model);
        fprintf(o, ", \"disk_bw\": %.6g, \"prompt_tokens\": %d, \"gen_tokens\": %d, \"threads\": %d, \"results\": [",
                prof->disk_bw, po->cli.prompt, po->cli.gen, po->cli.threads);
        for (int i = 0; i < n; i++) {
            const row *r = &rows[i];
            fprintf(o, "%s\n  {\"host_limit\": \"%s\", \"host_limit_bytes\": %llu, \"disk_io\": \"%s\"", i ? "," : "",
                    r->host_limit, (unsigned long long)r->budget, r->disk_io);
            if (!r->ok) {
                fprintf(o, ", \"error\": ");
                spill_json_write_str(o, r->error);
                fprintf(o, "}");
                continue;
            }
            fprintf(o, ", \"layers_on_disk\": %d, \"o_direct\": %s, \"disk_bytes_per_token\": %.0f, \"decode_tok_s\": %.4f, "
                       "\"disk_bw_measured\": %.6g, \"disk_bound_tok_s\": %.4f, \"percent_of_disk_bound\": %.2f, \"predicted_decode_tok_s\": %.4f, "
                       "\"same_tokens_as_in_memory\": %s}",
                    r->disk_layers, r->disk_direct ? "true" : "false", r->disk_tok, r->decode_tok_s, r->disk_bw_now, r->bound_tok_s,
                    r->bound_tok_s > 0 ? 100 * r->decode_tok_s / r->bound_tok_s : 0, r->pred_decode,
                    rows[0].ok && r->tokens_hash == rows[0].tokens_hash ? "true" : "false");
        }
        fprintf(o, "\n]}\n");
        return 0;
    }
    fprintf(o, "| host limit | reads | layers on disk | disk MiB/token | decode tok/s | disk GB/s then | disk bound tok/s | "
               "%% of bound | predicted tok/s | same tokens |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---|\n");
    for (int i = 0; i < n; i++) {
        const row *r = &rows[i];
        char lim[64];
        if (r->budget) snprintf(lim, sizeof lim, "%s (%.0f MiB)", r->host_limit, mib((double)r->budget));
        else snprintf(lim, sizeof lim, "none (in memory)");
        if (!r->ok) {
            fprintf(o, "| %s | %s | error: %s |||||||\n", lim, r->disk_io, r->error);
            continue;
        }
        char bound[32] = "-", pct[32] = "-", bwnow[32] = "-";
        if (r->disk_bw_now > 0) snprintf(bwnow, sizeof bwnow, "%.2f", r->disk_bw_now / 1e9);
        if (r->bound_tok_s > 0) {
            snprintf(bound, sizeof bound, "%.2f", r->bound_tok_s);
            snprintf(pct, sizeof pct, "%.0f%%", 100 * r->decode_tok_s / r->bound_tok_s);
        }
        int pc = !strcmp(r->disk_io, "pagecache");
        char layers[32] = "all mapped", disk[32] = "?", pred[32] = "-";
        if (!pc) snprintf(layers, sizeof layers, "%d", r->disk_layers);
        if (r->disk_tok >= 0) snprintf(disk, sizeof disk, "%.1f", mib(r->disk_tok));
        if (!pc) snprintf(pred, sizeof pred, "%.2f", r->pred_decode);
        fprintf(o, "| %s | %s | %s | %s | %.2f | %s | %s | %s | %s | %s |\n", lim,
                !r->budget ? "-" : !strcmp(r->disk_io, "mmap") ? "mmap, pages dropped" : pc ? "mmap, page cache held to the limit" : r->disk_direct ? "O_DIRECT + io_uring" : "io_uring, page cache",
                layers, disk, r->decode_tok_s, bwnow, bound, pct, pred,
                !rows[0].ok ? "?" : r->tokens_hash == rows[0].tokens_hash ? "yes" : "NO");
    }
    /* the disk tier against the page cache at each limit: the k-th uring row with the k-th pagecache row of
       the same limit (--disk-io may name each more than once) */
    for (int i = 0; i < n; i++) {
        if (strcmp(rows[i].disk_io, "uring")) continue;
        int k = 0;
        for (int j = 0; j < i; j++) k += rows[j].budget == rows[i].budget && !strcmp(rows[j].disk_io, "uring");
        for (int j = 0; j < n; j++) {
            if (rows[j].budget != rows[i].budget || strcmp(rows[j].disk_io, "pagecache") || k--) continue;
            if (rows[i].ok && rows[j].ok && rows[j].decode_tok_s > 0)
                fprintf(o, "\nat host limit %s: the disk tier (io_uring) decodes %.2fx as fast as the page cache held to the "
                           "same limit\n", rows[i].host_limit, rows[i].decode_tok_s / rows[j].decode_tok_s);
            break;
        }
    }
    fprintf(o, "\nmodel %s, %d prompt tokens, %d generated, %d threads; disk %.2f GB/s (%s); limits are fractions of weights + "
               "KV cache (%.1f MiB); the bound is the disk's rate over the bytes a token reads from it, the rate being the "
               "model file read with O_DIRECT just before and after each row (\"disk GB/s then\"); predictions are the "
               "cost model's, with the profile's disk rate; \"mmap, page cache held to the limit\" (--disk-io pagecache) maps "
               "the whole model in a process whose memory cgroup allows only the limit, its disk bytes the storage "
               "reads the kernel counted for it (/proc/self/io)\n", po->cli.synthetic ? po->cli.synthetic : model, po->cli.prompt, po->cli.gen, po->cli.threads, prof->disk_bw / 1e9,
            prof->source, mib(full));
    return 0;
}


/* the temporary --synthetic model and what a draft left beside it (its calibration) */
static void drop_synth(const char *path) {
    if (!path[0]) return;
    char cal[4200];
    spill_draft_path(path, cal, sizeof cal);
    remove(cal);
    remove(path);
}

static int run_placement(place_opts *po) {
    spill_err err = {{0}};
    char synth_path[256] = "";
    const char *model = po->cli.model;
    if (check_plot(po)) return 2;
    if (po->cli.synthetic) {
        spill_synth_spec s;
        if (spill_synth_parse(po->cli.synthetic, &s, &err)) {
            fprintf(stderr, "spill-bench: %s\n", err.msg);
            return 2;
        }
        uint64_t need = spill_synth_bytes(&s), avail = spill_host_available();
        const char *dir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
        snprintf(synth_path, sizeof synth_path, "%s/spill-synthetic-%d.gguf", dir, (int)getpid());
        fprintf(stderr, "spill-bench: synthetic %s: %d layers, %.2f GiB of weights, written to %s\n", s.name, s.n_layers,
                (double)need / (1u << 30), synth_path);
        if (avail && need > avail)
            fprintf(stderr, "spill-bench: note: the model (%.1f GiB) is larger than the memory available (%.1f GiB); it "
                            "will be read from the file\n", (double)need / (1u << 30), (double)avail / (1u << 30));
        if (spill_synth_write(&s, synth_path, 42, synth_progress, &err)) {
            fprintf(stderr, "spill-bench: %s\n", err.msg);
            return 1;
        }
        model = synth_path;
    }
    /* the machine: a profile file, or a quick measurement of this one */
    spill_profile prof;
    double cpu_bw = 0;
    if (po->cli.profile_file && spill_profile_load(po->cli.profile_file, &prof, &err)) {
        fprintf(stderr, "spill-bench: %s\n", err.msg);
        drop_synth(synth_path);
        return 2;
    }
    /* what 100% means: the model's weights plus its KV cache for this run (the file read before the
       machine is measured: a bad file is refused at once) */
    spill_gguf g;
    spill_shape sh;
    int opened = !spill_gguf_open(&g, model, &err);
    if (!opened || spill_shape_from_gguf(&g, &sh, &err)) {
        fprintf(stderr, "spill-bench: %s\n", err.msg);
        if (opened) spill_gguf_close(&g);
        drop_synth(synth_path);
        return 1;
    }
    double full = (double)spill_shape_weight_bytes(&sh) +
                  (double)spill_shape_kv_bytes_per_token(&sh) * (po->cli.prompt + po->cli.gen);
    int ctx_train = sh.hp.ctx_train;
    po->n_layers = sh.hp.n_layers;
    po->vocab = sh.hp.vocab;
    /* its own quick profile rates the matmul over layers of the model's widths */
    int own[3] = {sh.hp.dim, spill_hparams_kv_dim(&sh.hp), sh.hp.ffn_dim};
    if (!(own[0] % 32 == 0 && own[1] % 32 == 0 && own[2] % 32 == 0 && own[0] > 0 && own[1] > 0 && own[2] > 0))
        memcpy(own, stack_default, sizeof own);
    /* the formats the cost model will charge: the model's, and F32 (attention over the KV cache) */
    int want[N_RATE_TYPES] = {0};
    for (int i = 0; i < N_RATE_TYPES; i++) {
        const char *name = spill_dtype_name(rate_types[i]);
        want[i] = rate_types[i] == SPILL_DT_F32 || !strcmp(sh.embd_format, name) || !strcmp(sh.output_format, name);
        for (int l = 0; l < sh.hp.n_layers && !want[i]; l++) want[i] = !strcmp(sh.layer_format[l], name);
    }
    spill_shape_free(&sh);
    spill_gguf_close(&g);
    if (po->cli.prompt + po->cli.gen > ctx_train) {
        fprintf(stderr, "spill-bench: --prompt-tokens %d + --gen-tokens %d exceed the model's context of %d\n", po->cli.prompt,
                po->cli.gen, ctx_train);
        drop_synth(synth_path);
        return 2;
    }
    if (po->cli.profile_file) {
        cpu_bw = prof.read_bw[SPILL_TIER_HOST][SPILL_PROC_CPU];
    } else {
        tiers_result t;
        fprintf(stderr, "spill-bench: measuring this machine's tiers first (spill-bench tiers --profile-out F.json and "
                        "--profile-file F.json skip this)\n");
        /* a quick profile: the one-token rates over 8 MiB (cached: optimistic), of the model's formats
           only; a measured one (tiers --profile-out, --profile-file) rates every format over --size */
        if (run_tiers((size_t)128 << 20, (size_t)8 << 20, own, want, 3, po->cli.threads, &t, 1, &err)) {
            fprintf(stderr, "spill-bench: %s\n", err.msg);
            drop_synth(synth_path);
            return 1;
        }
        tiers_profile(&t, &prof);
        cpu_bw = prof.read_bw[SPILL_TIER_HOST][SPILL_PROC_CPU];
    }
    /* the placement decisions: as on the machine named by --plan-profile (default: gh200-96 when this
       one has no GPU, so that the plans hold HBM regions and rings worth running) */
    spill_profile plan_prof;
    const char *pp_name = po->cli.plan_profile ? po->cli.plan_profile : prof.has_gpu ? NULL : "gh200-96";
    if (pp_name) {
        if (spill_profile_builtin(pp_name, &plan_prof, &err)) {
            fprintf(stderr, "spill-bench: %s\n", err.msg);
            drop_synth(synth_path);
            return 2;
        }
    } else {
        plan_prof = prof;
    }
    uint8_t *skip = NULL;
    if (po->cli.draft_skip) {
        spill_engine_params dp = spill_engine_defaults();
        dp.model = model;
        dp.threads = po->cli.threads;
        if (!(skip = calloc((size_t)po->n_layers, 1)) ||
            spill_draft_resolve(&dp, po->n_layers, po->cli.draft_skip, NULL, 0, skip, &err)) {
            fprintf(stderr, "spill-bench: %s\n", err.msg[0] ? err.msg : "out of memory");
            free(skip);
            drop_synth(synth_path);
            return 2;
        }
        po->skip = skip;
    }
    if (po->cli.host_limits) {
        int rc = run_disk_sweep(po, model, &prof, full);
        drop_synth(synth_path);
        return rc;
    }
    row rows[256];
    int n = 0;
    char bl[256], pl[256];
    snprintf(bl, sizeof bl, "%s", po->cli.budgets);
    char *sb = NULL, *b = strtok_r(bl, ",", &sb);
    int total = 0;
    for (char *c = po->cli.policies; *c; c++) total += *c == ',';
    total += 1;
    int n_budgets = 0;
    for (char *c = po->cli.budgets; *c; c++) n_budgets += *c == ',';
    total *= n_budgets + 1;
    for (; b && n < 256 && !stop; b = strtok_r(NULL, ",", &sb)) {
        double frac;
        uint64_t bytes;
        if (spill_bench_parse_share(b, full, &bytes, &frac)) {
            fprintf(stderr, "spill-bench: --budgets: '%s' is neither a percentage nor a size\n", b);
            drop_synth(synth_path);
            return 2;
        }
        snprintf(pl, sizeof pl, "%s", po->cli.policies);
        char *sp = NULL;
        for (char *p = strtok_r(pl, ",", &sp); p && n < 256 && !stop; p = strtok_r(NULL, ",", &sp)) {
            row *r = &rows[n];
            memset(r, 0, sizeof *r);
            snprintf(r->policy, sizeof r->policy, "%.31s", p);
            r->budget_frac = frac;
            r->budget = bytes;
            fprintf(stderr, "spill-bench: [%d/%d] policy %s, budget %.0f%% (%.1f MiB) ...", n + 1, total, p, 100 * frac,
                    mib((double)bytes));
            /* the median of --reps runs of the point (prefill and decode each) */
            double pre[64], dec[64];
            int got = 0;
            for (int k = 0; k < po->cli.reps && !stop; k++) {
                row one = *r;
                run_point(po, model, &plan_prof, &prof, cpu_bw, &one);
                if (!one.ok) {
                    *r = one;
                    break;
                }
                pre[got] = one.prefill_tok_s;
                dec[got] = one.decode_tok_s;
                got++;
                *r = one;
            }
            if (r->ok && got > 1) {
                qsort(pre, (size_t)got, sizeof *pre, cmp_d);
                qsort(dec, (size_t)got, sizeof *dec, cmp_d);
                r->prefill_tok_s = pre[got / 2];
                r->decode_tok_s = dec[got / 2];
            }
            if (r->ok) fprintf(stderr, " prefill %.1f tok/s, decode %.2f tok/s\n", r->prefill_tok_s, r->decode_tok_s);
            else fprintf(stderr, " %s\n", r->error);
            n++;
        }
    }
    if (stop) fprintf(stderr, "spill-bench: interrupted; what was measured so far:\n");
    print_rows(rows, n, po->cli.f, po, po->cli.synthetic ? po->cli.synthetic : model, &plan_prof, &prof, stdout);
    int rc = 0;
    if (po->cli.plot && write_svg(po->cli.plot, rows, n, &err)) {
        fprintf(stderr, "spill-bench: %s\n", err.msg);
        rc = 1;
    }
    drop_synth(synth_path);
    free(skip);
    po->skip = NULL;
    return rc;
}

/* ---------------------------------------------------------------- main */

#ifdef SPILL_BENCH_SERVE
int spill_bench_serve(int argc, char **argv); /* bench_serve.c */
#endif

int main(int argc, char **argv) {
    spill_options env;
    spill_err err = {{0}};
    spill_options_defaults(&env);
    if (spill_options_from_env(&env, stderr, &err)) {
        fprintf(stderr, "spill-bench: %s\n", err.msg);
        return 2;
    }
#ifdef SPILL_BENCH_SERVE
    if (argc >= 2 && !strcmp(argv[1], "serve")) return spill_bench_serve(argc, argv);
#endif
    place_opts po = {0};
    int prc = spill_bench_cli(&po.cli, argc, argv, stdout, &err);
    if (prc) {
        if (prc < 0 && po.cli.cmd == SPILL_BENCH_NONE) {
            spill_bench_usage(stderr);
            if (argc >= 2 && *argv[1]) fprintf(stderr, "spill-bench: %s\n", err.msg);
        } else if (prc < 0) {
            fprintf(stderr, "spill-bench: %s\n", err.msg);
        }
        return prc < 0 ? 2 : 0;
    }
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    if (!po.cli.threads) po.cli.threads = env.threads ? env.threads : (ncpu > 0 ? (int)ncpu : 1);
    disk_file = po.cli.disk_file;
    if (po.cli.cuda) {
        int n_gpu;
        spill_err gerr = {{0}};
        if (spill_gpu_count(&n_gpu, &gerr)) {
            fprintf(stderr, "spill-bench: --device cuda: %s\n", gerr.msg);
            return 2;
        }
    }
    signal(SIGINT, on_sigint);
    if (po.cli.cmd == SPILL_BENCH_TIERS) {
        tiers_result t;
        int want[N_RATE_TYPES];
        for (int i = 0; i < N_RATE_TYPES; i++) { /* --formats: checked against the same names (tools/cli_bench.c) */
            const char *name = spill_dtype_name(rate_types[i]), *c = po.cli.formats;
            want[i] = !*c;
            while (*c && !want[i]) {
                size_t l = strcspn(c, ",");
                want[i] = l == strlen(name) && !strncasecmp(c, name, l);
                c += l + (c[l] == ',');
            }
        }
        if (run_tiers((size_t)po.cli.size, (size_t)po.cli.size, po.cli.stack_shape, want, po.cli.tier_reps, po.cli.threads, &t, 0, &err)) {
            fprintf(stderr, "spill-bench: %s\n", err.msg);
            return 1;
        }
        if (stop) fprintf(stderr, "spill-bench: interrupted; what was measured so far:\n");
        print_tiers(&t, po.cli.f, stdout);
        if (po.cli.profile_out) {
            spill_profile p;
            tiers_profile(&t, &p);
            spill_file_out out; /* whole or not at all: a full disk leaves the old profile, or none */
            if (spill_file_begin(&out, po.cli.profile_out, "--profile-out", &err)) {
                fprintf(stderr, "spill-bench: %s\n", err.msg);
                return 1;
            }
            spill_profile_write(&p, out.f);
            if (spill_file_commit(&out, &err)) {
                fprintf(stderr, "spill-bench: %s\n", err.msg);
                return 1;
            }
            fprintf(stderr, "spill-bench: wrote the profile %s to %s\n", p.name, po.cli.profile_out);
        }
        return 0;
    }
    return run_placement(&po);
}
