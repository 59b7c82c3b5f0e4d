#include "sgemm_probe.h"

#include "timer.h"

#include <cblas.h>
#include <stdlib.h>

/* Large enough to run at the kernel's full rate, small enough to be in
 * cache-blocked steady state within a few calls. */
#define PROBE_N 512

double rm_sgemm_peak_flops(double seconds_budget)
{
    size_t elems = (size_t)PROBE_N * PROBE_N;
    float *a = malloc(elems * sizeof *a), *b = malloc(elems * sizeof *b), *c = malloc(elems * sizeof *c);
    double rate = 0;
    if (a && b && c) {
        for (size_t i = 0; i < elems; i++) {
            a[i] = (float)(i % 251) / 251.0f;
            b[i] = (float)(i % 241) / 241.0f - 0.5f;
        }
        /* warm: page faults, thread start-up */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, PROBE_N, PROBE_N, PROBE_N, 1.0f, a, PROBE_N, b, PROBE_N,
                    0.0f, c, PROBE_N);
        /* the best of short bursts: another process's time slice is not the kernel's speed */
        double t_end = rm_now_s() + seconds_budget;
        do {
            double t0 = rm_now_s();
            for (int k = 0; k < 3; k++)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, PROBE_N, PROBE_N, PROBE_N, 1.0f, a, PROBE_N, b,
                            PROBE_N, 0.0f, c, PROBE_N);
            double dt = rm_now_s() - t0, r = 3 * 2.0 * PROBE_N * (double)PROBE_N * PROBE_N / dt;
            if (r > rate)
                rate = r;
        } while (rm_now_s() < t_end);
    }
    free(a);
    free(b);
    free(c);
    return rate;
}
