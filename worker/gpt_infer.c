#include "gpt_infer.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define LN_EPS 1e-5f

int rm_gpt_infer_init(rm_gpt_infer *s, const rm_gpt_layout *g, const float *params, rm_error *err)
{
    memset(s, 0, sizeof *s);
    s->g = *g;
    s->params = params;
    long C = g->dim, T = g->context, L = g->layers;
    size_t cache = (size_t)(L * T * C);
    size_t total = 2 * cache + (size_t)(C * 4 + 3 * C + 4 * C + C + T + g->padded_vocab);
    s->arena = calloc(total, sizeof(float));
    if (!s->arena)
        return rm_fail(err, "out of memory for the key/value cache (%zu floats)", total);
    float *at = s->arena;
    s->k_cache = at, at += cache;
    s->v_cache = at, at += cache;
    s->x = at, at += C;
    s->ln = at, at += C;
    s->atty = at, at += C;
    s->tmp = at, at += C;
    s->qkv = at, at += 3 * C;
    s->fc = at, at += 4 * C;
    s->scores = at, at += T;
    s->logits = at;
    return RM_OK;
}

void rm_gpt_infer_free(rm_gpt_infer *s)
{
    free(s->arena);
    memset(s, 0, sizeof *s);
}

void rm_gpt_infer_reset(rm_gpt_infer *s)
{
    s->pos = 0;
}

static void layernorm(float *out, const float *x, const float *w, const float *b, long C)
{
    float mu = 0, var = 0;
    for (long i = 0; i < C; i++)
        mu += x[i];
    mu /= (float)C;
    for (long i = 0; i < C; i++)
        var += (x[i] - mu) * (x[i] - mu);
    float rs = 1.0f / sqrtf(var / (float)C + LN_EPS);
    for (long i = 0; i < C; i++)
        out[i] = (x[i] - mu) * rs * w[i] + b[i];
}

/* y = W x + b for W [out x in] row-major, as the training products store it. */
static void linear(float *y, const float *w, const float *b, const float *x, long out, long in)
{
    memcpy(y, b, (size_t)out * sizeof *y);
    cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)out, (int)in, 1.0f, w, (int)in, x, 1, 1.0f, y, 1);
}

/* Causal attention of the newest position over the cached ones, every head. */
static void attend(rm_gpt_infer *s, int layer)
{
    const rm_gpt_layout *g = &s->g;
    long C = g->dim, T = g->context, H = g->heads, hs = C / H, n = s->pos + 1;
    const float *K = s->k_cache + (size_t)layer * T * C, *V = s->v_cache + (size_t)layer * T * C;
    float scale = 1.0f / sqrtf((float)hs);
    for (long h = 0; h < H; h++) {
        const float *q = s->qkv + h * hs;
        float max = -INFINITY;
        for (long t = 0; t < n; t++) {
            const float *k = K + t * C + h * hs;
            float dot = 0;
            for (long i = 0; i < hs; i++)
                dot += q[i] * k[i];
            s->scores[t] = dot * scale;
            max = s->scores[t] > max ? s->scores[t] : max;
        }
        float sum = 0;
        for (long t = 0; t < n; t++) {
            s->scores[t] = expf(s->scores[t] - max);
            sum += s->scores[t];
        }
        float *y = s->atty + h * hs;
        memset(y, 0, (size_t)hs * sizeof *y);
        for (long t = 0; t < n; t++) {
            const float *v = V + t * C + h * hs;
            float a = s->scores[t] / sum;
            for (long i = 0; i < hs; i++)
                y[i] += a * v[i];
        }
    }
}

int rm_gpt_infer_step(rm_gpt_infer *s, int32_t token, const float **logits, rm_error *err)
{
    const rm_gpt_layout *g = &s->g;
    const float *p = s->params;
    long C = g->dim, T = g->context;
    if (s->pos >= T)
        return rm_fail(err, "the context of %ld tokens is full", T);
    if (token < 0 || token >= g->vocab)
        return rm_fail(err, "token %d is outside the vocabulary of %ld", token, g->vocab);
    for (long i = 0; i < C; i++)
        s->x[i] = p[g->wte + (long)token * C + i] + p[g->wpe + s->pos * C + i];
    for (int l = 0; l < g->layers; l++) {
        const rm_gpt_block_offsets *b = &g->block[l];
        layernorm(s->ln, s->x, p + b->ln1_w, p + b->ln1_b, C);
        linear(s->qkv, p + b->qkv_w, p + b->qkv_b, s->ln, 3 * C, C);
        size_t slot = ((size_t)l * T + (size_t)s->pos) * (size_t)C;
        memcpy(s->k_cache + slot, s->qkv + C, (size_t)C * sizeof(float));
        memcpy(s->v_cache + slot, s->qkv + 2 * C, (size_t)C * sizeof(float));
        attend(s, l);
        linear(s->tmp, p + b->proj_w, p + b->proj_b, s->atty, C, C);
        for (long i = 0; i < C; i++)
            s->x[i] += s->tmp[i];
        layernorm(s->ln, s->x, p + b->ln2_w, p + b->ln2_b, C);
        linear(s->fc, p + b->fc_w, p + b->fc_b, s->ln, 4 * C, C);
        for (long i = 0; i < 4 * C; i++) {
            float v = s->fc[i];
            s->fc[i] = 0.5f * v * (1.0f + tanhf(0.7978845608f * (v + 0.044715f * v * v * v)));
        }
        linear(s->tmp, p + b->fcproj_w, p + b->fcproj_b, s->fc, C, 4 * C);
        for (long i = 0; i < C; i++)
            s->x[i] += s->tmp[i];
    }
    layernorm(s->ln, s->x, p + g->lnf_w, p + g->lnf_b, C);
    /* the classifier is the token embedding, real vocabulary only */
    cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)g->vocab, (int)C, 1.0f, p + g->wte, (int)C, s->ln, 1, 0.0f,
                s->logits, 1);
    s->pos++;
    *logits = s->logits;
    return RM_OK;
}
