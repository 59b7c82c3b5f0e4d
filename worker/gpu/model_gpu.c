#include "model_gpu.h"

#include "gpt_cpu.h" /* rm_gpt_init_params */
#include "gpt_gpu.h"
#include "mlp_gpu.h"

#include <stdlib.h>

/* mlp */

typedef struct mlp_impl {
    rm_mlp_gpu mlp;
    long n; /* samples of the last forward with want_grad */
} mlp_impl;

static int mlp_create(const rm_model *m, long max_batch, int precision, int attention, cublasHandle_t blas,
                      cudaStream_t stream, void **impl, rm_error *err)
{
    (void)attention; /* the MLP has none */
    mlp_impl *p = calloc(1, sizeof *p);
    if (!p)
        return rm_fail(err, "out of memory");
    if (rm_mlp_gpu_init(&p->mlp, &m->mlp, max_batch, precision, blas, stream, err) != RM_OK) {
        rm_mlp_gpu_free(&p->mlp);
        free(p);
        return RM_ERR;
    }
    *impl = p;
    return RM_OK;
}

static void mlp_destroy(void *impl)
{
    mlp_impl *p = impl;
    if (!p)
        return;
    rm_mlp_gpu_free(&p->mlp);
    free(p);
}

static void mlp_init_params(const rm_model *m, uint64_t seed, float *params)
{
    rm_mlp_init_params(&m->mlp, seed, params);
}

static int mlp_forward(void *impl, const float *params, const void *params16, const void *host_input,
                       const void *host_target, const void *dev_input, const void *dev_target, long n, int want_grad,
                       float grad_scale, rm_error *err)
{
    mlp_impl *p = impl;
    (void)host_input;
    (void)host_target;
    p->n = want_grad ? n : 0;
    return rm_mlp_gpu_forward(&p->mlp, params, params16, dev_input, dev_target, n, want_grad, grad_scale, err);
}

static int mlp_backward(void *impl, const float *params, const void *params16, float *grads, int accumulate,
                        rm_grad_ready_fn ready, void *ready_ctx, rm_error *err)
{
    mlp_impl *p = impl;
    if (accumulate)
        return rm_fail(err, "mlp on the GPU: backward writes the gradient and cannot add into it (train.grad_accum)");
    if (p->n == 0)
        return rm_fail(err, "mlp on the GPU: backward without a forward with want_grad before it");
    long n = p->n;
    p->n = 0;
    return rm_mlp_gpu_backward(&p->mlp, params, params16, grads, n, ready, ready_ctx, err);
}

static void mlp_results(void *impl, const double **loss_sum, const long long **correct)
{
    mlp_impl *p = impl;
    *loss_sum = p->mlp.loss_sum;
    *correct = p->mlp.correct;
}

static const rm_model_gpu_ops mlp_ops = {mlp_create,  mlp_destroy, mlp_init_params, mlp_forward,
                                         mlp_backward, mlp_results, 0};

/* gpt */

static int gpt_create(const rm_model *m, long max_batch, int precision, int attention, cublasHandle_t blas,
                      cudaStream_t stream, void **impl, rm_error *err)
{
    rm_gpt_gpu *g = calloc(1, sizeof *g);
    if (!g)
        return rm_fail(err, "out of memory");
    if (rm_gpt_gpu_init(g, &m->gpt, max_batch, precision, attention, m->recompute, blas, stream, err) != RM_OK) {
        rm_gpt_gpu_free(g);
        free(g);
        return RM_ERR;
    }
    *impl = g;
    return RM_OK;
}

static void gpt_destroy(void *impl)
{
    if (!impl)
        return;
    rm_gpt_gpu_free(impl);
    free(impl);
}

static void gpt_init_params(const rm_model *m, uint64_t seed, float *params)
{
    rm_gpt_init_params(&m->gpt, seed, params);
}

static int gpt_forward(void *impl, const float *params, const void *params16, const void *host_input,
                       const void *host_target, const void *dev_input, const void *dev_target, long n, int want_grad,
                       float grad_scale, rm_error *err)
{
    return rm_gpt_gpu_forward(impl, params, params16, host_input, host_target, dev_input, dev_target, n, want_grad,
                              grad_scale, err);
}

static int gpt_backward(void *impl, const float *params, const void *params16, float *grads, int accumulate,
                        rm_grad_ready_fn ready, void *ready_ctx, rm_error *err)
{
    return rm_gpt_gpu_backward(impl, params, params16, grads, accumulate, ready, ready_ctx, err);
}

static void gpt_results(void *impl, const double **loss_sum, const long long **correct)
{
    rm_gpt_gpu *g = impl;
    *loss_sum = g->loss_sum;
    *correct = g->correct;
}

static const rm_model_gpu_ops gpt_ops = {gpt_create,  gpt_destroy, gpt_init_params, gpt_forward,
                                         gpt_backward, gpt_results, 1};

const rm_model_gpu_ops *rm_model_gpu_ops_for(const rm_model *m, rm_error *err)
{
    switch (m->type) {
    case RM_MODEL_MLP:
        return &mlp_ops;
    case RM_MODEL_GPT:
        return &gpt_ops;
    default:
        rm_fail(err, "model %s has no GPU implementation (it runs on: cpu); use launch.backend cpu", m->name);
        return NULL;
    }
}
