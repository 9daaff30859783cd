/* The disk tier: layers the plan puts on disk (spill_region_plan.on_disk) are read from the model
 * file every step into a ring of host-memory slots, a few layers ahead of the computation.
 *
 * Reads bypass the page cache (O_DIRECT), so that a model larger than memory does not thrash it, and
 * are queued with io_uring (liburing) in chunks of 1 MiB, up to 64 in flight, so that the drive sees a
 * deep queue of large sequential reads. O_DIRECT wants file offsets, lengths and buffers aligned to
 * the logical block size; tensors in GGUF and safetensors files are aligned to 32 bytes or not at
 * all, so each layer is read as spans widened to 4 KiB boundaries, and each tensor is found in its
 * slot at its offset within the span. A file system that refuses O_DIRECT (tmpfs) is read through
 * the page cache instead, said once on stderr. Without liburing (a build that did not find it) the
 * reads are synchronous pread()s of the same spans.
 *
 * Only the matrices are read from disk: vectors (norms, biases) are tiny and the placer holds them
 * as it holds every host-tier tensor.
 *
 * Mode SPILL_DISK_MMAP is the comparison the disk tier has to beat: the same layers read through the
 * mapping, their pages dropped after each use (madvise + posix_fadvise DONTNEED), as when the page
 * cache is too small to keep a model larger than memory. */
#ifndef SPILL_DISK_H
#define SPILL_DISK_H

#include "model.h"
#include "spill_alloc.h"
#include "spill_policy.h"

typedef enum spill_disk_mode { SPILL_DISK_URING, SPILL_DISK_MMAP } spill_disk_mode;

/* --disk-io's spelling: "uring" (also NULL: the default) or "mmap", any case. The one place the
 * names are checked: spill-generate's command line before the load, the engine for the library's
 * callers (where "" also means the default). Returns -1 with a message naming the flag otherwise
 * ("" from a command line included). */
int spill_disk_mode_parse(const char *name, spill_disk_mode *mode, spill_err *err);

typedef struct spill_disk_span {
    int file;
    uint64_t off, len;  /* in the file, aligned */
    uint64_t slot_off;  /* where it lands in the slot, aligned */
} spill_disk_span;

typedef struct spill_disk_layer {
    int n_spans;
    spill_disk_span *spans;
    int64_t tensor_off[SPILL_LAYER_TENSORS]; /* a matrix's data in the slot, -1 not read from disk */
    uint64_t bytes;                          /* the tensors' own bytes (what the step uses) */
} spill_disk_layer;

typedef struct spill_disk_stats {
    uint64_t read;      /* bytes read from the files (aligned spans) */
    uint64_t used;      /* of them, tensor bytes */
    double wait_s;      /* time the computation waited for a layer's reads */
    int direct;         /* 1: O_DIRECT; 0: through the page cache */
} spill_disk_stats;

typedef struct spill_disk spill_disk;

/* The ring for a plan with layers on disk (plan->disk_slots > 0); weights: the model's as placed (the
 * vectors of a disk layer are used from there). Slots come from mem, in host memory, with the advice
 * the plan gave the layers on disk (a GPU reads them where they are). */
typedef struct spill_disk_alloc {
    int (*alloc)(void *ctx, size_t bytes, void **out, spill_err *err);
    void (*free)(void *ctx, void *p, size_t bytes);
    void *ctx;
} spill_disk_alloc;
/* slots: where the slots come from when not from mem (NULL: mem): a GPU's pinned host memory, which
 * O_DIRECT can read into and the GPU reads in place (managed memory is neither safe for O_DIRECT nor
 * meant to be rewritten every step) */
int spill_disk_open(spill_disk **out, const spill_model *m, const spill_plan *plan, const spill_layer *placed,
                    spill_mem *mem, spill_disk_mode mode, const spill_disk_alloc *slots, spill_err *err);
/* A device whose computation runs behind the host (a GPU's queue) may still be reading a slot the host
 * released: `reuse(ctx, slot)` is called before reads into a slot that held a layer, and must return
 * once the computation is done with it. NULL (the CPU): released means done. */
typedef int (*spill_disk_reuse_fn)(void *ctx, int slot, spill_err *err);
void spill_disk_set_reuse(spill_disk *d, spill_disk_reuse_fn reuse, void *ctx);
/* The slot layer l is in (held, being read or read), -1 none. */
int spill_disk_slot(const spill_disk *d, int l);
void spill_disk_free(spill_disk *d);
int spill_disk_is_on(const spill_disk *d, int layer);
/* Start reading layer l into a free slot (none: the oldest not in use); a no-op when it is there or
 * on its way. */
int spill_disk_fetch(spill_disk *d, int l, spill_err *err);
/* Layer l is about to run: its reads started if they were not, and its slot kept from the fetches
 * that follow until spill_disk_release. */
int spill_disk_hold(spill_disk *d, int l, spill_err *err);
/* Wait for layer l's reads and return it as the forward pass reads it (the slot's matrices, the
 * placed vectors); the slot is in use until spill_disk_release. */
const spill_layer *spill_disk_begin(spill_disk *d, int l, spill_err *err);
void spill_disk_release(spill_disk *d, int l);
void spill_disk_get_stats(const spill_disk *d, spill_disk_stats *out);

/* Sequential read bandwidth of a file as the disk tier reads it (O_DIRECT, 1 MiB reads, 64 in flight):
 * up to `bytes` from its start, `reps` times; bytes/s of each into bw[reps]. *direct says whether
 * O_DIRECT was possible (else the page cache is dropped for the file before each pass). */
int spill_disk_bench(const char *path, uint64_t bytes, int reps, double *bw, int *direct, spill_err *err);

/* The model file and offset that hold [p, p + n), or -1 when p is not inside a mapped model file. */
int spill_model_locate(const spill_model *m, const void *p, uint64_t n, const char **path, uint64_t *off);

#endif
