/* GPT inference with a key/value cache (gpt_infer.c) against the training
 * forward (gpt_cpu.c): feeding a sequence one token at a time gives, at
 * every position, the logits the whole-sequence forward gives there. */
#include "gpt_cpu.h"
#include "gpt_infer.h"
#include "test_util.h"

#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

START_TEST(cached_steps_match_the_full_forward)
{
    rm_gpt_layout g;
    rm_error err;
    ck_assert_msg(rm_gpt_layout_init(&g, 2, 2, 16, 12, 29, &err) == RM_OK, "%s", err.msg);
    float *params = malloc((size_t)g.n_params * sizeof *params);
    ck_assert_ptr_nonnull(params);
    rm_gpt_init_params(&g, 5, params);
    /* wider weights than GPT-2's init, so attention is far from uniform */
    for (long i = 0; i < g.n_params; i++)
        params[i] *= 8.0f;
    int32_t in[12], tg[12];
    for (int t = 0; t < 12; t++) {
        in[t] = (t * 7 + 3) % 29;
        tg[t] = (t * 5 + 1) % 29;
    }
    rm_gpt_cpu full;
    ck_assert_msg(rm_gpt_cpu_init(&full, &g, 1, 1, RM_RECOMPUTE_NONE, &err) == RM_OK, "%s", err.msg);
    double loss;
    ck_assert_msg(rm_gpt_cpu_forward(&full, params, in, tg, 1, &loss, &err) == RM_OK, "%s", err.msg);
    const float *want = rm_gpt_cpu_logits(&full);
    rm_gpt_infer inf;
    ck_assert_msg(rm_gpt_infer_init(&inf, &g, params, &err) == RM_OK, "%s", err.msg);
    for (int pass = 0; pass < 2; pass++) { /* and again after a reset */
        rm_gpt_infer_reset(&inf);
        double worst = 0, largest = 0;
        for (int t = 0; t < 12; t++) {
            const float *got;
            ck_assert_msg(rm_gpt_infer_step(&inf, in[t], &got, &err) == RM_OK, "%s", err.msg);
            for (long v = 0; v < g.vocab; v++) {
                worst = fmax(worst, fabs((double)got[v] - want[t * g.padded_vocab + v]));
                largest = fmax(largest, fabs((double)want[t * g.padded_vocab + v]));
            }
        }
        ck_assert_msg(worst < 1e-4 * fmax(1.0, largest), "cached logits differ by %g (largest logit %g)", worst,
                      largest);
        const float *got;
        ck_assert(rm_gpt_infer_step(&inf, 1, &got, &err) == RM_ERR); /* the context is full */
        ck_assert_msg(strstr(err.msg, "context of 12 tokens is full"), "%s", err.msg);
    }
    rm_gpt_infer_reset(&inf);
    const float *got;
    ck_assert(rm_gpt_infer_step(&inf, 29, &got, &err) == RM_ERR);
    ck_assert_msg(strstr(err.msg, "token 29 is outside the vocabulary of 29"), "%s", err.msg);
    rm_gpt_infer_free(&inf);
    rm_gpt_cpu_free(&full);
    free(params);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("gpt_infer");
    TCase *tc = tcase_create("cache");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, cached_steps_match_the_full_forward);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
