/* GPT-2's forward and backward passes on one CUDA device: cuBLAS for every
 * product, the kernels of gpu_ops.h for the rest, everything enqueued on
 * one compute stream. Same model, parameter layout (rm_gpt_layout) and
 * formulas as worker/gpt_cpu.c, so checkpoints are the same bytes on both
 * backends and the two agree to rounding.
 *
 * Precision: fp32 (plain fp32 products), tf32 (fp32 storage, tensor-core
 * products with TF32 inputs, attention's included) or bf16: the four
 * products of every block take bf16 operands (the activation or gradient
 * cast just before, the weights' bf16 copy the backend keeps) and
 * accumulate and write fp32; attention's and the tied classifier's
 * products run as under tf32; activations, gradients, master weights and
 * optimizer state stay fp32.
 *
 * Attention (train.attention), one of two paths:
 *   simple  the full T x T scores per (sequence, head) from strided batched
 *           products, a causal softmax kernel, and the probabilities kept
 *           for backward (heads x T x T floats per sequence and layer);
 *   fused   flash_attn.cu: the scores never stored; forward keeps each
 *           row's log-sum-exp (heads x T floats per sequence and layer) and
 *           backward recomputes the probabilities from it. fp32 arithmetic
 *           in either precision; head sizes 16, 32 and 64.
 * The simple path is the reference the tests hold the fused one to.
 *
 * train.recompute as on the CPU (gpt_cpu.h): the layer buffers it drops
 * are scratch shared by all layers, refilled in backward by the same
 * kernels, so the gradients are the same bits.
 *
 * Deterministic: no float atomics anywhere; the same inputs give the same
 * bits on the same device and library versions. */
#ifndef RINGMASTER_GPT_GPU_H
#define RINGMASTER_GPT_GPU_H

#include "error.h"
#include "gpt_cpu.h" /* rm_gpt_cpu_layer */
#include "gpt_layout.h"
#include "mlp_cpu.h" /* rm_grad_ready_fn */

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <stdint.h>

/* One layer's activations: the CPU model's list (rm_gpt_cpu_layer), in
 * device memory. */
typedef rm_gpt_cpu_layer rm_gpt_gpu_layer;

typedef struct rm_gpt_gpu {
    rm_gpt_layout g;
    long max_batch;
    int precision;       /* enum rm_precision */
    int attention;       /* enum rm_attention */
    int recompute;       /* enum rm_recompute: what backward recomputes (gpt_cpu.h's layer says which buffers) */
    cublasHandle_t blas; /* not owned; bound to stream */
    cudaStream_t stream; /* not owned */
    long n;              /* sequences of the last forward with want_grad; 0: nothing to differentiate */
    float *encoded;
    rm_gpt_gpu_layer layer[RM_GPT_MAX_LAYERS];
    float *lnf, *lnf_mean, *lnf_rstd;
    float *logits; /* [max_batch x T x padded_vocab]; forward with want_grad leaves d(loss)/d(logits) */
    float *fc_pre, *dres, *dc, *dqkv;
    float *datt;   /* backward: simple, one sequence's [heads x T x T]; fused, D [max_batch x heads x T] */
    float *arena;  /* every float buffer above, one allocation */
    void *act16[2]; /* bf16: a product's operands cast, BT x 4C each */
    const float *params;  /* this pass's weights, and */
    const void *params16; /* their bf16 copy (bf16; else NULL) */
    double *row_loss, *loss_sum;
    int *row_zero;       /* [max_batch x T] zeros: no accuracy count for a language model */
    long long *correct;  /* always 0 */
    /* The encoder's backward plan, built on the host from the last
     * forward's tokens: distinct tokens, where each one's positions start,
     * and the positions sorted by token (ascending within a token). One
     * buffer: uniq [BT], starts [BT + 1], pos [BT]. */
    int32_t *plan_host; /* pinned */
    int32_t *plan_dev;
    int32_t *token_cursor; /* host, [vocab] */
    long n_uniq;
    cudaEvent_t plan_copied; /* the last upload of plan_host is done: it may be rewritten */
} rm_gpt_gpu;

/* Device buffers for up to max_batch sequences on the current device
 * (about the CPU model's activations: see gpt_cpu.h). Free with
 * rm_gpt_gpu_free, safe on a zeroed or failed-init struct. */
int rm_gpt_gpu_init(rm_gpt_gpu *m, const rm_gpt_layout *g, long max_batch, int precision, int attention,
                    int recompute, cublasHandle_t blas, cudaStream_t stream, rm_error *err);
void rm_gpt_gpu_free(rm_gpt_gpu *m);

/* The device bytes rm_gpt_gpu_init allocates for this shape (host
 * arithmetic: no device needed); common/gpt_memory.c counts the same. */
size_t rm_gpt_gpu_planned_bytes(const rm_gpt_layout *g, long max_batch, int precision, int attention, int recompute);

/* host_inputs, host_targets: the n x T token ids on the host, checked
 * against the vocabulary before anything is enqueued (the message names the
 * bad id and its position); dev_inputs, dev_targets: the same ids on the
 * device. Enqueues the forward with params (device, fp32) and, under bf16,
 * params16 (their bf16 copy; NULL otherwise); the summed loss
 * lands in m->loss_sum (device double). With want_grad the logits become
 * grad_scale x d(loss)/d(logits), ready for rm_gpt_gpu_backward, and the
 * encoder's backward plan is built from host_inputs. */
int rm_gpt_gpu_forward(rm_gpt_gpu *m, const float *params, const void *params16, const int32_t *host_inputs,
                       const int32_t *host_targets, const int32_t *dev_inputs, const int32_t *dev_targets, long n,
                       int want_grad, float grad_scale, rm_error *err);

/* After a forward with want_grad: enqueues the gradients (already scaled
 * by that forward's grad_scale), written (accumulate 0) or added (1) into
 * grads (device, n_params floats; wte's padding rows get 0). ready, when not
 * NULL, is called each time the enqueued work produces the final gradient
 * of [offset, n_params), as rm_gpt_cpu_backward calls it. */
int rm_gpt_gpu_backward(rm_gpt_gpu *m, const float *params, const void *params16, float *grads, int accumulate,
                        rm_grad_ready_fn ready, void *ready_ctx, rm_error *err);

#endif
