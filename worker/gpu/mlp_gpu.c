#include "mlp_gpu.h"

#include "gpu_check.h"
#include "gpu_ops.h"

#include <string.h>

int rm_mlp_gpu_init(rm_mlp_gpu *mlp, const rm_model_shape *shape, long max_batch, int precision,
                    cublasHandle_t blas, cudaStream_t stream, rm_error *err)
{
    memset(mlp, 0, sizeof *mlp);
    mlp->shape = *shape;
    mlp->max_batch = max_batch;
    mlp->precision = precision;
    mlp->blas = blas;
    mlp->stream = stream;
    int L = shape->n_layers, bf16 = precision == RM_PREC_BF16;
    long widest = 0;
    for (int l = 0; l <= L; l++)
        widest = shape->dims[l] > widest ? shape->dims[l] : widest;
    size_t rows = (size_t)max_batch;
    for (int l = 1; l <= L; l++)
        RM_CUDA_CHECK(cudaMalloc((void **)&mlp->acts[l], rows * (size_t)shape->dims[l] * sizeof(float)), err);
    if (bf16) {
        for (int l = 0; l < L; l++)
            RM_CUDA_CHECK(cudaMalloc(&mlp->acts16[l], rows * (size_t)shape->dims[l] * 2), err);
        RM_CUDA_CHECK(cudaMalloc(&mlp->delta16, rows * (size_t)widest * 2), err);
    }
    RM_CUDA_CHECK(cudaMalloc((void **)&mlp->delta_a, rows * (size_t)widest * sizeof(float)), err);
    RM_CUDA_CHECK(cudaMalloc((void **)&mlp->delta_b, rows * (size_t)widest * sizeof(float)), err);
    RM_CUDA_CHECK(cudaMalloc((void **)&mlp->row_loss, rows * sizeof(double)), err);
    RM_CUDA_CHECK(cudaMalloc((void **)&mlp->row_correct, rows * sizeof(int)), err);
    RM_CUDA_CHECK(cudaMalloc((void **)&mlp->loss_sum, sizeof(double)), err);
    RM_CUDA_CHECK(cudaMalloc((void **)&mlp->correct, sizeof(long long)), err);
    return RM_OK;
}

/* Safe on a partly initialised mlp (cudaFree(NULL) is a no-op). */
void rm_mlp_gpu_free(rm_mlp_gpu *mlp)
{
    for (int l = 1; l <= RM_MAX_LAYERS; l++)
        cudaFree(mlp->acts[l]);
    for (int l = 0; l < RM_MAX_LAYERS; l++)
        cudaFree(mlp->acts16[l]);
    cudaFree(mlp->delta16);
    cudaFree(mlp->delta_a);
    cudaFree(mlp->delta_b);
    cudaFree(mlp->row_loss);
    cudaFree(mlp->row_correct);
    cudaFree(mlp->loss_sum);
    cudaFree(mlp->correct);
    memset(mlp, 0, sizeof *mlp);
}

/* C = op(A) op(B) in cuBLAS's column-major terms (C is m x n, ldc), with
 * fp32 output and accumulation. The row-major products of mlp_cpu.c map
 * onto it by reading every row-major matrix as its column-major
 * transpose. bf16: A and B are bf16 buffers. */
static int gemm(rm_mlp_gpu *mlp, cublasOperation_t ta, cublasOperation_t tb, long m, long n, long k,
                const void *A, long lda, const void *B, long ldb, float *C, long ldc, rm_error *err)
{
    const float one = 1.0f, zero = 0.0f;
    cudaDataType_t in_type = CUDA_R_32F;
    cublasComputeType_t compute = CUBLAS_COMPUTE_32F;
    if (mlp->precision == RM_PREC_BF16)
        in_type = CUDA_R_16BF;
    else if (mlp->precision == RM_PREC_TF32)
        compute = CUBLAS_COMPUTE_32F_FAST_TF32;
    RM_CUBLAS_CHECK(cublasGemmEx(mlp->blas, ta, tb, (int)m, (int)n, (int)k, &one, A, in_type, (int)lda, B, in_type,
                                 (int)ldb, &zero, C, CUDA_R_32F, (int)ldc, compute, CUBLAS_GEMM_DEFAULT),
                    err);
    return RM_OK;
}

static const void *bf16_at(const void *base, long offset)
{
    return (const char *)base + offset * 2;
}

static int hidden_act(const rm_model_shape *s)
{
    return s->activation == RM_ACT_RELU ? RM_GPU_ACT_RELU : RM_GPU_ACT_TANH;
}

int rm_mlp_gpu_forward(rm_mlp_gpu *mlp, const float *params, const void *params16, const float *x,
                       const uint8_t *labels, long n, int want_grad, float grad_scale, rm_error *err)
{
    const rm_model_shape *s = &mlp->shape;
    int L = s->n_layers, bf16 = mlp->precision == RM_PREC_BF16;
    if (n < 1 || n > mlp->max_batch)
        return rm_fail(err, "batch of %ld samples: the GPU buffers hold 1 to %ld", n, mlp->max_batch);
    mlp->acts[0] = (float *)x;
    if (bf16)
        RM_CUDA_CHECK(rm_gpu_cast_bf16(x, n * s->dims[0], mlp->acts16[0], mlp->stream), err);
    for (int l = 0; l < L; l++) {
        long in = s->dims[l], out = s->dims[l + 1];
        int last = l == L - 1;
        /* Z[n x out] = A[n x in] W^T, i.e. Z^T = W A^T column-major. */
        const void *w = bf16 ? bf16_at(params16, s->weight_offset[l]) : (const void *)(params + s->weight_offset[l]);
        const void *a = bf16 ? mlp->acts16[l] : (const void *)mlp->acts[l];
        if (gemm(mlp, CUBLAS_OP_T, CUBLAS_OP_N, out, n, in, w, in, a, in, mlp->acts[l + 1], out, err) != RM_OK)
            return RM_ERR;
        RM_CUDA_CHECK(rm_gpu_bias_act(mlp->acts[l + 1], params + s->bias_offset[l], n, out,
                                      last ? RM_GPU_ACT_NONE : hidden_act(s), bf16 && !last ? mlp->acts16[l + 1] : NULL,
                                      mlp->stream),
                      err);
    }
    long classes = s->dims[L];
    RM_CUDA_CHECK(rm_gpu_softmax_xent(mlp->acts[L], labels, n, classes, grad_scale, mlp->row_loss, mlp->row_correct,
                                      want_grad ? mlp->delta_a : NULL, want_grad && bf16 ? mlp->delta16 : NULL,
                                      mlp->stream),
                  err);
    RM_CUDA_CHECK(rm_gpu_loss_sum(mlp->row_loss, mlp->row_correct, n, mlp->loss_sum, mlp->correct, mlp->stream), err);
    return RM_OK;
}

int rm_mlp_gpu_backward(rm_mlp_gpu *mlp, const float *params, const void *params16, float *grads, long n,
                        rm_grad_ready_fn ready, void *ready_ctx, rm_error *err)
{
    const rm_model_shape *s = &mlp->shape;
    int bf16 = mlp->precision == RM_PREC_BF16;
    float *dz = mlp->delta_a, *da = mlp->delta_b; /* the forward left the loss gradient in delta_a */
    for (int l = s->n_layers - 1; l >= 0; l--) {
        long in = s->dims[l], out = s->dims[l + 1];
        /* dW[out x in] = dz^T A, i.e. dW^T = A^T dz column-major. */
        const void *a = bf16 ? mlp->acts16[l] : (const void *)mlp->acts[l];
        const void *d = bf16 ? mlp->delta16 : (const void *)dz;
        if (gemm(mlp, CUBLAS_OP_N, CUBLAS_OP_T, in, out, n, a, in, d, out, grads + s->weight_offset[l], in, err) != RM_OK)
            return RM_ERR;
        RM_CUDA_CHECK(rm_gpu_bias_grad(dz, n, out, grads + s->bias_offset[l], 0, mlp->stream), err);
        if (ready && ready(ready_ctx, s->weight_offset[l], err) != RM_OK)
            return RM_ERR;
        if (l == 0)
            break; /* the input needs no gradient */
        /* dA[n x in] = dz W, i.e. dA^T = W^T dz^T column-major. */
        const void *w = bf16 ? bf16_at(params16, s->weight_offset[l]) : (const void *)(params + s->weight_offset[l]);
        if (gemm(mlp, CUBLAS_OP_N, CUBLAS_OP_N, in, n, out, w, in, d, out, da, in, err) != RM_OK)
            return RM_ERR;
        RM_CUDA_CHECK(rm_gpu_act_backward(da, mlp->acts[l], n * in, hidden_act(s), bf16 ? mlp->delta16 : NULL,
                                          mlp->stream),
                      err);
        float *t = dz;
        dz = da;
        da = t;
    }
    return RM_OK;
}
