/* What this machine says of itself, for choosing a profile (spill_profile_pick in policies/): the
 * driver's attributes of GPU 0 and the machine's memory. */
#include "platform.h"

#include <unistd.h>

#include "spill_platform.h"

int spill_platform_read(spill_platform_facts *f, char *note, size_t len) {
    memset(f, 0, sizeof *f);
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    if (pages > 0 && page > 0) f->host_bytes = (uint64_t)pages * (uint64_t)page;
    spill_gpu_info g;
    spill_err err;
    if (spill_gpu_query(0, &g, &err)) {
        if (note) snprintf(note, len, "%s", err.msg);
        return 0; /* no GPU is a fact, not an error */
    }
    f->has_gpu = 1;
    f->cc_major = g.cc_major;
    f->cc_minor = g.cc_minor;
    f->ats = g.uses_host_page_tables > 0;
    f->integrated = g.integrated > 0;
    f->gpu_bytes = g.total_mem;
    if (note) snprintf(note, len, "GPU 0: %s", g.name);
    return 0;
}

int spill_profile_named(const char *name, spill_profile *out, char *why, size_t len, spill_err *err) {
    if (name && strcmp(name, "auto")) {
        if (why) snprintf(why, len, "named");
        return spill_profile_builtin(name, out, err);
    }
    spill_platform_facts f;
    spill_platform_read(&f, NULL, 0);
    return spill_profile_pick(&f, out, why, len, err);
}
