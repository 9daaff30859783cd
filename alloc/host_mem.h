/* The thin platform layer under the host-memory backends (host, system, and the host side of
 * cuda-device): mmap, mbind, move_pages, madvise, mincore. Each returns 0 or -1 with a message. */
#ifndef SPILL_HOST_MEM_H
#define SPILL_HOST_MEM_H

#include "spill_backend.h"

typedef struct spill_host_numa {
    int numa_ok;  /* the kernel has NUMA (libnuma's numa_available) */
    int max_node; /* highest node number */
    size_t page;  /* base page size */
} spill_host_numa;

void spill_host_numa_init(spill_host_numa *h);
/* Anonymous memory, zero-filled, SPILL_ARENA_GRAIN-aligned when size is a multiple of it, bound to
 * `node` (-1: no binding). Refuses a request larger than what the machine has available, so that an
 * impossible request is an error now rather than an OOM kill at first touch. */
int spill_host_map(const spill_host_numa *h, size_t size, int node, void **out, spill_err *err);
void spill_host_unmap(void *p, size_t size);
int spill_host_bind(const spill_host_numa *h, void *p, size_t size, int node, spill_err *err);
/* Bind to every node but one (keeps host data off a GPU's memory node). */
int spill_host_bind_except(const spill_host_numa *h, void *p, size_t size, int except, spill_err *err);
/* Move the present pages of a range to `node` (move_pages). Pages never touched are skipped. */
int spill_host_move(const spill_host_numa *h, void *p, size_t size, int node, spill_err *err);
/* Drop the whole pages inside the range (madvise DONTNEED); they read back as zero. */
int spill_host_discard(const spill_host_numa *h, void *p, size_t size, spill_err *err);
/* Bytes of the range present in memory (mincore). */
int spill_host_resident(const spill_host_numa *h, const void *p, size_t size, uint64_t *bytes, spill_err *err);
/* Bytes of the range on `node` and on any node (move_pages status query). */
int spill_host_on_node(const spill_host_numa *h, const void *p, size_t size, int node, uint64_t *on_node,
                       uint64_t *present, spill_err *err);

#endif
