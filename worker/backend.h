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
#include "model_shape.h"

#include <mpi.h>
#include <stdint.h>

typedef struct rm_step_stats {
    double loss_sum;
    long correct;
    double compute_s;        /* forward + backward, including overlapped communication */
    double allreduce_wait_s; /* blocked waiting for gradients after backward */
    double optimizer_s;
} rm_step_stats;

typedef struct rm_backend rm_backend;

struct rm_backend {
    const char *name;
    /* x: n x input_dim floats, labels: n bytes. grad_scale: 1 / global batch,
     * so the all-reduced sum is the global mean whatever the worker count. */
    int (*train_step)(rm_backend *b, const float *x, const uint8_t *labels, long n, float grad_scale, double lr,
                      rm_step_stats *stats, rm_error *err);
    int (*evaluate)(rm_backend *b, const float *x, const uint8_t *labels, long n, double *loss_sum, long *correct,
                    rm_error *err);
    /* Copies the parameters to host memory (n_params floats). */
    int (*read_params)(rm_backend *b, float *out, rm_error *err);
    void (*destroy)(rm_backend *b);
};

/* max_batch: the largest n passed to train_step or evaluate. comm: the
 * workers' communicator (not MPI_COMM_WORLD, which holds the coordinator). */
rm_backend *rm_backend_cpu_create(const rm_model_shape *shape, const rm_config *cfg, long max_batch, MPI_Comm comm,
                                  rm_error *err);

#endif
