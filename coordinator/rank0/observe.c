/* Per-worker figures, stragglers, slowdowns and the live /metrics text.
 *
 * Stragglers are judged by each worker's own compute time (forward and
 * backward, measured before it waits in the collective): after the
 * collective every worker looks as slow as the slowest. Over the last
 * observe.straggler_window_steps steps, a worker whose median compute time
 * exceeds the median of the other workers' medians by
 * observe.straggler_threshold, at every judgement (one every tenth of a
 * window) for a whole window and STRAGGLER_MIN_S, is named, provided the excess is at least a
 * fifth of the median step time (below that it costs the job little):
 * medians and persistence, so that noisy steps (a checkpoint, a page
 * fault, a neighbour's burst on a shared machine) name nobody.
 *
 * Slowdowns compare the median step time of the last few steps with the
 * median of the observe.slowdown_window_steps steps before them; past
 * observe.slowdown_threshold for SLOWDOWN_MIN_S, the
 * phase that grew the most on the step's critical path (the last worker
 * to reach the collective) is named as the cause, in the words of the
 * job's reduction transport and hosts (shared memory is not a network). */
#include "observe.h"

#include "fsutil.h"
#include "http_metrics.h"
#include "json.h"
#include "json_scan.h"
#include "log.h"
#include "mpi_check.h"
#include "timer.h"
#include "token_file.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Per worker and step, the phases and then the time the worker waited for
 * a core (other work on its host). */
#define COL_RUN_DELAY RM_N_PHASES
#define COLS (RM_N_PHASES + 1)

typedef struct straggler_record {
    int flagged;       /* now */
    int over;          /* consecutive judgements above the threshold */
    int under;         /* ... and, while named, well below it */
    double over_since_s; /* when the judgements above began */
    int ever;          /* named at least once */
    long first_step;   /* 1-based step it was first named at */
    double ratio;      /* at the last judgement */
    double max_ratio;  /* over the run */
    double median_s, others_s;
} straggler_record;

typedef struct slowdown_event {
    long step;
    double ratio, step_s, baseline_s, growth_s;
    int phase;
    int contended; /* the workers' wait for a core explains it */
} slowdown_event;

#define MAX_SLOWDOWN_EVENTS 64
/* Judgements in a row (one every tenth of a window) above the threshold
 * before a worker is named: a whole window's worth, so that a neighbour's
 * burst of load on a shared host (seconds of it were seen) names nobody,
 * while a worker that is slow for good is named one window after it
 * began. Cleared after a few judgements in a row well below it. */
#define STRAGGLER_PERSISTENCE 10
#define STRAGGLER_CLEAR_PERSISTENCE 3
/* ... and for this long: on a host whose cores are shared with other
 * work, the scheduler starves one worker or the other for a second or
 * two at a time (seen under a parallel build on a 2-core machine). */
#define STRAGGLER_MIN_S 3.0
/* A slowdown must hold this long before it is reported: a page-cache flush or a neighbour's compile slows a few
 * hundred millisecond-steps, which is not a change in the job. */
#define SLOWDOWN_MIN_S 2.0
/* ... and its extra compute time must be at least this part of the step. */
#define STRAGGLER_MIN_STEP_FRACTION 0.2

/* The figures /metrics shows, copied under the lock at each step. */
typedef struct live_figures {
    long step, total_steps;
    double epoch, loss, lr, samples_per_s, eval_accuracy;
    long evals;
    double *phase; /* workers x RM_N_PHASES, the last step */
    int *straggler;
    double *straggler_ratio;
    long slowdowns;
    long stragglers_named;
} live_figures;

struct rm_observe {
    rm_observe_setup s;
    int one_host; /* every worker on one host: the reduction goes through its memory */
    int workers;
    int n_slots;
    double *pending; /* n_slots x workers x COLS: reports of steps not yet complete */

    /* stragglers */
    long window;
    double *compute_hist; /* window x workers */
    double *step_hist;    /* window: the slowest worker's step time */
    long compute_count;
    straggler_record *stragglers;
    double *medians; /* workers */
    double *scratch; /* max(window, workers, slowdown ring) doubles */

    /* slowdowns */
    long base_len, recent_len, ring_len;
    double *ring; /* ring_len x COLS: per step, max over workers */
    long ring_count;
    long cooldown_until; /* completed-step count before which no new event */
    double last_base_step_s; /* the baseline median, refreshed every recent_len steps or when needed */
    double slow_since_s;     /* when the recent steps first ran slow against it; 0: they do not */
    double held_base[COLS]; /* the phases' baseline medians when they did */
    slowdown_event events[MAX_SLOWDOWN_EVENTS];
    slowdown_event last_event;
    int n_events;
    long n_events_total;

    /* /metrics */
    pthread_mutex_t mu;
    live_figures live;
    rm_http_metrics *http;

    /* traces: one fragment of comma-separated events per worker */
    char **trace;
    size_t *trace_len;
    int traces;
};

static double *pending_at(rm_observe *o, long step, int worker)
{
    return o->pending + (((size_t)(step % o->n_slots) * (size_t)o->workers) + (size_t)worker) * COLS;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median of v[0..n) (reorders v). */
static double median(double *v, long n)
{
    if (n <= 0)
        return 0;
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void render(void *ctx, FILE *out);

rm_observe *rm_observe_create(const rm_observe_setup *setup, rm_error *err)
{
    rm_observe *o = calloc(1, sizeof *o);
    if (!o) {
        rm_fail(err, "out of memory");
        return NULL;
    }
    o->s = *setup;
    const rm_config *cfg = setup->cfg;
    o->one_host = rm_roster_one_host(setup->roster);
    o->workers = setup->roster->workers;
    o->n_slots = setup->step_slots;
    o->window = cfg->straggler_window_steps;
    o->base_len = cfg->slowdown_window_steps;
    o->recent_len = o->base_len / 10 > 5 ? o->base_len / 10 : 5;
    o->ring_len = o->base_len + o->recent_len;
    long scratch = o->window > o->ring_len ? o->window : o->ring_len;
    if (scratch < o->workers)
        scratch = o->workers;
    size_t w = (size_t)o->workers;
    o->pending = calloc((size_t)o->n_slots * w * COLS, sizeof(double));
    o->compute_hist = calloc((size_t)o->window * w, sizeof(double));
    o->step_hist = calloc((size_t)o->window, sizeof(double));
    o->stragglers = calloc(w, sizeof *o->stragglers);
    o->medians = calloc(w, sizeof(double));
    o->scratch = calloc((size_t)scratch, sizeof(double));
    o->ring = calloc((size_t)o->ring_len * COLS, sizeof(double));
    o->live.phase = calloc(w * RM_N_PHASES, sizeof(double));
    o->live.straggler = calloc(w, sizeof(int));
    o->live.straggler_ratio = calloc(w, sizeof(double));
    o->trace = calloc(w, sizeof *o->trace);
    o->trace_len = calloc(w, sizeof *o->trace_len);
    pthread_mutex_init(&o->mu, NULL);
    if (!o->pending || !o->compute_hist || !o->step_hist || !o->stragglers || !o->medians || !o->scratch || !o->ring || !o->live.phase ||
        !o->live.straggler || !o->live.straggler_ratio || !o->trace || !o->trace_len) {
        rm_observe_destroy(o);
        rm_fail(err, "out of memory");
        return NULL;
    }
    o->live.total_steps = setup->total_steps;
    o->live.step = setup->first_step;
    o->live.eval_accuracy = NAN;

    if (cfg->metrics_port >= 0) {
        char token[RM_TOKEN_CAP] = "";
        if (cfg->metrics_token_file[0] &&
            (rm_config_check_token_file(cfg, err) != RM_OK ||
             rm_token_file_read(cfg->metrics_token_file, token, sizeof token, err) != RM_OK)) {
            rm_observe_destroy(o);
            return NULL;
        }
        o->http = rm_http_metrics_start(cfg->metrics_address, (int)cfg->metrics_port, token, render, o, err);
        memset(token, 0, sizeof token);
        if (!o->http) {
            rm_observe_destroy(o);
            return NULL;
        }
        const char *a = cfg->metrics_address;
        char url[RM_NAME_CAP + 64], fields[RM_NAME_CAP + 128], path[RM_PATH_CAP + 32];
        snprintf(url, sizeof url, "http://%s%s%s:%d/metrics", strchr(a, ':') ? "[" : "", a, strchr(a, ':') ? "]" : "",
                 rm_http_metrics_port(o->http));
        snprintf(fields, sizeof fields, "\"url\":\"%s\",\"token\":%s", url,
                 cfg->metrics_token_file[0] ? "true" : "false");
        rm_run_dir_event(o->s.rd, "metrics_endpoint", fields);
        snprintf(path, sizeof path, "%s/metrics-url.txt", o->s.rd->path);
        char line[sizeof url + 1];
        snprintf(line, sizeof line, "%s\n", url);
        if (rm_write_file_atomic(path, line, strlen(line), err) != RM_OK) {
            rm_observe_destroy(o);
            return NULL;
        }
        if (cfg->verbosity != RM_VERBOSITY_QUIET)
            rm_info("serving Prometheus metrics at %s%s", url, cfg->metrics_token_file[0] ? " (bearer token)" : "");
    }
    return o;
}

void rm_observe_destroy(rm_observe *o)
{
    if (!o)
        return;
    rm_http_metrics_stop(o->http);
    pthread_mutex_destroy(&o->mu);
    for (int w = 0; o->trace && w < o->workers; w++)
        free(o->trace[w]);
    free(o->trace);
    free(o->trace_len);
    free(o->pending);
    free(o->compute_hist);
    free(o->step_hist);
    free(o->stragglers);
    free(o->medians);
    free(o->scratch);
    free(o->ring);
    free(o->live.phase);
    free(o->live.straggler);
    free(o->live.straggler_ratio);
    free(o);
}

void rm_observe_add_report(rm_observe *o, const rm_msg_report *r, int worker)
{
    double *p = pending_at(o, r->step, worker);
    memcpy(p, r->phase_s, RM_N_PHASES * sizeof(double));
    p[COL_RUN_DELAY] = r->run_delay_s > 0 ? r->run_delay_s : 0;
}

/* What to look at when phase p grows, on this job's transport and hosts. */
static const char *cause_of(const rm_observe *o, int p)
{
    return rm_phase_cause(p, o->s.roster->transport, o->one_host);
}

static void event_json(rm_observe *o, const char *name, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void event_json(rm_observe *o, const char *name, const char *fmt, ...)
{
    char fields[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(fields, sizeof fields, fmt, ap);
    va_end(ap);
    rm_run_dir_event(o->s.rd, name, fields);
}

/* What a slowdown event tells the user to look at. */
static const char *event_cause(const rm_observe *o, const slowdown_event *e)
{
    return e->contended ? "cpu contention" : cause_of(o, e->phase);
}

/* Judges every worker over the last `window` steps of compute time. */
static void judge_stragglers(rm_observe *o, long step1)
{
    const rm_config *cfg = o->s.cfg;
    double thr = cfg->straggler_threshold;
    double *tmp = o->scratch, *medians = o->medians;
    memcpy(tmp, o->step_hist, (size_t)o->window * sizeof *tmp);
    double step_s = median(tmp, o->window);
    for (int w = 0; w < o->workers; w++) {
        for (long i = 0; i < o->window; i++)
            tmp[i] = o->compute_hist[(size_t)i * (size_t)o->workers + (size_t)w];
        medians[w] = median(tmp, o->window);
    }
    for (int w = 0; w < o->workers; w++) {
        long n = 0;
        for (int j = 0; j < o->workers; j++)
            if (j != w)
                tmp[n++] = medians[j];
        double others = median(tmp, n);
        double ratio = others > 0 ? medians[w] / others : 1.0;
        straggler_record *s = &o->stragglers[w];
        s->ratio = ratio;
        s->median_s = medians[w];
        s->others_s = others;
        const rm_worker_info *in = &o->s.roster->info[w];
        /* A worker slower by a sliver of the step is not worth naming,
         * however large the ratio of two tiny compute times. */
        int slow = ratio > thr && medians[w] - others > STRAGGLER_MIN_STEP_FRACTION * step_s;
        s->over = slow ? s->over + 1 : 0;
        if (s->over == 1)
            s->over_since_s = rm_now_s();
        s->under = s->flagged && ratio < 1 + (thr - 1) / 2 ? s->under + 1 : 0;
        if (!s->flagged && s->over >= STRAGGLER_PERSISTENCE && rm_now_s() - s->over_since_s >= STRAGGLER_MIN_S) {
            s->flagged = 1;
            if (!s->ever)
                s->first_step = step1;
            s->ever = 1;
            if (ratio > s->max_ratio)
                s->max_ratio = ratio;
            rm_progress_break(o->s.progress);
            rm_warn("straggler: worker %d (rank %d, host %s) computes %.2fx as long as the others over the last %ld "
                    "steps (median %.2f ms vs %.2f ms, +%.0f%%)",
                    w, w + 1, in->host, ratio, o->window, medians[w] * 1e3, others * 1e3, (ratio - 1) * 100);
            char host[RM_HOST_CAP * 2 + 8];
            char *h = NULL;
            size_t hl = 0;
            FILE *m = open_memstream(&h, &hl);
            if (m) {
                rm_json_string(m, in->host);
                fclose(m);
            }
            snprintf(host, sizeof host, "%s", h ? h : "\"?\"");
            free(h);
            event_json(o, "straggler",
                       "\"step\":%ld,\"worker\":%d,\"rank\":%d,\"host\":%s,\"slower_by\":%.4g,"
                       "\"compute_median_s\":%.6g,\"others_median_s\":%.6g,\"window_steps\":%ld",
                       step1, w, w + 1, host, ratio, medians[w], others, o->window);
        } else if (s->flagged && s->under >= STRAGGLER_CLEAR_PERSISTENCE) {
            /* Hysteresis: cleared well below the threshold, so a worker
             * hovering around it is not named again and again. */
            s->flagged = 0;
            s->under = 0;
            rm_progress_break(o->s.progress);
            rm_info("straggler cleared: worker %d (rank %d, host %s) is back to %.2fx the others", w, w + 1, in->host,
                    ratio);
            event_json(o, "straggler_cleared", "\"step\":%ld,\"worker\":%d,\"rank\":%d,\"ratio\":%.4g", step1, w,
                       w + 1, ratio);
        }
        if (s->flagged && ratio > s->max_ratio)
            s->max_ratio = ratio;
    }
}

/* Median of phase p over `len` ring entries from `from` (ring index). */
static double ring_median(rm_observe *o, long from, long len, int p)
{
    for (long i = 0; i < len; i++)
        o->scratch[i] = o->ring[((from + i) % o->ring_len) * COLS + p];
    return median(o->scratch, len);
}

/* Steps run slow against their rolling median when the median of the
 * recent window passes the threshold. The baseline is then held, and the
 * slowdown is reported once it has lasted SLOWDOWN_MIN_S (a burst that
 * ends before is forgotten), with the phase that grew the most. */
static void judge_slowdown(rm_observe *o, long step1)
{
    const rm_config *cfg = o->s.cfg;
    double thr = cfg->slowdown_threshold;
    if (o->ring_count < o->ring_len || o->ring_count < o->cooldown_until)
        return;
    /* ring index of the oldest entry */
    long oldest = o->ring_count % o->ring_len, recent_from = oldest + o->base_len;
    double *base = o->held_base, recent[COLS], recent_mean[COLS];
    /* The step time first, and the phases only when it has grown: this
     * runs on every step, on cores the workers share. */
    double recent_step = ring_median(o, recent_from, o->recent_len, RM_PHASE_STEP);
    if (!o->slow_since_s) {
        if (recent_step <= thr * o->last_base_step_s && o->last_base_step_s > 0 &&
            o->ring_count % o->recent_len != 0)
            return;
        o->last_base_step_s = ring_median(o, oldest, o->base_len, RM_PHASE_STEP);
        if (recent_step <= thr * o->last_base_step_s)
            return;
        for (int p = 0; p < COLS; p++)
            base[p] = ring_median(o, oldest, o->base_len, p);
        o->slow_since_s = rm_now_s();
    } else if (recent_step <= thr * base[RM_PHASE_STEP]) {
        o->slow_since_s = 0; /* a burst, over */
        return;
    }
    if (rm_now_s() - o->slow_since_s < SLOWDOWN_MIN_S)
        return;
    o->slow_since_s = 0;
    for (int p = 0; p < COLS; p++) {
        recent_mean[p] = 0;
        for (long i = 0; i < o->recent_len; i++)
            recent_mean[p] += o->ring[((recent_from + i) % o->ring_len) * COLS + p] / (double)o->recent_len;
        recent[p] = ring_median(o, recent_from, o->recent_len, p);
    }
    double ratio = base[RM_PHASE_STEP] > 0 ? recent[RM_PHASE_STEP] / base[RM_PHASE_STEP] : 1;
    if (ratio <= cfg->slowdown_threshold)
        return;
    /* The median says that most recent steps are slow; which phase made
     * them slow is read from the means, since just after a change the
     * recent window still mixes slow and normal steps and a phase's median
     * can fall on a normal one. */
    int grew = RM_PHASE_COMPUTE;
    for (int p = 0; p < RM_PHASE_STEP; p++)
        if (recent_mean[p] - base[p] > recent_mean[grew] - base[grew])
            grew = p;
    /* A worker that waited for a core (runnable, not running) slows the
     * phase it was in and every worker that waits for it in the
     * reduction: when that wait explains half the step's growth, the
     * cause is other work on the host, whichever phase it landed in. */
    double delay_growth = recent_mean[COL_RUN_DELAY] - base[COL_RUN_DELAY];
    int contended = delay_growth > 0.5 * (recent_mean[RM_PHASE_STEP] - base[RM_PHASE_STEP]);
    slowdown_event event = {step1, ratio, recent[RM_PHASE_STEP], base[RM_PHASE_STEP], recent_mean[grew] - base[grew],
                            grew, contended};
    const slowdown_event *e = &event;
    o->n_events_total++;
    o->last_event = event;
    if (o->n_events < MAX_SLOWDOWN_EVENTS)
        o->events[o->n_events++] = event;
    /* The baseline must refill before the next judgement, or one
     * slowdown would be reported on every step. */
    o->cooldown_until = o->ring_count + o->ring_len;
    rm_progress_break(o->s.progress);
    if (contended)
        rm_warn("slowdown at step %ld: step time %.2f ms is %.2fx its rolling median %.2f ms; the workers waited "
                "for a core %.2f ms per step (was %.2f): look at %s (other processes on the host)",
                step1, recent[RM_PHASE_STEP] * 1e3, ratio, base[RM_PHASE_STEP] * 1e3,
                recent_mean[COL_RUN_DELAY] * 1e3, base[COL_RUN_DELAY] * 1e3, event_cause(o, e));
    else
        rm_warn("slowdown at step %ld: step time %.2f ms is %.2fx its rolling median %.2f ms; %s grew the most "
                "(%.2f -> %.2f ms on average): look at %s",
                step1, recent[RM_PHASE_STEP] * 1e3, ratio, base[RM_PHASE_STEP] * 1e3, rm_phases[grew].title,
                base[grew] * 1e3, recent_mean[grew] * 1e3, event_cause(o, e));
    event_json(o, "slowdown",
               "\"step\":%ld,\"cause\":\"%s\",\"phase\":\"%s\",\"step_s\":%.6g,\"baseline_step_s\":%.6g,"
               "\"ratio\":%.4g,\"phase_s\":%.6g,\"baseline_phase_s\":%.6g,\"run_delay_s\":%.6g,"
               "\"baseline_run_delay_s\":%.6g",
               step1, event_cause(o, e), rm_phases[grew].label, recent[RM_PHASE_STEP], base[RM_PHASE_STEP], ratio,
               recent_mean[grew], base[grew], recent_mean[COL_RUN_DELAY], base[COL_RUN_DELAY]);
}

void rm_observe_complete_step(rm_observe *o, const rm_observe_step *s, FILE *line)
{
    const rm_config *cfg = o->s.cfg;
    long step1 = s->step + 1;
    double maxima[COLS] = {0};
    for (int w = 0; w < o->workers; w++)
        if (pending_at(o, s->step, w)[COL_RUN_DELAY] > maxima[COL_RUN_DELAY])
            maxima[COL_RUN_DELAY] = pending_at(o, s->step, w)[COL_RUN_DELAY];
    fputs(",\"per_worker\":{", line);
    for (int p = 0; p < RM_N_PHASES; p++) {
        fprintf(line, "%s\"%s\":[", p ? "," : "", rm_phases[p].json);
        for (int w = 0; w < o->workers; w++) {
            double v = pending_at(o, s->step, w)[p];
            if (v > maxima[p])
                maxima[p] = v;
            if (w)
                fputc(',', line);
            rm_json_number(line, v);
        }
        fputc(']', line);
    }
    fputc('}', line);

    if (o->workers > 1) {
        long at = o->compute_count % o->window;
        for (int w = 0; w < o->workers; w++)
            o->compute_hist[(size_t)at * (size_t)o->workers + (size_t)w] = pending_at(o, s->step, w)[RM_PHASE_COMPUTE];
        o->step_hist[at] = s->step_s;
        o->compute_count++;
        /* Judged every tenth of a window: the medians move slowly. */
        long every = o->window / 10 > 1 ? o->window / 10 : 1;
        if (o->compute_count >= o->window && o->compute_count % every == 0)
            judge_stragglers(o, step1);
    }
    /* The step as its critical path saw it: the last worker to reach the
     * collective held everyone up, so its data wait and compute explain
     * the step and its all-reduce wait is the reduction's own time; the
     * others' waits also hold the time they waited for it. */
    int last = 0;
    for (int w = 1; w < o->workers; w++)
        if (pending_at(o, s->step, w)[RM_PHASE_GRAD_REDUCE] <
            pending_at(o, s->step, last)[RM_PHASE_GRAD_REDUCE])
            last = w;
    double *slot = o->ring + (o->ring_count % o->ring_len) * COLS;
    memcpy(slot, maxima, sizeof maxima);
    for (int p = RM_PHASE_DATA_WAIT; p <= RM_PHASE_GRAD_REDUCE; p++)
        slot[p] = pending_at(o, s->step, last)[p];
    o->ring_count++;
    long events_before = o->n_events_total;
    judge_slowdown(o, step1);

    int any = 0;
    for (int w = 0; w < o->workers; w++)
        if (o->stragglers[w].flagged) {
            fprintf(line, "%s%d", any ? "," : ",\"stragglers\":[", w);
            any = 1;
        }
    if (any)
        fputc(']', line);
    if (o->n_events_total > events_before)
        fprintf(line, ",\"slowdown\":\"%s\"", event_cause(o, &o->last_event));
    fputs(",\"run_delay_s_max\":", line);
    rm_json_number(line, maxima[COL_RUN_DELAY]);

    if (cfg->verbosity == RM_VERBOSITY_VERBOSE && step1 % cfg->progress_every_steps == 0) {
        rm_progress_break(o->s.progress);
        for (int w = 0; w < o->workers; w++) {
            const double *v = pending_at(o, s->step, w);
            char text[512];
            int at = 0;
            for (int p = 0; p < RM_PHASE_STEP && at < (int)sizeof text; p++)
                at += snprintf(text + at, sizeof text - (size_t)at, "%s%s %.2f ms", p ? ", " : "", rm_phases[p].title,
                               v[p] * 1e3);
            rm_info("step %ld worker %d (%s): %s", step1, w, o->s.roster->info[w].host, text);
        }
    }

    pthread_mutex_lock(&o->mu);
    o->live.step = step1;
    o->live.epoch = s->epoch;
    o->live.loss = s->loss;
    o->live.lr = s->lr;
    o->live.samples_per_s = s->samples_per_s;
    for (int w = 0; w < o->workers; w++) {
        memcpy(o->live.phase + (size_t)w * RM_N_PHASES, pending_at(o, s->step, w), RM_N_PHASES * sizeof(double));
        o->live.straggler[w] = o->stragglers[w].flagged;
        o->live.straggler_ratio[w] = o->stragglers[w].ratio;
    }
    o->live.slowdowns = o->n_events_total;
    long named = 0;
    for (int w = 0; w < o->workers; w++)
        named += o->stragglers[w].ever;
    o->live.stragglers_named = named;
    pthread_mutex_unlock(&o->mu);
}

void rm_observe_eval(rm_observe *o, long step, double accuracy)
{
    (void)step;
    pthread_mutex_lock(&o->mu);
    o->live.eval_accuracy = accuracy;
    o->live.evals++;
    pthread_mutex_unlock(&o->mu);
}

static void gauge(FILE *out, const char *name, const char *help, double v)
{
    fprintf(out, "# HELP %s %s\n# TYPE %s gauge\n%s ", name, help, name, name);
    rm_json_number(out, v);
    fputc('\n', out);
}

/* Label values are hostnames and fixed words; escape anyway. */
static void label_value(FILE *out, const char *s)
{
    fputc('"', out);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            fputc('\\', out);
        if (*s == '\n') {
            fputs("\\n", out);
            continue;
        }
        fputc(*s, out);
    }
    fputc('"', out);
}

/* The Prometheus text exposition (version 0.0.4). HTTP thread. */
static void render(void *ctx, FILE *out)
{
    rm_observe *o = ctx;
    const rm_roster *roster = o->s.roster;
    pthread_mutex_lock(&o->mu);
    const live_figures *l = &o->live;
    fprintf(out, "# HELP ringmaster_step Optimizer steps completed.\n# TYPE ringmaster_step counter\n"
                 "ringmaster_step %ld\n",
            l->step);
    gauge(out, "ringmaster_total_steps", "Steps the job runs.", (double)l->total_steps);
    gauge(out, "ringmaster_epoch", "Epochs completed, fractional.", l->epoch);
    gauge(out, "ringmaster_loss", "Training loss of the last step.", l->loss);
    gauge(out, "ringmaster_learning_rate", "Learning rate of the last step.", l->lr);
    gauge(out, "ringmaster_samples_per_second", "Global batch over the slowest worker's time of the last step.",
          l->samples_per_s);
    gauge(out, "ringmaster_workers", "Worker ranks.", (double)o->workers);
    if (l->evals)
        gauge(out, "ringmaster_test_accuracy", "Accuracy of the last evaluation.", l->eval_accuracy);
    fprintf(out, "# HELP ringmaster_phase_seconds Time of one phase of the last step, per worker.\n"
                 "# TYPE ringmaster_phase_seconds gauge\n");
    for (int w = 0; w < o->workers; w++)
        for (int p = 0; p < RM_N_PHASES; p++) {
            fprintf(out, "ringmaster_phase_seconds{worker=\"%d\",rank=\"%d\",host=", w, w + 1);
            label_value(out, roster->info[w].host);
            fprintf(out, ",phase=\"%s\"} ", rm_phases[p].label);
            rm_json_number(out, l->phase[(size_t)w * RM_N_PHASES + p]);
            fputc('\n', out);
        }
    fprintf(out, "# HELP ringmaster_straggler 1 while the worker is named a straggler.\n"
                 "# TYPE ringmaster_straggler gauge\n");
    for (int w = 0; w < o->workers; w++) {
        fprintf(out, "ringmaster_straggler{worker=\"%d\",rank=\"%d\",host=", w, w + 1);
        label_value(out, roster->info[w].host);
        fprintf(out, "} %d\n", l->straggler[w]);
    }
    fprintf(out, "# HELP ringmaster_compute_ratio The worker's median compute time over the others' (straggler "
                 "window).\n# TYPE ringmaster_compute_ratio gauge\n");
    for (int w = 0; w < o->workers; w++) {
        fprintf(out, "ringmaster_compute_ratio{worker=\"%d\",rank=\"%d\",host=", w, w + 1);
        label_value(out, roster->info[w].host);
        fputs("} ", out);
        rm_json_number(out, l->straggler_ratio[w] > 0 ? l->straggler_ratio[w] : 1.0);
        fputc('\n', out);
    }
    fprintf(out, "# HELP ringmaster_slowdowns_total Slowdown events so far.\n# TYPE ringmaster_slowdowns_total counter\n"
                 "ringmaster_slowdowns_total %ld\n",
            l->slowdowns);
    fprintf(out, "# HELP ringmaster_stragglers_total Workers named stragglers so far.\n"
                 "# TYPE ringmaster_stragglers_total counter\nringmaster_stragglers_total %ld\n",
            l->stragglers_named);
    pthread_mutex_unlock(&o->mu);
}

/* Reads predicted figures from RUN_DIR/doctor.json, if `ringmaster doctor
 * --run-dir` or `ringmaster run --doctor` left one there. */
static void write_prediction(rm_observe *o, double measured, FILE *out)
{
    char path[RM_PATH_CAP + 32];
    snprintf(path, sizeof path, "%s/doctor.json", o->s.rd->path);
    rm_error err;
    size_t len;
    char *text = access(path, R_OK) == 0 ? rm_read_file(path, 1 << 20, "too large", &len, &err) : NULL;
    double predicted, step_s;
    char bottleneck[64] = "";
    fputs(",\n  \"prediction\": ", out);
    if (!text || rm_json_find_number(text, "predicted_samples_per_second", &predicted) != RM_OK) {
        fputs("null", out);
        free(text);
        return;
    }
    if (rm_json_find_number(text, "predicted_step_s", &step_s) != RM_OK)
        step_s = NAN;
    rm_json_find_string(text, "bottleneck", bottleneck, sizeof bottleneck);
    free(text);
    fputs("{\"source\": \"doctor.json\", \"predicted_samples_per_second\": ", out);
    rm_json_number(out, predicted);
    fputs(", \"measured_samples_per_second\": ", out);
    rm_json_number(out, measured);
    fputs(", \"measured_over_predicted\": ", out);
    rm_json_number(out, predicted > 0 ? measured / predicted : NAN);
    fputs(", \"predicted_step_s\": ", out);
    rm_json_number(out, step_s);
    fputs(", \"bottleneck\": ", out);
    rm_json_string(out, bottleneck);
    fputc('}', out);
}

void rm_observe_write_summary(rm_observe *o, double measured_samples_per_s, FILE *out)
{
    const rm_roster *roster = o->s.roster;
    fputs(",\n  \"stragglers\": [", out);
    int n = 0;
    for (int w = 0; w < o->workers; w++) {
        const straggler_record *s = &o->stragglers[w];
        if (!s->ever)
            continue;
        fprintf(out, "%s{\"worker\": %d, \"rank\": %d, \"host\": ", n++ ? ", " : "", w, w + 1);
        rm_json_string(out, roster->info[w].host);
        fprintf(out, ", \"first_step\": %ld, \"slower_by\": ", s->first_step);
        rm_json_number(out, s->max_ratio);
        fputs(", \"compute_median_s\": ", out);
        rm_json_number(out, s->median_s);
        fputs(", \"others_median_s\": ", out);
        rm_json_number(out, s->others_s);
        fprintf(out, ", \"still_slow\": %s}", s->flagged ? "true" : "false");
    }
    fputs("],\n  \"slowdowns\": [", out);
    for (int i = 0; i < o->n_events; i++) {
        const slowdown_event *e = &o->events[i];
        fprintf(out, "%s{\"step\": %ld, \"cause\": \"%s\", \"phase\": \"%s\", \"ratio\": ", i ? ", " : "", e->step,
                event_cause(o, e), rm_phases[e->phase].label);
        rm_json_number(out, e->ratio);
        fputs(", \"step_s\": ", out);
        rm_json_number(out, e->step_s);
        fputs(", \"baseline_step_s\": ", out);
        rm_json_number(out, e->baseline_s);
        fputc('}', out);
    }
    fputc(']', out);
    write_prediction(o, measured_samples_per_s, out);
}

int rm_observe_receive_trace(rm_observe *o, int src, rm_error *err)
{
    MPI_Status st;
    int bytes;
    RM_MPI_CHECK(MPI_Probe(src, RM_TAG_TRACE, MPI_COMM_WORLD, &st), err);
    RM_MPI_CHECK(MPI_Get_count(&st, MPI_BYTE, &bytes), err);
    char *buf = malloc((size_t)bytes + 1);
    if (!buf)
        return rm_fail(err, "out of memory for a %d-byte trace from rank %d", bytes, src);
    RM_MPI_CHECK(MPI_Recv(buf, bytes, MPI_BYTE, src, RM_TAG_TRACE, MPI_COMM_WORLD, MPI_STATUS_IGNORE), err);
    buf[bytes] = '\0';
    int w = src - 1;
    free(o->trace[w]);
    o->trace[w] = buf;
    o->trace_len[w] = (size_t)bytes;
    o->traces++;

    /* This worker's own file, complete on its own. */
    char dir[RM_PATH_CAP + 16], path[RM_PATH_CAP + 64];
    snprintf(dir, sizeof dir, "%s/trace", o->s.rd->path);
    if (rm_private_dir(dir, err) != RM_OK)
        return RM_ERR;
    snprintf(path, sizeof path, "%s/worker-%d.json", dir, w);
    static const char head[] = "{\"displayTimeUnit\":\"ms\",\"traceEvents\":[\n", tail[] = "\n]}\n";
    const void *parts[] = {head, buf, tail};
    size_t lens[] = {sizeof head - 1, (size_t)bytes, sizeof tail - 1};
    return rm_write_parts_atomic(path, parts, lens, 3, err);
}

int rm_observe_write_trace(rm_observe *o, rm_error *err)
{
    if (!o || !o->traces)
        return RM_OK;
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        return rm_fail(err, "out of memory");
    fputs("{\"displayTimeUnit\":\"ms\",\"otherData\":{\"run_dir\":", f);
    rm_json_string(f, o->s.rd->path);
    fprintf(f, ",\"workers\":%d},\"traceEvents\":[\n", o->workers);
    int n = 0;
    for (int w = 0; w < o->workers; w++)
        if (o->trace[w] && o->trace_len[w]) {
            if (n++)
                fputs(",\n", f);
            fwrite(o->trace[w], 1, o->trace_len[w], f);
        }
    fputs("\n]}\n", f);
    fclose(f);
    char path[RM_PATH_CAP + 32];
    snprintf(path, sizeof path, "%s/trace.json", o->s.rd->path);
    int rc = rm_write_file_atomic(path, text, len, err);
    free(text);
    if (rc == RM_OK && o->s.cfg->verbosity != RM_VERBOSITY_QUIET) {
        rm_progress_break(o->s.progress);
        rm_info("timeline of steps %ld-%ld from %d workers: %s (open in https://ui.perfetto.dev)",
                o->s.cfg->trace_steps[0], o->s.cfg->trace_steps[1], o->traces, path);
    }
    return rc;
}
