/* ringmaster-bench-sgemm: single-thread OpenBLAS sgemm rate at the shapes
 * one data-parallel MLP training step issues (the same calls, in the same
 * row-major layout, as worker/mlp_cpu.c).
 *
 * usage: ringmaster-bench-sgemm [--batch N] [--dims 784,1024,1024,10]
 *                               [--reps R] [--min-seconds S] [--verbose]
 *
 * Per rep it times the whole sequence of products of one step (forward
 * A*W^T, backward dW = dZ^T*A and dA = dZ*W) for a per-rank batch of N rows,
 * and prints one number on stdout: the best rep's GFLOP/s, i.e. the
 * flop-weighted rate the MLP's products can reach on one core. --verbose
 * adds a per-shape breakdown on stderr. */
#include <cblas.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_DIMS 16
#define MAX_CALLS (3 * MAX_DIMS)

void openblas_set_num_threads(int num_threads);
int openblas_get_num_threads(void);

typedef struct call {
    const char *what;
    int layer;
    CBLAS_TRANSPOSE ta, tb;
    int m, n, k, lda, ldb, ldc;
    const float *a, *b;
    float *c;
    double best_s;
} call;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static float *alloc_filled(size_t n, unsigned seed)
{
    float *p = malloc(n * sizeof *p);
    if (!p) {
        fprintf(stderr, "ringmaster-bench-sgemm: out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        p[i] = (float)(seed >> 8) / (float)(1u << 24) - 0.5f;
    }
    return p;
}

static long parse_pos(const char *opt, const char *s)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < 1) {
        fprintf(stderr, "ringmaster-bench-sgemm: %s expects a positive integer, got '%s'\n", opt, s);
        exit(2);
    }
    return v;
}

static void usage(void)
{
    fprintf(stderr, "usage: ringmaster-bench-sgemm [--batch N] [--dims 784,1024,1024,10] [--reps R]\n"
                    "                              [--min-seconds S] [--verbose]\n"
                    "Prints the best single-thread sgemm GFLOP/s over one MLP training step's products.\n");
}

static double flops_of(const call *c)
{
    return 2.0 * (double)c->m * (double)c->n * (double)c->k;
}

static void run_call(const call *c)
{
    cblas_sgemm(CblasRowMajor, c->ta, c->tb, c->m, c->n, c->k, 1.0f, c->a, c->lda, c->b, c->ldb, 0.0f, c->c, c->ldc);
}

int main(int argc, char **argv)
{
    long batch = 128, reps = 20;
    double min_seconds = 2.0;
    int verbose = 0;
    long dims[MAX_DIMS] = {784, 1024, 1024, 10};
    int n_dims = 4;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--batch") == 0 && i + 1 < argc) {
            batch = parse_pos("--batch", argv[++i]);
        } else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc) {
            reps = parse_pos("--reps", argv[++i]);
        } else if (strcmp(argv[i], "--min-seconds") == 0 && i + 1 < argc) {
            min_seconds = atof(argv[++i]);
        } else if (strcmp(argv[i], "--dims") == 0 && i + 1 < argc) {
            char *list = argv[++i], *save = NULL;
            n_dims = 0;
            for (char *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
                if (n_dims == MAX_DIMS) {
                    fprintf(stderr, "ringmaster-bench-sgemm: at most %d dims\n", MAX_DIMS);
                    return 2;
                }
                dims[n_dims++] = parse_pos("--dims", tok);
            }
            if (n_dims < 2) {
                fprintf(stderr, "ringmaster-bench-sgemm: --dims needs at least input,output\n");
                return 2;
            }
        } else if (strcmp(argv[i], "--verbose") == 0 || strcmp(argv[i], "-v") == 0) {
            verbose = 1;
        } else {
            usage();
            return 2;
        }
    }

    openblas_set_num_threads(1);
    if (openblas_get_num_threads() != 1) {
        fprintf(stderr, "ringmaster-bench-sgemm: OpenBLAS still reports %d threads\n", openblas_get_num_threads());
        return 1;
    }

    int layers = n_dims - 1;
    long widest = 0;
    for (int l = 0; l < n_dims; l++)
        widest = dims[l] > widest ? dims[l] : widest;
    float *acts[MAX_DIMS], *weights[MAX_DIMS], *grads[MAX_DIMS];
    for (int l = 0; l < n_dims; l++)
        acts[l] = alloc_filled((size_t)batch * (size_t)dims[l], 11u + (unsigned)l);
    for (int l = 0; l < layers; l++) {
        weights[l] = alloc_filled((size_t)dims[l] * (size_t)dims[l + 1], 101u + (unsigned)l);
        grads[l] = alloc_filled((size_t)dims[l] * (size_t)dims[l + 1], 201u + (unsigned)l);
    }
    float *dz = alloc_filled((size_t)batch * (size_t)widest, 7u);
    float *da = alloc_filled((size_t)batch * (size_t)widest, 9u);

    /* The products of one step, in the order mlp_cpu.c issues them. */
    call calls[MAX_CALLS];
    int n_calls = 0;
    int n = (int)batch;
    for (int l = 0; l < layers; l++) {
        int in = (int)dims[l], out = (int)dims[l + 1];
        calls[n_calls++] = (call){"fwd  Z=A*W^T ", l, CblasNoTrans, CblasTrans, n, out, in, in, in, out,
                                  acts[l], weights[l], acts[l + 1], 1e30};
    }
    for (int l = layers - 1; l >= 0; l--) {
        int in = (int)dims[l], out = (int)dims[l + 1];
        calls[n_calls++] = (call){"bwd dW=dZ^T*A", l, CblasTrans, CblasNoTrans, out, in, n, out, in, in,
                                  dz, acts[l], grads[l], 1e30};
        if (l > 0)
            calls[n_calls++] = (call){"bwd dA=dZ*W  ", l, CblasNoTrans, CblasNoTrans, n, in, out, out, in, in,
                                      dz, weights[l], da, 1e30};
    }
    double step_flops = 0;
    for (int i = 0; i < n_calls; i++)
        step_flops += flops_of(&calls[i]);

    /* Warm up (OpenBLAS buffers, page faults, clocks). */
    for (int w = 0; w < 3; w++)
        for (int i = 0; i < n_calls; i++)
            run_call(&calls[i]);

    double best_step = 1e30, started = now_s();
    long done = 0;
    while (done < reps || now_s() - started < min_seconds) {
        double step_s = 0;
        for (int i = 0; i < n_calls; i++) {
            double t0 = now_s();
            run_call(&calls[i]);
            double dt = now_s() - t0;
            step_s += dt;
            if (dt < calls[i].best_s)
                calls[i].best_s = dt;
        }
        if (step_s < best_step)
            best_step = step_s;
        done++;
    }

    if (verbose) {
        fprintf(stderr, "sgemm, 1 OpenBLAS thread, batch %ld, dims", batch);
        for (int l = 0; l < n_dims; l++)
            fprintf(stderr, "%s%ld", l ? "-" : " ", dims[l]);
        fprintf(stderr, ", best of %ld reps:\n", done);
        for (int i = 0; i < n_calls; i++)
            fprintf(stderr, "  layer %d %s M=%-5d N=%-5d K=%-5d %8.3f ms %7.1f GFLOP/s\n", calls[i].layer,
                    calls[i].what, calls[i].m, calls[i].n, calls[i].k, calls[i].best_s * 1e3,
                    flops_of(&calls[i]) / calls[i].best_s * 1e-9);
        fprintf(stderr, "  whole step: %.3f GFLOP in %.3f ms\n", step_flops * 1e-9, best_step * 1e3);
    }
    printf("%.2f\n", step_flops / best_step * 1e-9);

    for (int l = 0; l < n_dims; l++)
        free(acts[l]);
    for (int l = 0; l < layers; l++) {
        free(weights[l]);
        free(grads[l]);
    }
    free(dz);
    free(da);
    return 0;
}
