#include "gpt_layout.h"

#include <string.h>

/* Upper bounds that keep every size below in range: offsets in long, and
 * the CPU code's sgemm dimensions and leading dimensions in int. */
#define GPT_MAX_DIM (1L << 16)
#define GPT_MAX_CONTEXT (1L << 20)
#define GPT_MAX_VOCAB (1L << 24)

int rm_gpt_layout_init(rm_gpt_layout *g, int layers, int heads, long dim, long context, long vocab, rm_error *err)
{
    memset(g, 0, sizeof *g);
    if (layers < 1 || layers > RM_GPT_MAX_LAYERS)
        return rm_fail(err, "gpt: layers must be 1..%d, got %d", RM_GPT_MAX_LAYERS, layers);
    if (heads < 1)
        return rm_fail(err, "gpt: heads must be at least 1, got %d", heads);
    if (dim < 1 || dim > GPT_MAX_DIM)
        return rm_fail(err, "gpt: dim must be 1..%ld, got %ld", GPT_MAX_DIM, dim);
    if (dim % heads != 0)
        return rm_fail(err, "gpt: dim %ld is not divisible by heads %d (each head takes dim/heads channels)", dim,
                       heads);
    if (context < 1 || context > GPT_MAX_CONTEXT)
        return rm_fail(err, "gpt: context must be 1..%ld tokens, got %ld", GPT_MAX_CONTEXT, context);
    if (vocab < 2 || vocab > GPT_MAX_VOCAB)
        return rm_fail(err, "gpt: vocabulary must be 2..%ld tokens, got %ld", GPT_MAX_VOCAB, vocab);

    long C = dim;
    g->layers = layers;
    g->heads = heads;
    g->dim = C;
    g->context = context;
    g->vocab = vocab;
    g->padded_vocab = (vocab + RM_GPT_VOCAB_ALIGN - 1) / RM_GPT_VOCAB_ALIGN * RM_GPT_VOCAB_ALIGN;

    long at = 0;
    g->wte = at;
    at += g->padded_vocab * C;
    g->wpe = at;
    at += context * C;
    for (int l = 0; l < layers; l++) {
        rm_gpt_block_offsets *b = &g->block[l];
        b->ln1_w = at;
        at += C;
        b->ln1_b = at;
        at += C;
        b->qkv_w = at;
        at += 3 * C * C;
        b->qkv_b = at;
        at += 3 * C;
        b->proj_w = at;
        at += C * C;
        b->proj_b = at;
        at += C;
        b->ln2_w = at;
        at += C;
        b->ln2_b = at;
        at += C;
        b->fc_w = at;
        at += 4 * C * C;
        b->fc_b = at;
        at += 4 * C;
        b->fcproj_w = at;
        at += C * 4 * C;
        b->fcproj_b = at;
        at += C;
    }
    g->lnf_w = at;
    at += C;
    g->lnf_b = at;
    at += C;
    g->n_params = at;
    return RM_OK;
}

double rm_gpt_layout_train_flops_per_token(const rm_gpt_layout *g)
{
    double C = (double)g->dim, T = (double)g->context;
    double n = (double)g->n_params - T * C - (double)(g->padded_vocab - g->vocab) * C;
    return 6.0 * n + 6.0 * (double)g->layers * C * T;
}
