/* The shard index reader and the shard reader on hostile files, plain and
 * sealed: opening must succeed or refuse with a message; every record of
 * a split that opens is readable. Input layout: bytes 0-1 = index length
 * (LE), then index.rmi, then shard-00000.rms. The process holds a fixed
 * key, so sealed shards go through the seal reader too. */
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
    /* a small decrypt budget, so eviction and re-decryption run too */
    if (rm_dataset_open_budget(dir, 4096, &ds, &err) == RM_OK) {
        for (long i = 0; i < ds.index.samples; i += 1 + i / 8) {
            const uint8_t *rec = rm_dataset_record(&ds, i);
            if (!rec && !ds.cache)
                abort(); /* a plain split never fails after open */
            if (rec)
                (void)*(volatile const uint8_t *)(rec + ds.index.record_bytes - 1);
        }
        rm_dataset_close(&ds);
    }
    return 0;
}
