/* What a rank-0 module tells the coordinator's loop after it looked at
 * something: go on, or stop the job with this exit status and reason.
 * Modules never end the process; the loop acts on the verdict (records
 * it in the run directory, then ends every rank). */
#ifndef RINGMASTER_VERDICT_H
#define RINGMASTER_VERDICT_H

#include "protocol.h"

typedef struct rm_verdict {
    int stop;      /* 0: go on */
    int exit_code; /* exit_codes.h */
    int worker;    /* the worker at fault, or -1 */
    long step;     /* 1-based step the job stops in, or -1 */
    char reason[RM_REASON_CAP + 1024];
} rm_verdict;

/* A verdict to go on. */
void rm_verdict_go(rm_verdict *v);

/* Sets a verdict to stop with `exit_code` (printf-style reason). */
void rm_verdict_stop(rm_verdict *v, int exit_code, int worker, long step, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

#endif
