/* Gradient reduction in two stages for the CPU backend when the workers
 * span hosts: through node-shared memory inside each host, and a chain
 * between hosts, giving the same floats as shm_reduce.h gives the same
 * workers on one host.
 *
 * The workers must be H hosts x L workers, each host's ranks consecutive
 * (worker r = host h, local index l, r = h*L + l), so that the host order
 * followed by the local order is the rank order. The gradient is cut into
 * L chain slices, [n*l/L, n*(l+1)/L). For chain slice l, the worker of
 * local index l on host 0 adds its host's segments in rank order; it sends
 * that partial to the worker of index l on host 1, which goes on adding
 * its own host's segments in rank order to it; ... the last host has the
 * sum ((g0 + g1) + ...) + g(N-1), association and order as one host's
 * left fold, so the same float. Each chain slice goes in chunks, so host
 * h + 1 adds a chunk while host h adds the next one. The last host then
 * broadcasts each slice to the workers of the same index on every host,
 * into their own segment's slice.
 *
 * From there each host runs one host's step, with no traffic between
 * hosts: every optimizer slice [n*k/N, n*(k+1)/N) lies whole in one chain
 * slice, so in one segment of the host; the norm comes from the squares
 * of all N optimizer slices, each summed as one host sums it, gathered
 * inside the host and added in rank order (the same norm); and the
 * workers of each host update all N slices of its shared parameters, the
 * worker of local index l the column of slices l, L + l, 2L + l, ... (its
 * own slice r among them) with their optimizer state, the same floats on
 * every host. A worker so holds the optimizer state of H slices (1/L of
 * it) and checkpoints its own slice r, as on one host. A barrier on each
 * host publishes the parameters. */
#ifndef RINGMASTER_HIER_REDUCE_H
#define RINGMASTER_HIER_REDUCE_H

#include "error.h"
#include "mpi_wait.h"
#include "shm_reduce.h"

#include <mpi.h>

typedef struct rm_hier_reduce {
    rm_shm_reduce local; /* this host's workers: segments and shared parameters; local.lo/hi: the chain slice */
    MPI_Comm workers;    /* every worker, in rank order */
    MPI_Comm column;     /* the workers of this local index, one per host, in host order */
    int rank, size;      /* among every worker */
    int host, hosts, per_host;
    long n;
    long lo, hi;          /* the optimizer slice, [n*rank/size, n*(rank+1)/size) */
    float *partial;       /* the chain slice on its way between hosts (this worker's copy) */
    int n_chunks;
    MPI_Request *requests; /* 3 per chunk: receive, send, broadcast */
    double *sumsq, *sumsq_all; /* the squares of this rank's chain slice's H optimizer slices; of all N */
    /* the last reduction's stages, rm_now_s clock: the sums in shared
     * memory, and the chain and broadcast between hosts */
    double local_start_s, local_done_s, net_start_s, net_done_s;
    rm_peer_wait peer_wait;
} rm_hier_reduce;

/* Whether the workers of comm can reduce this way: more than one host,
 * the same number of workers on every host, each host's ranks
 * consecutive, room in every host's shared memory. Hosts are what
 * MPI_Comm_split_type(MPI_COMM_TYPE_SHARED) says. *hosts and *per_host
 * are set either way; when not possible `why` says why. The answer is the
 * same on every rank. Collective. */
int rm_hier_reduce_possible(MPI_Comm comm, long n, int *possible, int *hosts, int *per_host, char *why,
                            size_t why_cap, rm_error *err);

/* Sets up the windows on each host and the chain between hosts
 * (collective over comm; rm_hier_reduce_possible must have said yes).
 * The parameters start as a copy of init_params, the same on every rank. */
int rm_hier_reduce_init(rm_hier_reduce *r, MPI_Comm comm, long n, const float *init_params, rm_error *err);
void rm_hier_reduce_free(rm_hier_reduce *r);

/* After every rank's backward: sums the gradient and sets *norm to the L2
 * norm of the whole sum. Collective. The sum of optimizer slice k is then
 * at rm_hier_reduce_grads_of(r, k), for every k of this rank's column
 * (its own slice and those of its local index on the other hosts),
 * readable until the next rm_shm_reduce_sync(&r->local): no backward may
 * start before that barrier. */
int rm_hier_reduce_sum(rm_hier_reduce *r, double *norm, rm_error *err);

/* The summed gradient of optimizer slice `slice` (0..N-1), indexed as
 * the parameters: it lies whole in chain slice slice / H (chain slice l
 * is optimizer slices l*H .. l*H + H-1), in that chain worker's segment. */
static inline const float *rm_hier_reduce_grads_of(const rm_hier_reduce *r, int slice)
{
    return r->local.segments[slice / r->hosts];
}

#endif
