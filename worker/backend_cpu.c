/* The CPU backend: the model's CPU table (model_cpu.h) for forward and
 * backward, the optimizer on the host, and the gradient sum one of two
 * ways (launch.cpu_reduce):
 *   shm  every worker on one node: through node-shared memory, each worker
 *        summing and updating its 1/N slice of one shared copy of the
 *        parameters (shm_reduce.h);
 *   hierarchical  workers on several hosts, as many on each, each host's
 *        ranks consecutive: shm inside each host, a chain between hosts
 *        in host order, then each host updates all of its shared copy of
 *        the parameters, worker r its slice and those of its local index
 *        on the other hosts (hier_reduce.h); the same bits as shm on one
 *        host with the same number of workers;
 *   mpi  the gradient engine (grad_sync.h) over its MPI transport: one
 *        MPI_Iallreduce per bucket, started as backward produces it, every
 *        worker updating its whole private copy; or with train.zero 1
 *        (ZeRO-1) one MPI_Ireduce_scatter per bucket, every worker
 *        updating its 1/N slice of its private copy and the slices then
 *        all-gathered (MPI_Iallgatherv).
 * auto: shm on one node, hierarchical over hosts where the placement
 * allows it, else mpi (saying why). Under shm and ZeRO-1 a worker's
 * optimizer state covers its slice only, [n*r/N, n*(r+1)/N), the slice it
 * writes into checkpoints; hierarchical adds the slices of its local
 * index on the other hosts (column_opt) and checkpoints the same slice.
 * The choice needs collectives, so it is made at the end of create, once
 * every worker has said that the rest of its setup worked: a worker that
 * fails during setup leaves no other blocked in a collective. For two
 * workers every way gives the same bits (a + b is one rounding whichever
 * rank adds).
 *
 * train.grad_accum K: backward runs K micro-steps of n / K samples,
 * adding into the gradient; only the last one starts buckets, so they
 * overlap its backward and the gradient is reduced once per step. */
#include "backend.h"
#include "grad_sync.h"
#include "grad_sync_mpi.h"
#include "hier_reduce.h"
#include "log.h"
#include "model_cpu.h"
#include "model_init.h"
#include "optimizer.h"
#include "shm_reduce.h"
#include "timer.h"

#include <cblas.h>
#include <malloc.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

enum reduce_mode { REDUCE_UNDECIDED, REDUCE_MPI, REDUCE_SHM, REDUCE_HIER };

typedef struct cpu_backend {
    rm_backend base;
    const rm_model *model;
    const rm_model_cpu_ops *ops;
    void *impl; /* the model's activations */
    long n_params;
    long grad_accum;
    int requested; /* launch.cpu_reduce */
    int zero;      /* train.zero: the MPI transport reduce-scatters and all-gathers */
    double grad_clip;
    int mode;
    MPI_Comm comm;
    int comm_size, rank;
    long bucket_floats;
    rm_peer_wait peer_wait;
    /* params and grads point at the private buffers below (mpi, and
     * before the choice) or into the shared windows (shm) */
    float *params, *grads;
    float *own_params, *own_grads;
    long lo, hi; /* the slice this worker updates (and whose optimizer state it holds) */
    rm_optimizer opt;
    /* hierarchical: the optimizers of the slices of this worker's local
     * index on the other hosts, [k] of slice column_slice[k] */
    rm_optimizer *column_opt;
    int *column_slice;
    int n_column;
    rm_shm_reduce shm;
    rm_hier_reduce hier;
    rm_grad_sync sync;
    rm_grad_sync_mpi mpi;
    /* shm on traced steps: the reduction of this worker's slice, shown on
     * the timeline as its one bucket */
    double shm_trace_start_s, shm_trace_done_s;
    /* a deferred checkpoint snapshot, copied inside waits (peer_wait.idle) */
    rm_snapshot_job snap_job;
    rm_idle_work idle;
    int snap_pending;
    /* whether a copy would fit: this worker's waits between two updates
     * (a moving average) against the last snapshot copy's time */
    double wait_mark_s, wait_avg_s, copy_s;
    long defer; /* debug.snapshot_defer */
} cpu_backend;

static int snapshot_piece(void *ctx)
{
    return rm_snapshot_job_piece(&((cpu_backend *)ctx)->snap_job);
}

/* The deferred snapshot's rest, before anything changes the state. */
static void settle_snapshot(cpu_backend *cb)
{
    if (!cb->snap_pending)
        return;
    cb->idle.active = 0;
    rm_snapshot_job_finish(&cb->snap_job);
    cb->snap_pending = 0;
}

static void cpu_snapshot_settle(rm_backend *b)
{
    settle_snapshot((cpu_backend *)b);
}

static int grad_ready(void *ctx, long offset, rm_error *err)
{
    cpu_backend *cb = ctx;
    if (cb->mode == REDUCE_SHM || cb->mode == REDUCE_HIER) /* summed after backward, in place */
        return RM_OK;
    return rm_grad_sync_ready_from(&cb->sync, offset, err);
}

static int sharded(const cpu_backend *cb)
{
    return cb->mode == REDUCE_MPI && cb->zero && cb->comm_size > 1;
}

static int start_engine(cpu_backend *cb, rm_error *err)
{
    int one_rank = cb->comm_size == 1;
    if (!one_rank) {
        long n_buckets = (cb->n_params + cb->bucket_floats - 1) / cb->bucket_floats;
        int rc = cb->zero ? rm_grad_sync_mpi_init_sharded(&cb->mpi, cb->comm, cb->own_grads, cb->n_params,
                                                           (int)n_buckets, err)
                          : rm_grad_sync_mpi_init(&cb->mpi, cb->comm, cb->own_grads, (int)n_buckets, err);
        if (rc != RM_OK)
            return RM_ERR;
    }
    rm_grad_transport tp = rm_grad_sync_mpi_transport(&cb->mpi);
    if (rm_grad_sync_init(&cb->sync, cb->n_params, cb->bucket_floats, cb->rank, one_rank ? NULL : &tp, err) != RM_OK)
        return RM_ERR;
    if (!one_rank && cb->sync.n_buckets != cb->mpi.n_buckets)
        return rm_fail(err, "gradient buckets: the engine cut %d, the transport expects %d", cb->sync.n_buckets,
                       cb->mpi.n_buckets);
    cb->sync.peer_wait = cb->peer_wait;
    cb->sync.watchdog_s = cb->peer_wait.give_up_s;
    return RM_OK;
}

static int start_hierarchical(cpu_backend *cb, int hosts, int per_host, rm_error *err)
{
    if (rm_hier_reduce_init(&cb->hier, cb->comm, cb->n_params, cb->own_params, err) != RM_OK)
        return RM_ERR;
    cb->hier.peer_wait = cb->hier.local.peer_wait = cb->peer_wait;
    cb->params = cb->hier.local.params;
    cb->grads = cb->hier.local.grads;
    cb->lo = cb->hier.lo;
    cb->hi = cb->hier.hi;
    cb->mode = REDUCE_HIER;
    rm_info("hierarchical reduction: worker %d is local rank %d of %d on host %d of %d (%s)", cb->rank,
            cb->hier.local.rank, per_host, cb->hier.host, hosts, rm_log_host());
    if (cb->rank == 0)
        rm_info("gradients summed hierarchically: %d hosts x %d workers, through shared memory on each host, then "
                "chained between hosts in host order (the bits of %d workers on one host); on each host each worker "
                "updates %d slices of 1/%d and holds their optimizer state (checkpointing its own)",
                hosts, per_host, cb->comm_size, hosts, cb->comm_size);
    free(cb->own_params);
    free(cb->own_grads);
    cb->own_params = cb->own_grads = NULL;
    return RM_OK;
}

static int choose_reduce(cpu_backend *cb, rm_error *err)
{
    if (cb->mode != REDUCE_UNDECIDED)
        return RM_OK;
    int shm = 0, hier = 0, hosts = 1, per_host = 1;
    char why[256] = "", hier_why[256] = "";
    if (cb->comm_size > 1 && cb->requested != RM_CPU_REDUCE_MPI) {
        if (rm_shm_reduce_possible(cb->comm, cb->n_params, &shm, why, sizeof why, err) != RM_OK)
            return RM_ERR;
        if (!shm && cb->requested == RM_CPU_REDUCE_SHM)
            return rm_fail(err, "launch.cpu_reduce is shm but %s (use hierarchical, mpi or auto)", why);
        if (!shm && rm_hier_reduce_possible(cb->comm, cb->n_params, &hier, &hosts, &per_host, hier_why,
                                            sizeof hier_why, err) != RM_OK)
            return RM_ERR;
        if (!shm && !hier && cb->requested == RM_CPU_REDUCE_HIER)
            return rm_fail(err, "launch.cpu_reduce is hierarchical but %s (use mpi or auto)", hier_why);
        if (!shm && !hier && cb->rank == 0)
            rm_info("launch.cpu_reduce auto: %s, and not hierarchically: %s; so gradients go through MPI, summed in "
                    "the order MPI chooses (not the bits of one host)",
                    why, hier_why);
        if (shm && cb->requested == RM_CPU_REDUCE_HIER && cb->rank == 0)
            rm_info("launch.cpu_reduce hierarchical: the %d workers are on one host, so gradients are summed through "
                    "its shared memory alone (the same bits)",
                    cb->comm_size);
    }
    if (hier)
        return start_hierarchical(cb, hosts, per_host, err);
    if (!shm) {
        if (start_engine(cb, err) != RM_OK)
            return RM_ERR;
        cb->mode = REDUCE_MPI;
        cb->base.sharded = cb->zero && cb->comm_size > 1;
        if (cb->zero && cb->comm_size > 1) {
            cb->lo = cb->n_params * cb->rank / cb->comm_size;
            cb->hi = cb->n_params * (cb->rank + 1) / cb->comm_size;
            if (cb->rank == 0)
                rm_info("ZeRO-1: gradients reduce-scattered and parameters all-gathered over MPI, each of %d workers "
                        "holding the optimizer state of its 1/%d slice",
                        cb->comm_size, cb->comm_size);
        }
        return RM_OK;
    }
    if (rm_shm_reduce_init(&cb->shm, cb->comm, cb->n_params, cb->own_params, err) != RM_OK)
        return RM_ERR;
    cb->shm.peer_wait = cb->peer_wait;
    cb->params = cb->shm.params;
    cb->grads = cb->shm.grads;
    cb->lo = cb->shm.lo;
    cb->hi = cb->shm.hi;
    cb->mode = REDUCE_SHM;
    if (cb->shm.rank == 0)
        rm_info("gradients summed through node-shared memory by %d workers, each updating its 1/%d slice",
                cb->comm_size, cb->comm_size);
    free(cb->own_params);
    free(cb->own_grads);
    cb->own_params = cb->own_grads = NULL;
    return RM_OK;
}

static int cpu_backward(rm_backend *b, const void *input, const void *target, long n, float grad_scale, int poison,
                        rm_step_stats *stats, rm_error *err)
{
    cpu_backend *cb = (cpu_backend *)b;
    if (n % cb->grad_accum != 0)
        return rm_fail(err, "a batch of %ld samples does not split into %ld micro-steps (train.grad_accum)", n,
                       cb->grad_accum);
    cb->sync.trace = stats->trace_buckets && cb->mode == REDUCE_MPI;
    long micro = n / cb->grad_accum;
    const uint8_t *in = input, *tg = target;
    double t0 = rm_now_s();
    stats->loss_sum = 0;
    stats->correct = 0;
    for (long k = 0; k < cb->grad_accum; k++) {
        int last = k == cb->grad_accum - 1;
        double loss;
        long correct;
        const void *tk = tg + (size_t)(k * micro) * (size_t)cb->model->target_bytes;
        if (cb->ops->forward(cb->impl, cb->params, in + (size_t)(k * micro) * (size_t)cb->model->input_bytes, tk,
                             micro, &loss, &correct, err) != RM_OK ||
            cb->ops->backward(cb->impl, cb->params, cb->grads, tk, micro, poison ? NAN : grad_scale, k > 0,
                              last ? grad_ready : NULL, cb, err) != RM_OK)
            return RM_ERR;
        stats->loss_sum += loss;
        stats->correct += correct;
    }
    stats->compute_s = rm_now_s() - t0;
    return RM_OK;
}

static int cpu_reduce(rm_backend *b, rm_step_stats *stats, rm_error *err)
{
    cpu_backend *cb = (cpu_backend *)b;
    double t0 = rm_now_s();
    if (cb->mode == REDUCE_SHM) {
        if (rm_shm_reduce_sum(&cb->shm, &stats->grad_norm, err) != RM_OK)
            return RM_ERR;
        stats->allreduce_wait_s = rm_now_s() - t0;
        if (stats->trace_buckets) {
            cb->shm_trace_start_s = t0;
            cb->shm_trace_done_s = t0 + stats->allreduce_wait_s;
            stats->n_buckets = 1;
            stats->bucket_start_s = &cb->shm_trace_start_s;
            stats->bucket_done_s = &cb->shm_trace_done_s;
            stats->bucket_begin = &cb->shm.lo;
            stats->bucket_end = &cb->shm.hi;
        }
        return RM_OK;
    }
    if (cb->mode == REDUCE_HIER) {
        rm_hier_reduce *h = &cb->hier;
        if (rm_hier_reduce_sum(h, &stats->grad_norm, err) != RM_OK)
            return RM_ERR;
        stats->allreduce_wait_s = rm_now_s() - t0;
        stats->n_stages = 2;
        stats->stage_name[0] = "sum in shared memory";
        stats->stage_start_s[0] = h->local_start_s;
        stats->stage_s[0] = h->local_done_s - h->local_start_s;
        stats->stage_name[1] = "chain between hosts";
        stats->stage_start_s[1] = h->net_start_s;
        stats->stage_s[1] = h->net_done_s - h->net_start_s;
        return RM_OK;
    }
    if (rm_grad_sync_finish(&cb->sync, err) != RM_OK)
        return RM_ERR;
    if (sharded(cb)) {
        /* each worker holds the sum of its slice only: the norm is the
         * sum of the slices' squares, the same double on every worker */
        double sumsq = (double)cblas_sdot((int)(cb->hi - cb->lo), cb->grads + cb->lo, 1, cb->grads + cb->lo, 1), total;
        MPI_Request req;
        if (MPI_Iallreduce(&sumsq, &total, 1, MPI_DOUBLE, MPI_SUM, cb->comm, &req) != MPI_SUCCESS)
            return rm_fail(err, "MPI_Iallreduce of the gradient norm failed");
        if (rm_mpi_wait_all(1, &req, &cb->peer_wait, err) != RM_OK)
            return RM_ERR;
        stats->grad_norm = sqrt(total);
    }
    stats->allreduce_wait_s = rm_now_s() - t0;
    if (cb->sync.trace && cb->comm_size > 1) {
        stats->n_buckets = cb->sync.n_buckets;
        stats->bucket_start_s = cb->sync.trace_start_s;
        stats->bucket_done_s = cb->sync.trace_done_s;
        stats->bucket_begin = cb->sync.bucket_start;
        stats->bucket_end = cb->sync.bucket_end;
        stats->buckets_scattered = sharded(cb);
    }
    if (!sharded(cb))
        stats->grad_norm = sqrt((double)cblas_sdot((int)cb->n_params, cb->grads, 1, cb->grads, 1));
    return RM_OK;
}

/* shm, hierarchical: no worker may read the parameters before every slice
 * of its host is written. ZeRO-1: every worker's slice to every worker. */
static int publish_params(cpu_backend *cb, rm_step_stats *stats, rm_error *err)
{
    if (cb->mode != REDUCE_SHM && cb->mode != REDUCE_HIER && !sharded(cb))
        return RM_OK;
    double t0 = rm_now_s();
    if (cb->mode == REDUCE_HIER && rm_shm_reduce_sync(&cb->hier.local, err) != RM_OK)
        return RM_ERR;
    if (cb->mode == REDUCE_SHM && rm_shm_reduce_sync(&cb->shm, err) != RM_OK)
        return RM_ERR;
    if (sharded(cb)) {
        double g0 = rm_now_s();
        if (rm_grad_sync_mpi_gather(&cb->mpi, cb->params, &cb->peer_wait, err) != RM_OK)
            return RM_ERR;
        if (stats) {
            stats->gather_start_s = g0;
            stats->gather_s = rm_now_s() - g0;
            stats->gather_bytes = cb->n_params * (long)sizeof(float);
        }
    }
    if (stats)
        stats->param_gather_s = rm_now_s() - t0;
    return RM_OK;
}

/* The summed gradient the optimizer reads over [lo, hi). */
static const float *summed_grads(const cpu_backend *cb)
{
    return cb->mode == REDUCE_HIER ? rm_hier_reduce_grads_of(&cb->hier, cb->rank) : cb->grads;
}

/* hierarchical: the other hosts' slices of this worker's column, so that
 * this host's parameters are whole without traffic between hosts. */
static void step_column(cpu_backend *cb, double lr)
{
    for (int k = 0; k < cb->n_column; k++) {
        rm_optimizer *o = &cb->column_opt[k];
        o->grad_mult = cb->opt.grad_mult;
        rm_optimizer_step(o, cb->params, rm_hier_reduce_grads_of(&cb->hier, cb->column_slice[k]), lr, o->lo, o->hi);
    }
}

static int init_column(cpu_backend *cb, const rm_config *cfg, rm_error *err)
{
    const rm_hier_reduce *h = &cb->hier;
    cb->n_column = h->hosts - 1;
    cb->column_opt = calloc((size_t)cb->n_column, sizeof *cb->column_opt);
    cb->column_slice = calloc((size_t)cb->n_column, sizeof *cb->column_slice);
    if (!cb->column_opt || !cb->column_slice) {
        cb->n_column = 0;
        return rm_fail(err, "out of memory");
    }
    int k = 0;
    for (int host = 0; host < h->hosts; host++) {
        if (host == h->host)
            continue;
        int slice = host * h->per_host + h->local.rank;
        cb->column_slice[k] = slice;
        if (rm_optimizer_init_range(&cb->column_opt[k], cfg, cb->model, cb->n_params * slice / cb->comm_size,
                                    cb->n_params * (slice + 1) / cb->comm_size, err) != RM_OK) {
            cb->n_column = k;
            return RM_ERR;
        }
        cb->base.optimizer_state_bytes += cb->column_opt[k].state_bytes;
        k++;
    }
    return RM_OK;
}

/* The average with the waits since the last update in it; the mark is
 * set after the update's own waits (the parameters' publication), which a
 * snapshot started after it cannot use. */
static double waits_average(const cpu_backend *cb)
{
    double waited = cb->idle.waited_s - cb->wait_mark_s;
    return cb->wait_avg_s > 0 ? 0.9 * cb->wait_avg_s + 0.1 * waited : waited;
}

/* Every update takes its waits into the average. */
static void note_waits(cpu_backend *cb)
{
    cb->wait_avg_s = waits_average(cb);
}

static int cpu_update(rm_backend *b, double lr, rm_step_stats *stats, rm_error *err)
{
    cpu_backend *cb = (cpu_backend *)b;
    settle_snapshot(cb);
    note_waits(cb);
    double t0 = rm_now_s();
    cb->opt.grad_mult = rm_optimizer_clip_factor(cb->grad_clip, stats->grad_norm);
    rm_optimizer_step(&cb->opt, cb->params, summed_grads(cb), lr, cb->lo, cb->hi);
    step_column(cb, lr);
    stats->optimizer_s = rm_now_s() - t0;
    int rc = publish_params(cb, stats, err);
    cb->wait_mark_s = cb->idle.waited_s;
    return rc;
}

static int cpu_evaluate(rm_backend *b, const void *input, const void *target, long n, double *loss_sum, long *correct,
                        rm_error *err)
{
    cpu_backend *cb = (cpu_backend *)b;
    /* in micro-batches: the activations hold no more than one */
    long micro = n, cap = cb->base.max_micro_batch;
    if (micro > cap)
        micro = cap;
    const uint8_t *in = input, *tg = target;
    *loss_sum = 0;
    *correct = 0;
    for (long at = 0; at < n; at += micro) {
        long m = n - at < micro ? n - at : micro;
        double loss;
        long right;
        if (cb->ops->forward(cb->impl, cb->params, in + (size_t)at * (size_t)cb->model->input_bytes,
                             tg + (size_t)at * (size_t)cb->model->target_bytes, m, &loss, &right, err) != RM_OK)
            return RM_ERR;
        *loss_sum += loss;
        *correct += right;
    }
    return RM_OK;
}

static int cpu_read_params(rm_backend *b, float *out, rm_error *err)
{
    cpu_backend *cb = (cpu_backend *)b;
    memcpy(out, cb->params, (size_t)cb->n_params * sizeof(float));
    return RM_OK;
}

/* The worker's checkpoint slice must lie in the slice it updates: nobody
 * else changes that one. */
static int check_slice(const cpu_backend *cb, long begin, long end, rm_error *err)
{
    if (begin < cb->lo || end > cb->hi)
        return rm_fail(err, "checkpoint slice [%ld, %ld) lies outside the slice [%ld, %ld) this worker updates", begin,
                       end, cb->lo, cb->hi);
    return RM_OK;
}

static int cpu_update_snapshot(rm_backend *b, double lr, long begin, long end, float *const *dst, long *opt_steps,
                               rm_step_stats *stats, rm_error *err)
{
    cpu_backend *cb = (cpu_backend *)b;
    settle_snapshot(cb);
    if (check_slice(cb, begin, end, err) != RM_OK)
        return RM_ERR;
    note_waits(cb);
    double t0 = rm_now_s();
    cb->opt.grad_mult = rm_optimizer_clip_factor(cb->grad_clip, stats->grad_norm);
    stats->snapshot_s =
        rm_optimizer_step_snapshot(&cb->opt, cb->params, summed_grads(cb), lr, cb->lo, cb->hi, begin, end, dst);
    cb->copy_s = stats->snapshot_s;
    step_column(cb, lr);
    stats->optimizer_s = rm_now_s() - t0 - stats->snapshot_s;
    *opt_steps = cb->opt.t;
    int rc = publish_params(cb, stats, err);
    cb->wait_mark_s = cb->idle.waited_s;
    return rc;
}

/* Where [begin, end) of each state tensor lies: the optimizer state starts
 * at its own lo (v is NULL under SGD). */
static void state_slices(const cpu_backend *cb, long begin, const float **src)
{
    const float *state[3] = {cb->params, cb->opt.m, cb->opt.v};
    long base[3] = {0, cb->opt.lo, cb->opt.lo};
    for (int k = 0; k < cb->base.n_state; k++)
        src[k] = state[k] + (begin - base[k]);
}

static int cpu_snapshot(rm_backend *b, long begin, long end, float *const *dst, long *opt_steps, rm_error *err)
{
    cpu_backend *cb = (cpu_backend *)b;
    settle_snapshot(cb);
    if (check_slice(cb, begin, end, err) != RM_OK)
        return RM_ERR;
    const float *src[3];
    state_slices(cb, begin, src);
    for (int k = 0; k < b->n_state; k++)
        rm_snapshot_copy(dst[k], src[k], end - begin);
    rm_snapshot_copy_done();
    *opt_steps = cb->opt.t;
    return RM_OK;
}

/* The update, then the snapshot of the state after it copied inside the
 * waits that follow: the slice is this worker's to change, and it next
 * changes in this worker's next update, which settles first. Started
 * after the update's own waits (the parameters' all-gather writes the
 * buffer the snapshot reads). A worker that hardly waits (the slowest,
 * which the others wait for) would pay the whole copy cold, outside the
 * update's pass: it takes it inside the pass, as update_snapshot does,
 * and so does a worker that has not yet timed one. */
static int cpu_update_deferred_snapshot(rm_backend *b, double lr, long begin, long end, float *const *dst,
                                        long *opt_steps, int *deferred, rm_step_stats *stats, rm_error *err)
{
    cpu_backend *cb = (cpu_backend *)b;
    settle_snapshot(cb);
    *deferred = cb->defer >= 0 ? (int)cb->defer : cb->copy_s > 0 && waits_average(cb) >= cb->copy_s;
    if (!*deferred)
        return cpu_update_snapshot(b, lr, begin, end, dst, opt_steps, stats, err);
    if (check_slice(cb, begin, end, err) != RM_OK || cpu_update(b, lr, stats, err) != RM_OK)
        return RM_ERR;
    const float *src[3];
    state_slices(cb, begin, src);
    rm_snapshot_job_start(&cb->snap_job, src, dst, b->n_state, end - begin);
    rm_idle_work_begin(&cb->idle, snapshot_piece, cb);
    cb->snap_pending = 1;
    *opt_steps = cb->opt.t;
    return RM_OK;
}

static int cpu_restore(rm_backend *b, const float *const *state, long opt_steps, rm_error *err)
{
    cpu_backend *cb = (cpu_backend *)b;
    settle_snapshot(cb);
    /* shm, hierarchical: each worker writes its own slice of the shared
     * parameters; otherwise each has its own whole copy */
    int shared = cb->mode == REDUCE_SHM || cb->mode == REDUCE_HIER;
    long lo = shared ? cb->lo : 0, hi = shared ? cb->hi : cb->n_params;
    memcpy(cb->params + lo, state[0] + lo, (size_t)(hi - lo) * sizeof(float));
    /* the optimizer state of this worker's range only */
    float *dst[3] = {NULL, cb->opt.m, cb->opt.v};
    for (int k = 1; k < b->n_state; k++)
        memcpy(dst[k], state[k] + cb->opt.lo, (size_t)(cb->opt.hi - cb->opt.lo) * sizeof(float));
    cb->opt.t = opt_steps;
    for (int c = 0; c < cb->n_column; c++) {
        rm_optimizer *o = &cb->column_opt[c];
        memcpy(cb->params + o->lo, state[0] + o->lo, (size_t)(o->hi - o->lo) * sizeof(float));
        float *col[3] = {NULL, o->m, o->v};
        for (int k = 1; k < b->n_state; k++)
            memcpy(col[k], state[k] + o->lo, (size_t)(o->hi - o->lo) * sizeof(float));
        o->t = opt_steps;
    }
    if (shared)
        return publish_params(cb, NULL, err);
    return RM_OK;
}

static void cpu_destroy(rm_backend *b)
{
    cpu_backend *cb = (cpu_backend *)b;
    if (!cb)
        return;
    rm_grad_sync_free(&cb->sync);
    rm_grad_sync_mpi_free(&cb->mpi);
    rm_shm_reduce_free(&cb->shm);
    rm_hier_reduce_free(&cb->hier);
    rm_optimizer_free(&cb->opt);
    for (int k = 0; k < cb->n_column; k++)
        rm_optimizer_free(&cb->column_opt[k]);
    free(cb->column_opt);
    free(cb->column_slice);
    if (cb->ops)
        cb->ops->destroy(cb->impl);
    free(cb->own_params);
    free(cb->own_grads);
    free(cb);
}

/* Bytes the heap has handed out and not taken back, as glibc counts them
 * (mmapped blocks included); 0 under an allocator that does not count. */
static size_t heap_in_use(void)
{
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
}

rm_backend *rm_backend_cpu_create(const rm_model *model, const rm_config *cfg, long max_batch, MPI_Comm comm,
                                  rm_heartbeat_fn heartbeat, void *heartbeat_ctx, double heartbeat_s, rm_error *err)
{
    size_t heap_before = heap_in_use();
    const rm_model_cpu_ops *ops = rm_model_cpu_ops_for(model, err);
    if (!ops)
        return NULL;
    cpu_backend *cb = calloc(1, sizeof *cb);
    if (!cb) {
        rm_fail(err, "out of memory");
        return NULL;
    }
    /* Activations for one micro-step of a training batch, or for an
     * evaluation chunk when that is larger. */
    long micro = max_batch / cfg->grad_accum;
    if (micro < 1)
        micro = 1;
    cb->base = (rm_backend){
        .name = "cpu",
        .n_state = cfg->optimizer == RM_OPT_ADAMW ? 3 : 2,
        .max_micro_batch = micro,
        .backward = cpu_backward,
        .reduce = cpu_reduce,
        .update = cpu_update,
        .update_snapshot = cpu_update_snapshot,
        .evaluate = cpu_evaluate,
        .read_params = cpu_read_params,
        .snapshot = cpu_snapshot,
        .update_deferred_snapshot = cpu_update_deferred_snapshot,
        .snapshot_settle = cpu_snapshot_settle,
        .restore = cpu_restore,
        .destroy = cpu_destroy,
    };
    cb->model = model;
    cb->ops = ops;
    cb->n_params = model->n_params;
    cb->grad_accum = cfg->grad_accum;
    cb->grad_clip = cfg->grad_clip;
    cb->requested = cfg->cpu_reduce;
    cb->zero = cfg->zero != 0;
    cb->defer = cfg->debug_snapshot_defer;
    cb->comm = comm;
    cb->shm.node_comm = MPI_COMM_NULL;
    cb->hier.workers = cb->hier.column = cb->hier.local.node_comm = MPI_COMM_NULL;
    /* waits on peers give up at 1.5 x fault.hang_timeout_s, as the GPU
     * backend's watchdog does: by then the coordinator would have ended a
     * job with a stuck rank, unless it is gone too */
    cb->peer_wait = (rm_peer_wait){.heartbeat = heartbeat, .ctx = heartbeat_ctx, .heartbeat_s = heartbeat_s,
                                   .give_up_s = 1.5 * cfg->hang_timeout_s, .idle = &cb->idle};
    cb->lo = 0;
    cb->hi = model->n_params;
    if (MPI_Comm_size(comm, &cb->comm_size) != MPI_SUCCESS || MPI_Comm_rank(comm, &cb->rank) != MPI_SUCCESS) {
        free(cb);
        rm_fail(err, "MPI_Comm_size/rank failed on the workers' communicator");
        return NULL;
    }
    /* One BLAS thread per worker by default: workers are the parallelism. */
    openblas_set_num_threads((int)cfg->threads_per_worker);
    cb->params = cb->own_params = malloc((size_t)model->n_params * sizeof(float));
    cb->grads = cb->own_grads = calloc((size_t)model->n_params, sizeof(float));
    cb->bucket_floats = (long)(cfg->bucket_mb * 1024.0 * 1024.0 / sizeof(float));
    if (cb->bucket_floats < 1)
        cb->bucket_floats = 1;
    /* Every worker says whether its setup worked before any collective. */
    int ok = 1, all_ok = 0;
    if (!cb->params || !cb->grads) {
        rm_fail(err, "out of memory for %ld parameters", model->n_params);
        ok = 0;
    } else {
        ops->init_params(model, (uint64_t)cfg->seed, cb->params);
        ok = (!cfg->model_init[0] || rm_model_init_from_file(model, cfg->model_init, cb->params, err) == RM_OK) &&
             ops->create(model, micro, (int)cfg->threads_per_worker, &cb->impl, err) == RM_OK;
    }
    if (MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, comm) != MPI_SUCCESS) {
        cpu_destroy(&cb->base);
        rm_fail(err, "MPI_Allreduce failed on the workers' communicator");
        return NULL;
    }
    if (!ok || !all_ok) {
        if (ok)
            rm_fail(err, "another worker could not set up its CPU backend");
        cpu_destroy(&cb->base);
        return NULL;
    }
    if (choose_reduce(cb, err) != RM_OK || rm_optimizer_init_range(&cb->opt, cfg, model, cb->lo, cb->hi, err) != RM_OK) {
        cpu_destroy(&cb->base);
        return NULL;
    }
    cb->base.optimizer_state_bytes = cb->opt.state_bytes;
    if (cb->mode == REDUCE_HIER && init_column(cb, cfg, err) != RM_OK) {
        cpu_destroy(&cb->base);
        return NULL;
    }
    cb->base.transport = cb->comm_size == 1 ? RM_TRANSPORT_NONE
                         : cb->mode == REDUCE_SHM ? RM_TRANSPORT_SHM
                         : cb->mode == REDUCE_HIER ? RM_TRANSPORT_HIER
                                                  : RM_TRANSPORT_MPI;
    /* the heap, and under shm and hierarchical this worker's part of the
     * node-shared windows, which hold its gradient and the parameters the
     * heap no longer does */
    size_t heap_after = heap_in_use();
    size_t shared = cb->mode == REDUCE_SHM    ? cb->shm.window_bytes
                    : cb->mode == REDUCE_HIER ? cb->hier.local.window_bytes
                                              : 0;
    cb->base.memory_bytes = (heap_after > heap_before ? heap_after - heap_before : 0) + shared;
    return &cb->base;
}
