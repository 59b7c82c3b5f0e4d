/* read_tokens: reads every window of a token split through rm_dataset, as
 * the loader does, for tests/integration/tokens_larger_than_memory.sh.
 *
 *   read_tokens SPLIT CONTEXT [--evict] [--pattern VOCAB]
 *       --evict          drop the split's shards from the page cache first
 *                        (posix_fadvise), so that every page read is paged
 *                        in, and charged, under this process's cgroup
 *       --pattern VOCAB  check that the token at position p of the split
 *                        (shards end to end) is p % VOCAB
 *   read_tokens --hog MB
 *       allocates and touches MB of memory: dies under a smaller limit
 *
 * Exits 0 when every window read (and matched), 1 naming the first
 * failure. */
#include "shard.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static long max_rss_mb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1024;
}

static int hog(long mb)
{
    size_t bytes = (size_t)mb << 20;
    char *p = malloc(bytes);
    if (!p)
        return 1;
    for (size_t i = 0; i < bytes; i += 4096)
        p[i] = 1;
    printf("hog: touched %ld MB and survived\n", mb);
    free(p);
    return 0;
}

/* Drops the split's shard pages from the page cache (clean pages only:
 * the import fsynced them). */
static int evict(const char *dir, const rm_shard_index *idx)
{
    for (int s = 0; s < idx->n_shards; s++) {
        char path[8192];
        snprintf(path, sizeof path, "%s/%s", dir, idx->shards[s].file);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            perror(path);
            return 1;
        }
        posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
        close(fd);
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--hog") == 0)
        return hog(atol(argv[2]));
    if (argc < 3) {
        fprintf(stderr, "usage: read_tokens SPLIT CONTEXT [--evict] [--pattern VOCAB] | read_tokens --hog MB\n");
        return 2;
    }
    const char *dir = argv[1];
    long context = atol(argv[2]), pattern = 0;
    int drop = 0;
    for (int i = 3; i < argc; i++) {
        if (strcmp(argv[i], "--evict") == 0)
            drop = 1;
        else if (strcmp(argv[i], "--pattern") == 0 && i + 1 < argc)
            pattern = atol(argv[++i]);
        else {
            fprintf(stderr, "read_tokens: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    rm_error err;
    if (drop) {
        rm_shard_index idx;
        if (rm_shard_index_read(dir, &idx, &err) != RM_OK) {
            fprintf(stderr, "read_tokens: %s\n", err.msg);
            return 1;
        }
        int rc = evict(dir, &idx);
        rm_shard_index_free(&idx);
        if (rc)
            return 1;
    }
    double t0 = now_s();
    rm_dataset ds;
    if (rm_dataset_open_context(dir, RM_DATASET_DEFAULT_DECRYPT_BYTES, context, &ds, &err) != RM_OK) {
        fprintf(stderr, "read_tokens: %s\n", err.msg);
        return 1;
    }
    double open_s = now_s() - t0;
    const int width = ds.index.token_bytes;
    uint64_t sum = 0;
    long shard_start = 0; /* position of the current shard's first token in the split */
    for (int s = 0; s < ds.index.n_shards; s++) {
        for (long j = 0; j < ds.index.shards[s].samples; j++) {
            long i = ds.first_sample[s] + j;
            const uint8_t *w = rm_dataset_record(&ds, i);
            if (!w) {
                fprintf(stderr, "read_tokens: sample %ld: %s\n", i, rm_dataset_error(&ds));
                rm_dataset_close(&ds);
                return 1;
            }
            for (long t = 0; t <= context; t++) {
                const uint8_t *p = w + t * width;
                uint32_t tok = width == 2 ? (uint32_t)(p[0] | p[1] << 8)
                                          : (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                                                (uint32_t)p[3] << 24;
                sum += tok;
                long pos = shard_start + j * context + t;
                if (pattern && tok != (uint32_t)(pos % pattern)) {
                    fprintf(stderr, "read_tokens: sample %ld (shard %d, window %ld), token %ld: %u, expected %ld\n", i,
                            s, j, t, tok, pos % pattern);
                    rm_dataset_close(&ds);
                    return 1;
                }
            }
        }
        shard_start += ds.index.shards[s].tokens;
    }
    double total_s = now_s() - t0;
    printf("read %ld windows of %ld tokens from %d shards (%.0f MB of tokens): open %.3f s, all %.2f s, max RSS %ld "
           "MB, token sum %llu\n",
           ds.index.samples, context + 1, ds.index.n_shards, (double)ds.index.tokens * width / 1e6, open_s, total_s,
           max_rss_mb(), (unsigned long long)sum);
    rm_dataset_close(&ds);
    return 0;
}
