/* A worker's Chrome-trace timeline of the steps in observe.trace_steps:
 * complete events ("ph":"X", ts/dur in microseconds of the wall clock, so
 * the traces of several hosts line up as well as their clocks do), one
 * process per rank, one thread per activity (step phases, all-reduce
 * buckets, checkpoint writer). The events go to the coordinator in one
 * message (RM_TAG_TRACE), which writes them into the run directory: the
 * workers need no file system in common with it. */
#ifndef RINGMASTER_TRACE_H
#define RINGMASTER_TRACE_H

#include "error.h"

#include <stdio.h>

/* One line per activity; a hierarchical reduction's stage between hosts,
 * and its parameter all-gather, on RM_TRACE_TID_NET. */
enum rm_trace_tid {
    RM_TRACE_TID_PHASES = 0,
    RM_TRACE_TID_BUCKETS = 1,
    RM_TRACE_TID_CHECKPOINT = 2,
    RM_TRACE_TID_NET = 3,
};

typedef struct rm_trace {
    long first, last; /* 0-based steps traced, inclusive; first < 0: off */
    int pid;          /* the MPI rank */
    double wall_minus_mono_s;
    FILE *out; /* memstream over text */
    char *text;
    size_t len;
    long events;
    int sent;
} rm_trace;

/* trace_steps: the config's [from, to] (1-based; [0, 0] = off). */
void rm_trace_init(rm_trace *t, const long trace_steps[2], int worker, const char *host);
void rm_trace_free(rm_trace *t);

/* 1 if `step` (0-based) is traced. */
static inline int rm_trace_wants(const rm_trace *t, long step)
{
    return t->first >= 0 && step >= t->first && step <= t->last;
}

/* One complete event from start_s (rm_now_s clock) lasting dur_s. args:
 * JSON members for "args" without braces, or NULL. */
void rm_trace_event(rm_trace *t, int tid, const char *name, const char *cat, double start_s, double dur_s,
                    long step, const char *args);

/* Sends the events to the coordinator (once; nothing if there are none). */
int rm_trace_send(rm_trace *t, rm_error *err);

#endif
