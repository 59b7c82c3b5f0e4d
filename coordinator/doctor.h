/* `ringmaster doctor`: measures the pipes a job will use, on the job's own
 * ranks, and predicts its step time.
 *
 *   doctor_main.c    ringmaster-doctor, the MPI program: one rank per
 *                    worker, each measuring what its worker will do
 *   doctor_report.c  the prediction, the table and the JSON file
 *
 * The prediction (docs/doctor.md): a worker's step is forward+backward,
 * then the exposed gradient all-reduce, then the optimizer, while its
 * loader thread prepares the next batches alongside. So
 *
 *     step_s = max(loader_s, h2d_s, compute_s + allreduce_s + optimizer_s + gather_s)
 *
 * (under ZeRO-1 allreduce_s is the gradient's reduce-scatter and gather_s
 * the parameters' all-gather after the optimizer; otherwise gather_s is 0)
 * (h2d_s, the batch's copy to the device on its own stream: GPU backend.)
 * with each term measured at the job's shapes and sizes, in the step's
 * order (so that caches and the ranks' skew are as in training), on the
 * slowest rank; samples/s = global_batch / step_s. The bottleneck is the loader
 * ("storage") or the copy to the device ("host-to-device") when it is the max, else the largest of compute, network
 * and the optimizer ("memory"), where network is the all-reduce's own
 * time (measured alone) and the rest of the all-reduce wait, the ranks'
 * skew, counts as compute. */
#ifndef RINGMASTER_DOCTOR_H
#define RINGMASTER_DOCTOR_H

#include "config.h"
#include "model.h"

#include <stdio.h>

#define RM_DOCTOR_MAX_GEMMS 192 /* listed; products past these still count in gemm_s */

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
    double storage_bytes;         /* read from the train split, cold and warm */
    double storage_cold_mb_s, storage_warm_mb_s;
    double loader_batch_s;        /* the loader thread's time per local batch */
    double loader_samples_per_s;
    double memory_gb_s;           /* triad a = b + s*c, 12 bytes per element */
    double compute_s;             /* forward + backward of one local batch, in the step sequence */
    double gemm_s;                /* sgemm alone at the same shapes, summed */
    double optimizer_s;           /* gradient norm + optimizer step, in the step sequence */
    double step_allreduce_s;      /* the bucketed all-reduce (ZeRO-1: reduce-scatter), in the step sequence */
    double step_gather_s;         /* ZeRO-1: the parameter all-gather after the update, in the step sequence */
    double allreduce_s;           /* the bucketed all-reduce alone (algbw, busbw) */
    double allreduce_algbw_gb_s, allreduce_busbw_gb_s;
    int gpu;                      /* the step ran on the GPU backend */
    double h2d_gb_s;              /* page-locked host to device, at the batch's size */
    double h2d_batch_s;           /* one local batch's copy */
    int n_gemms;
    rm_doctor_gemm gemms[RM_DOCTOR_MAX_GEMMS];
} rm_doctor_rank;

typedef struct rm_doctor_prediction {
    double loader_s, compute_s, allreduce_s, optimizer_s; /* slowest rank's */
    double gather_s; /* ZeRO-1: the parameter all-gather after the optimizer (slowest rank's) */
    double h2d_s; /* GPU backend: a batch's copy to the device, overlapped with compute */
    double network_s; /* the part of allreduce_s the all-reduce alone takes */
    double step_s, samples_per_s;
    const char *bottleneck; /* "storage", "compute", "network", "memory" */
    const char *why;        /* one line */
} rm_doctor_prediction;

void rm_doctor_predict(const rm_config *cfg, const rm_doctor_rank *ranks, int n, rm_doctor_prediction *p);

/* The readable table. */
void rm_doctor_print(FILE *out, const rm_config *cfg, const rm_model *model, const rm_doctor_rank *ranks, int n,
                     const rm_doctor_prediction *p);

/* The JSON report (documented in docs/doctor.md). */
void rm_doctor_write_json(FILE *out, const rm_config *cfg, const rm_model *model, const rm_doctor_rank *ranks,
                          int n, const rm_doctor_prediction *p);

#endif
