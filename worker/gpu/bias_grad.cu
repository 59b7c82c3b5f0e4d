#include "gpu_ops.h"

#define COLS 32
#define ROW_LANES 32

/* A block owns COLS columns; its ROW_LANES rows of threads each sum every
 * ROW_LANES-th row (reads coalesced along a row), then the lanes are added
 * in a fixed order in shared memory: no atomics, the same bits every time.
 * accumulate adds the sum onto db instead of writing it. */
static __global__ void bias_grad_kernel(const float *dz, long rows, long cols, float *db, int accumulate)
{
    __shared__ float part[ROW_LANES][COLS + 1];
    long c = (long)blockIdx.x * COLS + threadIdx.x;
    float sum = 0.0f;
    if (c < cols)
        for (long r = threadIdx.y; r < rows; r += ROW_LANES)
            sum += dz[r * cols + c];
    part[threadIdx.y][threadIdx.x] = sum;
    __syncthreads();
    if (threadIdx.y == 0 && c < cols) {
        float total = 0.0f;
        for (int k = 0; k < ROW_LANES; k++)
            total += part[k][threadIdx.x];
        db[c] = accumulate ? db[c] + total : total;
    }
}

extern "C" cudaError_t rm_gpu_bias_grad(const float *dz, long rows, long cols, float *db, int accumulate,
                                        cudaStream_t stream)
{
    if (cols < 1)
        return cudaSuccess;
    dim3 block(COLS, ROW_LANES);
    bias_grad_kernel<<<(unsigned)((cols + COLS - 1) / COLS), block, 0, stream>>>(dz, rows, cols, db, accumulate);
    return cudaGetLastError();
}
