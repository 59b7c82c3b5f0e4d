/* The run directory the coordinator writes:
 *   config.yaml    the resolved config (written by the launcher, or here
 *                  when the job was started by hand)
 *   metrics.jsonl  one object per training step
 *   eval.jsonl     one object per evaluation
 *   events.jsonl   start, failures, end
 *   audit.jsonl    who did what, hash-chained (audit.h): run start with
 *                  config and dataset index hashes, resume, committed
 *                  checkpoints with their digests, failures, restarts, end
 *   summary.json   written at the end, atomically */
#ifndef RINGMASTER_RUN_DIR_H
#define RINGMASTER_RUN_DIR_H

#include "config.h"
#include "error.h"

#include <stdio.h>

typedef struct rm_run_dir {
    char path[RM_PATH_CAP];
    FILE *metrics, *eval, *events;
    uint64_t config_hash, dataset_hash; /* for the audit trail's run_start */
    int encrypted_data, encrypted_ckpt;
    int started;          /* run_start is in the audit trail */
    char *pending_resume; /* a resume seen before run_start, written after it */
} rm_run_dir;

/* Creates (or reuses) the directory, private (0700, files 0600; another
 * user's directory is refused), and opens the logs for appending. If
 * config.yaml is absent it is written from cfg. */
int rm_run_dir_open(rm_run_dir *rd, const rm_config *cfg, rm_error *err);
void rm_run_dir_close(rm_run_dir *rd);

/* Appends {"time":..., "event": name, <fields>} to events.jsonl; fields is
 * already-formatted JSON members ("\"rank\":3,...") or "". start, resume,
 * checkpoint, failure, hang and end also go to the audit trail. */
void rm_run_dir_event(rm_run_dir *rd, const char *name, const char *fields);

/* Default run directory for a config: runs/<config file stem>-<UTC time>. */
void rm_run_dir_default(const char *config_path, char *out, size_t cap);

#endif
