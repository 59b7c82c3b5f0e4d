#include "mpi_wait.h"

#include "mpi_check.h"
#include "timer.h"

int rm_mpi_wait_all(int n, MPI_Request *reqs, const rm_peer_wait *pw, rm_error *err)
{
    double last_beat = rm_now_s();
    for (long spins = 0;; spins++) {
        int done;
        RM_MPI_CHECK(MPI_Testall(n, reqs, &done, MPI_STATUSES_IGNORE), err);
        if (done)
            return RM_OK;
        if (pw && pw->heartbeat && (spins & 255) == 0 && rm_now_s() - last_beat > pw->heartbeat_s) {
            last_beat = rm_now_s();
            if (pw->heartbeat(pw->ctx, err) != RM_OK)
                return RM_ERR;
        }
    }
}
