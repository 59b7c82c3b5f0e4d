/* `ringmaster validate`'s memory figure for a GPT job: what each worker
 * will hold (common/gpt_memory.h, the backends' own count), and with a
 * device size, whether it fits and the most layers that would. */
#ifndef RINGMASTER_MEMORY_PLAN_H
#define RINGMASTER_MEMORY_PLAN_H

#include "config.h"
#include "shard.h"

#include <stdio.h>

/* Parses a size: bytes, or a number with K, M, G or T (powers of 1024,
 * an optional "iB" or "B" after). RM_OK or RM_ERR naming the text. */
int rm_parse_size(const char *text, size_t *bytes, rm_error *err);

/* Prints the figure for cfg's GPT (nothing for other models): on the GPU
 * backend unless launch.backend is cpu. device_bytes > 0: says whether the
 * job fits in that much (less RM_DEVICE_RESERVE for the CUDA context and
 * libraries) and the most layers at this width that fit. Returns 1 when
 * it was asked and the job does not fit, else 0. */
int rm_print_memory_plan(const rm_config *cfg, const rm_dataset_facts *facts, size_t device_bytes, FILE *out);

#define RM_DEVICE_RESERVE ((size_t)1 << 30)

#endif
