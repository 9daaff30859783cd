/* Carrying out a plan while the forward pass runs: the one hook at each layer boundary.
 *
 * spill_exec_layer(e, l) is called before layer l runs. It issues the plan's actions for that step
 * (evict the streamed layer that just ran, prefetch the one k layers ahead into a free ring slot)
 * on a side queue — on the CPU a prefetch thread that copies the layer's tensors from their home
 * into the slot — and waits only if layer l's own data is not there yet. It returns the layer's
 * weights as the forward pass should read them: the ring copy for a streamed layer, else the
 * model's own (whole in one tier, or split between two). */
#ifndef SPILL_EXEC_H
#define SPILL_EXEC_H

#include "model.h"

typedef struct spill_exec spill_exec;

typedef struct spill_exec_stats {
    double wait_s;                   /* time the forward pass waited for a prefetch */
    uint64_t read[SPILL_TIER_COUNT]; /* weight bytes read from each tier */
    uint64_t prefetched;             /* bytes copied into the ring */
    uint64_t layers_run;
} spill_exec_stats;

int spill_exec_init(spill_exec **out, const spill_model *m, spill_err *err);
void spill_exec_free(spill_exec *e);
const spill_layer *spill_exec_layer(spill_exec *e, int layer);
/* account for the reads outside the layer stack (embedding rows, head, norm) of one step */
void spill_exec_account(spill_exec *e, spill_tier tier, uint64_t bytes);
void spill_exec_get_stats(spill_exec *e, spill_exec_stats *out);

#endif
