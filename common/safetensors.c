#include "safetensors.h"

#include "fsutil.h"
#include "json.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int rm_safetensors_write(const char *path, const rm_ckpt_tensor *tensors, int n_tensors, const float *params,
                         const char *const *metadata, int n_metadata, rm_error *err)
{
    char *header = NULL;
    size_t header_len = 0;
    FILE *h = open_memstream(&header, &header_len);
    if (!h)
        return rm_fail(err, "out of memory");
    fputs("{\"__metadata__\":{", h);
    for (int i = 0; i < n_metadata; i++) {
        if (i)
            fputc(',', h);
        rm_json_string(h, metadata[2 * i]);
        fputc(':', h);
        rm_json_string(h, metadata[2 * i + 1]);
    }
    fputc('}', h);
    uint64_t at = 0;
    for (int i = 0; i < n_tensors; i++) {
        const rm_ckpt_tensor *t = &tensors[i];
        uint64_t bytes = sizeof(float);
        fputc(',', h);
        rm_json_string(h, t->name);
        fputs(":{\"dtype\":\"F32\",\"shape\":[", h);
        for (int d = 0; d < t->ndim; d++) {
            fprintf(h, "%s%ld", d ? "," : "", t->shape[d]);
            bytes *= (uint64_t)t->shape[d];
        }
        fprintf(h, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)at, (unsigned long long)(at + bytes));
        at += bytes;
    }
    fputc('}', h);
    /* Pad with spaces so the data starts 8-byte aligned, as the format advises. */
    while ((8 + ftell(h)) % 8 != 0)
        fputc(' ', h);
    fclose(h);

    uint8_t len_le[8];
    for (int i = 0; i < 8; i++)
        len_le[i] = (uint8_t)((uint64_t)header_len >> (8 * i));
    int n_parts = 2 + n_tensors;
    const void **parts = calloc((size_t)n_parts, sizeof *parts);
    size_t *lens = calloc((size_t)n_parts, sizeof *lens);
    int rc;
    if (!parts || !lens) {
        rc = rm_fail(err, "out of memory");
    } else {
        parts[0] = len_le;
        lens[0] = 8;
        parts[1] = header;
        lens[1] = header_len;
        for (int i = 0; i < n_tensors; i++) {
            size_t count = 1;
            for (int d = 0; d < tensors[i].ndim; d++)
                count *= (size_t)tensors[i].shape[d];
            parts[2 + i] = params + tensors[i].offset;
            lens[2 + i] = count * sizeof(float);
        }
        rc = rm_write_parts_atomic(path, parts, lens, n_parts, err);
    }
    free(parts);
    free(lens);
    free(header);
    return rc;
}
