#include "gpu_launch.cuh"
#include "gpu_ops.h"

static __global__ void bias_fill_kernel(float *out, const float *residual, const float *bias, long rows, long cols)
{
    long n = rows * cols;
    for (long i = (long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x)
        out[i] = (residual ? residual[i] : 0.0f) + bias[i % cols];
}

extern "C" cudaError_t rm_gpu_bias_fill(float *out, const float *residual, const float *bias, long rows, long cols,
                                        cudaStream_t stream)
{
    if (rows < 1 || cols < 1)
        return cudaSuccess;
    bias_fill_kernel<<<rm_gpu_blocks(rows * cols), RM_GPU_THREADS, 0, stream>>>(out, residual, bias, rows, cols);
    return cudaGetLastError();
}
