#include "shard.h"

#include "fsutil.h"
#include "hash.h"
#include "le_bytes.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define DATASET_FILE_MODE 0644

int rm_shard_write(const char *path, const uint8_t *items, long n_items, long item_bytes, uint64_t *checksum,
                   rm_error *err)
{
    return rm_shard_write_sealed(path, items, n_items, item_bytes, NULL, checksum, err);
}

int rm_shard_write_sealed(const char *path, const uint8_t *items, long n_items, long item_bytes,
                          const rm_secret_key *key, uint64_t *checksum, rm_error *err)
{
    uint8_t header[RM_SHARD_HEADER_BYTES] = {0};
    size_t payload = (size_t)n_items * (size_t)item_bytes;
    memcpy(header, RM_SHARD_MAGIC, 8);
    rm_put_u32(header + 8, 1); /* format version */
    rm_put_u32(header + 12, key ? RM_PROTECTION_XCHACHA20 : RM_SHARD_PROTECTION_PLAIN);
    rm_put_u64(header + 16, (uint64_t)n_items);
    rm_put_u64(header + 24, (uint64_t)item_bytes);
    rm_put_u64(header + 32, (uint64_t)payload);
    *checksum = rm_hash64(items, payload);
    if (!key) {
        const void *parts[2] = {header, items};
        size_t lens[2] = {sizeof header, payload};
        return rm_write_parts_atomic_mode(path, parts, lens, 2, DATASET_FILE_MODE, err);
    }
    uint8_t *sealed;
    size_t sealed_len;
    if (rm_seal_buffer(key, header, items, payload, RM_SHARD_SEAL_CHUNK_BYTES, &sealed, &sealed_len, err) != RM_OK)
        return RM_ERR;
    const void *parts[2] = {header, sealed};
    size_t lens[2] = {sizeof header, sealed_len};
    int rc = rm_write_parts_atomic_mode(path, parts, lens, 2, DATASET_FILE_MODE, err);
    free(sealed);
    return rc;
}

/* What shard s's header must say: its item count and item size (records
 * of record_bytes, or tokens of token_bytes). */
static void shard_items(const rm_shard_index *idx, int s, uint64_t *n_items, uint64_t *item_bytes)
{
    int tokens = idx->format == RM_DATA_TOKENS;
    *n_items = (uint64_t)(tokens ? idx->shards[s].tokens : idx->shards[s].samples);
    *item_bytes = (uint64_t)(tokens ? idx->token_bytes : idx->record_bytes);
}

/* Checks a shard's magic, version and counts against the index entry (the
 * caller checks its protection). */
static int check_header(const uint8_t h[RM_SHARD_HEADER_BYTES], const rm_shard_index *idx, int s, const char *path,
                        rm_error *err)
{
    if (memcmp(h, RM_SHARD_MAGIC, 8) != 0 || rm_get_u32(h + 8) != 1)
        return rm_fail(err, "%s: not a ringmaster shard (bad magic or version)", path);
    uint64_t n_items, item_bytes;
    shard_items(idx, s, &n_items, &item_bytes);
    if (rm_get_u64(h + 16) != n_items || rm_get_u64(h + 24) != item_bytes ||
        rm_get_u64(h + 32) != rm_shard_index_payload_bytes(idx, s))
        return rm_fail(err, "%s: header disagrees with the index (%s/%s size)", path,
                       idx->format == RM_DATA_TOKENS ? "tokens" : "records",
                       idx->format == RM_DATA_TOKENS ? "token" : "record");
    return RM_OK;
}

/* Maps plain shard s after checking its size and header against the index.
 * Cheap whatever the shard's size: its checksum waits for its first use
 * (verify_shard). */
static int map_shard(rm_dataset *ds, int s, rm_error *err)
{
    const rm_shard_info *info = &ds->index.shards[s];
    char path[8192];
    snprintf(path, sizeof path, "%s/%s", ds->dir, info->file);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return rm_fail_errno(err, errno, "%s: cannot open shard", path);
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return rm_fail_errno(err, e, "%s: cannot stat shard", path);
    }
    size_t want = RM_SHARD_HEADER_BYTES + (size_t)rm_shard_index_payload_bytes(&ds->index, s);
    if ((size_t)st.st_size != want) {
        close(fd);
        return rm_fail(err, "%s: shard is %lld bytes, expected %zu (truncated or wrong file)", path,
                       (long long)st.st_size, want);
    }
    void *map = mmap(NULL, want, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (map == MAP_FAILED)
        return rm_fail_errno(err, e, "%s: cannot map shard", path);
    ds->maps[s] = map;
    ds->map_bytes[s] = want;
    const uint8_t *h = map;
    if (check_header(h, &ds->index, s, path, err) != RM_OK)
        return RM_ERR;
    if (rm_get_u32(h + 12) != RM_SHARD_PROTECTION_PLAIN)
        return rm_fail(err, "%s: payload protection %u, but the index does not say the split is encrypted", path,
                       rm_get_u32(h + 12));
    ds->payloads[s] = h + RM_SHARD_HEADER_BYTES;
    return RM_OK;
}

/* Hashes plain shard s's payload (paging it in through the mapping, never
 * reading it into memory of its own) and compares with the index. */
static int verify_shard(const rm_dataset *ds, int s, rm_error *err)
{
    const rm_shard_info *info = &ds->index.shards[s];
    uint64_t sum = rm_hash64(ds->payloads[s], ds->map_bytes[s] - RM_SHARD_HEADER_BYTES);
    if (sum != info->checksum) {
        char got[17], want[17];
        rm_hash_hex(sum, got);
        rm_hash_hex(info->checksum, want);
        return rm_fail(err, "%s/%s: checksum mismatch (index %s, file %s): the shard is damaged", ds->dir,
                       info->file, want, got);
    }
    ds->verified[s] = 1;
    return RM_OK;
}

struct rm_dataset_cache {
    const rm_secret_key *key;
    uint64_t budget, resident;
    uint64_t *last_use; /* per shard; 0 = not resident */
    uint64_t clock;
};

static void *alloc_private(size_t bytes)
{
    void *p = mmap(NULL, bytes ? bytes : 1, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    madvise(p, bytes ? bytes : 1, MADV_DONTDUMP); /* decrypted training data stays out of core dumps */
    return p;
}

static void evict(rm_dataset *ds, int s)
{
    if (!ds->maps[s])
        return;
    sodium_memzero(ds->maps[s], ds->map_bytes[s]);
    munmap(ds->maps[s], ds->map_bytes[s] ? ds->map_bytes[s] : 1);
    ds->cache->resident -= ds->map_bytes[s];
    ds->maps[s] = NULL;
    ds->payloads[s] = NULL;
    ds->cache->last_use[s] = 0;
}

/* Authenticates and decrypts shard s whole into private pages, checks its
 * checksum against the index and makes it resident. */
static int decrypt_shard(rm_dataset *ds, int s, rm_error *err)
{
    rm_dataset_cache *c = ds->cache;
    const rm_shard_info *info = &ds->index.shards[s];
    char path[8192];
    snprintf(path, sizeof path, "%s/%s", ds->dir, info->file);
    uint64_t payload = rm_shard_index_payload_bytes(&ds->index, s);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return rm_fail_errno(err, errno, "%s: cannot open shard", path);
    int rc = RM_ERR;
    rm_seal_reader r = {0};
    uint8_t *plain = NULL;
    struct stat st;
    uint8_t h[RM_SHARD_HEADER_BYTES];
    if (fstat(fd, &st) != 0) {
        rm_fail_errno(err, errno, "%s: cannot stat shard", path);
        goto out;
    }
    if (pread(fd, h, sizeof h, 0) != (ssize_t)sizeof h) {
        rm_fail(err, "%s: not a ringmaster shard (bad magic or version)", path);
        goto out;
    }
    if (check_header(h, &ds->index, s, path, err) != RM_OK)
        goto out;
    if (rm_get_u32(h + 12) != RM_PROTECTION_XCHACHA20) {
        rm_fail(err, "%s: the index says the split is encrypted but this shard is not (protection %u)", path,
                rm_get_u32(h + 12));
        goto out;
    }
    if (rm_seal_reader_open(&r, c->key, fd, path, h, payload, (uint64_t)st.st_size, err) != RM_OK)
        goto out;
    /* make room first: the shard being decrypted is never evicted for itself */
    while (c->resident + payload > c->budget && c->resident > 0) {
        int lru = -1;
        for (int k = 0; k < ds->index.n_shards; k++)
            if (c->last_use[k] && (lru < 0 || c->last_use[k] < c->last_use[lru]))
                lru = k;
        if (lru < 0)
            break;
        evict(ds, lru);
    }
    if (!(plain = alloc_private((size_t)payload))) {
        rm_fail(err, "%s: out of memory for the decrypted shard (%llu bytes)", path, (unsigned long long)payload);
        goto out;
    }
    uint64_t at = 0;
    for (uint64_t k = 0; k < r.n_chunks; k++) {
        size_t len;
        if (rm_seal_reader_chunk(&r, k, plain + at, &len, err) != RM_OK)
            goto out;
        at += len;
    }
    uint64_t sum = rm_hash64(plain, (size_t)payload);
    if (sum != info->checksum) {
        rm_fail(err, "%s: checksum mismatch after decryption: the shard does not match the index", path);
        goto out;
    }
    ds->maps[s] = plain;
    ds->map_bytes[s] = (size_t)payload;
    ds->payloads[s] = plain;
    ds->verified[s] = 1;
    c->resident += payload;
    c->last_use[s] = ++c->clock;
    plain = NULL;
    rc = RM_OK;
out:
    if (plain) {
        sodium_memzero(plain, (size_t)payload);
        munmap(plain, payload ? (size_t)payload : 1);
    }
    rm_seal_reader_free(&r);
    close(fd);
    return rc;
}

/* Opens a split; have_context says whether the caller gave a context to
 * cut a token split with. */
static int open_split(const char *dir, uint64_t decrypt_budget, int have_context, long context, rm_dataset *ds,
                      rm_error *err)
{
    memset(ds, 0, sizeof *ds);
    if (rm_shard_index_read(dir, &ds->index, err) != RM_OK)
        return RM_ERR;
    rm_shard_index *idx = &ds->index;
    if (idx->format == RM_DATA_TOKENS && !have_context) {
        rm_shard_index_free(idx);
        return rm_fail(err, "%s: a token split: its samples are windows of a context length, and none was given "
                            "(open it with rm_dataset_open_context)",
                       dir);
    }
    if (rm_shard_index_set_context(idx, dir, context, err) != RM_OK) {
        rm_shard_index_free(idx);
        return RM_ERR;
    }
    if (idx->format == RM_DATA_TOKENS) {
        /* consecutive windows of a shard overlap by one token: input t + 1 is target t */
        ds->sample_stride = idx->context * idx->token_bytes;
        ds->sample_bytes = (idx->context + 1) * idx->token_bytes;
    } else {
        ds->sample_stride = ds->sample_bytes = idx->record_bytes;
    }
    int n = idx->n_shards;
    ds->dir = strdup(dir);
    ds->payloads = calloc((size_t)n, sizeof *ds->payloads);
    ds->map_bytes = calloc((size_t)n, sizeof *ds->map_bytes);
    ds->maps = calloc((size_t)n, sizeof *ds->maps);
    ds->first_sample = calloc((size_t)n + 1, sizeof *ds->first_sample);
    ds->verified = calloc((size_t)n, sizeof *ds->verified);
    ds->error = calloc(1, sizeof *ds->error);
    if (!ds->dir || !ds->payloads || !ds->map_bytes || !ds->maps || !ds->first_sample || !ds->verified || !ds->error) {
        rm_dataset_close(ds);
        return rm_fail(err, "%s: out of memory", dir);
    }
    if (idx->encrypted) {
        if (!rm_security_key()) {
            rm_dataset_close(ds);
            return rm_fail(err, "%s: the split is encrypted (its index says so) and no key was given: set "
                                "security.key_file",
                           dir);
        }
        ds->cache = calloc(1, sizeof *ds->cache);
        if (!ds->cache || !(ds->cache->last_use = calloc((size_t)n, sizeof *ds->cache->last_use))) {
            rm_dataset_close(ds);
            return rm_fail(err, "%s: out of memory", dir);
        }
        ds->cache->key = rm_security_key();
        ds->cache->budget = decrypt_budget;
    }
    for (int s = 0; s < n; s++) {
        ds->first_sample[s + 1] = ds->first_sample[s] + idx->shards[s].samples;
        int rc;
        if (ds->cache) {
            /* Authenticates every shard now (decryption is the check); those
             * beyond the budget are dropped again and decrypted when the
             * loader reaches them. */
            rc = decrypt_shard(ds, s, err);
            if (rc == RM_OK && ds->cache->resident > ds->cache->budget)
                evict(ds, s);
        } else {
            rc = map_shard(ds, s, err);
        }
        if (rc != RM_OK) {
            rm_dataset_close(ds);
            return RM_ERR;
        }
    }
    return RM_OK;
}

int rm_dataset_open(const char *dir, rm_dataset *ds, rm_error *err)
{
    return open_split(dir, RM_DATASET_DEFAULT_DECRYPT_BYTES, 0, 0, ds, err);
}

int rm_dataset_open_budget(const char *dir, uint64_t decrypt_budget, rm_dataset *ds, rm_error *err)
{
    return open_split(dir, decrypt_budget, 0, 0, ds, err);
}

int rm_dataset_open_context(const char *dir, uint64_t decrypt_budget, long context, rm_dataset *ds, rm_error *err)
{
    return open_split(dir, decrypt_budget, 1, context, ds, err);
}

void rm_dataset_close(rm_dataset *ds)
{
    for (int s = 0; ds->maps && s < ds->index.n_shards; s++)
        if (ds->maps[s]) {
            if (ds->cache)
                evict(ds, s);
            else
                munmap(ds->maps[s], ds->map_bytes[s]);
        }
    if (ds->cache)
        free(ds->cache->last_use);
    free(ds->cache);
    free(ds->dir);
    free(ds->payloads);
    free(ds->map_bytes);
    free(ds->maps);
    free(ds->first_sample);
    free(ds->verified);
    free(ds->error);
    rm_shard_index_free(&ds->index);
    memset(ds, 0, sizeof *ds);
}

const char *rm_dataset_error(const rm_dataset *ds)
{
    return ds->error ? ds->error->msg : "";
}

long rm_dataset_sample_bytes(const rm_dataset *ds)
{
    return ds->sample_bytes;
}

int rm_dataset_shard_of(const rm_dataset *ds, long i)
{
    /* the last shard whose first sample is at or before i: shards that hold
     * no window (shorter than context + 1 tokens) are passed over */
    int lo = 0, hi = ds->index.n_shards - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (ds->first_sample[mid] <= i)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

const uint8_t *rm_dataset_record(const rm_dataset *ds, long i)
{
    int s = rm_dataset_shard_of(ds, i);
    if (ds->cache) {
        /* the cache is the mutable part of an otherwise read-only dataset */
        rm_dataset *mut = (rm_dataset *)ds;
        if (!ds->payloads[s] && decrypt_shard(mut, s, ds->error) != RM_OK)
            return NULL;
        ds->cache->last_use[s] = ++ds->cache->clock;
    } else if (!ds->verified[s] && verify_shard(ds, s, ds->error) != RM_OK) {
        return NULL;
    }
    return ds->payloads[s] + (size_t)(i - ds->first_sample[s]) * (size_t)ds->sample_stride;
}
