#include "gpu_launch.cuh"
#include "gpu_ops.h"

#include <cuda_bf16.h>

/* The CPU's formula term by term (worker/optimizer.c, sgd_range). */
static __global__ void sgd_momentum_kernel(float *w, const float *g, float *vel, long n, float lr, float mu,
                                           float wd, float gm, __nv_bfloat16 *w16)
{
    for (long i = (long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x) {
        float wi = w[i];
        float grad = wd == 0.0f ? g[i] * gm : g[i] * gm + wd * wi; /* g * gm exact when gm is 1 */
        float v = mu * vel[i] + grad;
        vel[i] = v;
        wi -= lr * v;
        w[i] = wi;
        if (w16)
            w16[i] = __float2bfloat16(wi);
    }
}

extern "C" cudaError_t rm_gpu_sgd_momentum(float *w, const float *g, float *vel, long n, float lr, float mu,
                                           float wd, float gm, void *w_bf16, cudaStream_t stream)
{
    if (n < 1)
        return cudaSuccess;
    sgd_momentum_kernel<<<rm_gpu_blocks(n), RM_GPU_THREADS, 0, stream>>>(w, g, vel, n, lr, mu, wd, gm,
                                                                         (__nv_bfloat16 *)w_bf16);
    return cudaGetLastError();
}
