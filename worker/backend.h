/* The seam between the worker's orchestration and the device that runs
 * the model. A backend owns the parameters, gradients and optimizer state
 * on its device, runs one data-parallel training step (forward, backward,
 * gradient all-reduce over the workers' communicator, optimizer) and
 * evaluates. The worker loop, loader and protocol are the same for every
 * backend; the CPU backend (BLAS + MPI) is always built, the GPU backend
 * (cuBLAS + NCCL) when the CUDA toolkit is. */
#ifndef RINGMASTER_BACKEND_H
#define RINGMASTER_BACKEND_H

#include "config.h"
#include "error.h"
#include "model.h"
#include "step_phase.h"

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

typedef struct rm_step_stats {
    double loss_sum;
    long correct;
    double grad_norm;        /* of the averaged gradient */
    double compute_s;        /* forward + backward, including overlapped communication */
    double allreduce_wait_s; /* blocked waiting for gradients after backward */
    double optimizer_s;
    double param_gather_s; /* after update: ZeRO-1's all-gather, or the shared copy's barrier */
    double snapshot_s; /* checkpoint copy inside update_snapshot */
    /* Timeline: the worker sets trace_buckets before backward; a backend
     * that can time its gradient buckets then points these at bucket k's
     * start and completion times (rm_now_s clock) after reduce. */
    int trace_buckets;
    int n_buckets;
    const double *bucket_start_s, *bucket_done_s;
    const long *bucket_begin, *bucket_end; /* in floats */
    int buckets_scattered; /* the buckets were reduce-scattered (ZeRO-1), not all-reduced */
    /* ZeRO-1: the parameter all-gather at the end of update (its start on
     * the rm_now_s clock, its length, inside param_gather_s; 0: none), bytes */
    double gather_start_s, gather_s;
    long gather_bytes;
    /* A reduction in stages (hierarchical: the sum in this host's shared
     * memory, then the chain between hosts), for the timeline: each
     * stage's name, start (rm_now_s clock) and length; they may overlap. */
    int n_stages;
    const char *stage_name[2];
    double stage_start_s[2], stage_s[2];
} rm_step_stats;

typedef struct rm_backend rm_backend;

/* One training step is three calls, so the worker can act between them:
 *   backward  forward and backward; gradient buckets start their
 *             all-reduce as backward completes them
 *   reduce    waits for every bucket; the gradient is then the global
 *             mean, identical on every worker, and its norm is known
 *   update    the optimizer step (skipped by the worker for a non-finite
 *             gradient under nan_policy skip, or a rolled-back step) */
struct rm_backend {
    const char *name;
    int kind;    /* RM_BACKEND_CPU or RM_BACKEND_GPU */
    int transport; /* enum rm_transport: how gradients are summed (step_phase.h) */
    /* 1 when the reduction is ZeRO-1's reduce-scatter and all-gather
     * (train.zero 1 over MPI or NCCL, more than one worker). */
    int sharded;
    int n_state; /* state tensors per parameter: params + optimizer moments */
    long max_micro_batch; /* samples one forward holds (a micro-step, or an evaluation chunk) */
    /* Bytes of optimizer state (moments) this worker holds, as allocated:
     * all of them, or its slice under ZeRO-1 and shared-memory reduction. */
    size_t optimizer_state_bytes;
    /* Memory building the backend took, measured where the model lives:
     * device memory by the driver's count (GPU), or host memory (CPU): the
     * heap by the allocator's count plus this worker's part of the
     * node-shared windows (shm, hierarchical). Weights, gradients,
     * optimizer state, activations and scratch. */
    size_t memory_bytes;
    /* input, target: n samples as the model's batch holds them (model.h).
     * grad_scale: 1 / (global batch x the model's positions), so the
     * all-reduced sum is the global mean whatever the worker count.
     * poison: make the gradient non-finite (fault-injection knob). */
    int (*backward)(rm_backend *b, const void *input, const void *target, long n, float grad_scale, int poison,
                    rm_step_stats *stats, rm_error *err);
    int (*reduce)(rm_backend *b, rm_step_stats *stats, rm_error *err);
    int (*update)(rm_backend *b, double lr, rm_step_stats *stats, rm_error *err);
    /* update, plus the snapshot that `snapshot` would take right after it,
     * fused into the same pass where the device allows; the copy time is
     * added to stats->snapshot_s. */
    int (*update_snapshot)(rm_backend *b, double lr, long begin, long end, float *const *dst, long *opt_steps,
                           rm_step_stats *stats, rm_error *err);
    /* Optional (NULL: update_snapshot takes the copy at once): update, and
     * the same snapshot taken from the state as it stands after it, copied
     * a piece at a time while this worker waits on its peers in the next
     * step; snapshot_settle copies the rest. dst must stay untouched until
     * then. The worker settles before the state next changes (update,
     * update_snapshot, snapshot and restore settle first themselves).
     * Where this worker's waits between two updates would not hold the
     * copy, it is taken at once as update_snapshot takes it; *deferred
     * says which. */
    int (*update_deferred_snapshot)(rm_backend *b, double lr, long begin, long end, float *const *dst,
                                    long *opt_steps, int *deferred, rm_step_stats *stats, rm_error *err);
    /* Finishes a deferred snapshot (nothing when none is pending). */
    void (*snapshot_settle)(rm_backend *b);
    int (*evaluate)(rm_backend *b, const void *input, const void *target, long n, double *loss_sum, long *correct,
                    rm_error *err);
    /* Copies the parameters to host memory (n_params floats). */
    int (*read_params)(rm_backend *b, float *out, rm_error *err);
    /* Copies [begin, end) of each state tensor into dst[k] (host memory) and
     * the optimizer's update count into *opt_steps. */
    int (*snapshot)(rm_backend *b, long begin, long end, float *const *dst, long *opt_steps, rm_error *err);
    /* Replaces the whole state: state[k] holds n_params floats. */
    int (*restore)(rm_backend *b, const float *const *state, long opt_steps, rm_error *err);
    void (*destroy)(rm_backend *b);
    /* Optional (NULL: nothing to gain): the batch the next backward will
     * get, while this step still computes, so its copy to the device runs
     * behind the compute. The memory must stay unchanged until then. */
    int (*prefetch)(rm_backend *b, const void *input, const void *target, long n, rm_error *err);
    /* Optional: host memory that will hold batches (the loader's buffers),
     * page-locked so that batches copy to the device straight from it. The
     * memory must outlive the backend (destroy releases it first). Best
     * effort: memory that cannot be locked is copied through the backend's
     * own pinned buffers instead. */
    void (*pin_host)(rm_backend *b, void *ptr, size_t bytes);
};

/* Called now and then while a backend waits on its peers in a collective. */
typedef int (*rm_heartbeat_fn)(void *ctx, rm_error *err);

/* max_batch: the largest n passed to backward or evaluate. comm: the
 * workers' communicator (not MPI_COMM_WORLD, which holds the coordinator).
 * heartbeat (may be NULL) is called about every heartbeat_s while waiting
 * for gradients. The model must outlive the backend. */
rm_backend *rm_backend_cpu_create(const rm_model *model, const rm_config *cfg, long max_batch, MPI_Comm comm,
                                  rm_heartbeat_fn heartbeat, void *heartbeat_ctx, double heartbeat_s, rm_error *err);

/* The GPU backend (gpu/backend_gpu.c): one CUDA device per worker, picked
 * from the local rank, cuBLAS + kernels, NCCL over comm. Collective over
 * comm (device choice, NCCL communicator). */
rm_backend *rm_backend_gpu_create(const rm_model *model, const rm_config *cfg, long max_batch, MPI_Comm comm,
                                  rm_heartbeat_fn heartbeat, void *heartbeat_ctx, double heartbeat_s, rm_error *err);

/* Number of usable CUDA devices here (>= 1), or 0 with the reason in why
 * (no device, no driver, a build without the GPU backend). */
int rm_gpu_probe(char *why, size_t why_cap);

/* Host-to-device copy rate on the current device, from page-locked host
 * memory in copies of `bytes` (what `ringmaster doctor` reports for the
 * GPU backend's batch copies). An error in a build without the GPU. */
int rm_gpu_h2d_rate(size_t bytes, double *gb_s, rm_error *err);

/* The backend launch.backend asks for (backend_select.c): cpu; gpu, or a
 * clear error naming the worker that has no usable device; auto, the GPU
 * when every worker has one, else the CPU with a one-line notice. Every
 * worker takes the same, since their collectives must match: collective
 * over comm unless launch.backend is cpu. */
rm_backend *rm_backend_create(const rm_model *model, const rm_config *cfg, long max_batch, MPI_Comm comm,
                              rm_heartbeat_fn heartbeat, void *heartbeat_ctx, double heartbeat_s, rm_error *err);

#endif
