/* safetensors reader (see safetensors.h). */
#include "safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "spill_json.h"
#include "spill_kernels.h"

typedef struct span {
    uint64_t begin, end;
    int idx;
} span;

static int span_cmp(const void *a, const void *b) {
    const span *x = a, *y = b;
    return x->begin < y->begin ? -1 : x->begin > y->begin;
}

static int dtype_of(const char *s, uint32_t *type, uint64_t *size) {
    if (!strcmp(s, "F32")) *type = SPILL_DT_F32, *size = 4;
    else if (!strcmp(s, "F16")) *type = SPILL_DT_F16, *size = 2;
    else if (!strcmp(s, "BF16")) *type = SPILL_DT_BF16, *size = 2;
    else return -1;
    return 0;
}

static int parse_header(spill_safetensors *st, int fi, const char *json, uint64_t hlen, uint64_t data_len, spill_err *err) {
    const char *path = st->files[fi].path;
    spill_json *j;
    char what[600];
    snprintf(what, sizeof what, "%s (header)", path);
    if (spill_json_parse(json, hlen, what, &j, err)) return -1;
    int rc = -1;
    span *sp = NULL;
    if (j->type != SPILL_JSON_OBJECT) {
        spill_err_set(err, "%s: the header is not a JSON object", path);
        goto out;
    }
    size_t n_new = 0;
    for (size_t i = 0; i < j->n; i++) n_new += strcmp(j->keys[i], "__metadata__") != 0;
    spill_st_tensor *nt = realloc(st->t, sizeof *nt * ((size_t)st->n + n_new + 1));
    sp = calloc(n_new + 1, sizeof *sp);
    if (!nt || !sp) {
        if (nt) st->t = nt;
        spill_err_set(err, "%s: out of memory", path);
        goto out;
    }
    st->t = nt;
    size_t k = 0;
    for (size_t i = 0; i < j->n; i++) {
        const char *name = j->keys[i];
        const spill_json *v = &j->items[i];
        if (!strcmp(name, "__metadata__")) continue;
        if (spill_st_find(st, name)) {
            spill_err_set(err, "%s: tensor '%s' appears twice (already in %s)", path, name,
                          st->files[st->t[spill_st_find(st, name) - st->t].file].path);
            goto out;
        }
        const spill_json *dt = spill_json_get_type(v, "dtype", SPILL_JSON_STRING);
        const spill_json *shape = spill_json_get_type(v, "shape", SPILL_JSON_ARRAY);
        const spill_json *offs = spill_json_get_type(v, "data_offsets", SPILL_JSON_ARRAY);
        if (!dt || !shape || !offs) {
            spill_err_set(err, "%s: tensor '%s' needs \"dtype\", \"shape\" and \"data_offsets\"", path, name);
            goto out;
        }
        spill_st_tensor *t = &st->t[st->n];
        memset(t, 0, sizeof *t);
        uint64_t esz;
        if (dtype_of(dt->str, &t->type, &esz)) {
            spill_err_set(err, "%s: tensor '%s' has dtype %s; spill reads F32, F16 and BF16", path, name, dt->str);
            goto out;
        }
        if (shape->n > 4) {
            spill_err_set(err, "%s: tensor '%s' has %zu dimensions; at most 4 are supported", path, name, shape->n);
            goto out;
        }
        uint64_t elems = 1;
        for (size_t d = 0; d < shape->n; d++) {
            const spill_json *x = &shape->items[d];
            if (x->type != SPILL_JSON_NUMBER || !x->is_int || x->integer < 0) {
                spill_err_set(err, "%s: tensor '%s': shape entry %zu is not a non-negative integer", path, name, d);
                goto out;
            }
            t->shape[d] = (uint64_t)x->integer;
            if (spill_mul_u64(elems, t->shape[d], &elems)) {
                spill_err_set(err, "%s: tensor '%s': its shape overflows 64 bits", path, name);
                goto out;
            }
        }
        t->n_dims = (int)shape->n;
        if (spill_mul_u64(elems, esz, &t->bytes)) {
            spill_err_set(err, "%s: tensor '%s': its size overflows 64 bits", path, name);
            goto out;
        }
        if (offs->n != 2 || offs->items[0].type != SPILL_JSON_NUMBER || !offs->items[0].is_int ||
            offs->items[1].type != SPILL_JSON_NUMBER || !offs->items[1].is_int || offs->items[0].integer < 0 ||
            offs->items[1].integer < offs->items[0].integer) {
            spill_err_set(err, "%s: tensor '%s': data_offsets must be [begin, end] with 0 <= begin <= end", path, name);
            goto out;
        }
        uint64_t b = (uint64_t)offs->items[0].integer, e = (uint64_t)offs->items[1].integer;
        if (e - b != t->bytes) {
            spill_err_set(err, "%s: tensor '%s': data_offsets hold %llu bytes but %s x shape needs %llu", path, name,
                          (unsigned long long)(e - b), dt->str, (unsigned long long)t->bytes);
            goto out;
        }
        if (e > data_len) {
            spill_err_set(err, "%s: tensor '%s' ends at byte %llu of the data but the file holds %llu (truncated?)", path,
                          name, (unsigned long long)e, (unsigned long long)data_len);
            goto out;
        }
        if (!(t->name = strdup(name))) {
            spill_err_set(err, "%s: out of memory", path);
            goto out;
        }
        t->file = fi;
        t->data = st->files[fi].map + 8 + hlen + b;
        sp[k++] = (span){b, e, st->n};
        st->n++;
    }
    /* the data is the tensors, back to back from 0 to the end of the file: no gaps, no overlaps */
    qsort(sp, k, sizeof *sp, span_cmp);
    uint64_t at = 0;
    for (size_t i = 0; i < k; i++) {
        if (sp[i].begin != at) {
            spill_err_set(err, "%s: tensor '%s' starts at data byte %llu but the previous one ends at %llu (the data must "
                               "be contiguous)", path, st->t[sp[i].idx].name, (unsigned long long)sp[i].begin,
                          (unsigned long long)at);
            goto out;
        }
        at = sp[i].end;
    }
    if (at != data_len) {
        spill_err_set(err, "%s: the tensors end at data byte %llu but the file has %llu bytes of data", path,
                      (unsigned long long)at, (unsigned long long)data_len);
        goto out;
    }
    rc = 0;
out:
    free(sp);
    spill_json_free(j);
    return rc;
}

int spill_st_add_file(spill_safetensors *st, const char *path, spill_err *err) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return spill_err_set(err, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) || !S_ISREG(sb.st_mode)) {
        close(fd);
        return spill_err_set(err, "%s: not a regular file", path);
    }
    uint64_t size = (uint64_t)sb.st_size;
    if (size < 8) {
        close(fd);
        return spill_err_set(err, "%s: %llu bytes; a safetensors file starts with an 8-byte header length", path,
                             (unsigned long long)size);
    }
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) return spill_err_set(err, "%s: mmap failed: %s", path, strerror(errno));
    spill_st_file *nf = realloc(st->files, sizeof *nf * (size_t)(st->n_files + 1));
    if (!nf) {
        munmap(map, size);
        return spill_err_set(err, "%s: out of memory", path);
    }
    st->files = nf;
    spill_st_file *f = &st->files[st->n_files];
    f->map = map;
    f->size = size;
    if (!(f->path = strdup(path))) {
        munmap(map, size);
        return spill_err_set(err, "%s: out of memory", path);
    }
    st->n_files++;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | f->map[i]; /* little-endian, whatever the host */
    if (hlen > SPILL_ST_MAX_HEADER)
        return spill_err_set(err, "%s: the header is %llu bytes; the limit is %llu (100 MB)", path, (unsigned long long)hlen,
                             (unsigned long long)SPILL_ST_MAX_HEADER);
    if (hlen > size - 8)
        return spill_err_set(err, "%s: the header is %llu bytes but the file has only %llu after the length", path,
                             (unsigned long long)hlen, (unsigned long long)(size - 8));
    return parse_header(st, st->n_files - 1, (const char *)f->map + 8, hlen, size - 8 - hlen, err);
}

static int file_exists(const char *p) {
    struct stat sb;
    return !stat(p, &sb);
}

int spill_st_open_dir(spill_safetensors *st, const char *dir, spill_err *err) {
    memset(st, 0, sizeof *st);
    char path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    if (!file_exists(path)) {
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        if (!file_exists(path))
            return spill_err_set(err, "%s: neither model.safetensors nor model.safetensors.index.json is there", dir);
        if (spill_st_add_file(st, path, err)) {
            spill_st_close(st);
            return -1;
        }
        return 0;
    }
    spill_json *idx;
    if (spill_json_parse_file(path, 64 << 20, &idx, err)) return -1;
    const spill_json *wm = spill_json_get_type(idx, "weight_map", SPILL_JSON_OBJECT);
    int rc = -1;
    if (!wm) {
        spill_err_set(err, "%s: \"weight_map\" (tensor name -> shard file) is missing", path);
        goto out;
    }
    for (size_t i = 0; i < wm->n; i++) {
        const spill_json *shard = &wm->items[i];
        if (shard->type != SPILL_JSON_STRING || !shard->len || strchr(shard->str, '/') || strstr(shard->str, "..")) {
            spill_err_set(err, "%s: tensor '%s' maps to a shard that is not a plain file name", path, wm->keys[i]);
            goto out;
        }
        char sp[4096];
        snprintf(sp, sizeof sp, "%s/%s", dir, shard->str);
        int have = 0;
        for (int f = 0; f < st->n_files && !have; f++) have = !strcmp(st->files[f].path, sp);
        if (!have) {
            if (!file_exists(sp)) {
                spill_err_set(err, "%s: shard %s (listed for tensor '%s') is missing", path, sp, wm->keys[i]);
                goto out;
            }
            if (spill_st_add_file(st, sp, err)) goto out;
        }
        const spill_st_tensor *t = spill_st_find(st, wm->keys[i]);
        if (!t || strcmp(st->files[t->file].path, sp)) {
            spill_err_set(err, "%s: tensor '%s' is listed in %s but is not there", path, wm->keys[i], sp);
            goto out;
        }
    }
    rc = 0;
out:
    spill_json_free(idx);
    if (rc) spill_st_close(st);
    return rc;
}

const spill_st_tensor *spill_st_find(const spill_safetensors *st, const char *name) {
    for (int i = 0; i < st->n; i++)
        if (!strcmp(st->t[i].name, name)) return &st->t[i];
    return NULL;
}

void spill_st_close(spill_safetensors *st) {
    for (int i = 0; i < st->n; i++) free(st->t[i].name);
    for (int f = 0; f < st->n_files; f++) {
        munmap((void *)st->files[f].map, st->files[f].size);
        free(st->files[f].path);
    }
    free(st->t);
    free(st->files);
    memset(st, 0, sizeof *st);
}
