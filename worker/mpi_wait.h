/* Waiting on MPI requests without going silent: a rank blocked on a stuck
 * peer keeps telling the coordinator it is alive, so the hang is pinned on
 * the peer and not on every rank that waits for it. */
#ifndef RINGMASTER_MPI_WAIT_H
#define RINGMASTER_MPI_WAIT_H

#include "error.h"

#include <mpi.h>

/* Work a rank does while it waits on its peers, one small piece between
 * two polls, so that the wait is not lost (the checkpoint snapshot's copy
 * runs there). A piece is a few microseconds: the wait ends that much
 * later at most. */
typedef struct rm_idle_work {
    int (*piece)(void *ctx); /* does one piece; returns 1 while more remain */
    void *ctx;
    int active; /* pieces remain: piece is called on the next poll */
    long pieces; /* done inside waits, since the last rm_idle_work_begin */
    double waited_s; /* seconds spent in waits so far, pieces included */
} rm_idle_work;

/* Hands w a job of pieces: piece(ctx) is called while a wait polls, until
 * it returns 0 or the owner takes the job back (w->active = 0). */
void rm_idle_work_begin(rm_idle_work *w, int (*piece)(void *ctx), void *ctx);

/* A wait's turn between two polls: one piece, if w (may be NULL) has one
 * left. Returns 1 when it did one. */
int rm_idle_work_piece(rm_idle_work *w);

/* Called now and then while a rank waits on its peers. May be NULL. */
typedef struct rm_peer_wait {
    int (*heartbeat)(void *ctx, rm_error *err);
    void *ctx;
    double heartbeat_s;
    /* Gives up after this long (0: never). The coordinator ends a job whose
     * rank is stuck after fault.hang_timeout_s; a wait that outlasts that
     * means the coordinator is gone too, and nobody else would end it. */
    double give_up_s;
    rm_idle_work *idle; /* shared by the copies of this struct; may be NULL */
} rm_peer_wait;

/* MPI_Waitall by polling, calling pw->heartbeat about every
 * pw->heartbeat_s and doing a piece of pw->idle's work between polls. Returns RM_OK, or RM_ERR from MPI, the heartbeat, or
 * after pw->give_up_s. */
int rm_mpi_wait_all(int n, MPI_Request *reqs, const rm_peer_wait *pw, rm_error *err);

#endif
