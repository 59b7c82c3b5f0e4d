/* The MLP's shape and where each tensor lives in the flat parameter
 * buffer. Layer l maps dims[l] inputs to dims[l+1] outputs; its weight is
 * [out x in] row-major (as torch.nn.Linear stores it) followed by its
 * bias [out]. Layers follow each other in forward order, so backward
 * finishes the buffer from the end towards the start. */
#ifndef RINGMASTER_MODEL_SHAPE_H
#define RINGMASTER_MODEL_SHAPE_H

#include "config.h"

#define RM_MAX_LAYERS (RM_MAX_HIDDEN + 1)

typedef struct rm_model_shape {
    int n_layers;
    long dims[RM_MAX_LAYERS + 1];
    long weight_offset[RM_MAX_LAYERS]; /* in floats */
    long bias_offset[RM_MAX_LAYERS];
    long n_params;
    int activation;
} rm_model_shape;

void rm_model_shape_init(rm_model_shape *shape, const rm_config *cfg, long input_dim, long classes);

/* Floating-point operations of one training sample (forward + backward),
 * 6 per weight as usual for dense layers. */
double rm_model_shape_train_flops_per_sample(const rm_model_shape *shape);

#endif
