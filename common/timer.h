#ifndef RINGMASTER_TIMER_H
#define RINGMASTER_TIMER_H

#include <time.h>

/* Monotonic seconds, for intervals only. */
static inline double rm_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

#endif
