/* The CPU MLP's gradients against central finite differences, the
 * grad-ready callback's contract, and one optimizer step each of SGD with
 * momentum and AdamW against hand-computed values.
 *
 * The reference is an independent double-precision forward pass written
 * from the documented layout (model_shape.h: per layer, weight [out x in]
 * row-major, then bias [out]). Finite differences of it are accurate to
 * ~1e-9, so the float gradients are held to float accuracy; a second,
 * coarser check takes finite differences of the product's own float
 * forward pass. */
#include "config.h"
#include "mlp_cpu.h"
#include "model_shape.h"
#include "optimizer.h"
#include "test_util.h"

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define INPUTS 7
#define CLASSES 3
#define BATCH 6

typedef struct fixture {
    rm_model_shape shape;
    float params[256];
    float x[BATCH * INPUTS];
    uint8_t labels[BATCH];
} fixture;

/* Double-precision forward over the batch: returns the summed
 * cross-entropy; min_margin gets the smallest |pre-activation| of any
 * hidden unit (how close the batch sits to a ReLU kink); pattern, when not
 * NULL, gets each hidden pre-activation's sign. */
static double reference_loss(const rm_model_shape *s, const double *p, const float *x, const uint8_t *labels,
                             double *min_margin, char *pattern)
{
    double loss = 0, margin = INFINITY;
    long at = 0;
    for (long i = 0; i < BATCH; i++) {
        double a[64], z[64];
        for (long j = 0; j < INPUTS; j++)
            a[j] = x[i * INPUTS + j];
        for (int l = 0; l < s->n_layers; l++) {
            long in = s->dims[l], out = s->dims[l + 1];
            for (long o = 0; o < out; o++) {
                double sum = p[s->bias_offset[l] + o];
                for (long k = 0; k < in; k++)
                    sum += p[s->weight_offset[l] + o * in + k] * a[k];
                z[o] = sum;
            }
            int last = l == s->n_layers - 1;
            for (long o = 0; o < out; o++) {
                if (last) {
                    a[o] = z[o];
                    continue;
                }
                if (fabs(z[o]) < margin)
                    margin = fabs(z[o]);
                if (pattern)
                    pattern[at++] = z[o] > 0;
                a[o] = s->activation == RM_ACT_RELU ? (z[o] > 0 ? z[o] : 0) : tanh(z[o]);
            }
        }
        double max = a[0];
        for (long c = 1; c < CLASSES; c++)
            max = a[c] > max ? a[c] : max;
        double sum = 0;
        for (long c = 0; c < CLASSES; c++)
            sum += exp(a[c] - max);
        loss += log(sum) + max - a[labels[i]];
    }
    if (min_margin)
        *min_margin = margin;
    return loss;
}

/* Builds a 7-5-4-3 model and a batch. For ReLU, tries seeds until every
 * hidden pre-activation is at least `margin` away from the kink, so finite
 * differences never step across one. */
static void make_fixture(fixture *f, int activation, double margin)
{
    rm_config cfg;
    rm_config_defaults(&cfg);
    cfg.hidden[0] = 5;
    cfg.hidden[1] = 4;
    cfg.n_hidden = 2;
    cfg.activation = activation;
    rm_model_shape_init(&f->shape, &cfg, INPUTS, CLASSES);
    ck_assert_int_eq(f->shape.n_params, 7 * 5 + 5 + 5 * 4 + 4 + 4 * 3 + 3);
    ck_assert_int_le(f->shape.n_params, (long)(sizeof f->params / sizeof f->params[0]));
    for (uint64_t seed = 1; seed < 1000; seed++) {
        rm_mlp_init_params(&f->shape, seed, f->params);
        for (int l = 0; l < f->shape.n_layers; l++) /* biases start at zero: make them count */
            for (long o = 0; o < f->shape.dims[l + 1]; o++)
                f->params[f->shape.bias_offset[l] + o] = (float)(0.3 * rmt_uniform(seed, 1000 + (uint64_t)o));
        for (long i = 0; i < BATCH * INPUTS; i++)
            f->x[i] = (float)(0.5 + 0.5 * rmt_uniform(seed, (uint64_t)i));
        for (long i = 0; i < BATCH; i++)
            f->labels[i] = (uint8_t)(i % CLASSES);
        double p[256] = {0}, got_margin;
        for (long k = 0; k < f->shape.n_params; k++)
            p[k] = f->params[k];
        reference_loss(&f->shape, p, f->x, f->labels, &got_margin, NULL);
        if (activation != RM_ACT_RELU || got_margin >= margin)
            return;
    }
    ck_abort_msg("no seed keeps every pre-activation %g away from the ReLU kink", margin);
}

/* Runs the product's forward and backward; grads gets d(loss sum)/d(params). */
static void product_gradients(fixture *f, float *grads, double *loss_sum, long *correct)
{
    rm_mlp_cpu mlp;
    rm_error err;
    ck_assert_msg(rm_mlp_cpu_init(&mlp, &f->shape, BATCH, &err) == RM_OK, "%s", err.msg);
    rm_mlp_cpu_forward(&mlp, f->params, f->x, f->labels, BATCH, loss_sum, correct);
    ck_assert_msg(rm_mlp_cpu_backward(&mlp, f->params, grads, f->labels, BATCH, 1.0f, 0, NULL, NULL, &err) == RM_OK,
                  "%s", err.msg);
    rm_mlp_cpu_free(&mlp);
}

static double product_loss(fixture *f, rm_mlp_cpu *mlp)
{
    double loss;
    long correct;
    rm_mlp_cpu_forward(mlp, f->params, f->x, f->labels, BATCH, &loss, &correct);
    return loss;
}

static const char *act_name(int activation)
{
    return activation == RM_ACT_RELU ? "relu" : "tanh";
}

/* _i: 0 = relu, 1 = tanh */
START_TEST(gradients_match_double_finite_differences)
{
    int activation = _i == 0 ? RM_ACT_RELU : RM_ACT_TANH;
    fixture f;
    make_fixture(&f, activation, 1e-3);
    long n = f.shape.n_params;
    float grads[256];
    double loss;
    long correct;
    product_gradients(&f, grads, &loss, &correct);

    double p[256] = {0};
    for (long k = 0; k < n; k++)
        p[k] = f.params[k];
    /* the product's forward computes the reference's function */
    double ref = reference_loss(&f.shape, p, f.x, f.labels, NULL, NULL);
    ck_assert_msg(fabs(loss - ref) <= 1e-5 * fabs(ref), "%s: loss %.9g, reference %.9g", act_name(activation), loss,
                  ref);

    const double h = 1e-5;
    double worst = 0;
    long worst_k = -1, nonzero = 0;
    for (long k = 0; k < n; k++) {
        double keep = p[k];
        p[k] = keep + h;
        double up = reference_loss(&f.shape, p, f.x, f.labels, NULL, NULL);
        p[k] = keep - h;
        double down = reference_loss(&f.shape, p, f.x, f.labels, NULL, NULL);
        p[k] = keep;
        double fd = (up - down) / (2 * h);
        double scale = fmax(fmax(fabs(fd), fabs((double)grads[k])), 1e-3);
        double rel = fabs((double)grads[k] - fd) / scale;
        if (rel > worst) {
            worst = rel;
            worst_k = k;
        }
        nonzero += fabs(fd) > 1e-6;
    }
    ck_assert_msg(worst < 1e-4, "%s: worst relative error %.3g at parameter %ld", act_name(activation), worst,
                  worst_k);
    /* a gradient that is zero everywhere would also "match" a flat loss */
    ck_assert_msg(nonzero > n / 2, "%s: only %ld of %ld gradients are non-zero", act_name(activation), nonzero, n);
}
END_TEST

/* _i: 0 = relu, 1 = tanh */
START_TEST(gradients_match_float_finite_differences)
{
    int activation = _i == 0 ? RM_ACT_RELU : RM_ACT_TANH;
    fixture f;
    make_fixture(&f, activation, 1e-3);
    long n = f.shape.n_params;
    float grads[256];
    double loss;
    long correct;
    product_gradients(&f, grads, &loss, &correct);

    rm_mlp_cpu mlp;
    rm_error err;
    ck_assert_msg(rm_mlp_cpu_init(&mlp, &f.shape, BATCH, &err) == RM_OK, "%s", err.msg);
    const float h = 1e-2f;
    double p[256] = {0};
    char base_pattern[BATCH * 16], pattern[BATCH * 16];
    for (long k = 0; k < n; k++)
        p[k] = f.params[k];
    reference_loss(&f.shape, p, f.x, f.labels, NULL, base_pattern);
    size_t pattern_len = (size_t)BATCH * (size_t)(f.shape.dims[1] + f.shape.dims[2]);
    long checked = 0;
    for (long k = 0; k < n; k++) {
        float keep = f.params[k];
        /* skip a step that would cross a ReLU kink: there the loss has no
         * derivative for finite differences to find */
        int crosses = 0;
        for (int sign = -1; sign <= 1 && activation == RM_ACT_RELU; sign += 2) {
            p[k] = (double)(keep + (float)sign * h);
            reference_loss(&f.shape, p, f.x, f.labels, NULL, pattern);
            crosses |= memcmp(pattern, base_pattern, pattern_len) != 0;
        }
        p[k] = keep;
        if (crosses)
            continue;
        f.params[k] = keep + h;
        double up = product_loss(&f, &mlp);
        f.params[k] = keep - h;
        double down = product_loss(&f, &mlp);
        f.params[k] = keep;
        double fd = (up - down) / (2.0 * (double)h);
        ck_assert_msg(fabs((double)grads[k] - fd) <= 2e-2 * fabs(fd) + 2e-3,
                      "%s: parameter %ld: gradient %.6g, finite difference %.6g", act_name(activation), k,
                      (double)grads[k], fd);
        checked++;
    }
    rm_mlp_cpu_free(&mlp);
    ck_assert_msg(checked >= n * 3 / 4, "%s: only %ld of %ld parameters could be checked", act_name(activation),
                  checked, n);
}
END_TEST

typedef struct ready_log {
    long offsets[8];
    int calls;
    int fail_at_call; /* -1: never */
    long n_params;
    float *grads;
    float snapshot[8][256]; /* grads as they were at each call */
} ready_log;

static int record_ready(void *ctx, long offset, rm_error *err)
{
    ready_log *log = ctx;
    ck_assert_int_lt(log->calls, 8);
    if (log->calls == log->fail_at_call)
        return rm_fail(err, "all-reduce refused at offset %ld", offset);
    log->offsets[log->calls] = offset;
    memcpy(log->snapshot[log->calls], log->grads, (size_t)log->n_params * sizeof(float));
    log->calls++;
    return RM_OK;
}

START_TEST(grad_ready_reports_final_regions_from_the_end)
{
    fixture f;
    make_fixture(&f, RM_ACT_TANH, 0);
    long n = f.shape.n_params;
    float grads[256];
    for (long k = 0; k < n; k++)
        grads[k] = NAN; /* backward must write every gradient, not add to it */
    static ready_log log;
    memset(&log, 0, sizeof log);
    log.fail_at_call = -1;
    log.n_params = n;
    log.grads = grads;

    rm_mlp_cpu mlp;
    rm_error err;
    double loss;
    long correct;
    ck_assert_msg(rm_mlp_cpu_init(&mlp, &f.shape, BATCH, &err) == RM_OK, "%s", err.msg);
    rm_mlp_cpu_forward(&mlp, f.params, f.x, f.labels, BATCH, &loss, &correct);
    ck_assert_msg(rm_mlp_cpu_backward(&mlp, f.params, grads, f.labels, BATCH, 1.0f, 0, record_ready, &log, &err) ==
                      RM_OK,
                  "%s", err.msg);
    rm_mlp_cpu_free(&mlp);

    /* one call per layer, offsets strictly decreasing, the last one 0 */
    ck_assert_int_eq(log.calls, f.shape.n_layers);
    ck_assert_int_eq(log.offsets[log.calls - 1], 0);
    for (int c = 1; c < log.calls; c++)
        ck_assert_msg(log.offsets[c] < log.offsets[c - 1], "offset %ld after %ld", log.offsets[c], log.offsets[c - 1]);
    /* [offset, n) was final when reported: set, and never changed after */
    for (int c = 0; c < log.calls; c++)
        for (long k = log.offsets[c]; k < n; k++) {
            ck_assert_msg(!isnan(log.snapshot[c][k]), "call %d (offset %ld): gradient %ld not yet written", c,
                          log.offsets[c], k);
            ck_assert_msg(memcmp(&log.snapshot[c][k], &grads[k], sizeof(float)) == 0,
                          "call %d (offset %ld): gradient %ld changed after it was reported final", c,
                          log.offsets[c], k);
        }
    /* and the first report came before the earlier layers were done, or
     * there would be nothing to overlap */
    ck_assert_msg(isnan(log.snapshot[0][0]), "the first layer's gradients were ready at the first report");
}
END_TEST

START_TEST(grad_ready_failure_stops_backward)
{
    fixture f;
    make_fixture(&f, RM_ACT_RELU, 0);
    float grads[256];
    static ready_log log;
    memset(&log, 0, sizeof log);
    log.fail_at_call = 1;
    log.n_params = f.shape.n_params;
    log.grads = grads;
    rm_mlp_cpu mlp;
    rm_error err;
    double loss;
    long correct;
    ck_assert_msg(rm_mlp_cpu_init(&mlp, &f.shape, BATCH, &err) == RM_OK, "%s", err.msg);
    rm_mlp_cpu_forward(&mlp, f.params, f.x, f.labels, BATCH, &loss, &correct);
    ck_assert_int_eq(rm_mlp_cpu_backward(&mlp, f.params, grads, f.labels, BATCH, 1.0f, 0, record_ready, &log, &err),
                     RM_ERR);
    rm_mlp_cpu_free(&mlp);
    ck_assert_int_eq(log.calls, 1); /* no call after the failed one */
    rmt_assert_contains(err.msg, "all-reduce refused at offset");
}
END_TEST

START_TEST(grad_scale_scales_the_gradient)
{
    fixture f;
    make_fixture(&f, RM_ACT_TANH, 0);
    float full[256], quarter[256];
    rm_mlp_cpu mlp;
    rm_error err;
    double loss;
    long correct;
    ck_assert_msg(rm_mlp_cpu_init(&mlp, &f.shape, BATCH, &err) == RM_OK, "%s", err.msg);
    rm_mlp_cpu_forward(&mlp, f.params, f.x, f.labels, BATCH, &loss, &correct);
    ck_assert(rm_mlp_cpu_backward(&mlp, f.params, full, f.labels, BATCH, 1.0f, 0, NULL, NULL, &err) == RM_OK);
    ck_assert(rm_mlp_cpu_backward(&mlp, f.params, quarter, f.labels, BATCH, 0.25f, 0, NULL, NULL, &err) == RM_OK);
    rm_mlp_cpu_free(&mlp);
    for (long k = 0; k < f.shape.n_params; k++)
        ck_assert_msg(fabsf(quarter[k] - 0.25f * full[k]) <= 1e-6f * (fabsf(full[k]) + 1e-3f),
                      "parameter %ld: %g with scale 0.25, %g with scale 1", k, (double)quarter[k], (double)full[k]);
}
END_TEST

START_TEST(init_params_are_deterministic_and_bounded)
{
    fixture f;
    make_fixture(&f, RM_ACT_RELU, 0);
    float a[256], b[256], c[256];
    rm_mlp_init_params(&f.shape, 17, a);
    rm_mlp_init_params(&f.shape, 17, b);
    rm_mlp_init_params(&f.shape, 18, c);
    ck_assert_mem_eq(a, b, (size_t)f.shape.n_params * sizeof(float));
    ck_assert_msg(memcmp(a, c, (size_t)f.shape.n_params * sizeof(float)) != 0, "seeds 17 and 18 agree");
    for (int l = 0; l < f.shape.n_layers; l++) {
        long in = f.shape.dims[l], out = f.shape.dims[l + 1];
        double bound = sqrt((l < f.shape.n_layers - 1 ? 6.0 : 3.0) / (double)in);
        for (long k = 0; k < in * out; k++)
            ck_assert_double_le(fabs((double)a[f.shape.weight_offset[l] + k]), bound);
        for (long o = 0; o < out; o++)
            ck_assert_float_eq(a[f.shape.bias_offset[l] + o], 0.0f);
    }
}
END_TEST

/* State for [lo, hi) of the 3 parameters. */
static void optimizer_for_range(rm_optimizer *opt, int kind, double weight_decay, long lo, long hi)
{
    rm_config cfg;
    rm_config_defaults(&cfg);
    cfg.optimizer = kind;
    cfg.momentum = 0.9;
    cfg.beta1 = 0.9;
    cfg.beta2 = 0.999;
    cfg.eps = 1e-8;
    cfg.weight_decay = weight_decay;
    rm_error err;
    rm_model flat;
    ck_assert_msg(rm_model_init_flat(&flat, 3, 1, &err) == RM_OK, "%s", err.msg);
    ck_assert_msg(rm_optimizer_init_range(opt, &cfg, &flat, lo, hi, &err) == RM_OK, "%s", err.msg);
    rm_model_free(&flat);
}

static void optimizer_for(rm_optimizer *opt, int kind, double weight_decay)
{
    optimizer_for_range(opt, kind, weight_decay, 0, 3);
}

static const float w0[3] = {1.0f, -2.0f, 0.5f};
static const float g1[3] = {0.1f, 0.2f, -0.3f};
static const float g2[3] = {-0.2f, 0.0f, 0.4f};

START_TEST(sgd_momentum_steps_match_hand_values)
{
    /* lr 0.1, momentum 0.9, L2 weight decay 0.01: g' = g + 0.01 w,
     * v = 0.9 v + g', w -= 0.1 v.
     * step 1: g' = (0.11, 0.18, -0.295) = v; w = (0.989, -2.018, 0.5295)
     * step 2: g' = (-0.2 + 0.00989, -0.02018, 0.4 + 0.005295)
     *         v  = (0.099 - 0.19011, 0.162 - 0.02018, -0.2655 + 0.405295)
     *            = (-0.09111, 0.14182, 0.139795)
     *         w  = (0.998111, -2.032182, 0.5155205) */
    rm_optimizer opt;
    optimizer_for(&opt, RM_OPT_SGD, 0.01);
    float w[3];
    memcpy(w, w0, sizeof w);
    rm_optimizer_step(&opt, w, g1, 0.1, 0, 3);
    ck_assert_float_eq_tol(w[0], 0.989f, 1e-6f);
    ck_assert_float_eq_tol(w[1], -2.018f, 1e-6f);
    ck_assert_float_eq_tol(w[2], 0.5295f, 1e-6f);
    rm_optimizer_step(&opt, w, g2, 0.1, 0, 3);
    ck_assert_float_eq_tol(w[0], 0.998111f, 1e-6f);
    ck_assert_float_eq_tol(w[1], -2.032182f, 1e-6f);
    ck_assert_float_eq_tol(w[2], 0.5155205f, 1e-6f);
    rm_optimizer_free(&opt);
}
END_TEST

START_TEST(adamw_steps_match_hand_values)
{
    /* lr 0.01, betas (0.9, 0.999), eps 1e-8, decoupled weight decay 0.1:
     * w -= lr * (m_hat / (sqrt(v_hat) + eps) + 0.1 w).
     * step 1: m_hat = g, sqrt(v_hat) = |g|, so the update is sign(g):
     *         w = (1 - 0.01 * 1.1, -2 - 0.01 * 0.8, 0.5 - 0.01 * (-0.95))
     *           = (0.989, -2.008, 0.5095)   (eps moves the 7th digit)
     * step 2: m = 0.9 m + 0.1 g2 = (-0.011, 0.018, 0.013)
     *         v = 0.999 v + 0.001 g2^2 = (4.999e-5, 3.996e-5, 2.4991e-4)
     *         m_hat = m / 0.19, v_hat = v / 0.001999
     *         element 0: -0.0578947 / 0.1581376 = -0.3661018;
     *                    w = 0.989 - 0.01 * (-0.3661018 + 0.0989) = 0.9916720
     *         likewise w = (0.9916720, -2.0126926, 0.5070554) */
    rm_optimizer opt;
    optimizer_for(&opt, RM_OPT_ADAMW, 0.1);
    float w[3];
    memcpy(w, w0, sizeof w);
    rm_optimizer_step(&opt, w, g1, 0.01, 0, 3);
    ck_assert_float_eq_tol(w[0], 0.989f, 2e-6f);
    ck_assert_float_eq_tol(w[1], -2.008f, 2e-6f);
    ck_assert_float_eq_tol(w[2], 0.5095f, 2e-6f);
    rm_optimizer_step(&opt, w, g2, 0.01, 0, 3);
    ck_assert_float_eq_tol(w[0], 0.9916720f, 2e-6f);
    ck_assert_float_eq_tol(w[1], -2.0126926f, 2e-6f);
    ck_assert_float_eq_tol(w[2], 0.5070554f, 2e-6f);
    ck_assert_int_eq(opt.t, 2);
    rm_optimizer_free(&opt);
}
END_TEST

/* Workers that each own a slice of the parameters update only that slice,
 * with their own optimizer object holding state for that slice only (ZeRO-1,
 * the shared-memory reduction); put together, the slices must be the
 * bits a whole update gives. The fused snapshot must copy exactly the
 * updated state of its range. _i: 0 SGD, 1 AdamW. */
START_TEST(sliced_updates_equal_the_whole_update)
{
    int kind = _i == 0 ? RM_OPT_SGD : RM_OPT_ADAMW;
    rm_optimizer whole, left, right;
    optimizer_for(&whole, kind, 0.05);
    optimizer_for_range(&left, kind, 0.05, 0, 1);
    optimizer_for_range(&right, kind, 0.05, 1, 3);
    size_t moments = kind == RM_OPT_ADAMW ? 2 : 1;
    ck_assert_uint_eq(whole.state_bytes, 3 * moments * sizeof(float));
    ck_assert_uint_eq(left.state_bytes, 1 * moments * sizeof(float));
    ck_assert_uint_eq(right.state_bytes, 2 * moments * sizeof(float));
    float w_whole[3], w_sliced[3], snap[3][3] = {{0}};
    float *dst[3] = {snap[0], snap[1], snap[2]};
    memcpy(w_whole, w0, sizeof w_whole);
    memcpy(w_sliced, w0, sizeof w_sliced);
    for (int step = 0; step < 3; step++) {
        const float *g = step % 2 ? g2 : g1;
        rm_optimizer_step(&whole, w_whole, g, 0.02, 0, 3);
        rm_optimizer_step(&left, w_sliced, g, 0.02, 0, 1);
        rm_optimizer_step_snapshot(&right, w_sliced, g, 0.02, 1, 3, 2, 3, dst);
    }
    ck_assert_mem_eq(w_whole, w_sliced, sizeof w_whole);
    ck_assert_int_eq(left.t, 3);
    ck_assert_int_eq(right.t, 3);
    /* the snapshot holds element 2 of params, m (and v) after the last step */
    ck_assert_mem_eq(&snap[0][0], &w_whole[2], sizeof(float));
    ck_assert_mem_eq(&snap[1][0], &whole.m[2], sizeof(float));
    ck_assert_mem_eq(&right.m[1], &whole.m[2], sizeof(float)); /* the slice's state starts at its lo */
    ck_assert_mem_eq(&left.m[0], &whole.m[0], sizeof(float));
    if (kind == RM_OPT_ADAMW)
        ck_assert_mem_eq(&snap[2][0], &whole.v[2], sizeof(float));
    rm_optimizer_free(&whole);
    rm_optimizer_free(&left);
    rm_optimizer_free(&right);
}
END_TEST

static Suite *mlp_suite(void)
{
    Suite *s = suite_create("mlp_grad");
    TCase *tc = tcase_create("gradients");
    tcase_set_timeout(tc, 30);
    tcase_add_loop_test(tc, gradients_match_double_finite_differences, 0, 2);
    tcase_add_loop_test(tc, gradients_match_float_finite_differences, 0, 2);
    tcase_add_test(tc, grad_ready_reports_final_regions_from_the_end);
    tcase_add_test(tc, grad_ready_failure_stops_backward);
    tcase_add_test(tc, grad_scale_scales_the_gradient);
    tcase_add_test(tc, init_params_are_deterministic_and_bounded);
    suite_add_tcase(s, tc);

    TCase *tc_opt = tcase_create("optimizer");
    tcase_set_timeout(tc_opt, 10);
    tcase_add_test(tc_opt, sgd_momentum_steps_match_hand_values);
    tcase_add_test(tc_opt, adamw_steps_match_hand_values);
    tcase_add_loop_test(tc_opt, sliced_updates_equal_the_whole_update, 0, 2);
    suite_add_tcase(s, tc_opt);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(mlp_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
