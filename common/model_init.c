#include "model_init.h"

#include "fsutil.h"
#include "safetensors.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LLMC_MAGIC 20240326
#define LLMC_HEADER_INTS 256

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* The file's tensor for table tensor t: its own name, or without the
 * "transformer." prefix (Hugging Face's GPT2Model saves it that way). */
static const rm_st_tensor *find_tensor(const rm_safetensors *st, const rm_param_tensor *t)
{
    const rm_st_tensor *x = rm_safetensors_find(st, t->name);
    if (!x && strncmp(t->name, "transformer.", 12) == 0)
        x = rm_safetensors_find(st, t->name + 12);
    return x;
}

/* Copies the exported layout (rows_used rows, [in x out] when transposed)
 * into the table's [out x in] with its padding rows zero. src may sit at
 * any alignment (safetensors data offsets are byte offsets). */
static void place(const rm_param_tensor *t, const uint8_t *src, float *params)
{
    long rows = t->rows_used, cols = t->ndim == 2 ? t->shape[1] : 1;
    float *dst = params + t->offset;
    memset(dst, 0, (size_t)t->numel * sizeof *dst);
    if (t->transposed) {
        for (long r = 0; r < rows; r++)
            for (long c = 0; c < cols; c++)
                memcpy(&dst[r * cols + c], src + (size_t)(c * rows + r) * sizeof(float), sizeof(float));
    } else {
        memcpy(dst, src, (size_t)(rows * cols) * sizeof *dst);
    }
}

static int from_safetensors(const rm_model *m, const char *path, float *params, rm_error *err)
{
    rm_safetensors st;
    if (rm_safetensors_read(path, &st, err) != RM_OK) {
        rm_safetensors_free(&st);
        return RM_ERR;
    }
    int rc = RM_OK;
    char *used = calloc((size_t)st.n_tensors + 1, 1);
    if (!used)
        rc = rm_fail(err, "out of memory");
    for (int i = 0; i < m->n_tensors && rc == RM_OK; i++) {
        const rm_param_tensor *t = &m->tensors[i];
        const rm_st_tensor *x = find_tensor(&st, t);
        if (!x) {
            rc = rm_fail(err, "%s: has no tensor %s, which model %s needs", path, t->name, m->name);
            break;
        }
        used[x - st.tensors] = 1;
        if (strcmp(x->dtype, "F32") != 0) {
            rc = rm_fail(err, "%s: tensor %s is %s; model.init reads F32 weights", path, x->name, x->dtype);
            break;
        }
        long want[2] = {t->rows_used, t->ndim == 2 ? t->shape[1] : 0};
        if (t->transposed) {
            want[0] = t->shape[1];
            want[1] = t->rows_used;
        }
        if (x->ndim != t->ndim || (long)x->shape[0] != want[0] || (t->ndim == 2 && (long)x->shape[1] != want[1])) {
            char got[64];
            int at = snprintf(got, sizeof got, "[");
            for (int d = 0; d < x->ndim && at < (int)sizeof got; d++)
                at += snprintf(got + at, sizeof got - (size_t)at, "%s%llu", d ? ", " : "",
                               (unsigned long long)x->shape[d]);
            snprintf(got + at, sizeof got - (size_t)(at < (int)sizeof got ? at : (int)sizeof got - 1), "]");
            if (t->ndim == 2)
                rc = rm_fail(err, "%s: tensor %s has shape %s, the model needs [%ld, %ld]", path, x->name, got,
                             want[0], want[1]);
            else
                rc = rm_fail(err, "%s: tensor %s has shape %s, the model needs [%ld]", path, x->name, got, want[0]);
            break;
        }
        place(t, st.data + x->begin, params);
    }
    /* What else the file holds must be something a GPT-2 file carries
     * that this model has no use for. */
    for (int i = 0; i < st.n_tensors && rc == RM_OK; i++) {
        const rm_st_tensor *x = &st.tensors[i];
        if (used[i] || ends_with(x->name, ".attn.bias") || ends_with(x->name, ".attn.masked_bias"))
            continue;
        const rm_param_tensor *wte = rm_model_tensor(m, "transformer.wte.weight");
        if (strcmp(x->name, "lm_head.weight") == 0 && wte && strcmp(x->dtype, "F32") == 0) {
            /* a classifier saved beside the embedding it is tied to */
            const uint8_t *head = st.data + x->begin;
            long n = wte->rows_used * wte->shape[1];
            if ((long)((x->end - x->begin) / sizeof(float)) != n ||
                memcmp(head, params + wte->offset, (size_t)n * sizeof(float)) != 0)
                rc = rm_fail(err, "%s: lm_head.weight differs from transformer.wte.weight, but this model ties its "
                                  "classifier to the token embedding",
                             path);
            continue;
        }
        rc = rm_fail(err, "%s: tensor %s is not part of model %s", path, x->name, m->name);
    }
    free(used);
    rm_safetensors_free(&st);
    return rc;
}

/* llm.c's model file: the header, then each tensor kind for every layer in
 * turn (the order ckpt export --format llmc writes). */
static int from_llmc(const rm_model *m, const char *path, const uint8_t *file, size_t len, float *params,
                     rm_error *err)
{
    int32_t h[LLMC_HEADER_INTS];
    memcpy(h, file, sizeof h);
    if (h[1] != 3)
        return rm_fail(err, "%s: llm.c model file version %d; only version 3 (fp32) is read", path, h[1]);
    if (m->type != RM_MODEL_GPT)
        return rm_fail(err, "%s: an llm.c GPT-2 file, but model.type is %s", path, m->name);
    const rm_gpt_layout *g = &m->gpt;
    long want[5] = {g->context, g->vocab, g->layers, g->heads, g->dim};
    static const char *const what[5] = {"context (maxT)", "vocabulary (V)", "layers (L)", "heads (NH)", "dim (C)"};
    for (int i = 0; i < 5; i++)
        if (h[2 + i] != want[i])
            return rm_fail(err, "%s: its %s is %d, the model's is %ld", path, what[i], h[2 + i], want[i]);
    long Vp = h[7], C = g->dim, T = g->context, L = g->layers;
    if (Vp < g->vocab || Vp > (1L << 24))
        return rm_fail(err, "%s: padded vocabulary %ld is below the vocabulary %ld", path, Vp, g->vocab);
    long n = Vp * C + T * C + L * (12 * C * C + 13 * C) + 2 * C;
    if (len != sizeof h + (size_t)n * sizeof(float))
        return rm_fail(err, "%s: %zu bytes, but its header describes %zu", path, len, sizeof h + (size_t)n * 4);
    const float *src = (const float *)(file + sizeof h);
    memset(params, 0, (size_t)m->n_params * sizeof *params);
    memcpy(params + g->wte, src, (size_t)(g->vocab * C) * sizeof(float));
    src += Vp * C;
    memcpy(params + g->wpe, src, (size_t)(T * C) * sizeof(float));
    src += T * C;
    /* per kind, every layer: ln1 w, b; qkv w, b; proj w, b; ln2 w, b; fc w, b; fcproj w, b */
    const long sizes[12] = {C, C, 3 * C * C, 3 * C, C * C, C, C, C, 4 * C * C, 4 * C, 4 * C * C, C};
    for (int kind = 0; kind < 12; kind++)
        for (long l = 0; l < L; l++) {
            const rm_gpt_block_offsets *b = &g->block[l];
            const long offs[12] = {b->ln1_w, b->ln1_b, b->qkv_w, b->qkv_b,   b->proj_w,   b->proj_b,
                                   b->ln2_w, b->ln2_b, b->fc_w,  b->fc_b,    b->fcproj_w, b->fcproj_b};
            memcpy(params + offs[kind], src, (size_t)sizes[kind] * sizeof(float));
            src += sizes[kind];
        }
    memcpy(params + g->lnf_w, src, (size_t)C * sizeof(float));
    memcpy(params + g->lnf_b, src + C, (size_t)C * sizeof(float));
    return RM_OK;
}

int rm_model_init_from_file(const rm_model *m, const char *path, float *params, rm_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return rm_fail_errno(err, errno, "model.init %s: cannot open", path);
    int32_t magic = 0;
    size_t got = fread(&magic, sizeof magic, 1, f);
    fclose(f);
    if (got == 1 && magic == LLMC_MAGIC) {
        size_t len;
        uint8_t *file = (uint8_t *)rm_read_file(path, (size_t)1 << 40, "model file is implausibly large", &len, err);
        if (!file)
            return RM_ERR;
        int rc = len < LLMC_HEADER_INTS * sizeof(int32_t)
                     ? rm_fail(err, "%s: shorter than llm.c's header", path)
                     : from_llmc(m, path, file, len, params, err);
        free(file);
        return rc;
    }
    return from_safetensors(m, path, params, err);
}
