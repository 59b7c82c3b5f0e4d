/* `ringmaster run`: builds the MPMD mpirun line for one coordinator and N
 * workers, runs it, and turns mpirun's verdict into a clear message. */
#ifndef RINGMASTER_LAUNCHER_H
#define RINGMASTER_LAUNCHER_H

#include "config.h"

typedef struct rm_launch_plan {
    char **argv; /* NULL-terminated, owned */
    int argc;
    int oversubscribed;
    int in_slurm;
    long slots;
} rm_launch_plan;

/* bin_dir: where ringmaster-coordinator and ringmaster-worker live.
 * config_path: the resolved config every rank reads. */
int rm_launch_plan_build(rm_launch_plan *plan, const rm_config *cfg, const char *bin_dir, const char *config_path,
                         rm_error *err);
void rm_launch_plan_free(rm_launch_plan *plan);

/* One program on `ranks` ranks, with the same mpirun options as a job:
 * `ringmaster doctor` measures on the job's ranks and placement. */
int rm_launch_plan_build_program(rm_launch_plan *plan, const rm_config *cfg, long ranks, const char *program,
                                 const char *const *args, int n_args, rm_error *err);

/* The plan as one shell-quoted line. Caller frees. */
char *rm_launch_plan_format(const rm_launch_plan *plan);

/* Runs the plan once, passing output through; returns mpirun's exit status
 * and, when it is not 0, which rank failed and how in verdict. */
int rm_launch_run(const rm_launch_plan *plan, const char *run_dir, char *verdict, size_t verdict_cap);

/* The supervisor's signal handling (see launcher.c); the signal received, or 0. */
void rm_launch_install_signals(void);
int rm_launch_stop_signal(void);

#endif
