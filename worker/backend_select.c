/* launch.backend: which backend this worker runs. Built with
 * RINGMASTER_HAVE_GPU when the GPU backend is part of the build. */
#include "backend.h"
#include "log.h"
#include "mpi_check.h"

#include <limits.h>
#include <stdio.h>

#ifndef RINGMASTER_HAVE_GPU
int rm_gpu_probe(char *why, size_t why_cap)
{
    snprintf(why, why_cap,
             "this build of ringmaster has no GPU backend (rebuild where the CUDA toolkit and NCCL are found, "
             "with -DRINGMASTER_CUDA=ON)");
    return 0;
}

int rm_gpu_h2d_rate(size_t bytes, double *gb_s, rm_error *err)
{
    *gb_s = 0;
    return rm_fail(err, "this build of ringmaster has no GPU backend");
}

rm_backend *rm_backend_gpu_create(const rm_model *model, const rm_config *cfg, long max_batch, MPI_Comm comm,
                                  rm_heartbeat_fn heartbeat, void *heartbeat_ctx, double heartbeat_s, rm_error *err)
{
    char why[512];
    rm_gpu_probe(why, sizeof why);
    rm_fail(err, "%s", why);
    return NULL;
}
#endif

/* Agrees over comm on the first worker without a usable device (INT_MAX:
 * none), so that every worker takes the same backend. */
static int first_without_gpu(MPI_Comm comm, int rank, int usable, int *first, rm_error *err)
{
    int mine = usable ? INT_MAX : rank;
    RM_MPI_CHECK(MPI_Allreduce(&mine, first, 1, MPI_INT, MPI_MIN, comm), err);
    return RM_OK;
}

rm_backend *rm_backend_create(const rm_model *model, const rm_config *cfg, long max_batch, MPI_Comm comm,
                              rm_heartbeat_fn heartbeat, void *heartbeat_ctx, double heartbeat_s, rm_error *err)
{
    if (cfg->backend == RM_BACKEND_GPU && !rm_model_runs_on(model, RM_BACKEND_GPU)) {
        rm_fail(err, "model %s has no GPU implementation (it runs on: cpu); use launch.backend cpu", model->name);
        return NULL;
    }
    if (cfg->backend == RM_BACKEND_CPU || !rm_model_runs_on(model, RM_BACKEND_GPU))
        return rm_backend_cpu_create(model, cfg, max_batch, comm, heartbeat, heartbeat_ctx, heartbeat_s, err);
    int rank = 0, first = INT_MAX;
    if (MPI_Comm_rank(comm, &rank) != MPI_SUCCESS) {
        rm_fail(err, "MPI_Comm_rank failed on the workers' communicator");
        return NULL;
    }
    char why[512] = "";
    int devices = rm_gpu_probe(why, sizeof why);
    if (first_without_gpu(comm, rank, devices > 0, &first, err) != RM_OK)
        return NULL;
    if (first == INT_MAX)
        return rm_backend_gpu_create(model, cfg, max_batch, comm, heartbeat, heartbeat_ctx, heartbeat_s, err);
    if (cfg->backend == RM_BACKEND_GPU) {
        if (first == rank)
            rm_fail(err, "worker %d on %s: launch.backend is gpu but %s", rank, rm_log_host(), why);
        else
            rm_fail(err, "launch.backend is gpu but worker %d has no usable GPU (its own message says why)", first);
        return NULL;
    }
    if (first == rank)
        rm_info("launch.backend auto: worker %d has no usable GPU (%s): every worker uses the CPU backend%s%s", rank,
                why, cfg->precision != RM_PREC_FP32 ? ", in fp32" : "",
                cfg->attention == RM_ATT_FUSED ? ", with its own attention (train.attention fused is the GPU's)" : "");
    return rm_backend_cpu_create(model, cfg, max_batch, comm, heartbeat, heartbeat_ctx, heartbeat_s, err);
}
