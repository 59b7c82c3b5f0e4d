#include "model.h"

#include "model_plugin.h"
#include "shard.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *rm_model_type_name(int type)
{
    return type == RM_MODEL_GPT ? "gpt" : type == RM_MODEL_PLUGIN ? "plugin" : "mlp";
}

static rm_param_tensor *add_tensor(rm_model *m, long offset, long rows, long cols, int decay, int transposed,
                                   const char *fmt, ...)
{
    rm_param_tensor *t = &m->tensors[m->n_tensors++];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->name, sizeof t->name, fmt, ap);
    va_end(ap);
    t->ndim = cols > 0 ? 2 : 1;
    t->shape[0] = rows;
    t->shape[1] = cols > 0 ? cols : 0;
    t->offset = offset;
    t->numel = cols > 0 ? rows * cols : rows;
    t->decay = decay;
    t->transposed = transposed;
    t->rows_used = rows;
    t->matmul = cols > 0;
    return t;
}

/* The MLP: every tensor decays (as it always has: its weights digest is
 * unchanged by the seam). */
static int mlp_tensors(rm_model *m)
{
    const rm_model_shape *s = &m->mlp;
    m->tensors = calloc((size_t)(2 * s->n_layers), sizeof *m->tensors);
    if (!m->tensors)
        return RM_ERR;
    for (int l = 0; l < s->n_layers; l++) {
        add_tensor(m, s->weight_offset[l], s->dims[l + 1], s->dims[l], 1, 0, "layers.%d.weight", l);
        add_tensor(m, s->bias_offset[l], s->dims[l + 1], 0, 1, 0, "layers.%d.bias", l);
    }
    return RM_OK;
}

/* The GPT under Hugging Face GPT2LMHeadModel's names. Matrices decay,
 * vectors (biases, LayerNorm) do not, as in GPT-2 and nanoGPT. Conv1D
 * weights are stored [out x in] here and exported [in x out]. */
static int gpt_tensors(rm_model *m)
{
    const rm_gpt_layout *g = &m->gpt;
    long C = g->dim;
    m->tensors = calloc((size_t)(4 + 12 * g->layers), sizeof *m->tensors);
    if (!m->tensors)
        return RM_ERR;
    rm_param_tensor *wte = add_tensor(m, g->wte, g->padded_vocab, C, 1, 0, "transformer.wte.weight");
    wte->rows_used = g->vocab;
    add_tensor(m, g->wpe, g->context, C, 1, 0, "transformer.wpe.weight")->matmul = 0; /* looked up, not applied */
    for (int l = 0; l < g->layers; l++) {
        const rm_gpt_block_offsets *b = &g->block[l];
        add_tensor(m, b->ln1_w, C, 0, 0, 0, "transformer.h.%d.ln_1.weight", l);
        add_tensor(m, b->ln1_b, C, 0, 0, 0, "transformer.h.%d.ln_1.bias", l);
        add_tensor(m, b->qkv_w, 3 * C, C, 1, 1, "transformer.h.%d.attn.c_attn.weight", l);
        add_tensor(m, b->qkv_b, 3 * C, 0, 0, 0, "transformer.h.%d.attn.c_attn.bias", l);
        add_tensor(m, b->proj_w, C, C, 1, 1, "transformer.h.%d.attn.c_proj.weight", l);
        add_tensor(m, b->proj_b, C, 0, 0, 0, "transformer.h.%d.attn.c_proj.bias", l);
        add_tensor(m, b->ln2_w, C, 0, 0, 0, "transformer.h.%d.ln_2.weight", l);
        add_tensor(m, b->ln2_b, C, 0, 0, 0, "transformer.h.%d.ln_2.bias", l);
        add_tensor(m, b->fc_w, 4 * C, C, 1, 1, "transformer.h.%d.mlp.c_fc.weight", l);
        add_tensor(m, b->fc_b, 4 * C, 0, 0, 0, "transformer.h.%d.mlp.c_fc.bias", l);
        add_tensor(m, b->fcproj_w, C, 4 * C, 1, 1, "transformer.h.%d.mlp.c_proj.weight", l);
        add_tensor(m, b->fcproj_b, C, 0, 0, 0, "transformer.h.%d.mlp.c_proj.bias", l);
    }
    add_tensor(m, g->lnf_w, C, 0, 0, 0, "transformer.ln_f.weight");
    add_tensor(m, g->lnf_b, C, 0, 0, 0, "transformer.ln_f.bias");
    return RM_OK;
}

_Static_assert((int)RINGMASTER_RECORDS == (int)RM_DATA_RECORDS && (int)RINGMASTER_TOKENS == (int)RM_DATA_TOKENS,
               "the public header's data formats are the shard format's");

/* A model from a shared library: its table, checked to tile the buffer. */
static int plugin_init(rm_model *m, const rm_config *cfg, const rm_dataset_facts *facts, rm_error *err)
{
    const char *path = cfg->model_library;
    if (!(m->plugin = rm_plugin_open(path, &m->plugin_handle, err)))
        return RM_ERR;
    const ringmaster_model *p = m->plugin;
    m->name = p->name ? p->name : "plugin";
    if (p->data_format != facts->data_format)
        return rm_fail(err, "model.library %s (%s) reads %s, but the dataset holds %s", path, m->name,
                       p->data_format == RINGMASTER_TOKENS ? "token streams" : "labelled records",
                       facts->data_format == RM_DATA_TOKENS ? "token streams" : "labelled records");
    m->devices = (p->devices & 1u) << RM_BACKEND_CPU;
    m->data_format = facts->data_format;
    rm_plugin_facts(cfg, facts, &m->plugin_facts);
    ringmaster_model_tensor *t = calloc(RINGMASTER_MODEL_MAX_TENSORS, sizeof *t);
    m->tensors = calloc(RINGMASTER_MODEL_MAX_TENSORS, sizeof *m->tensors);
    if (!t || !m->tensors) {
        free(t);
        return rm_fail(err, "out of memory");
    }
    char why[512] = "";
    int n = 0;
    long n_params = 0;
    double flops = 0;
    int rc = RM_OK;
    if (p->describe(&m->plugin_facts, t, &n, &n_params, &flops, why, sizeof why) != 0)
        rc = rm_fail(err, "model.library %s (%s): %s", path, m->name, why[0] ? why : "describe failed");
    else if (n < 1 || n > RINGMASTER_MODEL_MAX_TENSORS || n_params < 1)
        rc = rm_fail(err, "model.library %s (%s): described %d tensors of %ld parameters", path, m->name, n, n_params);
    long at = 0;
    for (int i = 0; rc == RM_OK && i < n; i++) {
        long numel = t[i].ndim == 2 ? t[i].shape[0] * t[i].shape[1] : t[i].shape[0];
        if ((t[i].ndim != 1 && t[i].ndim != 2) || numel < 1 || t[i].offset != at ||
            memchr(t[i].name, '\0', sizeof t[i].name) == NULL) {
            rc = rm_fail(err, "model.library %s (%s): tensor %d does not continue the flat buffer at %ld", path,
                         m->name, i, at);
            break;
        }
        add_tensor(m, t[i].offset, t[i].shape[0], t[i].ndim == 2 ? t[i].shape[1] : 0, t[i].decay != 0, 0, "%s",
                   t[i].name);
        at += numel;
    }
    free(t);
    if (rc == RM_OK && at != n_params)
        rc = rm_fail(err, "model.library %s (%s): tensors hold %ld parameters, the library says %ld", path, m->name,
                     at, n_params);
    m->n_params = n_params;
    m->train_flops_per_sample = flops;
    if (facts->data_format == RM_DATA_TOKENS) {
        m->context = cfg->model_context;
        m->positions = m->context;
        m->vocab = facts->vocab;
        m->input_bytes = m->target_bytes = m->context * (long)sizeof(int32_t);
    } else {
        m->positions = 1;
        m->vocab = facts->classes;
        m->input_bytes = facts->input_dim * (long)sizeof(float);
        m->target_bytes = 1;
    }
    return rc;
}

int rm_model_init(rm_model *m, const rm_config *cfg, const rm_dataset_facts *facts, rm_error *err)
{
    memset(m, 0, sizeof *m);
    m->type = cfg->model_type;
    m->name = rm_model_type_name(m->type);
    if (m->type == RM_MODEL_PLUGIN)
        return plugin_init(m, cfg, facts, err);
    m->data_format = m->type == RM_MODEL_GPT ? RM_DATA_TOKENS : RM_DATA_RECORDS;
    m->devices = (1u << RM_BACKEND_CPU) | (1u << RM_BACKEND_GPU);
    if (facts->data_format != m->data_format)
        return rm_fail(err, "model.type %s reads %s, but the dataset holds %s", m->name,
                       m->data_format == RM_DATA_TOKENS ? "token streams" : "labelled records",
                       facts->data_format == RM_DATA_TOKENS ? "token streams (use model.type: gpt)"
                                                            : "labelled records (use model.type: mlp)");
    int rc;
    if (m->type == RM_MODEL_GPT) {
        if (rm_gpt_layout_init(&m->gpt, (int)cfg->model_layers, (int)cfg->model_heads, cfg->model_dim,
                               cfg->model_context, facts->vocab, err) != RM_OK)
            return RM_ERR;
        m->n_params = m->gpt.n_params;
        m->recompute = (int)cfg->recompute;
        m->context = m->gpt.context;
        m->vocab = m->gpt.vocab;
        m->eot = facts->eot;
        /* a name, as the tokenizer table spells them (it goes into JSON as is) */
        if (facts->tokenizer[strspn(facts->tokenizer, "abcdefghijklmnopqrstuvwxyz0123456789_-")] == '\0')
            snprintf(m->tokenizer, sizeof m->tokenizer, "%s", facts->tokenizer);
        m->positions = m->context;
        m->input_bytes = m->target_bytes = m->context * (long)sizeof(int32_t);
        m->train_flops_per_sample = rm_gpt_layout_train_flops_per_token(&m->gpt) * (double)m->context;
        rc = gpt_tensors(m);
    } else {
        rm_model_shape_init(&m->mlp, cfg, facts->input_dim, facts->classes);
        m->n_params = m->mlp.n_params;
        m->vocab = facts->classes;
        m->positions = 1;
        m->input_bytes = facts->input_dim * (long)sizeof(float);
        m->target_bytes = 1;
        m->train_flops_per_sample = rm_model_shape_train_flops_per_sample(&m->mlp);
        rc = mlp_tensors(m);
    }
    if (rc != RM_OK)
        return rm_fail(err, "out of memory for the parameter table");
    return RM_OK;
}

int rm_model_init_flat(rm_model *m, long n, int decay, rm_error *err)
{
    memset(m, 0, sizeof *m);
    m->type = RM_MODEL_MLP;
    m->name = "flat";
    m->n_params = n;
    m->positions = 1;
    m->tensors = calloc(1, sizeof *m->tensors);
    if (!m->tensors)
        return rm_fail(err, "out of memory");
    add_tensor(m, 0, n, 0, decay, 0, "params");
    return RM_OK;
}

void rm_model_free(rm_model *m)
{
    free(m->tensors);
    m->tensors = NULL;
    m->n_tensors = 0;
    rm_plugin_close(m->plugin_handle);
    m->plugin_handle = NULL;
    m->plugin = NULL;
}

int rm_model_runs_on(const rm_model *m, int backend_kind)
{
    return (m->devices >> backend_kind) & 1u;
}

const rm_param_tensor *rm_model_tensor(const rm_model *m, const char *name)
{
    for (int i = 0; i < m->n_tensors; i++)
        if (strcmp(m->tensors[i].name, name) == 0)
            return &m->tensors[i];
    return NULL;
}

void rm_model_describe(const rm_model *m, char *out, size_t cap)
{
    if (m->type == RM_MODEL_PLUGIN) {
        snprintf(out, cap, "plugin %s, %ld parameters in %d tensors", m->name, m->n_params, m->n_tensors);
        return;
    }
    if (m->type == RM_MODEL_GPT) {
        const rm_gpt_layout *g = &m->gpt;
        snprintf(out, cap, "gpt, %ld parameters (%d layers, %d heads, dim %ld, context %ld, vocabulary %ld padded to %ld)",
                 m->n_params, g->layers, g->heads, g->dim, g->context, g->vocab, g->padded_vocab);
        return;
    }
    size_t at = (size_t)snprintf(out, cap, "mlp, %ld parameters (", m->n_params);
    for (int l = 0; l <= m->mlp.n_layers && at < cap; l++)
        at += (size_t)snprintf(out + at, cap - at, "%s%ld", l ? "-" : "", m->mlp.dims[l]);
    if (at < cap)
        snprintf(out + at, cap - at, ")");
}
