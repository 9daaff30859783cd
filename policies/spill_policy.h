/* policies/: decides where each region of a model lives. Pure: plain data in, a plan out; no
 * memory is allocated for the regions and nothing touches a device, so policies are testable
 * with no memory at all. The runtime carries a plan out through alloc/. */
#ifndef SPILL_POLICY_H
#define SPILL_POLICY_H

#include "spill_common.h"

typedef enum spill_region_kind {
    SPILL_REGION_WEIGHT,
    SPILL_REGION_KV,
    SPILL_REGION_ACTIVATION,
    SPILL_REGION_OTHER,
} spill_region_kind;

typedef struct spill_region {
    const char *name;
    uint64_t bytes;
    int layer; /* -1 for regions outside the layer stack */
    spill_region_kind kind;
    double reads_per_step; /* how often one decode step reads it (1 for a weight) */
} spill_region;

typedef struct spill_region_plan {
    spill_tier tier;
    unsigned advice; /* SPILL_PLACE_* */
    int in_place;    /* weights: read from the mapped file where it already is, without a copy */
} spill_region_plan;

typedef struct spill_plan_params {
    const char *policy;          /* "host" (more arrive with the planner) */
    uint64_t budget[SPILL_TIER_COUNT]; /* bytes per tier, 0 = unlimited */
    int map_weights;             /* weights may be read in place from a mapped file */
} spill_plan_params;

typedef struct spill_plan {
    char policy[32];
    int n;
    spill_region_plan *region; /* (n) one per input region, same order */
    uint64_t bytes[SPILL_TIER_COUNT];
} spill_plan;

/* Names of the policies this build knows, NULL-terminated. */
extern const char *const spill_policy_names[];

int spill_plan_make(const spill_region *regions, int n, const spill_plan_params *p, spill_plan *out,
                    spill_err *err);
void spill_plan_free(spill_plan *plan);

#endif
