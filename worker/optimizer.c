#include "optimizer.h"

#include "simd_clones.h"
#include "timer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int rm_optimizer_init(rm_optimizer *opt, const rm_config *cfg, long n_params, rm_error *err)
{
    memset(opt, 0, sizeof *opt);
    opt->kind = cfg->optimizer;
    opt->n = n_params;
    opt->momentum = cfg->momentum;
    opt->beta1 = cfg->beta1;
    opt->beta2 = cfg->beta2;
    opt->eps = cfg->eps;
    opt->weight_decay = cfg->weight_decay;
    opt->m = calloc((size_t)n_params, sizeof *opt->m);
    if (opt->kind == RM_OPT_ADAMW)
        opt->v = calloc((size_t)n_params, sizeof *opt->v);
    if (!opt->m || (opt->kind == RM_OPT_ADAMW && !opt->v)) {
        rm_optimizer_free(opt);
        return rm_fail(err, "out of memory for optimizer state (%ld parameters)", n_params);
    }
    return RM_OK;
}

void rm_optimizer_free(rm_optimizer *opt)
{
    free(opt->m);
    free(opt->v);
    memset(opt, 0, sizeof *opt);
}

/* Updates [lo, hi). */
RM_SIMD_CLONES
static void sgd_range(rm_optimizer *opt, float *restrict w, const float *restrict g, float lr, long lo, long hi)
{
    const float mu = (float)opt->momentum, wd = (float)opt->weight_decay;
    float *restrict vel = opt->m;
    if (wd == 0.0f) { /* memory-bound: skip the decay term's read of w */
        for (long i = lo; i < hi; i++) {
            vel[i] = mu * vel[i] + g[i];
            w[i] -= lr * vel[i];
        }
        return;
    }
    for (long i = lo; i < hi; i++) {
        float grad = g[i] + wd * w[i];
        vel[i] = mu * vel[i] + grad;
        w[i] -= lr * vel[i];
    }
}

RM_SIMD_CLONES
static void adamw_range(rm_optimizer *opt, float *restrict w, const float *restrict g, float lr, long lo, long hi)
{
    const float b1 = (float)opt->beta1, b2 = (float)opt->beta2, eps = (float)opt->eps;
    const float wd = (float)opt->weight_decay;
    const float c1 = (float)(1.0 / (1.0 - pow(opt->beta1, (double)opt->t)));
    const float c2 = (float)(1.0 / sqrt(1.0 - pow(opt->beta2, (double)opt->t)));
    float *restrict m = opt->m, *restrict v = opt->v;
    for (long i = lo; i < hi; i++) {
        m[i] = b1 * m[i] + (1.0f - b1) * g[i];
        v[i] = b2 * v[i] + (1.0f - b2) * g[i] * g[i];
        float update = (m[i] * c1) / (sqrtf(v[i]) * c2 + eps);
        w[i] -= lr * (update + wd * w[i]);
    }
}

static void update_range(rm_optimizer *opt, float *w, const float *g, float lr, long lo, long hi)
{
    if (opt->kind == RM_OPT_SGD)
        sgd_range(opt, w, g, lr, lo, hi);
    else
        adamw_range(opt, w, g, lr, lo, hi);
}

void rm_optimizer_step(rm_optimizer *opt, float *params, const float *grads, double lr, long lo, long hi)
{
    opt->t++;
    update_range(opt, params, grads, (float)lr, lo, hi);
}

/* Blocks small enough to stay in L1 between their update and their copy. */
#define SNAPSHOT_BLOCK 2048L

double rm_optimizer_step_snapshot(rm_optimizer *opt, float *params, const float *grads, double lr, long lo, long hi,
                                  long begin, long end, float *const *dst)
{
    opt->t++;
    update_range(opt, params, grads, (float)lr, lo, begin);
    const float *state[3] = {params, opt->m, opt->v};
    int n_state = opt->kind == RM_OPT_ADAMW ? 3 : 2;
    double copy_s = 0;
    for (long from = begin; from < end; from += SNAPSHOT_BLOCK) {
        long to = from + SNAPSHOT_BLOCK < end ? from + SNAPSHOT_BLOCK : end;
        update_range(opt, params, grads, (float)lr, from, to);
        double t0 = rm_now_s();
        for (int k = 0; k < n_state; k++)
            memcpy(dst[k] + (from - begin), state[k] + from, (size_t)(to - from) * sizeof(float));
        copy_s += rm_now_s() - t0;
    }
    update_range(opt, params, grads, (float)lr, end, hi);
    return copy_s;
}
