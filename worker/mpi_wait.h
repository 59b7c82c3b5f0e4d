/* Waiting on MPI requests without going silent: a rank blocked on a stuck
 * peer keeps telling the coordinator it is alive, so the hang is pinned on
 * the peer and not on every rank that waits for it. */
#ifndef RINGMASTER_MPI_WAIT_H
#define RINGMASTER_MPI_WAIT_H

#include "error.h"

#include <mpi.h>

/* Called now and then while a rank waits on its peers. May be NULL. */
typedef struct rm_peer_wait {
    int (*heartbeat)(void *ctx, rm_error *err);
    void *ctx;
    double heartbeat_s;
    /* Gives up after this long (0: never). The coordinator ends a job whose
     * rank is stuck after fault.hang_timeout_s; a wait that outlasts that
     * means the coordinator is gone too, and nobody else would end it. */
    double give_up_s;
} rm_peer_wait;

/* MPI_Waitall by polling, calling pw->heartbeat about every
 * pw->heartbeat_s. Returns RM_OK, or RM_ERR from MPI, the heartbeat, or
 * after pw->give_up_s. */
int rm_mpi_wait_all(int n, MPI_Request *reqs, const rm_peer_wait *pw, rm_error *err);

#endif
