/* The gradient all-reduce transport over NCCL (see grad_sync.h): buckets
 * of the device gradient are summed in place on a communication stream.
 * The gate is an event recorded on the compute stream that the
 * communication stream waits for, so a bucket starts when backward has
 * produced it, without the host waiting for the device. The poll checks
 * an event recorded after the last bucket and the communicator's
 * asynchronous error; abort is ncclCommAbort. */
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
    int rank;
} rm_nccl_transport;

/* Creates the communicator over the MPI communicator mpi_comm (rank 0 makes
 * the unique id and broadcasts it: collective over mpi_comm) on the
 * current device, and the communication stream. */
int rm_nccl_transport_init(rm_nccl_transport *t, MPI_Comm mpi_comm, cudaStream_t compute, float *grads,
                           rm_error *err);
void rm_nccl_transport_free(rm_nccl_transport *t);

rm_grad_transport rm_nccl_transport_table(rm_nccl_transport *t);

#endif
