/* The run directory the coordinator writes:
 *   config.yaml    the resolved config (written by the launcher, or here
 *                  when the job was started by hand)
 *   metrics.jsonl  one object per training step
 *   eval.jsonl     one object per evaluation
 *   events.jsonl   start, failures, end
 *   summary.json   written at the end, atomically */
#ifndef RINGMASTER_RUN_DIR_H
#define RINGMASTER_RUN_DIR_H

#include "config.h"
#include "error.h"

#include <stdio.h>

typedef struct rm_run_dir {
    char path[RM_PATH_CAP];
    FILE *metrics, *eval, *events;
} rm_run_dir;

/* Creates (or reuses) the directory and opens the logs for appending. If
 * config.yaml is absent it is written from cfg. */
int rm_run_dir_open(rm_run_dir *rd, const rm_config *cfg, rm_error *err);
void rm_run_dir_close(rm_run_dir *rd);

/* Appends {"time":..., "event": name, <fields>} to events.jsonl; fields is
 * already-formatted JSON members ("\"rank\":3,...") or "". */
void rm_run_dir_event(rm_run_dir *rd, const char *name, const char *fields);

/* Default run directory for a config: runs/<config file stem>-<UTC time>. */
void rm_run_dir_default(const char *config_path, char *out, size_t cap);

#endif
