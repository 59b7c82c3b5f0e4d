/* The MLP's forward and backward passes on one CUDA device: cuBLAS for the
 * matrix products, the kernels of gpu_ops.h for the rest, everything
 * enqueued on one compute stream (nothing here waits for the device).
 * Same layout and formulas as mlp_cpu.c, so both backends compute the same
 * model; precision picks how the products run:
 *   fp32  plain fp32 products
 *   tf32  fp32 storage, tensor-core products with TF32 inputs
 *   bf16  bf16 copies of weights, activations and deltas feed the
 *         products, which accumulate and output in fp32; the fp32 master
 *         weights, gradients and optimizer state stay fp32. */
#ifndef RINGMASTER_MLP_GPU_H
#define RINGMASTER_MLP_GPU_H

#include "error.h"
#include "mlp_cpu.h"
#include "model_shape.h"

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <stdint.h>

typedef struct rm_mlp_gpu {
    rm_model_shape shape;
    long max_batch;
    int precision; /* enum rm_precision */
    cublasHandle_t blas; /* not owned; bound to stream */
    cudaStream_t stream; /* not owned */
    float *acts[RM_MAX_LAYERS + 1]; /* acts[0]: the input (not owned); acts[L]: logits */
    void *acts16[RM_MAX_LAYERS];    /* bf16: the inputs of each layer's product (acts16[0] owned too) */
    float *delta_a, *delta_b;       /* backward scratch, max_batch x widest */
    void *delta16;                  /* bf16 copy of the current delta */
    double *row_loss;
    int *row_correct;
    double *loss_sum;        /* device scalars written by every forward */
    long long *correct;
} rm_mlp_gpu;

/* Device buffers for batches up to max_batch, on the current device. */
int rm_mlp_gpu_init(rm_mlp_gpu *mlp, const rm_model_shape *shape, long max_batch, int precision,
                    cublasHandle_t blas, cudaStream_t stream, rm_error *err);
void rm_mlp_gpu_free(rm_mlp_gpu *mlp);

/* Enqueues the forward pass over n samples of x (device, n x input_dim)
 * with params (device, fp32) and params16 (device bf16 copy; bf16 only).
 * The summed loss and the correct count land in mlp->loss_sum and
 * mlp->correct. With want_grad, also the loss gradient scaled by
 * grad_scale, ready for rm_mlp_gpu_backward. */
int rm_mlp_gpu_forward(rm_mlp_gpu *mlp, const float *params, const void *params16, const float *x,
                       const uint8_t *labels, long n, int want_grad, float grad_scale, rm_error *err);

/* Enqueues backward after a forward with want_grad: gradients of the
 * summed loss times grad_scale are written (not accumulated) into grads
 * (device). ready(ctx, offset) is called each time the enqueued work
 * produces the final gradient of [offset, n_params), so a collective on it
 * may be enqueued behind that work. */
int rm_mlp_gpu_backward(rm_mlp_gpu *mlp, const float *params, const void *params16, float *grads, long n,
                        rm_grad_ready_fn ready, void *ready_ctx, rm_error *err);

#endif
