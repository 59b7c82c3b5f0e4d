#include "optimizer.h"

#include "simd_clones.h"
#include "timer.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

static int build_segments(rm_optimizer *opt, const rm_model *model)
{
    opt->segments = calloc((size_t)model->n_tensors + 1, sizeof *opt->segments);
    if (!opt->segments)
        return RM_ERR;
    long at = 0;
    for (int i = 0; i < model->n_tensors; i++) {
        const rm_param_tensor *t = &model->tensors[i];
        rm_decay_segment *last = opt->n_segments ? &opt->segments[opt->n_segments - 1] : NULL;
        if (last && last->decay == t->decay && last->end == t->offset) {
            last->end = t->offset + t->numel;
        } else {
            opt->segments[opt->n_segments++] = (rm_decay_segment){t->offset, t->offset + t->numel, t->decay};
        }
        at = t->offset + t->numel;
    }
    return at == model->n_params ? RM_OK : RM_ERR;
}

float rm_optimizer_clip_factor(double grad_clip, double norm)
{
    if (grad_clip <= 0 || !(norm > grad_clip))
        return 1.0f;
    return (float)(grad_clip / norm);
}

int rm_optimizer_init(rm_optimizer *opt, const rm_config *cfg, const rm_model *model, rm_error *err)
{
    return rm_optimizer_init_range(opt, cfg, model, 0, model->n_params, err);
}

int rm_optimizer_init_range(rm_optimizer *opt, const rm_config *cfg, const rm_model *model, long lo, long hi,
                            rm_error *err)
{
    long n_params = model->n_params;
    memset(opt, 0, sizeof *opt);
    opt->grad_mult = 1.0f;
    if (build_segments(opt, model) != RM_OK) {
        rm_optimizer_free(opt);
        return rm_fail(err, "the parameter table of model %s does not cover its %ld parameters in order", model->name,
                       n_params);
    }
    opt->kind = cfg->optimizer;
    opt->n = n_params;
    opt->momentum = cfg->momentum;
    opt->beta1 = cfg->beta1;
    opt->beta2 = cfg->beta2;
    opt->eps = cfg->eps;
    opt->weight_decay = cfg->weight_decay;
    if (lo < 0 || hi > n_params || lo > hi) {
        rm_optimizer_free(opt);
        return rm_fail(err, "optimizer range [%ld, %ld) outside the %ld parameters", lo, hi, n_params);
    }
    opt->lo = lo;
    opt->hi = hi;
    /* at least one float, so that an empty slice (more workers than
     * parameters) still tells success from failure */
    size_t count = hi > lo ? (size_t)(hi - lo) : 1;
    opt->m = calloc(count, sizeof *opt->m);
    opt->state_bytes = count * sizeof *opt->m;
    if (opt->kind == RM_OPT_ADAMW) {
        opt->v = calloc(count, sizeof *opt->v);
        opt->state_bytes += count * sizeof *opt->v;
    }
    if (!opt->m || (opt->kind == RM_OPT_ADAMW && !opt->v)) {
        rm_optimizer_free(opt);
        return rm_fail(err, "out of memory for optimizer state (%ld parameters)", hi - lo);
    }
    return RM_OK;
}

void rm_optimizer_free(rm_optimizer *opt)
{
    free(opt->m);
    free(opt->v);
    free(opt->segments);
    memset(opt, 0, sizeof *opt);
}

/* Updates count elements; w, g and the state point at the first. */
RM_SIMD_CLONES
static void sgd_range(rm_optimizer *opt, float *restrict w, const float *restrict g, float *restrict vel, float lr,
                      float wd, float gm, long count)
{
    const float mu = (float)opt->momentum;
    if (wd == 0.0f) { /* memory-bound: skip the decay term's read of w */
        for (long i = 0; i < count; i++) {
            vel[i] = mu * vel[i] + g[i] * gm;
            w[i] -= lr * vel[i];
        }
        return;
    }
    for (long i = 0; i < count; i++) {
        float grad = g[i] * gm + wd * w[i];
        vel[i] = mu * vel[i] + grad;
        w[i] -= lr * vel[i];
    }
}

RM_SIMD_CLONES
static void adamw_range(rm_optimizer *opt, float *restrict w, const float *restrict g, float *restrict m,
                        float *restrict v, float lr, float wd, float gm, long count)
{
    const float b1 = (float)opt->beta1, b2 = (float)opt->beta2, eps = (float)opt->eps;
    const float c1 = (float)(1.0 / (1.0 - pow(opt->beta1, (double)opt->t)));
    const float c2 = (float)(1.0 / sqrt(1.0 - pow(opt->beta2, (double)opt->t)));
    for (long i = 0; i < count; i++) {
        float gi = g[i] * gm; /* exact when gm is 1 */
        m[i] = b1 * m[i] + (1.0f - b1) * gi;
        v[i] = b2 * v[i] + (1.0f - b2) * gi * gi;
        float update = (m[i] * c1) / (sqrtf(v[i]) * c2 + eps);
        w[i] -= lr * (update + wd * w[i]);
    }
}

/* Updates [lo, hi), cut where the decay setting changes. */
static void update_range(rm_optimizer *opt, float *w, const float *g, float lr, long lo, long hi)
{
    for (int k = 0; k < opt->n_segments && lo < hi; k++) {
        const rm_decay_segment *seg = &opt->segments[k];
        if (seg->end <= lo)
            continue;
        long to = seg->end < hi ? seg->end : hi;
        float wd = seg->decay ? (float)opt->weight_decay : 0.0f;
        long at = lo - opt->lo; /* in the state */
        if (opt->kind == RM_OPT_SGD)
            sgd_range(opt, w + lo, g + lo, opt->m + at, lr, wd, opt->grad_mult, to - lo);
        else
            adamw_range(opt, w + lo, g + lo, opt->m + at, opt->v + at, lr, wd, opt->grad_mult, to - lo);
        lo = to;
    }
}

void rm_optimizer_step(rm_optimizer *opt, float *params, const float *grads, double lr, long lo, long hi)
{
    opt->t++;
    update_range(opt, params, grads, (float)lr, lo, hi);
}

void rm_snapshot_copy(float *restrict dst, const float *restrict src, long n)
{
#if defined(__x86_64__)
    long i = 0;
    for (; i < n && ((uintptr_t)(dst + i) & 15u); i++)
        dst[i] = src[i];
    for (; i + 4 <= n; i += 4)
        _mm_stream_ps(dst + i, _mm_loadu_ps(src + i));
    for (; i < n; i++)
        dst[i] = src[i];
#else
    memcpy(dst, src, (size_t)n * sizeof(float));
#endif
}

void rm_snapshot_copy_done(void)
{
#if defined(__x86_64__)
    _mm_sfence();
#endif
}

void rm_snapshot_job_start(rm_snapshot_job *job, const float *const *src, float *const *dst, int n_state, long len)
{
    memset(job, 0, sizeof *job);
    for (int k = 0; k < n_state; k++) {
        job->src[k] = src[k];
        job->dst[k] = dst[k];
    }
    job->n_state = n_state;
    job->len = len;
}

int rm_snapshot_job_piece(rm_snapshot_job *job)
{
    long from = job->done, to = from + RM_SNAPSHOT_PIECE < job->len ? from + RM_SNAPSHOT_PIECE : job->len;
    for (int k = 0; k < job->n_state; k++)
        rm_snapshot_copy(job->dst[k] + from, job->src[k] + from, to - from);
    job->done = to;
    return to < job->len;
}

void rm_snapshot_job_finish(rm_snapshot_job *job)
{
    long from = job->done;
    for (int k = 0; k < job->n_state; k++)
        rm_snapshot_copy(job->dst[k] + from, job->src[k] + from, job->len - from);
    job->done = job->len;
    rm_snapshot_copy_done();
}

/* Blocks small enough to stay in L1 between their update and their copy. */
#define SNAPSHOT_BLOCK 2048L

double rm_optimizer_step_snapshot(rm_optimizer *opt, float *params, const float *grads, double lr, long lo, long hi,
                                  long begin, long end, float *const *dst)
{
    opt->t++;
    update_range(opt, params, grads, (float)lr, lo, begin);
    /* each tensor with where element i is in it */
    const float *state[3] = {params, opt->m, opt->v};
    long base[3] = {0, opt->lo, opt->lo};
    int n_state = opt->kind == RM_OPT_ADAMW ? 3 : 2;
    double copy_s = 0;
    for (long from = begin; from < end; from += SNAPSHOT_BLOCK) {
        long to = from + SNAPSHOT_BLOCK < end ? from + SNAPSHOT_BLOCK : end;
        update_range(opt, params, grads, (float)lr, from, to);
        double t0 = rm_now_s();
        for (int k = 0; k < n_state; k++)
            rm_snapshot_copy(dst[k] + (from - begin), state[k] + (from - base[k]), to - from);
        copy_s += rm_now_s() - t0;
    }
    double t0 = rm_now_s();
    rm_snapshot_copy_done();
    copy_s += rm_now_s() - t0;
    update_range(opt, params, grads, (float)lr, end, hi);
    return copy_s;
}
