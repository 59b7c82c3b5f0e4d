/* ZeRO-1 slice arithmetic, pure C (unit-tested without a GPU in
 * tests/test_grad_sync.c). Worker r of N owns [n*r/N, n*(r+1)/N): the
 * slice the CPU backend updates and the checkpoint writer saves
 * (worker_main.c), so checkpoints are the same on either backend and
 * resume on any worker count. Slices differ in length by at most one
 * float, and NCCL's reduce-scatter and all-gather take one count for
 * every rank; rather than pad (which would move the slice boundaries away
 * from the checkpoint's), the GPU backend moves each slice with a reduce
 * or broadcast rooted at its owner, all of them in one NCCL group. */
#ifndef RINGMASTER_ZERO_SLICE_H
#define RINGMASTER_ZERO_SLICE_H

/* Worker r's slice of n floats among n_workers. */
static inline void rm_zero_slice(long n, int n_workers, int r, long *lo, long *hi)
{
    *lo = n * r / n_workers;
    *hi = n * (r + 1) / n_workers;
}

/* The part of bucket [offset, offset + count) that worker r owns, as
 * [*a, *b); returns 0 (and *a == *b) when they do not meet. */
static inline int rm_zero_bucket_part(long n, int n_workers, int r, long offset, long count, long *a, long *b)
{
    long lo, hi;
    rm_zero_slice(n, n_workers, r, &lo, &hi);
    long from = lo > offset ? lo : offset, to = hi < offset + count ? hi : offset + count;
    if (to <= from)
        to = from;
    *a = from;
    *b = to;
    return to > from;
}

#endif
