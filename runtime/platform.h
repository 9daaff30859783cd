/* The machine as the planner sees it: the facts the driver gives (runtime/platform.c), and a
 * profile by name where "auto" picks it from those facts. */
#ifndef SPILL_RUNTIME_PLATFORM_H
#define SPILL_RUNTIME_PLATFORM_H

#include "spill_policy.h"

/* GPU 0's attributes and the machine's memory; no GPU is a fact (has_gpu 0), with the driver's reason
 * in note. Never fails. */
int spill_platform_read(spill_platform_facts *f, char *note, size_t len);
/* A built-in profile, or with "auto" (or NULL) the one spill_profile_pick chooses for this machine;
 * why says which and why. */
int spill_profile_named(const char *name, spill_profile *out, char *why, size_t len, spill_err *err);

#endif
