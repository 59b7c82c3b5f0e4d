/* Bucketed gradient all-reduce over MPI for the CPU backend.
 *
 * The flat gradient buffer is cut into buckets from its end, because
 * backward produces gradients from the last layer to the first. When the
 * compute says "everything from offset X to the end is final", every bucket
 * inside that range starts as MPI_Iallreduce (sum) at once, so communication
 * runs while the earlier layers are still being differentiated. Every rank
 * starts the buckets in the same order, as MPI requires. */
#ifndef RINGMASTER_ALLREDUCE_H
#define RINGMASTER_ALLREDUCE_H

#include "error.h"
#include "mpi_wait.h"

#include <mpi.h>

typedef struct rm_allreduce {
    MPI_Comm comm;
    int comm_size;
    float *grads; /* not owned */
    long n;
    int n_buckets;
    /* Timeline hook: while `trace` is set, bucket k's all-reduce is timed
     * from its start to the first test that finds it complete (rm_now_s
     * clock; done 0 = not seen complete). Costs nothing when off. */
    int trace;
    double *trace_start_s, *trace_done_s;
    long *bucket_start; /* bucket k: [bucket_start[k], bucket_end[k]), k = 0 is the buffer's tail */
    long *bucket_end;
    MPI_Request *requests;
    int next_bucket;   /* first bucket not yet started this step */
    double wait_s;     /* time blocked in rm_allreduce_finish this step */
    rm_peer_wait peer_wait; /* heartbeat while waiting for peers */
} rm_allreduce;

int rm_allreduce_init(rm_allreduce *ar, MPI_Comm comm, float *grads, long n, long bucket_floats, rm_error *err);
void rm_allreduce_free(rm_allreduce *ar);

/* Starts every bucket lying wholly in [offset, n) that has not started. */
int rm_allreduce_ready_from(rm_allreduce *ar, long offset, rm_error *err);

/* Starts what is left and waits for all buckets: grads then hold the sum
 * over ranks. Records the blocked time in ar->wait_s. */
int rm_allreduce_finish(rm_allreduce *ar, rm_error *err);

/* Timeline hook, for a traced step before rm_allreduce_finish: waits
 * bucket by bucket so that each one's completion time is seen, for at most
 * a second (rm_allreduce_finish then waits for the rest, heartbeats
 * included). */
int rm_allreduce_trace_wait(rm_allreduce *ar, rm_error *err);

#endif
