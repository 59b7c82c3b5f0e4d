#include "allreduce.h"

#include "mpi_check.h"
#include "timer.h"

#include <stdlib.h>
#include <string.h>

int rm_allreduce_init(rm_allreduce *ar, MPI_Comm comm, float *grads, long n, long bucket_floats, rm_error *err)
{
    memset(ar, 0, sizeof *ar);
    ar->comm = comm;
    RM_MPI_CHECK(MPI_Comm_size(comm, &ar->comm_size), err);
    ar->grads = grads;
    ar->n = n;
    if (bucket_floats < 1)
        bucket_floats = 1;
    /* MPI counts are int. */
    if (bucket_floats > (1L << 30))
        bucket_floats = 1L << 30;
    ar->n_buckets = (int)((n + bucket_floats - 1) / bucket_floats);
    ar->bucket_start = malloc((size_t)ar->n_buckets * sizeof *ar->bucket_start);
    ar->bucket_end = malloc((size_t)ar->n_buckets * sizeof *ar->bucket_end);
    ar->requests = malloc((size_t)ar->n_buckets * sizeof *ar->requests);
    ar->trace_start_s = calloc((size_t)ar->n_buckets, sizeof *ar->trace_start_s);
    ar->trace_done_s = calloc((size_t)ar->n_buckets, sizeof *ar->trace_done_s);
    if (!ar->bucket_start || !ar->bucket_end || !ar->requests || !ar->trace_start_s || !ar->trace_done_s) {
        rm_allreduce_free(ar);
        return rm_fail(err, "out of memory for %d all-reduce buckets", ar->n_buckets);
    }
    for (int k = 0; k < ar->n_buckets; k++) {
        ar->bucket_end[k] = n - (long)k * bucket_floats;
        ar->bucket_start[k] = ar->bucket_end[k] - bucket_floats > 0 ? ar->bucket_end[k] - bucket_floats : 0;
        ar->requests[k] = MPI_REQUEST_NULL;
    }
    return RM_OK;
}

void rm_allreduce_free(rm_allreduce *ar)
{
    free(ar->bucket_start);
    free(ar->bucket_end);
    free(ar->requests);
    free(ar->trace_start_s);
    free(ar->trace_done_s);
    memset(ar, 0, sizeof *ar);
}

/* Timeline hook: marks the started buckets found complete. MPI_Test frees
 * a completed request (it becomes MPI_REQUEST_NULL, which later tests take
 * as complete), so this changes nothing for the reduction itself. */
static int trace_poll(rm_allreduce *ar, int all_done, rm_error *err)
{
    double now = rm_now_s();
    for (int k = 0; k < ar->next_bucket; k++) {
        if (ar->trace_done_s[k] > 0)
            continue;
        int done = all_done;
        if (!done)
            RM_MPI_CHECK(MPI_Test(&ar->requests[k], &done, MPI_STATUS_IGNORE), err);
        if (done)
            ar->trace_done_s[k] = now;
    }
    return RM_OK;
}

int rm_allreduce_ready_from(rm_allreduce *ar, long offset, rm_error *err)
{
    if (ar->comm_size == 1) /* the sum over one rank is the buffer itself */
        return RM_OK;
    while (ar->next_bucket < ar->n_buckets && ar->bucket_start[ar->next_bucket] >= offset) {
        int k = ar->next_bucket++;
        if (ar->trace) {
            ar->trace_start_s[k] = rm_now_s();
            ar->trace_done_s[k] = 0;
        }
        RM_MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, ar->grads + ar->bucket_start[k],
                                    (int)(ar->bucket_end[k] - ar->bucket_start[k]), MPI_FLOAT, MPI_SUM, ar->comm,
                                    &ar->requests[k]),
                     err);
    }
    /* Open MPI progresses non-blocking collectives only inside MPI calls:
     * poke the started ones so they advance while backward goes on. */
    if (ar->next_bucket > 0) {
        int done;
        RM_MPI_CHECK(MPI_Testall(ar->next_bucket, ar->requests, &done, MPI_STATUSES_IGNORE), err);
        if (ar->trace && trace_poll(ar, done, err) != RM_OK)
            return RM_ERR;
    }
    return RM_OK;
}

int rm_allreduce_finish(rm_allreduce *ar, rm_error *err)
{
    ar->wait_s = 0;
    if (ar->comm_size == 1)
        return RM_OK;
    if (rm_allreduce_ready_from(ar, 0, err) != RM_OK)
        return RM_ERR;
    double t0 = rm_now_s();
    if (rm_mpi_wait_all(ar->n_buckets, ar->requests, &ar->peer_wait, err) != RM_OK)
        return RM_ERR;
    ar->wait_s = rm_now_s() - t0;
    ar->next_bucket = 0;
    return RM_OK;
}

int rm_allreduce_trace_wait(rm_allreduce *ar, rm_error *err)
{
    if (ar->comm_size == 1 || !ar->trace)
        return RM_OK;
    if (rm_allreduce_ready_from(ar, 0, err) != RM_OK)
        return RM_ERR;
    double deadline = rm_now_s() + 1.0;
    for (;;) {
        int done;
        RM_MPI_CHECK(MPI_Testall(ar->n_buckets, ar->requests, &done, MPI_STATUSES_IGNORE), err);
        if (trace_poll(ar, done, err) != RM_OK)
            return RM_ERR;
        if (done || rm_now_s() > deadline)
            return RM_OK;
    }
}
