/* IDX import and the shard format: good files land record by record where
 * they should; damaged IDX files and damaged shards are refused with a
 * reason that names the file. */
#include "hash.h"
#include "idx_import.h"
#include "shard.h"
#include "test_util.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define N_SAMPLES 10
#define ROWS 3
#define COLS 2
#define INPUT_DIM (ROWS * COLS)
#define CLASSES 4
#define SHARD_SAMPLES 4

static char scratch[RMT_PATH_CAP];
static char images_path[RMT_PATH_CAP + 32], labels_path[RMT_PATH_CAP + 32], out_dir[RMT_PATH_CAP + 32];

static void setup_scratch(void)
{
    rmt_make_tempdir(scratch);
    snprintf(out_dir, sizeof out_dir, "%s/split", scratch);
}

static void teardown_scratch(void)
{
    rmt_remove_tree(scratch);
}

static uint8_t pixel_of(long i, long j)
{
    return (uint8_t)((i * 16 + j * 5 + 1) & 0xff);
}

static uint8_t label_of(long i)
{
    return (uint8_t)(i % CLASSES);
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* An IDX file in memory: magic 00 00 08 ndims, big-endian dims, payload. */
typedef struct idx_bytes {
    uint8_t *data;
    size_t len;
} idx_bytes;

static idx_bytes make_images(long n, size_t extra)
{
    idx_bytes b;
    b.len = 16 + (size_t)n * INPUT_DIM + extra;
    b.data = calloc(1, b.len);
    ck_assert_ptr_nonnull(b.data);
    b.data[2] = 0x08;
    b.data[3] = 3;
    put_be32(b.data + 4, (uint32_t)n);
    put_be32(b.data + 8, ROWS);
    put_be32(b.data + 12, COLS);
    for (long i = 0; i < n; i++)
        for (long j = 0; j < INPUT_DIM; j++)
            b.data[16 + i * INPUT_DIM + j] = pixel_of(i, j);
    return b;
}

static idx_bytes make_labels(long n, size_t extra)
{
    idx_bytes b;
    b.len = 8 + (size_t)n + extra;
    b.data = calloc(1, b.len);
    ck_assert_ptr_nonnull(b.data);
    b.data[2] = 0x08;
    b.data[3] = 1;
    put_be32(b.data + 4, (uint32_t)n);
    for (long i = 0; i < n; i++)
        b.data[8 + i] = label_of(i);
    return b;
}

/* Writes b to path, gzipped when gz, and frees it. */
static void write_idx(const char *path, idx_bytes b, int gz)
{
    if (gz) {
        gzFile f = gzopen(path, "wb");
        ck_assert_ptr_nonnull(f);
        ck_assert_int_eq(gzwrite(f, b.data, (unsigned)b.len), (int)b.len);
        ck_assert_int_eq(gzclose(f), Z_OK);
    } else {
        rmt_write_bytes(path, b.data, b.len);
    }
    free(b.data);
}

/* Writes the good pair of files: images and labels. */
static void write_good_pair(int gz)
{
    snprintf(images_path, sizeof images_path, "%s/images-idx3-ubyte%s", scratch, gz ? ".gz" : "");
    snprintf(labels_path, sizeof labels_path, "%s/labels-idx1-ubyte%s", scratch, gz ? ".gz" : "");
    write_idx(images_path, make_images(N_SAMPLES, 0), gz);
    write_idx(labels_path, make_labels(N_SAMPLES, 0), gz);
}

static void truncate_file(const char *path, long drop_bytes)
{
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_int_eq(truncate(path, st.st_size - drop_bytes), 0);
}

/* Runs the import and expects it to fail with a message holding `a` and `b`. */
static void expect_import_fails(const char *a, const char *b)
{
    rm_error err;
    memset(&err, 0, sizeof err);
    ck_assert_msg(rm_idx_import(images_path, labels_path, out_dir, SHARD_SAMPLES, NULL, &err) == RM_ERR,
                  "import should fail with \"%s\"", b);
    rmt_assert_contains(err.msg, a);
    rmt_assert_contains(err.msg, b);
    /* the index is written last, so a failed import never looks complete */
    char index_path[RMT_PATH_CAP + 64];
    snprintf(index_path, sizeof index_path, "%s/%s", out_dir, RM_SHARD_INDEX_NAME);
    ck_assert_msg(access(index_path, F_OK) != 0, "%s exists after a failed import", index_path);
}

START_TEST(import_puts_every_record_in_place)
{
    int gz = _i;
    write_good_pair(gz);
    rm_idx_import_result res;
    rm_error err;
    ck_assert_msg(rm_idx_import(images_path, labels_path, out_dir, SHARD_SAMPLES, &res, &err) == RM_OK, "%s",
                  err.msg);
    ck_assert_int_eq(res.samples, N_SAMPLES);
    ck_assert_int_eq(res.input_dim, INPUT_DIM);
    ck_assert_int_eq(res.classes, CLASSES);
    ck_assert_int_eq(res.shards, 3);

    rm_shard_index idx;
    ck_assert_msg(rm_shard_index_read(out_dir, &idx, &err) == RM_OK, "%s", err.msg);
    ck_assert_int_eq(idx.samples, N_SAMPLES);
    ck_assert_int_eq(idx.input_dim, INPUT_DIM);
    ck_assert_int_eq(idx.classes, CLASSES);
    ck_assert_int_eq(idx.record_bytes, 1 + INPUT_DIM);
    ck_assert_int_eq(idx.n_shards, 3);
    static const long shard_sizes[] = {4, 4, 2};
    for (int s = 0; s < 3; s++) {
        char name[32];
        snprintf(name, sizeof name, "shard-%05d.rms", s);
        ck_assert_str_eq(idx.shards[s].file, name);
        ck_assert_int_eq(idx.shards[s].samples, shard_sizes[s]);
    }
    rm_shard_index_free(&idx);

    rm_dataset ds;
    ck_assert_msg(rm_dataset_open(out_dir, &ds, &err) == RM_OK, "%s", err.msg);
    for (long i = 0; i < N_SAMPLES; i++) {
        const uint8_t *rec = rm_dataset_record(&ds, i);
        ck_assert_int_eq(rm_dataset_shard_of(&ds, i), i / SHARD_SAMPLES);
        ck_assert_msg(rec[0] == label_of(i), "sample %ld: label %u, want %u", i, rec[0], label_of(i));
        for (long j = 0; j < INPUT_DIM; j++)
            ck_assert_msg(rec[1 + j] == pixel_of(i, j), "sample %ld pixel %ld: %u, want %u", i, j, rec[1 + j],
                          pixel_of(i, j));
    }
    rm_dataset_close(&ds);
}
END_TEST

START_TEST(one_shard_when_the_shard_size_is_large)
{
    write_good_pair(1);
    rm_idx_import_result res;
    rm_error err;
    ck_assert_msg(rm_idx_import(images_path, labels_path, out_dir, 1000, &res, &err) == RM_OK, "%s", err.msg);
    ck_assert_int_eq(res.shards, 1);
    rm_dataset ds;
    ck_assert_msg(rm_dataset_open(out_dir, &ds, &err) == RM_OK, "%s", err.msg);
    ck_assert_int_eq(ds.index.shards[0].samples, N_SAMPLES);
    ck_assert_int_eq(rm_dataset_record(&ds, N_SAMPLES - 1)[0], label_of(N_SAMPLES - 1));
    rm_dataset_close(&ds);
}
END_TEST

START_TEST(wrong_magic_is_refused)
{
    write_good_pair(1);
    idx_bytes b = make_images(N_SAMPLES, 0);
    memcpy(b.data, "PK\x03\x04", 4); /* a zip file, say */
    write_idx(images_path, b, 1);
    expect_import_fails(images_path, "not an IDX file (bad magic 50 4b 03 04)");
}
END_TEST

START_TEST(unsupported_element_type_is_refused)
{
    write_good_pair(0);
    idx_bytes b = make_images(N_SAMPLES, 0);
    b.data[2] = 0x0d; /* float32 */
    write_idx(images_path, b, 0);
    expect_import_fails(images_path, "IDX element type 0x0d is not supported");
}
END_TEST

START_TEST(swapped_files_are_refused)
{
    write_good_pair(1);
    char tmp[sizeof images_path];
    memcpy(tmp, images_path, sizeof tmp);
    memcpy(images_path, labels_path, sizeof images_path);
    memcpy(labels_path, tmp, sizeof labels_path);
    expect_import_fails(images_path, "has 1 dimensions, expected 3 (an images file)");
}
END_TEST

START_TEST(truncated_images_file_is_refused)
{
    write_good_pair(0);
    truncate_file(images_path, 5);
    expect_import_fails(images_path, "file is truncated (ends inside the image data)");
}
END_TEST

START_TEST(truncated_header_is_refused)
{
    write_good_pair(0);
    truncate_file(labels_path, N_SAMPLES + 3); /* cut inside the count */
    expect_import_fails(labels_path, "file is truncated (ends inside the header)");
}
END_TEST

START_TEST(truncated_gzip_stream_is_refused)
{
    write_good_pair(1);
    struct stat st;
    ck_assert_int_eq(stat(images_path, &st), 0);
    truncate_file(images_path, st.st_size / 2);
    expect_import_fails(images_path, "truncated");
}
END_TEST

START_TEST(damaged_gzip_stream_is_refused)
{
    /* a flipped byte inside the compressed data: the gzip CRC catches what
     * the inflater does not */
    write_good_pair(1);
    size_t len;
    uint8_t *bytes = rmt_read_bytes(images_path, &len);
    bytes[len / 2] ^= 0x55;
    rmt_write_bytes(images_path, bytes, len);
    free(bytes);
    expect_import_fails(images_path, "damaged");
}
END_TEST

START_TEST(gzip_cut_inside_its_trailer_is_refused)
{
    /* zlib's reader returns a clean end of file when the reads stop exactly
     * at the end of the data, even if the CRC/length trailer is cut: the
     * importer checks the trailer itself. _i bytes cut: 1..8 are inside it. */
    write_good_pair(1);
    truncate_file(images_path, _i);
    expect_import_fails(images_path, "truncated");
}
END_TEST

START_TEST(mismatched_counts_are_refused)
{
    write_good_pair(1);
    write_idx(labels_path, make_labels(N_SAMPLES - 1, 0), 1);
    char what[3 * RMT_PATH_CAP];
    snprintf(what, sizeof what, "%s has %d images but %s has %d labels", images_path, N_SAMPLES, labels_path,
             N_SAMPLES - 1);
    expect_import_fails(images_path, what);
}
END_TEST

START_TEST(trailing_bytes_are_refused)
{
    write_good_pair(1);
    write_idx(images_path, make_images(N_SAMPLES, 3), 1);
    expect_import_fails(images_path, "has bytes after the last sample");
    write_good_pair(0);
    write_idx(labels_path, make_labels(N_SAMPLES, 1), 0);
    expect_import_fails(labels_path, "has bytes after the last sample");
}
END_TEST

START_TEST(all_zero_labels_are_refused)
{
    write_good_pair(0);
    idx_bytes b = make_labels(N_SAMPLES, 0);
    memset(b.data + 8, 0, N_SAMPLES);
    write_idx(labels_path, b, 0);
    expect_import_fails(labels_path, "every label is 0");
}
END_TEST

START_TEST(missing_file_is_named)
{
    write_good_pair(1);
    ck_assert_int_eq(unlink(labels_path), 0);
    expect_import_fails(labels_path, "cannot open");
}
END_TEST

/* Imports the good pair (3 shards) and returns the path of shard s. */
static void import_and_locate(int s, char *shard_path, size_t cap)
{
    write_good_pair(1);
    rm_error err;
    ck_assert_msg(rm_idx_import(images_path, labels_path, out_dir, SHARD_SAMPLES, NULL, &err) == RM_OK, "%s",
                  err.msg);
    snprintf(shard_path, cap, "%s/shard-%05d.rms", out_dir, s);
}

static void flip_byte(const char *path, size_t offset)
{
    size_t len;
    uint8_t *bytes = rmt_read_bytes(path, &len);
    ck_assert_uint_lt(offset, len);
    bytes[offset] ^= 0x01;
    rmt_write_bytes(path, bytes, len);
    free(bytes);
}

static void expect_open_fails(const char *a, const char *b)
{
    rm_dataset ds;
    rm_error err;
    ck_assert_msg(rm_dataset_open(out_dir, &ds, &err) == RM_ERR, "a damaged split was opened");
    rmt_assert_contains(err.msg, a);
    rmt_assert_contains(err.msg, b);
}

/* Checksums are verified lazily: the split opens, the intact shards read,
 * and the damaged one is named at its first use. */
START_TEST(flipped_payload_byte_is_a_checksum_mismatch)
{
    char shard[RMT_PATH_CAP + 64];
    import_and_locate(1, shard, sizeof shard);
    /* the last byte of the payload: a check that stops early misses it */
    flip_byte(shard, RM_SHARD_HEADER_BYTES + 4 * (1 + INPUT_DIM) - 1);
    rm_dataset ds;
    rm_error err;
    ck_assert_msg(rm_dataset_open(out_dir, &ds, &err) == RM_OK, "open hashes shards: %s", err.msg);
    ck_assert_ptr_nonnull(rm_dataset_record(&ds, 0));
    ck_assert_ptr_nonnull(rm_dataset_record(&ds, 9));
    ck_assert_ptr_null(rm_dataset_record(&ds, SHARD_SAMPLES)); /* the first record of shard 1 */
    rmt_assert_contains(rm_dataset_error(&ds), shard);
    rmt_assert_contains(rm_dataset_error(&ds), "checksum mismatch");
    char want[17];
    rm_hash_hex(ds.index.shards[1].checksum, want);
    rmt_assert_contains(rm_dataset_error(&ds), want);
    /* and again on a later call: a damaged shard never reads */
    ck_assert_ptr_null(rm_dataset_record(&ds, SHARD_SAMPLES + 3));
    rm_dataset_close(&ds);
}
END_TEST

START_TEST(damaged_shard_header_is_refused)
{
    char shard[RMT_PATH_CAP + 64];
    import_and_locate(0, shard, sizeof shard);
    flip_byte(shard, 0);
    expect_open_fails(shard, "not a ringmaster shard (bad magic or version)");
    import_and_locate(2, shard, sizeof shard);
    flip_byte(shard, 16); /* record count */
    expect_open_fails(shard, "header disagrees with the index");
}
END_TEST

START_TEST(truncated_shard_is_refused)
{
    char shard[RMT_PATH_CAP + 64];
    import_and_locate(2, shard, sizeof shard);
    truncate_file(shard, 1);
    char what[128];
    snprintf(what, sizeof what, "shard is %d bytes, expected %d (truncated or wrong file)",
             RM_SHARD_HEADER_BYTES + 2 * (1 + INPUT_DIM) - 1, RM_SHARD_HEADER_BYTES + 2 * (1 + INPUT_DIM));
    expect_open_fails(shard, what);
}
END_TEST

START_TEST(missing_shard_is_named)
{
    char shard[RMT_PATH_CAP + 64];
    import_and_locate(1, shard, sizeof shard);
    ck_assert_int_eq(unlink(shard), 0);
    expect_open_fails(shard, "cannot open shard");
}
END_TEST

START_TEST(index_that_disagrees_with_its_shards_is_refused)
{
    char shard[RMT_PATH_CAP + 64], index_path[RMT_PATH_CAP + 64];
    import_and_locate(0, shard, sizeof shard);
    snprintf(index_path, sizeof index_path, "%s/%s", out_dir, RM_SHARD_INDEX_NAME);
    size_t len;
    char *text = (char *)rmt_read_bytes(index_path, &len);
    text = realloc(text, len + 1);
    text[len] = '\0';
    char *samples = strstr(text, "samples 10\n");
    ck_assert_ptr_nonnull(samples);
    samples[9] = '1'; /* "samples 11" */
    rmt_write_text(index_path, text);
    free(text);
    expect_open_fails(index_path, "shards hold 10 samples but the index says 11");
}
END_TEST

static Suite *idx_suite(void)
{
    Suite *s = suite_create("idx");
    TCase *tc = tcase_create("import");
    tcase_add_checked_fixture(tc, setup_scratch, teardown_scratch);
    tcase_set_timeout(tc, 20);
    tcase_add_loop_test(tc, import_puts_every_record_in_place, 0, 2); /* raw, then gzipped */
    tcase_add_test(tc, one_shard_when_the_shard_size_is_large);
    tcase_add_test(tc, wrong_magic_is_refused);
    tcase_add_test(tc, unsupported_element_type_is_refused);
    tcase_add_test(tc, swapped_files_are_refused);
    tcase_add_test(tc, truncated_images_file_is_refused);
    tcase_add_test(tc, truncated_header_is_refused);
    tcase_add_test(tc, truncated_gzip_stream_is_refused);
    tcase_add_test(tc, damaged_gzip_stream_is_refused);
    tcase_add_loop_test(tc, gzip_cut_inside_its_trailer_is_refused, 1, 9);
    tcase_add_test(tc, mismatched_counts_are_refused);
    tcase_add_test(tc, trailing_bytes_are_refused);
    tcase_add_test(tc, all_zero_labels_are_refused);
    tcase_add_test(tc, missing_file_is_named);
    suite_add_tcase(s, tc);

    TCase *tc_shard = tcase_create("shards");
    tcase_add_checked_fixture(tc_shard, setup_scratch, teardown_scratch);
    tcase_set_timeout(tc_shard, 20);
    tcase_add_test(tc_shard, flipped_payload_byte_is_a_checksum_mismatch);
    tcase_add_test(tc_shard, damaged_shard_header_is_refused);
    tcase_add_test(tc_shard, truncated_shard_is_refused);
    tcase_add_test(tc_shard, missing_shard_is_named);
    tcase_add_test(tc_shard, index_that_disagrees_with_its_shards_is_refused);
    suite_add_tcase(s, tc_shard);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(idx_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
