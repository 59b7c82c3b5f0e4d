/* The model seam, CPU side: each model's forward and backward on the host
 * (OpenBLAS sgemm), as one table per model. The CPU backend runs whichever
 * table the job's model has and knows nothing else about it. */
#ifndef RINGMASTER_MODEL_CPU_H
#define RINGMASTER_MODEL_CPU_H

#include "error.h"
#include "model.h"
#include "mlp_cpu.h" /* rm_grad_ready_fn */

#include <stdint.h>

typedef struct rm_model_cpu_ops {
    /* Activations for up to max_batch samples; *impl is freed by destroy. */
    int (*create)(const rm_model *m, long max_batch, int threads, void **impl, rm_error *err);
    void (*destroy)(void *impl);
    /* Initial weights, a pure function of seed: the same on every rank. */
    void (*init_params)(const rm_model *m, uint64_t seed, float *params);
    /* input, target: n samples as the model's batch holds them
     * (model.h: input_bytes, target_bytes per sample). Sums the loss over
     * the n x positions predictions; *correct counts right predictions
     * where the model has classes (0 otherwise). */
    int (*forward)(void *impl, const float *params, const void *input, const void *target, long n, double *loss_sum,
                   long *correct, rm_error *err);
    /* After forward on the same batch: grad_scale x d(loss_sum)/d(params)
     * written (accumulate 0) or added (1) into grads; ready, when not
     * NULL, hears each time [offset, n_params) is final. */
    int (*backward)(void *impl, const float *params, float *grads, const void *target, long n, float grad_scale,
                    int accumulate, rm_grad_ready_fn ready, void *ready_ctx, rm_error *err);
} rm_model_cpu_ops;

/* The model's CPU table, or NULL with the reason when the model has none. */
const rm_model_cpu_ops *rm_model_cpu_ops_for(const rm_model *m, rm_error *err);

#endif
