/* What the coordinator sees of a running job beyond the per-step record:
 * every worker's phase times, stragglers (a worker whose own compute time
 * is persistently above the others'), slowdowns (step time up against its
 * rolling median, with the phase that grew), the live figures behind
 * /metrics, and the Chrome traces the workers send. */
#ifndef RINGMASTER_OBSERVE_H
#define RINGMASTER_OBSERVE_H

#include "error.h"
#include "protocol.h"

#include <stdio.h>

struct coordinator;
struct step_acc;
typedef struct rm_observe rm_observe;

/* Phases a worker reports, in the order of rm_observe arrays. */
enum rm_phase {
    RM_PHASE_DATA_WAIT,
    RM_PHASE_COMPUTE,
    RM_PHASE_ALLREDUCE_WAIT,
    RM_PHASE_OPTIMIZER,
    RM_PHASE_CKPT_STALL,
    RM_PHASE_STEP,
    RM_N_PHASES
};

/* Allocates the state and starts /metrics (unless observe.metrics_port is
 * -1). NULL with err set on failure. */
rm_observe *observe_create(struct coordinator *c, rm_error *err);
void observe_destroy(rm_observe *o);

/* One worker's report of one step. */
void observe_add_report(rm_observe *o, const rm_msg_report *r, int worker);

/* Every worker reported step s: writes the per-worker members of its
 * metrics.jsonl line to `line` (",\"per_worker\":..."), runs the straggler
 * and slowdown detectors and refreshes the live figures. */
void observe_complete_step(rm_observe *o, const struct step_acc *s, double samples_per_s, double epoch, double loss,
                           FILE *line);

/* An evaluation finished. */
void observe_eval(rm_observe *o, long step, double accuracy);

/* Members for summary.json (",\n  \"stragglers\": [...]" ...). */
void observe_write_summary(rm_observe *o, double measured_samples_per_s, FILE *out);

/* A worker's trace (RM_TAG_TRACE) waits at `src`: receive and store it. */
int observe_receive_trace(rm_observe *o, int src, rm_error *err);

/* Writes RUN_DIR/trace.json from the traces received; no-op without any. */
int observe_write_trace(rm_observe *o, rm_error *err);

#endif
