/* One job per run directory (and per checkpoint directory): a lease lock.
 *
 *   DIR/ringmaster.lock    written by the holder, replaced whole on a takeover:
 *
 *     ringmaster-lock 1
 *     host n1
 *     pid 4242
 *     pid_start 123456            (/proc/PID/stat start time: tells a reused pid apart)
 *     started 1764172800 2026-11-26T16:00:00Z
 *     refreshed 00001764172860    (fixed width: rewritten in place)
 *     lease_s 60
 *     slurm_job_id 8812           (- outside Slurm)
 *     token 5f0c...               (32 hex digits: this holder)
 *
 * The lock is taken with link(2) from a private temporary file, which is
 * atomic on local filesystems and NFS alike (flock is not, on NFS). The
 * holder refreshes `refreshed` every quarter of the lease from a thread,
 * in place, so a refresh needs no free space. A lock is stale, and taken
 * over with a message saying so, when its holder is a process of this host
 * that is gone, when its lease has expired (the holder's host died or
 * hangs; hosts' clocks must agree to well within the lease), or when it
 * belongs to this same Slurm job (a requeue); --break-lock takes over any
 * lock. A holder that finds its token replaced has lost the lock and must
 * stop writing. */
#ifndef RINGMASTER_RUN_LOCK_H
#define RINGMASTER_RUN_LOCK_H

#include "error.h"

#include <pthread.h>

#define RM_RUN_LOCK_NAME "ringmaster.lock"
#define RM_RUN_LOCK_TOKEN_HEX 32
/* The lease a holder writes unless RINGMASTER_LOCK_LEASE_S says otherwise. */
#define RM_RUN_LOCK_DEFAULT_LEASE_S 60.0

typedef struct rm_run_lock {
    char path[4096];
    char token[RM_RUN_LOCK_TOKEN_HEX + 1];
    double lease_s;
    int held;
    volatile int lost; /* set by the refresher when another holder replaced the lock */
    int refreshing;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;
} rm_run_lock;

/* Takes dir's lock (what: "run directory", "checkpoint directory", for
 * messages) and starts refreshing it. A live holder's lock is refused with
 * its host, pid and start time; a stale one is taken over, said on stderr.
 * RM_ERR: err says why. */
int rm_run_lock_acquire(rm_run_lock *lk, const char *dir, const char *what, int break_lock, rm_error *err);

/* RM_OK if dir's lock is held by `token` (the `ringmaster run` that
 * launched this process holds it for the job). */
int rm_run_lock_check_token(const char *dir, const char *token, rm_error *err);

/* 1 when the refresher found the lock taken over by another job. */
int rm_run_lock_lost(const rm_run_lock *lk);

/* Looks now: RM_OK while the lock is still this holder's (or was never
 * taken), RM_ERR once another job holds it. */
int rm_run_lock_check(const rm_run_lock *lk);

/* Stops refreshing and removes the lock if it is still this holder's.
 * Safe on a lock never acquired (zeroed). */
void rm_run_lock_release(rm_run_lock *lk);

#endif
