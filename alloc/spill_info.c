/* spill-info: what this machine offers spill — NUMA nodes, GPUs, the memory backend that "auto"
 * would choose and why, and the SPILL_* options in effect. */
#include <getopt.h>

#include "spill_alloc.h"
#include "spill_options.h"
#include "spill_topology.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: spill-info [--json] [--options] [--backend NAME]\n"
            "\n"
            "Prints the machine's memory topology as spill sees it: host NUMA nodes (capacity, free\n"
            "memory, CPUs, distances), GPUs (memory, nearest host node, GPU memory as a NUMA node on\n"
            "Grace Hopper, link), and which memory backend would be used and why.\n"
            "\n"
            "  --json          the same as JSON on stdout\n"
            "  --options       list every SPILL_* environment variable, its default and current value\n"
            "  --backend NAME  open this backend instead of SPILL_BACKEND (auto, host, system,\n"
            "                  cuda-managed, cuda-device) and report whether it works here\n"
            "  -h, --help      this text\n");
}

int main(int argc, char **argv) {
    static const struct option longopts[] = {
        {"json", no_argument, 0, 'j'},
        {"options", no_argument, 0, 'o'},
        {"backend", required_argument, 0, 'b'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    int json = 0, options = 0, c;
    spill_options o;
    spill_err err;
    spill_options_defaults(&o);
    if (spill_options_from_env(&o, stderr, &err)) {
        fprintf(stderr, "spill-info: %s\n", err.msg);
        return 2;
    }
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'j': json = 1; break;
        case 'o': options = 1; break;
        case 'b':
            if (spill_options_set(&o, "backend", optarg, &err)) {
                fprintf(stderr, "spill-info: %s\n", err.msg);
                return 2;
            }
            break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "spill-info: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }
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
    if (json) {
        spill_topology_print_json(&t, stdout);
    } else {
        spill_topology_print(&t, stdout);
        if (m) printf("\nmemory backend: %s (%s)\n", spill_mem_backend_name(m), spill_mem_backend_reason(m));
    }
    if (!m) {
        fprintf(stderr, "spill-info: backend '%s': %s\n", o.backend, err.msg);
        return 1;
    }
    spill_mem_free(m);
    return 0;
}
