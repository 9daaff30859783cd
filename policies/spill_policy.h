/* policies/: decides where each region of a model lives and what moves when. Pure: plain data in,
 * a plan out; no memory is allocated for the regions and nothing touches a device, so policies
 * are testable with no memory at all. The runtime carries a plan out through alloc/.
 *
 * Policies:
 *   host    everything in host memory, weights read in place (the CPU run; the reference)
 *   fault   no hints at all: what a bare cudaMallocManaged gives (the baseline to beat)
 *   pin     fill the HBM budget by benefit per byte; the rest stays in host memory, read in place.
 *           Regions of equal benefit share what is left as the same fraction each, so that every
 *           layer reads part from HBM and part from host memory at once (docs/policies.md)
 *   stream  a ring of N HBM slots; layer i+k is prefetched while layer i runs
 *   auto    the cost model picks, per phase, between a pinned core read in place around it and a
 *           pinned core with the rest streamed through a ring
 * On a profile with one memory pool (GB10) every policy but host plans the same: everything read in
 * place by the GPU, no copies, no ring (chosen "one-pool").
 * Every time in a plan is a prediction of the cost model (cost.c), never a measurement. */
#ifndef SPILL_POLICY_H
#define SPILL_POLICY_H

#include "spill_common.h"

#ifdef __cplusplus
extern "C" {
#endif

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
    double reads_per_step; /* how much of it one decode step at batch 1 reads, in units of its size
                              (1 for a weight matrix; ~0 for an embedding table, read one row at a time) */
    uint64_t params;       /* multiply-adds per token: a weight's element count; a KV cache's attention
                              (scores and value sums of every query head over the whole context); else 0 */
    const char *format;    /* the format most of its multiply-adds are in ("Q4_1", "BF16", ...) as the device
                              holds them (a KV cache: "F32", attention's arithmetic), for the CPU's rate per
                              format; NULL: unknown */
} spill_region;

typedef enum spill_proc { SPILL_PROC_GPU, SPILL_PROC_CPU, SPILL_PROC_COUNT } spill_proc;

#define SPILL_CPU_RATE_FORMATS 12
#define SPILL_CPU_RATE_BATCH 32

/* A machine, as the cost model sees it. Bandwidths in bytes/s, compute in FLOP/s, both the
 * achievable figures (docs/policies.md cites where each built-in number comes from). */
typedef struct spill_profile {
    char name[64];
    char source[256];
    int has_gpu;                                 /* 0: everything runs on the CPU */
    int unified;                                 /* one memory pool the CPU and the GPU share (GB10):
                                                    no HBM tier; every region is read where it lies */
    uint64_t capacity[SPILL_TIER_COUNT];         /* bytes */
    double read_bw[SPILL_TIER_COUNT][SPILL_PROC_COUNT]; /* processor p reading tier t in place */
    double link_h2d, link_d2h;                   /* bulk copies and prefetch (DMA) */
    double fault_bw;                             /* migration driven by GPU page faults */
    uint64_t grain;                              /* migration grain, bytes */
    double disk_bw;                              /* sequential reads of the model file with O_DIRECT: the
                                                    third tier (0: unknown, no disk plans costed) */
    double flops[SPILL_PROC_COUNT];              /* dense 16-bit multiply-add throughput */
    /* The CPU's multiply-adds per second in spill's own matmul, per weight format, over weights read
       from memory: at 1 token (decode) and at SPILL_CPU_RATE_BATCH tokens (prefill). Measured by
       spill-bench tiers; a region whose format is here is costed at its rate rather than at flops
       (none in the built-in profiles). On the CPU decode is bound by these rates more than by the
       memory's. */
    struct spill_cpu_rate {
        char format[12];
        double one, batch;
    } cpu_rate[SPILL_CPU_RATE_FORMATS];
    int n_cpu_rates;
} spill_profile;

/* Built-in profiles: gh200-96, gh200-144, gb200, gb300, gb10, h100-pcie, h200-pcie, cpu.
 * NULL-terminated names. */
extern const char *const spill_profile_names[];
int spill_profile_builtin(const char *name, spill_profile *out, spill_err *err);

/* What a machine says of itself, from device attributes (the runtime asks the driver; policies/
 * only decides): the facts that pick a built-in profile. */
typedef struct spill_platform_facts {
    int has_gpu;
    int cc_major, cc_minor;   /* compute capability: 9.0 Hopper, 10.0 B200, 10.3 B300, 12.x GB10 / RTX */
    int ats;                  /* the GPU reads system memory through the CPU's page tables (Grace) */
    int integrated;           /* cudaDevAttrIntegrated */
    uint64_t gpu_bytes;       /* the GPU's memory as the driver reports it */
    uint64_t host_bytes;      /* the machine's memory */
} spill_platform_facts;

typedef enum spill_platform_mode {
    SPILL_PLATFORM_CPU,       /* no GPU */
    SPILL_PLATFORM_PCIE,      /* separate HBM, host memory over PCIe (pinned or managed memory) */
    SPILL_PLATFORM_C2C,       /* separate HBM, coherent host memory over NVLink-C2C (GH200, GB200, GB300) */
    SPILL_PLATFORM_ONE_POOL,  /* one pool the CPU and the GPU share (GB10 / DGX Spark) */
} spill_platform_mode;

spill_platform_mode spill_platform_classify(const spill_platform_facts *f);
const char *spill_platform_mode_name(spill_platform_mode m);
/* The built-in profile for these facts ("auto"), and one line saying why into why[len]. */
int spill_profile_pick(const spill_platform_facts *f, spill_profile *out, char *why, size_t len, spill_err *err);
/* A profile from JSON (spill-bench --profile-out writes one; docs/policies.md has the format). */
int spill_profile_load(const char *path, spill_profile *out, spill_err *err);
/* Write a profile as JSON that spill_profile_load reads back. */
void spill_profile_write(const spill_profile *p, FILE *f);
/* The CPU's multiply-add rate for weights of `format` at `tokens` tokens; 0 when the profile has none
 * for it. A matmul's time per weight is taken as a + b * tokens, a line through the two measured points
 * (`one` at 1 token, `batch` at 32): the first token pays for reading and decoding the weights, each
 * further one for its products. So 1 token gets `one`, 32 and more get `batch`, and the few tokens of
 * a speculative verification or a small server batch what lies between (docs/policies.md). */
double spill_profile_cpu_rate(const spill_profile *p, const char *format, int tokens);

typedef struct spill_phase {
    int prefill; /* 1: a prompt of `tokens` tokens in one step; 0: one decode step of `tokens` sequences */
    int tokens;
    const uint8_t *skip; /* (n_layers) or NULL: layers the step leaves out (a layer-skip draft): their
                            weights and KV are not read, their streamed copies not made */
    double head_share;   /* 0 or 1: the whole output head; else the share of its rows the step reads (a
                            draft's reduced vocabulary, --draft-vocab) */
} spill_phase;

typedef enum spill_action_kind {
    SPILL_ACT_PREFETCH, /* bring the region into `tier` (HBM: into its ring slot) */
    SPILL_ACT_EVICT,    /* let it go back to `tier` (its home; read-only weights need no copy back) */
    SPILL_ACT_DISCARD,  /* its contents are dead */
} spill_action_kind;

typedef struct spill_action {
    spill_action_kind kind;
    int region;
    spill_tier tier;
    int slot; /* ring slot for streamed regions, else -1 */
} spill_action;

/* What to do at a layer boundary: before layer `layer` runs. */
typedef struct spill_step {
    int n;
    spill_action *act;
} spill_step;

typedef struct spill_region_plan {
    spill_tier tier;  /* where it lives (its home); HOST when only part of it is in HBM */
    uint64_t hbm_bytes; /* how much of it is held in HBM: all of it, none, or (pin) a leading part,
                           whose reads then run beside the reads of the rest in host memory */
    unsigned advice;  /* SPILL_PLACE_* */
    int in_place;     /* weights: read from the mapped file where it already is, without a copy */
    int streamed;     /* runs from an HBM ring slot, prefetched ahead of use */
    int prefetch_at;  /* streamed: the layer step that prefetches it; -1 otherwise */
    int on_disk;      /* a layer's weights that fit neither HBM nor the host budget: read from the model
                         file into a host ring slot every step, a few layers ahead (tier is HOST) */
} spill_region_plan;

typedef struct spill_plan_params {
    const char *policy;                /* see above; NULL = host */
    uint64_t budget[SPILL_TIER_COUNT]; /* bytes per tier. HBM: 0 = no HBM. HOST: 0 = no limit; else the
                                          host memory the weights left out of HBM may take, the mapped
                                          file's pages included, beside the KV cache: layers beyond it are
                                          read from the file (the disk tier, on_disk) */
    int map_weights;                   /* weights may be read in place from a mapped file */
    const spill_profile *profile;      /* NULL = the built-in "cpu" profile */
    spill_phase phase;                 /* tokens 0 = decode at batch 1 */
} spill_plan_params;

typedef struct spill_prediction {
    double step_s;     /* predicted seconds per step */
    double tok_s;      /* predicted tokens per second (tokens / step_s) */
    double read[SPILL_TIER_COUNT]; /* bytes read per step from each tier */
    double moved;      /* bytes migrated or copied per step */
} spill_prediction;

typedef struct spill_plan {
    char policy[32];      /* what was asked for */
    char chosen[32];      /* auto: what it chose (pin or stream); else the same */
    int n;
    spill_region_plan *region; /* (n) one per input region, same order */
    uint64_t bytes[SPILL_TIER_COUNT]; /* resident bytes per tier, ring included */
    int n_layers;
    spill_step *steps;    /* (n_layers) actions issued before each layer */
    int ring_slots, ring_ahead;
    uint64_t ring_slot_bytes;
    /* the disk tier: slots in host memory that layers on disk are read into, ahead of use */
    int disk_slots, disk_ahead;
    uint64_t disk_slot_bytes;
    uint64_t disk_bytes; /* weight bytes read from disk per step */
    spill_phase phase;
    spill_prediction predicted; /* the cost model's, for `phase` */
} spill_plan;

/* Names of the policies this build knows, NULL-terminated. */
extern const char *const spill_policy_names[];

int spill_plan_make(const spill_region *regions, int n, const spill_plan_params *p, spill_plan *out,
                    spill_err *err);
void spill_plan_free(spill_plan *plan);

/* The cost model: predicted time of one step of `phase` under `plan` on `profile`. */
spill_prediction spill_cost_predict(const spill_region *regions, const spill_plan *plan, const spill_profile *profile,
                                    spill_phase phase);

/* Self-speculative decoding: predicted tokens per second when each round runs k draft steps (the
 * layers in skip left out, head_share of the head's rows read: 1 for all) and one verification step of
 * k+1 tokens, and yields tau tokens on average (1 <= tau <= k+1; measured, or (1 - a^(k+1)) / (1 - a)
 * for a per-token acceptance a). */
double spill_cost_spec_tok_s(const spill_region *regions, const spill_plan *plan, const spill_profile *profile,
                             const uint8_t *skip, double head_share, int k, double tau);

/* Pacing a server's steps to a target time (spill-server --itl-target, policies/pace.c): a step of n
 * tokens is predicted to take a + b n seconds, fitted over the steps seen with the older ones weighing
 * less. Zero-initialized: nothing seen. */
typedef struct spill_pace {
    double s0, s1, s2, sy, sxy; /* the steps' weighted count, sums of n, n^2, seconds and n * seconds */
} spill_pace;
/* one step of `tokens` tokens that took `seconds` (ignored unless tokens >= 1 and seconds finite, >= 0) */
void spill_pace_add(spill_pace *p, int tokens, double seconds);
/* predicted seconds of a step of `tokens` tokens (0 when nothing was seen) */
double spill_pace_predict(const spill_pace *p, int tokens);
/* the most tokens (1..max_tokens) a step may hold to be predicted within target_s; 1 when nothing was
 * seen yet or when even one token is predicted over it */
int spill_pace_cap(const spill_pace *p, double target_s, int max_tokens);

const char *spill_action_name(spill_action_kind k);
/* "hbm gpu-reads read-mostly" */
void spill_advice_str(spill_tier tier, unsigned advice, char *buf, size_t len);

#ifdef __cplusplus
}
#endif
#endif
