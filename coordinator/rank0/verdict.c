#include "verdict.h"

#include <stdarg.h>
#include <stdio.h>

void rm_verdict_go(rm_verdict *v)
{
    v->stop = 0;
    v->exit_code = 0;
    v->worker = -1;
    v->step = -1;
    v->reason[0] = '\0';
}

void rm_verdict_stop(rm_verdict *v, int exit_code, int worker, long step, const char *fmt, ...)
{
    v->stop = 1;
    v->exit_code = exit_code;
    v->worker = worker;
    v->step = step;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v->reason, sizeof v->reason, fmt, ap);
    va_end(ap);
}
