#include "idx_import.h"

#include "fsutil.h"
#include "shard.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#define IDX_TYPE_U8 0x08
#define IDX_MAX_SAMPLES (1L << 31)

typedef struct idx_file {
    const char *path;
    gzFile gz;
    int ndims;
    long dims[4];
} idx_file;

static int read_exact(idx_file *f, void *buf, size_t len, const char *what, rm_error *err)
{
    uint8_t *p = buf;
    while (len > 0) {
        unsigned chunk = len > (1u << 30) ? (1u << 30) : (unsigned)len;
        int n = gzread(f->gz, p, chunk);
        if (n < 0) {
            int code;
            const char *msg = gzerror(f->gz, &code);
            return rm_fail(err, "%s: cannot read %s: %s", f->path, what, msg);
        }
        if (n == 0)
            return rm_fail(err, "%s: file is truncated (ends inside the %s)", f->path, what);
        p += n;
        len -= (size_t)n;
    }
    return RM_OK;
}

static int idx_open(idx_file *f, const char *path, int want_dims, rm_error *err)
{
    memset(f, 0, sizeof *f);
    f->path = path;
    f->gz = gzopen(path, "rb");
    if (!f->gz)
        return rm_fail_errno(err, errno ? errno : ENOMEM, "%s: cannot open", path);
    uint8_t magic[4];
    if (read_exact(f, magic, 4, "header", err) != RM_OK)
        return RM_ERR;
    if (magic[0] != 0 || magic[1] != 0 || magic[3] < 1 || magic[3] > 4)
        return rm_fail(err, "%s: not an IDX file (bad magic %02x %02x %02x %02x)", path, magic[0], magic[1],
                       magic[2], magic[3]);
    if (magic[2] != IDX_TYPE_U8)
        return rm_fail(err, "%s: IDX element type 0x%02x is not supported (only unsigned bytes, 0x08)", path,
                       magic[2]);
    f->ndims = magic[3];
    if (f->ndims != want_dims)
        return rm_fail(err, "%s: has %d dimensions, expected %d (%s)", path, f->ndims, want_dims,
                       want_dims == 1 ? "a labels file" : "an images file");
    for (int i = 0; i < f->ndims; i++) {
        uint8_t b[4];
        if (read_exact(f, b, 4, "header", err) != RM_OK)
            return RM_ERR;
        f->dims[i] = (long)((uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3]);
        if (f->dims[i] <= 0)
            return rm_fail(err, "%s: dimension %d is zero", path, i);
    }
    if (f->dims[0] > IDX_MAX_SAMPLES)
        return rm_fail(err, "%s: %ld samples is more than supported", path, f->dims[0]);
    return RM_OK;
}

static void idx_close(idx_file *f)
{
    if (f->gz)
        gzclose(f->gz);
    f->gz = NULL;
}

static int expect_end(idx_file *f, rm_error *err)
{
    uint8_t extra;
    int n = gzread(f->gz, &extra, 1);
    if (n < 0) {
        int code;
        return rm_fail(err, "%s: cannot read: %s", f->path, gzerror(f->gz, &code));
    }
    if (n > 0)
        return rm_fail(err, "%s: has bytes after the last sample (wrong header or damaged file)", f->path);
    return RM_OK;
}

int rm_idx_import(const char *images_path, const char *labels_path, const char *out_dir, long shard_samples,
                  rm_idx_import_result *result, rm_error *err)
{
    idx_file images, labels;
    rm_shard_index index = {0};
    uint8_t *records = NULL, *pixels = NULL, *label_bytes = NULL;
    int rc = RM_ERR;
    memset(&labels, 0, sizeof labels);

    if (shard_samples <= 0)
        return rm_fail(err, "shard size must be positive");
    if (idx_open(&images, images_path, 3, err) != RM_OK)
        goto out;
    if (idx_open(&labels, labels_path, 1, err) != RM_OK)
        goto out;
    long n = images.dims[0];
    if (labels.dims[0] != n) {
        rm_fail(err, "%s has %ld images but %s has %ld labels", images_path, n, labels_path, labels.dims[0]);
        goto out;
    }
    long input_dim = images.dims[1] * images.dims[2];
    if (input_dim > (1L << 24)) {
        rm_fail(err, "%s: images of %ld x %ld are too large", images_path, images.dims[1], images.dims[2]);
        goto out;
    }
    if (rm_mkdirs(out_dir, 0755, err) != RM_OK)
        goto out;

    long per_shard = shard_samples < n ? shard_samples : n;
    long record_bytes = 1 + input_dim;
    records = malloc((size_t)per_shard * (size_t)record_bytes);
    pixels = malloc((size_t)per_shard * (size_t)input_dim);
    label_bytes = malloc((size_t)per_shard);
    int n_shards = (int)((n + per_shard - 1) / per_shard);
    index.shards = calloc((size_t)n_shards, sizeof *index.shards);
    if (!records || !pixels || !label_bytes || !index.shards) {
        rm_fail(err, "out of memory importing %s", images_path);
        goto out;
    }
    int max_label = 0;
    for (int s = 0; s < n_shards; s++) {
        long count = (s + 1) * per_shard <= n ? per_shard : n - (long)s * per_shard;
        if (read_exact(&images, pixels, (size_t)count * (size_t)input_dim, "image data", err) != RM_OK ||
            read_exact(&labels, label_bytes, (size_t)count, "label data", err) != RM_OK)
            goto out;
        for (long i = 0; i < count; i++) {
            if (label_bytes[i] > max_label)
                max_label = label_bytes[i];
            records[i * record_bytes] = label_bytes[i];
            memcpy(records + i * record_bytes + 1, pixels + i * input_dim, (size_t)input_dim);
        }
        rm_shard_info *info = &index.shards[s];
        snprintf(info->file, sizeof info->file, "shard-%05d.rms", s);
        info->samples = count;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", out_dir, info->file);
        if (rm_shard_write(path, records, count, record_bytes, &info->checksum, err) != RM_OK)
            goto out;
    }
    if (expect_end(&images, err) != RM_OK || expect_end(&labels, err) != RM_OK)
        goto out;
    if (max_label < 1) {
        rm_fail(err, "%s: every label is 0; not a classification dataset", labels_path);
        goto out;
    }
    index.samples = n;
    index.input_dim = input_dim;
    index.classes = max_label + 1;
    index.record_bytes = record_bytes;
    index.n_shards = n_shards;
    if (rm_shard_index_write(out_dir, &index, err) != RM_OK)
        goto out;
    if (result)
        *result = (rm_idx_import_result){n, input_dim, index.classes, n_shards};
    rc = RM_OK;
out:
    idx_close(&images);
    idx_close(&labels);
    free(records);
    free(pixels);
    free(label_bytes);
    rm_shard_index_free(&index);
    return rc;
}
