#include "assign.h"

#include "exit_codes.h"
#include "log.h"
#include "mpi_check.h"
#include "protocol.h"
#include "shard.h"
#include "timer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *rm_signal_name(int sig)
{
    switch (sig) {
    case SIGUSR1:
        return "SIGUSR1";
    case SIGUSR2:
        return "SIGUSR2";
    case SIGTERM:
        return "SIGTERM";
    case SIGINT:
        return "SIGINT";
    default:
        return "a signal";
    }
}

int rm_stop_exit_code(int sig)
{
    return sig == SIGUSR2 || sig == SIGINT ? RM_EXIT_INTERRUPTED : RM_EXIT_REQUEUE;
}

/* The sampler over the train split's shards (token splits: samples are
 * windows of the model's context). */
static int init_sampler(rm_assign *a, uint64_t *dataset_hash, rm_error *err)
{
    const rm_config *cfg = a->s.cfg;
    char dir[2 * RM_PATH_CAP];
    snprintf(dir, sizeof dir, "%s/%s", cfg->data_dir, cfg->train_split);
    rm_shard_index idx;
    if (rm_shard_index_read(dir, &idx, err) != RM_OK)
        return RM_ERR;
    if (rm_shard_index_set_context(&idx, dir, cfg->model_context, err) != RM_OK) {
        rm_shard_index_free(&idx);
        return RM_ERR;
    }
    *dataset_hash = idx.index_hash;
    long *sizes = malloc((size_t)idx.n_shards * sizeof *sizes);
    int rc = sizes ? RM_OK : rm_fail(err, "out of memory");
    for (int s = 0; sizes && s < idx.n_shards; s++)
        sizes[s] = idx.shards[s].samples;
    if (rc == RM_OK)
        rc = rm_sampler_init(&a->sampler, sizes, idx.n_shards, (uint64_t)cfg->seed, cfg->shuffle_window_shards, err);
    free(sizes);
    rm_shard_index_free(&idx);
    return rc;
}

int rm_assign_init(rm_assign *a, const rm_assign_setup *setup, uint64_t *dataset_hash, rm_error *err)
{
    memset(a, 0, sizeof *a);
    a->s = *setup;
    const rm_config *cfg = setup->cfg;
    a->local_batch = cfg->global_batch / setup->workers;
    a->end_step = setup->total_steps;
    a->ahead = (int)cfg->prefetch_batches + 2;
    a->last_ckpt_request_s = rm_now_s();
    a->flags = malloc((size_t)a->ahead * sizeof *a->flags);
    a->send_buf_bytes = sizeof(rm_msg_assign) + (size_t)a->local_batch * sizeof(uint32_t);
    size_t n_bufs = (size_t)setup->workers * (size_t)a->ahead;
    a->send_bufs = malloc(n_bufs * a->send_buf_bytes);
    a->send_reqs = malloc(n_bufs * sizeof *a->send_reqs);
    if (!a->flags || !a->send_bufs || !a->send_reqs)
        return rm_fail(err, "out of memory");
    for (int i = 0; i < a->ahead; i++)
        a->flags[i].step = -1;
    for (size_t i = 0; i < n_bufs; i++)
        a->send_reqs[i] = MPI_REQUEST_NULL;
    return init_sampler(a, dataset_hash, err);
}

void rm_assign_free(rm_assign *a)
{
    rm_sampler_free(&a->sampler);
    free(a->flags);
    free(a->send_bufs);
    free(a->send_reqs);
    free(a->skip_steps);
    memset(a, 0, sizeof *a);
}

void rm_assign_begin(rm_assign *a, long first_step, long *skip_steps, int n_skip_steps)
{
    a->first_step = first_step;
    free(a->skip_steps);
    a->skip_steps = skip_steps;
    a->n_skip_steps = n_skip_steps;
    a->last_ckpt_request_s = rm_now_s();
}

int rm_assign_is_skip_step(const rm_assign *a, long step)
{
    for (int i = 0; i < a->n_skip_steps; i++)
        if (a->skip_steps[i] == step)
            return 1;
    return 0;
}

/* Decides what follows `step`, once; -1 on error. */
static int decide_flags(rm_assign *a, long step, rm_error *err)
{
    const rm_config *cfg = a->s.cfg;
    rm_step_flags *slot = &a->flags[step % a->ahead];
    if (slot->step == step)
        return slot->flags;
    int flags = 0;
    int last = step == a->end_step - 1;
    int sig = (int)*a->s.stop_request;
    if (!last && sig && !a->stopped_on) {
        /* The first step not yet handed out becomes the last: checkpoint
         * after it and stop, so the job can be resumed or requeued. Under
         * `ringmaster run`, which says so itself, quietly. */
        if (!a->s.supervised) {
            rm_progress_break(a->s.progress);
            rm_warn("%s: checkpointing after step %ld and stopping (exit %d%s)", rm_signal_name(sig), step + 1,
                    rm_stop_exit_code(sig), rm_stop_exit_code(sig) == RM_EXIT_REQUEUE ? ": requeue me" : "");
        }
        a->stopped_on = sig;
        a->end_step = step + 1;
        last = 1;
    }
    if (cfg->eval_split[0] && !a->stopped_on && (last || (cfg->eval_every > 0 && (step + 1) % cfg->eval_every == 0))) {
        flags |= RM_ASSIGN_EVAL_AFTER;
        a->evals_expected++;
    }
    /* The last step always ends with a checkpoint: a finished run leaves
     * its model in the checkpoint root, periodic checkpoints or not. */
    if (last)
        flags |= RM_ASSIGN_LAST | RM_ASSIGN_CHECKPOINT_AFTER;
    int periodic = a->ckpt_owed || (cfg->ckpt_every_steps > 0 && (step + 1) % cfg->ckpt_every_steps == 0) ||
                   (cfg->ckpt_every_seconds > 0 && rm_now_s() - a->last_ckpt_request_s >= cfg->ckpt_every_seconds);
    /* Checkpoints asked for faster than they are written (a small
     * checkpoint.every_steps, steps handed out ahead): a periodic one
     * waits for room, the last one always has it. */
    if (periodic && !last && rm_ckpt_coord_in_flight(a->s.ckpt) >= RM_CKPT_COORD_PENDING - 1) {
        if (!a->ckpt_owed_warned) {
            rm_progress_break(a->s.progress);
            rm_warn("checkpoints are asked for faster than they are written (%d in flight): each further one "
                    "waits for the one before to commit",
                    RM_CKPT_COORD_PENDING - 1);
        }
        a->ckpt_owed_warned = 1;
        a->ckpt_owed = 1;
        periodic = 0;
    }
    if (periodic && !last) {
        flags |= RM_ASSIGN_CHECKPOINT_AFTER;
        a->ckpt_owed = 0;
    }
    if (rm_assign_is_skip_step(a, step))
        flags |= RM_ASSIGN_SKIP_UPDATE;
    if (flags & RM_ASSIGN_CHECKPOINT_AFTER) {
        a->last_ckpt_request_s = rm_now_s();
        if (rm_ckpt_coord_expect(a->s.ckpt, step + 1, err) != RM_OK)
            return -1;
    }
    slot->step = step;
    slot->flags = flags;
    return flags;
}

int rm_assign_send(rm_assign *a, int w, long step, rm_error *err)
{
    int flags = decide_flags(a, step, err);
    if (flags < 0)
        return RM_ERR;
    int slot = (int)(step % a->ahead);
    size_t at = (size_t)w * (size_t)a->ahead + (size_t)slot;
    MPI_Request *req = &a->send_reqs[at];
    RM_MPI_CHECK(MPI_Wait(req, MPI_STATUS_IGNORE), err);
    uint8_t *buf = a->send_bufs + at * a->send_buf_bytes;
    long position = rm_order_slice_start(step, a->s.cfg->global_batch, w, a->s.workers);
    rm_msg_assign m = {
        .step = step,
        .epoch = position / a->s.facts->train_samples,
        .position = position,
        .count = (int32_t)a->local_batch,
        .flags = flags,
    };
    memcpy(buf, &m, sizeof m);
    if (rm_sampler_fill(&a->sampler, position, a->local_batch, (uint32_t *)(buf + sizeof m), err) != RM_OK)
        return RM_ERR;
    RM_MPI_CHECK(MPI_Isend(buf, (int)a->send_buf_bytes, MPI_BYTE, w + 1, RM_TAG_ASSIGN, MPI_COMM_WORLD, req), err);
    return RM_OK;
}

int rm_assign_start(rm_assign *a, rm_error *err)
{
    for (long step = a->first_step; step < a->first_step + a->ahead && step < a->end_step; step++)
        for (int w = 0; w < a->s.workers; w++)
            if (rm_assign_send(a, w, step, err) != RM_OK)
                return RM_ERR;
    return RM_OK;
}

int rm_assign_drain(rm_assign *a, rm_error *err)
{
    for (int i = 0; i < a->s.workers * a->ahead; i++)
        RM_MPI_CHECK(MPI_Wait(&a->send_reqs[i], MPI_STATUS_IGNORE), err);
    return RM_OK;
}
