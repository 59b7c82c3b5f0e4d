#include "safetensors.h"

#include "fsutil.h"
#include "yaml_tree.h"

#include <errno.h>
#include <sys/stat.h>
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
    int bad = 0;
    fputs("{\"__metadata__\":{", h);
    for (int i = 0; i < n_metadata; i++) {
        if (i)
            fputc(',', h);
        bad |= rm_yaml_write_quoted(h, metadata[2 * i]) != RM_OK;
        fputc(':', h);
        bad |= rm_yaml_write_quoted(h, metadata[2 * i + 1]) != RM_OK;
    }
    fputc('}', h);
    uint64_t at = 0;
    for (int i = 0; i < n_tensors; i++) {
        const rm_ckpt_tensor *t = &tensors[i];
        uint64_t bytes = sizeof(float);
        fputc(',', h);
        bad |= rm_yaml_write_quoted(h, t->name) != RM_OK;
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
    if (bad) {
        free(header);
        return rm_fail(err, "%s: a tensor name or metadata string is not valid UTF-8", path);
    }

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

static int parse_u64(const rm_yaml_node *n, uint64_t *out)
{
    if (!n || n->kind != RM_YAML_SCALAR || n->quoted || !n->value[0])
        return RM_ERR;
    uint64_t v = 0;
    for (const char *p = n->value; *p; p++) {
        if (*p < '0' || *p > '9' || v > (UINT64_MAX - 9) / 10)
            return RM_ERR;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    *out = v;
    return RM_OK;
}

static int by_begin(const void *a, const void *b)
{
    const rm_st_tensor *x = a, *y = b;
    return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : (x->end > y->end) - (x->end < y->end);
}

static int read_metadata(const rm_yaml_node *meta, rm_safetensors *st, const char *path, rm_error *err)
{
    if (meta->kind != RM_YAML_MAPPING)
        return rm_fail(err, "%s: __metadata__ is not an object", path);
    st->metadata = calloc(2 * meta->count + 1, sizeof *st->metadata);
    if (!st->metadata)
        return rm_fail(err, "%s: out of memory", path);
    for (size_t i = 0; i < meta->count; i++) {
        const rm_yaml_node *v = meta->items[i];
        if (v->kind != RM_YAML_SCALAR)
            return rm_fail(err, "%s: metadata value of '%.60s' is not a string", path, meta->keys[i]->value);
        if (!(st->metadata[2 * i] = strdup(meta->keys[i]->value)) || !(st->metadata[2 * i + 1] = strdup(v->value)))
            return rm_fail(err, "%s: out of memory", path);
        st->n_metadata = (int)i + 1;
    }
    return RM_OK;
}

static int read_tensor(const char *name, const rm_yaml_node *e, rm_st_tensor *t, const char *path, rm_error *err)
{
    if (strlen(name) >= sizeof t->name || !name[0])
        return rm_fail(err, "%s: tensor name '%.60s' is empty or too long", path, name);
    snprintf(t->name, sizeof t->name, "%s", name);
    const rm_yaml_node *dtype = rm_yaml_get(e, "dtype"), *shape = rm_yaml_get(e, "shape"),
                       *offsets = rm_yaml_get(e, "data_offsets");
    if (e->kind != RM_YAML_MAPPING || !dtype || dtype->kind != RM_YAML_SCALAR || !shape ||
        shape->kind != RM_YAML_SEQUENCE || !offsets || offsets->kind != RM_YAML_SEQUENCE || offsets->count != 2)
        return rm_fail(err, "%s: tensor %s: needs dtype, shape and data_offsets [begin, end]", path, t->name);
    static const struct {
        const char *name;
        int bytes;
    } dtypes[] = {{"F32", 4}, {"F16", 2}, {"BF16", 2}, {"F64", 8}, {"I64", 8}, {"I32", 4},
                  {"I16", 2}, {"I8", 1},  {"U8", 1},   {"BOOL", 1}};
    t->elem_bytes = 0;
    for (size_t i = 0; i < sizeof dtypes / sizeof dtypes[0] && !t->elem_bytes; i++)
        if (strcmp(dtype->value, dtypes[i].name) == 0) {
            t->elem_bytes = dtypes[i].bytes;
            snprintf(t->dtype, sizeof t->dtype, "%s", dtypes[i].name);
        }
    if (!t->elem_bytes)
        return rm_fail(err, "%s: tensor %s: unknown dtype %.16s", path, t->name, dtype->value);
    if (shape->count > RM_ST_MAX_DIMS)
        return rm_fail(err, "%s: tensor %s: more than %d dimensions", path, t->name, RM_ST_MAX_DIMS);
    uint64_t count = 1;
    t->ndim = (int)shape->count;
    for (int d = 0; d < t->ndim; d++) {
        if (parse_u64(shape->items[d], &t->shape[d]) != RM_OK)
            return rm_fail(err, "%s: tensor %s: dimension %d is not a non-negative integer", path, t->name, d);
        if (t->shape[d] && count > UINT64_MAX / 8 / t->shape[d])
            return rm_fail(err, "%s: tensor %s: shape too large", path, t->name);
        count *= t->shape[d];
    }
    if (parse_u64(offsets->items[0], &t->begin) != RM_OK || parse_u64(offsets->items[1], &t->end) != RM_OK ||
        t->end < t->begin)
        return rm_fail(err, "%s: tensor %s: bad data_offsets", path, t->name);
    uint64_t bytes = count * (uint64_t)t->elem_bytes;
    if (t->end - t->begin != bytes)
        return rm_fail(err, "%s: tensor %s: shape holds %llu bytes but data_offsets span %llu", path, t->name,
                       (unsigned long long)bytes, (unsigned long long)(t->end - t->begin));
    return RM_OK;
}

int rm_safetensors_read(const char *path, rm_safetensors *st, rm_error *err)
{
    memset(st, 0, sizeof *st);
    FILE *f = fopen(path, "rb");
    if (!f)
        return rm_fail_errno(err, errno, "%s: cannot open", path);
    int rc = RM_ERR;
    char *header = NULL;
    rm_yaml_doc doc = {0};
    uint8_t len_le[8];
    struct stat s;
    if (fstat(fileno(f), &s) != 0 || fread(len_le, 1, 8, f) != 8) {
        rm_fail(err, "%s: too short for a safetensors file", path);
        goto out;
    }
    uint64_t header_len = 0, file_bytes = (uint64_t)s.st_size;
    for (int i = 7; i >= 0; i--)
        header_len = (header_len << 8) | len_le[i];
    if (header_len < 2 || header_len > RM_ST_MAX_HEADER_BYTES || header_len > file_bytes - 8) {
        rm_fail(err, "%s: header length %llu does not fit the file (%llu bytes)", path,
                (unsigned long long)header_len, (unsigned long long)file_bytes);
        goto out;
    }
    if (!(header = malloc(header_len + 1)) || fread(header, 1, header_len, f) != header_len) {
        rm_fail(err, "%s: cannot read the header", path);
        goto out;
    }
    header[header_len] = '\0';
    if (memchr(header, '\0', header_len) || header[0] != '{') {
        rm_fail(err, "%s: the header is not a JSON object", path);
        goto out;
    }
    rm_error why;
    if (rm_yaml_parse(header, header_len, path, &doc, &why) != RM_OK) {
        rm_fail(err, "%s: header: %s", path, why.msg);
        goto out;
    }
    const rm_yaml_node *root = doc.root;
    if (!root || root->kind != RM_YAML_MAPPING) {
        rm_fail(err, "%s: the header is not a JSON object", path);
        goto out;
    }
    st->data_bytes = file_bytes - 8 - header_len;
    st->tensors = calloc(root->count + 1, sizeof *st->tensors);
    if (!st->tensors || root->count > RM_ST_MAX_TENSORS) {
        rm_fail(err, "%s: too many tensors or out of memory", path);
        goto out;
    }
    for (size_t i = 0; i < root->count; i++) {
        const char *name = root->keys[i]->value;
        if (strcmp(name, "__metadata__") == 0) {
            if (st->metadata) {
                rm_fail(err, "%s: two __metadata__ entries", path);
                goto out;
            }
            if (read_metadata(root->items[i], st, path, err) != RM_OK)
                goto out;
            continue;
        }
        if (read_tensor(name, root->items[i], &st->tensors[st->n_tensors], path, err) != RM_OK)
            goto out;
        for (int j = 0; j < st->n_tensors; j++)
            if (strcmp(st->tensors[j].name, name) == 0) {
                rm_fail(err, "%s: tensor %s appears twice", path, name);
                goto out;
            }
        st->n_tensors++;
    }
    /* the byte ranges tile the data section: sorted, each starts where the last ended */
    if (st->n_tensors > 1)
        qsort(st->tensors, (size_t)st->n_tensors, sizeof *st->tensors, by_begin);
    uint64_t at = 0;
    for (int i = 0; i < st->n_tensors; i++) {
        if (st->tensors[i].begin != at) {
            rm_fail(err, "%s: tensor %s starts at byte %llu, expected %llu (overlap or hole)", path,
                    st->tensors[i].name, (unsigned long long)st->tensors[i].begin, (unsigned long long)at);
            goto out;
        }
        at = st->tensors[i].end;
    }
    if (at != st->data_bytes) {
        rm_fail(err, "%s: tensors cover %llu bytes of a %llu-byte data section", path, (unsigned long long)at,
                (unsigned long long)st->data_bytes);
        goto out;
    }
    if (!(st->data = malloc(st->data_bytes ? st->data_bytes : 1)) ||
        fread(st->data, 1, st->data_bytes, f) != st->data_bytes) {
        rm_fail(err, "%s: cannot read %llu bytes of tensor data", path, (unsigned long long)st->data_bytes);
        goto out;
    }
    rc = RM_OK;
out:
    rm_yaml_free(&doc);
    free(header);
    fclose(f);
    return rc;
}

void rm_safetensors_free(rm_safetensors *st)
{
    for (int i = 0; st->metadata && st->metadata[i]; i++) /* NULL-terminated, also when cut short */
        free(st->metadata[i]);
    free(st->metadata);
    free(st->tensors);
    free(st->data);
    memset(st, 0, sizeof *st);
}

const rm_st_tensor *rm_safetensors_find(const rm_safetensors *st, const char *name)
{
    for (int i = 0; i < st->n_tensors; i++)
        if (strcmp(st->tensors[i].name, name) == 0)
            return &st->tensors[i];
    return NULL;
}
