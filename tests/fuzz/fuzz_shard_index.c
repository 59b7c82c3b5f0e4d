/* The shard index reader and the shard reader on hostile files, plain and
 * sealed, records or tokens: opening must succeed or refuse with a
 * message; every sample of a split that opens is readable, or (a plain
 * shard whose checksum fails at first use) refused with a message. Input
 * layout: bytes 0-1 = index length (LE), then index.rmi, then
 * shard-00000.rms. The process holds a fixed key, so sealed shards go
 * through the seal reader too. */
#include "fuzz_util.h"
#include "shard.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    fuzz_load_key();
    size_t index_len = (size_t)data[0] | (size_t)data[1] << 8;
    data += 2;
    size -= 2;
    if (index_len > size)
        index_len = size;
    const char *dir = fuzz_path(1, "split");
    mkdir(dir, 0700);
    char path[1024];
    snprintf(path, sizeof path, "%s/index.rmi", dir);
    fuzz_write(path, data, index_len);
    snprintf(path, sizeof path, "%s/shard-00000.rms", dir);
    fuzz_write(path, data + index_len, size - index_len);
    rm_error err;
    rm_shard_index idx;
    if (rm_shard_index_read(dir, &idx, &err) == RM_OK)
        rm_shard_index_free(&idx);
    rm_dataset ds;
    /* a small decrypt budget, so eviction and re-decryption run too; a
     * token split is cut into windows of a context the input picks */
    long context = 1 + (long)(size % 7);
    if (rm_dataset_open_context(dir, 4096, context, &ds, &err) == RM_OK) {
        for (long i = 0; i < ds.index.samples; i += 1 + i / 8) {
            const uint8_t *rec = rm_dataset_record(&ds, i);
            /* a plain split fails after open only when a shard's checksum,
             * verified at its first use, does not match */
            if (!rec && !ds.cache && !strstr(rm_dataset_error(&ds), "checksum mismatch"))
                abort();
            if (rec)
                (void)*(volatile const uint8_t *)(rec + rm_dataset_sample_bytes(&ds) - 1);
        }
        rm_dataset_close(&ds);
    }
    return 0;
}
