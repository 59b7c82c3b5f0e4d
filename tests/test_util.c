#include "test_util.h"

#include "fsutil.h"
#include "shard.h"

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void rmt_make_tempdir(char *out)
{
    const char *base = getenv("TMPDIR");
    snprintf(out, RMT_PATH_CAP, "%s/ringmaster-test-XXXXXX", base && *base ? base : "/tmp");
    ck_assert_msg(mkdtemp(out) != NULL, "mkdtemp(%s): %s", out, strerror(errno));
}

static int remove_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)type;
    (void)ftw;
    remove(path);
    return 0;
}

void rmt_remove_tree(const char *path)
{
    nftw(path, remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

void rmt_write_bytes(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    ck_assert_msg(f != NULL, "cannot create %s: %s", path, strerror(errno));
    ck_assert_msg(fwrite(data, 1, len, f) == len, "cannot write %s", path);
    ck_assert_int_eq(fclose(f), 0);
}

void rmt_write_text(const char *path, const char *text)
{
    rmt_write_bytes(path, text, strlen(text));
}

uint8_t *rmt_read_bytes(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s: %s", path, strerror(errno));
    size_t cap = 4096, used = 0;
    uint8_t *buf = malloc(cap);
    ck_assert_ptr_nonnull(buf);
    size_t n;
    while ((n = fread(buf + used, 1, cap - used, f)) > 0) {
        used += n;
        if (used == cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            ck_assert_ptr_nonnull(buf);
        }
    }
    fclose(f);
    if (len)
        *len = used;
    return buf;
}

void rmt_make_split(const char *dir, const char *split, long samples, long input_dim, long classes,
                    long shard_samples)
{
    char split_dir[RMT_PATH_CAP], path[RMT_PATH_CAP + 64];
    snprintf(split_dir, sizeof split_dir, "%s/%s", dir, split);
    rm_error err;
    ck_assert_msg(rm_mkdirs(split_dir, 0755, &err) == RM_OK, "%s", err.msg);

    long record_bytes = 1 + input_dim;
    int n_shards = (int)((samples + shard_samples - 1) / shard_samples);
    rm_shard_index idx = {
        .samples = samples,
        .input_dim = input_dim,
        .classes = classes,
        .record_bytes = record_bytes,
        .n_shards = n_shards,
        .shards = calloc((size_t)n_shards, sizeof(rm_shard_info)),
    };
    uint8_t *records = malloc((size_t)shard_samples * (size_t)record_bytes);
    ck_assert_ptr_nonnull(idx.shards);
    ck_assert_ptr_nonnull(records);
    for (int s = 0; s < n_shards; s++) {
        long first = (long)s * shard_samples;
        long count = samples - first < shard_samples ? samples - first : shard_samples;
        for (long r = 0; r < count; r++) {
            long i = first + r;
            uint8_t *rec = records + r * record_bytes;
            rec[0] = (uint8_t)(i % classes);
            for (long j = 0; j < input_dim; j++)
                rec[1 + j] = (uint8_t)((i + 3 * j) & 0xff);
        }
        rm_shard_info *info = &idx.shards[s];
        snprintf(info->file, sizeof info->file, "shard-%05d.rms", s);
        info->samples = count;
        snprintf(path, sizeof path, "%s/%s", split_dir, info->file);
        ck_assert_msg(rm_shard_write(path, records, count, record_bytes, &info->checksum, &err) == RM_OK, "%s",
                      err.msg);
    }
    ck_assert_msg(rm_shard_index_write(split_dir, &idx, &err) == RM_OK, "%s", err.msg);
    free(records);
    rm_shard_index_free(&idx);
}

double rmt_uniform(uint64_t seed, uint64_t i)
{
    uint64_t z = seed * 0x9e3779b97f4a7c15ULL + i * 0xbf58476d1ce4e5b9ULL + 1;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    return (double)(z >> 11) / 9007199254740992.0 * 2.0 - 1.0;
}
