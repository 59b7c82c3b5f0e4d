/* ringmaster-worker: one data-parallel training rank. MPI rank r >= 1 is
 * worker r-1; rank 0 is the coordinator. */
#include "backend.h"
#include "checkpoint.h"
#include "ckpt_writer.h"
#include "config.h"
#include "crypto.h"
#include "exit_codes.h"
#include "hash.h"
#include "loader.h"
#include "log.h"
#include "model.h"
#include "mpi_check.h"
#include "protocol.h"
#include "sgemm_probe.h"
#include "shard.h"
#include "rng.h"
#include "timer.h"
#include "trace.h"

#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define EVAL_CHUNK 1024L

typedef struct worker {
    int worker, workers;
    MPI_Comm comm; /* the workers only */
    rm_config cfg;
    rm_dataset_facts facts;
    rm_dataset train, eval;
    rm_model model;
    rm_backend *backend;
    rm_loader loader;
    rm_ckpt_writer writer;
    char ckpt_root[RM_DIR_CAP];
    long generation; /* the job's checkpoint generation, from the coordinator */
    long snapshot_opt_steps; /* optimizer updates in the snapshot being written */
    long snapshot_pending;   /* steps done in a snapshot still being copied (0: none) */
    long local_batch;
    long eval_chunk; /* samples per evaluate call */
    long input_bytes, target_bytes; /* per sample in a batch */
    uint32_t *assign_buf; /* receive buffer: header + samples */
    size_t assign_buf_bytes;
    void *eval_input, *eval_target;
    long step; /* step in progress, for messages */
    rm_trace trace;            /* observe.trace_steps */
    double ckpt_submit_s;      /* when the checkpoint being written was handed over */
    int ckpt_traced;           /* ... and whether it belongs on the timeline */
} worker;

/* Ends the whole job: tell the coordinator why (so it can record it and
 * stop every rank), and abort ourselves if it has not done so shortly. */
static void worker_fatal_code(worker *w, const char *reason, int code)
{
    rm_error_log("step %ld: %s", w->step, reason);
    rm_msg_fatal msg = {.step = w->step, .pid = (int32_t)getpid(), .follows = -1};
    snprintf(msg.host, sizeof msg.host, "%s", rm_log_host());
    snprintf(msg.reason, sizeof msg.reason, "%s", reason);
    MPI_Request req;
    if (MPI_Isend(&msg, sizeof msg, MPI_BYTE, 0, RM_TAG_FATAL, MPI_COMM_WORLD, &req) == MPI_SUCCESS) {
        double deadline = rm_now_s() + 3.0;
        int done = 0;
        while (!done && rm_now_s() < deadline) {
            MPI_Test(&req, &done, MPI_STATUS_IGNORE);
            usleep(1000);
        }
    }
    MPI_Abort(MPI_COMM_WORLD, code);
    exit(code);
}

static void worker_fatal(worker *w, const char *reason)
{
    worker_fatal_code(w, reason, RM_EXIT_FAILED);
}

static int weights_digest(worker *w, uint64_t *digest, rm_error *err)
{
    float *host = malloc((size_t)w->model.n_params * sizeof(float));
    if (!host)
        return rm_fail(err, "out of memory");
    int rc = w->backend->read_params(w->backend, host, err);
    if (rc == RM_OK)
        *digest = rm_hash64(host, (size_t)w->model.n_params * sizeof(float));
    free(host);
    return rc;
}

/* Waits for a message with `tag` from the coordinator, but not forever: a
 * coordinator silent for timeout_s is as good as dead. */
static int wait_for(worker *w, int tag, double timeout_s, MPI_Status *st, rm_error *err)
{
    double deadline = rm_now_s() + timeout_s;
    for (int spins = 0;; spins++) {
        int flag;
        RM_MPI_CHECK(MPI_Iprobe(0, tag, MPI_COMM_WORLD, &flag, st), err);
        if (flag)
            return RM_OK;
        if (rm_now_s() > deadline)
            return rm_fail(err, "the coordinator sent nothing for %.0f s (fault.hang_timeout_s): giving up", timeout_s);
        if (spins > 1000)
            usleep(200);
    }
}

/* Receives one assignment (blocking when `block`) and hands it to the
 * loader. Sets *got when one arrived. */
static int receive_assignment(worker *w, int block, int *got, rm_error *err)
{
    int flag = 0;
    MPI_Status st;
    *got = 0;
    if (!block) {
        RM_MPI_CHECK(MPI_Iprobe(0, RM_TAG_ASSIGN, MPI_COMM_WORLD, &flag, &st), err);
        if (!flag)
            return RM_OK;
    } else if (wait_for(w, RM_TAG_ASSIGN, w->cfg.hang_timeout_s, &st, err) != RM_OK) {
        return RM_ERR;
    }
    int bytes;
    RM_MPI_CHECK(MPI_Get_count(&st, MPI_BYTE, &bytes), err);
    if (bytes < (int)sizeof(rm_msg_assign) || (size_t)bytes > w->assign_buf_bytes)
        return rm_fail(err, "malformed assignment from the coordinator (%d bytes)", bytes);
    RM_MPI_CHECK(MPI_Recv(w->assign_buf, bytes, MPI_BYTE, 0, RM_TAG_ASSIGN, MPI_COMM_WORLD, MPI_STATUS_IGNORE), err);
    rm_msg_assign a;
    memcpy(&a, w->assign_buf, sizeof a);
    if (a.count < 0 || (size_t)bytes != sizeof a + (size_t)a.count * sizeof(uint32_t))
        return rm_fail(err, "malformed assignment for step %ld", (long)a.step);
    *got = 1;
    return rm_loader_push(&w->loader, &a, (const uint32_t *)((const char *)w->assign_buf + sizeof a), err);
}

/* Samples evaluated: the whole split, or for a model with several
 * predictions per sample at most train.eval_tokens of them (at least one
 * sample). The same on every worker. */
static long eval_samples(const worker *w)
{
    long m = w->eval.index.samples;
    if (w->model.positions > 1 && w->cfg.eval_tokens > 0) {
        long cap = w->cfg.eval_tokens / w->model.positions;
        if (cap < 1)
            cap = 1;
        if (cap < m)
            m = cap;
    }
    return m;
}

static int heartbeat(void *ctx, rm_error *err);

/* Evaluates this worker's contiguous part of the evaluated samples,
 * heartbeating between chunks: a long evaluation (a language model's, on
 * a busy machine) is work, not a hang. */
static int evaluate(worker *w, long step, rm_error *err)
{
    double t0 = rm_now_s(), last_beat = t0;
    rm_msg_eval_result res = {.step = step};
    long m = eval_samples(w);
    long begin = m * w->worker / w->workers, end = m * (w->worker + 1) / w->workers;
    for (long at = begin; at < end; at += w->eval_chunk) {
        long n = end - at < w->eval_chunk ? end - at : w->eval_chunk;
        for (long i = 0; i < n; i++)
            if (rm_sample_decode(&w->eval, at + i, (uint8_t *)w->eval_input + (size_t)i * (size_t)w->input_bytes,
                                 (uint8_t *)w->eval_target + (size_t)i * (size_t)w->target_bytes, err) != RM_OK)
                return RM_ERR;
        double loss;
        long correct;
        if (w->backend->evaluate(w->backend, w->eval_input, w->eval_target, n, &loss, &correct, err) != RM_OK)
            return RM_ERR;
        res.loss_sum += loss;
        res.correct += correct;
        res.count += n;
        if (rm_now_s() - last_beat > w->cfg.hang_timeout_s / 4) {
            last_beat = rm_now_s();
            if (heartbeat(w, err) != RM_OK)
                return RM_ERR;
        }
    }
    res.eval_s = rm_now_s() - t0;
    RM_MPI_CHECK(MPI_Send(&res, sizeof res, MPI_BYTE, 0, RM_TAG_EVAL_RESULT, MPI_COMM_WORLD), err);
    return RM_OK;
}

/* While waiting for gradients: "still here, in the all-reduce of this
 * step", so the coordinator names the rank that went silent, not the ones
 * waiting for it. */
static int heartbeat(void *ctx, rm_error *err)
{
    worker *w = ctx;
    rm_msg_progress progress = {.step = w->step};
    RM_MPI_CHECK(MPI_Send(&progress, sizeof progress, MPI_BYTE, 0, RM_TAG_PROGRESS, MPI_COMM_WORLD), err);
    return RM_OK;
}

/* The part of setup that needs no other worker: config and datasets. */
static int setup_local(worker *w, const char *config_path, char *const *sets, int n_sets, rm_error *err)
{
    if (rm_config_load(config_path, sets, n_sets, &w->cfg, &w->facts, err) != RM_OK ||
        rm_security_load(w->cfg.key_file, err) != RM_OK)
        return RM_ERR;
    if (w->cfg.workers != w->workers)
        return rm_fail(err, "the job was launched with %d worker ranks but launch.workers is %ld", w->workers,
                       w->cfg.workers);
    char dir[2 * RM_PATH_CAP];
    snprintf(dir, sizeof dir, "%s/%s", w->cfg.data_dir, w->cfg.train_split);
    uint64_t decrypt_budget = (uint64_t)w->cfg.decrypt_cache_mb << 20;
    if (rm_dataset_open_context(dir, decrypt_budget, w->cfg.model_context, &w->train, err) != RM_OK)
        return RM_ERR;
    if (w->cfg.eval_split[0]) {
        snprintf(dir, sizeof dir, "%s/%s", w->cfg.data_dir, w->cfg.eval_split);
        if (rm_dataset_open_context(dir, decrypt_budget, w->cfg.model_context, &w->eval, err) != RM_OK)
            return RM_ERR;
    }
    return rm_model_init(&w->model, &w->cfg, &w->facts, err);
}

/* Backends may need collectives to start (choosing a device together,
 * NCCL), so the workers first agree that every one of them got this far:
 * a worker that failed alone would otherwise leave the rest blocked. A
 * worker stopping for another sets *follows to it. */
static int setup(worker *w, const char *config_path, char *const *sets, int n_sets, int *follows, rm_error *err)
{
    *follows = -1;
    int rc = setup_local(w, config_path, sets, n_sets, err);
    int mine = rc == RM_OK ? INT_MAX : w->worker, first = INT_MAX;
    RM_MPI_CHECK(MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, w->comm), err);
    if (rc != RM_OK)
        return RM_ERR;
    if (first != INT_MAX) {
        *follows = first;
        return rm_fail(err, "stopped because worker %d could not set up", first);
    }
    w->local_batch = w->cfg.global_batch / w->workers;
    /* One prediction per sample: evaluate in large chunks. Many (a
     * sequence): a chunk is one training micro-step, whose activations the
     * backend holds anyway. */
    long micro = w->local_batch / w->cfg.grad_accum;
    w->eval_chunk = w->model.positions > 1 ? micro : EVAL_CHUNK;
    long max_batch = w->local_batch > w->eval_chunk ? w->local_batch : w->eval_chunk;
    w->backend = rm_backend_create(&w->model, &w->cfg, max_batch, w->comm, heartbeat, w, w->cfg.hang_timeout_s / 4,
                                   err);
    if (!w->backend)
        return RM_ERR;
    w->input_bytes = w->model.input_bytes;
    w->target_bytes = w->model.target_bytes;
    w->assign_buf_bytes = sizeof(rm_msg_assign) + (size_t)w->local_batch * sizeof(uint32_t);
    w->assign_buf = malloc(w->assign_buf_bytes);
    w->eval_input = malloc((size_t)w->eval_chunk * (size_t)w->input_bytes);
    w->eval_target = malloc((size_t)w->eval_chunk * (size_t)w->target_bytes);
    if (!w->assign_buf || !w->eval_input || !w->eval_target)
        return rm_fail(err, "out of memory");
    return RM_OK;
}

static int handshake(worker *w, rm_msg_start *start, rm_error *err)
{
    rm_msg_hello hello = {
        .protocol_version = RM_PROTOCOL_VERSION,
        .worker = w->worker,
        .pid = (int32_t)getpid(),
        .backend = w->backend->kind,
        .transport = w->backend->transport,
        .config_hash = rm_config_hash(&w->cfg),
        .param_count = w->model.n_params,
        /* the host's products set the bound only where they run */
        .peak_flops = w->backend->kind == RM_BACKEND_CPU ? rm_sgemm_peak_flops(0.2) : 0,
        .optimizer_state_bytes = (int64_t)w->backend->optimizer_state_bytes,
        .memory_bytes = (int64_t)w->backend->memory_bytes,
    };
    snprintf(hello.host, sizeof hello.host, "%s", rm_log_host());
    if (weights_digest(w, &hello.init_digest, err) != RM_OK)
        return RM_ERR;
    RM_MPI_CHECK(MPI_Send(&hello, sizeof hello, MPI_BYTE, 0, RM_TAG_HELLO, MPI_COMM_WORLD), err);
    MPI_Status st;
    /* The coordinator verifies the checkpoint before answering. */
    if (wait_for(w, RM_TAG_START, w->cfg.hang_timeout_s + 300.0, &st, err) != RM_OK)
        return RM_ERR;
    RM_MPI_CHECK(MPI_Recv(start, sizeof *start, MPI_BYTE, 0, RM_TAG_START, MPI_COMM_WORLD, MPI_STATUS_IGNORE), err);
    start->resume_dir[sizeof start->resume_dir - 1] = '\0';
    start->ckpt_root[sizeof start->ckpt_root - 1] = '\0';
    return RM_OK;
}

/* Loads the whole state from a committed checkpoint (every worker reads
 * every file, so any worker count can resume any checkpoint). */
static int resume(worker *w, const char *dir, rm_error *err)
{
    rm_ckpt_manifest m;
    if (rm_ckpt_manifest_read(dir, &m, err) != RM_OK)
        return RM_ERR;
    int rc = RM_ERR;
    float *state[3] = {NULL, NULL, NULL};
    if (m.n_params != w->model.n_params || m.n_state != w->backend->n_state) {
        rm_fail(err, "%s: holds %ld parameters x %d tensors, this job needs %ld x %d", dir, m.n_params, m.n_state,
                w->model.n_params, w->backend->n_state);
        goto out;
    }
    for (int k = 0; k < m.n_state; k++)
        if (!(state[k] = malloc((size_t)m.n_params * sizeof(float)))) {
            rm_fail(err, "out of memory loading %s", dir);
            goto out;
        }
    if (rm_ckpt_load(dir, &m, state, err) != RM_OK ||
        w->backend->restore(w->backend, (const float *const *)state, m.opt_steps, err) != RM_OK)
        goto out;
    rc = RM_OK;
out:
    for (int k = 0; k < 3; k++)
        free(state[k]);
    rm_ckpt_manifest_free(&m);
    return rc;
}

/* Reports a finished checkpoint write, if any, to the coordinator. */
static int report_checkpoint(worker *w, rm_error *err)
{
    rm_msg_ckpt_done d = {.worker = w->worker, .opt_steps = w->snapshot_opt_steps};
    rm_ckpt_file file;
    int failed;
    rm_error why;
    long step;
    if (!rm_ckpt_writer_poll(&w->writer, &step, &file, &failed, &why, &d.write_s))
        return RM_OK;
    d.step = step;
    d.ok = !failed;
    d.begin = file.begin;
    d.end = file.end;
    d.bytes = file.bytes;
    d.checksum = file.checksum;
    if (failed)
        snprintf(d.reason, sizeof d.reason, "%s", why.msg);
    if (w->ckpt_traced) {
        char args[64];
        snprintf(args, sizeof args, "\"bytes\":%llu", (unsigned long long)file.bytes);
        rm_trace_event(&w->trace, RM_TRACE_TID_CHECKPOINT, "checkpoint write", "checkpoint",
                       w->ckpt_submit_s + w->cfg.debug_ckpt_write_delay_s, d.write_s, step - 1, args);
        w->ckpt_traced = 0;
    }
    RM_MPI_CHECK(MPI_Send(&d, sizeof d, MPI_BYTE, 0, RM_TAG_CKPT_DONE, MPI_COMM_WORLD), err);
    return RM_OK;
}

/* A checkpoint after this step: the writer must be free (its previous
 * result reported) before its snapshot buffers are refilled. */
static int prepare_checkpoint(worker *w, rm_error *err)
{
    rm_ckpt_writer_wait_idle(&w->writer);
    return report_checkpoint(w, err);
}

/* Hands the filled snapshot of the state after `steps_done` steps to the
 * writer thread. */
static void submit_checkpoint(worker *w, long steps_done)
{
    char name[48], dir[RM_DIR_CAP + 64];
    /* a directory of this job's generation: a newer job never commits it */
    rm_ckpt_tmp_dir_name(steps_done, w->generation, name, sizeof name);
    snprintf(dir, sizeof dir, "%s/%s", w->ckpt_root, name);
    w->ckpt_submit_s = rm_now_s();
    w->ckpt_traced = rm_trace_wants(&w->trace, steps_done - 1);
    rm_ckpt_writer_submit(&w->writer, steps_done, dir);
}

/* A snapshot deferred to the waits of the step after its own: the rest of
 * its copy, then to the writer. Returns the seconds this took. */
static double settle_checkpoint(worker *w)
{
    if (!w->snapshot_pending)
        return 0;
    double t0 = rm_now_s();
    w->backend->snapshot_settle(w->backend);
    submit_checkpoint(w, w->snapshot_pending);
    w->snapshot_pending = 0;
    return rm_now_s() - t0;
}

/* N-independent fingerprint of which sample sits at which stream position. */
static uint64_t batch_digest(const rm_batch *b)
{
    uint64_t sum = 0;
    for (long i = 0; i < b->assign.count; i++)
        sum += rm_key((uint64_t)(b->assign.position + i), b->samples[i]);
    return sum;
}

/* Time this thread has spent runnable but waiting for a core (Linux
 * schedstat), in seconds; -1 where the kernel does not say. A step that
 * waited long for a core was slowed by other work on the host, not by
 * the job. */
static double run_delay_s(void)
{
    int fd = open("/proc/thread-self/schedstat", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    char buf[128];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    unsigned long long run_ns, wait_ns;
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    if (sscanf(buf, "%llu %llu", &run_ns, &wait_ns) != 2)
        return -1;
    return (double)wait_ns * 1e-9;
}

/* Test knob debug.slow_worker: this worker's compute takes slow_factor
 * times as long, as on a slower node (it sleeps the difference before the
 * collective, which the others then wait for). */
static void stretch_compute(worker *w, rm_step_stats *stats)
{
    double extra_s = (w->cfg.debug_slow_factor - 1.0) * stats->compute_s, t0 = rm_now_s();
    struct timespec ts = {(time_t)extra_s, (long)((extra_s - (double)(time_t)extra_s) * 1e9)};
    while (nanosleep(&ts, &ts) != 0)
        ;
    stats->compute_s += rm_now_s() - t0;
}

/* The step's phases on the timeline, end to end from the step's start as
 * measured (the gaps between them are a few microseconds of messaging),
 * and each gradient bucket's all-reduce (under ZeRO-1 its reduce-scatter)
 * from its start to its completion, and ZeRO-1's parameter all-gather; a
 * reduction in stages (hierarchical) shows the sum inside the host on the
 * buckets' line and the chain between hosts on a line of its own. */
static void trace_step(worker *w, double t0, const rm_msg_report *rep, const rm_step_stats *stats)
{
    double at = t0;
    char args[96];
    snprintf(args, sizeof args, "\"samples\":%lld", (long long)rep->count);
    rm_trace_event(&w->trace, RM_TRACE_TID_PHASES, "step", "step", t0, rep->phase_s[RM_PHASE_STEP], w->step, args);
    for (int p = 0; p < RM_PHASE_STEP; p++) {
        if (rep->phase_s[p] > 0 || p == RM_PHASE_COMPUTE)
            rm_trace_event(&w->trace, RM_TRACE_TID_PHASES, rm_phases[p].title, "phase", at, rep->phase_s[p], w->step,
                           NULL);
        at += rep->phase_s[p];
    }
    for (int k = 0; k < stats->n_buckets; k++) {
        if (stats->bucket_done_s[k] <= 0)
            continue;
        snprintf(args, sizeof args, "\"bucket\":%d,\"bytes\":%ld", k,
                 (stats->bucket_end[k] - stats->bucket_begin[k]) * (long)sizeof(float));
        char name[40];
        snprintf(name, sizeof name, "%s bucket %d", stats->buckets_scattered ? "reduce-scatter" : "all-reduce", k);
        rm_trace_event(&w->trace, RM_TRACE_TID_BUCKETS, name, stats->buckets_scattered ? "reducescatter" : "allreduce",
                       stats->bucket_start_s[k], stats->bucket_done_s[k] - stats->bucket_start_s[k], w->step, args);
    }
    for (int k = 0; k < stats->n_stages && k < 2; k++)
        rm_trace_event(&w->trace, k == 0 ? RM_TRACE_TID_BUCKETS : RM_TRACE_TID_NET, stats->stage_name[k], "reduce",
                       stats->stage_start_s[k], stats->stage_s[k], w->step, NULL);
    if (stats->gather_s > 0) {
        snprintf(args, sizeof args, "\"bytes\":%ld", stats->gather_bytes);
        /* hierarchical: the parameter slices between hosts */
        rm_trace_event(&w->trace, stats->n_stages > 1 ? RM_TRACE_TID_NET : RM_TRACE_TID_BUCKETS, "all-gather",
                       "allgather", stats->gather_start_s, stats->gather_s, w->step, args);
    }
}

static int train(worker *w, const rm_msg_start *start, rm_error *err)
{
    if (rm_loader_start(&w->loader, &w->train, w->local_batch, (int)w->cfg.prefetch_batches, start->assign_ahead,
                        err) != RM_OK)
        return RM_ERR;
    w->loader.throttle_bytes_per_s = w->cfg.debug_loader_throttle_mb_s * 1e6;
    w->loader.throttle_from_step = w->cfg.debug_loader_throttle_from_step;
    if (w->cfg.trace_steps[1] > start->first_step) /* a resumed run may start past the traced steps */
        rm_trace_init(&w->trace, w->cfg.trace_steps, w->worker, rm_log_host());
    else
        rm_trace_init(&w->trace, (const long[2]){0, 0}, w->worker, rm_log_host());
    if (w->backend->pin_host)
        for (int i = 0; i < w->loader.n_slots; i++)
            w->backend->pin_host(w->backend, w->loader.slots[i].input, (size_t)w->local_batch * (size_t)w->input_bytes);
    snprintf(w->ckpt_root, sizeof w->ckpt_root, "%s", start->ckpt_root);
    w->generation = start->generation;
    long n = w->model.n_params;
    if (rm_ckpt_writer_start(&w->writer, w->worker, n * w->worker / w->workers, n * (w->worker + 1) / w->workers,
                             w->backend->n_state, err) != RM_OK)
        return RM_ERR;
    w->writer.delay_s = w->cfg.debug_ckpt_write_delay_s;
    /* the mean over every prediction of the global batch */
    float grad_scale = 1.0f / (float)(w->cfg.global_batch * w->model.positions);
    for (w->step = start->first_step; w->step < start->total_steps; w->step++) {
        /* Hand every assignment that has arrived to the loader; block only
         * if the loader has nothing left to prepare. */
        int got = 1;
        while (got && rm_loader_free_assign_slots(&w->loader) > 0)
            if (receive_assignment(w, 0, &got, err) != RM_OK)
                return RM_ERR;
        if (rm_loader_outstanding(&w->loader) == 0 && receive_assignment(w, 1, &got, err) != RM_OK)
            return RM_ERR;
        if (report_checkpoint(w, err) != RM_OK)
            return RM_ERR;

        double t0 = rm_now_s(), delay0 = run_delay_s();
        rm_batch *b;
        if (rm_loader_next(&w->loader, &b, err) != RM_OK)
            return RM_ERR;
        double data_wait_s = rm_now_s() - t0;
        if (b->assign.step != w->step)
            return rm_fail(err, "expected the assignment of step %ld, got step %ld", w->step, (long)b->assign.step);

        double lr = rm_config_lr_at(&w->cfg, w->step, start->total_steps);
        rm_step_stats stats = {.trace_buckets = rm_trace_wants(&w->trace, w->step)};
        int poison = w->step == w->cfg.debug_nan_at_step;
        if (w->backend->backward(w->backend, b->input, b->target, b->assign.count, grad_scale, poison, &stats, err) != RM_OK)
            return RM_ERR;
        if (w->worker == w->cfg.debug_slow_worker && w->cfg.debug_slow_factor > 1)
            stretch_compute(w, &stats);
        /* The next batch, if the loader has it, starts its way to the
         * device while this step computes. */
        rm_batch *next;
        if (w->backend->prefetch && rm_loader_peek(&w->loader, &next) &&
            w->backend->prefetch(w->backend, next->input, next->target, next->assign.count, err) != RM_OK)
            return RM_ERR;
        /* Say we reached the collective before blocking in it. */
        rm_msg_progress progress = {.step = w->step};
        RM_MPI_CHECK(MPI_Send(&progress, sizeof progress, MPI_BYTE, 0, RM_TAG_PROGRESS, MPI_COMM_WORLD), err);
        if (w->backend->reduce(w->backend, &stats, err) != RM_OK)
            return RM_ERR;
        /* The averaged gradient is identical on every worker, so they all
         * take the same decision without talking. A non-finite update is
         * never applied: under every policy the weights stay as they were
         * (the coordinator then stops, rolls back or goes on). */
        int nonfinite = !isfinite(stats.grad_norm);
        int flags = b->assign.flags;
        int skip = (flags & RM_ASSIGN_SKIP_UPDATE) || nonfinite;
        /* The checkpoint snapshot is copied inside the waits on the peers
         * that follow its step's update (where the backend can), the rest
         * before the next update; else it rides on the optimizer's pass
         * over the state. The stall is what it adds (waiting for the
         * writer, the copies outside waits), measured as such, in the step
         * that pays it. */
        int checkpoint = flags & RM_ASSIGN_CHECKPOINT_AFTER;
        double stall_s = settle_checkpoint(w), t_ck = rm_now_s();
        if (checkpoint) {
            if (prepare_checkpoint(w, err) != RM_OK)
                return RM_ERR;
            stall_s += rm_now_s() - t_ck;
        }
        /* Not when the next step checkpoints too: it would wait for this
         * write, which a deferred copy starts a step later. */
        rm_batch *after;
        int next_checkpoint =
            rm_loader_peek(&w->loader, &after) && (after->assign.flags & RM_ASSIGN_CHECKPOINT_AFTER);
        int deferred = 0;
        if (checkpoint && !skip && !(flags & RM_ASSIGN_LAST) && !next_checkpoint &&
            w->backend->update_deferred_snapshot) {
            if (w->backend->update_deferred_snapshot(w->backend, lr, w->writer.begin, w->writer.end, w->writer.snap,
                                                     &w->snapshot_opt_steps, &deferred, &stats, err) != RM_OK)
                return RM_ERR;
            if (deferred)
                w->snapshot_pending = w->step + 1;
            else
                stall_s += stats.snapshot_s;
        } else if (checkpoint && !skip) {
            if (w->backend->update_snapshot(w->backend, lr, w->writer.begin, w->writer.end, w->writer.snap,
                                            &w->snapshot_opt_steps, &stats, err) != RM_OK)
                return RM_ERR;
            stall_s += stats.snapshot_s;
        } else {
            if (!skip && w->backend->update(w->backend, lr, &stats, err) != RM_OK)
                return RM_ERR;
            if (checkpoint) { /* no update this step: a plain copy */
                t_ck = rm_now_s();
                if (w->backend->snapshot(w->backend, w->writer.begin, w->writer.end, w->writer.snap,
                                         &w->snapshot_opt_steps, err) != RM_OK)
                    return RM_ERR;
                stall_s += rm_now_s() - t_ck;
            }
        }
        if (checkpoint && !deferred)
            submit_checkpoint(w, w->step + 1);
        rm_msg_report rep = {
            .step = w->step,
            .loss_sum = stats.loss_sum,
            .correct = stats.correct,
            .count = b->assign.count,
            .lr = lr,
            .grad_norm = stats.grad_norm,
            .nonfinite = nonfinite,
            .update_skipped = skip,
            .checkpoint = checkpoint != 0,
            .batch_digest = batch_digest(b),
            .phase_s =
                {
                    [RM_PHASE_DATA_WAIT] = data_wait_s,
                    [RM_PHASE_COMPUTE] = stats.compute_s,
                    [RM_PHASE_GRAD_REDUCE] = stats.allreduce_wait_s,
                    [RM_PHASE_CKPT_STALL] = stall_s,
                    [RM_PHASE_OPTIMIZER] = stats.optimizer_s,
                    [RM_PHASE_PARAM_GATHER] = stats.param_gather_s,
                    [RM_PHASE_STEP] = rm_now_s() - t0,
                },
            .run_delay_s = delay0 >= 0 ? run_delay_s() - delay0 : -1,
        };
        rm_loader_release(&w->loader);
        if (rm_trace_wants(&w->trace, w->step))
            trace_step(w, t0, &rep, &stats);
        RM_MPI_CHECK(MPI_Send(&rep, sizeof rep, MPI_BYTE, 0, RM_TAG_REPORT, MPI_COMM_WORLD), err);
        /* The timeline goes out once its last step is done and any
         * checkpoint written in it is on disk (one still being copied is
         * handed to the writer in the next step). */
        if (w->step >= w->trace.last && !w->ckpt_traced && !w->snapshot_pending &&
            rm_trace_send(&w->trace, err) != RM_OK)
            return RM_ERR;
        if ((flags & RM_ASSIGN_EVAL_AFTER) && w->cfg.eval_split[0] && evaluate(w, w->step, err) != RM_OK)
            return RM_ERR;
        if (flags & RM_ASSIGN_LAST)
            break;
    }
    /* The last checkpoint must reach the coordinator before STOP. */
    settle_checkpoint(w);
    rm_ckpt_writer_wait_idle(&w->writer);
    if (report_checkpoint(w, err) != RM_OK)
        return RM_ERR;
    return rm_trace_send(&w->trace, err); /* a run that ended inside the traced steps */
}

static int finish(worker *w, rm_error *err)
{
    char stop;
    MPI_Status st;
    if (wait_for(w, RM_TAG_STOP, w->cfg.hang_timeout_s + 60.0, &st, err) != RM_OK)
        return RM_ERR;
    RM_MPI_CHECK(MPI_Recv(&stop, 1, MPI_BYTE, 0, RM_TAG_STOP, MPI_COMM_WORLD, MPI_STATUS_IGNORE), err);
    rm_msg_done done = {.steps = w->step + 1};
    if (weights_digest(w, &done.weights_digest, err) != RM_OK)
        return RM_ERR;
    RM_MPI_CHECK(MPI_Send(&done, sizeof done, MPI_BYTE, 0, RM_TAG_DONE, MPI_COMM_WORLD), err);
    return RM_OK;
}

static void usage(void)
{
    fprintf(stderr, "usage: ringmaster-worker CONFIG [--set section.key=value ...]\n"
                    "Started by mpirun as ranks 1..N next to one ringmaster-coordinator (rank 0).\n");
}

int main(int argc, char **argv)
{
    int provided, rank, size;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    worker w;
    memset(&w, 0, sizeof w);
    w.worker = rank - 1;
    w.workers = size - 1;
    w.step = -1;
    /* Collective over all ranks (the coordinator passes MPI_UNDEFINED):
     * done first so no rank can fail before it and leave others waiting. */
    MPI_Comm_split(MPI_COMM_WORLD, rank == 0 ? MPI_UNDEFINED : 1, rank, &w.comm);
    /* SIGUSR1/SIGUSR2/SIGTERM ask the coordinator to checkpoint and stop;
     * workers finish the steps it still hands out, so they ignore them.
     * mpirun's own shutdown ends in SIGKILL, which nothing ignores. */
    signal(SIGUSR1, SIG_IGN);
    signal(SIGUSR2, SIG_IGN);
    signal(SIGTERM, SIG_IGN);
    char role[32];
    snprintf(role, sizeof role, "worker %d", w.worker);
    rm_log_set_identity(role);

    const char *config_path = NULL;
    char *sets[64];
    int n_sets = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--set") == 0 && i + 1 < argc && n_sets < 64)
            sets[n_sets++] = argv[++i];
        else if (!config_path && argv[i][0] != '-')
            config_path = argv[i];
        else {
            usage();
            worker_fatal(&w, "bad command line");
        }
    }
    if (rank == 0)
        worker_fatal(&w, "ringmaster-worker was started as MPI rank 0; rank 0 must be ringmaster-coordinator");
    if (!config_path) {
        usage();
        worker_fatal(&w, "no config given");
    }

    rm_error err;
    rm_msg_start start;
    /* A bad config or dataset fails the same way on every restart. The
     * coordinator hears every worker out during the handshake and refuses
     * the start to all, so everyone ends normally; abort only if it is
     * not there to answer. */
    int follows = -1;
    if (setup(&w, config_path, sets, n_sets, &follows, &err) != RM_OK) {
        if (follows < 0)
            rm_error_log("%s", err.msg);
        rm_msg_fatal msg = {.step = -1, .pid = (int32_t)getpid(), .follows = follows};
        snprintf(msg.host, sizeof msg.host, "%s", rm_log_host());
        snprintf(msg.reason, sizeof msg.reason, "%s", err.msg);
        MPI_Status st;
        rm_error e2;
        if (MPI_Send(&msg, sizeof msg, MPI_BYTE, 0, RM_TAG_FATAL, MPI_COMM_WORLD) == MPI_SUCCESS &&
            wait_for(&w, RM_TAG_START, 150.0, &st, &e2) == RM_OK) {
            rm_msg_start refused;
            MPI_Recv(&refused, sizeof refused, MPI_BYTE, 0, RM_TAG_START, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            MPI_Comm_free(&w.comm);
            MPI_Finalize();
            return RM_EXIT_FATAL;
        }
        worker_fatal_code(&w, err.msg, RM_EXIT_FATAL);
    }
    if (handshake(&w, &start, &err) != RM_OK)
        worker_fatal(&w, err.msg);
    int rc = 0;
    if (!start.ok) {
        /* The coordinator refused the job and tells every rank why; it
         * prints the reason once, so workers leave quietly. */
        rc = start.exit_code;
    } else {
        if (start.resume_dir[0] && resume(&w, start.resume_dir, &err) != RM_OK)
            worker_fatal_code(&w, err.msg, RM_EXIT_FATAL);
        if (train(&w, &start, &err) != RM_OK || finish(&w, &err) != RM_OK)
            worker_fatal(&w, err.msg);
    }
    rm_ckpt_writer_stop(&w.writer);
    /* The backend first: it may still hold the loader's buffers locked. */
    rm_trace_free(&w.trace);
    if (w.backend)
        w.backend->destroy(w.backend);
    rm_loader_stop(&w.loader);
    rm_dataset_close(&w.train);
    rm_dataset_close(&w.eval);
    free(w.assign_buf);
    free(w.eval_input);
    free(w.eval_target);
    rm_model_free(&w.model);
    MPI_Comm_free(&w.comm);
    MPI_Finalize();
    return rc;
}
