/* MPI call checking: on failure the enclosing function returns RM_ERR with
 * the call text, file:line, host and MPI's own message in `err`. The
 * caller's main() decides to abort the job. */
#ifndef RINGMASTER_MPI_CHECK_H
#define RINGMASTER_MPI_CHECK_H

#include "error.h"
#include "log.h"

#include <mpi.h>

#define RM_MPI_CHECK(call, err)                                                                            \
    do {                                                                                                   \
        int rm_mpi_rc_ = (call);                                                                           \
        if (rm_mpi_rc_ != MPI_SUCCESS) {                                                                   \
            char rm_mpi_msg_[MPI_MAX_ERROR_STRING];                                                        \
            int rm_mpi_len_ = 0;                                                                           \
            MPI_Error_string(rm_mpi_rc_, rm_mpi_msg_, &rm_mpi_len_);                                      \
            return rm_fail((err), "%s failed at %s:%d on %s: %s", #call, __FILE__, __LINE__, rm_log_host(), \
                           rm_mpi_msg_);                                                                   \
        }                                                                                                  \
    } while (0)

#endif
