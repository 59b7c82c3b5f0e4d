#include "gpt_cpu.h"

#include "rng.h"
#include "simd_clones.h"

#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void openblas_set_num_threads(int num_threads);

#define LN_EPS 1e-5f
/* Partial sums per reduction. A float sum in one accumulator is a chain
 * the compiler must keep in order (no -ffast-math); 16 independent lanes
 * vectorize, and also round less than one long chain. */
#define LANES 16
/* Default query rows per attention product: large enough for sgemm to run
 * near its peak, small enough that the causal tiling skips most of the
 * masked upper triangle (T = 1024: 53% of the full product). 64 ran 3-5%
 * faster than 128 on the 4-layer, dim-256, context-256 benchmark. */
#define ATT_BLOCK 64
#define SQRT_2_OVER_PI 0.7978845608028654f
#define GELU_KAPPA 0.044715f

/* Buffers */

/* Hands out `count` floats at *at (rounded up to 64 bytes, so every buffer
 * starts on a cache line), or just counts when base is NULL. */
static float *carve(float *base, size_t *at, size_t count)
{
    float *p = base ? base + *at : NULL;
    *at += (count + 15) / 16 * 16;
    return p;
}

void rm_gpt_layer_carve(rm_gpt_cpu_layer *a, const rm_gpt_layout *g, long max_batch, size_t att_floats_per_seq,
                        int recompute, float *base, size_t *at)
{
    size_t BT = (size_t)max_batch * (size_t)g->context, C = (size_t)g->dim;
    int keep_ln = recompute < RM_RECOMPUTE_GELU_LAYERNORM, keep_gelu = recompute < RM_RECOMPUTE_GELU;
    a->ln1 = keep_ln ? carve(base, at, BT * C) : NULL;
    a->ln1_mean = carve(base, at, BT);
    a->ln1_rstd = carve(base, at, BT);
    a->qkv = carve(base, at, BT * 3 * C);
    a->att = carve(base, at, (size_t)max_batch * att_floats_per_seq);
    a->atty = carve(base, at, BT * C);
    a->res2 = carve(base, at, BT * C);
    a->ln2 = keep_ln ? carve(base, at, BT * C) : NULL;
    a->ln2_mean = carve(base, at, BT);
    a->ln2_rstd = carve(base, at, BT);
    a->fc_pre = keep_gelu ? NULL : carve(base, at, BT * 4 * C);
    a->fc_gelu = keep_gelu ? carve(base, at, BT * 4 * C) : NULL;
    a->gelu_d = keep_gelu ? carve(base, at, BT * 4 * C) : NULL;
    a->res3 = carve(base, at, BT * C);
}

void rm_gpt_recompute_carve(rm_gpt_cpu_layer *layers, const rm_gpt_layout *g, long max_batch, int recompute,
                            float *base, size_t *at)
{
    size_t BT = (size_t)max_batch * (size_t)g->context, C = (size_t)g->dim;
    float *ln = recompute >= RM_RECOMPUTE_GELU_LAYERNORM ? carve(base, at, BT * C) : NULL;
    float *gelu = recompute >= RM_RECOMPUTE_GELU ? carve(base, at, BT * 4 * C) : NULL;
    for (int l = 0; l < g->layers; l++) {
        rm_gpt_cpu_layer *a = &layers[l];
        if (ln)
            a->ln1 = a->ln2 = ln;
        if (gelu)
            a->fc_gelu = gelu;
    }
}

/* Points every activation buffer into base (or only sizes them, base NULL);
 * returns the floats needed. */
static size_t plan_buffers(rm_gpt_cpu *m, float *base)
{
    const rm_gpt_layout *g = &m->g;
    size_t BT = (size_t)m->max_batch * (size_t)g->context, C = (size_t)g->dim, T = (size_t)g->context;
    size_t at = 0;
    m->encoded = carve(base, &at, BT * C);
    for (int l = 0; l < g->layers; l++)
        rm_gpt_layer_carve(&m->layer[l], g, m->max_batch, (size_t)g->heads * T * T, m->recompute, base, &at);
    rm_gpt_recompute_carve(m->layer, g, m->max_batch, m->recompute, base, &at);
    m->lnf = carve(base, &at, BT * C);
    m->lnf_mean = carve(base, &at, BT);
    m->lnf_rstd = carve(base, &at, BT);
    m->logits = carve(base, &at, BT * (size_t)g->padded_vocab);
    m->row_max = carve(base, &at, BT);
    m->row_inv_sum = carve(base, &at, BT);
    m->fc_pre = carve(base, &at, BT * 4 * C);
    m->dres = carve(base, &at, BT * C);
    m->dc = carve(base, &at, BT * C);
    m->dqkv = carve(base, &at, BT * 3 * C);
    m->datt = carve(base, &at, T * T);
    m->ones = carve(base, &at, BT);
    return at;
}

int rm_gpt_cpu_init(rm_gpt_cpu *m, const rm_gpt_layout *g, long max_batch, int threads, int recompute,
                    rm_error *err)
{
    memset(m, 0, sizeof *m);
    if (recompute < RM_RECOMPUTE_NONE || recompute > RM_RECOMPUTE_GELU_LAYERNORM)
        return rm_fail(err, "gpt: train.recompute %d is none of 0, 1, 2", recompute);
    if (max_batch < 1)
        return rm_fail(err, "gpt: batch must be at least 1 sequence, got %ld", max_batch);
    /* sgemm takes int dimensions; the tallest operand has batch x context rows. */
    if (max_batch > INT_MAX / g->context)
        return rm_fail(err, "gpt: batch %ld x context %ld tokens exceeds the %d rows one product can take", max_batch,
                       g->context, INT_MAX);
    m->g = *g;
    m->max_batch = max_batch;
    m->att_block = ATT_BLOCK;
    m->recompute = recompute;
    size_t floats = plan_buffers(m, NULL);
    m->activation_bytes = floats * sizeof(float);
    /* calloc: the parts of each attention matrix the causal tiling never
     * writes, and the logits' padding columns, stay 0 for good. */
    m->arena = calloc(floats, sizeof(float));
    size_t tokens = (size_t)max_batch * (size_t)g->context;
    m->inputs = calloc(2 * tokens, sizeof(int32_t));
    if (!m->arena || !m->inputs) {
        rm_gpt_cpu_free(m);
        return rm_fail(err, "gpt: out of memory for the activations of %ld sequences (%.1f GiB)", max_batch,
                       (double)floats * sizeof(float) / (1024.0 * 1024.0 * 1024.0));
    }
    m->targets = m->inputs + tokens;
    plan_buffers(m, m->arena);
    for (size_t i = 0; i < tokens; i++)
        m->ones[i] = 1.0f;
    if (threads >= 1)
        openblas_set_num_threads(threads);
    return RM_OK;
}

void rm_gpt_cpu_free(rm_gpt_cpu *m)
{
    free(m->arena);
    free(m->inputs);
    memset(m, 0, sizeof *m);
}

const float *rm_gpt_cpu_logits(const rm_gpt_cpu *m)
{
    return m->logits;
}

/* Initialisation */

/* w[0..count) ~ normal(0, std), from the stream keyed by (seed, offset):
 * Box-Muller on the counter-based generator, in double, so every rank
 * computes the same bits. */
static void fill_normal(float *w, long count, double std, uint64_t seed, long offset)
{
    rm_rng rng = {rm_key(rm_key(seed, 0x67707432ULL /* "gpt2" */), (uint64_t)offset)};
    for (long i = 0; i < count; i += 2) {
        double u1 = 1.0 - rm_rng_uniform(&rng); /* (0, 1]: log stays finite */
        double u2 = rm_rng_uniform(&rng);
        double r = std * sqrt(-2.0 * log(u1)), angle = 6.283185307179586 * u2;
        w[i] = (float)(r * cos(angle));
        if (i + 1 < count)
            w[i + 1] = (float)(r * sin(angle));
    }
}

static void fill_value(float *w, long count, float value)
{
    for (long i = 0; i < count; i++)
        w[i] = value;
}

void rm_gpt_init_params(const rm_gpt_layout *g, uint64_t seed, float *params)
{
    long C = g->dim;
    double std = 0.02, residual_std = 0.02 / sqrt(2.0 * g->layers);
    fill_normal(params + g->wte, g->vocab * C, std, seed, g->wte);
    fill_value(params + g->wte + g->vocab * C, (g->padded_vocab - g->vocab) * C, 0.0f);
    fill_normal(params + g->wpe, g->context * C, std, seed, g->wpe);
    for (int l = 0; l < g->layers; l++) {
        const rm_gpt_block_offsets *b = &g->block[l];
        fill_value(params + b->ln1_w, C, 1.0f);
        fill_value(params + b->ln1_b, C, 0.0f);
        fill_normal(params + b->qkv_w, 3 * C * C, std, seed, b->qkv_w);
        fill_value(params + b->qkv_b, 3 * C, 0.0f);
        fill_normal(params + b->proj_w, C * C, residual_std, seed, b->proj_w);
        fill_value(params + b->proj_b, C, 0.0f);
        fill_value(params + b->ln2_w, C, 1.0f);
        fill_value(params + b->ln2_b, C, 0.0f);
        fill_normal(params + b->fc_w, 4 * C * C, std, seed, b->fc_w);
        fill_value(params + b->fc_b, 4 * C, 0.0f);
        fill_normal(params + b->fcproj_w, 4 * C * C, residual_std, seed, b->fcproj_w);
        fill_value(params + b->fcproj_b, C, 0.0f);
    }
    fill_value(params + g->lnf_w, C, 1.0f);
    fill_value(params + g->lnf_b, C, 0.0f);
}

/* Elementwise kernels. Each is one pass over its rows, written so that GCC
 * vectorizes it; RM_SIMD_CLONES builds them for AVX-512 and AVX2 too. */

/* exp(x) to about 1 ulp (Cephes' expf: 2^n e^r, |r| <= ln2/2, degree-6
 * polynomial), in plain arithmetic the vectorizer can widen, unlike libm's
 * expf. x is clamped to [-87, 88], where the result stays a normal float:
 * below, exp(x) < 1.7e-38 reads as 0 in every use here. */
static inline float exp_approx(float x)
{
    x = x > 88.0f ? 88.0f : x;
    x = x < -87.0f ? -87.0f : x;
    /* round(x / ln2): adding 1.5 * 2^23 leaves no fraction bits. */
    float fn = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = (x - fn * 0.693359375f) - fn * -2.12194440e-4f; /* ln2 in two parts: the first times n is exact */
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    union {
        int32_t i;
        float f;
    } two_n = {((int32_t)fn + 127) * (1 << 23)};
    return p * two_n.f;
}

static inline float sum_of(const float *x, long n)
{
    float acc[LANES] = {0};
    long i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int k = 0; k < LANES; k++)
            acc[k] += x[i + k];
    float s = 0.0f;
    for (; i < n; i++)
        s += x[i];
    for (int k = 0; k < LANES; k++)
        s += acc[k];
    return s;
}

static inline float max_of(const float *x, long n)
{
    float acc[LANES];
    for (int k = 0; k < LANES; k++)
        acc[k] = x[0];
    long i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int k = 0; k < LANES; k++)
            acc[k] = x[i + k] > acc[k] ? x[i + k] : acc[k];
    float mx = x[0];
    for (; i < n; i++)
        mx = x[i] > mx ? x[i] : mx;
    for (int k = 0; k < LANES; k++)
        mx = acc[k] > mx ? acc[k] : mx;
    return mx;
}

/* sum over j of exp(x[j] - shift); writes the terms into out unless NULL. */
static inline float sum_exp_shifted(float *out, const float *x, long n, float shift)
{
    float acc[LANES] = {0};
    long i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int k = 0; k < LANES; k++) {
            float e = exp_approx(x[i + k] - shift);
            if (out)
                out[i + k] = e;
            acc[k] += e;
        }
    float s = 0.0f;
    for (; i < n; i++) {
        float e = exp_approx(x[i] - shift);
        if (out)
            out[i] = e;
        s += e;
    }
    for (int k = 0; k < LANES; k++)
        s += acc[k];
    return s;
}

/* out[b, t] = wte[tok] + wpe[t], rows of C. */
RM_SIMD_CLONES
static void encoder_forward(float *restrict out, const int32_t *tokens, const float *restrict wte,
                            const float *restrict wpe, long n, long T, long C)
{
    for (long b = 0; b < n; b++)
        for (long t = 0; t < T; t++) {
            float *o = out + (b * T + t) * C;
            const float *e = wte + (long)tokens[b * T + t] * C, *p = wpe + t * C;
            for (long i = 0; i < C; i++)
                o[i] = e[i] + p[i];
        }
}

/* LayerNorm over rows of C, biased variance; keeps each row's mean and
 * 1/std for backward. */
RM_SIMD_CLONES
static void layernorm_forward(float *restrict out, float *restrict mean, float *restrict rstd, const float *restrict x,
                              const float *restrict w, const float *restrict b, long rows, long C)
{
    for (long r = 0; r < rows; r++) {
        const float *xr = x + r * C;
        float *o = out + r * C; /* x - mean first, scaled in place below */
        float mu = sum_of(xr, C) / (float)C;
        float acc[LANES] = {0};
        long i = 0;
        for (; i + LANES <= C; i += LANES)
            for (int k = 0; k < LANES; k++) {
                float d = xr[i + k] - mu;
                o[i + k] = d;
                acc[k] += d * d;
            }
        float var = 0.0f;
        for (; i < C; i++) {
            float d = xr[i] - mu;
            o[i] = d;
            var += d * d;
        }
        for (int k = 0; k < LANES; k++)
            var += acc[k];
        float rs = 1.0f / sqrtf(var / (float)C + LN_EPS);
        for (i = 0; i < C; i++)
            o[i] = o[i] * rs * w[i] + b[i];
        mean[r] = mu;
        rstd[r] = rs;
    }
}

/* dx += d(LayerNorm)/dx applied to dout; dw, db += the weight's and bias's
 * gradients (the caller zeroes them first when not accumulating). */
RM_SIMD_CLONES
static void layernorm_backward(float *restrict dx, float *restrict dw, float *restrict db, const float *restrict dout,
                               const float *restrict x, const float *restrict mean, const float *restrict rstd,
                               const float *restrict w, long rows, long C)
{
    for (long r = 0; r < rows; r++) {
        const float *xr = x + r * C, *dr = dout + r * C;
        float *dxr = dx + r * C;
        float mu = mean[r], rs = rstd[r];
        /* mean of dnorm = w dout, and of dnorm * norm */
        float acc1[LANES] = {0}, acc2[LANES] = {0};
        long i = 0;
        for (; i + LANES <= C; i += LANES)
            for (int k = 0; k < LANES; k++) {
                float dn = w[i + k] * dr[i + k];
                acc1[k] += dn;
                acc2[k] += dn * ((xr[i + k] - mu) * rs);
            }
        float s1 = 0.0f, s2 = 0.0f;
        for (; i < C; i++) {
            float dn = w[i] * dr[i];
            s1 += dn;
            s2 += dn * ((xr[i] - mu) * rs);
        }
        for (int k = 0; k < LANES; k++) {
            s1 += acc1[k];
            s2 += acc2[k];
        }
        float dnorm_mean = s1 / (float)C, dnorm_norm_mean = s2 / (float)C;
        for (i = 0; i < C; i++) {
            float norm = (xr[i] - mu) * rs;
            dxr[i] += (w[i] * dr[i] - dnorm_mean - norm * dnorm_norm_mean) * rs;
            dw[i] += norm * dr[i];
            db[i] += dr[i];
        }
    }
}

/* gelu_tanh and its derivative at v. With s = 1 + tanh(u) = 2 / (1 +
 * exp(-2u)) and 1 - tanh(u)^2 = s^2 exp(-2u), neither cancels where tanh
 * nears -1 or 1. Every pass below computes them through these two, so a
 * value recomputed in backward (train.recompute) is the bits forward had. */
static inline float gelu_s(float v, float *e)
{
    float u = SQRT_2_OVER_PI * (v + GELU_KAPPA * v * v * v);
    *e = exp_approx(-2.0f * u);
    return 2.0f / (1.0f + *e);
}

static inline float gelu_slope(float v, float s, float e)
{
    return 0.5f * s + 0.5f * v * (s * s * e) * SQRT_2_OVER_PI * (1.0f + 3.0f * GELU_KAPPA * v * v);
}

/* y = gelu_tanh(x) and dy = gelu_tanh'(x). */
RM_SIMD_CLONES
static void gelu_forward(float *restrict y, float *restrict dy, const float *restrict x, long n)
{
    for (long i = 0; i < n; i++) {
        float v = x[i], e, s = gelu_s(v, &e);
        y[i] = 0.5f * v * s;
        dy[i] = gelu_slope(v, s, e);
    }
}

/* y = gelu_tanh(x) alone: what forward keeps under train.recompute. */
RM_SIMD_CLONES
static void gelu_values(float *restrict y, const float *restrict x, long n)
{
    for (long i = 0; i < n; i++) {
        float v = x[i], e, s = gelu_s(v, &e);
        y[i] = 0.5f * v * s;
    }
}

/* d *= gelu_tanh'(x), the slope recomputed from the pre-activation x. */
RM_SIMD_CLONES
static void gelu_backward_at(float *restrict d, const float *restrict x, long n)
{
    for (long i = 0; i < n; i++) {
        float v = x[i], e, s = gelu_s(v, &e);
        d[i] *= gelu_slope(v, s, e);
    }
}

/* d *= dgelu, in place, rows of width. */
RM_SIMD_CLONES
static void gelu_backward(float *restrict d, const float *restrict dgelu, long n)
{
    for (long i = 0; i < n; i++)
        d[i] *= dgelu[i];
}

/* out = residual + bias (or bias alone when residual is NULL), rows of
 * width: the start a product adds onto. Cheaper than sgemm with beta 0,
 * which first clears out, and a pass for the bias after. */
RM_SIMD_CLONES
static void bias_fill(float *restrict out, const float *restrict residual, const float *restrict bias, long rows,
                      long width)
{
    for (long r = 0; r < rows; r++) {
        float *o = out + r * width;
        if (residual) {
            const float *res = residual + r * width;
            for (long j = 0; j < width; j++)
                o[j] = res[j] + bias[j];
        } else {
            memcpy(o, bias, (size_t)width * sizeof(float));
        }
    }
}

/* Softmax of one causal row of attention scores in place: the first `len`
 * entries are live, those up to `width` (the product's edge) are set to 0
 * so backward's products can read the whole tile. */
RM_SIMD_CLONES
static void softmax_causal_row(float *row, long len, long width)
{
    float mx = max_of(row, len);
    float inv = 1.0f / sum_exp_shifted(row, row, len, mx);
    for (long j = 0; j < len; j++)
        row[j] *= inv;
    for (long j = len; j < width; j++)
        row[j] = 0.0f;
}

/* Attention's softmax backward for one row, in place over dp:
 * ds = p (dp - sum_j p dp) scale on the first len entries, 0 up to width. */
RM_SIMD_CLONES
static void softmax_causal_row_backward(float *restrict dp, const float *restrict p, long len, long width, float scale)
{
    float acc[LANES] = {0};
    long j = 0;
    for (; j + LANES <= len; j += LANES)
        for (int k = 0; k < LANES; k++)
            acc[k] += p[j + k] * dp[j + k];
    float dot = 0.0f;
    for (; j < len; j++)
        dot += p[j] * dp[j];
    for (int k = 0; k < LANES; k++)
        dot += acc[k];
    for (j = 0; j < len; j++)
        dp[j] = p[j] * (dp[j] - dot) * scale;
    for (j = len; j < width; j++)
        dp[j] = 0.0f;
}

/* Cross-entropy over the real vocabulary of each row: keeps the softmax's
 * shift and 1/sum for backward, returns the summed loss. */
RM_SIMD_CLONES
static double cross_entropy_forward(const float *logits, const int32_t *targets, float *row_max, float *row_inv_sum,
                                    long rows, long V, long Vp)
{
    double loss = 0.0;
    for (long r = 0; r < rows; r++) {
        const float *l = logits + r * Vp;
        float mx = max_of(l, V);
        float sum = sum_exp_shifted(NULL, l, V, mx);
        row_max[r] = mx;
        row_inv_sum[r] = 1.0f / sum;
        loss += log((double)sum) + (double)mx - (double)l[targets[r]];
    }
    return loss;
}

/* logits -> scale (softmax - onehot), in place (padding columns stay 0). */
RM_SIMD_CLONES
static void cross_entropy_backward(float *logits, const int32_t *targets, const float *row_max,
                                   const float *row_inv_sum, long rows, long V, long Vp, float scale)
{
    for (long r = 0; r < rows; r++) {
        float *d = logits + r * Vp;
        float shift = row_max[r], f = row_inv_sum[r] * scale;
        for (long j = 0; j < V; j++)
            d[j] = exp_approx(d[j] - shift) * f;
        d[targets[r]] -= scale;
    }
}

/* Products */

/* out[rows x out_dim] = residual + b + in[rows x in_dim] W^T, W
 * [out_dim x in_dim], b [out_dim]; residual may be NULL. */
static void matmul_forward(float *out, const float *in, const float *w, const float *b, const float *residual,
                           long rows, long in_dim, long out_dim)
{
    bias_fill(out, residual, b, rows, out_dim);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, (int)out_dim, (int)in_dim, 1.0f, in, (int)in_dim,
                w, (int)in_dim, 1.0f, out, (int)out_dim);
}

/* Backward of out = in W^T + b: din = dout W (written; skipped when NULL),
 * dW (+)= dout^T in, db (+)= column sums of dout. */
static void matmul_backward(float *din, float *dw, float *db, const float *dout, const float *in, const float *w,
                            const float *ones, long rows, long in_dim, long out_dim, int accumulate)
{
    if (din)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)in_dim, (int)out_dim, 1.0f, dout,
                    (int)out_dim, w, (int)in_dim, 0.0f, din, (int)in_dim);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)out_dim, (int)in_dim, (int)rows, 1.0f, dout,
                (int)out_dim, in, (int)in_dim, accumulate ? 1.0f : 0.0f, dw, (int)in_dim);
    /* beta 0 is not used: whether sgemv's scaling by 0 clears a NaN left
     * in y differs between OpenBLAS versions. */
    if (!accumulate)
        memset(db, 0, (size_t)out_dim * sizeof(float));
    cblas_sgemv(CblasRowMajor, CblasTrans, (int)rows, (int)out_dim, 1.0f, dout, (int)out_dim, ones, 1, 1.0f, db, 1);
}

/* Causal self-attention of layer a over n sequences: qkv -> att, atty.
 * Per (sequence, head), row block [i0, i1) of queries meets keys [0, i1)
 * only; the tile's masked corner is computed and then zeroed. */
static void attention_forward(rm_gpt_cpu *m, rm_gpt_cpu_layer *a, long n)
{
    long T = m->g.context, C = m->g.dim, NH = m->g.heads, hs = C / NH, C3 = 3 * C, blk = m->att_block;
    float scale = 1.0f / sqrtf((float)hs);
    for (long b = 0; b < n; b++)
        for (long h = 0; h < NH; h++) {
            const float *q = a->qkv + b * T * C3 + h * hs, *k = q + C, *v = q + 2 * C;
            float *P = a->att + (b * NH + h) * T * T, *y = a->atty + b * T * C + h * hs;
            for (long i0 = 0; i0 < T; i0 += blk) {
                long i1 = i0 + blk < T ? i0 + blk : T;
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)(i1 - i0), (int)i1, (int)hs, scale,
                            q + i0 * C3, (int)C3, k, (int)C3, 0.0f, P + i0 * T, (int)T);
                for (long t = i0; t < i1; t++)
                    softmax_causal_row(P + t * T, t + 1, i1);
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)(i1 - i0), (int)hs, (int)i1, 1.0f,
                            P + i0 * T, (int)T, v, (int)C3, 0.0f, y + i0 * C, (int)C);
            }
        }
}

/* Backward of attention_forward: datty -> dqkv (written). Query blocks give
 * dq from dS = softmax'(dP), dP = dy v^T; key blocks [j0, j1) give dk and dv
 * from the rows t >= j0, the only ones that see those keys. */
static void attention_backward(rm_gpt_cpu *m, const rm_gpt_cpu_layer *a, const float *datty, float *dqkv, long n)
{
    long T = m->g.context, C = m->g.dim, NH = m->g.heads, hs = C / NH, C3 = 3 * C, blk = m->att_block;
    float scale = 1.0f / sqrtf((float)hs);
    float *dS = m->datt;
    for (long b = 0; b < n; b++)
        for (long h = 0; h < NH; h++) {
            const float *q = a->qkv + b * T * C3 + h * hs, *k = q + C, *v = q + 2 * C;
            const float *P = a->att + (b * NH + h) * T * T, *dy = datty + b * T * C + h * hs;
            float *dq = dqkv + b * T * C3 + h * hs, *dk = dq + C, *dv = dq + 2 * C;
            for (long i0 = 0; i0 < T; i0 += blk) {
                long i1 = i0 + blk < T ? i0 + blk : T;
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)(i1 - i0), (int)i1, (int)hs, 1.0f,
                            dy + i0 * C, (int)C, v, (int)C3, 0.0f, dS + i0 * T, (int)T);
                for (long t = i0; t < i1; t++)
                    softmax_causal_row_backward(dS + t * T, P + t * T, t + 1, i1, scale);
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)(i1 - i0), (int)hs, (int)i1, 1.0f,
                            dS + i0 * T, (int)T, k, (int)C3, 0.0f, dq + i0 * C3, (int)C3);
            }
            for (long j0 = 0; j0 < T; j0 += blk) {
                long j1 = j0 + blk < T ? j0 + blk : T;
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)(j1 - j0), (int)hs, (int)(T - j0), 1.0f,
                            dS + j0 * T + j0, (int)T, q + j0 * C3, (int)C3, 0.0f, dk + j0 * C3, (int)C3);
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)(j1 - j0), (int)hs, (int)(T - j0), 1.0f,
                            P + j0 * T + j0, (int)T, dy + j0 * C, (int)C, 0.0f, dv + j0 * C3, (int)C3);
            }
        }
}

/* Forward */

int rm_gpt_check_tokens(const int32_t *tokens, long n, long T, long vocab, const char *what, rm_error *err)
{
    for (long i = 0; i < n * T; i++)
        if (tokens[i] < 0 || tokens[i] >= vocab)
            return rm_fail(err, "gpt: %s token %d at sequence %ld, position %ld is outside the vocabulary [0, %ld)",
                           what, (int)tokens[i], i / T, i % T, vocab);
    return RM_OK;
}

/* One block on n sequences: x -> layer l's activations, ending in res3. */
static void block_forward(rm_gpt_cpu *m, const float *params, int l, const float *x, long n)
{
    const rm_gpt_block_offsets *o = &m->g.block[l];
    rm_gpt_cpu_layer *a = &m->layer[l];
    long C = m->g.dim, BT = n * m->g.context;
    layernorm_forward(a->ln1, a->ln1_mean, a->ln1_rstd, x, params + o->ln1_w, params + o->ln1_b, BT, C);
    matmul_forward(a->qkv, a->ln1, params + o->qkv_w, params + o->qkv_b, NULL, BT, C, 3 * C);
    attention_forward(m, a, n);
    matmul_forward(a->res2, a->atty, params + o->proj_w, params + o->proj_b, x, BT, C, C);
    layernorm_forward(a->ln2, a->ln2_mean, a->ln2_rstd, a->res2, params + o->ln2_w, params + o->ln2_b, BT, C);
    if (m->recompute >= RM_RECOMPUTE_GELU) { /* the pre-activation kept, the slope left to backward */
        matmul_forward(a->fc_pre, a->ln2, params + o->fc_w, params + o->fc_b, NULL, BT, C, 4 * C);
        gelu_values(a->fc_gelu, a->fc_pre, BT * 4 * C);
    } else {
        matmul_forward(m->fc_pre, a->ln2, params + o->fc_w, params + o->fc_b, NULL, BT, C, 4 * C);
        gelu_forward(a->fc_gelu, a->gelu_d, m->fc_pre, BT * 4 * C);
    }
    matmul_forward(a->res3, a->fc_gelu, params + o->fcproj_w, params + o->fcproj_b, a->res2, BT, 4 * C, C);
}

int rm_gpt_cpu_forward(rm_gpt_cpu *m, const float *params, const int32_t *inputs, const int32_t *targets, long n,
                       double *loss_sum, rm_error *err)
{
    const rm_gpt_layout *g = &m->g;
    if (n < 1 || n > m->max_batch)
        return rm_fail(err, "gpt: forward on %ld sequences, but activations were sized for 1..%ld", n, m->max_batch);
    long T = g->context, C = g->dim, BT = n * T;
    if (rm_gpt_check_tokens(inputs, n, T, g->vocab, "input", err) != RM_OK ||
        rm_gpt_check_tokens(targets, n, T, g->vocab, "target", err) != RM_OK)
        return RM_ERR;
    m->n = 0; /* until this forward completes, there is nothing to differentiate */
    memcpy(m->inputs, inputs, (size_t)BT * sizeof(int32_t));
    memcpy(m->targets, targets, (size_t)BT * sizeof(int32_t));

    encoder_forward(m->encoded, inputs, params + g->wte, params + g->wpe, n, T, C);
    const float *x = m->encoded;
    for (int l = 0; l < g->layers; l++) {
        block_forward(m, params, l, x, n);
        x = m->layer[l].res3;
    }
    layernorm_forward(m->lnf, m->lnf_mean, m->lnf_rstd, x, params + g->lnf_w, params + g->lnf_b, BT, C);
    /* Tied classifier over the real vocabulary: the padding columns stay 0. */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)BT, (int)g->vocab, (int)C, 1.0f, m->lnf, (int)C,
                params + g->wte, (int)C, 0.0f, m->logits, (int)g->padded_vocab);
    *loss_sum = cross_entropy_forward(m->logits, m->targets, m->row_max, m->row_inv_sum, BT, g->vocab,
                                      g->padded_vocab);
    m->n = n;
    return RM_OK;
}

/* Backward */

/* One block's backward: m->dres holds d(loss)/d(res3) on entry and
 * d(loss)/d(x), the block's input, on return. */
static void block_backward(rm_gpt_cpu *m, const float *params, float *grads, int l, long n, int accumulate)
{
    const rm_gpt_block_offsets *o = &m->g.block[l];
    const rm_gpt_cpu_layer *a = &m->layer[l];
    const float *x = l == 0 ? m->encoded : m->layer[l - 1].res3;
    long C = m->g.dim, BT = n * m->g.context;
    float *dres = m->dres, *dc = m->dc, *dfc = m->fc_pre;

    /* What forward did not keep, recomputed from what it did: the same
     * functions of the same inputs, so the same bits. */
    if (m->recompute >= RM_RECOMPUTE_GELU)
        gelu_values(a->fc_gelu, a->fc_pre, BT * 4 * C);
    if (m->recompute >= RM_RECOMPUTE_GELU_LAYERNORM)
        layernorm_forward(a->ln2, a->ln2_mean, a->ln2_rstd, a->res2, params + o->ln2_w, params + o->ln2_b, BT, C);

    /* res3 = res2 + fcproj(gelu(fc(ln2(res2)))): dres flows on unchanged and
     * picks up the MLP branch's share. */
    matmul_backward(dfc, grads + o->fcproj_w, grads + o->fcproj_b, dres, a->fc_gelu, params + o->fcproj_w, m->ones,
                    BT, 4 * C, C, accumulate);
    if (m->recompute >= RM_RECOMPUTE_GELU)
        gelu_backward_at(dfc, a->fc_pre, BT * 4 * C);
    else
        gelu_backward(dfc, a->gelu_d, BT * 4 * C);
    matmul_backward(dc, grads + o->fc_w, grads + o->fc_b, dfc, a->ln2, params + o->fc_w, m->ones, BT, C, 4 * C,
                    accumulate);
    if (!accumulate)
        memset(grads + o->ln2_w, 0, 2 * (size_t)C * sizeof(float)); /* ln2_w, ln2_b */
    layernorm_backward(dres, grads + o->ln2_w, grads + o->ln2_b, dc, a->res2, a->ln2_mean, a->ln2_rstd,
                       params + o->ln2_w, BT, C);

    /* res2 = x + proj(attn(ln1(x))) */
    matmul_backward(dc, grads + o->proj_w, grads + o->proj_b, dres, a->atty, params + o->proj_w, m->ones, BT, C, C,
                    accumulate);
    attention_backward(m, a, dc, m->dqkv, n);
    if (m->recompute >= RM_RECOMPUTE_GELU_LAYERNORM) /* the scratch holds ln2 */
        layernorm_forward(a->ln1, a->ln1_mean, a->ln1_rstd, x, params + o->ln1_w, params + o->ln1_b, BT, C);
    matmul_backward(dc, grads + o->qkv_w, grads + o->qkv_b, m->dqkv, a->ln1, params + o->qkv_w, m->ones, BT, C,
                    3 * C, accumulate);
    if (!accumulate)
        memset(grads + o->ln1_w, 0, 2 * (size_t)C * sizeof(float)); /* ln1_w, ln1_b */
    layernorm_backward(dres, grads + o->ln1_w, grads + o->ln1_b, dc, x, a->ln1_mean, a->ln1_rstd, params + o->ln1_w,
                       BT, C);
}

/* wte[tok] and wpe[t] += the gradient at each position. */
RM_SIMD_CLONES
static void encoder_backward(float *restrict dwte, float *restrict dwpe, const float *restrict dres,
                             const int32_t *tokens, long n, long T, long C)
{
    for (long b = 0; b < n; b++)
        for (long t = 0; t < T; t++) {
            const float *d = dres + (b * T + t) * C;
            float *e = dwte + (long)tokens[b * T + t] * C, *p = dwpe + t * C;
            for (long i = 0; i < C; i++) {
                e[i] += d[i];
                p[i] += d[i];
            }
        }
}

int rm_gpt_cpu_backward(rm_gpt_cpu *m, const float *params, float *grads, float grad_scale, int accumulate,
                        rm_grad_ready_fn ready, void *ready_ctx, rm_error *err)
{
    const rm_gpt_layout *g = &m->g;
    long n = m->n;
    if (n == 0)
        return rm_fail(err, "gpt: backward without a forward before it (each forward allows one backward, which "
                            "turns the logits into their gradient)");
    m->n = 0;
    long T = g->context, C = g->dim, V = g->vocab, Vp = g->padded_vocab, BT = n * T;
    float *dlogits = m->logits;
    cross_entropy_backward(dlogits, m->targets, m->row_max, m->row_inv_sum, BT, V, Vp, grad_scale);

    /* The tied classifier: wte's first gradient (the lookup's comes last)
     * and d(lnf's output). */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)V, (int)C, (int)BT, 1.0f, dlogits, (int)Vp, m->lnf,
                (int)C, accumulate ? 1.0f : 0.0f, grads + g->wte, (int)C);
    if (!accumulate)
        memset(grads + g->wte + V * C, 0, (size_t)((Vp - V) * C) * sizeof(float));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)BT, (int)C, (int)V, 1.0f, dlogits, (int)Vp,
                params + g->wte, (int)C, 0.0f, m->dc, (int)C);
    memset(m->dres, 0, (size_t)(BT * C) * sizeof(float));
    if (!accumulate)
        memset(grads + g->lnf_w, 0, 2 * (size_t)C * sizeof(float)); /* lnf_w, lnf_b */
    layernorm_backward(m->dres, grads + g->lnf_w, grads + g->lnf_b, m->dc, m->layer[g->layers - 1].res3, m->lnf_mean,
                       m->lnf_rstd, params + g->lnf_w, BT, C);
    if (ready && ready(ready_ctx, g->lnf_w, err) != RM_OK)
        return RM_ERR;

    for (int l = g->layers - 1; l >= 0; l--) {
        block_backward(m, params, grads, l, n, accumulate);
        if (ready && ready(ready_ctx, g->block[l].ln1_w, err) != RM_OK)
            return RM_ERR;
    }

    if (!accumulate)
        memset(grads + g->wpe, 0, (size_t)(T * C) * sizeof(float));
    encoder_backward(grads + g->wte, grads + g->wpe, m->dres, m->inputs, n, T, C);
    if (ready && ready(ready_ctx, 0, err) != RM_OK)
        return RM_ERR;
    return RM_OK;
}
