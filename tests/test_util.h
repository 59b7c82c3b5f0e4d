/* Helpers shared by the Check suites: scratch directories, small files and
 * synthetic datasets. Every helper aborts the current test (ck_abort) on a
 * failure of its own, so a test body reads as the behaviour it checks. */
#ifndef RINGMASTER_TEST_UTIL_H
#define RINGMASTER_TEST_UTIL_H

#include <check.h>
#include <stddef.h>
#include <stdint.h>

#define RMT_PATH_CAP 4096

/* Creates a fresh directory under $TMPDIR (or /tmp) and writes its path
 * into out[RMT_PATH_CAP]. */
void rmt_make_tempdir(char *out);

/* rm -rf; a missing path is fine. */
void rmt_remove_tree(const char *path);

/* Writes len bytes to path (created or truncated). */
void rmt_write_bytes(const char *path, const void *data, size_t len);

/* Writes a NUL-terminated string to path. */
void rmt_write_text(const char *path, const char *text);

/* Reads a whole file; the caller frees. *len may be NULL. */
uint8_t *rmt_read_bytes(const char *path, size_t *len);

/* Writes the split dir/split (index + shards of at most shard_samples
 * records) directly with rm_shard_write and rm_shard_index_write. Sample i
 * has label i % classes and feature j equal to (i + 3 * j) & 0xff, so a
 * test can tell every record from every other. */
void rmt_make_split(const char *dir, const char *split, long samples, long input_dim, long classes,
                    long shard_samples);

/* A deterministic value in [-1, 1) from a counter (a SplitMix64 step of
 * seed and i): test inputs that every run and machine sees alike. */
double rmt_uniform(uint64_t seed, uint64_t i);

/* Fails the test unless haystack contains needle, printing both. */
#define rmt_assert_contains(haystack, needle)                                                                  \
    ck_assert_msg(strstr((haystack), (needle)) != NULL, "expected \"%s\" in \"%s\"", (needle), (haystack))

/* Fails the test unless s begins with prefix, printing both. */
#define rmt_assert_prefix(s, prefix)                                                                            \
    ck_assert_msg(strncmp((s), (prefix), strlen(prefix)) == 0, "expected \"%s\" to begin with \"%s\"", (s),   \
                  (prefix))

#endif
