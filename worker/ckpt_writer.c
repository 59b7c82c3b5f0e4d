#include "ckpt_writer.h"

#include "timer.h"

#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

/* The calling thread's policy: SCHED_IDLE, or back to SCHED_OTHER (its
 * nice value kept). Best effort: a system that refuses leaves nice 10. */
static void set_idle(int idle)
{
#ifdef SCHED_IDLE
    struct sched_param sp = {.sched_priority = 0};
    pthread_setschedparam(pthread_self(), idle ? SCHED_IDLE : SCHED_OTHER, &sp);
#else
    (void)idle;
#endif
}

static void *writer_main(void *arg)
{
    rm_ckpt_writer *w = arg;
    /* Training comes first: on a machine whose cores the workers fill, the
     * writer takes the leftovers instead of preempting a worker mid-step
     * (Linux applies nice per thread). */
    setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 10);
    pthread_mutex_lock(&w->mu);
    for (;;) {
        /* It waits as SCHED_IDLE, whose wake-up never preempts a training
         * thread: the submit comes at the end of the checkpoint's step, and
         * a writer run there at once would lengthen that step. Once it has
         * a core it goes back to nice 10, so the write still gets its
         * share while training fills the cores. */
        set_idle(1);
        while (!w->stopping && !(w->busy && !w->finished))
            pthread_cond_wait(&w->changed, &w->mu);
        set_idle(0);
        if (w->stopping)
            break;
        long step = w->job_step;
        char dir[sizeof w->job_dir];
        memcpy(dir, w->job_dir, sizeof dir);
        pthread_mutex_unlock(&w->mu);

        double t0 = rm_now_s();
        rm_ckpt_file file = {0};
        rm_error err = {.errnum = 0};
        int rc = RM_OK;
        if (mkdir(dir, 0700) != 0 && errno != EEXIST)
            rc = rm_fail_errno(&err, errno, "%s: cannot create checkpoint directory", dir);
        if (w->delay_s > 0)
            usleep((useconds_t)(w->delay_s * 1e6));
        if (rc == RM_OK)
            rc = rm_ckpt_write_image(dir, w->worker, step, &w->image, &file, &err);

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
    if (rm_ckpt_image_init(&w->image, begin, end, n_state, err) != RM_OK)
        return RM_ERR;
    for (int k = 0; k < n_state; k++)
        w->snap[k] = rm_ckpt_image_slice(&w->image, k);
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
    rm_ckpt_image_free(&w->image);
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
