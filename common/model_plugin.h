/* Models from shared libraries (model.type: plugin): loading a library
 * built against the public header ringmaster_model.h, checking its ABI
 * version and devices, and its digest (which goes into the job's hashes,
 * so a resume with another library is refused). */
#ifndef RINGMASTER_MODEL_PLUGIN_H
#define RINGMASTER_MODEL_PLUGIN_H

#include "config.h"
#include "error.h"
#include "ringmaster_model.h"

#include <stdint.h>

/* Opens path and returns its model table; *handle is for rm_plugin_close.
 * Refused by name: a missing or unloadable library, no entry point, another
 * ABI version. */
const ringmaster_model *rm_plugin_open(const char *path, void **handle, rm_error *err);
void rm_plugin_close(void *handle);

/* XXH3 of the library file's bytes; 0 when it cannot be read. */
uint64_t rm_plugin_digest(const char *path);

/* The facts a library model sees, from the config and the dataset. */
void rm_plugin_facts(const rm_config *cfg, const rm_dataset_facts *facts, ringmaster_model_facts *out);

#endif
