/* The machine as alloc/ sees it: host NUMA nodes (capacity, free memory, CPUs, distances) and GPUs
 * (memory, nearest host node, GPU memory as a NUMA node on Grace Hopper, the link to the host).
 * Read with hwloc and libnuma; GPU facts from the CUDA driver (spill_platform.h) and PCI sysfs. */
#ifndef SPILL_TOPOLOGY_H
#define SPILL_TOPOLOGY_H

#include <stdio.h>

#include "spill_platform.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SPILL_TOPO_MAX_NODES 64
#define SPILL_TOPO_MAX_GPUS 16

typedef struct spill_topo_node {
    int id;            /* OS NUMA node number */
    uint64_t total;    /* bytes */
    uint64_t free;     /* bytes, from the kernel now */
    int n_cpus;        /* logical CPUs */
    char cpus[256];    /* "0-71" (hwloc list syntax) */
    int gpu;           /* this node is GPU memory: the device ordinal, else -1 */
} spill_topo_node;

typedef struct spill_topo_gpu {
    spill_gpu_info info;
    int nearest_node; /* host NUMA node closest to the GPU, -1 unknown */
    char link[96];    /* "nvlink-c2c (ATS)", "pcie gen5 x16", or "unknown" */
} spill_topo_gpu;

typedef struct spill_topology {
    char cpu_model[128];
    int n_cpus; /* logical CPUs, all nodes */
    int n_cores;
    uint64_t page_size;
    int numa_available; /* the kernel supports NUMA policy (mbind/move_pages) */
    int n_nodes;
    spill_topo_node node[SPILL_TOPO_MAX_NODES];
    int distance[SPILL_TOPO_MAX_NODES][SPILL_TOPO_MAX_NODES]; /* SLIT: 10 = local */
    int n_gpus;
    spill_topo_gpu gpu[SPILL_TOPO_MAX_GPUS];
    char gpu_note[1100]; /* why there are no GPUs, when there are none */
} spill_topology;

int spill_topology_read(spill_topology *t, spill_err *err);
/* Run the calling thread, and the threads it starts from now on, on host NUMA node `node`'s CPUs (those
 * of them the thread may already use: sched_setaffinity), and allocate their memory there first
 * (numa_set_preferred): the forward pass's threads beside the weights they read. For good: nothing
 * undoes it. *n_cpus: the CPUs it now runs on; *bound: 0 where the process has no NUMA policy (no
 * kernel support, qemu-user, or get_mempolicy refused), which accepts node 0 alone and changes
 * nothing. An error names `flag` and the nodes there are when the node does not exist or has no CPUs
 * the process may use (a GPU's memory node). */
int spill_numa_bind(int node, const char *flag, int *n_cpus, int *bound, spill_err *err);
void spill_topology_print(const spill_topology *t, FILE *f);
/* extra: more members of the object (already JSON: "\"key\": value, ..."), or NULL */
void spill_topology_print_json(const spill_topology *t, const char *extra, FILE *f);

#ifdef __cplusplus
}
#endif
#endif
