#include "gpu_ops.h"

#define THREADS 256

static __device__ void block_sum_to(double v, double *out)
{
    __shared__ double s[THREADS];
    s[threadIdx.x] = v;
    __syncthreads();
    for (int half = THREADS / 2; half > 0; half /= 2) {
        if (threadIdx.x < half)
            s[threadIdx.x] += s[threadIdx.x + half];
        __syncthreads();
    }
    if (threadIdx.x == 0)
        *out = s[0];
}

/* Pass 1: RM_GPU_SUMSQ_PARTIALS blocks each sum a fixed grid stride. */
static __global__ void sumsq_partial_kernel(const float *x, long n, double *partial)
{
    double acc = 0.0;
    for (long i = (long)blockIdx.x * THREADS + threadIdx.x; i < n; i += (long)gridDim.x * THREADS) {
        double v = x[i];
        acc += v * v;
    }
    block_sum_to(acc, &partial[blockIdx.x]);
}

/* Pass 2: one block adds the partials. */
static __global__ void sumsq_final_kernel(const double *partial, double *out)
{
    double acc = 0.0;
    for (int i = threadIdx.x; i < RM_GPU_SUMSQ_PARTIALS; i += THREADS)
        acc += partial[i];
    block_sum_to(acc, out);
}

extern "C" cudaError_t rm_gpu_sumsq(const float *x, long n, double *partial, double *out, cudaStream_t stream)
{
    sumsq_partial_kernel<<<RM_GPU_SUMSQ_PARTIALS, THREADS, 0, stream>>>(x, n, partial);
    cudaError_t rc = cudaGetLastError();
    if (rc != cudaSuccess)
        return rc;
    sumsq_final_kernel<<<1, THREADS, 0, stream>>>(partial, out);
    return cudaGetLastError();
}
