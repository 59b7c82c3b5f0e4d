/* Converts MNIST-style IDX files (gzipped or not) into a shard set. */
#ifndef RINGMASTER_IDX_IMPORT_H
#define RINGMASTER_IDX_IMPORT_H

#include "crypto.h"
#include "error.h"

typedef struct rm_idx_import_result {
    long samples;
    long input_dim;
    long classes;
    int shards;
} rm_idx_import_result;

/* Reads images (idx3, u8) and labels (idx1, u8), checks that they agree,
 * and writes out_dir/shard-NNNNN.rms plus out_dir/index.rmi (last, so a
 * split with an index is complete). Memory stays at one shard. */
int rm_idx_import(const char *images_path, const char *labels_path, const char *out_dir, long shard_samples,
                  rm_idx_import_result *result, rm_error *err);

/* The same, each shard sealed with key (NULL: plain); the index then says
 * the split is encrypted. */
int rm_idx_import_sealed(const char *images_path, const char *labels_path, const char *out_dir, long shard_samples,
                         const rm_secret_key *key, rm_idx_import_result *result, rm_error *err);

#endif
