/* The handshake: every worker says who it is and proves it runs the same
 * job (protocol, config hash, model size, backend, initial weights) before
 * any step; or the start is refused to all, with the reason. */
#ifndef RINGMASTER_HANDSHAKE_H
#define RINGMASTER_HANDSHAKE_H

#include "error.h"
#include "roster.h"

#include <stdint.h>

/* What every worker must agree with. */
typedef struct rm_handshake_expect {
    uint64_t config_hash;
    long n_params;
    double timeout_s; /* for every HELLO to arrive */
} rm_handshake_expect;

/* Collects every HELLO into the roster. RM_ERR with the reason (naming
 * the worker) when the job must not start; the caller then refuses the
 * start with rm_handshake_refuse. */
int rm_handshake_run(rm_roster *r, const rm_handshake_expect *want, rm_error *err);

/* Tells every worker not to start, with the reason and the exit status
 * they end with, so that MPI finishes normally: nothing is left waiting. */
int rm_handshake_refuse(int workers, const char *reason, int exit_code, rm_error *err);

#endif
