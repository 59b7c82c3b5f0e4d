/* One check macro per GPU library. On failure the enclosing function
 * returns RM_ERR with the call text, file:line, host and the library's own
 * message in `err`; main() decides what the failure means for the job. A
 * kernel entry point (gpu_ops.h) returns cudaGetLastError() after its
 * launch, so RM_CUDA_CHECK around it checks the launch. */
#ifndef RINGMASTER_GPU_CHECK_H
#define RINGMASTER_GPU_CHECK_H

#include "error.h"
#include "log.h"

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <nccl.h>

#define RM_CUDA_CHECK(call, err)                                                                              \
    do {                                                                                                      \
        cudaError_t rm_cuda_rc_ = (call);                                                                     \
        if (rm_cuda_rc_ != cudaSuccess)                                                                       \
            return rm_fail((err), "%s failed at %s:%d on %s: %s (%s)", #call, __FILE__, __LINE__, rm_log_host(), \
                           cudaGetErrorString(rm_cuda_rc_), cudaGetErrorName(rm_cuda_rc_));                   \
    } while (0)

#define RM_CUBLAS_CHECK(call, err)                                                                            \
    do {                                                                                                      \
        cublasStatus_t rm_cublas_rc_ = (call);                                                                \
        if (rm_cublas_rc_ != CUBLAS_STATUS_SUCCESS)                                                           \
            return rm_fail((err), "%s failed at %s:%d on %s: %s (%s)", #call, __FILE__, __LINE__, rm_log_host(), \
                           cublasGetStatusString(rm_cublas_rc_), cublasGetStatusName(rm_cublas_rc_));         \
    } while (0)

#define RM_NCCL_CHECK(call, err)                                                                              \
    do {                                                                                                      \
        ncclResult_t rm_nccl_rc_ = (call);                                                                    \
        if (rm_nccl_rc_ != ncclSuccess)                                                                       \
            return rm_fail((err), "%s failed at %s:%d on %s: %s", #call, __FILE__, __LINE__, rm_log_host(),     \
                           ncclGetErrorString(rm_nccl_rc_));                                                  \
    } while (0)

#endif
