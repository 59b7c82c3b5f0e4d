#include "gpu_launch.cuh"
#include "gpu_ops.h"

#include <cuda_bf16.h>

static __global__ void act_backward_kernel(float *delta, const float *a, long n, int act, __nv_bfloat16 *delta16)
{
    for (long i = (long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x) {
        float d = delta[i];
        if (act == RM_GPU_ACT_RELU)
            d = a[i] > 0.0f ? d : 0.0f;
        else if (act == RM_GPU_ACT_TANH)
            d *= 1.0f - a[i] * a[i];
        delta[i] = d;
        if (delta16)
            delta16[i] = __float2bfloat16(d);
    }
}

extern "C" cudaError_t rm_gpu_act_backward(float *delta, const float *a, long n, int act, void *delta_bf16,
                                           cudaStream_t stream)
{
    if (n < 1)
        return cudaSuccess;
    act_backward_kernel<<<rm_gpu_blocks(n), RM_GPU_THREADS, 0, stream>>>(delta, a, n, act,
                                                                         (__nv_bfloat16 *)delta_bf16);
    return cudaGetLastError();
}
