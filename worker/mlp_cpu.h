/* The MLP's forward and backward passes on the CPU with OpenBLAS sgemm.
 * Activations for one batch live in buffers owned here; parameters and
 * gradients are the caller's flat buffers laid out by rm_model_shape. */
#ifndef RINGMASTER_MLP_CPU_H
#define RINGMASTER_MLP_CPU_H

#include "error.h"
#include "model_shape.h"

#include <stdint.h>

typedef struct rm_mlp_cpu {
    rm_model_shape shape;
    long max_batch;
    float *acts[RM_MAX_LAYERS + 1]; /* acts[0] is the input (not owned); acts[L] = logits */
    float *delta_a, *delta_b;       /* backward scratch, max_batch x widest layer */
} rm_mlp_cpu;

int rm_mlp_cpu_init(rm_mlp_cpu *mlp, const rm_model_shape *shape, long max_batch, rm_error *err);
void rm_mlp_cpu_free(rm_mlp_cpu *mlp);

/* Deterministic initial weights from seed (He-uniform for ReLU, Xavier for
 * tanh; zero biases): the same on every rank. */
void rm_mlp_init_params(const rm_model_shape *shape, uint64_t seed, float *params);

/* Forward over n samples; returns the summed cross-entropy and the number
 * of correct predictions. */
void rm_mlp_cpu_forward(rm_mlp_cpu *mlp, const float *params, const float *x, const uint8_t *labels, long n,
                        double *loss_sum, long *correct);

/* Called during backward each time the gradient region [offset, n_params)
 * is final, so its all-reduce can start. Returns RM_OK or RM_ERR. */
typedef int (*rm_grad_ready_fn)(void *ctx, long offset, rm_error *err);

/* Backward after rm_mlp_cpu_forward on the same batch. Gradients of the
 * summed loss times grad_scale are written into grads (accumulate 0) or
 * added to them (accumulate 1, for micro-steps after the first). */
int rm_mlp_cpu_backward(rm_mlp_cpu *mlp, const float *params, float *grads, const uint8_t *labels, long n,
                        float grad_scale, int accumulate, rm_grad_ready_fn ready, void *ready_ctx, rm_error *err);

#endif
