/* The GPU backend: one CUDA device per worker, the model's GPU table
 * (model_gpu.h: the MLP in mlp_gpu.c, GPT-2 in gpt_gpu.c) on cuBLAS and the
 * kernels of gpu_ops.h, gradients summed by NCCL bucket by bucket while
 * backward runs (grad_sync.c over nccl_transport.c), the optimizer fused
 * into one kernel per step.
 *
 * train.grad_accum K (models whose table accumulates): backward runs K
 * micro-steps of n / K samples, adding into the gradient; only the last
 * one starts buckets, so they overlap its backward and the gradient is
 * reduced once per step, as in the CPU backend.
 *
 * Three streams: compute (forward, backward, optimizer), copy (batches to
 * the device) and the NCCL transport's communication stream; events order
 * them, so the host waits for the device only where it needs a number
 * (the gradient norm, the loss) or a copy (snapshots).
 *
 * State lives on the device in the CPU backend's flat fp32 layout
 * (params, SGD velocity or AdamW m and v), initialised on the host by the
 * same code, so snapshots, checkpoints and read_params are the same bytes
 * either backend would write, and either resumes the other's checkpoints.
 * Under bf16 a bf16 copy of the weights feeds the products; the optimizer
 * kernel refreshes it in the same pass that updates the fp32 master.
 *
 * ZeRO-1 (train.zero 1, more than one worker): worker r owns the slice
 * [n*r/N, n*(r+1)/N) of zero_slice.h, the CPU backend's and the checkpoint
 * writer's. Each gradient bucket is reduced onto the owners of its parts
 * (nccl_transport.c), the norm is the all-reduced sum of the slices'
 * squares, the optimizer updates the slice only and holds its moments for
 * the slice only, and the slices are then broadcast back on the
 * communication stream; the next step's forward waits for that on the
 * device. The weights stay whole on every worker (ZeRO-1 shards the
 * optimizer state, not the parameters). */
#include "backend.h"
#include "gpu_check.h"
#include "gpu_device.h"
#include "gpu_ops.h"
#include "grad_sync.h"
#include "model_gpu.h"
#include "model_init.h"
#include "log.h"
#include "mpi_check.h"
#include "nccl_transport.h"
#include "optimizer.h" /* rm_optimizer_clip_factor */
#include "timer.h"
#include "zero_slice.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A batch's way to the device: pinned host buffer -> copy stream -> device
 * buffer, two slots so the next batch's copy overlaps this step's compute.
 * Sized by the model's input_bytes and target_bytes per sample, copied as
 * bytes (float features, label bytes, int32 token ids alike). */
typedef struct input_slot {
    void *host_input; /* pinned, max_batch x input_bytes */
    void *host_target;
    void *dev_input;
    void *dev_target;
    const void *input_at; /* where the batch's input is on the host: host_input or the caller's pinned buffer */
    cudaEvent_t ready; /* recorded on the copy stream after the copy */
    cudaEvent_t freed; /* recorded on the compute stream after its last read */
} input_slot;

/* Host memory page-locked at the worker's request (the loader's batch
 * buffers): batches in it copy to the device without a staging copy. */
#define MAX_PINNED_RANGES 64
typedef struct pinned_range {
    const char *ptr;
    size_t bytes;
} pinned_range;

/* Numbers the host reads back, in one pinned block: the loss and correct
 * count of each micro-step (grad_accum of them), and the gradient's sum of
 * squares. */
typedef struct host_results {
    double *loss;
    long long *correct;
    double sumsq;
} host_results;

typedef struct gpu_backend {
    rm_backend base;
    const rm_model *model; /* not owned: the worker's, outlives the backend */
    const rm_model_gpu_ops *ops;
    void *impl; /* the model's device buffers */
    long n_params;
    long grad_accum;
    int precision, attention, optimizer;
    double momentum, beta1, beta2, eps, weight_decay, grad_clip;
    long opt_steps;
    long max_batch;
    int device, rank, world;

    cudaStream_t compute, copy;
    cublasHandle_t blas;
    float *params, *grads; /* device, n_params each */
    float *m, *v;          /* device, [lo, hi) only (v: AdamW only) */
    long lo, hi;           /* the slice this worker updates: all of it unless sharded */
    int sharded;           /* ZeRO-1 over more than one worker */
    void *params16;                /* bf16 copy of params (bf16 only) */

    input_slot slots[2];
    int next_slot;
    pinned_range pinned[MAX_PINNED_RANGES];
    int n_pinned;
    int staged; /* a prefetched batch waits in staged_slot */
    int staged_slot;
    const void *staged_input, *staged_target;
    long staged_n;

    double *dev_partial, *dev_sumsq;
    host_results results; /* loss, correct: pinned, grad_accum each */
    double *host_sumsq;   /* pinned */
    cudaEvent_t compute_done, results_ready;
    double backward_t0;

    int have_nccl;
    rm_nccl_transport nccl;
    rm_grad_sync sync;
    rm_peer_wait peer_wait;
} gpu_backend;

/* Waits for an event, calling the heartbeat about every heartbeat_s, so a
 * long device step does not look like a silent worker; but not forever:
 * work that has not finished within the watchdog's time means a stuck
 * device, and the worker says so instead of heartbeating on. */
static int wait_event(gpu_backend *gb, cudaEvent_t ev, rm_error *err)
{
    double t0 = rm_now_s(), last_beat = t0;
    for (long spins = 0;; spins++) {
        cudaError_t q = cudaEventQuery(ev);
        if (q == cudaSuccess)
            return RM_OK;
        if (q != cudaErrorNotReady)
            RM_CUDA_CHECK(q, err);
        if (spins < 4096)
            continue;
        if (gb->sync.watchdog_s > 0 && rm_now_s() - t0 > gb->sync.watchdog_s)
            return rm_fail(err, "worker %d on %s: the GPU did not finish its queued work within %.0f s", gb->sync.rank,
                           rm_log_host(), gb->sync.watchdog_s);
        const rm_peer_wait *pw = &gb->peer_wait;
        if (pw->heartbeat && rm_now_s() - last_beat > pw->heartbeat_s) {
            last_beat = rm_now_s();
            if (pw->heartbeat(pw->ctx, err) != RM_OK)
                return RM_ERR;
        }
        struct timespec pause = {0, 20000};
        nanosleep(&pause, NULL);
    }
}

static int wait_compute(gpu_backend *gb, rm_error *err)
{
    RM_CUDA_CHECK(cudaEventRecord(gb->results_ready, gb->compute), err);
    return wait_event(gb, gb->results_ready, err);
}

static int is_pinned(const gpu_backend *gb, const void *p, size_t bytes)
{
    const char *c = p;
    for (int i = 0; i < gb->n_pinned; i++)
        if (c >= gb->pinned[i].ptr && c + bytes <= gb->pinned[i].ptr + gb->pinned[i].bytes)
            return 1;
    return 0;
}

static void gpu_pin_host(rm_backend *b, void *ptr, size_t bytes)
{
    gpu_backend *gb = (gpu_backend *)b;
    if (!ptr || bytes == 0 || gb->n_pinned == MAX_PINNED_RANGES || is_pinned(gb, ptr, bytes))
        return;
    cudaError_t rc = cudaHostRegister(ptr, bytes, cudaHostRegisterDefault);
    if (rc != cudaSuccess) {
        cudaGetLastError(); /* not sticky; leave nothing behind */
        rm_debug("batch buffer of %zu bytes not page-locked (%s): it goes through the pinned staging buffers", bytes,
                 cudaGetErrorString(rc));
        return;
    }
    gb->pinned[gb->n_pinned++] = (pinned_range){ptr, bytes};
}

/* Starts the copy of a batch into the next slot and returns the slot. A
 * batch in page-locked memory (gpu_pin_host) is copied from where it is:
 * the loader leaves it untouched until the step that uses it is over, and
 * that step waits for the copy. Anything else goes through the slot's
 * pinned buffer. */
static int stage(gpu_backend *gb, const void *input, const void *target, long n, int *slot_out, rm_error *err)
{
    if (n < 1 || n > gb->max_batch)
        return rm_fail(err, "batch of %ld samples: the GPU backend was sized for 1 to %ld", n, gb->max_batch);
    int k = gb->next_slot;
    gb->next_slot ^= 1;
    if (gb->staged && gb->staged_slot == k)
        gb->staged = 0; /* about to be overwritten */
    input_slot *s = &gb->slots[k];
    size_t in_bytes = (size_t)n * (size_t)gb->model->input_bytes;
    size_t tg_bytes = (size_t)n * (size_t)gb->model->target_bytes;
    /* The pinned buffer is refilled only after its previous copy is done;
     * that was two batches ago, so this rarely waits. */
    RM_CUDA_CHECK(cudaEventSynchronize(s->ready), err);
    const void *src = input;
    if (!is_pinned(gb, input, in_bytes)) {
        memcpy(s->host_input, input, in_bytes);
        src = s->host_input;
    }
    s->input_at = src;
    memcpy(s->host_target, target, tg_bytes);
    /* The device buffer is overwritten only after the compute that read it. */
    RM_CUDA_CHECK(cudaStreamWaitEvent(gb->copy, s->freed, 0), err);
    RM_CUDA_CHECK(cudaMemcpyAsync(s->dev_input, src, in_bytes, cudaMemcpyHostToDevice, gb->copy), err);
    RM_CUDA_CHECK(cudaMemcpyAsync(s->dev_target, s->host_target, tg_bytes, cudaMemcpyHostToDevice, gb->copy), err);
    RM_CUDA_CHECK(cudaEventRecord(s->ready, gb->copy), err);
    *slot_out = k;
    return RM_OK;
}

/* The slot holding this batch (prefetched, or staged now), with the compute
 * stream ordered after its copy. */
static int take_input(gpu_backend *gb, const void *input, const void *target, long n, int *slot, rm_error *err)
{
    if (gb->staged && gb->staged_input == input && gb->staged_target == target && gb->staged_n == n) {
        *slot = gb->staged_slot;
        gb->staged = 0;
    } else if (stage(gb, input, target, n, slot, err) != RM_OK) {
        return RM_ERR;
    }
    RM_CUDA_CHECK(cudaStreamWaitEvent(gb->compute, gb->slots[*slot].ready, 0), err);
    return RM_OK;
}

static int gpu_prefetch(rm_backend *b, const void *input, const void *target, long n, rm_error *err)
{
    gpu_backend *gb = (gpu_backend *)b;
    int slot;
    if (stage(gb, input, target, n, &slot, err) != RM_OK)
        return RM_ERR;
    gb->staged = 1;
    gb->staged_slot = slot;
    gb->staged_input = input;
    gb->staged_target = target;
    gb->staged_n = n;
    return RM_OK;
}

static int grad_ready(void *ctx, long offset, rm_error *err)
{
    return rm_grad_sync_ready_from(ctx, offset, err);
}

/* Enqueues the copy of the last forward's loss and correct count into
 * micro-step k's place in the pinned results. */
static int copy_results(gpu_backend *gb, long k, rm_error *err)
{
    const double *loss;
    const long long *correct;
    gb->ops->results(gb->impl, &loss, &correct);
    RM_CUDA_CHECK(cudaMemcpyAsync(&gb->results.loss[k], loss, sizeof(double), cudaMemcpyDeviceToHost, gb->compute),
                  err);
    RM_CUDA_CHECK(cudaMemcpyAsync(&gb->results.correct[k], correct, sizeof(long long), cudaMemcpyDeviceToHost,
                                  gb->compute),
                  err);
    return RM_OK;
}

/* The slot's batch, samples [at, at + m): host and device addresses. */
static void slot_part(const gpu_backend *gb, const input_slot *s, long at, const void **host_in,
                      const void **host_tg, const void **dev_in, const void **dev_tg)
{
    size_t in_off = (size_t)at * (size_t)gb->model->input_bytes, tg_off = (size_t)at * (size_t)gb->model->target_bytes;
    *host_in = (const char *)s->input_at + in_off;
    *host_tg = (const char *)s->host_target + tg_off;
    *dev_in = (const char *)s->dev_input + in_off;
    *dev_tg = (const char *)s->dev_target + tg_off;
}

static int gpu_backward(rm_backend *b, const void *input, const void *target, long n, float grad_scale, int poison,
                        rm_step_stats *stats, rm_error *err)
{
    gpu_backend *gb = (gpu_backend *)b;
    (void)stats;
    if (n % gb->grad_accum != 0)
        return rm_fail(err, "a batch of %ld samples does not split into %ld micro-steps (train.grad_accum)", n,
                       gb->grad_accum);
    gb->backward_t0 = rm_now_s();
    int slot;
    if (take_input(gb, input, target, n, &slot, err) != RM_OK)
        return RM_ERR;
    input_slot *s = &gb->slots[slot];
    long micro = n / gb->grad_accum;
    for (long k = 0; k < gb->grad_accum; k++) {
        int last = k == gb->grad_accum - 1;
        const void *hi, *ht, *di, *dt;
        slot_part(gb, s, k * micro, &hi, &ht, &di, &dt);
        if (gb->ops->forward(gb->impl, gb->params, gb->params16, hi, ht, di, dt, micro, 1, poison ? NAN : grad_scale,
                             err) != RM_OK ||
            copy_results(gb, k, err) != RM_OK ||
            gb->ops->backward(gb->impl, gb->params, gb->params16, gb->grads, k > 0, last ? grad_ready : NULL,
                              &gb->sync, err) != RM_OK)
            return RM_ERR;
    }
    RM_CUDA_CHECK(cudaEventRecord(s->freed, gb->compute), err);
    RM_CUDA_CHECK(cudaEventRecord(gb->compute_done, gb->compute), err);
    return RM_OK;
}

static int gpu_reduce(rm_backend *b, rm_step_stats *stats, rm_error *err)
{
    gpu_backend *gb = (gpu_backend *)b;
    /* compute_s: this rank's own forward + backward, before it can wait on
     * anyone (what the straggler check compares). */
    if (wait_event(gb, gb->compute_done, err) != RM_OK)
        return RM_ERR;
    stats->compute_s = rm_now_s() - gb->backward_t0;
    /* Sharded, this forward first waited on the device for the previous
     * update's gather: its device time is this step's parameter gather,
     * not compute. */
    if (gb->sharded) {
        double gather_s;
        if (rm_nccl_gather_time(&gb->nccl, &gather_s, err) != RM_OK)
            return RM_ERR;
        stats->param_gather_s = gather_s;
        stats->compute_s = stats->compute_s > gather_s ? stats->compute_s - gather_s : 0;
    }
    if (rm_grad_sync_finish(&gb->sync, err) != RM_OK)
        return RM_ERR;
    stats->allreduce_wait_s = gb->sync.wait_s;
    /* Sharded, a worker holds the sum of its own slice only: the norm (and
     * so the non-finite decision) is the sum of the slices' squares, the
     * same double on every worker. */
    RM_CUDA_CHECK(rm_gpu_sumsq(gb->grads + gb->lo, gb->hi - gb->lo, gb->dev_partial, gb->dev_sumsq, gb->compute), err);
    if (gb->sharded && rm_nccl_sum_double(&gb->nccl, gb->dev_sumsq, err) != RM_OK)
        return RM_ERR;
    RM_CUDA_CHECK(cudaMemcpyAsync(gb->host_sumsq, gb->dev_sumsq, sizeof(double), cudaMemcpyDeviceToHost,
                                  gb->compute),
                  err);
    if (wait_compute(gb, err) != RM_OK)
        return RM_ERR;
    stats->loss_sum = 0;
    stats->correct = 0;
    for (long k = 0; k < gb->grad_accum; k++) {
        stats->loss_sum += gb->results.loss[k];
        stats->correct += (long)gb->results.correct[k];
    }
    stats->grad_norm = sqrt(*gb->host_sumsq);
    return RM_OK;
}

/* One optimizer kernel over [lo, hi), whose parameters all decay or all
 * do not. */
static int update_segment(gpu_backend *gb, long lo, long hi, int decay, float lr, float gm, rm_error *err)
{
    long n = hi - lo;
    float *w = gb->params + lo;
    const float *g = gb->grads + lo;
    float *m = gb->m + (lo - gb->lo), *v = gb->v ? gb->v + (lo - gb->lo) : NULL; /* the moments start at gb->lo */
    float wd = decay ? (float)gb->weight_decay : 0.0f;
    /* bf16 elements are two bytes */
    void *w16 = gb->precision == RM_PREC_BF16 ? (char *)gb->params16 + 2 * lo : NULL;
    if (gb->optimizer == RM_OPT_SGD) {
        RM_CUDA_CHECK(rm_gpu_sgd_momentum(w, g, m, n, lr, (float)gb->momentum, wd, gm, w16, gb->compute), err);
    } else {
        /* Bias corrections as worker/optimizer.c computes them. */
        float c1 = (float)(1.0 / (1.0 - pow(gb->beta1, (double)gb->opt_steps)));
        float c2 = (float)(1.0 / sqrt(1.0 - pow(gb->beta2, (double)gb->opt_steps)));
        RM_CUDA_CHECK(rm_gpu_adamw(w, g, m, v, n, lr, (float)gb->beta1, (float)gb->beta2, (float)gb->eps, wd, c1, c2,
                                   gm, w16, gb->compute),
                      err);
    }
    return RM_OK;
}

/* Enqueues one optimizer step; nothing waits for it, so the device runs it
 * while the host reports the step and fetches the next batch (its device
 * time shows in the next step's compute_s). Weight decay follows each
 * tensor's flag in the model's table, as worker/optimizer.c applies it: one
 * kernel per run of tensors with one setting, cut to this worker's slice.
 * grad_norm: the step's global gradient norm, for train.grad_clip. */
static int enqueue_update(gpu_backend *gb, double lr, double grad_norm, rm_error *err)
{
    gb->opt_steps++;
    float gm = rm_optimizer_clip_factor(gb->grad_clip, grad_norm);
    const rm_model *model = gb->model;
    long run_lo = -1, run_hi = -1;
    int run_decay = 0;
    for (int t = 0; t <= model->n_tensors; t++) {
        long lo = 0, hi = 0;
        int decay = 0;
        if (t < model->n_tensors) {
            const rm_param_tensor *pt = &model->tensors[t];
            lo = pt->offset > gb->lo ? pt->offset : gb->lo;
            hi = pt->offset + pt->numel < gb->hi ? pt->offset + pt->numel : gb->hi;
            decay = pt->decay != 0;
            if (lo >= hi)
                continue; /* outside the slice */
            if (run_lo >= 0 && decay == run_decay && lo == run_hi) {
                run_hi = hi;
                continue;
            }
        }
        if (run_lo >= 0 && update_segment(gb, run_lo, run_hi, run_decay, (float)lr, gm, err) != RM_OK)
            return RM_ERR;
        run_lo = lo;
        run_hi = hi;
        run_decay = decay;
    }
    if (!gb->sharded)
        return RM_OK;
    /* every slice to every worker, fp32; the bf16 copy is cast from it */
    if (rm_nccl_gather_slices(&gb->nccl, gb->params, err) != RM_OK)
        return RM_ERR;
    if (gb->precision == RM_PREC_BF16)
        RM_CUDA_CHECK(rm_gpu_cast_bf16(gb->params, gb->n_params, gb->params16, gb->compute), err);
    return RM_OK;
}

static int gpu_update(rm_backend *b, double lr, rm_step_stats *stats, rm_error *err)
{
    double t0 = rm_now_s();
    if (enqueue_update((gpu_backend *)b, lr, stats->grad_norm, err) != RM_OK)
        return RM_ERR;
    stats->optimizer_s = rm_now_s() - t0;
    return RM_OK;
}

static int gpu_snapshot(rm_backend *b, long begin, long end, float *const *dst, long *opt_steps, rm_error *err)
{
    gpu_backend *gb = (gpu_backend *)b;
    if (begin < gb->lo || end > gb->hi)
        return rm_fail(err, "checkpoint slice [%ld, %ld) lies outside the slice [%ld, %ld) worker %d updates", begin,
                       end, gb->lo, gb->hi, gb->rank);
    if (wait_compute(gb, err) != RM_OK)
        return RM_ERR;
    /* the moments start at lo */
    const float *src[3] = {gb->params + begin, gb->m + (begin - gb->lo), gb->v ? gb->v + (begin - gb->lo) : NULL};
    for (int k = 0; k < b->n_state; k++)
        RM_CUDA_CHECK(cudaMemcpyAsync(dst[k], src[k], (size_t)(end - begin) * sizeof(float),
                                      cudaMemcpyDeviceToHost, gb->compute),
                      err);
    *opt_steps = gb->opt_steps;
    return wait_compute(gb, err);
}

static int gpu_update_snapshot(rm_backend *b, double lr, long begin, long end, float *const *dst, long *opt_steps,
                               rm_step_stats *stats, rm_error *err)
{
    double t0 = rm_now_s();
    if (enqueue_update((gpu_backend *)b, lr, stats->grad_norm, err) != RM_OK)
        return RM_ERR;
    double t1 = rm_now_s();
    if (gpu_snapshot(b, begin, end, dst, opt_steps, err) != RM_OK)
        return RM_ERR;
    stats->optimizer_s = t1 - t0;
    stats->snapshot_s = rm_now_s() - t1;
    return RM_OK;
}

/* In chunks of at most max_micro_batch samples (the activations hold no
 * more), each chunk's numbers read back before the next one overwrites
 * them. */
static int gpu_evaluate(rm_backend *b, const void *input, const void *target, long n, double *loss_sum, long *correct,
                        rm_error *err)
{
    gpu_backend *gb = (gpu_backend *)b;
    int slot;
    if (take_input(gb, input, target, n, &slot, err) != RM_OK)
        return RM_ERR;
    input_slot *s = &gb->slots[slot];
    long chunk = n < b->max_micro_batch ? n : b->max_micro_batch;
    *loss_sum = 0;
    *correct = 0;
    for (long at = 0; at < n; at += chunk) {
        long m = n - at < chunk ? n - at : chunk;
        const void *hi, *ht, *di, *dt;
        slot_part(gb, s, at, &hi, &ht, &di, &dt);
        if (gb->ops->forward(gb->impl, gb->params, gb->params16, hi, ht, di, dt, m, 0, 1.0f, err) != RM_OK ||
            copy_results(gb, 0, err) != RM_OK || wait_compute(gb, err) != RM_OK)
            return RM_ERR;
        *loss_sum += gb->results.loss[0];
        *correct += (long)gb->results.correct[0];
    }
    RM_CUDA_CHECK(cudaEventRecord(s->freed, gb->compute), err);
    return RM_OK;
}

static int gpu_read_params(rm_backend *b, float *out, rm_error *err)
{
    gpu_backend *gb = (gpu_backend *)b;
    RM_CUDA_CHECK(cudaMemcpyAsync(out, gb->params, (size_t)gb->n_params * sizeof(float),
                                  cudaMemcpyDeviceToHost, gb->compute),
                  err);
    return wait_compute(gb, err);
}

static int gpu_restore(rm_backend *b, const float *const *state, long opt_steps, rm_error *err)
{
    gpu_backend *gb = (gpu_backend *)b;
    if (wait_compute(gb, err) != RM_OK)
        return RM_ERR;
    /* the whole weights; the moments of this worker's slice */
    RM_CUDA_CHECK(cudaMemcpyAsync(gb->params, state[0], (size_t)gb->n_params * sizeof(float),
                                  cudaMemcpyHostToDevice, gb->compute),
                  err);
    float *dst[3] = {NULL, gb->m, gb->v};
    for (int k = 1; k < b->n_state; k++)
        RM_CUDA_CHECK(cudaMemcpyAsync(dst[k], state[k] + gb->lo, (size_t)(gb->hi - gb->lo) * sizeof(float),
                                      cudaMemcpyHostToDevice, gb->compute),
                      err);
    if (gb->precision == RM_PREC_BF16)
        RM_CUDA_CHECK(rm_gpu_cast_bf16(gb->params, gb->n_params, gb->params16, gb->compute), err);
    gb->opt_steps = opt_steps;
    return wait_compute(gb, err);
}

/* Safe on a partly built backend: every handle is NULL until made. */
static void gpu_destroy(rm_backend *b)
{
    gpu_backend *gb = (gpu_backend *)b;
    if (!gb)
        return;
    if (gb->compute)
        cudaStreamSynchronize(gb->compute);
    if (gb->copy)
        cudaStreamSynchronize(gb->copy);
    for (int i = 0; i < gb->n_pinned; i++)
        cudaHostUnregister((void *)gb->pinned[i].ptr);
    rm_grad_sync_free(&gb->sync);
    if (gb->have_nccl)
        rm_nccl_transport_free(&gb->nccl);
    if (gb->ops && gb->impl)
        gb->ops->destroy(gb->impl);
    for (int k = 0; k < 2; k++) {
        input_slot *s = &gb->slots[k];
        cudaFreeHost(s->host_input);
        cudaFreeHost(s->host_target);
        cudaFree(s->dev_input);
        cudaFree(s->dev_target);
        if (s->ready)
            cudaEventDestroy(s->ready);
        if (s->freed)
            cudaEventDestroy(s->freed);
    }
    cudaFreeHost(gb->results.loss);
    cudaFreeHost(gb->results.correct);
    cudaFreeHost(gb->host_sumsq);
    cudaFree(gb->dev_partial);
    cudaFree(gb->dev_sumsq);
    if (gb->compute_done)
        cudaEventDestroy(gb->compute_done);
    if (gb->results_ready)
        cudaEventDestroy(gb->results_ready);
    cudaFree(gb->params);
    cudaFree(gb->grads);
    cudaFree(gb->m);
    cudaFree(gb->v);
    cudaFree(gb->params16);
    if (gb->blas)
        cublasDestroy(gb->blas);
    if (gb->compute)
        cudaStreamDestroy(gb->compute);
    if (gb->copy)
        cudaStreamDestroy(gb->copy);
    free(gb);
}

/* Everything on this worker's device, before any collective with the
 * other workers' devices. */
static int build_local(gpu_backend *gb, const rm_config *cfg, MPI_Comm comm, rm_error *err)
{
    const rm_model *model = gb->model;
    size_t n = (size_t)gb->n_params, n_slice = (size_t)(gb->hi - gb->lo);
    if (rm_gpu_bind(comm, &gb->device, err) != RM_OK)
        return RM_ERR;
    int cc;
    if (rm_gpu_capability(&cc, err) != RM_OK)
        return RM_ERR;
    if (gb->precision != RM_PREC_FP32 && cc < 80)
        return rm_fail(err, "train.precision %s needs a GPU of compute capability 8.0 or newer; device %d has %d.%d",
                       gb->precision == RM_PREC_BF16 ? "bf16" : "tf32", gb->device, cc / 10, cc % 10);
    /* Device memory as the driver counts it, from here (the context made)
     * to the end of the setup: what this worker's buffers took. */
    size_t free_before, free_after, total;
    RM_CUDA_CHECK(cudaFree(0), err);
    RM_CUDA_CHECK(cudaMemGetInfo(&free_before, &total), err);
    RM_CUDA_CHECK(cudaStreamCreateWithFlags(&gb->compute, cudaStreamNonBlocking), err);
    RM_CUDA_CHECK(cudaStreamCreateWithFlags(&gb->copy, cudaStreamNonBlocking), err);
    RM_CUBLAS_CHECK(cublasCreate(&gb->blas), err);
    RM_CUBLAS_CHECK(cublasSetStream(gb->blas, gb->compute), err);
    RM_CUDA_CHECK(cudaMalloc((void **)&gb->params, n * sizeof(float)), err);
    RM_CUDA_CHECK(cudaMalloc((void **)&gb->grads, n * sizeof(float)), err);
    RM_CUDA_CHECK(cudaMalloc((void **)&gb->m, n_slice * sizeof(float)), err);
    /* Every copy and fill goes on the compute stream: the streams here do
     * not synchronise with the legacy default stream. */
    RM_CUDA_CHECK(cudaMemsetAsync(gb->grads, 0, n * sizeof(float), gb->compute), err);
    RM_CUDA_CHECK(cudaMemsetAsync(gb->m, 0, n_slice * sizeof(float), gb->compute), err);
    gb->base.optimizer_state_bytes = n_slice * sizeof(float);
    if (gb->optimizer == RM_OPT_ADAMW) {
        RM_CUDA_CHECK(cudaMalloc((void **)&gb->v, n_slice * sizeof(float)), err);
        RM_CUDA_CHECK(cudaMemsetAsync(gb->v, 0, n_slice * sizeof(float), gb->compute), err);
        gb->base.optimizer_state_bytes += n_slice * sizeof(float);
    }
    /* The CPU backend's initial weights, bit for bit. */
    float *host = malloc(n * sizeof(float));
    if (!host)
        return rm_fail(err, "out of memory for %zu initial weights", n);
    gb->ops->init_params(model, (uint64_t)cfg->seed, host);
    if (cfg->model_init[0] && rm_model_init_from_file(gb->model, cfg->model_init, host, err) != RM_OK) {
        free(host);
        return RM_ERR;
    }
    cudaError_t rc = cudaMemcpyAsync(gb->params, host, n * sizeof(float), cudaMemcpyHostToDevice, gb->compute);
    if (rc == cudaSuccess)
        rc = cudaStreamSynchronize(gb->compute); /* before host is freed */
    free(host);
    RM_CUDA_CHECK(rc, err);
    if (gb->precision == RM_PREC_BF16) {
        RM_CUDA_CHECK(cudaMalloc(&gb->params16, n * 2), err);
        RM_CUDA_CHECK(rm_gpu_cast_bf16(gb->params, (long)n, gb->params16, gb->compute), err);
    }
    if (gb->ops->create(model, gb->base.max_micro_batch, gb->precision, gb->attention, gb->blas, gb->compute,
                        &gb->impl, err) != RM_OK)
        return RM_ERR;
    size_t in_bytes = (size_t)gb->max_batch * (size_t)model->input_bytes;
    size_t tg_bytes = (size_t)gb->max_batch * (size_t)model->target_bytes;
    for (int k = 0; k < 2; k++) {
        input_slot *in = &gb->slots[k];
        RM_CUDA_CHECK(cudaHostAlloc(&in->host_input, in_bytes, cudaHostAllocDefault), err);
        RM_CUDA_CHECK(cudaHostAlloc(&in->host_target, tg_bytes, cudaHostAllocDefault), err);
        RM_CUDA_CHECK(cudaMalloc(&in->dev_input, in_bytes), err);
        RM_CUDA_CHECK(cudaMalloc(&in->dev_target, tg_bytes), err);
        RM_CUDA_CHECK(cudaEventCreateWithFlags(&in->ready, cudaEventDisableTiming), err);
        RM_CUDA_CHECK(cudaEventCreateWithFlags(&in->freed, cudaEventDisableTiming), err);
    }
    size_t parts = (size_t)gb->grad_accum;
    RM_CUDA_CHECK(cudaHostAlloc((void **)&gb->results.loss, parts * sizeof(double), cudaHostAllocDefault), err);
    RM_CUDA_CHECK(cudaHostAlloc((void **)&gb->results.correct, parts * sizeof(long long), cudaHostAllocDefault),
                  err);
    RM_CUDA_CHECK(cudaHostAlloc((void **)&gb->host_sumsq, sizeof(double), cudaHostAllocDefault), err);
    RM_CUDA_CHECK(cudaMalloc((void **)&gb->dev_partial, RM_GPU_SUMSQ_PARTIALS * sizeof(double)), err);
    RM_CUDA_CHECK(cudaMalloc((void **)&gb->dev_sumsq, sizeof(double)), err);
    RM_CUDA_CHECK(cudaEventCreateWithFlags(&gb->compute_done, cudaEventDisableTiming), err);
    RM_CUDA_CHECK(cudaEventCreateWithFlags(&gb->results_ready, cudaEventDisableTiming), err);
    RM_CUDA_CHECK(cudaStreamSynchronize(gb->compute), err);
    RM_CUDA_CHECK(cudaMemGetInfo(&free_after, &total), err);
    gb->base.memory_bytes = free_before > free_after ? free_before - free_after : 0;
    return RM_OK;
}

rm_backend *rm_backend_gpu_create(const rm_model *model, const rm_config *cfg, long max_batch, MPI_Comm comm,
                                  rm_heartbeat_fn heartbeat, void *heartbeat_ctx, double heartbeat_s, rm_error *err)
{
    const rm_model_gpu_ops *ops = rm_model_gpu_ops_for(model, err);
    if (!ops)
        return NULL;
    if (cfg->grad_accum > 1 && !ops->accumulates) {
        rm_fail(err, "train.grad_accum %ld: model %s cannot accumulate gradients on the GPU backend yet; use 1",
                (long)cfg->grad_accum, model->name);
        return NULL;
    }
    /* Activations for one micro-step of a training batch, or for an
     * evaluation chunk when that is larger: evaluation runs in chunks of
     * this size. */
    long micro = max_batch / cfg->grad_accum;
    if (micro < 1)
        micro = 1;
    gpu_backend *gb = calloc(1, sizeof *gb);
    if (!gb) {
        rm_fail(err, "out of memory");
        return NULL;
    }
    gb->base = (rm_backend){
        .name = "gpu",
        .kind = RM_BACKEND_GPU,
        .transport = RM_TRANSPORT_NCCL,
        .n_state = cfg->optimizer == RM_OPT_ADAMW ? 3 : 2,
        .max_micro_batch = micro,
        .backward = gpu_backward,
        .reduce = gpu_reduce,
        .update = gpu_update,
        .update_snapshot = gpu_update_snapshot,
        .evaluate = gpu_evaluate,
        .read_params = gpu_read_params,
        .snapshot = gpu_snapshot,
        .restore = gpu_restore,
        .destroy = gpu_destroy,
        .prefetch = gpu_prefetch,
        .pin_host = gpu_pin_host,
    };
    gb->model = model;
    gb->ops = ops;
    gb->n_params = model->n_params;
    gb->grad_accum = cfg->grad_accum;
    gb->precision = cfg->precision;
    gb->attention = cfg->attention;
    gb->optimizer = cfg->optimizer;
    gb->momentum = cfg->momentum;
    gb->beta1 = cfg->beta1;
    gb->beta2 = cfg->beta2;
    gb->eps = cfg->eps;
    gb->weight_decay = cfg->weight_decay;
    gb->grad_clip = cfg->grad_clip;
    gb->max_batch = max_batch;
    gb->peer_wait = (rm_peer_wait){.heartbeat = heartbeat, .ctx = heartbeat_ctx, .heartbeat_s = heartbeat_s};
    MPI_Comm_rank(comm, &gb->rank);
    MPI_Comm_size(comm, &gb->world);
    /* With one worker ZeRO-1 is plain data parallelism: one slice, all of it. */
    gb->sharded = cfg->zero && gb->world > 1;
    gb->base.sharded = gb->sharded;
    if (gb->world == 1)
        gb->base.transport = RM_TRANSPORT_NONE;
    gb->lo = 0;
    gb->hi = model->n_params;
    if (gb->sharded)
        rm_zero_slice(model->n_params, gb->world, gb->rank, &gb->lo, &gb->hi);

    /* Agree before the NCCL communicator, which every worker must join:
     * a worker whose device failed must not leave the others waiting. */
    rm_error local;
    int ok = build_local(gb, cfg, comm, &local) == RM_OK, all_ok = 0;
    if (MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, comm) != MPI_SUCCESS) {
        rm_fail(err, "MPI_Allreduce failed while the workers set up their GPUs");
        goto fail;
    }
    if (!ok) {
        rm_fail(err, "worker %d: %s", gb->rank, local.msg);
        goto fail;
    }
    if (!all_ok) {
        rm_fail(err, "another worker could not set up its GPU (its own message says why)");
        goto fail;
    }
    rm_grad_transport tp = {0};
    if (gb->world > 1) {
        if (rm_gpu_check_exclusive(comm, gb->device, err) != RM_OK)
            goto fail;
        gb->have_nccl = 1;
        if (rm_nccl_transport_init(&gb->nccl, comm, gb->compute, gb->grads, err) != RM_OK)
            goto fail;
        if (gb->sharded) {
            if (rm_nccl_transport_shard(&gb->nccl, model->n_params, err) != RM_OK)
                goto fail;
            if (gb->rank == 0)
                rm_info("ZeRO-1: gradient buckets reduced onto their owners and parameters gathered over NCCL, each "
                        "of %d workers holding the optimizer state of its 1/%d slice",
                        gb->world, gb->world);
        }
        tp = rm_nccl_transport_table(&gb->nccl);
    }
    long bucket_floats = (long)(cfg->bucket_mb * 1024.0 * 1024.0 / sizeof(float));
    if (rm_grad_sync_init(&gb->sync, model->n_params, bucket_floats, gb->rank, gb->world > 1 ? &tp : NULL, err) !=
        RM_OK)
        goto fail;
    gb->sync.peer_wait = gb->peer_wait;
    /* Longer than the coordinator's own hang watch (fault.hang_timeout_s),
     * which names a rank that went silent; this one catches what it cannot
     * see: a collective stuck while every host still reports. */
    gb->sync.watchdog_s = 1.5 * cfg->hang_timeout_s;
    return &gb->base;
fail:
    gpu_destroy(&gb->base);
    return NULL;
}
