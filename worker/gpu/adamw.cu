#include "gpu_launch.cuh"
#include "gpu_ops.h"

#include <cuda_bf16.h>

/* The CPU's formula term by term (worker/optimizer.c, adamw_range). */
static __global__ void adamw_kernel(float *w, const float *g, float *m, float *v, long n, float lr, float b1,
                                    float b2, float eps, float wd, float c1, float c2, float gm,
                                    __nv_bfloat16 *w16)
{
    for (long i = (long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x) {
        float gi = g[i] * gm; /* exact when gm is 1 */
        float mi = b1 * m[i] + (1.0f - b1) * gi;
        float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        float update = (mi * c1) / (sqrtf(vi) * c2 + eps);
        float wi = w[i];
        wi -= lr * (update + wd * wi);
        w[i] = wi;
        if (w16)
            w16[i] = __float2bfloat16(wi);
    }
}

extern "C" cudaError_t rm_gpu_adamw(float *w, const float *g, float *m, float *v, long n, float lr, float b1,
                                    float b2, float eps, float wd, float c1, float c2, float gm, void *w_bf16,
                                    cudaStream_t stream)
{
    if (n < 1)
        return cudaSuccess;
    adamw_kernel<<<rm_gpu_blocks(n), RM_GPU_THREADS, 0, stream>>>(w, g, m, v, n, lr, b1, b2, eps, wd, c1, c2, gm,
                                                                  (__nv_bfloat16 *)w_bf16);
    return cudaGetLastError();
}
