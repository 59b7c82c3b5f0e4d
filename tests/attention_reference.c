#include "attention_reference.h"

#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void rmt_attention_reference(const float *qkv, const float *dy, long n, long T, int heads, long hs, double *y,
                             double *lse, double *dqkv)
{
    long C = heads * hs, C3 = 3 * C;
    memset(y, 0, (size_t)(n * T * C) * sizeof(double));
    memset(dqkv, 0, (size_t)(n * T * C3) * sizeof(double));
    double *p = malloc((size_t)T * sizeof(double)), *dp = malloc((size_t)T * sizeof(double));
    double sc = 1.0 / sqrt((double)hs);
    ck_assert(p && dp);
    for (long b = 0; b < n; b++)
        for (int h = 0; h < heads; h++)
            for (long i = 0; i < T; i++) {
                const float *q = qkv + (b * T + i) * C3 + h * hs, *g = dy + (b * T + i) * C + h * hs;
                double mx = -INFINITY, sum = 0, D = 0;
                for (long j = 0; j <= i; j++) {
                    const float *k = qkv + (b * T + j) * C3 + C + h * hs;
                    double dot = 0;
                    for (long d = 0; d < hs; d++)
                        dot += (double)q[d] * k[d];
                    p[j] = dot * sc;
                    mx = fmax(mx, p[j]);
                }
                for (long j = 0; j <= i; j++)
                    sum += p[j] = exp(p[j] - mx);
                lse[(b * heads + h) * T + i] = mx + log(sum);
                double *yr = y + (b * T + i) * C + h * hs;
                for (long j = 0; j <= i; j++) {
                    const float *v = qkv + (b * T + j) * C3 + 2 * C + h * hs;
                    p[j] /= sum;
                    dp[j] = 0;
                    for (long d = 0; d < hs; d++) {
                        yr[d] += p[j] * v[d];
                        dp[j] += (double)g[d] * v[d];
                    }
                    D += p[j] * dp[j];
                }
                for (long j = 0; j <= i; j++) {
                    const float *k = qkv + (b * T + j) * C3 + C + h * hs;
                    double ds = p[j] * (dp[j] - D);
                    double *dq = dqkv + (b * T + i) * C3 + h * hs, *dk = dqkv + (b * T + j) * C3 + C + h * hs;
                    double *dv = dk + C;
                    for (long d = 0; d < hs; d++) {
                        dq[d] += sc * ds * k[d];
                        dk[d] += sc * ds * q[d];
                        dv[d] += p[j] * g[d];
                    }
                }
            }
    free(p);
    free(dp);
}
