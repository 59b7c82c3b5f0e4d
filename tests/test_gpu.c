/* The GPU backend against the CPU backend: every kernel against the CPU's
 * formula, the MLP's products in fp32, tf32 and bf16 against mlp_cpu.c,
 * whole training steps (SGD and AdamW) against backend_cpu.c, checkpoints
 * moved between the two backends, the NCCL transport on one rank (plain
 * and ZeRO-1's sharded form), and ZeRO-1 on one worker (a no-op); the GPT's
 * loss and whole gradient against gpt_cpu.c (fp32, tf32), two GPU runs
 * bit for bit, and GPT training steps (AdamW, per-tensor decay, clipping,
 * gradient accumulation) against the CPU backend.
 *
 * Agreement is the relative error |gpu - cpu| / |cpu| over a whole tensor,
 * held under a threshold per precision: fp32 to float rounding, tf32 to its
 * 10-bit mantissa, bf16 to its 7-bit one.
 *
 * Without a usable CUDA device the suite prints why and exits 77, which
 * CTest reports as skipped. It runs unforked (CK_NOFORK: a CUDA context
 * does not survive fork); the ctest TIMEOUT bounds it. */
#include "attention_reference.h"
#include "backend.h"
#include "config.h"
#include "gpt_cpu.h"
#include "gpt_gpu.h"
#include "gpt_memory.h"
#include "gpu_ops.h"
#include "grad_sync.h"
#include "mlp_cpu.h"
#include "mlp_gpu.h"
#include "model_shape.h"
#include "nccl_transport.h"
#include "optimizer.h"
#include "shard.h"
#include "test_util.h"

#include <check.h>
#include <cuda_runtime_api.h>
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SKIP_CODE 77

/* Relative-error ceilings per precision (index: enum rm_precision). */
static const double product_tolerance[3] = {1e-5, 5e-3, 3e-2};
/* Gradient norms a few training steps in: AdamW's normalised update turns
 * the products' rounding into weight differences of the learning rate's
 * size, so tf32 drifts further than one product does (seen on an H100:
 * 1.1% after four AdamW steps). */
static const double step_norm_tolerance[3] = {2e-5, 2e-2, 6e-2};
static const char *precision_name[3] = {"fp32", "tf32", "bf16"};

#define CUDA_OK(call)                                                                                  \
    do {                                                                                               \
        cudaError_t rc_ = (call);                                                                      \
        ck_assert_msg(rc_ == cudaSuccess, "%s: %s", #call, cudaGetErrorString(rc_));                   \
    } while (0)

static double uniform(uint64_t seed, uint64_t i)
{
    uint64_t z = seed * 0x9e3779b97f4a7c15ULL + i * 0xbf58476d1ce4e5b9ULL + 7;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    return (double)(z >> 11) / 9007199254740992.0 * 2.0 - 1.0;
}

static float *random_floats(long n, uint64_t seed, double scale)
{
    float *x = malloc((size_t)n * sizeof *x);
    ck_assert_ptr_nonnull(x);
    for (long i = 0; i < n; i++)
        x[i] = (float)(uniform(seed, (uint64_t)i) * scale);
    return x;
}

static void *to_device(const void *host, size_t bytes)
{
    void *dev;
    CUDA_OK(cudaMalloc(&dev, bytes));
    if (host)
        CUDA_OK(cudaMemcpy(dev, host, bytes, cudaMemcpyHostToDevice));
    return dev;
}

static void from_device(void *host, const void *dev, size_t bytes)
{
    CUDA_OK(cudaDeviceSynchronize());
    CUDA_OK(cudaMemcpy(host, dev, bytes, cudaMemcpyDeviceToHost));
}

static double rel_err(const float *got, const float *want, long n)
{
    double diff = 0, norm = 0;
    for (long i = 0; i < n; i++) {
        double d = (double)got[i] - (double)want[i];
        diff += d * d;
        norm += (double)want[i] * (double)want[i];
    }
    return norm > 0 ? sqrt(diff / norm) : sqrt(diff);
}

#define assert_agrees(got, want, n, tol, what)                                                         \
    do {                                                                                               \
        double e_ = rel_err((got), (want), (n));                                                       \
        ck_assert_msg(e_ <= (tol), "%s: relative error %.3g > %.3g", (what), e_, (double)(tol));       \
    } while (0)

/* float -> bf16 bits, round to nearest even (finite inputs). */
static uint16_t bf16_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static float bf16_value(uint16_t b)
{
    uint32_t u = (uint32_t)b << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* --- one kernel at a time ------------------------------------------------ */

START_TEST(bias_act_matches_cpu)
{
    const long rows = 37, cols = 300;
    static const int acts[] = {RM_GPU_ACT_NONE, RM_GPU_ACT_RELU, RM_GPU_ACT_TANH};
    for (int a = 0; a < 3; a++) {
        float *z = random_floats(rows * cols, 1 + a, 2.0), *bias = random_floats(cols, 11, 1.0);
        float *want = malloc((size_t)(rows * cols) * sizeof *want), *got = malloc((size_t)(rows * cols) * sizeof *got);
        uint16_t *got16 = malloc((size_t)(rows * cols) * 2);
        for (long r = 0; r < rows; r++)
            for (long c = 0; c < cols; c++) {
                float v = z[r * cols + c] + bias[c];
                want[r * cols + c] = acts[a] == RM_GPU_ACT_RELU ? (v > 0 ? v : 0) : acts[a] == RM_GPU_ACT_TANH ? tanhf(v) : v;
            }
        float *dz = to_device(z, (size_t)(rows * cols) * 4), *db = to_device(bias, (size_t)cols * 4);
        void *dz16 = to_device(NULL, (size_t)(rows * cols) * 2);
        CUDA_OK(rm_gpu_bias_act(dz, db, rows, cols, acts[a], dz16, 0));
        from_device(got, dz, (size_t)(rows * cols) * 4);
        from_device(got16, dz16, (size_t)(rows * cols) * 2);
        assert_agrees(got, want, rows * cols, 1e-6, "bias_act");
        long bad16 = 0;
        for (long i = 0; i < rows * cols; i++)
            bad16 += got16[i] != bf16_bits(got[i]);
        ck_assert_msg(bad16 == 0, "bias_act: %ld bf16 copies are not the rounded result", bad16);
        cudaFree(dz);
        cudaFree(db);
        cudaFree(dz16);
        free(z), free(bias), free(want), free(got), free(got16);
    }
}
END_TEST

START_TEST(act_backward_matches_cpu)
{
    const long n = 5000;
    for (int a = RM_GPU_ACT_RELU; a <= RM_GPU_ACT_TANH; a++) {
        float *delta = random_floats(n, 3, 1.0), *act = random_floats(n, 4, 1.0), *want = malloc((size_t)n * 4);
        float *got = malloc((size_t)n * 4);
        for (long i = 0; i < n; i++) {
            if (a == RM_GPU_ACT_RELU && act[i] < 0)
                act[i] = 0; /* a ReLU output */
            want[i] = a == RM_GPU_ACT_RELU ? (act[i] > 0 ? delta[i] : 0) : delta[i] * (1.0f - act[i] * act[i]);
        }
        float *dd = to_device(delta, (size_t)n * 4), *da = to_device(act, (size_t)n * 4);
        CUDA_OK(rm_gpu_act_backward(dd, da, n, a, NULL, 0));
        from_device(got, dd, (size_t)n * 4);
        assert_agrees(got, want, n, 1e-6, "act_backward");
        cudaFree(dd);
        cudaFree(da);
        free(delta), free(act), free(want), free(got);
    }
}
END_TEST

START_TEST(bias_grad_matches_cpu)
{
    const long rows = 1000, cols = 77;
    float *dz = random_floats(rows * cols, 5, 1.0), want[77], got[77], again[77];
    for (long c = 0; c < cols; c++) {
        double s = 0;
        for (long r = 0; r < rows; r++)
            s += dz[r * cols + c];
        want[c] = (float)s;
    }
    float *ddz = to_device(dz, (size_t)(rows * cols) * 4), *ddb = to_device(NULL, (size_t)cols * 4);
    CUDA_OK(rm_gpu_bias_grad(ddz, rows, cols, ddb, 0, 0));
    from_device(got, ddb, sizeof got);
    CUDA_OK(rm_gpu_bias_grad(ddz, rows, cols, ddb, 0, 0));
    from_device(again, ddb, sizeof again);
    assert_agrees(got, want, cols, 1e-6, "bias_grad");
    ck_assert_msg(memcmp(got, again, sizeof got) == 0, "bias_grad is not deterministic");
    cudaFree(ddz);
    cudaFree(ddb);
    free(dz);
}
END_TEST

START_TEST(softmax_xent_and_loss_sum_match_cpu)
{
    const long rows = 300, classes = 10;
    const float grad_scale = 1.0f / 300.0f;
    float *z = random_floats(rows * classes, 6, 4.0);
    uint8_t labels[300];
    for (long r = 0; r < rows; r++)
        labels[r] = (uint8_t)((r * 7) % classes);
    /* a tie: the first of the equal maxima is the prediction */
    for (long j = 0; j < classes; j++)
        z[j] = j == 3 || j == 6 ? 5.0f : 0.0f;
    labels[0] = 3;
    double want_loss = 0;
    long want_correct = 0;
    float *want_dz = malloc((size_t)(rows * classes) * 4), *got_dz = malloc((size_t)(rows * classes) * 4);
    for (long r = 0; r < rows; r++) { /* mlp_cpu.c's formulas */
        const float *row = z + r * classes;
        long arg = 0;
        float max = row[0];
        for (long j = 1; j < classes; j++)
            if (row[j] > max)
                max = row[j], arg = j;
        double sum = 0;
        float sumf = 0;
        for (long j = 0; j < classes; j++) {
            sum += exp((double)(row[j] - max));
            sumf += expf(row[j] - max);
        }
        want_loss += log(sum) - (double)(row[labels[r]] - max);
        want_correct += arg == labels[r];
        for (long j = 0; j < classes; j++)
            want_dz[r * classes + j] = expf(row[j] - max) * (grad_scale / sumf) - (j == labels[r] ? grad_scale : 0);
    }
    float *dzl = to_device(z, (size_t)(rows * classes) * 4), *ddz = to_device(NULL, (size_t)(rows * classes) * 4);
    uint8_t *dl = to_device(labels, sizeof labels);
    double *row_loss = to_device(NULL, (size_t)rows * 8), *loss = to_device(NULL, 8);
    int *row_correct = to_device(NULL, (size_t)rows * 4);
    long long *correct = to_device(NULL, 8);
    CUDA_OK(rm_gpu_softmax_xent(dzl, dl, rows, classes, grad_scale, row_loss, row_correct, ddz, NULL, 0));
    CUDA_OK(rm_gpu_loss_sum(row_loss, row_correct, rows, loss, correct, 0));
    double got_loss;
    long long got_correct;
    from_device(&got_loss, loss, 8);
    from_device(&got_correct, correct, 8);
    from_device(got_dz, ddz, (size_t)(rows * classes) * 4);
    ck_assert_msg(fabs(got_loss - want_loss) <= 1e-6 * fabs(want_loss), "loss %.9g, cpu %.9g", got_loss, want_loss);
    ck_assert_int_eq(got_correct, want_correct);
    assert_agrees(got_dz, want_dz, rows * classes, 1e-6, "softmax_xent gradient");
    int first_correct;
    from_device(&first_correct, row_correct, 4);
    ck_assert_msg(first_correct == 1, "a tie must predict the first maximum (class 3)");
    cudaFree(dzl), cudaFree(ddz), cudaFree(dl), cudaFree(row_loss), cudaFree(loss), cudaFree(row_correct);
    cudaFree(correct);
    free(z), free(want_dz), free(got_dz);
}
END_TEST

START_TEST(sumsq_and_cast_bf16)
{
    const long n = 1234567;
    float *x = random_floats(n, 8, 3.0);
    double want = 0;
    for (long i = 0; i < n; i++)
        want += (double)x[i] * (double)x[i];
    float *dx = to_device(x, (size_t)n * 4);
    double *partial = to_device(NULL, RM_GPU_SUMSQ_PARTIALS * 8), *out = to_device(NULL, 8), got;
    CUDA_OK(rm_gpu_sumsq(dx, n, partial, out, 0));
    from_device(&got, out, 8);
    ck_assert_msg(fabs(got - want) <= 1e-12 * want, "sumsq %.17g, cpu %.17g", got, want);
    uint16_t *d16 = to_device(NULL, (size_t)n * 2), *h16 = malloc((size_t)n * 2);
    CUDA_OK(rm_gpu_cast_bf16(dx, n, d16, 0));
    from_device(h16, d16, (size_t)n * 2);
    long bad = 0;
    for (long i = 0; i < n; i++)
        bad += h16[i] != bf16_bits(x[i]);
    ck_assert_msg(bad == 0, "%ld of %ld bf16 values not rounded to nearest even", bad, n);
    ck_assert(bf16_value(bf16_bits(1.0f)) == 1.0f);
    cudaFree(dx), cudaFree(partial), cudaFree(out), cudaFree(d16);
    free(x), free(h16);
}
END_TEST

/* _i: 0 SGD (with and without weight decay), 1 AdamW; against optimizer.c. */
START_TEST(optimizers_match_cpu)
{
    const long n = 100003;
    rm_config cfg;
    rm_config_defaults(&cfg);
    cfg.optimizer = _i == 0 ? RM_OPT_SGD : RM_OPT_ADAMW;
    cfg.weight_decay = 0.01;
    rm_optimizer cpu;
    rm_error err;
    rm_model flat;
    ck_assert_msg(rm_model_init_flat(&flat, n, 1, &err) == RM_OK, "%s", err.msg);
    ck_assert_msg(rm_optimizer_init(&cpu, &cfg, &flat, &err) == RM_OK, "%s", err.msg);
    rm_model_free(&flat);
    float *w = random_floats(n, 9, 1.0), *w_gpu = malloc((size_t)n * 4), *m_gpu = malloc((size_t)n * 4);
    float *dw = to_device(w, (size_t)n * 4), *dg = to_device(NULL, (size_t)n * 4);
    float *dm = to_device(NULL, (size_t)n * 4), *dv = to_device(NULL, (size_t)n * 4);
    void *dw16 = to_device(NULL, (size_t)n * 2);
    CUDA_OK(cudaMemset(dm, 0, (size_t)n * 4));
    CUDA_OK(cudaMemset(dv, 0, (size_t)n * 4));
    for (int step = 1; step <= 5; step++) {
        float *g = random_floats(n, 100 + (uint64_t)step, 0.1);
        double lr = 0.01 / step;
        rm_optimizer_step(&cpu, w, g, lr, 0, n);
        CUDA_OK(cudaMemcpy(dg, g, (size_t)n * 4, cudaMemcpyHostToDevice));
        if (cfg.optimizer == RM_OPT_SGD) {
            CUDA_OK(rm_gpu_sgd_momentum(dw, dg, dm, n, (float)lr, (float)cfg.momentum, (float)cfg.weight_decay, 1.0f, dw16,
                                        0));
        } else {
            float c1 = (float)(1.0 / (1.0 - pow(cfg.beta1, step))), c2 = (float)(1.0 / sqrt(1.0 - pow(cfg.beta2, step)));
            CUDA_OK(rm_gpu_adamw(dw, dg, dm, dv, n, (float)lr, (float)cfg.beta1, (float)cfg.beta2, (float)cfg.eps,
                                 (float)cfg.weight_decay, c1, c2, 1.0f, dw16, 0));
        }
        free(g);
    }
    from_device(w_gpu, dw, (size_t)n * 4);
    from_device(m_gpu, dm, (size_t)n * 4);
    assert_agrees(w_gpu, w, n, 1e-6, rm_optimizer_name(cfg.optimizer));
    assert_agrees(m_gpu, cpu.m, n, 1e-6, "first moment / velocity");
    uint16_t *h16 = malloc((size_t)n * 2);
    from_device(h16, dw16, (size_t)n * 2);
    long bad = 0;
    for (long i = 0; i < n; i++)
        bad += h16[i] != bf16_bits(w_gpu[i]);
    ck_assert_msg(bad == 0, "%ld bf16 weight copies stale after the update", bad);
    rm_optimizer_free(&cpu);
    cudaFree(dw), cudaFree(dg), cudaFree(dm), cudaFree(dv), cudaFree(dw16);
    free(w), free(w_gpu), free(m_gpu), free(h16);
}
END_TEST

/* --- the MLP's products, per precision ------------------------------------ */

#define IN 96
#define CLASSES 10
#define BATCH 64

static void small_model(rm_config *cfg, rm_model_shape *shape, int activation)
{
    rm_config_defaults(cfg);
    cfg->hidden[0] = 128;
    cfg->hidden[1] = 64;
    cfg->n_hidden = 2;
    cfg->activation = activation;
    rm_model_shape_init(shape, cfg, IN, CLASSES);
}

static void batch_of(uint64_t seed, float *x, uint8_t *labels)
{
    for (long i = 0; i < BATCH * IN; i++)
        x[i] = (float)(0.5 + 0.5 * uniform(seed, (uint64_t)i)); /* like pixels in [0, 1] */
    for (long i = 0; i < BATCH; i++)
        labels[i] = (uint8_t)((i * 3 + seed) % CLASSES);
}

/* _i: precision x activation (relu, tanh). */
START_TEST(mlp_products_match_cpu)
{
    int precision = _i / 2, activation = _i % 2 ? RM_ACT_TANH : RM_ACT_RELU;
    rm_config cfg;
    rm_model_shape s;
    small_model(&cfg, &s, activation);
    float *params = malloc((size_t)s.n_params * 4), *grads = malloc((size_t)s.n_params * 4);
    float *got = malloc((size_t)s.n_params * 4), x[BATCH * IN];
    uint8_t labels[BATCH];
    rm_mlp_init_params(&s, 3, params);
    for (long i = 0; i < s.n_params; i++)
        params[i] += (float)(0.01 * uniform(77, (uint64_t)i)); /* non-zero biases too */
    batch_of(1, x, labels);
    const float grad_scale = 1.0f / BATCH;

    rm_mlp_cpu cpu;
    rm_error err;
    ck_assert_msg(rm_mlp_cpu_init(&cpu, &s, BATCH, &err) == RM_OK, "%s", err.msg);
    double cpu_loss;
    long cpu_correct;
    rm_mlp_cpu_forward(&cpu, params, x, labels, BATCH, &cpu_loss, &cpu_correct);
    ck_assert_msg(rm_mlp_cpu_backward(&cpu, params, grads, labels, BATCH, grad_scale, 0, NULL, NULL, &err) == RM_OK, "%s",
                  err.msg);

    cublasHandle_t blas;
    ck_assert(cublasCreate(&blas) == CUBLAS_STATUS_SUCCESS);
    rm_mlp_gpu gpu;
    ck_assert_msg(rm_mlp_gpu_init(&gpu, &s, BATCH, precision, blas, 0, &err) == RM_OK, "%s", err.msg);
    float *dp = to_device(params, (size_t)s.n_params * 4), *dg = to_device(NULL, (size_t)s.n_params * 4);
    float *dx = to_device(x, sizeof x);
    uint8_t *dl = to_device(labels, sizeof labels);
    void *dp16 = NULL;
    if (precision == RM_PREC_BF16) {
        dp16 = to_device(NULL, (size_t)s.n_params * 2);
        CUDA_OK(rm_gpu_cast_bf16(dp, s.n_params, dp16, 0));
    }
    ck_assert_msg(rm_mlp_gpu_forward(&gpu, dp, dp16, dx, dl, BATCH, 1, grad_scale, &err) == RM_OK, "%s", err.msg);
    ck_assert_msg(rm_mlp_gpu_backward(&gpu, dp, dp16, dg, BATCH, NULL, NULL, &err) == RM_OK, "%s", err.msg);
    double gpu_loss;
    long long gpu_correct;
    float logits[BATCH * CLASSES];
    from_device(&gpu_loss, gpu.loss_sum, 8);
    from_device(&gpu_correct, gpu.correct, 8);
    from_device(logits, gpu.acts[s.n_layers], sizeof logits);
    from_device(got, dg, (size_t)s.n_params * 4);
    double tol = product_tolerance[precision];
    char what[64];
    snprintf(what, sizeof what, "%s %s logits", precision_name[precision], activation ? "tanh" : "relu");
    assert_agrees(logits, cpu.acts[s.n_layers], BATCH * CLASSES, tol, what);
    ck_assert_msg(fabs(gpu_loss - cpu_loss) <= tol * fabs(cpu_loss), "%s loss %.9g, cpu %.9g", precision_name[precision],
                  gpu_loss, cpu_loss);
    snprintf(what, sizeof what, "%s %s gradient", precision_name[precision], activation ? "tanh" : "relu");
    assert_agrees(got, grads, s.n_params, precision == RM_PREC_FP32 ? 1e-5 : 2 * tol, what);
    /* a near-tie may tip either way under other rounding */
    ck_assert_msg(llabs(gpu_correct - (long long)cpu_correct) <= (precision == RM_PREC_FP32 ? 1 : 3),
                  "%s: %lld correct, cpu %ld", precision_name[precision], gpu_correct, cpu_correct);
    rm_mlp_gpu_free(&gpu);
    cublasDestroy(blas);
    rm_mlp_cpu_free(&cpu);
    cudaFree(dp), cudaFree(dg), cudaFree(dx), cudaFree(dl), cudaFree(dp16);
    free(params), free(grads), free(got);
}
END_TEST

/* --- whole steps, backend against backend -------------------------------- */

/* One model per backend kind; a backend holds on to its model. */
static rm_model backend_models[2];

static rm_backend *make_backend(int gpu, const rm_config *cfg, const rm_model_shape *s)
{
    rm_error err;
    rm_dataset_facts facts = {.data_format = RM_DATA_RECORDS, .input_dim = s->dims[0], .classes = s->dims[s->n_layers]};
    rm_model *m = &backend_models[gpu];
    rm_model_free(m);
    ck_assert_msg(rm_model_init(m, cfg, &facts, &err) == RM_OK, "%s", err.msg);
    rm_backend *b = gpu ? rm_backend_gpu_create(m, cfg, BATCH, MPI_COMM_SELF, NULL, NULL, 1.0, &err)
                        : rm_backend_cpu_create(m, cfg, BATCH, MPI_COMM_SELF, NULL, NULL, 1.0, &err);
    ck_assert_msg(b != NULL, "%s backend: %s", gpu ? "gpu" : "cpu", err.msg);
    return b;
}

static void train_step(rm_backend *b, const float *x, const uint8_t *labels, double lr, int prefetch,
                       rm_step_stats *st)
{
    rm_error err;
    memset(st, 0, sizeof *st);
    if (prefetch && b->prefetch)
        ck_assert_msg(b->prefetch(b, x, labels, BATCH, &err) == RM_OK, "%s", err.msg);
    ck_assert_msg(b->backward(b, x, labels, BATCH, 1.0f / BATCH, 0, st, &err) == RM_OK, "%s", err.msg);
    ck_assert_msg(b->reduce(b, st, &err) == RM_OK, "%s", err.msg);
    ck_assert_msg(b->update(b, lr, st, &err) == RM_OK, "%s", err.msg);
}

/* _i: optimizer (sgd, adamw) x precision. Five steps on both backends from
 * the same initial weights; the GPU uses prefetch on odd steps. */
START_TEST(training_steps_match_cpu)
{
    int optimizer = _i / 3 ? RM_OPT_ADAMW : RM_OPT_SGD, precision = _i % 3;
    rm_config cfg;
    rm_model_shape s;
    small_model(&cfg, &s, RM_ACT_RELU);
    cfg.optimizer = optimizer;
    cfg.precision = precision;
    cfg.lr = optimizer == RM_OPT_SGD ? 0.05 : 1e-3;
    cfg.weight_decay = 1e-4;
    rm_backend *cpu = make_backend(0, &cfg, &s), *gpu = make_backend(1, &cfg, &s);
    ck_assert_int_eq(gpu->n_state, cpu->n_state);
    ck_assert_int_eq(gpu->kind, RM_BACKEND_GPU);
    float *pc = malloc((size_t)s.n_params * 4), *pg = malloc((size_t)s.n_params * 4), x[BATCH * IN];
    uint8_t labels[BATCH];
    rm_error err;
    ck_assert_msg(gpu->read_params(gpu, pg, &err) == RM_OK, "%s", err.msg);
    ck_assert_msg(cpu->read_params(cpu, pc, &err) == RM_OK, "%s", err.msg);
    ck_assert_msg(memcmp(pc, pg, (size_t)s.n_params * 4) == 0, "initial weights differ between the backends");
    double tol = product_tolerance[precision];
    /* The GPU reads its batches from page-locked memory, as from the
     * loader's buffers in a run (copied straight to the device). */
    float *x_locked = malloc(sizeof x);
    ck_assert_ptr_nonnull(x_locked);
    ck_assert_ptr_nonnull(gpu->pin_host);
    gpu->pin_host(gpu, x_locked, sizeof x);
    for (int step = 0; step < 5; step++) {
        batch_of(10 + (uint64_t)step, x, labels);
        memcpy(x_locked, x, sizeof x);
        rm_step_stats sc, sg;
        train_step(cpu, x, labels, cfg.lr, 0, &sc);
        train_step(gpu, x_locked, labels, cfg.lr, step % 2, &sg);
        ck_assert_msg(fabs(sg.loss_sum - sc.loss_sum) <= tol * fabs(sc.loss_sum), "step %d: loss %.9g, cpu %.9g", step,
                      sg.loss_sum, sc.loss_sum);
        ck_assert_msg(fabs(sg.grad_norm - sc.grad_norm) <= step_norm_tolerance[precision] * sc.grad_norm + 1e-12,
                      "step %d: gradient norm %.9g, cpu %.9g", step, sg.grad_norm, sc.grad_norm);
        ck_assert_msg(sg.compute_s >= 0 && sg.allreduce_wait_s >= 0, "negative phase times");
    }
    ck_assert_msg(gpu->read_params(gpu, pg, &err) == RM_OK, "%s", err.msg);
    ck_assert_msg(cpu->read_params(cpu, pc, &err) == RM_OK, "%s", err.msg);
    char what[64];
    snprintf(what, sizeof what, "%s %s weights after 5 steps", rm_optimizer_name(optimizer), precision_name[precision]);
    assert_agrees(pg, pc, s.n_params, precision == RM_PREC_FP32 ? 1e-5 : tol, what);
    double loss;
    long correct_c, correct_g;
    double loss_c;
    ck_assert_msg(gpu->evaluate(gpu, x, labels, BATCH, &loss, &correct_g, &err) == RM_OK, "%s", err.msg);
    ck_assert_msg(cpu->evaluate(cpu, x, labels, BATCH, &loss_c, &correct_c, &err) == RM_OK, "%s", err.msg);
    ck_assert_msg(fabs(loss - loss_c) <= tol * fabs(loss_c) * 2, "evaluate: loss %.9g, cpu %.9g", loss, loss_c);
    gpu->destroy(gpu);
    cpu->destroy(cpu);
    free(x_locked); /* after the backend, which unlocks it */
    free(pc), free(pg);
}
END_TEST

/* A GPU snapshot restores on the CPU backend and the reverse, the same
 * bytes both ways; after it both take the same next step. */
START_TEST(checkpoints_move_between_backends)
{
    rm_config cfg;
    rm_model_shape s;
    small_model(&cfg, &s, RM_ACT_RELU);
    cfg.optimizer = RM_OPT_ADAMW;
    rm_backend *gpu = make_backend(1, &cfg, &s), *cpu = make_backend(0, &cfg, &s);
    float x[BATCH * IN];
    uint8_t labels[BATCH];
    rm_step_stats st;
    for (int step = 0; step < 3; step++) {
        batch_of(20 + (uint64_t)step, x, labels);
        train_step(gpu, x, labels, 1e-3, 0, &st);
    }
    float *state[3], *back[3];
    for (int k = 0; k < 3; k++) {
        state[k] = malloc((size_t)s.n_params * 4);
        back[k] = malloc((size_t)s.n_params * 4);
    }
    long steps_gpu = 0, steps_cpu = 0;
    rm_error err;
    /* in two halves, as two workers would write it */
    long half = s.n_params / 2;
    float *lo[3] = {state[0], state[1], state[2]}, *hi[3] = {state[0] + half, state[1] + half, state[2] + half};
    ck_assert_msg(gpu->snapshot(gpu, 0, half, lo, &steps_gpu, &err) == RM_OK, "%s", err.msg);
    ck_assert_msg(gpu->snapshot(gpu, half, s.n_params, hi, &steps_gpu, &err) == RM_OK, "%s", err.msg);
    ck_assert_int_eq(steps_gpu, 3);
    ck_assert_msg(cpu->restore(cpu, (const float *const *)state, steps_gpu, &err) == RM_OK, "%s", err.msg);
    ck_assert_msg(cpu->snapshot(cpu, 0, s.n_params, back, &steps_cpu, &err) == RM_OK, "%s", err.msg);
    ck_assert_int_eq(steps_cpu, 3);
    for (int k = 0; k < 3; k++)
        ck_assert_msg(memcmp(state[k], back[k], (size_t)s.n_params * 4) == 0, "state tensor %d changed on the way", k);
    /* and back to a fresh GPU backend */
    rm_backend *gpu2 = make_backend(1, &cfg, &s);
    ck_assert_msg(gpu2->restore(gpu2, (const float *const *)back, steps_cpu, &err) == RM_OK, "%s", err.msg);
    ck_assert_msg(gpu2->snapshot(gpu2, 0, s.n_params, state, &steps_gpu, &err) == RM_OK, "%s", err.msg);
    for (int k = 0; k < 3; k++)
        ck_assert_msg(memcmp(state[k], back[k], (size_t)s.n_params * 4) == 0, "state tensor %d changed on the GPU", k);
    batch_of(30, x, labels);
    train_step(cpu, x, labels, 1e-3, 0, &st);
    train_step(gpu2, x, labels, 1e-3, 0, &st);
    ck_assert_msg(gpu2->read_params(gpu2, state[0], &err) == RM_OK, "%s", err.msg);
    ck_assert_msg(cpu->read_params(cpu, back[0], &err) == RM_OK, "%s", err.msg);
    assert_agrees(state[0], back[0], s.n_params, 1e-5, "the step after a cross-backend resume");
    gpu->destroy(gpu);
    gpu2->destroy(gpu2);
    cpu->destroy(cpu);
    for (int k = 0; k < 3; k++)
        free(state[k]), free(back[k]);
}
END_TEST

/* The NCCL transport under grad_sync on a one-rank communicator: the sum
 * over one rank is the buffer itself, every bucket gated and started. */
START_TEST(nccl_transport_on_one_rank)
{
    const long n = 10000;
    float *h = random_floats(n, 40, 1.0), *got = malloc((size_t)n * 4);
    cudaStream_t compute;
    CUDA_OK(cudaStreamCreateWithFlags(&compute, cudaStreamNonBlocking));
    float *dg = to_device(h, (size_t)n * 4);
    rm_nccl_transport t;
    rm_error err;
    ck_assert_msg(rm_nccl_transport_init(&t, MPI_COMM_SELF, compute, dg, &err) == RM_OK, "%s", err.msg);
    rm_grad_transport tp = rm_nccl_transport_table(&t);
    rm_grad_sync gs;
    ck_assert_msg(rm_grad_sync_init(&gs, n, 999, 0, &tp, &err) == RM_OK, "%s", err.msg);
    gs.watchdog_s = 30;
    for (int step = 0; step < 3; step++) {
        ck_assert_msg(rm_grad_sync_ready_from(&gs, n / 2, &err) == RM_OK, "%s", err.msg);
        ck_assert_msg(rm_grad_sync_finish(&gs, &err) == RM_OK, "%s", err.msg);
    }
    CUDA_OK(cudaStreamSynchronize(compute));
    from_device(got, dg, (size_t)n * 4);
    ck_assert_msg(memcmp(got, h, (size_t)n * 4) == 0, "a one-rank all-reduce changed the gradient");
    ck_assert_int_eq(gs.steps, 3);
    rm_grad_sync_free(&gs);
    rm_nccl_transport_free(&t);
    cudaFree(dg);
    cudaStreamDestroy(compute);
    free(h), free(got);
}
END_TEST

/* train.zero 1 on one worker: one slice, all of it, so the same steps and
 * the same bytes as zero 0, and the whole optimizer state allocated and
 * reported. _i: precision. */
START_TEST(zero_on_one_worker_is_plain_data_parallel)
{
    int precision = _i;
    rm_config cfg;
    rm_model_shape s;
    small_model(&cfg, &s, RM_ACT_RELU);
    cfg.optimizer = RM_OPT_ADAMW;
    cfg.precision = precision;
    cfg.lr = 1e-3;
    cfg.weight_decay = 1e-4;
    rm_backend *plain = make_backend(1, &cfg, &s);
    /* make_backend keeps one model per backend kind: the CPU slot holds
     * the second GPU backend's model (no CPU backend in this test) */
    cfg.zero = 1;
    rm_error err;
    rm_dataset_facts facts = {.data_format = RM_DATA_RECORDS, .input_dim = s.dims[0], .classes = s.dims[s.n_layers]};
    rm_model *m = &backend_models[0];
    rm_model_free(m);
    ck_assert_msg(rm_model_init(m, &cfg, &facts, &err) == RM_OK, "%s", err.msg);
    rm_backend *zero = rm_backend_gpu_create(m, &cfg, BATCH, MPI_COMM_SELF, NULL, NULL, 1.0, &err);
    ck_assert_msg(zero != NULL, "gpu backend with train.zero 1: %s", err.msg);
    ck_assert_msg(zero->optimizer_state_bytes == plain->optimizer_state_bytes &&
                      plain->optimizer_state_bytes == 2 * (size_t)s.n_params * sizeof(float),
                  "optimizer state %zu bytes under zero 1, %zu under zero 0, want %zu", zero->optimizer_state_bytes,
                  plain->optimizer_state_bytes, 2 * (size_t)s.n_params * sizeof(float));
    float x[BATCH * IN];
    uint8_t labels[BATCH];
    for (int step = 0; step < 4; step++) {
        batch_of(50 + (uint64_t)step, x, labels);
        rm_step_stats sp, sz;
        train_step(plain, x, labels, cfg.lr, 0, &sp);
        train_step(zero, x, labels, cfg.lr, step % 2, &sz);
        ck_assert_msg(sp.grad_norm == sz.grad_norm && sp.loss_sum == sz.loss_sum,
                      "step %d: zero 1 norm %.9g loss %.9g, zero 0 norm %.9g loss %.9g", step, sz.grad_norm,
                      sz.loss_sum, sp.grad_norm, sp.loss_sum);
    }
    float *state_p[3], *state_z[3];
    for (int k = 0; k < 3; k++) {
        state_p[k] = malloc((size_t)s.n_params * 4);
        state_z[k] = malloc((size_t)s.n_params * 4);
    }
    long tp = 0, tz = 0;
    ck_assert_msg(plain->snapshot(plain, 0, s.n_params, state_p, &tp, &err) == RM_OK, "%s", err.msg);
    ck_assert_msg(zero->snapshot(zero, 0, s.n_params, state_z, &tz, &err) == RM_OK, "%s", err.msg);
    ck_assert_int_eq(tp, tz);
    for (int k = 0; k < 3; k++)
        ck_assert_msg(memcmp(state_p[k], state_z[k], (size_t)s.n_params * 4) == 0,
                      "%s: state tensor %d differs between zero 1 and zero 0 on one worker", precision_name[precision],
                      k);
    plain->destroy(plain);
    zero->destroy(zero);
    for (int k = 0; k < 3; k++)
        free(state_p[k]), free(state_z[k]);
}
END_TEST

/* ZeRO-1's form of the NCCL transport on a one-rank communicator: the
 * rank owns every bucket (a reduce onto itself leaves the buffer as it
 * is), the sum of one double is that double, and gathering the slices
 * leaves the parameters as they are; every call ordered on the streams. */
START_TEST(nccl_sharded_transport_on_one_rank)
{
    const long n = 10000;
    float *h = random_floats(n, 41, 1.0), *got = malloc((size_t)n * 4);
    cudaStream_t compute;
    CUDA_OK(cudaStreamCreateWithFlags(&compute, cudaStreamNonBlocking));
    float *dg = to_device(h, (size_t)n * 4), *dp = to_device(h, (size_t)n * 4);
    double one = 2.5, back = 0;
    double *dd = to_device(&one, sizeof one);
    rm_nccl_transport t;
    rm_error err;
    ck_assert_msg(rm_nccl_transport_init(&t, MPI_COMM_SELF, compute, dg, &err) == RM_OK, "%s", err.msg);
    ck_assert_msg(rm_nccl_transport_shard(&t, n, &err) == RM_OK, "%s", err.msg);
    rm_grad_transport tp = rm_nccl_transport_table(&t);
    rm_grad_sync gs;
    ck_assert_msg(rm_grad_sync_init(&gs, n, 999, 0, &tp, &err) == RM_OK, "%s", err.msg);
    gs.watchdog_s = 30;
    for (int step = 0; step < 3; step++) {
        ck_assert_msg(rm_grad_sync_ready_from(&gs, n / 2, &err) == RM_OK, "%s", err.msg);
        ck_assert_msg(rm_grad_sync_finish(&gs, &err) == RM_OK, "%s", err.msg);
        ck_assert_msg(rm_nccl_sum_double(&t, dd, &err) == RM_OK, "%s", err.msg);
        ck_assert_msg(rm_nccl_gather_slices(&t, dp, &err) == RM_OK, "%s", err.msg);
    }
    CUDA_OK(cudaStreamSynchronize(compute));
    from_device(got, dg, (size_t)n * 4);
    ck_assert_msg(memcmp(got, h, (size_t)n * 4) == 0, "a one-rank reduce changed the gradient");
    from_device(got, dp, (size_t)n * 4);
    ck_assert_msg(memcmp(got, h, (size_t)n * 4) == 0, "a one-rank gather changed the parameters");
    from_device(&back, dd, sizeof back);
    ck_assert_msg(back == one, "a one-rank sum turned %g into %g", one, back);
    rm_grad_sync_free(&gs);
    rm_nccl_transport_free(&t);
    cudaFree(dg);
    cudaFree(dp);
    cudaFree(dd);
    cudaStreamDestroy(compute);
    free(h), free(got);
}
END_TEST

/* --- fused attention against the formulas -------------------------------- */

/* _i: a shape. The fused attention's kernels as flash_attn.cu launches
 * them, on shapes of several query and key tiles with partial last ones,
 * every head size with kernels: y, lse and dqkv against the formulas in
 * double (attention_reference.c), which test_flash_attn also holds the
 * kernels' block bodies to on the host; here the launch (grid, tile order,
 * shared memory) and the device's arithmetic are what is new. */
static const struct {
    long n, T;
    int heads;
    long hs;
} fa_shapes[] = {{2, 16, 4, 16}, {2, 130, 3, 16}, {1, 200, 2, 32}, {2, 150, 2, 64}};

START_TEST(flash_attn_matches_the_formulas)
{
    long n = fa_shapes[_i].n, T = fa_shapes[_i].T, hs = fa_shapes[_i].hs;
    int heads = fa_shapes[_i].heads;
    long C = heads * hs, rows = n * T, stats = n * heads * T;
    float *qkv = random_floats(rows * 3 * C, 60 + (uint64_t)_i, 1.5), *dy = random_floats(rows * C, 70, 1.0);
    double *y = malloc((size_t)(rows * C) * 8), *lse = malloc((size_t)stats * 8), *dqkv = malloc((size_t)(rows * 3 * C) * 8);
    ck_assert(y && lse && dqkv);
    rmt_attention_reference(qkv, dy, n, T, heads, hs, y, lse, dqkv);
    float *d_qkv = to_device(qkv, (size_t)(rows * 3 * C) * 4), *d_dy = to_device(dy, (size_t)(rows * C) * 4);
    float *d_y = to_device(NULL, (size_t)(rows * C) * 4), *d_lse = to_device(NULL, (size_t)stats * 4);
    float *d_D = to_device(NULL, (size_t)stats * 4), *d_dqkv = to_device(NULL, (size_t)(rows * 3 * C) * 4);
    CUDA_OK(cudaMemset(d_dqkv, 0x7f, (size_t)(rows * 3 * C) * 4)); /* every element must be written */
    float scale = 1.0f / sqrtf((float)hs);
    ck_assert(rm_gpu_flash_attn_supports(hs));
    CUDA_OK(rm_gpu_flash_attn_forward(d_qkv, d_y, d_lse, n, T, heads, hs, scale, 0));
    CUDA_OK(rm_gpu_flash_attn_backward(d_qkv, d_y, d_dy, d_lse, d_D, d_dqkv, n, T, heads, hs, scale, 0));
    CUDA_OK(cudaDeviceSynchronize());
    float *got_y = malloc((size_t)(rows * C) * 4), *got_lse = malloc((size_t)stats * 4);
    float *got_dqkv = malloc((size_t)(rows * 3 * C) * 4), *want = malloc((size_t)(rows * 3 * C) * 4);
    from_device(got_y, d_y, (size_t)(rows * C) * 4);
    from_device(got_lse, d_lse, (size_t)stats * 4);
    from_device(got_dqkv, d_dqkv, (size_t)(rows * 3 * C) * 4);
    char what[64];
    for (long i = 0; i < rows * C; i++)
        want[i] = (float)y[i];
    snprintf(what, sizeof what, "fused attention y, T %ld, head size %ld", T, hs);
    assert_agrees(got_y, want, rows * C, 1e-5, what);
    for (long i = 0; i < stats; i++)
        want[i] = (float)lse[i];
    assert_agrees(got_lse, want, stats, 1e-6, "fused attention lse");
    for (long i = 0; i < rows * 3 * C; i++)
        want[i] = (float)dqkv[i];
    snprintf(what, sizeof what, "fused attention dqkv, T %ld, head size %ld", T, hs);
    assert_agrees(got_dqkv, want, rows * 3 * C, 1e-5, what);
    /* the forward again: the same bits */
    CUDA_OK(rm_gpu_flash_attn_forward(d_qkv, d_y, d_lse, n, T, heads, hs, scale, 0));
    from_device(want, d_y, (size_t)(rows * C) * 4);
    ck_assert_msg(memcmp(want, got_y, (size_t)(rows * C) * 4) == 0, "two forwards gave other bits");
    ck_assert(!rm_gpu_flash_attn_supports(48));
    cudaFree(d_qkv), cudaFree(d_dy), cudaFree(d_y), cudaFree(d_lse), cudaFree(d_D), cudaFree(d_dqkv);
    free(qkv), free(dy), free(y), free(lse), free(dqkv), free(got_y), free(got_lse), free(got_dqkv), free(want);
}
END_TEST

/* --- GPT-2 against gpt_cpu.c --------------------------------------------- */

#define GPT_LAYERS 2
#define GPT_HEADS 4
#define GPT_DIM 64
#define GPT_CONTEXT 16
#define GPT_VOCAB 100 /* padded to 128: the padding rows and columns are exercised */
#define GPT_BATCH 3

/* Gradient agreement per precision: fp32 to float rounding over a few
 * thousand terms; tf32's 10-bit mantissa in every product; bf16's 7-bit
 * one in the blocks' products (attention and the classifier as tf32). */
static const double gpt_grad_tolerance[3] = {1e-4, 3e-2, 8e-2};
static const double gpt_loss_tolerance[3] = {1e-5, 5e-3, 2e-2};

static void gpt_layout(rm_gpt_layout *g)
{
    rm_error err;
    ck_assert_msg(rm_gpt_layout_init(g, GPT_LAYERS, GPT_HEADS, GPT_DIM, GPT_CONTEXT, GPT_VOCAB, &err) == RM_OK, "%s",
                  err.msg);
}

/* GPT-2's initialisation, then every real parameter moved a little, so the
 * LayerNorm weights are not all 1 and the biases not all 0 (wte's padding
 * rows stay 0, as training keeps them). */
static float *gpt_params(const rm_gpt_layout *g, uint64_t seed)
{
    float *p = malloc((size_t)g->n_params * sizeof *p);
    ck_assert_ptr_nonnull(p);
    rm_gpt_init_params(g, seed, p);
    long pad_lo = g->wte + g->vocab * g->dim, pad_hi = g->wte + g->padded_vocab * g->dim;
    for (long i = 0; i < g->n_params; i++)
        if (i < pad_lo || i >= pad_hi)
            p[i] += (float)(0.05 * uniform(seed + 1, (uint64_t)i));
    return p;
}

/* n sequences of tokens and their next tokens; every id in range, some
 * repeated (the encoder's backward adds several positions into one row). */
static void gpt_batch(uint64_t seed, int32_t *inputs, int32_t *targets, long n)
{
    for (long i = 0; i < n * GPT_CONTEXT; i++) {
        inputs[i] = (int32_t)((uniform(seed, (uint64_t)i) * 0.5 + 0.5) * (GPT_VOCAB - 1));
        targets[i] = (int32_t)((uniform(seed + 7, (uint64_t)i) * 0.5 + 0.5) * (GPT_VOCAB - 1));
    }
    inputs[0] = inputs[1] = inputs[GPT_CONTEXT] = 5; /* one token at several positions and sequences */
}

/* The offsets backward reports ready, in order. */
typedef struct ready_log {
    long offsets[RM_GPT_MAX_LAYERS + 4];
    int n;
} ready_log;

static int log_ready(void *ctx, long offset, rm_error *err)
{
    (void)err;
    ready_log *log = ctx;
    if (log->n < (int)(sizeof log->offsets / sizeof log->offsets[0]))
        log->offsets[log->n++] = offset;
    return RM_OK;
}

/* The bf16 copy of device weights a bf16 model needs (the backend keeps
 * one), or NULL in the other precisions. */
static void *gpt_params16(const rm_gpt_gpu *m, const float *dparams)
{
    if (m->precision != RM_PREC_BF16)
        return NULL;
    void *d16 = to_device(NULL, (size_t)m->g.n_params * 2);
    CUDA_OK(rm_gpu_cast_bf16(dparams, m->g.n_params, d16, 0));
    CUDA_OK(cudaDeviceSynchronize());
    return d16;
}

/* GPU forward + backward of one batch into dgrads (device); the loss comes
 * back through *loss. */
static void gpt_gpu_pass(rm_gpt_gpu *m, const float *dparams, float *dgrads, const int32_t *in, const int32_t *tg,
                         long n, float grad_scale, int accumulate, ready_log *log, double *loss)
{
    rm_error err;
    size_t bytes = (size_t)n * GPT_CONTEXT * sizeof(int32_t);
    int32_t *din = to_device(in, bytes), *dtg = to_device(tg, bytes);
    void *d16 = gpt_params16(m, dparams);
    ck_assert_msg(rm_gpt_gpu_forward(m, dparams, d16, in, tg, din, dtg, n, 1, grad_scale, &err) == RM_OK, "%s",
                  err.msg);
    ck_assert_msg(rm_gpt_gpu_backward(m, dparams, d16, dgrads, accumulate, log ? log_ready : NULL, log, &err) ==
                      RM_OK,
                  "%s", err.msg);
    CUDA_OK(cudaDeviceSynchronize());
    cudaFree(d16);
    from_device(loss, m->loss_sum, sizeof *loss);
    cudaFree(din), cudaFree(dtg);
}

/* _i: precision (fp32, tf32, bf16) x train.attention (simple, fused). The
 * loss and the whole gradient of a 2-layer GPT against the CPU's, written
 * and then accumulated over a second batch; the ready offsets in the CPU's
 * order. The fused attention computes in fp32 under every precision. */
START_TEST(gpt_matches_cpu)
{
    int precision = _i % 3, attention = _i / 3;
    rm_gpt_layout g;
    gpt_layout(&g);
    rm_error err;
    long n = GPT_BATCH, BT = n * GPT_CONTEXT;
    float *params = gpt_params(&g, 11);
    float *grads = malloc((size_t)g.n_params * 4), *got = malloc((size_t)g.n_params * 4);
    int32_t in[GPT_BATCH * GPT_CONTEXT], tg[GPT_BATCH * GPT_CONTEXT], in2[GPT_BATCH * GPT_CONTEXT],
        tg2[GPT_BATCH * GPT_CONTEXT];
    gpt_batch(21, in, tg, n);
    gpt_batch(22, in2, tg2, n);
    float grad_scale = 1.0f / (float)BT;

    rm_gpt_cpu cpu;
    ck_assert_msg(rm_gpt_cpu_init(&cpu, &g, n, 1, RM_RECOMPUTE_NONE, &err) == RM_OK, "%s", err.msg);
    double cpu_loss, cpu_loss2;
    ready_log cpu_log = {0};
    ck_assert_msg(rm_gpt_cpu_forward(&cpu, params, in, tg, n, &cpu_loss, &err) == RM_OK, "%s", err.msg);
    ck_assert_msg(rm_gpt_cpu_backward(&cpu, params, grads, grad_scale, 0, log_ready, &cpu_log, &err) == RM_OK, "%s",
                  err.msg);

    cudaStream_t stream;
    cublasHandle_t blas;
    CUDA_OK(cudaStreamCreate(&stream));
    ck_assert_int_eq(cublasCreate(&blas), CUBLAS_STATUS_SUCCESS);
    ck_assert_int_eq(cublasSetStream(blas, stream), CUBLAS_STATUS_SUCCESS);
    rm_gpt_gpu gpu;
    ck_assert_msg(rm_gpt_gpu_init(&gpu, &g, n, precision, attention, RM_RECOMPUTE_NONE, blas, stream, &err) == RM_OK,
                  "%s", err.msg);
    float *dp = to_device(params, (size_t)g.n_params * 4), *dg = to_device(NULL, (size_t)g.n_params * 4);
    /* garbage where the gradient is written, not added: it must not show */
    CUDA_OK(cudaMemset(dg, 0x7f, (size_t)g.n_params * 4));
    double gpu_loss, gpu_loss2;
    ready_log gpu_log = {0};
    gpt_gpu_pass(&gpu, dp, dg, in, tg, n, grad_scale, 0, &gpu_log, &gpu_loss);
    from_device(got, dg, (size_t)g.n_params * 4);

    double loss_tol = gpt_loss_tolerance[precision], tol = gpt_grad_tolerance[precision];
    ck_assert_msg(fabs(gpu_loss - cpu_loss) <= loss_tol * fabs(cpu_loss), "%s loss %.9g, cpu %.9g",
                  precision_name[precision], gpu_loss, cpu_loss);
    char what[64];
    snprintf(what, sizeof what, "%s %s-attention gpt gradient", precision_name[precision],
             attention ? "fused" : "simple");
    assert_agrees(got, grads, g.n_params, tol, what);
    /* tensor by tensor too: a small tensor's error would hide in the whole */
    struct {
        const char *name;
        long offset, count;
    } parts[] = {
        {"wte", g.wte, g.vocab * g.dim},
        {"wpe", g.wpe, g.context * g.dim},
        {"block 0 ln1_w", g.block[0].ln1_w, g.dim},
        {"block 0 qkv_w", g.block[0].qkv_w, 3 * g.dim * g.dim},
        {"block 0 qkv_b", g.block[0].qkv_b, 3 * g.dim},
        {"block 1 fc_w", g.block[1].fc_w, 4 * g.dim * g.dim},
        {"block 1 fcproj_b", g.block[1].fcproj_b, g.dim},
        {"lnf", g.lnf_w, 2 * g.dim},
    };
    for (size_t k = 0; k < sizeof parts / sizeof parts[0]; k++) {
        snprintf(what, sizeof what, "%s gpt gradient of %s", precision_name[precision], parts[k].name);
        assert_agrees(got + parts[k].offset, grads + parts[k].offset, parts[k].count, 2 * tol, what);
    }
    for (long i = g.wte + g.vocab * g.dim; i < g.wte + g.padded_vocab * g.dim; i++)
        ck_assert_msg(got[i] == 0.0f, "wte padding gradient [%ld] = %g, not 0", i, got[i]);
    ck_assert_int_eq(gpu_log.n, cpu_log.n);
    for (int k = 0; k < cpu_log.n; k++)
        ck_assert_msg(gpu_log.offsets[k] == cpu_log.offsets[k], "ready call %d: offset %ld, cpu %ld", k,
                      gpu_log.offsets[k], cpu_log.offsets[k]);

    /* a second batch added onto the first (train.grad_accum) */
    ck_assert_msg(rm_gpt_cpu_forward(&cpu, params, in2, tg2, n, &cpu_loss2, &err) == RM_OK, "%s", err.msg);
    ck_assert_msg(rm_gpt_cpu_backward(&cpu, params, grads, grad_scale, 1, NULL, NULL, &err) == RM_OK, "%s", err.msg);
    gpt_gpu_pass(&gpu, dp, dg, in2, tg2, n, grad_scale, 1, NULL, &gpu_loss2);
    from_device(got, dg, (size_t)g.n_params * 4);
    ck_assert_msg(fabs(gpu_loss2 - cpu_loss2) <= loss_tol * fabs(cpu_loss2), "second batch: loss %.9g, cpu %.9g",
                  gpu_loss2, cpu_loss2);
    snprintf(what, sizeof what, "%s gpt gradient, accumulated", precision_name[precision]);
    assert_agrees(got, grads, g.n_params, tol, what);

    /* a bad token id is refused before anything runs, by value and place */
    int32_t bad[GPT_BATCH * GPT_CONTEXT];
    memcpy(bad, in, sizeof bad);
    bad[GPT_CONTEXT + 3] = GPT_VOCAB;
    int32_t *dbad = to_device(bad, sizeof bad);
    void *dp16 = gpt_params16(&gpu, dp);
    ck_assert_int_eq(rm_gpt_gpu_forward(&gpu, dp, dp16, bad, tg, dbad, dbad, n, 1, 1.0f, &err), RM_ERR);
    ck_assert_msg(strstr(err.msg, "sequence 1, position 3") != NULL, "%s", err.msg);
    ck_assert_int_eq(rm_gpt_gpu_backward(&gpu, dp, dp16, dg, 0, NULL, NULL, &err), RM_ERR);
    if (precision == RM_PREC_BF16) { /* bf16 without the weights' bf16 copy: refused, not a crash */
        ck_assert_int_eq(rm_gpt_gpu_forward(&gpu, dp, NULL, in, tg, dbad, dbad, n, 1, 1.0f, &err), RM_ERR);
        ck_assert_msg(strstr(err.msg, "bf16") != NULL, "%s", err.msg);
    }
    cudaFree(dp16);

    rm_gpt_gpu_free(&gpu);
    cublasDestroy(blas);
    CUDA_OK(cudaStreamDestroy(stream));
    rm_gpt_cpu_free(&cpu);
    cudaFree(dp), cudaFree(dg), cudaFree(dbad);
    free(params), free(grads), free(got);
}
END_TEST

/* _i: train.attention (simple, fused). Two GPU runs of the same batch give
 * the same loss and gradient bits: no atomics, fixed reduction orders;
 * and so do models that recompute GELU, and GELU and LayerNorm, in
 * backward (train.recompute 1, 2). */
START_TEST(gpt_gpu_is_deterministic)
{
    int attention = _i;
    rm_gpt_layout g;
    gpt_layout(&g);
    rm_error err;
    long n = GPT_BATCH;
    float *params = gpt_params(&g, 12);
    float *a = malloc((size_t)g.n_params * 4), *b = malloc((size_t)g.n_params * 4);
    int32_t in[GPT_BATCH * GPT_CONTEXT], tg[GPT_BATCH * GPT_CONTEXT];
    gpt_batch(31, in, tg, n);
    cublasHandle_t blas;
    ck_assert_int_eq(cublasCreate(&blas), CUBLAS_STATUS_SUCCESS);
    rm_gpt_gpu gpu;
    ck_assert_int_eq(rm_gpt_gpu_init(&gpu, &g, n, RM_PREC_FP32, attention, 3, blas, 0, &err), RM_ERR);
    ck_assert_msg(strstr(err.msg, "recompute 3") != NULL, "%s", err.msg);
    ck_assert_msg(rm_gpt_gpu_init(&gpu, &g, n, RM_PREC_FP32, attention, RM_RECOMPUTE_NONE, blas, 0, &err) == RM_OK,
                  "%s", err.msg);
    float *dp = to_device(params, (size_t)g.n_params * 4), *dg = to_device(NULL, (size_t)g.n_params * 4);
    double l1, l2;
    gpt_gpu_pass(&gpu, dp, dg, in, tg, n, 0.01f, 0, NULL, &l1);
    from_device(a, dg, (size_t)g.n_params * 4);
    gpt_gpu_pass(&gpu, dp, dg, in, tg, n, 0.01f, 0, NULL, &l2);
    from_device(b, dg, (size_t)g.n_params * 4);
    ck_assert_msg(memcmp(&l1, &l2, sizeof l1) == 0, "loss %.17g then %.17g", l1, l2);
    ck_assert_msg(memcmp(a, b, (size_t)g.n_params * 4) == 0, "two runs gave different gradient bits");
    for (int r = RM_RECOMPUTE_GELU; r <= RM_RECOMPUTE_GELU_LAYERNORM; r++) {
        rm_gpt_gpu recomputing;
        ck_assert_msg(rm_gpt_gpu_init(&recomputing, &g, n, RM_PREC_FP32, attention, r, blas, 0, &err) == RM_OK, "%s",
                      err.msg);
        gpt_gpu_pass(&recomputing, dp, dg, in, tg, n, 0.01f, 0, NULL, &l2);
        from_device(b, dg, (size_t)g.n_params * 4);
        ck_assert_msg(memcmp(&l1, &l2, sizeof l1) == 0, "recompute %d: loss %.17g, kept %.17g", r, l2, l1);
        ck_assert_msg(memcmp(a, b, (size_t)g.n_params * 4) == 0, "recompute %d gave other gradient bits", r);
        rm_gpt_gpu_free(&recomputing);
    }
    rm_gpt_gpu_free(&gpu);
    cublasDestroy(blas);
    cudaFree(dp), cudaFree(dg);
    free(params), free(a), free(b);
}
END_TEST

static rm_backend *make_gpt_backend(int gpu, const rm_config *cfg, long max_batch)
{
    rm_error err;
    rm_dataset_facts facts = {.data_format = RM_DATA_TOKENS, .vocab = GPT_VOCAB, .eot = 0};
    rm_model *m = &backend_models[gpu];
    rm_model_free(m);
    ck_assert_msg(rm_model_init(m, cfg, &facts, &err) == RM_OK, "%s", err.msg);
    ck_assert(rm_model_runs_on(m, RM_BACKEND_GPU));
    rm_backend *b = gpu ? rm_backend_gpu_create(m, cfg, max_batch, MPI_COMM_SELF, NULL, NULL, 1.0, &err)
                        : rm_backend_cpu_create(m, cfg, max_batch, MPI_COMM_SELF, NULL, NULL, 1.0, &err);
    ck_assert_msg(b != NULL, "%s backend: %s", gpu ? "gpu" : "cpu", err.msg);
    return b;
}

/* _i: precision (fp32, tf32) x grad_accum (1, 2), then the fused attention
 * in fp32 x grad_accum (1, 2), then bf16 x grad_accum (1, 2). Three AdamW steps of the GPT on both backends from the same initial weights, with weight decay
 * (matrices only: the model's table says which) and a clip that binds:
 * the weights after them and an evaluation agree. */
START_TEST(gpt_training_steps_match_cpu)
{
    int attention = _i / 2 == 2 ? RM_ATT_FUSED : RM_ATT_SIMPLE;
    int precision = _i / 2 == 3 ? RM_PREC_BF16 : attention ? RM_PREC_FP32 : _i / 2;
    long accum = _i % 2 ? 2 : 1, n = 4;
    rm_config cfg;
    rm_config_defaults(&cfg);
    cfg.model_type = RM_MODEL_GPT;
    cfg.model_layers = GPT_LAYERS;
    cfg.model_heads = GPT_HEADS;
    cfg.model_dim = GPT_DIM;
    cfg.model_context = GPT_CONTEXT;
    cfg.optimizer = RM_OPT_ADAMW;
    cfg.precision = precision;
    cfg.attention = attention;
    cfg.lr = 1e-3;
    cfg.weight_decay = 0.1;
    cfg.grad_clip = 0.01;
    cfg.grad_accum = accum;
    rm_config cpu_cfg = cfg;
    cpu_cfg.precision = RM_PREC_FP32;
    cpu_cfg.attention = RM_ATT_SIMPLE;
    rm_backend *cpu = make_gpt_backend(0, &cpu_cfg, n), *gpu = make_gpt_backend(1, &cfg, n);
    long np = backend_models[1].n_params;
    float *pc = malloc((size_t)np * 4), *pg = malloc((size_t)np * 4);
    rm_error err;
    ck_assert_msg(gpu->read_params(gpu, pg, &err) == RM_OK, "%s", err.msg);
    ck_assert_msg(cpu->read_params(cpu, pc, &err) == RM_OK, "%s", err.msg);
    ck_assert_msg(memcmp(pc, pg, (size_t)np * 4) == 0, "initial weights differ between the backends");
    int32_t in[4 * GPT_CONTEXT], tg[4 * GPT_CONTEXT];
    /* after the first step the weights differ as said below, so the loss
     * does too, a little */
    double tol = precision == RM_PREC_FP32 ? 1e-4 : precision == RM_PREC_TF32 ? 5e-3 : 2e-2;
    for (int step = 0; step < 3; step++) {
        gpt_batch(40 + (uint64_t)step, in, tg, n);
        rm_step_stats sc, sg;
        memset(&sc, 0, sizeof sc);
        memset(&sg, 0, sizeof sg);
        float scale = 1.0f / (float)(n * GPT_CONTEXT);
        ck_assert_msg(cpu->backward(cpu, in, tg, n, scale, 0, &sc, &err) == RM_OK, "%s", err.msg);
        ck_assert_msg(cpu->reduce(cpu, &sc, &err) == RM_OK, "%s", err.msg);
        ck_assert_msg(cpu->update(cpu, cfg.lr, &sc, &err) == RM_OK, "%s", err.msg);
        if (step == 1)
            ck_assert_msg(gpu->prefetch(gpu, in, tg, n, &err) == RM_OK, "%s", err.msg);
        ck_assert_msg(gpu->backward(gpu, in, tg, n, scale, 0, &sg, &err) == RM_OK, "%s", err.msg);
        ck_assert_msg(gpu->reduce(gpu, &sg, &err) == RM_OK, "%s", err.msg);
        ck_assert_msg(gpu->update(gpu, cfg.lr, &sg, &err) == RM_OK, "%s", err.msg);
        ck_assert_msg(fabs(sg.loss_sum - sc.loss_sum) <= tol * fabs(sc.loss_sum), "step %d: loss %.9g, cpu %.9g", step,
                      sg.loss_sum, sc.loss_sum);
        ck_assert_msg(fabs(sg.grad_norm - sc.grad_norm) <= 10 * tol * sc.grad_norm, "step %d: norm %.9g, cpu %.9g",
                      step, sg.grad_norm, sc.grad_norm);
        ck_assert_msg(sc.grad_norm > cfg.grad_clip, "step %d: the clip does not bind (norm %g)", step, sc.grad_norm);
    }
    ck_assert_msg(gpu->read_params(gpu, pg, &err) == RM_OK, "%s", err.msg);
    ck_assert_msg(cpu->read_params(cpu, pc, &err) == RM_OK, "%s", err.msg);
    char what[80];
    snprintf(what, sizeof what, "%s %s-attention gpt weights after 3 AdamW steps, grad_accum %ld",
             precision_name[precision], attention ? "fused" : "simple", accum);
    /* AdamW's first steps move each weight by about lr whatever the
     * gradient's size, so a near-zero gradient whose sign differs by
     * rounding moves its weight 2 lr apart: looser than one product. */
    double weight_tol = precision == RM_PREC_FP32 ? 3e-4 : precision == RM_PREC_TF32 ? 1e-2 : 3e-2;
    assert_agrees(pg, pc, np, weight_tol, what);
    /* the LayerNorm weights do not decay: still near 1 on both */
    const rm_param_tensor *ln = rm_model_tensor(&backend_models[1], "transformer.h.0.ln_1.weight");
    ck_assert_ptr_nonnull(ln);
    assert_agrees(pg + ln->offset, pc + ln->offset, ln->numel, weight_tol, "ln_1.weight");
    double loss_c, loss_g;
    long correct_c, correct_g;
    ck_assert_msg(cpu->evaluate(cpu, in, tg, n, &loss_c, &correct_c, &err) == RM_OK, "%s", err.msg);
    ck_assert_msg(gpu->evaluate(gpu, in, tg, n, &loss_g, &correct_g, &err) == RM_OK, "%s", err.msg);
    ck_assert_msg(fabs(loss_g - loss_c) <= 2 * tol * fabs(loss_c), "evaluate: loss %.9g, cpu %.9g", loss_g, loss_c);
    gpu->destroy(gpu);
    cpu->destroy(cpu);
    free(pc), free(pg);
}
END_TEST

static Suite *gpu_suite(void)
{
    Suite *s = suite_create("gpu");
    TCase *ops = tcase_create("ops");
    tcase_add_test(ops, bias_act_matches_cpu);
    tcase_add_test(ops, act_backward_matches_cpu);
    tcase_add_test(ops, bias_grad_matches_cpu);
    tcase_add_test(ops, softmax_xent_and_loss_sum_match_cpu);
    tcase_add_test(ops, sumsq_and_cast_bf16);
    tcase_add_loop_test(ops, optimizers_match_cpu, 0, 2);
    tcase_add_loop_test(ops, mlp_products_match_cpu, 0, 6);
    suite_add_tcase(s, ops);
    TCase *steps = tcase_create("steps");
    tcase_add_loop_test(steps, training_steps_match_cpu, 0, 6);
    tcase_add_test(steps, checkpoints_move_between_backends);
    tcase_add_test(steps, nccl_transport_on_one_rank);
    tcase_add_loop_test(steps, zero_on_one_worker_is_plain_data_parallel, 0, 3);
    tcase_add_test(steps, nccl_sharded_transport_on_one_rank);
    suite_add_tcase(s, steps);
    TCase *gpt = tcase_create("gpt");
    tcase_add_loop_test(gpt, flash_attn_matches_the_formulas, 0, (int)(sizeof fa_shapes / sizeof fa_shapes[0]));
    tcase_add_loop_test(gpt, gpt_matches_cpu, 0, 6);
    tcase_add_loop_test(gpt, gpt_gpu_is_deterministic, 0, 2);
    tcase_add_loop_test(gpt, gpt_training_steps_match_cpu, 0, 8);
    suite_add_tcase(s, gpt);
    return s;
}

/* Host arithmetic, run with or without a device: what rm_gpt_gpu_init
 * allocates is what common/gpt_memory.c counts (`ringmaster validate`'s
 * figure), for each precision, attention path and recompute level.
 * Returns the mismatches. */
static int memory_count_matches_the_plan(void)
{
    static const long shapes[][5] = {{2, 4, 64, 16, 70}, {3, 2, 32, 9, 300}, {12, 12, 768, 1024, 50257}};
    int bad = 0;
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        rm_gpt_layout g;
        rm_error err;
        if (rm_gpt_layout_init(&g, (int)shapes[i][0], (int)shapes[i][1], shapes[i][2], shapes[i][3], shapes[i][4],
                               &err) != RM_OK) {
            printf("test_gpu: %s\n", err.msg);
            return 1;
        }
        for (long batch = 1; batch <= 4; batch += 3)
            for (int prec = RM_PREC_FP32; prec <= RM_PREC_BF16; prec++)
                for (int att = RM_ATT_SIMPLE; att <= RM_ATT_FUSED; att++)
                    for (int r = 0; r < 3; r++) {
                        rm_gpt_memory_plan p = {.gpu = 1, .micro_batch = batch, .local_batch = batch,
                                                .precision = prec, .attention = att, .recompute = r};
                        size_t planned = rm_gpt_gpu_planned_bytes(&g, batch, prec, att, r);
                        size_t counted = rm_gpt_activation_bytes(&g, &p);
                        if (planned != counted) {
                            printf("test_gpu: shape %zu, batch %ld, precision %d, attention %d, recompute %d: "
                                   "planned %zu bytes, counted %zu\n",
                                   i, batch, prec, att, r, planned, counted);
                            bad++;
                        }
                    }
    }
    return bad;
}

int main(int argc, char **argv)
{
    if (memory_count_matches_the_plan() != 0)
        return EXIT_FAILURE;
    printf("test_gpu: the GPT's device memory plan matches the count (host arithmetic)\n");
    char why[512];
    if (rm_gpu_probe(why, sizeof why) == 0) {
        printf("test_gpu: skipped: %s\n", why);
        return SKIP_CODE;
    }
    MPI_Init(&argc, &argv);
    SRunner *sr = srunner_create(gpu_suite());
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_VERBOSE);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    MPI_Finalize();
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
