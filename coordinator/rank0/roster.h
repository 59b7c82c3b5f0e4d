/* Who the workers are (host, pid, what they run) and how far each has
 * got: filled by the handshake, refreshed by every message a worker sends,
 * read by the hang watch and by whatever names a worker. */
#ifndef RINGMASTER_ROSTER_H
#define RINGMASTER_ROSTER_H

#include "error.h"
#include "protocol.h"

#include <stddef.h>
#include <stdint.h>

typedef struct rm_worker_info {
    int pid;
    char host[RM_HOST_CAP];
    uint64_t weights_digest; /* from DONE */
    double last_heard_s;
    long progress; /* 2s+1: reached the reduction of step s; 2s+2: reported step s */
} rm_worker_info;

typedef struct rm_roster {
    int workers;
    rm_worker_info *info; /* workers entries */
    int backend;          /* RM_BACKEND_CPU or _GPU, from the HELLOs */
    int transport;        /* enum rm_transport, from the HELLOs */
    double peak_flops;    /* the workers' measured sgemm rates, summed: MFU's bound */
    long optimizer_state_bytes; /* the most optimizer state any worker allocated */
    long memory_bytes;          /* the most memory building a worker's backend took (rm_backend.memory_bytes) */
} rm_roster;

int rm_roster_init(rm_roster *r, int workers, rm_error *err);
void rm_roster_free(rm_roster *r);

/* A message from worker w: it is alive; progress only moves forward. */
void rm_roster_heard(rm_roster *r, int w, double now_s, long progress);

/* 1 when every worker runs on the same host. */
int rm_roster_one_host(const rm_roster *r);

/* "worker W (rank R, host H, pid P)" into buf. */
const char *rm_roster_name(const rm_roster *r, int w, char *buf, size_t cap);

/* RUN_DIR/ranks.txt: "rank worker host pid" per line, so tools (and the
 * launcher, when mpirun reports a death) can name the process behind a
 * rank. A failure is logged: the file is a convenience. */
void rm_roster_write_ranks(const rm_roster *r, const char *run_dir);

#endif
