/* The worker's checkpoint writer: a background thread that writes the
 * worker's snapshot (its slice of every state tensor, copied to host
 * memory at a step boundary) into the checkpoint's .tmp directory while
 * training goes on. The main thread polls for the result at step
 * boundaries and reports it to the coordinator. */
#ifndef RINGMASTER_CKPT_WRITER_H
#define RINGMASTER_CKPT_WRITER_H

#include "checkpoint.h"
#include "error.h"

#include <pthread.h>

typedef struct rm_ckpt_writer {
    int worker;
    long begin, end; /* this worker's slice, in floats */
    int n_state;
    rm_ckpt_image image; /* the file as it will lie on disk */
    float *snap[3];  /* the snapshot: slice k of the image, end - begin floats each */
    pthread_t thread;
    int thread_started;
    pthread_mutex_t mu;
    pthread_cond_t changed;
    int stopping;
    int busy;        /* a job is queued or being written */
    int finished;    /* a result waits to be collected */
    long job_step;
    char job_dir[4096];
    rm_ckpt_file result;
    int failed;
    rm_error error;
    double write_s;
    double delay_s; /* test knob: sleep before each write */
} rm_ckpt_writer;

int rm_ckpt_writer_start(rm_ckpt_writer *w, int worker, long begin, long end, int n_state, rm_error *err);
void rm_ckpt_writer_stop(rm_ckpt_writer *w);

/* Blocks until no write is in progress (so the snapshot buffers are free).
 * Returns the seconds waited. */
double rm_ckpt_writer_wait_idle(rm_ckpt_writer *w);

/* Starts writing the snapshot buffers (filled by the caller) as the file
 * of checkpoint `step` in `dir`. */
void rm_ckpt_writer_submit(rm_ckpt_writer *w, long step, const char *dir);

/* Non-blocking: 1 and the outcome when a write has finished since the last
 * call, else 0. */
int rm_ckpt_writer_poll(rm_ckpt_writer *w, long *step, rm_ckpt_file *file, int *failed, rm_error *err,
                        double *write_s);

#endif
