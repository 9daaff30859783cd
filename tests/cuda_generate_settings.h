/* The settings test_cuda_generate (label gpu) runs `spill-generate --device cuda` with on stories260K,
 * shared with test_cuda_forward_emulated, which runs the same engine at the same settings on the CPU
 * with the stand-in runtime. Issue 21, defect 3: the GPU test ran at the default context (2048) and
 * batch (32), whose work buffers alone (4.1 MiB) did not fit its 3 MiB budget, while the emulated test
 * only ever tried 64 MiB and 2.5 MiB at context 64; now one table serves both, so a budget that the
 * engine refuses fails here on the CPU first.
 *
 * The small budgets are the smallest, in whole MiB, that each policy opens at with these settings
 * (found with the emulated test; the planner charges the work buffers and a 2 MiB chunk per class of
 * HBM region): host and fault at 3M (no weights in HBM); pin at 7M splits rows between HBM and host
 * memory (0.9 MiB of the 1.1 MiB of weights in HBM); stream at 9M holds its 3-slot ring (at 7M it is
 * refused); auto at 9M chooses pin with everything in HBM. */
#ifndef SPILL_CUDA_GENERATE_SETTINGS_H
#define SPILL_CUDA_GENERATE_SETTINGS_H

#define SPILL_GEN_CTX 64
#define SPILL_GEN_BATCH 8
#define SPILL_GEN_PROFILE "h100-pcie"
#define SPILL_GEN_ARGS "-c 64 -b 8 --profile h100-pcie"

typedef struct spill_gen_case {
    const char *policy;
    const char *budget; /* --hbm-budget */
} spill_gen_case;

static const spill_gen_case spill_gen_stories_cases[] = {
    {"host", "64M"}, {"host", "3M"},   {"fault", "64M"}, {"fault", "3M"}, {"pin", "64M"},
    {"pin", "7M"},   {"stream", "64M"}, {"stream", "9M"}, {"auto", "64M"}, {"auto", "9M"},
};
#define SPILL_GEN_N_STORIES_CASES ((int)(sizeof spill_gen_stories_cases / sizeof *spill_gen_stories_cases))

#endif
