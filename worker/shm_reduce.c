#include "shm_reduce.h"

#include "mpi_check.h"

#include <cblas.h>
#include <stdio.h>
#include <sys/statvfs.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Where Open MPI puts the files behind shared windows. */
static const char *backing_directory(void)
{
    const char *dir = getenv("OMPI_MCA_osc_sm_backing_directory");
    return dir && dir[0] ? dir : "/dev/shm";
}

int rm_shm_reduce_possible(MPI_Comm comm, long n, int *possible, char *why, size_t why_cap, rm_error *err)
{
    int size, node_size;
    MPI_Comm node;
    RM_MPI_CHECK(MPI_Comm_size(comm, &size), err);
    RM_MPI_CHECK(MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node), err);
    RM_MPI_CHECK(MPI_Comm_size(node, &node_size), err);
    RM_MPI_CHECK(MPI_Comm_free(&node), err);
    *possible = node_size == size;
    if (!*possible) {
        snprintf(why, why_cap, "the %d workers are not all on one node", size);
        return RM_OK;
    }
    /* every rank's gradient segment, the parameters, and 1/8 to spare */
    double need = (double)(size + 1) * (double)n * sizeof(float) * 1.125;
    struct statvfs fs;
    const char *dir = backing_directory();
    int room = statvfs(dir, &fs) == 0 && (double)fs.f_bavail * (double)fs.f_frsize >= need;
    int room_everywhere = 0;
    RM_MPI_CHECK(MPI_Allreduce(&room, &room_everywhere, 1, MPI_INT, MPI_MIN, comm), err);
    if (!room_everywhere) {
        *possible = 0;
        snprintf(why, why_cap, "%s has less than the %.0f MiB free that shared gradients need", dir,
                 need / (1024.0 * 1024.0));
    }
    return RM_OK;
}

/* A shared window with `floats` floats on this rank, contiguous across
 * ranks (no alloc_shared_noncontig: each segment is found by query). */
static int allocate(rm_shm_reduce *r, long floats, MPI_Win *win, float **base, rm_error *err)
{
    RM_MPI_CHECK(MPI_Win_allocate_shared((MPI_Aint)floats * (MPI_Aint)sizeof(float), (int)sizeof(float),
                                         MPI_INFO_NULL, r->node_comm, base, win),
                 err);
    return RM_OK;
}

static int segment_of(MPI_Win win, int rank, float **base, rm_error *err)
{
    MPI_Aint bytes;
    int disp;
    RM_MPI_CHECK(MPI_Win_shared_query(win, rank, &bytes, &disp, base), err);
    return RM_OK;
}

int rm_shm_reduce_init(rm_shm_reduce *r, MPI_Comm comm, long n, const float *init_params, rm_error *err)
{
    memset(r, 0, sizeof *r);
    r->node_comm = MPI_COMM_NULL;
    r->n = n;
    RM_MPI_CHECK(MPI_Comm_dup(comm, &r->node_comm), err);
    RM_MPI_CHECK(MPI_Comm_rank(r->node_comm, &r->rank), err);
    RM_MPI_CHECK(MPI_Comm_size(r->node_comm, &r->size), err);
    r->lo = n * r->rank / r->size;
    r->hi = n * (r->rank + 1) / r->size;
    r->segments = calloc((size_t)r->size, sizeof *r->segments);
    if (!r->segments)
        return rm_fail(err, "out of memory");
    float *own_params;
    if (allocate(r, n, &r->grad_win, &r->grads, err) != RM_OK)
        return RM_ERR;
    if (allocate(r, r->rank == 0 ? n : 0, &r->param_win, &own_params, err) != RM_OK) {
        MPI_Win_free(&r->grad_win);
        return RM_ERR;
    }
    r->have_windows = 1;
    r->window_bytes = (size_t)n * sizeof(float) * (r->rank == 0 ? 2 : 1);
    for (int k = 0; k < r->size; k++)
        if (segment_of(r->grad_win, k, &r->segments[k], err) != RM_OK)
            return RM_ERR;
    if (segment_of(r->param_win, 0, &r->params, err) != RM_OK)
        return RM_ERR;
    memset(r->grads, 0, (size_t)n * sizeof(float));
    memcpy(r->params + r->lo, init_params + r->lo, (size_t)(r->hi - r->lo) * sizeof(float));
    return rm_shm_reduce_sync(r, err);
}

void rm_shm_reduce_free(rm_shm_reduce *r)
{
    if (r->have_windows) {
        MPI_Win_free(&r->param_win);
        MPI_Win_free(&r->grad_win);
    }
    if (r->node_comm != MPI_COMM_NULL)
        MPI_Comm_free(&r->node_comm);
    free(r->segments);
    memset(r, 0, sizeof *r);
    r->node_comm = MPI_COMM_NULL;
}

int rm_shm_reduce_sync(rm_shm_reduce *r, rm_error *err)
{
    MPI_Request req;
    /* The barrier orders the ranks; the fence orders this rank's loads and
     * stores around it (the window is plain shared memory). */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    RM_MPI_CHECK(MPI_Ibarrier(r->node_comm, &req), err);
    if (rm_mpi_wait_all(1, &req, &r->peer_wait, err) != RM_OK)
        return RM_ERR;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    return RM_OK;
}

/* Blocks small enough that the partial sum stays in L1 between passes. */
#define SUM_BLOCK 2048L

double rm_shm_reduce_sumsq(const float *g, long lo, long hi)
{
    /* through a copy on the stack, as rm_shm_reduce_sum had it: the same
     * blocks, the same alignment for the BLAS kernel */
    float block[SUM_BLOCK];
    double sumsq = 0;
    for (long at = lo; at < hi; at += SUM_BLOCK) {
        long len = hi - at < SUM_BLOCK ? hi - at : SUM_BLOCK;
        memcpy(block, g + at, (size_t)len * sizeof(float));
        sumsq += (double)cblas_sdot((int)len, block, 1, block, 1);
    }
    return sumsq;
}

int rm_shm_reduce_norm(MPI_Comm comm, double sumsq, const rm_peer_wait *pw, double *norm, rm_error *err)
{
    int size;
    RM_MPI_CHECK(MPI_Comm_size(comm, &size), err);
    double *all = malloc((size_t)size * sizeof *all);
    if (!all)
        return rm_fail(err, "out of memory");
    MPI_Request req;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    int rc = MPI_Iallgather(&sumsq, 1, MPI_DOUBLE, all, 1, MPI_DOUBLE, comm, &req);
    if (rc != MPI_SUCCESS) {
        free(all);
        RM_MPI_CHECK(rc, err);
    }
    if (rm_mpi_wait_all(1, &req, pw, err) != RM_OK) {
        free(all);
        return RM_ERR;
    }
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    *norm = rm_shm_reduce_norm_of(all, size);
    free(all);
    return RM_OK;
}

double rm_shm_reduce_norm_of(const double *sumsq, int n)
{
    /* in rank order, not in whatever order an all-reduce adds: the same
     * double for the same slices however the ranks are spread over hosts */
    double total = 0;
    for (int k = 0; k < n; k++)
        total += sumsq[k];
    return sqrt(total);
}

void rm_shm_reduce_fold(const rm_shm_reduce *r, const float *from, long at, long len, float *dst)
{
    float block[SUM_BLOCK];
    for (long b = 0; b < len; b += SUM_BLOCK) {
        long m = len - b < SUM_BLOCK ? len - b : SUM_BLOCK;
        int k = 0;
        if (from) {
            memcpy(block, from + b, (size_t)m * sizeof(float));
        } else {
            memcpy(block, r->segments[0] + at + b, (size_t)m * sizeof(float));
            k = 1;
        }
        for (; k < r->size; k++) {
            const float *restrict src = r->segments[k] + at + b;
            for (long i = 0; i < m; i++)
                block[i] += src[i];
        }
        memcpy(dst + b, block, (size_t)m * sizeof(float));
    }
}

int rm_shm_reduce_sum(rm_shm_reduce *r, double *norm, rm_error *err)
{
    if (rm_shm_reduce_sync(r, err) != RM_OK)
        return RM_ERR;
    /* rank order, whichever rank sums: the result is the same float on
     * every rank and for every slicing */
    rm_shm_reduce_fold(r, NULL, r->lo, r->hi - r->lo, r->grads + r->lo);
    /* Also the proof that every rank has finished reading the segments: a
     * rank contributes only after its own sum. */
    return rm_shm_reduce_norm(r->node_comm, rm_shm_reduce_sumsq(r->grads, r->lo, r->hi), &r->peer_wait, norm, err);
}
