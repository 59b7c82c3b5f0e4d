/* ringmaster's model seam for models built outside the tree: a shared
 * library that exports
 *
 *     const ringmaster_model *ringmaster_model_entry(void);
 *
 * and is named by a job's `model: {type: plugin, library: PATH}`. This
 * header is installed (include/ringmaster_model.h) and is the whole
 * contract: a library compiled against it needs nothing else of ringmaster.
 *
 * The version is RINGMASTER_MODEL_ABI: ringmaster refuses a library built
 * against another one, by name. Memory: ringmaster owns the parameter and
 * gradient buffers (one flat fp32 buffer each, laid out as the tensor
 * table says); the model owns whatever `create` allocates. Errors come back
 * as a non-zero return with a message in err (err_cap bytes). */
#ifndef RINGMASTER_MODEL_H_PUBLIC
#define RINGMASTER_MODEL_H_PUBLIC

#include <stddef.h>
#include <stdint.h>

#define RINGMASTER_MODEL_ABI 1
#define RINGMASTER_MODEL_MAX_TENSORS 4096

/* The record the model reads (the dataset's format) and the batch layout
 * that follows from it: records give input_dim floats in [0, 1] and one
 * label byte per sample; tokens give context int32 inputs and context
 * int32 next-token targets per sample. */
enum { RINGMASTER_RECORDS = 0, RINGMASTER_TOKENS = 1 };

/* What the job and the dataset say, for the model to size itself. */
typedef struct ringmaster_model_facts {
    int data_format;
    long input_dim, classes; /* records */
    long vocab, context;     /* tokens */
    long hidden[16];         /* model.hidden */
    int n_hidden;
    long layers, heads, dim; /* model.layers, model.heads, model.dim */
} ringmaster_model_facts;

typedef struct ringmaster_model_tensor {
    char name[64];
    int ndim;       /* 1 or 2 */
    long shape[2];  /* row-major; matrices [out x in] */
    long offset;    /* in floats, in the flat buffer; tensors tile it in order */
    int decay;      /* weight decay applies */
} ringmaster_model_tensor;

/* Called by backward each time the gradient region [offset, n_params) is
 * final, so its all-reduce can start; non-zero: stop and return it. */
typedef int (*ringmaster_grad_ready)(void *ctx, long offset);

typedef struct ringmaster_model {
    int abi;            /* RINGMASTER_MODEL_ABI */
    const char *name;   /* for messages */
    int data_format;    /* RINGMASTER_RECORDS or RINGMASTER_TOKENS */
    unsigned devices;   /* bit 0: CPU (the only device a library model runs on today) */
    /* The parameter table: at most RINGMASTER_MODEL_MAX_TENSORS tensors. */
    int (*describe)(const ringmaster_model_facts *facts, ringmaster_model_tensor *tensors, int *n_tensors,
                    long *n_params, double *train_flops_per_sample, char *err, size_t err_cap);
    /* Activations for up to max_batch samples; *impl goes back to destroy. */
    int (*create)(const ringmaster_model_facts *facts, long max_batch, void **impl, char *err, size_t err_cap);
    void (*destroy)(void *impl);
    /* Initial weights, a pure function of seed (every rank calls it). */
    void (*init_params)(const ringmaster_model_facts *facts, uint64_t seed, float *params);
    /* Sums the loss over the n samples; *correct counts right predictions. */
    int (*forward)(void *impl, const float *params, const void *input, const void *target, long n,
                   double *loss_sum, long *correct, char *err, size_t err_cap);
    /* After forward on the same batch: grad_scale x d(loss_sum)/d(params)
     * written (accumulate 0) or added (1) into grads; ready (may be NULL). */
    int (*backward)(void *impl, const float *params, float *grads, const void *target, long n, float grad_scale,
                    int accumulate, ringmaster_grad_ready ready, void *ready_ctx, char *err, size_t err_cap);
} ringmaster_model;

typedef const ringmaster_model *(*ringmaster_model_entry_fn)(void);

#endif
