/* The safetensors format (8-byte little-endian header length, a JSON
 * header naming each tensor's dtype, shape and byte range, then the raw
 * little-endian data), so PyTorch and Hugging Face tools load exported
 * weights directly. Only F32 tensors are written. */
#ifndef RINGMASTER_SAFETENSORS_H
#define RINGMASTER_SAFETENSORS_H

#include "checkpoint.h"
#include "error.h"

/* Writes the tensors (names, shapes, offsets into params) to path
 * atomically; metadata is a list of "key", "value" string pairs. */
int rm_safetensors_write(const char *path, const rm_ckpt_tensor *tensors, int n_tensors, const float *params,
                         const char *const *metadata, int n_metadata, rm_error *err);

#endif
