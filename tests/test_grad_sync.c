/* The gradient engine (grad_sync.c: bucket schedule, gating, wait,
 * heartbeat, watchdog, timeline) under a real mpirun with 3 ranks, over
 * its MPI transport on host memory: the CPU backend's path, and the same
 * schedule the GPU backend runs over NCCL, checked where there is no GPU.
 * Also the transport's ZeRO-1 form (reduce-scatter into each rank's slice,
 * all-gather of the slices) and the single-host shared-memory reduction
 * (shm_reduce.c), and the GPU backend's ZeRO-1 slice arithmetic
 * (worker/gpu/zero_slice.h, pure C) against the CPU transport's slices.
 *
 * Sums use small integers, exact in float whatever order the ranks add
 * them in. Forking after MPI_Init is unsafe (the child shares the parent's
 * network endpoints and shared-memory segments), so the runner uses
 * CK_NOFORK (the ctest TIMEOUT guards against a hang), and every test
 * counts its own mismatches and asserts only after all ranks agree on the
 * total, so a failure never leaves a rank waiting in a collective. */
#include "config.h"
#include "grad_sync.h"
#include "grad_sync_mpi.h"
#include "local_rank.h"
#include "model_shape.h"
#include "mpi_wait.h"
#include "optimizer.h"
#include "shm_reduce.h"
#include "test_util.h"
#include "timer.h"
#include "../worker/gpu/zero_slice.h"

#include <check.h>
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int rank, size;

static float input_at(int r, long i, int step)
{
    return (float)((r + 1) * (long)(i % 13) - (i % 7) + 5 * step);
}

static float exact_sum(long i, int step)
{
    float sum = 0;
    for (int r = 0; r < size; r++)
        sum += input_at(r, i, step);
    return sum;
}

static void assert_all_ranks_ok(long local_bad, const char *what)
{
    long total_bad = 0;
    ck_assert_int_eq(MPI_Allreduce(&local_bad, &total_bad, 1, MPI_LONG, MPI_SUM, MPI_COMM_WORLD), MPI_SUCCESS);
    ck_assert_msg(total_bad == 0, "%s: %ld problems over all ranks (%ld on rank %d)", what, total_bad, local_bad,
                  rank);
}

/* The MPI transport wrapped to watch what the schedule does with it: at
 * every start, the bucket must already be produced (no NaN left in it) and
 * buckets must come in order; gates, starts and aborts are counted. */
typedef struct watched {
    rm_grad_sync_mpi mpi;
    rm_grad_transport inner;
    const float *grads;
    int gates, starts, aborts, next_expected;
    long bad;
} watched;

static int watched_gate(void *ctx, rm_error *err)
{
    watched *w = ctx;
    w->gates++;
    return RM_OK;
}

static int watched_start(void *ctx, int bucket, long offset, long count, rm_error *err)
{
    watched *w = ctx;
    w->starts++;
    w->bad += bucket != w->next_expected;
    w->next_expected = bucket + 1;
    for (long i = offset; i < offset + count; i++)
        w->bad += isnan(w->grads[i]) != 0;
    return w->inner.start(w->inner.ctx, bucket, offset, count, err);
}

static int watched_poll(void *ctx, int *done, rm_error *err)
{
    watched *w = ctx;
    int rc = w->inner.poll(w->inner.ctx, done, err);
    if (rc == RM_OK && *done)
        w->next_expected = 0;
    return rc;
}

static void watched_abort(void *ctx)
{
    watched *w = ctx;
    w->aborts++;
    w->inner.abort(w->inner.ctx);
}

static void watched_init(watched *w, float *grads, long n, long bucket_floats, rm_grad_sync *gs)
{
    memset(w, 0, sizeof *w);
    rm_error err;
    int n_buckets = (int)((n + bucket_floats - 1) / bucket_floats);
    ck_assert_msg(rm_grad_sync_mpi_init(&w->mpi, MPI_COMM_WORLD, grads, n_buckets, &err) == RM_OK, "%s", err.msg);
    w->inner = rm_grad_sync_mpi_transport(&w->mpi);
    w->grads = grads;
    rm_grad_transport tp = {"watched-mpi", w, watched_gate, watched_start, watched_poll, watched_abort, NULL};
    ck_assert_msg(rm_grad_sync_init(gs, n, bucket_floats, rank, &tp, &err) == RM_OK, "%s", err.msg);
    ck_assert_int_eq(gs->n_buckets, n_buckets);
}

static const long sizes[] = {1, 10, 1001};
static const long bucket_sizes[] = {1, 3, 64, 1000, 1 << 20};
#define N_SIZES ((int)(sizeof sizes / sizeof sizes[0]))
#define N_BUCKET_SIZES ((int)(sizeof bucket_sizes / sizeof bucket_sizes[0]))

/* _i runs over sizes x bucket sizes; three steps through the same object. */
START_TEST(sum_is_exact_for_every_bucket_size)
{
    long n = sizes[_i / N_BUCKET_SIZES], bucket_floats = bucket_sizes[_i % N_BUCKET_SIZES];
    float *grads = malloc((size_t)n * sizeof *grads);
    ck_assert_ptr_nonnull(grads);
    rm_grad_sync gs;
    watched w;
    watched_init(&w, grads, n, bucket_floats, &gs);
    rm_error err;
    long bad = 0;
    for (int step = 0; step < 3; step++) {
        for (long i = 0; i < n; i++)
            grads[i] = input_at(rank, i, step);
        long offsets[] = {n - n / 4, n / 2, n / 3};
        for (int k = 0; k < 3; k++)
            ck_assert_msg(rm_grad_sync_ready_from(&gs, offsets[k], &err) == RM_OK, "%s", err.msg);
        ck_assert_msg(rm_grad_sync_finish(&gs, &err) == RM_OK, "%s", err.msg);
        for (long i = 0; i < n; i++)
            bad += grads[i] != exact_sum(i, step);
        bad += gs.next_bucket != 0;
    }
    bad += w.starts != 3 * gs.n_buckets;
    bad += gs.steps != 3;
    bad += w.aborts != 0 || w.bad != 0;
    rm_grad_sync_free(&gs);
    rm_grad_sync_mpi_free(&w.mpi);
    free(grads);
    char what[96];
    snprintf(what, sizeof what, "n %ld, bucket %ld floats", n, bucket_floats);
    assert_all_ranks_ok(bad, what);
}
END_TEST

/* ZeRO-1's transport: each bucket reduce-scattered over the ranks'
 * slices [n*r/N, n*(r+1)/N) (uneven, some empty for n = 1), so each rank
 * ends with the exact sum of its own slice; then the parameters' slices
 * all-gathered, so every rank has every slice. _i as above. */
START_TEST(sharded_sum_lands_in_each_slice_and_gathers)
{
    long n = sizes[_i / N_BUCKET_SIZES], bucket_floats = bucket_sizes[_i % N_BUCKET_SIZES];
    float *grads = malloc((size_t)n * sizeof *grads), *params = malloc((size_t)n * sizeof *params);
    ck_assert_ptr_nonnull(grads);
    ck_assert_ptr_nonnull(params);
    int n_buckets = (int)((n + bucket_floats - 1) / bucket_floats);
    rm_grad_sync_mpi mpi;
    rm_grad_sync gs;
    rm_error err;
    ck_assert_msg(rm_grad_sync_mpi_init_sharded(&mpi, MPI_COMM_WORLD, grads, n, n_buckets, &err) == RM_OK, "%s",
                  err.msg);
    rm_grad_transport tp = rm_grad_sync_mpi_transport(&mpi);
    ck_assert_msg(rm_grad_sync_init(&gs, n, bucket_floats, rank, &tp, &err) == RM_OK, "%s", err.msg);
    long lo = n * rank / size, hi = n * (rank + 1) / size, bad = 0;
    for (int step = 0; step < 3; step++) {
        for (long i = 0; i < n; i++)
            grads[i] = input_at(rank, i, step);
        long offsets[] = {n - n / 4, n / 2, n / 3};
        for (int k = 0; k < 3; k++)
            ck_assert_msg(rm_grad_sync_ready_from(&gs, offsets[k], &err) == RM_OK, "%s", err.msg);
        ck_assert_msg(rm_grad_sync_finish(&gs, &err) == RM_OK, "%s", err.msg);
        for (long i = lo; i < hi; i++)
            bad += grads[i] != exact_sum(i, step);
        /* this rank's slice of the "parameters": a value only it knows */
        for (long i = 0; i < n; i++)
            params[i] = i >= lo && i < hi ? (float)(i * 3 + step) : -1.0f;
        rm_peer_wait wait = {0};
        ck_assert_msg(rm_grad_sync_mpi_gather(&mpi, params, &wait, &err) == RM_OK, "%s", err.msg);
        for (long i = 0; i < n; i++)
            bad += params[i] != (float)(i * 3 + step);
    }
    rm_grad_sync_free(&gs);
    rm_grad_sync_mpi_free(&mpi);
    free(grads);
    free(params);
    char what[96];
    snprintf(what, sizeof what, "sharded, n %ld, bucket %ld floats", n, bucket_floats);
    assert_all_ranks_ok(bad, what);
}
END_TEST

/* The GPU backend's ZeRO-1 slices (zero_slice.h) against the CPU's: for
 * every n up to 300 and a few large ones, and 1 to 9 workers, the slices
 * tile [0, n) in rank order, differ in length by at most one, are the ones
 * the checkpoint writer saves (n*r/N, n*(r+1)/N) and, at this run's size,
 * the ones the MPI transport's reduce-scatter fills; every bucket is cut
 * into its owners' parts exactly. Then a sharded step simulated on the
 * host as nccl_transport.c runs it (each part reduced onto its owner):
 * each owner's slice holds the exact sum and the slices' squares add up
 * to the full gradient's. Pure arithmetic: checked on rank 0 only. */
START_TEST(gpu_zero_slices_match_the_cpu_slices)
{
    long bad = 0;
    if (rank == 0) {
        long big[] = {1000003, 101770, 7};
        for (long t = 1; t <= 300 + 3; t++) {
            long n = t <= 300 ? t : big[t - 301];
            for (int w = 1; w <= 9; w++) {
                long prev_hi = 0, min_len = n, max_len = 0;
                for (int r = 0; r < w; r++) {
                    long lo, hi;
                    rm_zero_slice(n, w, r, &lo, &hi);
                    bad += lo != prev_hi || hi < lo || lo != n * r / w || hi != n * (r + 1) / w;
                    prev_hi = hi;
                    if (hi - lo < min_len)
                        min_len = hi - lo;
                    if (hi - lo > max_len)
                        max_len = hi - lo;
                }
                bad += prev_hi != n || max_len - min_len > 1;
                long buckets[] = {1, 3, n / 2 + 1, n};
                for (int k = 0; k < 4; k++) {
                    long bf = buckets[k] < 1 ? 1 : buckets[k];
                    for (long off = 0; off < n; off += bf) {
                        long count = n - off < bf ? n - off : bf, at = off;
                        for (int r = 0; r < w; r++) {
                            long a, b, lo, hi;
                            int met = rm_zero_bucket_part(n, w, r, off, count, &a, &b);
                            rm_zero_slice(n, w, r, &lo, &hi);
                            bad += met != (b > a) || (met && (a != at || a < lo || b > hi));
                            if (met)
                                at = b;
                        }
                        bad += at != off + count;
                    }
                }
            }
        }
        /* a step over 4 simulated workers, n = 103, buckets of 10 */
        enum { W = 4, NN = 103, BF = 10 };
        static float g[W][NN];
        for (int r = 0; r < W; r++)
            for (long i = 0; i < NN; i++)
                g[r][i] = input_at(r, i, 1);
        for (long off = 0; off < NN; off += BF) {
            long count = NN - off < BF ? NN - off : BF;
            for (int owner = 0; owner < W; owner++) {
                long a, b;
                if (!rm_zero_bucket_part(NN, W, owner, off, count, &a, &b))
                    continue;
                for (long i = a; i < b; i++)
                    for (int r = 0; r < W; r++)
                        if (r != owner)
                            g[owner][i] += g[r][i];
            }
        }
        double slices_sumsq = 0, full_sumsq = 0;
        for (int r = 0; r < W; r++) {
            long lo, hi;
            rm_zero_slice(NN, W, r, &lo, &hi);
            for (long i = lo; i < hi; i++) {
                bad += g[r][i] != (float)((W * (W + 1) / 2) * (i % 13) - W * (i % 7) + 5 * W);
                slices_sumsq += (double)g[r][i] * g[r][i];
            }
        }
        for (long i = 0; i < NN; i++) {
            double x = (double)((W * (W + 1) / 2) * (i % 13) - W * (i % 7) + 5 * W);
            full_sumsq += x * x;
        }
        bad += slices_sumsq != full_sumsq;
    }
    /* the CPU transport's slices at this run's size */
    long n = 1001;
    float *grads = calloc((size_t)n, sizeof *grads);
    ck_assert_ptr_nonnull(grads);
    rm_grad_sync_mpi mpi;
    rm_error err;
    ck_assert_msg(rm_grad_sync_mpi_init_sharded(&mpi, MPI_COMM_WORLD, grads, n, 1, &err) == RM_OK, "%s", err.msg);
    for (int r = 0; r < size; r++) {
        long lo, hi;
        rm_zero_slice(n, size, r, &lo, &hi);
        bad += mpi.slice_displ[r] != lo || mpi.slice_count[r] != hi - lo;
    }
    rm_grad_sync_mpi_free(&mpi);
    free(grads);
    assert_all_ranks_ok(bad, "GPU ZeRO-1 slices against the CPU's");
}
END_TEST

/* A backward pass over a real model's layout, last layer first, as
 * mlp_gpu.c drives it: each bucket must start as soon as (and only when)
 * the layers it covers are produced, most of them before the first
 * layer's gradient exists, each ready call behind one gate. */
START_TEST(buckets_start_as_backward_produces_them)
{
    rm_config cfg;
    rm_config_defaults(&cfg);
    cfg.hidden[0] = 40;
    cfg.hidden[1] = 24;
    cfg.n_hidden = 2;
    rm_model_shape shape;
    rm_model_shape_init(&shape, &cfg, 30, 5); /* 30-40-24-5: 2,349 parameters */
    long n = shape.n_params, bucket_floats = 200;
    float *grads = malloc((size_t)n * sizeof *grads);
    ck_assert_ptr_nonnull(grads);
    rm_grad_sync gs;
    watched w;
    watched_init(&w, grads, n, bucket_floats, &gs);
    rm_error err;
    long bad = 0;
    for (int step = 0; step < 2; step++) {
        for (long i = 0; i < n; i++)
            grads[i] = NAN; /* not produced yet */
        int gates_before = w.gates, starts_before = w.starts, started_before_first_layer = -1;
        for (int l = shape.n_layers - 1; l >= 0; l--) {
            if (l == 0)
                started_before_first_layer = w.starts - starts_before;
            /* "backward" of layer l writes its weight and bias gradient */
            for (long i = shape.weight_offset[l]; i < shape.bias_offset[l] + shape.dims[l + 1]; i++)
                grads[i] = input_at(rank, i, step);
            ck_assert_msg(rm_grad_sync_ready_from(&gs, shape.weight_offset[l], &err) == RM_OK, "%s", err.msg);
            /* every bucket wholly in [weight_offset[l], n) has started, no other */
            for (int k = 0; k < gs.n_buckets; k++)
                bad += (k < gs.next_bucket) != (gs.bucket_start[k] >= shape.weight_offset[l]);
        }
        /* one gate per ready call that started something: at most one per layer */
        bad += w.gates - gates_before < 1 || w.gates - gates_before > shape.n_layers;
        /* what layers 2 and 1 cover was on its way before layer 0 existed */
        int expect_early = 0;
        for (int k = 0; k < gs.n_buckets; k++)
            expect_early += gs.bucket_start[k] >= shape.weight_offset[1];
        bad += expect_early < 1 || started_before_first_layer != expect_early;
        ck_assert_msg(rm_grad_sync_finish(&gs, &err) == RM_OK, "%s", err.msg);
        for (long i = 0; i < n; i++)
            bad += grads[i] != exact_sum(i, step);
    }
    bad += w.bad; /* no bucket started with an unproduced (NaN) value, all in order */
    rm_grad_sync_free(&gs);
    rm_grad_sync_mpi_free(&w.mpi);
    free(grads);
    assert_all_ranks_ok(bad, "buckets follow backward");
}
END_TEST

/* Averaging is the compute's part: every rank scales its slice's loss
 * gradient by 1 / global batch, and the summed result is the global mean,
 * the same bits on every rank. Per-sample gradients are integers; the
 * global batch of 8 per rank x 3 ranks = 24. */
START_TEST(sum_of_scaled_slices_is_the_global_mean)
{
    const long n = 50, per_rank = 8;
    long global_batch = per_rank * size;
    float grad_scale = 1.0f / (float)global_batch;
    float grads[50];
    rm_grad_sync gs;
    watched w;
    watched_init(&w, grads, n, 16, &gs);
    for (long i = 0; i < n; i++) {
        float local = 0;
        for (long s = rank * per_rank; s < (rank + 1) * per_rank; s++)
            local += (float)((s * 7 + i * 3) % 11 - 5) * grad_scale;
        grads[i] = local;
    }
    rm_error err;
    ck_assert_msg(rm_grad_sync_finish(&gs, &err) == RM_OK, "%s", err.msg);
    long bad = 0;
    for (long i = 0; i < n; i++) {
        double mean = 0;
        for (long s = 0; s < global_batch; s++)
            mean += (double)((s * 7 + i * 3) % 11 - 5);
        mean /= (double)global_batch;
        bad += fabs((double)grads[i] - mean) > 1e-6;
    }
    /* identical on every rank: bitwise min == max */
    float lo[50], hi[50];
    MPI_Allreduce(grads, lo, (int)n, MPI_FLOAT, MPI_MIN, MPI_COMM_WORLD);
    MPI_Allreduce(grads, hi, (int)n, MPI_FLOAT, MPI_MAX, MPI_COMM_WORLD);
    bad += memcmp(lo, hi, sizeof lo) != 0;
    rm_grad_sync_free(&gs);
    rm_grad_sync_mpi_free(&w.mpi);
    assert_all_ranks_ok(bad, "global mean");
}
END_TEST

typedef struct beats {
    int count;
} beats;

static int count_beat(void *ctx, rm_error *err)
{
    ((beats *)ctx)->count++;
    return RM_OK;
}

/* The last rank arrives late. The others heartbeat while they wait; with a
 * watchdog shorter than the delay, they give up, abort the transport and
 * name themselves; with a longer one, everybody completes the exact sum. */
START_TEST(watchdog_and_heartbeat_while_a_peer_is_late)
{
    const long n = 64;
    float grads[64];
    long bad = 0;
    for (int fire = 0; fire < 2; fire++) {
        rm_grad_sync gs;
        watched w;
        watched_init(&w, grads, n, 16, &gs);
        beats b = {0};
        gs.peer_wait = (rm_peer_wait){.heartbeat = count_beat, .ctx = &b, .heartbeat_s = 0.02};
        int late = rank == size - 1;
        gs.watchdog_s = late ? 0 : fire ? 0.3 : 30.0;
        for (long i = 0; i < n; i++)
            grads[i] = input_at(rank, i, fire);
        MPI_Barrier(MPI_COMM_WORLD);
        if (late)
            usleep(900 * 1000);
        rm_error err = {.errnum = 0};
        int rc = rm_grad_sync_finish(&gs, &err);
        if (fire && !late) {
            char expect[32];
            snprintf(expect, sizeof expect, "rank %d on ", rank);
            bad += rc != RM_ERR;
            bad += strstr(err.msg, expect) == NULL;
            bad += strstr(err.msg, "did not complete within") == NULL;
            if (rank == 0)
                fprintf(stderr, "test_grad_sync: the watchdog said: %s\n", err.msg);
            bad += w.aborts != 1 || !gs.aborted;
            /* a later step on an aborted sync fails at once, naming the rank */
            rm_error again;
            bad += rm_grad_sync_ready_from(&gs, 0, &again) != RM_ERR || strstr(again.msg, expect) == NULL;
            /* MPI cannot cancel a collective: settle it once the late rank comes */
            ck_assert_msg(rm_grad_sync_mpi_drain(&w.mpi, &err) == RM_OK, "%s", err.msg);
        } else {
            if (rc != RM_OK)
                fprintf(stderr, "rank %d: %s\n", rank, err.msg);
            bad += rc != RM_OK;
            for (long i = 0; i < n; i++)
                bad += grads[i] != exact_sum(i, fire);
            bad += w.aborts != 0;
        }
        if (!late)
            bad += b.count < 5; /* ~0.9 s of waiting at 0.02 s (or 0.3 s before the watchdog) */
        else
            bad += b.count != 0; /* the late rank never waited */
        rm_grad_sync_free(&gs);
        rm_grad_sync_mpi_free(&w.mpi);
        MPI_Barrier(MPI_COMM_WORLD);
    }
    assert_all_ranks_ok(bad, "watchdog and heartbeat");
}
END_TEST

static int snapshot_piece(void *ctx)
{
    return rm_snapshot_job_piece(ctx);
}

/* A checkpoint snapshot handed to the waits: the ranks that wait for a late
 * one copy it there, piece by piece, and all of it (a 100 ms wait against
 * well under a millisecond of copying); the late rank, which hardly waits,
 * copies it when it settles. Either way the copy is exact, and the waits
 * are counted. */
START_TEST(idle_work_runs_inside_waits)
{
    const long len = 3 * RM_SNAPSHOT_PIECE + 77;
    float *src[3], *dst[3];
    for (int k = 0; k < 3; k++) {
        src[k] = malloc((size_t)len * sizeof(float));
        dst[k] = calloc((size_t)len, sizeof(float));
        ck_assert(src[k] && dst[k]);
        for (long i = 0; i < len; i++)
            src[k][i] = (float)(k * len + i) * 0.25f + (float)rank;
    }
    rm_snapshot_job job;
    rm_snapshot_job_start(&job, (const float *const *)src, dst, 3, len);
    rm_idle_work idle = {0};
    rm_idle_work_begin(&idle, snapshot_piece, &job);
    rm_peer_wait pw = {.idle = &idle};
    int late = rank == size - 1;
    MPI_Barrier(MPI_COMM_WORLD);
    if (late)
        usleep(100 * 1000);
    MPI_Request req;
    MPI_Ibarrier(MPI_COMM_WORLD, &req);
    rm_error err = {.errnum = 0};
    long bad = rm_mpi_wait_all(1, &req, &pw, &err) != RM_OK;
    if (!late) {
        bad += job.done != len || idle.active || idle.pieces != 4; /* all of it, in 4 pieces */
        bad += idle.waited_s < 0.05;
    }
    idle.active = 0;
    rm_snapshot_job_finish(&job);
    for (int k = 0; k < 3; k++) {
        bad += memcmp(src[k], dst[k], (size_t)len * sizeof(float)) != 0;
        free(src[k]);
        free(dst[k]);
    }
    assert_all_ranks_ok(bad, "work inside waits");
}
END_TEST

START_TEST(one_rank_has_nothing_to_move)
{
    float grads[5] = {1, 2, 3, 4, 5};
    rm_grad_sync gs;
    rm_error err;
    ck_assert_msg(rm_grad_sync_init(&gs, 5, 2, rank, NULL, &err) == RM_OK, "%s", err.msg);
    ck_assert_int_eq(gs.n_buckets, 3);
    ck_assert_msg(rm_grad_sync_ready_from(&gs, 0, &err) == RM_OK, "%s", err.msg);
    ck_assert_msg(rm_grad_sync_finish(&gs, &err) == RM_OK, "%s", err.msg);
    long bad = gs.steps != 1;
    for (int i = 0; i < 5; i++)
        bad += grads[i] != (float)(i + 1);
    rm_grad_sync_free(&gs);
    assert_all_ranks_ok(bad, "no transport");
}
END_TEST

/* All ranks of this test share one node: local rank = rank. Devices: one
 * visible -> 0; several -> local rank modulo the count. */
START_TEST(local_rank_and_device_choice)
{
    int local_rank = -1, local_size = -1;
    rm_error err;
    ck_assert_msg(rm_local_rank(MPI_COMM_WORLD, &local_rank, &local_size, &err) == RM_OK, "%s", err.msg);
    long bad = local_rank != rank || local_size != size;
    bad += rm_device_for_local_rank(5, 1) != 0;
    bad += rm_device_for_local_rank(0, 8) != 0;
    bad += rm_device_for_local_rank(3, 2) != 1;
    bad += rm_device_for_local_rank(9, 4) != 1;
    bad += rm_device_for_local_rank(7, 8) != 7;
    assert_all_ranks_ok(bad, "local rank");
}
END_TEST

/* The timeline: on a traced step every bucket gets a start time and a
 * completion time after it, within the step; untraced steps record none. */
START_TEST(traced_step_times_every_bucket)
{
    const long n = 1001, bucket_floats = 100;
    float *grads = malloc((size_t)n * sizeof *grads);
    ck_assert_ptr_nonnull(grads);
    rm_grad_sync_mpi mpi;
    rm_grad_sync gs;
    rm_error err;
    int n_buckets = (int)((n + bucket_floats - 1) / bucket_floats);
    ck_assert_msg(rm_grad_sync_mpi_init(&mpi, MPI_COMM_WORLD, grads, n_buckets, &err) == RM_OK, "%s", err.msg);
    rm_grad_transport tp = rm_grad_sync_mpi_transport(&mpi);
    ck_assert_msg(rm_grad_sync_init(&gs, n, bucket_floats, rank, &tp, &err) == RM_OK, "%s", err.msg);
    long bad = 0;
    for (int step = 0; step < 2; step++) {
        gs.trace = step == 1;
        for (long i = 0; i < n; i++)
            grads[i] = input_at(rank, i, step);
        double t0 = rm_now_s();
        for (long off = n - 250; off > 0; off -= 250)
            ck_assert_msg(rm_grad_sync_ready_from(&gs, off, &err) == RM_OK, "%s", err.msg);
        ck_assert_msg(rm_grad_sync_finish(&gs, &err) == RM_OK, "%s", err.msg);
        double t1 = rm_now_s();
        for (int k = 0; k < gs.n_buckets; k++) {
            if (!gs.trace) {
                bad += gs.trace_start_s[k] != 0 || gs.trace_done_s[k] != 0;
                continue;
            }
            bad += gs.trace_start_s[k] < t0 || gs.trace_start_s[k] > t1;
            bad += gs.trace_done_s[k] < gs.trace_start_s[k] || gs.trace_done_s[k] > t1;
        }
        for (long i = 0; i < n; i++)
            bad += grads[i] != exact_sum(i, step);
    }
    rm_grad_sync_free(&gs);
    rm_grad_sync_mpi_free(&mpi);
    free(grads);
    assert_all_ranks_ok(bad, "bucket timeline");
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

static Suite *grad_sync_suite(void)
{
    Suite *s = suite_create("grad_sync");
    TCase *tc = tcase_create("mpi");
    tcase_add_loop_test(tc, sum_is_exact_for_every_bucket_size, 0, N_SIZES * N_BUCKET_SIZES);
    tcase_add_loop_test(tc, sharded_sum_lands_in_each_slice_and_gathers, 0, N_SIZES * N_BUCKET_SIZES);
    tcase_add_test(tc, gpu_zero_slices_match_the_cpu_slices);
    tcase_add_test(tc, buckets_start_as_backward_produces_them);
    tcase_add_test(tc, sum_of_scaled_slices_is_the_global_mean);
    tcase_add_test(tc, watchdog_and_heartbeat_while_a_peer_is_late);
    tcase_add_test(tc, idle_work_runs_inside_waits);
    tcase_add_test(tc, one_rank_has_nothing_to_move);
    tcase_add_test(tc, local_rank_and_device_choice);
    tcase_add_test(tc, traced_step_times_every_bucket);
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
            fprintf(stderr, "test_grad_sync: run under mpirun with 2 or more ranks (got %d)\n", size);
    } else {
        SRunner *sr = srunner_create(grad_sync_suite());
        srunner_set_fork_status(sr, CK_NOFORK);
        srunner_run_all(sr, rank == 0 ? CK_NORMAL : CK_SILENT);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
    }
    MPI_Finalize();
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
