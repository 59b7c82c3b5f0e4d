/* Rank 0's modules without MPI: the watch's verdicts (hang, non-finite
 * policies, a lost run lock), the roster, and the straggler and slowdown
 * detectors fed synthetic worker reports. Each returns a verdict or writes
 * events; none may end the process. */
#include "config.h"
#include "exit_codes.h"
#include "observe.h"
#include "progress.h"
#include "roster.h"
#include "run_dir.h"
#include "test_util.h"
#include "timer.h"
#include "verdict.h"
#include "watch.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static char scratch[RMT_PATH_CAP];
static rm_config cfg;
static rm_run_dir rd;
static rm_progress progress;
static rm_watch watch;
static rm_roster roster;

static void setup(void)
{
    rmt_make_tempdir(scratch);
    ck_assert_int_eq(chdir(scratch), 0);
    rmt_make_split(".", "data/train", 60, 4, 3, 25);
    rm_config_defaults(&cfg);
    snprintf(cfg.data_dir, sizeof cfg.data_dir, "%s/data", scratch);
    snprintf(cfg.train_split, sizeof cfg.train_split, "train");
    snprintf(cfg.run_dir, sizeof cfg.run_dir, "%s/run", scratch);
    cfg.verbosity = RM_VERBOSITY_QUIET;
    cfg.metrics_port = -1;
    rm_error err;
    unsetenv("RINGMASTER_RUN_LOCK");
    memset(&watch, 0, sizeof watch);
    ck_assert_msg(rm_watch_lock_run_dir(&watch, &cfg, &err) == RM_OK, "%s", err.msg);
    ck_assert_msg(rm_run_dir_open(&rd, &cfg, &err) == RM_OK, "%s", err.msg);
    rm_progress_init(&progress, 1000, 100, RM_VERBOSITY_QUIET);
    rm_watch_attach(&watch, &rd, &progress);
    ck_assert_int_eq(rm_roster_init(&roster, 3, &err), RM_OK);
    for (int w = 0; w < 3; w++) {
        snprintf(roster.info[w].host, sizeof roster.info[w].host, "node%d", w);
        roster.info[w].pid = 100 + w;
    }
}

static void teardown(void)
{
    rm_roster_free(&roster);
    rm_run_dir_close(&rd);
    rm_watch_release(&watch);
    ck_assert_int_eq(chdir("/"), 0);
    rmt_remove_tree(scratch);
}

/* The run's events.jsonl, whole (the caller frees). */
static char *events(void)
{
    char path[RMT_PATH_CAP + 32];
    snprintf(path, sizeof path, "%s/events.jsonl", rd.path);
    uint8_t *text = rmt_read_bytes(path, NULL);
    return (char *)text;
}

/* Workers 0 and 2 wait in the reduction of step 5 and keep talking;
 * worker 1 went silent 30 s ago, before reaching it. */
static void worker_1_silent(double now, const char *host0, const char *host1, const char *host2)
{
    const char *hosts[3] = {host0, host1, host2};
    roster.info[0] = (rm_worker_info){.pid = 100, .last_heard_s = now - 1, .progress = 2 * 4 + 1};
    roster.info[1] = (rm_worker_info){.pid = 101, .last_heard_s = now - 30, .progress = 2 * 3 + 2};
    roster.info[2] = (rm_worker_info){.pid = 102, .last_heard_s = now - 2, .progress = 2 * 4 + 1};
    for (int w = 0; w < 3; w++)
        snprintf(roster.info[w].host, sizeof roster.info[w].host, "%s", hosts[w]);
}

START_TEST(hang_names_the_silent_worker_that_got_least_far)
{
    double now = 1000.0;
    cfg.hang_timeout_s = 10;
    worker_1_silent(now, "node0", "node1", "node2");
    rm_verdict v;
    rm_watch_hang(&watch, &roster, now, &v);
    ck_assert_int_eq(v.stop, 1);
    ck_assert_int_eq(v.exit_code, RM_EXIT_FAILED);
    ck_assert_int_eq(v.step, 5);
    rmt_assert_contains(v.reason, "hang: worker 1 (rank 2, host node1, pid 101, silent 30.0 s)");
    rmt_assert_contains(v.reason, "workers 0,2 are alive and wait for it");
    char *ev = events();
    rmt_assert_contains(ev, "\"event\":\"hang\"");
    free(ev);

    /* everyone heard from within the timeout: go on */
    roster.info[1].last_heard_s = now - 9;
    rm_watch_hang(&watch, &roster, now, &v);
    ck_assert_int_eq(v.stop, 0);
}
END_TEST

START_TEST(hang_on_a_host_that_answers_is_not_a_lost_host)
{
    /* A cut-off host (no answer) is named by tests/cluster/link_down.sh:
     * here no address is sure to stay silent (a proxy may accept every
     * connection). A worker silent on a host that answers (a refused
     * connection is an answer) is a hang; its host is not blamed. */
    double now = 1000.0;
    cfg.hang_timeout_s = 10;
    worker_1_silent(now, "127.0.0.2", "127.0.0.1", "127.0.0.2");
    rm_verdict v;
    rm_watch_hang(&watch, &roster, now, &v);
    ck_assert_int_eq(v.stop, 1);
    rmt_assert_contains(v.reason, "hang: worker 1 (rank 2, host 127.0.0.1, pid 101, silent 30.0 s)");
    ck_assert_ptr_null(strstr(v.reason, "unreachable"));
}
END_TEST

START_TEST(nonfinite_policies_give_their_verdicts)
{
    rm_verdict v;
    rm_error err;
    cfg.nan_policy = RM_NAN_SKIP;
    ck_assert_int_eq(rm_watch_nonfinite(&watch, 41, 0, &v, &err), RM_OK);
    ck_assert_int_eq(v.stop, 0);

    cfg.nan_policy = RM_NAN_STOP;
    ck_assert_int_eq(rm_watch_nonfinite(&watch, 41, 0, &v, &err), RM_OK);
    ck_assert_int_eq(v.stop, 1);
    ck_assert_int_eq(v.exit_code, RM_EXIT_FATAL);
    ck_assert_int_eq(v.step, 42);
    rmt_assert_contains(v.reason, "fault.nan_policy: stop");

    /* a step already rolled back over is skipped whatever the policy */
    ck_assert_int_eq(rm_watch_nonfinite(&watch, 41, 1, &v, &err), RM_OK);
    ck_assert_int_eq(v.stop, 0);

    /* rollback: the step is recorded for the restart, which the verdict asks for */
    cfg.nan_policy = RM_NAN_ROLLBACK;
    ck_assert_int_eq(rm_watch_nonfinite(&watch, 41, 0, &v, &err), RM_OK);
    ck_assert_int_eq(v.stop, 1);
    ck_assert_int_eq(v.exit_code, RM_EXIT_FAILED);
    rmt_assert_contains(v.reason, "rollback");
    char *ev = events();
    rmt_assert_contains(ev, "\"event\":\"nonfinite\",\"step\":42,\"policy\":\"rollback\"");
    rmt_assert_contains(ev, "\"policy\":\"skipped after rollback\"");
    free(ev);
}
END_TEST

START_TEST(a_lock_taken_over_stops_the_job)
{
    rm_verdict v;
    rm_watch_lock(&watch, 7, &v); /* looked at every 2 s: not yet */
    ck_assert_int_eq(v.stop, 0);
    watch.lock_checked_s -= 3;
    rm_watch_lock(&watch, 7, &v); /* still ours */
    ck_assert_int_eq(v.stop, 0);

    /* another job took the lock over (the lock's refresh thread found its
     * token replaced: tests/fault/run_lock.sh drives that end to end) */
    watch.run_lock.lost = 1;
    watch.lock_checked_s -= 3;
    rm_watch_lock(&watch, 7, &v);
    ck_assert_int_eq(v.stop, 1);
    ck_assert_int_eq(v.exit_code, RM_EXIT_FATAL);
    rmt_assert_contains(v.reason, "another job took over the run directory");
    ck_assert_int_eq(rd.open, 0); /* nothing more is written there */
}
END_TEST

START_TEST(roster_names_and_hosts)
{
    char name[128];
    rmt_assert_contains(rm_roster_name(&roster, 2, name, sizeof name), "worker 2 (rank 3, host node2, pid 102)");
    ck_assert_int_eq(rm_roster_one_host(&roster), 0);
    for (int w = 0; w < 3; w++)
        snprintf(roster.info[w].host, sizeof roster.info[w].host, "same");
    ck_assert_int_eq(rm_roster_one_host(&roster), 1);
    rm_roster_heard(&roster, 1, 5.0, 9);
    rm_roster_heard(&roster, 1, 6.0, 4); /* progress only moves forward */
    ck_assert_int_eq(roster.info[1].progress, 9);
    ck_assert(roster.info[1].last_heard_s == 6.0);
}
END_TEST

enum { SLOW_WORKER, SLOW_REDUCTION };

/* Feeds the detectors `steps` steps of 2 workers on one host summing
 * through shared memory. From step `from`, SLOW_WORKER: worker 1's compute
 * takes `slow` times worker 0's (which waits for it in the reduction);
 * SLOW_REDUCTION: the reduction itself takes `slow` times as long. Each
 * step takes step_s of wall time (slept), so that the detectors'
 * persistence in seconds is exercised. */
static rm_observe *feed(int what, long steps, long from, double slow, double step_s)
{
    rm_error err;
    rm_roster two;
    static rm_roster keep;
    ck_assert_int_eq(rm_roster_init(&two, 2, &err), RM_OK);
    snprintf(two.info[0].host, sizeof two.info[0].host, "h");
    snprintf(two.info[1].host, sizeof two.info[1].host, "h");
    two.transport = RM_TRANSPORT_SHM;
    keep = two;
    rm_observe_setup os = {.cfg = &cfg, .roster = &keep, .rd = &rd, .progress = &progress, .total_steps = steps,
                           .step_slots = 4};
    rm_observe *o = rm_observe_create(&os, &err);
    ck_assert_msg(o != NULL, "%s", err.msg);
    for (long s = 0; s < steps; s++) {
        double extra = s >= from ? 0.001 * (slow - 1) : 0; /* what the step gains */
        for (int w = 0; w < 2; w++) {
            rm_msg_report r = {.step = s, .run_delay_s = 0};
            r.phase_s[RM_PHASE_COMPUTE] = 0.001 + (what == SLOW_WORKER && w == 1 ? extra : 0);
            r.phase_s[RM_PHASE_GRAD_REDUCE] = 0.0001 + (what == SLOW_REDUCTION || w == 0 ? extra : 0);
            r.phase_s[RM_PHASE_STEP] = 0.0011 + extra;
            rm_observe_add_report(o, &r, w);
        }
        char *line = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&line, &len);
        rm_observe_step st = {.step = s, .step_s = 0.0011 + extra};
        rm_observe_complete_step(o, &st, f);
        fclose(f);
        free(line);
        nanosleep(&(struct timespec){0, (long)(step_s * 1e9)}, NULL);
    }
    return o;
}

/* summary.json's members from the detectors (the caller frees). */
static char *summary_of(rm_observe *o)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    rm_observe_write_summary(o, 0, f);
    fclose(f);
    return text;
}

START_TEST(a_worker_slow_for_seconds_is_named_a_short_burst_is_not)
{
    cfg.straggler_window_steps = 50;
    cfg.straggler_threshold = 1.5;
    cfg.slowdown_threshold = 100; /* this test is about stragglers */
    /* 2x for ~1 s of 10 ms steps, at the end of the run: a burst */
    rm_observe *o = feed(SLOW_WORKER, 200, 100, 2.0, 0.01);
    char *s = summary_of(o);
    rmt_assert_contains(s, "\"stragglers\": []");
    free(s);
    rm_observe_destroy(o);

    /* 2x from step 60 for ~4.4 s: named, worker 1 */
    o = feed(SLOW_WORKER, 500, 60, 2.0, 0.01);
    s = summary_of(o);
    rmt_assert_contains(s, "\"stragglers\": [{\"worker\": 1, \"rank\": 2");
    free(s);
    rm_observe_destroy(o);
}
END_TEST

START_TEST(a_slowdown_names_shared_memory_on_one_host_not_the_network)
{
    cfg.slowdown_window_steps = 100;
    cfg.slowdown_threshold = 1.5;
    /* from step 150 the reduction grows the step 3x for 2.5 s */
    rm_observe *o = feed(SLOW_REDUCTION, 400, 150, 3.0, 0.01);
    char *s = summary_of(o);
    rmt_assert_contains(s, "\"cause\": \"shared memory\"");
    ck_assert_ptr_null(strstr(s, "network"));
    free(s);
    rm_observe_destroy(o);
}
END_TEST

static Suite *rank0_suite(void)
{
    Suite *s = suite_create("rank0");
    TCase *tc = tcase_create("watch");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, hang_names_the_silent_worker_that_got_least_far);
    tcase_add_test(tc, hang_on_a_host_that_answers_is_not_a_lost_host);
    tcase_add_test(tc, nonfinite_policies_give_their_verdicts);
    tcase_add_test(tc, a_lock_taken_over_stops_the_job);
    tcase_add_test(tc, roster_names_and_hosts);
    suite_add_tcase(s, tc);
    TCase *det = tcase_create("detectors");
    tcase_add_checked_fixture(det, setup, teardown);
    tcase_set_timeout(det, 60);
    tcase_add_test(det, a_worker_slow_for_seconds_is_named_a_short_burst_is_not);
    tcase_add_test(det, a_slowdown_names_shared_memory_on_one_host_not_the_network);
    suite_add_tcase(s, det);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(rank0_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
