#include "trace.h"

#include "json.h"
#include "mpi_check.h"
#include "protocol.h"
#include "timer.h"

#include <mpi.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void metadata(rm_trace *t, const char *what, int tid, const char *name)
{
    fprintf(t->out, "%s{\"ph\":\"M\",\"name\":\"%s\",\"pid\":%d,\"tid\":%d,\"args\":{\"name\":", t->events++ ? ",\n" : "",
            what, t->pid, tid);
    rm_json_string(t->out, name);
    fputs("}}", t->out);
}

void rm_trace_init(rm_trace *t, const long trace_steps[2], int worker, const char *host)
{
    memset(t, 0, sizeof *t);
    t->first = -1;
    if (trace_steps[0] <= 0)
        return;
    t->out = open_memstream(&t->text, &t->len);
    if (!t->out)
        return; /* no trace rather than no training */
    t->first = trace_steps[0] - 1;
    t->last = trace_steps[1] - 1;
    t->pid = worker + 1;
    struct timespec wall;
    clock_gettime(CLOCK_REALTIME, &wall);
    t->wall_minus_mono_s = (double)wall.tv_sec + (double)wall.tv_nsec * 1e-9 - rm_now_s();
    char name[160];
    snprintf(name, sizeof name, "worker %d (rank %d, %s)", worker, worker + 1, host);
    metadata(t, "process_name", 0, name);
    fprintf(t->out, ",\n{\"ph\":\"M\",\"name\":\"process_sort_index\",\"pid\":%d,\"tid\":0,\"args\":{\"sort_index\":%d}}",
            t->pid, t->pid);
    metadata(t, "thread_name", RM_TRACE_TID_PHASES, "step phases");
    metadata(t, "thread_name", RM_TRACE_TID_BUCKETS, "gradient all-reduce buckets");
    metadata(t, "thread_name", RM_TRACE_TID_CHECKPOINT, "checkpoint writer");
    metadata(t, "thread_name", RM_TRACE_TID_NET, "gradient reduction between hosts");
}

void rm_trace_free(rm_trace *t)
{
    if (t->out)
        fclose(t->out);
    free(t->text);
    memset(t, 0, sizeof *t);
    t->first = -1;
}

void rm_trace_event(rm_trace *t, int tid, const char *name, const char *cat, double start_s, double dur_s,
                    long step, const char *args)
{
    if (!t->out || t->sent)
        return;
    double ts_us = (start_s + t->wall_minus_mono_s) * 1e6;
    fprintf(t->out, ",\n{\"ph\":\"X\",\"name\":\"%s\",\"cat\":\"%s\",\"pid\":%d,\"tid\":%d,\"ts\":%.3f,\"dur\":%.3f,"
                    "\"args\":{\"step\":%ld%s%s}}",
            name, cat, t->pid, tid, ts_us, dur_s > 0 ? dur_s * 1e6 : 0.0, step + 1, args ? "," : "", args ? args : "");
    t->events++;
}

int rm_trace_send(rm_trace *t, rm_error *err)
{
    if (!t->out || t->sent)
        return RM_OK;
    t->sent = 1;
    if (fflush(t->out) != 0 || t->len > (size_t)1 << 30)
        return rm_fail(err, "the trace of steps %ld-%ld could not be kept in memory", t->first + 1, t->last + 1);
    RM_MPI_CHECK(MPI_Send(t->text, (int)t->len, MPI_BYTE, 0, RM_TAG_TRACE, MPI_COMM_WORLD), err);
    return RM_OK;
}
