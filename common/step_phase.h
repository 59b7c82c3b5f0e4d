/* The phases of a training step: the one list that the worker's report,
 * metrics.jsonl, /metrics, the timeline, the plots, the doctor and the
 * detectors all read. A phase added here appears in all of them. */
#ifndef RINGMASTER_STEP_PHASE_H
#define RINGMASTER_STEP_PHASE_H

/* In the order a step runs them; RM_PHASE_STEP, the whole step, last. */
enum rm_phase {
    RM_PHASE_DATA_WAIT,    /* waiting for the loader's batch */
    RM_PHASE_COMPUTE,      /* forward + backward (bucket reductions overlap it) */
    RM_PHASE_GRAD_REDUCE,  /* blocked on the gradient reduction after backward */
    RM_PHASE_CKPT_STALL,   /* what a checkpoint adds to the step */
    RM_PHASE_OPTIMIZER,    /* the update of this worker's parameters or slice */
    RM_PHASE_PARAM_GATHER, /* ZeRO-1's all-gather / the shared copy's barrier */
    RM_PHASE_STEP,
    RM_N_PHASES
};

/* How a worker's gradients are summed: what its reduction phases cost. */
enum rm_transport {
    RM_TRANSPORT_NONE = 0, /* one worker */
    RM_TRANSPORT_MPI = 1,
    RM_TRANSPORT_SHM = 2, /* node-shared memory */
    RM_TRANSPORT_NCCL = 3,
    RM_TRANSPORT_HIER = 4, /* shared memory in each host, then MPI between hosts */
};

typedef struct rm_phase_info {
    const char *json;   /* metrics.jsonl member and summary key: "data_wait_s" */
    const char *label;  /* Prometheus `phase` label, timeline and log name: "data_wait" */
    const char *title;  /* plots, the doctor and the progress line: "data wait" */
    const char *colour; /* plot fill colour */
} rm_phase_info;

extern const rm_phase_info rm_phases[RM_N_PHASES];

/* What a user should look at when phase p grows, on a job whose workers
 * reduce over `transport`, all on one host or not: "storage/loader",
 * "compute", "network", "shared memory", ... Static string. */
const char *rm_phase_cause(int phase, int transport, int one_host);

/* "mpi", "shm", "shm+mpi", "nccl", "none". */
const char *rm_transport_name(int transport);

#endif
