/* The coordinator's state, shared by its modules:
 *   coordinator_main.c  setup, resume, the message loop, assignments, shutdown
 *   handshake.c         every rank proves it runs the same job
 *   metrics.c           per-step and evaluation records, progress, summary.json
 *   watch.c             hangs, non-finite steps, checkpoint outcomes
 *   observe.c           per-worker figures, stragglers, slowdowns, /metrics, traces */
#ifndef RINGMASTER_COORDINATOR_H
#define RINGMASTER_COORDINATOR_H

#include "ckpt_coord.h"
#include "config.h"
#include "model.h"
#include "observe.h"
#include "order.h"
#include "progress.h"
#include "protocol.h"
#include "run_dir.h"
#include "run_lock.h"

#include <mpi.h>
#include <signal.h>
#include <stdint.h>

/* The coordinator sleeps this long when no message waits: it shares
 * cores with the workers, and each wake-up preempts one. Assignments go
 * out several steps ahead, so a late wake-up never stalls a worker. */
#define RM_COORD_IDLE_SLEEP_NS 2000000L

#define IDLE_SLEEP_NS 300000L

typedef struct step_acc {
    long step;
    int reports;
    double loss_sum, count, correct, lr, grad_norm;
    int nonfinite, update_skipped;
    uint64_t batch_digest;
    double data_wait_s[2], compute_s[2], allreduce_wait_s[2], optimizer_s[2], ckpt_stall_s[2], step_s[2]; /* mean, max */
} step_acc;

typedef struct eval_acc {
    long step;
    int results;
    double loss_sum, correct, count, eval_s;
} eval_acc;

typedef struct worker_info {
    int pid;
    char host[RM_HOST_CAP];
    uint64_t weights_digest;
    double last_heard_s;
    long progress; /* 2s+1: reached the all-reduce of step s; 2s+2: reported step s */
    double train_s; /* the sum of this worker's step times */
} worker_info;

/* Flags of a step, decided once when its first assignment goes out, so
 * every worker gets the same (time-based checkpoints, signals). */
typedef struct step_flags {
    long step;
    int flags;
} step_flags;


typedef struct coordinator {
    rm_config cfg;
    rm_dataset_facts facts;
    rm_model model;
    rm_run_dir rd;
    rm_progress progress;
    rm_sampler sampler;
    int workers;
    int backend; /* RM_BACKEND_CPU or _GPU: what the workers run (from their HELLO) */
    long local_batch, total_steps, first_step;
    long end_step;  /* steps run end before this: total_steps, or earlier after a stop signal */
    int assign_ahead;
    step_flags *flag_ring; /* assign_ahead entries */
    long flags_decided_through;
    double last_ckpt_request_s;
    rm_ckpt_coord ckpt;
    uint64_t dataset_hash;
    char resume_dir[RM_DIR_CAP];
    long *skip_steps;
    int n_skip_steps;
    int stopping_on_signal; /* the stop signal acted on (coordinator_stop_exit_code), or 0 */
    int supervised;         /* launched by `ringmaster run`, which holds the run lock and reports stops */
    rm_run_lock run_lock, ckpt_lock; /* held here when launched by hand */
    char lock_token[RM_RUN_LOCK_TOKEN_HEX + 1]; /* ... else the supervisor's, from RINGMASTER_RUN_LOCK */
    double lock_checked_s;
    long ckpt_stalls;
    double ckpt_stall_total_s, ckpt_stall_max_s;
    worker_info *info;
    /* Per worker, a ring of assign_ahead send buffers and their requests. */
    uint8_t *send_bufs;
    size_t send_buf_bytes;
    MPI_Request *send_reqs;
    step_acc *steps; /* ring of assign_ahead + 2 */
    int n_step_slots;
    eval_acc evals[4];
    long steps_done;
    long evals_expected, evals_done;
    double train_s;   /* the slowest worker's total step time (metrics_train_seconds) */
    double started_s;
    double last_eval_accuracy, last_eval_loss;
    double peak_flops; /* the workers' measured sgemm rates, summed: the bound MFU is taken against */
    long optimizer_state_bytes; /* the most optimizer state any worker allocated (hello) */
    double last_loss;
    /* Smoothed (EMA) step and phase times of the slowest worker, for the
     * progress display: one step's figure is too noisy to read. */
    double ema_step_s, ema_phase_s[4];
    rm_observe *obs; /* per-worker figures, stragglers, slowdowns, /metrics, traces */
} coordinator;

/* Set by SIGUSR1/SIGTERM/SIGUSR2: checkpoint at the next step boundary and
 * stop; the exit status it ends with. */
extern volatile sig_atomic_t coordinator_stop_requested;
int coordinator_stop_exit_code(int sig);

/* Records why the job ends (log and events.jsonl), then MPI_Abort with
 * `code`. worker < 0: not a worker's failure. Does not return. */
void coordinator_abort_code(coordinator *c, int worker, long step, const char *reason, int code)
    __attribute__((noreturn));
void coordinator_record_fatal(coordinator *c, int worker, long step, const char *reason);
int coordinator_is_skip_step(const coordinator *c, long step);

/* handshake.c */
int handshake_run(coordinator *c, rm_error *err);
int handshake_refuse(coordinator *c, const char *reason, int code, rm_error *err);
void handshake_write_ranks(coordinator *c);

/* metrics.c: a finished step or evaluation (all workers reported). */
void metrics_add_report(coordinator *c, step_acc *s, const rm_msg_report *r, int worker);
void metrics_complete_step(coordinator *c, step_acc *s);
int metrics_add_eval(coordinator *c, const rm_msg_eval_result *r, rm_error *err);
int metrics_write_summary(coordinator *c, double wall_s, rm_error *err);

/* watch.c */
void watch_check_hang(coordinator *c);
void watch_check_lock(coordinator *c);
int watch_nonfinite(coordinator *c, long step, rm_error *err);
int watch_ckpt_done(coordinator *c, const rm_msg_ckpt_done *d, rm_error *err);

#endif
