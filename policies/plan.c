#include "spill_policy.h"

#include <strings.h>

const char *const spill_policy_names[] = {"host", NULL};

/* host: everything in host memory; weights read in place from the file when allowed. This is
 * the CPU run's plan and the reference every other policy must match token for token. */
static int plan_host(const spill_region *r, int n, const spill_plan_params *p, spill_plan *out, spill_err *err) {
    for (int i = 0; i < n; i++) {
        spill_region_plan *rp = &out->region[i];
        rp->tier = SPILL_TIER_HOST;
        rp->advice = SPILL_PLACE_CPU_READS | (r[i].kind == SPILL_REGION_WEIGHT ? SPILL_PLACE_READ_MOSTLY : 0);
        rp->in_place = r[i].kind == SPILL_REGION_WEIGHT && p->map_weights;
        out->bytes[SPILL_TIER_HOST] += r[i].bytes;
    }
    uint64_t lim = p->budget[SPILL_TIER_HOST];
    if (lim && out->bytes[SPILL_TIER_HOST] > lim)
        return spill_err_set(err, "the model needs %llu bytes of host memory but the host budget is %llu",
                             (unsigned long long)out->bytes[SPILL_TIER_HOST], (unsigned long long)lim);
    return 0;
}

int spill_plan_make(const spill_region *regions, int n, const spill_plan_params *p, spill_plan *out,
                    spill_err *err) {
    memset(out, 0, sizeof *out);
    const char *name = p->policy && *p->policy ? p->policy : "host";
    if (n < 0) return spill_err_set(err, "plan: %d regions", n);
    out->region = calloc(n ? (size_t)n : 1, sizeof *out->region);
    if (!out->region) return spill_err_set(err, "out of memory planning %d regions", n);
    out->n = n;
    snprintf(out->policy, sizeof out->policy, "%s", name);
    int rc;
    if (!strcasecmp(name, "host")) {
        rc = plan_host(regions, n, p, out, err);
    } else {
        char known[128] = "";
        for (int i = 0; spill_policy_names[i]; i++) {
            strcat(known, i ? ", " : "");
            strcat(known, spill_policy_names[i]);
        }
        rc = spill_err_set(err, "--policy '%s' is not known (this build has: %s)", name, known);
    }
    if (rc) spill_plan_free(out);
    return rc;
}

void spill_plan_free(spill_plan *plan) {
    free(plan->region);
    memset(plan, 0, sizeof *plan);
}
