#include "ckpt_writer.h"

#include "timer.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static void *writer_main(void *arg)
{
    rm_ckpt_writer *w = arg;
    /* Training comes first: on a machine whose cores the workers fill, the
     * writer takes the leftovers instead of preempting a worker mid-step
     * (Linux applies nice per thread). */
    setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 10);
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!w->stopping && !(w->busy && !w->finished))
            pthread_cond_wait(&w->changed, &w->mu);
        if (w->stopping)
            break;
        long step = w->job_step;
        char dir[sizeof w->job_dir];
        memcpy(dir, w->job_dir, sizeof dir);
        pthread_mutex_unlock(&w->mu);

        double t0 = rm_now_s();
        rm_ckpt_file file;
        rm_error err = {.errnum = 0};
        int rc = RM_OK;
        if (mkdir(dir, 0700) != 0 && errno != EEXIST)
            rc = rm_fail_errno(&err, errno, "%s: cannot create checkpoint directory", dir);
        if (w->delay_s > 0)
            usleep((useconds_t)(w->delay_s * 1e6));
        if (rc == RM_OK)
            rc = rm_ckpt_write_file(dir, w->worker, step, w->begin, w->end, (const float *const *)w->snap, w->n_state,
                                    &file, &err);

        pthread_mutex_lock(&w->mu);
        w->result = file;
        w->failed = rc != RM_OK;
        w->error = err;
        w->write_s = rm_now_s() - t0;
        w->finished = 1;
        pthread_cond_broadcast(&w->changed);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

int rm_ckpt_writer_start(rm_ckpt_writer *w, int worker, long begin, long end, int n_state, rm_error *err)
{
    memset(w, 0, sizeof *w);
    w->worker = worker;
    w->begin = begin;
    w->end = end;
    w->n_state = n_state;
    for (int k = 0; k < n_state; k++) {
        /* at least one float so an empty slice still has a buffer */
        w->snap[k] = malloc(((size_t)(end - begin) + 1) * sizeof(float));
        if (!w->snap[k]) {
            rm_ckpt_writer_stop(w);
            return rm_fail(err, "out of memory for the checkpoint snapshot");
        }
    }
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->changed, NULL);
    if (pthread_create(&w->thread, NULL, writer_main, w) != 0) {
        rm_ckpt_writer_stop(w);
        return rm_fail(err, "cannot start the checkpoint writer thread");
    }
    w->thread_started = 1;
    return RM_OK;
}

void rm_ckpt_writer_stop(rm_ckpt_writer *w)
{
    if (w->thread_started) {
        pthread_mutex_lock(&w->mu);
        w->stopping = 1;
        pthread_cond_broadcast(&w->changed);
        pthread_mutex_unlock(&w->mu);
        pthread_join(w->thread, NULL);
        pthread_mutex_destroy(&w->mu);
        pthread_cond_destroy(&w->changed);
    }
    for (int k = 0; k < 3; k++)
        free(w->snap[k]);
    memset(w, 0, sizeof *w);
}

double rm_ckpt_writer_wait_idle(rm_ckpt_writer *w)
{
    double t0 = rm_now_s();
    pthread_mutex_lock(&w->mu);
    while (w->busy && !w->finished)
        pthread_cond_wait(&w->changed, &w->mu);
    pthread_mutex_unlock(&w->mu);
    return rm_now_s() - t0;
}

void rm_ckpt_writer_submit(rm_ckpt_writer *w, long step, const char *dir)
{
    pthread_mutex_lock(&w->mu);
    w->job_step = step;
    snprintf(w->job_dir, sizeof w->job_dir, "%s", dir);
    w->busy = 1;
    w->finished = 0;
    pthread_cond_broadcast(&w->changed);
    pthread_mutex_unlock(&w->mu);
}

int rm_ckpt_writer_poll(rm_ckpt_writer *w, long *step, rm_ckpt_file *file, int *failed, rm_error *err,
                        double *write_s)
{
    int got = 0;
    pthread_mutex_lock(&w->mu);
    if (w->busy && w->finished) {
        *step = w->job_step;
        *file = w->result;
        *failed = w->failed;
        *err = w->error;
        *write_s = w->write_s;
        w->busy = 0;
        w->finished = 0;
        got = 1;
    }
    pthread_mutex_unlock(&w->mu);
    return got;
}
