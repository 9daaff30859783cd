/* Opening an allocator by backend name, or "auto" from the device's attributes. Kept apart from
 * the arena (alloc.c) so that the preload shim, which brings its own leaf backend, links without
 * the CUDA backends. */
#include <string.h>
#include <strings.h>

#include "spill_backend.h"
#ifdef SPILL_HAVE_CUDA
#include "spill_platform.h"
#endif

/* a GPU backend asked for by name where no GPU can be used: the name in the error, and what to use
   instead (with a GPU there, its own error stands) */
static int gpu_leaf(const char *name, int rc, spill_err *err) {
    if (!rc || !err || !strncmp(err->msg, "backend '", 9)) return rc;
#ifdef SPILL_HAVE_CUDA
    int n = 0;
    spill_err cerr;
    if (!spill_gpu_count(&n, &cerr) && n > 0) return rc;
#endif
    char msg[sizeof err->msg];
    snprintf(msg, sizeof msg, "%s", err->msg);
    return spill_err_set(err, "memory backend '%s' needs a GPU (%s); without one use host or auto", name, msg);
}

static int choose_leaf(const spill_mem_config *cfg, spill_backend *leaf, char *why, size_t why_len,
                       spill_err *err) {
    const char *name = cfg && cfg->backend && *cfg->backend ? cfg->backend : "auto";
    int dev = cfg ? cfg->device : 0;
    if (!strcasecmp(name, "host")) {
        snprintf(why, why_len, "asked for by name");
        return spill_backend_host_init(leaf, err);
    }
    if (!strcasecmp(name, "emulated")) {
        snprintf(why, why_len, "asked for by name: host memory stands in for HBM");
        return spill_backend_emulated_init(leaf, err);
    }
    if (!strcasecmp(name, "cuda-managed")) {
        snprintf(why, why_len, "asked for by name");
        return gpu_leaf(name, spill_backend_cuda_managed_init(leaf, dev, err), err);
    }
    if (!strcasecmp(name, "cuda-device")) {
        snprintf(why, why_len, "asked for by name");
        return gpu_leaf(name, spill_backend_cuda_device_init(leaf, dev, err), err);
    }
    if (!strcasecmp(name, "system")) {
#ifdef SPILL_HAVE_CUDA
        spill_gpu_info g;
        if (spill_gpu_query(dev, &g, err)) return gpu_leaf(name, -1, err);
        if (!g.pageable_memory_access)
            return spill_err_set(err, "backend 'system': GPU %d (%s) cannot read pageable host memory "
                                      "(cudaDevAttrPageableMemoryAccess = 0); use cuda-managed",
                                 dev, g.name);
        snprintf(why, why_len, "asked for by name; GPU %d reads pageable memory%s", dev,
                 g.numa_id >= 0 ? " and its memory is a NUMA node" : "; its memory is not a NUMA node, so "
                                                                     "HBM placements are refused");
        return spill_backend_system_init(leaf, g.numa_id, err);
#else
        return spill_err_set(err, "backend 'system' needs a CUDA build (this one was built without the "
                                  "CUDA toolkit); use host");
#endif
    }
    if (strcasecmp(name, "auto"))
        return spill_err_set(err, "unknown memory backend '%s' (known: auto, host, emulated, system, "
                                  "cuda-managed, cuda-device)", name);
#ifdef SPILL_HAVE_CUDA
    spill_gpu_info g;
    spill_err perr;
    if (spill_gpu_query(dev, &g, &perr)) {
        snprintf(why, why_len, "auto: %s", perr.msg);
        return spill_backend_host_init(leaf, err);
    }
    if (g.concurrent_managed_access) {
        snprintf(why, why_len, "auto: GPU %d (%s) has concurrent managed access (%s), so managed memory "
                               "can be oversubscribed and advised", dev, g.name,
                 g.uses_host_page_tables ? "ATS, hardware coherent" : g.pageable_memory_access ? "HMM" : "no HMM");
        return spill_backend_cuda_managed_init(leaf, dev, err);
    }
    snprintf(why, why_len, "auto: GPU %d (%s) has no concurrent managed access, so managed memory cannot "
                           "be oversubscribed; using device memory plus mapped host memory", dev, g.name);
    return spill_backend_cuda_device_init(leaf, dev, err);
#else
    snprintf(why, why_len, "auto: this build has no CUDA support");
    return spill_backend_host_init(leaf, err);
#endif
}

spill_mem *spill_mem_open(const spill_mem_config *cfg, spill_err *err) {
    spill_backend leaf;
    char why[1200];
    if (choose_leaf(cfg, &leaf, why, sizeof why, err)) return NULL;
    if (cfg && cfg->why) snprintf(why, sizeof why, "%s", cfg->why);
    return spill_mem_wrap(leaf, cfg, why, err);
}

spill_mem *spill_mem_create(const char *backend, spill_err *err) {
    spill_mem_config cfg = {0};
    cfg.backend = backend;
    return spill_mem_open(&cfg, err);
}

