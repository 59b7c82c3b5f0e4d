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

/* db[c] = sum over rows of dz[r][c], written (accumulate 0) or added onto
 * db (1), in a fixed order: the same inputs give the same bits. */
cudaError_t rm_gpu_bias_grad(const float *dz, long rows, long cols, float *db, int accumulate, cudaStream_t stream);

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
 * g' = g gm + wd w; vel = mu vel + g'; w -= lr vel. gm is train.grad_clip's
 * factor (1: the gradient as it is). w_bf16 (optional) gets the new
 * weights in bf16. */
cudaError_t rm_gpu_sgd_momentum(float *w, const float *g, float *vel, long n, float lr, float mu, float wd, float gm,
                                void *w_bf16, cudaStream_t stream);

/* AdamW with decoupled weight decay, as worker/optimizer.c, with the bias
 * corrections c1 = 1/(1-b1^t) and c2 = 1/sqrt(1-b2^t) computed by the
 * caller: g' = g gm; m = b1 m + (1-b1) g'; v = b2 v + (1-b2) g'^2;
 * w -= lr ((m c1) / (sqrt(v) c2 + eps) + wd w). gm is train.grad_clip's
 * factor (1: the gradient as it is). */
cudaError_t rm_gpu_adamw(float *w, const float *g, float *m, float *v, long n, float lr, float b1, float b2,
                         float eps, float wd, float c1, float c2, float gm, void *w_bf16, cudaStream_t stream);

/* --- GPT-2 (gpt_gpu.c); formulas as worker/gpt_cpu.c ------------------- */

/* out[r][c] = (residual ? residual[r][c] : 0) + bias[c]: the start a
 * product with beta 1 adds onto. */
cudaError_t rm_gpu_bias_fill(float *out, const float *residual, const float *bias, long rows, long cols,
                             cudaStream_t stream);

/* out[b*T + t][c] = wte[tokens[b*T + t]][c] + wpe[t][c], n*T rows of C.
 * Token ids must already be in range (the caller checks them on the host). */
cudaError_t rm_gpu_encoder_forward(float *out, const int32_t *tokens, const float *wte, const float *wpe, long n,
                                   long T, long C, cudaStream_t stream);

/* The lookup's gradients, without atomics. dwte: for each of the n_uniq
 * distinct tokens uniq[u], the rows dout[pos[starts[u]] .. pos[starts[u+1]-1]]
 * (ascending positions) are added onto its row in that order, so the bits
 * match a serial loop over positions. dwpe[t] = (accumulate ? dwpe[t] : 0) +
 * the sum over sequences b = 0..n-1 of dout[b*T + t]. */
cudaError_t rm_gpu_encoder_backward(float *dwte, float *dwpe, const float *dout, const int32_t *uniq,
                                    const int32_t *starts, const int32_t *pos, long n_uniq, long n, long T, long C,
                                    int accumulate, cudaStream_t stream);

/* LayerNorm over rows of C (biased variance, eps 1e-5); mean and rstd
 * (1/std) per row are kept for backward. */
cudaError_t rm_gpu_layernorm_forward(float *out, float *mean, float *rstd, const float *x, const float *w,
                                     const float *b, long rows, long C, cudaStream_t stream);

/* dx += d(LayerNorm)/dx applied to dout; dw, db written (accumulate 0) or
 * added onto (1), summed over rows in a fixed order. */
cudaError_t rm_gpu_layernorm_backward(float *dx, float *dw, float *db, const float *dout, const float *x,
                                      const float *mean, const float *rstd, const float *w, long rows, long C,
                                      int accumulate, cudaStream_t stream);

/* y = gelu_tanh(x), dy = gelu_tanh'(x) (not written when NULL), n elements. */
cudaError_t rm_gpu_gelu_forward(float *y, float *dy, const float *x, long n, cudaStream_t stream);

/* d[i] *= dy[i]. */
cudaError_t rm_gpu_gelu_backward(float *d, const float *dy, long n, cudaStream_t stream);

/* d[i] *= gelu_tanh'(x[i]), the slope recomputed from the pre-activation:
 * the bits rm_gpu_gelu_forward writes into dy. */
cudaError_t rm_gpu_gelu_backward_at(float *d, const float *x, long n, cudaStream_t stream);

/* rows rows of T attention scores, row r the query t = r % T: softmax over
 * entries 0..t in place, entries t+1.. set to 0. */
cudaError_t rm_gpu_causal_softmax_forward(float *att, long rows, long T, cudaStream_t stream);

/* Backward of it in place over dp: dp[j] = p[j] (dp[j] - sum_k p[k] dp[k])
 * scale for j <= t, 0 beyond. */
cudaError_t rm_gpu_causal_softmax_backward(float *dp, const float *p, long rows, long T, float scale,
                                           cudaStream_t stream);

/* Fused causal attention (flash_attn.cu, flash_attn_block.h): the T x T
 * scores are never stored. Whether a head size has kernels (16, 32, 64). */
int rm_gpu_flash_attn_supports(long head_size);

/* qkv [n x T x 3C] (head h's q, k, v in columns h*head_size.. of each
 * third) -> y [n x T x C] (head h in columns h*head_size..) and lse
 * [n x heads x T], each row's log-sum-exp of its scaled scores, which
 * backward needs. */
cudaError_t rm_gpu_flash_attn_forward(const float *qkv, float *y, float *lse, long n, long T, int heads,
                                      long head_size, float scale, cudaStream_t stream);

/* Backward of it: dy [n x T x C] -> dqkv [n x T x 3C] (written whole). D
 * is scratch of n x heads x T floats. Deterministic: no atomics. */
cudaError_t rm_gpu_flash_attn_backward(const float *qkv, const float *y, const float *dy, const float *lse, float *D,
                                       float *dqkv, long n, long T, int heads, long head_size, float scale,
                                       cudaStream_t stream);

/* Next-token cross-entropy per row of logits [rows x Vp], softmax over the
 * first V columns: row_loss[r] (double). With want_grad the row becomes
 * grad_scale (softmax - onehot(targets[r])) in place, columns V.. 0. */
cudaError_t rm_gpu_vocab_xent(float *logits, const int32_t *targets, long rows, long V, long Vp, int want_grad,
                              float grad_scale, double *row_loss, cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif
