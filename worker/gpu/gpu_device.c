#include "gpu_device.h"

#include "backend.h"
#include "gpu_check.h"
#include "local_rank.h"
#include "log.h"

#include <stdio.h>
#include <stdlib.h>

static const char *visible_devices(void)
{
    const char *v = getenv("CUDA_VISIBLE_DEVICES");
    return v ? v : "(unset)";
}

int rm_gpu_probe(char *why, size_t why_cap)
{
    int count = 0;
    cudaError_t rc = cudaGetDeviceCount(&count);
    if (rc != cudaSuccess) {
        snprintf(why, why_cap, "no usable CUDA device on %s: cudaGetDeviceCount says %s (%s), CUDA_VISIBLE_DEVICES=%s",
                 rm_log_host(), cudaGetErrorString(rc), cudaGetErrorName(rc), visible_devices());
        cudaGetLastError(); /* not sticky, but leave no error behind */
        return 0;
    }
    if (count < 1) {
        snprintf(why, why_cap, "no CUDA device is visible on %s (CUDA_VISIBLE_DEVICES=%s)", rm_log_host(),
                 visible_devices());
        return 0;
    }
    return count;
}

int rm_gpu_bind(MPI_Comm comm, int *device, rm_error *err)
{
    int local_rank, local_size, rank, count;
    if (rm_local_rank(comm, &local_rank, &local_size, err) != RM_OK)
        return RM_ERR;
    MPI_Comm_rank(comm, &rank);
    RM_CUDA_CHECK(cudaGetDeviceCount(&count), err);
    *device = rm_device_for_local_rank(local_rank, count);
    RM_CUDA_CHECK(cudaSetDevice(*device), err);
    struct cudaDeviceProp prop;
    RM_CUDA_CHECK(cudaGetDeviceProperties(&prop, *device), err);
    if (local_size > count && count > 1 && local_rank == 0)
        rm_warn("%d workers share %d GPUs on %s: devices are shared", local_size, count, rm_log_host());
    rm_info("worker %d: GPU %d of %d (%s, compute capability %d.%d, %.0f GiB), local rank %d of %d, "
            "CUDA_VISIBLE_DEVICES=%s",
            rank, *device, count, prop.name, prop.major, prop.minor, (double)prop.totalGlobalMem / (1 << 30),
            local_rank, local_size, visible_devices());
    return RM_OK;
}

int rm_gpu_capability(int *cc, rm_error *err)
{
    int device, major, minor;
    RM_CUDA_CHECK(cudaGetDevice(&device), err);
    RM_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device), err);
    RM_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device), err);
    *cc = major * 10 + minor;
    return RM_OK;
}
