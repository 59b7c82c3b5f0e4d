/* Which device a worker uses: its index among the workers on its node
 * (the local rank), modulo the devices it can see. */
#ifndef RINGMASTER_LOCAL_RANK_H
#define RINGMASTER_LOCAL_RANK_H

#include "error.h"

#include <mpi.h>

/* The local rank from the workers' communicator (MPI_Comm_split_type
 * shared: collective over comm). Not OMPI_COMM_WORLD_LOCAL_RANK or
 * SLURM_LOCALID: those count the coordinator, which shares the first node
 * with the first workers, and under mpirun inside sbatch every rank sees
 * SLURM_LOCALID of the batch step. */
int rm_local_rank(MPI_Comm comm, int *local_rank, int *local_size, rm_error *err);

/* One visible device: 0 (srun --gpus-per-task=1 and the like already chose
 * it); several: local_rank % count. count >= 1. */
int rm_device_for_local_rank(int local_rank, int count);

#endif
