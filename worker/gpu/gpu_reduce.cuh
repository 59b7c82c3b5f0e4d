/* Sums and maxima across a warp or a block in a fixed order: the same
 * inputs give the same bits, and every thread gets the same value (the
 * butterfly pairs lanes whose partial values are already equal). */
#ifndef RINGMASTER_GPU_REDUCE_CUH
#define RINGMASTER_GPU_REDUCE_CUH

static __device__ __forceinline__ float rm_warp_sum(float v)
{
    for (int off = 16; off > 0; off /= 2)
        v += __shfl_xor_sync(0xffffffffu, v, off);
    return v;
}

static __device__ __forceinline__ float rm_warp_max(float v)
{
    for (int off = 16; off > 0; off /= 2)
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, off));
    return v;
}

/* Over a one-dimensional block whose size is a multiple of 32 (at most
 * 1024); shared holds 32 floats. Every thread of the block must call it. */
static __device__ __forceinline__ float rm_block_sum(float v, float *shared)
{
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
    v = rm_warp_sum(v);
    __syncthreads(); /* shared may still be read by a previous reduction */
    if (lane == 0)
        shared[warp] = v;
    __syncthreads();
    float total = 0.0f;
    for (int k = 0; k < warps; k++)
        total += shared[k];
    return total;
}

static __device__ __forceinline__ float rm_block_max(float v, float *shared)
{
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
    v = rm_warp_max(v);
    __syncthreads();
    if (lane == 0)
        shared[warp] = v;
    __syncthreads();
    float m = shared[0];
    for (int k = 1; k < warps; k++)
        m = fmaxf(m, shared[k]);
    return m;
}

#endif
