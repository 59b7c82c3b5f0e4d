/* The CPU backend: OpenBLAS for the matrix products, MPI_Iallreduce per
 * gradient bucket, optimizer on the host. */
#include "allreduce.h"
#include "backend.h"
#include "mlp_cpu.h"
#include "optimizer.h"
#include "timer.h"

#include <cblas.h>
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

static int cpu_train_step(rm_backend *b, const float *x, const uint8_t *labels, long n, float grad_scale, double lr,
                          rm_step_stats *stats, rm_error *err)
{
    cpu_backend *cb = (cpu_backend *)b;
    double t0 = rm_now_s();
    rm_mlp_cpu_forward(&cb->mlp, cb->params, x, labels, n, &stats->loss_sum, &stats->correct);
    if (rm_mlp_cpu_backward(&cb->mlp, cb->params, cb->grads, labels, n, grad_scale, grad_ready, &cb->ar, err) != RM_OK)
        return RM_ERR;
    double t1 = rm_now_s();
    if (rm_allreduce_finish(&cb->ar, err) != RM_OK)
        return RM_ERR;
    double t2 = rm_now_s();
    rm_optimizer_step(&cb->opt, cb->params, cb->grads, lr);
    double t3 = rm_now_s();
    stats->compute_s = t1 - t0;
    stats->allreduce_wait_s = t2 - t1;
    stats->optimizer_s = t3 - t2;
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
                                  rm_error *err)
{
    cpu_backend *cb = calloc(1, sizeof *cb);
    if (!cb) {
        rm_fail(err, "out of memory");
        return NULL;
    }
    cb->base = (rm_backend){"cpu", cpu_train_step, cpu_evaluate, cpu_read_params, cpu_destroy};
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
    return &cb->base;
}
