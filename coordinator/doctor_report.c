/* The doctor's prediction, its table and its JSON report. */
#include "doctor.h"

#include "json.h"

#include <math.h>
#include <stddef.h>
#include <string.h>

void rm_doctor_predict(const rm_config *cfg, const rm_doctor_rank *ranks, int n, rm_doctor_prediction *p)
{
    memset(p, 0, sizeof *p);
    double alone_s = 0;
    /* Data parallelism runs at the pace of the slowest rank. */
    for (int r = 0; r < n; r++) {
        alone_s = fmax(alone_s, ranks[r].allreduce_s);
        p->loader_s = fmax(p->loader_s, ranks[r].loader_batch_s);
        p->compute_s = fmax(p->compute_s, ranks[r].compute_s);
        p->allreduce_s = fmax(p->allreduce_s, ranks[r].step_allreduce_s);
        p->optimizer_s = fmax(p->optimizer_s, ranks[r].optimizer_s);
        p->gather_s = fmax(p->gather_s, ranks[r].step_gather_s);
        p->h2d_s = fmax(p->h2d_s, ranks[r].h2d_batch_s);
    }
    double busy_s = p->compute_s + p->allreduce_s + p->optimizer_s + p->gather_s;
    p->step_s = fmax(fmax(p->loader_s, p->h2d_s), busy_s);
    p->samples_per_s = p->step_s > 0 ? (double)cfg->global_batch / p->step_s : 0;
    /* The all-reduce wait in the step also holds the time a rank waits for
     * a slower one to finish its backward: only what the all-reduce takes
     * on its own is the network's; the rest is compute (imbalance). */
    /* (reduce-scatter + all-gather move what one all-reduce moves) */
    p->network_s = fmin(p->allreduce_s + p->gather_s, alone_s);
    double compute_s = p->compute_s + (p->allreduce_s + p->gather_s - p->network_s);
    if (p->loader_s > busy_s && p->loader_s >= p->h2d_s) {
        p->bottleneck = "storage";
        p->why = "the loader makes batches slower than the workers consume them";
    } else if (p->h2d_s > busy_s) {
        p->bottleneck = "host-to-device";
        p->why = "copying a batch to the GPU takes longer than the step computes";
    } else if (compute_s >= p->network_s && compute_s >= p->optimizer_s) {
        p->bottleneck = "compute";
        p->why = "forward + backward (sgemm) takes most of the step";
    } else if (p->network_s >= p->optimizer_s) {
        p->bottleneck = "network";
        p->why = "the gradient all-reduce takes most of the step";
    } else {
        p->bottleneck = "memory";
        p->why = "the optimizer's pass over parameters and moments (memory bandwidth) takes most of the step";
    }
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
    fprintf(out, "%-34s %7.0f samp/s %11.3f ms\n", "loader (read + decode a batch)", WORST(loader_samples_per_s, 1),
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
        snprintf(what, sizeof what, "all-reduce %.2f MB alone, algbw", grad_mb);
        fprintf(out, "%-34s %9.2f GB/s %11.3f ms\n", what, WORST(allreduce_algbw_gb_s, 1), WORST(allreduce_s, 0) * 1e3);
        fprintf(out, "%-34s %9.2f GB/s %14s\n", "all-reduce busbw (x 2(n-1)/n)", WORST(allreduce_busbw_gb_s, 1), "");
    } else {
        fprintf(out, "%-34s %14s %14s\n", "all-reduce", "n/a (1 worker)", "");
    }
    fprintf(out, "\nthe step in sequence (the job's backend, slowest rank):\n");
    fprintf(out, "%-34s %14s %11.3f ms\n", "  forward + backward", "", p->compute_s * 1e3);
    if (cfg->zero && n > 1) {
        fprintf(out, "%-34s %14s %11.3f ms\n", "  gradient reduce-scatter + norm", "", p->allreduce_s * 1e3);
        fprintf(out, "%-34s %14s %11.3f ms\n", "  optimizer (its 1/N slice)", "", p->optimizer_s * 1e3);
        fprintf(out, "%-34s %14s %11.3f ms\n", "  parameter all-gather", "", p->gather_s * 1e3);
    } else {
        fprintf(out, "%-34s %14s %11.3f ms\n", "  gradient all-reduce", "", p->allreduce_s * 1e3);
        fprintf(out, "%-34s %14s %11.3f ms\n", "  gradient norm + optimizer", "", p->optimizer_s * 1e3);
    }
    fprintf(out, "\npredicted step: %.3f ms = max(loader %.3f, ", p->step_s * 1e3, p->loader_s * 1e3);
    if (ranks[0].gpu)
        fprintf(out, "host-to-device %.3f, ", p->h2d_s * 1e3);
    if (cfg->zero && n > 1)
        fprintf(out, "compute %.3f + reduce-scatter %.3f + optimizer %.3f + all-gather %.3f)\n", p->compute_s * 1e3,
                p->allreduce_s * 1e3, p->optimizer_s * 1e3, p->gather_s * 1e3);
    else
        fprintf(out, "compute %.3f + all-reduce %.3f + optimizer %.3f)\n", p->compute_s * 1e3, p->allreduce_s * 1e3,
                p->optimizer_s * 1e3);
    if (model->positions > 1)
        fprintf(out, "predicted throughput: %.0f samples/s (%.0f tokens/s)\n", p->samples_per_s,
                p->samples_per_s * (double)model->positions);
    else
        fprintf(out, "predicted throughput: %.0f samples/s\n", p->samples_per_s);
    fprintf(out, "bottleneck: %s (%s)\n", p->bottleneck, p->why);
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
    fputs(",\n  \"step_model\": {\n", out);
    member(out, "    ", "loader_s", p->loader_s, 0);
    member(out, "    ", "compute_s", p->compute_s, 0);
    member(out, "    ", "allreduce_s", p->allreduce_s, 0);
    member(out, "    ", "network_s", p->network_s, 0);
    member(out, "    ", "h2d_s", p->h2d_s, 0);
    member(out, "    ", "gather_s", p->gather_s, 0);
    member(out, "    ", "optimizer_s", p->optimizer_s, 1);
    fputs("  },\n  \"host_to_device_gb_s\": ", out);
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
        member(out, "      ", "compute_s", k->compute_s, 0);
        member(out, "      ", "gemm_s", k->gemm_s, 0);
        member(out, "      ", "optimizer_s", k->optimizer_s, 0);
        member(out, "      ", "step_allreduce_s", n > 1 ? k->step_allreduce_s : NAN, 0);
        member(out, "      ", "step_gather_s", k->step_gather_s, 0);
        member(out, "      ", "allreduce_s", n > 1 ? k->allreduce_s : NAN, 0);
        member(out, "      ", "allreduce_algbw_gb_s", n > 1 ? k->allreduce_algbw_gb_s : NAN, 0);
        member(out, "      ", "allreduce_busbw_gb_s", n > 1 ? k->allreduce_busbw_gb_s : NAN, 0);
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
