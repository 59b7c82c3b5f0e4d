/* The bucketed gradient all-reduce and the shared-memory reduction under a
 * real mpirun (3 ranks).
 *
 * Inputs are small integers, so the sum in float is exact whatever order
 * MPI adds them in, and every element must equal its exact sum.
 *
 * Forking after MPI_Init is unsafe (the child shares the parent's network
 * endpoints and shared-memory segments), so this runner uses CK_NOFORK:
 * every test runs in the MPI process itself, Check's per-test timeout does
 * not apply, and the ctest TIMEOUT on this test is the guard against a hang.
 * For the same reason a failed check must not leave the other ranks waiting
 * in a collective: each test counts its own mismatches, the ranks agree on
 * the total with MPI_Allreduce, and only then does every rank assert. */
#include "allreduce.h"
#include "shm_reduce.h"
#include "test_util.h"

#include <check.h>
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int rank, size;

/* Rank r's value at index i: a small integer, different per rank. */
static float input_at(int r, long i, int step)
{
    return (float)((r + 1) * (long)(i % 17) - (i % 5) + 3 * step);
}

static float exact_sum(long i, int step)
{
    float sum = 0;
    for (int r = 0; r < size; r++)
        sum += input_at(r, i, step);
    return sum;
}

/* Asserts on every rank that no rank counted a failure. */
static void assert_all_ranks_ok(long local_bad, const char *what)
{
    long total_bad = 0;
    ck_assert_int_eq(MPI_Allreduce(&local_bad, &total_bad, 1, MPI_LONG, MPI_SUM, MPI_COMM_WORLD), MPI_SUCCESS);
    ck_assert_msg(total_bad == 0, "%s: %ld mismatches over all ranks (%ld on rank %d)", what, total_bad, local_bad,
                  rank);
}

/* Checks the bucket table: buckets tile [0, n) from the end, none larger
 * than bucket_floats. Returns the number of problems. */
static long check_buckets(const rm_allreduce *ar, long n, long bucket_floats)
{
    long bad = 0, expect_end = n;
    for (int k = 0; k < ar->n_buckets; k++) {
        long len = ar->bucket_end[k] - ar->bucket_start[k];
        bad += ar->bucket_end[k] != expect_end;
        bad += len < 1 || len > bucket_floats;
        expect_end = ar->bucket_start[k];
    }
    bad += expect_end != 0;
    bad += ar->n_buckets != (n + bucket_floats - 1) / bucket_floats;
    return bad;
}

static const long sizes[] = {1, 7, 100, 1001};
static const long bucket_sizes[] = {1, 3, 7, 64, 100, 1000, 1 << 20};
#define N_SIZES ((int)(sizeof sizes / sizeof sizes[0]))
#define N_BUCKET_SIZES ((int)(sizeof bucket_sizes / sizeof bucket_sizes[0]))

/* _i runs over sizes x bucket sizes. */
START_TEST(sum_is_exact_for_every_bucket_size)
{
    long n = sizes[_i / N_BUCKET_SIZES], bucket_floats = bucket_sizes[_i % N_BUCKET_SIZES];
    float *grads = malloc((size_t)n * sizeof *grads);
    ck_assert_ptr_nonnull(grads);
    rm_allreduce ar;
    rm_error err;
    ck_assert_msg(rm_allreduce_init(&ar, MPI_COMM_WORLD, grads, n, bucket_floats, &err) == RM_OK, "%s", err.msg);
    long bad = check_buckets(&ar, n, bucket_floats);
    /* two steps through the same object: it must be reusable */
    for (int step = 0; step < 2; step++) {
        for (long i = 0; i < n; i++)
            grads[i] = input_at(rank, i, step);
        /* backward reports final regions from the end towards the start */
        long offsets[] = {n - n / 4, n / 2, n / 3, 0};
        for (int k = 0; k < 3; k++)
            ck_assert_msg(rm_allreduce_ready_from(&ar, offsets[k], &err) == RM_OK, "%s", err.msg);
        ck_assert_msg(rm_allreduce_finish(&ar, &err) == RM_OK, "%s", err.msg);
        for (long i = 0; i < n; i++)
            bad += grads[i] != exact_sum(i, step);
        bad += ar.next_bucket != 0; /* ready for the next step */
    }
    rm_allreduce_free(&ar);
    free(grads);
    char what[96];
    snprintf(what, sizeof what, "n %ld, bucket %ld floats", n, bucket_floats);
    assert_all_ranks_ok(bad, what);
}
END_TEST

START_TEST(buckets_start_only_when_wholly_ready)
{
    /* n = 10 in buckets of 3 from the end: [7,10) [4,7) [1,4) [0,1) */
    const long n = 10;
    float grads[10];
    for (long i = 0; i < n; i++)
        grads[i] = input_at(rank, i, 0);
    rm_allreduce ar;
    rm_error err;
    ck_assert_msg(rm_allreduce_init(&ar, MPI_COMM_WORLD, grads, n, 3, &err) == RM_OK, "%s", err.msg);
    long bad = 0;
    bad += ar.n_buckets != 4;
    bad += ar.bucket_start[0] != 7 || ar.bucket_start[1] != 4 || ar.bucket_start[2] != 1 || ar.bucket_start[3] != 0;
    /* offset -> buckets started afterwards (cumulative) */
    static const struct {
        long offset;
        int started;
    } script[] = {
        {10, 0}, /* nothing final yet */
        {8, 0},  /* [8,10) is final but bucket [7,10) is not wholly inside */
        {7, 1},  /* now it is */
        {5, 1},
        {4, 2},
        {2, 2},
        {1, 3},
    };
    for (size_t k = 0; k < sizeof script / sizeof script[0]; k++) {
        ck_assert_msg(rm_allreduce_ready_from(&ar, script[k].offset, &err) == RM_OK, "%s", err.msg);
        bad += ar.next_bucket != script[k].started;
        /* every started bucket lies wholly in [offset, n) */
        for (int b = 0; b < ar.next_bucket; b++)
            bad += ar.bucket_start[b] < script[k].offset;
        /* the first unstarted one does not */
        if (ar.next_bucket < ar.n_buckets)
            bad += ar.bucket_start[ar.next_bucket] >= script[k].offset;
    }
    /* finish starts the rest ([0,1)) and completes everything */
    ck_assert_msg(rm_allreduce_finish(&ar, &err) == RM_OK, "%s", err.msg);
    for (long i = 0; i < n; i++)
        bad += grads[i] != exact_sum(i, 0);
    rm_allreduce_free(&ar);
    assert_all_ranks_ok(bad, "bucket gating");
}
END_TEST

START_TEST(one_rank_leaves_the_buffer_alone)
{
    /* the sum over one rank is the buffer itself: nothing to do */
    float grads[5] = {1, 2, 3, 4, 5};
    rm_allreduce ar;
    rm_error err;
    ck_assert_msg(rm_allreduce_init(&ar, MPI_COMM_SELF, grads, 5, 2, &err) == RM_OK, "%s", err.msg);
    ck_assert_msg(rm_allreduce_ready_from(&ar, 0, &err) == RM_OK, "%s", err.msg);
    ck_assert_msg(rm_allreduce_finish(&ar, &err) == RM_OK, "%s", err.msg);
    rm_allreduce_free(&ar);
    long bad = 0;
    for (int i = 0; i < 5; i++)
        bad += grads[i] != (float)(i + 1);
    assert_all_ranks_ok(bad, "MPI_COMM_SELF");
}
END_TEST

/* The shared-memory reduction: each rank's slice of its own segment holds
 * the exact sum, the norm is that of the whole summed gradient, the
 * parameters start as the given copy and a rank's writes to its slice are
 * seen by every rank after the sync. _i runs over sizes. */
START_TEST(shm_sum_is_exact_and_params_are_shared)
{
    long n = sizes[_i];
    int possible = 0;
    char why[256] = "";
    rm_error err;
    ck_assert_msg(rm_shm_reduce_possible(MPI_COMM_WORLD, n, &possible, why, sizeof why, &err) == RM_OK, "%s",
                  err.msg);
    ck_assert_msg(possible, "the test's ranks are all on one node, yet shared memory was refused: %s", why);
    float *init = malloc((size_t)n * sizeof *init);
    ck_assert_ptr_nonnull(init);
    for (long i = 0; i < n; i++)
        init[i] = (float)(i % 11);
    rm_shm_reduce r;
    ck_assert_msg(rm_shm_reduce_init(&r, MPI_COMM_WORLD, n, init, &err) == RM_OK, "%s", err.msg);
    long bad = 0;
    bad += r.lo != n * rank / size || r.hi != n * (rank + 1) / size;
    for (long i = 0; i < n; i++)
        bad += r.params[i] != init[i];
    for (int step = 0; step < 2; step++) {
        for (long i = 0; i < n; i++)
            r.grads[i] = input_at(rank, i, step);
        double norm = -1, exact = 0;
        ck_assert_msg(rm_shm_reduce_sum(&r, &norm, &err) == RM_OK, "%s", err.msg);
        for (long i = 0; i < n; i++)
            exact += (double)exact_sum(i, step) * exact_sum(i, step);
        bad += fabs(norm - sqrt(exact)) > 1e-9 * sqrt(exact);
        for (long i = r.lo; i < r.hi; i++)
            bad += r.grads[i] != exact_sum(i, step);
        /* each rank writes its slice of the parameters; all see all */
        for (long i = r.lo; i < r.hi; i++)
            r.params[i] = (float)(step * 1000 + i);
        ck_assert_msg(rm_shm_reduce_sync(&r, &err) == RM_OK, "%s", err.msg);
        for (long i = 0; i < n; i++)
            bad += r.params[i] != (float)(step * 1000 + i);
        ck_assert_msg(rm_shm_reduce_sync(&r, &err) == RM_OK, "%s", err.msg);
    }
    rm_shm_reduce_free(&r);
    free(init);
    char what[64];
    snprintf(what, sizeof what, "shared-memory reduction, n %ld", n);
    assert_all_ranks_ok(bad, what);
}
END_TEST

static Suite *allreduce_suite(void)
{
    Suite *s = suite_create("allreduce");
    TCase *tc = tcase_create("mpi");
    tcase_add_loop_test(tc, sum_is_exact_for_every_bucket_size, 0, N_SIZES * N_BUCKET_SIZES);
    tcase_add_test(tc, buckets_start_only_when_wholly_ready);
    tcase_add_test(tc, one_rank_leaves_the_buffer_alone);
    tcase_add_loop_test(tc, shm_sum_is_exact_and_params_are_shared, 0, N_SIZES);
    suite_add_tcase(s, tc);
    return s;
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    int failed = 1;
    if (size < 2) {
        if (rank == 0)
            fprintf(stderr, "test_allreduce: run under mpirun with 2 or more ranks (got %d)\n", size);
    } else {
        SRunner *sr = srunner_create(allreduce_suite());
        srunner_set_fork_status(sr, CK_NOFORK);
        /* one rank's report is enough unless something failed */
        srunner_run_all(sr, rank == 0 ? CK_NORMAL : CK_SILENT);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
    }
    MPI_Finalize();
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
