/* The coordinator's half of the two-phase checkpoint: it collects every
 * worker's "file written" report for a step and, when all are in and good,
 * writes the manifest, commits (rename + `latest`) and prunes. A step any
 * worker failed to write is discarded and the previous checkpoint stays
 * the latest; the caller decides whether training goes on. Every commit
 * is fenced by the coordinator's generation (ckpt_fence.h): once a newer
 * job has taken the checkpoint directory, this one's commits are refused
 * and change nothing. */
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
    long fenced_by; /* 0, or the newer generation that refused a commit: this job is stale */
    double commit_delay_s; /* test knob (debug.ckpt_commit_delay_s): sleep before each commit */
} rm_ckpt_coord;

/* generation: the coordinator's own (rm_ckpt_generation_advance), which
 * its workers name their parts' directories after and every commit must
 * still hold. */
int rm_ckpt_coord_init(rm_ckpt_coord *cc, const rm_config *cfg, const rm_model *model, int workers,
                       long train_samples, uint64_t dataset_hash, long last_committed, long generation,
                       rm_error *err);
/* The same from explicit figures: the checkpoint root (made private),
 * `keep` committed checkpoints, the manifest fields shared by the run
 * (seed, optimizer, n_state, n_params, world_size, hashes; its files and
 * tensors are ignored), the model that names the tensors (not owned; may
 * be NULL: no tensor table), and the run's batch and size for the data
 * cursor and epoch. base->generation is the generation commits are fenced
 * by. */
int rm_ckpt_coord_init_with(rm_ckpt_coord *cc, const char *root, int workers, long keep, const rm_ckpt_manifest *base,
                            const rm_model *model, long global_batch, long train_samples, long last_committed,
                            rm_error *err);
void rm_ckpt_coord_free(rm_ckpt_coord *cc);

/* Number of checkpoints requested but not yet committed or discarded. */
int rm_ckpt_coord_in_flight(const rm_ckpt_coord *cc);

/* Notes that the checkpoint after `steps_done` steps was requested. */
int rm_ckpt_coord_expect(rm_ckpt_coord *cc, long steps_done, rm_error *err);

/* Handles one worker's report. When the step is complete it is committed
 * (*outcome = 1), discarded (*outcome = -1, reason in *why) or refused
 * because a newer generation holds the checkpoint directory (*outcome =
 * RM_CKPT_COORD_FENCED, *why names both generations; nothing was changed,
 * and this job must stop); otherwise *outcome = 0. RM_ERR only for a
 * protocol violation. */
#define RM_CKPT_COORD_FENCED (-2)
/* rm_ckpt_coord_on_done without the run directory's logs: the audit head
 * is read from run_dir (NULL: none recorded), and *write_s receives the
 * slowest worker's write time when the step is complete. Before the
 * rename every part must be there as its worker reported it. */
int rm_ckpt_coord_receive(rm_ckpt_coord *cc, const rm_msg_ckpt_done *d, const char *run_dir, int *outcome, long *step,
                          double *write_s, rm_error *why, rm_error *err);

int rm_ckpt_coord_on_done(rm_ckpt_coord *cc, const rm_msg_ckpt_done *d, rm_run_dir *rd, int *outcome, long *step,
                          rm_error *why, rm_error *err);

#endif
