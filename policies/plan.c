/* The policies (see spill_policy.h): each turns regions + profile + budget into a plan. */
#include <math.h>
#include <strings.h>

#include "spill_policy.h"

const char *const spill_policy_names[] = {"host", "fault", "pin", "stream", "auto", NULL};

const char *spill_action_name(spill_action_kind k) {
    switch (k) {
    case SPILL_ACT_PREFETCH: return "prefetch";
    case SPILL_ACT_EVICT: return "evict";
    case SPILL_ACT_DISCARD: return "discard";
    }
    return "?";
}

void spill_advice_str(spill_tier tier, unsigned advice, char *buf, size_t len) {
    snprintf(buf, len, "%s%s%s%s%s", tier == SPILL_TIER_HBM ? "hbm" : "host",
             (advice & SPILL_PLACE_GPU_READS) ? " gpu-reads" : "", (advice & SPILL_PLACE_CPU_READS) ? " cpu-reads" : "",
             (advice & SPILL_PLACE_READ_MOSTLY) ? " read-mostly" : "", (advice & SPILL_PLACE_FAULTS) ? " faults" : "");
}

static double mib(uint64_t b) { return (double)b / 1048576.0; }

/* ---- shared pieces ---- */

static int is_layer_weight(const spill_region *r) { return r->kind == SPILL_REGION_WEIGHT && r->layer >= 0; }

/* how often a step of `ph` reads the region, in units of its size */
static double reads_in(const spill_region *r, spill_phase ph) {
    int tok = ph.tokens > 0 ? ph.tokens : 1;
    if (r->kind == SPILL_REGION_WEIGHT && r->reads_per_step < 1) return r->reads_per_step * tok; /* row lookups */
    return r->reads_per_step;
}

/* Where a region lives when it is not in HBM: host memory, read in place by whichever processor
 * computes (the GPU over C2C/PCIe, or the CPU). Never ReadMostly where the GPU reads it: that advice
 * overrides preferred location and accessed-by, so GPU reads would make read-only copies in HBM,
 * outside the budget, evicting what the plan put there, every token (issue 21, defect 5). */
static void put_host(const spill_region *r, const spill_plan_params *p, const spill_profile *prof,
                     spill_region_plan *rp) {
    rp->tier = SPILL_TIER_HOST;
    rp->hbm_bytes = 0;
    rp->advice = prof->has_gpu ? SPILL_PLACE_GPU_READS
                               : SPILL_PLACE_CPU_READS | (r->kind == SPILL_REGION_WEIGHT ? SPILL_PLACE_READ_MOSTLY : 0);
    rp->in_place = r->kind == SPILL_REGION_WEIGHT && p->map_weights;
    rp->streamed = 0;
    rp->prefetch_at = -1;
}

/* The same advice as put_host's: nothing but the GPU reads weights on the GPU path, so ReadMostly buys
 * nothing in HBM either, and one advice for both tiers keeps a split region's HBM rows in the same
 * HBM block as the whole regions' (the engine's chunk rounding counts one block per advice). */
static void put_hbm(const spill_region *r, const spill_profile *prof, spill_region_plan *rp) {
    rp->tier = SPILL_TIER_HBM;
    rp->hbm_bytes = r->bytes;
    rp->advice = prof->has_gpu ? SPILL_PLACE_GPU_READS
                               : SPILL_PLACE_CPU_READS | (r->kind == SPILL_REGION_WEIGHT ? SPILL_PLACE_READ_MOSTLY : 0);
    rp->in_place = 0;
    rp->streamed = 0;
    rp->prefetch_at = -1;
}

typedef struct cand {
    int i;
    double benefit; /* seconds saved per step per byte by holding it in HBM */
} cand;

static int cand_cmp(const void *a, const void *b) {
    const cand *x = a, *y = b;
    if (x->benefit != y->benefit) return x->benefit > y->benefit ? -1 : 1;
    return x->i - y->i; /* stable: earlier regions first */
}

/* Activations must be in HBM when a GPU computes; they come out of the budget first. */
static int reserve_activations(const spill_region *r, int n, const spill_profile *prof, spill_plan *out,
                               uint64_t *avail, spill_err *err) {
    for (int i = 0; i < n; i++) {
        if (r[i].kind != SPILL_REGION_ACTIVATION || !prof->has_gpu) continue;
        if (r[i].bytes > *avail)
            return spill_err_set(err, "the HBM budget of %.1f MiB cannot hold the activations (%s, %.1f MiB); raise "
                                      "--hbm-budget", mib(out->bytes[SPILL_TIER_HBM] + *avail), r[i].name, mib(r[i].bytes));
        put_hbm(&r[i], prof, &out->region[i]);
        *avail -= r[i].bytes;
        out->bytes[SPILL_TIER_HBM] += r[i].bytes;
    }
    return 0;
}

/* Fill `avail` bytes of HBM with the regions that save the most time per byte (skipping those
 * listed in `skip`), reading everything else in place. */
static int pin_fill(const spill_region *r, int n, const spill_plan_params *p, const spill_profile *prof,
                    const unsigned char *skip, spill_plan *out, uint64_t *avail, spill_err *err) {
    spill_proc proc = prof->has_gpu ? SPILL_PROC_GPU : SPILL_PROC_CPU;
    double bh = prof->read_bw[SPILL_TIER_HBM][proc], bc = prof->read_bw[SPILL_TIER_HOST][proc];
    cand *c = calloc(n ? (size_t)n : 1, sizeof *c);
    if (!c) return spill_err_set(err, "out of memory planning %d regions", n);
    int m = 0;
    for (int i = 0; i < n; i++) {
        if (skip && skip[i]) continue;
        if (r[i].kind == SPILL_REGION_ACTIVATION && prof->has_gpu) continue; /* already reserved */
        double reads = reads_in(&r[i], p->phase);
        c[m].i = i;
        c[m].benefit = bh > 0 && bc > 0 ? reads * (1.0 / bc - 1.0 / bh) : 0;
        m++;
    }
    qsort(c, (size_t)m, sizeof *c, cand_cmp);
    for (int k = 0; k < m;) {
        /* a group of equal benefit: all of it if it fits, else the same fraction of each */
        int e = k;
        uint64_t group = 0;
        while (e < m && fabs(c[e].benefit - c[k].benefit) <= 1e-9 * fabs(c[k].benefit)) group += r[c[e++].i].bytes;
        double f = c[k].benefit <= 0 || !group ? 0 : group <= *avail ? 1.0 : (double)*avail / (double)group;
        for (int q = k; q < e; q++) {
            int i = c[q].i;
            uint64_t h = f >= 1.0 ? r[i].bytes : (uint64_t)(f * (double)r[i].bytes);
            if (r[i].bytes && h == r[i].bytes) {
                put_hbm(&r[i], prof, &out->region[i]);
            } else {
                put_host(&r[i], p, prof, &out->region[i]);
                out->region[i].hbm_bytes = h;
            }
            SPILL_ASSERT(h <= *avail);
            *avail -= h;
            out->bytes[SPILL_TIER_HBM] += h;
            out->bytes[SPILL_TIER_HOST] += r[i].bytes - h;
        }
        k = e;
    }
    free(c);
    return 0;
}

/* ---- the policies ---- */

static int plan_host(const spill_region *r, int n, const spill_plan_params *p, const spill_profile *prof,
                     spill_plan *out, spill_err *err) {
    (void)err;
    spill_profile cpu = *prof;
    cpu.has_gpu = 0; /* the CPU computes: advice says the CPU reads */
    for (int i = 0; i < n; i++) {
        put_host(&r[i], p, &cpu, &out->region[i]);
        out->bytes[SPILL_TIER_HOST] += r[i].bytes;
    }
    return 0;
}

/* One pool shared by the CPU and the GPU (GB10): there is no HBM to place anything in and no link to
 * cross, so every region stays where it is and the GPU reads it in place; no copies, no ring. Every
 * GPU policy collapses to this. */
static int plan_one_pool(const spill_region *r, int n, const spill_plan_params *p, const spill_profile *prof,
                         spill_plan *out) {
    for (int i = 0; i < n; i++) {
        put_host(&r[i], p, prof, &out->region[i]);
        out->bytes[SPILL_TIER_HOST] += r[i].bytes;
    }
    return 0;
}

/* No hints: data lives wherever it was first touched (host memory, as the loader writes it) and
 * the driver migrates on faults. SPILL_PLACE_FAULTS asks the backend to unset the preferred location
 * (a preferred location of host would keep every page there: that is `host`, not `fault`). */
static int plan_fault(const spill_region *r, int n, const spill_plan_params *p, const spill_profile *prof,
                      spill_plan *out, spill_err *err) {
    (void)prof, (void)err;
    for (int i = 0; i < n; i++) {
        spill_region_plan *rp = &out->region[i];
        rp->tier = SPILL_TIER_HOST;
        rp->advice = SPILL_PLACE_FAULTS;
        rp->in_place = r[i].kind == SPILL_REGION_WEIGHT && p->map_weights;
        rp->prefetch_at = -1;
        out->bytes[SPILL_TIER_HOST] += r[i].bytes;
    }
    return 0;
}

static int plan_pin(const spill_region *r, int n, const spill_plan_params *p, const spill_profile *prof,
                    spill_plan *out, spill_err *err) {
    uint64_t avail = p->budget[SPILL_TIER_HBM];
    if (reserve_activations(r, n, prof, out, &avail, err)) return -1;
    return pin_fill(r, n, p, prof, NULL, out, &avail, err);
}

/* layer -> total bytes and parameters of its weight regions; out[2*l] bytes, out[2*l+1] params */
static int layer_bytes(const spill_region *r, int n, uint64_t **out, int *n_layers, spill_err *err) {
    int L = 0;
    for (int i = 0; i < n; i++)
        if (is_layer_weight(&r[i]) && r[i].layer + 1 > L) L = r[i].layer + 1;
    uint64_t *b = calloc(L ? 2 * (size_t)L : 1, sizeof *b);
    if (!b) return spill_err_set(err, "out of memory");
    for (int i = 0; i < n; i++)
        if (is_layer_weight(&r[i])) {
            b[2 * r[i].layer] += r[i].bytes;
            b[2 * r[i].layer + 1] += r[i].params;
        }
    *out = b;
    *n_layers = L;
    return 0;
}

/* stream with `pinned_layers` whole layers kept in HBM (evenly spaced, so that transfers have
 * compute to hide behind) and the rest through a ring. pinned_layers < 0: as many as fit. */
static int plan_stream_mix(const spill_region *r, int n, const spill_plan_params *p, const spill_profile *prof,
                           int pinned_layers, spill_plan *out, spill_err *err) {
    uint64_t *lb = NULL;
    int L = 0;
    if (layer_bytes(r, n, &lb, &L, err)) return -1;
    if (L < 2) {
        free(lb);
        return spill_err_set(err, "stream: the model has %d layer%s; a ring needs at least 2", L, L == 1 ? "" : "s");
    }
    uint64_t slot = 0, params = 0;
    for (int l = 0; l < L; l++) {
        slot = lb[2 * l] > slot ? lb[2 * l] : slot;
        params = lb[2 * l + 1] > params ? lb[2 * l + 1] : params;
    }
    /* k, how far ahead to prefetch: 1 when one layer's transfer hides behind one layer's compute,
       else 2 so that a late transfer has a second layer to hide behind. N = k + 1 slots. */
    spill_proc proc = prof->has_gpu ? SPILL_PROC_GPU : SPILL_PROC_CPU;
    double link = prof->link_h2d > 0 ? prof->link_h2d : prof->read_bw[SPILL_TIER_HOST][proc];
    int tok = p->phase.tokens > 0 ? p->phase.tokens : 1;
    double t_exec = fmax((double)slot / prof->read_bw[SPILL_TIER_HBM][proc],
                         2.0 * (double)params * tok / (prof->flops[proc] > 0 ? prof->flops[proc] : 1e30));
    double t_xfer = (double)slot / link;
    int k = t_xfer <= t_exec ? 1 : 2;
    if (k > L - 1) k = L - 1;
    int N = k + 1;
    uint64_t avail = p->budget[SPILL_TIER_HBM];
    if (reserve_activations(r, n, prof, out, &avail, err)) {
        free(lb);
        return -1;
    }
    uint64_t ring = (uint64_t)N * slot;
    if (ring > avail) {
        free(lb);
        return spill_err_set(err, "stream: the ring needs %d slots of %.1f MiB (the largest layer) = %.1f MiB, but the HBM "
                                  "budget leaves %.1f MiB; raise --hbm-budget to at least %.1f MiB or use --policy pin",
                             N, mib(slot), mib(ring), mib(avail), mib(out->bytes[SPILL_TIER_HBM] + ring));
    }
    avail -= ring;
    /* whole layers that fit beside the ring stay in HBM */
    int P = 0;
    if (pinned_layers != 0) {
        uint64_t a = avail;
        for (int l = 0; l < L && (pinned_layers < 0 || P < pinned_layers); l++)
            if (slot <= a) {
                a -= slot;
                P++;
            }
        if (P >= L - 1) P = L; /* a ring for one layer is pointless: pin them all */
    }
    if (P == L) {
        free(lb);
        memset(out->region, 0, sizeof *out->region * (size_t)n);
        memset(out->bytes, 0, sizeof out->bytes);
        return plan_pin(r, n, p, prof, out, err);
    }
    unsigned char *pinned = calloc((size_t)L, 1), *skip = calloc(n ? (size_t)n : 1, 1);
    int *order = malloc(sizeof(int) * (size_t)L);
    if (!pinned || !skip || !order) {
        free(lb), free(pinned), free(skip), free(order);
        return spill_err_set(err, "out of memory");
    }
    for (int l = 0; l < L; l++)
        if ((int64_t)(l + 1) * P / L > (int64_t)l * P / L) pinned[l] = 1;
    /* layers: pinned ones in HBM, the others streamed from their home in host memory */
    int m = 0;
    for (int l = 0; l < L; l++)
        if (!pinned[l]) order[m++] = l;
    if (k > m - 1) k = m - 1 > 0 ? m - 1 : 1;
    for (int i = 0; i < n; i++) {
        if (!is_layer_weight(&r[i])) continue;
        skip[i] = 1;
        spill_region_plan *rp = &out->region[i];
        if (pinned[r[i].layer]) {
            put_hbm(&r[i], prof, rp);
            out->bytes[SPILL_TIER_HBM] += r[i].bytes;
            avail -= r[i].bytes;
        } else {
            put_host(&r[i], p, prof, rp);
            rp->advice = SPILL_PLACE_READ_MOSTLY; /* the GPU reads the ring copy, not this */
            rp->streamed = 1;
            out->bytes[SPILL_TIER_HOST] += r[i].bytes;
        }
    }
    out->bytes[SPILL_TIER_HBM] += ring;
    out->ring_slots = N;
    out->ring_ahead = k;
    out->ring_slot_bytes = slot;
    /* everything else by benefit in what is left */
    int rc = pin_fill(r, n, p, prof, skip, out, &avail, err);
    /* actions: before streamed layer s_j runs, let s_{j-1} go and fetch s_{j+k} */
    out->steps = calloc((size_t)L, sizeof *out->steps);
    if (!rc && !out->steps) rc = spill_err_set(err, "out of memory");
    for (int j = 0; !rc && j < m; j++) {
        int l = order[j], prev = order[(j + m - 1) % m], next = order[(j + k) % m];
        int cnt = 0;
        for (int i = 0; i < n; i++)
            if (is_layer_weight(&r[i]) && (r[i].layer == prev || r[i].layer == next)) cnt++;
        spill_step *st = &out->steps[l];
        st->act = calloc((size_t)cnt + 1, sizeof *st->act);
        if (!st->act) {
            rc = spill_err_set(err, "out of memory");
            break;
        }
        for (int i = 0; i < n; i++)
            if (is_layer_weight(&r[i]) && r[i].layer == prev && m > k + 1)
                st->act[st->n++] = (spill_action){SPILL_ACT_EVICT, i, SPILL_TIER_HOST, -1};
        for (int i = 0; i < n; i++)
            if (is_layer_weight(&r[i]) && r[i].layer == next) {
                st->act[st->n++] = (spill_action){SPILL_ACT_PREFETCH, i, SPILL_TIER_HBM, -1};
                out->region[i].prefetch_at = l;
            }
    }
    free(lb), free(pinned), free(skip), free(order);
    return rc;
}

static int spill_policy_known(const char *name) {
    for (int i = 0; spill_policy_names[i]; i++)
        if (!strcasecmp(name, spill_policy_names[i])) return 1;
    return !strcasecmp(name, "stream-mix");
}

/* The disk tier: when the host budget is set and the weights the plan leaves in host memory, the KV
 * cache planned there and the disk ring do not fit it, whole layers go to disk — evenly spaced, so
 * that reads have compute between them — until they do. The ring: up to disk_ahead + 1 slots of the
 * largest layer on disk (one being read by the computation, the others being filled), and fewer than
 * the layers on disk. With a GPU, a streamed layer's home counts as host memory and may go to disk
 * too: it then leaves the HBM ring, and the GPU reads it where its disk slot holds it (as it reads the
 * host-tier layers of a pin plan), so each of its bytes crosses the link once per step either way. */
static int plan_disk(const spill_region *r, int n, const spill_plan_params *p, const spill_profile *prof,
                     spill_plan *out, spill_err *err) {
    uint64_t limit = p->budget[SPILL_TIER_HOST];
    if (!limit) return 0;
    int L = out->n_layers;
    uint64_t host = 0, layer_host_max = 0;
    uint64_t *lb = calloc(L ? (size_t)L : 1, sizeof *lb);
    int *movable = calloc(L ? (size_t)L : 1, sizeof *movable);
    if (!lb || !movable) {
        free(lb);
        free(movable);
        return spill_err_set(err, "out of memory");
    }
    for (int l = 0; l < L; l++) movable[l] = 1;
    int gpu = prof && prof->has_gpu;
    for (int i = 0; i < n; i++) {
        const spill_region_plan *rp = &out->region[i];
        if (rp->streamed && !(gpu && is_layer_weight(&r[i]))) {
            if (r[i].layer >= 0) movable[r[i].layer] = 0;
            continue;
        }
        uint64_t in_host = r[i].bytes - rp->hbm_bytes;
        host += in_host;
        if (is_layer_weight(&r[i])) {
            if (rp->hbm_bytes) movable[r[i].layer] = 0; /* partly in HBM: stays */
            lb[r[i].layer] += in_host;
        }
    }
    for (int l = 0; l < L; l++)
        if (movable[l] && lb[l] > layer_host_max) layer_host_max = lb[l];
    int ahead = 2, slots = 0, n_disk = 0, n_movable = 0;
    for (int l = 0; l < L; l++) n_movable += movable[l] && lb[l] > 0;
    uint64_t ring = 0;
    if (host <= limit) goto done;
    /* how many layers must go (layers are alike, so count them): the ring holds up to ahead + 1 of them,
       and fewer than the layers on disk, or it would simply hold them all */
    uint64_t freed = 0;
    int want = 0;
    for (int l = 0; l < L; l++) {
        if (!movable[l] || !lb[l]) continue;
        freed += lb[l];
        want++;
        /* ahead + 1 slots if they fit, else fewer: two still read one layer while another computes */
        slots = want - 1 < ahead + 1 ? want - 1 : ahead + 1;
        while (slots > 2 && host + (uint64_t)slots * layer_host_max > limit + freed) slots--;
        if (slots < 1) slots = 1;
        ring = (uint64_t)slots * layer_host_max;
        if (host + ring <= limit + freed) break;
    }
    if (host + ring > limit + freed || !n_movable) {
        uint64_t floor_ = host - freed + ring;
        free(lb);
        free(movable);
        return spill_err_set(err, "--host-limit %.1f MiB: even with every layer read from disk the host memory needs "
                                  "%.1f MiB (the embedding, head, KV cache and a ring of %d layer slots); raise it",
                             mib(limit), mib(floor_), slots);
    }
    /* evenly spaced among the movable layers */
    int seen = 0;
    for (int l = 0; l < L && n_disk < want; l++) {
        if (!movable[l] || !lb[l]) continue;
        /* the k-th movable layer goes when floor((k+1) * want / n_movable) steps up */
        if ((long)(seen + 1) * want / n_movable > (long)seen * want / n_movable) {
            for (int i = 0; i < n; i++)
                if (is_layer_weight(&r[i]) && r[i].layer == l) {
                    spill_region_plan *rp = &out->region[i];
                    if (rp->streamed) { /* out of the HBM ring: the GPU reads it from its disk slot */
                        rp->streamed = 0;
                        rp->prefetch_at = -1;
                        rp->tier = SPILL_TIER_HOST;
                        rp->advice = (rp->advice & ~(unsigned)SPILL_PLACE_READ_MOSTLY) | SPILL_PLACE_GPU_READS;
                    }
                    rp->on_disk = 1;
                    rp->in_place = 1; /* its home is still the mapped file (tiny vectors) */
                    out->disk_bytes += r[i].bytes;
                }
            n_disk++;
        }
        seen++;
    }
    out->disk_slots = slots;
    /* one slot is the running layer's: the others take the next ones (one slot: filled between them) */
    out->disk_ahead = slots > 1 ? (ahead < slots - 1 ? ahead : slots - 1) : 1;
    out->disk_slot_bytes = layer_host_max;
    out->bytes[SPILL_TIER_HOST] -= out->disk_bytes;
    out->bytes[SPILL_TIER_HOST] += ring;
done:
    free(lb);
    free(movable);
    return 0;
}

static int plan_once(const char *name, const spill_region *r, int n, const spill_plan_params *p,
                     const spill_profile *prof, spill_plan *out, spill_err *err);

/* auto: predict a pinned core read in place around it, and a pinned core with the rest streamed;
 * keep the faster for this phase. */
static int plan_auto(const spill_region *r, int n, const spill_plan_params *p, const spill_profile *prof,
                     spill_plan *out, spill_err *err) {
    spill_plan a, b;
    spill_err e2;
    if (plan_once("pin", r, n, p, prof, &a, err)) return -1;
    int have_b = prof->has_gpu && !plan_once("stream-mix", r, n, p, prof, &b, &e2);
    int pick_b = have_b && b.predicted.step_s < a.predicted.step_s;
    free(out->region);
    if (pick_b) {
        *out = b;
        spill_plan_free(&a);
    } else {
        *out = a;
        if (have_b) spill_plan_free(&b);
    }
    snprintf(out->policy, sizeof out->policy, "auto");
    snprintf(out->chosen, sizeof out->chosen, "%s", pick_b ? "stream" : "pin");
    return 0;
}

static int plan_once(const char *name, const spill_region *r, int n, const spill_plan_params *p,
                     const spill_profile *prof, spill_plan *out, spill_err *err) {
    memset(out, 0, sizeof *out);
    out->region = calloc(n ? (size_t)n : 1, sizeof *out->region);
    if (!out->region) return spill_err_set(err, "out of memory planning %d regions", n);
    for (int i = 0; i < n; i++) out->region[i].prefetch_at = -1;
    out->n = n;
    out->phase = p->phase;
    int L = 0;
    for (int i = 0; i < n; i++)
        if (is_layer_weight(&r[i]) && r[i].layer + 1 > L) L = r[i].layer + 1;
    out->n_layers = L;
    snprintf(out->policy, sizeof out->policy, "%s", name);
    snprintf(out->chosen, sizeof out->chosen, "%s", name);
    int rc;
    if (prof->unified && prof->has_gpu && strcasecmp(name, "host") && spill_policy_known(name)) {
        rc = plan_one_pool(r, n, p, prof, out);
        snprintf(out->chosen, sizeof out->chosen, "one-pool");
    } else if (!strcasecmp(name, "host")) rc = plan_host(r, n, p, prof, out, err);
    else if (!strcasecmp(name, "fault")) rc = plan_fault(r, n, p, prof, out, err);
    else if (!strcasecmp(name, "pin")) rc = plan_pin(r, n, p, prof, out, err);
    else if (!strcasecmp(name, "stream")) rc = plan_stream_mix(r, n, p, prof, 0, out, err);
    else if (!strcasecmp(name, "stream-mix")) {
        rc = plan_stream_mix(r, n, p, prof, -1, out, err);
        snprintf(out->chosen, sizeof out->chosen, "stream");
    } else if (!strcasecmp(name, "auto")) rc = plan_auto(r, n, p, prof, out, err);
    else {
        char known[128] = "";
        for (int i = 0; spill_policy_names[i]; i++) {
            strcat(known, i ? ", " : "");
            strcat(known, spill_policy_names[i]);
        }
        rc = spill_err_set(err, "--policy '%s' is not known (this build has: %s)", name, known);
    }
    if (rc) {
        spill_plan_free(out);
        return -1;
    }
    /* auto's plan is one of its sub-plans, each already through the disk tier */
    if (!rc && strcasecmp(name, "auto") && plan_disk(r, n, p, prof, out, err)) rc = -1;
    if (rc) {
        spill_plan_free(out);
        return -1;
    }
    if (!out->steps && L > 0) {
        out->steps = calloc((size_t)L, sizeof *out->steps);
        if (!out->steps) {
            spill_plan_free(out);
            return spill_err_set(err, "out of memory");
        }
    }
    out->predicted = spill_cost_predict(r, out, prof, p->phase);
    return 0;
}

int spill_plan_make(const spill_region *regions, int n, const spill_plan_params *p, spill_plan *out,
                    spill_err *err) {
    memset(out, 0, sizeof *out);
    if (n < 0) return spill_err_set(err, "plan: %d regions", n);
    spill_profile cpu;
    const spill_profile *prof = p->profile;
    if (!prof) {
        spill_profile_builtin("cpu", &cpu, err);
        prof = &cpu;
    }
    const char *name = p->policy && *p->policy ? p->policy : "host";
    if (!strcasecmp(name, "stream-mix")) return spill_err_set(err, "--policy 'stream-mix' is not known (this build "
                                                                    "has: host, fault, pin, stream, auto)");
    return plan_once(name, regions, n, p, prof, out, err);
}

void spill_plan_free(spill_plan *plan) {
    if (plan->steps)
        for (int l = 0; l < plan->n_layers; l++) free(plan->steps[l].act);
    free(plan->steps);
    free(plan->region);
    memset(plan, 0, sizeof *plan);
}
