/* ringmaster-coordinator: MPI rank 0 of a job. Owns the step counter and
 * the data cursor, hands every worker its slice of each global batch ahead
 * of time, gathers per-step reports and evaluations, writes the run
 * directory and ends the job cleanly or, on a fatal error anywhere, ends it
 * with the reason and the rank. */
#include "ckpt_coord.h"
#include "config.h"
#include "exit_codes.h"
#include "fsutil.h"
#include "hash.h"
#include "json.h"
#include "log.h"
#include "model_shape.h"
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

#define HANDSHAKE_TIMEOUT_S 120.0
#define IDLE_SLEEP_NS 300000L

typedef struct step_acc {
    long step;
    int reports;
    double loss_sum, count, correct, lr, grad_norm;
    int nonfinite, update_skipped;
    uint64_t batch_digest;
    double data_wait_s[2], compute_s[2], allreduce_wait_s[2], optimizer_s[2], ckpt_stall_s[2], step_s[2]; /* mean, max */
} step_acc;

typedef struct eval_acc {
    long step;
    int results;
    double loss_sum, correct, count, eval_s;
} eval_acc;

typedef struct worker_info {
    int pid;
    char host[RM_HOST_CAP];
    uint64_t weights_digest;
    double last_heard_s;
    long progress; /* 2s+1: reached the all-reduce of step s; 2s+2: reported step s */
} worker_info;

/* Flags of a step, decided once when its first assignment goes out, so
 * every worker gets the same (time-based checkpoints, signals). */
typedef struct step_flags {
    long step;
    int flags;
} step_flags;

static volatile sig_atomic_t stop_requested;

static void on_stop_signal(int sig)
{
    stop_requested = sig;
}

typedef struct coordinator {
    rm_config cfg;
    rm_dataset_facts facts;
    rm_model_shape shape;
    rm_run_dir rd;
    rm_progress progress;
    rm_sampler sampler;
    int workers;
    long local_batch, total_steps, first_step;
    long end_step;  /* steps run end before this: total_steps, or earlier after a stop signal */
    int assign_ahead;
    step_flags *flag_ring; /* assign_ahead entries */
    long flags_decided_through;
    double last_ckpt_request_s;
    rm_ckpt_coord ckpt;
    uint64_t dataset_hash;
    char resume_dir[RM_DIR_CAP];
    long *skip_steps;
    int n_skip_steps;
    int stopping_on_signal;
    long ckpt_stalls;
    double ckpt_stall_total_s, ckpt_stall_max_s;
    worker_info *info;
    /* Per worker, a ring of assign_ahead send buffers and their requests. */
    uint8_t *send_bufs;
    size_t send_buf_bytes;
    MPI_Request *send_reqs;
    step_acc *steps; /* ring of assign_ahead + 2 */
    int n_step_slots;
    eval_acc evals[4];
    long steps_done;
    long evals_expected, evals_done;
    double train_s;   /* sum over steps of the slowest worker's step time */
    double started_s;
    double last_eval_accuracy, last_eval_loss;
    double last_loss;
    /* Smoothed (EMA) step and phase times of the slowest worker, for the
     * progress display: one step's figure is too noisy to read. */
    double ema_step_s, ema_phase_s[4];
} coordinator;

static int is_skip_step(const coordinator *c, long step)
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
    if (!last && stop_requested && !c->stopping_on_signal) {
        /* The first step not yet handed out becomes the last: checkpoint
         * after it and stop, so the job can be requeued. */
        rm_progress_break(&c->progress);
        rm_warn("signal %d: checkpointing after step %ld and stopping (exit %d: requeue me)", (int)stop_requested,
                step + 1, RM_EXIT_REQUEUE);
        c->stopping_on_signal = 1;
        c->end_step = step + 1;
        last = 1;
        flags |= RM_ASSIGN_CHECKPOINT_AFTER;
    }
    if (c->cfg.eval_split[0] && !c->stopping_on_signal &&
        (last || (c->cfg.eval_every > 0 && (step + 1) % c->cfg.eval_every == 0))) {
        flags |= RM_ASSIGN_EVAL_AFTER;
        c->evals_expected++;
    }
    if (last)
        flags |= RM_ASSIGN_LAST;
    if (c->cfg.ckpt_every_steps > 0 && (step + 1) % c->cfg.ckpt_every_steps == 0)
        flags |= RM_ASSIGN_CHECKPOINT_AFTER;
    if (c->cfg.ckpt_every_seconds > 0 && rm_now_s() - c->last_ckpt_request_s >= c->cfg.ckpt_every_seconds)
        flags |= RM_ASSIGN_CHECKPOINT_AFTER;
    if (is_skip_step(c, step))
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

static void record_fatal(coordinator *c, int worker, long step, const char *reason)
{
    rm_progress_break(&c->progress);
    const char *host = worker >= 0 && c->info ? c->info[worker].host : rm_log_host();
    int pid = worker >= 0 && c->info ? c->info[worker].pid : (int)getpid();
    if (worker >= 0)
        rm_error_log("worker %d (rank %d, host %s, pid %d) failed at step %ld: %s", worker, worker + 1, host, pid,
                     step, reason);
    else
        rm_error_log("%s", reason);
    if (c->rd.events) {
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
static void coordinator_abort_code(coordinator *c, int worker, long step, const char *reason, int code)
{
    record_fatal(c, worker, step, reason);
    rm_run_dir_close(&c->rd);
    MPI_Abort(MPI_COMM_WORLD, code);
    exit(code);
}

static void coordinator_abort(coordinator *c, int worker, long step, const char *reason)
{
    coordinator_abort_code(c, worker, step, reason, RM_EXIT_FAILED);
}

/* Tells every worker not to start, with the reason, and lets MPI finish
 * normally: nothing is left waiting. */
static int refuse_start(coordinator *c, const char *reason, int code, rm_error *err)
{
    rm_msg_start start = {.ok = 0, .exit_code = code};
    snprintf(start.reason, sizeof start.reason, "%s", reason);
    for (int w = 0; w < c->workers; w++)
        RM_MPI_CHECK(MPI_Send(&start, sizeof start, MPI_BYTE, w + 1, RM_TAG_START, MPI_COMM_WORLD), err);
    return RM_OK;
}

/* Collects every HELLO and checks that all ranks run the same job. Returns
 * RM_ERR with the reason when the job must not start. */
static int handshake(coordinator *c, rm_error *err)
{
    int seen = 0;
    uint64_t want_hash = rm_config_hash(&c->cfg);
    uint64_t init_digest = 0;
    char *got = calloc((size_t)c->workers, 1);
    if (!got)
        return rm_fail(err, "out of memory");
    double deadline = rm_now_s() + HANDSHAKE_TIMEOUT_S;
    int rc = RM_ERR;
    while (seen < c->workers) {
        int flag;
        MPI_Status st;
        if (MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, MPI_COMM_WORLD, &flag, &st) != MPI_SUCCESS) {
            rm_fail(err, "MPI_Iprobe failed during the handshake");
            goto out;
        }
        if (!flag) {
            if (rm_now_s() > deadline) {
                char missing[512] = "";
                for (int w = 0; w < c->workers && strlen(missing) < 400; w++)
                    if (!got[w])
                        snprintf(missing + strlen(missing), sizeof missing - strlen(missing), " %d", w);
                rm_fail(err, "workers%s did not report within %.0f s of start", missing, HANDSHAKE_TIMEOUT_S);
                goto out;
            }
            nanosleep(&(struct timespec){0, IDLE_SLEEP_NS}, NULL);
            continue;
        }
        int w = st.MPI_SOURCE - 1;
        if (st.MPI_TAG == RM_TAG_FATAL) {
            rm_msg_fatal f;
            MPI_Recv(&f, sizeof f, MPI_BYTE, st.MPI_SOURCE, RM_TAG_FATAL, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            f.reason[sizeof f.reason - 1] = '\0';
            coordinator_abort_code(c, w, f.step, f.reason, RM_EXIT_FATAL);
        }
        if (st.MPI_TAG != RM_TAG_HELLO) {
            rm_fail(err, "rank %d sent message tag %d before its handshake", st.MPI_SOURCE, st.MPI_TAG);
            goto out;
        }
        rm_msg_hello h;
        MPI_Recv(&h, sizeof h, MPI_BYTE, st.MPI_SOURCE, RM_TAG_HELLO, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        h.host[sizeof h.host - 1] = '\0';
        got[w] = 1;
        seen++;
        c->info[w].pid = h.pid;
        snprintf(c->info[w].host, sizeof c->info[w].host, "%s", h.host);
        if (h.protocol_version != RM_PROTOCOL_VERSION) {
            rm_fail(err, "worker %d (rank %d, host %s) speaks protocol %d, the coordinator %d: mixed ringmaster builds",
                    w, w + 1, h.host, h.protocol_version, RM_PROTOCOL_VERSION);
            goto out;
        }
        if (h.config_hash != want_hash) {
            char a[17], b[17];
            rm_hash_hex(h.config_hash, a);
            rm_hash_hex(want_hash, b);
            rm_fail(err,
                    "worker %d (rank %d, host %s, pid %d) runs a different job config (hash %s, coordinator %s): "
                    "every rank must be started with the same config and --set overrides",
                    w, w + 1, h.host, h.pid, a, b);
            goto out;
        }
        if (h.param_count != c->shape.n_params) {
            rm_fail(err, "worker %d (rank %d, host %s) built a model of %lld parameters, expected %ld", w, w + 1, h.host,
                    (long long)h.param_count, c->shape.n_params);
            goto out;
        }
        if (seen == 1)
            init_digest = h.init_digest;
        else if (h.init_digest != init_digest) {
            rm_fail(err, "worker %d (rank %d, host %s) starts from different initial weights than the others", w,
                    w + 1, h.host);
            goto out;
        }
    }
    rc = RM_OK;
out:
    free(got);
    return rc;
}

static const char *smooth_and_pick_slowest(coordinator *c, const step_acc *s)
{
    static const char *names[] = {"data wait", "compute", "all-reduce wait", "optimizer"};
    double v[] = {s->data_wait_s[1], s->compute_s[1], s->allreduce_wait_s[1], s->optimizer_s[1]};
    double alpha = c->steps_done <= 1 ? 1.0 : 0.05;
    c->ema_step_s += alpha * (s->step_s[1] - c->ema_step_s);
    int best = 0;
    for (int i = 0; i < 4; i++) {
        c->ema_phase_s[i] += alpha * (v[i] - c->ema_phase_s[i]);
        if (c->ema_phase_s[i] > c->ema_phase_s[best])
            best = i;
    }
    return names[best];
}

static void accumulate(double pair[2], double v, int workers)
{
    pair[0] += v / workers;
    if (v > pair[1])
        pair[1] = v;
}

static void write_phase(FILE *f, const char *name, const double pair[2])
{
    fprintf(f, ",\"%s\":", name);
    rm_json_number(f, pair[0]);
    fprintf(f, ",\"%s_max\":", name);
    rm_json_number(f, pair[1]);
}

/* All reports of one step are in: log it, show progress. */
static void complete_step(coordinator *c, step_acc *s)
{
    double loss = s->loss_sum / s->count;
    double step_s = s->step_s[1];
    double samples_per_s = step_s > 0 ? (double)c->cfg.global_batch / step_s : 0;
    double epoch = (double)(s->step + 1) * (double)c->cfg.global_batch / (double)c->facts.train_samples;
    c->train_s += step_s;
    if (s->ckpt_stall_s[1] > 0) {
        c->ckpt_stalls++;
        c->ckpt_stall_total_s += s->ckpt_stall_s[1];
        if (s->ckpt_stall_s[1] > c->ckpt_stall_max_s)
            c->ckpt_stall_max_s = s->ckpt_stall_s[1];
    }
    c->steps_done++;
    c->last_loss = loss;
    FILE *f = c->rd.metrics;
    fprintf(f, "{\"step\":%ld,\"epoch\":", s->step + 1);
    rm_json_number(f, epoch);
    fputs(",\"loss\":", f);
    rm_json_number(f, loss);
    fputs(",\"train_accuracy\":", f);
    rm_json_number(f, s->correct / s->count);
    fputs(",\"lr\":", f);
    rm_json_number(f, s->lr);
    fputs(",\"grad_norm\":", f);
    rm_json_number(f, s->grad_norm);
    if (s->update_skipped)
        fputs(",\"update_skipped\":true", f);
    fprintf(f, ",\"batch_digest\":\"%016llx\"", (unsigned long long)s->batch_digest);
    fputs(",\"samples_per_second\":", f);
    rm_json_number(f, samples_per_s);
    write_phase(f, "step_s", s->step_s);
    write_phase(f, "data_wait_s", s->data_wait_s);
    write_phase(f, "compute_s", s->compute_s);
    write_phase(f, "allreduce_wait_s", s->allreduce_wait_s);
    write_phase(f, "optimizer_s", s->optimizer_s);
    write_phase(f, "ckpt_stall_s", s->ckpt_stall_s);
    fputs("}\n", f);

    long done_steps = s->step + 1;
    const char *slowest = smooth_and_pick_slowest(c, s);
    rm_progress_sample ps = {
        .step = done_steps,
        .epoch = epoch,
        .loss = loss,
        .samples_per_s = c->ema_step_s > 0 ? (double)c->cfg.global_batch / c->ema_step_s : 0,
        .eta_s = c->ema_step_s * (double)(c->total_steps - done_steps),
        .slowest_phase = slowest,
    };
    rm_progress_update(&c->progress, &ps);
    memset(s, 0, sizeof *s);
    s->step = -1;
}

static void complete_eval(coordinator *c, eval_acc *e)
{
    double acc = e->correct / e->count, loss = e->loss_sum / e->count;
    c->last_eval_accuracy = acc;
    c->last_eval_loss = loss;
    c->evals_done++;
    fprintf(c->rd.eval, "{\"step\":%ld,\"test_accuracy\":", e->step + 1);
    rm_json_number(c->rd.eval, acc);
    fputs(",\"test_loss\":", c->rd.eval);
    rm_json_number(c->rd.eval, loss);
    fprintf(c->rd.eval, ",\"samples\":%.0f,\"seconds\":", e->count);
    rm_json_number(c->rd.eval, e->eval_s);
    fputs("}\n", c->rd.eval);
    fflush(c->rd.eval);
    if (c->cfg.verbosity != RM_VERBOSITY_QUIET) {
        rm_progress_break(&c->progress);
        rm_info("step %ld: %s accuracy %.4f, loss %.4f (%.0f samples)", e->step + 1, c->cfg.eval_split, acc, loss,
                e->count);
    }
    memset(e, 0, sizeof *e);
    e->step = -1;
}

static eval_acc *eval_slot(coordinator *c, long step)
{
    for (int i = 0; i < 4; i++)
        if (c->evals[i].step == step)
            return &c->evals[i];
    for (int i = 0; i < 4; i++)
        if (c->evals[i].step < 0) {
            c->evals[i].step = step;
            return &c->evals[i];
        }
    return NULL;
}

/* A non-finite loss or gradient, after every worker reported the step
 * (the workers applied no update unless the policy is stop). skip: go on;
 * rollback: remember the step so the restart skips it, and end the job for
 * the supervisor to restart from the last checkpoint; stop: end the job
 * for good. A step already rolled back over is skipped whatever happens. */
static int handle_nonfinite(coordinator *c, long step, rm_error *err)
{
    static const char *policy_names[] = {"stop", "skip", "rollback"};
    int skipped = c->cfg.nan_policy == RM_NAN_SKIP || is_skip_step(c, step);
    char fields[128];
    snprintf(fields, sizeof fields, "\"step\":%ld,\"policy\":\"%s\"", step + 1,
             is_skip_step(c, step) ? "skipped after rollback" : policy_names[c->cfg.nan_policy]);
    rm_run_dir_event(&c->rd, "nonfinite", fields);
    rm_progress_break(&c->progress);
    if (is_skip_step(c, step)) {
        rm_warn("step %ld: non-finite again; its update is skipped (rolled back over before)", step + 1);
        return RM_OK;
    }
    if (skipped) {
        rm_warn("step %ld: non-finite loss or gradient; update skipped (fault.nan_policy: skip)", step + 1);
        return RM_OK;
    }
    if (c->cfg.nan_policy == RM_NAN_ROLLBACK) {
        if (rm_resume_add_skip(c->rd.path, step, err) != RM_OK)
            return RM_ERR;
        coordinator_abort_code(c, -1, step + 1,
                               "non-finite loss or gradient (fault.nan_policy: rollback): restarting from the last "
                               "checkpoint with this step's update skipped",
                               RM_EXIT_FAILED);
    }
    coordinator_abort_code(c, -1, step + 1,
                           "non-finite loss or gradient (fault.nan_policy: stop); lower train.lr or use skip/rollback",
                           RM_EXIT_FATAL);
    return RM_ERR;
}

static int handle_ckpt_done(coordinator *c, const rm_msg_ckpt_done *d, rm_error *err)
{
    int outcome;
    long step;
    rm_error why;
    if (rm_ckpt_coord_on_done(&c->ckpt, d, &c->rd, &outcome, &step, &why, err) != RM_OK)
        return RM_ERR;
    if (outcome == 0)
        return RM_OK;
    char name[32];
    rm_ckpt_dir_name(step, name, sizeof name);
    if (outcome > 0) {
        if (c->cfg.verbosity == RM_VERBOSITY_VERBOSE || c->stopping_on_signal) {
            rm_progress_break(&c->progress);
            rm_info("checkpoint %s committed", name);
        }
        return RM_OK;
    }
    char previous[64] = "none yet";
    if (c->ckpt.last_committed >= 0)
        rm_ckpt_dir_name(c->ckpt.last_committed, previous, sizeof previous);
    rm_progress_break(&c->progress);
    rm_error_log("checkpoint %s was not written: %s; the latest checkpoint is still %s (intact)", name, why.msg,
                 previous);
    char *fields = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&fields, &len);
    if (mem) {
        fprintf(mem, "\"step\":%ld,\"latest\":\"%s\",\"reason\":", step, previous);
        rm_json_string(mem, why.msg);
        fclose(mem);
        rm_run_dir_event(&c->rd, "checkpoint_failed", fields);
        free(fields);
    }
    if (c->cfg.ckpt_on_error == RM_CKPT_ON_ERROR_STOP || c->stopping_on_signal)
        coordinator_abort_code(c, -1, step,
                               c->stopping_on_signal ? "the emergency checkpoint failed"
                                                     : "stopping: checkpoint.on_error is stop",
                               RM_EXIT_FATAL);
    return RM_OK;
}

/* Names the ranks that stopped making progress, if any has been silent for
 * fault.hang_timeout_s: those that got least far (never reached the
 * all-reduce the others wait in). Ends the job for the supervisor. */
static void check_hang(coordinator *c)
{
    double now = rm_now_s();
    int silent = 0;
    long least = -1;
    for (int w = 0; w < c->workers; w++) {
        if (now - c->info[w].last_heard_s > c->cfg.hang_timeout_s)
            silent = 1;
        if (least < 0 || c->info[w].progress < least)
            least = c->info[w].progress;
    }
    if (!silent)
        return;
    char names[1024] = "", waiting[256] = "";
    for (int w = 0; w < c->workers; w++) {
        const worker_info *in = &c->info[w];
        if (in->progress == least && strlen(names) < sizeof names - 200)
            snprintf(names + strlen(names), sizeof names - strlen(names),
                     "%sworker %d (rank %d, host %s, pid %d, silent %.1f s)", names[0] ? ", " : "", w, w + 1, in->host,
                     in->pid, now - in->last_heard_s);
        else if (in->progress != least && strlen(waiting) < sizeof waiting - 16)
            snprintf(waiting + strlen(waiting), sizeof waiting - strlen(waiting), "%s%d", waiting[0] ? "," : "", w);
    }
    long step = least / 2 + 1; /* 1-based step that did not finish */
    char reason[RM_REASON_CAP + 1024];
    snprintf(reason, sizeof reason,
             "hang: %s stopped reporting in step %ld (fault.hang_timeout_s %.0f)%s%s%s", names, step,
             c->cfg.hang_timeout_s, waiting[0] ? "; workers " : "", waiting,
             waiting[0] ? " got further and wait for it in the gradient all-reduce" : "");
    rm_run_dir_event(&c->rd, "hang", "");
    coordinator_abort_code(c, -1, step, reason, RM_EXIT_FAILED);
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
        s->reports++;
        s->loss_sum += r.loss_sum;
        s->correct += (double)r.correct;
        s->count += (double)r.count;
        s->lr = r.lr;
        s->grad_norm = r.grad_norm;
        s->nonfinite |= r.nonfinite;
        s->update_skipped |= r.update_skipped;
        s->batch_digest += r.batch_digest;
        c->info[w].last_heard_s = rm_now_s();
        c->info[w].progress = 2 * r.step + 2;
        accumulate(s->ckpt_stall_s, r.ckpt_stall_s, c->workers);
        accumulate(s->data_wait_s, r.data_wait_s, c->workers);
        accumulate(s->compute_s, r.compute_s, c->workers);
        accumulate(s->allreduce_wait_s, r.allreduce_wait_s, c->workers);
        accumulate(s->optimizer_s, r.optimizer_s, c->workers);
        accumulate(s->step_s, r.step_s, c->workers);
        if (r.step + c->assign_ahead < c->end_step && send_assignment(c, w, r.step + c->assign_ahead, err) != RM_OK)
            return RM_ERR;
        if (s->reports == c->workers) {
            long step = s->step;
            int nonfinite = s->nonfinite;
            complete_step(c, s);
            if (nonfinite)
                return handle_nonfinite(c, step, err);
        }
        return RM_OK;
    }
    case RM_TAG_EVAL_RESULT: {
        rm_msg_eval_result r;
        RM_MPI_CHECK(MPI_Recv(&r, sizeof r, MPI_BYTE, st->MPI_SOURCE, RM_TAG_EVAL_RESULT, MPI_COMM_WORLD,
                              MPI_STATUS_IGNORE),
                     err);
        eval_acc *e = eval_slot(c, r.step);
        if (!e)
            return rm_fail(err, "too many evaluations in flight");
        e->results++;
        e->loss_sum += r.loss_sum;
        e->correct += (double)r.correct;
        e->count += (double)r.count;
        if (r.eval_s > e->eval_s)
            e->eval_s = r.eval_s;
        if (e->results == c->workers)
            complete_eval(c, e);
        return RM_OK;
    }
    case RM_TAG_PROGRESS: {
        rm_msg_progress p;
        RM_MPI_CHECK(MPI_Recv(&p, sizeof p, MPI_BYTE, st->MPI_SOURCE, RM_TAG_PROGRESS, MPI_COMM_WORLD,
                              MPI_STATUS_IGNORE),
                     err);
        c->info[w].last_heard_s = rm_now_s();
        c->info[w].progress = 2 * p.step + 1;
        return RM_OK;
    }
    case RM_TAG_CKPT_DONE: {
        rm_msg_ckpt_done d;
        RM_MPI_CHECK(MPI_Recv(&d, sizeof d, MPI_BYTE, st->MPI_SOURCE, RM_TAG_CKPT_DONE, MPI_COMM_WORLD,
                              MPI_STATUS_IGNORE),
                     err);
        d.reason[sizeof d.reason - 1] = '\0';
        return handle_ckpt_done(c, &d, err);
    }
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
            fflush(c->rd.metrics);
            check_hang(c);
            nanosleep(&(struct timespec){0, IDLE_SLEEP_NS}, NULL);
            continue;
        }
        if (handle_message(c, &st, err) != RM_OK)
            return RM_ERR;
    }
    fflush(c->rd.metrics);
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
            check_hang(c);
            nanosleep(&(struct timespec){0, IDLE_SLEEP_NS}, NULL);
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

static int write_summary(coordinator *c, double wall_s, rm_error *err)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        return rm_fail(err, "out of memory");
    char digest[17], cfg_hash[17];
    rm_hash_hex(c->info[0].weights_digest, digest);
    rm_hash_hex(rm_config_hash(&c->cfg), cfg_hash);
    long trained = c->steps_done * c->cfg.global_batch; /* in this attempt */
    double sps = c->train_s > 0 ? (double)trained / c->train_s : 0;
    double flops = rm_model_shape_train_flops_per_sample(&c->shape);
    fputs("{\n  \"status\": \"completed\",\n  \"test_accuracy\": ", f);
    if (c->evals_done)
        rm_json_number(f, c->last_eval_accuracy);
    else
        fputs("null", f);
    fputs(",\n  \"test_loss\": ", f);
    if (c->evals_done)
        rm_json_number(f, c->last_eval_loss);
    else
        fputs("null", f);
    fputs(",\n  \"final_train_loss\": ", f);
    rm_json_number(f, c->last_loss);
    fputs(",\n  \"samples_per_second\": ", f);
    rm_json_number(f, sps);
    fputs(",\n  \"achieved_flops_per_second\": ", f);
    rm_json_number(f, sps * flops);
    fprintf(f, ",\n  \"steps\": %ld,\n  \"samples\": %ld,\n  \"epochs\": ", c->total_steps,
            c->total_steps * c->cfg.global_batch);
    rm_json_number(f, (double)c->total_steps * (double)c->cfg.global_batch / (double)c->facts.train_samples);
    fputs(",\n  \"train_seconds\": ", f);
    rm_json_number(f, c->train_s);
    fputs(",\n  \"wall_seconds\": ", f);
    rm_json_number(f, wall_s);
    fprintf(f, ",\n  \"workers\": %d,\n  \"global_batch\": %ld,\n  \"backend\": \"cpu\",\n  \"parameters\": %ld",
            c->workers, c->cfg.global_batch, c->shape.n_params);
    fprintf(f, ",\n  \"resumed_from_step\": %ld,\n  \"checkpoints_committed\": %ld,\n  \"checkpoints_failed\": %ld",
            c->first_step, c->ckpt.committed, c->ckpt.failed);
    fputs(",\n  \"checkpoint_stall_mean_s\": ", f);
    rm_json_number(f, c->ckpt_stalls ? c->ckpt_stall_total_s / (double)c->ckpt_stalls : 0);
    fputs(",\n  \"checkpoint_stall_max_s\": ", f);
    rm_json_number(f, c->ckpt_stall_max_s);
    fputs(",\n  \"step_seconds_mean\": ", f);
    rm_json_number(f, c->steps_done ? c->train_s / (double)c->steps_done : 0);
    fprintf(f, ",\n  \"weights_digest\": \"%s\",\n  \"config_hash\": \"%s\"\n}\n", digest, cfg_hash);
    fclose(f);
    char path[RM_PATH_CAP + 32];
    snprintf(path, sizeof path, "%s/summary.json", c->rd.path);
    int rc = rm_write_file_atomic(path, text, len, err);
    free(text);
    if (rc == RM_OK && c->cfg.verbosity != RM_VERBOSITY_QUIET) {
        rm_progress_break(&c->progress);
        printf("done: %ld steps on %d workers, %s accuracy %.4f, %.0f samples/s, weights %s\nrun directory: %s\n",
               c->total_steps, c->workers, c->evals_done ? c->cfg.eval_split : "no eval,",
               c->evals_done ? c->last_eval_accuracy : 0.0, sps, digest, c->rd.path);
        fflush(stdout);
    }
    return rc;
}

/* Picks up from the newest good checkpoint, if there is one: the first
 * step, the state to load, and logs trimmed back to that step. */
static int find_resume_point(coordinator *c, rm_error *err)
{
    rm_resume_point rp;
    if (rm_resume_find(&c->cfg, c->dataset_hash, c->shape.n_params, &rp, err) != RM_OK)
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
        return rm_fail(err, "the newest checkpoint is at the last step (%ld): this run has nothing left to do",
                       c->first_step);
    if (rm_resume_read_skips(c->rd.path, &c->skip_steps, &c->n_skip_steps, err) != RM_OK)
        return RM_ERR;
    c->last_ckpt_request_s = rm_now_s();
    return rm_ckpt_coord_init(&c->ckpt, &c->cfg, &c->shape, c->workers, c->facts.train_samples, c->dataset_hash,
                              committed, err);
}

static int setup(coordinator *c, const char *config_path, char *const *sets, int n_sets, rm_error *err)
{
    if (rm_config_load(config_path, sets, n_sets, &c->cfg, &c->facts, err) != RM_OK)
        return RM_ERR;
    if (c->cfg.workers != c->workers)
        return rm_fail(err, "the job was launched with %d worker ranks but launch.workers is %ld", c->workers,
                       c->cfg.workers);
    if (!c->cfg.run_dir[0])
        rm_run_dir_default(config_path, c->cfg.run_dir, sizeof c->cfg.run_dir);
    rm_model_shape_init(&c->shape, &c->cfg, c->facts.input_dim, c->facts.classes);
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

/* ranks.txt: "rank worker host pid" per line, so tools (and the launcher,
 * when mpirun reports a death) can name the process behind a rank. */
static void write_ranks(coordinator *c)
{
    char path[RM_PATH_CAP + 32];
    snprintf(path, sizeof path, "%s/ranks.txt", c->rd.path);
    FILE *f = fopen(path, "w");
    if (!f) {
        rm_warn("cannot write %s", path);
        return;
    }
    fprintf(f, "0 coordinator %s %d\n", rm_log_host(), (int)getpid());
    for (int w = 0; w < c->workers; w++)
        fprintf(f, "%d %d %s %d\n", w + 1, w, c->info[w].host, c->info[w].pid);
    fclose(f);
}

static void print_start(coordinator *c)
{
    if (c->cfg.verbosity == RM_VERBOSITY_QUIET)
        return;
    printf("ringmaster: resolved config (%s/config.yaml)\n", c->rd.path);
    printf("---\n");
    rm_config_write(&c->cfg, stdout);
    printf("---\n");
    printf("model: %ld parameters", c->shape.n_params);
    for (int l = 0; l <= c->shape.n_layers; l++)
        printf("%s%ld", l ? "-" : " (", c->shape.dims[l]);
    printf("), %ld training samples, %ld steps of %ld samples (%ld per worker), %d workers, backend cpu\n",
           c->facts.train_samples, c->total_steps, c->cfg.global_batch, c->local_batch, c->workers);
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
    if (setup(&c, config_path, sets, n_sets, &err) != RM_OK) {
        rm_error_log("%s", err.msg);
        rm_error e2;
        /* Workers wait for START after their HELLO: release them. */
        if (refuse_start(&c, err.msg, RM_EXIT_FATAL, &e2) != RM_OK)
            coordinator_abort(&c, -1, -1, e2.msg);
        rm_run_dir_close(&c.rd);
        MPI_Finalize();
        return RM_EXIT_FATAL;
    }
    print_start(&c);
    if (handshake(&c, &err) != RM_OK) {
        record_fatal(&c, -1, -1, err.msg);
        rm_error e2;
        if (refuse_start(&c, err.msg, RM_EXIT_FATAL, &e2) != RM_OK)
            coordinator_abort(&c, -1, -1, e2.msg);
        rm_run_dir_close(&c.rd);
        MPI_Finalize();
        return RM_EXIT_FATAL;
    }
    rm_msg_start start = {.ok = 1, .assign_ahead = c.assign_ahead, .total_steps = c.total_steps,
                          .first_step = c.first_step};
    snprintf(start.resume_dir, sizeof start.resume_dir, "%s", c.resume_dir);
    snprintf(start.ckpt_root, sizeof start.ckpt_root, "%s", c.ckpt.root);
    for (int w = 0; w < c.workers; w++)
        MPI_Send(&start, sizeof start, MPI_BYTE, w + 1, RM_TAG_START, MPI_COMM_WORLD);
    write_ranks(&c);
    rm_run_dir_event(&c.rd, "start", "");
    rm_progress_init(&c.progress, c.total_steps, c.cfg.progress_every_steps, c.cfg.verbosity);
    c.started_s = rm_now_s();

    if (run_steps(&c, &err) != RM_OK || finish(&c, &err) != RM_OK)
        coordinator_abort(&c, -1, c.first_step + c.steps_done, err.msg);
    int exit_code = RM_EXIT_OK;
    if (c.stopping_on_signal) {
        char fields[64];
        snprintf(fields, sizeof fields, "\"status\":\"preempted\",\"step\":%ld", c.end_step);
        rm_run_dir_event(&c.rd, "end", fields);
        rm_info("stopped on a signal after step %ld with a checkpoint; exit %d asks to be requeued", c.end_step,
                RM_EXIT_REQUEUE);
        exit_code = RM_EXIT_REQUEUE;
    } else {
        if (write_summary(&c, rm_now_s() - t0, &err) != RM_OK)
            coordinator_abort(&c, -1, c.total_steps, err.msg);
        rm_run_dir_event(&c.rd, "end", "\"status\":\"completed\"");
    }
    rm_run_dir_close(&c.rd);
    rm_sampler_free(&c.sampler);
    free(c.info);
    free(c.steps);
    free(c.send_bufs);
    free(c.send_reqs);
    free(c.flag_ring);
    free(c.skip_steps);
    rm_ckpt_coord_free(&c.ckpt);
    MPI_Finalize();
    return exit_code;
}
