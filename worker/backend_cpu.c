/* The CPU backend: OpenBLAS for the matrix products, MPI_Iallreduce per
 * gradient bucket, optimizer on the host. */
#include "allreduce.h"
#include "backend.h"
#include "mlp_cpu.h"
#include "optimizer.h"
#include "timer.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct cpu_backend {
    rm_backend base;
    rm_model_shape shape;
    float *params, *grads;
    rm_mlp_cpu mlp;
    rm_optimizer opt;
    rm_allreduce ar;
} cpu_backend;

static int grad_ready(void *ctx, long offset, rm_error *err)
{
    return rm_allreduce_ready_from(ctx, offset, err);
}

static int cpu_backward(rm_backend *b, const float *x, const uint8_t *labels, long n, float grad_scale, int poison,
                        rm_step_stats *stats, rm_error *err)
{
    cpu_backend *cb = (cpu_backend *)b;
    cb->ar.trace = stats->trace_buckets;
    double t0 = rm_now_s();
    rm_mlp_cpu_forward(&cb->mlp, cb->params, x, labels, n, &stats->loss_sum, &stats->correct);
    if (rm_mlp_cpu_backward(&cb->mlp, cb->params, cb->grads, labels, n, poison ? NAN : grad_scale, grad_ready, &cb->ar,
                            err) != RM_OK)
        return RM_ERR;
    stats->compute_s = rm_now_s() - t0;
    return RM_OK;
}

static int cpu_reduce(rm_backend *b, rm_step_stats *stats, rm_error *err)
{
    cpu_backend *cb = (cpu_backend *)b;
    double t0 = rm_now_s();
    if (cb->ar.trace && rm_allreduce_trace_wait(&cb->ar, err) != RM_OK)
        return RM_ERR;
    if (rm_allreduce_finish(&cb->ar, err) != RM_OK)
        return RM_ERR;
    stats->allreduce_wait_s = rm_now_s() - t0;
    if (cb->ar.trace && cb->ar.comm_size > 1) {
        stats->n_buckets = cb->ar.n_buckets;
        stats->bucket_start_s = cb->ar.trace_start_s;
        stats->bucket_done_s = cb->ar.trace_done_s;
        stats->bucket_begin = cb->ar.bucket_start;
        stats->bucket_end = cb->ar.bucket_end;
    }
    stats->grad_norm = sqrt((double)cblas_sdot((int)cb->shape.n_params, cb->grads, 1, cb->grads, 1));
    return RM_OK;
}

static int cpu_update(rm_backend *b, double lr, rm_step_stats *stats, rm_error *err)
{
    cpu_backend *cb = (cpu_backend *)b;
    double t0 = rm_now_s();
    rm_optimizer_step(&cb->opt, cb->params, cb->grads, lr);
    stats->optimizer_s = rm_now_s() - t0;
    return RM_OK;
}

static int cpu_evaluate(rm_backend *b, const float *x, const uint8_t *labels, long n, double *loss_sum, long *correct,
                        rm_error *err)
{
    cpu_backend *cb = (cpu_backend *)b;
    rm_mlp_cpu_forward(&cb->mlp, cb->params, x, labels, n, loss_sum, correct);
    return RM_OK;
}

static int cpu_read_params(rm_backend *b, float *out, rm_error *err)
{
    cpu_backend *cb = (cpu_backend *)b;
    memcpy(out, cb->params, (size_t)cb->shape.n_params * sizeof(float));
    return RM_OK;
}

static int cpu_update_snapshot(rm_backend *b, double lr, long begin, long end, float *const *dst, long *opt_steps,
                               rm_step_stats *stats, rm_error *err)
{
    cpu_backend *cb = (cpu_backend *)b;
    double t0 = rm_now_s();
    stats->snapshot_s = rm_optimizer_step_snapshot(&cb->opt, cb->params, cb->grads, lr, begin, end, dst);
    stats->optimizer_s = rm_now_s() - t0 - stats->snapshot_s;
    *opt_steps = cb->opt.t;
    return RM_OK;
}

static int cpu_snapshot(rm_backend *b, long begin, long end, float *const *dst, long *opt_steps, rm_error *err)
{
    cpu_backend *cb = (cpu_backend *)b;
    const float *src[3] = {cb->params, cb->opt.m, cb->opt.v};
    for (int k = 0; k < b->n_state; k++)
        memcpy(dst[k], src[k] + begin, (size_t)(end - begin) * sizeof(float));
    *opt_steps = cb->opt.t;
    return RM_OK;
}

static int cpu_restore(rm_backend *b, const float *const *state, long opt_steps, rm_error *err)
{
    cpu_backend *cb = (cpu_backend *)b;
    float *dst[3] = {cb->params, cb->opt.m, cb->opt.v};
    for (int k = 0; k < b->n_state; k++)
        memcpy(dst[k], state[k], (size_t)cb->shape.n_params * sizeof(float));
    cb->opt.t = opt_steps;
    return RM_OK;
}

static void cpu_destroy(rm_backend *b)
{
    cpu_backend *cb = (cpu_backend *)b;
    if (!cb)
        return;
    rm_allreduce_free(&cb->ar);
    rm_optimizer_free(&cb->opt);
    rm_mlp_cpu_free(&cb->mlp);
    free(cb->params);
    free(cb->grads);
    free(cb);
}

rm_backend *rm_backend_cpu_create(const rm_model_shape *shape, const rm_config *cfg, long max_batch, MPI_Comm comm,
                                  rm_heartbeat_fn heartbeat, void *heartbeat_ctx, double heartbeat_s, rm_error *err)
{
    cpu_backend *cb = calloc(1, sizeof *cb);
    if (!cb) {
        rm_fail(err, "out of memory");
        return NULL;
    }
    cb->base = (rm_backend){
        .name = "cpu",
        .n_state = cfg->optimizer == RM_OPT_ADAMW ? 3 : 2,
        .backward = cpu_backward,
        .reduce = cpu_reduce,
        .update = cpu_update,
        .update_snapshot = cpu_update_snapshot,
        .evaluate = cpu_evaluate,
        .read_params = cpu_read_params,
        .snapshot = cpu_snapshot,
        .restore = cpu_restore,
        .destroy = cpu_destroy,
    };
    cb->shape = *shape;
    /* One BLAS thread per worker by default: workers are the parallelism. */
    openblas_set_num_threads((int)cfg->threads_per_worker);
    cb->params = malloc((size_t)shape->n_params * sizeof(float));
    cb->grads = calloc((size_t)shape->n_params, sizeof(float));
    if (!cb->params || !cb->grads) {
        cpu_destroy(&cb->base);
        rm_fail(err, "out of memory for %ld parameters", shape->n_params);
        return NULL;
    }
    rm_mlp_init_params(shape, (uint64_t)cfg->seed, cb->params);
    long bucket_floats = (long)(cfg->bucket_mb * 1024.0 * 1024.0 / sizeof(float));
    if (rm_mlp_cpu_init(&cb->mlp, shape, max_batch, err) != RM_OK ||
        rm_optimizer_init(&cb->opt, cfg, shape->n_params, err) != RM_OK ||
        rm_allreduce_init(&cb->ar, comm, cb->grads, shape->n_params, bucket_floats, err) != RM_OK) {
        cpu_destroy(&cb->base);
        return NULL;
    }
    cb->ar.heartbeat = heartbeat;
    cb->ar.heartbeat_ctx = heartbeat_ctx;
    cb->ar.heartbeat_s = heartbeat_s;
    return &cb->base;
}
