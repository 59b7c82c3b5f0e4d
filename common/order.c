#include "order.h"

#include "rng.h"

#include <stdlib.h>
#include <string.h>

static void shuffle_u32(uint32_t *a, long n, rm_rng *rng)
{
    for (long i = n - 1; i > 0; i--) {
        long j = (long)rm_rng_below(rng, (uint64_t)i + 1);
        uint32_t t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}

int rm_order_epoch(const long *shard_samples, int n_shards, uint64_t seed, long epoch, long window_shards,
                   uint32_t *perm, rm_error *err)
{
    long *first = malloc(((size_t)n_shards + 1) * sizeof *first);
    uint32_t *shard_order = malloc((size_t)n_shards * sizeof *shard_order);
    if (!first || !shard_order) {
        free(first);
        free(shard_order);
        return rm_fail(err, "out of memory computing the sample order");
    }
    first[0] = 0;
    for (int s = 0; s < n_shards; s++) {
        first[s + 1] = first[s] + shard_samples[s];
        shard_order[s] = (uint32_t)s;
    }
    uint64_t epoch_key = rm_key(rm_key(seed, 0x5a3d1e0fULL), (uint64_t)epoch);
    rm_rng rng = {rm_key(epoch_key, 0)};
    shuffle_u32(shard_order, n_shards, &rng);

    long window = window_shards <= 0 || window_shards > n_shards ? n_shards : window_shards;
    long pos = 0;
    for (long w = 0; w * window < n_shards; w++) {
        long start = pos;
        for (long k = w * window; k < (w + 1) * window && k < n_shards; k++) {
            uint32_t s = shard_order[k];
            for (long i = first[s]; i < first[s + 1]; i++)
                perm[pos++] = (uint32_t)i;
        }
        rm_rng wrng = {rm_key(epoch_key, (uint64_t)w + 1)};
        shuffle_u32(perm + start, pos - start, &wrng);
    }
    free(first);
    free(shard_order);
    return RM_OK;
}

int rm_sampler_init(rm_sampler *s, const long *shard_samples, int n_shards, uint64_t seed, long window_shards,
                    rm_error *err)
{
    memset(s, 0, sizeof *s);
    s->shard_samples = malloc((size_t)n_shards * sizeof *s->shard_samples);
    if (!s->shard_samples)
        return rm_fail(err, "out of memory");
    memcpy(s->shard_samples, shard_samples, (size_t)n_shards * sizeof *shard_samples);
    s->n_shards = n_shards;
    for (int i = 0; i < n_shards; i++)
        s->total += shard_samples[i];
    if (s->total <= 0 || s->total > UINT32_MAX) {
        rm_sampler_free(s);
        return rm_fail(err, "dataset size %ld is not supported by the sampler", s->total);
    }
    s->perm = malloc((size_t)s->total * sizeof *s->perm);
    if (!s->perm) {
        rm_sampler_free(s);
        return rm_fail(err, "out of memory for a %ld-sample order", s->total);
    }
    s->seed = seed;
    s->window_shards = window_shards;
    s->cached_epoch = -1;
    return RM_OK;
}

void rm_sampler_free(rm_sampler *s)
{
    free(s->shard_samples);
    free(s->perm);
    memset(s, 0, sizeof *s);
}

int rm_sampler_fill(rm_sampler *s, long position, long count, uint32_t *out, rm_error *err)
{
    for (long i = 0; i < count; i++) {
        long p = position + i;
        long epoch = p / s->total;
        if (epoch != s->cached_epoch) {
            if (rm_order_epoch(s->shard_samples, s->n_shards, s->seed, epoch, s->window_shards, s->perm, err) != RM_OK)
                return RM_ERR;
            s->cached_epoch = epoch;
        }
        out[i] = s->perm[p % s->total];
    }
    return RM_OK;
}
