/* The coordinator's half of the two-phase checkpoint: it collects every
 * worker's "file written" report for a step and, when all are in and good,
 * writes the manifest, commits (rename + `latest`) and prunes. A step any
 * worker failed to write is discarded and the previous checkpoint stays
 * the latest; the caller decides whether training goes on. */
#ifndef RINGMASTER_CKPT_COORD_H
#define RINGMASTER_CKPT_COORD_H

#include "checkpoint.h"
#include "config.h"
#include "protocol.h"
#include "run_dir.h"

#define RM_CKPT_COORD_PENDING 4

typedef struct rm_ckpt_pending {
    long step; /* -1: free slot */
    int received;
    int failed;
    char reason[RM_REASON_CAP + 64];
    double write_s_max;
    rm_ckpt_file *files; /* one per worker */
    long opt_steps;
} rm_ckpt_pending;

typedef struct rm_ckpt_coord {
    char root[RM_PATH_CAP];
    int workers;
    long keep;
    rm_ckpt_manifest base; /* fields shared by every manifest of the run */
    const rm_model *model; /* not owned; outlives this */
    long global_batch, train_samples;
    rm_ckpt_pending pending[RM_CKPT_COORD_PENDING];
    long last_committed; /* -1: none */
    long committed, failed;
    double commit_s_total;
} rm_ckpt_coord;

int rm_ckpt_coord_init(rm_ckpt_coord *cc, const rm_config *cfg, const rm_model *model, int workers,
                       long train_samples, uint64_t dataset_hash, long last_committed, rm_error *err);
void rm_ckpt_coord_free(rm_ckpt_coord *cc);

/* Number of checkpoints requested but not yet committed or discarded. */
int rm_ckpt_coord_in_flight(const rm_ckpt_coord *cc);

/* Notes that the checkpoint after `steps_done` steps was requested. */
int rm_ckpt_coord_expect(rm_ckpt_coord *cc, long steps_done, rm_error *err);

/* Handles one worker's report. When the step is complete it is committed
 * (*outcome = 1) or discarded (*outcome = -1, reason in *why); otherwise
 * *outcome = 0. RM_ERR only for a protocol violation. */
int rm_ckpt_coord_on_done(rm_ckpt_coord *cc, const rm_msg_ckpt_done *d, rm_run_dir *rd, int *outcome, long *step,
                          rm_error *why, rm_error *err);

#endif
