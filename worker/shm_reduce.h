/* Gradient reduction through node-shared memory for the CPU backend, used
 * when every worker runs on one node.
 *
 * Each worker's gradient buffer is its own segment of one shared MPI
 * window, and the parameters are one shared copy that every worker reads.
 * A step is: every worker writes its gradients (backward); a barrier; each
 * worker sums its 1/N slice over all N segments, in rank order, into its
 * own segment, and the squares of that slice into a partial norm; the
 * partial norms, gathered and added in rank order, give the global norm;
 * each worker applies the optimizer to its slice of the shared
 * parameters; a barrier. Every
 * gradient float crosses memory once instead of travelling through MPI's
 * reduce and broadcast, and the optimizer's work is split N ways.
 *
 * Worker r's slice is [n*r/N, n*(r+1)/N), the same slice it writes into
 * checkpoints, so the optimizer state it keeps current is the state it
 * saves. */
#ifndef RINGMASTER_SHM_REDUCE_H
#define RINGMASTER_SHM_REDUCE_H

#include "error.h"
#include "mpi_wait.h"

#include <mpi.h>

typedef struct rm_shm_reduce {
    MPI_Comm node_comm; /* the workers, all on this node */
    int rank, size;
    MPI_Win grad_win, param_win;
    int have_windows;
    long n;
    long lo, hi;       /* this worker's slice */
    float *grads;      /* this worker's segment, n floats */
    float **segments;  /* every worker's segment, by rank */
    float *params;     /* the shared parameters, n floats */
    size_t window_bytes; /* what this rank allocated in the shared windows: its segment, and rank 0 the parameters */
    rm_peer_wait peer_wait;
} rm_shm_reduce;

/* Whether every rank of comm shares this node's memory and the shared
 * memory filesystem has room for n floats per rank plus the parameters
 * (a window mapped beyond a full /dev/shm faults at first touch). When
 * not, `why` says why. The answer is the same on every rank. Collective. */
int rm_shm_reduce_possible(MPI_Comm comm, long n, int *possible, char *why, size_t why_cap, rm_error *err);

/* Allocates the shared windows over comm (collective; every rank must be
 * on this node). The parameters start as a copy of init_params (the same
 * on every rank), each rank copying its slice. */
int rm_shm_reduce_init(rm_shm_reduce *r, MPI_Comm comm, long n, const float *init_params, rm_error *err);
void rm_shm_reduce_free(rm_shm_reduce *r);

/* After every rank's backward: sums this rank's slice over all segments
 * into r->grads[lo, hi) and sets *norm to the L2 norm of the whole summed
 * gradient. On return no rank reads another's segment any more, so the
 * next backward may overwrite them. Collective. */
int rm_shm_reduce_sum(rm_shm_reduce *r, double *norm, rm_error *err);

/* dst[0, len) = ((from + g_0) + g_1) + ... + g_(size-1), the segments at
 * [at, at + len) in rank order; from NULL: g_0 + g_1 + ..., this node's
 * whole sum. The same association, so the same floats, as any split of
 * the ranks into consecutive groups folded one after another. dst may be
 * this rank's own segment at `at`; from may be dst. */
void rm_shm_reduce_fold(const rm_shm_reduce *r, const float *from, long at, long len, float *dst);

/* The sum of squares of g[lo, hi), in blocks from lo: the same double
 * for the same floats and the same slice. */
double rm_shm_reduce_sumsq(const float *g, long lo, long hi);

/* The L2 norm from every rank's sum of squares of its slice: gathered and
 * added in rank order, so the same ranks' slices give the same double on
 * any placement. Collective over comm. */
int rm_shm_reduce_norm(MPI_Comm comm, double sumsq, const rm_peer_wait *pw, double *norm, rm_error *err);

/* sqrt(sumsq[0] + sumsq[1] + ... + sumsq[n-1]), added in that order: the
 * one way every path turns slices' squares into the norm. */
double rm_shm_reduce_norm_of(const double *sumsq, int n);

/* A barrier: after it every rank sees every rank's parameter writes.
 * Collective. */
int rm_shm_reduce_sync(rm_shm_reduce *r, rm_error *err);

#endif
