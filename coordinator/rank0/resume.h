/* What the coordinator does before a (re)start: find the newest checkpoint
 * that verifies, check it belongs to this job, trim the run's logs back to
 * it, and read the steps to skip after a rollback. */
#ifndef RINGMASTER_RESUME_H
#define RINGMASTER_RESUME_H

#include "checkpoint.h"
#include "config.h"

typedef struct rm_resume_point {
    int found;
    char dir[RM_PATH_CAP + 48];
    rm_ckpt_manifest manifest;
} rm_resume_point;

/* Looks in the checkpoint root. Skipped checkpoints are logged with the
 * reason. A checkpoint of another job (training hash, dataset or model
 * differ) is an error: resuming it would silently train something else. */
int rm_resume_find(const rm_config *cfg, uint64_t dataset_hash, long n_params, rm_resume_point *rp, rm_error *err);
void rm_resume_free(rm_resume_point *rp);

/* Drops lines whose "step" is beyond `step` from a JSONL log (they belong
 * to an attempt that did not reach a checkpoint), atomically. */
int rm_resume_trim_log(const char *path, long step, rm_error *err);

/* Steps whose update is skipped after a non-finite rollback
 * (RUN_DIR/skip_steps.txt, one step index per line). Caller frees. */
int rm_resume_read_skips(const char *run_dir, long **steps, int *n, rm_error *err);
int rm_resume_add_skip(const char *run_dir, long step, rm_error *err);

#endif
