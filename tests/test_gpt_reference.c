/* The CPU GPT against PyTorch: tests/fixtures/gpt_tiny.bin, written by
 * tests/gpt_reference.py (its header documents the format), holds a tiny
 * GPT-2's weights in ringmaster's flat layout, a batch, and PyTorch's
 * logits, mean loss and per-tensor gradients of it. Here the C forward
 * must give the same logits and loss, and the C backward (grad_scale =
 * 1/(batch x context), the mean) the same gradients, to fp32 accuracy.
 * And over the fixture's AdamW steps, through the model seam (the
 * parameter table's decay flags) and the job's optimizer with the global
 * norm clipped: the same losses, norms and final weights.
 *
 * usage: test_gpt_reference FIXTURE */
#include "gpt_cpu.h"
#include "gpt_layout.h"
#include "model.h"
#include "optimizer.h"
#include "shard.h"
#include "test_util.h"

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *fixture_path;

/* The fixture's sections this test reads. */
typedef struct reference {
    uint8_t *file;
    int32_t shape[8]; /* layers, heads, dim, context, vocab, padded_vocab, batch, adamw_steps */
    rm_gpt_layout g;
    long batch, n_tensors;
    char names[64][64];
    const int64_t *spans; /* offset, numel, decay per tensor */
    const float *params, *logits, *grads;
    const int32_t *inputs, *targets;
    double loss;
} reference;

/* Sections lie packed in the file, at any alignment: each one found is
 * copied out to aligned memory, released by free_sections. */
#define MAX_SECTION_COPIES 32
static void *section_copies[MAX_SECTION_COPIES];
static int n_section_copies;

static void free_sections(void)
{
    while (n_section_copies > 0)
        free(section_copies[--n_section_copies]);
}

/* Finds section `name` with dtype and count (count -1: any; *count_out
 * gets it); aborts the test when missing or malformed. The copy stays
 * valid until free_sections. */
static const void *find_section(const uint8_t *file, size_t len, const char *name, uint32_t dtype, long count,
                                long *count_out)
{
    static const size_t elem[] = {0, 4, 4, 8, 8, 1};
    ck_assert_msg(len >= 12 && memcmp(file, "RMGPTFX1", 8) == 0, "%s: not a ringmaster GPT fixture", fixture_path);
    uint32_t sections;
    memcpy(&sections, file + 8, 4);
    size_t at = 12;
    for (uint32_t s = 0; s < sections; s++) {
        ck_assert_msg(at + 36 <= len, "%s: section %u runs past the end", fixture_path, s);
        uint32_t type;
        uint64_t n;
        memcpy(&type, file + at + 24, 4);
        memcpy(&n, file + at + 28, 8);
        ck_assert_msg(type >= 1 && type <= 5 && n <= len / elem[type], "%s: section %u is malformed", fixture_path, s);
        const uint8_t *data = file + at + 36;
        size_t bytes = (size_t)n * elem[type];
        ck_assert_msg(at + 36 + bytes <= len, "%s: section %u runs past the end", fixture_path, s);
        if (strncmp((const char *)file + at, name, 24) == 0) {
            ck_assert_msg(type == dtype, "%s: section %s has dtype %u, expected %u", fixture_path, name, type, dtype);
            ck_assert_msg(count < 0 || (long)n == count, "%s: section %s has %lu elements, expected %ld",
                          fixture_path, name, (unsigned long)n, count);
            if (count_out)
                *count_out = (long)n;
            ck_assert_int_lt(n_section_copies, MAX_SECTION_COPIES);
            void *copy = malloc(bytes ? bytes : 1);
            ck_assert_ptr_nonnull(copy);
            memcpy(copy, data, bytes);
            section_copies[n_section_copies++] = copy;
            return copy;
        }
        at += 36 + bytes;
    }
    ck_abort_msg("%s: no section %s", fixture_path, name);
    return NULL;
}

static void load_reference(reference *r)
{
    memset(r, 0, sizeof *r);
    size_t len;
    r->file = rmt_read_bytes(fixture_path, &len);
    memcpy(r->shape, find_section(r->file, len, "shape", 2, 8, NULL), sizeof r->shape);
    rm_error err;
    ck_assert_msg(rm_gpt_layout_init(&r->g, r->shape[0], r->shape[1], r->shape[2], r->shape[3], r->shape[4], &err) ==
                      RM_OK,
                  "fixture shape: %s", err.msg);
    ck_assert_int_eq(r->g.padded_vocab, r->shape[5]);
    r->batch = r->shape[6];
    long N = r->g.n_params, BT = r->batch * r->g.context;
    long name_bytes;
    const char *names = find_section(r->file, len, "tensor_names", 5, -1, &name_bytes);
    for (long i = 0, k = 0; i <= name_bytes; i++) {
        if (i == name_bytes || names[i] == '\n') {
            ck_assert_int_lt(r->n_tensors, 64);
            long w = i - k < 63 ? i - k : 63;
            memcpy(r->names[r->n_tensors], names + k, (size_t)w);
            r->names[r->n_tensors++][w] = '\0';
            k = i + 1;
        }
    }
    r->spans = find_section(r->file, len, "tensor_spans", 4, 3 * r->n_tensors, NULL);
    r->params = find_section(r->file, len, "params", 1, N, NULL);
    r->inputs = find_section(r->file, len, "inputs", 2, BT, NULL);
    r->targets = find_section(r->file, len, "targets", 2, BT, NULL);
    r->logits = find_section(r->file, len, "logits", 1, BT * r->g.vocab, NULL);
    memcpy(&r->loss, find_section(r->file, len, "loss", 3, 1, NULL), sizeof r->loss);
    r->grads = find_section(r->file, len, "grads", 1, N, NULL);
}

static void free_reference(reference *r)
{
    free(r->file);
    free_sections();
}

/* The fixture's tensor table, written independently in Python, is the C layout. */
START_TEST(fixture_tensors_are_the_c_layout)
{
    reference r;
    load_reference(&r);
    const rm_gpt_layout *g = &r.g;
    ck_assert_int_eq(r.n_tensors, 4 + 12 * g->layers);
    long want[4 + 12 * RM_GPT_MAX_LAYERS];
    int n = 0;
    want[n++] = g->wte;
    want[n++] = g->wpe;
    for (int l = 0; l < g->layers; l++) {
        const rm_gpt_block_offsets *b = &g->block[l];
        long o[12] = {b->ln1_w, b->ln1_b, b->qkv_w,  b->qkv_b,  b->proj_w,   b->proj_b,
                      b->ln2_w, b->ln2_b, b->fc_w,   b->fc_b,   b->fcproj_w, b->fcproj_b};
        for (int k = 0; k < 12; k++)
            want[n++] = o[k];
    }
    want[n++] = g->lnf_w;
    want[n++] = g->lnf_b;
    long end = 0;
    for (int k = 0; k < n; k++) {
        ck_assert_msg(r.spans[3 * k] == want[k], "%s: at %lld in the fixture, %ld in the C layout", r.names[k],
                      (long long)r.spans[3 * k], want[k]);
        end = r.spans[3 * k] + r.spans[3 * k + 1];
    }
    ck_assert_int_eq(end, g->n_params);
    free_reference(&r);
}
END_TEST

/* Runs forward (and backward, for the mean loss) on the fixture's batch. */
static void run_c(const reference *r, long att_block, float *logits, double *mean_loss, float *grads)
{
    rm_gpt_cpu m;
    rm_error err;
    ck_assert_msg(rm_gpt_cpu_init(&m, &r->g, r->batch, 1, RM_RECOMPUTE_NONE, &err) == RM_OK, "%s", err.msg);
    if (att_block > 0)
        m.att_block = att_block;
    long BT = r->batch * r->g.context;
    double loss_sum;
    ck_assert_msg(rm_gpt_cpu_forward(&m, r->params, r->inputs, r->targets, r->batch, &loss_sum, &err) == RM_OK, "%s",
                  err.msg);
    memcpy(logits, rm_gpt_cpu_logits(&m), (size_t)(BT * r->g.padded_vocab) * sizeof(float));
    *mean_loss = loss_sum / (double)BT;
    ck_assert_msg(rm_gpt_cpu_backward(&m, r->params, grads, 1.0f / (float)BT, 0, NULL, NULL, &err) == RM_OK, "%s",
                  err.msg);
    rm_gpt_cpu_free(&m);
}

/* _i: 0 = the default attention tiling, 1 = 3-row tiles */
START_TEST(forward_and_backward_match_pytorch)
{
    reference r;
    load_reference(&r);
    const rm_gpt_layout *g = &r.g;
    long BT = r.batch * g->context, V = g->vocab, Vp = g->padded_vocab;
    float *logits = malloc((size_t)(BT * Vp) * sizeof(float)), *grads = malloc((size_t)g->n_params * sizeof(float));
    double loss;
    run_c(&r, _i == 0 ? 0 : 3, logits, &loss, grads);
    const char *tiling = _i == 0 ? "default tiling" : "3-row tiles";

    double logit_abs = 0, logit_rel = 0, largest = 0;
    for (long p = 0; p < BT; p++)
        for (long v = 0; v < V; v++) {
            double c = logits[p * Vp + v], t = r.logits[p * V + v], e = fabs(c - t);
            logit_abs = fmax(logit_abs, e);
            logit_rel = fmax(logit_rel, e / fmax(fabs(t), 1e-2));
            largest = fmax(largest, fabs(t));
        }
    double loss_abs = fabs(loss - r.loss);
    printf("gpt_reference (%s): logits (largest %.3g) max abs error %.3g, max rel error %.3g; mean loss %.9f vs "
           "PyTorch %.9f, abs error %.3g, rel %.3g\n",
           tiling, largest, logit_abs, logit_rel, loss, r.loss, loss_abs, loss_abs / r.loss);
    ck_assert_msg(logit_abs <= 1e-5 * fmax(largest, 1), "logits: max abs error %g", logit_abs);
    ck_assert_msg(loss_abs <= 1e-6 * r.loss, "mean loss %.9f, PyTorch %.9f", loss, r.loss);

    /* Per tensor: the error relative to the tensor's largest gradient
     * (fp32 rounding of the sums scales with it), and elementwise for the
     * elements at least 1% of that. */
    double worst_norm = 0, worst_elem = 0, worst_abs = 0;
    for (long k = 0; k < r.n_tensors; k++) {
        long off = (long)r.spans[3 * k], numel = (long)r.spans[3 * k + 1];
        double top = 0, abs_err = 0, elem = 0;
        for (long i = 0; i < numel; i++)
            top = fmax(top, fabs(r.grads[off + i]));
        for (long i = 0; i < numel; i++) {
            double c = grads[off + i], t = r.grads[off + i], e = fabs(c - t);
            abs_err = fmax(abs_err, e);
            if (fabs(t) >= 1e-2 * top)
                elem = fmax(elem, e / fabs(t));
        }
        printf("  %-36s largest %.3e  max abs error %.3e  rel to largest %.3e  elementwise %.3e\n", r.names[k], top,
               abs_err, abs_err / top, elem);
        ck_assert_msg(top > 0, "%s: PyTorch's gradient is 0 everywhere", r.names[k]);
        ck_assert_msg(abs_err <= 1e-5 * top, "%s (%s): max abs error %g, largest gradient %g", r.names[k], tiling,
                      abs_err, top);
        ck_assert_msg(elem <= 5e-4, "%s (%s): max relative error %g", r.names[k], tiling, elem);
        worst_norm = fmax(worst_norm, abs_err / top);
        worst_elem = fmax(worst_elem, elem);
        worst_abs = fmax(worst_abs, abs_err);
    }
    for (long i = V * g->dim; i < Vp * g->dim; i++)
        ck_assert_float_eq(grads[g->wte + i], 0.0f);
    printf("gpt_reference (%s): gradients max abs error %.3g, max error relative to the tensor's largest %.3g, "
           "max elementwise relative error %.3g\n",
           tiling, worst_abs, worst_norm, worst_elem);
    free(logits);
    free(grads);
    free_reference(&r);
}
END_TEST

/* Five AdamW steps on the same batch, as the fixture's PyTorch took them:
 * torch.optim.AdamW with decay on the matrices only, clip_grad_norm_ to
 * the fixture's clip norm first, constant lr. */
START_TEST(adamw_steps_match_pytorch)
{
    reference r;
    load_reference(&r);
    size_t len;
    uint8_t *file = rmt_read_bytes(fixture_path, &len);
    const double *hp = find_section(file, len, "adamw", 3, 6, NULL);
    long steps = r.shape[7], N = r.g.n_params, BT = r.batch * r.g.context;
    const double *want_loss = find_section(file, len, "adamw_losses", 3, steps, NULL);
    const double *want_norm = find_section(file, len, "adamw_grad_norms", 3, steps, NULL);
    const float *want_params = find_section(file, len, "adamw_params", 1, N, NULL);

    rm_config cfg;
    rm_config_defaults(&cfg);
    cfg.model_type = RM_MODEL_GPT;
    cfg.model_layers = r.shape[0];
    cfg.model_heads = r.shape[1];
    cfg.model_dim = r.shape[2];
    cfg.model_context = r.shape[3];
    cfg.optimizer = RM_OPT_ADAMW;
    cfg.lr = hp[0];
    cfg.beta1 = hp[1];
    cfg.beta2 = hp[2];
    cfg.eps = hp[3];
    cfg.weight_decay = hp[4];
    rm_dataset_facts facts = {.data_format = RM_DATA_TOKENS, .vocab = r.shape[4]};
    rm_model model;
    rm_optimizer opt;
    rm_gpt_cpu m;
    rm_error err;
    ck_assert_msg(rm_model_init(&model, &cfg, &facts, &err) == RM_OK, "%s", err.msg);
    ck_assert_int_eq(model.n_params, N);
    for (int i = 0; i < model.n_tensors; i++) /* the seam's decay flags are the fixture's */
        ck_assert_msg(model.tensors[i].decay == (int)r.spans[3 * i + 2], "%s", model.tensors[i].name);
    ck_assert_msg(rm_optimizer_init(&opt, &cfg, &model, &err) == RM_OK, "%s", err.msg);
    ck_assert_msg(rm_gpt_cpu_init(&m, &r.g, r.batch, 1, RM_RECOMPUTE_NONE, &err) == RM_OK, "%s", err.msg);
    float *w = malloc((size_t)N * sizeof *w), *g = malloc((size_t)N * sizeof *g);
    ck_assert(w && g);
    memcpy(w, r.params, (size_t)N * sizeof *w);
    for (long step = 0; step < steps; step++) {
        double loss_sum, sumsq = 0;
        ck_assert_msg(rm_gpt_cpu_forward(&m, w, r.inputs, r.targets, r.batch, &loss_sum, &err) == RM_OK, "%s",
                      err.msg);
        ck_assert_msg(rm_gpt_cpu_backward(&m, w, g, 1.0f / (float)BT, 0, NULL, NULL, &err) == RM_OK, "%s", err.msg);
        for (long i = 0; i < N; i++)
            sumsq += (double)g[i] * g[i];
        double loss = loss_sum / (double)BT, norm = sqrt(sumsq);
        ck_assert_msg(fabs(loss - want_loss[step]) < 2e-5 * want_loss[step], "step %ld: loss %.7f, PyTorch %.7f",
                      step, loss, want_loss[step]);
        ck_assert_msg(fabs(norm - want_norm[step]) < 1e-4 * want_norm[step], "step %ld: norm %.7f, PyTorch %.7f",
                      step, norm, want_norm[step]);
        opt.grad_mult = rm_optimizer_clip_factor(hp[5], norm);
        rm_optimizer_step(&opt, w, g, cfg.lr, 0, N);
    }
    /* Adam's update is about lr x sign(g): where a gradient is within
     * rounding of 0 the two sides may step opposite ways, so the weights
     * are compared as a whole, against how far the steps moved them. */
    double diff = 0, moved = 0, worst = 0;
    for (long i = 0; i < N; i++) {
        diff += ((double)w[i] - want_params[i]) * ((double)w[i] - want_params[i]);
        moved += ((double)want_params[i] - r.params[i]) * ((double)want_params[i] - r.params[i]);
        worst = fmax(worst, fabs((double)w[i] - want_params[i]));
    }
    printf("gpt_reference: %ld AdamW steps: weights off by %.3g of the distance moved (largest element %.3g)\n", steps,
           sqrt(diff / moved), worst);
    ck_assert_msg(sqrt(diff / moved) < 1e-2, "weights after %ld AdamW steps differ from PyTorch's by %.3g of the "
                  "distance the steps moved them", steps, sqrt(diff / moved));
    free(w);
    free(g);
    free(file);
    rm_gpt_cpu_free(&m);
    rm_optimizer_free(&opt);
    rm_model_free(&model);
    free_reference(&r);
}
END_TEST

static Suite *reference_suite(void)
{
    Suite *s = suite_create("gpt_reference");
    TCase *tc = tcase_create("pytorch");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, fixture_tensors_are_the_c_layout);
    tcase_add_loop_test(tc, forward_and_backward_match_pytorch, 0, 2);
    tcase_add_test(tc, adamw_steps_match_pytorch);
    suite_add_tcase(s, tc);
    return s;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: test_gpt_reference FIXTURE (tests/fixtures/gpt_tiny.bin)\n");
        return 2;
    }
    fixture_path = argv[1];
    SRunner *sr = srunner_create(reference_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
