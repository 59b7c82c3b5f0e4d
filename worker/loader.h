/* The loader thread: turns sample assignments into ready batches ahead of
 * compute, so that a step waits on storage only when storage is slower
 * than compute. What a sample becomes depends only on the dataset's
 * format: a labelled record gives input_dim floats in [0,1] and a label
 * byte; a token window gives context int32 inputs and context int32
 * next-token targets. (A model declares which format it reads.)
 *
 * The main thread pushes assignments in step order and takes batches in
 * the same order; the loader fills up to `prefetch` batches ahead. */
#ifndef RINGMASTER_LOADER_H
#define RINGMASTER_LOADER_H

#include "error.h"
#include "protocol.h"
#include "shard.h"

#include <pthread.h>
#include <stdint.h>

typedef struct rm_batch {
    rm_msg_assign assign;
    void *input;  /* n x input_bytes */
    void *target; /* n x target_bytes */
    uint32_t *samples;
} rm_batch;

typedef struct rm_loader {
    const rm_dataset *ds;
    long input_bytes, target_bytes, batch_cap;
    int n_slots, n_assign;
    rm_batch *slots;       /* ring of n_slots batches */
    rm_msg_assign *assigns; /* ring of n_assign pending assignments */
    uint32_t *assign_samples;
    long assigns_pushed, assigns_taken, slots_filled, slots_released;
    pthread_t thread;
    int thread_started;
    pthread_mutex_t mu;
    pthread_cond_t changed;
    int stopping;
    int failed;
    rm_error error;
    /* Test knob (debug.loader_throttle_*): from step throttle_from_step
     * on, batches are read no faster than throttle_bytes_per_s. */
    double throttle_bytes_per_s;
    long throttle_from_step;
} rm_loader;

/* Bytes one sample takes in a batch's input and target. */
void rm_sample_bytes(const rm_dataset *ds, long *input_bytes, long *target_bytes);

/* Decodes sample i of ds into input and target (rm_sample_bytes each). */
int rm_sample_decode(const rm_dataset *ds, long i, void *input, void *target, rm_error *err);

/* ds must outlive the loader. prefetch >= 1 batches of up to batch_cap
 * samples; up to max_pending assignments may wait to be loaded. */
int rm_loader_start(rm_loader *ld, const rm_dataset *ds, long batch_cap, int prefetch, int max_pending, rm_error *err);
void rm_loader_stop(rm_loader *ld);

/* Number of assignments the loader can accept without blocking. */
int rm_loader_free_assign_slots(rm_loader *ld);

/* Queues one assignment (copied). Fails if the queue is full. */
int rm_loader_push(rm_loader *ld, const rm_msg_assign *a, const uint32_t *samples, rm_error *err);

/* Number of assignments pushed but not yet returned by rm_loader_next. */
long rm_loader_outstanding(rm_loader *ld);

/* Blocks until the next batch is ready; it stays valid until
 * rm_loader_release. Fails if the loader hit an error. */
int rm_loader_next(rm_loader *ld, rm_batch **batch, rm_error *err);
void rm_loader_release(rm_loader *ld);

/* The batch after the one rm_loader_next returned, if it is ready (1) or
 * not (0); it stays unchanged until it is released in its turn. */
int rm_loader_peek(rm_loader *ld, rm_batch **batch);

#endif
