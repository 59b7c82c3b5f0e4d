#include "nccl_transport.h"

#include "gpu_check.h"
#include "log.h"
#include "mpi_check.h"

#include <string.h>

int rm_nccl_transport_init(rm_nccl_transport *t, MPI_Comm mpi_comm, cudaStream_t compute, float *grads,
                           rm_error *err)
{
    memset(t, 0, sizeof *t);
    t->compute = compute;
    t->grads = grads;
    int size;
    RM_MPI_CHECK(MPI_Comm_rank(mpi_comm, &t->rank), err);
    RM_MPI_CHECK(MPI_Comm_size(mpi_comm, &size), err);
    ncclUniqueId id;
    memset(&id, 0, sizeof id);
    /* Every rank reaches the broadcast even if rank 0 failed to make an id,
     * so nobody waits in it; then all fail together. */
    int id_ok = 1;
    ncclResult_t id_rc = ncclSuccess;
    if (t->rank == 0 && (id_rc = ncclGetUniqueId(&id)) != ncclSuccess) {
        id_ok = 0;
        rm_error_log("worker 0: ncclGetUniqueId failed: %s", ncclGetErrorString(id_rc));
    }
    RM_MPI_CHECK(MPI_Bcast(&id_ok, 1, MPI_INT, 0, mpi_comm), err);
    if (!id_ok)
        return rm_fail(err, "ncclGetUniqueId failed on worker 0 (see its message); no NCCL communicator");
    RM_MPI_CHECK(MPI_Bcast(&id, (int)sizeof id, MPI_BYTE, 0, mpi_comm), err);
    RM_CUDA_CHECK(cudaStreamCreateWithFlags(&t->comm_stream, cudaStreamNonBlocking), err);
    RM_CUDA_CHECK(cudaEventCreateWithFlags(&t->gate, cudaEventDisableTiming), err);
    RM_CUDA_CHECK(cudaEventCreateWithFlags(&t->done, cudaEventDisableTiming), err);
    RM_NCCL_CHECK(ncclCommInitRank(&t->comm, size, id, t->rank), err);
    return RM_OK;
}

/* Safe on a partly initialised transport. */
void rm_nccl_transport_free(rm_nccl_transport *t)
{
    if (t->comm)
        ncclCommDestroy(t->comm);
    if (t->gate)
        cudaEventDestroy(t->gate);
    if (t->done)
        cudaEventDestroy(t->done);
    if (t->comm_stream)
        cudaStreamDestroy(t->comm_stream);
    memset(t, 0, sizeof *t);
}

/* cudaStreamWaitEvent takes the event's state at the time of the call, so
 * one event serves every gate of a step. */
static int nccl_gate(void *ctx, rm_error *err)
{
    rm_nccl_transport *t = ctx;
    RM_CUDA_CHECK(cudaEventRecord(t->gate, t->compute), err);
    RM_CUDA_CHECK(cudaStreamWaitEvent(t->comm_stream, t->gate, 0), err);
    return RM_OK;
}

static int nccl_start(void *ctx, int bucket, long offset, long count, rm_error *err)
{
    rm_nccl_transport *t = ctx;
    if (!t->comm)
        return rm_fail(err, "rank %d: all-reduce bucket %d after the NCCL communicator was aborted", t->rank, bucket);
    RM_NCCL_CHECK(ncclAllReduce(t->grads + offset, t->grads + offset, (size_t)count, ncclFloat, ncclSum, t->comm,
                                t->comm_stream),
                  err);
    t->done_recorded = 0;
    return RM_OK;
}

static int nccl_poll(void *ctx, int *done, rm_error *err)
{
    rm_nccl_transport *t = ctx;
    *done = 0;
    if (!t->comm)
        return rm_fail(err, "rank %d: the NCCL communicator was aborted", t->rank);
    if (!t->done_recorded) {
        RM_CUDA_CHECK(cudaEventRecord(t->done, t->comm_stream), err);
        t->done_recorded = 1;
    }
    cudaError_t q = cudaEventQuery(t->done);
    if (q == cudaSuccess) {
        /* What runs next on the compute stream (norm, optimizer) reads the
         * summed gradient. */
        RM_CUDA_CHECK(cudaStreamWaitEvent(t->compute, t->done, 0), err);
        t->done_recorded = 0;
        *done = 1;
        return RM_OK;
    }
    if (q != cudaErrorNotReady)
        RM_CUDA_CHECK(q, err);
    ncclResult_t async_rc = ncclSuccess;
    RM_NCCL_CHECK(ncclCommGetAsyncError(t->comm, &async_rc), err);
    if (async_rc != ncclSuccess && async_rc != ncclInProgress)
        return rm_fail(err, "rank %d on %s: NCCL all-reduce failed: %s (%s)", t->rank, rm_log_host(),
                       ncclGetErrorString(async_rc), ncclGetLastError(t->comm));
    return RM_OK;
}

static void nccl_abort(void *ctx)
{
    rm_nccl_transport *t = ctx;
    if (!t->comm)
        return;
    rm_error_log("rank %d: aborting the NCCL communicator", t->rank);
    ncclCommAbort(t->comm);
    t->comm = NULL;
}

rm_grad_transport rm_nccl_transport_table(rm_nccl_transport *t)
{
    return (rm_grad_transport){
        .name = "nccl",
        .ctx = t,
        .gate = nccl_gate,
        .start = nccl_start,
        .poll = nccl_poll,
        .abort = nccl_abort,
    };
}
