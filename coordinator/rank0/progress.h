/* The coordinator's progress display: one line redrawn in place on a
 * terminal, plain timestamped lines every N steps otherwise (Slurm logs, CI). */
#ifndef RINGMASTER_PROGRESS_H
#define RINGMASTER_PROGRESS_H

typedef struct rm_progress {
    int tty;
    int verbosity;
    long every_steps;
    long total_steps;
    double last_draw_s;
    int drawn; /* a partial line is on screen */
} rm_progress;

typedef struct rm_progress_sample {
    long step; /* completed steps */
    double epoch;
    double loss;
    double samples_per_s;
    double eta_s;
    const char *slowest_phase;
} rm_progress_sample;

void rm_progress_init(rm_progress *p, long total_steps, long every_steps, int verbosity);
void rm_progress_update(rm_progress *p, const rm_progress_sample *s);
/* Ends the in-place line so other output starts on a fresh line. */
void rm_progress_break(rm_progress *p);

#endif
