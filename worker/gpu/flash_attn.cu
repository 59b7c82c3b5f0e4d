/* Fused causal attention (train.attention fused): the kernels around the
 * block bodies of flash_attn_block.h, one set per head size. */
#include "gpu_ops.h"

#define FA_KERNELS(HS)                                                                                                \
    static __global__ void __launch_bounds__(FA_ROWS)                                                                 \
        fa_forward_kernel_hs##HS(const float *qkv, float *y, float *lse, long T, int heads, float scale, long tiles)  \
    {                                                                                                                 \
        __shared__ float Ks[FA_KEYS * HS], Vs[FA_KEYS * HS];                                                          \
        long bh = blockIdx.x / tiles, tile = tiles - 1 - (long)(blockIdx.x % tiles);                                 \
        fa_forward_block_hs##HS(qkv, y, lse, T, heads, scale, bh, tile, threadIdx.x, Ks, Vs);                         \
    }                                                                                                                 \
    static __global__ void __launch_bounds__(FA_ROWS)                                                                 \
        fa_dq_kernel_hs##HS(const float *qkv, const float *y, const float *dy, const float *lse, float *D,            \
                            float *dqkv, long T, int heads, float scale, long tiles)                                  \
    {                                                                                                                 \
        __shared__ float Ks[FA_KEYS * HS], Vs[FA_KEYS * HS];                                                          \
        long bh = blockIdx.x / tiles, tile = tiles - 1 - (long)(blockIdx.x % tiles);                                 \
        fa_dq_block_hs##HS(qkv, y, dy, lse, D, dqkv, T, heads, scale, bh, tile, threadIdx.x, Ks, Vs);                 \
    }                                                                                                                 \
    static __global__ void __launch_bounds__(FA_KV_KEYS)                                                              \
        fa_dkv_kernel_hs##HS(const float *qkv, const float *dy, const float *lse, const float *D, float *dqkv,        \
                             long T, int heads, float scale, long tiles)                                              \
    {                                                                                                                 \
        __shared__ float Kown[FA_KV_KEYS * (HS + 1)], Vown[FA_KV_KEYS * (HS + 1)];                                    \
        __shared__ float Qs[FA_KV_QUERIES * HS], Gs[FA_KV_QUERIES * HS], lse_s[FA_KV_QUERIES], D_s[FA_KV_QUERIES];    \
        /* the heaviest key tiles are the first ones: they go first */                                                \
        long bh = blockIdx.x / tiles, tile = (long)(blockIdx.x % tiles);                                              \
        fa_dkv_block_hs##HS(qkv, dy, lse, D, dqkv, T, heads, scale, bh, tile, threadIdx.x, Kown, Vown, Qs, Gs, lse_s, \
                            D_s);                                                                                     \
    }

#define FA_HS 16
#include "flash_attn_block.h"
FA_KERNELS(16)
#undef FA_HS
#define FA_HS 32
#include "flash_attn_block.h"
FA_KERNELS(32)
#undef FA_HS
#define FA_HS 64
#include "flash_attn_block.h"
FA_KERNELS(64)
#undef FA_HS

/* Blocks for n x heads sequence-heads of ceil(T / rows) tiles each, or 0
 * when that is more than one grid dimension takes. */
static unsigned fa_grid(long n, int heads, long T, long rows, long *tiles)
{
    *tiles = (T + rows - 1) / rows;
    long blocks = n * heads * *tiles;
    return blocks > 0x7fffffffL ? 0u : (unsigned)blocks;
}

extern "C" int rm_gpu_flash_attn_supports(long head_size)
{
    return head_size == 16 || head_size == 32 || head_size == 64;
}

extern "C" cudaError_t rm_gpu_flash_attn_forward(const float *qkv, float *y, float *lse, long n, long T, int heads,
                                                 long head_size, float scale, cudaStream_t stream)
{
    if (n < 1 || T < 1)
        return cudaSuccess;
    long tiles;
    unsigned grid = fa_grid(n, heads, T, FA_ROWS, &tiles);
    if (!grid || !rm_gpu_flash_attn_supports(head_size))
        return cudaErrorInvalidValue;
    switch (head_size) {
    case 16: fa_forward_kernel_hs16<<<grid, FA_ROWS, 0, stream>>>(qkv, y, lse, T, heads, scale, tiles); break;
    case 32: fa_forward_kernel_hs32<<<grid, FA_ROWS, 0, stream>>>(qkv, y, lse, T, heads, scale, tiles); break;
    default: fa_forward_kernel_hs64<<<grid, FA_ROWS, 0, stream>>>(qkv, y, lse, T, heads, scale, tiles); break;
    }
    return cudaGetLastError();
}

extern "C" cudaError_t rm_gpu_flash_attn_backward(const float *qkv, const float *y, const float *dy, const float *lse,
                                                  float *D, float *dqkv, long n, long T, int heads, long head_size,
                                                  float scale, cudaStream_t stream)
{
    if (n < 1 || T < 1)
        return cudaSuccess;
    long q_tiles, kv_tiles;
    unsigned q_grid = fa_grid(n, heads, T, FA_ROWS, &q_tiles), kv_grid = fa_grid(n, heads, T, FA_KV_KEYS, &kv_tiles);
    if (!q_grid || !kv_grid || !rm_gpu_flash_attn_supports(head_size))
        return cudaErrorInvalidValue;
#define FA_BACKWARD(HS)                                                                                               \
    fa_dq_kernel_hs##HS<<<q_grid, FA_ROWS, 0, stream>>>(qkv, y, dy, lse, D, dqkv, T, heads, scale, q_tiles);         \
    if (cudaPeekAtLastError() != cudaSuccess)                                                                         \
        break;                                                                                                        \
    fa_dkv_kernel_hs##HS<<<kv_grid, FA_KV_KEYS, 0, stream>>>(qkv, dy, lse, D, dqkv, T, heads, scale, kv_tiles);      \
    break;
    switch (head_size) {
    case 16: FA_BACKWARD(16)
    case 32: FA_BACKWARD(32)
    default: FA_BACKWARD(64)
    }
#undef FA_BACKWARD
    return cudaGetLastError();
}
