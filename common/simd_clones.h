#ifndef RINGMASTER_SIMD_CLONES_H
#define RINGMASTER_SIMD_CLONES_H

/* RM_SIMD_CLONES before a function's definition: GCC compiles it once per
 * x86-64 level (AVX-512, AVX2, and the baseline) and the loader picks the
 * widest the machine runs. For the optimizer's pass over every parameter,
 * which the baseline SSE2 build of any x86-64 runs several times slower
 * than memory allows. Each element is computed on its own, and ISO C mode
 * never contracts into FMA, so every clone gives the same bits. Other
 * compilers and machines get the one baseline build. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && __GNUC__ >= 12
#define RM_SIMD_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define RM_SIMD_CLONES
#endif

#endif
