/* Optimizers over the flat parameter buffer (CPU). State buffers are as
 * long as the parameters and owned by the optimizer. */
#ifndef RINGMASTER_OPTIMIZER_H
#define RINGMASTER_OPTIMIZER_H

#include "config.h"

typedef struct rm_optimizer {
    int kind;
    long n;
    double momentum, beta1, beta2, eps, weight_decay;
    float *m; /* SGD velocity or AdamW first moment */
    float *v; /* AdamW second moment */
    long t;   /* steps taken */
} rm_optimizer;

int rm_optimizer_init(rm_optimizer *opt, const rm_config *cfg, long n_params, rm_error *err);
void rm_optimizer_free(rm_optimizer *opt);

/* One update of params[lo, hi) from grads[lo, hi) (already averaged over
 * the global batch); the rest of the state is left as it is. A worker that
 * owns a slice of the parameters updates only that slice. */
void rm_optimizer_step(rm_optimizer *opt, float *params, const float *grads, double lr, long lo, long hi);

/* The same update, and a checkpoint snapshot taken in the same pass: the
 * updated [begin, end) of params, m (and v), which must lie inside
 * [lo, hi), is copied to dst[0..2] block by block while it is still in
 * cache, so the snapshot costs stores, not a second trip through memory.
 * Returns the seconds spent copying. */
double rm_optimizer_step_snapshot(rm_optimizer *opt, float *params, const float *grads, double lr, long lo, long hi,
                                  long begin, long end, float *const *dst);

#endif
