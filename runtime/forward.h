/* The CPU device (internal to runtime/): its placer (place_cpu.c) and its state and forward pass
 * (forward.c). The engine reaches both through device.h. */
#ifndef SPILL_FORWARD_H
#define SPILL_FORWARD_H

#include "device.h"

/* The CPU's placer: weights in their file's types (vectors F32), 64-byte aligned, read in place where
 * the plan says; the ring filled by a prefetch thread. n_slots 0: no ring, no thread. */
extern const spill_placer_iface spill_cpu_placer;
int spill_cpu_placer_open(spill_placer *out, int n_slots, spill_err *err);
/* stops the prefetch thread after its queue ran; a zeroed one is a no-op */
void spill_cpu_placer_close(spill_placer *p);

#endif
