#include "gpu_launch.cuh"
#include "gpu_ops.h"

static __global__ void encoder_forward_kernel(float *out, const int32_t *tokens, const float *wte, const float *wpe,
                                              long rows, long T, long C)
{
    long n = rows * C;
    for (long i = (long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x) {
        long row = i / C, c = i % C;
        out[i] = wte[(long)tokens[row] * C + c] + wpe[(row % T) * C + c];
    }
}

/* One block per distinct token; its threads take the columns. A row of
 * dwte is touched by one block only, and within it each column by one
 * thread, adding the positions in ascending order: no atomics. */
static __global__ void encoder_backward_wte_kernel(float *dwte, const float *dout, const int32_t *uniq,
                                                   const int32_t *starts, const int32_t *pos, long C)
{
    long u = blockIdx.x;
    float *row = dwte + (long)uniq[u] * C;
    int begin = starts[u], end = starts[u + 1];
    for (long c = threadIdx.x; c < C; c += blockDim.x) {
        float acc = row[c];
        for (int k = begin; k < end; k++)
            acc += dout[(long)pos[k] * C + c];
        row[c] = acc;
    }
}

/* One thread per element of wpe, summing the sequences in order. */
static __global__ void encoder_backward_wpe_kernel(float *dwpe, const float *dout, long n, long T, long C,
                                                   int accumulate)
{
    long count = T * C;
    for (long i = (long)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += (long)gridDim.x * blockDim.x) {
        float acc = accumulate ? dwpe[i] : 0.0f;
        for (long b = 0; b < n; b++)
            acc += dout[b * count + i];
        dwpe[i] = acc;
    }
}

extern "C" cudaError_t rm_gpu_encoder_forward(float *out, const int32_t *tokens, const float *wte, const float *wpe,
                                              long n, long T, long C, cudaStream_t stream)
{
    long rows = n * T;
    if (rows < 1 || C < 1)
        return cudaSuccess;
    encoder_forward_kernel<<<rm_gpu_blocks(rows * C), RM_GPU_THREADS, 0, stream>>>(out, tokens, wte, wpe, rows, T,
                                                                                     C);
    return cudaGetLastError();
}

extern "C" cudaError_t rm_gpu_encoder_backward(float *dwte, float *dwpe, const float *dout, const int32_t *uniq,
                                               const int32_t *starts, const int32_t *pos, long n_uniq, long n, long T,
                                               long C, int accumulate, cudaStream_t stream)
{
    if (n < 1 || C < 1)
        return cudaSuccess;
    if (n_uniq > 0) {
        encoder_backward_wte_kernel<<<(unsigned)n_uniq, RM_GPU_THREADS, 0, stream>>>(dwte, dout, uniq, starts, pos, C);
        cudaError_t rc = cudaGetLastError();
        if (rc != cudaSuccess)
            return rc;
    }
    encoder_backward_wpe_kernel<<<rm_gpu_blocks(T * C), RM_GPU_THREADS, 0, stream>>>(dwpe, dout, n, T, C, accumulate);
    return cudaGetLastError();
}
