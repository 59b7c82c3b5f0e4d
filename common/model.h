/* The model seam, host side: what is trained, apart from where.
 *
 * A model is its parameter table (every tensor's name, shape, offset in
 * the one flat fp32 buffer, and whether weight decay applies), the record
 * it reads from a dataset and what a batch of them holds, and what one
 * sample costs. Everything that is not the model's own compute reads this
 * table and nothing else: checkpoints (tensor table, resume checks),
 * `ckpt export`, the doctor's product shapes, metrics and MFU, the
 * optimizer's decay. The per-device forward/backward tables live with the
 * devices (worker/model_cpu.h; the GPU backend). */
#ifndef RINGMASTER_MODEL_H
#define RINGMASTER_MODEL_H

#include "config.h"
#include "error.h"
#include "gpt_layout.h"
#include "model_shape.h"
#include "ringmaster_model.h"

#define RM_TENSOR_NAME_CAP 64

enum rm_model_type { RM_MODEL_MLP = 0, RM_MODEL_GPT = 1, RM_MODEL_PLUGIN = 2 };

typedef struct rm_param_tensor {
    char name[RM_TENSOR_NAME_CAP];
    int ndim;
    long shape[2]; /* row-major; matrices are [out x in] */
    long offset;   /* in floats, in the flat buffer */
    long numel;
    int decay;       /* weight decay applies */
    int matmul;      /* a matrix applied to every position's activations (its products are the model's FLOPs) */
    int transposed;  /* stored [out x in] where the exported layout (Hugging Face's Conv1D) is [in x out] */
    long rows_used;  /* rows that exist outside ringmaster (vocabulary padding stripped on export); = shape[0] */
} rm_param_tensor;

typedef struct rm_model {
    int type;         /* enum rm_model_type */
    const char *name; /* "mlp", "gpt" */
    unsigned devices; /* bit RM_BACKEND_CPU / RM_BACKEND_GPU: where a forward/backward table exists */
    long n_params;
    int n_tensors;
    rm_param_tensor *tensors; /* owned, in buffer order */
    /* The record read (a dataset's format, RM_DATA_*) and what one sample
     * becomes in a batch: input_bytes of input and target_bytes of target
     * (records: input_dim floats and one label byte; tokens: context int32
     * inputs and context int32 next-token targets). */
    int data_format;
    long input_bytes, target_bytes;
    long positions; /* predictions per sample: the loss is averaged over samples x positions */
    long context;   /* tokens per sample (gpt) */
    long vocab;     /* classes (mlp) or token vocabulary (gpt) */
    long eot;       /* end-of-text token (gpt) */
    char tokenizer[32]; /* the dataset's tokenizer (gpt), for sampling */
    /* Training FLOPs of one sample, forward + backward: 6 per weight per
     * position, plus attention's products for the GPT. */
    double train_flops_per_sample;
    rm_model_shape mlp; /* type mlp */
    rm_gpt_layout gpt;  /* type gpt */
    int recompute;      /* type gpt: train.recompute (enum rm_recompute), how its backends keep activations */
    /* type plugin: the library's table (model_plugin.h), its handle, and
     * the facts it was described with */
    const ringmaster_model *plugin;
    void *plugin_handle;
    ringmaster_model_facts plugin_facts;
} rm_model;

/* Builds the model the config describes on the dataset the facts describe
 * (input size and classes, or vocabulary). Free with rm_model_free. */
int rm_model_init(rm_model *m, const rm_config *cfg, const rm_dataset_facts *facts, rm_error *err);
void rm_model_free(rm_model *m);

/* A model that is one tensor "params" of n floats, decaying or not: for
 * tools and tests that need a parameter table but no model. */
int rm_model_init_flat(rm_model *m, long n, int decay, rm_error *err);

/* The tensor of that name, or NULL. */
const rm_param_tensor *rm_model_tensor(const rm_model *m, const char *name);

/* One line for start-up messages: "gpt: 4 layers, 4 heads, dim 256, context 256, vocabulary 257 (padded 320)". */
void rm_model_describe(const rm_model *m, char *out, size_t cap);

const char *rm_model_type_name(int type);

/* Whether the model has a forward/backward table for the backend kind
 * (RM_BACKEND_CPU or RM_BACKEND_GPU). */
int rm_model_runs_on(const rm_model *m, int backend_kind);

#endif
