/* Causal multi-head attention by the plain formulas, in double: the
 * reference the fused attention (worker/gpu/flash_attn_block.h) is held
 * to, on the host (test_flash_attn) and on a device (test_gpu). */
#ifndef RINGMASTER_TEST_ATTENTION_REFERENCE_H
#define RINGMASTER_TEST_ATTENTION_REFERENCE_H

/* Layouts as the GPT's: qkv [n x T x 3C] with head h's q, k, v in columns
 * h*hs.. of each C-wide third (C = heads x hs); dy and y [n x T x C]; lse
 * [n x heads x T]; dqkv [n x T x 3C]. Scores scale 1/sqrt(hs), causal.
 * Writes y, lse (each row's log-sum-exp of its scaled scores) and dqkv
 * (the gradient of sum(y . dy)), every element. */
void rmt_attention_reference(const float *qkv, const float *dy, long n, long T, int heads, long hs, double *y,
                             double *lse, double *dqkv);

#endif
