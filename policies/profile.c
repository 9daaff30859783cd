/* Hardware profiles: the numbers the cost model works from. Sources: docs/policies.md.
 * "Achievable" figures: measured where a public measurement exists, else the vendor's peak times
 * the ratio measured on the nearest part (GH200 HBM: 3.4 of 4.0 TB/s = 0.85), each noted below. */
#include <strings.h>

#include "spill_json.h"
#include "spill_policy.h"

const char *const spill_profile_names[] = {"gh200-96", "gh200-144", "gb200", "gb300", "gb10", "h100-pcie",
                                           "h200-pcie", "cpu", NULL};

#define GB 1e9
#define TB 1e12

static void set(spill_profile *p, const char *name, const char *src, int gpu, double hbm_cap, double host_cap,
                double hbm_gpu, double hbm_cpu, double host_gpu, double host_cpu, double h2d, double d2h,
                double gflops, double cflops) {
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", name);
    snprintf(p->source, sizeof p->source, "%s", src);
    p->has_gpu = gpu;
    p->capacity[SPILL_TIER_HBM] = (uint64_t)hbm_cap;
    p->capacity[SPILL_TIER_HOST] = (uint64_t)host_cap;
    p->read_bw[SPILL_TIER_HBM][SPILL_PROC_GPU] = hbm_gpu;
    p->read_bw[SPILL_TIER_HBM][SPILL_PROC_CPU] = hbm_cpu;
    p->read_bw[SPILL_TIER_HOST][SPILL_PROC_GPU] = host_gpu;
    p->read_bw[SPILL_TIER_HOST][SPILL_PROC_CPU] = host_cpu;
    p->link_h2d = h2d;
    p->link_d2h = d2h;
    /* assumption until spill-bench measures it: fault-driven migration moves 2 MiB at a time with a
       fault round trip each, at a quarter of the DMA rate */
    p->fault_bw = h2d / 4;
    p->grain = 2u << 20;
    /* the disk tier until spill-bench tiers measures the machine's: one PCIe 4.0 x4 NVMe drive reading
       sequentially with O_DIRECT, 7 GB/s (Samsung 990 PRO datasheet: 7.45 GB/s) */
    p->disk_bw = 7 * GB;
    p->flops[SPILL_PROC_GPU] = gflops;
    p->flops[SPILL_PROC_CPU] = cflops;
}

int spill_profile_builtin(const char *name, spill_profile *p, spill_err *err) {
    if (!name) name = "cpu";
    if (!strcasecmp(name, "gh200-96"))
        /* HBM3 96 GB; GPU HBM 3.4 TB/s, CPU STREAM 486 GB/s, C2C 375 GB/s H2D / 297 GB/s D2H measured
           (Schieffer et al., ICPP'24); LPDDR5X 480 GB; BF16 dense 989 TFLOP/s peak x 0.7 */
        set(p, "gh200-96", "GH200 96 GB: ICPP'24 measurements; NVIDIA GH200 datasheet", 1, 96 * GB, 480 * GB,
            3.4 * TB, 297 * GB, 375 * GB, 486 * GB, 375 * GB, 297 * GB, 0.7 * 989 * TB, 7 * TB);
    else if (!strcasecmp(name, "gh200-144"))
        /* HBM3e 144 GB at 4.9 TB/s peak x 0.85; the rest as gh200-96 */
        set(p, "gh200-144", "GH200 144 GB: NVIDIA datasheet, ICPP'24 ratios", 1, 144 * GB, 480 * GB, 0.85 * 4.9 * TB,
            297 * GB, 375 * GB, 486 * GB, 375 * GB, 297 * GB, 0.7 * 989 * TB, 7 * TB);
    else if (!strcasecmp(name, "gb200"))
        /* one Blackwell GPU of a GB200 superchip, both of its GPUs streaming at once. HBM3e: 186 GB
           (13.4 TB over the 72 GPUs of an NVL72) at 8 TB/s peak x 0.85 (GH200's measured ratio).
           Host: the superchip's one Grace with 480 GB LPDDR5X is shared by two GPUs; its STREAM rate
           measured on GH200's Grace (486 GB/s, ICPP'24) halves when both stream: 243 GB/s each, below
           the C2C link (NVIDIA: 900 GB/s bidirectional; GH200's measured 375 H2D / 297 D2H), so the
           memory, not the link, bounds each GPU. BF16 dense 2.5 PFLOP/s per GPU (NVL72: 180 PFLOP/s
           over 72 GPUs) x 0.7. The CPU: 72 Neoverse V2 cores, as GH200's. */
        set(p, "gb200", "GB200 (one of its two GPUs, both streaming): NVIDIA GB200 NVL72 datasheet; Grace rates "
                        "from ICPP'24 on GH200, halved for two GPUs", 1, 186 * GB, 240 * GB, 0.85 * 8.0 * TB,
            297 * GB / 2, 243 * GB, 486 * GB / 2, 243 * GB, 243 * GB, 0.7 * 2500 * TB, 7 * TB / 2);
    else if (!strcasecmp(name, "gb300"))
        /* Blackwell Ultra in a GB300 superchip: HBM3e 288 GB at 8 TB/s peak x 0.85; BF16 dense
           2.5 PFLOP/s x 0.7; the shared Grace as gb200 */
        set(p, "gb300", "GB300 (one of its two GPUs, both streaming): NVIDIA GB300 NVL72 datasheet; Grace rates "
                        "as gb200", 1, 288 * GB, 240 * GB, 0.85 * 8.0 * TB, 297 * GB / 2, 243 * GB, 486 * GB / 2,
            243 * GB, 243 * GB, 0.7 * 2500 * TB, 7 * TB / 2);
    else if (!strcasecmp(name, "gb10")) {
        /* DGX Spark: one pool of 128 GB LPDDR5X at 273 GB/s peak x 0.85 that the CPU and the GPU share:
           no HBM tier and no link to cross. BF16 dense: 1 PFLOP/s FP4 sparse / 8 = 125 TFLOP/s x 0.7.
           The CPU: 10 Cortex-X925 + 10 Cortex-A725. */
        set(p, "gb10", "GB10 (DGX Spark): NVIDIA DGX Spark datasheet; one shared LPDDR5X pool", 1, 0, 128 * GB,
            0.85 * 273 * GB, 0.85 * 273 * GB, 0.85 * 273 * GB, 0.85 * 273 * GB, 0.85 * 273 * GB, 0.85 * 273 * GB,
            0.7 * 125 * TB, 1 * TB);
        p->unified = 1;
    } else if (!strcasecmp(name, "h100-pcie"))
        /* HBM2e 80 GB at 2.0 TB/s x 0.85; PCIe 5.0 x16: 64 GB/s per direction, ~53 GB/s pinned DMA;
           the GPU reading mapped host memory in place: half of that (scattered 128-byte reads);
           one socket of DDR5-4800 x 8 channels, 307 GB/s x 0.7; BF16 dense 756 TFLOP/s x 0.7 */
        set(p, "h100-pcie", "H100 PCIe: NVIDIA datasheet; PCIe 5.0 x16", 1, 80 * GB, 512 * GB, 0.85 * 2.0 * TB,
            26 * GB, 26 * GB, 215 * GB, 53 * GB, 53 * GB, 0.7 * 756 * TB, 3 * TB);
    else if (!strcasecmp(name, "h200-pcie"))
        /* H200 NVL: HBM3e 141 GB at 4.8 TB/s x 0.85; PCIe 5.0 x16 as h100-pcie; BF16 dense 835 TFLOP/s x 0.7 */
        set(p, "h200-pcie", "H200 NVL: NVIDIA datasheet; PCIe 5.0 x16", 1, 141 * GB, 512 * GB, 0.85 * 4.8 * TB,
            26 * GB, 26 * GB, 215 * GB, 53 * GB, 53 * GB, 0.7 * 835 * TB, 3 * TB);
    else if (!strcasecmp(name, "cpu"))
        /* no GPU: a small machine (measured here: SmolLM2 Q4_1 decode reads ~16 GB/s on 2 cores).
           HBM, when a plan asks for it, is host memory standing in for it (the emulated backend),
           so it reads at host speed. spill-bench tiers --profile-out writes a measured profile. */
        set(p, "cpu", "a small CPU-only machine; measure yours with spill-bench", 0, 0, 0, 20 * GB, 20 * GB, 20 * GB,
            20 * GB, 20 * GB, 20 * GB, 0, 0.2 * TB);
    else {
        char known[160] = "";
        for (int i = 0; spill_profile_names[i]; i++) {
            strcat(known, i ? ", " : "");
            strcat(known, spill_profile_names[i]);
        }
        return spill_err_set(err, "--profile '%s' is not built in (known: %s; or --profile-file F.json)", name, known);
    }
    return 0;
}

static int num(const spill_json *o, const char *key, double *out, int required, const char *path, spill_err *err) {
    const spill_json *v = spill_json_get(o, key);
    if (!v) return required ? spill_err_set(err, "%s: \"%s\" is missing", path, key) : 0;
    if (v->type != SPILL_JSON_NUMBER || v->number < 0)
        return spill_err_set(err, "%s: \"%s\" must be a non-negative number", path, key);
    *out = v->number;
    return 0;
}

int spill_profile_load(const char *path, spill_profile *p, spill_err *err) {
    spill_json *j;
    if (spill_json_parse_file(path, 1 << 20, &j, err)) return -1;
    spill_profile_builtin("cpu", p, err);
    int rc = -1;
    const spill_json *hbm = spill_json_get_type(j, "hbm", SPILL_JSON_OBJECT);
    const spill_json *host = spill_json_get_type(j, "host", SPILL_JSON_OBJECT);
    const spill_json *link = spill_json_get_type(j, "link", SPILL_JSON_OBJECT);
    const spill_json *flops = spill_json_get_type(j, "flops", SPILL_JSON_OBJECT);
    const spill_json *name = spill_json_get_type(j, "name", SPILL_JSON_STRING);
    const spill_json *gpu = spill_json_get_type(j, "has_gpu", SPILL_JSON_BOOL);
    if (j->type != SPILL_JSON_OBJECT || !hbm || !host || !link || !flops || !name || !gpu) {
        spill_err_set(err, "%s: a profile needs \"name\", \"has_gpu\" and the objects \"hbm\", \"host\", \"link\", "
                           "\"flops\" (see docs/policies.md)", path);
        goto out;
    }
    snprintf(p->name, sizeof p->name, "%s", name->str);
    const spill_json *src = spill_json_get_type(j, "source", SPILL_JSON_STRING);
    snprintf(p->source, sizeof p->source, "%s", src ? src->str : path);
    p->has_gpu = gpu->boolean;
    const spill_json *uni = spill_json_get(j, "unified");
    if (uni && uni->type != SPILL_JSON_BOOL) {
        spill_err_set(err, "%s: \"unified\" must be true or false", path);
        goto out;
    }
    p->unified = uni ? uni->boolean : 0;
    double cap_h = 0, cap_c = 0, grain = (double)p->grain;
    if (num(hbm, "capacity", &cap_h, 1, path, err) || num(hbm, "gpu_read", &p->read_bw[SPILL_TIER_HBM][SPILL_PROC_GPU], 1, path, err) ||
        num(hbm, "cpu_read", &p->read_bw[SPILL_TIER_HBM][SPILL_PROC_CPU], 1, path, err) ||
        num(host, "capacity", &cap_c, 1, path, err) || num(host, "gpu_read", &p->read_bw[SPILL_TIER_HOST][SPILL_PROC_GPU], 1, path, err) ||
        num(host, "cpu_read", &p->read_bw[SPILL_TIER_HOST][SPILL_PROC_CPU], 1, path, err) ||
        num(link, "h2d", &p->link_h2d, 1, path, err) || num(link, "d2h", &p->link_d2h, 1, path, err) ||
        num(link, "fault", &p->fault_bw, 0, path, err) || num(flops, "gpu", &p->flops[SPILL_PROC_GPU], 1, path, err) ||
        num(flops, "cpu", &p->flops[SPILL_PROC_CPU], 1, path, err) || num(j, "grain", &grain, 0, path, err))
        goto out;
    if (cap_h > 1e18 || cap_c > 1e18 || grain < 4096 || grain > 1e9) {
        spill_err_set(err, "%s: a capacity above 10^18 bytes or a grain outside 4 KiB..1 GB", path);
        goto out;
    }
    p->capacity[SPILL_TIER_HBM] = (uint64_t)cap_h;
    p->capacity[SPILL_TIER_HOST] = (uint64_t)cap_c;
    p->grain = (uint64_t)grain;
    if (p->read_bw[SPILL_TIER_HOST][p->has_gpu ? SPILL_PROC_GPU : SPILL_PROC_CPU] <= 0 ||
        (p->has_gpu && !p->unified && (p->read_bw[SPILL_TIER_HBM][SPILL_PROC_GPU] <= 0 || p->link_h2d <= 0))) {
        spill_err_set(err, "%s: the bandwidths the model runs on must be positive", path);
        goto out;
    }
    if (!spill_json_get(link, "fault")) p->fault_bw = p->link_h2d / 4;
    const spill_json *rates = spill_json_get(j, "cpu_rates");
    if (rates) {
        if (rates->type != SPILL_JSON_OBJECT) {
            spill_err_set(err, "%s: \"cpu_rates\" must be an object {\"FORMAT\": {\"one\": MAC/s, \"batch\": MAC/s}}", path);
            goto out;
        }
        for (size_t i = 0; i < rates->n; i++) {
            const spill_json *r = &rates->items[i];
            const char *f = rates->keys[i];
            if (p->n_cpu_rates == SPILL_CPU_RATE_FORMATS || strlen(f) >= sizeof p->cpu_rate[0].format ||
                r->type != SPILL_JSON_OBJECT) {
                spill_err_set(err, "%s: \"cpu_rates\": at most %d formats, each a name of under %d characters with "
                                   "{\"one\": MAC/s, \"batch\": MAC/s}", path, SPILL_CPU_RATE_FORMATS,
                              (int)sizeof p->cpu_rate[0].format);
                goto out;
            }
            struct spill_cpu_rate *c = &p->cpu_rate[p->n_cpu_rates];
            snprintf(c->format, sizeof c->format, "%s", f);
            if (num(r, "one", &c->one, 1, path, err) || num(r, "batch", &c->batch, 1, path, err)) goto out;
            p->n_cpu_rates++;
        }
    }
    const spill_json *disk = spill_json_get(j, "disk");
    if (disk && (disk->type != SPILL_JSON_OBJECT || num(disk, "read", &p->disk_bw, 1, path, err))) {
        if (disk->type != SPILL_JSON_OBJECT) spill_err_set(err, "%s: \"disk\" must be an object {\"read\": bytes/s}", path);
        goto out;
    }
    rc = 0;
out:
    spill_json_free(j);
    return rc;
}

void spill_profile_write(const spill_profile *p, FILE *f) {
    fprintf(f, "{\n  \"name\": ");
    spill_json_write_str(f, p->name);
    fprintf(f, ",\n  \"source\": ");
    spill_json_write_str(f, p->source);
    fprintf(f, ",\n  \"has_gpu\": %s,\n  \"unified\": %s,\n", p->has_gpu ? "true" : "false",
            p->unified ? "true" : "false");
    fprintf(f, "  \"hbm\": {\"capacity\": %llu, \"gpu_read\": %.6g, \"cpu_read\": %.6g},\n",
            (unsigned long long)p->capacity[SPILL_TIER_HBM], p->read_bw[SPILL_TIER_HBM][SPILL_PROC_GPU],
            p->read_bw[SPILL_TIER_HBM][SPILL_PROC_CPU]);
    fprintf(f, "  \"host\": {\"capacity\": %llu, \"gpu_read\": %.6g, \"cpu_read\": %.6g},\n",
            (unsigned long long)p->capacity[SPILL_TIER_HOST], p->read_bw[SPILL_TIER_HOST][SPILL_PROC_GPU],
            p->read_bw[SPILL_TIER_HOST][SPILL_PROC_CPU]);
    fprintf(f, "  \"link\": {\"h2d\": %.6g, \"d2h\": %.6g, \"fault\": %.6g},\n", p->link_h2d, p->link_d2h, p->fault_bw);
    if (p->disk_bw > 0) fprintf(f, "  \"disk\": {\"read\": %.6g},\n", p->disk_bw);
    if (p->n_cpu_rates) {
        fprintf(f, "  \"cpu_rates\": {");
        for (int i = 0; i < p->n_cpu_rates; i++) {
            fprintf(f, "%s\n    ", i ? "," : "");
            spill_json_write_str(f, p->cpu_rate[i].format);
            fprintf(f, ": {\"one\": %.6g, \"batch\": %.6g}", p->cpu_rate[i].one, p->cpu_rate[i].batch);
        }
        fprintf(f, "\n  },\n");
    }
    fprintf(f, "  \"grain\": %llu,\n  \"flops\": {\"gpu\": %.6g, \"cpu\": %.6g}\n}\n", (unsigned long long)p->grain,
            p->flops[SPILL_PROC_GPU], p->flops[SPILL_PROC_CPU]);
}

double spill_profile_cpu_rate(const spill_profile *p, const char *format, int tokens) {
    if (!format) return 0;
    for (int i = 0; i < p->n_cpu_rates; i++)
        if (!strcasecmp(p->cpu_rate[i].format, format)) {
            double one = p->cpu_rate[i].one, batch = p->cpu_rate[i].batch;
            if (tokens <= 1 || !(batch > 0)) return one;
            const double B = SPILL_CPU_RATE_BATCH;
            if (!(one > 0) || tokens >= SPILL_CPU_RATE_BATCH) return batch;
            /* seconds per weight at t tokens: a + b t through (1, 1/one) and (B, B/batch); b >= 0 */
            double b = (B / batch - 1.0 / one) / (B - 1);
            if (b < 0) b = 0;
            double a = 1.0 / one - b;
            return tokens / (a + b * tokens);
        }
    return 0;
}

/* ---- choosing a profile from what the machine says of itself ---- */

spill_platform_mode spill_platform_classify(const spill_platform_facts *f) {
    if (!f->has_gpu) return SPILL_PLATFORM_CPU;
    /* one pool: an integrated GPU, or a Grace machine whose GPU reports about all of the machine's
       memory as its own (GB10); a GH200 in CDMM mode reports its HBM only, far below the host's */
    if (f->integrated || (f->ats && f->host_bytes && f->gpu_bytes >= f->host_bytes / 10 * 9))
        return SPILL_PLATFORM_ONE_POOL;
    return f->ats ? SPILL_PLATFORM_C2C : SPILL_PLATFORM_PCIE;
}

const char *spill_platform_mode_name(spill_platform_mode m) {
    switch (m) {
    case SPILL_PLATFORM_CPU: return "CPU only";
    case SPILL_PLATFORM_PCIE: return "separate HBM, host memory over PCIe";
    case SPILL_PLATFORM_C2C: return "separate HBM, coherent host memory over NVLink-C2C";
    case SPILL_PLATFORM_ONE_POOL: return "one memory pool shared by the CPU and the GPU";
    }
    return "?";
}

int spill_profile_pick(const spill_platform_facts *f, spill_profile *out, char *why, size_t len, spill_err *err) {
    spill_platform_mode m = spill_platform_classify(f);
    double gb = (double)f->gpu_bytes / 1e9;
    const char *name;
    switch (m) {
    case SPILL_PLATFORM_CPU: name = "cpu"; break;
    case SPILL_PLATFORM_ONE_POOL: name = "gb10"; break;
    case SPILL_PLATFORM_C2C:
        /* Hopper on Grace: GH200 with 96 or 144 GB; Blackwell on Grace: GB200 (B200, 10.0) or GB300 (B300, 10.3) */
        if (f->cc_major >= 10) name = f->cc_minor >= 3 || gb > 240 ? "gb300" : "gb200";
        else name = gb > 110 ? "gh200-144" : "gh200-96";
        break;
    default: name = gb > 100 ? "h200-pcie" : "h100-pcie"; break;
    }
    if (why && m == SPILL_PLATFORM_CPU) snprintf(why, len, "no GPU: profile %s", name);
    else if (why)
        snprintf(why, len, "%s (compute capability %d.%d, %.0f GB of GPU memory): profile %s", spill_platform_mode_name(m),
                 f->cc_major, f->cc_minor, gb, name);
    return spill_profile_builtin(name, out, err);
}
