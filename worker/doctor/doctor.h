/* `ringmaster doctor`: measures the pipes a job will use, on the job's own
 * ranks, and predicts its step time.
 *
 *   doctor_main.c    ringmaster-doctor, the MPI program: one rank per
 *                    worker, each measuring what its worker will do
 *   doctor_report.c  the prediction, the table and the JSON file
 *
 * The prediction (docs/doctor.md) is the job's own step, run: each rank
 * runs the worker's step loop through the job's backend (its threads, its
 * gradient transport: shared memory, MPI, ZeRO-1's reduce-scatter and
 * all-gather, NCCL), fed by the job's loader thread, with a stand-in for
 * the coordinator, and times its phases as a run times them:
 *
 *     step_s = data_wait + compute + reduce + optimizer + gather
 *
 * (means over the probe's steps; gather is ZeRO-1's all-gather, else 0).
 * The ranks move in lockstep; the one the others wait for (the most work
 * of its own: data wait, compute, optimizer) sets the pace, and its
 * phases are the step. The loader alone
 * and, on the GPU, the copy of a batch to the device run beside the step;
 * either sets the pace when it takes longer than the step it feeds:
 *
 *     predicted_step_s = max(loader_s, h2d_s, step_s)
 *     samples/s        = global_batch / predicted_step_s
 *
 * Nothing is scaled or corrected: every term is a measured time. The
 * bottleneck is the pipe with the largest share of the predicted step:
 * storage (the loader's pace, or waiting for data), host-to-device,
 * compute (forward + backward), network (the gradient reduction and
 * ZeRO-1's all-gather, whatever their transport) or memory (the
 * optimizer's pass). The rest of the table (storage rates, memory
 * bandwidth, the sgemms and the reduction alone) explains the phases; it
 * is not part of the prediction. */
#ifndef RINGMASTER_DOCTOR_H
#define RINGMASTER_DOCTOR_H

#include "config.h"
#include "model.h"

#include <stdio.h>

#define RM_DOCTOR_MAX_GEMMS 192 /* listed; products past these still count in gemm_s */
#define RM_DOCTOR_MAX_STAGES 2  /* a reduction's stages (rm_step_stats.stage_s) */

typedef struct rm_doctor_gemm {
    char what[80]; /* "layers.0.weight forward" */
    long m, n, k;
    int ta, tb;     /* CBLAS transposes */
    double seconds; /* per call */
    double gflops;
} rm_doctor_gemm;

/* What one rank measured. Sent to rank 0 as bytes. */
typedef struct rm_doctor_rank {
    int rank;
    char host[64];
    char reduce[32];              /* the job's gradient transport: "shm", "mpi", "mpi zero-1", "nccl", "none" */
    double storage_bytes;         /* read from the train split, cold and warm */
    double storage_cold_mb_s, storage_warm_mb_s;
    double loader_batch_s;        /* the loader thread alone: median time per local batch */
    double loader_samples_per_s;
    double memory_gb_s;           /* triad a = b + s*c, 12 bytes per element */
    /* The step in sequence, means per step over sequence_steps steps, cut
     * into phases as a run's report cuts them. They add up to step_s. */
    long sequence_steps;
    double data_wait_s;           /* waiting for the loader's batch */
    double compute_s;             /* forward + backward */
    double step_allreduce_s;      /* the gradient reduction (ZeRO-1: reduce-scatter + norm), and every other wait on the peers */
    double optimizer_s;           /* the optimizer's pass (ZeRO-1, shm: over this rank's slice) */
    double step_gather_s;         /* ZeRO-1: the parameter all-gather after the update */
    double step_s;                /* the worker's step, from asking for the batch to the end of the update */
    double gemm_s;                /* sgemm alone at the step's shapes, summed */
    double allreduce_s;           /* the reduction alone (backend's reduce after a barrier): algbw, busbw */
    double allreduce_algbw_gb_s, allreduce_busbw_gb_s;
    /* The reduction alone in its stages, where it has more than one (the
     * hierarchical reduction: the sum in shared memory inside the host,
     * then the chain between hosts); n_stages 0 otherwise. */
    int n_stages;
    char stage_name[RM_DOCTOR_MAX_STAGES][32];
    double stage_s[RM_DOCTOR_MAX_STAGES];
    int gpu;                      /* the step ran on the GPU backend */
    double h2d_gb_s;              /* page-locked host to device, at the batch's size */
    double h2d_batch_s;           /* one local batch's copy */
    int n_gemms;
    rm_doctor_gemm gemms[RM_DOCTOR_MAX_GEMMS];
} rm_doctor_rank;

/* The pipes a verdict can name, in the order they are printed. */
enum { RM_DOCTOR_STORAGE, RM_DOCTOR_H2D, RM_DOCTOR_COMPUTE, RM_DOCTOR_NETWORK, RM_DOCTOR_MEMORY, RM_DOCTOR_PIPES };

typedef struct rm_doctor_prediction {
    int slowest;       /* index of the rank the others wait for: the most work of its own */
    const char *reduce; /* its gradient transport */
    /* the slowest rank's phases (they add up to sequence_step_s) */
    double data_wait_s, compute_s, allreduce_s, optimizer_s, gather_s, sequence_step_s;
    double loader_s;  /* the loader alone, per batch (slowest rank's) */
    double h2d_s;     /* GPU backend: a batch's copy to the device, beside compute */
    double network_s; /* the reduction alone (slowest rank's): what of allreduce_s the transport takes */
    double step_s, samples_per_s;
    /* each pipe's time in the predicted step and its share of it; the
     * bottleneck is the largest */
    double pipe_s[RM_DOCTOR_PIPES];
    int bottleneck_pipe;
    const char *bottleneck; /* "storage", "host-to-device", "compute", "network", "memory" */
    const char *why;        /* one line */
} rm_doctor_prediction;

/* The pipes' names, by RM_DOCTOR_* index. */
const char *rm_doctor_pipe_name(int pipe);

void rm_doctor_predict(const rm_config *cfg, const rm_doctor_rank *ranks, int n, rm_doctor_prediction *p);

/* The readable table. */
void rm_doctor_print(FILE *out, const rm_config *cfg, const rm_model *model, const rm_doctor_rank *ranks, int n,
                     const rm_doctor_prediction *p);

/* The JSON report (documented in docs/doctor.md). */
void rm_doctor_write_json(FILE *out, const rm_config *cfg, const rm_model *model, const rm_doctor_rank *ranks,
                          int n, const rm_doctor_prediction *p);

#endif
