/* safetensors, both ways. The input is read as a safetensors file (the
 * reader must accept it or refuse it with a message, and what it accepts
 * tiles the data section); and it also describes tensors that are written
 * with rm_safetensors_write and read back, which must give the same names,
 * shapes and bytes. */
#include "fuzz_util.h"
#include "safetensors.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void read_as_file(const uint8_t *data, size_t size)
{
    const char *path = fuzz_path(1, "in.safetensors");
    fuzz_write(path, data, size);
    rm_safetensors st;
    rm_error err;
    if (rm_safetensors_read(path, &st, &err) == RM_OK) {
        uint64_t covered = 0;
        for (int i = 0; i < st.n_tensors; i++)
            covered += st.tensors[i].end - st.tensors[i].begin;
        if (covered != st.data_bytes)
            abort();
    }
    rm_safetensors_free(&st);
}

/* Tensors from the input: byte 0 = count (1..4); per tensor a name length
 * and name bytes, ndim (1..2) and dims (1..16); the rest fills the floats. */
static void round_trip(const uint8_t *data, size_t size)
{
    size_t at = 0;
#define NEXT() (at < size ? data[at++] : 0)
    int n = 1 + NEXT() % 4;
    rm_ckpt_tensor t[4];
    memset(t, 0, sizeof t);
    long total = 0;
    for (int i = 0; i < n; i++) {
        size_t name_len = 1 + NEXT() % 40;
        for (size_t c = 0; c < name_len; c++) {
            int ch = NEXT();
            t[i].name[c] = (char)(ch ? ch : 'x'); /* any byte but NUL: quotes, backslashes, controls, UTF-8 */
        }
        snprintf(t[i].name + name_len, sizeof t[i].name - name_len, "#%d", i); /* distinct names */
        t[i].ndim = 1 + NEXT() % 2;
        long count = 1;
        for (int d = 0; d < t[i].ndim; d++) {
            t[i].shape[d] = 1 + NEXT() % 16;
            count *= t[i].shape[d];
        }
        t[i].offset = total;
        total += count;
    }
    float *params = calloc((size_t)total, sizeof *params);
    size_t rest = size > at ? size - at : 0;
    memcpy(params, data + at, rest < (size_t)total * sizeof *params ? rest : (size_t)total * sizeof *params);
    const char *meta[] = {"producer", "ringmaster-fuzz", "note", t[0].name};
    const char *path = fuzz_path(2, "rt.safetensors");
    rm_error err;
    if (rm_safetensors_write(path, t, n, params, meta, 2, &err) != RM_OK) {
        /* the one refusal allowed: names that are not UTF-8 */
        if (!strstr(err.msg, "not valid UTF-8")) {
            fprintf(stderr, "write failed: %s\n", err.msg);
            abort();
        }
        free(params);
        return;
    }
    rm_safetensors st;
    if (rm_safetensors_read(path, &st, &err) != RM_OK) {
        fprintf(stderr, "what the writer wrote does not read back: %s\n", err.msg);
        abort();
    }
    if (st.n_tensors != n || st.n_metadata != 2 || strcmp(st.metadata[3], t[0].name) != 0)
        abort();
    for (int i = 0; i < n; i++) {
        const rm_st_tensor *r = rm_safetensors_find(&st, t[i].name);
        if (!r || r->ndim != t[i].ndim)
            abort();
        long count = 1;
        for (int d = 0; d < r->ndim; d++) {
            if (r->shape[d] != (uint64_t)t[i].shape[d])
                abort();
            count *= t[i].shape[d];
        }
        if (r->end - r->begin != (uint64_t)count * 4 ||
            memcmp(st.data + r->begin, params + t[i].offset, (size_t)count * 4) != 0)
            abort();
    }
    rm_safetensors_free(&st);
    free(params);
#undef NEXT
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    read_as_file(data, size);
    round_trip(data, size);
    return 0;
}
