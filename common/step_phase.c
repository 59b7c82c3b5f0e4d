#include "step_phase.h"

const rm_phase_info rm_phases[RM_N_PHASES] = {
    [RM_PHASE_DATA_WAIT] = {"data_wait_s", "data_wait", "data wait", "#ff7f0e"},
    [RM_PHASE_COMPUTE] = {"compute_s", "compute", "forward + backward", "#1f77b4"},
    /* the member keeps its first name: metrics readers rely on it */
    [RM_PHASE_GRAD_REDUCE] = {"allreduce_wait_s", "allreduce_wait", "gradient reduction wait", "#9467bd"},
    [RM_PHASE_CKPT_STALL] = {"ckpt_stall_s", "ckpt_stall", "checkpoint stall", "#8c564b"},
    [RM_PHASE_OPTIMIZER] = {"optimizer_s", "optimizer", "optimizer", "#2ca02c"},
    [RM_PHASE_PARAM_GATHER] = {"param_gather_s", "param_gather", "parameter all-gather", "#e377c2"},
    [RM_PHASE_STEP] = {"step_s", "step", "step", "#7f7f7f"},
};

const char *rm_transport_name(int transport)
{
    switch (transport) {
    case RM_TRANSPORT_MPI:
        return "mpi";
    case RM_TRANSPORT_SHM:
        return "shm";
    case RM_TRANSPORT_NCCL:
        return "nccl";
    case RM_TRANSPORT_HIER:
        return "shm+mpi";
    default:
        return "none";
    }
}

/* The reduction's cost lies where its bytes go: through this host's
 * memory when the workers share one, over the network otherwise. */
static const char *reduction_cause(int phase, int transport, int one_host)
{
    switch (transport) {
    case RM_TRANSPORT_HIER: /* the sum goes through both; the parameters stay in each host */
        return phase == RM_PHASE_GRAD_REDUCE ? "shared memory + network" : "shared memory";
    case RM_TRANSPORT_SHM:
        return "shared memory";
    case RM_TRANSPORT_NCCL:
        return one_host ? "GPU interconnect" : "network";
    case RM_TRANSPORT_MPI:
        return one_host ? "shared memory (MPI)" : "network";
    default:
        return "reduction";
    }
}

const char *rm_phase_cause(int phase, int transport, int one_host)
{
    switch (phase) {
    case RM_PHASE_DATA_WAIT:
        return "storage/loader";
    case RM_PHASE_COMPUTE:
        return "compute";
    case RM_PHASE_GRAD_REDUCE:
    case RM_PHASE_PARAM_GATHER:
        return reduction_cause(phase, transport, one_host);
    case RM_PHASE_CKPT_STALL:
        return "checkpoint";
    case RM_PHASE_OPTIMIZER:
        return "optimizer/memory";
    default:
        return "step";
    }
}
