#include "mlp_cpu.h"

#include "rng.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

int rm_mlp_cpu_init(rm_mlp_cpu *mlp, const rm_model_shape *shape, long max_batch, rm_error *err)
{
    memset(mlp, 0, sizeof *mlp);
    mlp->shape = *shape;
    mlp->max_batch = max_batch;
    long widest = 0;
    for (int l = 0; l <= shape->n_layers; l++)
        if (shape->dims[l] > widest)
            widest = shape->dims[l];
    for (int l = 1; l <= shape->n_layers; l++) {
        mlp->acts[l] = malloc((size_t)max_batch * (size_t)shape->dims[l] * sizeof(float));
        if (!mlp->acts[l])
            goto oom;
    }
    mlp->delta_a = malloc((size_t)max_batch * (size_t)widest * sizeof(float));
    mlp->delta_b = malloc((size_t)max_batch * (size_t)widest * sizeof(float));
    if (!mlp->delta_a || !mlp->delta_b)
        goto oom;
    return RM_OK;
oom:
    rm_mlp_cpu_free(mlp);
    return rm_fail(err, "out of memory for activations (batch %ld)", max_batch);
}

void rm_mlp_cpu_free(rm_mlp_cpu *mlp)
{
    for (int l = 1; l <= RM_MAX_LAYERS; l++)
        free(mlp->acts[l]);
    free(mlp->delta_a);
    free(mlp->delta_b);
    memset(mlp, 0, sizeof *mlp);
}

void rm_mlp_init_params(const rm_model_shape *shape, uint64_t seed, float *params)
{
    for (int l = 0; l < shape->n_layers; l++) {
        long in = shape->dims[l], out = shape->dims[l + 1];
        int is_last = l == shape->n_layers - 1;
        double gain = shape->activation == RM_ACT_RELU && !is_last ? 6.0 : 3.0;
        double bound = sqrt(gain / (double)in);
        rm_rng rng = {rm_key(rm_key(seed, 0x1a7e5ULL), (uint64_t)l)};
        float *w = params + shape->weight_offset[l];
        for (long i = 0; i < in * out; i++)
            w[i] = (float)((2.0 * rm_rng_uniform(&rng) - 1.0) * bound);
        memset(params + shape->bias_offset[l], 0, (size_t)out * sizeof(float));
    }
}

/* z = bias + z, then the activation, in place over [n x out]. */
static void bias_activate(float *z, const float *bias, long n, long out, int activation, int apply)
{
    for (long i = 0; i < n; i++) {
        float *row = z + i * out;
        if (!apply) {
            for (long j = 0; j < out; j++)
                row[j] += bias[j];
        } else if (activation == RM_ACT_RELU) {
            for (long j = 0; j < out; j++) {
                float v = row[j] + bias[j];
                row[j] = v > 0.0f ? v : 0.0f;
            }
        } else {
            for (long j = 0; j < out; j++)
                row[j] = tanhf(row[j] + bias[j]);
        }
    }
}

void rm_mlp_cpu_forward(rm_mlp_cpu *mlp, const float *params, const float *x, const uint8_t *labels, long n,
                        double *loss_sum, long *correct)
{
    const rm_model_shape *s = &mlp->shape;
    mlp->acts[0] = (float *)x;
    for (int l = 0; l < s->n_layers; l++) {
        long in = s->dims[l], out = s->dims[l + 1];
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)out, (int)in, 1.0f, mlp->acts[l],
                    (int)in, params + s->weight_offset[l], (int)in, 0.0f, mlp->acts[l + 1], (int)out);
        bias_activate(mlp->acts[l + 1], params + s->bias_offset[l], n, out, s->activation, l < s->n_layers - 1);
    }
    long classes = s->dims[s->n_layers];
    const float *logits = mlp->acts[s->n_layers];
    double loss = 0;
    long right = 0;
    for (long i = 0; i < n; i++) {
        const float *row = logits + i * classes;
        long arg = 0;
        float max = row[0];
        for (long j = 1; j < classes; j++)
            if (row[j] > max) {
                max = row[j];
                arg = j;
            }
        double sum = 0;
        for (long j = 0; j < classes; j++)
            sum += exp((double)(row[j] - max));
        loss += log(sum) - (double)(row[labels[i]] - max);
        right += arg == labels[i];
    }
    *loss_sum = loss;
    *correct = right;
}

int rm_mlp_cpu_backward(rm_mlp_cpu *mlp, const float *params, float *grads, const uint8_t *labels, long n,
                        float grad_scale, int accumulate, rm_grad_ready_fn ready, void *ready_ctx, rm_error *err)
{
    const float beta = accumulate ? 1.0f : 0.0f;
    const rm_model_shape *s = &mlp->shape;
    int L = s->n_layers;
    long classes = s->dims[L];
    float *dz = mlp->delta_a, *da = mlp->delta_b;

    /* d(loss)/d(logits) = softmax - onehot, scaled. */
    const float *logits = mlp->acts[L];
    for (long i = 0; i < n; i++) {
        const float *row = logits + i * classes;
        float *d = dz + i * classes;
        float max = row[0];
        for (long j = 1; j < classes; j++)
            max = row[j] > max ? row[j] : max;
        float sum = 0;
        for (long j = 0; j < classes; j++) {
            d[j] = expf(row[j] - max);
            sum += d[j];
        }
        float inv = grad_scale / sum;
        for (long j = 0; j < classes; j++)
            d[j] *= inv;
        d[labels[i]] -= grad_scale;
    }

    for (int l = L - 1; l >= 0; l--) {
        long in = s->dims[l], out = s->dims[l + 1];
        const float *a_in = mlp->acts[l];
        /* dW = dz^T a_in: [out x in] */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)out, (int)in, (int)n, 1.0f, dz, (int)out, a_in,
                    (int)in, beta, grads + s->weight_offset[l], (int)in);
        float *db = grads + s->bias_offset[l];
        if (!accumulate)
            memset(db, 0, (size_t)out * sizeof(float));
        for (long i = 0; i < n; i++) {
            const float *row = dz + i * out;
            for (long j = 0; j < out; j++)
                db[j] += row[j];
        }
        if (ready && ready(ready_ctx, s->weight_offset[l], err) != RM_OK)
            return RM_ERR;
        if (l == 0)
            break; /* the input needs no gradient */
        /* da = dz W: [n x in], then through the activation of layer l-1. */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)in, (int)out, 1.0f, dz, (int)out,
                    params + s->weight_offset[l], (int)in, 0.0f, da, (int)in);
        const float *a = mlp->acts[l];
        if (s->activation == RM_ACT_RELU) {
            for (long i = 0; i < n * in; i++)
                da[i] = a[i] > 0.0f ? da[i] : 0.0f;
        } else {
            for (long i = 0; i < n * in; i++)
                da[i] *= 1.0f - a[i] * a[i];
        }
        float *t = dz;
        dz = da;
        da = t;
    }
    return RM_OK;
}
