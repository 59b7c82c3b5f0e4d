/* Writes the seed corpora of the shard, checkpoint and safetensors
 * harnesses (real files made by ringmaster's own writers, in each
 * harness's input layout) into CORPUS_DIR/<harness>/. Run once by hand
 * when a format changes:  fuzz_make_seeds tests/fuzz/corpus */
#include "checkpoint.h"
#include "crypto.h"
#include "fuzz_util.h"
#include "safetensors.h"
#include "shard.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    (void)data;
    (void)size;
    return 0;
}

static uint8_t *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        abort();
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(*len + 1);
    if (fread(b, 1, *len, f) != *len)
        abort();
    fclose(f);
    return b;
}

/* out = u16 LE length of a, a, b */
static void write_pair(const char *out, const char *a_path, const char *b_path)
{
    size_t la, lb;
    uint8_t *a = slurp(a_path, &la), *b = slurp(b_path, &lb);
    if (la > 0xffff)
        abort();
    FILE *f = fopen(out, "wb");
    uint8_t len[2] = {(uint8_t)la, (uint8_t)(la >> 8)};
    fwrite(len, 1, 2, f);
    fwrite(a, 1, la, f);
    fwrite(b, 1, lb, f);
    fclose(f);
    free(a);
    free(b);
    printf("%s\n", out);
}

static void shard_seed(const char *corpus, const char *name, int sealed)
{
    char dir[1024], path[1100], index[1100], out[1100];
    snprintf(dir, sizeof dir, "%s/seed-split", fuzz_scratch());
    mkdir(dir, 0700);
    enum { N = 6, DIM = 5 };
    uint8_t rec[N * (DIM + 1)];
    for (int i = 0; i < N * (DIM + 1); i++)
        rec[i] = (uint8_t)(i % (DIM + 1) == 0 ? i % 3 : i * 13);
    rm_shard_index idx = {.samples = N, .input_dim = DIM, .classes = 3, .record_bytes = DIM + 1, .n_shards = 1,
                          .encrypted = sealed};
    idx.shards = calloc(1, sizeof *idx.shards);
    snprintf(idx.shards[0].file, sizeof idx.shards[0].file, "shard-00000.rms");
    idx.shards[0].samples = N;
    snprintf(path, sizeof path, "%s/shard-00000.rms", dir);
    rm_error err;
    if (rm_shard_write_sealed(path, rec, N, DIM + 1, sealed ? rm_security_key() : NULL, &idx.shards[0].checksum,
                              &err) != RM_OK ||
        rm_shard_index_write(dir, &idx, &err) != RM_OK) {
        fprintf(stderr, "%s\n", err.msg);
        exit(1);
    }
    snprintf(index, sizeof index, "%s/index.rmi", dir);
    snprintf(out, sizeof out, "%s/shard_index/%s", corpus, name);
    write_pair(out, index, path);
    rm_shard_index_free(&idx);
}

static void ckpt_seed(const char *corpus, const char *name, int n_state)
{
    char dir[1024], path[1100], manifest[1100], out[1100];
    snprintf(dir, sizeof dir, "%s/step-00000001", fuzz_scratch());
    mkdir(dir, 0700);
    enum { P = 13 };
    float a[P], b[P], c[P];
    for (int i = 0; i < P; i++)
        a[i] = (float)i * 0.5f, b[i] = -(float)i, c[i] = 1e-3f * (float)i;
    const float *slices[3] = {a, b, c};
    rm_ckpt_manifest m = {.step = 1, .data_cursor = 64, .epoch = 0.5, .seed = 7, .optimizer = n_state == 3,
                          .n_state = n_state, .opt_steps = 1, .n_params = P, .world_size = 1, .config_hash = 1,
                          .training_hash = 2, .dataset_hash = 3, .created_unix = 1700000000, .n_files = 1};
    rm_ckpt_file file;
    rm_error err;
    if (rm_ckpt_write_file(dir, 0, 1, 0, P, slices, n_state, &file, &err) != RM_OK) {
        fprintf(stderr, "%s\n", err.msg);
        exit(1);
    }
    m.files = &file;
    rm_config cfg;
    rm_config_defaults(&cfg);
    cfg.n_hidden = 0;
    rm_dataset_facts facts = {.input_dim = 3, .classes = 3};
    rm_model model;
    if (rm_model_init(&model, &cfg, &facts, &err) != RM_OK || rm_ckpt_manifest_write(dir, &m, &model, &err) != RM_OK) {
        fprintf(stderr, "%s\n", err.msg);
        exit(1);
    }
    snprintf(manifest, sizeof manifest, "%s/manifest.json", dir);
    snprintf(path, sizeof path, "%s/worker-00000.rmc", dir);
    snprintf(out, sizeof out, "%s/checkpoint/%s", corpus, name);
    write_pair(out, manifest, path);
}

static void safetensors_seed(const char *corpus)
{
    rm_ckpt_tensor t[2] = {{.name = "layers.0.weight", .offset = 0, .ndim = 2, .shape = {2, 3}},
                           {.name = "layers.0.bias", .offset = 6, .ndim = 1, .shape = {2}}};
    float p[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    const char *meta[] = {"format", "pt"};
    char out[1100];
    snprintf(out, sizeof out, "%s/safetensors/export.safetensors", corpus);
    rm_error err;
    if (rm_safetensors_write(out, t, 2, p, meta, 1, &err) != RM_OK) {
        fprintf(stderr, "%s\n", err.msg);
        exit(1);
    }
    printf("%s\n", out);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: fuzz_make_seeds CORPUS_DIR\n");
        return 2;
    }
    fuzz_load_key();
    shard_seed(argv[1], "plain", 0);
    shard_seed(argv[1], "sealed", 1);
    ckpt_seed(argv[1], "sgd-sealed", 2); /* the process holds a key: checkpoints are sealed */
    rm_security_unload();
    ckpt_seed(argv[1], "adamw-plain", 3);
    safetensors_seed(argv[1]);
    return 0;
}
