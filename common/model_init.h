/* Starting weights from a file (model.init): a safetensors file in
 * Hugging Face's GPT-2 layout (with or without the "transformer." prefix,
 * its attention-mask buffers ignored, an lm_head accepted when it equals
 * the tied embedding), ringmaster's own export, or an llm.c model file.
 * Every tensor of the model's table is found by name and its shape checked;
 * a mismatch is refused naming the tensor. */
#ifndef RINGMASTER_MODEL_INIT_H
#define RINGMASTER_MODEL_INIT_H

#include "error.h"
#include "model.h"

/* Overwrites params (m->n_params floats) with the weights in path. */
int rm_model_init_from_file(const rm_model *m, const char *path, float *params, rm_error *err);

#endif
