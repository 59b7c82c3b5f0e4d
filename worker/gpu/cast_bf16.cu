#include "gpu_launch.cuh"
#include "gpu_ops.h"

#include <cuda_bf16.h>

static __global__ void cast_bf16_kernel(const float *src, long n, __nv_bfloat16 *dst)
{
    for (long i = (long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x)
        dst[i] = __float2bfloat16(src[i]);
}

extern "C" cudaError_t rm_gpu_cast_bf16(const float *src, long n, void *dst_bf16, cudaStream_t stream)
{
    if (n < 1)
        return cudaSuccess;
    cast_bf16_kernel<<<rm_gpu_blocks(n), RM_GPU_THREADS, 0, stream>>>(src, n, (__nv_bfloat16 *)dst_bf16);
    return cudaGetLastError();
}
