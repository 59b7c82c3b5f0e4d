/* The doctor's prediction, its table and its JSON report. */
#include "doctor.h"

#include "json.h"

#include <math.h>
#include <stddef.h>
#include <string.h>

const char *rm_doctor_pipe_name(int pipe)
{
    static const char *const names[RM_DOCTOR_PIPES] = {"storage", "host-to-device", "compute", "network", "memory"};
    return pipe >= 0 && pipe < RM_DOCTOR_PIPES ? names[pipe] : "?";
}

void rm_doctor_predict(const rm_config *cfg, const rm_doctor_rank *ranks, int n, rm_doctor_prediction *p)
{
    memset(p, 0, sizeof *p);
    /* The ranks move in lockstep (every step's reduction waits for all),
     * so their steps are equally long, and the wait in one rank's
     * reduction is another's slower work. The rank the others wait for,
     * the one with the most work of its own (data wait, compute, its
     * optimizer pass), sets the pace: its phases are the step. */
    double most_own = -1;
    for (int r = 0; r < n; r++) {
        double own = ranks[r].data_wait_s + ranks[r].compute_s + ranks[r].optimizer_s;
        if (own > most_own) {
            most_own = own;
            p->slowest = r;
        }
        p->loader_s = fmax(p->loader_s, ranks[r].loader_batch_s);
        p->h2d_s = fmax(p->h2d_s, ranks[r].h2d_batch_s);
    }
    const rm_doctor_rank *s = &ranks[p->slowest];
    p->reduce = s->reduce;
    p->data_wait_s = s->data_wait_s;
    p->compute_s = s->compute_s;
    p->allreduce_s = s->step_allreduce_s;
    p->optimizer_s = s->optimizer_s;
    p->gather_s = s->step_gather_s;
    p->sequence_step_s = p->data_wait_s + p->compute_s + p->allreduce_s + p->optimizer_s + p->gather_s;
    p->network_s = s->allreduce_s;
    p->step_s = fmax(fmax(p->loader_s, p->h2d_s), p->sequence_step_s);
    p->samples_per_s = p->step_s > 0 ? (double)cfg->global_batch / p->step_s : 0;
    /* The loader and the copy to the device work beside the step: one
     * that takes longer than the step sets the pace by itself. Otherwise
     * the step is its phases, each the share of one pipe. */
    if (p->loader_s > p->sequence_step_s && p->loader_s >= p->h2d_s) {
        p->pipe_s[RM_DOCTOR_STORAGE] = p->loader_s;
        p->bottleneck_pipe = RM_DOCTOR_STORAGE;
        p->why = "the loader alone takes longer per batch than the step it feeds";
    } else if (p->h2d_s > p->sequence_step_s) {
        p->pipe_s[RM_DOCTOR_H2D] = p->h2d_s;
        p->bottleneck_pipe = RM_DOCTOR_H2D;
        p->why = "copying a batch to the GPU takes longer than the step it feeds";
    } else {
        p->pipe_s[RM_DOCTOR_STORAGE] = p->data_wait_s;
        p->pipe_s[RM_DOCTOR_COMPUTE] = p->compute_s;
        p->pipe_s[RM_DOCTOR_NETWORK] = p->allreduce_s + p->gather_s;
        p->pipe_s[RM_DOCTOR_MEMORY] = p->optimizer_s;
        p->bottleneck_pipe = RM_DOCTOR_COMPUTE;
        for (int k = 0; k < RM_DOCTOR_PIPES; k++)
            if (p->pipe_s[k] > p->pipe_s[p->bottleneck_pipe])
                p->bottleneck_pipe = k;
        static const char *const why[RM_DOCTOR_PIPES] = {
            "waiting for the loader's batches takes the largest share of the step",
            "",
            "forward + backward takes the largest share of the step",
            "the gradient reduction (the transfer, and the wait for the slowest rank) takes the largest share of the "
            "step",
            "the optimizer's pass over parameters and moments takes the largest share of the step",
        };
        p->why = why[p->bottleneck_pipe];
    }
    p->bottleneck = rm_doctor_pipe_name(p->bottleneck_pipe);
}
static double worst(const rm_doctor_rank *ranks, int n, size_t offset, int lowest)
{
    double v = *(const double *)((const char *)&ranks[0] + offset);
    for (int r = 1; r < n; r++) {
        double x = *(const double *)((const char *)&ranks[r] + offset);
        v = lowest ? fmin(v, x) : fmax(v, x);
    }
    return v;
}

#define WORST(field, lowest) worst(ranks, n, offsetof(rm_doctor_rank, field), lowest)

void rm_doctor_print(FILE *out, const rm_config *cfg, const rm_model *model, const rm_doctor_rank *ranks, int n,
                     const rm_doctor_prediction *p)
{
    long local = cfg->global_batch / n;
    double grad_mb = (double)model->n_params * sizeof(float) / 1e6;
    char model_text[256];
    rm_model_describe(model, model_text, sizeof model_text);
    fprintf(out, "ringmaster doctor: %d worker%s, backend %s, model %s, global batch %ld (%ld per worker)\n\n", n,
            n == 1 ? "" : "s", rm_backend_name(cfg->backend), model_text, cfg->global_batch, local);
    fprintf(out, "%-34s %14s %14s\n", "pipe (slowest rank)", "measured", "per step");
    fprintf(out, "%-34s %14s %14s\n", "----------------------------------", "--------------", "--------------");
    fprintf(out, "%-34s %9.0f MB/s %14s\n", "storage read, cold cache", WORST(storage_cold_mb_s, 1), "");
    fprintf(out, "%-34s %9.0f MB/s %14s\n", "storage read, warm cache", WORST(storage_warm_mb_s, 1), "");
    fprintf(out, "%-34s %7.0f samp/s %11.3f ms\n", "loader alone (read + decode batch)", WORST(loader_samples_per_s, 1),
            p->loader_s * 1e3);
    fprintf(out, "%-34s %9.1f GB/s %14s\n", "memory bandwidth (triad)", WORST(memory_gb_s, 1), "");
    if (ranks[0].gpu)
        fprintf(out, "%-34s %9.1f GB/s %11.3f ms\n", "host-to-device (page-locked)", WORST(h2d_gb_s, 1),
                p->h2d_s * 1e3);
    else
        fprintf(out, "%-34s %14s %14s\n", "host-to-device", "n/a (cpu backend)", "");
    const rm_doctor_rank *r0 = &ranks[0];
    for (int g = 0; g < r0->n_gemms; g++) {
        double secs = 0, gflops = 1e30;
        for (int r = 0; r < n; r++) {
            secs = fmax(secs, ranks[r].gemms[g].seconds);
            gflops = fmin(gflops, ranks[r].gemms[g].gflops);
        }
        char what[96];
        snprintf(what, sizeof what, "sgemm %s %ldx%ldx%ld", r0->gemms[g].what, r0->gemms[g].m, r0->gemms[g].n,
                 r0->gemms[g].k);
        fprintf(out, "%-34s %6.1f GFLOP/s %11.3f ms\n", what, gflops, secs * 1e3);
    }
    if (n > 1) {
        char what[64];
        snprintf(what, sizeof what, "reduction alone (%s), %.2f MB", r0->reduce, grad_mb);
        fprintf(out, "%-34s %9.2f GB/s %11.3f ms\n", what, WORST(allreduce_algbw_gb_s, 1), WORST(allreduce_s, 0) * 1e3);
        /* a reduction in stages: each one's time, the slowest rank's */
        for (int k = 0; k < r0->n_stages; k++) {
            double worst = 0;
            for (int r = 0; r < n; r++)
                worst = fmax(worst, ranks[r].stage_s[k]);
            char stage[48];
            snprintf(stage, sizeof stage, "  of which %s", r0->stage_name[k]);
            fprintf(out, "%-34s %14s %11.3f ms\n", stage, "", worst * 1e3);
        }
        fprintf(out, "%-34s %9.2f GB/s %14s\n", cfg->zero && strstr(r0->reduce, "zero") ? "busbw (x (n-1)/n)"
                                                                                          : "busbw (x 2(n-1)/n)",
                WORST(allreduce_busbw_gb_s, 1), "");
    } else {
        fprintf(out, "%-34s %14s %14s\n", "gradient reduction", "n/a (1 worker)", "");
    }
    const rm_doctor_rank *s = &ranks[p->slowest];
    double step = p->step_s > 0 ? p->step_s : 1;
    fprintf(out, "\nthe step in sequence: the job's backend and loader, gradients via %s, %ld steps,\n"
                 "mean per step on the rank the others wait for (worker %d):\n",
            p->reduce, s->sequence_steps, s->rank);
    int zero = strstr(p->reduce, "zero") != NULL;
    struct {
        const char *what;
        double s;
    } rows[] = {
        {"  waiting for data", p->data_wait_s},
        {"  forward + backward", p->compute_s},
        {zero ? "  gradient reduce-scatter + norm" : "  gradient reduction + norm", p->allreduce_s},
        {zero || !strcmp(p->reduce, "shm") ? "  optimizer (its 1/N slice)" : "  optimizer", p->optimizer_s},
        {"  parameter all-gather", p->gather_s},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        if (i == 4 && !zero)
            continue;
        fprintf(out, "%-34s %11.3f ms %12.1f %%\n", rows[i].what, rows[i].s * 1e3, 100 * rows[i].s / step);
    }
    fprintf(out, "%-34s %11.3f ms\n", "  step", p->sequence_step_s * 1e3);
    fprintf(out, "%-34s %11.3f ms %12.1f %%\n", "loader alone, beside the step", p->loader_s * 1e3,
            100 * p->loader_s / step);
    if (ranks[0].gpu)
        fprintf(out, "%-34s %11.3f ms %12.1f %%\n", "host-to-device, beside the step", p->h2d_s * 1e3,
                100 * p->h2d_s / step);
    fprintf(out, "\npredicted step: %.3f ms = max(loader %.3f, ", p->step_s * 1e3, p->loader_s * 1e3);
    if (ranks[0].gpu)
        fprintf(out, "host-to-device %.3f, ", p->h2d_s * 1e3);
    if (zero)
        fprintf(out, "data wait %.3f + compute %.3f + reduce-scatter %.3f + optimizer %.3f + all-gather %.3f)\n",
                p->data_wait_s * 1e3, p->compute_s * 1e3, p->allreduce_s * 1e3, p->optimizer_s * 1e3,
                p->gather_s * 1e3);
    else
        fprintf(out, "data wait %.3f + compute %.3f + reduction %.3f + optimizer %.3f)\n", p->data_wait_s * 1e3,
                p->compute_s * 1e3, p->allreduce_s * 1e3, p->optimizer_s * 1e3);
    if (model->positions > 1)
        fprintf(out, "predicted throughput: %.0f samples/s (%.0f tokens/s), steady state: checkpoints and "
                     "evaluations not counted\n",
                p->samples_per_s, p->samples_per_s * (double)model->positions);
    else
        fprintf(out, "predicted throughput: %.0f samples/s, steady state: checkpoints and evaluations not counted\n",
                p->samples_per_s);
    fputs("share of the predicted step by pipe:", out);
    for (int k = 0; k < RM_DOCTOR_PIPES; k++)
        if (p->pipe_s[k] > 0 || k == RM_DOCTOR_COMPUTE)
            fprintf(out, " %s %.1f%%", rm_doctor_pipe_name(k), 100 * p->pipe_s[k] / step);
    fputc('\n', out);
    fprintf(out, "bottleneck: %s (%s: %.1f%%)\n", p->bottleneck, p->why, 100 * p->pipe_s[p->bottleneck_pipe] / step);
}

static void member(FILE *out, const char *indent, const char *key, double v, int last)
{
    fprintf(out, "%s\"%s\": ", indent, key);
    rm_json_number(out, v);
    fputs(last ? "\n" : ",\n", out);
}

void rm_doctor_write_json(FILE *out, const rm_config *cfg, const rm_model *model, const rm_doctor_rank *ranks,
                          int n, const rm_doctor_prediction *p)
{
    fputs("{\n  \"config\": ", out);
    rm_json_string(out, cfg->source_path);
    fprintf(out, ",\n  \"workers\": %d,\n  \"backend\": \"%s\",\n  \"global_batch\": %ld,\n  \"parameters\": %ld,\n",
            n, rm_backend_name(cfg->backend), cfg->global_batch, model->n_params);
    fprintf(out, "  \"zero\": %ld,\n", cfg->zero);
    fprintf(out, "  \"gradient_bytes\": %ld,\n  \"bucket_mb\": ", model->n_params * (long)sizeof(float));
    rm_json_number(out, cfg->bucket_mb);
    fputs(",\n  \"predicted_step_s\": ", out);
    rm_json_number(out, p->step_s);
    fputs(",\n  \"predicted_samples_per_second\": ", out);
    rm_json_number(out, p->samples_per_s);
    fprintf(out, ",\n  \"bottleneck\": \"%s\",\n  \"bottleneck_reason\": ", p->bottleneck);
    rm_json_string(out, p->why);
    fputs(",\n  \"reduction\": ", out);
    rm_json_string(out, p->reduce);
    fprintf(out, ",\n  \"slowest_rank\": %d", ranks[p->slowest].rank);
    fputs(",\n  \"step_model\": {\n", out);
    member(out, "    ", "loader_s", p->loader_s, 0);
    member(out, "    ", "h2d_s", p->h2d_s, 0);
    member(out, "    ", "data_wait_s", p->data_wait_s, 0);
    member(out, "    ", "compute_s", p->compute_s, 0);
    member(out, "    ", "allreduce_s", p->allreduce_s, 0);
    member(out, "    ", "optimizer_s", p->optimizer_s, 0);
    member(out, "    ", "gather_s", p->gather_s, 0);
    member(out, "    ", "sequence_step_s", p->sequence_step_s, 0);
    member(out, "    ", "network_s", p->network_s, 1);
    fputs("  },\n  \"pipe_share\": {", out);
    for (int k = 0; k < RM_DOCTOR_PIPES; k++) {
        fprintf(out, "%s\"%s\": ", k ? ", " : "", rm_doctor_pipe_name(k));
        rm_json_number(out, p->step_s > 0 ? p->pipe_s[k] / p->step_s : 0);
    }
    fputs("},\n  \"host_to_device_gb_s\": ", out);
    if (ranks[0].gpu)
        rm_json_number(out, WORST(h2d_gb_s, 1));
    else
        fputs("null", out);
    fputs(",\n  \"ranks\": [\n", out);
    for (int r = 0; r < n; r++) {
        const rm_doctor_rank *k = &ranks[r];
        fprintf(out, "    {\n      \"rank\": %d,\n      \"host\": ", k->rank);
        rm_json_string(out, k->host);
        fputs(",\n", out);
        member(out, "      ", "storage_bytes", k->storage_bytes, 0);
        member(out, "      ", "storage_cold_mb_s", k->storage_cold_mb_s, 0);
        member(out, "      ", "storage_warm_mb_s", k->storage_warm_mb_s, 0);
        member(out, "      ", "loader_batch_s", k->loader_batch_s, 0);
        member(out, "      ", "loader_samples_per_s", k->loader_samples_per_s, 0);
        member(out, "      ", "memory_gb_s", k->memory_gb_s, 0);
        fprintf(out, "      \"sequence_steps\": %ld,\n", k->sequence_steps);
        member(out, "      ", "step_s", k->step_s, 0);
        member(out, "      ", "data_wait_s", k->data_wait_s, 0);
        member(out, "      ", "compute_s", k->compute_s, 0);
        member(out, "      ", "gemm_s", k->gemm_s, 0);
        member(out, "      ", "optimizer_s", k->optimizer_s, 0);
        member(out, "      ", "step_allreduce_s", n > 1 ? k->step_allreduce_s : NAN, 0);
        member(out, "      ", "step_gather_s", k->step_gather_s, 0);
        member(out, "      ", "allreduce_s", n > 1 ? k->allreduce_s : NAN, 0);
        member(out, "      ", "allreduce_algbw_gb_s", n > 1 ? k->allreduce_algbw_gb_s : NAN, 0);
        member(out, "      ", "allreduce_busbw_gb_s", n > 1 ? k->allreduce_busbw_gb_s : NAN, 0);
        fputs("      \"reduce_stages\": [", out);
        for (int g = 0; g < k->n_stages; g++) {
            fprintf(out, "%s{\"stage\": ", g ? ", " : "");
            rm_json_string(out, k->stage_name[g]);
            fputs(", \"seconds\": ", out);
            rm_json_number(out, k->stage_s[g]);
            fputc('}', out);
        }
        fputs("],\n", out);
        fputs("      \"gemms\": [", out);
        for (int g = 0; g < k->n_gemms; g++) {
            const rm_doctor_gemm *x = &k->gemms[g];
            fprintf(out, "%s\n        {\"what\": \"%s\", \"m\": %ld, \"n\": %ld, \"k\": %ld, \"seconds\": ", g ? "," : "",
                    x->what, x->m, x->n, x->k);
            rm_json_number(out, x->seconds);
            fputs(", \"gflops\": ", out);
            rm_json_number(out, x->gflops);
            fputc('}', out);
        }
        fprintf(out, "\n      ]\n    }%s\n", r + 1 < n ? "," : "");
    }
    fputs("  ]\n}\n", out);
}
