#include "progress.h"

#include "config.h"
#include "timer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

void rm_progress_init(rm_progress *p, long total_steps, long every_steps, int verbosity)
{
    memset(p, 0, sizeof *p);
    /* Under mpirun our stderr is a pipe even when the user sits at a
     * terminal; the launcher says so through RINGMASTER_TTY. */
    const char *tty = getenv("RINGMASTER_TTY");
    p->tty = tty ? strcmp(tty, "1") == 0 : isatty(STDERR_FILENO);
    p->every_steps = every_steps;
    p->total_steps = total_steps;
    p->verbosity = verbosity;
}

static void format_duration(double s, char *out, size_t cap)
{
    long t = s > 0 && s < 1e9 ? (long)(s + 0.5) : 0;
    if (t >= 3600)
        snprintf(out, cap, "%ldh%02ldm", t / 3600, (t / 60) % 60);
    else if (t >= 60)
        snprintf(out, cap, "%ldm%02lds", t / 60, t % 60);
    else
        snprintf(out, cap, "%lds", t);
}

void rm_progress_update(rm_progress *p, const rm_progress_sample *s)
{
    if (p->verbosity == RM_VERBOSITY_QUIET)
        return;
    char eta[32];
    format_duration(s->eta_s, eta, sizeof eta);
    int last = s->step >= p->total_steps;
    if (p->tty) {
        double now = rm_now_s();
        if (!last && now - p->last_draw_s < 0.2)
            return;
        p->last_draw_s = now;
        int width = 24, filled = (int)((double)width * (double)s->step / (double)p->total_steps);
        char bar[32];
        for (int i = 0; i < width; i++)
            bar[i] = i < filled ? '=' : i == filled ? '>' : ' ';
        bar[width] = '\0';
        fprintf(stderr, "\r\033[Kstep %ld/%ld [%s] epoch %.2f  loss %.4f  %.0f samples/s  eta %s  slowest: %s",
                s->step, p->total_steps, bar, s->epoch, s->loss, s->samples_per_s, eta, s->slowest_phase);
        p->drawn = 1;
        if (last)
            rm_progress_break(p);
        fflush(stderr);
        return;
    }
    if (s->step % p->every_steps != 0 && !last && s->step != 1)
        return;
    char when[32];
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm);
    fprintf(stderr, "%s step %ld/%ld epoch %.2f loss %.4f samples/s %.0f eta %s slowest %s\n", when, s->step,
            p->total_steps, s->epoch, s->loss, s->samples_per_s, eta, s->slowest_phase);
}

void rm_progress_break(rm_progress *p)
{
    if (p->tty && p->drawn) {
        fputc('\n', stderr);
        p->drawn = 0;
    }
}
