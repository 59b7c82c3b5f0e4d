#include "memory_plan.h"

#include "gpt_memory.h"
#include "model.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int rm_parse_size(const char *text, size_t *bytes, rm_error *err)
{
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (errno || end == text || !(v > 0))
        return rm_fail(err, "'%s' is not a size (bytes, or a number with K, M, G or T)", text);
    double unit = 1;
    const char *units = "KMGT";
    const char *u = *end ? strchr(units, toupper((unsigned char)*end)) : NULL;
    if (u) {
        for (const char *p = units; p <= u; p++)
            unit *= 1024;
        end++;
    }
    if (*end && strcasecmp(end, "iB") != 0 && strcasecmp(end, "B") != 0)
        return rm_fail(err, "'%s' is not a size (bytes, or a number with K, M, G or T)", text);
    double b = v * unit;
    if (!isfinite(b) || b < 1 || b >= 9.2e18)
        return rm_fail(err, "'%s' is not a size between 1 byte and 8 EiB", text);
    *bytes = (size_t)b;
    return RM_OK;
}

static double gib(size_t bytes)
{
    return (double)bytes / (1024.0 * 1024.0 * 1024.0);
}

/* The plan of cfg's job for a layout; the moments' share is the
 * largest worker's (ZeRO-1 slices differ by at most one). */
static rm_gpt_memory_plan plan_of(const rm_config *cfg, const rm_gpt_layout *g, int gpu)
{
    long local = cfg->global_batch / cfg->workers;
    long micro = local / cfg->grad_accum;
    return (rm_gpt_memory_plan){
        .gpu = gpu,
        .micro_batch = micro < 1 ? 1 : micro,
        .local_batch = local,
        .precision = (int)cfg->precision,
        .attention = (int)cfg->attention,
        .recompute = (int)cfg->recompute,
        .moments = cfg->optimizer == RM_OPT_ADAMW ? 2 : 1,
        .state_params = cfg->zero ? (g->n_params + cfg->workers - 1) / cfg->workers : g->n_params,
    };
}

/* Whether the count could pass what size_t holds: its largest terms, in
 * double (any shape the config takes stays far from 2^64 once under 2^60). */
static int too_large(const rm_gpt_layout *g, const rm_config *cfg)
{
    double B = (double)(cfg->global_batch / cfg->workers), T = (double)g->context, C = (double)g->dim;
    double per_seq = (double)g->layers * (20.0 * C * T + (double)g->heads * T * T) + T * (double)g->padded_vocab;
    double bytes = 4.0 * (B * per_seq + (double)g->heads * T * T + 20.0 * (double)g->n_params);
    return bytes > 1.15e18;
}

int rm_print_memory_plan(const rm_config *cfg, const rm_dataset_facts *facts, size_t device_bytes, FILE *out)
{
    if (cfg->model_type != RM_MODEL_GPT) {
        if (device_bytes > 0)
            fprintf(out, "memory: counted for GPT models only\n");
        return 0;
    }
    rm_model model;
    rm_error err;
    if (rm_model_init(&model, cfg, facts, &err) != RM_OK) {
        fprintf(out, "memory: not counted: %s\n", err.msg);
        rm_model_free(&model);
        return 0;
    }
    static const char *const precision[] = {"fp32", "tf32", "bf16"};
    if (too_large(&model.gpt, cfg)) {
        fprintf(out, "memory per worker: more than 2^60 bytes (not counted)\n");
        rm_model_free(&model);
        return device_bytes > 0;
    }
    int gpu = cfg->backend != RM_BACKEND_CPU;
    rm_gpt_memory_plan p = plan_of(cfg, &model.gpt, gpu);
    rm_gpt_memory mem;
    rm_gpt_memory_count(&model.gpt, &p, &mem);
    /* GiB, or MiB for a job under one */
    double unit = mem.total >= ((size_t)1 << 30) ? 1.0 : 1024.0;
    fprintf(out,
            "memory per worker on the %s backend: %.2f %s = weights %.2f + gradients %.2f + optimizer state %.2f"
            "%s + activations %.2f (%ld sequence%s per micro-step, %s%s, recompute %d) + tokens %.2f\n",
            gpu ? "GPU" : "CPU", unit * gib(mem.total), unit > 1 ? "MiB" : "GiB", unit * gib(mem.weights),
            unit * gib(mem.gradients), unit * gib(mem.optimizer),
            cfg->zero ? " (ZeRO-1 slice)" : gpu ? "" : " (all of it; a 1/N slice under shared-memory reduction)",
            unit * gib(mem.activations), p.micro_batch, p.micro_batch == 1 ? "" : "s", gpu ? precision[cfg->precision] : "fp32",
            gpu ? (cfg->attention == RM_ATT_FUSED ? ", fused attention" : ", simple attention") : "",
            (int)cfg->recompute, unit * gib(mem.other));
    int short_of = 0;
    if (device_bytes > 0) {
        size_t usable = device_bytes > RM_DEVICE_RESERVE ? device_bytes - RM_DEVICE_RESERVE : 0;
        short_of = mem.total > usable;
        fprintf(out, "%s %.2f GiB (%.2f GiB less %.0f GiB for the CUDA context and libraries)\n",
                short_of ? "does not fit in" : "fits in", gib(usable), gib(device_bytes), gib(RM_DEVICE_RESERVE));
        int most = 0;
        size_t most_total = 0;
        for (int layers = 1; layers <= RM_GPT_MAX_LAYERS; layers++) {
            rm_gpt_layout g;
            if (rm_gpt_layout_init(&g, layers, model.gpt.heads, model.gpt.dim, model.gpt.context, model.gpt.vocab,
                                   &err) != RM_OK ||
                too_large(&g, cfg))
                break;
            rm_gpt_memory_plan q = plan_of(cfg, &g, gpu);
            rm_gpt_memory m;
            rm_gpt_memory_count(&g, &q, &m);
            if (m.total > usable)
                break;
            most = layers;
            most_total = m.total;
        }
        if (most == 0)
            fprintf(out, "not even 1 layer of dim %ld fits at this micro-batch\n", model.gpt.dim);
        else
            fprintf(out, "the most layers of dim %ld, context %ld that fit: %d%s (%.2f GiB)\n", model.gpt.dim,
                    model.gpt.context, most, most == RM_GPT_MAX_LAYERS ? ", the most ringmaster takes" : "",
                    gib(most_total));
    }
    rm_model_free(&model);
    return short_of;
}
