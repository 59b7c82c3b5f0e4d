#include "grad_sync_mpi.h"

#include "mpi_check.h"

#include <stdlib.h>
#include <string.h>

int rm_grad_sync_mpi_init(rm_grad_sync_mpi *t, MPI_Comm comm, float *grads, int n_buckets, rm_error *err)
{
    memset(t, 0, sizeof *t);
    t->comm = comm;
    t->grads = grads;
    t->n_buckets = n_buckets;
    t->requests = malloc((size_t)n_buckets * sizeof *t->requests);
    if (!t->requests)
        return rm_fail(err, "out of memory for %d all-reduce requests", n_buckets);
    for (int k = 0; k < n_buckets; k++)
        t->requests[k] = MPI_REQUEST_NULL;
    return RM_OK;
}

int rm_grad_sync_mpi_init_sharded(rm_grad_sync_mpi *t, MPI_Comm comm, float *grads, long n, int n_buckets,
                                  rm_error *err)
{
    if (rm_grad_sync_mpi_init(t, comm, grads, n_buckets, err) != RM_OK)
        return RM_ERR;
    RM_MPI_CHECK(MPI_Comm_rank(comm, &t->rank), err);
    RM_MPI_CHECK(MPI_Comm_size(comm, &t->size), err);
    t->n = n;
    t->slice_count = malloc((size_t)t->size * sizeof *t->slice_count);
    t->slice_displ = malloc((size_t)t->size * sizeof *t->slice_displ);
    t->bucket_counts = malloc((size_t)n_buckets * (size_t)t->size * sizeof *t->bucket_counts);
    t->moves = malloc((size_t)n_buckets * 3 * sizeof *t->moves);
    if (!t->slice_count || !t->slice_displ || !t->bucket_counts || !t->moves) {
        rm_grad_sync_mpi_free(t);
        return rm_fail(err, "out of memory for %d reduce-scatter buckets", n_buckets);
    }
    for (int r = 0; r < t->size; r++) {
        long lo = n * r / t->size, hi = n * (r + 1) / t->size;
        t->slice_displ[r] = (int)lo;
        t->slice_count[r] = (int)(hi - lo);
    }
    return RM_OK;
}

void rm_grad_sync_mpi_free(rm_grad_sync_mpi *t)
{
    free(t->requests);
    free(t->slice_count);
    free(t->slice_displ);
    free(t->bucket_counts);
    free(t->moves);
    memset(t, 0, sizeof *t);
}

/* The bucket [offset, offset + count) as one reduce-scatter: rank r gets
 * the sum of the bucket's part of its slice. In place, MPI leaves this
 * rank's part at the start of the bucket; poll moves it where it belongs. */
static int start_reduce_scatter(rm_grad_sync_mpi *t, long offset, long count, rm_error *err)
{
    int k = t->started;
    int *counts = t->bucket_counts + (size_t)k * (size_t)t->size;
    for (int r = 0; r < t->size; r++) {
        long lo = t->slice_displ[r], hi = lo + t->slice_count[r];
        long from = lo > offset ? lo : offset, to = hi < offset + count ? hi : offset + count;
        counts[r] = to > from ? (int)(to - from) : 0;
        if (r == t->rank) {
            t->moves[3 * k] = offset;
            t->moves[3 * k + 1] = from;
            t->moves[3 * k + 2] = counts[r];
        }
    }
    RM_MPI_CHECK(MPI_Ireduce_scatter(MPI_IN_PLACE, t->grads + offset, counts, MPI_FLOAT, MPI_SUM, t->comm,
                                     &t->requests[k]),
                 err);
    return RM_OK;
}

/* Every started bucket is complete: its result to its place in the slice. */
static void place_results(rm_grad_sync_mpi *t)
{
    for (int k = 0; k < t->started; k++) {
        long at = t->moves[3 * k], to = t->moves[3 * k + 1], count = t->moves[3 * k + 2];
        if (count > 0 && at != to)
            memmove(t->grads + to, t->grads + at, (size_t)count * sizeof(float));
    }
}

static int mpi_start(void *ctx, int bucket, long offset, long count, rm_error *err)
{
    rm_grad_sync_mpi *t = ctx;
    if (t->started >= t->n_buckets)
        return rm_fail(err, "all-reduce bucket %d started twice in one step", bucket);
    if (t->size > 0) {
        if (start_reduce_scatter(t, offset, count, err) != RM_OK)
            return RM_ERR;
    } else {
        RM_MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, t->grads + offset, (int)count, MPI_FLOAT, MPI_SUM, t->comm,
                                    &t->requests[t->started]),
                     err);
    }
    t->started++;
    /* Open MPI progresses non-blocking collectives only inside MPI calls:
     * poke the started ones so they advance while backward goes on. */
    int done;
    RM_MPI_CHECK(MPI_Testall(t->started, t->requests, &done, MPI_STATUSES_IGNORE), err);
    return RM_OK;
}

static int mpi_poll(void *ctx, int *done, rm_error *err)
{
    rm_grad_sync_mpi *t = ctx;
    RM_MPI_CHECK(MPI_Testall(t->started, t->requests, done, MPI_STATUSES_IGNORE), err);
    if (*done) {
        if (t->size > 0)
            place_results(t);
        t->started = 0;
    }
    return RM_OK;
}

/* MPI has no way to take back a collective: the requests stay, and
 * rm_grad_sync_mpi_drain (or the end of the job) settles them. */
static void mpi_abort(void *ctx)
{
    (void)ctx;
}

/* MPI_Test frees a completed request (it becomes MPI_REQUEST_NULL, which
 * the later MPI_Testall takes as complete). */
static int mpi_bucket_done(void *ctx, int k, int *done, rm_error *err)
{
    rm_grad_sync_mpi *t = ctx;
    *done = 1;
    if (k < t->started)
        RM_MPI_CHECK(MPI_Test(&t->requests[k], done, MPI_STATUS_IGNORE), err);
    return RM_OK;
}

rm_grad_transport rm_grad_sync_mpi_transport(rm_grad_sync_mpi *t)
{
    return (rm_grad_transport){
        .name = "mpi",
        .ctx = t,
        .gate = NULL,
        .start = mpi_start,
        .poll = mpi_poll,
        .abort = mpi_abort,
        .bucket_done = mpi_bucket_done,
    };
}

int rm_grad_sync_mpi_drain(rm_grad_sync_mpi *t, rm_error *err)
{
    RM_MPI_CHECK(MPI_Waitall(t->started, t->requests, MPI_STATUSES_IGNORE), err);
    t->started = 0;
    return RM_OK;
}

int rm_grad_sync_mpi_gather(rm_grad_sync_mpi *t, float *params, const rm_peer_wait *wait, rm_error *err)
{
    if (t->size == 0)
        return rm_fail(err, "parameter all-gather on a transport that is not sharded");
    MPI_Request req;
    RM_MPI_CHECK(MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, params, t->slice_count, t->slice_displ, MPI_FLOAT,
                                 t->comm, &req),
                 err);
    return rm_mpi_wait_all(1, &req, wait, err);
}
