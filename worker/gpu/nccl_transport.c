#include "nccl_transport.h"

#include "gpu_check.h"
#include "log.h"
#include "mpi_check.h"
#include "zero_slice.h"

#include <string.h>

int rm_nccl_transport_init(rm_nccl_transport *t, MPI_Comm mpi_comm, cudaStream_t compute, float *grads,
                           rm_error *err)
{
    memset(t, 0, sizeof *t);
    t->compute = compute;
    t->grads = grads;
    RM_MPI_CHECK(MPI_Comm_rank(mpi_comm, &t->rank), err);
    RM_MPI_CHECK(MPI_Comm_size(mpi_comm, &t->size), err);
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
    RM_CUDA_CHECK(cudaEventCreateWithFlags(&t->side_in, cudaEventDisableTiming), err);
    RM_CUDA_CHECK(cudaEventCreateWithFlags(&t->side_done, cudaEventDisableTiming), err);
    RM_CUDA_CHECK(cudaEventCreate(&t->gather_t0), err);
    RM_CUDA_CHECK(cudaEventCreate(&t->gather_t1), err);
    RM_NCCL_CHECK(ncclCommInitRank(&t->comm, t->size, id, t->rank), err);
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
    if (t->side_in)
        cudaEventDestroy(t->side_in);
    if (t->side_done)
        cudaEventDestroy(t->side_done);
    if (t->gather_t0)
        cudaEventDestroy(t->gather_t0);
    if (t->gather_t1)
        cudaEventDestroy(t->gather_t1);
    if (t->comm_stream)
        cudaStreamDestroy(t->comm_stream);
    memset(t, 0, sizeof *t);
}

int rm_nccl_transport_shard(rm_nccl_transport *t, long n, rm_error *err)
{
    if (n < t->size)
        return rm_fail(err, "ZeRO-1 over %d workers needs at least that many parameters; the model has %ld", t->size,
                       n);
    t->sharded = 1;
    t->n = n;
    return RM_OK;
}

/* ncclGroupEnd even when a call in the group failed, so no group is left
 * open; the first error is the one reported. */
static int end_group(rm_nccl_transport *t, ncclResult_t rc, const char *what, rm_error *err)
{
    ncclResult_t end_rc = ncclGroupEnd();
    if (rc == ncclSuccess)
        rc = end_rc;
    if (rc != ncclSuccess)
        return rm_fail(err, "rank %d on %s: %s failed: %s", t->rank, rm_log_host(), what, ncclGetErrorString(rc));
    return RM_OK;
}

/* The comm stream's next work after the compute stream's work so far. */
static int side_begin(rm_nccl_transport *t, rm_error *err)
{
    RM_CUDA_CHECK(cudaEventRecord(t->side_in, t->compute), err);
    RM_CUDA_CHECK(cudaStreamWaitEvent(t->comm_stream, t->side_in, 0), err);
    return RM_OK;
}

/* The compute stream's next work after the comm stream's work so far. */
static int side_end(rm_nccl_transport *t, rm_error *err)
{
    RM_CUDA_CHECK(cudaEventRecord(t->side_done, t->comm_stream), err);
    RM_CUDA_CHECK(cudaStreamWaitEvent(t->compute, t->side_done, 0), err);
    return RM_OK;
}

int rm_nccl_sum_double(rm_nccl_transport *t, double *dev, rm_error *err)
{
    if (!t->comm)
        return rm_fail(err, "rank %d: the NCCL communicator was aborted", t->rank);
    if (side_begin(t, err) != RM_OK)
        return RM_ERR;
    RM_NCCL_CHECK(ncclAllReduce(dev, dev, 1, ncclDouble, ncclSum, t->comm, t->comm_stream), err);
    return side_end(t, err);
}

int rm_nccl_gather_slices(rm_nccl_transport *t, float *params, rm_error *err)
{
    if (!t->comm)
        return rm_fail(err, "rank %d: the NCCL communicator was aborted", t->rank);
    if (!t->sharded)
        return rm_fail(err, "rank %d: parameter gather on a transport that is not sharded", t->rank);
    if (side_begin(t, err) != RM_OK)
        return RM_ERR;
    RM_CUDA_CHECK(cudaEventRecord(t->gather_t0, t->comm_stream), err);
    /* In place: each owner's slice is its send buffer and every other
     * worker's receive buffer at the same offset. */
    ncclResult_t rc = ncclGroupStart();
    if (rc != ncclSuccess)
        return rm_fail(err, "rank %d: ncclGroupStart failed: %s", t->rank, ncclGetErrorString(rc));
    for (int r = 0; r < t->size && rc == ncclSuccess; r++) {
        long lo, hi;
        rm_zero_slice(t->n, t->size, r, &lo, &hi);
        if (hi > lo)
            rc = ncclBroadcast(params + lo, params + lo, (size_t)(hi - lo), ncclFloat, r, t->comm, t->comm_stream);
    }
    if (end_group(t, rc, "ZeRO-1 parameter gather (ncclBroadcast)", err) != RM_OK)
        return RM_ERR;
    RM_CUDA_CHECK(cudaEventRecord(t->gather_t1, t->comm_stream), err);
    t->gather_timed = 1;
    return side_end(t, err);
}

int rm_nccl_gather_time(rm_nccl_transport *t, double *seconds, rm_error *err)
{
    *seconds = 0;
    if (!t->gather_timed)
        return RM_OK;
    float ms = 0;
    RM_CUDA_CHECK(cudaEventElapsedTime(&ms, t->gather_t0, t->gather_t1), err);
    t->gather_timed = 0;
    *seconds = ms / 1e3;
    return RM_OK;
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
    if (t->sharded) {
        /* each owner's part of the bucket summed onto its owner only */
        ncclResult_t rc = ncclGroupStart();
        if (rc != ncclSuccess)
            return rm_fail(err, "rank %d: ncclGroupStart failed: %s", t->rank, ncclGetErrorString(rc));
        for (int r = 0; r < t->size && rc == ncclSuccess; r++) {
            long a, b;
            if (rm_zero_bucket_part(t->n, t->size, r, offset, count, &a, &b))
                rc = ncclReduce(t->grads + a, t->grads + a, (size_t)(b - a), ncclFloat, ncclSum, r, t->comm,
                                t->comm_stream);
        }
        if (end_group(t, rc, "ZeRO-1 gradient reduce (ncclReduce)", err) != RM_OK)
            return RM_ERR;
    } else {
        RM_NCCL_CHECK(ncclAllReduce(t->grads + offset, t->grads + offset, (size_t)count, ncclFloat, ncclSum,
                                    t->comm, t->comm_stream),
                      err);
    }
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
