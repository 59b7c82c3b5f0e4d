/* Optimizers over the flat parameter buffer (CPU). The state (momentum,
 * moments) covers a range [lo, hi) of the buffer, the whole of it or the
 * slice a worker updates (ZeRO-1, shared-memory reduction), and is owned
 * by the optimizer. Parameters and gradients are indexed over the whole
 * buffer; the state from lo. */
#ifndef RINGMASTER_OPTIMIZER_H
#define RINGMASTER_OPTIMIZER_H

#include "config.h"
#include "model.h"

/* A run of the flat buffer with one decay setting. */
typedef struct rm_decay_segment {
    long begin, end;
    int decay;
} rm_decay_segment;

typedef struct rm_optimizer {
    int kind;
    long n;
    double momentum, beta1, beta2, eps, weight_decay;
    /* Which parameters decay, from the model's table: consecutive tensors
     * of one setting merged, covering [0, n) in order. */
    rm_decay_segment *segments;
    int n_segments;
    /* Multiplies the gradient in the next step: the clip factor of
     * train.grad_clip (1 leaves it as it is, bit for bit). */
    float grad_mult;
    long lo, hi; /* the range the state covers */
    float *m;    /* SGD velocity or AdamW first moment: m[i - lo] for element i */
    float *v;    /* AdamW second moment, likewise */
    size_t state_bytes; /* what m and v take, as allocated */
    long t;   /* steps taken */
} rm_optimizer;

/* State for the model's parameters; decay follows each tensor's flag. */
int rm_optimizer_init(rm_optimizer *opt, const rm_config *cfg, const rm_model *model, rm_error *err);

/* State for the parameters [lo, hi) only; steps must stay inside it. */
int rm_optimizer_init_range(rm_optimizer *opt, const rm_config *cfg, const rm_model *model, long lo, long hi,
                            rm_error *err);
void rm_optimizer_free(rm_optimizer *opt);

/* The factor train.grad_clip puts on a gradient of global norm `norm`:
 * clip / norm when the norm exceeds it, else 1. */
float rm_optimizer_clip_factor(double grad_clip, double norm);

/* One update of params[lo, hi) from grads[lo, hi) (already averaged over
 * the global batch); the rest of the state is left as it is. [lo, hi)
 * lies inside the state's range. A worker that
 * owns a slice of the parameters updates only that slice. */
void rm_optimizer_step(rm_optimizer *opt, float *params, const float *grads, double lr, long lo, long hi);

/* The same update, and a checkpoint snapshot taken in the same pass: the
 * updated [begin, end) of params, m (and v), which must lie inside
 * [lo, hi), is copied to dst[0..2] block by block while it is still in
 * cache, so the snapshot costs stores, not a second trip through memory
 * (rm_snapshot_copy's, which skip the cache). Returns the seconds spent
 * copying. */
double rm_optimizer_step_snapshot(rm_optimizer *opt, float *params, const float *grads, double lr, long lo, long hi,
                                  long begin, long end, float *const *dst);

/* dst[0..n) = src[0..n) for a checkpoint snapshot: written once here and
 * read by the writer thread and the disk, never by this core again. On
 * x86-64 the stores bypass the cache (non-temporal), which skips the read
 * of every destination line before it is written (a cold 3 MB copy: 40%
 * less time than memcpy alone, 6% less of the checkpoint step's stall in
 * the default job). rm_snapshot_copy_done orders them before the snapshot
 * is handed to another thread. */
void rm_snapshot_copy(float *restrict dst, const float *restrict src, long n);
void rm_snapshot_copy_done(void);

/* A snapshot copied a piece at a time (rm_snapshot_copy's stores): len
 * floats of each of n_state tensors, src[k] to dst[k], which must stay
 * unchanged until rm_snapshot_job_finish. The worker copies pieces while
 * it waits on its peers and the rest before the optimizer's next step. */
typedef struct rm_snapshot_job {
    const float *src[3];
    float *dst[3];
    int n_state;
    long len, done;
} rm_snapshot_job;

void rm_snapshot_job_start(rm_snapshot_job *job, const float *const *src, float *const *dst, int n_state, long len);
/* Copies the next piece (RM_SNAPSHOT_PIECE floats of each tensor, a few
 * microseconds); returns 1 while more remain. */
int rm_snapshot_job_piece(rm_snapshot_job *job);
/* Copies what remains and orders every store before the snapshot is
 * handed to another thread. */
void rm_snapshot_job_finish(rm_snapshot_job *job);

#define RM_SNAPSHOT_PIECE 2048L

#endif
