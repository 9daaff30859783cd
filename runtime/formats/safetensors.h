/* safetensors: one file or the shards of a Hugging Face checkpoint, mapped read-only and checked
 * as hostile input before anything is used. A file is: 8 bytes little-endian header length N, N
 * bytes of JSON {"name": {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}},
 * then the data. Accepted dtypes: F32, F16, BF16. Checked: N <= 100 MB and inside the file, strict
 * JSON with no duplicate names, every size = elements x dtype size without overflow, the offsets
 * contiguous from 0 and ending exactly at the end of the file. */
#ifndef SPILL_SAFETENSORS_H
#define SPILL_SAFETENSORS_H

#include "spill_common.h"

#define SPILL_ST_MAX_HEADER (100ull << 20)

typedef struct spill_st_tensor {
    char *name;
    uint32_t type; /* spill_dtype: SPILL_DT_F32, F16 or BF16 */
    int n_dims;
    uint64_t shape[4]; /* as written: shape[0] is the slowest dimension (rows of a matrix) */
    uint64_t bytes;
    const void *data;
    int file; /* index into files */
} spill_st_tensor;

typedef struct spill_st_file {
    char *path;
    const uint8_t *map;
    uint64_t size;
} spill_st_file;

typedef struct spill_safetensors {
    spill_st_file *files;
    int n_files;
    spill_st_tensor *t;
    int n;
} spill_safetensors;

/* Map one file and add its tensors (a name already present in an earlier file is an error). */
int spill_st_add_file(spill_safetensors *st, const char *path, spill_err *err);
/* A Hugging Face directory: model.safetensors, or the shards model.safetensors.index.json lists
 * (every tensor it names must be in the shard it names). */
int spill_st_open_dir(spill_safetensors *st, const char *dir, spill_err *err);
const spill_st_tensor *spill_st_find(const spill_safetensors *st, const char *name);
void spill_st_close(spill_safetensors *st);

#endif
