/* The checkpoint manifest reader and the checkpoint file reader (plain and
 * sealed) on hostile files: reading must succeed or refuse with a message.
 * Input layout: bytes 0-1 = manifest length (LE), then manifest.json, then
 * worker-00000.rmc. The process holds a fixed key, so sealed files go
 * through the seal reader too. */
#include "checkpoint.h"
#include "fuzz_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    fuzz_load_key();
    size_t manifest_len = (size_t)data[0] | (size_t)data[1] << 8;
    data += 2;
    size -= 2;
    if (manifest_len > size)
        manifest_len = size;
    const char *dir = fuzz_path(1, "step-00000001");
    mkdir(dir, 0700);
    char path[1024];
    snprintf(path, sizeof path, "%s/manifest.json", dir);
    fuzz_write(path, data, manifest_len);
    snprintf(path, sizeof path, "%s/worker-00000.rmc", dir);
    fuzz_write(path, data + manifest_len, size - manifest_len);
    rm_ckpt_manifest m;
    rm_error err;
    if (rm_ckpt_manifest_read(dir, &m, &err) != RM_OK)
        return 0;
    rm_ckpt_verify(dir, &m, &err);
    /* load needs n_params floats per state tensor: only for small ones */
    if (m.n_params <= (1L << 16)) {
        float *state[3] = {NULL, NULL, NULL};
        for (int k = 0; k < m.n_state; k++)
            state[k] = malloc((size_t)m.n_params * sizeof(float));
        rm_ckpt_load(dir, &m, state, &err);
        for (int k = 0; k < 3; k++)
            free(state[k]);
    }
    char digest[65];
    rm_ckpt_manifest_digest(dir, digest, &err);
    rm_ckpt_manifest_free(&m);
    return 0;
}
