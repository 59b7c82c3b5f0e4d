/* The gradient transport over MPI on host memory: each bucket an
 * MPI_Iallreduce (sum, in place). It is the GPU backend's NCCL path with
 * MPI in NCCL's place, so the bucket schedule, the wait, the heartbeat and
 * the watchdog of that path run under mpirun in CI, where there is no GPU.
 *
 * Sharded (ZeRO-1): rank r owns the slice [n*r/N, n*(r+1)/N) of the
 * buffer (the slice it writes into checkpoints). Each bucket is then an
 * MPI_Ireduce_scatter whose counts are the bucket's intersections with
 * the ranks' slices, so a rank receives the sum of only what it owns, in
 * place in its own slice of grads; the rest of grads is left undefined.
 * After the optimizer updated each slice, rm_grad_sync_mpi_gather puts
 * every rank's slice of the parameters on every rank (MPI_Iallgatherv). */
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
    /* sharded only (size > 0) */
    int rank, size;
    long n;
    int *slice_count, *slice_displ; /* rank r's slice, for the gather */
    int *bucket_counts;             /* size per started bucket: MPI reads them until it completes */
    long *moves;                    /* per started bucket: where its result lands, where it belongs, how many */
} rm_grad_sync_mpi;

/* grads (n floats, cut into n_buckets) must outlive the transport. */
int rm_grad_sync_mpi_init(rm_grad_sync_mpi *t, MPI_Comm comm, float *grads, int n_buckets, rm_error *err);
void rm_grad_sync_mpi_free(rm_grad_sync_mpi *t);

/* Sharded: grads holds n floats of which this rank of comm owns
 * [n*rank/size, n*(rank+1)/size). */
int rm_grad_sync_mpi_init_sharded(rm_grad_sync_mpi *t, MPI_Comm comm, float *grads, long n, int n_buckets,
                                  rm_error *err);

/* Sharded: every rank's slice of params (n floats) to every rank, in
 * place, waiting with heartbeats. Collective. */
int rm_grad_sync_mpi_gather(rm_grad_sync_mpi *t, float *params, const rm_peer_wait *wait, rm_error *err);

/* The transport's table, with t as its context. */
rm_grad_transport rm_grad_sync_mpi_transport(rm_grad_sync_mpi *t);

/* Waits for whatever is still in flight (after an abort, MPI cannot cancel
 * a collective: the peers must still arrive). */
int rm_grad_sync_mpi_drain(rm_grad_sync_mpi *t, rm_error *err);

#endif
