/* ringmaster-coordinator: MPI rank 0 of a job. Owns the step counter and
 * the data cursor, hands every worker its slice of each global batch ahead
 * of time, gathers per-step reports and evaluations, writes the run
 * directory and ends the job cleanly or, on a fatal error anywhere, ends it
 * with the reason and the rank.
 *
 * Each concern is a module that owns its state and answers with a
 * verdict; this loop is the one place that acts on a verdict:
 *   handshake.c   every rank proves it runs the same job (into roster.c)
 *   assign.c      which samples each worker trains on; what follows a step
 *   metrics.c     metrics.jsonl, eval.jsonl, progress, summary.json
 *   observe.c     per-worker figures, stragglers, slowdowns, /metrics, traces
 *   watch.c       the run lock, hangs, non-finite steps, checkpoint outcomes
 *   ckpt_coord.c  the checkpoint commit */
#include "assign.h"
#include "ckpt_coord.h"
#include "ckpt_fence.h"
#include "fsutil.h"
#include "config.h"
#include "crypto.h"
#include "exit_codes.h"
#include "handshake.h"
#include "json.h"
#include "log.h"
#include "metrics.h"
#include "model.h"
#include "mpi_check.h"
#include "observe.h"
#include "progress.h"
#include "protocol.h"
#include "resume.h"
#include "roster.h"
#include "run_dir.h"
#include "timer.h"
#include "verdict.h"
#include "watch.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define HANDSHAKE_TIMEOUT_S 120.0

/* SIGUSR1 and SIGTERM (a requeue: exit 75) and SIGUSR2 (an interrupt:
 * exit 130; `ringmaster run` turns a Ctrl-C into it) ask for a checkpoint
 * at the next step boundary and a stop. The first request decides. */
static volatile sig_atomic_t stop_requested;

static void on_stop_signal(int sig)
{
    if (!stop_requested)
        stop_requested = sig;
}

/* The modules of rank 0, composed. Only this file sees the whole. */
typedef struct coordinator {
    rm_config cfg;
    rm_dataset_facts facts;
    rm_model model;
    int workers;
    long total_steps, first_step;
    long generation; /* this job's checkpoint generation (ckpt_fence.h) */
    uint64_t dataset_hash;
    char resume_dir[RM_DIR_CAP];
    rm_run_dir rd;
    rm_progress progress;
    rm_watch watch;
    rm_roster roster;
    rm_ckpt_coord ckpt;
    rm_assign assign;
    rm_observe *obs;
    rm_metrics metrics;
    int step_slots;
} coordinator;

/* Records why the job ends (log and events.jsonl). worker < 0: not a
 * worker's failure. */
static void record_failure(coordinator *c, int worker, long step, const char *reason)
{
    rm_progress_break(&c->progress);
    char who[RM_HOST_CAP + 96];
    if (worker >= 0 && c->roster.info)
        rm_error_log("%s failed at step %ld: %s", rm_roster_name(&c->roster, worker, who, sizeof who), step, reason);
    else
        rm_error_log("%s", reason);
    if (!c->rd.open)
        return;
    const char *host = worker >= 0 && c->roster.info ? c->roster.info[worker].host : rm_log_host();
    int pid = worker >= 0 && c->roster.info ? c->roster.info[worker].pid : (int)getpid();
    char *fields = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&fields, &len);
    if (mem) {
        fprintf(mem, "\"worker\":%d,\"rank\":%d,\"host\":", worker, worker + 1);
        rm_json_string(mem, host);
        fprintf(mem, ",\"pid\":%d,\"step\":%ld,\"reason\":", pid, step);
        rm_json_string(mem, reason);
        fclose(mem);
        rm_run_dir_event(&c->rd, "failure", fields);
        free(fields);
    }
}

/* Acts on a verdict to stop: records it, then ends every rank of the job
 * with its status. The only way rank 0 ends a running job early. */
static void __attribute__((noreturn)) end_job(coordinator *c, const rm_verdict *v)
{
    record_failure(c, v->worker, v->step, v->reason);
    rm_run_dir_close(&c->rd);
    rm_watch_release(&c->watch);
    MPI_Abort(MPI_COMM_WORLD, v->exit_code);
    exit(v->exit_code);
}

/* A library error where the job cannot go on: storage errors say so by
 * their status. */
static void fail(coordinator *c, long step, const rm_error *err)
{
    rm_verdict v;
    rm_verdict_stop(&v, rm_error_is_storage(err) ? RM_EXIT_STORAGE : RM_EXIT_FAILED, -1, step, "%s", err->msg);
    end_job(c, &v);
}

static long steps_done(const coordinator *c)
{
    return c->first_step + c->metrics.steps_done;
}

/* A write to the run directory failed (rm_run_dir keeps the first): the
 * job stops, saying where the model stands. */
static void check_writes(coordinator *c)
{
    if (!c->rd.write_failed)
        return;
    char latest[64] = "none";
    if (c->ckpt.last_committed >= 0)
        rm_ckpt_dir_name(c->ckpt.last_committed, latest, sizeof latest);
    rm_verdict v;
    rm_verdict_stop(&v, rm_error_is_storage(&c->rd.write_error) ? RM_EXIT_STORAGE : RM_EXIT_FAILED, -1, steps_done(c),
                    "%s; stopping the job (every committed checkpoint is intact; the latest is %s). Free space and "
                    "run the same command to resume",
                    c->rd.write_error.msg, latest);
    end_job(c, &v);
}

static void act(coordinator *c, const rm_verdict *v)
{
    if (v->stop)
        end_job(c, v);
}

/* Handles one message; RM_ERR means the job must end (err says why). */
static int handle_message(coordinator *c, const MPI_Status *st, rm_verdict *v, rm_error *err)
{
    int w = st->MPI_SOURCE - 1;
    rm_verdict_go(v);
    switch (st->MPI_TAG) {
    case RM_TAG_REPORT: {
        rm_msg_report r;
        RM_MPI_CHECK(MPI_Recv(&r, sizeof r, MPI_BYTE, st->MPI_SOURCE, RM_TAG_REPORT, MPI_COMM_WORLD, MPI_STATUS_IGNORE),
                     err);
        long completed;
        int nonfinite;
        if (rm_metrics_add_report(&c->metrics, &r, w, &completed, &nonfinite, err) != RM_OK)
            return RM_ERR;
        rm_roster_heard(&c->roster, w, rm_now_s(), 2 * r.step + 2);
        if (r.step + c->assign.ahead < c->assign.end_step &&
            rm_assign_send(&c->assign, w, r.step + c->assign.ahead, err) != RM_OK)
            return RM_ERR;
        if (completed >= 0 && nonfinite)
            return rm_watch_nonfinite(&c->watch, completed, rm_assign_is_skip_step(&c->assign, completed), v, err);
        return RM_OK;
    }
    case RM_TAG_EVAL_RESULT: {
        rm_msg_eval_result r;
        RM_MPI_CHECK(MPI_Recv(&r, sizeof r, MPI_BYTE, st->MPI_SOURCE, RM_TAG_EVAL_RESULT, MPI_COMM_WORLD,
                              MPI_STATUS_IGNORE),
                     err);
        return rm_metrics_add_eval(&c->metrics, &r, err);
    }
    case RM_TAG_PROGRESS: {
        rm_msg_progress p;
        RM_MPI_CHECK(MPI_Recv(&p, sizeof p, MPI_BYTE, st->MPI_SOURCE, RM_TAG_PROGRESS, MPI_COMM_WORLD,
                              MPI_STATUS_IGNORE),
                     err);
        /* a heartbeat during an evaluation comes after the step's report */
        rm_roster_heard(&c->roster, w, rm_now_s(), 2 * p.step + 1);
        return RM_OK;
    }
    case RM_TAG_CKPT_DONE: {
        rm_msg_ckpt_done d;
        RM_MPI_CHECK(MPI_Recv(&d, sizeof d, MPI_BYTE, st->MPI_SOURCE, RM_TAG_CKPT_DONE, MPI_COMM_WORLD,
                              MPI_STATUS_IGNORE),
                     err);
        d.reason[sizeof d.reason - 1] = '\0';
        return rm_watch_ckpt_done(&c->watch, &c->ckpt, &d, c->assign.end_step, c->assign.stopped_on != 0, v, err);
    }
    case RM_TAG_TRACE:
        return rm_observe_receive_trace(c->obs, st->MPI_SOURCE, err);
    case RM_TAG_FATAL: {
        rm_msg_fatal f;
        RM_MPI_CHECK(MPI_Recv(&f, sizeof f, MPI_BYTE, st->MPI_SOURCE, RM_TAG_FATAL, MPI_COMM_WORLD, MPI_STATUS_IGNORE),
                     err);
        f.reason[sizeof f.reason - 1] = '\0';
        rm_verdict_stop(v, RM_EXIT_FAILED, w, f.step, "%s", f.reason);
        return RM_OK;
    }
    default:
        return rm_fail(err, "unexpected message tag %d from rank %d", st->MPI_TAG, st->MPI_SOURCE);
    }
}

/* While no message waits: the checks that need no message. */
static void idle(coordinator *c, int check_lock)
{
    rm_verdict v;
    rm_watch_hang(&c->watch, &c->roster, rm_now_s(), &v);
    act(c, &v);
    if (check_lock) {
        rm_watch_lock(&c->watch, steps_done(c), &v);
        act(c, &v);
    }
    /* Sleep rather than spin: rank 0 shares cores with the workers. */
    nanosleep(&(struct timespec){0, RM_COORD_IDLE_SLEEP_NS}, NULL);
}

static void run_steps(coordinator *c)
{
    rm_error err;
    for (int w = 0; w < c->workers; w++)
        rm_roster_heard(&c->roster, w, rm_now_s(), 0);
    if (rm_assign_start(&c->assign, &err) != RM_OK)
        fail(c, c->first_step, &err);
    while (c->metrics.steps_done < c->assign.end_step - c->first_step ||
           c->metrics.evals_done < c->assign.evals_expected || rm_ckpt_coord_in_flight(&c->ckpt) > 0) {
        int flag;
        MPI_Status st;
        if (MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, MPI_COMM_WORLD, &flag, &st) != MPI_SUCCESS) {
            rm_fail(&err, "MPI_Iprobe failed");
            fail(c, steps_done(c), &err);
        }
        if (!flag) {
            idle(c, 1);
            continue;
        }
        rm_verdict v;
        if (handle_message(c, &st, &v, &err) != RM_OK)
            fail(c, steps_done(c), &err);
        act(c, &v);
        check_writes(c);
    }
    if (rm_run_dir_sync(&c->rd) != RM_OK)
        check_writes(c);
}

/* STOP to every worker, DONE back with the final weights digest, which
 * must be the same on all. */
static void finish(coordinator *c)
{
    rm_error err;
    char stop = 1;
    for (int w = 0; w < c->workers; w++)
        if (MPI_Send(&stop, 1, MPI_BYTE, w + 1, RM_TAG_STOP, MPI_COMM_WORLD) != MPI_SUCCESS) {
            rm_fail(&err, "MPI_Send of STOP to rank %d failed", w + 1);
            fail(c, steps_done(c), &err);
        }
    for (int got = 0; got < c->workers;) {
        int flag;
        MPI_Status st;
        if (MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, MPI_COMM_WORLD, &flag, &st) != MPI_SUCCESS) {
            rm_fail(&err, "MPI_Iprobe failed");
            fail(c, steps_done(c), &err);
        }
        if (!flag) {
            idle(c, 0);
            continue;
        }
        if (st.MPI_TAG != RM_TAG_DONE) {
            rm_verdict v;
            if (handle_message(c, &st, &v, &err) != RM_OK)
                fail(c, steps_done(c), &err);
            act(c, &v);
            continue;
        }
        rm_msg_done d;
        if (MPI_Recv(&d, sizeof d, MPI_BYTE, st.MPI_SOURCE, RM_TAG_DONE, MPI_COMM_WORLD, MPI_STATUS_IGNORE) !=
            MPI_SUCCESS) {
            rm_fail(&err, "MPI_Recv of DONE from worker %d (rank %d) failed", st.MPI_SOURCE - 1, st.MPI_SOURCE);
            fail(c, steps_done(c), &err);
        }
        c->roster.info[st.MPI_SOURCE - 1].weights_digest = d.weights_digest;
        rm_roster_heard(&c->roster, st.MPI_SOURCE - 1, rm_now_s(), 0);
        got++;
    }
    for (int w = 1; w < c->workers; w++)
        if (c->roster.info[w].weights_digest != c->roster.info[0].weights_digest) {
            rm_verdict v;
            rm_verdict_stop(&v, RM_EXIT_FAILED, w, steps_done(c),
                            "ended with different weights than worker 0: replicas diverged");
            end_job(c, &v);
        }
    if (rm_assign_drain(&c->assign, &err) != RM_OK)
        fail(c, steps_done(c), &err);
}

/* Picks up from the newest good checkpoint, if there is one: the first
 * step, the state to load, and logs trimmed back to that step. */
static int find_resume_point(coordinator *c, rm_error *err)
{
    /* This job's generation first: from here no job before it can commit
     * (ckpt_fence.h), so the newest checkpoint found below stays the newest
     * but for this job's own. */
    char root[RM_PATH_CAP];
    rm_config_ckpt_root(&c->cfg, root, sizeof root);
    if (rm_private_dir(root, err) != RM_OK || rm_ckpt_generation_advance(root, &c->generation, err) != RM_OK)
        return RM_ERR;
    rm_resume_point rp;
    if (rm_resume_find(&c->cfg, c->dataset_hash, c->model.n_params, &rp, err) != RM_OK)
        return RM_ERR;
    long committed = -1;
    if (rp.found) {
        c->first_step = rp.manifest.step;
        committed = rp.manifest.step;
        snprintf(c->resume_dir, sizeof c->resume_dir, "%s", rp.dir);
        char path[RM_PATH_CAP + 32], fields[RM_PATH_CAP + 64];
        snprintf(path, sizeof path, "%s/metrics.jsonl", c->rd.path);
        if (rm_resume_trim_log(path, c->first_step, err) != RM_OK)
            return RM_ERR;
        snprintf(path, sizeof path, "%s/eval.jsonl", c->rd.path);
        if (rm_resume_trim_log(path, c->first_step, err) != RM_OK)
            return RM_ERR;
        /* The logs were rewritten: reopen the appenders on the new files. */
        rm_run_dir_close(&c->rd);
        if (rm_run_dir_open(&c->rd, &c->cfg, err) != RM_OK)
            return RM_ERR;
        snprintf(fields, sizeof fields, "\"step\":%ld,\"dir\":\"%s\",\"world_size_then\":%d,\"generation\":%ld",
                 c->first_step, rp.dir, rp.manifest.world_size, c->generation);
        rm_run_dir_event(&c->rd, "resume", fields);
        if (c->cfg.verbosity != RM_VERBOSITY_QUIET)
            rm_info("resuming from %s (step %ld of %ld, written by %d workers, now %d; generation %ld)", rp.dir,
                    c->first_step, c->total_steps, rp.manifest.world_size, c->workers, c->generation);
    }
    rm_resume_free(&rp);
    if (c->first_step >= c->total_steps)
        return rm_fail(err,
                       "the newest checkpoint is at the last step (%ld): training is complete; export the model "
                       "with `ringmaster ckpt export %s OUT.safetensors`",
                       c->first_step, c->rd.path);
    return rm_ckpt_coord_init(&c->ckpt, &c->cfg, &c->model, c->workers, c->facts.train_samples, c->dataset_hash,
                              committed, c->generation, err);
}

/* Everything before the handshake: config, locks, model, the dataset's
 * order, the run directory and the resume point. */
static int setup(coordinator *c, const char *config_path, char *const *sets, int n_sets, rm_error *err)
{
    if (rm_config_load(config_path, sets, n_sets, &c->cfg, &c->facts, err) != RM_OK ||
        rm_security_load(c->cfg.key_file, err) != RM_OK) /* to verify sealed checkpoints */
        return RM_ERR;
    if (c->cfg.workers != c->workers)
        return rm_fail(err, "the job was launched with %d worker ranks but launch.workers is %ld", c->workers,
                       c->cfg.workers);
    if (!c->cfg.run_dir[0])
        rm_run_dir_default(config_path, c->cfg.run_dir, sizeof c->cfg.run_dir);
    if (rm_watch_lock_run_dir(&c->watch, &c->cfg, err) != RM_OK)
        return RM_ERR;
    rm_watch_attach(&c->watch, &c->rd, &c->progress);
    if (rm_model_init(&c->model, &c->cfg, &c->facts, err) != RM_OK)
        return RM_ERR;
    c->total_steps = rm_config_total_steps(&c->cfg, c->facts.train_samples);
    /* a step's reports can trail its assignment by the steps handed out ahead */
    c->step_slots = (int)c->cfg.prefetch_batches + 4;
    rm_progress_init(&c->progress, c->total_steps, c->cfg.progress_every_steps, c->cfg.verbosity);
    if (rm_roster_init(&c->roster, c->workers, err) != RM_OK)
        return RM_ERR;
    /* the dataset's hash (from the shard index the sampler reads) keys the resume */
    rm_assign_setup as = {
        .cfg = &c->cfg,
        .facts = &c->facts,
        .workers = c->workers,
        .total_steps = c->total_steps,
        .supervised = c->watch.supervised,
        .stop_request = &stop_requested,
        .ckpt = &c->ckpt,
        .progress = &c->progress,
    };
    if (rm_assign_init(&c->assign, &as, &c->dataset_hash, err) != RM_OK)
        return RM_ERR;
    if (rm_run_dir_open(&c->rd, &c->cfg, err) != RM_OK || find_resume_point(c, err) != RM_OK)
        return RM_ERR;
    /* the resume decided where training starts and which steps it skips */
    long *skips;
    int n_skips;
    if (rm_resume_read_skips(c->rd.path, &skips, &n_skips, err) != RM_OK)
        return RM_ERR;
    rm_assign_begin(&c->assign, c->first_step, skips, n_skips);
    return RM_OK;
}

/* The modules that need the workers' HELLOs (hosts, transport). */
static int start_modules(coordinator *c, rm_error *err)
{
    rm_observe_setup os = {
        .cfg = &c->cfg,
        .roster = &c->roster,
        .rd = &c->rd,
        .progress = &c->progress,
        .first_step = c->first_step,
        .total_steps = c->total_steps,
        .step_slots = c->step_slots,
    };
    if (!(c->obs = rm_observe_create(&os, err)))
        return RM_ERR;
    rm_metrics_setup ms = {
        .cfg = &c->cfg,
        .facts = &c->facts,
        .model = &c->model,
        .roster = &c->roster,
        .rd = &c->rd,
        .progress = &c->progress,
        .obs = c->obs,
        .first_step = c->first_step,
        .total_steps = c->total_steps,
        .step_slots = c->step_slots,
    };
    return rm_metrics_init(&c->metrics, &ms, err);
}

static void print_start(coordinator *c)
{
    if (c->cfg.verbosity == RM_VERBOSITY_QUIET)
        return;
    printf("ringmaster: resolved config (%s/config.yaml)\n", c->rd.path);
    printf("---\n");
    rm_config_write(&c->cfg, stdout);
    printf("---\n");
    char model[256];
    rm_model_describe(&c->model, model, sizeof model);
    printf("model: %s, %ld training samples", model, c->facts.train_samples);
    if (c->model.positions > 1)
        printf(" (%ld tokens each)", c->model.positions);
    printf(", %ld steps of %ld samples (%ld per worker", c->total_steps, c->cfg.global_batch, c->assign.local_batch);
    if (c->cfg.grad_accum > 1)
        printf(", %ld micro-steps of %ld", c->cfg.grad_accum, c->assign.local_batch / c->cfg.grad_accum);
    printf("), %d workers, backend %s\n", c->workers, rm_backend_name(c->cfg.backend));
    fflush(stdout);
}

/* The job cannot start (bad config, a worker that cannot set up, ...):
 * every worker is told why and every rank ends normally. A restart cannot
 * cure it, but a failed write says so by its own status. */
static int refuse_start(coordinator *c, int set_up, const rm_error *err)
{
    if (set_up)
        record_failure(c, -1, -1, err->msg);
    int code = rm_error_is_storage(err) ? RM_EXIT_STORAGE : RM_EXIT_FATAL;
    rm_error e2;
    if (rm_handshake_refuse(c->workers, err->msg, code, &e2) != RM_OK) {
        rm_verdict v;
        rm_verdict_stop(&v, code, -1, -1, "%s", e2.msg);
        end_job(c, &v);
    }
    rm_run_dir_close(&c->rd);
    rm_watch_release(&c->watch);
    MPI_Finalize();
    return code;
}

static void send_start(coordinator *c)
{
    rm_msg_start start = {.ok = 1, .assign_ahead = c->assign.ahead, .total_steps = c->total_steps,
                          .first_step = c->first_step};
    snprintf(start.resume_dir, sizeof start.resume_dir, "%s", c->resume_dir);
    snprintf(start.ckpt_root, sizeof start.ckpt_root, "%s", c->ckpt.root);
    start.generation = c->generation;
    for (int w = 0; w < c->workers; w++)
        MPI_Send(&start, sizeof start, MPI_BYTE, w + 1, RM_TAG_START, MPI_COMM_WORLD);
}

/* The job ran to its end, or to the checkpoint a stop signal asked for. */
static int conclude(coordinator *c, double t0)
{
    rm_error err;
    if (rm_observe_write_trace(c->obs, &err) != RM_OK)
        rm_error_log("the timeline was not written: %s", err.msg);
    int exit_code = RM_EXIT_OK;
    int sig = c->assign.stopped_on;
    if (sig) {
        /* stopped after the checkpoint of end_step: an outcome, not a failure */
        exit_code = rm_stop_exit_code(sig);
        char fields[96];
        snprintf(fields, sizeof fields, "\"status\":\"%s\",\"step\":%ld",
                 exit_code == RM_EXIT_REQUEUE ? "preempted" : "interrupted", c->assign.end_step);
        rm_run_dir_event(&c->rd, "end", fields);
        if (!c->watch.supervised) /* ringmaster run says how to resume */
            rm_info("stopped on %s after step %ld with a checkpoint (exit %d%s)", rm_signal_name(sig),
                    c->assign.end_step, exit_code, exit_code == RM_EXIT_REQUEUE ? ": requeue me" : "");
    } else {
        /* run_end first: summary.json records the trail's head with it */
        rm_run_dir_event(&c->rd, "end", "\"status\":\"completed\"");
        check_writes(c);
        rm_run_outcome out = {
            .wall_s = rm_now_s() - t0,
            .weights_digest = c->roster.info[0].weights_digest,
            .ckpt_committed = c->ckpt.committed,
            .ckpt_failed = c->ckpt.failed,
        };
        if (rm_metrics_write_summary(&c->metrics, &out, &err) != RM_OK)
            fail(c, c->total_steps, &err);
    }
    if (rm_run_dir_sync(&c->rd) != RM_OK)
        check_writes(c);
    check_writes(c);
    return exit_code;
}

static void usage(void)
{
    fprintf(stderr, "usage: ringmaster-coordinator CONFIG [--set section.key=value ...]\n"
                    "Started by mpirun as rank 0 next to N ringmaster-worker ranks.\n");
}

int main(int argc, char **argv)
{
    int provided, rank, size;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    MPI_Comm unused;
    MPI_Comm_split(MPI_COMM_WORLD, MPI_UNDEFINED, rank, &unused); /* matches the workers' split */
    rm_log_set_identity("coordinator");
    struct sigaction sa = {0};
    sa.sa_handler = on_stop_signal;
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGUSR2, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    static coordinator c;
    c.workers = size - 1;
    double t0 = rm_now_s();
    const char *config_path = NULL;
    char *sets[64];
    int n_sets = 0;
    rm_verdict bad;
    rm_verdict_go(&bad);
    for (int i = 1; i < argc && !bad.stop; i++) {
        if (strcmp(argv[i], "--set") == 0 && i + 1 < argc && n_sets < 64)
            sets[n_sets++] = argv[++i];
        else if (!config_path && argv[i][0] != '-')
            config_path = argv[i];
        else
            rm_verdict_stop(&bad, RM_EXIT_FAILED, -1, -1, "bad command line");
    }
    if (rank != 0)
        rm_verdict_stop(&bad, RM_EXIT_FAILED, -1, -1,
                        "ringmaster-coordinator must be MPI rank 0 (list it first on the mpirun line)");
    else if (size < 2)
        rm_verdict_stop(&bad, RM_EXIT_FAILED, -1, -1, "no workers: start ringmaster-worker ranks after the coordinator");
    else if (!bad.stop && !config_path)
        rm_verdict_stop(&bad, RM_EXIT_FAILED, -1, -1, "no config given");
    if (bad.stop) {
        usage();
        end_job(&c, &bad);
    }

    rm_error err;
    int set_up = setup(&c, config_path, sets, n_sets, &err) == RM_OK;
    if (!set_up)
        rm_error_log("%s", err.msg);
    else
        print_start(&c);
    rm_handshake_expect want = {.config_hash = set_up ? rm_config_hash(&c.cfg) : 0,
                                .n_params = c.model.n_params,
                                .timeout_s = HANDSHAKE_TIMEOUT_S};
    if (!set_up || rm_handshake_run(&c.roster, &want, &err) != RM_OK || start_modules(&c, &err) != RM_OK)
        return refuse_start(&c, set_up, &err);
    if (c.cfg.verbosity != RM_VERBOSITY_QUIET) {
        printf("optimizer state: %.3f MiB per worker (the most any worker holds%s)\n",
               (double)c.roster.optimizer_state_bytes / (1024.0 * 1024.0), c.cfg.zero ? ", ZeRO-1" : "");
        if (c.roster.memory_bytes > 0)
            printf("memory: %.1f MiB of %s per worker at start-up (weights, gradients, optimizer state, "
                   "activations; the most of any worker)\n",
                   (double)c.roster.memory_bytes / (1024.0 * 1024.0),
                   c.roster.backend == RM_BACKEND_GPU ? "device memory" : "host memory");
        fflush(stdout);
    }
    send_start(&c);
    rm_roster_write_ranks(&c.roster, c.rd.path);
    rm_run_dir_event(&c.rd, "start", "");

    run_steps(&c);
    finish(&c);
    int exit_code = conclude(&c, t0);
    rm_run_dir_close(&c.rd);
    rm_watch_release(&c.watch);
    rm_assign_free(&c.assign);
    rm_metrics_free(&c.metrics);
    rm_roster_free(&c.roster);
    rm_ckpt_coord_free(&c.ckpt);
    rm_observe_destroy(c.obs);
    MPI_Finalize();
    return exit_code;
}
