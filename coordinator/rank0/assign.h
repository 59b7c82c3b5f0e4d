/* Assignment: which samples every worker trains on at every step, and
 * what follows each step (evaluate, checkpoint, stop). Each worker gets
 * its slice of a step several steps ahead, so its loader is never idle;
 * a step's flags are decided once, when its first slice goes out, so
 * that every worker gets the same ones (time-based checkpoints, signals). */
#ifndef RINGMASTER_ASSIGN_H
#define RINGMASTER_ASSIGN_H

#include "ckpt_coord.h"
#include "config.h"
#include "error.h"
#include "order.h"
#include "progress.h"

#include <mpi.h>
#include <signal.h>
#include <stdint.h>

typedef struct rm_assign_setup {
    const rm_config *cfg;
    const rm_dataset_facts *facts;
    int workers;
    long total_steps;
    int supervised; /* under `ringmaster run`, which reports a stop itself */
    /* set by a stop signal (SIGUSR1/SIGTERM/SIGUSR2): checkpoint after the
     * first step not yet handed out and stop there */
    volatile sig_atomic_t *stop_request;
    rm_ckpt_coord *ckpt;     /* told of every checkpoint requested */
    rm_progress *progress;   /* broken before a log line */
} rm_assign_setup;

/* The flags decided for one step. */
typedef struct rm_step_flags {
    long step; /* -1: none yet */
    int flags; /* enum rm_assign_flags */
} rm_step_flags;

typedef struct rm_assign {
    rm_assign_setup s;
    long first_step;
    long *skip_steps; /* steps rolled back over: their updates are skipped */
    int n_skip_steps;
    rm_sampler sampler;
    long local_batch;
    int ahead;           /* steps handed out ahead of the slowest report */
    long end_step;       /* steps run end before this: total, or earlier after a stop signal */
    int stopped_on;      /* the stop signal acted on, or 0 */
    long evals_expected; /* evaluations asked for so far */
    double last_ckpt_request_s;
    /* a periodic checkpoint put off while earlier ones were still being
     * written (taken by the next step with room), and whether that was
     * said */
    int ckpt_owed, ckpt_owed_warned;
    rm_step_flags *flags; /* ring of `ahead` */
    uint8_t *send_bufs;                      /* per worker, a ring of `ahead` messages */
    size_t send_buf_bytes;
    MPI_Request *send_reqs;
} rm_assign;

/* Reads the train split's shard index for the sampler (its hash into
 * *dataset_hash) and allocates the rings. */
int rm_assign_init(rm_assign *a, const rm_assign_setup *setup, uint64_t *dataset_hash, rm_error *err);

/* Training starts at first_step (0, or the resumed checkpoint's), with the
 * steps rolled back over (taken over: freed by rm_assign_free). Starts the
 * clock of time-based checkpoints. */
void rm_assign_begin(rm_assign *a, long first_step, long *skip_steps, int n_skip_steps);
void rm_assign_free(rm_assign *a);

/* Sends worker w its slice of `step` (once the previous message in its
 * ring slot has gone). */
int rm_assign_send(rm_assign *a, int w, long step, rm_error *err);

/* The first `ahead` steps to every worker. */
int rm_assign_start(rm_assign *a, rm_error *err);

/* 1 when `step` was rolled back over: its update is skipped. */
int rm_assign_is_skip_step(const rm_assign *a, long step);

/* Waits until every assignment has been delivered. */
int rm_assign_drain(rm_assign *a, rm_error *err);

/* "SIGUSR1", ... */
const char *rm_signal_name(int sig);

/* The status a stop on `sig` ends with: 75 (requeue) or 130 (interrupted). */
int rm_stop_exit_code(int sig);

#endif
