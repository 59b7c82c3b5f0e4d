/* The sample order: each epoch is a permutation, a pure function of its
 * inputs, shuffled within windows of shards; and the global sample sequence
 * that workers read through rm_sampler does not depend on how many workers
 * read it. */
#include "order.h"
#include "test_util.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct layout {
    const char *name;
    int n_shards;
    long sizes[8];
} layout;

static const layout layouts[] = {
    {"one shard", 1, {100}},
    {"equal shards", 3, {10, 10, 10}},
    {"ragged shards", 5, {7, 1, 13, 5, 20}},
    {"single-sample shards", 4, {1, 1, 1, 1}},
    {"many shards", 8, {9, 3, 17, 2, 11, 6, 1, 14}},
};
#define N_LAYOUTS ((int)(sizeof layouts / sizeof layouts[0]))

static const long windows[] = {0, 1, 2, 3, 100};
#define N_WINDOWS ((int)(sizeof windows / sizeof windows[0]))

static long total_of(const layout *l)
{
    long total = 0;
    for (int s = 0; s < l->n_shards; s++)
        total += l->sizes[s];
    return total;
}

/* The shard that sample i belongs to. */
static int shard_of(const layout *l, long i)
{
    for (int s = 0; s < l->n_shards; s++) {
        if (i < l->sizes[s])
            return s;
        i -= l->sizes[s];
    }
    return -1;
}

static uint32_t *epoch_order(const layout *l, uint64_t seed, long epoch, long window)
{
    uint32_t *perm = malloc((size_t)total_of(l) * sizeof *perm);
    ck_assert_ptr_nonnull(perm);
    rm_error err;
    ck_assert_msg(rm_order_epoch(l->sizes, l->n_shards, seed, epoch, window, perm, &err) == RM_OK, "%s", err.msg);
    return perm;
}

static void assert_permutation(const uint32_t *perm, long n, const char *what)
{
    int *seen = calloc((size_t)n, sizeof *seen);
    ck_assert_ptr_nonnull(seen);
    for (long p = 0; p < n; p++) {
        ck_assert_msg(perm[p] < (uint32_t)n, "%s: position %ld holds %u, outside [0, %ld)", what, p, perm[p], n);
        ck_assert_msg(!seen[perm[p]], "%s: sample %u appears twice", what, perm[p]);
        seen[perm[p]] = 1;
    }
    free(seen);
}

/* _i runs over layouts x windows. */
START_TEST(epoch_is_a_permutation)
{
    const layout *l = &layouts[_i / N_WINDOWS];
    long window = windows[_i % N_WINDOWS];
    long n = total_of(l);
    for (long epoch = 0; epoch < 4; epoch++) {
        uint32_t *perm = epoch_order(l, 42, epoch, window);
        char what[128];
        snprintf(what, sizeof what, "%s, window %ld, epoch %ld", l->name, window, epoch);
        assert_permutation(perm, n, what);
        free(perm);
    }
}
END_TEST

/* With a window of w shards, the order is a sequence of blocks, each
 * holding every sample of w whole shards (the last block may hold fewer):
 * shuffling never mixes samples of different windows. */
START_TEST(windows_keep_shards_together)
{
    const layout *l = &layouts[_i / N_WINDOWS];
    long window = windows[_i % N_WINDOWS];
    long w = window <= 0 || window > l->n_shards ? l->n_shards : window;
    long n = total_of(l);
    uint32_t *perm = epoch_order(l, 7, 3, window);
    long pos = 0;
    int *used = calloc((size_t)l->n_shards, sizeof *used);
    ck_assert_ptr_nonnull(used);
    while (pos < n) {
        /* the shards in this block are the first w not yet used that its
         * samples name; the block is exactly as long as those shards */
        int in_block[8] = {0};
        long block_len = 0, shards_in_block = 0;
        for (long p = pos; shards_in_block < w && p < n; p++) {
            int s = shard_of(l, perm[p]);
            ck_assert_msg(!used[s], "%s, window %ld: shard %d's samples are split across windows", l->name,
                          window, s);
            if (!in_block[s]) {
                in_block[s] = 1;
                shards_in_block++;
                block_len += l->sizes[s];
            }
        }
        for (long p = pos; p < pos + block_len; p++)
            ck_assert_msg(in_block[shard_of(l, perm[p])], "%s, window %ld: position %ld strays out of its window",
                          l->name, window, p);
        for (int s = 0; s < l->n_shards; s++)
            used[s] |= in_block[s];
        pos += block_len;
    }
    free(used);
    free(perm);
}
END_TEST

START_TEST(order_is_a_pure_function)
{
    const layout *l = &layouts[4];
    long n = total_of(l);
    uint32_t *a = epoch_order(l, 1234, 5, 2);
    uint32_t *b = epoch_order(l, 1234, 5, 2);
    ck_assert_mem_eq(a, b, (size_t)n * sizeof *a);
    /* another epoch, another seed or another window: another order */
    uint32_t *next_epoch = epoch_order(l, 1234, 6, 2);
    uint32_t *other_seed = epoch_order(l, 1235, 5, 2);
    uint32_t *other_window = epoch_order(l, 1234, 5, 0);
    ck_assert_msg(memcmp(a, next_epoch, (size_t)n * sizeof *a) != 0, "epochs 5 and 6 have the same order");
    ck_assert_msg(memcmp(a, other_seed, (size_t)n * sizeof *a) != 0, "seeds 1234 and 1235 give the same order");
    ck_assert_msg(memcmp(a, other_window, (size_t)n * sizeof *a) != 0, "windows 2 and 0 give the same order");
    /* and it is shuffled at all */
    long in_place = 0;
    for (long i = 0; i < n; i++)
        in_place += a[i] == (uint32_t)i;
    ck_assert_msg(in_place < n / 4, "%ld of %ld samples stay in place", in_place, n);
    free(a);
    free(b);
    free(next_epoch);
    free(other_seed);
    free(other_window);
}
END_TEST

START_TEST(sampler_fill_reads_the_epoch_stream)
{
    /* positions anywhere, in any order, read epoch e's order at p - e*n */
    const layout *l = &layouts[2];
    long n = total_of(l);
    rm_sampler s;
    rm_error err;
    ck_assert_msg(rm_sampler_init(&s, l->sizes, l->n_shards, 99, 2, &err) == RM_OK, "%s", err.msg);
    static const long positions[] = {3 * 46 + 5, 0, 46 - 3, 2 * 46 + 40, 1, 46 * 7 - 10};
    for (size_t k = 0; k < sizeof positions / sizeof positions[0]; k++) {
        long pos = positions[k], count = 13;
        uint32_t got[13];
        ck_assert_msg(rm_sampler_fill(&s, pos, count, got, &err) == RM_OK, "%s", err.msg);
        for (long i = 0; i < count; i++) {
            long p = pos + i;
            uint32_t *perm = epoch_order(l, 99, p / n, 2);
            ck_assert_msg(got[i] == perm[p % n], "position %ld: %u, want %u", p, got[i], perm[p % n]);
            free(perm);
        }
    }
    rm_sampler_free(&s);
}
END_TEST

/* The global sequence read by N workers, step by step: worker r's slice of
 * step t starts at rm_order_slice_start(t, B, r, N) and holds B/N samples.
 * Each worker has its own sampler, as it would in a separate process. */
static uint32_t *global_sequence(const layout *l, long global_batch, long workers, long steps, uint64_t seed,
                                 long window)
{
    uint32_t *seq = malloc((size_t)(steps * global_batch) * sizeof *seq);
    ck_assert_ptr_nonnull(seq);
    rm_sampler *samplers = calloc((size_t)workers, sizeof *samplers);
    ck_assert_ptr_nonnull(samplers);
    rm_error err;
    for (long r = 0; r < workers; r++)
        ck_assert_msg(rm_sampler_init(&samplers[r], l->sizes, l->n_shards, seed, window, &err) == RM_OK, "%s",
                      err.msg);
    long local = global_batch / workers, at = 0;
    for (long t = 0; t < steps; t++)
        for (long r = 0; r < workers; r++) {
            long start = rm_order_slice_start(t, global_batch, r, workers);
            ck_assert_int_eq(start, at); /* slices tile the stream with no gap or overlap */
            ck_assert_msg(rm_sampler_fill(&samplers[r], start, local, seq + at, &err) == RM_OK, "%s", err.msg);
            at += local;
        }
    for (long r = 0; r < workers; r++)
        rm_sampler_free(&samplers[r]);
    free(samplers);
    return seq;
}

START_TEST(worker_count_does_not_change_the_sequence)
{
    /* 61 samples and a global batch of 12: steps straddle epoch boundaries */
    static const layout l = {"61 samples", 4, {17, 23, 9, 12}};
    const long global_batch = 12, steps = 26, n = 61;
    for (long window = 0; window <= 2; window++) {
        uint32_t *one = global_sequence(&l, global_batch, 1, steps, 5, window);
        for (long workers = 2; workers <= 4; workers++) {
            uint32_t *many = global_sequence(&l, global_batch, workers, steps, 5, window);
            for (long p = 0; p < steps * global_batch; p++)
                ck_assert_msg(many[p] == one[p], "window %ld, %ld workers: position %ld is %u, with 1 worker %u",
                              window, workers, p, many[p], one[p]);
            free(many);
        }
        /* every whole epoch inside the 312 positions holds every sample once */
        for (long e = 0; (e + 1) * n <= steps * global_batch; e++) {
            char what[64];
            snprintf(what, sizeof what, "window %ld, epoch %ld of the stream", window, e);
            assert_permutation(one + e * n, n, what);
        }
        /* and consecutive epochs are not the same order */
        ck_assert_msg(memcmp(one, one + n, (size_t)n * sizeof *one) != 0, "epochs 0 and 1 repeat");
        free(one);
    }
}
END_TEST

static Suite *order_suite(void)
{
    Suite *s = suite_create("order");
    TCase *tc = tcase_create("epoch");
    tcase_set_timeout(tc, 20);
    tcase_add_loop_test(tc, epoch_is_a_permutation, 0, N_LAYOUTS * N_WINDOWS);
    tcase_add_loop_test(tc, windows_keep_shards_together, 0, N_LAYOUTS * N_WINDOWS);
    tcase_add_test(tc, order_is_a_pure_function);
    suite_add_tcase(s, tc);

    TCase *tc_stream = tcase_create("stream");
    tcase_set_timeout(tc_stream, 20);
    tcase_add_test(tc_stream, sampler_fill_reads_the_epoch_stream);
    tcase_add_test(tc_stream, worker_count_does_not_change_the_sequence);
    suite_add_tcase(s, tc_stream);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(order_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
