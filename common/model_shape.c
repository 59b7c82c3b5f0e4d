#include "model_shape.h"

void rm_model_shape_init(rm_model_shape *shape, const rm_config *cfg, long input_dim, long classes)
{
    shape->n_layers = cfg->n_hidden + 1;
    shape->dims[0] = input_dim;
    for (int i = 0; i < cfg->n_hidden; i++)
        shape->dims[i + 1] = cfg->hidden[i];
    shape->dims[shape->n_layers] = classes;
    shape->activation = cfg->activation;
    long off = 0;
    for (int l = 0; l < shape->n_layers; l++) {
        shape->weight_offset[l] = off;
        off += shape->dims[l] * shape->dims[l + 1];
        shape->bias_offset[l] = off;
        off += shape->dims[l + 1];
    }
    shape->n_params = off;
}

double rm_model_shape_train_flops_per_sample(const rm_model_shape *shape)
{
    double weights = 0;
    for (int l = 0; l < shape->n_layers; l++)
        weights += (double)shape->dims[l] * (double)shape->dims[l + 1];
    return 6.0 * weights;
}
