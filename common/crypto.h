/* Encryption at rest: the key, and sealed files (libsodium).
 *
 * A key is 32 random bytes in a file of its own (`ringmaster keygen`),
 * readable by its owner only. In memory it lives in guarded, locked pages
 * (sodium_malloc: mlocked, excluded from core dumps, zeroed when freed).
 *
 * A sealed file keeps its format's 64-byte plain header (whose protection
 * field says RM_PROTECTION_XCHACHA20) and follows it with a 32-byte seal
 * header and the payload cut into chunks:
 *
 *   header[64]        the format's own header (magic, sizes, protection)
 *   seal[32]          nonce prefix[16], chunk_bytes u32, zero u32, key id[8]
 *   chunk 0 .. n-1    ciphertext of min(chunk_bytes, rest) bytes + 16-byte tag
 *
 * Each chunk is XChaCha20-Poly1305 (IETF) with nonce = prefix || u64 index
 * and additional data = header || seal || final flag (1 on the last chunk).
 * So a chunk moved to another index, another file or another header fails
 * to authenticate, and a file cut short at a chunk boundary is refused
 * because its last chunk was not sealed as final. An empty payload is one
 * empty final chunk. */
#ifndef RINGMASTER_CRYPTO_H
#define RINGMASTER_CRYPTO_H

#include "error.h"

#include <stddef.h>
#include <stdint.h>

#define RM_KEY_BYTES 32
#define RM_KEY_ID_BYTES 8
#define RM_PROTECTION_XCHACHA20 1u /* protection field value in shard and checkpoint headers */
#define RM_SEAL_HEADER_BYTES 32
#define RM_SEAL_TAG_BYTES 16
#define RM_SEAL_FILE_HEADER_BYTES 64
#define RM_SEAL_MAX_CHUNK_BYTES (16u << 20)

typedef struct rm_secret_key rm_secret_key; /* opaque: guarded memory */

/* Initializes libsodium (idempotent). */
int rm_crypto_init(rm_error *err);

/* Reads a key file: a regular file of exactly 32 bytes, owned by this user
 * and not readable or writable by group or others. *key is freed with
 * rm_key_free. Messages name the file, never its contents. */
int rm_key_load(const char *path, rm_secret_key **key, rm_error *err);
void rm_key_free(rm_secret_key *key);

/* Writes 32 random bytes to a new file with mode 0600; refuses to replace
 * an existing file. */
int rm_key_generate(const char *path, rm_error *err);

/* 16 hex digits that name a key without revealing it (keyed BLAKE2b of a
 * fixed label), for "sealed with another key" messages. */
void rm_key_id_hex(const rm_secret_key *key, char out[17]);

/* A subkey for one purpose (keyed BLAKE2b-256 of label): the audit chain's
 * MAC key, so the key itself is used for one thing only. out is the
 * caller's; wipe it after use (sodium_memzero). */
void rm_key_derive(const rm_secret_key *key, const char *label, uint8_t out[RM_KEY_BYTES]);

/* 1 if a sealed file's seal header names this key (key may be NULL: 0). */
int rm_key_matches_seal(const rm_secret_key *key, const uint8_t seal[RM_SEAL_HEADER_BYTES]);

/* Checks a key file's ownership and mode without reading it. */
int rm_key_check_file(const char *path, rm_error *err);

/* The process's key: loaded once from security.key_file by each process
 * that reads or writes sealed files. Loading also turns core dumps off.
 * An empty key_file is no key (RM_OK). */
int rm_security_load(const char *key_file, rm_error *err);
const rm_secret_key *rm_security_key(void);
void rm_security_unload(void);

/* Core dumps off (RLIMIT_CORE 0). With `undumpable`, also PR_SET_DUMPABLE 0,
 * which blocks ptrace and /proc/PID/mem from other processes of the same
 * user; MPI ranks do not use it because shared-memory transports read
 * their peers' memory that way. */
void rm_security_no_core_dumps(int undumpable);

/* Size of a sealed file with this payload and chunk size. */
uint64_t rm_seal_file_bytes(uint64_t payload_bytes, uint32_t chunk_bytes);

/* Streaming writer: seal header and chunks go to fd after the caller's
 * header (which the writer also writes, at offset 0). */
typedef struct rm_seal_writer {
    int fd;
    const rm_secret_key *key;
    const char *path;
    uint8_t ad[RM_SEAL_FILE_HEADER_BYTES + RM_SEAL_HEADER_BYTES + 1];
    uint8_t nonce[24];
    uint32_t chunk_bytes;
    uint64_t payload_bytes, taken, index;
    uint8_t *plain, *cipher; /* chunk buffers, owned */
    size_t fill;
} rm_seal_writer;

int rm_seal_writer_begin(rm_seal_writer *w, const rm_secret_key *key, int fd, const char *path,
                         const uint8_t header[RM_SEAL_FILE_HEADER_BYTES], uint64_t payload_bytes, uint32_t chunk_bytes,
                         rm_error *err);
int rm_seal_writer_put(rm_seal_writer *w, const void *data, size_t len, rm_error *err);
/* Seals the last chunk; fails if the payload is not exactly payload_bytes. */
int rm_seal_writer_finish(rm_seal_writer *w, rm_error *err);
void rm_seal_writer_free(rm_seal_writer *w);

/* Seals a whole payload in memory: *out (seal header + chunks, to be
 * written after header) is malloc'd, the caller frees it. */
int rm_seal_buffer(const rm_secret_key *key, const uint8_t header[RM_SEAL_FILE_HEADER_BYTES], const void *payload,
                   uint64_t payload_bytes, uint32_t chunk_bytes, uint8_t **out, size_t *out_len, rm_error *err);

/* Reader for one sealed file open on fd: checks the seal header, the key
 * id and the file size, then opens chunks by index. */
typedef struct rm_seal_reader {
    int fd;
    const rm_secret_key *key;
    char path[1024];
    uint8_t ad[RM_SEAL_FILE_HEADER_BYTES + RM_SEAL_HEADER_BYTES + 1];
    uint8_t nonce[24];
    uint32_t chunk_bytes;
    uint64_t payload_bytes, n_chunks;
    uint8_t *cipher; /* owned */
} rm_seal_reader;

/* header is the file's first 64 bytes (already read and checked by the
 * caller's format); payload_bytes comes from it; file_bytes from fstat.
 * key NULL: fails with "encrypted, no key". */
int rm_seal_reader_open(rm_seal_reader *r, const rm_secret_key *key, int fd, const char *path,
                        const uint8_t header[RM_SEAL_FILE_HEADER_BYTES], uint64_t payload_bytes, uint64_t file_bytes,
                        rm_error *err);
/* Decrypts chunk `index` into out, which has room for r->chunk_bytes (the
 * size the file declares, at most RM_SEAL_MAX_CHUNK_BYTES); *len receives
 * its plaintext length. The lengths of all chunks add up to payload_bytes. */
int rm_seal_reader_chunk(rm_seal_reader *r, uint64_t index, uint8_t *out, size_t *len, rm_error *err);
void rm_seal_reader_free(rm_seal_reader *r);

#endif
