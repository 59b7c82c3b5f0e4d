/* `ringmaster run`: builds the MPMD mpirun line for one coordinator and N
 * workers, runs it, and turns mpirun's verdict into a clear message. */
#ifndef RINGMASTER_LAUNCHER_H
#define RINGMASTER_LAUNCHER_H

#include "config.h"
#include "run_lock.h"

typedef struct rm_launch_plan {
    char **argv; /* NULL-terminated, owned */
    int argc;
    int oversubscribed;
    int in_slurm;
    long slots;
} rm_launch_plan;

/* bin_dir: where ringmaster-coordinator and ringmaster-worker live.
 * config_path: the resolved config every rank reads. With
 * cfg->hostfile, mpirun launches across its hosts (slots: theirs); with
 * cfg->network_interface, MPI and NCCL use that interface between hosts.
 * rank_sets (n_rank_sets "section.key=value"): --set overrides every rank
 * gets on top of config_path (a restart on fewer workers). */
int rm_launch_plan_build(rm_launch_plan *plan, const rm_config *cfg, const char *bin_dir, const char *config_path,
                         const char *const *rank_sets, int n_rank_sets, rm_error *err);

#define RM_HOSTFILE_MAX 1024

/* An Open MPI hostfile: "HOST [slots=N] ..." per line, # comments. */
typedef struct rm_hostfile {
    int n;
    char host[RM_HOSTFILE_MAX][256];
    long slots[RM_HOSTFILE_MAX]; /* 1 where the line gives none */
} rm_hostfile;

/* Reads path; an unreadable file or a line without a host is an error
 * naming the file and line. */
int rm_hostfile_read(const char *path, rm_hostfile *hf, rm_error *err);
/* Writes hf to path whole (atomically). */
int rm_hostfile_write(const char *path, const rm_hostfile *hf, rm_error *err);
long rm_hostfile_slots(const rm_hostfile *hf);
/* Removes `host`; 1 if it was there. */
int rm_hostfile_remove(rm_hostfile *hf, const char *host);
/* Inside a Slurm allocation of more than one node: its nodes (scontrol's
 * expansion of SLURM_JOB_NODELIST) with the tasks Slurm gives each
 * (SLURM_TASKS_PER_NODE) as slots, the hosts mpirun launches on there.
 * Returns 0 (hf empty) outside Slurm or on one node, 1 when filled,
 * RM_ERR (err says why) when the variables do not add up. */
int rm_hostfile_from_slurm(rm_hostfile *hf, rm_error *err);
void rm_launch_plan_free(rm_launch_plan *plan);

/* One program on `ranks` ranks, with the same mpirun options as a job:
 * `ringmaster doctor` measures on the job's ranks and placement. */
int rm_launch_plan_build_program(rm_launch_plan *plan, const rm_config *cfg, long ranks, const char *program,
                                 const char *const *args, int n_args, rm_error *err);

/* The plan as one shell-quoted line. Caller frees. */
char *rm_launch_plan_format(const rm_launch_plan *plan);

/* argv as one shell-quoted line. Caller frees; NULL when out of memory. */
char *rm_shell_join(char *const *argv, int argc);

struct rm_launch_result;
/* Inside a Slurm job whose launch failed without mpirun naming a lost
 * host: asks Slurm which of `hosts` (the allocation's nodes at the start)
 * the job no longer has (a node that failed or was set DOWN, under
 * --no-kill) and names the first in res (lost_host, verdict, with the
 * ranks run_dir/ranks.txt placed there). 1 when one was found. */
int rm_launch_slurm_lost(const rm_hostfile *hosts, const char *run_dir, struct rm_launch_result *res);

/* What ringmaster run was asked to do by a signal (rm_launch_stop_kind). */
enum { RM_STOP_NONE = 0, RM_STOP_INTERRUPT = 1, RM_STOP_REQUEUE = 2 };

typedef struct rm_launch_result {
    int status;          /* mpirun's exit status; 128+N: it was killed by signal N */
    int killed;          /* ... it was (not a status a rank chose) */
    int started;         /* the job got past its handshake (the coordinator wrote ranks.txt) */
    int stop_forwarded;  /* a stop request reached the ranks */
    int stopped_at_once; /* ... or the job was ended without a checkpoint (a second Ctrl-C, or not started) */
    int lock_lost;       /* another job took a lock over: this one was ended */
    char lost_host[256]; /* mpirun lost its daemon on this host (it died, or its network is down); "" */
    char verdict[512];   /* when status is not 0: which rank failed and how */
} rm_launch_result;

/* Runs the plan once, passing its output through (Open MPI's own notices
 * about the failure left out), and fills *res; returns res->status.
 * run_dir: where ranks.txt names the processes. locks (n_locks, entries
 * may be NULL) are watched: one taken over ends the job at once. */
int rm_launch_run(const rm_launch_plan *plan, const char *run_dir, const rm_run_lock *const *locks, int n_locks,
                  rm_launch_result *res);

/* The supervisor's signal handling (see launcher.c): SIGINT, SIGTERM and
 * SIGUSR1 become stop requests passed on to the job. */
void rm_launch_install_signals(void);
/* RM_STOP_* asked for so far, and the first signal that asked (0: none). */
int rm_launch_stop_kind(void);
int rm_launch_stop_signal(void);

#endif
