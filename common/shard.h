/* The dataset format: a split is a directory holding shard files and an
 * index.
 *
 *   <split>/index.rmi       text: sample count, record layout, one line
 *                           per shard with its sample count and checksum
 *   <split>/shard-NNNNN.rms 64-byte header + records
 *
 * A record is one label byte followed by input_dim feature bytes (u8,
 * scaled to [0,1] by the loader). The shard header says how the payload is
 * protected: plain, or sealed with the dataset key (crypto.h: the same
 * header, then a seal header and authenticated chunks). An encrypted split
 * says so in its index ("encryption xchacha20poly1305"), so a run without
 * a key is refused before it starts. The checksum is XXH3-64 of the
 * (plaintext) payload. */
#ifndef RINGMASTER_SHARD_H
#define RINGMASTER_SHARD_H

#include "crypto.h"
#include "error.h"

#include <stddef.h>
#include <stdint.h>

#define RM_SHARD_INDEX_NAME "index.rmi"
#define RM_SHARD_MAGIC "RMSHARD1"
#define RM_SHARD_HEADER_BYTES 64
#define RM_SHARD_PROTECTION_PLAIN 0u
#define RM_SHARD_MAX_SHARDS 1000000
#define RM_SHARD_NAME_CAP 64
#define RM_SHARD_SEAL_CHUNK_BYTES (256u << 10)
#define RM_DATASET_DEFAULT_DECRYPT_BYTES (512ull << 20)

typedef struct rm_shard_info {
    char file[RM_SHARD_NAME_CAP];
    long samples;
    uint64_t checksum;
} rm_shard_info;

typedef struct rm_shard_index {
    long samples;
    long input_dim;
    long classes;
    long record_bytes; /* 1 + input_dim */
    int n_shards;
    rm_shard_info *shards; /* owned */
    uint64_t index_hash;   /* of the index file's bytes: names the dataset */
    int encrypted;         /* every shard sealed with the dataset key */
} rm_shard_index;

/* Reads and checks <dir>/index.rmi. Free with rm_shard_index_free. */
int rm_shard_index_read(const char *dir, rm_shard_index *idx, rm_error *err);
void rm_shard_index_free(rm_shard_index *idx);

/* Writes <dir>/index.rmi atomically (tmp file, fsync, rename). */
int rm_shard_index_write(const char *dir, const rm_shard_index *idx, rm_error *err);

/* Writes one shard file (header + payload) atomically and returns the
 * payload checksum. */
int rm_shard_write(const char *path, const uint8_t *records, long n_records, long record_bytes, uint64_t *checksum,
                   rm_error *err);

/* The same, sealed with key when key is not NULL. */
int rm_shard_write_sealed(const char *path, const uint8_t *records, long n_records, long record_bytes,
                          const rm_secret_key *key, uint64_t *checksum, rm_error *err);

/* A split opened for reading, verified against the index so that a damaged
 * shard is named before training starts.
 *
 * Plain shards are mapped read-only. Encrypted shards are authenticated and
 * decrypted whole at open (one pass, bounded scratch) and kept decrypted
 * while they fit in decrypt_budget bytes; beyond that, rm_dataset_record
 * decrypts a shard again when a sample of it is asked for (on the caller's
 * thread: the loader's), evicting the least recently used. The sample
 * order visits one window of shards at a time, so each shard is decrypted
 * about once per epoch. Decrypted shards live in pages excluded from core
 * dumps. */
typedef struct rm_dataset_cache rm_dataset_cache;
typedef struct rm_dataset {
    rm_shard_index index;
    const uint8_t **payloads; /* per shard; NULL: encrypted and not resident */
    size_t *map_bytes;
    void **maps;
    long *first_sample; /* prefix sums: shard s holds [first_sample[s], first_sample[s+1]) */
    rm_dataset_cache *cache; /* encrypted splits only */
} rm_dataset;

/* Encrypted splits use the process key (rm_security_key) and the default
 * budget. */
int rm_dataset_open(const char *dir, rm_dataset *ds, rm_error *err);
int rm_dataset_open_budget(const char *dir, uint64_t decrypt_budget, rm_dataset *ds, rm_error *err);
void rm_dataset_close(rm_dataset *ds);

/* Record of global sample i (0 <= i < samples): label byte, then features.
 * On an encrypted split the pointer is valid until the next call, one
 * thread at a time per dataset, and NULL means a shard failed to decrypt
 * (the file changed since open): rm_dataset_error says why. */
const uint8_t *rm_dataset_record(const rm_dataset *ds, long i);
const char *rm_dataset_error(const rm_dataset *ds);

/* Shard holding sample i. */
int rm_dataset_shard_of(const rm_dataset *ds, long i);

#endif
