/* Sealed files, key files, encrypted splits with a bounded decrypt cache,
 * and the audit chain: the library-level checks behind tests/security. */
#include "audit.h"
#include "crypto.h"
#include "shard.h"
#include "test_util.h"

#include <check.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CHUNK 64u

static char scratch[RMT_PATH_CAP], key_path[RMT_PATH_CAP + 32], file_path[RMT_PATH_CAP + 32];
static rm_secret_key *key;

static void setup(void)
{
    rm_error err;
    rmt_make_tempdir(scratch);
    snprintf(key_path, sizeof key_path, "%s/key", scratch);
    snprintf(file_path, sizeof file_path, "%s/sealed", scratch);
    ck_assert_msg(rm_key_generate(key_path, &err) == RM_OK, "%s", err.msg);
    ck_assert_msg(rm_key_load(key_path, &key, &err) == RM_OK, "%s", err.msg);
}

static void teardown(void)
{
    rm_key_free(key);
    key = NULL;
    rmt_remove_tree(scratch);
}

static void make_header(uint8_t h[RM_SEAL_FILE_HEADER_BYTES], uint64_t payload)
{
    memset(h, 0, RM_SEAL_FILE_HEADER_BYTES);
    memcpy(h, "TESTHDR1", 8);
    for (int i = 0; i < 8; i++)
        h[16 + i] = (uint8_t)(payload >> (8 * i));
}

/* Writes header + sealed payload of n bytes (byte i = i*7) to file_path. */
static void write_sealed(uint64_t n)
{
    uint8_t h[RM_SEAL_FILE_HEADER_BYTES], *payload = malloc(n + 1), *sealed;
    for (uint64_t i = 0; i < n; i++)
        payload[i] = (uint8_t)(i * 7);
    make_header(h, n);
    size_t len;
    rm_error err;
    ck_assert_msg(rm_seal_buffer(key, h, payload, n, CHUNK, &sealed, &len, &err) == RM_OK, "%s", err.msg);
    ck_assert_uint_eq(len + RM_SEAL_FILE_HEADER_BYTES, rm_seal_file_bytes(n, CHUNK));
    FILE *f = fopen(file_path, "wb");
    fwrite(h, 1, sizeof h, f);
    fwrite(sealed, 1, len, f);
    fclose(f);
    free(sealed);
    free(payload);
}

/* Opens file_path and decrypts it whole, declaring payload n; RM_OK if every
 * chunk authenticates and the bytes are right. */
static int read_sealed(const rm_secret_key *k, uint64_t n, rm_error *err)
{
    int fd = open(file_path, O_RDONLY);
    ck_assert_int_ge(fd, 0);
    struct stat st;
    fstat(fd, &st);
    uint8_t h[RM_SEAL_FILE_HEADER_BYTES];
    ck_assert_int_eq(pread(fd, h, sizeof h, 0), (ssize_t)sizeof h);
    rm_seal_reader r;
    int rc = rm_seal_reader_open(&r, k, fd, file_path, h, n, (uint64_t)st.st_size, err);
    /* room for the chunk size the file declares (a damaged one may say more) */
    uint8_t *out = malloc(rc == RM_OK ? r.chunk_bytes : 1);
    uint64_t at = 0;
    for (uint64_t c = 0; rc == RM_OK && c < r.n_chunks; c++) {
        size_t len;
        rc = rm_seal_reader_chunk(&r, c, out, &len, err);
        for (size_t i = 0; rc == RM_OK && i < len; i++)
            ck_assert_uint_eq(out[i], (uint8_t)((at + i) * 7));
        at += len;
    }
    if (rc == RM_OK)
        ck_assert_uint_eq(at, n);
    free(out);
    rm_seal_reader_free(&r);
    close(fd);
    return rc;
}

START_TEST(round_trip_at_every_chunk_edge)
{
    const uint64_t sizes[] = {0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 5 * CHUNK + 17};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        write_sealed(sizes[i]);
        rm_error err;
        ck_assert_msg(read_sealed(key, sizes[i], &err) == RM_OK, "size %llu: %s", (unsigned long long)sizes[i],
                      err.msg);
    }
}
END_TEST

START_TEST(every_flipped_byte_is_refused)
{
    uint64_t n = 2 * CHUNK + 10;
    write_sealed(n);
    size_t len;
    uint8_t *orig = rmt_read_bytes(file_path, &len);
    for (size_t off = 0; off < len; off++) {
        uint8_t *copy = malloc(len);
        memcpy(copy, orig, len);
        copy[off] ^= 0x01;
        rmt_write_bytes(file_path, copy, len);
        free(copy);
        rm_error err;
        ck_assert_msg(read_sealed(key, n, &err) == RM_ERR, "flipped byte %zu went unnoticed", off);
        rmt_assert_contains(err.msg, file_path);
    }
    free(orig);
}
END_TEST

START_TEST(reordered_chunks_are_refused)
{
    uint64_t n = 3 * CHUNK;
    write_sealed(n);
    size_t len;
    uint8_t *b = rmt_read_bytes(file_path, &len);
    size_t c0 = RM_SEAL_FILE_HEADER_BYTES + RM_SEAL_HEADER_BYTES, cl = CHUNK + RM_SEAL_TAG_BYTES;
    uint8_t tmp[CHUNK + RM_SEAL_TAG_BYTES];
    memcpy(tmp, b + c0, cl);
    memcpy(b + c0, b + c0 + cl, cl);
    memcpy(b + c0 + cl, tmp, cl);
    rmt_write_bytes(file_path, b, len);
    free(b);
    rm_error err;
    ck_assert_int_eq(read_sealed(key, n, &err), RM_ERR);
    rmt_assert_contains(err.msg, "chunk 0 of 3 fails authentication");
}
END_TEST

/* Cut at a chunk boundary and declared shorter: the chunk now last was not
 * sealed as the final one. */
START_TEST(lost_final_chunk_is_refused)
{
    uint64_t n = 3 * CHUNK;
    write_sealed(n);
    ck_assert_int_eq(truncate(file_path, (off_t)rm_seal_file_bytes(2 * CHUNK, CHUNK)), 0);
    rm_error err;
    ck_assert_int_eq(read_sealed(key, 2 * CHUNK, &err), RM_ERR);
    rmt_assert_contains(err.msg, "chunk 1 of 2 fails authentication");
    /* and declared as it was: too short */
    ck_assert_int_eq(read_sealed(key, n, &err), RM_ERR);
    rmt_assert_contains(err.msg, "truncated or extended");
}
END_TEST

START_TEST(another_key_is_named)
{
    write_sealed(100);
    char other_path[RMT_PATH_CAP + 32];
    snprintf(other_path, sizeof other_path, "%s/other", scratch);
    rm_error err;
    rm_secret_key *other;
    ck_assert_msg(rm_key_generate(other_path, &err) == RM_OK, "%s", err.msg);
    ck_assert_msg(rm_key_load(other_path, &other, &err) == RM_OK, "%s", err.msg);
    ck_assert_int_eq(read_sealed(other, 100, &err), RM_ERR);
    rmt_assert_contains(err.msg, "was encrypted with another key");
    ck_assert_int_eq(read_sealed(NULL, 100, &err), RM_ERR);
    rmt_assert_contains(err.msg, "no key was given");
    rm_key_free(other);
}
END_TEST

START_TEST(key_files_are_checked)
{
    rm_error err;
    rm_secret_key *k;
    ck_assert_int_eq(rm_key_generate(key_path, &err), RM_ERR);
    rmt_assert_contains(err.msg, "already exists");
    struct stat st;
    ck_assert_int_eq(stat(key_path, &st), 0);
    ck_assert_uint_eq(st.st_mode & 0777, 0600);
    const unsigned modes[] = {0640, 0604, 0620, 0602, 0644};
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        chmod(key_path, modes[i]);
        ck_assert_int_eq(rm_key_load(key_path, &k, &err), RM_ERR);
        rmt_assert_contains(err.msg, key_path);
        rmt_assert_contains(err.msg, "accessible by group or others");
    }
    chmod(key_path, 0400);
    ck_assert_msg(rm_key_load(key_path, &k, &err) == RM_OK, "%s", err.msg);
    rm_key_free(k);
    char bad[RMT_PATH_CAP + 32];
    snprintf(bad, sizeof bad, "%s/long", scratch);
    rmt_write_bytes(bad, "0123456789012345678901234567890123", 33);
    chmod(bad, 0600);
    ck_assert_int_eq(rm_key_load(bad, &k, &err), RM_ERR);
    rmt_assert_contains(err.msg, "holds 33 bytes");
}
END_TEST

/* An encrypted split with a decrypt budget of one shard: every record is
 * right however the shards are visited, and a shard damaged after open is
 * reported by rm_dataset_record (NULL + reason), never read as garbage. */
START_TEST(encrypted_split_under_a_small_budget)
{
    rm_error err;
    ck_assert_msg(rm_security_load(key_path, &err) == RM_OK, "%s", err.msg);
    char dir[RMT_PATH_CAP + 32];
    snprintf(dir, sizeof dir, "%s/split", scratch);
    mkdir(dir, 0700);
    enum { SHARDS = 4, PER = 50, DIM = 7 };
    rm_shard_index idx = {.samples = SHARDS * PER, .input_dim = DIM, .classes = 3, .record_bytes = DIM + 1,
                          .n_shards = SHARDS, .encrypted = 1};
    idx.shards = calloc(SHARDS, sizeof *idx.shards);
    uint8_t rec[PER * (DIM + 1)];
    for (int s = 0; s < SHARDS; s++) {
        for (int i = 0; i < PER * (DIM + 1); i++)
            rec[i] = (uint8_t)(i % (DIM + 1) == 0 ? (s + i) % 3 : s * 31 + i);
        snprintf(idx.shards[s].file, sizeof idx.shards[s].file, "shard-%05d.rms", s);
        idx.shards[s].samples = PER;
        char path[RMT_PATH_CAP + 64];
        snprintf(path, sizeof path, "%s/%s", dir, idx.shards[s].file);
        ck_assert_msg(rm_shard_write_sealed(path, rec, PER, DIM + 1, rm_security_key(), &idx.shards[s].checksum,
                                            &err) == RM_OK,
                      "%s", err.msg);
    }
    ck_assert_msg(rm_shard_index_write(dir, &idx, &err) == RM_OK, "%s", err.msg);
    rm_shard_index_free(&idx);

    rm_dataset ds;
    ck_assert_msg(rm_dataset_open_budget(dir, PER * (DIM + 1), &ds, &err) == RM_OK, "%s", err.msg);
    ck_assert_int_eq(ds.index.encrypted, 1);
    const long order[] = {0, 199, 50, 149, 1, 100, 198, 51};
    for (int pass = 0; pass < 3; pass++)
        for (size_t k = 0; k < sizeof order / sizeof order[0]; k++) {
            long i = order[k], s = i / PER, j = (i % PER) * (DIM + 1);
            const uint8_t *r = rm_dataset_record(&ds, i);
            ck_assert_msg(r != NULL, "%s", rm_dataset_error(&ds));
            for (int b = 0; b <= DIM; b++)
                ck_assert_uint_eq(r[b], (uint8_t)(b == 0 ? (s + j) % 3 : s * 31 + j + b));
        }
    /* shard 2 is not resident now (the last record read was in shard 1):
     * damage it on disk */
    char path[RMT_PATH_CAP + 64];
    snprintf(path, sizeof path, "%s/shard-00002.rms", dir);
    size_t len;
    uint8_t *b = rmt_read_bytes(path, &len);
    b[len - 20] ^= 0x40;
    rmt_write_bytes(path, b, len);
    free(b);
    ck_assert_ptr_null(rm_dataset_record(&ds, 100));
    rmt_assert_contains(rm_dataset_error(&ds), "shard-00002.rms: chunk 0 of 1 fails authentication");
    rm_dataset_close(&ds);
    /* and at open */
    ck_assert_int_eq(rm_dataset_open(dir, &ds, &err), RM_ERR);
    rmt_assert_contains(err.msg, "shard-00002.rms");
    /* without a key: refused, saying why */
    rm_security_unload();
    ck_assert_int_eq(rm_dataset_open(dir, &ds, &err), RM_ERR);
    rmt_assert_contains(err.msg, "is encrypted (its index says so) and no key was given");
}
END_TEST

static char *read_audit(size_t *len)
{
    char path[RMT_PATH_CAP + 32];
    snprintf(path, sizeof path, "%s/%s", scratch, RM_AUDIT_NAME);
    return (char *)rmt_read_bytes(path, len);
}

static void write_audit(const char *text)
{
    char path[RMT_PATH_CAP + 32];
    snprintf(path, sizeof path, "%s/%s", scratch, RM_AUDIT_NAME);
    rmt_write_text(path, text);
}

/* the start of line n (1-based) in text */
static char *line_at(char *text, int n)
{
    for (int i = 1; i < n; i++)
        text = strchr(text, '\n') + 1;
    return text;
}

START_TEST(audit_chain_catches_deleted_and_edited_lines)
{
    rm_error err;
    long lines, bad;
    char head[65];
    for (int i = 0; i < 5; i++) {
        char fields[64];
        snprintf(fields, sizeof fields, "\"step\":%d", i * 10);
        ck_assert_msg(rm_audit_append(scratch, "checkpoint_committed", fields, &err) == RM_OK, "%s", err.msg);
    }
    ck_assert_msg(rm_audit_verify(scratch, NULL, NULL, 0, &lines, head, &bad, &err) == RM_OK, "%s", err.msg);
    ck_assert_int_eq(lines, 5);
    size_t len;
    char *orig = read_audit(&len);
    orig = realloc(orig, len + 1);
    orig[len] = '\0';
    struct stat st;
    char path[RMT_PATH_CAP + 32];
    snprintf(path, sizeof path, "%s/%s", scratch, RM_AUDIT_NAME);
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_uint_eq(st.st_mode & 0777, 0600);

    /* line 3 deleted */
    char *text = strdup(orig);
    char *l3 = line_at(text, 3), *l4 = line_at(text, 4);
    memmove(l3, l4, strlen(l4) + 1);
    write_audit(text);
    free(text);
    ck_assert_int_eq(rm_audit_verify(scratch, NULL, NULL, 0, &lines, head, &bad, &err), RM_ERR);
    ck_assert_int_eq(bad, 3);
    rmt_assert_contains(err.msg, "1 line was deleted");

    /* line 2 edited (the step it records) */
    text = strdup(orig);
    char *step = strstr(line_at(text, 2), "\"step\":10");
    step[8] = '9';
    write_audit(text);
    free(text);
    ck_assert_int_eq(rm_audit_verify(scratch, NULL, NULL, 0, &lines, head, &bad, &err), RM_ERR);
    ck_assert_int_eq(bad, 2);
    rmt_assert_contains(err.msg, "line 2 was edited");

    /* the first line edited */
    text = strdup(orig);
    line_at(text, 1)[20] ^= 1;
    write_audit(text);
    free(text);
    ck_assert_int_eq(rm_audit_verify(scratch, NULL, NULL, 0, &lines, head, &bad, &err), RM_ERR);
    ck_assert_int_eq(bad, 1);

    /* a torn last line: refused by verify, and appending refuses to chain onto it */
    text = strdup(orig);
    text[len - 5] = '\0';
    write_audit(text);
    free(text);
    ck_assert_int_eq(rm_audit_verify(scratch, NULL, NULL, 0, &lines, head, &bad, &err), RM_ERR);
    ck_assert_int_eq(bad, 5);
    rmt_assert_contains(err.msg, "incomplete");
    ck_assert_int_eq(rm_audit_append(scratch, "run_end", "", &err), RM_ERR);

    /* intact again: a further line chains on */
    write_audit(orig);
    ck_assert_msg(rm_audit_append(scratch, "run_end", "\"status\":\"completed\"", &err) == RM_OK, "%s", err.msg);
    ck_assert_msg(rm_audit_verify(scratch, NULL, NULL, 0, &lines, head, &bad, &err) == RM_OK, "%s", err.msg);
    ck_assert_int_eq(lines, 6);
    free(orig);
}
END_TEST

/* The end of the chain is pinned by the heads recorded elsewhere: lines
 * removed from the end (run_end with them) are found, and so is a line
 * rewritten under an anchor. */
START_TEST(audit_anchors_catch_a_lost_tail)
{
    rm_error err;
    long lines, bad, seq;
    char head[65];
    rm_audit_anchor anchor = {.where = "summary.json"};
    for (int i = 0; i < 4; i++)
        ck_assert_msg(rm_audit_append(scratch, "checkpoint_committed", "\"step\":1", &err) == RM_OK, "%s", err.msg);
    ck_assert_msg(rm_audit_head(scratch, &anchor.seq, anchor.head, &err) == RM_OK, "%s", err.msg);
    ck_assert_int_eq(anchor.seq, 4);
    ck_assert_msg(rm_audit_verify(scratch, NULL, &anchor, 1, &lines, head, &bad, &err) == RM_OK, "%s", err.msg);
    ck_assert_str_eq(head, anchor.head);
    size_t len;
    char *orig = read_audit(&len);
    orig = realloc(orig, len + 1);
    orig[len] = '\0';

    /* the last two lines removed: the chain alone still holds */
    char *text = strdup(orig);
    *line_at(text, 3) = '\0';
    write_audit(text);
    free(text);
    ck_assert_msg(rm_audit_verify(scratch, NULL, NULL, 0, &lines, head, &bad, &err) == RM_OK, "%s", err.msg);
    ck_assert_int_eq(rm_audit_verify(scratch, NULL, &anchor, 1, &lines, head, &bad, &err), RM_ERR);
    rmt_assert_contains(err.msg, "summary.json recorded line 4 of the trail, which ends at line 2");
    ck_assert_int_eq(bad, 3);

    /* the anchored line replaced by another well-chained one */
    text = strdup(orig);
    *line_at(text, 4) = '\0';
    write_audit(text);
    free(text);
    ck_assert_msg(rm_audit_append(scratch, "run_end", "", &err) == RM_OK, "%s", err.msg);
    ck_assert_int_eq(rm_audit_verify(scratch, NULL, &anchor, 1, &lines, head, &bad, &err), RM_ERR);
    rmt_assert_contains(err.msg, "is not the line summary.json recorded");
    ck_assert_int_eq(bad, 4);
    ck_assert_msg(rm_audit_head(scratch, &seq, head, &err) == RM_OK, "%s", err.msg);
    ck_assert_int_eq(seq, 4);
    free(orig);
}
END_TEST

/* With a key loaded the chain is keyed: it verifies with the key only,
 * and a chain rewritten without the key is refused. */
START_TEST(audit_chain_is_keyed_with_the_key)
{
    rm_error err;
    long lines, bad;
    char head[65];
    ck_assert_msg(rm_audit_append(scratch, "run_start", "", &err) == RM_OK, "%s", err.msg); /* before the key */
    ck_assert_msg(rm_security_load(key_path, &err) == RM_OK, "%s", err.msg);
    for (int i = 0; i < 3; i++)
        ck_assert_msg(rm_audit_append(scratch, "checkpoint_committed", "\"step\":1", &err) == RM_OK, "%s", err.msg);
    size_t len;
    char *text = read_audit(&len);
    text = realloc(text, len + 1);
    text[len] = '\0';
    ck_assert_ptr_nonnull(strstr(line_at(text, 2), "\"prev_mac\":\""));
    ck_assert_ptr_nonnull(strstr(line_at(text, 1), "\"prev\":\""));
    ck_assert_msg(rm_audit_verify(scratch, rm_security_key(), NULL, 0, &lines, head, &bad, &err) == RM_OK, "%s",
                  err.msg);
    ck_assert_int_eq(lines, 4);
    ck_assert_int_eq(rm_audit_verify(scratch, NULL, NULL, 0, &lines, head, &bad, &err), RM_ERR);
    rmt_assert_contains(err.msg, "no key was given");
    ck_assert_int_eq(bad, 2);
    /* another key: the MACs do not match */
    rm_secret_key *other;
    char other_path[RMT_PATH_CAP + 32];
    snprintf(other_path, sizeof other_path, "%s/other.key", scratch);
    ck_assert_msg(rm_key_generate(other_path, &err) == RM_OK, "%s", err.msg);
    ck_assert_msg(rm_key_load(other_path, &other, &err) == RM_OK, "%s", err.msg);
    ck_assert_int_eq(rm_audit_verify(scratch, other, NULL, 0, &lines, head, &bad, &err), RM_ERR);
    rmt_assert_contains(err.msg, "the key is not the run's");
    rm_key_free(other);
    /* the last line rewritten as an unkeyed one */
    char *last = line_at(text, 4), *mac = strstr(last, "\"prev_mac\":\"");
    memmove(mac + 5, mac + 9, strlen(mac + 9) + 1); /* "prev_mac":" -> "prev":" */
    write_audit(text);
    ck_assert_int_eq(rm_audit_verify(scratch, rm_security_key(), NULL, 0, &lines, head, &bad, &err), RM_ERR);
    rmt_assert_contains(err.msg, "rewritten without the key");
    free(text);
    rm_security_unload();
}
END_TEST

static Suite *security_suite(void)
{
    Suite *s = suite_create("security");
    TCase *tc = tcase_create("seal");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, round_trip_at_every_chunk_edge);
    tcase_add_test(tc, every_flipped_byte_is_refused);
    tcase_add_test(tc, reordered_chunks_are_refused);
    tcase_add_test(tc, lost_final_chunk_is_refused);
    tcase_add_test(tc, another_key_is_named);
    tcase_add_test(tc, key_files_are_checked);
    tcase_add_test(tc, encrypted_split_under_a_small_budget);
    tcase_add_test(tc, audit_chain_catches_deleted_and_edited_lines);
    tcase_add_test(tc, audit_anchors_catch_a_lost_tail);
    tcase_add_test(tc, audit_chain_is_keyed_with_the_key);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(security_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
