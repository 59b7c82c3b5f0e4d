#include "gpu_ops.h"

#define THREADS 256

/* One block: each thread sums a fixed stride of rows, then a tree in
 * shared memory; the order never changes, so neither do the bits. */
static __global__ void loss_sum_kernel(const double *row_loss, const int *row_correct, long rows, double *loss,
                                       long long *correct)
{
    __shared__ double l[THREADS];
    __shared__ long long c[THREADS];
    double ls = 0.0;
    long long cs = 0;
    for (long r = threadIdx.x; r < rows; r += THREADS) {
        ls += row_loss[r];
        cs += row_correct[r];
    }
    l[threadIdx.x] = ls;
    c[threadIdx.x] = cs;
    __syncthreads();
    for (int half = THREADS / 2; half > 0; half /= 2) {
        if (threadIdx.x < half) {
            l[threadIdx.x] += l[threadIdx.x + half];
            c[threadIdx.x] += c[threadIdx.x + half];
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        loss[0] = l[0];
        correct[0] = c[0];
    }
}

extern "C" cudaError_t rm_gpu_loss_sum(const double *row_loss, const int *row_correct, long rows, double *loss,
                                       long long *correct, cudaStream_t stream)
{
    loss_sum_kernel<<<1, THREADS, 0, stream>>>(row_loss, row_correct, rows, loss, correct);
    return cudaGetLastError();
}
