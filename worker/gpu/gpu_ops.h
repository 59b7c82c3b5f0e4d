/* The GPU backend's small kernels, one file per op (bias_act.cu,
 * softmax_xent.cu, ...): each file holds a static kernel and the one entry
 * point declared here, which launches it on the given stream and returns
 * cudaGetLastError(), so every launch is checked by the caller.
 *
 * Buffers are device memory; bf16 buffers are passed as void * (they hold
 * __nv_bfloat16, which plain C does not know). Matrices are row-major, as
 * in the CPU backend. A NULL optional output is not written. */
#ifndef RINGMASTER_GPU_OPS_H
#define RINGMASTER_GPU_OPS_H

#include <cuda_runtime_api.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum rm_gpu_act { RM_GPU_ACT_NONE = 0, RM_GPU_ACT_RELU = 1, RM_GPU_ACT_TANH = 2 };

/* z[r][c] = act(z[r][c] + bias[c]) over rows x cols; z_bf16 (optional)
 * gets the result rounded to bf16. */
cudaError_t rm_gpu_bias_act(float *z, const float *bias, long rows, long cols, int act, void *z_bf16,
                            cudaStream_t stream);

/* delta[i] *= act'(a[i]) where a is the activation's output (ReLU: a > 0;
 * tanh: 1 - a^2); delta_bf16 (optional) gets the result in bf16. */
cudaError_t rm_gpu_act_backward(float *delta, const float *a, long n, int act, void *delta_bf16,
                                cudaStream_t stream);

/* db[c] = sum over rows of dz[r][c] (written, not accumulated), in a
 * fixed order: the same inputs give the same bits. */
cudaError_t rm_gpu_bias_grad(const float *dz, long rows, long cols, float *db, cudaStream_t stream);

/* Per row of logits [rows x classes]: row_loss[r] = cross-entropy (double),
 * row_correct[r] = argmax (first of equals) == label. When dz is not NULL it
 * gets grad_scale * (softmax - onehot), and dz_bf16 (optional) the same in
 * bf16. */
cudaError_t rm_gpu_softmax_xent(const float *logits, const uint8_t *labels, long rows, long classes,
                                float grad_scale, double *row_loss, int *row_correct, float *dz, void *dz_bf16,
                                cudaStream_t stream);

/* loss[0] = sum of row_loss, correct[0] = sum of row_correct, in a fixed
 * order. */
cudaError_t rm_gpu_loss_sum(const double *row_loss, const int *row_correct, long rows, double *loss,
                            long long *correct, cudaStream_t stream);

/* out[0] = sum of x[i]^2 in double; partial holds RM_GPU_SUMSQ_PARTIALS
 * doubles of scratch. Fixed order. */
#define RM_GPU_SUMSQ_PARTIALS 512
cudaError_t rm_gpu_sumsq(const float *x, long n, double *partial, double *out, cudaStream_t stream);

/* dst_bf16[i] = bf16(src[i]). */
cudaError_t rm_gpu_cast_bf16(const float *src, long n, void *dst_bf16, cudaStream_t stream);

/* SGD with momentum and L2 weight decay, as worker/optimizer.c:
 * g' = g + wd w; vel = mu vel + g'; w -= lr vel. w_bf16 (optional) gets
 * the new weights in bf16. */
cudaError_t rm_gpu_sgd_momentum(float *w, const float *g, float *vel, long n, float lr, float mu, float wd,
                                void *w_bf16, cudaStream_t stream);

/* AdamW with decoupled weight decay, as worker/optimizer.c, with the bias
 * corrections c1 = 1/(1-b1^t) and c2 = 1/sqrt(1-b2^t) computed by the
 * caller: m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
 * w -= lr ((m c1) / (sqrt(v) c2 + eps) + wd w). */
cudaError_t rm_gpu_adamw(float *w, const float *g, float *m, float *v, long n, float lr, float b1, float b2,
                         float eps, float wd, float c1, float c2, void *w_bf16, cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif
