/* The GPT-2 parameter layout: where each tensor sits in the one flat fp32
 * buffer that the optimizer, the all-reduce and checkpoints see.
 *
 * Buffer order: wte, wpe, block 0 .. block L-1, lnf. Backward finishes
 * gradients from the end of the buffer towards the start (lnf, the last
 * block, ..., the first block, then wpe and wte, which also takes the tied
 * classifier's gradient and so is final last), so the bucketed all-reduce
 * of the tail can run while backward works on the head. Matrices are
 * [out x in] row-major, torch.nn.Linear's layout: y = x W^T + b. */
#ifndef RINGMASTER_GPT_LAYOUT_H
#define RINGMASTER_GPT_LAYOUT_H

#include "error.h"

#define RM_GPT_MAX_LAYERS 128
/* The token embedding (and tied classifier) has its rows padded to this
 * multiple, so its products run on aligned shapes: 257 -> 320, 50257 -> 50304. */
#define RM_GPT_VOCAB_ALIGN 64

/* train.recompute: what the GPT's backward recomputes instead of keeping
 * from forward (the same bits either way). */
enum rm_recompute { RM_RECOMPUTE_NONE = 0, RM_RECOMPUTE_GELU = 1, RM_RECOMPUTE_GELU_LAYERNORM = 2 };

/* Offsets in floats. C = dim. */

typedef struct rm_gpt_block_offsets {
    long ln1_w, ln1_b;       /* [C], [C] */
    long qkv_w, qkv_b;       /* [3C x C], [3C]: q, k, v are the three C-wide thirds */
    long proj_w, proj_b;     /* [C x C], [C] */
    long ln2_w, ln2_b;       /* [C], [C] */
    long fc_w, fc_b;         /* [4C x C], [4C] */
    long fcproj_w, fcproj_b; /* [C x 4C], [C] */
} rm_gpt_block_offsets;

typedef struct rm_gpt_layout {
    int layers, heads;
    long dim, context, vocab;
    long padded_vocab; /* vocab rounded up to a multiple of RM_GPT_VOCAB_ALIGN */
    long wte, wpe;     /* wte [padded_vocab x dim] (rows vocab.. are padding, always 0), wpe [context x dim] */
    rm_gpt_block_offsets block[RM_GPT_MAX_LAYERS];
    long lnf_w, lnf_b; /* [C], [C] */
    long n_params;
} rm_gpt_layout;

/* Validates the shape (layers 1..RM_GPT_MAX_LAYERS, heads >= 1 dividing
 * dim, context >= 1, vocab >= 2, and sizes whose products fit) and fills
 * every offset. On RM_ERR the message names the offending value. */
int rm_gpt_layout_init(rm_gpt_layout *g, int layers, int heads, long dim, long context, long vocab, rm_error *err);

/* Training FLOPs per token, forward + backward, counted as nanoGPT and
 * llm.c do: 6 N + 6 L C T, where
 *   N = every parameter except wpe (a lookup, no product) and wte's
 *       padding rows (no real token uses them); wte's vocab x C is counted
 *       once, as the classifier's matrix; the LayerNorm weights and biases
 *       are counted too (under 0.1% at any real size: the "-ish");
 *   6 L C T = attention's two products per layer (q k^T and att v):
 *       with the causal mask a query sees T/2 keys on average, so each
 *       costs 2 C T/2 = C T flops per token forward, and backward's four
 *       products twice that: (2 + 4) C T per layer.
 * So it is a model count, not what the CPU code executes (which computes
 * some masked blocks of attention too). */
double rm_gpt_layout_train_flops_per_token(const rm_gpt_layout *g);

#endif
