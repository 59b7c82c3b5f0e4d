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

void rm_grad_sync_mpi_free(rm_grad_sync_mpi *t)
{
    free(t->requests);
    memset(t, 0, sizeof *t);
}

static int mpi_start(void *ctx, int bucket, long offset, long count, rm_error *err)
{
    rm_grad_sync_mpi *t = ctx;
    if (t->started >= t->n_buckets)
        return rm_fail(err, "all-reduce bucket %d started twice in one step", bucket);
    RM_MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, t->grads + offset, (int)count, MPI_FLOAT, MPI_SUM, t->comm,
                                &t->requests[t->started]),
                 err);
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
    if (*done)
        t->started = 0;
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
