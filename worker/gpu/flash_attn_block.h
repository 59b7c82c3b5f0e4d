/* Fused causal attention: the work of one thread block of each of
 * flash_attn.cu's three kernels, written once for the device and for the
 * host, where tests/test_flash_attn.c runs every block with one POSIX
 * thread per CUDA thread and a barrier for __syncthreads, so the tiling,
 * the causal bounds, the layouts and the barriers are checked on a machine
 * without a GPU against the plain formulas.
 *
 * Layouts are the GPT's (gpt_gpu.c): qkv [n x T x 3C] with head h's q, k, v
 * in columns h*HS.. of each C-wide third; y and dy [n x T x C], head h in
 * columns h*HS..; lse and D [n x heads x T]. The T x T scores are never
 * stored: forward keeps only each row's log-sum-exp, backward recomputes
 * the probabilities from it.
 *
 *   forward  (block: FA_ROWS query rows of one sequence and head, a thread
 *            per row): y = softmax(scale q k^T, causal) v by an online
 *            softmax over key tiles of FA_KEYS rows in shared memory;
 *            lse = max + log(sum).
 *   dq       (same blocks): D = dy . y per row, then over the key tiles
 *            p = exp(scale q.k - lse), ds = p (dy.v - D), dq = scale sum ds k.
 *   dkv      (block: FA_KV_KEYS key rows, a thread per key, its k and v in
 *            shared memory) over query tiles of FA_KV_QUERIES rows:
 *            dv = sum p dy, dk = scale sum ds q.
 * Every sum runs in one thread in a fixed order and nothing is added
 * atomically: the same inputs give the same bits. dq runs before dkv,
 * which reads its D.
 *
 * Instantiated per head size: define FA_HS (16, 32 or 64: the tiles of
 * 128 would not fit the 48 KiB of static shared memory) and
 * include this file; its names end in _hs<FA_HS>. On the host, the
 * includer defines fa_host_sync(), the block's barrier. */
#ifndef RINGMASTER_FLASH_ATTN_BLOCK_COMMON
#define RINGMASTER_FLASH_ATTN_BLOCK_COMMON

#include <math.h>

#define FA_ROWS 64       /* query rows (threads) per forward and dq block */
#define FA_KEYS 64       /* key rows per tile in forward and dq */
#define FA_KV_KEYS 32    /* key rows (threads) per dkv block */
#define FA_KV_QUERIES 32 /* query rows per tile in dkv */

#ifdef __CUDACC__
#define FA_FN static __device__ __forceinline__
#define FA_UNROLL _Pragma("unroll")
#define FA_ROLLED _Pragma("unroll 1")
#define FA_SYNC() __syncthreads()
#else
#define FA_FN static inline
#define FA_UNROLL
#define FA_ROLLED
void fa_host_sync(void);
#define FA_SYNC() fa_host_sync()
#endif

#define FA_CAT2(name, hs) name##_hs##hs
#define FA_CAT(name, hs) FA_CAT2(name, hs)
#define FA_NAME(name) FA_CAT(name, FA_HS)

/* Copies `count` floats per row, index i of row r from src[r * stride + i]
 * for rows [first, first + rows) into tile (row r at tile + (r - first) *
 * ld), thread tid of threads taking every threads-th float (consecutive
 * threads, consecutive addresses); rows at or past T become 0. */
FA_FN void fa_load_rows(float *tile, int ld, const float *src, long stride, long first, int rows, int count, long T,
                        int tid, int threads)
{
    for (int i = tid; i < rows * count; i += threads) {
        int r = i / count, d = i % count;
        long row = first + r;
        tile[r * ld + d] = row < T ? src[row * stride + d] : 0.0f;
    }
}

#endif

#ifndef FA_HS
#error "define FA_HS before including flash_attn_block.h"
#endif

/* Forward block `tile` (0: the first FA_ROWS queries) of sequence-head bh
 * (b * heads + h); Ks, Vs: FA_KEYS x FA_HS floats of shared memory each. */
FA_FN void FA_NAME(fa_forward_block)(const float *qkv, float *y, float *lse, long T, int heads, float scale, long bh,
                                     long tile, int tid, float *Ks, float *Vs)
{
    long C = (long)heads * FA_HS, C3 = 3 * C, b = bh / heads, h = bh % heads;
    const float *q_base = qkv + b * T * C3 + h * FA_HS, *k_base = q_base + C, *v_base = q_base + 2 * C;
    long first = tile * FA_ROWS, t = first + tid;
    int live = t < T;
    float q[FA_HS], o[FA_HS], row_max = -INFINITY, row_sum = 0.0f;
    FA_UNROLL
    for (int d = 0; d < FA_HS; d++) {
        q[d] = live ? q_base[t * C3 + d] : 0.0f;
        o[d] = 0.0f;
    }
    long last = first + FA_ROWS - 1 < T - 1 ? first + FA_ROWS - 1 : T - 1; /* the block's last query */
    for (long k0 = 0; k0 <= last; k0 += FA_KEYS) {
        fa_load_rows(Ks, FA_HS, k_base, C3, k0, FA_KEYS, FA_HS, T, tid, FA_ROWS);
        fa_load_rows(Vs, FA_HS, v_base, C3, k0, FA_KEYS, FA_HS, T, tid, FA_ROWS);
        FA_SYNC();
        FA_ROLLED /* the row's registers hold q, o or dq: unrolling keys would spill them */
        for (int j = 0; live && j < FA_KEYS && k0 + j <= t; j++) {
            float s = 0.0f;
            FA_UNROLL
            for (int d = 0; d < FA_HS; d++)
                s += q[d] * Ks[j * FA_HS + d];
            s *= scale; /* as dq and dkv recompute it, so that their p is this one */
            if (s > row_max) { /* a new maximum: rescale what is summed so far */
                float c = expf(row_max - s);
                row_sum *= c;
                FA_UNROLL
                for (int d = 0; d < FA_HS; d++)
                    o[d] *= c;
                row_max = s;
            }
            float p = expf(s - row_max);
            row_sum += p;
            FA_UNROLL
            for (int d = 0; d < FA_HS; d++)
                o[d] += p * Vs[j * FA_HS + d];
        }
        FA_SYNC(); /* the tile is read by every thread before the next overwrites it */
    }
    if (!live)
        return;
    float inv = 1.0f / row_sum;
    float *y_row = y + (b * T + t) * C + h * FA_HS;
    FA_UNROLL
    for (int d = 0; d < FA_HS; d++)
        y_row[d] = o[d] * inv;
    lse[bh * T + t] = row_max + logf(row_sum);
}

/* dq block: the same blocks as forward. Writes D of its rows and the q
 * third of dqkv. */
FA_FN void FA_NAME(fa_dq_block)(const float *qkv, const float *y, const float *dy, const float *lse, float *D_out,
                                float *dqkv, long T, int heads, float scale, long bh, long tile, int tid, float *Ks,
                                float *Vs)
{
    long C = (long)heads * FA_HS, C3 = 3 * C, b = bh / heads, h = bh % heads;
    const float *q_base = qkv + b * T * C3 + h * FA_HS, *k_base = q_base + C, *v_base = q_base + 2 * C;
    long first = tile * FA_ROWS, t = first + tid;
    int live = t < T;
    float q[FA_HS], g[FA_HS], dq[FA_HS], D = 0.0f, row_lse = live ? lse[bh * T + t] : 0.0f;
    const float *y_row = y + (b * T + t) * C + h * FA_HS, *dy_row = dy + (b * T + t) * C + h * FA_HS;
    FA_UNROLL
    for (int d = 0; d < FA_HS; d++) {
        q[d] = live ? q_base[t * C3 + d] : 0.0f;
        g[d] = live ? dy_row[d] : 0.0f;
        D += live ? g[d] * y_row[d] : 0.0f;
        dq[d] = 0.0f;
    }
    if (live)
        D_out[bh * T + t] = D;
    long last = first + FA_ROWS - 1 < T - 1 ? first + FA_ROWS - 1 : T - 1;
    for (long k0 = 0; k0 <= last; k0 += FA_KEYS) {
        fa_load_rows(Ks, FA_HS, k_base, C3, k0, FA_KEYS, FA_HS, T, tid, FA_ROWS);
        fa_load_rows(Vs, FA_HS, v_base, C3, k0, FA_KEYS, FA_HS, T, tid, FA_ROWS);
        FA_SYNC();
        FA_ROLLED
        for (int j = 0; live && j < FA_KEYS && k0 + j <= t; j++) {
            float s = 0.0f, dp = 0.0f;
            FA_UNROLL
            for (int d = 0; d < FA_HS; d++) {
                s += q[d] * Ks[j * FA_HS + d];
                dp += g[d] * Vs[j * FA_HS + d];
            }
            float p = expf(s * scale - row_lse), ds = p * (dp - D);
            FA_UNROLL
            for (int d = 0; d < FA_HS; d++)
                dq[d] += ds * Ks[j * FA_HS + d];
        }
        FA_SYNC();
    }
    if (!live)
        return;
    float *dq_row = dqkv + (b * T + t) * C3 + h * FA_HS;
    FA_UNROLL
    for (int d = 0; d < FA_HS; d++)
        dq_row[d] = dq[d] * scale;
}

/* dkv block `tile` (0: the first FA_KV_KEYS keys) of sequence-head bh:
 * writes the k and v thirds of dqkv. Shared memory: Kown, Vown
 * FA_KV_KEYS x (FA_HS + 1) (padded: thread j reads its own row, so rows
 * must fall in different banks); Qs, Gs FA_KV_QUERIES x FA_HS; lse_s, D_s
 * FA_KV_QUERIES. */
FA_FN void FA_NAME(fa_dkv_block)(const float *qkv, const float *dy, const float *lse, const float *D_in, float *dqkv,
                                 long T, int heads, float scale, long bh, long tile, int tid, float *Kown,
                                 float *Vown, float *Qs, float *Gs, float *lse_s, float *D_s)
{
    long C = (long)heads * FA_HS, C3 = 3 * C, b = bh / heads, h = bh % heads;
    const float *q_base = qkv + b * T * C3 + h * FA_HS, *k_base = q_base + C, *v_base = q_base + 2 * C;
    const float *dy_base = dy + b * T * C + h * FA_HS;
    long first = tile * FA_KV_KEYS, j = first + tid;
    int live = j < T;
    const int ld = FA_HS + 1;
    fa_load_rows(Kown, ld, k_base, C3, first, FA_KV_KEYS, FA_HS, T, tid, FA_KV_KEYS);
    fa_load_rows(Vown, ld, v_base, C3, first, FA_KV_KEYS, FA_HS, T, tid, FA_KV_KEYS);
    float dk[FA_HS], dv[FA_HS];
    FA_UNROLL
    for (int d = 0; d < FA_HS; d++)
        dk[d] = dv[d] = 0.0f;
    const float *k_own = Kown + tid * ld, *v_own = Vown + tid * ld;
    /* queries before the block's first key see none of its keys */
    for (long q0 = first / FA_KV_QUERIES * FA_KV_QUERIES; q0 < T; q0 += FA_KV_QUERIES) {
        fa_load_rows(Qs, FA_HS, q_base, C3, q0, FA_KV_QUERIES, FA_HS, T, tid, FA_KV_KEYS);
        fa_load_rows(Gs, FA_HS, dy_base, C, q0, FA_KV_QUERIES, FA_HS, T, tid, FA_KV_KEYS);
        fa_load_rows(lse_s, 1, lse + bh * T, 1, q0, FA_KV_QUERIES, 1, T, tid, FA_KV_KEYS);
        fa_load_rows(D_s, 1, D_in + bh * T, 1, q0, FA_KV_QUERIES, 1, T, tid, FA_KV_KEYS);
        FA_SYNC(); /* also orders the first tile after Kown and Vown */
        FA_ROLLED
        for (int i = 0; live && i < FA_KV_QUERIES && q0 + i < T; i++) {
            if (q0 + i < j) /* causal: query q0 + i does not see key j */
                continue;
            float s = 0.0f, dp = 0.0f;
            FA_UNROLL
            for (int d = 0; d < FA_HS; d++) {
                s += Qs[i * FA_HS + d] * k_own[d];
                dp += Gs[i * FA_HS + d] * v_own[d];
            }
            float p = expf(s * scale - lse_s[i]), ds = p * (dp - D_s[i]);
            FA_UNROLL
            for (int d = 0; d < FA_HS; d++) {
                dv[d] += p * Gs[i * FA_HS + d];
                dk[d] += ds * Qs[i * FA_HS + d];
            }
        }
        FA_SYNC();
    }
    if (!live)
        return;
    float *dk_row = dqkv + (b * T + j) * C3 + C + h * FA_HS, *dv_row = dk_row + C;
    FA_UNROLL
    for (int d = 0; d < FA_HS; d++) {
        dk_row[d] = dk[d] * scale;
        dv_row[d] = dv[d];
    }
}
