#include "local_rank.h"

#include "mpi_check.h"

int rm_local_rank(MPI_Comm comm, int *local_rank, int *local_size, rm_error *err)
{
    MPI_Comm node;
    int rank;
    RM_MPI_CHECK(MPI_Comm_rank(comm, &rank), err);
    RM_MPI_CHECK(MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node), err);
    int rc1 = MPI_Comm_rank(node, local_rank), rc2 = MPI_Comm_size(node, local_size);
    MPI_Comm_free(&node);
    RM_MPI_CHECK(rc1, err);
    RM_MPI_CHECK(rc2, err);
    return RM_OK;
}

int rm_device_for_local_rank(int local_rank, int count)
{
    if (count <= 1)
        return 0;
    return local_rank % count;
}
