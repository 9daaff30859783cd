/* Topology from hwloc (NUMA nodes, their memory and CPU sets), libnuma (free memory, distances),
 * the CUDA driver (GPUs and their attributes) and PCI sysfs (nearest node, link speed). */
#include "spill_json.h"
#include "spill_topology.h"

#include <errno.h>
#include <hwloc.h>
#include <numa.h>
#include <sched.h>
#include <string.h>
#include <unistd.h>

static void read_cpu_model(char *buf, size_t len) {
    snprintf(buf, len, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        /* x86: "model name"; Arm (Grace) has no model name line, only "CPU part" */
        if (!strncmp(line, "model name", 10) || !strncmp(line, "CPU part", 8)) {
            char *colon = strchr(line, ':');
            if (!colon) continue;
            colon++;
            while (*colon == ' ' || *colon == '\t') colon++;
            colon[strcspn(colon, "\n")] = 0;
            snprintf(buf, len, "%s%s", strncmp(line, "CPU part", 8) ? "" : "arm cpu part ", colon);
            break;
        }
    }
    fclose(f);
}

/* "0000:01:00.0" -> the PCI device's sysfs file, lower case as sysfs spells it */
static int read_pci_file(const char *bus_id, const char *file, char *out, size_t len) {
    char id[32], path[256];
    snprintf(id, sizeof id, "%s", bus_id);
    for (char *p = id; *p; p++)
        if (*p >= 'A' && *p <= 'F') *p = (char)(*p - 'A' + 'a');
    snprintf(path, sizeof path, "/sys/bus/pci/devices/%s/%s", id, file);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    int ok = fgets(out, (int)len, f) != NULL;
    fclose(f);
    if (!ok) return -1;
    out[strcspn(out, "\n")] = 0;
    return 0;
}

static void read_gpus(spill_topology *t) {
    int n = 0;
    spill_err err;
    if (spill_gpu_count(&n, &err)) {
        snprintf(t->gpu_note, sizeof t->gpu_note, "%s", err.msg);
        return;
    }
    for (int d = 0; d < n && t->n_gpus < SPILL_TOPO_MAX_GPUS; d++) {
        spill_topo_gpu *g = &t->gpu[t->n_gpus];
        if (spill_gpu_query(d, &g->info, &err)) {
            snprintf(t->gpu_note, sizeof t->gpu_note, "device %d: %.1000s", d, err.msg);
            continue;
        }
        t->n_gpus++;
        g->nearest_node = g->info.host_numa_id;
        char buf[64];
        if (g->nearest_node < 0 && !read_pci_file(g->info.pci_bus_id, "numa_node", buf, sizeof buf))
            g->nearest_node = atoi(buf); /* -1 when the platform does not say */
        if (g->info.uses_host_page_tables) {
            snprintf(g->link, sizeof g->link, "nvlink-c2c (ATS, hardware coherent)");
        } else {
            char speed[64] = "", width[16] = "";
            if (!read_pci_file(g->info.pci_bus_id, "current_link_speed", speed, sizeof speed) &&
                !read_pci_file(g->info.pci_bus_id, "current_link_width", width, sizeof width))
                snprintf(g->link, sizeof g->link, "pcie %s x%s", speed, width);
            else
                snprintf(g->link, sizeof g->link, "unknown");
        }
        if (g->info.numa_id >= 0)
            for (int i = 0; i < t->n_nodes; i++)
                if (t->node[i].id == g->info.numa_id) t->node[i].gpu = d;
    }
}

int spill_topology_read(spill_topology *t, spill_err *err) {
    memset(t, 0, sizeof *t);
    read_cpu_model(t->cpu_model, sizeof t->cpu_model);
    t->page_size = (uint64_t)sysconf(_SC_PAGESIZE);
    t->numa_available = numa_available() >= 0;

    hwloc_topology_t topo;
    if (hwloc_topology_init(&topo) || hwloc_topology_load(topo)) {
        return spill_err_set(err, "hwloc could not read this machine's topology");
    }
    t->n_cpus = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_PU);
    t->n_cores = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_CORE);
    int nn = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_NUMANODE);
    for (int i = 0; i < nn && t->n_nodes < SPILL_TOPO_MAX_NODES; i++) {
        hwloc_obj_t o = hwloc_get_obj_by_type(topo, HWLOC_OBJ_NUMANODE, (unsigned)i);
        spill_topo_node *n = &t->node[t->n_nodes++];
        n->id = (int)o->os_index;
        n->gpu = -1;
        n->total = o->attr ? o->attr->numanode.local_memory : 0;
        n->n_cpus = o->cpuset ? hwloc_bitmap_weight(o->cpuset) : 0;
        if (n->n_cpus < 0) n->n_cpus = 0;
        if (o->cpuset && n->n_cpus > 0) hwloc_bitmap_list_snprintf(n->cpus, sizeof n->cpus, o->cpuset);
        else snprintf(n->cpus, sizeof n->cpus, "-");
        long long fr = 0;
        if (t->numa_available && numa_node_size64(n->id, &fr) >= 0) n->free = (uint64_t)fr;
    }
    hwloc_topology_destroy(topo);
    if (t->n_nodes == 0) return spill_err_set(err, "hwloc reports no NUMA node (not even one)");
    for (int i = 0; i < t->n_nodes; i++)
        for (int j = 0; j < t->n_nodes; j++)
            t->distance[i][j] = t->numa_available ? numa_distance(t->node[i].id, t->node[j].id) : (i == j ? 10 : 20);
    read_gpus(t);
    return 0;
}

static double gib(uint64_t b) { return (double)b / (1024.0 * 1024.0 * 1024.0); }

void spill_topology_print(const spill_topology *t, FILE *f) {
    fprintf(f, "cpu: %s, %d cores, %d logical CPUs, page %llu bytes, NUMA policy %s\n", t->cpu_model, t->n_cores,
            t->n_cpus, (unsigned long long)t->page_size, t->numa_available ? "available" : "unavailable");
    fprintf(f, "\n%-5s %10s %10s %6s %-24s %s\n", "node", "total GiB", "free GiB", "cpus", "cpu list", "memory of");
    for (int i = 0; i < t->n_nodes; i++) {
        const spill_topo_node *n = &t->node[i];
        char of[32];
        if (n->gpu >= 0) snprintf(of, sizeof of, "GPU %d", n->gpu);
        else snprintf(of, sizeof of, "host");
        fprintf(f, "%-5d %10.2f %10.2f %6d %-24s %s\n", n->id, gib(n->total), gib(n->free), n->n_cpus, n->cpus, of);
    }
    fprintf(f, "\ndistances (10 = local):\n%-5s", "");
    for (int j = 0; j < t->n_nodes; j++) fprintf(f, " %5d", t->node[j].id);
    fprintf(f, "\n");
    for (int i = 0; i < t->n_nodes; i++) {
        fprintf(f, "%-5d", t->node[i].id);
        for (int j = 0; j < t->n_nodes; j++) fprintf(f, " %5d", t->distance[i][j]);
        fprintf(f, "\n");
    }
    fprintf(f, "\n");
    if (!t->n_gpus) {
        fprintf(f, "gpus: none (%s)\n", t->gpu_note);
        return;
    }
    fprintf(f, "%-4s %-28s %-13s %5s %10s %10s %5s %5s %-34s %s\n", "gpu", "name", "pci", "cc", "total GiB", "free GiB",
            "near", "numa", "link", "managed / pageable / ATS");
    for (int i = 0; i < t->n_gpus; i++) {
        const spill_topo_gpu *g = &t->gpu[i];
        char cc[16];
        snprintf(cc, sizeof cc, "%d.%d", g->info.cc_major, g->info.cc_minor);
        fprintf(f, "%-4d %-28.28s %-13s %5s %10.2f %10.2f %5d %5d %-34s %d / %d / %d\n", g->info.device, g->info.name,
                g->info.pci_bus_id, cc, gib(g->info.total_mem), gib(g->info.free_mem), g->nearest_node,
                g->info.numa_id, g->link, g->info.concurrent_managed_access, g->info.pageable_memory_access,
                g->info.uses_host_page_tables);
    }
    fprintf(f, "driver CUDA %d.%d, runtime CUDA %d.%d\n", t->gpu[0].info.driver_version / 1000,
            t->gpu[0].info.driver_version % 1000 / 10, t->gpu[0].info.runtime_version / 1000,
            t->gpu[0].info.runtime_version % 1000 / 10);
}

void spill_topology_print_json(const spill_topology *t, const char *extra, FILE *f) {
    fprintf(f, "{\n  \"cpu\": {\"model\": ");
    spill_json_write_str(f, t->cpu_model);
    fprintf(f, ", \"cores\": %d, \"logical_cpus\": %d, \"page_size\": %llu, \"numa_available\": %s},\n", t->n_cores,
            t->n_cpus, (unsigned long long)t->page_size, t->numa_available ? "true" : "false");
    fprintf(f, "  \"nodes\": [");
    for (int i = 0; i < t->n_nodes; i++) {
        const spill_topo_node *n = &t->node[i];
        fprintf(f, "%s\n    {\"id\": %d, \"total_bytes\": %llu, \"free_bytes\": %llu, \"cpus\": %d, \"cpu_list\": ",
                i ? "," : "", n->id, (unsigned long long)n->total, (unsigned long long)n->free, n->n_cpus);
        spill_json_write_str(f, n->cpus);
        fprintf(f, ", \"gpu\": %d, \"distances\": [", n->gpu);
        for (int j = 0; j < t->n_nodes; j++) fprintf(f, "%s%d", j ? ", " : "", t->distance[i][j]);
        fprintf(f, "]}");
    }
    fprintf(f, "\n  ],\n  \"gpus\": [");
    for (int i = 0; i < t->n_gpus; i++) {
        const spill_topo_gpu *g = &t->gpu[i];
        fprintf(f, "%s\n    {\"device\": %d, \"name\": ", i ? "," : "", g->info.device);
        spill_json_write_str(f, g->info.name);
        fprintf(f, ", \"pci_bus_id\": ");
        spill_json_write_str(f, g->info.pci_bus_id);
        fprintf(f, ", \"compute_capability\": \"%d.%d\", \"total_bytes\": %llu, \"free_bytes\": %llu, "
                   "\"nearest_node\": %d, \"numa_id\": %d, \"link\": ",
                g->info.cc_major, g->info.cc_minor, (unsigned long long)g->info.total_mem,
                (unsigned long long)g->info.free_mem, g->nearest_node, g->info.numa_id);
        spill_json_write_str(f, g->link);
        fprintf(f, ", \"concurrent_managed_access\": %d, \"pageable_memory_access\": %d, \"uses_host_page_tables\": %d, "
                   "\"driver_version\": %d, \"runtime_version\": %d}",
                g->info.concurrent_managed_access, g->info.pageable_memory_access, g->info.uses_host_page_tables,
                g->info.driver_version, g->info.runtime_version);
    }
    fprintf(f, "%s],\n  \"gpu_note\": ", t->n_gpus ? "\n  " : "");
    spill_json_write_str(f, t->gpu_note);
    if (extra && *extra) fprintf(f, ",\n  %s", extra);
    fprintf(f, "\n}\n");
}

int spill_numa_bind(int node, const char *flag, int *n_cpus, int *bound, spill_err *err) {
    *bound = 0;
    cpu_set_t allowed;
    CPU_ZERO(&allowed);
    if (sched_getaffinity(0, sizeof allowed, &allowed))
        return spill_err_set(err, "%s: sched_getaffinity failed: %s", flag, strerror(errno));
    if (numa_available() < 0) {
        /* no NUMA policy for this process: no kernel support (or qemu-user), or get_mempolicy refused (a
           container's seccomp profile); node 0 is then taken to be the machine, and nothing is bound */
        if (node != 0)
            return spill_err_set(err, "%s %d: NUMA policy is not available to this process (no kernel support, or "
                                      "get_mempolicy refused), so node 0 is the only one (nodes: 0)", flag, node);
        *n_cpus = CPU_COUNT(&allowed);
        return 0;
    }
    /* the nodes with CPUs this process may use (for the message), and node's among them */
    char nodes[256] = "";
    size_t len = 0;
    int max = numa_max_node();
    cpu_set_t mine;
    CPU_ZERO(&mine);
    struct bitmask *cpus = numa_allocate_cpumask();
    if (!cpus) return spill_err_set(err, "%s: out of memory", flag);
    for (int n = 0; n <= max; n++) {
        cpu_set_t set;
        CPU_ZERO(&set);
        if (numa_node_to_cpus(n, cpus) == 0)
            for (unsigned c = 0; c < cpus->size && c < CPU_SETSIZE; c++)
                if (numa_bitmask_isbitset(cpus, c) && CPU_ISSET(c, &allowed)) CPU_SET(c, &set);
        if (!CPU_COUNT(&set)) continue;
        if (len < sizeof nodes - 16) len += (size_t)snprintf(nodes + len, sizeof nodes - len, "%s%d", len ? ", " : "", n);
        if (n == node) mine = set;
    }
    numa_free_cpumask(cpus);
    if (node < 0 || node > max || !CPU_COUNT(&mine))
        return spill_err_set(err, "%s %d: not a NUMA node with CPUs this process may run on (nodes: %s)", flag, node,
                             *nodes ? nodes : "none");
    /* the node's CPUs within the process's own mask (numa_run_on_node would take all of the node's,
       widening a taskset) */
    if (sched_setaffinity(0, sizeof mine, &mine))
        return spill_err_set(err, "%s %d: sched_setaffinity failed: %s", flag, node, strerror(errno));
    numa_set_preferred(node);
    *n_cpus = CPU_COUNT(&mine);
    *bound = 1;
    return 0;
}
