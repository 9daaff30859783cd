/* The disk tier (see disk.h). */
#include "disk.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <strings.h>
#include <unistd.h>

#ifdef SPILL_HAVE_URING
#include <liburing.h>
#endif

enum {
    ALIGN = 4096,           /* O_DIRECT: offsets, lengths and buffers on the logical block size or more */
    CHUNK = 1 << 20,        /* one read */
    QD = 64,                /* reads in flight */
    MERGE_GAP = 256 << 10,  /* tensors closer than this in a file are read as one span */
};

typedef struct chunk {
    int slot, file, used;
    uint64_t off, len;
    uint8_t *buf;
} chunk;

struct spill_disk {
    const spill_model *m;
    const spill_layer *placed;
    spill_mem *mem;
    spill_disk_mode mode;
    int L;
    spill_disk_layer *layers; /* (L) n_spans 0: not on disk */
    uint8_t *on;              /* (L) */
    int n_files;
    const char **paths;
    int *fd;
    uint64_t *fsize;
    int n_slots;
    uint64_t slot_bytes;
    uint8_t *alloc, *base;
    uint64_t alloc_bytes;
    int *slot_layer, *slot_pending, *slot_inuse, *slot_err;
    uint64_t *slot_age, clock;
    int *slot_of; /* (L) */
    spill_layer *view; /* (n_slots) */
    chunk rec[QD];
    int inflight;
    spill_disk_reuse_fn reuse;
    void *reuse_ctx;
    spill_disk_alloc slots; /* .alloc NULL: from mem */
#ifdef SPILL_HAVE_URING
    struct io_uring ring;
    int have_ring;
#endif
    char ioerr[512];
    spill_disk_stats st;
};

static uint64_t down(uint64_t x) { return x & ~(uint64_t)(ALIGN - 1); }
static uint64_t up(uint64_t x) { return (x + ALIGN - 1) & ~(uint64_t)(ALIGN - 1); }

int spill_model_locate(const spill_model *m, const void *p, uint64_t n, const char **path, uint64_t *off) {
    const uint8_t *q = p;
    if (!m->hf) {
        const spill_gguf *g = &m->gguf;
        if (g->map && q >= g->map && q + n <= g->map + g->size) {
            *path = g->path;
            *off = (uint64_t)(q - g->map);
            return 0;
        }
        return -1;
    }
    for (int i = 0; i < m->st.n_files; i++) {
        const spill_st_file *f = &m->st.files[i];
        if (f->map && q >= f->map && q + n <= f->map + f->size) {
            *path = f->path;
            *off = (uint64_t)(q - f->map);
            return i;
        }
    }
    return -1;
}

typedef struct piece {
    int file, tensor;
    uint64_t off, len;
} piece;

static int piece_cmp(const void *a, const void *b) {
    const piece *x = a, *y = b;
    if (x->file != y->file) return x->file - y->file;
    return x->off < y->off ? -1 : x->off > y->off;
}

static int file_index(spill_disk *d, const char *path, spill_err *err) {
    for (int i = 0; i < d->n_files; i++)
        if (d->paths[i] == path) return i;
    int i = d->n_files++;
    const char **np = realloc(d->paths, sizeof *np * (size_t)d->n_files);
    int *nf = np ? realloc(d->fd, sizeof *nf * (size_t)d->n_files) : NULL;
    if (np) d->paths = np;
    if (nf) d->fd = nf;
    uint64_t *ns = nf ? realloc(d->fsize, sizeof *ns * (size_t)d->n_files) : NULL;
    if (ns) d->fsize = ns;
    if (!np || !nf || !ns) {
        d->n_files--;
        return spill_err_set(err, "out of memory");
    }
    d->paths[i] = path;
    d->fd[i] = -1;
    int flags = O_RDONLY | O_CLOEXEC;
    /* SPILL_DISK_NO_DIRECT=1: the path of a file system without O_DIRECT, for the tests */
    const char *nd = getenv("SPILL_DISK_NO_DIRECT");
    int forced = nd && *nd == '1';
    if (d->mode == SPILL_DISK_URING) {
        d->fd[i] = forced ? -1 : open(path, flags | O_DIRECT);
        if (d->fd[i] >= 0) {
            d->st.direct = 1;
        } else if (forced || errno == EINVAL) {
            if (d->st.direct || i == 0)
                fprintf(stderr, "spill: %s: %s; the disk tier reads through the page cache\n", path,
                        forced ? "SPILL_DISK_NO_DIRECT=1" : "the file system refuses O_DIRECT");
            d->st.direct = 0;
        }
    }
    if (d->fd[i] < 0) d->fd[i] = open(path, flags);
    struct stat sb;
    if (d->fd[i] < 0 || fstat(d->fd[i], &sb)) return spill_err_set(err, "the disk tier: %s: %s", path, strerror(errno));
    d->fsize[i] = (uint64_t)sb.st_size;
    return i;
}

/* a layer's matrices as spans of the files, widened to the alignment, and where each lands in a slot */
static int layout(spill_disk *d, int l, spill_err *err) {
    const spill_layer *home = &d->m->w.layers[l], *pl = &d->placed[l];
    spill_disk_layer *dl = &d->layers[l];
    piece pc[SPILL_LAYER_TENSORS];
    int n = 0;
    for (int i = 0; i < SPILL_LAYER_TENSORS; i++) {
        dl->tensor_off[i] = -1;
        const spill_weight *w = &pl->t[i];
        /* a matrix held as the file has it, where the file has it */
        if (!w->data || w->rows <= 1 || w->data != home->t[i].data || w->split < w->rows) continue;
        const char *path;
        uint64_t off, len = spill_weight_bytes(w);
        int f0 = spill_model_locate(d->m, w->data, len, &path, &off);
        if (f0 < 0) return spill_err_set(err, "the disk tier: layer %d's tensor %d is not in a model file as it is", l, i);
        int f = file_index(d, path, err);
        if (f < 0) return -1;
        pc[n++] = (piece){f, i, off, len};
        dl->bytes += len;
    }
    if (!n) return spill_err_set(err, "the disk tier: layer %d has no matrix read as the file holds it", l);
    qsort(pc, (size_t)n, sizeof *pc, piece_cmp);
    dl->spans = calloc((size_t)n, sizeof *dl->spans);
    if (!dl->spans) return spill_err_set(err, "out of memory");
    uint64_t slot = 0;
    for (int k = 0; k < n;) {
        int e = k;
        uint64_t lo = pc[k].off, hi = pc[k].off + pc[k].len;
        while (e + 1 < n && pc[e + 1].file == pc[k].file && pc[e + 1].off <= hi + MERGE_GAP) {
            e++;
            if (pc[e].off + pc[e].len > hi) hi = pc[e].off + pc[e].len;
        }
        spill_disk_span *s = &dl->spans[dl->n_spans++];
        s->file = pc[k].file;
        s->off = down(lo);
        s->len = up(hi) - s->off;
        s->slot_off = slot;
        for (int q = k; q <= e; q++) dl->tensor_off[pc[q].tensor] = (int64_t)(slot + (pc[q].off - s->off));
        slot += s->len;
        k = e + 1;
    }
    if (slot > d->slot_bytes) d->slot_bytes = slot;
    return 0;
}

void spill_disk_free(spill_disk *d) {
    if (!d) return;
#ifdef SPILL_HAVE_URING
    if (d->have_ring) {
        /* reads still in flight land in the slots: wait for them before the slots go */
        while (d->inflight > 0) {
            struct io_uring_cqe *c;
            if (io_uring_wait_cqe(&d->ring, &c)) break;
            io_uring_cqe_seen(&d->ring, c);
            d->inflight--;
        }
        io_uring_queue_exit(&d->ring);
    }
#endif
    if (d->alloc && d->slots.alloc) d->slots.free(d->slots.ctx, d->alloc, d->alloc_bytes);
    else if (d->alloc) spill_mem_put(d->mem, d->alloc, d->alloc_bytes);
    for (int i = 0; i < d->n_files; i++)
        if (d->fd[i] >= 0) close(d->fd[i]);
    if (d->layers)
        for (int l = 0; l < d->L; l++) free(d->layers[l].spans);
    free(d->layers);
    free(d->on);
    free(d->paths);
    free(d->fd);
    free(d->fsize);
    free(d->slot_layer);
    free(d->slot_pending);
    free(d->slot_inuse);
    free(d->slot_err);
    free(d->slot_age);
    free(d->slot_of);
    free(d->view);
    free(d);
}

int spill_disk_open(spill_disk **out, const spill_model *m, const spill_plan *plan, const spill_layer *placed,
                    spill_mem *mem, spill_disk_mode mode, const spill_disk_alloc *slots, spill_err *err) {
    *out = NULL;
    spill_disk *d = calloc(1, sizeof *d);
    if (!d) return spill_err_set(err, "out of memory");
    if (slots) d->slots = *slots;
    d->m = m;
    d->placed = placed;
    d->mem = mem;
    d->mode = mode;
    d->L = m->hp.n_layers;
    d->layers = calloc((size_t)d->L, sizeof *d->layers);
    d->on = calloc((size_t)d->L, 1);
    d->slot_of = malloc(sizeof(int) * (size_t)d->L);
    if (!d->layers || !d->on || !d->slot_of) goto oom;
    for (int l = 0; l < d->L; l++) {
        d->slot_of[l] = -1;
        d->on[l] = plan->region[spill_region_layer(d->L, l)].on_disk != 0;
        if (d->on[l] && layout(d, l, err)) goto fail;
    }
    if (mode == SPILL_DISK_MMAP) {
        *out = d;
        return 0;
    }
    d->n_slots = plan->disk_slots > 0 ? plan->disk_slots : 1;
    d->slot_layer = malloc(sizeof(int) * (size_t)d->n_slots);
    d->slot_pending = calloc((size_t)d->n_slots, sizeof(int));
    d->slot_inuse = calloc((size_t)d->n_slots, sizeof(int));
    d->slot_err = calloc((size_t)d->n_slots, sizeof(int));
    d->slot_age = calloc((size_t)d->n_slots, sizeof(uint64_t));
    d->view = calloc((size_t)d->n_slots, sizeof *d->view);
    if (!d->slot_layer || !d->slot_pending || !d->slot_inuse || !d->slot_err || !d->slot_age || !d->view) goto oom;
    for (int s = 0; s < d->n_slots; s++) d->slot_layer[s] = -1;
    d->alloc_bytes = d->slot_bytes * (uint64_t)d->n_slots + ALIGN;
    char what[64];
    snprintf(what, sizeof what, "disk ring of %d layer slots", d->n_slots);
    /* who reads the layers where they lie (the GPU: accessed-by); never read-mostly: written every step */
    spill_placement pl = spill_placement_host();
    for (int l = 0; l < d->L; l++)
        if (d->on[l]) pl.flags |= plan->region[spill_region_layer(d->L, l)].advice & SPILL_PLACE_GPU_READS;
    if (d->slots.alloc) {
        void *p = NULL;
        if (d->slots.alloc(d->slots.ctx, d->alloc_bytes, &p, err)) goto fail;
        d->alloc = p;
    } else if (!(d->alloc = spill_mem_alloc(mem, d->alloc_bytes, pl, what, err))) {
        goto fail;
    }
    d->base = (uint8_t *)(((uintptr_t)d->alloc + ALIGN - 1) & ~(uintptr_t)(ALIGN - 1));
#ifdef SPILL_HAVE_URING
    int rc = io_uring_queue_init(QD, &d->ring, 0);
    if (rc < 0) {
        spill_err_set(err, "the disk tier: io_uring_queue_init: %s (a kernel without io_uring, or a seccomp "
                           "policy that forbids it)", strerror(-rc));
        goto fail;
    }
    d->have_ring = 1;
#endif
    *out = d;
    return 0;
oom:
    spill_err_set(err, "out of memory");
fail:
    spill_disk_free(d);
    return -1;
}

int spill_disk_is_on(const spill_disk *d, int layer) { return d && layer >= 0 && layer < d->L && d->on[layer]; }

void spill_disk_set_reuse(spill_disk *d, spill_disk_reuse_fn reuse, void *ctx) {
    if (!d) return;
    d->reuse = reuse;
    d->reuse_ctx = ctx;
}

int spill_disk_slot(const spill_disk *d, int l) {
    return spill_disk_is_on(d, l) && d->mode != SPILL_DISK_MMAP ? d->slot_of[l] : -1;
}

static void io_failed(spill_disk *d, const chunk *c, int e) {
    d->slot_err[c->slot] = e ? e : EIO;
    if (!d->ioerr[0])
        snprintf(d->ioerr, sizeof d->ioerr, "reading %s at offset %llu (%llu bytes): %s", d->paths[c->file],
                 (unsigned long long)c->off, (unsigned long long)c->len, e ? strerror(e) : "the file ended early");
}

/* the rest of a short read, synchronously (rare: a read interrupted part way) */
static void finish_short(spill_disk *d, chunk *c, uint64_t got) {
    while (got < c->len) {
        if (c->off + got >= d->fsize[c->file]) return; /* the file's end: the span was widened past it */
        ssize_t r = pread(d->fd[c->file], c->buf + got, (size_t)(c->len - got), (off_t)(c->off + got));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            io_failed(d, c, r < 0 ? errno : 0);
            return;
        }
        got += (uint64_t)r;
    }
}

#ifdef SPILL_HAVE_URING
/* take one completion (waiting for it when `wait`); 0 when none was there */
static int reap(spill_disk *d, int wait) {
    struct io_uring_cqe *cqe;
    int rc = wait ? io_uring_wait_cqe(&d->ring, &cqe) : io_uring_peek_cqe(&d->ring, &cqe);
    if (rc == -EINTR) return 1;
    if (rc < 0) return 0;
    chunk *c = &d->rec[io_uring_cqe_get_data64(cqe)];
    int res = cqe->res;
    io_uring_cqe_seen(&d->ring, cqe);
    d->inflight--;
    if (res < 0) io_failed(d, c, -res);
    else if ((uint64_t)res < c->len) finish_short(d, c, (uint64_t)res);
    d->slot_pending[c->slot]--;
    c->used = 0;
    return 1;
}
#endif

/* queue one chunk's read */
static void submit(spill_disk *d, int slot, int file, uint64_t off, uint64_t len, uint8_t *buf) {
#ifdef SPILL_HAVE_URING
    int r;
    for (r = 0; r < QD && d->rec[r].used; r++) {
    }
    while (r == QD) { /* all records in flight: wait for one */
        io_uring_submit(&d->ring);
        reap(d, 1);
        for (r = 0; r < QD && d->rec[r].used; r++) {
        }
    }
    struct io_uring_sqe *sqe = io_uring_get_sqe(&d->ring);
    while (!sqe) {
        io_uring_submit(&d->ring);
        sqe = io_uring_get_sqe(&d->ring);
    }
    d->rec[r] = (chunk){slot, file, 1, off, len, buf};
    io_uring_prep_read(sqe, d->fd[file], buf, (unsigned)len, off);
    io_uring_sqe_set_data64(sqe, (uint64_t)r);
    d->inflight++;
    d->slot_pending[slot]++;
#else
    chunk c = {slot, file, 1, off, len, buf};
    finish_short(d, &c, 0);
#endif
}

/* a slot to fill: a free one, else the least recently filled one not in use and not being filled */
static int pick_slot(spill_disk *d) {
    for (;;) {
        int best = -1;
        for (int s = 0; s < d->n_slots; s++) {
            if (d->slot_inuse[s] || d->slot_pending[s]) continue;
            if (d->slot_layer[s] < 0) return s;
            if (best < 0 || d->slot_age[s] < d->slot_age[best]) best = s;
        }
        if (best >= 0) return best;
#ifdef SPILL_HAVE_URING
        if (!d->inflight) return -1;
        io_uring_submit(&d->ring);
        reap(d, 1);
#else
        return -1;
#endif
    }
}

int spill_disk_fetch(spill_disk *d, int l, spill_err *err) {
    if (!spill_disk_is_on(d, l) || d->mode == SPILL_DISK_MMAP || d->slot_of[l] >= 0) return 0;
    int s = pick_slot(d);
    if (s < 0) return 0; /* every slot in use: fetched when its turn comes */
    /* a slot that held a layer: the device's computation may still be reading it */
    if (d->slot_layer[s] >= 0 && d->reuse && d->reuse(d->reuse_ctx, s, err)) return -1;
    if (d->slot_layer[s] >= 0) d->slot_of[d->slot_layer[s]] = -1;
    d->slot_layer[s] = l;
    d->slot_of[l] = s;
    d->slot_err[s] = 0;
    d->slot_age[s] = ++d->clock;
    uint8_t *slot = d->base + (uint64_t)s * d->slot_bytes;
    const spill_disk_layer *dl = &d->layers[l];
    for (int i = 0; i < dl->n_spans; i++) {
        const spill_disk_span *sp = &dl->spans[i];
        for (uint64_t o = 0; o < sp->len; o += CHUNK) {
            uint64_t n = sp->len - o < CHUNK ? sp->len - o : CHUNK;
            submit(d, s, sp->file, sp->off + o, n, slot + sp->slot_off + o);
        }
        d->st.read += sp->len;
    }
#ifdef SPILL_HAVE_URING
    io_uring_submit(&d->ring);
#endif
    spill_layer *v = &d->view[s];
    *v = d->placed[l];
    for (int i = 0; i < SPILL_LAYER_TENSORS; i++)
        if (dl->tensor_off[i] >= 0) {
            v->t[i].data = slot + dl->tensor_off[i];
            v->t[i].data_hi = v->t[i].data;
        }
    return 0;
}

int spill_disk_hold(spill_disk *d, int l, spill_err *err) {
    if (!spill_disk_is_on(d, l) || d->mode == SPILL_DISK_MMAP) return 0;
    if (spill_disk_fetch(d, l, err)) return -1;
    if (d->slot_of[l] < 0)
        return spill_err_set(err, "the disk tier: no slot free for layer %d (every one of %d in use)", l, d->n_slots);
    d->slot_inuse[d->slot_of[l]] = 1;
    return 0;
}

const spill_layer *spill_disk_begin(spill_disk *d, int l, spill_err *err) {
    d->st.used += d->layers[l].bytes;
    if (d->mode == SPILL_DISK_MMAP) {
        d->st.read += d->layers[l].bytes;
        return &d->placed[l];
    }
    double t0 = spill_now();
    if (spill_disk_hold(d, l, err)) return NULL;
    int s = d->slot_of[l];
#ifdef SPILL_HAVE_URING
    while (d->slot_pending[s] > 0 && reap(d, 1)) {
    }
#endif
    d->st.wait_s += spill_now() - t0;
    if (d->slot_err[s] || d->slot_pending[s]) {
        spill_err_set(err, "the disk tier: %s", d->ioerr[0] ? d->ioerr : "a read did not complete");
        d->slot_inuse[s] = 0;
        d->slot_of[l] = -1;
        d->slot_layer[s] = -1;
        return NULL;
    }
    return &d->view[s];
}

void spill_disk_release(spill_disk *d, int l) {
    if (!spill_disk_is_on(d, l)) return;
    if (d->mode == SPILL_DISK_MMAP) {
        /* as if the page cache could not keep them: the next step reads these pages from the disk again */
        const spill_layer *pl = &d->placed[l];
        for (int i = 0; i < SPILL_LAYER_TENSORS; i++) {
            if (d->layers[l].tensor_off[i] < 0) continue;
            const spill_weight *w = &pl->t[i];
            uint64_t n = spill_weight_bytes(w), off;
            const char *path;
            int fi = spill_model_locate(d->m, w->data, n, &path, &off);
            if (fi < 0) continue;
            uintptr_t a = (uintptr_t)w->data & ~(uintptr_t)(ALIGN - 1);
            madvise((void *)a, (size_t)(up((uintptr_t)w->data + n) - a), MADV_DONTNEED);
            for (int f = 0; f < d->n_files; f++)
                if (d->paths[f] == path) posix_fadvise(d->fd[f], (off_t)down(off), (off_t)(up(off + n) - down(off)), POSIX_FADV_DONTNEED);
        }
        return;
    }
    int s = d->slot_of[l];
    if (s >= 0) d->slot_inuse[s] = 0;
}

void spill_disk_get_stats(const spill_disk *d, spill_disk_stats *out) {
    if (d) *out = d->st;
    else memset(out, 0, sizeof *out);
}

int spill_disk_bench(const char *path, uint64_t bytes, int reps, double *bw, int *direct, spill_err *err) {
    spill_disk *d = calloc(1, sizeof *d);
    if (!d) return spill_err_set(err, "out of memory");
    d->mode = SPILL_DISK_URING;
    int rc = -1;
    uint8_t *buf = NULL;
    if (file_index(d, path, err) < 0) goto out;
    *direct = d->st.direct;
    uint64_t n = bytes < d->fsize[0] ? bytes : d->fsize[0];
    n = down(n);
    if (n < ALIGN) {
        spill_err_set(err, "%s: %llu bytes; the disk measurement needs at least 4 KiB", path, (unsigned long long)d->fsize[0]);
        goto out;
    }
    /* one buffer per read in flight, reused: the memory's speed is not what is measured */
    if (posix_memalign((void **)&buf, ALIGN, (size_t)QD * CHUNK)) {
        buf = NULL;
        spill_err_set(err, "out of memory");
        goto out;
    }
    d->n_slots = 1;
    int zero = 0;
    d->slot_pending = &zero;
    d->slot_err = &zero;
    int zerr = 0;
    d->slot_err = &zerr;
#ifdef SPILL_HAVE_URING
    int qrc = io_uring_queue_init(QD, &d->ring, 0);
    if (qrc < 0) {
        spill_err_set(err, "io_uring_queue_init: %s", strerror(-qrc));
        goto out_ptrs;
    }
    d->have_ring = 1;
#endif
    for (int r = 0; r < reps; r++) {
        if (!d->st.direct) posix_fadvise(d->fd[0], 0, 0, POSIX_FADV_DONTNEED);
        double t0 = spill_now();
        int k = 0;
        for (uint64_t o = 0; o < n; o += CHUNK, k++) {
            uint64_t len = n - o < CHUNK ? n - o : CHUNK;
            submit(d, 0, 0, o, len, buf + (uint64_t)(k % QD) * CHUNK);
        }
#ifdef SPILL_HAVE_URING
        io_uring_submit(&d->ring);
        while (zero > 0 && reap(d, 1)) {
        }
#endif
        bw[r] = (double)n / (spill_now() - t0);
        if (zerr) {
            spill_err_set(err, "%s", d->ioerr);
            goto out_ptrs;
        }
    }
    rc = 0;
out_ptrs:
    d->slot_pending = NULL;
    d->slot_err = NULL;
out:
    free(buf);
    spill_disk_free(d);
    return rc;
}

int spill_disk_mode_parse(const char *name, spill_disk_mode *mode, spill_err *err) {
    if (!name || !strcasecmp(name, "uring")) *mode = SPILL_DISK_URING;
    else if (!strcasecmp(name, "mmap")) *mode = SPILL_DISK_MMAP;
    else return spill_err_set(err, "--disk-io '%s': uring or mmap", name);
    return 0;
}
