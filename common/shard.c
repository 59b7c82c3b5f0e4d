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

#define INDEX_MAX_BYTES (64u << 20)

#define DATASET_FILE_MODE 0644

int rm_shard_write(const char *path, const uint8_t *records, long n_records, long record_bytes, uint64_t *checksum,
                   rm_error *err)
{
    return rm_shard_write_sealed(path, records, n_records, record_bytes, NULL, checksum, err);
}

int rm_shard_write_sealed(const char *path, const uint8_t *records, long n_records, long record_bytes,
                          const rm_secret_key *key, uint64_t *checksum, rm_error *err)
{
    uint8_t header[RM_SHARD_HEADER_BYTES] = {0};
    size_t payload = (size_t)n_records * (size_t)record_bytes;
    memcpy(header, RM_SHARD_MAGIC, 8);
    rm_put_u32(header + 8, 1); /* format version */
    rm_put_u32(header + 12, key ? RM_PROTECTION_XCHACHA20 : RM_SHARD_PROTECTION_PLAIN);
    rm_put_u64(header + 16, (uint64_t)n_records);
    rm_put_u64(header + 24, (uint64_t)record_bytes);
    rm_put_u64(header + 32, (uint64_t)payload);
    *checksum = rm_hash64(records, payload);
    if (!key) {
        const void *parts[2] = {header, records};
        size_t lens[2] = {sizeof header, payload};
        return rm_write_parts_atomic_mode(path, parts, lens, 2, DATASET_FILE_MODE, err);
    }
    uint8_t *sealed;
    size_t sealed_len;
    if (rm_seal_buffer(key, header, records, payload, RM_SHARD_SEAL_CHUNK_BYTES, &sealed, &sealed_len, err) != RM_OK)
        return RM_ERR;
    const void *parts[2] = {header, sealed};
    size_t lens[2] = {sizeof header, sealed_len};
    int rc = rm_write_parts_atomic_mode(path, parts, lens, 2, DATASET_FILE_MODE, err);
    free(sealed);
    return rc;
}

int rm_shard_index_read(const char *dir, rm_shard_index *idx, rm_error *err)
{
    memset(idx, 0, sizeof *idx);
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, RM_SHARD_INDEX_NAME);
    size_t len;
    char *text = rm_read_file(path, INDEX_MAX_BYTES, "index file is implausibly large", &len, err);
    if (!text)
        return RM_ERR;
    idx->index_hash = rm_hash64(text, len);
    if (memchr(text, '\0', len)) {
        free(text);
        return rm_fail(err, "%s: not a ringmaster shard index (binary data)", path);
    }

    int rc = RM_ERR, line_no = 0, shards_cap = 0, have_header = 0;
    long sum = 0;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        line_no++;
        if (line[0] == '#' || line[0] == '\0')
            continue;
        char word[32], name[RM_SHARD_NAME_CAP + 1], hex[32];
        long a;
        if (!have_header) {
            int version;
            if (sscanf(line, "ringmaster-shard-index %d", &version) != 1 || version != 1) {
                rm_fail(err, "%s:%d: not a ringmaster shard index (expected 'ringmaster-shard-index 1')", path,
                        line_no);
                goto out;
            }
            have_header = 1;
            continue;
        }
        if (sscanf(line, "shard %64s %ld %31s", name, &a, hex) == 3) {
            if (strchr(name, '/') || strcmp(name, "..") == 0 || strlen(name) >= RM_SHARD_NAME_CAP) {
                rm_fail(err, "%s:%d: bad shard file name '%s'", path, line_no, name);
                goto out;
            }
            if (a <= 0 || a > (1L << 40)) {
                rm_fail(err, "%s:%d: shard %s has a bad sample count %ld", path, line_no, name, a);
                goto out;
            }
            uint64_t sum_hash;
            if (rm_hash_parse(hex, &sum_hash) != RM_OK) {
                rm_fail(err, "%s:%d: shard %s: bad checksum '%s'", path, line_no, name, hex);
                goto out;
            }
            if (idx->n_shards >= RM_SHARD_MAX_SHARDS) {
                rm_fail(err, "%s:%d: more than %d shards", path, line_no, RM_SHARD_MAX_SHARDS);
                goto out;
            }
            if (idx->n_shards == shards_cap) {
                shards_cap = shards_cap ? 2 * shards_cap : 16;
                rm_shard_info *grown = realloc(idx->shards, (size_t)shards_cap * sizeof *grown);
                if (!grown) {
                    rm_fail(err, "%s: out of memory", path);
                    goto out;
                }
                idx->shards = grown;
            }
            rm_shard_info *s = &idx->shards[idx->n_shards++];
            snprintf(s->file, sizeof s->file, "%s", name);
            s->samples = a;
            s->checksum = sum_hash;
            sum += a;
        } else if (sscanf(line, "encryption %31s", word) == 1) {
            if (strcmp(word, "xchacha20poly1305") != 0) {
                rm_fail(err, "%s:%d: unknown encryption '%s'", path, line_no, word);
                goto out;
            }
            idx->encrypted = 1;
        } else if (sscanf(line, "%31s %ld", word, &a) == 2) {
            long *field = strcmp(word, "samples") == 0        ? &idx->samples
                          : strcmp(word, "input_dim") == 0    ? &idx->input_dim
                          : strcmp(word, "classes") == 0      ? &idx->classes
                          : strcmp(word, "record_bytes") == 0 ? &idx->record_bytes
                                                              : NULL;
            if (!field) {
                rm_fail(err, "%s:%d: unknown field '%s'", path, line_no, word);
                goto out;
            }
            *field = a;
        } else {
            rm_fail(err, "%s:%d: cannot read line '%.60s'", path, line_no, line);
            goto out;
        }
    }
    if (!have_header) {
        rm_fail(err, "%s: empty index", path);
        goto out;
    }
    if (idx->input_dim <= 0 || idx->input_dim > (1L << 24) || idx->classes < 2 || idx->classes > 256 ||
        idx->record_bytes != 1 + idx->input_dim) {
        rm_fail(err, "%s: inconsistent layout (input_dim %ld, classes %ld, record_bytes %ld)", path, idx->input_dim,
                idx->classes, idx->record_bytes);
        goto out;
    }
    if (idx->n_shards == 0 || sum != idx->samples) {
        rm_fail(err, "%s: shards hold %ld samples but the index says %ld", path, sum, idx->samples);
        goto out;
    }
    rc = RM_OK;
out:
    free(text);
    if (rc != RM_OK)
        rm_shard_index_free(idx);
    return rc;
}

void rm_shard_index_free(rm_shard_index *idx)
{
    free(idx->shards);
    idx->shards = NULL;
    idx->n_shards = 0;
}

int rm_shard_index_write(const char *dir, const rm_shard_index *idx, rm_error *err)
{
    char *text = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&text, &len);
    if (!mem)
        return rm_fail(err, "out of memory");
    fprintf(mem, "ringmaster-shard-index 1\n");
    fprintf(mem, "samples %ld\ninput_dim %ld\nclasses %ld\nrecord_bytes %ld\n", idx->samples, idx->input_dim,
            idx->classes, idx->record_bytes);
    if (idx->encrypted)
        fprintf(mem, "encryption xchacha20poly1305\n");
    for (int i = 0; i < idx->n_shards; i++) {
        char hex[17];
        rm_hash_hex(idx->shards[i].checksum, hex);
        fprintf(mem, "shard %s %ld %s\n", idx->shards[i].file, idx->shards[i].samples, hex);
    }
    fclose(mem);
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, RM_SHARD_INDEX_NAME);
    const void *parts[1] = {text};
    int rc = rm_write_parts_atomic_mode(path, parts, &len, 1, DATASET_FILE_MODE, err);
    free(text);
    return rc;
}

/* Maps one shard and checks header and checksum against the index entry. */
static int map_shard(const char *dir, const rm_shard_index *idx, int s, rm_dataset *ds, rm_error *err)
{
    const rm_shard_info *info = &idx->shards[s];
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, info->file);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return rm_fail_errno(err, errno, "%s: cannot open shard", path);
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return rm_fail_errno(err, e, "%s: cannot stat shard", path);
    }
    size_t want = RM_SHARD_HEADER_BYTES + (size_t)info->samples * (size_t)idx->record_bytes;
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
    if (memcmp(h, RM_SHARD_MAGIC, 8) != 0 || rm_get_u32(h + 8) != 1)
        return rm_fail(err, "%s: not a ringmaster shard (bad magic or version)", path);
    if (rm_get_u32(h + 12) != RM_SHARD_PROTECTION_PLAIN)
        return rm_fail(err, "%s: payload protection %u is not supported by this build", path, rm_get_u32(h + 12));
    if (rm_get_u64(h + 16) != (uint64_t)info->samples || rm_get_u64(h + 24) != (uint64_t)idx->record_bytes)
        return rm_fail(err, "%s: header disagrees with the index (records/record size)", path);
    ds->payloads[s] = h + RM_SHARD_HEADER_BYTES;
    uint64_t sum = rm_hash64(ds->payloads[s], want - RM_SHARD_HEADER_BYTES);
    if (sum != info->checksum) {
        char got[17], exp[17];
        rm_hash_hex(sum, got);
        rm_hash_hex(info->checksum, exp);
        return rm_fail(err, "%s: checksum mismatch (file %s, index %s): the shard is damaged", path, got, exp);
    }
    return RM_OK;
}

struct rm_dataset_cache {
    char dir[4096];
    const rm_secret_key *key;
    uint64_t budget, resident;
    uint64_t *last_use; /* per shard; 0 = not resident */
    uint64_t clock;
    rm_error error;
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
    snprintf(path, sizeof path, "%s/%s", c->dir, info->file);
    uint64_t payload = (uint64_t)info->samples * (uint64_t)ds->index.record_bytes;
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
    if (pread(fd, h, sizeof h, 0) != (ssize_t)sizeof h || memcmp(h, RM_SHARD_MAGIC, 8) != 0 ||
        rm_get_u32(h + 8) != 1) {
        rm_fail(err, "%s: not a ringmaster shard (bad magic or version)", path);
        goto out;
    }
    if (rm_get_u32(h + 12) != RM_PROTECTION_XCHACHA20) {
        rm_fail(err, "%s: the index says the split is encrypted but this shard is not (protection %u)", path,
                rm_get_u32(h + 12));
        goto out;
    }
    if (rm_get_u64(h + 16) != (uint64_t)info->samples || rm_get_u64(h + 24) != (uint64_t)ds->index.record_bytes ||
        rm_get_u64(h + 32) != payload) {
        rm_fail(err, "%s: header disagrees with the index (records/record size)", path);
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

int rm_dataset_open(const char *dir, rm_dataset *ds, rm_error *err)
{
    return rm_dataset_open_budget(dir, RM_DATASET_DEFAULT_DECRYPT_BYTES, ds, err);
}

int rm_dataset_open_budget(const char *dir, uint64_t decrypt_budget, rm_dataset *ds, rm_error *err)
{
    memset(ds, 0, sizeof *ds);
    if (rm_shard_index_read(dir, &ds->index, err) != RM_OK)
        return RM_ERR;
    int n = ds->index.n_shards;
    ds->payloads = calloc((size_t)n, sizeof *ds->payloads);
    ds->map_bytes = calloc((size_t)n, sizeof *ds->map_bytes);
    ds->maps = calloc((size_t)n, sizeof *ds->maps);
    ds->first_sample = calloc((size_t)n + 1, sizeof *ds->first_sample);
    if (!ds->payloads || !ds->map_bytes || !ds->maps || !ds->first_sample) {
        rm_dataset_close(ds);
        return rm_fail(err, "%s: out of memory", dir);
    }
    if (ds->index.encrypted) {
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
        snprintf(ds->cache->dir, sizeof ds->cache->dir, "%s", dir);
        ds->cache->key = rm_security_key();
        ds->cache->budget = decrypt_budget;
    }
    for (int s = 0; s < n; s++) {
        ds->first_sample[s + 1] = ds->first_sample[s] + ds->index.shards[s].samples;
        int rc;
        if (ds->cache) {
            /* Verifies every shard now; those beyond the budget are dropped
             * again and decrypted when the loader reaches them. */
            rc = decrypt_shard(ds, s, err);
            if (rc == RM_OK && ds->cache->resident > ds->cache->budget)
                evict(ds, s);
        } else {
            rc = map_shard(dir, &ds->index, s, ds, err);
        }
        if (rc != RM_OK) {
            rm_dataset_close(ds);
            return RM_ERR;
        }
    }
    return RM_OK;
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
    free(ds->payloads);
    free(ds->map_bytes);
    free(ds->maps);
    free(ds->first_sample);
    rm_shard_index_free(&ds->index);
    memset(ds, 0, sizeof *ds);
}

const char *rm_dataset_error(const rm_dataset *ds)
{
    return ds->cache ? ds->cache->error.msg : "";
}

int rm_dataset_shard_of(const rm_dataset *ds, long i)
{
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
        if (!ds->payloads[s] && decrypt_shard(mut, s, &ds->cache->error) != RM_OK)
            return NULL;
        ds->cache->last_use[s] = ++ds->cache->clock;
    }
    return ds->payloads[s] + (size_t)(i - ds->first_sample[s]) * (size_t)ds->index.record_bytes;
}
