#include "idx_import.h"

#include "fsutil.h"
#include "shard.h"

#include <errno.h>
#include <sodium.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define IDX_TYPE_U8 0x08
#define IDX_MAX_SAMPLES (1L << 31)

typedef struct idx_file {
    const char *path;
    gzFile gz;
    /* gzip files: the trailer (CRC-32 and length of the data) read from
     * the raw file, checked against what was read. zlib's reader does not
     * notice a stream cut inside its trailer when the reads end exactly at
     * the end of the data. */
    int is_gzip;
    uint32_t trailer_crc, trailer_size, crc, size;
    int ndims;
    long dims[4];
} idx_file;

/* zlib reports a stream cut short (even inside its CRC trailer) as a 0-byte
 * read with a Z_BUF_ERROR, not as an error: ask it. */
static int stream_error(idx_file *f, const char *what, rm_error *err)
{
    int code;
    const char *msg = gzerror(f->gz, &code);
    if (code == Z_OK || code == Z_STREAM_END)
        return RM_OK;
    if (code == Z_BUF_ERROR)
        return rm_fail(err, "%s: compressed stream is truncated (in the %s)", f->path, what);
    return rm_fail(err, "%s: damaged file while reading the %s (%s)", f->path, what, msg);
}

static int read_exact(idx_file *f, void *buf, size_t len, const char *what, rm_error *err)
{
    uint8_t *p = buf;
    while (len > 0) {
        unsigned chunk = len > (1u << 30) ? (1u << 30) : (unsigned)len;
        int n = gzread(f->gz, p, chunk);
        if (n < 0)
            return stream_error(f, what, err) == RM_OK ? rm_fail(err, "%s: read error in the %s", f->path, what)
                                                      : RM_ERR;
        if (n == 0) {
            if (stream_error(f, what, err) != RM_OK)
                return RM_ERR;
            return rm_fail(err, "%s: file is truncated (ends inside the %s)", f->path, what);
        }
        if (f->is_gzip) {
            f->crc = (uint32_t)crc32(f->crc, p, (unsigned)n);
            f->size += (uint32_t)n;
        }
        p += n;
        len -= (size_t)n;
    }
    return RM_OK;
}

static int read_trailer(idx_file *f, rm_error *err)
{
    FILE *raw = fopen(f->path, "rb");
    if (!raw)
        return rm_fail_errno(err, errno, "%s: cannot open", f->path);
    uint8_t head[2], tail[8];
    int rc = RM_OK;
    if (fread(head, 1, 2, raw) == 2 && head[0] == 0x1f && head[1] == 0x8b) {
        f->is_gzip = 1;
        if (fseek(raw, -8, SEEK_END) != 0 || fread(tail, 1, 8, raw) != 8)
            rc = rm_fail(err, "%s: compressed file is truncated", f->path);
        f->trailer_crc = (uint32_t)tail[0] | (uint32_t)tail[1] << 8 | (uint32_t)tail[2] << 16 | (uint32_t)tail[3] << 24;
        f->trailer_size = (uint32_t)tail[4] | (uint32_t)tail[5] << 8 | (uint32_t)tail[6] << 16 | (uint32_t)tail[7] << 24;
        f->crc = (uint32_t)crc32(0L, Z_NULL, 0);
    }
    fclose(raw);
    return rc;
}

static int idx_open(idx_file *f, const char *path, int want_dims, rm_error *err)
{
    memset(f, 0, sizeof *f);
    f->path = path;
    f->gz = gzopen(path, "rb");
    if (!f->gz)
        return rm_fail_errno(err, errno ? errno : ENOMEM, "%s: cannot open", path);
    if (read_trailer(f, err) != RM_OK)
        return RM_ERR;
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
    if (n > 0)
        return rm_fail(err, "%s: has bytes after the last sample (wrong header or damaged file)", f->path);
    /* End of data: the gzip trailer (CRC, length) must be there and right. */
    if (stream_error(f, "end of the file", err) != RM_OK)
        return RM_ERR;
    if (f->is_gzip && (f->crc != f->trailer_crc || f->size != f->trailer_size))
        return rm_fail(err, "%s: compressed stream is truncated or damaged (its gzip trailer does not match the data)",
                       f->path);
    return RM_OK;
}

int rm_idx_import(const char *images_path, const char *labels_path, const char *out_dir, long shard_samples,
                  rm_idx_import_result *result, rm_error *err)
{
    return rm_idx_import_sealed(images_path, labels_path, out_dir, shard_samples, NULL, result, err);
}

/* After a failed import: the shards written (the index, written last and
 * atomically, was not), then the directories this import made (from
 * out_dir up to created_top), so a failure leaves nothing behind. */
static void undo_import(const char *out_dir, const char *created_top, int shards_written)
{
    char path[4096];
    for (int s = 0; s < shards_written; s++) {
        snprintf(path, sizeof path, "%s/shard-%05d.rms", out_dir, s);
        unlink(path);
    }
    if (!created_top[0])
        return;
    snprintf(path, sizeof path, "%s", out_dir);
    for (;;) {
        if (rmdir(path) != 0 || strcmp(path, created_top) == 0)
            break;
        char *slash = strrchr(path, '/');
        if (!slash || slash == path)
            break;
        *slash = '\0';
    }
}

int rm_idx_import_sealed(const char *images_path, const char *labels_path, const char *out_dir, long shard_samples,
                         const rm_secret_key *key, rm_idx_import_result *result, rm_error *err)
{
    char created_top[4096] = ""; /* the outermost directory this import creates, if any */
    int shards_written = 0;
    idx_file images, labels;
    rm_shard_index index = {0};
    uint8_t *records = NULL, *pixels = NULL, *label_bytes = NULL;
    size_t per_shard_bytes = 0, per_shard_pixels = 0; /* wiped after use: the plaintext of sealed shards */
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
    /* each dimension is below 2^32 (u32 in the file): compare before multiplying */
    if (images.dims[1] > (1L << 24) || images.dims[2] > (1L << 24) / images.dims[1]) {
        rm_fail(err, "%s: images of %ld x %ld are too large", images_path, images.dims[1], images.dims[2]);
        goto out;
    }
    long input_dim = images.dims[1] * images.dims[2];
    {
        char probe[4096];
        struct stat st;
        snprintf(probe, sizeof probe, "%s", out_dir);
        while (probe[0] && stat(probe, &st) != 0) {
            snprintf(created_top, sizeof created_top, "%s", probe);
            char *slash = strrchr(probe, '/');
            if (!slash)
                break;
            *slash = '\0';
        }
    }
    if (rm_mkdirs(out_dir, 0755, err) != RM_OK)
        goto out;

    long per_shard = shard_samples < n ? shard_samples : n;
    long record_bytes = 1 + input_dim;
    per_shard_bytes = (size_t)per_shard * (size_t)record_bytes;
    per_shard_pixels = (size_t)per_shard * (size_t)input_dim;
    records = malloc(per_shard_bytes);
    pixels = malloc(per_shard_pixels);
    label_bytes = malloc((size_t)per_shard);
    long shards_needed = (n + per_shard - 1) / per_shard;
    if (shards_needed > RM_SHARD_MAX_SHARDS) {
        rm_fail(err, "%s: %ld samples in shards of %ld would make %ld shards, more than %d: raise --shard-samples",
                images_path, n, per_shard, shards_needed, RM_SHARD_MAX_SHARDS);
        goto out;
    }
    int n_shards = (int)shards_needed;
    /* the shard table grows as shards are written: the header's count is
     * not trusted with an allocation before the data is there to back it */
    int shards_cap = 0;
    if (!records || !pixels || !label_bytes) {
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
        if (s == shards_cap) {
            shards_cap = shards_cap ? 2 * shards_cap : 16;
            rm_shard_info *grown = realloc(index.shards, (size_t)shards_cap * sizeof *grown);
            if (!grown) {
                rm_fail(err, "out of memory importing %s", images_path);
                goto out;
            }
            index.shards = grown;
        }
        rm_shard_info *info = &index.shards[s];
        memset(info, 0, sizeof *info);
        snprintf(info->file, sizeof info->file, "shard-%05d.rms", s);
        info->samples = count;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", out_dir, info->file);
        shards_written = s + 1; /* a failed write may leave part of it */
        if (rm_shard_write_sealed(path, records, count, record_bytes, key, &info->checksum, err) != RM_OK)
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
    index.encrypted = key != NULL;
    if (rm_shard_index_write(out_dir, &index, err) != RM_OK)
        goto out;
    if (result)
        *result = (rm_idx_import_result){n, input_dim, index.classes, n_shards};
    rc = RM_OK;
out:
    if (rc != RM_OK)
        undo_import(out_dir, created_top, shards_written);
    idx_close(&images);
    idx_close(&labels);
    if (records)
        sodium_memzero(records, (size_t)per_shard_bytes);
    if (pixels)
        sodium_memzero(pixels, (size_t)per_shard_pixels);
    free(records);
    free(pixels);
    free(label_bytes);
    rm_shard_index_free(&index);
    return rc;
}
