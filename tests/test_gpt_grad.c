/* The GPT-2 layout and the CPU GPT's gradients.
 *
 * The reference is an independent double-precision forward pass written
 * from the documented layout (gpt_layout.h) and architecture (gpt_cpu.h).
 * Central differences of it are accurate to ~1e-9, so every parameter's
 * float gradient (wte with its tied classifier use, wpe, every block
 * tensor, lnf; SAMPLES elements of each) is held to float accuracy. The
 * model is tiny (2 layers, 2 heads, dim 24, context 18, vocabulary 37
 * padded to 64) and its weights large enough that every tensor matters;
 * the product runs with its default attention tiling (one tile) and with
 * 4-row tiles, so the causal tiling (several tiles, a partial last one) is
 * what gets differentiated. */
#include "config.h"
#include "gpt_cpu.h"
#include "gpt_layout.h"
#include "gpt_memory.h"
#include "test_util.h"

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* dim, context and vocabulary past 16 (LANES in gpt_cpu.c) and not
 * multiples of it, so the vectorized reductions' main and tail loops both
 * run. */
#define LAYERS 2
#define HEADS 2
#define DIM 24
#define CONTEXT 18
#define VOCAB 37
#define BATCH 2
/* Elements checked per tensor, spread over it (all of a smaller one). */
#define SAMPLES 32

/* One tensor of the layout, named as in the failure messages. */
typedef struct tensor {
    char name[32];
    long offset, numel;
} tensor;

/* The layout's tensors in buffer order; returns how many. */
static int list_tensors(const rm_gpt_layout *g, tensor *t)
{
    long C = g->dim;
    int n = 0;
#define ADD(nm, off, count)                                                                                         \
    do {                                                                                                            \
        snprintf(t[n].name, sizeof t[n].name, "%s", nm);                                                            \
        t[n].offset = (off);                                                                                        \
        t[n].numel = (count);                                                                                       \
        n++;                                                                                                        \
    } while (0)
    ADD("wte", g->wte, g->padded_vocab * C);
    ADD("wpe", g->wpe, g->context * C);
    for (int l = 0; l < g->layers; l++) {
        const rm_gpt_block_offsets *b = &g->block[l];
        const struct {
            const char *nm;
            long off, count;
        } parts[12] = {{"ln1_w", b->ln1_w, C},           {"ln1_b", b->ln1_b, C},
                       {"qkv_w", b->qkv_w, 3 * C * C},   {"qkv_b", b->qkv_b, 3 * C},
                       {"proj_w", b->proj_w, C * C},     {"proj_b", b->proj_b, C},
                       {"ln2_w", b->ln2_w, C},           {"ln2_b", b->ln2_b, C},
                       {"fc_w", b->fc_w, 4 * C * C},     {"fc_b", b->fc_b, 4 * C},
                       {"fcproj_w", b->fcproj_w, 4 * C * C}, {"fcproj_b", b->fcproj_b, C}};
        for (int k = 0; k < 12; k++) {
            char nm[32];
            snprintf(nm, sizeof nm, "h%d.%s", l, parts[k].nm);
            ADD(nm, parts[k].off, parts[k].count);
        }
    }
    ADD("lnf_w", g->lnf_w, C);
    ADD("lnf_b", g->lnf_b, C);
#undef ADD
    return n;
}

/* Reference */

#define MAXT CONTEXT
#define MAXC DIM

static void ref_layernorm(double out[MAXT][MAXC], double x[MAXT][MAXC], const double *w, const double *b, long T,
                          long C)
{
    for (long t = 0; t < T; t++) {
        double mean = 0, var = 0;
        for (long i = 0; i < C; i++)
            mean += x[t][i];
        mean /= (double)C;
        for (long i = 0; i < C; i++)
            var += (x[t][i] - mean) * (x[t][i] - mean);
        var /= (double)C;
        for (long i = 0; i < C; i++)
            out[t][i] = (x[t][i] - mean) / sqrt(var + 1e-5) * w[i] + b[i];
    }
}

/* y[t][o] = b[o] + sum_i x[t][i] w[o][i] (+ y when add), x of width in. */
static void ref_linear(double *y, long y_stride, const double *x, long x_stride, const double *w, const double *b,
                       long T, long in, long out, int add)
{
    for (long t = 0; t < T; t++)
        for (long o = 0; o < out; o++) {
            double s = b[o];
            for (long i = 0; i < in; i++)
                s += x[t * x_stride + i] * w[o * in + i];
            y[t * y_stride + o] = add ? y[t * y_stride + o] + s : s;
        }
}

/* Summed next-token cross-entropy of n sequences; logits (n x T x vocab)
 * written when not NULL. */
static double ref_loss(const rm_gpt_layout *g, const double *p, const int32_t *in, const int32_t *tg, long n,
                       double *logits)
{
    long T = g->context, C = g->dim, V = g->vocab, hs = C / g->heads;
    double loss = 0;
    for (long s = 0; s < n; s++) {
        double x[MAXT][MAXC], h[MAXT][MAXC], y[MAXT][MAXC], qkv[MAXT][3 * MAXC], f[MAXT][4 * MAXC];
        for (long t = 0; t < T; t++)
            for (long i = 0; i < C; i++)
                x[t][i] = p[g->wte + in[s * T + t] * C + i] + p[g->wpe + t * C + i];
        for (int l = 0; l < g->layers; l++) {
            const rm_gpt_block_offsets *o = &g->block[l];
            ref_layernorm(h, x, p + o->ln1_w, p + o->ln1_b, T, C);
            ref_linear(&qkv[0][0], 3 * MAXC, &h[0][0], MAXC, p + o->qkv_w, p + o->qkv_b, T, C, 3 * C, 0);
            for (long hd = 0; hd < g->heads; hd++)
                for (long t = 0; t < T; t++) {
                    double sc[MAXT], mx = -INFINITY, sum = 0;
                    for (long u = 0; u <= t; u++) {
                        sc[u] = 0;
                        for (long d = 0; d < hs; d++)
                            sc[u] += qkv[t][hd * hs + d] * qkv[u][C + hd * hs + d];
                        sc[u] /= sqrt((double)hs);
                        mx = fmax(mx, sc[u]);
                    }
                    for (long u = 0; u <= t; u++)
                        sum += (sc[u] = exp(sc[u] - mx));
                    for (long d = 0; d < hs; d++) {
                        double acc = 0;
                        for (long u = 0; u <= t; u++)
                            acc += sc[u] / sum * qkv[u][2 * C + hd * hs + d];
                        y[t][hd * hs + d] = acc;
                    }
                }
            ref_linear(&x[0][0], MAXC, &y[0][0], MAXC, p + o->proj_w, p + o->proj_b, T, C, C, 1);
            ref_layernorm(h, x, p + o->ln2_w, p + o->ln2_b, T, C);
            ref_linear(&f[0][0], 4 * MAXC, &h[0][0], MAXC, p + o->fc_w, p + o->fc_b, T, C, 4 * C, 0);
            for (long t = 0; t < T; t++)
                for (long j = 0; j < 4 * C; j++) {
                    double v = f[t][j];
                    f[t][j] = 0.5 * v * (1 + tanh(sqrt(2 / M_PI) * (v + 0.044715 * v * v * v)));
                }
            ref_linear(&x[0][0], MAXC, &f[0][0], 4 * MAXC, p + o->fcproj_w, p + o->fcproj_b, T, 4 * C, C, 1);
        }
        ref_layernorm(h, x, p + g->lnf_w, p + g->lnf_b, T, C);
        for (long t = 0; t < T; t++) {
            double lg[VOCAB], mx = -INFINITY, sum = 0;
            for (long v = 0; v < V; v++) {
                lg[v] = 0;
                for (long i = 0; i < C; i++)
                    lg[v] += h[t][i] * p[g->wte + v * C + i];
                mx = fmax(mx, lg[v]);
                if (logits)
                    logits[(s * T + t) * V + v] = lg[v];
            }
            for (long v = 0; v < V; v++)
                sum += exp(lg[v] - mx);
            loss += log(sum) + mx - lg[tg[s * T + t]];
        }
    }
    return loss;
}

/* Fixture */

typedef struct fixture {
    rm_gpt_layout g;
    float *params;
    int32_t in[BATCH * CONTEXT], tg[BATCH * CONTEXT];
} fixture;

/* Weights of every kind well away from their initial values (LayerNorm
 * weights near 1, biases non-zero, matrices wide enough that attention is
 * not uniform), and wte's padding rows filled: they must not count. */
static void make_fixture(fixture *f)
{
    rm_error err;
    ck_assert_msg(rm_gpt_layout_init(&f->g, LAYERS, HEADS, DIM, CONTEXT, VOCAB, &err) == RM_OK, "%s", err.msg);
    f->params = malloc((size_t)f->g.n_params * sizeof(float));
    ck_assert_ptr_nonnull(f->params);
    tensor t[4 + 12 * LAYERS];
    int nt = list_tensors(&f->g, t);
    for (int k = 0; k < nt; k++) {
        int ln_weight = strstr(t[k].name, "ln") && strstr(t[k].name, "_w");
        int matrix = t[k].numel > 4 * DIM;
        for (long i = 0; i < t[k].numel; i++) {
            double u = rmt_uniform(7, (uint64_t)(t[k].offset + i));
            f->params[t[k].offset + i] = (float)(ln_weight ? 1.0 + 0.3 * u : matrix ? 0.5 * u : 0.2 * u);
        }
    }
    for (long i = 0; i < BATCH * CONTEXT; i++) {
        f->in[i] = (int32_t)((i * 7 + 3) % VOCAB);
        f->tg[i] = (int32_t)((i * 5 + 1) % VOCAB);
    }
}

static void free_fixture(fixture *f)
{
    free(f->params);
}

static void start_recomputing(rm_gpt_cpu *m, const fixture *f, long att_block, int recompute)
{
    rm_error err;
    ck_assert_msg(rm_gpt_cpu_init(m, &f->g, BATCH, 1, recompute, &err) == RM_OK, "%s", err.msg);
    if (att_block > 0)
        m->att_block = att_block;
}

static void start(rm_gpt_cpu *m, const fixture *f, long att_block)
{
    start_recomputing(m, f, att_block, RM_RECOMPUTE_NONE);
}

/* forward + backward with grad_scale 1 into grads (written). */
static double product_gradients(rm_gpt_cpu *m, const fixture *f, float *grads)
{
    rm_error err;
    double loss;
    ck_assert_msg(rm_gpt_cpu_forward(m, f->params, f->in, f->tg, BATCH, &loss, &err) == RM_OK, "%s", err.msg);
    ck_assert_msg(rm_gpt_cpu_backward(m, f->params, grads, 1.0f, 0, NULL, NULL, &err) == RM_OK, "%s", err.msg);
    return loss;
}

/* _i: 0 = the default attention tiling, 1 = 4-row tiles */
START_TEST(every_tensor_matches_double_finite_differences)
{
    fixture f;
    make_fixture(&f);
    long np = f.g.n_params;
    rm_gpt_cpu m;
    start(&m, &f, _i == 0 ? 0 : 4);
    float *grads = malloc((size_t)np * sizeof(float));
    for (long k = 0; k < np; k++)
        grads[k] = NAN; /* accumulate 0 must write every element */
    double loss = product_gradients(&m, &f, grads);

    double *p = malloc((size_t)np * sizeof(double));
    for (long k = 0; k < np; k++)
        p[k] = f.params[k];
    /* the product's forward computes the reference's function */
    double ref_logits[BATCH * CONTEXT * VOCAB];
    double ref = ref_loss(&f.g, p, f.in, f.tg, BATCH, ref_logits);
    ck_assert_msg(fabs(loss - ref) <= 1e-5 * fabs(ref), "loss %.9g, reference %.9g", loss, ref);
    ck_assert_msg(loss > 5.0, "loss %g: the fixture is too easy to test anything", loss);

    tensor t[4 + 12 * LAYERS];
    int nt = list_tensors(&f.g, t);
    const double h = 1e-5;
    for (int k = 0; k < nt; k++) {
        long live = k == 0 ? f.g.vocab * f.g.dim : t[k].numel; /* wte's padding rows: checked below */
        long count = live < SAMPLES ? live : SAMPLES;
        long idx[SAMPLES];
        double fd[SAMPLES], largest = 0, worst = 0;
        long worst_j = 0, nonzero = 0;
        for (long j = 0; j < count; j++) {
            idx[j] = j * live / count + (long)((rmt_uniform(11, (uint64_t)j) + 1) / 2 * (double)(live / count));
            long at = t[k].offset + idx[j];
            double keep = p[at];
            p[at] = keep + h;
            double up = ref_loss(&f.g, p, f.in, f.tg, BATCH, NULL);
            p[at] = keep - h;
            double down = ref_loss(&f.g, p, f.in, f.tg, BATCH, NULL);
            p[at] = keep;
            fd[j] = (up - down) / (2 * h);
            largest = fmax(largest, fabs(fd[j]));
            nonzero += fabs(fd[j]) > 1e-6;
        }
        /* float accuracy: relative to the element, or to the tensor's
         * scale for elements near 0 */
        for (long j = 0; j < count; j++) {
            double e = fabs((double)grads[t[k].offset + idx[j]] - fd[j]) / (fabs(fd[j]) + 0.1 * largest);
            if (!(e <= worst)) {
                worst = e;
                worst_j = j;
            }
        }
        ck_assert_msg(worst < 1e-4, "%s: gradient off by %.3g (relative) at element %ld: %.9g, finite differences %.9g",
                      t[k].name, worst, idx[worst_j], (double)grads[t[k].offset + idx[worst_j]], fd[worst_j]);
        /* a gradient that is zero everywhere would also "match" a flat loss
         * (k's bias alone has none: softmax ignores a shift common to a row) */
        ck_assert_msg(nonzero > count / 2 && largest > 0.1, "%s: only %ld of %ld gradients are non-zero (largest %g)",
                      t[k].name, nonzero, count, largest);
    }
    for (long i = f.g.vocab * f.g.dim; i < f.g.padded_vocab * f.g.dim; i++)
        ck_assert_msg(grads[f.g.wte + i] == 0.0f, "wte padding element %ld has gradient %g", i,
                      (double)grads[f.g.wte + i]);

    /* logits: the reference's on the real vocabulary, 0 on the padding */
    const float *logits = rm_gpt_cpu_logits(&m);
    ck_assert_msg(rm_gpt_cpu_forward(&m, f.params, f.in, f.tg, BATCH, &loss, &(rm_error){.errnum = 0}) == RM_OK, "forward");
    for (long r = 0; r < BATCH * CONTEXT; r++)
        for (long v = 0; v < f.g.padded_vocab; v++) {
            double want = v < VOCAB ? ref_logits[r * VOCAB + v] : 0.0;
            ck_assert_msg(fabs(logits[r * f.g.padded_vocab + v] - want) <= 1e-5 * (1 + fabs(want)),
                          "logit %ld of position %ld: %.9g, reference %.9g", v, r,
                          (double)logits[r * f.g.padded_vocab + v], want);
        }
    rm_gpt_cpu_free(&m);
    free(p);
    free(grads);
    free_fixture(&f);
}
END_TEST

/* accumulate 1 adds to what grads holds, and grad_scale scales */
START_TEST(accumulate_adds_and_grad_scale_scales)
{
    fixture f;
    make_fixture(&f);
    long np = f.g.n_params;
    rm_gpt_cpu m;
    start(&m, &f, 4);
    rm_error err;
    double loss;
    float *once = malloc((size_t)np * sizeof(float)), *sum = malloc((size_t)np * sizeof(float));
    float *held = malloc((size_t)np * sizeof(float)), *quarter = malloc((size_t)np * sizeof(float));
    product_gradients(&m, &f, once);
    for (long k = 0; k < np; k++)
        sum[k] = held[k] = (float)rmt_uniform(3, (uint64_t)k);
    ck_assert(rm_gpt_cpu_forward(&m, f.params, f.in, f.tg, BATCH, &loss, &err) == RM_OK);
    ck_assert_msg(rm_gpt_cpu_backward(&m, f.params, sum, 1.0f, 1, NULL, NULL, &err) == RM_OK, "%s", err.msg);
    ck_assert(rm_gpt_cpu_forward(&m, f.params, f.in, f.tg, BATCH, &loss, &err) == RM_OK);
    ck_assert_msg(rm_gpt_cpu_backward(&m, f.params, quarter, 0.25f, 0, NULL, NULL, &err) == RM_OK, "%s", err.msg);
    for (long k = 0; k < np; k++) {
        /* the same float gradient added once; wte and the vectors summed
         * over positions add their terms onto the held value one by one,
         * so the rounding differs by a few ulps */
        float want = held[k] + once[k];
        ck_assert_msg(fabsf(sum[k] - want) <= 1e-6f * (fabsf(held[k]) + fabsf(once[k])),
                      "parameter %ld: %.9g after accumulating, %.9g + %.9g expected", k, (double)sum[k],
                      (double)held[k], (double)once[k]);
        ck_assert_msg(fabsf(quarter[k] - 0.25f * once[k]) <= 1e-6f * fabsf(once[k]) + 1e-9f,
                      "parameter %ld: %.9g with scale 0.25, %.9g with scale 1", k, (double)quarter[k],
                      (double)once[k]);
    }
    for (long i = f.g.vocab * f.g.dim; i < f.g.padded_vocab * f.g.dim; i++)
        ck_assert_float_eq(sum[f.g.wte + i], held[f.g.wte + i]);
    rm_gpt_cpu_free(&m);
    free(once);
    free(sum);
    free(held);
    free(quarter);
    free_fixture(&f);
}
END_TEST

typedef struct ready_log {
    int calls, fail_at_call;
    long offsets[64];
    long n_params;
    const float *grads, *final; /* the buffer backward writes, and its final contents */
    int mismatch_call;
    long mismatch_at;
} ready_log;

/* Records the offset, and checks that [offset, n_params) already holds its
 * final values. */
static int record_ready(void *ctx, long offset, rm_error *err)
{
    ready_log *log = ctx;
    log->offsets[log->calls++] = offset;
    for (long k = offset; k < log->n_params && log->mismatch_at < 0; k++)
        if (memcmp(&log->grads[k], &log->final[k], sizeof(float)) != 0) {
            log->mismatch_call = log->calls;
            log->mismatch_at = k;
        }
    if (log->calls == log->fail_at_call)
        return rm_fail(err, "all-reduce refused at offset %ld", offset);
    return RM_OK;
}

START_TEST(grad_ready_reports_final_regions_from_the_end)
{
    fixture f;
    make_fixture(&f);
    long np = f.g.n_params;
    rm_gpt_cpu m;
    start(&m, &f, 0);
    rm_error err;
    double loss;
    float *final = malloc((size_t)np * sizeof(float)), *grads = malloc((size_t)np * sizeof(float));
    product_gradients(&m, &f, final);
    for (long k = 0; k < np; k++)
        grads[k] = NAN;
    static ready_log log;
    memset(&log, 0, sizeof log);
    log.n_params = np;
    log.grads = grads;
    log.final = final;
    log.mismatch_at = -1;
    ck_assert(rm_gpt_cpu_forward(&m, f.params, f.in, f.tg, BATCH, &loss, &err) == RM_OK);
    ck_assert_msg(rm_gpt_cpu_backward(&m, f.params, grads, 1.0f, 0, record_ready, &log, &err) == RM_OK, "%s",
                  err.msg);
    ck_assert_msg(log.mismatch_at < 0, "call %d: element %ld was not final yet", log.mismatch_call, log.mismatch_at);
    /* lnf, then each block from the last, then everything */
    ck_assert_int_eq(log.calls, LAYERS + 2);
    ck_assert_int_eq(log.offsets[0], f.g.lnf_w);
    for (int l = LAYERS - 1, c = 1; l >= 0; l--, c++)
        ck_assert_int_eq(log.offsets[c], f.g.block[l].ln1_w);
    ck_assert_int_eq(log.offsets[LAYERS + 1], 0);

    /* a refusal ends backward with its message, and no call follows */
    memset(&log, 0, sizeof log);
    log.n_params = np;
    log.grads = log.final = grads;
    log.mismatch_at = -1;
    log.fail_at_call = 2;
    ck_assert(rm_gpt_cpu_forward(&m, f.params, f.in, f.tg, BATCH, &loss, &err) == RM_OK);
    ck_assert_int_eq(rm_gpt_cpu_backward(&m, f.params, grads, 1.0f, 0, record_ready, &log, &err), RM_ERR);
    ck_assert_int_eq(log.calls, 2);
    rmt_assert_contains(err.msg, "all-reduce refused at offset");
    rm_gpt_cpu_free(&m);
    free(final);
    free(grads);
    free_fixture(&f);
}
END_TEST

START_TEST(bad_tokens_and_batches_are_refused)
{
    fixture f;
    make_fixture(&f);
    rm_gpt_cpu m;
    start(&m, &f, 0);
    rm_error err;
    double loss;
    float *grads = malloc((size_t)f.g.n_params * sizeof(float));
    ck_assert_int_eq(rm_gpt_cpu_backward(&m, f.params, grads, 1.0f, 0, NULL, NULL, &err), RM_ERR);
    rmt_assert_contains(err.msg, "backward without a forward");

    f.in[20] = VOCAB;
    ck_assert_int_eq(rm_gpt_cpu_forward(&m, f.params, f.in, f.tg, BATCH, &loss, &err), RM_ERR);
    rmt_assert_contains(err.msg, "input token 37 at sequence 1, position 2 is outside the vocabulary [0, 37)");
    f.in[20] = 0;
    f.tg[35] = -1;
    ck_assert_int_eq(rm_gpt_cpu_forward(&m, f.params, f.in, f.tg, BATCH, &loss, &err), RM_ERR);
    rmt_assert_contains(err.msg, "target token -1 at sequence 1, position 17");
    f.tg[35] = 0;
    ck_assert_int_eq(rm_gpt_cpu_forward(&m, f.params, f.in, f.tg, BATCH + 1, &loss, &err), RM_ERR);
    rmt_assert_contains(err.msg, "forward on 3 sequences");
    /* a refused forward leaves nothing to differentiate */
    ck_assert_int_eq(rm_gpt_cpu_backward(&m, f.params, grads, 1.0f, 0, NULL, NULL, &err), RM_ERR);

    /* one backward per forward: the first turns the logits into their gradient */
    ck_assert(rm_gpt_cpu_forward(&m, f.params, f.in, f.tg, 1, &loss, &err) == RM_OK);
    ck_assert(rm_gpt_cpu_backward(&m, f.params, grads, 1.0f, 0, NULL, NULL, &err) == RM_OK);
    ck_assert_int_eq(rm_gpt_cpu_backward(&m, f.params, grads, 1.0f, 0, NULL, NULL, &err), RM_ERR);
    rm_gpt_cpu_free(&m);
    free(grads);
    free_fixture(&f);
}
END_TEST

/* Layout */

START_TEST(layout_pads_the_vocabulary_and_packs_the_tensors)
{
    rm_gpt_layout g;
    rm_error err;
    const long vocab[][2] = {{2, 64}, {11, 64}, {64, 64}, {65, 128}, {257, 320}, {50257, 50304}};
    for (size_t i = 0; i < sizeof vocab / sizeof vocab[0]; i++) {
        ck_assert_msg(rm_gpt_layout_init(&g, 1, 1, 4, 4, vocab[i][0], &err) == RM_OK, "%s", err.msg);
        ck_assert_int_eq(g.padded_vocab, vocab[i][1]);
    }

    ck_assert_msg(rm_gpt_layout_init(&g, 3, 4, 32, 16, 70, &err) == RM_OK, "%s", err.msg);
    long C = 32;
    ck_assert_int_eq(g.n_params, 128 * C + 16 * C + 3 * (12 * C * C + 13 * C) + 2 * C);
    tensor t[4 + 12 * 3];
    int nt = list_tensors(&g, t);
    long at = 0;
    for (int k = 0; k < nt; k++) {
        ck_assert_msg(t[k].offset == at, "%s starts at %ld, expected %ld", t[k].name, t[k].offset, at);
        at += t[k].numel;
    }
    ck_assert_int_eq(at, g.n_params);

    /* GPT-2 small: 124,475,904 parameters with the padded vocabulary;
     * 6 N + 6 L C T with N excluding wpe and the padding rows. */
    ck_assert_msg(rm_gpt_layout_init(&g, 12, 12, 768, 1024, 50257, &err) == RM_OK, "%s", err.msg);
    ck_assert_int_eq(g.n_params, 124475904);
    double n = 124475904.0 - 1024.0 * 768 - 47.0 * 768;
    ck_assert_double_eq_tol(rm_gpt_layout_train_flops_per_token(&g), 6 * n + 6.0 * 12 * 768 * 1024, 1.0);
}
END_TEST

START_TEST(layout_refuses_bad_shapes_by_name)
{
    rm_gpt_layout g;
    rm_error err;
    ck_assert_int_eq(rm_gpt_layout_init(&g, 2, 3, 8, 5, 11, &err), RM_ERR);
    rmt_assert_contains(err.msg, "dim 8 is not divisible by heads 3");
    ck_assert_int_eq(rm_gpt_layout_init(&g, 0, 1, 8, 5, 11, &err), RM_ERR);
    rmt_assert_contains(err.msg, "layers must be 1..128, got 0");
    ck_assert_int_eq(rm_gpt_layout_init(&g, 129, 1, 8, 5, 11, &err), RM_ERR);
    rmt_assert_contains(err.msg, "got 129");
    ck_assert_int_eq(rm_gpt_layout_init(&g, 1, 0, 8, 5, 11, &err), RM_ERR);
    rmt_assert_contains(err.msg, "heads must be at least 1, got 0");
    ck_assert_int_eq(rm_gpt_layout_init(&g, 1, 1, 8, 0, 11, &err), RM_ERR);
    rmt_assert_contains(err.msg, "context must be 1..");
    ck_assert_int_eq(rm_gpt_layout_init(&g, 1, 1, 8, 5, 1, &err), RM_ERR);
    rmt_assert_contains(err.msg, "vocabulary must be 2..");
    ck_assert_int_eq(rm_gpt_layout_init(&g, 1, 1, 0, 5, 11, &err), RM_ERR);
    rmt_assert_contains(err.msg, "dim must be 1..");
}
END_TEST

/* Initialisation */

static void moments(const float *w, long n, double *mean, double *std)
{
    double s = 0, s2 = 0;
    for (long i = 0; i < n; i++) {
        s += w[i];
        s2 += (double)w[i] * w[i];
    }
    *mean = s / (double)n;
    *std = sqrt(s2 / (double)n - *mean * *mean);
}

START_TEST(init_params_are_gpt2s_and_deterministic)
{
    rm_gpt_layout g;
    rm_error err;
    ck_assert_msg(rm_gpt_layout_init(&g, 2, 4, 64, 32, 300, &err) == RM_OK, "%s", err.msg);
    size_t bytes = (size_t)g.n_params * sizeof(float);
    float *a = malloc(bytes), *b = malloc(bytes), *c = malloc(bytes);
    memset(a, 0x7f, bytes);
    rm_gpt_init_params(&g, 17, a);
    rm_gpt_init_params(&g, 17, b);
    rm_gpt_init_params(&g, 18, c);
    ck_assert_mem_eq(a, b, bytes);
    ck_assert_msg(memcmp(a, c, bytes) != 0, "seeds 17 and 18 agree");
    long C = g.dim;
    struct {
        const char *name;
        long offset, n;
        double std;
    } normal[] = {{"wte", g.wte, g.vocab * C, 0.02},
                  {"wpe", g.wpe, g.context * C, 0.02},
                  {"h1.qkv_w", g.block[1].qkv_w, 3 * C * C, 0.02},
                  {"h1.fc_w", g.block[1].fc_w, 4 * C * C, 0.02},
                  {"h0.proj_w", g.block[0].proj_w, C * C, 0.01},      /* 0.02 / sqrt(2 x 2 layers) */
                  {"h1.fcproj_w", g.block[1].fcproj_w, 4 * C * C, 0.01}};
    for (size_t k = 0; k < sizeof normal / sizeof normal[0]; k++) {
        double mean, std;
        moments(a + normal[k].offset, normal[k].n, &mean, &std);
        ck_assert_msg(fabs(std / normal[k].std - 1) < 0.05 && fabs(mean) < 4 * normal[k].std / sqrt(normal[k].n),
                      "%s: mean %g, std %g; expected 0, %g", normal[k].name, mean, std, normal[k].std);
    }
    /* distinct streams: no two tensors share values */
    ck_assert_msg(memcmp(a + g.block[0].qkv_w, a + g.block[1].qkv_w, (size_t)(C * C) * sizeof(float)) != 0,
                  "blocks 0 and 1 start alike");
    for (long i = g.vocab * C; i < g.padded_vocab * C; i++)
        ck_assert_float_eq(a[g.wte + i], 0.0f);
    for (int l = 0; l < g.layers; l++) {
        const rm_gpt_block_offsets *o = &g.block[l];
        for (long i = 0; i < C; i++) {
            ck_assert_float_eq(a[o->ln1_w + i], 1.0f);
            ck_assert_float_eq(a[o->ln2_w + i], 1.0f);
            ck_assert_float_eq(a[o->ln1_b + i], 0.0f);
            ck_assert_float_eq(a[o->ln2_b + i], 0.0f);
            ck_assert_float_eq(a[o->proj_b + i], 0.0f);
            ck_assert_float_eq(a[o->fcproj_b + i], 0.0f);
        }
        for (long i = 0; i < 3 * C; i++)
            ck_assert_float_eq(a[o->qkv_b + i], 0.0f);
        for (long i = 0; i < 4 * C; i++)
            ck_assert_float_eq(a[o->fc_b + i], 0.0f);
    }
    for (long i = 0; i < C; i++) {
        ck_assert_float_eq(a[g.lnf_w + i], 1.0f);
        ck_assert_float_eq(a[g.lnf_b + i], 0.0f);
    }
    free(a);
    free(b);
    free(c);
}
END_TEST

/* train.recompute 1 and 2 give the loss and every gradient bit of 0, with
 * less memory each: what backward recomputes is what forward computed. Two
 * batches, the second accumulated, so a recomputed buffer left holding
 * another layer's or batch's values shows. */
START_TEST(recompute_keeps_less_and_gives_the_same_bits)
{
    fixture f;
    make_fixture(&f);
    long np = f.g.n_params;
    float *want = malloc((size_t)np * sizeof(float)), *got = malloc((size_t)np * sizeof(float));
    int32_t in2[BATCH * CONTEXT], tg2[BATCH * CONTEXT];
    for (long i = 0; i < BATCH * CONTEXT; i++) {
        in2[i] = (int32_t)((i * 11 + 2) % VOCAB);
        tg2[i] = (int32_t)((i * 3 + 5) % VOCAB);
    }
    size_t bytes[3];
    double loss[3][2];
    for (int r = 0; r < 3; r++) {
        rm_gpt_cpu m;
        start_recomputing(&m, &f, 4, r);
        bytes[r] = m.activation_bytes;
        float *grads = r == 0 ? want : got;
        rm_error err;
        loss[r][0] = product_gradients(&m, &f, grads);
        ck_assert_msg(rm_gpt_cpu_forward(&m, f.params, in2, tg2, BATCH, &loss[r][1], &err) == RM_OK, "%s", err.msg);
        ck_assert_msg(rm_gpt_cpu_backward(&m, f.params, grads, 0.5f, 1, NULL, NULL, &err) == RM_OK, "%s", err.msg);
        rm_gpt_cpu_free(&m);
        if (r == 0)
            continue;
        ck_assert_msg(memcmp(loss[r], loss[0], sizeof loss[0]) == 0, "recompute %d: losses %.17g, %.17g; kept %.17g, %.17g",
                      r, loss[r][0], loss[r][1], loss[0][0], loss[0][1]);
        for (long k = 0; k < np; k++)
            ck_assert_msg(memcmp(&got[k], &want[k], sizeof(float)) == 0, "recompute %d: gradient [%ld] %.9g, kept %.9g",
                          r, k, (double)got[k], (double)want[k]);
        ck_assert_msg(bytes[r] < bytes[r - 1], "recompute %d keeps %zu bytes, recompute %d %zu", r, bytes[r], r - 1,
                      bytes[r - 1]);
    }
    rm_error err;
    rm_gpt_cpu bad;
    ck_assert_int_eq(rm_gpt_cpu_init(&bad, &f.g, BATCH, 1, 3, &err), RM_ERR);
    ck_assert_msg(strstr(err.msg, "recompute 3") != NULL, "%s", err.msg);
    free(want);
    free(got);
    free_fixture(&f);
}
END_TEST

/* The count `ringmaster validate` prints is what the CPU model allocates,
 * for every recompute level and shapes with padding in every buffer; and
 * 124M's figures are the ones docs/gpu.md gives. */
START_TEST(memory_count_is_what_the_model_allocates)
{
    static const long shapes[][5] = {{2, 4, 32, 16, 70}, {3, 2, 24, 9, 300}, {1, 1, 8, 5, 11}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        rm_gpt_layout g;
        rm_error err;
        ck_assert_msg(rm_gpt_layout_init(&g, (int)shapes[i][0], (int)shapes[i][1], shapes[i][2], shapes[i][3],
                                         shapes[i][4], &err) == RM_OK,
                      "%s", err.msg);
        for (long batch = 1; batch <= 3; batch += 2)
            for (int r = 0; r < 3; r++) {
                rm_gpt_cpu m;
                ck_assert_msg(rm_gpt_cpu_init(&m, &g, batch, 1, r, &err) == RM_OK, "%s", err.msg);
                rm_gpt_memory_plan p = {.micro_batch = batch, .local_batch = batch, .recompute = r};
                size_t counted = rm_gpt_activation_bytes(&g, &p);
                ck_assert_msg(counted == m.activation_bytes, "shape %zu, batch %ld, recompute %d: counted %zu, allocated %zu",
                              i, batch, r, counted, m.activation_bytes);
                rm_gpt_cpu_free(&m);
            }
    }
    rm_gpt_layout g;
    rm_error err;
    ck_assert_msg(rm_gpt_layout_init(&g, 12, 12, 768, 1024, 50257, &err) == RM_OK, "%s", err.msg);
    rm_gpt_memory_plan p = {.gpu = 1, .micro_batch = 16, .local_batch = 32, .precision = RM_PREC_BF16,
                            .attention = RM_ATT_FUSED, .moments = 2, .state_params = g.n_params};
    rm_gpt_memory mem;
    rm_gpt_memory_count(&g, &p, &mem);
    ck_assert_uint_eq(mem.weights, (size_t)g.n_params * 6);
    ck_assert_uint_eq(mem.gradients, (size_t)g.n_params * 4);
    ck_assert_uint_eq(mem.optimizer, (size_t)g.n_params * 8);
    ck_assert_uint_eq(mem.total, mem.weights + mem.gradients + mem.optimizer + mem.activations + mem.other);
    /* recompute and the fused attention each keep less; ZeRO-1 on 4 holds a quarter of the moments */
    size_t fused = mem.activations;
    p.attention = RM_ATT_SIMPLE;
    size_t simple = rm_gpt_activation_bytes(&g, &p);
    ck_assert_msg(simple > fused + (size_t)12 * 16 * 12 * 1024 * 1024 * 4, "simple %zu, fused %zu", simple, fused);
    p.attention = RM_ATT_FUSED;
    p.recompute = 2;
    ck_assert_uint_lt(rm_gpt_activation_bytes(&g, &p), fused);
    p.state_params = (g.n_params + 3) / 4;
    rm_gpt_memory_count(&g, &p, &mem);
    ck_assert_uint_eq(mem.optimizer, (size_t)((g.n_params + 3) / 4) * 8);
}
END_TEST

static Suite *gpt_suite(void)
{
    Suite *s = suite_create("gpt_grad");
    TCase *tc = tcase_create("gradients");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, every_tensor_matches_double_finite_differences, 0, 2);
    tcase_add_test(tc, accumulate_adds_and_grad_scale_scales);
    tcase_add_test(tc, grad_ready_reports_final_regions_from_the_end);
    tcase_add_test(tc, bad_tokens_and_batches_are_refused);
    tcase_add_test(tc, recompute_keeps_less_and_gives_the_same_bits);
    suite_add_tcase(s, tc);

    TCase *tc_layout = tcase_create("layout");
    tcase_set_timeout(tc_layout, 10);
    tcase_add_test(tc_layout, layout_pads_the_vocabulary_and_packs_the_tensors);
    tcase_add_test(tc_layout, layout_refuses_bad_shapes_by_name);
    tcase_add_test(tc_layout, init_params_are_gpt2s_and_deterministic);
    tcase_add_test(tc_layout, memory_count_is_what_the_model_allocates);
    suite_add_tcase(s, tc_layout);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(gpt_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
