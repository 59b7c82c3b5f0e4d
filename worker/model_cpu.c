#include "model_cpu.h"

#include "gpt_cpu.h"

#include <stdlib.h>

/* mlp */

static int mlp_create(const rm_model *m, long max_batch, int threads, void **impl, rm_error *err)
{
    rm_mlp_cpu *mlp = calloc(1, sizeof *mlp);
    if (!mlp)
        return rm_fail(err, "out of memory");
    if (rm_mlp_cpu_init(mlp, &m->mlp, max_batch, err) != RM_OK) {
        free(mlp);
        return RM_ERR;
    }
    *impl = mlp;
    return RM_OK;
}

static void mlp_destroy(void *impl)
{
    if (!impl)
        return;
    rm_mlp_cpu_free(impl);
    free(impl);
}

static void mlp_init_params(const rm_model *m, uint64_t seed, float *params)
{
    rm_mlp_init_params(&m->mlp, seed, params);
}

static int mlp_forward(void *impl, const float *params, const void *input, const void *target, long n,
                       double *loss_sum, long *correct, rm_error *err)
{
    rm_mlp_cpu_forward(impl, params, input, target, n, loss_sum, correct);
    return RM_OK;
}

static int mlp_backward(void *impl, const float *params, float *grads, const void *target, long n, float grad_scale,
                        int accumulate, rm_grad_ready_fn ready, void *ready_ctx, rm_error *err)
{
    return rm_mlp_cpu_backward(impl, params, grads, target, n, grad_scale, accumulate, ready, ready_ctx, err);
}

static const rm_model_cpu_ops mlp_ops = {mlp_create, mlp_destroy, mlp_init_params, mlp_forward, mlp_backward};

/* gpt */

static int gpt_create(const rm_model *m, long max_batch, int threads, void **impl, rm_error *err)
{
    rm_gpt_cpu *g = calloc(1, sizeof *g);
    if (!g)
        return rm_fail(err, "out of memory");
    if (rm_gpt_cpu_init(g, &m->gpt, max_batch, threads, m->recompute, err) != RM_OK) {
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
    rm_gpt_cpu_free(impl);
    free(impl);
}

static void gpt_init_params(const rm_model *m, uint64_t seed, float *params)
{
    rm_gpt_init_params(&m->gpt, seed, params);
}

static int gpt_forward(void *impl, const float *params, const void *input, const void *target, long n,
                       double *loss_sum, long *correct, rm_error *err)
{
    *correct = 0;
    return rm_gpt_cpu_forward(impl, params, input, target, n, loss_sum, err);
}

static int gpt_backward(void *impl, const float *params, float *grads, const void *target, long n, float grad_scale,
                        int accumulate, rm_grad_ready_fn ready, void *ready_ctx, rm_error *err)
{
    return rm_gpt_cpu_backward(impl, params, grads, grad_scale, accumulate, ready, ready_ctx, err);
}

static const rm_model_cpu_ops gpt_ops = {gpt_create, gpt_destroy, gpt_init_params, gpt_forward, gpt_backward};

/* plugin: the library's table (ringmaster_model.h), its messages and its
 * ready callback adapted to ours */

typedef struct plugin_impl {
    const rm_model *m;
    void *impl;
} plugin_impl;

static int plugin_create(const rm_model *m, long max_batch, int threads, void **impl, rm_error *err)
{
    plugin_impl *p = calloc(1, sizeof *p);
    if (!p)
        return rm_fail(err, "out of memory");
    p->m = m;
    char why[512] = "";
    if (m->plugin->create(&m->plugin_facts, max_batch, &p->impl, why, sizeof why) != 0) {
        free(p);
        return rm_fail(err, "model %s: %s", m->name, why[0] ? why : "create failed");
    }
    *impl = p;
    return RM_OK;
}

static void plugin_destroy(void *impl)
{
    plugin_impl *p = impl;
    if (!p)
        return;
    p->m->plugin->destroy(p->impl);
    free(p);
}

static void plugin_init_params(const rm_model *m, uint64_t seed, float *params)
{
    m->plugin->init_params(&m->plugin_facts, seed, params);
}

static int plugin_forward(void *impl, const float *params, const void *input, const void *target, long n,
                          double *loss_sum, long *correct, rm_error *err)
{
    plugin_impl *p = impl;
    char why[512] = "";
    *correct = 0;
    if (p->m->plugin->forward(p->impl, params, input, target, n, loss_sum, correct, why, sizeof why) != 0)
        return rm_fail(err, "model %s: %s", p->m->name, why[0] ? why : "forward failed");
    return RM_OK;
}

typedef struct ready_bridge {
    rm_grad_ready_fn ready;
    void *ctx;
    rm_error *err;
    int failed;
} ready_bridge;

static int bridge_ready(void *ctx, long offset)
{
    ready_bridge *b = ctx;
    if (b->ready(b->ctx, offset, b->err) != RM_OK) {
        b->failed = 1;
        return 1;
    }
    return 0;
}

static int plugin_backward(void *impl, const float *params, float *grads, const void *target, long n, float grad_scale,
                           int accumulate, rm_grad_ready_fn ready, void *ready_ctx, rm_error *err)
{
    plugin_impl *p = impl;
    ready_bridge b = {ready, ready_ctx, err, 0};
    char why[512] = "";
    int rc = p->m->plugin->backward(p->impl, params, grads, target, n, grad_scale, accumulate,
                                    ready ? bridge_ready : NULL, &b, why, sizeof why);
    if (b.failed)
        return RM_ERR; /* err says why: the gradient engine failed */
    if (rc != 0)
        return rm_fail(err, "model %s: %s", p->m->name, why[0] ? why : "backward failed");
    /* a library that never says what is final still gets its gradient reduced */
    return ready ? ready(ready_ctx, 0, err) : RM_OK;
}

static const rm_model_cpu_ops plugin_ops = {plugin_create, plugin_destroy, plugin_init_params, plugin_forward,
                                            plugin_backward};

const rm_model_cpu_ops *rm_model_cpu_ops_for(const rm_model *m, rm_error *err)
{
    switch (m->type) {
    case RM_MODEL_MLP:
        return &mlp_ops;
    case RM_MODEL_GPT:
        return &gpt_ops;
    case RM_MODEL_PLUGIN:
        if (m->plugin && (m->plugin->devices & 1u))
            return &plugin_ops;
        break;
    }
    rm_fail(err, "model %s has no CPU implementation", m->name);
    return NULL;
}
