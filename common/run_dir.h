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

/* The logs the coordinator appends to, one JSON object per line. */
enum rm_run_log { RM_RUN_METRICS = 0, RM_RUN_EVAL = 1, RM_RUN_EVENTS = 2, RM_RUN_N_LOGS = 3 };

typedef struct rm_run_dir {
    char path[RM_PATH_CAP];
    int open;               /* the logs are open */
    int fds[RM_RUN_N_LOGS];
    uint64_t config_hash, dataset_hash; /* for the audit trail's run_start */
    int encrypted_data, encrypted_ckpt;
    int started;          /* run_start is in the audit trail */
    char *pending_resume; /* a resume seen before run_start, written after it */
    /* The first write that failed (a full disk...): every write is checked,
     * a failure is kept here and the coordinator stops the job on it. */
    int write_failed;
    rm_error write_error;
} rm_run_dir;

/* What is at a run directory's path before a job uses it. */
enum rm_run_dir_state {
    RM_RUN_DIR_ABSENT,  /* nothing: it will be created, private */
    RM_RUN_DIR_EMPTY,   /* an empty directory of this user's */
    RM_RUN_DIR_RUN,     /* a ringmaster run directory (an earlier attempt, a stopped run, the doctor's) */
    RM_RUN_DIR_FOREIGN, /* a directory holding other files: refused, left as it is */
};

/* Looks at path without changing anything. RM_ERR (err says why) for a
 * symbolic link, a file, or another user's directory. For FOREIGN, err
 * names a few of the files found. */
int rm_run_dir_inspect(const char *path, int *state, rm_error *err);

/* Creates (or reuses) the directory, private (0700, files 0600; another
 * user's directory, or one holding files that are not a run's, is
 * refused), and opens the logs for appending. If config.yaml is absent it
 * is written from cfg. */
int rm_run_dir_open(rm_run_dir *rd, const rm_config *cfg, rm_error *err);
void rm_run_dir_close(rm_run_dir *rd);

/* Appends one line (text ends with '\n') to a log, whole or not at all: a
 * failed write (disk full) is cut back to the line before, never left
 * half-written, and recorded in rd->write_error. RM_ERR on failure.
 * text NULL: the line could not be made (out of memory), recorded so. */
int rm_run_dir_append(rm_run_dir *rd, enum rm_run_log which, const char *text, size_t len);

/* fdatasync of the logs (at checkpoints and at the end: what a checkpoint
 * covers is on disk with it). RM_ERR as above. */
int rm_run_dir_sync(rm_run_dir *rd);

/* Appends {"time":..., "event": name, <fields>} to events.jsonl; fields is
 * already-formatted JSON members ("\"rank\":3,...") or "". start, resume,
 * checkpoint, failure, hang and end also go to the audit trail. RM_ERR
 * when a write failed (recorded as above). */
int rm_run_dir_event(rm_run_dir *rd, const char *name, const char *fields);

/* Default run directory for a config: runs/<config file stem>-<UTC time>. */
void rm_run_dir_default(const char *config_path, char *out, size_t cap);

#endif
