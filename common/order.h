/* The sample order. Epoch e's order is a pure function of (seed, e, shard
 * sizes): the shards are shuffled, then the samples inside each window of
 * `window_shards` consecutive shuffled shards are shuffled (0 = one window
 * over everything). Training reads one continuous stream: epoch 0's order,
 * then epoch 1's, ... Global batch t is stream positions
 * [t*B, (t+1)*B) and worker r of N takes the r-th of N equal slices of it,
 * so the global sequence does not depend on N. */
#ifndef RINGMASTER_ORDER_H
#define RINGMASTER_ORDER_H

#include "error.h"

#include <stdint.h>

/* Writes epoch `epoch`'s permutation of all sample indices into perm
 * (sum of shard_samples entries). */
int rm_order_epoch(const long *shard_samples, int n_shards, uint64_t seed, long epoch, long window_shards,
                   uint32_t *perm, rm_error *err);

/* Reads the stream, caching one epoch's permutation. */
typedef struct rm_sampler {
    long *shard_samples; /* owned copy */
    int n_shards;
    long total;
    uint64_t seed;
    long window_shards;
    long cached_epoch; /* -1: none */
    uint32_t *perm;    /* owned */
} rm_sampler;

int rm_sampler_init(rm_sampler *s, const long *shard_samples, int n_shards, uint64_t seed, long window_shards,
                    rm_error *err);
void rm_sampler_free(rm_sampler *s);

/* Sample indices at stream positions [position, position + count). */
int rm_sampler_fill(rm_sampler *s, long position, long count, uint32_t *out, rm_error *err);

/* First stream position of worker `worker`'s slice of global batch `step`. */
static inline long rm_order_slice_start(long step, long global_batch, long worker, long workers)
{
    return step * global_batch + worker * (global_batch / workers);
}

#endif
