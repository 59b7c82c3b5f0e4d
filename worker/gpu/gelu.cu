#include "gpu_launch.cuh"
#include "gpu_ops.h"

#define SQRT_2_OVER_PI 0.7978845608028654f
#define GELU_KAPPA 0.044715f

/* The CPU's formula (gpt_cpu.c): with s = 1 + tanh(u) = 2 / (1 + exp(-2u))
 * and 1 - tanh(u)^2 = s^2 exp(-2u), neither cancels where tanh nears -1 or
 * 1. -2u is clamped to 88, as the CPU's exp clamps, so exp stays finite and
 * s^2 exp(-2u) never becomes 0 x inf. */
static __device__ __forceinline__ float gelu_s(float v, float *e)
{
    float u = SQRT_2_OVER_PI * (v + GELU_KAPPA * v * v * v);
    *e = expf(fminf(-2.0f * u, 88.0f));
    return 2.0f / (1.0f + *e);
}

/* The slope, through one function for forward and for the backward that
 * recomputes it (train.recompute), so both compile to the same operations. */
static __device__ __forceinline__ float gelu_slope(float v, float s, float e)
{
    return 0.5f * s + 0.5f * v * (s * s * e) * SQRT_2_OVER_PI * (1.0f + 3.0f * GELU_KAPPA * v * v);
}

static __global__ void gelu_forward_kernel(float *y, float *dy, const float *x, long n)
{
    for (long i = (long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x) {
        float v = x[i], e, s = gelu_s(v, &e);
        y[i] = 0.5f * v * s;
        if (dy)
            dy[i] = gelu_slope(v, s, e);
    }
}

static __global__ void gelu_backward_at_kernel(float *d, const float *x, long n)
{
    for (long i = (long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x) {
        float v = x[i], e, s = gelu_s(v, &e);
        d[i] *= gelu_slope(v, s, e);
    }
}

static __global__ void mul_kernel(float *d, const float *dy, long n)
{
    for (long i = (long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x)
        d[i] *= dy[i];
}

extern "C" cudaError_t rm_gpu_gelu_forward(float *y, float *dy, const float *x, long n, cudaStream_t stream)
{
    if (n < 1)
        return cudaSuccess;
    gelu_forward_kernel<<<rm_gpu_blocks(n), RM_GPU_THREADS, 0, stream>>>(y, dy, x, n);
    return cudaGetLastError();
}

extern "C" cudaError_t rm_gpu_gelu_backward_at(float *d, const float *x, long n, cudaStream_t stream)
{
    if (n < 1)
        return cudaSuccess;
    gelu_backward_at_kernel<<<rm_gpu_blocks(n), RM_GPU_THREADS, 0, stream>>>(d, x, n);
    return cudaGetLastError();
}

extern "C" cudaError_t rm_gpu_gelu_backward(float *d, const float *dy, long n, cudaStream_t stream)
{
    if (n < 1)
        return cudaSuccess;
    mul_kernel<<<rm_gpu_blocks(n), RM_GPU_THREADS, 0, stream>>>(d, dy, n);
    return cudaGetLastError();
}
