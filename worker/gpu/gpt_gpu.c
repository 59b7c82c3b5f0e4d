#include "gpt_gpu.h"

#include "config.h"  /* enum rm_precision */
#include "gpt_cpu.h" /* rm_gpt_check_tokens, rm_gpt_layer_carve */
#include "gpu_check.h"
#include "gpu_ops.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Buffers */

/* Hands out `count` floats at *at (rounded up to 64 floats, 256 bytes),
 * or just counts when base is NULL. */
static float *carve(float *base, size_t *at, size_t count)
{
    float *p = base ? base + *at : NULL;
    *at += (count + 63) / 64 * 64;
    return p;
}

/* Points every activation buffer into base (or only sizes them, base
 * NULL); returns the floats needed. The layers are laid out as the CPU
 * model lays out its own. */
static size_t plan_buffers(rm_gpt_gpu *m, float *base)
{
    const rm_gpt_layout *g = &m->g;
    size_t BT = (size_t)m->max_batch * (size_t)g->context, C = (size_t)g->dim, T = (size_t)g->context;
    size_t at = 0, H = (size_t)g->heads;
    int fused = m->attention == RM_ATT_FUSED;
    m->encoded = carve(base, &at, BT * C);
    for (int l = 0; l < g->layers; l++)
        rm_gpt_layer_carve(&m->layer[l], g, m->max_batch, fused ? H * T : H * T * T, m->recompute, base, &at);
    rm_gpt_recompute_carve(m->layer, g, m->max_batch, m->recompute, base, &at);
    m->lnf = carve(base, &at, BT * C);
    m->lnf_mean = carve(base, &at, BT);
    m->lnf_rstd = carve(base, &at, BT);
    m->logits = carve(base, &at, BT * (size_t)g->padded_vocab);
    m->fc_pre = carve(base, &at, BT * 4 * C);
    m->dres = carve(base, &at, BT * C);
    m->dc = carve(base, &at, BT * C);
    m->dqkv = carve(base, &at, BT * 3 * C);
    m->datt = carve(base, &at, fused ? (size_t)m->max_batch * H * T : H * T * T);
    return at;
}

/* Device bytes besides the arena: the bf16 operands, per-position losses
 * and zeros, the loss and count, the encoder's backward plan. */
static size_t side_bytes(const rm_gpt_layout *g, long max_batch, int precision)
{
    size_t BT = (size_t)max_batch * (size_t)g->context;
    size_t bytes = BT * sizeof(double) + sizeof(double) + BT * sizeof(int) + sizeof(long long);
    bytes += (3 * BT + 1) * sizeof(int32_t);
    if (precision == RM_PREC_BF16)
        bytes += 2 * BT * 4 * (size_t)g->dim * 2;
    return bytes;
}

size_t rm_gpt_gpu_planned_bytes(const rm_gpt_layout *g, long max_batch, int precision, int attention, int recompute)
{
    rm_gpt_gpu m = {.g = *g}; /* only the shape is read */
    m.max_batch = max_batch;
    m.attention = attention;
    m.recompute = recompute;
    return plan_buffers(&m, NULL) * sizeof(float) + side_bytes(g, max_batch, precision);
}

int rm_gpt_gpu_init(rm_gpt_gpu *m, const rm_gpt_layout *g, long max_batch, int precision, int attention,
                    int recompute, cublasHandle_t blas, cudaStream_t stream, rm_error *err)
{
    memset(m, 0, sizeof *m);
    if (recompute < RM_RECOMPUTE_NONE || recompute > RM_RECOMPUTE_GELU_LAYERNORM)
        return rm_fail(err, "gpt: train.recompute %d is none of 0, 1, 2", recompute);
    if (precision != RM_PREC_FP32 && precision != RM_PREC_TF32 && precision != RM_PREC_BF16)
        return rm_fail(err, "gpt on the GPU: train.precision %d is none of fp32, tf32, bf16", precision);
    long head_size = g->dim / g->heads;
    if (attention == RM_ATT_FUSED && !rm_gpu_flash_attn_supports(head_size))
        return rm_fail(err,
                       "train.attention fused has kernels for head sizes 16, 32 and 64; model.dim %ld / model.heads "
                       "%d is %ld: use train.attention simple",
                       g->dim, g->heads, head_size);
    if (max_batch < 1)
        return rm_fail(err, "gpt: batch must be at least 1 sequence, got %ld", max_batch);
    /* cuBLAS takes int dimensions: the tallest operand has batch x context
     * rows, the widest the padded vocabulary. */
    if (max_batch > INT_MAX / g->context || max_batch * g->context > INT_MAX / 3)
        return rm_fail(err, "gpt: batch %ld x context %ld tokens is more rows than one product can take", max_batch,
                       g->context);
    m->g = *g;
    m->max_batch = max_batch;
    m->precision = precision;
    m->attention = attention;
    m->recompute = recompute;
    m->blas = blas;
    m->stream = stream;
    size_t floats = plan_buffers(m, NULL);
    size_t BT = (size_t)max_batch * (size_t)g->context;
    cudaError_t rc = cudaMalloc((void **)&m->arena, floats * sizeof(float));
    if (rc != cudaSuccess) {
        cudaGetLastError();
        return rm_fail(err, "gpt: cudaMalloc of %.2f GiB of activations for %ld sequences failed: %s",
                       (double)floats * sizeof(float) / (1024.0 * 1024.0 * 1024.0), max_batch,
                       cudaGetErrorString(rc));
    }
    plan_buffers(m, m->arena);
    /* Zeroed once: the logits' padding columns stay 0 (as on the CPU). */
    RM_CUDA_CHECK(cudaMemsetAsync(m->arena, 0, floats * sizeof(float), stream), err);
    if (precision == RM_PREC_BF16) /* a product's two operands, cast: at most BT x 4C each */
        for (int k = 0; k < 2; k++)
            RM_CUDA_CHECK(cudaMalloc(&m->act16[k], BT * 4 * (size_t)g->dim * 2), err);
    RM_CUDA_CHECK(cudaMalloc((void **)&m->row_loss, BT * sizeof(double)), err);
    RM_CUDA_CHECK(cudaMalloc((void **)&m->loss_sum, sizeof(double)), err);
    RM_CUDA_CHECK(cudaMalloc((void **)&m->row_zero, BT * sizeof(int)), err);
    RM_CUDA_CHECK(cudaMemsetAsync(m->row_zero, 0, BT * sizeof(int), stream), err);
    RM_CUDA_CHECK(cudaMalloc((void **)&m->correct, sizeof(long long)), err);
    size_t plan_ints = 3 * BT + 1;
    RM_CUDA_CHECK(cudaHostAlloc((void **)&m->plan_host, plan_ints * sizeof(int32_t), cudaHostAllocDefault), err);
    RM_CUDA_CHECK(cudaMalloc((void **)&m->plan_dev, plan_ints * sizeof(int32_t)), err);
    RM_CUDA_CHECK(cudaEventCreateWithFlags(&m->plan_copied, cudaEventDisableTiming), err);
    m->token_cursor = malloc((size_t)g->vocab * sizeof(int32_t));
    if (!m->token_cursor)
        return rm_fail(err, "gpt: out of memory for the encoder's backward plan");
    RM_CUDA_CHECK(cudaStreamSynchronize(stream), err);
    return RM_OK;
}

/* Safe on a partly initialised m (cudaFree(NULL) is a no-op). */
void rm_gpt_gpu_free(rm_gpt_gpu *m)
{
    if (m->stream)
        cudaStreamSynchronize(m->stream);
    cudaFree(m->arena);
    cudaFree(m->act16[0]);
    cudaFree(m->act16[1]);
    cudaFree(m->row_loss);
    cudaFree(m->loss_sum);
    cudaFree(m->row_zero);
    cudaFree(m->correct);
    cudaFreeHost(m->plan_host);
    cudaFree(m->plan_dev);
    if (m->plan_copied)
        cudaEventDestroy(m->plan_copied);
    free(m->token_cursor);
    memset(m, 0, sizeof *m);
}

/* Products */

/* The arguments of cblas_sgemm(CblasRowMajor, ta, tb, M, N, K, alpha, A,
 * lda, B, ldb, beta, C, ldc), on cuBLAS: row-major C[M x N] = alpha op(A)
 * op(B) + beta C.
 *
 * cuBLAS is column-major. A row-major matrix with leading dimension ld,
 * read column-major with the same ld, is its transpose. So the row-major
 * product C = op(A) op(B) is the column-major product
 * C^T = op(B)^T op(A)^T: cuBLAS gets B first and A second, M and N
 * swapped, and each operand keeps its own transpose flag (the stored
 * column-major B^T needs no transpose to give op(B)^T when op(B) = B, and
 * one when op(B) = B^T). Leading dimensions are the row-major ones. So
 * every product below reads as the CPU code's sgemm it mirrors.
 *
 * batch > 1: the strided batched form, operand i at A + i strideA etc.
 * (strides in elements). A and B are fp32, or bf16 when bf16 is set;
 * C is fp32 and every product accumulates in fp32. fp32 operands run on
 * tensor cores with TF32 inputs under tf32 and under bf16 (the products
 * bf16 leaves in fp32: attention's and the classifier's). */
static int matmul_rm(rm_gpt_gpu *m, int ta, int tb, long M, long N, long K, float alpha, const void *A, long lda,
                     long stride_a, const void *B, long ldb, long stride_b, float beta, float *C, long ldc,
                     long stride_c, long batch, int bf16, rm_error *err)
{
    cublasOperation_t op_a = ta ? CUBLAS_OP_T : CUBLAS_OP_N, op_b = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
    cudaDataType_t in_type = bf16 ? CUDA_R_16BF : CUDA_R_32F;
    cublasComputeType_t compute = !bf16 && m->precision != RM_PREC_FP32 ? CUBLAS_COMPUTE_32F_FAST_TF32
                                                                        : CUBLAS_COMPUTE_32F;
    if (batch == 1) {
        RM_CUBLAS_CHECK(cublasGemmEx(m->blas, op_b, op_a, (int)N, (int)M, (int)K, &alpha, B, in_type, (int)ldb, A,
                                     in_type, (int)lda, &beta, C, CUDA_R_32F, (int)ldc, compute,
                                     CUBLAS_GEMM_DEFAULT),
                        err);
        return RM_OK;
    }
    RM_CUBLAS_CHECK(cublasGemmStridedBatchedEx(m->blas, op_b, op_a, (int)N, (int)M, (int)K, &alpha, B, in_type,
                                               (int)ldb, (long long)stride_b, A, in_type, (int)lda,
                                               (long long)stride_a, &beta, C, CUDA_R_32F, (int)ldc,
                                               (long long)stride_c, (int)batch, compute, CUBLAS_GEMM_DEFAULT),
                    err);
    return RM_OK;
}

static int gemm(rm_gpt_gpu *m, int ta, int tb, long M, long N, long K, const float *A, long lda, const float *B,
                long ldb, float beta, float *C, long ldc, rm_error *err)
{
    return matmul_rm(m, ta, tb, M, N, K, 1.0f, A, lda, 0, B, ldb, 0, beta, C, ldc, 0, 1, 0, err);
}

/* The same with bf16 operands. */
static int gemm_bf16(rm_gpt_gpu *m, int ta, int tb, long M, long N, long K, const void *A, long lda, const void *B,
                     long ldb, float beta, float *C, long ldc, rm_error *err)
{
    return matmul_rm(m, ta, tb, M, N, K, 1.0f, A, lda, 0, B, ldb, 0, beta, C, ldc, 0, 1, 1, err);
}

/* Weights w (a pointer into this pass's params) in the bf16 copy: the same
 * offset in params16, 2 bytes an element. */
static const void *bf16_of(const rm_gpt_gpu *m, const float *w)
{
    return (const char *)m->params16 + 2 * (size_t)(w - m->params);
}

/* out[rows x out_dim] = residual + b + in[rows x in_dim] W^T, W
 * [out_dim x in_dim]; residual may be NULL. */
static int matmul_forward(rm_gpt_gpu *m, float *out, const float *in, const float *w, const float *b,
                          const float *residual, long rows, long in_dim, long out_dim, rm_error *err)
{
    RM_CUDA_CHECK(rm_gpu_bias_fill(out, residual, b, rows, out_dim, m->stream), err);
    if (m->precision == RM_PREC_BF16) { /* in cast to bf16, against the weights' bf16 copy */
        RM_CUDA_CHECK(rm_gpu_cast_bf16(in, rows * in_dim, m->act16[0], m->stream), err);
        return gemm_bf16(m, 0, 1, rows, out_dim, in_dim, m->act16[0], in_dim, bf16_of(m, w), in_dim, 1.0f, out,
                         out_dim, err);
    }
    return gemm(m, 0, 1, rows, out_dim, in_dim, in, in_dim, w, in_dim, 1.0f, out, out_dim, err);
}

/* Backward of out = in W^T + b: din = dout W (written; skipped when NULL),
 * dW (+)= dout^T in, db (+)= column sums of dout. */
static int matmul_backward(rm_gpt_gpu *m, float *din, float *dw, float *db, const float *dout, const float *in,
                           const float *w, long rows, long in_dim, long out_dim, int accumulate, rm_error *err)
{
    float beta = accumulate ? 1.0f : 0.0f;
    if (m->precision == RM_PREC_BF16) { /* dout and in cast to bf16; dW and din come out in fp32 */
        void *dout16 = m->act16[0], *in16 = m->act16[1];
        RM_CUDA_CHECK(rm_gpu_cast_bf16(dout, rows * out_dim, dout16, m->stream), err);
        RM_CUDA_CHECK(rm_gpu_cast_bf16(in, rows * in_dim, in16, m->stream), err);
        if ((din && gemm_bf16(m, 0, 0, rows, in_dim, out_dim, dout16, out_dim, bf16_of(m, w), in_dim, 0.0f, din,
                              in_dim, err) != RM_OK) ||
            gemm_bf16(m, 1, 0, out_dim, in_dim, rows, dout16, out_dim, in16, in_dim, beta, dw, in_dim, err) != RM_OK)
            return RM_ERR;
    } else if ((din && gemm(m, 0, 0, rows, in_dim, out_dim, dout, out_dim, w, in_dim, 0.0f, din, in_dim, err) !=
                           RM_OK) ||
               gemm(m, 1, 0, out_dim, in_dim, rows, dout, out_dim, in, in_dim, beta, dw, in_dim, err) != RM_OK) {
        return RM_ERR;
    }
    RM_CUDA_CHECK(rm_gpu_bias_grad(dout, rows, out_dim, db, accumulate, m->stream), err);
    return RM_OK;
}

/* Causal self-attention of layer a: qkv -> att, atty. Per sequence, one
 * strided batched product over the heads (head h's q, k, v are the
 * columns h*hs.. of their C-wide thirds, so the batch stride is hs):
 *   P[h] = scale q[h] k[h]^T   [T x T]
 *   softmax over keys 0..t of each row t, the rest 0
 *   y[h] = P[h] v[h]           [T x hs], into atty's columns h*hs.. */
static int attention_forward(rm_gpt_gpu *m, rm_gpt_gpu_layer *a, long n, rm_error *err)
{
    long T = m->g.context, C = m->g.dim, NH = m->g.heads, hs = C / NH, C3 = 3 * C;
    float scale = 1.0f / sqrtf((float)hs);
    if (m->attention == RM_ATT_FUSED) { /* a->att holds the rows' log-sum-exp */
        RM_CUDA_CHECK(rm_gpu_flash_attn_forward(a->qkv, a->atty, a->att, n, T, (int)NH, hs, scale, m->stream), err);
        return RM_OK;
    }
    for (long b = 0; b < n; b++) {
        const float *q = a->qkv + b * T * C3, *k = q + C;
        float *P = a->att + b * NH * T * T;
        if (matmul_rm(m, 0, 1, T, T, hs, scale, q, C3, hs, k, C3, hs, 0.0f, P, T, T * T, NH, 0, err) != RM_OK)
            return RM_ERR;
    }
    RM_CUDA_CHECK(rm_gpu_causal_softmax_forward(a->att, n * NH * T, T, m->stream), err);
    for (long b = 0; b < n; b++) {
        const float *v = a->qkv + b * T * C3 + 2 * C;
        const float *P = a->att + b * NH * T * T;
        float *y = a->atty + b * T * C;
        if (matmul_rm(m, 0, 0, T, hs, T, 1.0f, P, T, T * T, v, C3, hs, 0.0f, y, C, hs, NH, 0, err) != RM_OK)
            return RM_ERR;
    }
    return RM_OK;
}

/* Backward of attention_forward: datty -> dqkv (written), per sequence:
 *   dP = dy v^T, dS = softmax'(dP) scale (in m->datt)
 *   dq = dS k, dk = dS^T q, dv = P^T dy. */
static int attention_backward(rm_gpt_gpu *m, const rm_gpt_gpu_layer *a, const float *datty, float *dqkv, long n,
                              rm_error *err)
{
    long T = m->g.context, C = m->g.dim, NH = m->g.heads, hs = C / NH, C3 = 3 * C, TT = T * T;
    float scale = 1.0f / sqrtf((float)hs);
    if (m->attention == RM_ATT_FUSED) {
        RM_CUDA_CHECK(rm_gpu_flash_attn_backward(a->qkv, a->atty, datty, a->att, m->datt, dqkv, n, T, (int)NH, hs,
                                                 scale, m->stream),
                      err);
        return RM_OK;
    }
    float *dS = m->datt;
    for (long b = 0; b < n; b++) {
        const float *q = a->qkv + b * T * C3, *k = q + C, *v = q + 2 * C;
        const float *P = a->att + b * NH * TT, *dy = datty + b * T * C;
        float *dq = dqkv + b * T * C3, *dk = dq + C, *dv = dq + 2 * C;
        if (matmul_rm(m, 0, 1, T, T, hs, 1.0f, dy, C, hs, v, C3, hs, 0.0f, dS, T, TT, NH, 0, err) != RM_OK)
            return RM_ERR;
        RM_CUDA_CHECK(rm_gpu_causal_softmax_backward(dS, P, NH * T, T, scale, m->stream), err);
        if (matmul_rm(m, 0, 0, T, hs, T, 1.0f, dS, T, TT, k, C3, hs, 0.0f, dq, C3, hs, NH, 0, err) != RM_OK ||
            matmul_rm(m, 1, 0, T, hs, T, 1.0f, dS, T, TT, q, C3, hs, 0.0f, dk, C3, hs, NH, 0, err) != RM_OK ||
            matmul_rm(m, 1, 0, T, hs, T, 1.0f, P, T, TT, dy, C, hs, 0.0f, dv, C3, hs, NH, 0, err) != RM_OK)
            return RM_ERR;
    }
    return RM_OK;
}

/* Forward */

/* The encoder's backward plan from the batch's tokens (a counting sort,
 * stable in position), uploaded on the compute stream. The pinned buffer
 * is rewritten only once its previous upload is done. */
static int upload_plan(rm_gpt_gpu *m, const int32_t *tokens, long BT, rm_error *err)
{
    long V = m->g.vocab;
    RM_CUDA_CHECK(cudaEventSynchronize(m->plan_copied), err);
    int32_t *uniq = m->plan_host, *starts = uniq + BT, *pos = starts + BT + 1, *cursor = m->token_cursor;
    memset(cursor, 0, (size_t)V * sizeof *cursor);
    for (long i = 0; i < BT; i++)
        cursor[tokens[i]]++;
    long u = 0, at = 0;
    for (long v = 0; v < V; v++) {
        long count = cursor[v];
        cursor[v] = (int32_t)at;
        if (count == 0)
            continue;
        uniq[u] = (int32_t)v;
        starts[u] = (int32_t)at;
        u++;
        at += count;
    }
    starts[u] = (int32_t)at;
    for (long i = 0; i < BT; i++)
        pos[cursor[tokens[i]]++] = (int32_t)i;
    m->n_uniq = u;
    RM_CUDA_CHECK(cudaMemcpyAsync(m->plan_dev, m->plan_host, (size_t)(3 * BT + 1) * sizeof(int32_t),
                                  cudaMemcpyHostToDevice, m->stream),
                  err);
    RM_CUDA_CHECK(cudaEventRecord(m->plan_copied, m->stream), err);
    return RM_OK;
}

/* One block on n sequences: x -> layer l's activations, ending in res3. */
static int block_forward(rm_gpt_gpu *m, const float *params, int l, const float *x, long n, rm_error *err)
{
    const rm_gpt_block_offsets *o = &m->g.block[l];
    rm_gpt_gpu_layer *a = &m->layer[l];
    long C = m->g.dim, BT = n * m->g.context;
    RM_CUDA_CHECK(rm_gpu_layernorm_forward(a->ln1, a->ln1_mean, a->ln1_rstd, x, params + o->ln1_w, params + o->ln1_b,
                                           BT, C, m->stream),
                  err);
    if (matmul_forward(m, a->qkv, a->ln1, params + o->qkv_w, params + o->qkv_b, NULL, BT, C, 3 * C, err) != RM_OK ||
        attention_forward(m, a, n, err) != RM_OK ||
        matmul_forward(m, a->res2, a->atty, params + o->proj_w, params + o->proj_b, x, BT, C, C, err) != RM_OK)
        return RM_ERR;
    RM_CUDA_CHECK(rm_gpu_layernorm_forward(a->ln2, a->ln2_mean, a->ln2_rstd, a->res2, params + o->ln2_w,
                                           params + o->ln2_b, BT, C, m->stream),
                  err);
    /* under recompute the pre-activation is kept and the slope left to backward (gelu_d is NULL) */
    float *fc_pre = m->recompute >= RM_RECOMPUTE_GELU ? a->fc_pre : m->fc_pre;
    if (matmul_forward(m, fc_pre, a->ln2, params + o->fc_w, params + o->fc_b, NULL, BT, C, 4 * C, err) != RM_OK)
        return RM_ERR;
    RM_CUDA_CHECK(rm_gpu_gelu_forward(a->fc_gelu, a->gelu_d, fc_pre, BT * 4 * C, m->stream), err);
    return matmul_forward(m, a->res3, a->fc_gelu, params + o->fcproj_w, params + o->fcproj_b, a->res2, BT, 4 * C, C,
                          err);
}

/* Holds this pass's weights for the products (bf16_of). */
static int take_params(rm_gpt_gpu *m, const float *params, const void *params16, rm_error *err)
{
    if (m->precision == RM_PREC_BF16 && !params16)
        return rm_fail(err, "gpt: train.precision bf16 needs the weights' bf16 copy, and none was given");
    m->params = params;
    m->params16 = params16;
    return RM_OK;
}

int rm_gpt_gpu_forward(rm_gpt_gpu *m, const float *params, const void *params16, const int32_t *host_inputs,
                       const int32_t *host_targets, const int32_t *dev_inputs, const int32_t *dev_targets, long n,
                       int want_grad, float grad_scale, rm_error *err)
{
    const rm_gpt_layout *g = &m->g;
    if (take_params(m, params, params16, err) != RM_OK)
        return RM_ERR;
    if (n < 1 || n > m->max_batch)
        return rm_fail(err, "gpt: forward on %ld sequences, but the GPU activations were sized for 1..%ld", n,
                       m->max_batch);
    long T = g->context, C = g->dim, BT = n * T;
    if (rm_gpt_check_tokens(host_inputs, n, T, g->vocab, "input", err) != RM_OK ||
        rm_gpt_check_tokens(host_targets, n, T, g->vocab, "target", err) != RM_OK)
        return RM_ERR;
    m->n = 0; /* until this forward is enqueued, there is nothing to differentiate */
    if (want_grad && upload_plan(m, host_inputs, BT, err) != RM_OK)
        return RM_ERR;
    RM_CUDA_CHECK(rm_gpu_encoder_forward(m->encoded, dev_inputs, params + g->wte, params + g->wpe, n, T, C, m->stream),
                  err);
    const float *x = m->encoded;
    for (int l = 0; l < g->layers; l++) {
        if (block_forward(m, params, l, x, n, err) != RM_OK)
            return RM_ERR;
        x = m->layer[l].res3;
    }
    RM_CUDA_CHECK(rm_gpu_layernorm_forward(m->lnf, m->lnf_mean, m->lnf_rstd, x, params + g->lnf_w, params + g->lnf_b,
                                           BT, C, m->stream),
                  err);
    /* Tied classifier over the real vocabulary: the padding columns stay 0. */
    if (gemm(m, 0, 1, BT, g->vocab, C, m->lnf, C, params + g->wte, C, 0.0f, m->logits, g->padded_vocab, err) != RM_OK)
        return RM_ERR;
    RM_CUDA_CHECK(rm_gpu_vocab_xent(m->logits, dev_targets, BT, g->vocab, g->padded_vocab, want_grad, grad_scale,
                                    m->row_loss, m->stream),
                  err);
    RM_CUDA_CHECK(rm_gpu_loss_sum(m->row_loss, m->row_zero, BT, m->loss_sum, m->correct, m->stream), err);
    if (want_grad)
        m->n = n;
    return RM_OK;
}

/* Backward */

/* One block's backward: m->dres holds d(loss)/d(res3) on entry and
 * d(loss)/d(x), the block's input, on return. */
static int block_backward(rm_gpt_gpu *m, const float *params, float *grads, int l, long n, int accumulate,
                          rm_error *err)
{
    const rm_gpt_block_offsets *o = &m->g.block[l];
    const rm_gpt_gpu_layer *a = &m->layer[l];
    const float *x = l == 0 ? m->encoded : m->layer[l - 1].res3;
    long C = m->g.dim, BT = n * m->g.context;
    float *dres = m->dres, *dc = m->dc, *dfc = m->fc_pre;

    /* What forward did not keep, recomputed from what it did: the same
     * kernels on the same inputs, so the same bits. */
    if (m->recompute >= RM_RECOMPUTE_GELU)
        RM_CUDA_CHECK(rm_gpu_gelu_forward(a->fc_gelu, NULL, a->fc_pre, BT * 4 * C, m->stream), err);
    if (m->recompute >= RM_RECOMPUTE_GELU_LAYERNORM)
        RM_CUDA_CHECK(rm_gpu_layernorm_forward(a->ln2, a->ln2_mean, a->ln2_rstd, a->res2, params + o->ln2_w,
                                               params + o->ln2_b, BT, C, m->stream),
                      err);

    /* res3 = res2 + fcproj(gelu(fc(ln2(res2)))) */
    if (matmul_backward(m, dfc, grads + o->fcproj_w, grads + o->fcproj_b, dres, a->fc_gelu, params + o->fcproj_w, BT,
                        4 * C, C, accumulate, err) != RM_OK)
        return RM_ERR;
    if (m->recompute >= RM_RECOMPUTE_GELU)
        RM_CUDA_CHECK(rm_gpu_gelu_backward_at(dfc, a->fc_pre, BT * 4 * C, m->stream), err);
    else
        RM_CUDA_CHECK(rm_gpu_gelu_backward(dfc, a->gelu_d, BT * 4 * C, m->stream), err);
    if (matmul_backward(m, dc, grads + o->fc_w, grads + o->fc_b, dfc, a->ln2, params + o->fc_w, BT, C, 4 * C,
                        accumulate, err) != RM_OK)
        return RM_ERR;
    RM_CUDA_CHECK(rm_gpu_layernorm_backward(dres, grads + o->ln2_w, grads + o->ln2_b, dc, a->res2, a->ln2_mean,
                                            a->ln2_rstd, params + o->ln2_w, BT, C, accumulate, m->stream),
                  err);

    /* res2 = x + proj(attn(ln1(x))) */
    if (matmul_backward(m, dc, grads + o->proj_w, grads + o->proj_b, dres, a->atty, params + o->proj_w, BT, C, C,
                        accumulate, err) != RM_OK ||
        attention_backward(m, a, dc, m->dqkv, n, err) != RM_OK)
        return RM_ERR;
    if (m->recompute >= RM_RECOMPUTE_GELU_LAYERNORM) /* the scratch holds ln2 */
        RM_CUDA_CHECK(rm_gpu_layernorm_forward(a->ln1, a->ln1_mean, a->ln1_rstd, x, params + o->ln1_w,
                                               params + o->ln1_b, BT, C, m->stream),
                      err);
    if (matmul_backward(m, dc, grads + o->qkv_w, grads + o->qkv_b, m->dqkv, a->ln1, params + o->qkv_w, BT, C, 3 * C,
                        accumulate, err) != RM_OK)
        return RM_ERR;
    RM_CUDA_CHECK(rm_gpu_layernorm_backward(dres, grads + o->ln1_w, grads + o->ln1_b, dc, x, a->ln1_mean, a->ln1_rstd,
                                            params + o->ln1_w, BT, C, accumulate, m->stream),
                  err);
    return RM_OK;
}

int rm_gpt_gpu_backward(rm_gpt_gpu *m, const float *params, const void *params16, float *grads, int accumulate,
                        rm_grad_ready_fn ready, void *ready_ctx, rm_error *err)
{
    const rm_gpt_layout *g = &m->g;
    if (take_params(m, params, params16, err) != RM_OK)
        return RM_ERR;
    long n = m->n;
    if (n == 0)
        return rm_fail(err, "gpt: backward without a forward with want_grad before it (each such forward allows one "
                            "backward, which reads the logits' gradient it left)");
    m->n = 0;
    long T = g->context, C = g->dim, V = g->vocab, Vp = g->padded_vocab, BT = n * T;
    const float *dlogits = m->logits;

    /* The tied classifier: wte's first gradient (the lookup's comes last)
     * and d(lnf's output). */
    if (gemm(m, 1, 0, V, C, BT, dlogits, Vp, m->lnf, C, accumulate ? 1.0f : 0.0f, grads + g->wte, C, err) != RM_OK)
        return RM_ERR;
    if (!accumulate)
        RM_CUDA_CHECK(cudaMemsetAsync(grads + g->wte + V * C, 0, (size_t)((Vp - V) * C) * sizeof(float), m->stream),
                      err);
    if (gemm(m, 0, 0, BT, C, V, dlogits, Vp, params + g->wte, C, 0.0f, m->dc, C, err) != RM_OK)
        return RM_ERR;
    RM_CUDA_CHECK(cudaMemsetAsync(m->dres, 0, (size_t)(BT * C) * sizeof(float), m->stream), err);
    RM_CUDA_CHECK(rm_gpu_layernorm_backward(m->dres, grads + g->lnf_w, grads + g->lnf_b, m->dc,
                                            m->layer[g->layers - 1].res3, m->lnf_mean, m->lnf_rstd, params + g->lnf_w,
                                            BT, C, accumulate, m->stream),
                  err);
    if (ready && ready(ready_ctx, g->lnf_w, err) != RM_OK)
        return RM_ERR;

    for (int l = g->layers - 1; l >= 0; l--) {
        if (block_backward(m, params, grads, l, n, accumulate, err) != RM_OK)
            return RM_ERR;
        if (ready && ready(ready_ctx, g->block[l].ln1_w, err) != RM_OK)
            return RM_ERR;
    }

    const int32_t *uniq = m->plan_dev, *starts = uniq + BT, *pos = starts + BT + 1;
    RM_CUDA_CHECK(rm_gpu_encoder_backward(grads + g->wte, grads + g->wpe, m->dres, uniq, starts, pos, m->n_uniq, n, T,
                                          C, accumulate, m->stream),
                  err);
    if (ready && ready(ready_ctx, 0, err) != RM_OK)
        return RM_ERR;
    return RM_OK;
}
