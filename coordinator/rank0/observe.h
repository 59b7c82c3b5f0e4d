/* What the coordinator sees of a running job beyond the per-step record:
 * every worker's phase times, stragglers (a worker whose own compute time
 * is persistently above the others'), slowdowns (step time up against its
 * rolling median, with the phase that grew), the live figures behind
 * /metrics, and the Chrome traces the workers send. */
#ifndef RINGMASTER_OBSERVE_H
#define RINGMASTER_OBSERVE_H

#include "config.h"
#include "error.h"
#include "progress.h"
#include "protocol.h"
#include "roster.h"
#include "run_dir.h"

#include <stdio.h>

typedef struct rm_observe rm_observe;

typedef struct rm_observe_setup {
    const rm_config *cfg;
    const rm_roster *roster; /* names and the reduction transport */
    rm_run_dir *rd;          /* events and traces */
    rm_progress *progress;   /* broken before a warning */
    long first_step, total_steps;
    int step_slots; /* steps that can be in flight at once */
} rm_observe_setup;

/* A step every worker has reported, as metrics recorded it. */
typedef struct rm_observe_step {
    long step; /* 0-based */
    double lr, step_s, samples_per_s, epoch, loss;
} rm_observe_step;

/* Allocates the state and starts /metrics (unless observe.metrics_port is
 * -1). NULL with err set on failure. */
rm_observe *rm_observe_create(const rm_observe_setup *setup, rm_error *err);
void rm_observe_destroy(rm_observe *o);

/* One worker's report of one step. */
void rm_observe_add_report(rm_observe *o, const rm_msg_report *r, int worker);

/* Every worker reported the step: writes the per-worker members of its
 * metrics.jsonl line to `line` (",\"per_worker\":..."), runs the straggler
 * and slowdown detectors and refreshes the live figures. */
void rm_observe_complete_step(rm_observe *o, const rm_observe_step *s, FILE *line);

/* An evaluation finished. */
void rm_observe_eval(rm_observe *o, long step, double accuracy);

/* Members for summary.json (",\n  \"stragglers\": [...]" ...). */
void rm_observe_write_summary(rm_observe *o, double measured_samples_per_s, FILE *out);

/* A worker's trace (RM_TAG_TRACE) waits at `src`: receive and store it. */
int rm_observe_receive_trace(rm_observe *o, int src, rm_error *err);

/* Writes RUN_DIR/trace.json from the traces received; no-op without any. */
int rm_observe_write_trace(rm_observe *o, rm_error *err);

#endif
