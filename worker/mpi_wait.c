#include "mpi_wait.h"

#include "log.h"
#include "mpi_check.h"
#include "timer.h"

void rm_idle_work_begin(rm_idle_work *w, int (*piece)(void *ctx), void *ctx)
{
    w->piece = piece;
    w->ctx = ctx;
    w->pieces = 0;
    w->active = 1;
}

int rm_idle_work_piece(rm_idle_work *w)
{
    if (!w || !w->active)
        return 0;
    w->active = w->piece(w->ctx);
    w->pieces++;
    return 1;
}

int rm_mpi_wait_all(int n, MPI_Request *reqs, const rm_peer_wait *pw, rm_error *err)
{
    double t0 = rm_now_s(), last_beat = t0;
    for (long spins = 0;; spins++) {
        int done;
        RM_MPI_CHECK(MPI_Testall(n, reqs, &done, MPI_STATUSES_IGNORE), err);
        rm_idle_work *idle = pw ? pw->idle : NULL;
        if (done) {
            if (idle)
                idle->waited_s += rm_now_s() - t0;
            return RM_OK;
        }
        rm_idle_work_piece(idle);
        if (!pw || (spins & 255) != 0)
            continue;
        double now = rm_now_s();
        if (pw->heartbeat && now - last_beat > pw->heartbeat_s) {
            last_beat = now;
            if (pw->heartbeat(pw->ctx, err) != RM_OK)
                return RM_ERR;
        }
        if (pw->give_up_s > 0 && now - t0 > pw->give_up_s)
            return rm_fail(err,
                           "%s: the other workers did not answer within %g s, and the coordinator did not end the job "
                           "(it is gone too): giving up",
                           rm_log_host(), pw->give_up_s);
    }
}
