/* The handshake: every worker says who it is and proves it runs the same
 * job (config hash, model size, initial weights) before any step. */
#include "handshake.h"

#include "config.h"
#include "exit_codes.h"
#include "hash.h"
#include "log.h"
#include "mpi_check.h"
#include "timer.h"

#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Tells every worker not to start, with the reason, and lets MPI finish
 * normally: nothing is left waiting. */
int rm_handshake_refuse(int workers, const char *reason, int exit_code, rm_error *err)
{
    rm_msg_start start = {.ok = 0, .exit_code = exit_code};
    snprintf(start.reason, sizeof start.reason, "%s", reason);
    for (int w = 0; w < workers; w++)
        RM_MPI_CHECK(MPI_Send(&start, sizeof start, MPI_BYTE, w + 1, RM_TAG_START, MPI_COMM_WORLD), err);
    return RM_OK;
}

/* Collects every HELLO and checks that all ranks run the same job. Returns
 * RM_ERR with the reason when the job must not start. */
int rm_handshake_run(rm_roster *r, const rm_handshake_expect *want, rm_error *err)
{
    int seen = 0;
    uint64_t init_digest = 0;
    char *got = calloc((size_t)r->workers, 1);
    if (!got)
        return rm_fail(err, "out of memory");
    double deadline = rm_now_s() + want->timeout_s;
    int failed = 0, failed_alone = 0, hellos = 0, first_follows = 0;
    char first_failure[RM_REASON_CAP + 256] = "";
    int rc = RM_ERR;
    while (seen < r->workers) {
        int flag;
        MPI_Status st;
        if (MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, MPI_COMM_WORLD, &flag, &st) != MPI_SUCCESS) {
            rm_fail(err, "MPI_Iprobe failed during the handshake");
            goto out;
        }
        if (!flag) {
            if (rm_now_s() > deadline) {
                char missing[512] = "";
                for (int w = 0; w < r->workers && strlen(missing) < 400; w++)
                    if (!got[w])
                        snprintf(missing + strlen(missing), sizeof missing - strlen(missing), " %d", w);
                rm_fail(err, "workers%s did not report within %.0f s of start", missing, want->timeout_s);
                goto out;
            }
            nanosleep(&(struct timespec){0, RM_COORD_IDLE_SLEEP_NS}, NULL);
            continue;
        }
        int w = st.MPI_SOURCE - 1;
        if (st.MPI_TAG == RM_TAG_FATAL) {
            /* A worker could not set up (bad dataset, ...). Hear everyone
             * out, then refuse the start to all: every rank ends normally. */
            rm_msg_fatal f;
            MPI_Recv(&f, sizeof f, MPI_BYTE, st.MPI_SOURCE, RM_TAG_FATAL, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            f.reason[sizeof f.reason - 1] = '\0';
            f.host[sizeof f.host - 1] = '\0';
            r->info[w].pid = f.pid;
            snprintf(r->info[w].host, sizeof r->info[w].host, "%s", f.host);
            /* name a worker that failed on its own over one that stopped
             * because of it, whichever reports first */
            if (!failed || (first_follows && f.follows < 0)) {
                snprintf(first_failure, sizeof first_failure, "worker %d (rank %d, host %s, pid %d) cannot start: %s",
                         w, w + 1, f.host, f.pid, f.reason);
                first_follows = f.follows >= 0;
            }
            failed++;
            failed_alone += f.follows < 0;
            got[w] = 1;
            seen++;
            continue;
        }
        if (st.MPI_TAG != RM_TAG_HELLO) {
            rm_fail(err, "rank %d sent message tag %d before its handshake", st.MPI_SOURCE, st.MPI_TAG);
            goto out;
        }
        rm_msg_hello h;
        MPI_Recv(&h, sizeof h, MPI_BYTE, st.MPI_SOURCE, RM_TAG_HELLO, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        h.host[sizeof h.host - 1] = '\0';
        got[w] = 1;
        seen++;
        r->info[w].pid = h.pid;
        snprintf(r->info[w].host, sizeof r->info[w].host, "%s", h.host);
        r->peak_flops += h.peak_flops;
        if (h.optimizer_state_bytes > r->optimizer_state_bytes)
            r->optimizer_state_bytes = (long)h.optimizer_state_bytes;
        if (h.memory_bytes > r->memory_bytes)
            r->memory_bytes = (long)h.memory_bytes;
        if (h.protocol_version != RM_PROTOCOL_VERSION) {
            rm_fail(err, "worker %d (rank %d, host %s) speaks protocol %d, the coordinator %d: mixed ringmaster builds",
                    w, w + 1, h.host, h.protocol_version, RM_PROTOCOL_VERSION);
            goto out;
        }
        if (h.config_hash != want->config_hash) {
            char a[17], b[17];
            rm_hash_hex(h.config_hash, a);
            rm_hash_hex(want->config_hash, b);
            rm_fail(err,
                    "worker %d (rank %d, host %s, pid %d) runs a different job config (hash %s, coordinator %s): "
                    "every rank must be started with the same config and --set overrides",
                    w, w + 1, h.host, h.pid, a, b);
            goto out;
        }
        if (h.param_count != want->n_params) {
            rm_fail(err, "worker %d (rank %d, host %s) built a model of %lld parameters, expected %ld", w, w + 1, h.host,
                    (long long)h.param_count, want->n_params);
            goto out;
        }
        if (++hellos == 1) {
            r->backend = h.backend;
            r->transport = h.transport;
        } else if (h.backend != r->backend) {
            rm_fail(err, "worker %d (rank %d, host %s) runs the %s backend, the others %s", w, w + 1, h.host,
                    rm_backend_name(h.backend), rm_backend_name(r->backend));
            goto out;
        }
        if (seen == 1)
            init_digest = h.init_digest;
        else if (h.init_digest != init_digest) {
            rm_fail(err, "worker %d (rank %d, host %s) starts from different initial weights than the others", w,
                    w + 1, h.host);
            goto out;
        }
    }
    if (failed) {
        rm_fail(err, "%s%s", first_failure, failed_alone > 1 ? " (and other workers)" : "");
        goto out;
    }
    rc = RM_OK;
out:
    free(got);
    return rc;
}
