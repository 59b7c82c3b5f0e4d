/* The IDX importer on hostile images and labels files (raw or gzip: the
 * importer takes both): import must succeed or refuse with a message, and
 * a split it writes must open and hold what was imported. Input layout:
 * byte 0 = shard size - 1, bytes 1-2 = images length (LE), then images,
 * then labels. */
#include "fuzz_util.h"
#include "idx_import.h"
#include "shard.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    long shard_samples = 1 + data[0] % 16;
    size_t images_len = (size_t)data[1] | (size_t)data[2] << 8;
    data += 3;
    size -= 3;
    if (images_len > size)
        images_len = size;
    const char *images = fuzz_path(1, "images.idx"), *labels = fuzz_path(2, "labels.idx"),
               *out = fuzz_path(3, "split");
    fuzz_write(images, data, images_len);
    fuzz_write(labels, data + images_len, size - images_len);
    rm_idx_import_result res;
    rm_error err;
    if (rm_idx_import(images, labels, out, shard_samples, &res, &err) == RM_OK) {
        rm_dataset ds;
        if (rm_dataset_open(out, &ds, &err) != RM_OK) {
            fprintf(stderr, "an imported split does not open: %s\n", err.msg);
            abort();
        }
        if (ds.index.samples != res.samples || ds.index.n_shards != res.shards)
            abort();
        for (long i = 0; i < ds.index.samples; i++)
            if (rm_dataset_record(&ds, i)[0] >= ds.index.classes)
                abort();
        rm_dataset_close(&ds);
    }
    fuzz_clear(out);
    return 0;
}
