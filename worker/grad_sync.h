/* The gradient engine: bucketed all-reduce, independent of where the
 * gradient lives and what moves it: the schedule (which bucket starts
 * when), the wait, the heartbeat while waiting, the watchdog and the
 * timeline's bucket times. A transport does the moving: NCCL on device
 * memory for the GPU backend (gpu/nccl_transport.c), MPI on host memory
 * for the CPU backend (grad_sync_mpi.c), which is also how CI runs the
 * GPU backend's schedule over several ranks without a GPU. (On one node
 * the CPU backend may sum through shared memory instead, shm_reduce.h:
 * there backward writes straight into the shared segments, so nothing
 * is moved bucket by bucket.)
 *
 * The flat gradient buffer is cut into buckets from its end, because
 * backward produces gradients from the last layer to the first. When the
 * compute says "everything in [offset, n) has been produced", every bucket
 * wholly inside that range is started at once, behind one gate (for the
 * GPU: an event recorded on the compute stream that the communication
 * stream waits for), so communication runs while backward goes on. Every
 * rank starts the same buckets in the same order, as NCCL and MPI require.
 *
 * The transport sums. Averaging over the global batch is the compute's
 * part: it scales the loss gradient by 1 / global batch, so the sum over
 * ranks is the global mean for any number of ranks. */
#ifndef RINGMASTER_GRAD_SYNC_H
#define RINGMASTER_GRAD_SYNC_H

#include "error.h"
#include "mpi_wait.h"

typedef struct rm_grad_transport {
    const char *name; /* "nccl", "mpi": for messages */
    void *ctx;
    /* Called once before the buckets of one ready_from call start: what
     * the compute has enqueued so far is what they may read. May be NULL. */
    int (*gate)(void *ctx, rm_error *err);
    /* Starts the in-place sum over ranks of count floats at offset. */
    int (*start)(void *ctx, int bucket, long offset, long count, rm_error *err);
    /* After the last start of a step; must not block. Sets *done once
     * every started bucket has completed and its result is visible to the
     * compute that follows. */
    int (*poll)(void *ctx, int *done, rm_error *err);
    /* The watchdog gave up: end what is in flight so nothing waits on it. */
    void (*abort)(void *ctx);
    /* Optional, for the timeline: sets *done once bucket k (the k-th
     * started this step) has completed; must not block. Without it every
     * bucket is taken as done when the last one is. */
    int (*bucket_done)(void *ctx, int k, int *done, rm_error *err);
} rm_grad_transport;

typedef struct rm_grad_sync {
    long n;
    int n_buckets;
    long *bucket_start; /* bucket k: [bucket_start[k], bucket_end[k]); k = 0 is the buffer's tail */
    long *bucket_end;
    int next_bucket; /* first bucket not yet started this step */
    int rank;        /* in the workers' communicator, for messages */
    rm_grad_transport tp; /* tp.start == NULL: one rank, nothing to move */
    /* Heartbeats while waiting, so that a rank waiting for a stuck peer is
     * not taken for the stuck one (heartbeat may be NULL). */
    rm_peer_wait peer_wait;
    /* Seconds rm_grad_sync_finish waits before it aborts the transport and
     * fails naming this rank; 0 waits forever. */
    double watchdog_s;
    double wait_s; /* blocked in the last rm_grad_sync_finish */
    /* Timeline: set trace before a step's first ready_from; bucket k then
     * gets its start and completion time (rm_now_s clock). */
    int trace;
    double *trace_start_s, *trace_done_s;
    long steps;    /* completed syncs */
    int aborted;
} rm_grad_sync;

/* Cuts n floats into buckets of at most bucket_floats from the end. The
 * transport is copied; tp may be NULL (one rank: the buffer is the sum). */
int rm_grad_sync_init(rm_grad_sync *gs, long n, long bucket_floats, int rank, const rm_grad_transport *tp,
                      rm_error *err);
void rm_grad_sync_free(rm_grad_sync *gs);

/* The gradient in [offset, n) is produced (or enqueued to be): starts
 * every bucket lying wholly in it that has not started. */
int rm_grad_sync_ready_from(rm_grad_sync *gs, long offset, rm_error *err);

/* Starts what is left and waits for every bucket, heartbeating, until the
 * transport says done or watchdog_s passes (then the transport is aborted
 * and the error names this rank). Records the blocked time in wait_s. */
int rm_grad_sync_finish(rm_grad_sync *gs, rm_error *err);

#endif
