/* ringmaster-bench-gpt-cpu: one GPT-2 training step's compute on the CPU
 * (worker/gpt_cpu.c forward + backward, no optimizer, no communication).
 *
 * usage: ringmaster-bench-gpt-cpu [--layers 4] [--heads 4] [--dim 256]
 *            [--context 256] [--vocab 257] [--batch 8] [--threads 1]
 *            [--min-seconds 5] [--att-block ROWS]
 *
 * Runs steps on random tokens until min-seconds have passed (at least 3,
 * after one warm-up), and prints the best step's forward and backward
 * times, tokens/s, and GFLOP/s counted as rm_gpt_layout_train_flops_per_token
 * does (6 N + 6 L C T per token: model FLOPs, not what is executed). */
#include "gpt_cpu.h"
#include "gpt_layout.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static long parse_pos(const char *opt, const char *s)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < 1) {
        fprintf(stderr, "ringmaster-bench-gpt-cpu: %s expects a positive integer, got '%s'\n", opt, s);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv)
{
    long layers = 4, heads = 4, dim = 256, context = 256, vocab = 257, batch = 8, threads = 1, att_block = 0;
    double min_seconds = 5.0;
    for (int i = 1; i < argc; i++) {
        const char *opt = argv[i];
        if (i + 1 >= argc) {
            fprintf(stderr, "usage: ringmaster-bench-gpt-cpu [--layers L] [--heads H] [--dim C] [--context T]\n"
                            "           [--vocab V] [--batch B] [--threads N] [--min-seconds S] [--att-block ROWS]\n");
            return 2;
        }
        const char *val = argv[++i];
        if (strcmp(opt, "--layers") == 0)
            layers = parse_pos(opt, val);
        else if (strcmp(opt, "--heads") == 0)
            heads = parse_pos(opt, val);
        else if (strcmp(opt, "--dim") == 0)
            dim = parse_pos(opt, val);
        else if (strcmp(opt, "--context") == 0)
            context = parse_pos(opt, val);
        else if (strcmp(opt, "--vocab") == 0)
            vocab = parse_pos(opt, val);
        else if (strcmp(opt, "--batch") == 0)
            batch = parse_pos(opt, val);
        else if (strcmp(opt, "--threads") == 0)
            threads = parse_pos(opt, val);
        else if (strcmp(opt, "--att-block") == 0)
            att_block = parse_pos(opt, val); /* query rows per attention product (default: gpt_cpu.c's) */
        else if (strcmp(opt, "--min-seconds") == 0)
            min_seconds = atof(val);
        else {
            fprintf(stderr, "ringmaster-bench-gpt-cpu: unknown option %s\n", opt);
            return 2;
        }
    }

    rm_error err;
    rm_gpt_layout g;
    rm_gpt_cpu m;
    if (rm_gpt_layout_init(&g, (int)layers, (int)heads, dim, context, vocab, &err) != RM_OK ||
        rm_gpt_cpu_init(&m, &g, batch, (int)threads, RM_RECOMPUTE_NONE, &err) != RM_OK) {
        fprintf(stderr, "ringmaster-bench-gpt-cpu: %s\n", err.msg);
        return 1;
    }
    if (att_block > 0)
        m.att_block = att_block;
    long tokens = batch * context;
    float *params = malloc((size_t)g.n_params * sizeof(float)), *grads = malloc((size_t)g.n_params * sizeof(float));
    int32_t *in = malloc((size_t)(2 * tokens) * sizeof(int32_t));
    if (!params || !grads || !in) {
        fprintf(stderr, "ringmaster-bench-gpt-cpu: out of memory\n");
        return 1;
    }
    int32_t *tg = in + tokens;
    rm_gpt_init_params(&g, 1, params);
    uint64_t x = 88172645463325252ULL;
    for (long i = 0; i < 2 * tokens; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        in[i] = (int32_t)(x % (uint64_t)vocab);
    }

    double best_fwd = 1e30, best_bwd = 1e30, best = 1e30, loss = 0, started = 0;
    for (long step = 0; step < 4 || now_s() - started < min_seconds; step++) {
        if (step == 1)
            started = now_s(); /* step 0 warms up: page faults, OpenBLAS buffers */
        double t0 = now_s();
        if (rm_gpt_cpu_forward(&m, params, in, tg, batch, &loss, &err) != RM_OK) {
            fprintf(stderr, "ringmaster-bench-gpt-cpu: %s\n", err.msg);
            return 1;
        }
        double t1 = now_s();
        if (rm_gpt_cpu_backward(&m, params, grads, 1.0f / (float)tokens, 0, NULL, NULL, &err) != RM_OK) {
            fprintf(stderr, "ringmaster-bench-gpt-cpu: %s\n", err.msg);
            return 1;
        }
        double t2 = now_s();
        if (step > 0) {
            best_fwd = t1 - t0 < best_fwd ? t1 - t0 : best_fwd;
            best_bwd = t2 - t1 < best_bwd ? t2 - t1 : best_bwd;
            best = t2 - t0 < best ? t2 - t0 : best;
        }
    }
    double flops = rm_gpt_layout_train_flops_per_token(&g) * (double)tokens;
    printf("gpt %ld layers, %ld heads, dim %ld, context %ld, vocab %ld (padded %ld), batch %ld, %ld thread(s), "
           "attention tiles of %ld rows: %ld parameters, loss %.4f\n",
           layers, heads, dim, context, vocab, g.padded_vocab, batch, threads, m.att_block, g.n_params,
           loss / (double)tokens);
    printf("step %.1f ms (forward %.1f, backward %.1f), %.0f tokens/s, %.1f GFLOP/s (%.2f GFLOP per step)\n",
           best * 1e3, best_fwd * 1e3, best_bwd * 1e3, (double)tokens / best, flops / best * 1e-9, flops * 1e-9);
    rm_gpt_cpu_free(&m);
    free(params);
    free(grads);
    free(in);
    return 0;
}
