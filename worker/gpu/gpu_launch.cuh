/* Launch geometry shared by the elementwise kernels. */
#ifndef RINGMASTER_GPU_LAUNCH_CUH
#define RINGMASTER_GPU_LAUNCH_CUH

#define RM_GPU_THREADS 256

/* Blocks for a grid-stride loop over n elements: enough to fill any
 * current GPU, few enough that each thread does several elements. */
static inline unsigned rm_gpu_blocks(long n)
{
    long blocks = (n + RM_GPU_THREADS - 1) / RM_GPU_THREADS;
    if (blocks > 4096)
        blocks = 4096;
    return blocks < 1 ? 1u : (unsigned)blocks;
}

#endif
