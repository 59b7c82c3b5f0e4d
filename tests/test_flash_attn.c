/* The GPU's fused causal attention (worker/gpu/flash_attn_block.h) run on
 * the host: every block of its three kernels with one POSIX thread per CUDA
 * thread and a barrier for __syncthreads, as flash_attn.cu launches them,
 * against the plain formulas in double precision (scores, causal softmax,
 * y = P v; dP = dy v^T, dS = P (dP - rowsum(P dP)), dq = scale dS k,
 * dk = scale dS^T q, dv = P^T dy). Shapes cover one partial tile, several
 * tiles with a partial last one, several sequences and heads, and each head
 * size with kernels; the runs repeat bit for bit. No GPU is needed: the
 * kernels' tiling, causal bounds, layouts and barriers are what is
 * checked here, the device's arithmetic by tests/test_gpu.c. */
#define _POSIX_C_SOURCE 200809L /* pthread_barrier_t */
#include <check.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FA_HS 16
#include "flash_attn_block.h"
#undef FA_HS
#define FA_HS 32
#include "flash_attn_block.h"
#undef FA_HS
#define FA_HS 64
#include "flash_attn_block.h"
#undef FA_HS

#include "attention_reference.h"
#include "test_util.h"

static pthread_barrier_t block_barrier;

void fa_host_sync(void)
{
    pthread_barrier_wait(&block_barrier);
}

typedef struct shape {
    long n, T, hs;
    int heads;
} shape;

/* The tensors of one run, float as on the device. */
typedef struct tensors {
    float *qkv, *y, *lse, *dy, *D, *dqkv;
} tensors;

enum kernel { FORWARD, DQ, DKV };

typedef struct thread_arg {
    enum kernel kernel;
    const shape *s;
    tensors *t;
    long bh, tile;
    int tid;
    float *smem; /* the block's shared memory, one region for all its threads */
} thread_arg;

static float scale_of(const shape *s)
{
    return 1.0f / sqrtf((float)s->hs);
}

/* One CUDA thread: the block body of its kernel and head size. */
static void *run_thread(void *p)
{
    thread_arg *a = p;
    const shape *s = a->s;
    tensors *t = a->t;
    float sc = scale_of(s), *m = a->smem;
    long T = s->T;
    int H = s->heads;
#define BODIES(HS)                                                                                                  \
    if (a->kernel == FORWARD)                                                                                       \
        fa_forward_block_hs##HS(t->qkv, t->y, t->lse, T, H, sc, a->bh, a->tile, a->tid, m, m + FA_KEYS * HS);       \
    else if (a->kernel == DQ)                                                                                       \
        fa_dq_block_hs##HS(t->qkv, t->y, t->dy, t->lse, t->D, t->dqkv, T, H, sc, a->bh, a->tile, a->tid, m,         \
                           m + FA_KEYS * HS);                                                                       \
    else {                                                                                                          \
        float *kown = m, *vown = kown + FA_KV_KEYS * (HS + 1), *qs = vown + FA_KV_KEYS * (HS + 1);                  \
        float *gs = qs + FA_KV_QUERIES * HS, *ls = gs + FA_KV_QUERIES * HS, *ds = ls + FA_KV_QUERIES;               \
        fa_dkv_block_hs##HS(t->qkv, t->dy, t->lse, t->D, t->dqkv, T, H, sc, a->bh, a->tile, a->tid, kown, vown, qs, \
                            gs, ls, ds);                                                                            \
    }
    if (s->hs == 16) {
        BODIES(16)
    } else if (s->hs == 32) {
        BODIES(32)
    } else {
        BODIES(64)
    }
#undef BODIES
    return NULL;
}

/* Launches one kernel: every (sequence-head, tile) block in turn, each with
 * its threads running at once. Shared memory starts as NaN, so a value read
 * before it is written shows. */
static void launch(enum kernel k, const shape *s, tensors *t)
{
    int threads = k == DKV ? FA_KV_KEYS : FA_ROWS;
    long tiles = (s->T + threads - 1) / threads;
    size_t smem_floats = 2 * FA_KV_KEYS * (64 + 1) + 2 * FA_KV_QUERIES * 64 + 2 * FA_KV_QUERIES + 2 * FA_KEYS * 64;
    float *smem = malloc(smem_floats * sizeof(float));
    ck_assert_ptr_nonnull(smem);
    pthread_t tids[FA_ROWS];
    thread_arg args[FA_ROWS];
    ck_assert_int_eq(pthread_barrier_init(&block_barrier, NULL, (unsigned)threads), 0);
    for (long bh = 0; bh < s->n * s->heads; bh++)
        for (long tile = 0; tile < tiles; tile++) {
            for (size_t i = 0; i < smem_floats; i++)
                smem[i] = NAN;
            for (int i = 0; i < threads; i++) {
                args[i] = (thread_arg){.kernel = k, .s = s, .t = t, .bh = bh, .tile = tile, .tid = i, .smem = smem};
                ck_assert_int_eq(pthread_create(&tids[i], NULL, run_thread, &args[i]), 0);
            }
            for (int i = 0; i < threads; i++)
                pthread_join(tids[i], NULL);
        }
    pthread_barrier_destroy(&block_barrier);
    free(smem);
}

static void alloc_tensors(const shape *s, tensors *t)
{
    long C = s->heads * s->hs, rows = s->n * s->T;
    t->qkv = malloc((size_t)(rows * 3 * C) * sizeof(float));
    t->y = malloc((size_t)(rows * C) * sizeof(float));
    t->dy = malloc((size_t)(rows * C) * sizeof(float));
    t->dqkv = malloc((size_t)(rows * 3 * C) * sizeof(float));
    t->lse = malloc((size_t)(s->n * s->heads * s->T) * sizeof(float));
    t->D = malloc((size_t)(s->n * s->heads * s->T) * sizeof(float));
    ck_assert(t->qkv && t->y && t->dy && t->dqkv && t->lse && t->D);
    /* scores up to a few units: the softmax is neither flat nor one-hot */
    for (long i = 0; i < rows * 3 * C; i++)
        t->qkv[i] = (float)(1.5 * rmt_uniform(1, (uint64_t)i));
    for (long i = 0; i < rows * C; i++)
        t->dy[i] = (float)rmt_uniform(2, (uint64_t)i);
    /* the kernels write every element: NaN shows one they miss */
    for (long i = 0; i < rows * C; i++)
        t->y[i] = NAN;
    for (long i = 0; i < rows * 3 * C; i++)
        t->dqkv[i] = NAN;
}

static void free_tensors(tensors *t)
{
    free(t->qkv);
    free(t->y);
    free(t->dy);
    free(t->dqkv);
    free(t->lse);
    free(t->D);
}

static void run_all(const shape *s, tensors *t)
{
    launch(FORWARD, s, t);
    launch(DQ, s, t);
    launch(DKV, s, t);
}

/* |got - want| <= tol (|want| + 1e-2 of the tensor's largest), named. */
static void expect_close(const char *what, const float *got, const double *want, long count, double tol)
{
    double peak = 0;
    for (long i = 0; i < count; i++)
        peak = fmax(peak, fabs(want[i]));
    for (long i = 0; i < count; i++)
        ck_assert_msg(fabs(got[i] - want[i]) <= tol * (fabs(want[i]) + 1e-2 * peak), "%s[%ld]: %.9g, expected %.9g",
                      what, i, (double)got[i], want[i]);
}

static const shape shapes[] = {
    {.n = 2, .T = 16, .hs = 16, .heads = 4},  /* one partial tile (the GPU test's GPT) */
    {.n = 2, .T = 100, .hs = 16, .heads = 3}, /* two query tiles, four key tiles, both partial */
    {.n = 1, .T = 129, .hs = 32, .heads = 2}, /* one row past whole tiles */
    {.n = 2, .T = 70, .hs = 64, .heads = 2},  /* GPT-2's head size */
};

START_TEST(fused_attention_matches_the_formulas)
{
    const shape *s = &shapes[_i];
    long C = s->heads * s->hs, C3 = 3 * C, T = s->T, hs = s->hs, rows = s->n * T;
    tensors t;
    alloc_tensors(s, &t);
    run_all(s, &t);

    double *y = malloc((size_t)(rows * C) * sizeof(double)), *lse = malloc((size_t)(s->n * s->heads * T) * sizeof(double));
    double *dqkv = malloc((size_t)(rows * C3) * sizeof(double));
    ck_assert(y && lse && dqkv);
    rmt_attention_reference(t.qkv, t.dy, s->n, T, s->heads, hs, y, lse, dqkv);
    expect_close("y", t.y, y, rows * C, 1e-4);
    expect_close("lse", t.lse, lse, s->n * s->heads * T, 1e-5);
    expect_close("dqkv", t.dqkv, dqkv, rows * C3, 1e-4);

    /* again, from the same inputs: the same bits */
    tensors u;
    alloc_tensors(s, &u);
    run_all(s, &u);
    ck_assert_msg(memcmp(t.y, u.y, (size_t)(rows * C) * sizeof(float)) == 0, "y differs between two runs");
    ck_assert_msg(memcmp(t.dqkv, u.dqkv, (size_t)(rows * C3) * sizeof(float)) == 0, "dqkv differs between two runs");
    free_tensors(&u);
    free_tensors(&t);
    free(y);
    free(lse);
    free(dqkv);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("flash_attn");
    TCase *tc = tcase_create("host");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, fused_attention_matches_the_formulas, 0, (int)(sizeof shapes / sizeof shapes[0]));
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
