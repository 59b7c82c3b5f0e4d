/* A model built outside ringmaster, against its installed header only:
 * softmax regression (one linear layer and cross-entropy) on labelled
 * records such as Fashion-MNIST. Build it with `make` (see the Makefile)
 * and train it with
 *
 *     model: {type: plugin, library: /path/to/libsoftmax_regression.so}
 *
 * Parameters: weight [classes x input_dim], then bias [classes]. */
#include <ringmaster_model.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct softmax {
    long in, classes, max_batch;
    const float *x; /* the last forward's inputs (ringmaster's batch) */
    float *probs;   /* [max_batch x classes] */
} softmax;

static int describe(const ringmaster_model_facts *f, ringmaster_model_tensor *t, int *n, long *n_params,
                    double *flops, char *err, size_t cap)
{
    if (f->data_format != RINGMASTER_RECORDS || f->input_dim < 1 || f->classes < 2) {
        snprintf(err, cap, "softmax regression needs labelled records");
        return 1;
    }
    long in = f->input_dim, k = f->classes;
    snprintf(t[0].name, sizeof t[0].name, "linear.weight");
    t[0].ndim = 2, t[0].shape[0] = k, t[0].shape[1] = in, t[0].offset = 0, t[0].decay = 1;
    snprintf(t[1].name, sizeof t[1].name, "linear.bias");
    t[1].ndim = 1, t[1].shape[0] = k, t[1].offset = k * in, t[1].decay = 0;
    *n = 2;
    *n_params = k * in + k;
    *flops = 6.0 * (double)(k * in);
    return 0;
}

static int create(const ringmaster_model_facts *f, long max_batch, void **impl, char *err, size_t cap)
{
    softmax *s = calloc(1, sizeof *s);
    if (s)
        s->probs = malloc((size_t)(max_batch * f->classes) * sizeof(float));
    if (!s || !s->probs) {
        free(s);
        snprintf(err, cap, "out of memory for %ld samples", max_batch);
        return 1;
    }
    s->in = f->input_dim, s->classes = f->classes, s->max_batch = max_batch;
    *impl = s;
    return 0;
}

static void destroy(void *impl)
{
    softmax *s = impl;
    free(s->probs);
    free(s);
}

/* Small uniform weights from a splitmix64 stream: the same on every rank. */
static void init_params(const ringmaster_model_facts *f, uint64_t seed, float *params)
{
    long n = f->classes * f->input_dim;
    uint64_t x = seed * 0x9e3779b97f4a7c15ULL + 1;
    for (long i = 0; i < n; i++) {
        uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        z ^= z >> 31;
        params[i] = (float)(((double)(z >> 11) / 9007199254740992.0 - 0.5) * 0.02);
    }
    memset(params + n, 0, (size_t)f->classes * sizeof(float));
}

static int forward(void *impl, const float *params, const void *input, const void *target, long n, double *loss_sum,
                   long *correct, char *err, size_t cap)
{
    softmax *s = impl;
    const float *x = input, *w = params, *b = params + s->classes * s->in;
    const unsigned char *labels = target;
    if (n > s->max_batch) {
        snprintf(err, cap, "batch of %ld samples, room for %ld", n, s->max_batch);
        return 1;
    }
    s->x = x;
    double loss = 0;
    long right = 0;
    for (long i = 0; i < n; i++) {
        float *p = s->probs + i * s->classes;
        long best = 0;
        for (long c = 0; c < s->classes; c++) {
            float z = b[c];
            for (long j = 0; j < s->in; j++)
                z += w[c * s->in + j] * x[i * s->in + j];
            p[c] = z;
            best = z > p[best] ? c : best;
        }
        double sum = 0;
        for (long c = 0; c < s->classes; c++)
            sum += exp((double)(p[c] - p[best]));
        loss += log(sum) - (double)(p[labels[i]] - p[best]);
        for (long c = 0; c < s->classes; c++)
            p[c] = (float)(exp((double)(p[c] - p[best])) / sum);
        right += best == labels[i];
    }
    *loss_sum = loss;
    *correct = right;
    return 0;
}

static int backward(void *impl, const float *params, float *grads, const void *target, long n, float grad_scale,
                    int accumulate, ringmaster_grad_ready ready, void *ready_ctx, char *err, size_t cap)
{
    softmax *s = impl;
    const unsigned char *labels = target;
    float *dw = grads, *db = grads + s->classes * s->in;
    if (!accumulate)
        memset(grads, 0, (size_t)(s->classes * s->in + s->classes) * sizeof(float));
    for (long i = 0; i < n; i++)
        for (long c = 0; c < s->classes; c++) {
            float d = (s->probs[i * s->classes + c] - (c == labels[i] ? 1.0f : 0.0f)) * grad_scale;
            db[c] += d;
            for (long j = 0; j < s->in; j++)
                dw[c * s->in + j] += d * s->x[i * s->in + j];
        }
    (void)params, (void)err, (void)cap;
    return ready ? ready(ready_ctx, 0) : 0;
}

static const ringmaster_model model = {
    .abi = RINGMASTER_MODEL_ABI,
    .name = "softmax-regression",
    .data_format = RINGMASTER_RECORDS,
    .devices = 1,
    .describe = describe,
    .create = create,
    .destroy = destroy,
    .init_params = init_params,
    .forward = forward,
    .backward = backward,
};

const ringmaster_model *ringmaster_model_entry(void)
{
    return &model;
}
