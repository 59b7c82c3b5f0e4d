/* Token splits: text and llm.c imports land token by token where they
 * should, windows are cut per shard, inconsistent indexes and damaged
 * inputs are refused naming the file (and line, or position), a damaged
 * shard is named at its first use rather than at open, and a failed import
 * leaves nothing behind. */
#include "fsutil.h"
#include "hash.h"
#include "shard.h"
#include "test_util.h"
#include "token_import.h"

#include <check.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char scratch[RMT_PATH_CAP];
static char out_dir[RMT_PATH_CAP + 32];

static void setup_scratch(void)
{
    rmt_make_tempdir(scratch);
    snprintf(out_dir, sizeof out_dir, "%s/out", scratch);
}

static void teardown_scratch(void)
{
    rm_security_unload();
    rmt_remove_tree(scratch);
}

/* scratch/name, written with len bytes; returns the path (static slots). */
static const char *scratch_file(const char *name, const void *data, size_t len)
{
    static char slots[16][RMT_PATH_CAP + 64];
    static int next;
    char *path = slots[next++ % 16];
    snprintf(path, RMT_PATH_CAP + 64, "%s/%s", scratch, name);
    rmt_write_bytes(path, data, len);
    return path;
}

/* Every token of a split, shard after shard, read from the files
 * directly (not through rm_dataset). The caller frees. */
static uint32_t *read_stream(const char *dir, long *n)
{
    rm_shard_index idx;
    rm_error err;
    ck_assert_msg(rm_shard_index_read(dir, &idx, &err) == RM_OK, "%s", err.msg);
    ck_assert_int_eq(idx.format, RM_DATA_TOKENS);
    uint32_t *tokens = malloc((size_t)idx.tokens * sizeof *tokens + 1);
    long at = 0;
    for (int s = 0; s < idx.n_shards; s++) {
        char path[RMT_PATH_CAP + 128];
        snprintf(path, sizeof path, "%s/%s", dir, idx.shards[s].file);
        size_t len;
        uint8_t *b = rmt_read_bytes(path, &len);
        ck_assert_uint_eq(len, RM_SHARD_HEADER_BYTES + (size_t)idx.shards[s].tokens * (size_t)idx.token_bytes);
        for (long t = 0; t < idx.shards[s].tokens; t++) {
            const uint8_t *p = b + RM_SHARD_HEADER_BYTES + t * idx.token_bytes;
            tokens[at++] = idx.token_bytes == 2 ? (uint32_t)(p[0] | p[1] << 8)
                                                : (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                                                      (uint32_t)p[3] << 24;
        }
        free(b);
    }
    ck_assert_int_eq(at, idx.tokens);
    *n = at;
    rm_shard_index_free(&idx);
    return tokens;
}

/* The stream a byte-level import must produce from docs: each byte, then
 * eot (256). */
static void expect_byte_stream(const char *dir, const char *const *docs, const size_t *lens, int n_docs)
{
    long n;
    uint32_t *got = read_stream(dir, &n);
    long at = 0;
    for (int d = 0; d < n_docs; d++) {
        for (size_t i = 0; i < lens[d]; i++, at++) {
            ck_assert_int_lt(at, n);
            ck_assert_msg(got[at] == (uint8_t)docs[d][i], "%s: token %ld is %u, expected byte %u of document %d",
                          dir, at, got[at], (uint8_t)docs[d][i], d);
        }
        ck_assert_int_lt(at, n);
        ck_assert_msg(got[at] == 256, "%s: token %ld is %u, expected the end of document %d", dir, at, got[at], d);
        at++;
    }
    ck_assert_int_eq(at, n);
    free(got);
}

static rm_text_import_options text_options(double val_fraction, long shard_tokens)
{
    return (rm_text_import_options){"bytes", NULL, val_fraction, 0, shard_tokens, NULL};
}

static void split_path(char *out, const char *split)
{
    snprintf(out, RMT_PATH_CAP + 64, "%s/%s", out_dir, split);
}

START_TEST(text_round_trips_byte_for_byte)
{
    char all_bytes[256];
    for (int i = 0; i < 256; i++)
        all_bytes[i] = (char)i;
    const char *docs[3] = {all_bytes, "hello\n", "x"};
    const size_t lens[3] = {256, 6, 1};
    const char *files[3] = {scratch_file("a", docs[0], lens[0]), scratch_file("b.txt", docs[1], lens[1]),
                            scratch_file("c", docs[2], lens[2])};
    rm_text_import_options opt = text_options(0, 100);
    rm_token_split_summary train, val;
    rm_error err;
    ck_assert_msg(rm_token_import_text(files, 3, out_dir, &opt, &train, &val, &err) == RM_OK, "%s", err.msg);
    ck_assert_int_eq(train.documents, 3);
    ck_assert_int_eq(train.tokens, 266);
    ck_assert_int_eq(train.shards, 3);

    char dir[RMT_PATH_CAP + 64];
    split_path(dir, "train");
    rm_shard_index idx;
    ck_assert_msg(rm_shard_index_read(dir, &idx, &err) == RM_OK, "%s", err.msg);
    ck_assert_int_eq(idx.format, RM_DATA_TOKENS);
    ck_assert_int_eq(idx.vocab, 257);
    ck_assert_int_eq(idx.eot, 256);
    ck_assert_int_eq(idx.token_bytes, 2);
    ck_assert_str_eq(idx.tokenizer, "bytes");
    ck_assert_int_eq(idx.tokens, 266);
    ck_assert_int_eq(idx.n_shards, 3);
    ck_assert_int_eq(idx.shards[0].tokens, 100);
    ck_assert_int_eq(idx.shards[2].tokens, 66);
    ck_assert_int_eq(idx.samples, 0); /* windows need a context */
    ck_assert_int_eq(idx.input_dim + idx.classes + idx.record_bytes, 0);
    rm_shard_index_free(&idx);
    expect_byte_stream(dir, docs, lens, 3);
    split_path(dir, "val");
    ck_assert_msg(access(dir, F_OK) != 0, "a val split was written with --val-fraction 0");
}
END_TEST

/* Document k goes to val when floor((k+1) f) > floor(k f). */
static int goes_to_val(int k, double f)
{
    return floor((k + 1) * f) > floor(k * f);
}

START_TEST(val_takes_whole_documents)
{
    enum { DOCS = 10 };
    char text[DOCS][64];
    const char *docs[DOCS], *files[DOCS];
    size_t lens[DOCS];
    for (int k = 0; k < DOCS; k++) {
        lens[k] = (size_t)snprintf(text[k], sizeof text[k], "document %d says %.*s", k, k + 1, "kkkkkkkkkkkk");
        docs[k] = text[k];
        char name[16];
        snprintf(name, sizeof name, "doc%d", k);
        files[k] = scratch_file(name, docs[k], lens[k]);
    }
    rm_text_import_options opt = text_options(0.3, RM_TOKEN_SHARD_DEFAULT);
    rm_token_split_summary train, val;
    rm_error err;
    ck_assert_msg(rm_token_import_text(files, DOCS, out_dir, &opt, &train, &val, &err) == RM_OK, "%s", err.msg);
    const char *train_docs[DOCS], *val_docs[DOCS];
    size_t train_lens[DOCS], val_lens[DOCS];
    int n_train = 0, n_val = 0;
    for (int k = 0; k < DOCS; k++) {
        if (goes_to_val(k, 0.3)) {
            val_docs[n_val] = docs[k];
            val_lens[n_val++] = lens[k];
        } else {
            train_docs[n_train] = docs[k];
            train_lens[n_train++] = lens[k];
        }
    }
    ck_assert_int_eq(n_val, 3); /* floor(10 x 0.3), spread out: documents 3, 6 and 9 */
    ck_assert_int_eq(val.documents, n_val);
    ck_assert_int_eq(train.documents, n_train);
    char dir[RMT_PATH_CAP + 64];
    split_path(dir, "train");
    expect_byte_stream(dir, train_docs, train_lens, n_train);
    split_path(dir, "val");
    expect_byte_stream(dir, val_docs, val_lens, n_val);
}
END_TEST

START_TEST(blank_lines_split_documents)
{
    const char *a = "first para\nline two\n\n \t\nsecond\n\n\n";
    const char *b = "\nthird\r\n  \r\nfourth";
    const char *files[2] = {scratch_file("a", a, strlen(a)), scratch_file("b", b, strlen(b))};
    rm_text_import_options opt = text_options(0, RM_TOKEN_SHARD_DEFAULT);
    opt.split_on_blank_lines = 1;
    rm_token_split_summary train;
    rm_error err;
    ck_assert_msg(rm_token_import_text(files, 2, out_dir, &opt, &train, NULL, &err) == RM_OK, "%s", err.msg);
    ck_assert_int_eq(train.documents, 4);
    const char *docs[4] = {"first para\nline two", "second", "third", "fourth"};
    size_t lens[4];
    for (int d = 0; d < 4; d++)
        lens[d] = strlen(docs[d]);
    char dir[RMT_PATH_CAP + 64];
    split_path(dir, "train");
    expect_byte_stream(dir, docs, lens, 4);

    /* a file of blank lines holds no document: named */
    rmt_remove_tree(out_dir);
    const char *blank = scratch_file("blank", " \n\n\t\n", 5);
    ck_assert_int_eq(rm_token_import_text(&blank, 1, out_dir, &opt, NULL, NULL, &err), RM_ERR);
    rmt_assert_contains(err.msg, blank);
    rmt_assert_contains(err.msg, "only blank lines");
}
END_TEST

/* A token split written directly: shard s holds counts[s] tokens; the
 * token at global position p is token_of(p, vocab). */
static uint32_t token_of(long p, long vocab)
{
    return (uint32_t)((p * 263) % vocab);
}

static void make_token_split(const char *dir, const long *counts, int n, long vocab)
{
    rm_error err;
    ck_assert_msg(rm_mkdirs(dir, 0755, &err) == RM_OK, "%s", err.msg);
    int token_bytes = vocab <= 65536 ? 2 : 4;
    rm_shard_index idx = {.format = RM_DATA_TOKENS, .vocab = vocab, .eot = vocab - 1, .token_bytes = token_bytes,
                          .n_shards = n, .shards = calloc((size_t)n, sizeof(rm_shard_info))};
    snprintf(idx.tokenizer, sizeof idx.tokenizer, "test");
    long p = 0;
    for (int s = 0; s < n; s++) {
        uint8_t *payload = malloc((size_t)counts[s] * (size_t)token_bytes);
        for (long t = 0; t < counts[s]; t++, p++)
            for (int b = 0; b < token_bytes; b++)
                payload[t * token_bytes + b] = (uint8_t)(token_of(p, vocab) >> (8 * b));
        snprintf(idx.shards[s].file, sizeof idx.shards[s].file, "shard-%05d.rms", s);
        idx.shards[s].tokens = counts[s];
        char path[RMT_PATH_CAP + 128];
        snprintf(path, sizeof path, "%s/%s", dir, idx.shards[s].file);
        ck_assert_msg(rm_shard_write(path, payload, counts[s], token_bytes, &idx.shards[s].checksum, &err) == RM_OK,
                      "%s", err.msg);
        free(payload);
        idx.tokens += counts[s];
    }
    ck_assert_msg(rm_shard_index_write(dir, &idx, &err) == RM_OK, "%s", err.msg);
    rm_shard_index_free(&idx);
}

static const long window_counts[] = {10, 25, 3, 17, 1};
#define N_WINDOW_SHARDS 5

/* Every window of the split for every context that leaves one: sample j of
 * shard s is its tokens [j T, j T + T + 1), numbered shard by shard. */
static void check_windows(long vocab)
{
    char dir[RMT_PATH_CAP + 32];
    snprintf(dir, sizeof dir, "%s/tokens", scratch);
    make_token_split(dir, window_counts, N_WINDOW_SHARDS, vocab);
    int token_bytes = vocab <= 65536 ? 2 : 4;
    for (long T = 1; T <= 24; T++) {
        rm_dataset ds;
        rm_error err;
        ck_assert_msg(rm_dataset_open_context(dir, RM_DATASET_DEFAULT_DECRYPT_BYTES, T, &ds, &err) == RM_OK,
                      "context %ld: %s", T, err.msg);
        ck_assert_int_eq(ds.index.context, T);
        ck_assert_int_eq(rm_dataset_sample_bytes(&ds), (T + 1) * token_bytes);
        long i = 0, shard_start = 0;
        for (int s = 0; s < N_WINDOW_SHARDS; s++) {
            long n = window_counts[s] >= T + 1 ? (window_counts[s] - 1) / T : 0;
            ck_assert_msg(ds.index.shards[s].samples == n, "context %ld: shard %d has %ld samples, expected %ld", T,
                          s, ds.index.shards[s].samples, n);
            for (long j = 0; j < n; j++, i++) {
                ck_assert_int_eq(rm_dataset_shard_of(&ds, i), s);
                const uint8_t *w = rm_dataset_record(&ds, i);
                ck_assert_msg(w != NULL, "%s", rm_dataset_error(&ds));
                for (long t = 0; t <= T; t++) {
                    uint32_t got = 0;
                    for (int b = 0; b < token_bytes; b++)
                        got |= (uint32_t)w[t * token_bytes + b] << (8 * b);
                    uint32_t want = token_of(shard_start + j * T + t, vocab);
                    ck_assert_msg(got == want, "context %ld, shard %d, window %ld, token %ld: %u, expected %u", T, s,
                                  j, t, got, want);
                }
            }
            shard_start += window_counts[s];
        }
        ck_assert_int_eq(ds.index.samples, i);
        rm_dataset_close(&ds);
    }
}

START_TEST(windows_are_cut_per_shard)
{
    check_windows(257);
}
END_TEST

START_TEST(wide_tokens_are_cut_the_same)
{
    check_windows(70000); /* over 65536: four bytes a token */
}
END_TEST

START_TEST(context_errors_name_the_split)
{
    char dir[RMT_PATH_CAP + 32];
    snprintf(dir, sizeof dir, "%s/tokens", scratch);
    make_token_split(dir, window_counts, N_WINDOW_SHARDS, 257);
    rm_shard_index idx;
    rm_error err;
    ck_assert_msg(rm_shard_index_read(dir, &idx, &err) == RM_OK, "%s", err.msg);
    ck_assert_int_eq(rm_shard_index_set_context(&idx, dir, 0, &err), RM_ERR);
    rmt_assert_contains(err.msg, dir);
    rmt_assert_contains(err.msg, "context 0");
    ck_assert_int_eq(rm_shard_index_set_context(&idx, dir, -3, &err), RM_ERR);
    rmt_assert_contains(err.msg, "context -3");
    ck_assert_int_eq(rm_shard_index_set_context(&idx, dir, 25, &err), RM_ERR);
    rmt_assert_contains(err.msg, dir);
    rmt_assert_contains(err.msg, "shard-00001.rms, holds 25 tokens: fewer than one window of context+1 = 26");
    /* the longest shard holds exactly one window of 24 + 1 */
    ck_assert_msg(rm_shard_index_set_context(&idx, dir, 24, &err) == RM_OK, "%s", err.msg);
    ck_assert_int_eq(idx.samples, 1);
    ck_assert_int_eq(idx.shards[1].samples, 1);
    ck_assert_int_eq(idx.context, 24);
    rm_shard_index_free(&idx);

    rm_dataset ds;
    ck_assert_int_eq(rm_dataset_open_budget(dir, RM_DATASET_DEFAULT_DECRYPT_BYTES, &ds, &err), RM_ERR);
    rmt_assert_contains(err.msg, dir);
    rmt_assert_contains(err.msg, "context");
    ck_assert_int_eq(rm_dataset_open_context(dir, RM_DATASET_DEFAULT_DECRYPT_BYTES, 30, &ds, &err), RM_ERR);
    rmt_assert_contains(err.msg, "fewer than one window of context+1 = 31");

    /* a record split ignores the context */
    rmt_make_split(scratch, "records", 10, 3, 2, 4);
    snprintf(dir, sizeof dir, "%s/records", scratch);
    ck_assert_msg(rm_shard_index_read(dir, &idx, &err) == RM_OK, "%s", err.msg);
    ck_assert_int_eq(rm_shard_index_set_context(&idx, dir, 0, &err), RM_OK);
    ck_assert_int_eq(idx.samples, 10);
    ck_assert_int_eq(idx.format, RM_DATA_RECORDS);
    rm_shard_index_free(&idx);
    ck_assert_msg(rm_dataset_open_context(dir, RM_DATASET_DEFAULT_DECRYPT_BYTES, 7, &ds, &err) == RM_OK, "%s",
                  err.msg);
    ck_assert_int_eq(rm_dataset_sample_bytes(&ds), 4);
    ck_assert_int_eq(ds.index.samples, 10);
    rm_dataset_close(&ds);
}
END_TEST

/* The index make_token_split writes for window_counts, one edit at a time:
 * each inconsistency refused citing its line. Lines: 1 version, 2 format,
 * 3 tokenizer, 4 vocab, 5 eot, 6 token_bytes, 7 tokens, 8- shards. */
static const struct {
    const char *find, *replace, *expected;
} index_edits[] = {
    {"eot 256", "eot 257", "index.rmi:5: eot 257 is not a token of the vocabulary of 257"},
    {"token_bytes 2", "token_bytes 4", "index.rmi:6: token_bytes 4 does not fit vocab 257"},
    {"token_bytes 2", "token_bytes 3", "index.rmi:6: token_bytes must be 2 or 4, got 3"},
    {"tokens 56", "tokens 57", "index.rmi:7: shards hold 56 tokens but the index says 57"},
    {"ringmaster-shard-index 2", "ringmaster-shard-index 1",
     "index.rmi:2: format tokens needs the header 'ringmaster-shard-index 2'"},
    {"vocab 257", "vocab 257\ninput_dim 4", "index.rmi:5: 'input_dim' belongs in a records split"},
    {"vocab 257", "vocab 257\nvocab 300", "index.rmi:5: 'vocab' given twice (first on line 4)"},
    {"vocab 257", "vocab 1", "index.rmi:4: vocab 1 is out of range"},
    {"tokenizer test\n", "", "a token split needs a 'tokenizer' line"},
    {"format tokens\n", "", "a version 2 index needs a 'format tokens' line"},
    /* blank lines are counted */
    {"format tokens\ntokenizer test\nvocab 257\neot 256", "\n\nformat tokens\ntokenizer test\nvocab 257\neot 999",
     "index.rmi:7: eot 999 is not a token"},
    {"shard-00001.rms 25", "shard-00001.rms 0", "index.rmi:9: shard shard-00001.rms has a bad token count 0"},
};

START_TEST(inconsistent_indexes_are_refused_citing_the_line)
{
    char dir[RMT_PATH_CAP + 32], path[RMT_PATH_CAP + 64];
    snprintf(dir, sizeof dir, "%s/tokens", scratch);
    make_token_split(dir, window_counts, N_WINDOW_SHARDS, 257);
    snprintf(path, sizeof path, "%s/%s", dir, RM_SHARD_INDEX_NAME);
    size_t len;
    char *good = (char *)rmt_read_bytes(path, &len);
    good = realloc(good, len + 1);
    good[len] = '\0';
    for (size_t e = 0; e < sizeof index_edits / sizeof index_edits[0]; e++) {
        char text[4096];
        char *at = strstr(good, index_edits[e].find);
        ck_assert_msg(at != NULL, "'%s' is not in the index:\n%s", index_edits[e].find, good);
        snprintf(text, sizeof text, "%.*s%s%s", (int)(at - good), good, index_edits[e].replace,
                 at + strlen(index_edits[e].find));
        rmt_write_text(path, text);
        rm_shard_index idx;
        rm_error err;
        ck_assert_msg(rm_shard_index_read(dir, &idx, &err) == RM_ERR, "edit %zu was accepted:\n%s", e, text);
        rmt_assert_contains(err.msg, index_edits[e].expected);
        rmt_assert_contains(err.msg, dir);
    }
    /* a record split refuses a token field the same way */
    rmt_make_split(scratch, "records", 10, 3, 2, 4);
    snprintf(path, sizeof path, "%s/records/%s", scratch, RM_SHARD_INDEX_NAME);
    char *rec = (char *)rmt_read_bytes(path, &len);
    rec = realloc(rec, len + 16);
    memcpy(rec + len, "vocab 300\n", 11);
    rmt_write_text(path, rec);
    snprintf(dir, sizeof dir, "%s/records", scratch);
    rm_shard_index idx;
    rm_error err;
    ck_assert_int_eq(rm_shard_index_read(dir, &idx, &err), RM_ERR);
    rmt_assert_contains(err.msg, "'vocab' belongs in a tokens split, and this index is a records split");
    free(rec);
    free(good);
}
END_TEST

/* An llm.c token file: 256 int32 header (magic, version, count), then u16
 * tokens. */
static const char *write_llmc(const char *name, uint32_t magic, uint32_t version, const uint16_t *tokens, long n,
                              long declared)
{
    size_t len = 1024 + 2 * (size_t)n;
    uint8_t *b = calloc(1, len);
    uint32_t head[3] = {magic, version, (uint32_t)declared};
    for (int i = 0; i < 3; i++)
        for (int k = 0; k < 4; k++)
            b[4 * i + k] = (uint8_t)(head[i] >> (8 * k));
    for (long t = 0; t < n; t++) {
        b[1024 + 2 * t] = (uint8_t)tokens[t];
        b[1024 + 2 * t + 1] = (uint8_t)(tokens[t] >> 8);
    }
    const char *path = scratch_file(name, b, len);
    free(b);
    return path;
}

/* No output and no temporary sibling left in scratch. */
static void expect_nothing_left(void)
{
    ck_assert_msg(access(out_dir, F_OK) != 0, "%s exists after a failed import", out_dir);
    DIR *d = opendir(scratch);
    struct dirent *e;
    while ((e = readdir(d)))
        ck_assert_msg(!strstr(e->d_name, ".tmp-"), "%s/%s is left after a failed import", scratch, e->d_name);
    closedir(d);
}

START_TEST(llmc_files_import_token_for_token)
{
    uint16_t a[7] = {50256, 10, 20, 50255, 50256, 0, 1}, b[4] = {50256, 5, 6, 7};
    const char *files[2] = {write_llmc("a.bin", RM_LLMC_MAGIC, 1, a, 7, 7),
                            write_llmc("b.bin", RM_LLMC_MAGIC, 1, b, 4, 4)};
    rm_llmc_import_options opt = {NULL, 0, -1, 5, NULL};
    rm_token_split_summary sum;
    rm_error err;
    ck_assert_msg(rm_token_import_llmc(files, 2, out_dir, &opt, &sum, &err) == RM_OK, "%s", err.msg);
    ck_assert_int_eq(sum.tokens, 11);
    ck_assert_int_eq(sum.documents, 3); /* end-of-text tokens */
    ck_assert_int_eq(sum.shards, 3);    /* 5 + 2 from a.bin, then b.bin starts its own */
    rm_shard_index idx;
    ck_assert_msg(rm_shard_index_read(out_dir, &idx, &err) == RM_OK, "%s", err.msg);
    ck_assert_int_eq(idx.vocab, 50257);
    ck_assert_int_eq(idx.eot, 50256);
    ck_assert_str_eq(idx.tokenizer, "gpt2");
    ck_assert_int_eq(idx.token_bytes, 2);
    ck_assert_int_eq(idx.shards[0].tokens, 5);
    ck_assert_int_eq(idx.shards[1].tokens, 2);
    ck_assert_int_eq(idx.shards[2].tokens, 4);
    rm_shard_index_free(&idx);
    long n;
    uint32_t *got = read_stream(out_dir, &n);
    ck_assert_int_eq(n, 11);
    for (int t = 0; t < 11; t++)
        ck_assert_uint_eq(got[t], t < 7 ? a[t] : b[t - 7]);
    free(got);

    /* another tokenizer, named with its vocabulary */
    rmt_remove_tree(out_dir);
    opt = (rm_llmc_import_options){"mine", 60000, 20, RM_TOKEN_SHARD_DEFAULT, NULL};
    ck_assert_msg(rm_token_import_llmc(files, 1, out_dir, &opt, &sum, &err) == RM_OK, "%s", err.msg);
    ck_assert_int_eq(sum.documents, 1);
    ck_assert_msg(rm_shard_index_read(out_dir, &idx, &err) == RM_OK, "%s", err.msg);
    ck_assert_str_eq(idx.tokenizer, "mine");
    ck_assert_int_eq(idx.vocab, 60000);
    rm_shard_index_free(&idx);
}
END_TEST

static void expect_llmc_refused(const char *file, const rm_llmc_import_options *opt, const char *expected)
{
    rm_error err;
    ck_assert_msg(rm_token_import_llmc(&file, 1, out_dir, opt, NULL, &err) == RM_ERR, "%s was imported", file);
    if (file[0])
        rmt_assert_contains(err.msg, file);
    rmt_assert_contains(err.msg, expected);
    expect_nothing_left();
}

START_TEST(bad_llmc_files_are_refused_by_name)
{
    uint16_t t[6] = {50256, 1, 2, 3, 50257, 4};
    rm_llmc_import_options opt = {NULL, 0, -1, RM_TOKEN_SHARD_DEFAULT, NULL};
    expect_llmc_refused(write_llmc("magic.bin", 20240521, 1, t, 4, 4), &opt,
                        "not an llm.c token file (magic 20240521, expected 20240520)");
    expect_llmc_refused(write_llmc("version.bin", RM_LLMC_MAGIC, 2, t, 4, 4), &opt,
                        "llm.c token file version 2 is not supported");
    expect_llmc_refused(write_llmc("short.bin", RM_LLMC_MAGIC, 1, t, 3, 4), &opt,
                        "1030 bytes, but its header says 4 tokens, which make 1032 bytes");
    expect_llmc_refused(write_llmc("long.bin", RM_LLMC_MAGIC, 1, t, 4, 3), &opt,
                        "1032 bytes, but its header says 3 tokens, which make 1030 bytes");
    expect_llmc_refused(write_llmc("vocab.bin", RM_LLMC_MAGIC, 1, t, 6, 6), &opt,
                        "token 50257 at position 4 is not below the vocabulary of 50257");
    expect_llmc_refused(scratch_file("tiny.bin", "abc", 3), &opt, "too short for an llm.c token file");
    rm_llmc_import_options small = {NULL, 3, 0, RM_TOKEN_SHARD_DEFAULT, NULL};
    expect_llmc_refused(write_llmc("small.bin", RM_LLMC_MAGIC, 1, t + 1, 3, 3), &small,
                        "token 3 at position 2 is not below the vocabulary of 3");
    rm_llmc_import_options unknown = {"llama3", 0, -1, RM_TOKEN_SHARD_DEFAULT, NULL};
    expect_llmc_refused("", &unknown, "unknown tokenizer 'llama3'");
    /* a bad file after a good one: nothing of the good one is left either */
    const char *files[2] = {write_llmc("good.bin", RM_LLMC_MAGIC, 1, t, 4, 4),
                            write_llmc("bad.bin", RM_LLMC_MAGIC, 1, t, 6, 6)};
    rm_error err;
    ck_assert_int_eq(rm_token_import_llmc(files, 2, out_dir, &opt, NULL, &err), RM_ERR);
    rmt_assert_contains(err.msg, files[1]);
    expect_nothing_left();
}
END_TEST

/* Imports 3 documents of 40 bytes in shards of 50 tokens: 123 tokens, 3
 * shards; returns the path of shard s. */
static void import_three_shards(int s, char *shard, size_t cap)
{
    char text[41];
    const char *files[3];
    for (int d = 0; d < 3; d++) {
        memset(text, 'a' + d, 40);
        char name[8];
        snprintf(name, sizeof name, "d%d", d);
        files[d] = scratch_file(name, text, 40);
    }
    rm_text_import_options opt = text_options(0, 50);
    rm_error err;
    ck_assert_msg(rm_token_import_text(files, 3, out_dir, &opt, NULL, NULL, &err) == RM_OK, "%s", err.msg);
    snprintf(shard, cap, "%s/train/shard-%05d.rms", out_dir, s);
}

START_TEST(damaged_shard_is_named_at_first_use_not_at_open)
{
    char shard[RMT_PATH_CAP + 64], dir[RMT_PATH_CAP + 64];
    import_three_shards(1, shard, sizeof shard);
    size_t len;
    uint8_t *b = rmt_read_bytes(shard, &len);
    b[len - 1] ^= 0x01;
    rmt_write_bytes(shard, b, len);
    char found[17];
    rm_hash_hex(rm_hash64(b + RM_SHARD_HEADER_BYTES, len - RM_SHARD_HEADER_BYTES), found);
    free(b);

    split_path(dir, "train");
    rm_dataset ds;
    rm_error err;
    ck_assert_msg(rm_dataset_open_context(dir, RM_DATASET_DEFAULT_DECRYPT_BYTES, 7, &ds, &err) == RM_OK,
                  "open verified checksums: %s", err.msg);
    ck_assert_int_eq(ds.index.shards[0].samples, 7); /* (50 - 1) / 7 */
    ck_assert_int_eq(ds.verified[0] + ds.verified[1] + ds.verified[2], 0);
    ck_assert_ptr_nonnull(rm_dataset_record(&ds, 0));
    ck_assert_int_eq(ds.verified[0], 1);
    ck_assert_ptr_nonnull(rm_dataset_record(&ds, 14)); /* shard 2 */
    ck_assert_ptr_null(rm_dataset_record(&ds, 7));     /* shard 1's first window */
    const char *why = rm_dataset_error(&ds);
    rmt_assert_contains(why, shard);
    rmt_assert_contains(why, "checksum mismatch");
    char expected[17];
    rm_hash_hex(ds.index.shards[1].checksum, expected);
    rmt_assert_contains(why, expected);
    rmt_assert_contains(why, found);
    rm_dataset_close(&ds);
}
END_TEST

START_TEST(truncated_shard_is_refused_at_open)
{
    char shard[RMT_PATH_CAP + 64], dir[RMT_PATH_CAP + 64];
    import_three_shards(2, shard, sizeof shard);
    struct stat st;
    ck_assert_int_eq(stat(shard, &st), 0);
    ck_assert_int_eq(truncate(shard, st.st_size - 2), 0);
    split_path(dir, "train");
    rm_dataset ds;
    rm_error err;
    ck_assert_int_eq(rm_dataset_open_context(dir, RM_DATASET_DEFAULT_DECRYPT_BYTES, 7, &ds, &err), RM_ERR);
    rmt_assert_contains(err.msg, shard);
    char what[128];
    snprintf(what, sizeof what, "shard is %d bytes, expected %d (truncated or wrong file)",
             RM_SHARD_HEADER_BYTES + 2 * 23 - 2, RM_SHARD_HEADER_BYTES + 2 * 23);
    rmt_assert_contains(err.msg, what);
}
END_TEST

static void expect_text_refused(const char *const *files, int n, const rm_text_import_options *opt,
                                const char *named, const char *expected)
{
    rm_error err;
    ck_assert_msg(rm_token_import_text(files, n, out_dir, opt, NULL, NULL, &err) == RM_ERR, "imported");
    rmt_assert_contains(err.msg, named);
    rmt_assert_contains(err.msg, expected);
    expect_nothing_left();
}

START_TEST(failed_text_import_leaves_nothing)
{
    const char *good = scratch_file("good", "some text", 9);
    char missing[RMT_PATH_CAP + 32];
    snprintf(missing, sizeof missing, "%s/missing", scratch);
    const char *two[2] = {good, missing};
    rm_text_import_options opt = text_options(0.1, RM_TOKEN_SHARD_DEFAULT);
    expect_text_refused(two, 2, &opt, missing, "cannot open");
    two[1] = scratch_file("empty", "", 0);
    expect_text_refused(two, 2, &opt, two[1], "is empty");
    expect_text_refused(&good, 1, &opt, "--val-fraction 0.1", "selects none of the 1 documents");
    opt.val_fraction = 1;
    expect_text_refused(&good, 1, &opt, "--val-fraction 1", "below 1");
    opt.val_fraction = 0;
    opt.tokenizer = "gpt2";
    opt.vocab_dir = scratch; /* no encoder.json there: named, with the script that fetches it */
    expect_text_refused(&good, 1, &opt, "encoder.json", "fetch-gpt2-vocab.sh");
    opt.vocab_dir = NULL;
    opt.tokenizer = "nope";
    expect_text_refused(&good, 1, &opt, "'nope'", "unknown tokenizer");
    opt.tokenizer = "bytes";
    opt.shard_tokens = 1;
    expect_text_refused(&good, 1, &opt, "--shard-tokens 1", "between 2 and");
    opt.shard_tokens = RM_TOKEN_SHARD_DEFAULT;

    /* missing parents are made, and removed again when the import fails */
    snprintf(out_dir, sizeof out_dir, "%s/a/b/out", scratch);
    expect_text_refused(two, 2, &opt, two[1], "is empty");
    char top[RMT_PATH_CAP + 32];
    snprintf(top, sizeof top, "%s/a", scratch);
    ck_assert_msg(access(top, F_OK) != 0, "%s was left behind", top);
    rm_error err;
    ck_assert_msg(rm_token_import_text(&good, 1, out_dir, &opt, NULL, NULL, &err) == RM_OK, "%s", err.msg);

    /* an output that holds something is left alone */
    snprintf(out_dir, sizeof out_dir, "%s/a", scratch);
    ck_assert_int_eq(rm_token_import_text(&good, 1, out_dir, &opt, NULL, NULL, &err), RM_ERR);
    rmt_assert_contains(err.msg, "exists and is not empty");
    snprintf(top, sizeof top, "%s/a/b/out/train/index.rmi", scratch);
    ck_assert_int_eq(access(top, F_OK), 0);
    /* an empty one is filled */
    snprintf(out_dir, sizeof out_dir, "%s/empty-dir", scratch);
    ck_assert_int_eq(mkdir(out_dir, 0755), 0);
    ck_assert_msg(rm_token_import_text(&good, 1, out_dir, &opt, NULL, NULL, &err) == RM_OK, "%s", err.msg);
}
END_TEST

START_TEST(encrypted_token_split_reads_back)
{
    char key_path[RMT_PATH_CAP + 32], dir[RMT_PATH_CAP + 64];
    snprintf(key_path, sizeof key_path, "%s/key", scratch);
    rm_error err;
    ck_assert_msg(rm_key_generate(key_path, &err) == RM_OK, "%s", err.msg);
    ck_assert_msg(rm_security_load(key_path, &err) == RM_OK, "%s", err.msg);
    char text[300];
    for (int i = 0; i < 300; i++)
        text[i] = (char)(i * 7);
    const char *file = scratch_file("doc", text, sizeof text);
    rm_text_import_options opt = text_options(0, 64);
    opt.key = rm_security_key();
    ck_assert_msg(rm_token_import_text(&file, 1, out_dir, &opt, NULL, NULL, &err) == RM_OK, "%s", err.msg);
    split_path(dir, "train");
    rm_dataset ds;
    /* a budget of one shard: the others are decrypted again when reached */
    ck_assert_msg(rm_dataset_open_context(dir, 128, 9, &ds, &err) == RM_OK, "%s", err.msg);
    ck_assert_int_eq(ds.index.encrypted, 1);
    long start = 0;
    for (int s = 0; s < ds.index.n_shards; s++) {
        for (long j = 0; j < ds.index.shards[s].samples; j++) {
            const uint8_t *w = rm_dataset_record(&ds, ds.first_sample[s] + j);
            ck_assert_msg(w != NULL, "%s", rm_dataset_error(&ds));
            for (long t = 0; t <= 9; t++) {
                long p = start + j * 9 + t;
                uint32_t want = p < 300 ? (uint8_t)text[p] : 256;
                ck_assert_uint_eq((uint32_t)(w[2 * t] | w[2 * t + 1] << 8), want);
            }
        }
        start += ds.index.shards[s].tokens;
    }
    ck_assert_int_eq(start, 301);
    rm_dataset_close(&ds);
    /* the tokens are nowhere on disk as they are */
    uint8_t plain[32];
    for (int t = 0; t < 16; t++) {
        plain[2 * t] = (uint8_t)text[t];
        plain[2 * t + 1] = 0;
    }
    char shard[RMT_PATH_CAP + 96];
    snprintf(shard, sizeof shard, "%s/shard-00000.rms", dir);
    size_t len;
    uint8_t *b = rmt_read_bytes(shard, &len);
    ck_assert_ptr_null(memmem(b, len, plain, sizeof plain));
    free(b);
}
END_TEST

static Suite *tokens_suite(void)
{
    Suite *s = suite_create("tokens");
    TCase *tc = tcase_create("import");
    tcase_add_checked_fixture(tc, setup_scratch, teardown_scratch);
    tcase_set_timeout(tc, 20);
    tcase_add_test(tc, text_round_trips_byte_for_byte);
    tcase_add_test(tc, val_takes_whole_documents);
    tcase_add_test(tc, blank_lines_split_documents);
    tcase_add_test(tc, llmc_files_import_token_for_token);
    tcase_add_test(tc, bad_llmc_files_are_refused_by_name);
    tcase_add_test(tc, failed_text_import_leaves_nothing);
    tcase_add_test(tc, encrypted_token_split_reads_back);
    suite_add_tcase(s, tc);

    TCase *tc_split = tcase_create("split");
    tcase_add_checked_fixture(tc_split, setup_scratch, teardown_scratch);
    tcase_set_timeout(tc_split, 20);
    tcase_add_test(tc_split, windows_are_cut_per_shard);
    tcase_add_test(tc_split, wide_tokens_are_cut_the_same);
    tcase_add_test(tc_split, context_errors_name_the_split);
    tcase_add_test(tc_split, inconsistent_indexes_are_refused_citing_the_line);
    tcase_add_test(tc_split, damaged_shard_is_named_at_first_use_not_at_open);
    tcase_add_test(tc_split, truncated_shard_is_refused_at_open);
    suite_add_tcase(s, tc_split);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(tokens_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
