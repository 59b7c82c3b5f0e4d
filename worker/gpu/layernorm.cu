#include "gpu_ops.h"
#include "gpu_reduce.cuh"

#define LN_EPS 1e-5f
#define WARPS_PER_BLOCK 8
#define COLS 32
#define ROW_LANES 32

static unsigned row_blocks(long rows)
{
    return (unsigned)((rows + WARPS_PER_BLOCK - 1) / WARPS_PER_BLOCK);
}

/* One warp per row: the mean, then the biased variance of x - mean (two
 * passes, as the CPU computes it). */
static __global__ void layernorm_forward_kernel(float *out, float *mean, float *rstd, const float *x, const float *w,
                                                const float *b, long rows, long C)
{
    long r = (long)blockIdx.x * WARPS_PER_BLOCK + threadIdx.y;
    if (r >= rows)
        return;
    int lane = threadIdx.x;
    const float *xr = x + r * C;
    float s = 0.0f;
    for (long i = lane; i < C; i += 32)
        s += xr[i];
    float mu = rm_warp_sum(s) / (float)C;
    float v = 0.0f;
    for (long i = lane; i < C; i += 32) {
        float d = xr[i] - mu;
        v += d * d;
    }
    float rs = 1.0f / sqrtf(rm_warp_sum(v) / (float)C + LN_EPS);
    float *o = out + r * C;
    for (long i = lane; i < C; i += 32)
        o[i] = (xr[i] - mu) * rs * w[i] + b[i];
    if (lane == 0) {
        mean[r] = mu;
        rstd[r] = rs;
    }
}

/* One warp per row: dx += (w dout - mean(w dout) - norm mean(w dout norm)) rstd. */
static __global__ void layernorm_backward_dx_kernel(float *dx, const float *dout, const float *x, const float *mean,
                                                    const float *rstd, const float *w, long rows, long C)
{
    long r = (long)blockIdx.x * WARPS_PER_BLOCK + threadIdx.y;
    if (r >= rows)
        return;
    int lane = threadIdx.x;
    const float *xr = x + r * C, *dr = dout + r * C;
    float mu = mean[r], rs = rstd[r];
    float s1 = 0.0f, s2 = 0.0f;
    for (long i = lane; i < C; i += 32) {
        float dn = w[i] * dr[i];
        s1 += dn;
        s2 += dn * ((xr[i] - mu) * rs);
    }
    float dnorm_mean = rm_warp_sum(s1) / (float)C, dnorm_norm_mean = rm_warp_sum(s2) / (float)C;
    float *dxr = dx + r * C;
    for (long i = lane; i < C; i += 32) {
        float norm = (xr[i] - mu) * rs;
        dxr[i] += (w[i] * dr[i] - dnorm_mean - norm * dnorm_norm_mean) * rs;
    }
}

/* dw, db: column sums over rows, laid out as bias_grad.cu's kernel (a block
 * owns COLS columns, ROW_LANES lanes of rows added in a fixed order). */
static __global__ void layernorm_backward_dw_kernel(float *dw, float *db, const float *dout, const float *x,
                                                    const float *mean, const float *rstd, long rows, long C,
                                                    int accumulate)
{
    __shared__ float part_w[ROW_LANES][COLS + 1];
    __shared__ float part_b[ROW_LANES][COLS + 1];
    long c = (long)blockIdx.x * COLS + threadIdx.x;
    float sw = 0.0f, sb = 0.0f;
    if (c < C)
        for (long r = threadIdx.y; r < rows; r += ROW_LANES) {
            float d = dout[r * C + c];
            sw += (x[r * C + c] - mean[r]) * rstd[r] * d;
            sb += d;
        }
    part_w[threadIdx.y][threadIdx.x] = sw;
    part_b[threadIdx.y][threadIdx.x] = sb;
    __syncthreads();
    if (threadIdx.y == 0 && c < C) {
        float tw = 0.0f, tb = 0.0f;
        for (int k = 0; k < ROW_LANES; k++) {
            tw += part_w[k][threadIdx.x];
            tb += part_b[k][threadIdx.x];
        }
        dw[c] = accumulate ? dw[c] + tw : tw;
        db[c] = accumulate ? db[c] + tb : tb;
    }
}

extern "C" cudaError_t rm_gpu_layernorm_forward(float *out, float *mean, float *rstd, const float *x, const float *w,
                                                const float *b, long rows, long C, cudaStream_t stream)
{
    if (rows < 1 || C < 1)
        return cudaSuccess;
    dim3 block(32, WARPS_PER_BLOCK);
    layernorm_forward_kernel<<<row_blocks(rows), block, 0, stream>>>(out, mean, rstd, x, w, b, rows, C);
    return cudaGetLastError();
}

extern "C" cudaError_t rm_gpu_layernorm_backward(float *dx, float *dw, float *db, const float *dout, const float *x,
                                                 const float *mean, const float *rstd, const float *w, long rows,
                                                 long C, int accumulate, cudaStream_t stream)
{
    if (rows < 1 || C < 1)
        return cudaSuccess;
    dim3 block(32, WARPS_PER_BLOCK);
    layernorm_backward_dx_kernel<<<row_blocks(rows), block, 0, stream>>>(dx, dout, x, mean, rstd, w, rows, C);
    cudaError_t rc = cudaGetLastError();
    if (rc != cudaSuccess)
        return rc;
    dim3 cols_block(COLS, ROW_LANES);
    layernorm_backward_dw_kernel<<<(unsigned)((C + COLS - 1) / COLS), cols_block, 0, stream>>>(
        dw, db, dout, x, mean, rstd, rows, C, accumulate);
    return cudaGetLastError();
}
