#include "gpu_ops.h"
#include "gpu_reduce.cuh"

#define WARPS_PER_BLOCK 8

static unsigned row_blocks(long rows)
{
    return (unsigned)((rows + WARPS_PER_BLOCK - 1) / WARPS_PER_BLOCK);
}

/* One warp per row of scores; query t = row % T sees keys 0..t. */
static __global__ void causal_softmax_forward_kernel(float *att, long rows, long T)
{
    long r = (long)blockIdx.x * WARPS_PER_BLOCK + threadIdx.y;
    if (r >= rows)
        return;
    int lane = threadIdx.x;
    long len = r % T + 1;
    float *row = att + r * T;
    float mx = -INFINITY;
    for (long j = lane; j < len; j += 32)
        mx = fmaxf(mx, row[j]);
    mx = rm_warp_max(mx);
    float s = 0.0f;
    for (long j = lane; j < len; j += 32)
        s += expf(row[j] - mx);
    float inv = 1.0f / rm_warp_sum(s);
    for (long j = lane; j < T; j += 32)
        row[j] = j < len ? expf(row[j] - mx) * inv : 0.0f;
}

static __global__ void causal_softmax_backward_kernel(float *dp, const float *p, long rows, long T, float scale)
{
    long r = (long)blockIdx.x * WARPS_PER_BLOCK + threadIdx.y;
    if (r >= rows)
        return;
    int lane = threadIdx.x;
    long len = r % T + 1;
    float *d = dp + r * T;
    const float *pr = p + r * T;
    float dot = 0.0f;
    for (long j = lane; j < len; j += 32)
        dot += pr[j] * d[j];
    dot = rm_warp_sum(dot);
    for (long j = lane; j < T; j += 32)
        d[j] = j < len ? pr[j] * (d[j] - dot) * scale : 0.0f;
}

extern "C" cudaError_t rm_gpu_causal_softmax_forward(float *att, long rows, long T, cudaStream_t stream)
{
    if (rows < 1 || T < 1)
        return cudaSuccess;
    dim3 block(32, WARPS_PER_BLOCK);
    causal_softmax_forward_kernel<<<row_blocks(rows), block, 0, stream>>>(att, rows, T);
    return cudaGetLastError();
}

extern "C" cudaError_t rm_gpu_causal_softmax_backward(float *dp, const float *p, long rows, long T, float scale,
                                                      cudaStream_t stream)
{
    if (rows < 1 || T < 1)
        return cudaSuccess;
    dim3 block(32, WARPS_PER_BLOCK);
    causal_softmax_backward_kernel<<<row_blocks(rows), block, 0, stream>>>(dp, p, rows, T, scale);
    return cudaGetLastError();
}
