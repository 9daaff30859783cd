/* spill-info: what this machine offers spill — NUMA nodes, GPUs, the memory backend that "auto"
 * would choose and why, and the SPILL_* options in effect. */
#include "spill_alloc.h"
#include "cli.h"
#include "platform.h"
#include "spill_topology.h"

int main(int argc, char **argv) {
    spill_info_opts io;
    spill_options env;
    spill_err err;
    spill_options_defaults(&env);
    int rc = spill_options_from_env(&env, stderr, &err) ? -1 : spill_info_cli(&io, &env, argc, argv, stdout, &err);
    if (rc) {
        if (rc < 0) fprintf(stderr, "spill-info: %s\n", err.msg);
        return rc < 0 ? 2 : 0;
    }
    const spill_options o = io.env;
    int json = io.json, options = io.options;
    if (options) {
        spill_options_print(&o, stdout);
        return 0;
    }
    spill_topology t;
    if (spill_topology_read(&t, &err)) {
        fprintf(stderr, "spill-info: %s\n", err.msg);
        return 1;
    }
    spill_mem_config cfg = {0};
    cfg.backend = o.backend;
    spill_mem *m = spill_mem_open(&cfg, &err);
    /* the platform as the planner sees it, and the profile --profile auto takes */
    spill_platform_facts facts;
    spill_platform_read(&facts, NULL, 0);
    spill_profile prof;
    char why[256] = "", extra[1024];
    spill_err perr;
    if (spill_profile_pick(&facts, &prof, why, sizeof why, &perr)) snprintf(why, sizeof why, "%.250s", perr.msg);
    const char *mode = spill_platform_mode_name(spill_platform_classify(&facts));
    if (json) {
        char mode_j[128], why_j[256];
        snprintf(mode_j, sizeof mode_j, "%s", mode);
        snprintf(why_j, sizeof why_j, "%s", why);
        for (char *c = why_j; *c; c++) if (*c == '"' || *c == '\\') *c = '\'';
        snprintf(extra, sizeof extra, "\"platform\": \"%s\", \"profile\": \"%s\", \"profile_reason\": \"%s\"", mode_j,
                 prof.name, why_j);
        spill_topology_print_json(&t, extra, stdout);
    } else {
        spill_topology_print(&t, stdout);
        printf("\nplatform: %s\nprofile for --profile auto: %s (%s)\n", mode, prof.name, why);
        if (m) printf("memory backend: %s (%s)\n", spill_mem_backend_name(m), spill_mem_backend_reason(m));
    }
    if (!m) {
        fprintf(stderr, "spill-info: backend '%s': %s\n", o.backend, err.msg);
        return 1;
    }
    spill_mem_free(m);
    return 0;
}
