/* The gradient all-reduce transport over MPI on host memory: each bucket
 * an MPI_Iallreduce (sum, in place). It is the GPU backend's NCCL path with
 * MPI in NCCL's place, so the bucket schedule, the wait, the heartbeat and
 * the watchdog of that path run under mpirun in CI, where there is no GPU. */
#ifndef RINGMASTER_GRAD_SYNC_MPI_H
#define RINGMASTER_GRAD_SYNC_MPI_H

#include "grad_sync.h"

#include <mpi.h>

typedef struct rm_grad_sync_mpi {
    MPI_Comm comm;
    float *grads; /* not owned */
    int n_buckets;
    MPI_Request *requests; /* one per bucket, in start order */
    int started;
} rm_grad_sync_mpi;

/* grads (n floats, cut into n_buckets) must outlive the transport. */
int rm_grad_sync_mpi_init(rm_grad_sync_mpi *t, MPI_Comm comm, float *grads, int n_buckets, rm_error *err);
void rm_grad_sync_mpi_free(rm_grad_sync_mpi *t);

/* The transport's table, with t as its context. */
rm_grad_transport rm_grad_sync_mpi_transport(rm_grad_sync_mpi *t);

/* Waits for whatever is still in flight (after an abort, MPI cannot cancel
 * a collective: the peers must still arrive). */
int rm_grad_sync_mpi_drain(rm_grad_sync_mpi *t, rm_error *err);

#endif
