/* Rank 0's watch over a running job: the run directory's lock, ranks that
 * stopped making progress, non-finite steps and the outcome of each
 * checkpoint. Each check returns a verdict; the loop acts on it. */
#ifndef RINGMASTER_WATCH_H
#define RINGMASTER_WATCH_H

#include "ckpt_coord.h"
#include "config.h"
#include "error.h"
#include "progress.h"
#include "roster.h"
#include "run_dir.h"
#include "run_lock.h"
#include "verdict.h"

typedef struct rm_watch {
    const rm_config *cfg;
    rm_run_dir *rd;
    rm_progress *progress;
    int supervised; /* launched by `ringmaster run`, which holds the run lock and reports stops */
    rm_run_lock run_lock, ckpt_lock; /* held here when launched by hand */
    char lock_token[RM_RUN_LOCK_TOKEN_HEX + 1]; /* ... else the supervisor's, from RINGMASTER_RUN_LOCK */
    double lock_checked_s;
} rm_watch;

/* One job per run directory: under `ringmaster run` the lock is the
 * supervisor's (its token, passed in RINGMASTER_RUN_LOCK, is checked);
 * launched by hand, rank 0 takes the run directory's lock, and
 * checkpoint.dir's, before anything is written. */
int rm_watch_lock_run_dir(rm_watch *w, const rm_config *cfg, rm_error *err);
void rm_watch_release(rm_watch *w);

/* The run directory and the progress display events are written to. */
void rm_watch_attach(rm_watch *w, rm_run_dir *rd, rm_progress *progress);

/* Looked at every few seconds: a job whose lock was taken over (its lease
 * expired while it hung, or --break-lock) must stop writing at once; the
 * run directory is then closed here (it is the other job's). */
void rm_watch_lock(rm_watch *w, long step, rm_verdict *v);

/* Names the workers that stopped making progress, if any has been silent
 * for fault.hang_timeout_s: those that got least far (never reached the
 * reduction the others wait in). */
void rm_watch_hang(const rm_watch *w, const rm_roster *r, double now_s, rm_verdict *v);

/* Step `step` (0-based) was non-finite on some worker (the workers applied
 * no update). skip: go on; rollback: remember the step so that the
 * restart skips it, and stop for the supervisor to restart from the last
 * checkpoint; stop: stop for good. A step already rolled back over is
 * skipped whatever the policy. RM_ERR if the rollback cannot be recorded. */
int rm_watch_nonfinite(rm_watch *w, long step, int rolled_back_over, rm_verdict *v, rm_error *err);

/* A worker's checkpoint report, handed to the commit; a failed checkpoint
 * is logged, and stops the job when it is the final one (the run's model,
 * or the one a stop signal asked for: end_step is the job's last step) or
 * checkpoint.on_error is stop. RM_ERR for a protocol violation. */
int rm_watch_ckpt_done(rm_watch *w, rm_ckpt_coord *ck, const rm_msg_ckpt_done *d, long end_step, int stopping,
                       rm_verdict *v, rm_error *err);

#endif
