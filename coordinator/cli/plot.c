/* `ringmaster plot RUN_DIR`: PNG charts of a run from its metrics.jsonl and
 * eval.jsonl, drawn by gnuplot (Debian: gnuplot-nox, pngcairo terminal).
 *
 * Steps are averaged in bins (at most PLOT_BINS points per chart) so that a
 * long run reads as a curve, not as noise; samples/s per bin is the bin's
 * samples over its time (a harmonic mean), which is what a throughput is.
 * The data files and the gnuplot script stay in RUN_DIR/plots/, so a chart
 * can be redrawn or restyled by hand. */
#include "plot.h"

#include "step_phase.h"

#include "config.h"
#include "error.h"
#include "fsutil.h"
#include "json_scan.h"
#include "log.h"

#include <errno.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define PLOT_BINS 400
/* the parts of a step, stacked (the table's last entry is the whole step) */
#define N_PHASES RM_PHASE_STEP

typedef struct step_row {
    double step, loss, sps, phase[N_PHASES];
} step_row;

typedef struct rows {
    step_row *v;
    long n, cap;
} rows;

static int push_row(rows *r, const step_row *row)
{
    if (r->n == r->cap) {
        long cap = r->cap ? 2 * r->cap : 1024;
        step_row *grown = realloc(r->v, (size_t)cap * sizeof *grown);
        if (!grown)
            return RM_ERR;
        r->v = grown;
        r->cap = cap;
    }
    r->v[r->n++] = *row;
    return RM_OK;
}

/* Reads metrics.jsonl; a line without the expected numbers is named. */
static int read_metrics(const char *path, rows *out, rm_error *err)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return rm_fail_errno(err, errno, "%s: cannot open (is this a run directory?)", path);
    char *line = NULL;
    size_t cap = 0;
    long lineno = 0;
    int rc = RM_OK;
    while (getline(&line, &cap, f) > 0) {
        lineno++;
        if (line[strspn(line, " \t\r\n")] == '\0')
            continue;
        step_row r;
        if (rm_json_find_number(line, "step", &r.step) != RM_OK || rm_json_find_number(line, "loss", &r.loss) != RM_OK ||
            rm_json_find_number(line, "samples_per_second", &r.sps) != RM_OK) {
            /* A loss of null (a non-finite step) is kept out of the chart. */
            if (rm_json_find_number(line, "step", &r.step) == RM_OK && strstr(line, "\"loss\":null"))
                continue;
            rc = rm_fail(err, "%s:%ld: not a metrics line (no step, loss or samples_per_second)", path, lineno);
            break;
        }
        for (int p = 0; p < N_PHASES; p++)
            if (rm_json_find_number(line, rm_phases[p].json, &r.phase[p]) != RM_OK)
                r.phase[p] = 0;
        if (push_row(out, &r) != RM_OK) {
            rc = rm_fail(err, "out of memory");
            break;
        }
    }
    free(line);
    fclose(f);
    if (rc == RM_OK && out->n == 0)
        rc = rm_fail(err, "%s: no steps recorded yet", path);
    return rc;
}

/* Bins the steps and writes "step loss samples/s cumulative-phases-in-ms". */
static int write_steps_dat(const char *path, const rows *r, rm_error *err)
{
    FILE *f = rm_open_write(path, err);
    if (!f)
        return RM_ERR;
    long per_bin = (r->n + PLOT_BINS - 1) / PLOT_BINS;
    fprintf(f, "# step loss samples_per_second then cumulative ms:");
    for (int p = 0; p < N_PHASES; p++)
        fprintf(f, " +%s", rm_phases[p].json);
    fputc('\n', f);
    for (long b = 0; b < r->n; b += per_bin) {
        long end = b + per_bin < r->n ? b + per_bin : r->n, k = end - b;
        double step = 0, loss = 0, inv_sps = 0, phase[N_PHASES] = {0};
        for (long i = b; i < end; i++) {
            step += r->v[i].step / (double)k;
            loss += r->v[i].loss / (double)k;
            inv_sps += r->v[i].sps > 0 ? 1.0 / r->v[i].sps : 0;
            for (int p = 0; p < N_PHASES; p++)
                phase[p] += r->v[i].phase[p] / (double)k;
        }
        fprintf(f, "%.1f %.6g %.6g", step, loss, inv_sps > 0 ? (double)k / inv_sps : 0);
        double cum = 0;
        for (int p = 0; p < N_PHASES; p++) {
            cum += phase[p] * 1e3;
            fprintf(f, " %.6g", cum);
        }
        fputc('\n', f);
    }
    if (fclose(f) != 0)
        return rm_fail_errno(err, errno, "%s: write failed", path);
    return RM_OK;
}

/* Copies step and test_accuracy of eval.jsonl; *n_evals says how many. */
static int write_eval_dat(const char *eval_path, const char *dat_path, long *n_evals, rm_error *err)
{
    *n_evals = 0;
    FILE *in = fopen(eval_path, "r");
    if (!in)
        return RM_OK; /* no evaluation split */
    FILE *out = rm_open_write(dat_path, err);
    if (!out) {
        fclose(in);
        return RM_ERR;
    }
    char *line = NULL;
    size_t cap = 0;
    long lineno = 0;
    int rc = RM_OK;
    while (getline(&line, &cap, in) > 0) {
        lineno++;
        double step, acc;
        if (line[strspn(line, " \t\r\n")] == '\0')
            continue;
        double val_loss;
        if (rm_json_find_number(line, "val_loss", &val_loss) == RM_OK)
            continue; /* a language model's evaluation: a loss, no accuracy to chart */
        if (rm_json_find_number(line, "step", &step) != RM_OK ||
            rm_json_find_number(line, "test_accuracy", &acc) != RM_OK) {
            rc = rm_fail(err, "%s:%ld: not an evaluation line (no step or test_accuracy)", eval_path, lineno);
            break;
        }
        fprintf(out, "%.0f %.6g\n", step, acc * 100.0);
        (*n_evals)++;
    }
    free(line);
    fclose(in);
    fclose(out);
    return rc;
}

/* The gnuplot script for every chart. */
static void write_script(FILE *f, const char *dir, const char *title, long n_steps, long per_bin, long last_step,
                         long n_evals)
{
    fprintf(f, "# Drawn by `ringmaster plot`; run `gnuplot plot.gp` here to redraw.\n"
               "set terminal pngcairo size 1100,650 enhanced font 'DejaVu Sans,12' linewidth 1.5\n"
               "set grid lc rgb '#dddddd'\nset border lc rgb '#555555'\nset key top right box opaque\n"
               "set xlabel 'training step'\nset xrange [0:*]\n");
    fprintf(f, "cd '%s'\n", dir);
    fprintf(f, "set output 'loss.png'\nset title \"Training loss — %s (%ld steps)\"\n"
               "set ylabel 'cross-entropy loss (mean over the global batch)'\nset yrange [0:*]\n"
               "plot 'steps.dat' using 1:2 with lines lc rgb '#1f77b4' title 'training loss (mean of %ld-step bins)'\n",
            title, n_steps, per_bin);
    if (n_evals > 0)
        fprintf(f, "set output 'test_accuracy.png'\nset title \"Test accuracy — %s (%ld evaluation%s)\"\n"
                   "set ylabel 'test accuracy (%%)'\nset yrange [*:*]\nset xrange [0:%ld]\n"
                   "set offsets 0, 0, graph 0.15, graph 0.15\n"
                   "plot 'eval.dat' using 1:2 with linespoints pt 7 ps 1.2 lc rgb '#2ca02c' title 'test accuracy', \\\n"
                   "     '' using 1:2:(sprintf('%%.2f%%%%', $2)) with labels offset 0,1.2 notitle\n"
                   "set offsets 0, 0, 0, 0\nset xrange [0:*]\n",
                title, n_evals, n_evals == 1 ? "" : "s", last_step > 0 ? last_step : 1);
    fprintf(f, "set output 'samples_per_second.png'\nset title \"Throughput — %s\"\n"
               "set ylabel 'samples per second (global batch / slowest worker)'\nset yrange [0:*]\nset format y '%%.0f'\n"
               /* a steady run's line sits at the top; its dips go down */
               "set key bottom right\n"
               "plot 'steps.dat' using 1:3 with lines lc rgb '#d62728' title 'samples/s (%ld-step bins)'\n"
               "set format y '%%g'\n",
            title, per_bin);
    fprintf(f, "set output 'phases.png'\nset title \"Where a step's time goes — %s (mean over workers)\"\n"
               "set ylabel 'time per step (ms), stacked'\nset yrange [0:*]\nset key top right\nset style fill solid 0.85 noborder\n"
               "plot ",
            title);
    for (int p = N_PHASES - 1; p >= 0; p--)
        fprintf(f, "'steps.dat' using 1:%d with filledcurves x1 lc rgb '%s' title '%s'%s", 4 + p, rm_phases[p].colour,
                rm_phases[p].title, p ? ", \\\n     " : "\n");
}

static int run_gnuplot(const char *dir, rm_error *err)
{
    char script[RM_PATH_CAP + 32];
    snprintf(script, sizeof script, "%s/plot.gp", dir);
    char *argv[] = {"gnuplot", script, NULL};
    pid_t pid;
    /* gnuplot creates the PNGs with its umask: keep them private (0600)
     * like everything else in the run directory */
    mode_t old_umask = umask(077);
    int rc = posix_spawnp(&pid, "gnuplot", NULL, NULL, argv, environ);
    umask(old_umask);
    if (rc != 0)
        return rm_fail(err, "cannot run gnuplot: %s (install it: apt-get install gnuplot-nox)", strerror(rc));
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return rm_fail(err, "gnuplot failed on %s (status %d)", script, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    return RM_OK;
}

int rm_plot_main(int argc, char **argv)
{
    if (argc != 1 || argv[0][0] == '-') {
        fprintf(stderr, "usage: ringmaster plot RUN_DIR\n"
                        "  writes RUN_DIR/plots/{loss,test_accuracy,samples_per_second,phases}.png\n");
        return 2;
    }
    const char *run = argv[0];
    struct stat st;
    if (stat(run, &st) != 0 || !S_ISDIR(st.st_mode)) {
        rm_error_log("%s: no such run directory", run);
        return 1;
    }
    char path[RM_PATH_CAP + 64], dir[RM_PATH_CAP + 16], dat[RM_PATH_CAP + 64];
    rm_error err;
    rows r = {0};
    snprintf(path, sizeof path, "%s/metrics.jsonl", run);
    int rc = read_metrics(path, &r, &err);
    snprintf(dir, sizeof dir, "%s/plots", run);
    if (rc == RM_OK)
        rc = rm_private_dir(dir, &err);
    snprintf(dat, sizeof dat, "%s/steps.dat", dir);
    if (rc == RM_OK)
        rc = write_steps_dat(dat, &r, &err);
    long n_evals = 0;
    snprintf(path, sizeof path, "%s/eval.jsonl", run);
    snprintf(dat, sizeof dat, "%s/eval.dat", dir);
    if (rc == RM_OK)
        rc = write_eval_dat(path, dat, &n_evals, &err);
    if (rc == RM_OK) {
        /* The run's name in the titles: its directory's last component. */
        char title[128];
        const char *base = strrchr(run, '/');
        while (base && base[1] == '\0' && base > run) { /* "runs/x/" */
            const char *p = base - 1;
            while (p > run && *p != '/')
                p--;
            base = *p == '/' ? p : NULL;
        }
        snprintf(title, sizeof title, "%.*s", (int)strcspn(base ? base + 1 : run, "/\"\\'"), base ? base + 1 : run);
        snprintf(path, sizeof path, "%s/plot.gp", dir);
        FILE *f = rm_open_write(path, &err);
        if (!f) {
            rc = RM_ERR;
        } else {
            write_script(f, dir, title, r.n, (r.n + PLOT_BINS - 1) / PLOT_BINS, (long)r.v[r.n - 1].step, n_evals);
            fclose(f);
            rc = run_gnuplot(dir, &err);
        }
    }
    free(r.v);
    if (rc != RM_OK) {
        rm_error_log("%s", err.msg);
        return 1;
    }
    printf("%s/loss.png\n", dir);
    if (n_evals > 0)
        printf("%s/test_accuracy.png\n", dir);
    else
        printf("(no evaluations in %s/eval.jsonl: no test_accuracy.png)\n", run);
    printf("%s/samples_per_second.png\n%s/phases.png\n", dir, dir);
    return 0;
}
