#include "gpu_ops.h"
#include "gpu_reduce.cuh"

#define THREADS 256

/* One block per row. The loss is log(sum) + max - logit[target] in double,
 * as the CPU computes it; the gradient in float with the CPU's formula. */
static __global__ void vocab_xent_kernel(float *logits, const int32_t *targets, long V, long Vp, int want_grad,
                                         float grad_scale, double *row_loss)
{
    __shared__ float shared[32];
    long r = blockIdx.x;
    float *l = logits + r * Vp;
    float mx = -INFINITY;
    for (long j = threadIdx.x; j < V; j += blockDim.x)
        mx = fmaxf(mx, l[j]);
    mx = rm_block_max(mx, shared);
    float s = 0.0f;
    for (long j = threadIdx.x; j < V; j += blockDim.x)
        s += expf(l[j] - mx);
    s = rm_block_sum(s, shared);
    long target = targets[r];
    if (threadIdx.x == 0)
        row_loss[r] = log((double)s) + (double)mx - (double)l[target];
    if (!want_grad)
        return;
    __syncthreads(); /* thread 0 has read l[target] before anyone overwrites it */
    float f = grad_scale / s;
    for (long j = threadIdx.x; j < Vp; j += blockDim.x) {
        float d = j < V ? expf(l[j] - mx) * f : 0.0f;
        if (j == target)
            d -= grad_scale;
        l[j] = d;
    }
}

extern "C" cudaError_t rm_gpu_vocab_xent(float *logits, const int32_t *targets, long rows, long V, long Vp,
                                         int want_grad, float grad_scale, double *row_loss, cudaStream_t stream)
{
    if (rows < 1 || V < 1)
        return cudaSuccess;
    vocab_xent_kernel<<<(unsigned)rows, THREADS, 0, stream>>>(logits, targets, V, Vp, want_grad, grad_scale,
                                                              row_loss);
    return cudaGetLastError();
}
