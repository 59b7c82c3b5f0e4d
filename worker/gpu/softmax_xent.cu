#include "gpu_ops.h"

#include <cuda_bf16.h>

#define WARPS_PER_BLOCK 8

/* One warp per row. The loss is computed in double, as the CPU backend
 * does, and the gradient in float with the CPU's formula, so both agree to
 * rounding; the argmax keeps the first of equal maxima, as the CPU's does. */
static __global__ void softmax_xent_kernel(const float *logits, const uint8_t *labels, long rows, long classes,
                                           float grad_scale, double *row_loss, int *row_correct, float *dz,
                                           __nv_bfloat16 *dz16)
{
    long r = (long)blockIdx.x * WARPS_PER_BLOCK + threadIdx.y;
    if (r >= rows)
        return;
    int lane = threadIdx.x;
    const float *z = logits + r * classes;
    float max = -INFINITY;
    long arg = classes;
    for (long j = lane; j < classes; j += 32)
        if (z[j] > max || arg == classes) {
            max = z[j];
            arg = j;
        }
    for (int off = 16; off > 0; off /= 2) {
        float om = __shfl_xor_sync(0xffffffffu, max, off);
        long oa = __shfl_xor_sync(0xffffffffu, arg, off);
        if (om > max || (om == max && oa < arg)) {
            max = om;
            arg = oa;
        }
    }
    double sum_d = 0.0;
    float sum_f = 0.0f;
    for (long j = lane; j < classes; j += 32) {
        sum_d += exp((double)(z[j] - max));
        sum_f += expf(z[j] - max);
    }
    for (int off = 16; off > 0; off /= 2) {
        sum_d += __shfl_xor_sync(0xffffffffu, sum_d, off);
        sum_f += __shfl_xor_sync(0xffffffffu, sum_f, off);
    }
    int label = labels[r];
    if (lane == 0) {
        row_loss[r] = label < classes ? log(sum_d) - (double)(z[label] - max) : (double)NAN;
        row_correct[r] = arg == label;
    }
    if (!dz)
        return;
    float inv = grad_scale / sum_f;
    for (long j = lane; j < classes; j += 32) {
        float d = expf(z[j] - max) * inv;
        if (j == label)
            d -= grad_scale;
        dz[r * classes + j] = d;
        if (dz16)
            dz16[r * classes + j] = __float2bfloat16(d);
    }
}

extern "C" cudaError_t rm_gpu_softmax_xent(const float *logits, const uint8_t *labels, long rows, long classes,
                                           float grad_scale, double *row_loss, int *row_correct, float *dz,
                                           void *dz_bf16, cudaStream_t stream)
{
    if (rows < 1 || classes < 1)
        return cudaSuccess;
    dim3 block(32, WARPS_PER_BLOCK);
    unsigned blocks = (unsigned)((rows + WARPS_PER_BLOCK - 1) / WARPS_PER_BLOCK);
    softmax_xent_kernel<<<blocks, block, 0, stream>>>(logits, labels, rows, classes, grad_scale, row_loss,
                                                      row_correct, dz, (__nv_bfloat16 *)dz_bf16);
    return cudaGetLastError();
}
