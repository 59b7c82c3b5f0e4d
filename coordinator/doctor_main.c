/* ringmaster-doctor: one MPI rank per worker of the job, each measuring
 * the pipes its worker will use, at the same time as the others (so that
 * ranks sharing a host share its disk, memory and cores as in training).
 * Rank 0 gathers the figures, prints the table and writes the JSON.
 *
 *   storage    the train split's shard files, read with read(2): cold
 *              (page cache dropped with posix_fadvise DONTNEED first) and
 *              warm; then the loader thread itself at the job's batch
 *   memory     a triad over arrays much larger than the caches
 *   compute    every sgemm of forward and backward at the model's shapes
 *              for one local batch
 *   step       the job's backend: forward + backward, the gradient
 *              reduction (under ZeRO-1 a reduce-scatter), the optimizer and
 *              ZeRO-1's parameter all-gather, in the step's order, each timed
 *   all-reduce the gradient alone, bucketed as in training: algbw, busbw
 *
 * Rank 0 stands in for the coordinator (it sleeps, takes the workers'
 * per-step messages and answers them, as the coordinator would), so that
 * the workers share the machine as they will in training. Started by
 * `ringmaster doctor` as
 *   mpirun -np N+1 ringmaster-doctor CONFIG --out JSON */
#include "doctor.h"

#include "protocol.h"

#include "grad_sync.h"
#include "grad_sync_mpi.h"
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
#define SEQUENCE_S 1.5                  /* the step sequence: long enough for a steady median */
#define MAX_SEQUENCE_STEPS 20000

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
    rm_sampler sampler;
    memset(&sampler, 0, sizeof sampler);
    rm_loader ld;
    memset(&ld, 0, sizeof ld);
    int rc = RM_ERR;
    if (!sizes || !samples) {
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
    double t0 = rm_now_s();
    long done = 0, pushed = 0;
    while (done < 1000 && (done < 8 || rm_now_s() - t0 < PROBE_S)) {
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
        done++;
    }
    d->me.loader_batch_s = (rm_now_s() - t0) / (double)done;
    d->me.loader_samples_per_s = (double)d->local_batch / d->me.loader_batch_s;
    rc = RM_OK;
out:
    rm_loader_stop(&ld);
    rm_sampler_free(&sampler);
    free(sizes);
    free(samples);
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

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median of column `col` of an n x 3 table. */
/* compute, reduction, optimizer, ZeRO-1's all-gather */
#define STEP_COLUMNS 4

static double median_of(const double *table, long n, int col)
{
    double *v = malloc((size_t)n * sizeof *v);
    if (!v)
        return 0;
    for (long i = 0; i < n; i++)
        v[i] = table[STEP_COLUMNS * i + col];
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    double m = n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
    free(v);
    return m;
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

/* A batch of the model's record with deterministic contents: pixel-like
 * floats and labels, or token ids inside the vocabulary. */
static void synthetic_batch(const rm_model *m, long n, void *input, void *target)
{
    if (m->data_format == RM_DATA_TOKENS) {
        int32_t *in = input, *tg = target;
        for (long i = 0; i < n * m->context; i++) {
            in[i] = (int32_t)((i * 2654435761u) % (unsigned long)m->vocab);
            tg[i] = (int32_t)((i * 40503u + 7) % (unsigned long)m->vocab);
        }
        return;
    }
    long dim = m->input_bytes / (long)sizeof(float);
    float *x = input;
    uint8_t *labels = target;
    for (long i = 0; i < n * dim; i++)
        x[i] = (float)((i * 2654435761u) % 256) / 255.0f;
    for (long i = 0; i < n; i++)
        labels[i] = (uint8_t)(i % m->vocab);
}

/* The training step itself, through the job's backend (the same code, the
 * same way of summing gradients as training will choose), step after step:
 * forward + backward (starting the gradient reduction as it goes), the
 * wait for the reduction, the optimizer, each timed; the coordinator
 * stand-in hears each step's messages as in training. Measured in sequence
 * rather than each part in a tight loop of its own, because the
 * optimizer's pass over every parameter and moment evicts the caches that
 * forward and backward would otherwise find warm, and the reduction
 * absorbs the ranks' skew as in training. The tiny lr keeps the weights
 * from drifting into nonsense. */
static int probe_step(doctor *d, rm_error *err)
{
    const rm_model *m = &d->model;
    long n = d->local_batch;
    void *x = malloc((size_t)n * (size_t)m->input_bytes);
    void *labels = malloc((size_t)n * (size_t)m->target_bytes);
    double *times = malloc(STEP_COLUMNS * MAX_SEQUENCE_STEPS * sizeof(double));
    rm_backend *backend = NULL;
    int rc = RM_ERR;
    if (!x || !labels || !times) {
        rm_fail(err, "out of memory for the step probe");
        goto out;
    }
    synthetic_batch(m, n, x, labels);
    if (!(backend = rm_backend_create(m, &d->cfg, n, d->comm, NULL, NULL, 0, err)))
        goto out;
    d->me.gpu = backend->kind == RM_BACKEND_GPU;
    if (d->me.gpu) {
        /* the batch as the loader hands it over */
        size_t bytes = (size_t)n * (size_t)m->input_bytes;
        if (rm_gpu_h2d_rate(bytes, &d->me.h2d_gb_s, err) != RM_OK)
            goto out;
        d->me.h2d_batch_s = d->me.h2d_gb_s > 0 ? (double)bytes / (d->me.h2d_gb_s * 1e9) : 0;
    }
    long reps = 0;
    int more = 1;
    char msg[sizeof(rm_msg_report) + 64] = {0};
    MPI_Barrier(d->comm);
    double t_start = rm_now_s();
    for (long warm = 3; more; warm--) {
        rm_step_stats stats = {0};
        double t0 = rm_now_s();
        if (backend->backward(backend, x, labels, n, 1.0f / (float)(d->cfg.global_batch * m->positions), 0, &stats,
                              err) != RM_OK)
            goto out;
        double t1 = rm_now_s();
        RM_MPI_CHECK(MPI_Send(msg, sizeof(rm_msg_progress), MPI_BYTE, 0, TAG_PROGRESS, MPI_COMM_WORLD), err);
        if (backend->reduce(backend, &stats, err) != RM_OK)
            goto out;
        double t2 = rm_now_s();
        if (backend->update(backend, 1e-9, &stats, err) != RM_OK)
            goto out;
        /* A worker's step time ends here, before its report (which is what
         * a run's samples/s counts). */
        double t3 = rm_now_s();
        RM_MPI_CHECK(MPI_Send(msg, sizeof(rm_msg_report), MPI_BYTE, 0, TAG_REPORT, MPI_COMM_WORLD), err);
        d->reports_sent++;
        if (drain_assignments(d, 0, err) != RM_OK)
            goto out;
        if (warm <= 0) {
            double *row = times + STEP_COLUMNS * reps;
            row[0] = t1 - t0;
            row[1] = t2 - t1;
            row[2] = t3 - t2 - stats.gather_s; /* update holds ZeRO-1's all-gather */
            row[3] = stats.gather_s;
            reps++;
        }
        /* Every rank runs the same number of steps: rank 0 decides. */
        more = reps < 10 || (rm_now_s() - t_start < SEQUENCE_S && reps < MAX_SEQUENCE_STEPS);
        MPI_Bcast(&more, 1, MPI_INT, 0, d->comm);
    }
    /* Medians: a burst of someone else's load during the short probe
     * should not decide the prediction for a whole run. */
    d->me.compute_s = median_of(times, reps, 0);
    d->me.step_allreduce_s = d->ranks > 1 ? median_of(times, reps, 1) : 0;
    d->me.optimizer_s = median_of(times, reps, 2);
    d->me.step_gather_s = median_of(times, reps, 3);
    rc = RM_OK;
out:
    if (backend)
        backend->destroy(backend);
    free(x);
    free(labels);
    free(times);
    return rc;
}

/* The whole gradient, in the job's buckets, as the CPU backend reduces it. */
static int probe_allreduce(doctor *d, rm_error *err)
{
    if (d->ranks == 1)
        return RM_OK; /* nothing to reduce */
    long np = d->model.n_params;
    float *grads = malloc((size_t)np * sizeof(float));
    if (!grads)
        return rm_fail(err, "out of memory for the all-reduce probe");
    for (long i = 0; i < np; i++)
        grads[i] = 1.0f;
    long bucket_floats = (long)(d->cfg.bucket_mb * 1024.0 * 1024.0 / sizeof(float));
    if (bucket_floats < 1)
        bucket_floats = 1;
    rm_grad_sync_mpi mpi;
    rm_grad_sync ar;
    memset(&ar, 0, sizeof ar);
    if (rm_grad_sync_mpi_init(&mpi, d->comm, grads, (int)((np + bucket_floats - 1) / bucket_floats), err) != RM_OK) {
        free(grads);
        return RM_ERR;
    }
    rm_grad_transport tp = rm_grad_sync_mpi_transport(&mpi);
    if (rm_grad_sync_init(&ar, np, bucket_floats, d->rank, &tp, err) != RM_OK) {
        rm_grad_sync_mpi_free(&mpi);
        free(grads);
        return RM_ERR;
    }
    int rc = RM_OK;
    long reps = 0;
    double t = 0;
    for (int warm = 0; warm < 3 && rc == RM_OK; warm++)
        rc = rm_grad_sync_finish(&ar, err);
    /* Every rank runs the same number of reductions: rank 0 decides. */
    while (rc == RM_OK) {
        MPI_Barrier(d->comm);
        double t0 = rm_now_s();
        if (rm_grad_sync_finish(&ar, err) != RM_OK) {
            rc = RM_ERR;
            break;
        }
        double dt = rm_now_s() - t0;
        MPI_Allreduce(MPI_IN_PLACE, &dt, 1, MPI_DOUBLE, MPI_MAX, d->comm);
        t += dt;
        reps++;
        int more = reps < 5 || (t < PROBE_S && reps < 2000);
        MPI_Bcast(&more, 1, MPI_INT, 0, d->comm);
        if (!more)
            break;
    }
    rm_grad_sync_free(&ar);
    rm_grad_sync_mpi_free(&mpi);
    free(grads);
    if (rc != RM_OK)
        return RM_ERR;
    d->me.allreduce_s = t / (double)reps;
    double bytes = (double)np * sizeof(float);
    d->me.allreduce_algbw_gb_s = bytes / d->me.allreduce_s / 1e9;
    d->me.allreduce_busbw_gb_s = d->me.allreduce_algbw_gb_s * 2.0 * (d->ranks - 1) / d->ranks;
    return RM_OK;
}

static int run(doctor *d, const char *out_path, rm_error *err)
{
    /* The step first: it settles the backend. On the GPU the host's sgemm
     * says nothing about the job (and at wide layers takes minutes), so
     * the GPU's own products are the step's. */
    if (probe_storage(d, err) != RM_OK || probe_loader(d, err) != RM_OK || probe_memory(d, err) != RM_OK ||
        probe_step(d, err) != RM_OK || (!d->me.gpu && probe_gemms(d, err) != RM_OK) ||
        probe_allreduce(d, err) != RM_OK)
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
    if (!config_path || !out_path) {
        rc = rm_fail(&err, "usage: ringmaster-doctor CONFIG --out JSON (started by `ringmaster doctor`)");
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
