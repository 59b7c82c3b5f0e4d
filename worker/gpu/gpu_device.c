#include "gpu_device.h"

#include "backend.h"
#include "gpu_check.h"
#include "local_rank.h"
#include "log.h"
#include "mpi_check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

typedef struct device_id {
    unsigned char uuid[16];
    char host[64];
} device_id;

int rm_gpu_check_exclusive(MPI_Comm comm, int device, rm_error *err)
{
    int rank, size;
    RM_MPI_CHECK(MPI_Comm_rank(comm, &rank), err);
    RM_MPI_CHECK(MPI_Comm_size(comm, &size), err);
    struct cudaDeviceProp prop;
    RM_CUDA_CHECK(cudaGetDeviceProperties(&prop, device), err);
    device_id mine;
    memset(&mine, 0, sizeof mine);
    memcpy(mine.uuid, prop.uuid.bytes, sizeof mine.uuid);
    snprintf(mine.host, sizeof mine.host, "%s", rm_log_host());
    device_id *all = malloc((size_t)size * sizeof *all);
    if (!all)
        return rm_fail(err, "out of memory");
    int rc = MPI_Allgather(&mine, (int)sizeof mine, MPI_BYTE, all, (int)sizeof mine, MPI_BYTE, comm);
    if (rc != MPI_SUCCESS) {
        free(all);
        RM_MPI_CHECK(rc, err);
    }
    for (int a = 0; a < size; a++)
        for (int b = a + 1; b < size; b++)
            if (memcmp(all[a].uuid, all[b].uuid, sizeof all[a].uuid) == 0) {
                rm_fail(err,
                        "workers %d and %d both run on the same GPU on %s: NCCL needs one GPU per worker "
                        "(run fewer workers per node, or make more GPUs visible to them)",
                        a, b, all[a].host);
                free(all);
                return RM_ERR;
            }
    free(all);
    return RM_OK;
}

/* Page-locked to device memory on one stream, timed by events after one
 * warm-up copy; the buffers are freed on every path. */
static int time_copies(void *host, void *dev, size_t bytes, cudaStream_t stream, cudaEvent_t t0, cudaEvent_t t1,
                       double *gb_s, rm_error *err)
{
    enum { COPIES = 10 };
    RM_CUDA_CHECK(cudaMemcpyAsync(dev, host, bytes, cudaMemcpyHostToDevice, stream), err);
    RM_CUDA_CHECK(cudaEventRecord(t0, stream), err);
    for (int i = 0; i < COPIES; i++)
        RM_CUDA_CHECK(cudaMemcpyAsync(dev, host, bytes, cudaMemcpyHostToDevice, stream), err);
    RM_CUDA_CHECK(cudaEventRecord(t1, stream), err);
    RM_CUDA_CHECK(cudaEventSynchronize(t1), err);
    float ms = 0;
    RM_CUDA_CHECK(cudaEventElapsedTime(&ms, t0, t1), err);
    *gb_s = ms > 0 ? (double)bytes * COPIES / (ms * 1e-3) / 1e9 : 0;
    return RM_OK;
}

int rm_gpu_h2d_rate(size_t bytes, double *gb_s, rm_error *err)
{
    *gb_s = 0;
    void *host = NULL, *dev = NULL;
    cudaStream_t stream = NULL;
    cudaEvent_t t0 = NULL, t1 = NULL;
    int rc = RM_ERR;
    cudaError_t e;
    if ((e = cudaMallocHost(&host, bytes)) != cudaSuccess || (e = cudaMalloc(&dev, bytes)) != cudaSuccess ||
        (e = cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking)) != cudaSuccess ||
        (e = cudaEventCreate(&t0)) != cudaSuccess || (e = cudaEventCreate(&t1)) != cudaSuccess) {
        rm_fail(err, "host-to-device probe of %zu bytes on %s: %s", bytes, rm_log_host(), cudaGetErrorString(e));
        goto out;
    }
    memset(host, 1, bytes);
    rc = time_copies(host, dev, bytes, stream, t0, t1, gb_s, err);
out:
    if (t1)
        cudaEventDestroy(t1);
    if (t0)
        cudaEventDestroy(t0);
    if (stream)
        cudaStreamDestroy(stream);
    cudaFree(dev);
    cudaFreeHost(host);
    return rc;
}
