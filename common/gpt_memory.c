#include "gpt_memory.h"

#include "config.h"

#include <stdint.h>

/* A buffer of count floats as the planners carve it: rounded up to whole
 * cache lines (16 floats) or, for the GPU's own buffers, 64 floats. */
static size_t up(size_t count, size_t align)
{
    return (count + align - 1) / align * align;
}

/* rm_gpt_layer_carve's floats for one layer */
static size_t layer_floats(const rm_gpt_layout *g, long B, size_t att_per_seq, int recompute)
{
    size_t BT = (size_t)B * (size_t)g->context, C = (size_t)g->dim;
    int keep_ln = recompute < RM_RECOMPUTE_GELU_LAYERNORM, keep_gelu = recompute < RM_RECOMPUTE_GELU;
    size_t s = 0;
    if (keep_ln)
        s += 2 * up(BT * C, 16);         /* ln1, ln2 */
    s += 4 * up(BT, 16);                 /* their means and 1/std */
    s += up(BT * 3 * C, 16);             /* qkv */
    s += up((size_t)B * att_per_seq, 16); /* att */
    s += 3 * up(BT * C, 16);             /* atty, res2, res3 */
    s += (keep_gelu ? 2 : 1) * up(BT * 4 * C, 16); /* fc_gelu and gelu_d, or fc_pre */
    return s;
}

size_t rm_gpt_activation_bytes(const rm_gpt_layout *g, const rm_gpt_memory_plan *p)
{
    size_t B = (size_t)p->micro_batch, T = (size_t)g->context, C = (size_t)g->dim, H = (size_t)g->heads;
    size_t BT = B * T, V = (size_t)g->padded_vocab;
    int fused = p->gpu && p->attention == RM_ATT_FUSED;
    size_t a = p->gpu ? 64 : 16; /* the planner's own buffers */
    size_t f = up(BT * C, a);    /* encoded */
    f += (size_t)g->layers * layer_floats(g, p->micro_batch, fused ? H * T : H * T * T, p->recompute);
    if (p->recompute >= RM_RECOMPUTE_GELU_LAYERNORM) /* the scratch the layers share */
        f += up(BT * C, 16);
    if (p->recompute >= RM_RECOMPUTE_GELU)
        f += up(BT * 4 * C, 16);
    f += up(BT * C, a) + 2 * up(BT, a); /* lnf, its mean and 1/std */
    f += up(BT * V, a);                  /* logits */
    f += up(BT * 4 * C, a) + 2 * up(BT * C, a) + up(BT * 3 * C, a); /* fc_pre, dres, dc, dqkv */
    if (!p->gpu)
        return (f + 3 * up(BT, 16) + up(T * T, 16)) * sizeof(float); /* row max, 1/sum, ones; datt */
    f += up(fused ? B * H * T : H * T * T, a); /* datt */
    size_t bytes = f * sizeof(float);
    if (p->precision == RM_PREC_BF16) /* two operands cast to bf16, BT x 4C each */
        bytes += 2 * BT * 4 * C * 2;
    bytes += BT * sizeof(double) + sizeof(double) + BT * sizeof(int) + sizeof(long long); /* row losses */
    bytes += (3 * BT + 1) * sizeof(int32_t); /* the encoder's backward plan */
    return bytes;
}

void rm_gpt_memory_count(const rm_gpt_layout *g, const rm_gpt_memory_plan *p, rm_gpt_memory *out)
{
    size_t n = (size_t)g->n_params;
    out->weights = n * sizeof(float) + (p->gpu && p->precision == RM_PREC_BF16 ? n * 2 : 0);
    out->gradients = n * sizeof(float);
    out->optimizer = (size_t)p->moments * (size_t)p->state_params * sizeof(float);
    out->activations = rm_gpt_activation_bytes(g, p);
    /* inputs and targets as int32: on the GPU two slots of the worker's
     * batch (one filling while the other is read), on the CPU the last
     * forward's copy */
    size_t tokens = (size_t)(p->gpu ? 2 * p->local_batch : p->micro_batch) * (size_t)g->context;
    out->other = 2 * tokens * sizeof(int32_t);
    out->total = out->weights + out->gradients + out->optimizer + out->activations + out->other;
}
