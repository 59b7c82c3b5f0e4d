#include "hier_reduce.h"

#include "mpi_check.h"
#include "timer.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Floats per message of the chain: small enough that the next host adds
 * one chunk while this one adds the next, large enough that TCP runs at
 * its rate. */
#define CHAIN_CHUNK (64L * 1024L)
#define CHAIN_TAG 1

int rm_hier_reduce_possible(MPI_Comm comm, long n, int *possible, int *hosts, int *per_host, char *why,
                            size_t why_cap, rm_error *err)
{
    int rank, node_rank, node_size, first_rank, room = 0;
    char room_why[160] = "";
    MPI_Comm node;
    *possible = 0;
    RM_MPI_CHECK(MPI_Comm_rank(comm, &rank), err);
    RM_MPI_CHECK(MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node), err);
    int rc = MPI_Comm_rank(node, &node_rank);
    if (rc == MPI_SUCCESS)
        rc = MPI_Comm_size(node, &node_size);
    if (rc == MPI_SUCCESS)
        rc = MPI_Allreduce(&rank, &first_rank, 1, MPI_INT, MPI_MIN, node);
    if (rc == MPI_SUCCESS && rm_shm_reduce_possible(node, n, &room, room_why, sizeof room_why, err) != RM_OK) {
        MPI_Comm_free(&node);
        return RM_ERR;
    }
    MPI_Comm_free(&node);
    RM_MPI_CHECK(rc, err);
    /* minima over every worker: -size's minimum is the largest size */
    int mine[5] = {node_size, -node_size, first_rank + node_rank == rank, room, node_rank == 0}, all[4], leaders;
    RM_MPI_CHECK(MPI_Allreduce(mine, all, 4, MPI_INT, MPI_MIN, comm), err);
    RM_MPI_CHECK(MPI_Allreduce(&mine[4], &leaders, 1, MPI_INT, MPI_SUM, comm), err);
    *hosts = leaders;
    *per_host = all[0];
    if (leaders < 2)
        snprintf(why, why_cap, "the workers are all on one host");
    else if (all[0] != -all[1])
        snprintf(why, why_cap, "the %d hosts hold different numbers of workers (%d to %d)", leaders, all[0], -all[1]);
    else if (!all[2])
        snprintf(why, why_cap,
                 "the ranks of a host are not consecutive (the hosts' ranks interleave: place ranks by slot, "
                 "not round-robin by node)");
    else if (!all[3])
        snprintf(why, why_cap, "a host's shared memory has no room for the shared gradients");
    else if (n < leaders * all[0])
        snprintf(why, why_cap, "%ld parameters are fewer than the workers", n);
    else if (n > INT_MAX)
        snprintf(why, why_cap, "%ld parameters are more than one MPI message counts", n);
    else
        *possible = 1;
    return RM_OK;
}

int rm_hier_reduce_init(rm_hier_reduce *r, MPI_Comm comm, long n, const float *init_params, rm_error *err)
{
    memset(r, 0, sizeof *r);
    r->workers = r->column = r->local.node_comm = MPI_COMM_NULL;
    r->n = n;
    RM_MPI_CHECK(MPI_Comm_dup(comm, &r->workers), err);
    RM_MPI_CHECK(MPI_Comm_rank(r->workers, &r->rank), err);
    RM_MPI_CHECK(MPI_Comm_size(r->workers, &r->size), err);
    r->lo = n * r->rank / r->size;
    r->hi = n * (r->rank + 1) / r->size;
    MPI_Comm node;
    RM_MPI_CHECK(MPI_Comm_split_type(r->workers, MPI_COMM_TYPE_SHARED, r->rank, MPI_INFO_NULL, &node), err);
    int rc = rm_shm_reduce_init(&r->local, node, n, init_params, err);
    MPI_Comm_free(&node);
    if (rc != RM_OK)
        return RM_ERR;
    r->per_host = r->local.size;
    r->hosts = r->size / r->per_host;
    r->host = r->rank / r->per_host;
    if (r->hosts * r->per_host != r->size || r->host * r->per_host + r->local.rank != r->rank)
        return rm_fail(err, "worker %d is local rank %d of %d on its host: not the consecutive placement the "
                            "hierarchical reduction needs", r->rank, r->local.rank, r->per_host);
    RM_MPI_CHECK(MPI_Comm_split(r->workers, r->local.rank, r->host, &r->column), err);

    long chain = r->local.hi - r->local.lo;
    r->n_chunks = chain > 0 ? (int)((chain + CHAIN_CHUNK - 1) / CHAIN_CHUNK) : 1;
    r->partial = malloc((size_t)(chain > 0 ? chain : 1) * sizeof(float));
    r->requests = malloc((size_t)r->n_chunks * 3 * sizeof *r->requests);
    r->sumsq = malloc((size_t)r->hosts * sizeof(double));
    r->sumsq_all = malloc((size_t)r->size * sizeof(double));
    if (!r->partial || !r->requests || !r->sumsq || !r->sumsq_all)
        return rm_fail(err, "out of memory");
    return RM_OK;
}

void rm_hier_reduce_free(rm_hier_reduce *r)
{
    rm_shm_reduce_free(&r->local);
    if (r->column != MPI_COMM_NULL)
        MPI_Comm_free(&r->column);
    if (r->workers != MPI_COMM_NULL)
        MPI_Comm_free(&r->workers);
    free(r->partial);
    free(r->requests);
    free(r->sumsq);
    free(r->sumsq_all);
    memset(r, 0, sizeof *r);
    r->workers = r->column = r->local.node_comm = MPI_COMM_NULL;
}

int rm_hier_reduce_sum(rm_hier_reduce *r, double *norm, rm_error *err)
{
    rm_shm_reduce *s = &r->local;
    r->local_start_s = rm_now_s();
    if (rm_shm_reduce_sync(s, err) != RM_OK) /* every backward on this host has finished */
        return RM_ERR;
    long at = s->lo, chain = s->hi - s->lo;
    int nc = r->n_chunks, first = r->host == 0, last = r->host == r->hosts - 1;
    MPI_Request *recv = r->requests, *send = r->requests + nc, *bcast = r->requests + 2 * nc;
    for (int c = 0; c < 3 * nc; c++)
        r->requests[c] = MPI_REQUEST_NULL;
    r->net_start_s = 0;
    if (!first) {
        r->net_start_s = rm_now_s();
        for (int c = 0; c < nc; c++) {
            long off = c * CHAIN_CHUNK, len = chain - off < CHAIN_CHUNK ? chain - off : CHAIN_CHUNK;
            RM_MPI_CHECK(MPI_Irecv(r->partial + off, (int)len, MPI_FLOAT, r->host - 1, CHAIN_TAG, r->column, &recv[c]),
                         err);
        }
    }
    for (int c = 0; c < nc; c++) {
        long off = c * CHAIN_CHUNK, len = chain - off < CHAIN_CHUNK ? chain - off : CHAIN_CHUNK;
        if (len <= 0)
            break;
        if (!first && rm_mpi_wait_all(1, &recv[c], &r->peer_wait, err) != RM_OK)
            return RM_ERR;
        /* the last host writes the sum into its own segment, which the
         * broadcast then sends */
        float *dst = last ? s->grads + at + off : r->partial + off;
        rm_shm_reduce_fold(s, first ? NULL : r->partial + off, at + off, len, dst);
        if (!r->net_start_s)
            r->net_start_s = rm_now_s();
        if (!last)
            RM_MPI_CHECK(MPI_Isend(r->partial + off, (int)len, MPI_FLOAT, r->host + 1, CHAIN_TAG, r->column, &send[c]),
                         err);
        else
            RM_MPI_CHECK(MPI_Ibcast(s->grads + at + off, (int)len, MPI_FLOAT, r->hosts - 1, r->column, &bcast[c]), err);
    }
    r->local_done_s = rm_now_s();
    /* this rank's segment slice is free once its own fold has read it */
    if (!last)
        for (int c = 0; c < nc; c++) {
            long off = c * CHAIN_CHUNK, len = chain - off < CHAIN_CHUNK ? chain - off : CHAIN_CHUNK;
            if (len <= 0)
                break;
            RM_MPI_CHECK(MPI_Ibcast(s->grads + at + off, (int)len, MPI_FLOAT, r->hosts - 1, r->column, &bcast[c]),
                         err);
        }
    if (rm_mpi_wait_all(3 * nc, r->requests, &r->peer_wait, err) != RM_OK)
        return RM_ERR;
    r->net_done_s = rm_now_s();

    /* The norm without the network: chain slice l is exactly the optimizer
     * slices l*H .. l*H + H-1 (n*l/L = n*(l*H)/N), which this rank squares
     * as one host squares them; gathered over the host in local order they
     * are in rank order. Also the barrier after which every chain slice of
     * this host is final (a rank contributes once its broadcast is in), so
     * that each rank may read its optimizer slice where it lies. */
    for (int k = 0; k < r->hosts; k++) {
        long w = (long)s->rank * r->hosts + k;
        r->sumsq[k] = rm_shm_reduce_sumsq(s->grads, r->n * w / r->size, r->n * (w + 1) / r->size);
    }
    MPI_Request req;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    RM_MPI_CHECK(MPI_Iallgather(r->sumsq, r->hosts, MPI_DOUBLE, r->sumsq_all, r->hosts, MPI_DOUBLE, s->node_comm, &req),
                 err);
    if (rm_mpi_wait_all(1, &req, &r->peer_wait, err) != RM_OK)
        return RM_ERR;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    *norm = rm_shm_reduce_norm_of(r->sumsq_all, r->size);
    return RM_OK;
}
