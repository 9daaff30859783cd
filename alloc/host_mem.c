/* mmap / mbind / move_pages / madvise / mincore behind 0-or-error calls (see host_mem.h). */
#include "host_mem.h"

#include <errno.h>
#include <numa.h>
#include <numaif.h>
#include <sys/mman.h>
#include <unistd.h>

void spill_host_numa_init(spill_host_numa *h) {
    h->page = (size_t)sysconf(_SC_PAGESIZE);
    h->numa_ok = numa_available() >= 0;
    h->max_node = h->numa_ok ? numa_max_node() : 0;
}

static int bind_mask(const spill_host_numa *h, void *p, size_t size, const unsigned long *mask, size_t bits,
                     spill_err *err) {
    uintptr_t a = (uintptr_t)p & ~(uintptr_t)(h->page - 1);
    size_t n = size + ((uintptr_t)p - a);
    if (mbind((void *)a, n, MPOL_BIND, mask, bits, MPOL_MF_MOVE))
        return spill_err_set(err, "mbind failed: %s", strerror(errno));
    return 0;
}

enum { MASK_WORDS = 16 };
#define WORD_BITS (8 * sizeof(unsigned long))

int spill_host_bind(const spill_host_numa *h, void *p, size_t size, int node, spill_err *err) {
    if (node < 0 || !h->numa_ok) return 0;
    if (node > h->max_node)
        return spill_err_set(err, "NUMA node %d requested but this machine's highest node is %d", node, h->max_node);
    if ((size_t)node >= MASK_WORDS * WORD_BITS) return spill_err_set(err, "NUMA node %d out of range", node);
    unsigned long mask[MASK_WORDS] = {0};
    mask[node / WORD_BITS] |= 1ul << (node % WORD_BITS);
    if (bind_mask(h, p, size, mask, sizeof mask * 8, err))
        return spill_err_set(err, "mbind to NUMA node %d failed: %s", node, strerror(errno));
    return 0;
}

int spill_host_bind_except(const spill_host_numa *h, void *p, size_t size, int except, spill_err *err) {
    if (!h->numa_ok) return 0;
    unsigned long mask[MASK_WORDS] = {0};
    int any = 0;
    for (int n = 0; n <= h->max_node && (size_t)n < MASK_WORDS * WORD_BITS; n++) {
        if (n == except || !numa_bitmask_isbitset(numa_all_nodes_ptr, (unsigned)n)) continue;
        mask[n / WORD_BITS] |= 1ul << (n % WORD_BITS);
        any = 1;
    }
    if (!any) return spill_err_set(err, "no host NUMA node other than node %d", except);
    return bind_mask(h, p, size, mask, sizeof mask * 8, err);
}

int spill_host_map(const spill_host_numa *h, size_t size, int node, void **out, spill_err *err) {
    uint64_t avail = spill_host_available();
    if (avail && size > avail)
        return spill_err_set(err, "%zu bytes of host memory requested but the machine has %llu available "
                                  "(MemAvailable + SwapFree)", size, (unsigned long long)avail);
    if (node >= 0 && h->numa_ok && node <= h->max_node) {
        long long fr = 0;
        long long tot = numa_node_size64(node, &fr);
        if (tot > 0 && (uint64_t)size > (uint64_t)tot)
            return spill_err_set(err, "%zu bytes requested on NUMA node %d, which has %lld bytes in all", size, node,
                                 tot);
    }
    /* over-map by one grain and trim, so that grain-sized requests start on a grain boundary.
     * MAP_NORESERVE is not used: an impossible request must fail here, not at first touch. */
    int want_grain = size % SPILL_ARENA_GRAIN == 0;
    size_t map = want_grain ? size + SPILL_ARENA_GRAIN : size;
    if (map < size) return spill_err_set(err, "%zu bytes cannot be mapped", size);
    char *p = mmap(NULL, map, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return spill_err_set(err, "mmap of %zu bytes failed: %s", size, strerror(errno));
    if (want_grain) {
        char *a = (char *)spill_align_up((uintptr_t)p, SPILL_ARENA_GRAIN);
        if (a > p) munmap(p, (size_t)(a - p));
        size_t tail = (size_t)((p + map) - (a + size));
        if (tail) munmap(a + size, tail);
        p = a;
    }
    if (spill_host_bind(h, p, size, node, err)) {
        munmap(p, size);
        return -1;
    }
    *out = p;
    return 0;
}

void spill_host_unmap(void *p, size_t size) { SPILL_ASSERT(munmap(p, size) == 0); }

enum { MOVE_BATCH = 512 };

int spill_host_move(const spill_host_numa *h, void *p, size_t size, int node, spill_err *err) {
    if (node < 0 || !h->numa_ok) return 0;
    if (node > h->max_node)
        return spill_err_set(err, "move to NUMA node %d but the highest node is %d", node, h->max_node);
    uintptr_t a = (uintptr_t)p & ~(uintptr_t)(h->page - 1);
    size_t npages = (size + ((uintptr_t)p - a) + h->page - 1) / h->page;
    void *pages[MOVE_BATCH];
    int nodes[MOVE_BATCH], status[MOVE_BATCH];
    for (size_t i = 0; i < npages; i += MOVE_BATCH) {
        size_t k = npages - i < MOVE_BATCH ? npages - i : MOVE_BATCH;
        for (size_t j = 0; j < k; j++) {
            pages[j] = (void *)(a + (i + j) * h->page);
            nodes[j] = node;
        }
        if (move_pages(0, k, pages, nodes, status, MPOL_MF_MOVE) < 0)
            return spill_err_set(err, "move_pages to node %d failed: %s", node, strerror(errno));
    }
    return 0;
}

int spill_host_discard(const spill_host_numa *h, void *p, size_t size, spill_err *err) {
    /* only whole pages inside the range can be dropped; partial edge pages keep their contents */
    uintptr_t a = ((uintptr_t)p + h->page - 1) & ~(uintptr_t)(h->page - 1);
    uintptr_t e = ((uintptr_t)p + size) & ~(uintptr_t)(h->page - 1);
    if (e <= a) return 0;
    if (madvise((void *)a, e - a, MADV_DONTNEED))
        return spill_err_set(err, "madvise(DONTNEED) failed: %s", strerror(errno));
    return 0;
}

int spill_host_resident(const spill_host_numa *h, const void *p, size_t size, uint64_t *bytes, spill_err *err) {
    uintptr_t a = (uintptr_t)p & ~(uintptr_t)(h->page - 1);
    size_t npages = (size + ((uintptr_t)p - a) + h->page - 1) / h->page;
    unsigned char vec[4096];
    uint64_t resident = 0;
    for (size_t i = 0; i < npages; i += sizeof vec) {
        size_t k = npages - i < sizeof vec ? npages - i : sizeof vec;
        if (mincore((void *)(a + i * h->page), k * h->page, vec))
            return spill_err_set(err, "mincore failed: %s", strerror(errno));
        for (size_t j = 0; j < k; j++) resident += vec[j] & 1;
    }
    uint64_t b = resident * h->page;
    *bytes = b > size ? size : b;
    return 0;
}

int spill_host_on_node(const spill_host_numa *h, const void *p, size_t size, int node, uint64_t *on_node,
                       uint64_t *present, spill_err *err) {
    *on_node = *present = 0;
    uintptr_t a = (uintptr_t)p & ~(uintptr_t)(h->page - 1);
    size_t npages = (size + ((uintptr_t)p - a) + h->page - 1) / h->page;
    if (!h->numa_ok) return spill_host_resident(h, p, size, present, err);
    void *pages[MOVE_BATCH];
    int status[MOVE_BATCH];
    uint64_t on = 0, pres = 0;
    for (size_t i = 0; i < npages; i += MOVE_BATCH) {
        size_t k = npages - i < MOVE_BATCH ? npages - i : MOVE_BATCH;
        for (size_t j = 0; j < k; j++) pages[j] = (void *)(a + (i + j) * h->page);
        /* nodes == NULL: only report where each page is (a negative errno when it is not present) */
        if (move_pages(0, k, pages, NULL, status, 0) < 0)
            return spill_err_set(err, "move_pages status query failed: %s", strerror(errno));
        for (size_t j = 0; j < k; j++) {
            if (status[j] < 0) continue;
            pres++;
            if (status[j] == node) on++;
        }
    }
    *on_node = on * h->page > size ? size : on * h->page;
    *present = pres * h->page > size ? size : pres * h->page;
    return 0;
}
