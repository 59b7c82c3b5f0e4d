/* The dataset format: a split is a directory holding shard files and an
 * index.
 *
 *   <split>/index.rmi       text: what the split holds, one line per shard
 *                           with its count (samples or tokens) and checksum
 *   <split>/shard-NNNNN.rms 64-byte header + payload
 *
 * Two kinds of split (docs/data.md):
 *   records  a record is one label byte followed by input_dim feature bytes
 *            (u8, scaled to [0,1] by the loader); index version 1.
 *   tokens   the payload is a flat little-endian token stream (u16 when the
 *            vocabulary fits, else u32), documents separated by one
 *            end-of-text token; index version 2. Samples are windows of
 *            context + 1 tokens cut at load time (rm_shard_index_set_context),
 *            per shard, so a window never spans two shards.
 *
 * The shard header says how the payload is protected: plain, or sealed with
 * the dataset key (crypto.h: the same header, then a seal header and
 * authenticated chunks). An encrypted split says so in its index
 * ("encryption xchacha20poly1305"), so a run without a key is refused
 * before it starts. The checksum is XXH3-64 of the (plaintext) payload. */
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
#define RM_SHARD_MAX_COUNT (1L << 40) /* samples or tokens in one shard */
#define RM_SHARD_NAME_CAP 64
#define RM_SHARD_SEAL_CHUNK_BYTES (256u << 10)
#define RM_DATASET_DEFAULT_DECRYPT_BYTES (512ull << 20)
#define RM_TOKENIZER_NAME_CAP 32

/* What a split's samples are. */
enum { RM_DATA_RECORDS = 0, RM_DATA_TOKENS = 1 };

typedef struct rm_shard_info {
    char file[RM_SHARD_NAME_CAP];
    long samples; /* token splits: windows, 0 until rm_shard_index_set_context */
    long tokens;  /* token splits only */
    uint64_t checksum;
} rm_shard_info;

typedef struct rm_shard_index {
    int format; /* RM_DATA_RECORDS or RM_DATA_TOKENS */
    long samples; /* token splits: windows, 0 until rm_shard_index_set_context */
    /* record splits (0 in token splits) */
    long input_dim;
    long classes;
    long record_bytes; /* 1 + input_dim */
    /* token splits (0 in record splits) */
    long vocab;
    long eot;     /* the end-of-text token that follows every document */
    long tokens;  /* in all shards */
    long context; /* window length - 1, set by rm_shard_index_set_context */
    int token_bytes; /* 2 when vocab <= 65536, else 4 */
    char tokenizer[RM_TOKENIZER_NAME_CAP];
    int n_shards;
    rm_shard_info *shards; /* owned */
    uint64_t index_hash;   /* of the index file's bytes: names the dataset */
    int encrypted;         /* every shard sealed with the dataset key */
} rm_shard_index;

/* Reads and checks <dir>/index.rmi; an inconsistent index fails with
 * "path:line: why". Free with rm_shard_index_free. */
int rm_shard_index_read(const char *dir, rm_shard_index *idx, rm_error *err);
void rm_shard_index_free(rm_shard_index *idx);

/* Writes <dir>/index.rmi atomically (tmp file, fsync, rename): version 1
 * for a record split, 2 for a token split. */
int rm_shard_index_write(const char *dir, const rm_shard_index *idx, rm_error *err);

/* Token splits: sets idx->context = context and each shard's `samples` (and
 * idx->samples) from its token count: floor((tokens - 1) / context) windows,
 * none in a shard of fewer than context + 1 tokens. Fails naming dir when
 * context < 1 or when no shard holds a whole window. Record splits: no-op. */
int rm_shard_index_set_context(rm_shard_index *idx, const char *dir, long context, rm_error *err);

/* Bytes of shard s's (plaintext) payload: samples * record_bytes, or
 * tokens * token_bytes. */
uint64_t rm_shard_index_payload_bytes(const rm_shard_index *idx, int s);

/* Writes one shard file (header + payload of n_items items of item_bytes
 * each: records, or tokens of token_bytes) atomically and returns the
 * payload checksum. */
int rm_shard_write(const char *path, const uint8_t *items, long n_items, long item_bytes, uint64_t *checksum,
                   rm_error *err);

/* The same, sealed with key when key is not NULL. */
int rm_shard_write_sealed(const char *path, const uint8_t *items, long n_items, long item_bytes,
                          const rm_secret_key *key, uint64_t *checksum, rm_error *err);

/* A split opened for reading. Opening checks the index and each shard's
 * header and size against it (cheap: a damaged header, a truncated or a
 * missing shard is named at open); a plain shard's checksum is verified
 * lazily, by rm_dataset_record just before the shard's first use, so a
 * dataset of any size opens at once and its shards are hashed as the
 * loader reaches them, on the loader's thread.
 *
 * Plain shards are mapped read-only and never read whole: the kernel pages
 * them in and out, so a split may be far larger than memory. Encrypted
 * shards are authenticated and decrypted whole at open (one pass, bounded
 * scratch) and kept decrypted while they fit in decrypt_budget bytes;
 * beyond that, rm_dataset_record decrypts a shard again when a sample of
 * it is asked for (on the caller's thread: the loader's), evicting the
 * least recently used. The sample order visits one window of shards at a
 * time, so each shard is decrypted about once per epoch. Decrypted shards
 * live in pages excluded from core dumps.
 *
 * One thread at a time uses a dataset; rm_dataset_record updates the
 * bookkeeping behind the pointers below (verified, error, cache). */
typedef struct rm_dataset_cache rm_dataset_cache;
typedef struct rm_dataset {
    rm_shard_index index;
    char *dir;                /* owned */
    const uint8_t **payloads; /* per shard; NULL: encrypted and not resident */
    size_t *map_bytes;
    void **maps;
    long *first_sample;      /* prefix sums: shard s holds [first_sample[s], first_sample[s+1]) */
    long sample_stride;      /* bytes from one sample of a shard to the next */
    long sample_bytes;       /* bytes one sample spans (windows overlap by one token) */
    unsigned char *verified; /* per shard: payload checksum checked against the index */
    rm_error *error;         /* why rm_dataset_record last returned NULL */
    rm_dataset_cache *cache; /* encrypted splits only */
} rm_dataset;

/* Record splits only. Encrypted splits use the process key
 * (rm_security_key) and the default budget. */
int rm_dataset_open(const char *dir, rm_dataset *ds, rm_error *err);
/* Record splits only: a token split fails saying a context is needed. */
int rm_dataset_open_budget(const char *dir, uint64_t decrypt_budget, rm_dataset *ds, rm_error *err);
/* Either kind: rm_dataset_open_budget plus the context that cuts a token
 * split into windows (rm_shard_index_set_context; ignored for records). */
int rm_dataset_open_context(const char *dir, uint64_t decrypt_budget, long context, rm_dataset *ds, rm_error *err);
void rm_dataset_close(rm_dataset *ds);

/* Global sample i (0 <= i < samples): a record (label byte, then
 * features), or the (context + 1) * token_bytes bytes of a token window
 * (inputs are its first context tokens, targets its last context). NULL
 * means the shard failed its checksum at first use, or (encrypted) failed
 * to decrypt: rm_dataset_error names the shard and says why. On an
 * encrypted split the pointer is valid until the next call. */
const uint8_t *rm_dataset_record(const rm_dataset *ds, long i);
const char *rm_dataset_error(const rm_dataset *ds);

/* Bytes rm_dataset_record points at for one sample: record_bytes, or
 * (context + 1) * token_bytes. */
long rm_dataset_sample_bytes(const rm_dataset *ds);

/* Shard holding sample i. */
int rm_dataset_shard_of(const rm_dataset *ds, long i);

#endif
