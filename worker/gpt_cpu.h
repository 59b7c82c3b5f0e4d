/* GPT-2's forward and backward passes on the CPU, every product on
 * OpenBLAS sgemm. Parameters and gradients are the caller's flat buffers
 * laid out by rm_gpt_layout; the activations of one batch (what backward
 * needs, less what train.recompute has it recompute) live in buffers owned
 * here.
 *
 * The model is GPT-2 as nanoGPT and llm.c write it: x = wte[tok] + wpe[pos];
 * per block x += proj(attn(ln1(x))), x += fcproj(gelu_tanh(fc(ln2(x))));
 * then lnf and logits = lnf(x) wte^T (tied), next-token cross-entropy.
 * LayerNorm eps 1e-5 with biased variance; causal attention scaled by
 * 1/sqrt(dim/heads). */
#ifndef RINGMASTER_GPT_CPU_H
#define RINGMASTER_GPT_CPU_H

#include "error.h"
#include "gpt_layout.h"
#include "mlp_cpu.h" /* rm_grad_ready_fn */

#include <stdint.h>

/* Activations of one layer for the batch, [n*T x width] row-major. */
typedef struct rm_gpt_cpu_layer {
    /* Under train.recompute (enum rm_recompute) the buffers marked so are
     * one scratch shared by every layer, refilled by backward: */
    float *ln1, *ln1_mean, *ln1_rstd; /* ln1(x) [C] (shared from GELU_LAYERNORM), its row mean and 1/std */
    float *qkv;                       /* [3C] */
    float *att; /* [n x heads x T x T] softmax probabilities (masked entries 0); GPU fused: [n x heads x T] lse */
    float *atty;                      /* attention output before proj [C] */
    float *res2;                      /* x after the attention residual [C] */
    float *ln2, *ln2_mean, *ln2_rstd; /* ln2 shared from GELU_LAYERNORM */
    float *fc_pre;  /* fc(ln2) before gelu [4C], kept from GELU on (NULL below: the model's scratch) */
    float *fc_gelu; /* gelu(fc(ln2)) [4C] (shared from GELU) */
    float *gelu_d;  /* gelu'(fc(ln2)) [4C]: all backward needs of the pre-activation (NULL from GELU: backward
                     * takes the slope from fc_pre) */
    float *res3;    /* the block's output [C] */
} rm_gpt_cpu_layer;

/* Points a's buffers, sized for max_batch sequences, into base from *at
 * (in floats, each buffer 64-byte aligned when base is), advancing *at; with
 * base NULL only counts. Both backends lay a layer out with it. att gets
 * att_floats_per_seq floats per sequence: heads x T x T for the attention
 * that keeps its probabilities, heads x T for the GPU's fused one, which
 * keeps each row's log-sum-exp there. */
void rm_gpt_layer_carve(rm_gpt_cpu_layer *a, const rm_gpt_layout *g, long max_batch, size_t att_floats_per_seq,
                        int recompute, float *base, size_t *at);

/* The scratch the layers share under recompute (enum rm_recompute), carved
 * as rm_gpt_layer_carve does and pointed to by every layer's ln1, ln2 and
 * fc_gelu that rm_gpt_layer_carve left NULL. */
void rm_gpt_recompute_carve(rm_gpt_cpu_layer *layers, const rm_gpt_layout *g, long max_batch, int recompute,
                            float *base, size_t *at);

typedef struct rm_gpt_cpu {
    rm_gpt_layout g;
    long max_batch;
    /* Query rows per attention product. Each block of rows multiplies only
     * the keys up to its last row, so a causal product skips most masked
     * entries; rm_gpt_cpu_init picks it, tests may lower it (>= 1) to
     * exercise the tiling on a short context. */
    long att_block;
    int recompute;             /* enum rm_recompute */
    size_t activation_bytes;   /* what init allocated for activations and scratch */
    long n;                    /* sequences in the last forward; 0 before the first */
    int32_t *inputs, *targets; /* copies of the last forward's tokens [max_batch x T] */
    float *encoded;            /* wte[tok] + wpe[pos]: block 0's input [C] */
    rm_gpt_cpu_layer layer[RM_GPT_MAX_LAYERS];
    float *lnf, *lnf_mean, *lnf_rstd;
    float *logits;             /* [max_batch x T x padded_vocab]; backward turns it into d(loss)/d(logits) */
    float *row_max, *row_inv_sum; /* per position: softmax's shift and 1/sum(exp) over the real vocabulary */
    /* scratch */
    float *fc_pre; /* forward: fc(ln2) before gelu [4C]; backward: its gradient */
    float *dres;   /* backward: d(loss)/d(residual stream) [C] */
    float *dc;     /* backward: a C-wide gradient (of ln outputs, atty) [C] */
    float *dqkv;   /* backward: [3C] */
    float *datt;   /* backward: one (sequence, head)'s attention gradient [T x T] */
    float *ones;   /* [max_batch x T] 1s: bias gradients are column sums, done as sgemv */
    float *arena;  /* every float buffer above is carved from this one allocation */
} rm_gpt_cpu;

/* Allocates activations for up to max_batch sequences of g->context tokens
 * (per layer about 16 x dim floats per token plus the attention
 * probabilities, heads x context floats per token; 12 x dim under
 * recompute GELU, 10 x dim under GELU_LAYERNORM, plus 4 x dim, 5 x dim of
 * scratch for all layers) and sets OpenBLAS to `threads` threads, process-wide (threads < 1
 * leaves it as it is). The elementwise passes run on the calling thread.
 * Free with rm_gpt_cpu_free, which is safe on a zeroed or failed-init
 * struct. */
int rm_gpt_cpu_init(rm_gpt_cpu *m, const rm_gpt_layout *g, long max_batch, int threads, int recompute,
                    rm_error *err);
void rm_gpt_cpu_free(rm_gpt_cpu *m);

/* GPT-2's initialisation, a pure function of seed (the same on every rank):
 * normal(0, 0.02) for wte, wpe and every matrix; the residual projections
 * proj_w and fcproj_w normal(0, 0.02/sqrt(2 layers)); biases 0; LayerNorm
 * weights 1 and biases 0; wte's padding rows 0. Each tensor draws from its
 * own stream keyed by (seed, offset), so changing one shape does not move
 * the others' values. */
void rm_gpt_init_params(const rm_gpt_layout *g, uint64_t seed, float *params);

/* inputs, targets: n x T int32 token ids (T = context), 1 <= n <= max_batch.
 * Writes the next-token cross-entropy summed over the n*T positions into
 * *loss_sum; the softmax runs over the real vocabulary only. Refuses (with
 * the value and its position) a token id outside [0, vocab), before any
 * compute. */
int rm_gpt_cpu_forward(rm_gpt_cpu *m, const float *params, const int32_t *inputs, const int32_t *targets, long n,
                       double *loss_sum, rm_error *err);

/* After rm_gpt_cpu_forward on the same batch and params: writes
 * (accumulate 0) or adds (accumulate 1) grad_scale x d(loss_sum)/d(params)
 * into grads (n_params floats; wte's padding rows get 0). When ready is
 * not NULL it is called each time the region [offset, n_params) is final:
 * after lnf, after each block from the last to the first, and last with 0;
 * its non-OK return ends backward and is passed up. Overwrites the logits
 * with their gradient. */
int rm_gpt_cpu_backward(rm_gpt_cpu *m, const float *params, float *grads, float grad_scale, int accumulate,
                        rm_grad_ready_fn ready, void *ready_ctx, rm_error *err);

/* Refuses a token id outside [0, vocab) among n x T ids, naming it, `what`
 * they are ("input", "target") and where it is. Both backends check their
 * batches with it before any compute. */
int rm_gpt_check_tokens(const int32_t *tokens, long n, long T, long vocab, const char *what, rm_error *err);

/* The last forward's logits, n x T x padded_vocab (columns vocab.. are 0),
 * owned by m; valid until the next backward or forward. */
const float *rm_gpt_cpu_logits(const rm_gpt_cpu *m);

#endif
