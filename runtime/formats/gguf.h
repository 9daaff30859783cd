/* GGUF v2/v3 reader over a read-only mmap of the file. The whole header is validated once at open
 * (every count, length, offset, dimension product and type id, with overflow-safe arithmetic), so
 * the accessors below never read outside the file. */
#ifndef SPILL_GGUF_H
#define SPILL_GGUF_H

#include "hparams.h"

enum {
    SPILL_GGUF_U8 = 0, SPILL_GGUF_I8 = 1, SPILL_GGUF_U16 = 2, SPILL_GGUF_I16 = 3,
    SPILL_GGUF_U32 = 4, SPILL_GGUF_I32 = 5, SPILL_GGUF_F32 = 6, SPILL_GGUF_BOOL = 7,
    SPILL_GGUF_STRING = 8, SPILL_GGUF_ARRAY = 9, SPILL_GGUF_U64 = 10, SPILL_GGUF_I64 = 11,
    SPILL_GGUF_F64 = 12, SPILL_GGUF_TYPE_COUNT
};

/* a string inside the file: not NUL-terminated */
typedef struct spill_str {
    const char *ptr;
    uint64_t len;
} spill_str;

typedef struct spill_gguf_kv {
    spill_str key;
    uint32_t type;
    union { uint64_t u; int64_t i; double f; } num; /* scalars, widened */
    spill_str str;                                  /* STRING */
    uint32_t arr_type;                              /* ARRAY: element type */
    uint64_t arr_count;                             /* ARRAY: number of elements */
    const uint8_t *arr_data;                        /* ARRAY: first element in the file */
} spill_gguf_kv;

typedef struct spill_gguf_tensor {
    spill_str name;
    uint32_t n_dims;
    uint64_t ne[4];   /* ne[0] is the contiguous (row) dimension */
    uint32_t type;    /* spill_dtype / ggml type id */
    uint64_t offset;  /* from the start of the data section */
    uint64_t bytes;
    const void *data; /* inside the mapping */
} spill_gguf_tensor;

typedef struct spill_gguf {
    char *path;
    const uint8_t *map;
    uint64_t size;
    uint32_t version;
    uint64_t n_kv, n_tensors;
    spill_gguf_kv *kv;
    spill_gguf_tensor *tensors;
    uint32_t alignment;
    uint64_t data_offset;
} spill_gguf;

int spill_gguf_open(spill_gguf *g, const char *path, spill_err *err);
void spill_gguf_close(spill_gguf *g);

const spill_gguf_kv *spill_gguf_find(const spill_gguf *g, const char *key);
const spill_gguf_tensor *spill_gguf_tensor_find(const spill_gguf *g, const char *name);

/* Typed getters: 0 on success; 1 if the key is absent (out untouched); -1 with a message if present
 * with the wrong type or out of range. */
int spill_gguf_get_u32(const spill_gguf *g, const char *key, uint32_t *out, spill_err *err);
int spill_gguf_get_f32(const spill_gguf *g, const char *key, float *out, spill_err *err);
int spill_gguf_get_bool(const spill_gguf *g, const char *key, int *out, spill_err *err);
int spill_gguf_get_str(const spill_gguf *g, const char *key, spill_str *out, spill_err *err);
/* An array of `type` elements; count and data as stored. */
int spill_gguf_get_arr(const spill_gguf *g, const char *key, uint32_t type, const spill_gguf_kv **out,
                       spill_err *err);
/* Decode a validated string array into out[count]. */
void spill_gguf_arr_strings(const spill_gguf_kv *kv, spill_str *out);

int spill_str_eq(spill_str s, const char *c);

/* ---- what the metadata says about the model (gguf_meta.c) ---- */
/* general.architecture into arch (NUL-terminated) */
int spill_gguf_arch(const spill_gguf *g, char *arch, size_t len, spill_err *err);
/* "arch.key" as a u32: 0 read, 1 absent (an error naming it when required), -1 error */
int spill_gguf_arch_u32(const spill_gguf *g, const char *arch, const char *key, int required, uint32_t *out,
                        spill_err *err);
/* The hyperparameters under the architecture's prefix, read and checked: block_count, embedding_length,
 * attention.head_count(_kv), feed_forward_length, context_length (2048 when absent, at most 2^24),
 * rope.dimension_count (the head size when absent), layer_norm_rms_epsilon, rope.freq_base; vocab from
 * token_embd.weight's rows (0 when it is missing or malformed: the loader says why), tied when there
 * is no output.weight. */
int spill_gguf_hparams_read(const spill_gguf *g, const char *arch, spill_hparams *hp, spill_err *err);
const char *spill_gguf_type_name(uint32_t t);

#endif
