/* The GPU backend: one CUDA device per worker, the MLP on cuBLAS and the
 * kernels of gpu_ops.h (mlp_gpu.c), gradients summed by NCCL bucket by
 * bucket while backward runs (grad_sync.c over nccl_transport.c), the
 * optimizer fused into one kernel per step.
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
#include "mlp_cpu.h"
#include "mlp_gpu.h"
#include "model_init.h"
#include "log.h"
#include "mpi_check.h"
#include "nccl_transport.h"
#include "timer.h"
#include "zero_slice.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A batch's way to the device: pinned host buffer -> copy stream -> device
 * buffer, two slots so the next batch's copy overlaps this step's compute. */
typedef struct input_slot {
    float *host_x; /* pinned, max_batch x input_dim */
    uint8_t *host_labels;
    float *dev_x;
    uint8_t *dev_labels;
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

/* Numbers the host reads back, in one pinned block. */
typedef struct host_results {
    double loss;
    long long correct;
    double sumsq;
} host_results;

typedef struct gpu_backend {
    rm_backend base;
    rm_model_shape shape;
    const rm_model *model; /* not owned: the worker's, outlives the backend */
    int precision, optimizer;
    double momentum, beta1, beta2, eps, weight_decay;
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
    rm_mlp_gpu mlp;

    input_slot slots[2];
    int next_slot;
    pinned_range pinned[MAX_PINNED_RANGES];
    int n_pinned;
    int staged; /* a prefetched batch waits in staged_slot */
    int staged_slot;
    const float *staged_x;
    const uint8_t *staged_labels;
    long staged_n;

    double *dev_partial, *dev_sumsq;
    host_results *results; /* pinned */
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
static int stage(gpu_backend *gb, const float *x, const uint8_t *labels, long n, int *slot_out, rm_error *err)
{
    if (n < 1 || n > gb->max_batch)
        return rm_fail(err, "batch of %ld samples: the GPU backend was sized for 1 to %ld", n, gb->max_batch);
    int k = gb->next_slot;
    gb->next_slot ^= 1;
    if (gb->staged && gb->staged_slot == k)
        gb->staged = 0; /* about to be overwritten */
    input_slot *s = &gb->slots[k];
    size_t x_bytes = (size_t)n * (size_t)gb->shape.dims[0] * sizeof(float);
    /* The pinned buffer is refilled only after its previous copy is done;
     * that was two batches ago, so this rarely waits. */
    RM_CUDA_CHECK(cudaEventSynchronize(s->ready), err);
    const float *src = x;
    if (!is_pinned(gb, x, x_bytes)) {
        memcpy(s->host_x, x, x_bytes);
        src = s->host_x;
    }
    memcpy(s->host_labels, labels, (size_t)n);
    /* The device buffer is overwritten only after the compute that read it. */
    RM_CUDA_CHECK(cudaStreamWaitEvent(gb->copy, s->freed, 0), err);
    RM_CUDA_CHECK(cudaMemcpyAsync(s->dev_x, src, x_bytes, cudaMemcpyHostToDevice, gb->copy), err);
    RM_CUDA_CHECK(cudaMemcpyAsync(s->dev_labels, s->host_labels, (size_t)n, cudaMemcpyHostToDevice, gb->copy), err);
    RM_CUDA_CHECK(cudaEventRecord(s->ready, gb->copy), err);
    *slot_out = k;
    return RM_OK;
}

/* The slot holding this batch (prefetched, or staged now), with the compute
 * stream ordered after its copy. */
static int take_input(gpu_backend *gb, const float *x, const uint8_t *labels, long n, int *slot, rm_error *err)
{
    if (gb->staged && gb->staged_x == x && gb->staged_labels == labels && gb->staged_n == n) {
        *slot = gb->staged_slot;
        gb->staged = 0;
    } else if (stage(gb, x, labels, n, slot, err) != RM_OK) {
        return RM_ERR;
    }
    RM_CUDA_CHECK(cudaStreamWaitEvent(gb->compute, gb->slots[*slot].ready, 0), err);
    return RM_OK;
}

static int gpu_prefetch(rm_backend *b, const void *input, const void *target, long n, rm_error *err)
{
    const float *x = input;
    const uint8_t *labels = target;
    gpu_backend *gb = (gpu_backend *)b;
    int slot;
    if (stage(gb, x, labels, n, &slot, err) != RM_OK)
        return RM_ERR;
    gb->staged = 1;
    gb->staged_slot = slot;
    gb->staged_x = x;
    gb->staged_labels = labels;
    gb->staged_n = n;
    return RM_OK;
}

static int grad_ready(void *ctx, long offset, rm_error *err)
{
    return rm_grad_sync_ready_from(ctx, offset, err);
}

static int gpu_backward(rm_backend *b, const void *input, const void *target, long n, float grad_scale, int poison,
                        rm_step_stats *stats, rm_error *err)
{
    gpu_backend *gb = (gpu_backend *)b;
    gb->backward_t0 = rm_now_s();
    int slot;
    if (take_input(gb, input, target, n, &slot, err) != RM_OK)
        return RM_ERR;
    input_slot *s = &gb->slots[slot];
    if (rm_mlp_gpu_forward(&gb->mlp, gb->params, gb->params16, s->dev_x, s->dev_labels, n, 1,
                           poison ? NAN : grad_scale, err) != RM_OK ||
        rm_mlp_gpu_backward(&gb->mlp, gb->params, gb->params16, gb->grads, n, grad_ready, &gb->sync, err) != RM_OK)
        return RM_ERR;
    RM_CUDA_CHECK(cudaEventRecord(s->freed, gb->compute), err);
    RM_CUDA_CHECK(cudaMemcpyAsync(&gb->results->loss, gb->mlp.loss_sum, sizeof(double), cudaMemcpyDeviceToHost,
                                  gb->compute),
                  err);
    RM_CUDA_CHECK(cudaMemcpyAsync(&gb->results->correct, gb->mlp.correct, sizeof(long long), cudaMemcpyDeviceToHost,
                                  gb->compute),
                  err);
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
    RM_CUDA_CHECK(cudaMemcpyAsync(&gb->results->sumsq, gb->dev_sumsq, sizeof(double), cudaMemcpyDeviceToHost,
                                  gb->compute),
                  err);
    if (wait_compute(gb, err) != RM_OK)
        return RM_ERR;
    stats->loss_sum = gb->results->loss;
    stats->correct = (long)gb->results->correct;
    stats->grad_norm = sqrt(gb->results->sumsq);
    return RM_OK;
}

/* Enqueues one optimizer step; nothing waits for it, so the device runs it
 * while the host reports the step and fetches the next batch (its device
 * time shows in the next step's compute_s). */
static int enqueue_update(gpu_backend *gb, double lr, rm_error *err)
{
    gb->opt_steps++;
    long n = gb->hi - gb->lo;
    float *w = gb->params + gb->lo;
    const float *g = gb->grads + gb->lo;
    /* bf16 elements are two bytes */
    void *w16 = gb->precision == RM_PREC_BF16 ? (char *)gb->params16 + 2 * gb->lo : NULL;
    if (gb->optimizer == RM_OPT_SGD) {
        RM_CUDA_CHECK(rm_gpu_sgd_momentum(w, g, gb->m, n, (float)lr, (float)gb->momentum,
                                          (float)gb->weight_decay, w16, gb->compute),
                      err);
    } else {
        /* Bias corrections as worker/optimizer.c computes them. */
        float c1 = (float)(1.0 / (1.0 - pow(gb->beta1, (double)gb->opt_steps)));
        float c2 = (float)(1.0 / sqrt(1.0 - pow(gb->beta2, (double)gb->opt_steps)));
        RM_CUDA_CHECK(rm_gpu_adamw(w, g, gb->m, gb->v, n, (float)lr, (float)gb->beta1,
                                   (float)gb->beta2, (float)gb->eps, (float)gb->weight_decay, c1, c2, w16,
                                   gb->compute),
                      err);
    }
    if (!gb->sharded)
        return RM_OK;
    /* every slice to every worker, fp32; the bf16 copy is cast from it */
    if (rm_nccl_gather_slices(&gb->nccl, gb->params, err) != RM_OK)
        return RM_ERR;
    if (gb->precision == RM_PREC_BF16)
        RM_CUDA_CHECK(rm_gpu_cast_bf16(gb->params, gb->shape.n_params, gb->params16, gb->compute), err);
    return RM_OK;
}

static int gpu_update(rm_backend *b, double lr, rm_step_stats *stats, rm_error *err)
{
    double t0 = rm_now_s();
    if (enqueue_update((gpu_backend *)b, lr, err) != RM_OK)
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
    if (enqueue_update((gpu_backend *)b, lr, err) != RM_OK)
        return RM_ERR;
    double t1 = rm_now_s();
    if (gpu_snapshot(b, begin, end, dst, opt_steps, err) != RM_OK)
        return RM_ERR;
    stats->optimizer_s = t1 - t0;
    stats->snapshot_s = rm_now_s() - t1;
    return RM_OK;
}

static int gpu_evaluate(rm_backend *b, const void *input, const void *target, long n, double *loss_sum, long *correct,
                        rm_error *err)
{
    gpu_backend *gb = (gpu_backend *)b;
    int slot;
    if (take_input(gb, input, target, n, &slot, err) != RM_OK)
        return RM_ERR;
    input_slot *s = &gb->slots[slot];
    if (rm_mlp_gpu_forward(&gb->mlp, gb->params, gb->params16, s->dev_x, s->dev_labels, n, 0, 1.0f, err) != RM_OK)
        return RM_ERR;
    RM_CUDA_CHECK(cudaEventRecord(s->freed, gb->compute), err);
    RM_CUDA_CHECK(cudaMemcpyAsync(&gb->results->loss, gb->mlp.loss_sum, sizeof(double), cudaMemcpyDeviceToHost,
                                  gb->compute),
                  err);
    RM_CUDA_CHECK(cudaMemcpyAsync(&gb->results->correct, gb->mlp.correct, sizeof(long long), cudaMemcpyDeviceToHost,
                                  gb->compute),
                  err);
    if (wait_compute(gb, err) != RM_OK)
        return RM_ERR;
    *loss_sum = gb->results->loss;
    *correct = (long)gb->results->correct;
    return RM_OK;
}

static int gpu_read_params(rm_backend *b, float *out, rm_error *err)
{
    gpu_backend *gb = (gpu_backend *)b;
    RM_CUDA_CHECK(cudaMemcpyAsync(out, gb->params, (size_t)gb->shape.n_params * sizeof(float),
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
    RM_CUDA_CHECK(cudaMemcpyAsync(gb->params, state[0], (size_t)gb->shape.n_params * sizeof(float),
                                  cudaMemcpyHostToDevice, gb->compute),
                  err);
    float *dst[3] = {NULL, gb->m, gb->v};
    for (int k = 1; k < b->n_state; k++)
        RM_CUDA_CHECK(cudaMemcpyAsync(dst[k], state[k] + gb->lo, (size_t)(gb->hi - gb->lo) * sizeof(float),
                                      cudaMemcpyHostToDevice, gb->compute),
                      err);
    if (gb->precision == RM_PREC_BF16)
        RM_CUDA_CHECK(rm_gpu_cast_bf16(gb->params, gb->shape.n_params, gb->params16, gb->compute), err);
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
    rm_mlp_gpu_free(&gb->mlp);
    for (int k = 0; k < 2; k++) {
        input_slot *s = &gb->slots[k];
        cudaFreeHost(s->host_x);
        cudaFreeHost(s->host_labels);
        cudaFree(s->dev_x);
        cudaFree(s->dev_labels);
        if (s->ready)
            cudaEventDestroy(s->ready);
        if (s->freed)
            cudaEventDestroy(s->freed);
    }
    cudaFreeHost(gb->results);
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
    const rm_model_shape *s = &gb->shape;
    size_t n = (size_t)s->n_params, n_slice = (size_t)(gb->hi - gb->lo);
    if (rm_gpu_bind(comm, &gb->device, err) != RM_OK)
        return RM_ERR;
    int cc;
    if (rm_gpu_capability(&cc, err) != RM_OK)
        return RM_ERR;
    if (gb->precision != RM_PREC_FP32 && cc < 80)
        return rm_fail(err, "train.precision %s needs a GPU of compute capability 8.0 or newer; device %d has %d.%d",
                       gb->precision == RM_PREC_BF16 ? "bf16" : "tf32", gb->device, cc / 10, cc % 10);
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
    rm_mlp_init_params(s, (uint64_t)cfg->seed, host);
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
    if (rm_mlp_gpu_init(&gb->mlp, s, gb->max_batch, gb->precision, gb->blas, gb->compute, err) != RM_OK)
        return RM_ERR;
    size_t x_bytes = (size_t)gb->max_batch * (size_t)s->dims[0] * sizeof(float);
    for (int k = 0; k < 2; k++) {
        input_slot *in = &gb->slots[k];
        RM_CUDA_CHECK(cudaHostAlloc((void **)&in->host_x, x_bytes, cudaHostAllocDefault), err);
        RM_CUDA_CHECK(cudaHostAlloc((void **)&in->host_labels, (size_t)gb->max_batch, cudaHostAllocDefault), err);
        RM_CUDA_CHECK(cudaMalloc((void **)&in->dev_x, x_bytes), err);
        RM_CUDA_CHECK(cudaMalloc((void **)&in->dev_labels, (size_t)gb->max_batch), err);
        RM_CUDA_CHECK(cudaEventCreateWithFlags(&in->ready, cudaEventDisableTiming), err);
        RM_CUDA_CHECK(cudaEventCreateWithFlags(&in->freed, cudaEventDisableTiming), err);
    }
    RM_CUDA_CHECK(cudaHostAlloc((void **)&gb->results, sizeof *gb->results, cudaHostAllocDefault), err);
    RM_CUDA_CHECK(cudaMalloc((void **)&gb->dev_partial, RM_GPU_SUMSQ_PARTIALS * sizeof(double)), err);
    RM_CUDA_CHECK(cudaMalloc((void **)&gb->dev_sumsq, sizeof(double)), err);
    RM_CUDA_CHECK(cudaEventCreateWithFlags(&gb->compute_done, cudaEventDisableTiming), err);
    RM_CUDA_CHECK(cudaEventCreateWithFlags(&gb->results_ready, cudaEventDisableTiming), err);
    RM_CUDA_CHECK(cudaStreamSynchronize(gb->compute), err);
    return RM_OK;
}

rm_backend *rm_backend_gpu_create(const rm_model *model, const rm_config *cfg, long max_batch, MPI_Comm comm,
                                  rm_heartbeat_fn heartbeat, void *heartbeat_ctx, double heartbeat_s, rm_error *err)
{
    /* The GPU table of the model seam holds the MLP so far. */
    if (model->type != RM_MODEL_MLP) {
        rm_fail(err, "model %s has no GPU implementation (it runs on: cpu); use launch.backend cpu", model->name);
        return NULL;
    }
    if (cfg->grad_accum > 1 || cfg->grad_clip > 0) {
        rm_fail(err, "train.grad_accum and train.grad_clip are not implemented on the GPU backend yet");
        return NULL;
    }
    const rm_model_shape *shape = &model->mlp;
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
        .max_micro_batch = max_batch,
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
    gb->shape = *shape;
    gb->model = model;
    gb->precision = cfg->precision;
    gb->optimizer = cfg->optimizer;
    gb->momentum = cfg->momentum;
    gb->beta1 = cfg->beta1;
    gb->beta2 = cfg->beta2;
    gb->eps = cfg->eps;
    gb->weight_decay = cfg->weight_decay;
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
    gb->hi = shape->n_params;
    if (gb->sharded)
        rm_zero_slice(shape->n_params, gb->world, gb->rank, &gb->lo, &gb->hi);

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
            if (rm_nccl_transport_shard(&gb->nccl, shape->n_params, err) != RM_OK)
                goto fail;
            if (gb->rank == 0)
                rm_info("ZeRO-1: gradient buckets reduced onto their owners and parameters gathered over NCCL, each "
                        "of %d workers holding the optimizer state of its 1/%d slice",
                        gb->world, gb->world);
        }
        tp = rm_nccl_transport_table(&gb->nccl);
    }
    long bucket_floats = (long)(cfg->bucket_mb * 1024.0 * 1024.0 / sizeof(float));
    if (rm_grad_sync_init(&gb->sync, shape->n_params, bucket_floats, gb->rank, gb->world > 1 ? &tp : NULL, err) !=
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
