/* What one worker's GPT takes in memory, part by part, counted from the
 * shape the way the backends allocate it (worker/gpt_cpu.c and
 * worker/gpu/gpt_gpu.c plan their activations with the same sizes, which
 * tests/test_gpt_grad.c and tests/test_gpu.c hold to this count), so that
 * `ringmaster validate` can say before a launch whether a job fits a
 * device, and which shape is the largest that does. */
#ifndef RINGMASTER_GPT_MEMORY_H
#define RINGMASTER_GPT_MEMORY_H

#include "gpt_layout.h"

#include <stddef.h>

typedef struct rm_gpt_memory_plan {
    int gpu;         /* the GPU backend's buffers, else the CPU backend's */
    long micro_batch; /* sequences one forward holds */
    long local_batch; /* sequences of the worker's whole batch (the GPU's token buffers hold one) */
    int precision;   /* enum rm_precision */
    int attention;   /* enum rm_attention (GPU) */
    int recompute;   /* enum rm_recompute */
    int moments;     /* optimizer tensors per parameter: 1 (SGD) or 2 (AdamW) */
    long state_params; /* parameters whose optimizer state the worker holds (all, or its ZeRO-1 slice) */
} rm_gpt_memory_plan;

typedef struct rm_gpt_memory {
    size_t weights;     /* fp32 parameters, and their bf16 copy on the GPU under bf16 */
    size_t gradients;   /* fp32 */
    size_t optimizer;   /* the moments the worker holds */
    size_t activations; /* one micro-batch's, with the backward's scratch */
    size_t other;       /* token buffers, per-position losses, the encoder's backward plan */
    size_t total;
} rm_gpt_memory;

/* The activation bytes alone, as rm_gpt_cpu_init or rm_gpt_gpu_init
 * allocate them for this plan. */
size_t rm_gpt_activation_bytes(const rm_gpt_layout *g, const rm_gpt_memory_plan *p);

void rm_gpt_memory_count(const rm_gpt_layout *g, const rm_gpt_memory_plan *p, rm_gpt_memory *out);

#endif
