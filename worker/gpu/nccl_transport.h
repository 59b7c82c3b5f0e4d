/* The gradient all-reduce transport over NCCL (see grad_sync.h): buckets
 * of the device gradient are summed in place on a communication stream.
 * The gate is an event recorded on the compute stream that the
 * communication stream waits for, so a bucket starts when backward has
 * produced it, without the host waiting for the device. The poll checks
 * an event recorded after the last bucket and the communicator's
 * asynchronous error; abort is ncclCommAbort.
 *
 * Sharded (ZeRO-1, rm_nccl_transport_shard): a bucket is not all-reduced
 * but each worker's part of it (zero_slice.h) is reduced onto that worker,
 * one grouped ncclReduce per owner; after the optimizer the updated slices
 * go back to every worker by grouped ncclBroadcast from their owners. */
#ifndef RINGMASTER_NCCL_TRANSPORT_H
#define RINGMASTER_NCCL_TRANSPORT_H

#include "grad_sync.h"

#include <cuda_runtime_api.h>
#include <mpi.h>
#include <nccl.h>

typedef struct rm_nccl_transport {
    ncclComm_t comm; /* owned; NULL after an abort */
    cudaStream_t compute, comm_stream; /* compute not owned */
    float *grads;                      /* device, not owned */
    cudaEvent_t gate, done;
    int done_recorded;
    int rank, size;
    /* ZeRO-1: 0 until rm_nccl_transport_shard */
    int sharded;
    long n; /* floats in the sharded buffer */
    cudaEvent_t side_in, side_done; /* orders the norm and the gather */
    /* the last gather's start and end on the communication stream, timed */
    cudaEvent_t gather_t0, gather_t1;
    int gather_timed; /* a gather was enqueued since rm_nccl_gather_time */
} rm_nccl_transport;

/* Creates the communicator over the MPI communicator mpi_comm (rank 0 makes
 * the unique id and broadcasts it: collective over mpi_comm) on the
 * current device, and the communication stream. */
int rm_nccl_transport_init(rm_nccl_transport *t, MPI_Comm mpi_comm, cudaStream_t compute, float *grads,
                           rm_error *err);
void rm_nccl_transport_free(rm_nccl_transport *t);

/* Buckets of the n-float gradient are reduced onto the workers owning
 * them (ZeRO-1) instead of all-reduced. */
int rm_nccl_transport_shard(rm_nccl_transport *t, long n, rm_error *err);

/* Sums one double across the workers, in place on the device, ordered
 * after the compute stream's work so far; the compute stream's later work
 * waits for it. */
int rm_nccl_sum_double(rm_nccl_transport *t, double *dev, rm_error *err);

/* ZeRO-1: every worker's slice of params (n floats, device) to every
 * worker, after the compute stream's work so far (the optimizer); the
 * compute stream's later work (the next forward) waits for it on the
 * device, the host does not. */
int rm_nccl_gather_slices(rm_nccl_transport *t, float *params, rm_error *err);

/* The device time of the last gather, once the compute stream has passed
 * it (the caller has waited for later compute work): *seconds is 0 when no
 * gather was enqueued since the last call. */
int rm_nccl_gather_time(rm_nccl_transport *t, double *seconds, rm_error *err);

rm_grad_transport rm_nccl_transport_table(rm_nccl_transport *t);

#endif
