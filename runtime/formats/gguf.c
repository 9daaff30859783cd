#include "gguf.h"

#include "spill_kernels.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_KEY_LEN 65536u
#define MAX_NAME_LEN 1024u
#define MAX_ARRAY_DEPTH 4

typedef struct cursor {
    const spill_gguf *g;
    uint64_t pos;
    spill_err *err;
} cursor;

static const uint32_t scalar_size[SPILL_GGUF_TYPE_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

const char *spill_gguf_type_name(uint32_t t) {
    static const char *n[] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64"};
    return t < SPILL_GGUF_TYPE_COUNT ? n[t] : "unknown";
}

int spill_str_eq(spill_str s, const char *c) {
    size_t n = strlen(c);
    return s.len == n && memcmp(s.ptr, c, n) == 0;
}

static int need(cursor *c, uint64_t n, const char *what) {
    uint64_t end;
    if (spill_add_u64(c->pos, n, &end) || end > c->g->size)
        return spill_err_set(c->err, "%s: truncated: %s needs %llu bytes at offset %llu but the file has %llu bytes",
                             c->g->path, what, (unsigned long long)n, (unsigned long long)c->pos,
                             (unsigned long long)c->g->size);
    return 0;
}

static int rd(cursor *c, void *out, uint64_t n, const char *what) {
    if (need(c, n, what)) return -1;
    memcpy(out, c->g->map + c->pos, n); /* little-endian host assumed (x86-64, aarch64) */
    c->pos += n;
    return 0;
}

static int rd_str(cursor *c, spill_str *s, uint64_t max, const char *what) {
    uint64_t len;
    if (rd(c, &len, 8, what)) return -1;
    if (len > max)
        return spill_err_set(c->err, "%s: %s has length %llu at offset %llu; the limit is %llu", c->g->path, what,
                             (unsigned long long)len, (unsigned long long)(c->pos - 8), (unsigned long long)max);
    if (need(c, len, what)) return -1;
    s->ptr = (const char *)c->g->map + c->pos;
    s->len = len;
    c->pos += len;
    return 0;
}

/* Validate (and skip) one value of `type`; keys name the field for errors. */
static int skip_value(cursor *c, uint32_t type, int depth, const char *what) {
    if (type >= SPILL_GGUF_TYPE_COUNT)
        return spill_err_set(c->err, "%s: %s has value type %u; valid types are 0..%d", c->g->path, what, type,
                             SPILL_GGUF_TYPE_COUNT - 1);
    if (type == SPILL_GGUF_STRING) {
        spill_str s;
        return rd_str(c, &s, c->g->size, what);
    }
    if (type != SPILL_GGUF_ARRAY) {
        if (need(c, scalar_size[type], what)) return -1;
        c->pos += scalar_size[type];
        return 0;
    }
    if (depth >= MAX_ARRAY_DEPTH)
        return spill_err_set(c->err, "%s: %s nests arrays deeper than %d", c->g->path, what, MAX_ARRAY_DEPTH);
    uint32_t et;
    uint64_t n;
    if (rd(c, &et, 4, what) || rd(c, &n, 8, what)) return -1;
    if (et >= SPILL_GGUF_TYPE_COUNT)
        return spill_err_set(c->err, "%s: %s is an array of type %u; valid types are 0..%d", c->g->path, what, et,
                             SPILL_GGUF_TYPE_COUNT - 1);
    /* each element takes at least one byte (8 for strings and arrays): a count that cannot fit
     * in what is left of the file is refused before any loop runs */
    uint64_t min_elem = scalar_size[et] ? scalar_size[et] : (et == SPILL_GGUF_STRING ? 8 : 12);
    uint64_t left = c->g->size - c->pos;
    if (n > left / min_elem)
        return spill_err_set(c->err, "%s: %s claims %llu elements of %s but only %llu bytes are left in the file",
                             c->g->path, what, (unsigned long long)n, spill_gguf_type_name(et),
                             (unsigned long long)left);
    if (scalar_size[et]) {
        c->pos += n * scalar_size[et];
        return 0;
    }
    for (uint64_t i = 0; i < n; i++)
        if (skip_value(c, et, depth + 1, what)) return -1;
    return 0;
}

static int cmp_tensor_name(const void *a, const void *b) {
    const spill_gguf_tensor *x = *(spill_gguf_tensor *const *)a, *y = *(spill_gguf_tensor *const *)b;
    uint64_t n = x->name.len < y->name.len ? x->name.len : y->name.len;
    int r = memcmp(x->name.ptr, y->name.ptr, n);
    if (r) return r;
    return x->name.len < y->name.len ? -1 : x->name.len > y->name.len;
}

static int parse(spill_gguf *g, spill_err *err) {
    cursor c = {g, 0, err};
    uint32_t magic;
    if (rd(&c, &magic, 4, "magic")) return -1;
    if (memcmp(&magic, "GGUF", 4))
        return spill_err_set(err, "%s: not a GGUF file (magic bytes %02x %02x %02x %02x, expected 'GGUF')", g->path,
                             g->map[0], g->map[1], g->map[2], g->map[3]);
    if (rd(&c, &g->version, 4, "version")) return -1;
    if (g->version != 2 && g->version != 3)
        return spill_err_set(err, "%s: GGUF version %u is not supported (2 and 3 are)", g->path, g->version);
    if (rd(&c, &g->n_tensors, 8, "tensor count") || rd(&c, &g->n_kv, 8, "metadata count")) return -1;
    /* a key-value pair takes at least 12 bytes, a tensor info at least 24 */
    if (g->n_kv > (g->size - c.pos) / 12)
        return spill_err_set(err, "%s: metadata count %llu cannot fit in a %llu-byte file", g->path,
                             (unsigned long long)g->n_kv, (unsigned long long)g->size);
    if (g->n_tensors > (g->size - c.pos) / 24)
        return spill_err_set(err, "%s: tensor count %llu cannot fit in a %llu-byte file", g->path,
                             (unsigned long long)g->n_tensors, (unsigned long long)g->size);
    g->kv = calloc(g->n_kv ? g->n_kv : 1, sizeof *g->kv);
    g->tensors = calloc(g->n_tensors ? g->n_tensors : 1, sizeof *g->tensors);
    if (!g->kv || !g->tensors) return spill_err_set(err, "%s: out of memory reading the header", g->path);

    g->alignment = 32;
    for (uint64_t i = 0; i < g->n_kv; i++) {
        spill_gguf_kv *kv = &g->kv[i];
        char what[160];
        snprintf(what, sizeof what, "metadata key #%llu", (unsigned long long)i);
        if (rd_str(&c, &kv->key, MAX_KEY_LEN, what)) return -1;
        snprintf(what, sizeof what, "metadata '%.*s'", (int)(kv->key.len > 100 ? 100 : kv->key.len), kv->key.ptr);
        if (rd(&c, &kv->type, 4, what)) return -1;
        uint64_t start = c.pos;
        if (kv->type == SPILL_GGUF_ARRAY) {
            if (need(&c, 12, what)) return -1;
            memcpy(&kv->arr_type, g->map + c.pos, 4);
            memcpy(&kv->arr_count, g->map + c.pos + 4, 8);
            kv->arr_data = g->map + c.pos + 12;
        }
        if (skip_value(&c, kv->type, 0, what)) return -1;
        const uint8_t *p = g->map + start;
        switch (kv->type) {
        case SPILL_GGUF_U8: kv->num.u = p[0]; break;
        case SPILL_GGUF_I8: kv->num.i = (int8_t)p[0]; break;
        case SPILL_GGUF_BOOL: kv->num.u = p[0]; break;
        case SPILL_GGUF_U16: { uint16_t v; memcpy(&v, p, 2); kv->num.u = v; break; }
        case SPILL_GGUF_I16: { int16_t v; memcpy(&v, p, 2); kv->num.i = v; break; }
        case SPILL_GGUF_U32: { uint32_t v; memcpy(&v, p, 4); kv->num.u = v; break; }
        case SPILL_GGUF_I32: { int32_t v; memcpy(&v, p, 4); kv->num.i = v; break; }
        case SPILL_GGUF_F32: { float v; memcpy(&v, p, 4); kv->num.f = v; break; }
        case SPILL_GGUF_U64: memcpy(&kv->num.u, p, 8); break;
        case SPILL_GGUF_I64: memcpy(&kv->num.i, p, 8); break;
        case SPILL_GGUF_F64: memcpy(&kv->num.f, p, 8); break;
        case SPILL_GGUF_STRING: memcpy(&kv->str.len, p, 8); kv->str.ptr = (const char *)p + 8; break;
        default: break;
        }
        if (spill_str_eq(kv->key, "general.alignment")) {
            if (kv->type != SPILL_GGUF_U32)
                return spill_err_set(err, "%s: general.alignment has type %s; expected u32", g->path,
                                     spill_gguf_type_name(kv->type));
            if (kv->num.u == 0 || (kv->num.u & (kv->num.u - 1)) || kv->num.u > (1u << 20))
                return spill_err_set(err, "%s: general.alignment is %llu; it must be a power of two up to 1 MiB",
                                     g->path, (unsigned long long)kv->num.u);
            g->alignment = (uint32_t)kv->num.u;
        }
    }

    for (uint64_t i = 0; i < g->n_tensors; i++) {
        spill_gguf_tensor *t = &g->tensors[i];
        char what[200];
        snprintf(what, sizeof what, "tensor #%llu name", (unsigned long long)i);
        if (rd_str(&c, &t->name, MAX_NAME_LEN, what)) return -1;
        snprintf(what, sizeof what, "tensor '%.*s'", (int)t->name.len, t->name.ptr);
        if (rd(&c, &t->n_dims, 4, what)) return -1;
        if (t->n_dims < 1 || t->n_dims > 4)
            return spill_err_set(err, "%s: %s has %u dimensions; 1..4 are allowed", g->path, what, t->n_dims);
        uint64_t nel = 1;
        for (uint32_t d = 0; d < 4; d++) t->ne[d] = 1;
        for (uint32_t d = 0; d < t->n_dims; d++) {
            if (rd(&c, &t->ne[d], 8, what)) return -1;
            if (t->ne[d] == 0 || t->ne[d] > (uint64_t)INT64_MAX)
                return spill_err_set(err, "%s: %s has dimension %u = %llu; it must be between 1 and 2^63-1", g->path,
                                     what, d, (unsigned long long)t->ne[d]);
            if (spill_mul_u64(nel, t->ne[d], &nel) || nel > (uint64_t)INT64_MAX)
                return spill_err_set(err, "%s: %s has more elements than 2^63 (dimension product overflows)",
                                     g->path, what);
        }
        if (rd(&c, &t->type, 4, what) || rd(&c, &t->offset, 8, what)) return -1;
        uint32_t bv = spill_dtype_block_values(t->type);
        if (!bv || !spill_dtype_supported(t->type)) /* unknown, or activations only (Q8_1, Q8_K) */
            return spill_err_set(err, "%s: %s has type %u (%s), which spill does not read", g->path, what, t->type,
                                 spill_dtype_name(t->type));
        if (t->ne[0] % bv)
            return spill_err_set(err, "%s: %s has a row of %llu values, not a multiple of the %s block size %u",
                                 g->path, what, (unsigned long long)t->ne[0], spill_dtype_name(t->type), bv);
        uint64_t row = spill_dtype_row_bytes(t->type, t->ne[0]);
        if (spill_mul_u64(row, nel / t->ne[0], &t->bytes))
            return spill_err_set(err, "%s: %s size overflows 64 bits", g->path, what);
    }
    g->data_offset = spill_align_up(c.pos, g->alignment);
    if (g->data_offset > g->size && g->n_tensors)
        return spill_err_set(err, "%s: truncated: tensor data would start at byte %llu but the file has %llu bytes",
                             g->path, (unsigned long long)g->data_offset, (unsigned long long)g->size);
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        spill_gguf_tensor *t = &g->tensors[i];
        uint64_t start, end;
        if (t->offset % g->alignment)
            return spill_err_set(err, "%s: tensor '%.*s' has offset %llu, not a multiple of the alignment %u", g->path,
                                 (int)t->name.len, t->name.ptr, (unsigned long long)t->offset, g->alignment);
        if (spill_add_u64(g->data_offset, t->offset, &start) || spill_add_u64(start, t->bytes, &end) || end > g->size)
            return spill_err_set(err, "%s: tensor '%.*s' ends at byte %llu but the file has %llu bytes", g->path,
                                 (int)t->name.len, t->name.ptr,
                                 (unsigned long long)(g->data_offset + t->offset + t->bytes),
                                 (unsigned long long)g->size);
        t->data = g->map + start;
    }
    /* duplicate names would make lookups ambiguous */
    if (g->n_tensors > 1) {
        spill_gguf_tensor **s = malloc(g->n_tensors * sizeof *s);
        if (!s) return spill_err_set(err, "%s: out of memory", g->path);
        for (uint64_t i = 0; i < g->n_tensors; i++) s[i] = &g->tensors[i];
        qsort(s, g->n_tensors, sizeof *s, cmp_tensor_name);
        for (uint64_t i = 1; i < g->n_tensors; i++)
            if (!cmp_tensor_name(&s[i - 1], &s[i])) {
                spill_err_set(err, "%s: tensor name '%.*s' appears twice", g->path, (int)s[i]->name.len, s[i]->name.ptr);
                free(s);
                return -1;
            }
        free(s);
    }
    return 0;
}

int spill_gguf_open(spill_gguf *g, const char *path, spill_err *err) {
    memset(g, 0, sizeof *g);
    g->path = strdup(path);
    if (!g->path) return spill_err_set(err, "out of memory");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        spill_err_set(err, "%s: cannot open: %s", path, strerror(errno));
        goto fail;
    }
    struct stat st;
    if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
        spill_err_set(err, "%s: not a regular file", path);
        close(fd);
        goto fail;
    }
    g->size = (uint64_t)st.st_size;
    if (g->size < 24) {
        spill_err_set(err, "%s: truncated: %llu bytes is smaller than a GGUF header (24 bytes)", path,
                      (unsigned long long)g->size);
        close(fd);
        goto fail;
    }
    void *m = mmap(NULL, g->size, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (m == MAP_FAILED) {
        spill_err_set(err, "%s: mmap failed: %s", path, strerror(errno));
        goto fail;
    }
    g->map = m;
    if (parse(g, err)) goto fail;
    return 0;
fail:
    spill_gguf_close(g);
    return -1;
}

void spill_gguf_close(spill_gguf *g) {
    if (g->map) munmap((void *)g->map, g->size);
    free(g->kv);
    free(g->tensors);
    free(g->path);
    memset(g, 0, sizeof *g);
}

const spill_gguf_kv *spill_gguf_find(const spill_gguf *g, const char *key) {
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (spill_str_eq(g->kv[i].key, key)) return &g->kv[i];
    return NULL;
}

const spill_gguf_tensor *spill_gguf_tensor_find(const spill_gguf *g, const char *name) {
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (spill_str_eq(g->tensors[i].name, name)) return &g->tensors[i];
    return NULL;
}

static int wrong_type(const spill_gguf *g, const char *key, uint32_t t, const char *want, spill_err *err) {
    return spill_err_set(err, "%s: metadata '%s' has type %s; expected %s", g->path, key, spill_gguf_type_name(t), want);
}

int spill_gguf_get_u32(const spill_gguf *g, const char *key, uint32_t *out, spill_err *err) {
    const spill_gguf_kv *kv = spill_gguf_find(g, key);
    if (!kv) return 1;
    switch (kv->type) {
    case SPILL_GGUF_U8: case SPILL_GGUF_U16: case SPILL_GGUF_U32: case SPILL_GGUF_U64:
        if (kv->num.u > UINT32_MAX) break;
        *out = (uint32_t)kv->num.u;
        return 0;
    case SPILL_GGUF_I8: case SPILL_GGUF_I16: case SPILL_GGUF_I32: case SPILL_GGUF_I64:
        if (kv->num.i < 0 || kv->num.i > (int64_t)UINT32_MAX) break;
        *out = (uint32_t)kv->num.i;
        return 0;
    default:
        return wrong_type(g, key, kv->type, "an integer", err);
    }
    return spill_err_set(err, "%s: metadata '%s' is out of range for a 32-bit count", g->path, key);
}

int spill_gguf_get_f32(const spill_gguf *g, const char *key, float *out, spill_err *err) {
    const spill_gguf_kv *kv = spill_gguf_find(g, key);
    if (!kv) return 1;
    if (kv->type != SPILL_GGUF_F32 && kv->type != SPILL_GGUF_F64) return wrong_type(g, key, kv->type, "f32", err);
    *out = (float)kv->num.f;
    return 0;
}

int spill_gguf_get_bool(const spill_gguf *g, const char *key, int *out, spill_err *err) {
    const spill_gguf_kv *kv = spill_gguf_find(g, key);
    if (!kv) return 1;
    if (kv->type != SPILL_GGUF_BOOL) return wrong_type(g, key, kv->type, "bool", err);
    *out = kv->num.u != 0;
    return 0;
}

int spill_gguf_get_str(const spill_gguf *g, const char *key, spill_str *out, spill_err *err) {
    const spill_gguf_kv *kv = spill_gguf_find(g, key);
    if (!kv) return 1;
    if (kv->type != SPILL_GGUF_STRING) return wrong_type(g, key, kv->type, "string", err);
    *out = kv->str;
    return 0;
}

int spill_gguf_get_arr(const spill_gguf *g, const char *key, uint32_t type, const spill_gguf_kv **out,
                       spill_err *err) {
    const spill_gguf_kv *kv = spill_gguf_find(g, key);
    if (!kv) return 1;
    if (kv->type != SPILL_GGUF_ARRAY || kv->arr_type != type) {
        char want[64];
        snprintf(want, sizeof want, "an array of %s", spill_gguf_type_name(type));
        if (kv->type == SPILL_GGUF_ARRAY)
            return spill_err_set(err, "%s: metadata '%s' is an array of %s; expected %s", g->path, key,
                                 spill_gguf_type_name(kv->arr_type), want);
        return wrong_type(g, key, kv->type, want, err);
    }
    *out = kv;
    return 0;
}

void spill_gguf_arr_strings(const spill_gguf_kv *kv, spill_str *out) {
    const uint8_t *p = kv->arr_data;
    for (uint64_t i = 0; i < kv->arr_count; i++) {
        memcpy(&out[i].len, p, 8);
        out[i].ptr = (const char *)p + 8;
        p += 8 + out[i].len;
    }
}
