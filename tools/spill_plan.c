/* spill-plan: where every region of a model would live under each policy, and the speed the cost
 * model predicts — from a GGUF header or a config.json, without reading a single weight, so that a
 * deployment can be planned before anything is downloaded. */
#include <strings.h>
#include <sys/stat.h>

#include "cli.h"
#include "regions.h"
#include "spill_alloc.h"
#include "spill_json.h"
#include "platform.h"
#include "spill_policy.h"

static double gib(double b) { return b / (1024.0 * 1024.0 * 1024.0); }

typedef struct result {
    const char *policy;
    int ok[2];
    spill_plan plan[2]; /* [0] decode, [1] prefill */
    char err[2][1024];
} result;

static uint64_t host_limit; /* --host-limit: past it, layers are read from disk */

static void run_policy(const char *policy, const spill_region *r, int n, const spill_profile *prof, uint64_t budget,
                       int batch, int prompt, int map, result *out) {
    memset(out, 0, sizeof *out);
    out->policy = policy;
    for (int ph = 0; ph < 2; ph++) {
        spill_plan_params p = {policy, {budget, host_limit}, map, prof, {ph, ph ? prompt : batch, NULL, 1}};
        spill_err err;
        out->ok[ph] = !spill_plan_make(r, n, &p, &out->plan[ph], &err);
        if (!out->ok[ph]) snprintf(out->err[ph], sizeof out->err[ph], "%s", err.msg);
    }
}

static void print_regions(const spill_region *r, const spill_plan *plan, FILE *f) {
    fprintf(f, "%-12s %12s %-6s %12s  %-28s %s\n", "region", "MiB", "tier", "in HBM MiB", "advice", "prefetched");
    for (int i = 0; i < plan->n; i++) {
        const spill_region_plan *rp = &plan->region[i];
        if (!r[i].bytes) continue;
        char adv[64], when[48] = "-";
        spill_advice_str(rp->tier, rp->advice, adv, sizeof adv);
        if (rp->streamed) snprintf(when, sizeof when, "before layer %d (ring)", rp->prefetch_at);
        else if (rp->tier == SPILL_TIER_HBM) snprintf(when, sizeof when, "at load");
        else if (rp->on_disk) snprintf(when, sizeof when, "every step, %d ahead (disk)", plan->disk_ahead);
        fprintf(f, "%-12s %12.1f %-6s %12.1f  %-28s %s\n", r[i].name, r[i].bytes / 1048576.0,
                rp->streamed ? "ring" : rp->on_disk ? "disk" : rp->tier == SPILL_TIER_HBM ? "hbm" : "host",
                rp->hbm_bytes / 1048576.0, adv, when);
    }
}

static void json_plan(const spill_plan *p, FILE *f) {
    fprintf(f, "{\"chosen\": \"%s\", \"tok_s\": %.6g, \"step_s\": %.6g, \"hbm_bytes\": %llu, \"host_bytes\": %llu, "
               "\"read_hbm\": %.6g, \"read_host\": %.6g, \"moved\": %.6g, \"ring_slots\": %d, \"ring_ahead\": %d, "
               "\"ring_slot_bytes\": %llu, \"disk_bytes\": %llu, \"disk_slots\": %d}",
            p->chosen, p->predicted.tok_s, p->predicted.step_s, (unsigned long long)p->bytes[SPILL_TIER_HBM],
            (unsigned long long)p->bytes[SPILL_TIER_HOST], p->predicted.read[SPILL_TIER_HBM],
            p->predicted.read[SPILL_TIER_HOST], p->predicted.moved, p->ring_slots, p->ring_ahead,
            (unsigned long long)p->ring_slot_bytes, (unsigned long long)p->disk_bytes, p->disk_slots);
}

int main(int argc, char **argv) {
    spill_plan_opts po;
    spill_options env;
    spill_err err = {{0}};
    spill_options_defaults(&env);
    int prc = spill_options_from_env(&env, stderr, &err) ? -1 : spill_plan_cli(&po, &env, argc, argv, stdout, &err);
    if (prc) {
        if (prc < 0) fprintf(stderr, "spill-plan: %s\n", err.msg);
        return prc < 0 ? 2 : 0;
    }
    const char *model = po.model, *config = po.config, *dtype = po.dtype, *profile = po.profile;
    const char *profile_file = po.profile_file, *policy = po.policy;
    int ctx = po.ctx, batch = po.batch, prompt = po.prompt, json = po.json;
    const spill_options o = po.env;
    spill_profile prof;
    char why[256] = "";
    if (profile_file ? spill_profile_load(profile_file, &prof, &err) : spill_profile_named(profile, &prof, why, sizeof why, &err)) {
        fprintf(stderr, "spill-plan: %s\n", err.msg);
        return 2;
    }
    uint64_t budget = o.hbm_budget;
    host_limit = o.host_limit;
    if (!po.budget_set && !budget) {
        uint64_t cap = prof.capacity[SPILL_TIER_HBM];
        budget = cap > o.hbm_reserve ? cap - o.hbm_reserve : 0;
    }

    spill_shape s;
    spill_gguf g;
    memset(&g, 0, sizeof g); /* closing a zeroed one is a no-op */
    char cfg[4096];
    struct stat st;
    if (model && !stat(model, &st) && S_ISDIR(st.st_mode)) {
        snprintf(cfg, sizeof cfg, "%s/config.json", model);
        config = cfg;
        model = NULL;
    }
    if (model) {
        if (spill_gguf_open(&g, model, &err)) {
            fprintf(stderr, "spill-plan: %s\n", err.msg);
            return 1;
        }
        if (spill_shape_from_gguf(&g, &s, &err)) {
            fprintf(stderr, "spill-plan: %s\n", err.msg);
            spill_gguf_close(&g);
            return 1;
        }
    } else if (spill_shape_from_config(config, dtype, &s, &err)) {
        fprintf(stderr, "spill-plan: %s\n", err.msg);
        return 1;
    }
    if (!ctx) ctx = s.hp.ctx_train;
    spill_dtype kv_type;
    SPILL_ASSERT(spill_kv_type_parse(o.kv_type, &kv_type) == 0); /* the option table checked it */
    s.kv_elem_bytes = (int)spill_kv_type_bytes(kv_type);
    spill_region *r = NULL;
    int n = 0;
    if (spill_shape_regions(&s, ctx, batch, &r, &n, &err)) {
        fprintf(stderr, "spill-plan: %s\n", err.msg);
        spill_shape_free(&s);
        spill_gguf_close(&g);
        return 1;
    }
    const char *all[] = {"fault", "pin", "stream", "auto"};
    int np = strcasecmp(policy, "all") ? 1 : 4;
    result res[4];
    for (int i = 0; i < np; i++) run_policy(np == 1 ? policy : all[i], r, n, &prof, budget, batch, prompt, 1, &res[i]);
    const result *shown = np == 1 ? &res[0] : &res[3];
    uint64_t kv = spill_shape_kv_bytes_per_token(&s) * (uint64_t)ctx * (uint64_t)batch;
    double weights = (double)spill_shape_weight_bytes(&s);
    int rc = 0;

    if (json) {
        printf("{\n  \"model\": {\"path\": ");
        spill_json_write_str(stdout, model ? model : config);
        printf(", \"arch\": ");
        spill_json_write_str(stdout, s.arch);
        printf(", \"dtype\": \"%s\", \"layers\": %d, \"weight_bytes\": %.0f, \"kv_bytes\": %llu, \"kv_type\": \"%s\", "
               "\"ctx\": %d, \"batch\": %d},\n",
               s.dtype, s.hp.n_layers, weights, (unsigned long long)kv, spill_kv_type_name(kv_type), ctx, batch);
        printf("  \"profile\": ");
        spill_json_write_str(stdout, prof.name);
        printf(",\n  \"unified\": %s", prof.unified ? "true" : "false");
        printf(",\n  \"hbm_budget\": %llu,\n  \"prompt_tokens\": %d,\n  \"predictions_are\": \"cost-model predictions, "
               "not measurements\",\n  \"policies\": [",
               (unsigned long long)budget, prompt);
        for (int i = 0; i < np; i++) {
            printf("%s\n    {\"policy\": \"%s\"", i ? "," : "", res[i].policy);
            const char *ph[2] = {"decode", "prefill"};
            for (int k = 0; k < 2; k++) {
                printf(", \"%s\": ", ph[k]);
                if (res[i].ok[k]) json_plan(&res[i].plan[k], stdout);
                else {
                    printf("{\"error\": ");
                    spill_json_write_str(stdout, res[i].err[k]);
                    printf("}");
                }
            }
            printf("}");
        }
        printf("\n  ],\n  \"plan\": {\"policy\": \"%s\", \"phase\": \"decode\", \"regions\": [", shown->policy);
        if (shown->ok[0])
            for (int i = 0; i < n; i++) {
                const spill_region_plan *rp = &shown->plan[0].region[i];
                char adv[64];
                spill_advice_str(rp->tier, rp->advice, adv, sizeof adv);
                printf("%s\n    {\"name\": \"%s\", \"bytes\": %llu, \"tier\": \"%s\", \"hbm_bytes\": %llu, \"advice\": \"%s\", "
                       "\"streamed\": %s, \"on_disk\": %s, \"prefetch_at\": %d}",
                       i ? "," : "", r[i].name, (unsigned long long)r[i].bytes, spill_tier_name(rp->tier),
                       (unsigned long long)rp->hbm_bytes, adv, rp->streamed ? "true" : "false",
                       rp->on_disk ? "true" : "false", rp->prefetch_at);
            }
        printf("\n  ]}\n}\n");
    } else {
        printf("model:   %s (%s, %s): %d layers, %.2f GiB of weights; KV cache (%s) %.2f GiB for %d tokens x %d sequence%s\n",
               model ? model : config, s.arch, s.dtype, s.hp.n_layers, gib(weights), spill_kv_type_name(kv_type),
               gib((double)kv), ctx, batch, batch == 1 ? "" : "s");
        printf("profile: %s (%s); HBM budget %.2f GiB\n", prof.name, prof.source, gib((double)budget));
        if (!strcmp(profile, "auto") && !profile_file) printf("         chosen for this machine: %s\n", why);
        if (prof.unified)
            printf("         one memory pool shared by the CPU and the GPU: there is no HBM to place anything in,\n"
                   "         so every policy reads every region where it lies, with no copies and no ring\n");
        printf("\npredicted by the cost model (not measured): decode at batch %d, prefill of %d tokens\n", batch, prompt);
        printf("%-8s %-8s %14s %15s %10s %10s %8s\n", "policy", "chooses", "decode tok/s", "prefill tok/s", "HBM GiB",
               "host GiB", "ring");
        for (int i = 0; i < np; i++) {
            if (!res[i].ok[0]) {
                printf("%-8s error: %s\n", res[i].policy, res[i].err[0]);
                continue;
            }
            const spill_plan *d = &res[i].plan[0];
            char pre[32], ring[32] = "-";
            if (res[i].ok[1]) snprintf(pre, sizeof pre, "%.1f", res[i].plan[1].predicted.tok_s);
            else snprintf(pre, sizeof pre, "error");
            if (d->ring_slots) snprintf(ring, sizeof ring, "%dx%.0fM", d->ring_slots, d->ring_slot_bytes / 1048576.0);
            printf("%-8s %-8s %14.2f %15s %10.2f %10.2f %8s\n", res[i].policy,
                   res[i].ok[1] && strcmp(d->chosen, res[i].plan[1].chosen) ? "per phase" : d->chosen, d->predicted.tok_s,
                   pre, gib((double)d->bytes[SPILL_TIER_HBM]), gib((double)d->bytes[SPILL_TIER_HOST]), ring);
        }
        if (np == 4 && res[3].ok[0] && res[3].ok[1])
            printf("auto chooses %s for decode and %s for prefill\n", res[3].plan[0].chosen, res[3].plan[1].chosen);
        /* batched decode: B sequences per step read each weight once, so tok/s grows with B until
           compute or the KV cache's reads take over */
        printf("\nbatched decode, %s, predicted (not measured), tok/s over all sequences:", shown->policy);
        for (int B = 1; B <= 64; B *= 2) {
            spill_region *rb = NULL;
            int nb = 0;
            spill_plan pb;
            spill_plan_params pp = {shown->policy, {budget, host_limit}, 1, &prof, {0, B, NULL, 1}};
            if (spill_shape_regions(&s, ctx, B, &rb, &nb, &err) || spill_plan_make(rb, nb, &pp, &pb, &err)) {
                printf(" B=%d: does not fit", B);
            } else {
                printf(" B=%d: %.1f", B, pb.predicted.tok_s);
                spill_plan_free(&pb);
            }
            spill_regions_free(rb);
        }
        printf("\n");
        if (shown->ok[0]) {
            printf("\nplan: %s, decode\n", shown->policy);
            print_regions(r, &shown->plan[0], stdout);
            printf("total: hbm %.2f GiB, host %.2f GiB", gib((double)shown->plan[0].bytes[SPILL_TIER_HBM]),
                   gib((double)shown->plan[0].bytes[SPILL_TIER_HOST]));
            if (shown->plan[0].disk_slots)
                printf(", disk %.2f GiB read every step into %d host slots of %.1f MiB (%.2f GB/s assumed for the disk)",
                       gib((double)shown->plan[0].disk_bytes), shown->plan[0].disk_slots,
                       shown->plan[0].disk_slot_bytes / 1048576.0, prof.disk_bw / 1e9);
            printf("\n");
        }
    }
    if (np == 1 && !shown->ok[0]) {
        fprintf(stderr, "spill-plan: %s\n", shown->err[0]);
        rc = 1;
    }
    for (int i = 0; i < np; i++)
        for (int k = 0; k < 2; k++)
            if (res[i].ok[k]) spill_plan_free(&res[i].plan[k]);
    spill_regions_free(r);
    spill_shape_free(&s);
    spill_gguf_close(&g);
    return rc;
}
