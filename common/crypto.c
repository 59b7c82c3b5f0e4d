#include "crypto.h"

#include "le_bytes.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

struct rm_secret_key {
    uint8_t bytes[RM_KEY_BYTES];
    uint8_t id[RM_KEY_ID_BYTES];
};

static const char key_id_label[] = "ringmaster key id v1";

int rm_crypto_init(rm_error *err)
{
    if (sodium_init() < 0)
        return rm_fail(err, "libsodium failed to initialize");
    return RM_OK;
}

static int check_stat(const char *path, const struct stat *st, rm_error *err)
{
    if (!S_ISREG(st->st_mode))
        return rm_fail(err, "key file %s is not a regular file", path);
    if (st->st_uid != geteuid())
        return rm_fail(err, "key file %s belongs to uid %u, not to this user (uid %u): refusing it", path,
                       (unsigned)st->st_uid, (unsigned)geteuid());
    if (st->st_mode & 077)
        return rm_fail(err, "key file %s is accessible by group or others (mode %04o): refusing it; chmod 600 %s", path,
                       (unsigned)(st->st_mode & 07777), path);
    return RM_OK;
}

int rm_key_check_file(const char *path, rm_error *err)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return rm_fail_errno(err, errno, "key file %s", path);
    return check_stat(path, &st, err);
}

int rm_key_load(const char *path, rm_secret_key **key, rm_error *err)
{
    *key = NULL;
    if (rm_crypto_init(err) != RM_OK)
        return RM_ERR;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return rm_fail_errno(err, errno, "key file %s: cannot open", path);
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return rm_fail_errno(err, e, "key file %s: cannot stat", path);
    }
    if (check_stat(path, &st, err) != RM_OK) {
        close(fd);
        return RM_ERR;
    }
    if (st.st_size != RM_KEY_BYTES) {
        close(fd);
        return rm_fail(err, "key file %s holds %lld bytes; a key is exactly %d (make one with `ringmaster keygen`)",
                       path, (long long)st.st_size, RM_KEY_BYTES);
    }
    rm_secret_key *k = sodium_malloc(sizeof *k);
    if (!k) {
        close(fd);
        return rm_fail(err, "key file %s: cannot allocate locked memory for the key", path);
    }
    size_t got = 0;
    while (got < RM_KEY_BYTES) {
        ssize_t n = read(fd, k->bytes + got, RM_KEY_BYTES - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            int e = n < 0 ? errno : EIO;
            close(fd);
            sodium_free(k);
            return rm_fail_errno(err, e, "key file %s: read failed", path);
        }
        got += (size_t)n;
    }
    close(fd);
    crypto_generichash(k->id, sizeof k->id, (const unsigned char *)key_id_label, sizeof key_id_label - 1, k->bytes,
                       sizeof k->bytes);
    sodium_mprotect_readonly(k);
    *key = k;
    return RM_OK;
}

void rm_key_free(rm_secret_key *key)
{
    if (key)
        sodium_free(key); /* zeroes and unlocks the pages */
}

int rm_key_generate(const char *path, rm_error *err)
{
    if (rm_crypto_init(err) != RM_OK)
        return RM_ERR;
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        if (errno == EEXIST)
            return rm_fail(err, "%s already exists: refusing to overwrite a key (data sealed with it would be lost)",
                           path);
        return rm_fail_errno(err, errno, "%s: cannot create", path);
    }
    uint8_t bytes[RM_KEY_BYTES];
    sodium_mlock(bytes, sizeof bytes);
    randombytes_buf(bytes, sizeof bytes);
    int rc = RM_OK;
    /* explicit, whatever the umask */
    if (fchmod(fd, 0600) != 0)
        rc = rm_fail_errno(err, errno, "%s: cannot set mode 0600", path);
    size_t done = 0;
    while (rc == RM_OK && done < sizeof bytes) {
        ssize_t n = write(fd, bytes + done, sizeof bytes - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            rc = rm_fail_errno(err, errno, "%s: write failed", path);
        else
            done += (size_t)n;
    }
    if (rc == RM_OK && fsync(fd) != 0)
        rc = rm_fail_errno(err, errno, "%s: fsync failed", path);
    sodium_munlock(bytes, sizeof bytes); /* zeroes too */
    if (close(fd) != 0 && rc == RM_OK)
        rc = rm_fail_errno(err, errno, "%s: close failed", path);
    if (rc != RM_OK)
        unlink(path);
    return rc;
}

void rm_key_id_hex(const rm_secret_key *key, char out[17])
{
    sodium_bin2hex(out, 17, key->id, sizeof key->id);
}

void rm_key_derive(const rm_secret_key *key, const char *label, uint8_t out[RM_KEY_BYTES])
{
    crypto_generichash(out, RM_KEY_BYTES, (const unsigned char *)label, strlen(label), key->bytes, RM_KEY_BYTES);
}

int rm_key_matches_seal(const rm_secret_key *key, const uint8_t seal[RM_SEAL_HEADER_BYTES])
{
    return key && sodium_memcmp(seal + 24, key->id, RM_KEY_ID_BYTES) == 0;
}

static rm_secret_key *process_key;

int rm_security_load(const char *key_file, rm_error *err)
{
    if (process_key || !key_file || !key_file[0])
        return RM_OK;
    rm_security_no_core_dumps(0);
    return rm_key_load(key_file, &process_key, err);
}

const rm_secret_key *rm_security_key(void)
{
    return process_key;
}

void rm_security_unload(void)
{
    rm_key_free(process_key);
    process_key = NULL;
}

void rm_security_no_core_dumps(int undumpable)
{
    struct rlimit none = {0, 0};
    setrlimit(RLIMIT_CORE, &none);
    if (undumpable)
        prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
}

/* ---- sealed files ---- */

static uint64_t n_chunks_for(uint64_t payload_bytes, uint32_t chunk_bytes)
{
    return payload_bytes == 0 ? 1 : (payload_bytes + chunk_bytes - 1) / chunk_bytes;
}

uint64_t rm_seal_file_bytes(uint64_t payload_bytes, uint32_t chunk_bytes)
{
    return RM_SEAL_FILE_HEADER_BYTES + RM_SEAL_HEADER_BYTES + payload_bytes +
           n_chunks_for(payload_bytes, chunk_bytes) * RM_SEAL_TAG_BYTES;
}

static void set_index(uint8_t nonce[24], uint64_t index)
{
    rm_put_u64(nonce + 16, index);
}

/* Builds the seal header and the additional data for a new file. */
static void seal_setup(const rm_secret_key *key, const uint8_t header[RM_SEAL_FILE_HEADER_BYTES], uint32_t chunk_bytes,
                       uint8_t ad[RM_SEAL_FILE_HEADER_BYTES + RM_SEAL_HEADER_BYTES + 1], uint8_t nonce[24])
{
    uint8_t *seal = ad + RM_SEAL_FILE_HEADER_BYTES;
    memcpy(ad, header, RM_SEAL_FILE_HEADER_BYTES);
    memset(seal, 0, RM_SEAL_HEADER_BYTES);
    randombytes_buf(seal, 16);
    rm_put_u32(seal + 16, chunk_bytes);
    memcpy(seal + 24, key->id, RM_KEY_ID_BYTES);
    memcpy(nonce, seal, 16);
    ad[RM_SEAL_FILE_HEADER_BYTES + RM_SEAL_HEADER_BYTES] = 0;
}

static void seal_chunk(const rm_secret_key *key, uint8_t *ad, uint8_t *nonce, uint64_t index, int final, const uint8_t *plain,
                       size_t len, uint8_t *cipher)
{
    set_index(nonce, index);
    ad[RM_SEAL_FILE_HEADER_BYTES + RM_SEAL_HEADER_BYTES] = (uint8_t)(final ? 1 : 0);
    unsigned long long clen;
    crypto_aead_xchacha20poly1305_ietf_encrypt(cipher, &clen, plain, len, ad,
                                               RM_SEAL_FILE_HEADER_BYTES + RM_SEAL_HEADER_BYTES + 1, NULL, nonce,
                                               key->bytes);
}

static int write_all(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int rm_seal_writer_begin(rm_seal_writer *w, const rm_secret_key *key, int fd, const char *path,
                         const uint8_t header[RM_SEAL_FILE_HEADER_BYTES], uint64_t payload_bytes, uint32_t chunk_bytes,
                         rm_error *err)
{
    memset(w, 0, sizeof *w);
    if (chunk_bytes == 0 || chunk_bytes > RM_SEAL_MAX_CHUNK_BYTES)
        return rm_fail(err, "%s: bad seal chunk size %u", path, chunk_bytes);
    w->fd = fd;
    w->key = key;
    w->path = path;
    w->chunk_bytes = chunk_bytes;
    w->payload_bytes = payload_bytes;
    w->plain = malloc(chunk_bytes);
    w->cipher = malloc((size_t)chunk_bytes + RM_SEAL_TAG_BYTES);
    if (!w->plain || !w->cipher) {
        rm_seal_writer_free(w);
        return rm_fail(err, "%s: out of memory", path);
    }
    seal_setup(key, header, chunk_bytes, w->ad, w->nonce);
    if (write_all(fd, w->ad, RM_SEAL_FILE_HEADER_BYTES + RM_SEAL_HEADER_BYTES) != 0) {
        int e = errno;
        rm_seal_writer_free(w);
        return rm_fail_errno(err, e, "%s: write failed", path);
    }
    return RM_OK;
}

static int flush_chunk(rm_seal_writer *w, int final, rm_error *err)
{
    seal_chunk(w->key, w->ad, w->nonce, w->index, final, w->plain, w->fill, w->cipher);
    if (write_all(w->fd, w->cipher, w->fill + RM_SEAL_TAG_BYTES) != 0)
        return rm_fail_errno(err, errno, "%s: write failed", w->path);
    w->index++;
    w->fill = 0;
    return RM_OK;
}

int rm_seal_writer_put(rm_seal_writer *w, const void *data, size_t len, rm_error *err)
{
    const uint8_t *p = data;
    if (len > w->payload_bytes - w->taken)
        return rm_fail(err, "%s: more payload than the header announces", w->path);
    while (len > 0) {
        /* A full chunk is sealed only once more data arrives, so the last one
         * (full or not) is always sealed as final. */
        if (w->fill == w->chunk_bytes && flush_chunk(w, 0, err) != RM_OK)
            return RM_ERR;
        size_t take = w->chunk_bytes - w->fill < len ? w->chunk_bytes - w->fill : len;
        memcpy(w->plain + w->fill, p, take);
        w->fill += take;
        w->taken += take;
        p += take;
        len -= take;
    }
    return RM_OK;
}

int rm_seal_writer_finish(rm_seal_writer *w, rm_error *err)
{
    if (w->taken != w->payload_bytes)
        return rm_fail(err, "%s: payload is %llu bytes, the header announces %llu", w->path,
                       (unsigned long long)w->taken, (unsigned long long)w->payload_bytes);
    return flush_chunk(w, 1, err);
}

void rm_seal_writer_free(rm_seal_writer *w)
{
    if (w->plain)
        sodium_memzero(w->plain, w->chunk_bytes);
    free(w->plain);
    free(w->cipher);
    w->plain = w->cipher = NULL;
}

int rm_seal_buffer(const rm_secret_key *key, const uint8_t header[RM_SEAL_FILE_HEADER_BYTES], const void *payload,
                   uint64_t payload_bytes, uint32_t chunk_bytes, uint8_t **out, size_t *out_len, rm_error *err)
{
    *out = NULL;
    if (chunk_bytes == 0 || chunk_bytes > RM_SEAL_MAX_CHUNK_BYTES)
        return rm_fail(err, "bad seal chunk size %u", chunk_bytes);
    size_t len = (size_t)(rm_seal_file_bytes(payload_bytes, chunk_bytes) - RM_SEAL_FILE_HEADER_BYTES);
    uint8_t *buf = malloc(len);
    if (!buf)
        return rm_fail(err, "out of memory sealing %llu bytes", (unsigned long long)payload_bytes);
    uint8_t ad[RM_SEAL_FILE_HEADER_BYTES + RM_SEAL_HEADER_BYTES + 1], nonce[24];
    seal_setup(key, header, chunk_bytes, ad, nonce);
    memcpy(buf, ad + RM_SEAL_FILE_HEADER_BYTES, RM_SEAL_HEADER_BYTES);
    uint64_t n = n_chunks_for(payload_bytes, chunk_bytes);
    const uint8_t *p = payload;
    uint8_t *c = buf + RM_SEAL_HEADER_BYTES;
    for (uint64_t i = 0; i < n; i++) {
        size_t take = i + 1 < n ? chunk_bytes : (size_t)(payload_bytes - i * chunk_bytes);
        seal_chunk(key, ad, nonce, i, i + 1 == n, p, take, c);
        p += take;
        c += take + RM_SEAL_TAG_BYTES;
    }
    *out = buf;
    *out_len = len;
    return RM_OK;
}

int rm_seal_reader_open(rm_seal_reader *r, const rm_secret_key *key, int fd, const char *path,
                        const uint8_t header[RM_SEAL_FILE_HEADER_BYTES], uint64_t payload_bytes, uint64_t file_bytes,
                        rm_error *err)
{
    memset(r, 0, sizeof *r);
    snprintf(r->path, sizeof r->path, "%s", path);
    if (!key)
        return rm_fail(err, "%s: is encrypted and no key was given (set security.key_file)", path);
    r->fd = fd;
    r->key = key;
    r->payload_bytes = payload_bytes;
    memcpy(r->ad, header, RM_SEAL_FILE_HEADER_BYTES);
    uint8_t *seal = r->ad + RM_SEAL_FILE_HEADER_BYTES;
    if (pread(fd, seal, RM_SEAL_HEADER_BYTES, RM_SEAL_FILE_HEADER_BYTES) != RM_SEAL_HEADER_BYTES)
        return rm_fail(err, "%s: encrypted file is truncated (no seal header)", path);
    r->chunk_bytes = rm_get_u32(seal + 16);
    if (r->chunk_bytes == 0 || r->chunk_bytes > RM_SEAL_MAX_CHUNK_BYTES || rm_get_u32(seal + 20) != 0)
        return rm_fail(err, "%s: damaged seal header", path);
    if (sodium_memcmp(seal + 24, key->id, RM_KEY_ID_BYTES) != 0) {
        char have[17], want[17];
        sodium_bin2hex(want, sizeof want, seal + 24, RM_KEY_ID_BYTES);
        rm_key_id_hex(key, have);
        return rm_fail(err, "%s: was encrypted with another key (key id %s; security.key_file has key id %s)", path,
                       want, have);
    }
    if (payload_bytes > (1ull << 50))
        return rm_fail(err, "%s: implausible payload size", path);
    uint64_t want = rm_seal_file_bytes(payload_bytes, r->chunk_bytes);
    if (file_bytes != want)
        return rm_fail(err, "%s: encrypted file is %llu bytes, its header implies %llu (truncated or extended)", path,
                       (unsigned long long)file_bytes, (unsigned long long)want);
    r->n_chunks = n_chunks_for(payload_bytes, r->chunk_bytes);
    memcpy(r->nonce, seal, 16);
    r->cipher = malloc((size_t)r->chunk_bytes + RM_SEAL_TAG_BYTES);
    if (!r->cipher)
        return rm_fail(err, "%s: out of memory", path);
    return RM_OK;
}

int rm_seal_reader_chunk(rm_seal_reader *r, uint64_t index, uint8_t *out, size_t *len, rm_error *err)
{
    if (index >= r->n_chunks)
        return rm_fail(err, "%s: no chunk %llu", r->path, (unsigned long long)index);
    size_t plain = index + 1 < r->n_chunks ? r->chunk_bytes : (size_t)(r->payload_bytes - index * r->chunk_bytes);
    size_t clen = plain + RM_SEAL_TAG_BYTES;
    off_t at = (off_t)(RM_SEAL_FILE_HEADER_BYTES + RM_SEAL_HEADER_BYTES + index * ((uint64_t)r->chunk_bytes + RM_SEAL_TAG_BYTES));
    size_t got = 0;
    while (got < clen) {
        ssize_t n = pread(r->fd, r->cipher + got, clen - got, at + (off_t)got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? rm_fail_errno(err, errno, "%s: read failed", r->path)
                         : rm_fail(err, "%s: encrypted file is truncated", r->path);
        got += (size_t)n;
    }
    set_index(r->nonce, index);
    r->ad[RM_SEAL_FILE_HEADER_BYTES + RM_SEAL_HEADER_BYTES] = (uint8_t)(index + 1 == r->n_chunks);
    unsigned long long mlen;
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(out, &mlen, NULL, r->cipher, clen, r->ad, sizeof r->ad, r->nonce,
                                                   r->key->bytes) != 0)
        return rm_fail(err, "%s: chunk %llu of %llu fails authentication: the file was modified, truncated or "
                            "reordered (refusing to use it)",
                       r->path, (unsigned long long)index, (unsigned long long)r->n_chunks);
    *len = (size_t)mlen;
    return RM_OK;
}

void rm_seal_reader_free(rm_seal_reader *r)
{
    free(r->cipher);
    r->cipher = NULL;
}
