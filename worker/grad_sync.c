#include "grad_sync.h"

#include "log.h"
#include "timer.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

int rm_grad_sync_init(rm_grad_sync *gs, long n, long bucket_floats, int rank, const rm_grad_transport *tp,
                      rm_error *err)
{
    memset(gs, 0, sizeof *gs);
    if (n < 1)
        return rm_fail(err, "gradient of %ld floats: nothing to reduce", n);
    gs->n = n;
    gs->rank = rank;
    if (tp)
        gs->tp = *tp;
    if (bucket_floats < 1)
        bucket_floats = 1;
    /* NCCL and MPI counts: keep every bucket within an int. */
    if (bucket_floats > (1L << 30))
        bucket_floats = 1L << 30;
    gs->n_buckets = (int)((n + bucket_floats - 1) / bucket_floats);
    gs->bucket_start = malloc((size_t)gs->n_buckets * sizeof *gs->bucket_start);
    gs->bucket_end = malloc((size_t)gs->n_buckets * sizeof *gs->bucket_end);
    gs->trace_start_s = calloc((size_t)gs->n_buckets, sizeof *gs->trace_start_s);
    gs->trace_done_s = calloc((size_t)gs->n_buckets, sizeof *gs->trace_done_s);
    if (!gs->bucket_start || !gs->bucket_end || !gs->trace_start_s || !gs->trace_done_s) {
        rm_grad_sync_free(gs);
        return rm_fail(err, "out of memory for %ld gradient buckets", (n + bucket_floats - 1) / bucket_floats);
    }
    for (int k = 0; k < gs->n_buckets; k++) {
        gs->bucket_end[k] = n - (long)k * bucket_floats;
        gs->bucket_start[k] = gs->bucket_end[k] - bucket_floats > 0 ? gs->bucket_end[k] - bucket_floats : 0;
    }
    return RM_OK;
}

void rm_grad_sync_free(rm_grad_sync *gs)
{
    free(gs->bucket_start);
    free(gs->bucket_end);
    free(gs->trace_start_s);
    free(gs->trace_done_s);
    memset(gs, 0, sizeof *gs);
}

/* Timeline: marks the started buckets found complete (all_done: every
 * one). Asking the transport changes nothing for the reduction itself. */
static int trace_poll(rm_grad_sync *gs, int all_done, rm_error *err)
{
    double now = rm_now_s();
    for (int k = 0; k < gs->next_bucket; k++) {
        if (gs->trace_done_s[k] > 0)
            continue;
        int done = all_done;
        if (!done && gs->tp.bucket_done && gs->tp.bucket_done(gs->tp.ctx, k, &done, err) != RM_OK)
            return RM_ERR;
        if (done)
            gs->trace_done_s[k] = now;
    }
    return RM_OK;
}

int rm_grad_sync_ready_from(rm_grad_sync *gs, long offset, rm_error *err)
{
    if (!gs->tp.start)
        return RM_OK;
    if (gs->aborted)
        return rm_fail(err, "rank %d on %s: the gradient all-reduce (%s) was aborted earlier", gs->rank, rm_log_host(),
                       gs->tp.name);
    if (gs->next_bucket >= gs->n_buckets || gs->bucket_start[gs->next_bucket] < offset)
        return RM_OK; /* nothing new is wholly ready */
    if (gs->tp.gate && gs->tp.gate(gs->tp.ctx, err) != RM_OK)
        return RM_ERR;
    while (gs->next_bucket < gs->n_buckets && gs->bucket_start[gs->next_bucket] >= offset) {
        int k = gs->next_bucket++;
        if (gs->trace) {
            gs->trace_start_s[k] = rm_now_s();
            gs->trace_done_s[k] = 0;
        }
        if (gs->tp.start(gs->tp.ctx, k, gs->bucket_start[k], gs->bucket_end[k] - gs->bucket_start[k], err) != RM_OK)
            return RM_ERR;
    }
    return gs->trace ? trace_poll(gs, 0, err) : RM_OK;
}

int rm_grad_sync_finish(rm_grad_sync *gs, rm_error *err)
{
    gs->wait_s = 0;
    if (!gs->tp.start) {
        gs->steps++;
        return RM_OK;
    }
    if (rm_grad_sync_ready_from(gs, 0, err) != RM_OK)
        return RM_ERR;
    double t0 = rm_now_s(), last_beat = t0;
    for (long spins = 0;; spins++) {
        int done = 0;
        if (gs->tp.poll(gs->tp.ctx, &done, err) != RM_OK)
            return RM_ERR;
        if (gs->trace && trace_poll(gs, done, err) != RM_OK)
            return RM_ERR;
        if (done)
            break;
        if (rm_idle_work_piece(gs->peer_wait.idle)) /* work between polls (mpi_wait.h) */
            continue;
        /* Spin first (a bucket is often microseconds from done), then poll
         * gently so a long wait does not burn the core the loader needs. */
        if (spins < 4096)
            continue;
        if ((spins & 63) == 0) {
            double now = rm_now_s();
            const rm_peer_wait *pw = &gs->peer_wait;
            if (pw->heartbeat && now - last_beat > pw->heartbeat_s) {
                last_beat = now;
                if (pw->heartbeat(pw->ctx, err) != RM_OK)
                    return RM_ERR;
            }
            if (gs->watchdog_s > 0 && now - t0 > gs->watchdog_s) {
                gs->aborted = 1;
                if (gs->tp.abort)
                    gs->tp.abort(gs->tp.ctx);
                return rm_fail(err,
                               "rank %d on %s: the gradient all-reduce (%s, %d buckets, %ld floats) of sync %ld did "
                               "not complete within %g s; communicator aborted (a peer is stuck or gone)",
                               gs->rank, rm_log_host(), gs->tp.name, gs->n_buckets, gs->n, gs->steps, gs->watchdog_s);
            }
        }
        struct timespec pause = {0, 20000};
        nanosleep(&pause, NULL);
    }
    gs->wait_s = rm_now_s() - t0;
    if (gs->peer_wait.idle)
        gs->peer_wait.idle->waited_s += gs->wait_s;
    gs->next_bucket = 0;
    gs->steps++;
    return RM_OK;
}
