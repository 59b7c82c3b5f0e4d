#include "gpu_launch.cuh"
#include "gpu_ops.h"

#include <cuda_bf16.h>

/* x: column, y: rows strided by gridDim.y, so the bias is read once per
 * thread and no index needs a division. */
static __global__ void bias_act_kernel(float *z, const float *bias, long rows, long cols, int act,
                                       __nv_bfloat16 *z16)
{
    long c = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= cols)
        return;
    float b = bias[c];
    for (long r = blockIdx.y; r < rows; r += gridDim.y) {
        long i = r * cols + c;
        float v = z[i] + b;
        if (act == RM_GPU_ACT_RELU)
            v = v > 0.0f ? v : 0.0f;
        else if (act == RM_GPU_ACT_TANH)
            v = tanhf(v);
        z[i] = v;
        if (z16)
            z16[i] = __float2bfloat16(v);
    }
}

extern "C" cudaError_t rm_gpu_bias_act(float *z, const float *bias, long rows, long cols, int act, void *z_bf16,
                                       cudaStream_t stream)
{
    if (rows < 1 || cols < 1)
        return cudaSuccess;
    dim3 grid((unsigned)((cols + RM_GPU_THREADS - 1) / RM_GPU_THREADS), (unsigned)(rows < 65535 ? rows : 65535));
    bias_act_kernel<<<grid, RM_GPU_THREADS, 0, stream>>>(z, bias, rows, cols, act, (__nv_bfloat16 *)z_bf16);
    return cudaGetLastError();
}
