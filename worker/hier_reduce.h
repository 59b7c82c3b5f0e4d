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
 * From there it is the one-host step: worker r copies its 1/N optimizer
 * slice [n*r/N, n*(r+1)/N) from the chain slices of its host; the norm
 * comes from the squares of all N optimizer slices, each summed as one
 * host sums it, gathered inside the host and added in rank order (the
 * same norm, no network); and worker r updates its slice of its
 * host's shared parameters with the optimizer state of that slice (the
 * slice it writes into checkpoints). The parameter slices then go to the
 * other hosts (an all-gather among the workers of one local index) and a
 * barrier on each host publishes them. */
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
    int *gather_counts, *gather_displs; /* the column's optimizer slices, for the parameter all-gather */
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

/* After every rank's backward: leaves the global sum of this rank's
 * optimizer slice in local.grads[lo, hi) and the L2 norm of the whole
 * summed gradient in *norm. On return no rank reads another's segment any
 * more. Collective. */
int rm_hier_reduce_sum(rm_hier_reduce *r, double *norm, rm_error *err);

/* After each rank has written its optimizer slice of the parameters: the
 * slices to every host, then a barrier on each host. *net_s: the
 * all-gather between hosts alone (may be NULL). Collective. */
int rm_hier_reduce_publish(rm_hier_reduce *r, double *net_start_s, double *net_s, rm_error *err);

#endif
