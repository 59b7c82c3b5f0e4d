/* ringmaster-coordinator: MPI rank 0 of a job. Owns the step counter and
 * the data cursor, hands every worker its slice of each global batch ahead
 * of time, gathers per-step reports and evaluations, writes the run
 * directory and ends the job cleanly or, on a fatal error anywhere, ends it
 * with the reason and the rank. */
#include "coordinator.h"
#include "config.h"
#include "crypto.h"
#include "exit_codes.h"
#include "fsutil.h"
#include "hash.h"
#include "json.h"
#include "log.h"
#include "model.h"
#include "mpi_check.h"
#include "order.h"
#include "progress.h"
#include "protocol.h"
#include "resume.h"
#include "run_dir.h"
#include "shard.h"
#include "timer.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

volatile sig_atomic_t coordinator_stop_requested;

/* SIGUSR1 and SIGTERM (a requeue: exit 75) and SIGUSR2 (an interrupt:
 * exit 130; `ringmaster run` turns a Ctrl-C into it) ask for a checkpoint
 * at the next step boundary and a stop. The first request decides. */
static void on_stop_signal(int sig)
{
    if (!coordinator_stop_requested)
        coordinator_stop_requested = sig;
}

static const char *signal_name(int sig)
{
    switch (sig) {
    case SIGUSR1:
        return "SIGUSR1";
    case SIGUSR2:
        return "SIGUSR2";
    case SIGTERM:
        return "SIGTERM";
    case SIGINT:
        return "SIGINT";
    default:
        return "a signal";
    }
}

int coordinator_stop_exit_code(int sig)
{
    return sig == SIGUSR2 || sig == SIGINT ? RM_EXIT_INTERRUPTED : RM_EXIT_REQUEUE;
}

int coordinator_is_skip_step(const coordinator *c, long step)
{
    for (int i = 0; i < c->n_skip_steps; i++)
        if (c->skip_steps[i] == step)
            return 1;
    return 0;
}

/* Decides what follows `step` (evaluate, checkpoint, stop), once. */
static int decide_flags(coordinator *c, long step, rm_error *err)
{
    step_flags *slot = &c->flag_ring[step % c->assign_ahead];
    if (slot->step == step)
        return slot->flags;
    int flags = 0;
    int last = step == c->end_step - 1;
    if (!last && coordinator_stop_requested && !c->stopping_on_signal) {
        /* The first step not yet handed out becomes the last: checkpoint
         * after it and stop, so the job can be resumed or requeued. Under
         * `ringmaster run`, which says so itself, quietly. */
        int sig = (int)coordinator_stop_requested;
        if (!c->supervised) {
            rm_progress_break(&c->progress);
            rm_warn("%s: checkpointing after step %ld and stopping (exit %d%s)", signal_name(sig), step + 1,
                    coordinator_stop_exit_code(sig),
                    coordinator_stop_exit_code(sig) == RM_EXIT_REQUEUE ? ": requeue me" : "");
        }
        c->stopping_on_signal = sig;
        c->end_step = step + 1;
        last = 1;
    }
    if (c->cfg.eval_split[0] && !c->stopping_on_signal &&
        (last || (c->cfg.eval_every > 0 && (step + 1) % c->cfg.eval_every == 0))) {
        flags |= RM_ASSIGN_EVAL_AFTER;
        c->evals_expected++;
    }
    /* The last step always ends with a checkpoint: a finished run leaves
     * its model in the checkpoint root, periodic checkpoints or not. */
    if (last)
        flags |= RM_ASSIGN_LAST | RM_ASSIGN_CHECKPOINT_AFTER;
    if (c->cfg.ckpt_every_steps > 0 && (step + 1) % c->cfg.ckpt_every_steps == 0)
        flags |= RM_ASSIGN_CHECKPOINT_AFTER;
    if (c->cfg.ckpt_every_seconds > 0 && rm_now_s() - c->last_ckpt_request_s >= c->cfg.ckpt_every_seconds)
        flags |= RM_ASSIGN_CHECKPOINT_AFTER;
    if (coordinator_is_skip_step(c, step))
        flags |= RM_ASSIGN_SKIP_UPDATE;
    if (flags & RM_ASSIGN_CHECKPOINT_AFTER) {
        c->last_ckpt_request_s = rm_now_s();
        if (rm_ckpt_coord_expect(&c->ckpt, step + 1, err) != RM_OK)
            return -1;
    }
    slot->step = step;
    slot->flags = flags;
    c->flags_decided_through = step;
    return flags;
}

/* Sends worker w its slice of `step`, reusing the ring slot once the
 * previous message in it has been delivered. */
static int send_assignment(coordinator *c, int w, long step, rm_error *err)
{
    int flags = decide_flags(c, step, err);
    if (flags < 0)
        return RM_ERR;
    int slot = (int)(step % c->assign_ahead);
    size_t at = ((size_t)w * (size_t)c->assign_ahead + (size_t)slot);
    MPI_Request *req = &c->send_reqs[at];
    RM_MPI_CHECK(MPI_Wait(req, MPI_STATUS_IGNORE), err);
    uint8_t *buf = c->send_bufs + at * c->send_buf_bytes;
    long position = rm_order_slice_start(step, c->cfg.global_batch, w, c->workers);
    rm_msg_assign a = {
        .step = step,
        .epoch = position / c->facts.train_samples,
        .position = position,
        .count = (int32_t)c->local_batch,
        .flags = flags,
    };
    memcpy(buf, &a, sizeof a);
    if (rm_sampler_fill(&c->sampler, position, c->local_batch, (uint32_t *)(buf + sizeof a), err) != RM_OK)
        return RM_ERR;
    RM_MPI_CHECK(MPI_Isend(buf, (int)c->send_buf_bytes, MPI_BYTE, w + 1, RM_TAG_ASSIGN, MPI_COMM_WORLD, req), err);
    return RM_OK;
}

void coordinator_record_fatal(coordinator *c, int worker, long step, const char *reason)
{
    rm_progress_break(&c->progress);
    const char *host = worker >= 0 && c->info ? c->info[worker].host : rm_log_host();
    int pid = worker >= 0 && c->info ? c->info[worker].pid : (int)getpid();
    if (worker >= 0)
        rm_error_log("worker %d (rank %d, host %s, pid %d) failed at step %ld: %s", worker, worker + 1, host, pid,
                     step, reason);
    else
        rm_error_log("%s", reason);
    if (c->rd.open) {
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
}

/* Ends every rank of the job. Only called from the coordinator's top level. */
void coordinator_abort_code(coordinator *c, int worker, long step, const char *reason, int code)
{
    coordinator_record_fatal(c, worker, step, reason);
    rm_run_dir_close(&c->rd);
    rm_run_lock_release(&c->ckpt_lock);
    rm_run_lock_release(&c->run_lock);
    MPI_Abort(MPI_COMM_WORLD, code);
    exit(code);
}

/* A write to the run directory failed (rm_run_dir keeps the first): the job
 * stops, saying where the model stands. */
static void abort_on_write_failure(coordinator *c)
{
    char reason[sizeof c->rd.write_error.msg + 256], latest[64] = "none";
    if (c->ckpt.last_committed >= 0)
        rm_ckpt_dir_name(c->ckpt.last_committed, latest, sizeof latest);
    snprintf(reason, sizeof reason,
             "%s; stopping the job (every committed checkpoint is intact; the latest is %s). Free space and run "
             "the same command to resume",
             c->rd.write_error.msg, latest);
    coordinator_abort_code(c, -1, c->first_step + c->steps_done, reason,
                           rm_error_is_storage(&c->rd.write_error) ? RM_EXIT_STORAGE : RM_EXIT_FAILED);
}

static void coordinator_abort(coordinator *c, int worker, long step, const char *reason)
{
    coordinator_abort_code(c, worker, step, reason, RM_EXIT_FAILED);
}

/* Handles one message; RM_ERR means the job must end (err says why). */
static int handle_message(coordinator *c, const MPI_Status *st, rm_error *err)
{
    int w = st->MPI_SOURCE - 1;
    switch (st->MPI_TAG) {
    case RM_TAG_REPORT: {
        rm_msg_report r;
        RM_MPI_CHECK(MPI_Recv(&r, sizeof r, MPI_BYTE, st->MPI_SOURCE, RM_TAG_REPORT, MPI_COMM_WORLD, MPI_STATUS_IGNORE),
                     err);
        step_acc *s = &c->steps[r.step % c->n_step_slots];
        if (s->step != r.step) {
            if (s->step >= 0)
                return rm_fail(err, "worker %d reported step %lld while step %ld is incomplete", w,
                               (long long)r.step, s->step);
            s->step = r.step;
        }
        metrics_add_report(c, s, &r, w);
        c->info[w].last_heard_s = rm_now_s();
        c->info[w].progress = 2 * r.step + 2;
        if (r.step + c->assign_ahead < c->end_step && send_assignment(c, w, r.step + c->assign_ahead, err) != RM_OK)
            return RM_ERR;
        if (s->reports == c->workers) {
            long step = s->step;
            int nonfinite = s->nonfinite;
            metrics_complete_step(c, s);
            if (nonfinite)
                return watch_nonfinite(c, step, err);
        }
        return RM_OK;
    }
    case RM_TAG_EVAL_RESULT: {
        rm_msg_eval_result r;
        RM_MPI_CHECK(MPI_Recv(&r, sizeof r, MPI_BYTE, st->MPI_SOURCE, RM_TAG_EVAL_RESULT, MPI_COMM_WORLD,
                              MPI_STATUS_IGNORE),
                     err);
        return metrics_add_eval(c, &r, err);
    }
    case RM_TAG_PROGRESS: {
        rm_msg_progress p;
        RM_MPI_CHECK(MPI_Recv(&p, sizeof p, MPI_BYTE, st->MPI_SOURCE, RM_TAG_PROGRESS, MPI_COMM_WORLD,
                              MPI_STATUS_IGNORE),
                     err);
        c->info[w].last_heard_s = rm_now_s();
        /* a heartbeat during an evaluation comes after the step's report */
        if (2 * p.step + 1 > c->info[w].progress)
            c->info[w].progress = 2 * p.step + 1;
        return RM_OK;
    }
    case RM_TAG_CKPT_DONE: {
        rm_msg_ckpt_done d;
        RM_MPI_CHECK(MPI_Recv(&d, sizeof d, MPI_BYTE, st->MPI_SOURCE, RM_TAG_CKPT_DONE, MPI_COMM_WORLD,
                              MPI_STATUS_IGNORE),
                     err);
        d.reason[sizeof d.reason - 1] = '\0';
        return watch_ckpt_done(c, &d, err);
    }
    case RM_TAG_TRACE:
        return observe_receive_trace(c->obs, st->MPI_SOURCE, err);
    case RM_TAG_FATAL: {
        rm_msg_fatal f;
        RM_MPI_CHECK(MPI_Recv(&f, sizeof f, MPI_BYTE, st->MPI_SOURCE, RM_TAG_FATAL, MPI_COMM_WORLD, MPI_STATUS_IGNORE),
                     err);
        f.reason[sizeof f.reason - 1] = '\0';
        coordinator_abort(c, w, f.step, f.reason);
        return RM_ERR;
    }
    default:
        return rm_fail(err, "unexpected message tag %d from rank %d", st->MPI_TAG, st->MPI_SOURCE);
    }
}

static int run_steps(coordinator *c, rm_error *err)
{
    for (int w = 0; w < c->workers; w++)
        c->info[w].last_heard_s = rm_now_s();
    for (long step = c->first_step; step < c->first_step + c->assign_ahead && step < c->end_step; step++)
        for (int w = 0; w < c->workers; w++)
            if (send_assignment(c, w, step, err) != RM_OK)
                return RM_ERR;
    while (c->steps_done < c->end_step - c->first_step || c->evals_done < c->evals_expected ||
           rm_ckpt_coord_in_flight(&c->ckpt) > 0) {
        int flag;
        MPI_Status st;
        RM_MPI_CHECK(MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, MPI_COMM_WORLD, &flag, &st), err);
        if (!flag) {
            /* Sleep rather than spin: the coordinator shares cores with workers. */
            watch_check_hang(c);
            watch_check_lock(c);
            nanosleep(&(struct timespec){0, RM_COORD_IDLE_SLEEP_NS}, NULL);
            continue;
        }
        if (handle_message(c, &st, err) != RM_OK)
            return RM_ERR;
        if (c->rd.write_failed)
            abort_on_write_failure(c);
    }
    if (rm_run_dir_sync(&c->rd) != RM_OK)
        abort_on_write_failure(c);
    return RM_OK;
}

/* STOP to every worker, DONE back with the final weights digest. */
static int finish(coordinator *c, rm_error *err)
{
    char stop = 1;
    for (int w = 0; w < c->workers; w++)
        RM_MPI_CHECK(MPI_Send(&stop, 1, MPI_BYTE, w + 1, RM_TAG_STOP, MPI_COMM_WORLD), err);
    for (int got = 0; got < c->workers;) {
        int flag;
        MPI_Status st;
        RM_MPI_CHECK(MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, MPI_COMM_WORLD, &flag, &st), err);
        if (!flag) {
            watch_check_hang(c);
            nanosleep(&(struct timespec){0, RM_COORD_IDLE_SLEEP_NS}, NULL);
            continue;
        }
        if (st.MPI_TAG != RM_TAG_DONE) {
            if (handle_message(c, &st, err) != RM_OK)
                return RM_ERR;
            continue;
        }
        rm_msg_done d;
        RM_MPI_CHECK(MPI_Recv(&d, sizeof d, MPI_BYTE, st.MPI_SOURCE, RM_TAG_DONE, MPI_COMM_WORLD, MPI_STATUS_IGNORE),
                     err);
        c->info[st.MPI_SOURCE - 1].weights_digest = d.weights_digest;
        c->info[st.MPI_SOURCE - 1].last_heard_s = rm_now_s();
        got++;
    }
    for (int w = 1; w < c->workers; w++)
        if (c->info[w].weights_digest != c->info[0].weights_digest)
            return rm_fail(err, "worker %d (host %s) ended with different weights than worker 0: replicas diverged", w,
                           c->info[w].host);
    for (int i = 0; i < c->workers * c->assign_ahead; i++)
        RM_MPI_CHECK(MPI_Wait(&c->send_reqs[i], MPI_STATUS_IGNORE), err);
    return RM_OK;
}

/* Picks up from the newest good checkpoint, if there is one: the first
 * step, the state to load, and logs trimmed back to that step. */
static int find_resume_point(coordinator *c, rm_error *err)
{
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
        snprintf(fields, sizeof fields, "\"step\":%ld,\"dir\":\"%s\",\"world_size_then\":%d", c->first_step,
                 rp.dir, rp.manifest.world_size);
        rm_run_dir_event(&c->rd, "resume", fields);
        if (c->cfg.verbosity != RM_VERBOSITY_QUIET)
            rm_info("resuming from %s (step %ld of %ld, written by %d workers, now %d)", rp.dir, c->first_step,
                    c->total_steps, rp.manifest.world_size, c->workers);
    }
    rm_resume_free(&rp);
    if (c->first_step >= c->total_steps)
        return rm_fail(err,
                       "the newest checkpoint is at the last step (%ld): training is complete; export the model "
                       "with `ringmaster ckpt export %s OUT.safetensors`",
                       c->first_step, c->rd.path);
    if (rm_resume_read_skips(c->rd.path, &c->skip_steps, &c->n_skip_steps, err) != RM_OK)
        return RM_ERR;
    c->last_ckpt_request_s = rm_now_s();
    return rm_ckpt_coord_init(&c->ckpt, &c->cfg, &c->model, c->workers, c->facts.train_samples, c->dataset_hash,
                              committed, err);
}

/* One job per run directory: under `ringmaster run` the lock is the
 * supervisor's (checked here: it passes its token); launched by hand, the
 * coordinator takes the run directory's lock, and checkpoint.dir's, itself
 * before it writes anything. */
static int lock_run_dir(coordinator *c, rm_error *err)
{
    const char *token = getenv("RINGMASTER_RUN_LOCK");
    c->supervised = token && *token;
    c->lock_checked_s = rm_now_s();
    if (c->supervised) {
        snprintf(c->lock_token, sizeof c->lock_token, "%s", token);
        return rm_run_lock_check_token(c->cfg.run_dir, token, err);
    }
    int state;
    if (rm_run_dir_inspect(c->cfg.run_dir, &state, err) != RM_OK || state == RM_RUN_DIR_FOREIGN)
        return RM_ERR;
    if (rm_private_dir(c->cfg.run_dir, err) != RM_OK ||
        rm_run_lock_acquire(&c->run_lock, c->cfg.run_dir, "run directory", 0, err) != RM_OK)
        return RM_ERR;
    if (c->cfg.ckpt_dir[0] && (rm_private_dir(c->cfg.ckpt_dir, err) != RM_OK ||
                               rm_run_lock_acquire(&c->ckpt_lock, c->cfg.ckpt_dir, "checkpoint directory", 0, err) !=
                                   RM_OK))
        return RM_ERR;
    return RM_OK;
}

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
    if (lock_run_dir(c, err) != RM_OK)
        return RM_ERR;
    if (rm_model_init(&c->model, &c->cfg, &c->facts, err) != RM_OK)
        return RM_ERR;
    c->local_batch = c->cfg.global_batch / c->workers;
    c->total_steps = rm_config_total_steps(&c->cfg, c->facts.train_samples);
    c->end_step = c->total_steps;
    c->assign_ahead = (int)c->cfg.prefetch_batches + 2;
    c->n_step_slots = c->assign_ahead + 2;
    c->flags_decided_through = -1;
    c->flag_ring = malloc((size_t)c->assign_ahead * sizeof *c->flag_ring);
    c->info = calloc((size_t)c->workers, sizeof *c->info);
    c->steps = calloc((size_t)c->n_step_slots, sizeof *c->steps);
    c->send_buf_bytes = sizeof(rm_msg_assign) + (size_t)c->local_batch * sizeof(uint32_t);
    size_t n_bufs = (size_t)c->workers * (size_t)c->assign_ahead;
    c->send_bufs = malloc(n_bufs * c->send_buf_bytes);
    c->send_reqs = malloc(n_bufs * sizeof *c->send_reqs);
    if (!c->info || !c->steps || !c->send_bufs || !c->send_reqs || !c->flag_ring)
        return rm_fail(err, "out of memory");
    for (int i = 0; i < c->assign_ahead; i++)
        c->flag_ring[i].step = -1;
    for (size_t i = 0; i < n_bufs; i++)
        c->send_reqs[i] = MPI_REQUEST_NULL;
    for (int i = 0; i < c->n_step_slots; i++)
        c->steps[i].step = -1;
    for (int i = 0; i < 4; i++)
        c->evals[i].step = -1;

    char dir[2 * RM_PATH_CAP];
    snprintf(dir, sizeof dir, "%s/%s", c->cfg.data_dir, c->cfg.train_split);
    rm_shard_index idx;
    if (rm_shard_index_read(dir, &idx, err) != RM_OK)
        return RM_ERR;
    /* token splits: samples are windows of the model's context */
    if (rm_shard_index_set_context(&idx, dir, c->cfg.model_context, err) != RM_OK) {
        rm_shard_index_free(&idx);
        return RM_ERR;
    }
    c->dataset_hash = idx.index_hash;
    long *sizes = malloc((size_t)idx.n_shards * sizeof *sizes);
    int rc = sizes ? RM_OK : rm_fail(err, "out of memory");
    for (int s = 0; sizes && s < idx.n_shards; s++)
        sizes[s] = idx.shards[s].samples;
    if (rc == RM_OK)
        rc = rm_sampler_init(&c->sampler, sizes, idx.n_shards, (uint64_t)c->cfg.seed, c->cfg.shuffle_window_shards,
                             err);
    free(sizes);
    rm_shard_index_free(&idx);
    if (rc != RM_OK)
        return RM_ERR;
    if (rm_run_dir_open(&c->rd, &c->cfg, err) != RM_OK)
        return RM_ERR;
    return find_resume_point(c, err);
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
    printf(", %ld steps of %ld samples (%ld per worker", c->total_steps, c->cfg.global_batch, c->local_batch);
    if (c->cfg.grad_accum > 1)
        printf(", %ld micro-steps of %ld", c->cfg.grad_accum, c->local_batch / c->cfg.grad_accum);
    printf("), %d workers, backend %s\n", c->workers, rm_backend_name(c->cfg.backend));
    fflush(stdout);
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
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--set") == 0 && i + 1 < argc && n_sets < 64)
            sets[n_sets++] = argv[++i];
        else if (!config_path && argv[i][0] != '-')
            config_path = argv[i];
        else {
            usage();
            coordinator_abort(&c, -1, -1, "bad command line");
        }
    }
    if (rank != 0)
        coordinator_abort(&c, -1, -1, "ringmaster-coordinator must be MPI rank 0 (list it first on the mpirun line)");
    if (size < 2)
        coordinator_abort(&c, -1, -1, "no workers: start ringmaster-worker ranks after the coordinator");
    if (!config_path) {
        usage();
        coordinator_abort(&c, -1, -1, "no config given");
    }

    rm_error err;
    int set_up = setup(&c, config_path, sets, n_sets, &err) == RM_OK;
    if (!set_up)
        rm_error_log("%s", err.msg);
    else
        print_start(&c);
    if (!set_up || handshake_run(&c, &err) != RM_OK || !(c.obs = observe_create(&c, &err))) {
        if (set_up)
            coordinator_record_fatal(&c, -1, -1, err.msg);
        /* A restart cannot cure what stops a job before it starts, but a
         * failed write says so by its own status. Workers wait for START
         * after their HELLO: release them. */
        int code = rm_error_is_storage(&err) ? RM_EXIT_STORAGE : RM_EXIT_FATAL;
        rm_error e2;
        if (handshake_refuse(&c, err.msg, code, &e2) != RM_OK)
            coordinator_abort_code(&c, -1, -1, e2.msg, code);
        rm_run_dir_close(&c.rd);
        rm_run_lock_release(&c.ckpt_lock);
        rm_run_lock_release(&c.run_lock);
        MPI_Finalize();
        return code;
    }
    if (c.cfg.verbosity != RM_VERBOSITY_QUIET) {
        printf("optimizer state: %.3f MiB per worker (the most any worker holds%s)\n",
               (double)c.optimizer_state_bytes / (1024.0 * 1024.0), c.cfg.zero ? ", ZeRO-1" : "");
        fflush(stdout);
    }
    rm_msg_start start = {.ok = 1, .assign_ahead = c.assign_ahead, .total_steps = c.total_steps,
                          .first_step = c.first_step};
    snprintf(start.resume_dir, sizeof start.resume_dir, "%s", c.resume_dir);
    snprintf(start.ckpt_root, sizeof start.ckpt_root, "%s", c.ckpt.root);
    for (int w = 0; w < c.workers; w++)
        MPI_Send(&start, sizeof start, MPI_BYTE, w + 1, RM_TAG_START, MPI_COMM_WORLD);
    handshake_write_ranks(&c);
    rm_run_dir_event(&c.rd, "start", "");
    rm_progress_init(&c.progress, c.total_steps, c.cfg.progress_every_steps, c.cfg.verbosity);
    c.started_s = rm_now_s();

    if (run_steps(&c, &err) != RM_OK || finish(&c, &err) != RM_OK)
        coordinator_abort_code(&c, -1, c.first_step + c.steps_done, err.msg,
                               rm_error_is_storage(&err) ? RM_EXIT_STORAGE : RM_EXIT_FAILED);
    if (observe_write_trace(c.obs, &err) != RM_OK)
        rm_error_log("the timeline was not written: %s", err.msg);
    int exit_code = RM_EXIT_OK;
    if (c.stopping_on_signal) {
        /* stopped after the checkpoint of end_step: an outcome, not a failure */
        exit_code = coordinator_stop_exit_code(c.stopping_on_signal);
        char fields[96];
        snprintf(fields, sizeof fields, "\"status\":\"%s\",\"step\":%ld",
                 exit_code == RM_EXIT_REQUEUE ? "preempted" : "interrupted", c.end_step);
        rm_run_dir_event(&c.rd, "end", fields);
        if (!c.supervised) /* ringmaster run says how to resume */
            rm_info("stopped on %s after step %ld with a checkpoint (exit %d%s)", signal_name(c.stopping_on_signal),
                    c.end_step, exit_code, exit_code == RM_EXIT_REQUEUE ? ": requeue me" : "");
    } else {
        /* run_end first: summary.json records the trail's head with it */
        rm_run_dir_event(&c.rd, "end", "\"status\":\"completed\"");
        if (c.rd.write_failed)
            abort_on_write_failure(&c);
        if (metrics_write_summary(&c, rm_now_s() - t0, &err) != RM_OK)
            coordinator_abort_code(&c, -1, c.total_steps, err.msg,
                                   rm_error_is_storage(&err) ? RM_EXIT_STORAGE : RM_EXIT_FAILED);
    }
    if (c.rd.write_failed || rm_run_dir_sync(&c.rd) != RM_OK)
        abort_on_write_failure(&c);
    rm_run_dir_close(&c.rd);
    rm_run_lock_release(&c.ckpt_lock);
    rm_run_lock_release(&c.run_lock);
    rm_sampler_free(&c.sampler);
    free(c.info);
    free(c.steps);
    free(c.send_bufs);
    free(c.send_reqs);
    free(c.flag_ring);
    free(c.skip_steps);
    rm_ckpt_coord_free(&c.ckpt);
    observe_destroy(c.obs);
    MPI_Finalize();
    return exit_code;
}
