/* ringmaster-doctor: one MPI rank per worker of the job, each measuring
 * the pipes its worker will use, at the same time as the others (so that
 * ranks sharing a host share its disk, memory and cores as in training).
 * Rank 0 gathers the figures and prints the table, and writes the JSON
 * where --out says (nowhere without it).
 *
 *   storage    the train split's shard files, read with read(2): cold
 *              (page cache dropped with posix_fadvise DONTNEED first) and
 *              warm; then the loader thread alone at the job's batch
 *   memory     a triad over arrays much larger than the caches
 *   step       the worker's step loop through the job's backend, fed by
 *              the job's loader thread: data wait, forward + backward, the
 *              gradient reduction on the job's transport (shared memory,
 *              MPI, ZeRO-1's reduce-scatter), the optimizer and ZeRO-1's
 *              parameter all-gather, each timed as a run times it
 *   reduction  the backend's gradient reduction alone, after a barrier
 *   compute    every sgemm of forward and backward at the model's shapes
 *              for one local batch, each alone (CPU backend)
 *
 * Rank 0 stands in for the coordinator (it sleeps, takes the workers'
 * per-step messages and answers them, as the coordinator would), so that
 * the workers share the machine as they will in training. Started by
 * `ringmaster doctor` as
 *   mpirun -np N+1 ringmaster-doctor CONFIG [--out JSON] */
#include "doctor.h"

#include "protocol.h"

#include "backend.h"
#include "config.h"
#include "fsutil.h"
#include "loader.h"
#include "log.h"
#include "model.h"
#include "mpi_check.h"
#include "order.h"
#include "shard.h"
#include "timer.h"

#include <cblas.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define READ_CHUNK (4L << 20)
#define STORAGE_CAP_BYTES (512L << 20) /* per rank: enough for a rate, bounded time */
#define PROBE_S 0.25                    /* minimum time per timed figure */
#define SEQUENCE_S 2.0                  /* the step sequence: long enough for a steady mean */
#define WARM_STEPS 5                    /* run first, untimed: caches, pages, the loader's queue */
#define MIN_SEQUENCE_STEPS 10
#define MAX_SEQUENCE_STEPS 20000
#define LOADER_BATCHES 1000

/* Messages between the workers and the coordinator's stand-in. */
enum { TAG_PROGRESS = 301, TAG_REPORT, TAG_ASSIGN, TAG_DONE };

typedef struct doctor {
    int rank, ranks; /* worker index and count (world rank - 1, world size - 1) */
    MPI_Comm comm;   /* the workers */
    long reports_sent, assigns_received;
    rm_config cfg;
    rm_dataset_facts facts;
    rm_model model;
    long local_batch;
    rm_doctor_rank me;
} doctor;

/* Reads the shard files of this rank's share (every ranks-th shard, so that
 * together the ranks read the split once, as training does over an epoch).
 * drop: first drop the files' cached pages. Returns bytes read. */
static int read_share(doctor *d, const rm_shard_index *idx, const char *dir, int drop, double *bytes, double *secs,
                      rm_error *err)
{
    char *buf = malloc(READ_CHUNK);
    if (!buf)
        return rm_fail(err, "out of memory");
    *bytes = 0;
    int rc = RM_OK;
    /* With fewer shards than ranks every rank reads one, shifted. */
    int first = idx->n_shards > d->ranks ? d->rank : d->rank % idx->n_shards;
    int step = idx->n_shards > d->ranks ? d->ranks : idx->n_shards + 1;
    MPI_Barrier(d->comm);
    double t0 = rm_now_s();
    for (int s = first; s < idx->n_shards && *bytes < STORAGE_CAP_BYTES; s += step) {
        char path[2 * RM_PATH_CAP];
        snprintf(path, sizeof path, "%s/%s", dir, idx->shards[s].file);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            rc = rm_fail_errno(err, errno, "%s: cannot open", path);
            break;
        }
        if (drop) {
            /* Cold: clean cached pages go; what the disk (or the network
             * file system) delivers is what remains to be measured. */
            posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
        }
        for (;;) {
            ssize_t n = read(fd, buf, READ_CHUNK);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0) {
                rc = rm_fail_errno(err, errno, "%s: read failed", path);
                break;
            }
            if (n == 0)
                break;
            *bytes += (double)n;
        }
        close(fd);
        if (rc != RM_OK)
            break;
    }
    *secs = rm_now_s() - t0;
    free(buf);
    if (d->cfg.debug_loader_throttle_mb_s > 0) {
        /* The throttle knob stands for slow storage: reads of the job's
         * data are no faster than it allows, here as in the loader. */
        double floor_s = *bytes / (d->cfg.debug_loader_throttle_mb_s * 1e6);
        if (*secs < floor_s)
            *secs = floor_s;
    }
    return rc;
}

static int probe_storage(doctor *d, rm_error *err)
{
    char dir[2 * RM_PATH_CAP];
    snprintf(dir, sizeof dir, "%s/%s", d->cfg.data_dir, d->cfg.train_split);
    rm_shard_index idx;
    if (rm_shard_index_read(dir, &idx, err) != RM_OK)
        return RM_ERR;
    double bytes, cold_s, warm_s;
    int rc = read_share(d, &idx, dir, 1, &bytes, &cold_s, err);
    if (rc == RM_OK)
        rc = read_share(d, &idx, dir, 0, &bytes, &warm_s, err);
    rm_shard_index_free(&idx);
    if (rc != RM_OK)
        return RM_ERR;
    d->me.storage_bytes = bytes;
    d->me.storage_cold_mb_s = cold_s > 0 ? bytes / cold_s / 1e6 : 0;
    d->me.storage_warm_mb_s = warm_s > 0 ? bytes / warm_s / 1e6 : 0;
    return RM_OK;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The loader thread on its own, fed this rank's real slices of the first
 * steps: how long it takes to make one local batch ready. */
static int probe_loader(doctor *d, rm_error *err)
{
    char dir[2 * RM_PATH_CAP];
    snprintf(dir, sizeof dir, "%s/%s", d->cfg.data_dir, d->cfg.train_split);
    rm_dataset ds;
    memset(&ds, 0, sizeof ds);
    if (rm_dataset_open_context(dir, RM_DATASET_DEFAULT_DECRYPT_BYTES, d->cfg.model_context, &ds, err) != RM_OK)
        return RM_ERR;
    long *sizes = malloc((size_t)ds.index.n_shards * sizeof *sizes);
    uint32_t *samples = malloc((size_t)d->local_batch * sizeof *samples);
    double *intervals = malloc(LOADER_BATCHES * sizeof *intervals);
    rm_sampler sampler;
    memset(&sampler, 0, sizeof sampler);
    rm_loader ld;
    memset(&ld, 0, sizeof ld);
    int rc = RM_ERR;
    if (!sizes || !samples || !intervals) {
        rm_fail(err, "out of memory");
        goto out;
    }
    for (int s = 0; s < ds.index.n_shards; s++)
        sizes[s] = ds.index.shards[s].samples;
    if (rm_sampler_init(&sampler, sizes, ds.index.n_shards, (uint64_t)d->cfg.seed, d->cfg.shuffle_window_shards, err) !=
            RM_OK ||
        rm_loader_start(&ld, &ds, d->local_batch, (int)d->cfg.prefetch_batches, (int)d->cfg.prefetch_batches + 2,
                        err) != RM_OK)
        goto out;
    if (d->cfg.debug_loader_throttle_mb_s > 0) /* as from step 0: the steady state of a throttled job */
        ld.throttle_bytes_per_s = d->cfg.debug_loader_throttle_mb_s * 1e6;
    MPI_Barrier(d->comm);
    double t0 = rm_now_s(), last = t0;
    long done = 0, pushed = 0;
    while (done < LOADER_BATCHES && (done < 8 || rm_now_s() - t0 < PROBE_S)) {
        while (rm_loader_free_assign_slots(&ld) > 0 && pushed - done < ld.n_assign) {
            rm_msg_assign a = {.step = pushed,
                               .position = rm_order_slice_start(pushed, d->cfg.global_batch, d->rank, d->ranks),
                               .count = (int32_t)d->local_batch};
            if (rm_sampler_fill(&sampler, a.position, a.count, samples, err) != RM_OK ||
                rm_loader_push(&ld, &a, samples, err) != RM_OK)
                goto out;
            pushed++;
        }
        rm_batch *b;
        if (rm_loader_next(&ld, &b, err) != RM_OK)
            goto out;
        rm_loader_release(&ld);
        double now = rm_now_s();
        intervals[done++] = now - last;
        last = now;
    }
    /* The median batch: the loader's pace, not a burst of other load */
    qsort(intervals, (size_t)done, sizeof *intervals, cmp_double);
    d->me.loader_batch_s = done % 2 ? intervals[done / 2] : 0.5 * (intervals[done / 2 - 1] + intervals[done / 2]);
    d->me.loader_samples_per_s = (double)d->local_batch / d->me.loader_batch_s;
    rc = RM_OK;
out:
    rm_loader_stop(&ld);
    rm_sampler_free(&sampler);
    free(sizes);
    free(samples);
    free(intervals);
    rm_dataset_close(&ds);
    return rc;
}

static int probe_memory(doctor *d, rm_error *err)
{
    long n = 16L << 20; /* 3 x 64 MiB of floats */
    float *a = malloc((size_t)n * sizeof *a), *b = malloc((size_t)n * sizeof *b), *c = malloc((size_t)n * sizeof *c);
    if (!a || !b || !c) {
        free(a);
        free(b);
        free(c);
        return rm_fail(err, "out of memory for the memory bandwidth probe");
    }
    for (long i = 0; i < n; i++) {
        a[i] = 0;
        b[i] = (float)(i & 1023);
        c[i] = 1.0f;
    }
    MPI_Barrier(d->comm);
    double best = 1e30;
    for (int rep = 0; rep < 5; rep++) {
        double t0 = rm_now_s();
        for (long i = 0; i < n; i++)
            a[i] = b[i] + 0.5f * c[i];
        double t = rm_now_s() - t0;
        if (t < best)
            best = t;
    }
    volatile float sink = a[n / 2]; /* keep the loop */
    (void)sink;
    d->me.memory_gb_s = 3.0 * (double)n * sizeof(float) / best / 1e9;
    free(a);
    free(b);
    free(c);
    return RM_OK;
}

/* Times one sgemm shape (row-major, as the CPU backend calls it). */
static void time_gemm(doctor *d, const char *what, CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, long m, long n, long k,
                      float *A, float *B, float *C)
{
    int lda = (int)(ta == CblasNoTrans ? k : m), ldb = (int)(tb == CblasNoTrans ? n : k);
    /* A model repeats its shapes layer after layer: time each once. */
    double seconds = -1;
    for (int i = 0; i < d->me.n_gemms && seconds < 0; i++)
        if (d->me.gemms[i].m == m && d->me.gemms[i].n == n && d->me.gemms[i].k == k && d->me.gemms[i].ta == (int)ta &&
            d->me.gemms[i].tb == (int)tb)
            seconds = d->me.gemms[i].seconds;
    if (seconds < 0) {
        cblas_sgemm(CblasRowMajor, ta, tb, (int)m, (int)n, (int)k, 1.0f, A, lda, B, ldb, 0.0f, C, (int)n);
        long calls = 0;
        double t0 = rm_now_s(), t;
        do {
            cblas_sgemm(CblasRowMajor, ta, tb, (int)m, (int)n, (int)k, 1.0f, A, lda, B, ldb, 0.0f, C, (int)n);
            calls++;
            t = rm_now_s() - t0;
        } while (t < PROBE_S / 8 || calls < 3);
        seconds = t / (double)calls;
    }
    d->me.gemm_s += seconds;
    if (d->me.n_gemms >= RM_DOCTOR_MAX_GEMMS)
        return;
    rm_doctor_gemm *g = &d->me.gemms[d->me.n_gemms++];
    snprintf(g->what, sizeof g->what, "%s", what);
    g->m = m;
    g->n = n;
    g->k = k;
    g->ta = (int)ta;
    g->tb = (int)tb;
    g->seconds = seconds;
    g->gflops = 2.0 * (double)m * (double)n * (double)k / g->seconds / 1e9;
}

/* Receives the stand-in's answers that have arrived (all of them when
 * `all`), as a worker takes its assignments between steps. */
static int drain_assignments(doctor *d, int all, rm_error *err)
{
    char buf[1 << 16];
    while (d->assigns_received < d->reports_sent) {
        int flag = 1;
        MPI_Status st;
        if (!all)
            RM_MPI_CHECK(MPI_Iprobe(0, TAG_ASSIGN, MPI_COMM_WORLD, &flag, &st), err);
        if (!flag)
            break;
        RM_MPI_CHECK(MPI_Recv(buf, sizeof buf, MPI_BYTE, 0, TAG_ASSIGN, MPI_COMM_WORLD, MPI_STATUS_IGNORE), err);
        d->assigns_received++;
    }
    return RM_OK;
}

/* Rank 0 stands in for the coordinator: it sleeps between messages as the
 * coordinator does, takes each worker's progress and report messages and
 * answers each report with an assignment of the job's size. On a machine
 * with fewer cores than ranks its wake-ups cost the workers what the real
 * coordinator's cost them. */
static int stand_in(const doctor *d, int workers, rm_error *err)
{
    size_t assign_bytes = sizeof(rm_msg_assign) + (size_t)(d->cfg.global_batch / workers) * sizeof(uint32_t);
    char *buf = calloc(1, (1 << 16) + assign_bytes);
    if (!buf)
        return rm_fail(err, "out of memory");
    int done = 0, rc = RM_OK;
    while (done < workers && rc == RM_OK) {
        int flag;
        MPI_Status st;
        if (MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, MPI_COMM_WORLD, &flag, &st) != MPI_SUCCESS) {
            rc = rm_fail(err, "MPI_Iprobe failed");
            break;
        }
        if (!flag) {
            nanosleep(&(struct timespec){0, RM_COORD_IDLE_SLEEP_NS}, NULL);
            continue;
        }
        MPI_Recv(buf, 1 << 16, MPI_BYTE, st.MPI_SOURCE, st.MPI_TAG, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        if (st.MPI_TAG == TAG_DONE)
            done++;
        else if (st.MPI_TAG == TAG_REPORT)
            MPI_Send(buf, (int)assign_bytes, MPI_BYTE, st.MPI_SOURCE, TAG_ASSIGN, MPI_COMM_WORLD);
    }
    free(buf);
    return rc;
}

/* Every parameter product of one training step at the shapes of the
 * model's table (each matrix [out x in] applied to a micro-step's rows:
 * samples x positions), each timed on its own. */
static int probe_gemms(doctor *d, rm_error *err)
{
    const rm_model *m = &d->model;
    long n = d->local_batch / d->cfg.grad_accum * m->positions, widest = 0;
    for (int i = 0; i < m->n_tensors; i++)
        if (m->tensors[i].matmul)
            for (int k = 0; k < 2; k++)
                widest = m->tensors[i].shape[k] > widest ? m->tensors[i].shape[k] : widest;
    long big = n > widest ? n : widest;
    float *a = calloc((size_t)big * (size_t)widest, sizeof(float));
    float *b = calloc((size_t)big * (size_t)widest, sizeof(float));
    float *c = calloc((size_t)big * (size_t)widest, sizeof(float));
    if (!a || !b || !c) {
        free(a);
        free(b);
        free(c);
        return rm_fail(err, "out of memory for the sgemm probe");
    }
    for (long i = 0; i < big * widest; i++) {
        a[i] = (float)(i % 251) / 251.0f;
        b[i] = (float)(i % 241) / 241.0f - 0.5f;
    }
    MPI_Barrier(d->comm);
    for (int i = 0; i < m->n_tensors; i++) {
        const rm_param_tensor *t = &m->tensors[i];
        if (!t->matmul)
            continue;
        long in = t->shape[1], o = t->shape[0];
        char what[RM_TENSOR_NAME_CAP + 16];
        snprintf(what, sizeof what, "%s forward", t->name);
        time_gemm(d, what, CblasNoTrans, CblasTrans, n, o, in, a, b, c);
        snprintf(what, sizeof what, "%s weight grad", t->name);
        time_gemm(d, what, CblasTrans, CblasNoTrans, o, in, n, a, b, c);
        if (t->offset > 0) { /* the first layer's input needs no gradient */
            snprintf(what, sizeof what, "%s input grad", t->name);
            time_gemm(d, what, CblasNoTrans, CblasNoTrans, n, in, o, a, b, c);
        }
    }
    free(a);
    free(b);
    free(c);
    return RM_OK;
}

/* The steps' source, as in a worker: the loader thread, handed the
 * assignments of the steps ahead as the coordinator's arrive. */
typedef struct step_feed {
    rm_dataset ds;
    rm_sampler sampler;
    rm_loader ld;
    long *shard_sizes;
    uint32_t *samples;
    long pushed, taken; /* assignments handed to the loader, batches taken from it */
} step_feed;

static void feed_close(step_feed *f)
{
    rm_loader_stop(&f->ld);
    rm_sampler_free(&f->sampler);
    free(f->shard_sizes);
    free(f->samples);
    rm_dataset_close(&f->ds);
}

static int feed_open(doctor *d, step_feed *f, rm_error *err)
{
    memset(f, 0, sizeof *f);
    char dir[2 * RM_PATH_CAP];
    snprintf(dir, sizeof dir, "%s/%s", d->cfg.data_dir, d->cfg.train_split);
    if (rm_dataset_open_context(dir, RM_DATASET_DEFAULT_DECRYPT_BYTES, d->cfg.model_context, &f->ds, err) != RM_OK)
        return RM_ERR;
    f->shard_sizes = malloc((size_t)f->ds.index.n_shards * sizeof *f->shard_sizes);
    f->samples = malloc((size_t)d->local_batch * sizeof *f->samples);
    if (!f->shard_sizes || !f->samples)
        return rm_fail(err, "out of memory");
    for (int s = 0; s < f->ds.index.n_shards; s++)
        f->shard_sizes[s] = f->ds.index.shards[s].samples;
    /* the worker's loader, with the queue depths `ringmaster run` gives it */
    if (rm_sampler_init(&f->sampler, f->shard_sizes, f->ds.index.n_shards, (uint64_t)d->cfg.seed,
                        d->cfg.shuffle_window_shards, err) != RM_OK ||
        rm_loader_start(&f->ld, &f->ds, d->local_batch, (int)d->cfg.prefetch_batches,
                        (int)d->cfg.prefetch_batches + 2, err) != RM_OK)
        return RM_ERR;
    f->ld.throttle_bytes_per_s = d->cfg.debug_loader_throttle_mb_s * 1e6;
    return RM_OK;
}

static int feed_push(doctor *d, step_feed *f, rm_error *err)
{
    while (rm_loader_free_assign_slots(&f->ld) > 0 && f->pushed - f->taken < f->ld.n_assign) {
        rm_msg_assign a = {.step = f->pushed,
                           .position = rm_order_slice_start(f->pushed, d->cfg.global_batch, d->rank, d->ranks),
                           .count = (int32_t)d->local_batch};
        if (rm_sampler_fill(&f->sampler, a.position, a.count, f->samples, err) != RM_OK ||
            rm_loader_push(&f->ld, &a, f->samples, err) != RM_OK)
            return RM_ERR;
        f->pushed++;
    }
    return RM_OK;
}

/* The phases of a step, as a worker's report cuts them. */
enum { PHASE_DATA_WAIT, PHASE_COMPUTE, PHASE_REDUCE, PHASE_OPTIMIZER, PHASE_GATHER, PHASES };

/* One step of the worker's loop (worker/worker_main.c: train), timed the
 * same way: from asking the loader for the batch to the end of the update,
 * the report to the coordinator excluded. The backend's own figures cut it
 * into phases (on the GPU compute_s runs until the device finishes
 * backward); every other moment of it is a wait on the peers and counts to
 * the reduction, as in a run's report (shm: the barrier after the update).
 * The tiny lr keeps the weights from drifting into nonsense. */
static int one_step(doctor *d, rm_backend *backend, step_feed *f, double phase[PHASES], rm_error *err)
{
    const rm_model *m = &d->model;
    if (feed_push(d, f, err) != RM_OK)
        return RM_ERR;
    double t0 = rm_now_s();
    rm_batch *b;
    if (rm_loader_next(&f->ld, &b, err) != RM_OK)
        return RM_ERR;
    double t1 = rm_now_s();
    rm_step_stats stats = {0};
    if (backend->backward(backend, b->input, b->target, b->assign.count,
                          1.0f / (float)(d->cfg.global_batch * m->positions), 0, &stats, err) != RM_OK)
        return RM_ERR;
    rm_batch *next;
    if (backend->prefetch && rm_loader_peek(&f->ld, &next) &&
        backend->prefetch(backend, next->input, next->target, next->assign.count, err) != RM_OK)
        return RM_ERR;
    char msg[sizeof(rm_msg_report) + 64] = {0};
    RM_MPI_CHECK(MPI_Send(msg, sizeof(rm_msg_progress), MPI_BYTE, 0, TAG_PROGRESS, MPI_COMM_WORLD), err);
    if (backend->reduce(backend, &stats, err) != RM_OK || backend->update(backend, 1e-9, &stats, err) != RM_OK)
        return RM_ERR;
    double t3 = rm_now_s();
    rm_loader_release(&f->ld);
    f->taken++;
    RM_MPI_CHECK(MPI_Send(msg, sizeof(rm_msg_report), MPI_BYTE, 0, TAG_REPORT, MPI_COMM_WORLD), err);
    d->reports_sent++;
    if (drain_assignments(d, 0, err) != RM_OK)
        return RM_ERR;
    phase[PHASE_DATA_WAIT] = t1 - t0;
    phase[PHASE_COMPUTE] = stats.compute_s;
    phase[PHASE_OPTIMIZER] = stats.optimizer_s;
    phase[PHASE_GATHER] = stats.gather_s;
    phase[PHASE_REDUCE] = (t3 - t1) - stats.compute_s - stats.optimizer_s - stats.gather_s;
    return RM_OK;
}

/* The backend's gradient reduction on its own, after a barrier: what the
 * transport takes without waiting for a slower rank. (The gradient is
 * summed again and again; its values do not matter here.) */
static int probe_reduce_alone(doctor *d, rm_backend *backend, rm_error *err)
{
    if (d->ranks == 1)
        return RM_OK; /* nothing to reduce */
    rm_step_stats stats = {0};
    long reps = 0;
    double t = 0, stage_sum[RM_DOCTOR_MAX_STAGES] = {0};
    for (int warm = 0; warm < 3; warm++)
        if (backend->reduce(backend, &stats, err) != RM_OK)
            return RM_ERR;
    /* the stages as the backend times them, this rank's own */
    int stages = stats.n_stages > 1 ? (stats.n_stages < RM_DOCTOR_MAX_STAGES ? stats.n_stages : RM_DOCTOR_MAX_STAGES)
                                    : 0;
    /* Every rank runs the same number: t is the same maximum on every one. */
    while (reps < 5 || (t < PROBE_S && reps < 2000)) {
        RM_MPI_CHECK(MPI_Barrier(d->comm), err);
        double t0 = rm_now_s();
        if (backend->reduce(backend, &stats, err) != RM_OK)
            return RM_ERR;
        double dt = rm_now_s() - t0;
        for (int k = 0; k < stages; k++)
            stage_sum[k] += stats.stage_s[k];
        RM_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &dt, 1, MPI_DOUBLE, MPI_MAX, d->comm), err);
        t += dt;
        reps++;
    }
    d->me.allreduce_s = t / (double)reps;
    d->me.n_stages = stages;
    for (int k = 0; k < stages; k++) {
        snprintf(d->me.stage_name[k], sizeof d->me.stage_name[k], "%s", stats.stage_name[k]);
        d->me.stage_s[k] = stage_sum[k] / (double)reps;
    }
    double bytes = (double)d->model.n_params * sizeof(float);
    d->me.allreduce_algbw_gb_s = bytes / d->me.allreduce_s / 1e9;
    /* the nccl-tests definitions: all-reduce moves 2(n-1)/n of the
     * buffer per rank, reduce-scatter (n-1)/n */
    double moved = strstr(d->me.reduce, "zero") ? (double)(d->ranks - 1) / d->ranks
                                                : 2.0 * (d->ranks - 1) / d->ranks;
    d->me.allreduce_busbw_gb_s = d->me.allreduce_algbw_gb_s * moved;
    return RM_OK;
}

/* The worker's step loop through the job's backend and loader, with the
 * coordinator's stand-in hearing each step's messages: first WARM_STEPS
 * untimed, then as many as fill SEQUENCE_S (the same number on every
 * rank, agreed once, so that no collective of the doctor's own runs
 * between the steps), each cut into phases; the means per step are the
 * prediction's terms. Means, not medians, because a run's samples/s is a
 * mean: the slow steps (a page fault, a neighbour's burst, the other
 * rank's turn on a shared core) count in it. */
static int probe_step(doctor *d, rm_error *err)
{
    const rm_model *m = &d->model;
    long n = d->local_batch;
    step_feed feed;
    rm_backend *backend = NULL;
    int rc = RM_ERR;
    if (feed_open(d, &feed, err) != RM_OK)
        goto out;
    if (!(backend = rm_backend_create(m, &d->cfg, n, d->comm, NULL, NULL, 0, err)))
        goto out;
    snprintf(d->me.reduce, sizeof d->me.reduce, "%s%s", rm_transport_name(backend->transport),
             backend->sharded ? " zero-1" : "");
    d->me.gpu = backend->kind == RM_BACKEND_GPU;
    if (backend->pin_host) /* as the worker pins its loader's batches */
        for (int i = 0; i < feed.ld.n_slots; i++)
            backend->pin_host(backend, feed.ld.slots[i].input, (size_t)n * (size_t)m->input_bytes);
    if (d->me.gpu) {
        /* the batch as the loader hands it over */
        size_t bytes = (size_t)n * (size_t)m->input_bytes;
        if (rm_gpu_h2d_rate(bytes, &d->me.h2d_gb_s, err) != RM_OK)
            goto out;
        d->me.h2d_batch_s = d->me.h2d_gb_s > 0 ? (double)bytes / (d->me.h2d_gb_s * 1e9) : 0;
    }
    double phase[PHASES];
    MPI_Barrier(d->comm);
    double warm_t0 = 0;
    for (int i = 0; i < WARM_STEPS; i++) {
        if (i == WARM_STEPS - 2)
            warm_t0 = rm_now_s();
        if (one_step(d, backend, &feed, phase, err) != RM_OK)
            goto out;
    }
    double warm_step_s = (rm_now_s() - warm_t0) / 2;
    RM_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &warm_step_s, 1, MPI_DOUBLE, MPI_MAX, d->comm), err);
    long steps = warm_step_s > 0 ? (long)ceil(SEQUENCE_S / warm_step_s) : MAX_SEQUENCE_STEPS;
    steps = steps < MIN_SEQUENCE_STEPS ? MIN_SEQUENCE_STEPS : steps > MAX_SEQUENCE_STEPS ? MAX_SEQUENCE_STEPS : steps;
    double sum[PHASES] = {0};
    for (long i = 0; i < steps; i++) {
        if (one_step(d, backend, &feed, phase, err) != RM_OK)
            goto out;
        for (int k = 0; k < PHASES; k++)
            sum[k] += phase[k];
    }
    d->me.sequence_steps = steps;
    d->me.data_wait_s = sum[PHASE_DATA_WAIT] / (double)steps;
    d->me.compute_s = sum[PHASE_COMPUTE] / (double)steps;
    d->me.step_allreduce_s = sum[PHASE_REDUCE] / (double)steps;
    d->me.optimizer_s = sum[PHASE_OPTIMIZER] / (double)steps;
    d->me.step_gather_s = sum[PHASE_GATHER] / (double)steps;
    d->me.step_s = d->me.data_wait_s + d->me.compute_s + d->me.step_allreduce_s + d->me.optimizer_s +
                   d->me.step_gather_s;
    rc = probe_reduce_alone(d, backend, err);
out:
    if (backend) /* before the loader: it may hold the loader's pinned pages */
        backend->destroy(backend);
    feed_close(&feed);
    return rc;
}

static int run(doctor *d, const char *out_path, rm_error *err)
{
    /* The step before the sgemms: it settles the backend. On the GPU the host's sgemm
     * says nothing about the job (and at wide layers takes minutes), so
     * the GPU's own products are the step's. */
    if (probe_storage(d, err) != RM_OK || probe_loader(d, err) != RM_OK || probe_memory(d, err) != RM_OK ||
        probe_step(d, err) != RM_OK || (!d->me.gpu && probe_gemms(d, err) != RM_OK))
        return RM_ERR;
    rm_doctor_rank *all = d->rank == 0 ? calloc((size_t)d->ranks, sizeof *all) : NULL;
    if (d->rank == 0 && !all)
        return rm_fail(err, "out of memory");
    if (drain_assignments(d, 1, err) != RM_OK)
        return RM_ERR;
    char done = 1;
    RM_MPI_CHECK(MPI_Send(&done, 1, MPI_BYTE, 0, TAG_DONE, MPI_COMM_WORLD), err);
    RM_MPI_CHECK(MPI_Gather(&d->me, sizeof d->me, MPI_BYTE, all, sizeof d->me, MPI_BYTE, 0, d->comm), err);
    if (d->rank != 0)
        return RM_OK;
    rm_doctor_prediction p;
    rm_doctor_predict(&d->cfg, all, d->ranks, &p);
    rm_doctor_print(stdout, &d->cfg, &d->model, all, d->ranks, &p);
    fflush(stdout);
    if (!out_path) { /* the report goes only where it was asked for */
        free(all);
        return RM_OK;
    }
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    int rc = RM_ERR;
    if (f) {
        rm_doctor_write_json(f, &d->cfg, &d->model, all, d->ranks, &p);
        fclose(f);
        rc = rm_write_file_atomic(out_path, text, len, err);
        if (rc == RM_OK)
            printf("report: %s\n", out_path);
    } else {
        rm_fail(err, "out of memory");
    }
    fflush(stdout);
    free(text);
    free(all);
    return rc;
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    static doctor d;
    int world_rank, world_size;
    MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world_size);
    MPI_Comm_split(MPI_COMM_WORLD, world_rank == 0 ? MPI_UNDEFINED : 1, world_rank, &d.comm);
    d.rank = world_rank - 1;
    d.ranks = world_size - 1;
    char role[32];
    if (world_rank == 0)
        snprintf(role, sizeof role, "doctor (coordinator)");
    else
        snprintf(role, sizeof role, "doctor %d", d.rank);
    rm_log_set_identity(role);
    const char *config_path = NULL, *out_path = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--out") == 0 && i + 1 < argc)
            out_path = argv[++i];
        else if (!config_path && argv[i][0] != '-')
            config_path = argv[i];
    }
    rm_error err;
    int rc = RM_OK;
    if (!config_path) {
        rc = rm_fail(&err, "usage: ringmaster-doctor CONFIG [--out JSON] (started by `ringmaster doctor`)");
    } else if (rm_config_load(config_path, NULL, 0, &d.cfg, &d.facts, &err) != RM_OK) {
        rc = RM_ERR;
    } else if (d.cfg.workers != d.ranks) {
        rc = rm_fail(&err, "started with %d worker ranks but launch.workers is %ld", d.ranks, d.cfg.workers);
    } else if (world_rank == 0) {
        rc = stand_in(&d, d.ranks, &err);
    } else {
        d.local_batch = d.cfg.global_batch / d.ranks;
        if (rm_model_init(&d.model, &d.cfg, &d.facts, &err) != RM_OK) {
            rm_error_log("%s", err.msg);
            MPI_Abort(MPI_COMM_WORLD, 1);
            return 1;
        }
        d.me.rank = d.rank;
        snprintf(d.me.host, sizeof d.me.host, "%s", rm_log_host());
        openblas_set_num_threads((int)d.cfg.threads_per_worker);
        rc = run(&d, out_path, &err);
    }
    if (rc != RM_OK) {
        /* One rank's failure must not leave the others in a collective. */
        rm_error_log("%s", err.msg);
        MPI_Abort(MPI_COMM_WORLD, 1);
        return 1;
    }
    if (d.comm != MPI_COMM_NULL)
        MPI_Comm_free(&d.comm);
    MPI_Finalize();
    return 0;
}
