/* GPT-2 inference on the CPU, one token at a time with a key/value cache:
 * each new token costs one position's products (matrix-vector), not the
 * whole context again. What `ringmaster sample` generates with. */
#ifndef RINGMASTER_GPT_INFER_H
#define RINGMASTER_GPT_INFER_H

#include "error.h"
#include "gpt_layout.h"

#include <stdint.h>

typedef struct rm_gpt_infer {
    rm_gpt_layout g;
    const float *params; /* not owned; the layout's flat buffer */
    long pos;            /* positions filled in the cache */
    float *k_cache, *v_cache; /* [layers x context x dim] */
    float *x, *ln, *qkv, *atty, *fc, *tmp, *scores, *logits;
    float *arena; /* every buffer above */
} rm_gpt_infer;

/* params must outlive the state. Free with rm_gpt_infer_free. */
int rm_gpt_infer_init(rm_gpt_infer *s, const rm_gpt_layout *g, const float *params, rm_error *err);
void rm_gpt_infer_free(rm_gpt_infer *s);

/* Forgets the cached positions: the next token is position 0. */
void rm_gpt_infer_reset(rm_gpt_infer *s);

/* Feeds `token` at the next position and points *logits at the next
 * token's logits over the real vocabulary (valid until the next call).
 * Fails when the context is full or the token is not in the vocabulary. */
int rm_gpt_infer_step(rm_gpt_infer *s, int32_t token, const float **logits, rm_error *err);

#endif
