/* The checkpoint format and the operations on committed checkpoints.
 *
 *   CKPT_ROOT/step-00000100/          committed (renamed from .tmp after
 *       worker-00000.rmc ...          every file and the manifest are
 *       manifest.json                 fsynced)
 *   CKPT_ROOT/step-00000200.g3.tmp/   being written by generation 3 (the
 *                                     job that took the directory last,
 *                                     ckpt_fence.h): never read
 *   CKPT_ROOT/latest                  "step-00000100\n", replaced atomically
 *
 * Worker w's file holds its slice [begin, end) of every state tensor
 * (parameters, then optimizer moments) after a 64-byte header that says
 * how the payload is protected: plain, or sealed with security.key_file
 * (crypto.h; the manifest's checksums are of the plaintext). Any number of workers can read the files back, so a run
 * resumes on another worker count. The manifest (JSON) records the step,
 * data cursor, seed (every random draw is a pure function of seed and
 * step, so that is the whole RNG state), optimizer layout, hashes of the
 * config and dataset index, world size, the file table with XXH3 checksums
 * and the parameter tensors' names and shapes. */
#ifndef RINGMASTER_CHECKPOINT_H
#define RINGMASTER_CHECKPOINT_H

#include "error.h"
#include "model.h"

#include <stdint.h>

#define RM_CKPT_MAGIC "RMCKPT01"
#define RM_CKPT_HEADER_BYTES 64
#define RM_CKPT_PROTECTION_PLAIN 0u
#define RM_CKPT_MAX_FILES 65536

typedef struct rm_ckpt_file {
    int worker;
    long begin, end; /* slice of every state tensor, in floats */
    uint64_t bytes;  /* whole file */
    uint64_t checksum; /* XXH3-64 of the payload */
} rm_ckpt_file;

typedef struct rm_ckpt_tensor {
    char name[64];
    long offset; /* in floats, in the parameter tensor */
    int ndim;
    long shape[2];
    /* Export: stored [out x in] but exported [in x out] (Hugging Face's
     * Conv1D); rows beyond rows_used are padding, not exported (0: all). */
    int transposed;
    long rows_used;
} rm_ckpt_tensor;

/* What the model was, for exports that need its hyperparameters. */
typedef struct rm_ckpt_model {
    char type[16]; /* "mlp", "gpt"; "" in checkpoints from before the model seam */
    long layers, heads, dim, context, vocab, eot;
    char tokenizer[32]; /* gpt: the dataset's tokenizer; "" when not recorded */
} rm_ckpt_model;

typedef struct rm_ckpt_manifest {
    long step;        /* steps completed; training resumes at this step index */
    long data_cursor; /* stream position of the next sample */
    double epoch;
    long seed;
    int optimizer;    /* enum rm_optimizer_kind */
    int n_state;      /* state tensors per parameter: 2 (sgd: params, m) or 3 (adamw: params, m, v) */
    long opt_steps;   /* optimizer updates applied */
    long n_params;
    int world_size;
    uint64_t config_hash, training_hash, dataset_hash;
    long created_unix;
    int n_files;
    rm_ckpt_file *files; /* owned */
    int n_tensors;
    rm_ckpt_tensor *tensors; /* owned; names and shapes inside the parameters */
    rm_ckpt_model model;
    /* The audit trail's head when the checkpoint was committed (audit.h):
     * its last line's seq (0: none recorded) and BLAKE2b-256. */
    long audit_seq;
    char audit_head[65];
    /* The generation of the job that committed it (ckpt_fence.h); 0 in
     * checkpoints from before generations were recorded. */
    long generation;
} rm_ckpt_manifest;

/* "step-00000100" */
void rm_ckpt_dir_name(long step, char *out, size_t cap);

/* The directory generation `generation` writes step's parts into:
 * "step-00000100.g3.tmp" ("step-00000100.tmp" for generation 0). */
void rm_ckpt_tmp_dir_name(long step, long generation, char *out, size_t cap);

/* Writes one worker's file (header + the n_state slices, each end-begin
 * floats) into dir, fsyncs it, returns its size and payload checksum. On
 * failure the file is removed: there is never a partial one. */
int rm_ckpt_write_file(const char *dir, int worker, long step, long begin, long end, const float *const *slices,
                       int n_state, rm_ckpt_file *out, rm_error *err);

/* One worker's file as it lies on disk, built in memory: the header at
 * base, slice k (end - begin floats) at rm_ckpt_image_slice(im, k). base is
 * page-aligned and the buffer padded to whole pages, so the file goes to
 * the device straight from it (O_DIRECT, 8 MiB requests: no copy into the
 * page cache, no write-back competing with training). */
typedef struct rm_ckpt_image {
    uint8_t *base; /* owned; rm_ckpt_image_free */
    size_t cap;    /* bytes allocated */
    long begin, end;
    int n_state;
} rm_ckpt_image;

/* Allocates (and touches, so the first snapshot takes no page faults) the
 * image of slice [begin, end) of n_state tensors. */
int rm_ckpt_image_init(rm_ckpt_image *im, long begin, long end, int n_state, rm_error *err);
void rm_ckpt_image_free(rm_ckpt_image *im);
float *rm_ckpt_image_slice(const rm_ckpt_image *im, int k);

/* rm_ckpt_write_file for slices that lie in an image (the header is
 * written into it). The same file, bytes and checksum; sealed files go
 * through the cipher's buffers as before. */
int rm_ckpt_write_image(const char *dir, int worker, long step, rm_ckpt_image *im, rm_ckpt_file *out, rm_error *err);

/* Writes dir/manifest.json (fsynced); the model's table names the tensors. */
int rm_ckpt_manifest_write(const char *dir, const rm_ckpt_manifest *m, const rm_model *model, rm_error *err);

/* Reads and checks dir/manifest.json. Free with rm_ckpt_manifest_free. */
int rm_ckpt_manifest_read(const char *dir, rm_ckpt_manifest *m, rm_error *err);
void rm_ckpt_manifest_free(rm_ckpt_manifest *m);

/* Checks every file's size, header and checksum against the manifest. */
int rm_ckpt_verify(const char *dir, const rm_ckpt_manifest *m, rm_error *err);

/* The cheap half of rm_ckpt_verify, for a commit: every file is there,
 * one per worker in order, with the manifest's size and a header that
 * agrees with it (step, slice, layout), and the slices tile the
 * parameters. The payloads are not read. */
int rm_ckpt_verify_parts(const char *dir, const rm_ckpt_manifest *m, rm_error *err);

/* Renames tmp_dir to root/step-N, fsyncs root, points root/latest at it. */
int rm_ckpt_commit(const char *root, const char *tmp_dir, long step, rm_error *err);

/* Removes generation's temporary directory of step and what is in it (a
 * checkpoint that failed). */
void rm_ckpt_discard_tmp(const char *root, long step, long generation);

/* Removes committed checkpoints beyond the newest `keep`, and temporary
 * directories left behind: generation's own older than
 * `keep_tmp_before_step`, and every one of an older generation (a newer
 * generation's are never touched). */
void rm_ckpt_prune(const char *root, int keep, long keep_tmp_before_step, long generation);

/* Committed checkpoint steps in root, newest first. Caller frees *steps. */
int rm_ckpt_list(const char *root, long **steps, int *n, rm_error *err);

/* The newest checkpoint that verifies. Each one skipped is reported through
 * `skipped` with the reason. RM_ERR with err empty-string when there is
 * none. *dir receives its path. */
typedef void (*rm_ckpt_skip_fn)(void *ctx, const char *dir, const char *reason);
int rm_ckpt_find_latest(const char *root, rm_ckpt_manifest *m, char *dir, size_t dir_cap, rm_ckpt_skip_fn skipped,
                        void *ctx, rm_error *err);

/* The same without reading the checkpoint files: the newest checkpoint
 * whose manifest reads (a quick look before a resume is accepted). */
int rm_ckpt_find_newest_manifest(const char *root, rm_ckpt_manifest *m, char *dir, size_t dir_cap, rm_error *err);

/* RM_OK if the checkpoint in dir belongs to the job with these hashes (and
 * model size; n_params < 0: not checked): resuming another job's would
 * silently train something else. */
int rm_ckpt_check_job(const rm_ckpt_manifest *m, const char *dir, uint64_t training_hash, uint64_t dataset_hash,
                      long n_params, rm_error *err);

/* BLAKE2b-256 of dir/manifest.json, 64 hex digits: the manifest names
 * every file by checksum, so this digest names the whole checkpoint. */
int rm_ckpt_manifest_digest(const char *dir, char out[65], rm_error *err);

/* root/latest must be a regular file, or a symlink that stays inside
 * root: one pointing elsewhere is refused (it would redirect a resume). */
int rm_ckpt_check_latest(const char *root, rm_error *err);

/* Reads the whole state back from every file: out[k] receives tensor k
 * (n_params floats) for k < m->n_state; a NULL out[k] is checked but not
 * kept. Verifies checksums on the way. */
int rm_ckpt_load(const char *dir, const rm_ckpt_manifest *m, float *const *out, rm_error *err);

#endif
