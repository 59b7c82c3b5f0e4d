/* The small pieces under observability: bearer-token files (mode 0600
 * only), loopback detection, the constant-time token comparison, the
 * JSON member scanner the plot and summary read with, the observe.* keys
 * of the config (trace range, the /metrics address rule) and the doctor's
 * prediction (bottleneck naming, busbw-free step model). */
#include "config.h"
#include "json_scan.h"
#include "test_util.h"
#include "token_file.h"

#include "doctor.h"

#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char scratch[RMT_PATH_CAP];

static void setup_scratch(void)
{
    rmt_make_tempdir(scratch);
    ck_assert_int_eq(chdir(scratch), 0);
    rmt_make_split(".", "data/train", 60, 4, 3, 25);
}

static void teardown_scratch(void)
{
    ck_assert_int_eq(chdir("/"), 0);
    rmt_remove_tree(scratch);
}

START_TEST(token_file_needs_owner_only_mode)
{
    char token[RM_TOKEN_CAP];
    rm_error err;
    rmt_write_text("tok", "  s3cret \n second line ignored\n");
    ck_assert_int_eq(chmod("tok", 0644), 0);
    ck_assert_int_eq(rm_token_file_read("tok", token, sizeof token, &err), RM_ERR);
    rmt_assert_prefix(err.msg, "tok: ");
    rmt_assert_contains(err.msg, "mode 0644");
    ck_assert_int_eq(chmod("tok", 0640), 0);
    ck_assert_int_eq(rm_token_file_read("tok", token, sizeof token, &err), RM_ERR);
    ck_assert_int_eq(chmod("tok", 0600), 0);
    ck_assert_int_eq(rm_token_file_read("tok", token, sizeof token, &err), RM_OK);
    ck_assert_str_eq(token, "s3cret");
    ck_assert_int_eq(chmod("tok", 0400), 0);
    ck_assert_int_eq(rm_token_file_read("tok", token, sizeof token, &err), RM_OK);

    rmt_write_text("empty", " \n");
    ck_assert_int_eq(chmod("empty", 0600), 0);
    ck_assert_int_eq(rm_token_file_read("empty", token, sizeof token, &err), RM_ERR);
    rmt_assert_contains(err.msg, "empty: the token file is empty");
    ck_assert_int_eq(rm_token_file_read("missing", token, sizeof token, &err), RM_ERR);
    rmt_assert_prefix(err.msg, "missing: cannot open the token file");
    ck_assert_int_eq(mkdir("adir", 0700), 0);
    ck_assert_int_eq(rm_token_file_read("adir", token, sizeof token, &err), RM_ERR);
    rmt_assert_contains(err.msg, "not a regular file");
}
END_TEST

START_TEST(loopback_and_token_compare)
{
    ck_assert_int_eq(rm_address_is_loopback("127.0.0.1"), 1);
    ck_assert_int_eq(rm_address_is_loopback("127.3.2.1"), 1);
    ck_assert_int_eq(rm_address_is_loopback("::1"), 1);
    ck_assert_int_eq(rm_address_is_loopback("localhost"), 1);
    ck_assert_int_eq(rm_address_is_loopback("0.0.0.0"), 0);
    ck_assert_int_eq(rm_address_is_loopback("10.1.2.3"), 0);
    ck_assert_int_eq(rm_address_is_loopback("::"), 0);
    ck_assert_int_eq(rm_address_is_loopback("example.org"), -1);
    ck_assert_int_eq(rm_address_is_loopback("127.0.0.1:80"), -1);

    ck_assert(rm_token_equal("abc", 3, "abc", 3));
    ck_assert(!rm_token_equal("abc", 3, "abd", 3));
    ck_assert(!rm_token_equal("abc", 3, "abcd", 4));
    ck_assert(!rm_token_equal("", 0, "a", 1));
    ck_assert(rm_token_equal("", 0, "", 0));
}
END_TEST

START_TEST(json_scan_reads_members)
{
    const char *line = "{\"step\":12,\"loss\":0.25,\"lr\":null,\"per_worker\":{\"step_s\":[1,2]},\"name\": \"n7\","
                       "\"samples_per_second\" : 1.5e4}";
    double v;
    ck_assert_int_eq(rm_json_find_number(line, "step", &v), RM_OK);
    ck_assert(v == 12);
    ck_assert_int_eq(rm_json_find_number(line, "loss", &v), RM_OK);
    ck_assert(v == 0.25);
    ck_assert_int_eq(rm_json_find_number(line, "samples_per_second", &v), RM_OK);
    ck_assert(v == 1.5e4);
    ck_assert_int_eq(rm_json_find_number(line, "lr", &v), RM_ERR);      /* null */
    ck_assert_int_eq(rm_json_find_number(line, "epoch", &v), RM_ERR);   /* absent */
    ck_assert_int_eq(rm_json_find_number(line, "step_s", &v), RM_ERR);  /* a list */
    char s[8];
    ck_assert_int_eq(rm_json_find_string(line, "name", s, sizeof s), RM_OK);
    ck_assert_str_eq(s, "n7");
    ck_assert_int_eq(rm_json_find_string(line, "step", s, sizeof s), RM_ERR);
}
END_TEST

static const char job[] = "model: {hidden: [8]}\ndata: {dir: data, eval_split: ''}\n"
                          "train: {global_batch: 12, steps: 10}\nlaunch: {workers: 2}\n";

static int load_with(char **sets, int n, rm_config *cfg, rm_error *err)
{
    rmt_write_text("job.yaml", job);
    return rm_config_load("job.yaml", sets, n, cfg, NULL, err);
}

START_TEST(trace_steps_parse_and_round_trip)
{
    rm_config cfg, back;
    rm_error err;
    char *ok[] = {"observe.trace_steps=[3, 7]"};
    ck_assert_msg(load_with(ok, 1, &cfg, &err) == RM_OK, "%s", err.msg);
    ck_assert_int_eq(cfg.trace_steps[0], 3);
    ck_assert_int_eq(cfg.trace_steps[1], 7);
    FILE *f = fopen("written.yaml", "w");
    rm_config_write(&cfg, f);
    fclose(f);
    ck_assert_msg(rm_config_load("written.yaml", NULL, 0, &back, NULL, &err) == RM_OK, "%s", err.msg);
    ck_assert_int_eq(back.trace_steps[0], 3);
    ck_assert_int_eq(back.trace_steps[1], 7);
    ck_assert_uint_eq(rm_config_hash(&cfg), rm_config_hash(&back));

    ck_assert_msg(load_with(NULL, 0, &cfg, &err) == RM_OK, "%s", err.msg);
    ck_assert_int_eq(cfg.trace_steps[0], 0); /* off by default */

    char *reversed[] = {"observe.trace_steps=[7, 3]"};
    ck_assert_int_eq(load_with(reversed, 1, &cfg, &err), RM_ERR);
    rmt_assert_contains(err.msg, "the last step comes before the first");
    char *one[] = {"observe.trace_steps=[7]"};
    ck_assert_int_eq(load_with(one, 1, &cfg, &err), RM_ERR);
    rmt_assert_contains(err.msg, "expects [from, to]");
    char *zero[] = {"observe.trace_steps=[0, 4]"};
    ck_assert_int_eq(load_with(zero, 1, &cfg, &err), RM_ERR);
    rmt_assert_contains(err.msg, "must be a step number >= 1");
}
END_TEST

START_TEST(metrics_address_rules)
{
    rm_config cfg;
    rm_error err;
    char *open_addr[] = {"observe.metrics_address=0.0.0.0"};
    ck_assert_int_eq(load_with(open_addr, 1, &cfg, &err), RM_ERR);
    rmt_assert_contains(err.msg, "observe.metrics_token_file");

    rmt_write_text("tok", "t0ken\n");
    ck_assert_int_eq(chmod("tok", 0666), 0);
    char *loose[] = {"observe.metrics_address=0.0.0.0", "observe.metrics_token_file=tok"};
    /* every rank loads the config; only where /metrics is served is the
     * file read */
    ck_assert_msg(load_with(loose, 2, &cfg, &err) == RM_OK, "%s", err.msg);
    ck_assert_int_eq(cfg.metrics_token_file[0], '/'); /* made absolute for every rank */
    ck_assert_int_eq(rm_config_check_token_file(&cfg, &err), RM_ERR);
    rmt_assert_prefix(err.msg, "--set observe.metrics_token_file: ");
    rmt_assert_contains(err.msg, "/tok: the token file has mode 0666");
    ck_assert_int_eq(chmod("tok", 0600), 0);
    ck_assert_msg(rm_config_check_token_file(&cfg, &err) == RM_OK, "%s", err.msg);

    char *off[] = {"observe.metrics_address=0.0.0.0", "observe.metrics_port=-1"};
    ck_assert_msg(load_with(off, 2, &cfg, &err) == RM_OK, "no endpoint, nothing to protect: %s", err.msg);
    char *bad[] = {"observe.metrics_address=nowhere"};
    ck_assert_int_eq(load_with(bad, 1, &cfg, &err), RM_ERR);
    rmt_assert_contains(err.msg, "'nowhere' is not an IPv4 or IPv6 address");
    char *slow[] = {"debug.slow_worker=2"};
    ck_assert_int_eq(load_with(slow, 1, &cfg, &err), RM_ERR);
    rmt_assert_contains(err.msg, "there is no worker 2");
}
END_TEST

/* Sets one rank's phases of the step in sequence; step_s is their sum. */
static void doctor_phases(rm_doctor_rank *r, double wait, double compute, double reduce, double optimizer,
                          double gather)
{
    r->data_wait_s = wait;
    r->compute_s = compute;
    r->step_allreduce_s = reduce;
    r->optimizer_s = optimizer;
    r->step_gather_s = gather;
    r->step_s = wait + compute + reduce + optimizer + gather;
}

START_TEST(doctor_names_the_bottleneck)
{
    rm_config cfg;
    rm_config_defaults(&cfg);
    cfg.global_batch = 100;
    rm_doctor_rank r[2];
    memset(r, 0, sizeof r);
    for (int i = 0; i < 2; i++) {
        snprintf(r[i].reduce, sizeof r[i].reduce, "shm");
        r[i].loader_batch_s = 0.001;
        r[i].allreduce_s = 0.001;
    }
    /* lockstep: rank 1 computes longer, rank 0 waits for it in the
     * reduction; rank 1's phases are the step */
    doctor_phases(&r[0], 0, 0.004, 0.003, 0.001, 0);
    doctor_phases(&r[1], 0, 0.006, 0.001, 0.001, 0);
    rm_doctor_prediction p;
    rm_doctor_predict(&cfg, r, 2, &p);
    ck_assert_int_eq(p.slowest, 1);
    ck_assert_double_eq_tol(p.step_s, 0.006 + 0.001 + 0.001, 1e-12);
    ck_assert_double_eq_tol(p.compute_s, 0.006, 1e-12);
    ck_assert_double_eq_tol(p.samples_per_s, 100 / 0.008, 1e-6);
    ck_assert_str_eq(p.bottleneck, "compute");
    /* a rank waiting for its data makes the others wait in the reduction:
     * the wait for data is named, not the reduction */
    doctor_phases(&r[0], 0.006, 0.001, 0.0005, 0.0005, 0);
    doctor_phases(&r[1], 0, 0.001, 0.0065, 0.0005, 0);
    rm_doctor_predict(&cfg, r, 2, &p);
    ck_assert_int_eq(p.slowest, 0);
    ck_assert_str_eq(p.bottleneck, "storage");
    doctor_phases(&r[0], 0, 0.004, 0.003, 0.001, 0);
    doctor_phases(&r[1], 0, 0.006, 0.001, 0.001, 0);

    /* the loader alone slower than the step it feeds sets the pace */
    rm_doctor_predict(&cfg, r, 2, &p);
    ck_assert_str_eq(p.reduce, "shm");
    r[0].loader_batch_s = 0.02;
    rm_doctor_predict(&cfg, r, 2, &p);
    ck_assert_str_eq(p.bottleneck, "storage");
    ck_assert_double_eq_tol(p.step_s, 0.02, 1e-12);

    /* a reduction longer than compute is named, whatever the reduction
     * alone takes (the verdict is the largest printed share) */
    r[0].loader_batch_s = 0.001;
    for (int i = 0; i < 2; i++) {
        r[i].allreduce_s = 0.0005;
        doctor_phases(&r[i], 0, 0.00193, 0.00398, 0.0001, 0);
    }
    rm_doctor_predict(&cfg, r, 2, &p);
    ck_assert_str_eq(p.bottleneck, "network");
    ck_assert_double_eq_tol(p.step_s, 0.00193 + 0.00398 + 0.0001, 1e-12);

    /* ZeRO-1: reduce-scatter and all-gather are one pipe's share */
    for (int i = 0; i < 2; i++)
        doctor_phases(&r[i], 0, 0.004, 0.0025, 0.0002, 0.0025);
    rm_doctor_predict(&cfg, r, 2, &p);
    ck_assert_str_eq(p.bottleneck, "network");
    ck_assert_double_eq_tol(p.pipe_s[RM_DOCTOR_NETWORK], 0.005, 1e-12);

    for (int i = 0; i < 2; i++)
        doctor_phases(&r[i], 0, 0.001, 0.0005, 0.003, 0);
    rm_doctor_predict(&cfg, r, 2, &p);
    ck_assert_str_eq(p.bottleneck, "memory");

    /* waiting for data in the step is the loader's share */
    for (int i = 0; i < 2; i++)
        doctor_phases(&r[i], 0.004, 0.003, 0.0005, 0.0005, 0);
    rm_doctor_predict(&cfg, r, 2, &p);
    ck_assert_str_eq(p.bottleneck, "storage");
    ck_assert_double_eq_tol(p.step_s, 0.008, 1e-12);

    /* the verdict is always the largest printed share */
    for (int i = 0; i < 2; i++)
        doctor_phases(&r[i], 0.0001, 0.002, 0.0019, 0.0003, 0);
    rm_doctor_predict(&cfg, r, 2, &p);
    for (int k = 0; k < RM_DOCTOR_PIPES; k++)
        ck_assert(p.pipe_s[k] <= p.pipe_s[p.bottleneck_pipe]);
    ck_assert_str_eq(p.bottleneck, "compute");
}
END_TEST

/* A reduction in stages (the hierarchical one across hosts): the table
 * shows each stage's time, the slowest rank's, under the reduction alone,
 * and the JSON report has them per rank. */
START_TEST(doctor_shows_the_reduction_stages)
{
    rm_config cfg;
    rm_config_defaults(&cfg);
    cfg.global_batch = 100;
    rm_error err;
    rm_model model;
    ck_assert_msg(rm_model_init_flat(&model, 1000, 0, &err) == RM_OK, "%s", err.msg);
    rm_doctor_rank r[2];
    memset(r, 0, sizeof r);
    for (int i = 0; i < 2; i++) {
        snprintf(r[i].reduce, sizeof r[i].reduce, "hierarchical");
        doctor_phases(&r[i], 0, 0.004, 0.003, 0.001, 0);
        r[i].allreduce_s = 0.0025;
        r[i].n_stages = 2;
        snprintf(r[i].stage_name[0], sizeof r[i].stage_name[0], "sum in shared memory");
        snprintf(r[i].stage_name[1], sizeof r[i].stage_name[1], "chain between hosts");
        r[i].stage_s[0] = 0.0004 + 0.0001 * i;
        r[i].stage_s[1] = 0.0020;
    }
    rm_doctor_prediction p;
    rm_doctor_predict(&cfg, r, 2, &p);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    rm_doctor_print(f, &cfg, &model, r, 2, &p);
    fclose(f);
    rmt_assert_contains(text, "  of which sum in shared memory");
    rmt_assert_contains(text, "0.500 ms"); /* the slower rank's 0.5 ms */
    rmt_assert_contains(text, "  of which chain between hosts");
    free(text);
    f = open_memstream(&text, &len);
    rm_doctor_write_json(f, &cfg, &model, r, 2, &p);
    fclose(f);
    rmt_assert_contains(text, "\"reduce_stages\": [{\"stage\": \"sum in shared memory\", \"seconds\": 0.0004}");
    free(text);
    rm_model_free(&model);
}
END_TEST

static Suite *observe_suite(void)
{
    Suite *s = suite_create("observe");
    TCase *tc = tcase_create("files");
    tcase_add_checked_fixture(tc, setup_scratch, teardown_scratch);
    tcase_set_timeout(tc, 20);
    tcase_add_test(tc, token_file_needs_owner_only_mode);
    tcase_add_test(tc, trace_steps_parse_and_round_trip);
    tcase_add_test(tc, metrics_address_rules);
    suite_add_tcase(s, tc);
    TCase *pure = tcase_create("pure");
    tcase_set_timeout(pure, 10);
    tcase_add_test(pure, loopback_and_token_compare);
    tcase_add_test(pure, json_scan_reads_members);
    tcase_add_test(pure, doctor_names_the_bottleneck);
    tcase_add_test(pure, doctor_shows_the_reduction_stages);
    suite_add_tcase(s, pure);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(observe_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
