/* The coordinator's watch over a running job: ranks that stopped making
 * progress, non-finite steps, and the outcome of each checkpoint. */
#include "coordinator.h"
#include "exit_codes.h"
#include "json.h"
#include "log.h"
#include "resume.h"
#include "timer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A non-finite loss or gradient, after every worker reported the step
 * (the workers applied no update unless the policy is stop). skip: go on;
 * rollback: remember the step so the restart skips it, and end the job for
 * the supervisor to restart from the last checkpoint; stop: end the job
 * for good. A step already rolled back over is skipped whatever happens. */
int watch_nonfinite(coordinator *c, long step, rm_error *err)
{
    static const char *policy_names[] = {"stop", "skip", "rollback"};
    int skipped = c->cfg.nan_policy == RM_NAN_SKIP || coordinator_is_skip_step(c, step);
    char fields[128];
    snprintf(fields, sizeof fields, "\"step\":%ld,\"policy\":\"%s\"", step + 1,
             coordinator_is_skip_step(c, step) ? "skipped after rollback" : policy_names[c->cfg.nan_policy]);
    rm_run_dir_event(&c->rd, "nonfinite", fields);
    rm_progress_break(&c->progress);
    if (coordinator_is_skip_step(c, step)) {
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

int watch_ckpt_done(coordinator *c, const rm_msg_ckpt_done *d, rm_error *err)
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
        if (c->cfg.verbosity == RM_VERBOSITY_VERBOSE || (c->stopping_on_signal && !c->supervised)) {
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
    /* The final checkpoint is the run's model, and the one after a stop
     * signal is what a requeue resumes from: neither is optional. */
    if (step >= c->end_step)
        coordinator_abort_code(c, -1, step,
                               c->stopping_on_signal ? "the checkpoint before stopping failed"
                                                     : "the final checkpoint (the run's model) failed",
                               RM_EXIT_STORAGE);
    if (c->cfg.ckpt_on_error == RM_CKPT_ON_ERROR_STOP)
        coordinator_abort_code(c, -1, step, "stopping: checkpoint.on_error is stop", RM_EXIT_STORAGE);
    return RM_OK;
}

/* Names the ranks that stopped making progress, if any has been silent for
 * fault.hang_timeout_s: those that got least far (never reached the
 * all-reduce the others wait in). Ends the job for the supervisor. */
void watch_check_hang(coordinator *c)
{
    double now = rm_now_s();
    long least = -1; /* least progress among the silent workers */
    for (int w = 0; w < c->workers; w++)
        if (now - c->info[w].last_heard_s > c->cfg.hang_timeout_s && (least < 0 || c->info[w].progress < least))
            least = c->info[w].progress;
    if (least < 0)
        return;
    /* Workers waiting in a collective keep sending heartbeats: the silent
     * ones that got least far are the ones holding the job up. */
    char names[1024] = "", waiting[256] = "";
    for (int w = 0; w < c->workers; w++) {
        const worker_info *in = &c->info[w];
        int silent = now - in->last_heard_s > c->cfg.hang_timeout_s;
        if (silent && in->progress == least && strlen(names) < sizeof names - 200)
            snprintf(names + strlen(names), sizeof names - strlen(names),
                     "%sworker %d (rank %d, host %s, pid %d, silent %.1f s)", names[0] ? ", " : "", w, w + 1, in->host,
                     in->pid, now - in->last_heard_s);
        else if (strlen(waiting) < sizeof waiting - 16)
            snprintf(waiting + strlen(waiting), sizeof waiting - strlen(waiting), "%s%d", waiting[0] ? "," : "", w);
    }
    long step = least / 2 + 1; /* 1-based step that did not finish */
    char reason[RM_REASON_CAP + 1024];
    snprintf(reason, sizeof reason,
             "hang: %s stopped reporting in step %ld (fault.hang_timeout_s %.0f)%s%s%s", names, step,
             c->cfg.hang_timeout_s, waiting[0] ? "; workers " : "", waiting,
             waiting[0] ? " are alive and wait for it (in the gradient all-reduce)" : "");
    rm_run_dir_event(&c->rd, "hang", "");
    coordinator_abort_code(c, -1, step, reason, RM_EXIT_FAILED);
}


/* One job per run directory: a job whose lock was taken over (its lease
 * expired while it hung, or --break-lock) must stop writing at once. Looked
 * at every few seconds. */
void watch_check_lock(coordinator *c)
{
    double now = rm_now_s();
    if (now - c->lock_checked_s < 2.0)
        return;
    c->lock_checked_s = now;
    rm_error err;
    int lost = c->supervised ? rm_run_lock_check_token(c->cfg.run_dir, c->lock_token, &err) != RM_OK
                             : rm_run_lock_lost(&c->run_lock) || rm_run_lock_lost(&c->ckpt_lock);
    if (!lost)
        return;
    if (!c->supervised)
        snprintf(err.msg, sizeof err.msg, "the lock of %s was taken over", c->cfg.run_dir);
    char reason[sizeof err.msg + 128];
    snprintf(reason, sizeof reason, "another job took over the run directory (%s): stopping at once", err.msg);
    rm_run_dir_close(&c->rd); /* nothing more is written there: it is the other job's */
    coordinator_abort_code(c, -1, c->first_step + c->steps_done, reason, RM_EXIT_FATAL);
}
