/* Finding and binding this worker's CUDA device. */
#ifndef RINGMASTER_GPU_DEVICE_H
#define RINGMASTER_GPU_DEVICE_H

#include "error.h"

#include <mpi.h>

/* Picks the device from the local rank among the workers on this node
 * (local_rank.h), makes it current, and logs which one it is. Collective
 * over comm. */
int rm_gpu_bind(MPI_Comm comm, int *device, rm_error *err);

/* NCCL takes one GPU per rank: fails, on every worker alike, when two
 * workers of comm ended up on the same physical device (compared by UUID,
 * so it holds whatever CUDA_VISIBLE_DEVICES each one sees). Collective. */
int rm_gpu_check_exclusive(MPI_Comm comm, int device, rm_error *err);

/* Compute capability of the current device, as major * 10 + minor. */
int rm_gpu_capability(int *cc, rm_error *err);

#endif
