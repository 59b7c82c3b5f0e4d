/* The GPU's measured GEMM rate, the ceiling MFU is reported against in
 * scripts/gpu-check.sh: cuBLAS C = A B for square matrices (default 8192)
 * in fp32, tf32 and bf16 (bf16 inputs, fp32 accumulation and output, as
 * the GPU backend runs them), and at the shapes of a given MLP's forward
 * products. Prints one JSON object.
 *
 *   ringmaster-bench-gemm-gpu [--size N] [--dims 784,8192,8192,10 --batch 4096]
 */
#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK_CUDA(call)                                                                                    \
    do {                                                                                                    \
        cudaError_t rc_ = (call);                                                                           \
        if (rc_ != cudaSuccess) {                                                                           \
            fprintf(stderr, "gemm_rate_gpu: %s failed at %s:%d: %s\n", #call, __FILE__, __LINE__,            \
                    cudaGetErrorString(rc_));                                                               \
            exit(1);                                                                                        \
        }                                                                                                   \
    } while (0)
#define CHECK_CUBLAS(call)                                                                                  \
    do {                                                                                                    \
        cublasStatus_t rc_ = (call);                                                                        \
        if (rc_ != CUBLAS_STATUS_SUCCESS) {                                                                 \
            fprintf(stderr, "gemm_rate_gpu: %s failed at %s:%d: %s\n", #call, __FILE__, __LINE__,            \
                    cublasGetStatusString(rc_));                                                            \
            exit(1);                                                                                        \
        }                                                                                                   \
    } while (0)

enum { FP32, TF32, BF16 };
static const char *names[] = {"fp32", "tf32", "bf16"};

static void gemm(cublasHandle_t h, int prec, int m, int n, int k, const void *a, const void *b, float *c)
{
    const float one = 1.0f, zero = 0.0f;
    cudaDataType_t t = prec == BF16 ? CUDA_R_16BF : CUDA_R_32F;
    cublasComputeType_t ct = prec == TF32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    CHECK_CUBLAS(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &one, a, t, k, b, t, k, &zero, c, CUDA_R_32F, m,
                              ct, CUBLAS_GEMM_DEFAULT));
}

/* TFLOP/s of `reps` products m x n x k after a warm-up, timed with events. */
static double rate(cublasHandle_t h, cudaStream_t s, int prec, int m, int n, int k, void *a, void *b, float *c)
{
    int reps = 1;
    double flops = 2.0 * m * n * k;
    while (reps * flops < 2e13 && reps < 1000) /* about 20 TFLOP of work per measurement */
        reps *= 2;
    for (int i = 0; i < 3; i++)
        gemm(h, prec, m, n, k, a, b, c);
    cudaEvent_t t0, t1;
    CHECK_CUDA(cudaEventCreate(&t0));
    CHECK_CUDA(cudaEventCreate(&t1));
    CHECK_CUDA(cudaEventRecord(t0, s));
    for (int i = 0; i < reps; i++)
        gemm(h, prec, m, n, k, a, b, c);
    CHECK_CUDA(cudaEventRecord(t1, s));
    CHECK_CUDA(cudaEventSynchronize(t1));
    float ms;
    CHECK_CUDA(cudaEventElapsedTime(&ms, t0, t1));
    cudaEventDestroy(t0);
    cudaEventDestroy(t1);
    return reps * flops / (ms * 1e-3) / 1e12;
}

int main(int argc, char **argv)
{
    long size = 8192, batch = 4096, dims[32];
    int n_dims = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--size") == 0 && i + 1 < argc)
            size = atol(argv[++i]);
        else if (strcmp(argv[i], "--batch") == 0 && i + 1 < argc)
            batch = atol(argv[++i]);
        else if (strcmp(argv[i], "--dims") == 0 && i + 1 < argc) {
            for (char *p = argv[++i]; *p && n_dims < 32;) {
                dims[n_dims++] = strtol(p, &p, 10);
                if (*p == ',')
                    p++;
            }
        } else {
            fprintf(stderr, "usage: %s [--size N] [--dims 784,8192,8192,10 --batch 4096]\n", argv[0]);
            return 2;
        }
    }
    if (size < 16 || batch < 1) {
        fprintf(stderr, "gemm_rate_gpu: --size must be >= 16 and --batch >= 1\n");
        return 2;
    }
    long biggest = size;
    for (int i = 0; i < n_dims; i++)
        biggest = dims[i] > biggest ? dims[i] : biggest;
    biggest = biggest > batch ? biggest : batch;
    size_t elems = (size_t)biggest * (size_t)biggest;
    void *a, *b;
    float *c;
    CHECK_CUDA(cudaMalloc(&a, elems * sizeof(float)));
    CHECK_CUDA(cudaMalloc(&b, elems * sizeof(float)));
    CHECK_CUDA(cudaMalloc((void **)&c, elems * sizeof(float)));
    /* Small values: no infinities in any precision (the rate does not
     * depend on them, but denormals or NaNs could). */
    CHECK_CUDA(cudaMemset(a, 0x3c, elems * sizeof(float)));
    CHECK_CUDA(cudaMemset(b, 0x3c, elems * sizeof(float)));
    cublasHandle_t h;
    cudaStream_t s;
    CHECK_CUDA(cudaStreamCreate(&s));
    CHECK_CUBLAS(cublasCreate(&h));
    CHECK_CUBLAS(cublasSetStream(h, s));
    struct cudaDeviceProp prop;
    int dev;
    CHECK_CUDA(cudaGetDevice(&dev));
    CHECK_CUDA(cudaGetDeviceProperties(&prop, dev));
    printf("{\"device\": \"%s\", \"size\": %ld", prop.name, size);
    for (int p = FP32; p <= BF16; p++)
        printf(", \"%s_tflops\": %.1f", names[p], rate(h, s, p, (int)size, (int)size, (int)size, a, b, c));
    if (n_dims >= 2) {
        /* the forward products of the MLP: [batch x in] x [in x out] per layer */
        printf(", \"model_batch\": %ld", batch);
        for (int p = FP32; p <= BF16; p++) {
            double flops = 0, seconds = 0;
            for (int l = 0; l + 1 < n_dims; l++) {
                double f = 2.0 * (double)batch * (double)dims[l] * (double)dims[l + 1];
                double r = rate(h, s, p, (int)dims[l + 1], (int)batch, (int)dims[l], a, b, c);
                flops += f;
                seconds += f / (r * 1e12);
            }
            printf(", \"model_%s_tflops\": %.1f", names[p], flops / seconds / 1e12);
        }
    }
    printf("}\n");
    cublasDestroy(h);
    cudaStreamDestroy(s);
    cudaFree(a);
    cudaFree(b);
    cudaFree(c);
    return 0;
}
