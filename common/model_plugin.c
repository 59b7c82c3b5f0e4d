#include "model_plugin.h"

#include "fsutil.h"
#include "hash.h"

#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

const ringmaster_model *rm_plugin_open(const char *path, void **handle, rm_error *err)
{
    *handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!*handle) {
        rm_fail(err, "model.library %s: cannot load it: %s", path, dlerror());
        return NULL;
    }
    ringmaster_model_entry_fn entry;
    void *sym = dlsym(*handle, "ringmaster_model_entry");
    memcpy(&entry, &sym, sizeof entry); /* object pointer to function pointer, as POSIX allows */
    const ringmaster_model *m = sym ? entry() : NULL;
    const char *why = !sym ? "it exports no ringmaster_model_entry (see ringmaster_model.h)"
                      : !m ? "its ringmaster_model_entry returned NULL"
                           : NULL;
    if (!why && m->abi != RINGMASTER_MODEL_ABI) {
        rm_fail(err, "model.library %s: built against model ABI %d; this ringmaster speaks ABI %d (rebuild it "
                     "against this ringmaster's ringmaster_model.h)",
                path, m->abi, RINGMASTER_MODEL_ABI);
        rm_plugin_close(*handle);
        *handle = NULL;
        return NULL;
    }
    if (!why && (!m->describe || !m->create || !m->destroy || !m->init_params || !m->forward || !m->backward))
        why = "its model table leaves a function out";
    if (why) {
        rm_fail(err, "model.library %s: %s", path, why);
        rm_plugin_close(*handle);
        *handle = NULL;
        return NULL;
    }
    return m;
}

void rm_plugin_close(void *handle)
{
    if (handle)
        dlclose(handle);
}

uint64_t rm_plugin_digest(const char *path)
{
    size_t len;
    rm_error err;
    char *bytes = rm_read_file(path, (size_t)1 << 32, "library is implausibly large", &len, &err);
    if (!bytes)
        return 0;
    uint64_t h = rm_hash64(bytes, len);
    free(bytes);
    return h;
}

void rm_plugin_facts(const rm_config *cfg, const rm_dataset_facts *facts, ringmaster_model_facts *out)
{
    memset(out, 0, sizeof *out);
    out->data_format = facts->data_format;
    out->input_dim = facts->input_dim;
    out->classes = facts->classes;
    out->vocab = facts->vocab;
    out->context = cfg->model_context;
    for (int i = 0; i < cfg->n_hidden && i < 16; i++)
        out->hidden[i] = cfg->hidden[i];
    out->n_hidden = cfg->n_hidden < 16 ? cfg->n_hidden : 16;
    out->layers = cfg->model_layers;
    out->heads = cfg->model_heads;
    out->dim = cfg->model_dim;
}
