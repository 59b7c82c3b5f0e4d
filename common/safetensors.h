/* The safetensors format (8-byte little-endian header length, a JSON
 * header naming each tensor's dtype, shape and byte range, then the raw
 * little-endian data), so PyTorch and Hugging Face tools load exported
 * weights directly. Only F32 tensors are written; any of the format's
 * dtypes is read (a file may carry buffers in other types, such as
 * GPT-2's attention masks), and the caller checks the dtype it uses. */
#ifndef RINGMASTER_SAFETENSORS_H
#define RINGMASTER_SAFETENSORS_H

#include "checkpoint.h"
#include "error.h"

#include <stdint.h>

/* Writes the tensors (names, shapes, offsets into params) to path
 * atomically; metadata is a list of "key", "value" string pairs. */
int rm_safetensors_write(const char *path, const rm_ckpt_tensor *tensors, int n_tensors, const float *params,
                         const char *const *metadata, int n_metadata, rm_error *err);

#define RM_ST_MAX_DIMS 8
#define RM_ST_MAX_TENSORS 65536
#define RM_ST_MAX_HEADER_BYTES (100u << 20)

typedef struct rm_st_tensor {
    char name[128];
    char dtype[8];  /* "F32", "F16", "BF16", "F64", "I64", "I32", "I16", "I8", "U8", "BOOL" */
    int elem_bytes;
    int ndim;
    uint64_t shape[RM_ST_MAX_DIMS];
    uint64_t begin, end; /* byte range in the data section */
} rm_st_tensor;

typedef struct rm_safetensors {
    int n_tensors;
    rm_st_tensor *tensors; /* owned, in file order of their data */
    uint8_t *data;         /* owned: the whole data section */
    uint64_t data_bytes;
    int n_metadata;
    char **metadata; /* owned: n_metadata "key", "value" pairs */
} rm_safetensors;

/* Reads and checks a whole safetensors file: a header that parses, known
 * dtypes, shapes whose size matches their byte ranges, ranges that
 * tile the data section exactly (no overlap, no hole). Free with
 * rm_safetensors_free, also after an error. */
int rm_safetensors_read(const char *path, rm_safetensors *st, rm_error *err);
void rm_safetensors_free(rm_safetensors *st);

/* Tensor by name; NULL when absent. */
const rm_st_tensor *rm_safetensors_find(const rm_safetensors *st, const char *name);

#endif
