/* What rank 0 records about training: one metrics.jsonl line per step
 * once every worker has reported it, eval.jsonl per evaluation, the
 * progress display and summary.json. */
#ifndef RINGMASTER_METRICS_H
#define RINGMASTER_METRICS_H

#include "config.h"
#include "error.h"
#include "model.h"
#include "observe.h"
#include "progress.h"
#include "protocol.h"
#include "roster.h"
#include "run_dir.h"

#include <stdint.h>

/* One step's reports so far: sums, and each phase's mean and maximum
 * over the workers. */
typedef struct rm_step_acc {
    long step; /* -1: free */
    int reports;
    double loss_sum, count, correct, lr, grad_norm;
    int nonfinite, update_skipped;
    int checkpoint; /* a checkpoint after this step */
    uint64_t batch_digest;
    double phase[RM_N_PHASES][2]; /* mean, max */
} rm_step_acc;

typedef struct rm_eval_acc {
    long step; /* -1: free */
    int results;
    double loss_sum, correct, count, eval_s;
} rm_eval_acc;

typedef struct rm_metrics_setup {
    const rm_config *cfg;
    const rm_dataset_facts *facts;
    const rm_model *model;
    const rm_roster *roster;
    rm_run_dir *rd;
    rm_progress *progress;
    rm_observe *obs;
    long first_step, total_steps;
    int step_slots; /* steps that can be in flight at once */
} rm_metrics_setup;

typedef struct rm_metrics {
    rm_metrics_setup s;
    rm_step_acc *steps; /* ring of step_slots */
    rm_eval_acc evals[4];
    double *train_s; /* per worker: the sum of its step times */
    long steps_done, evals_done;
    double last_loss, last_eval_accuracy, last_eval_loss;
    /* checkpoints, their stalls' sum and largest (the slowest worker's);
     * ckpt_last_stall_s: the last one's so far, which the step after it
     * may add to */
    long ckpt_stalls;
    double ckpt_stall_total_s, ckpt_stall_max_s, ckpt_last_stall_s;
    /* smoothed (EMA) step and phase times of the slowest worker, for the
     * progress display: one step's figure is too noisy to read */
    double ema_step_s, ema_phase_s[RM_N_PHASES];
} rm_metrics;

int rm_metrics_init(rm_metrics *m, const rm_metrics_setup *setup, rm_error *err);
void rm_metrics_free(rm_metrics *m);

/* One worker's report of one step. When it completes the step (every
 * worker reported) the step is recorded and *completed is its index,
 * with *nonfinite set when any worker saw a non-finite loss or gradient;
 * otherwise *completed is -1. RM_ERR for a protocol violation. */
int rm_metrics_add_report(rm_metrics *m, const rm_msg_report *r, int worker, long *completed, int *nonfinite,
                          rm_error *err);

/* One worker's evaluation result; recorded when all are in. */
int rm_metrics_add_eval(rm_metrics *m, const rm_msg_eval_result *r, rm_error *err);

/* What summary.json says beyond the recorded steps. */
typedef struct rm_run_outcome {
    double wall_s;
    uint64_t weights_digest;
    long ckpt_committed, ckpt_failed;
} rm_run_outcome;

/* summary.json, replaced whole, and the "done:" line. */
int rm_metrics_write_summary(rm_metrics *m, const rm_run_outcome *out, rm_error *err);

#endif
