/* The model seam, GPU side: each model's forward and backward on one CUDA
 * device, as one table per model (model_cpu.h is the CPU side). The GPU
 * backend runs whichever table the job's model has and knows nothing else
 * about it: batches reach it as the model's input_bytes and target_bytes
 * per sample (model.h), copied to the device as they are. */
#ifndef RINGMASTER_MODEL_GPU_H
#define RINGMASTER_MODEL_GPU_H

#include "error.h"
#include "mlp_cpu.h" /* rm_grad_ready_fn */
#include "model.h"

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <stdint.h>

typedef struct rm_model_gpu_ops {
    /* Device buffers for up to max_batch samples on the current device,
     * products in `precision` (enum rm_precision), attention (enum
     * rm_attention; models without one ignore it), every launch on stream
     * (blas is bound to it; neither is owned). *impl is freed by destroy. */
    int (*create)(const rm_model *m, long max_batch, int precision, int attention, cublasHandle_t blas,
                  cudaStream_t stream, void **impl, rm_error *err);
    void (*destroy)(void *impl);
    /* Initial weights on the host, a pure function of seed: the CPU
     * backend's, bit for bit. */
    void (*init_params)(const rm_model *m, uint64_t seed, float *params);
    /* Enqueues the forward over n samples. host_input, host_target: the
     * batch on the host (for checks and host-side plans); dev_input,
     * dev_target: the same bytes on the device. params: device fp32;
     * params16: the bf16 copy (bf16 only). The summed loss and the correct
     * count land in the device scalars `results` gives. With want_grad,
     * also grad_scale x the loss gradient backward starts from. */
    int (*forward)(void *impl, const float *params, const void *params16, const void *host_input,
                   const void *host_target, const void *dev_input, const void *dev_target, long n, int want_grad,
                   float grad_scale, rm_error *err);
    /* After a forward with want_grad: enqueues grad_scale x d(loss)/d(params),
     * written (accumulate 0) or added (1) into grads (device); ready, when
     * not NULL, hears each time the enqueued work produces the final
     * gradient of [offset, n_params). */
    int (*backward)(void *impl, const float *params, const void *params16, float *grads, int accumulate,
                    rm_grad_ready_fn ready, void *ready_ctx, rm_error *err);
    /* The device scalars every forward writes. */
    void (*results)(void *impl, const double **loss_sum, const long long **correct);
    /* Whether backward can add into the gradient (train.grad_accum > 1). */
    int accumulates;
} rm_model_gpu_ops;

/* The model's GPU table, or NULL with the reason when the model has none. */
const rm_model_gpu_ops *rm_model_gpu_ops_for(const rm_model *m, rm_error *err);

#endif
