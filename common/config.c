#include "config.h"

#include "crypto.h"
#include "hash.h"
#include "model.h"
#include "model_plugin.h"
#include "rng.h"
#include "shard.h"
#include "token_file.h"
#include "yaml_tree.h"

#include <errno.h>
#include <stdarg.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

typedef enum { KEY_INT, KEY_DOUBLE, KEY_STRING, KEY_ENUM, KEY_INT_LIST, KEY_STEP_RANGE } key_type;

typedef struct key_spec {
    const char *path; /* "section.name" or a top-level "name" */
    key_type type;
    size_t offset;
    double min, max;    /* inclusive range for numbers and list items */
    int min_exclusive;  /* (min, max] */
    const char *const *names; /* KEY_ENUM: NULL-terminated */
    size_t cap;         /* KEY_STRING: buffer size */
    const char *doc;
} key_spec;

static const char *const model_type_names[] = {"mlp", "gpt", "plugin", NULL};
static const char *const activation_names[] = {"relu", "tanh", NULL};
static const char *const optimizer_names[] = {"sgd", "adamw", NULL};
static const char *const schedule_names[] = {"cosine", "constant", NULL};
static const char *const backend_names[] = {"cpu", "gpu", "auto", NULL};
static const char *const cpu_reduce_names[] = {"auto", "shm", "mpi", "hierarchical", NULL};
static const char *const precision_names[] = {"fp32", "tf32", "bf16", NULL};
static const char *const attention_names[] = {"simple", "fused", NULL};
static const char *const verbosity_names[] = {"quiet", "normal", "verbose", NULL};
static const char *const on_error_names[] = {"continue", "stop", NULL};
static const char *const nan_policy_names[] = {"stop", "skip", "rollback", NULL};

#define OFF(field) offsetof(rm_config, field)
#define STR(field) KEY_STRING, OFF(field), 0, 0, 0, NULL, sizeof(((rm_config *)0)->field)
#define INT(field, lo, hi) KEY_INT, OFF(field), lo, hi, 0, NULL, 0
#define DBL(field, lo, hi) KEY_DOUBLE, OFF(field), lo, hi, 0, NULL, 0
#define DBL_POS(field, hi) KEY_DOUBLE, OFF(field), 0, hi, 1, NULL, 0
#define ENUM(field, names) KEY_ENUM, OFF(field), 0, 0, 0, names, 0

static const key_spec keys[] = {
    {"model.type", ENUM(model_type, model_type_names),
     "mlp (records) | gpt (GPT-2 on token streams) | plugin (model.library)"},
    {"model.library", STR(model_library), "plugin: a shared library built against ringmaster_model.h"},
    {"model.hidden", KEY_INT_LIST, OFF(hidden), 1, 65536, 0, NULL, 0, "hidden layer widths, e.g. [512, 256]"},
    {"model.activation", ENUM(activation, activation_names), "relu | tanh"},
    {"model.layers", INT(model_layers, 1, 128), "gpt: transformer blocks"},
    {"model.heads", INT(model_heads, 1, 1024), "gpt: attention heads (divides model.dim)"},
    {"model.dim", INT(model_dim, 1, 65536), "gpt: embedding width"},
    {"model.context", INT(model_context, 1, 1 << 20), "gpt: tokens per sequence (and positions)"},
    {"model.init", STR(model_init), "start from these weights (safetensors: Hugging Face GPT-2 or ringmaster's export; "
                                    "or an llm.c model file); empty: random"},
    {"data.dir", STR(data_dir), "dataset directory (holds one shard set per split)"},
    {"data.train_split", STR(train_split), "split to train on"},
    {"data.eval_split", STR(eval_split), "split to evaluate on; empty: none"},
    {"data.shuffle_window_shards", INT(shuffle_window_shards, 0, 1e9), "shards shuffled together; 0: all"},
    {"data.prefetch_batches", INT(prefetch_batches, 1, 256), "batches the loader prepares ahead"},
    {"train.global_batch", INT(global_batch, 1, 1 << 24), "samples per step over all workers"},
    {"train.epochs", DBL(epochs, 0, 1e6), "passes over the training split (or use steps)"},
    {"train.steps", INT(steps, 0, 1e12), "optimizer steps (or use epochs)"},
    {"train.optimizer", ENUM(optimizer, optimizer_names), "sgd (with momentum) | adamw"},
    {"train.lr", DBL_POS(lr, 100), "peak learning rate"},
    {"train.momentum", DBL(momentum, 0, 0.999999), "SGD momentum"},
    {"train.beta1", DBL(beta1, 0, 0.999999), "AdamW beta1"},
    {"train.beta2", DBL(beta2, 0, 0.999999999), "AdamW beta2"},
    {"train.eps", DBL_POS(eps, 1), "AdamW epsilon"},
    {"train.weight_decay", DBL(weight_decay, 0, 10), "L2 (sgd) or decoupled (adamw) weight decay"},
    {"train.warmup_steps", INT(warmup_steps, 0, 1e12), "linear warmup steps"},
    {"train.schedule", ENUM(schedule, schedule_names), "cosine | constant after warmup"},
    {"train.min_lr_ratio", DBL(min_lr_ratio, 0, 1), "final lr as a fraction of lr (cosine)"},
    {"train.seed", INT(seed, 0, 9007199254740992.0), "seed for weights and sample order"},
    {"train.eval_every", INT(eval_every, 0, 1e12), "evaluate every N steps; 0: at the end only"},
    {"train.bucket_mb", DBL_POS(bucket_mb, 4096), "gradient all-reduce bucket size in MiB"},
    {"train.grad_accum", INT(grad_accum, 1, 65536), "micro-steps per optimizer step (gradients reduced once)"},
    {"train.grad_clip", DBL(grad_clip, 0, 1e9), "clip the global gradient norm to this; 0: off"},
    {"train.eval_tokens", INT(eval_tokens, 0, 1e15), "gpt: at most this many tokens per evaluation; 0: the whole split"},
    {"train.zero", INT(zero, 0, 1),
     "1: ZeRO-1, each worker holds the optimizer state of its 1/N slice only (cpu_reduce mpi; shm and "
     "hierarchical always do); 0: all of it"},
    {"train.precision", ENUM(precision, precision_names), "fp32 | tf32 | bf16 (GPU backend; fp32 master weights)"},
    {"train.recompute", INT(recompute, 0, 2),
     "gpt: activations backward recomputes instead of keeping: 0 none, 1 GELU, 2 GELU and LayerNorm (same bits)"},
    {"train.attention", ENUM(attention, attention_names),
     "gpt on the GPU: simple (T x T scores kept for backward) | fused (scores never stored)"},
    {"checkpoint.every_steps", INT(ckpt_every_steps, 0, 1e12), "checkpoint every N steps; 0: not by steps"},
    {"checkpoint.every_seconds", DBL(ckpt_every_seconds, 0, 1e9), "checkpoint every N seconds; 0: not by time"},
    {"checkpoint.keep", INT(ckpt_keep, 1, 1000000), "committed checkpoints to keep"},
    {"checkpoint.dir", STR(ckpt_dir), "checkpoint directory; empty: <run_dir>/checkpoints"},
    {"checkpoint.on_error", ENUM(ckpt_on_error, on_error_names), "after a failed checkpoint write: continue | stop"},
    {"fault.max_restarts", INT(max_restarts, 0, 1000000), "restarts from the latest checkpoint before giving up"},
    {"fault.restart_backoff_s", DBL(restart_backoff_s, 0, 3600), "wait before the first restart; doubles each time"},
    {"fault.hang_timeout_s", DBL_POS(hang_timeout_s, 1e6), "a rank silent this long is named and the job ended"},
    {"fault.nan_policy", ENUM(nan_policy, nan_policy_names), "non-finite loss or gradient: stop | skip | rollback"},
    {"fault.min_workers", INT(min_workers, 0, 65536),
     "after a host is lost, restart on the hosts left with down to this many workers; 0: never fewer"},
    {"launch.workers", INT(workers, 1, 65536), "worker ranks"},
    {"launch.backend", ENUM(backend, backend_names), "cpu | gpu | auto"},
    {"launch.threads_per_worker", INT(threads_per_worker, 1, 1024), "BLAS threads per worker"},
    {"launch.mpirun", STR(mpirun), "the mpirun command to launch with"},
    {"launch.hostfile", STR(hostfile),
     "Open MPI hostfile (HOST slots=N per line) to launch across; empty: this host, or the Slurm allocation"},
    {"launch.network_interface", STR(network_interface),
     "the interface MPI and NCCL use between hosts (eth0, ib0, ...); empty: their own choice"},
    {"launch.coordinator_host", STR(coordinator_host),
     "the host of launch.hostfile the coordinator runs on (the workers take the other slots); empty: the first "
     "slot"},
    {"launch.cpu_reduce", ENUM(cpu_reduce, cpu_reduce_names),
     "CPU backend gradient sum: shm (node-shared memory) | hierarchical (shared memory in each host, then a "
     "chain between hosts: the bits of one host) | mpi | auto (shm on one node, hierarchical over hosts)"},
    {"observe.progress_every_steps", INT(progress_every_steps, 1, 1e9), "plain progress line interval"},
    {"observe.verbosity", ENUM(verbosity, verbosity_names), "quiet | normal | verbose"},
    {"observe.metrics_port", INT(metrics_port, -1, 65535), "Prometheus /metrics port; 0: any free port, -1: off"},
    {"observe.metrics_address", STR(metrics_address), "address /metrics listens on"},
    {"observe.metrics_token_file", STR(metrics_token_file), "bearer token file (mode 0600) for /metrics"},
    {"observe.trace_steps", KEY_STEP_RANGE, OFF(trace_steps), 0, 1e12, 0, NULL, 0, "[from, to]: Chrome trace of these steps"},
    {"observe.straggler_window_steps", INT(straggler_window_steps, 4, 1e6), "steps a straggler is judged over"},
    {"observe.straggler_threshold", DBL(straggler_threshold, 1.01, 100), "median compute ratio that names a straggler"},
    {"observe.slowdown_window_steps", INT(slowdown_window_steps, 10, 1e6), "steps of the rolling median step time"},
    {"observe.slowdown_threshold", DBL(slowdown_threshold, 1.01, 100), "step time ratio that names a slowdown"},
    {"run_dir", STR(run_dir), "run directory; empty: runs/<config>-<time>"},
    {"security.key_file", STR(key_file), "key for encrypted shards and checkpoints (ringmaster keygen); empty: none"},
    {"security.decrypt_cache_mb", INT(decrypt_cache_mb, 1, 1 << 24), "decrypted shards kept in memory per split"},
    {"debug.nan_at_step", INT(debug_nan_at_step, -1, 1e12), "test knob: poison the loss gradient at this step"},
    {"debug.ckpt_write_delay_s", DBL(debug_ckpt_write_delay_s, 0, 3600), "test knob: slow checkpoint writes down"},
    {"debug.ckpt_commit_delay_s", DBL(debug_ckpt_commit_delay_s, 0, 3600), "test knob: hold each commit back (fencing)"},
    {"debug.slow_worker", INT(debug_slow_worker, -1, 65535), "test knob: this worker computes slowly; -1: none"},
    {"debug.slow_factor", DBL(debug_slow_factor, 1, 1000), "test knob: the slow worker's compute time multiplier"},
    {"debug.snapshot_defer", INT(debug_snapshot_defer, -1, 1),
     "test knob: checkpoint copy in the update's pass (0), in the waits after it (1), as fits (-1)"},
    {"debug.loader_throttle_mb_s", DBL(debug_loader_throttle_mb_s, 0, 1e9), "test knob: cap loader reads, MB/s; 0: off"},
    {"debug.loader_throttle_from_step", INT(debug_loader_throttle_from_step, 0, 1e12), "test knob: throttle from this step"},
};
#define N_KEYS (sizeof keys / sizeof keys[0])
_Static_assert(sizeof keys / sizeof keys[0] <= RM_CONFIG_MAX_KEYS, "raise RM_CONFIG_MAX_KEYS");

void rm_config_defaults(rm_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->hidden[0] = 512;
    cfg->hidden[1] = 256;
    cfg->n_hidden = 2;
    cfg->activation = RM_ACT_RELU;
    cfg->model_layers = 4;
    cfg->model_heads = 4;
    cfg->model_dim = 256;
    cfg->model_context = 256;
    cfg->grad_accum = 1;
    cfg->eval_tokens = 1L << 20;
    snprintf(cfg->data_dir, sizeof cfg->data_dir, "data/fashion-mnist");
    snprintf(cfg->train_split, sizeof cfg->train_split, "train");
    snprintf(cfg->eval_split, sizeof cfg->eval_split, "test");
    cfg->prefetch_batches = 4;
    cfg->global_batch = 128;
    cfg->epochs = 1;
    cfg->optimizer = RM_OPT_ADAMW;
    cfg->lr = 1e-3;
    cfg->momentum = 0.9;
    cfg->beta1 = 0.9;
    cfg->beta2 = 0.999;
    cfg->eps = 1e-8;
    cfg->schedule = RM_SCHED_COSINE;
    cfg->seed = 1;
    cfg->bucket_mb = 1;
    cfg->ckpt_keep = 3;
    cfg->ckpt_on_error = RM_CKPT_ON_ERROR_STOP; /* a checkpoint that was not written is a stop, unless asked */
    cfg->max_restarts = 3;
    cfg->restart_backoff_s = 1;
    cfg->hang_timeout_s = 60;
    cfg->debug_nan_at_step = -1;
    cfg->workers = 2;
    cfg->backend = RM_BACKEND_CPU;
    cfg->threads_per_worker = 1;
    snprintf(cfg->mpirun, sizeof cfg->mpirun, "mpirun");
    cfg->progress_every_steps = 100;
    cfg->verbosity = RM_VERBOSITY_NORMAL;
    snprintf(cfg->metrics_address, sizeof cfg->metrics_address, "127.0.0.1");
    cfg->straggler_window_steps = 50;
    cfg->straggler_threshold = 1.5;
    cfg->slowdown_window_steps = 100;
    cfg->slowdown_threshold = 1.5;
    cfg->debug_slow_worker = -1;
    cfg->debug_slow_factor = 1;
    cfg->debug_snapshot_defer = -1;
    cfg->decrypt_cache_mb = 512;
}

static const key_spec *find_key(const char *path, size_t *index)
{
    for (size_t i = 0; i < N_KEYS; i++)
        if (strcmp(keys[i].path, path) == 0) {
            if (index)
                *index = i;
            return &keys[i];
        }
    return NULL;
}

/* Where the value of key i came from, e.g. "job.yaml:12:3" or "--set train.lr". */
static void where(const rm_config *cfg, size_t i, char *buf, size_t len)
{
    const rm_config_mark *m = &cfg->marks[i];
    if (m->from_set)
        snprintf(buf, len, "--set %s", keys[i].path);
    else if (m->line > 0)
        snprintf(buf, len, "%s:%d:%d", cfg->source_path, m->line, m->col);
    else
        snprintf(buf, len, "%s: %s (default)", cfg->source_path, keys[i].path);
}

static int fail_at(const rm_config *cfg, const char *path, rm_error *err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail_at(const rm_config *cfg, const char *path, rm_error *err, const char *fmt, ...)
{
    size_t i = 0;
    find_key(path, &i);
    char loc[RM_PATH_CAP + 64], what[768];
    where(cfg, i, loc, sizeof loc);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return rm_fail(err, "%s: %s", loc, what);
}

static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 63 || lb > 63)
        return 64;
    size_t row[64];
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (row[j] + 1 < best)
                best = row[j] + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

/* Best known name under `section` ("" = top level) close to `name`. */
static const char *suggest(const char *section, const char *name)
{
    static char best_name[RM_NAME_CAP];
    size_t best = 3, slen = strlen(section);
    const char *found = NULL;
    for (size_t i = 0; i < N_KEYS; i++) {
        const char *p = keys[i].path, *dot = strchr(p, '.');
        char cand[RM_NAME_CAP];
        if (slen == 0) /* candidates: section names and top-level keys */
            snprintf(cand, sizeof cand, "%.*s", dot ? (int)(dot - p) : (int)strlen(p), p);
        else if (dot && (size_t)(dot - p) == slen && strncmp(p, section, slen) == 0)
            snprintf(cand, sizeof cand, "%s", dot + 1);
        else
            continue;
        size_t d = edit_distance(name, cand);
        /* "lr_rate" for "lr", "hid" for "hidden": one name inside the other */
        if (strlen(cand) >= 2 && strlen(name) >= 2 && (strstr(name, cand) || strstr(cand, name)) && d > 1)
            d = 2;
        if (d < best) {
            best = d;
            snprintf(best_name, sizeof best_name, "%s", cand);
            found = best_name;
        }
    }
    return found;
}

static const char *kind_name(const rm_yaml_node *n)
{
    return n->kind == RM_YAML_MAPPING ? "a mapping" : n->kind == RM_YAML_SEQUENCE ? "a list" : "a scalar";
}

static int parse_long(const char *s, long *out)
{
    if (!*s)
        return RM_ERR;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 0);
    if (errno || *end)
        return RM_ERR;
    *out = (long)v;
    return RM_OK;
}

static int parse_double(const char *s, double *out)
{
    if (!*s)
        return RM_ERR;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || !isfinite(v))
        return RM_ERR;
    *out = v;
    return RM_OK;
}

/* A number as a reader wants it: 16777216, not 1.67772e+07. */
static void format_number(double v, char *out, size_t cap)
{
    if (v == floor(v) && fabs(v) < 1e16) {
        snprintf(out, cap, "%.0f", v);
        return;
    }
    for (int digits = 6; digits <= 17; digits++) { /* the shortest that reads back the same */
        snprintf(out, cap, "%.*g", digits, v);
        if (strtod(out, NULL) == v)
            return;
    }
}

static int check_range(const key_spec *k, double v, const char *loc, rm_error *err)
{
    int low = k->min_exclusive ? v <= k->min : v < k->min;
    if (low || v > k->max) {
        char got[40], lo[40], hi[40];
        format_number(v, got, sizeof got);
        format_number(k->min, lo, sizeof lo);
        format_number(k->max, hi, sizeof hi);
        return rm_fail(err, "%s: %s = %s is out of range: must be %s %s and <= %s", loc, k->path, got,
                       k->min_exclusive ? ">" : ">=", lo, hi);
    }
    return RM_OK;
}

/* [from, to] (1-based, inclusive) or [] for none, stored as two longs
 * with [0, 0] meaning none. */
static int assign_step_range(rm_config *cfg, const key_spec *k, const rm_yaml_node *n, const char *loc, rm_error *err)
{
    long *field = (long *)((char *)cfg + k->offset);
    if (n->kind != RM_YAML_SEQUENCE || (n->count != 0 && n->count != 2))
        return rm_fail(err, "%s: %s expects [from, to] (steps, 1-based) or [], got %s", loc, k->path,
                       n->kind == RM_YAML_SEQUENCE ? "a list of another length" : kind_name(n));
    long v[2] = {0, 0};
    for (size_t i = 0; i < n->count; i++) {
        const rm_yaml_node *it = n->items[i];
        if (it->kind != RM_YAML_SCALAR || it->quoted || parse_long(it->value, &v[i]) != RM_OK || v[i] < 1)
            return rm_fail(err, "%s: %s[%zu] must be a step number >= 1, got %s", loc, k->path, i,
                           it->kind == RM_YAML_SCALAR ? it->value : kind_name(it));
    }
    if (v[1] < v[0])
        return rm_fail(err, "%s: %s is [%ld, %ld]: the last step comes before the first", loc, k->path, v[0], v[1]);
    field[0] = v[0];
    field[1] = v[1];
    return RM_OK;
}

/* Stores the YAML node `n` into the field of key k; loc names it. */
static int assign(rm_config *cfg, const key_spec *k, const rm_yaml_node *n, const char *loc, rm_error *err)
{
    char *field = (char *)cfg + k->offset;
    if (k->type == KEY_INT_LIST) {
        if (n->kind != RM_YAML_SEQUENCE)
            return rm_fail(err, "%s: %s expects a list of integers like [512, 256], got %s", loc, k->path,
                           kind_name(n));
        if (n->count > RM_MAX_HIDDEN)
            return rm_fail(err, "%s: %s has %zu entries; at most %d", loc, k->path, n->count, RM_MAX_HIDDEN);
        long vals[RM_MAX_HIDDEN];
        for (size_t i = 0; i < n->count; i++) {
            const rm_yaml_node *it = n->items[i];
            char iloc[RM_PATH_CAP + 64];
            if (it->line > 0 && strchr(loc, ':'))
                snprintf(iloc, sizeof iloc, "%s:%d:%d", cfg->source_path, it->line, it->col);
            else
                snprintf(iloc, sizeof iloc, "%s", loc);
            if (it->kind != RM_YAML_SCALAR || it->quoted || parse_long(it->value, &vals[i]) != RM_OK)
                return rm_fail(err, "%s: %s[%zu] must be an integer, got %s%s%s", iloc, k->path, i,
                               it->kind == RM_YAML_SCALAR ? "'" : kind_name(it),
                               it->kind == RM_YAML_SCALAR ? it->value : "", it->kind == RM_YAML_SCALAR ? "'" : "");
            if (check_range(k, (double)vals[i], iloc, err) != RM_OK)
                return RM_ERR;
        }
        memcpy(cfg->hidden, vals, n->count * sizeof vals[0]);
        cfg->n_hidden = (int)n->count;
        return RM_OK;
    }
    if (k->type == KEY_STEP_RANGE)
        return assign_step_range(cfg, k, n, loc, err);
    if (n->kind != RM_YAML_SCALAR)
        return rm_fail(err, "%s: %s expects a single value, got %s", loc, k->path, kind_name(n));
    const char *s = n->value;
    switch (k->type) {
    case KEY_INT: {
        long v;
        if (n->quoted || parse_long(s, &v) != RM_OK)
            return rm_fail(err, "%s: %s must be an integer, got '%s'", loc, k->path, s);
        if (check_range(k, (double)v, loc, err) != RM_OK)
            return RM_ERR;
        *(long *)field = v;
        return RM_OK;
    }
    case KEY_DOUBLE: {
        double v;
        if (n->quoted || parse_double(s, &v) != RM_OK)
            return rm_fail(err, "%s: %s must be a number, got '%s'", loc, k->path, s);
        if (check_range(k, v, loc, err) != RM_OK)
            return RM_ERR;
        *(double *)field = v;
        return RM_OK;
    }
    case KEY_STRING:
        if (strlen(s) >= k->cap)
            return rm_fail(err, "%s: %s is longer than %zu characters", loc, k->path, k->cap - 1);
        if (!n->quoted && (strcmp(s, "~") == 0 || strcasecmp(s, "null") == 0))
            s = "";
        memcpy(field, s, strlen(s) + 1);
        return RM_OK;
    case KEY_ENUM:
        for (int i = 0; k->names[i]; i++)
            if (strcmp(s, k->names[i]) == 0) {
                *(int *)field = i;
                return RM_OK;
            }
        {
            char choices[256] = "";
            for (int i = 0; k->names[i]; i++) {
                strncat(choices, i ? ", " : "", sizeof choices - strlen(choices) - 1);
                strncat(choices, k->names[i], sizeof choices - strlen(choices) - 1);
            }
            return rm_fail(err, "%s: %s must be one of %s, got '%s'", loc, k->path, choices, s);
        }
    default:
        return rm_fail(err, "%s: internal error: bad key type", loc);
    }
}

static int apply_tree(rm_config *cfg, const rm_yaml_node *root, rm_error *err)
{
    const char *file = cfg->source_path;
    /* an empty file is a mistake (the wrong file, a failed copy), not a
     * request for every default */
    if (!root || (root->kind == RM_YAML_MAPPING && root->count == 0))
        return rm_fail(err, "%s: is empty: a job config says at least where its data is (data.dir) and how long "
                            "to train (train.epochs or train.steps); see configs/fashion_mnist.yaml",
                       file);
    if (root->kind != RM_YAML_MAPPING)
        return rm_fail(err, "%s:%d:%d: a job config is a mapping of sections (model:, data:, train:, ...), got %s",
                       file, root->line, root->col, kind_name(root));
    for (size_t s = 0; s < root->count; s++) {
        const rm_yaml_node *skey = root->keys[s], *sval = root->items[s];
        size_t idx;
        const key_spec *top = find_key(skey->value, &idx);
        if (top) { /* a top-level scalar key such as run_dir */
            char loc[RM_PATH_CAP + 32];
            snprintf(loc, sizeof loc, "%s:%d:%d", file, sval->line, sval->col);
            if (assign(cfg, top, sval, loc, err) != RM_OK)
                return RM_ERR;
            cfg->marks[idx] = (rm_config_mark){sval->line, sval->col, 0};
            continue;
        }
        int known_section = 0;
        size_t slen = strlen(skey->value);
        for (size_t i = 0; i < N_KEYS; i++)
            if (strncmp(keys[i].path, skey->value, slen) == 0 && keys[i].path[slen] == '.')
                known_section = 1;
        if (!known_section) {
            const char *hint = suggest("", skey->value);
            return rm_fail(err, "%s:%d:%d: unknown section '%s'%s%s%s", file, skey->line, skey->col, skey->value,
                           hint ? " (did you mean '" : "", hint ? hint : "", hint ? "'?)" : "");
        }
        if (sval->kind == RM_YAML_SCALAR && (sval->value[0] == '\0' || strcmp(sval->value, "~") == 0 ||
                                             strcasecmp(sval->value, "null") == 0))
            continue; /* "train:" with nothing under it */
        if (sval->kind != RM_YAML_MAPPING)
            return rm_fail(err, "%s:%d:%d: section '%s' must be a mapping of keys, got %s", file, sval->line,
                           sval->col, skey->value, kind_name(sval));
        for (size_t j = 0; j < sval->count; j++) {
            const rm_yaml_node *k = sval->keys[j], *v = sval->items[j];
            char path[2 * RM_NAME_CAP + 2];
            snprintf(path, sizeof path, "%s.%s", skey->value, k->value);
            const key_spec *spec = find_key(path, &idx);
            if (!spec) {
                const char *hint = suggest(skey->value, k->value);
                return rm_fail(err, "%s:%d:%d: unknown key '%s' in section '%s'%s%s%s", file, k->line, k->col,
                               k->value, skey->value, hint ? " (did you mean '" : "", hint ? hint : "",
                               hint ? "'?)" : "");
            }
            char loc[RM_PATH_CAP + 32];
            snprintf(loc, sizeof loc, "%s:%d:%d", file, v->line, v->col);
            if (assign(cfg, spec, v, loc, err) != RM_OK)
                return RM_ERR;
            cfg->marks[idx] = (rm_config_mark){v->line, v->col, 0};
        }
    }
    return RM_OK;
}

int rm_config_set(rm_config *cfg, const char *assignment, rm_error *err)
{
    const char *eq = strchr(assignment, '=');
    if (!eq || eq == assignment)
        return rm_fail(err, "--set %s: expected section.key=value", assignment);
    char path[2 * RM_NAME_CAP + 2];
    snprintf(path, sizeof path, "%.*s", (int)(eq - assignment), assignment);
    size_t idx;
    const key_spec *spec = find_key(path, &idx);
    if (!spec) {
        const char *best = NULL;
        size_t best_d = 4;
        for (size_t i = 0; i < N_KEYS; i++) {
            size_t d = edit_distance(path, keys[i].path);
            if (d < best_d) {
                best_d = d;
                best = keys[i].path;
            }
        }
        return rm_fail(err, "--set %s: unknown key '%s'%s%s%s", assignment, path, best ? " (did you mean '" : "",
                       best ? best : "", best ? "'?)" : "");
    }
    char origin[2 * RM_NAME_CAP + 8];
    snprintf(origin, sizeof origin, "--set %s", path);
    rm_yaml_doc doc;
    int rc = rm_yaml_parse(eq + 1, strlen(eq + 1), origin, &doc, err);
    if (rc == RM_OK) {
        static const rm_yaml_node empty = {.kind = RM_YAML_SCALAR, .value = ""};
        rc = assign(cfg, spec, doc.root ? doc.root : &empty, origin, err);
    }
    rm_yaml_free(&doc);
    if (rc == RM_OK)
        cfg->marks[idx] = (rm_config_mark){0, 0, 1};
    return rc;
}

/* Makes a relative path absolute against the working directory, so every
 * rank reads the same files whatever directory it starts in. */
static int absolutize(rm_config *cfg, char *path, size_t cap, const char *key, rm_error *err)
{
    if (!path[0] || path[0] == '/')
        return RM_OK;
    char cwd[RM_PATH_CAP], joined[2 * RM_PATH_CAP];
    if (!getcwd(cwd, sizeof cwd))
        return rm_fail_errno(err, errno, "cannot read the working directory");
    snprintf(joined, sizeof joined, "%s/%s", cwd, path);
    if (strlen(joined) >= cap)
        return fail_at(cfg, key, err, "path '%s' is too long", joined);
    memcpy(path, joined, strlen(joined) + 1);
    return RM_OK;
}

/* Reads a split's index; a token split is cut into windows of the
 * model's context, which sets its sample count. */
static int check_split(const rm_config *cfg, const char *key, const char *split, rm_shard_index *idx, rm_error *err)
{
    char dir[2 * RM_PATH_CAP];
    snprintf(dir, sizeof dir, "%s/%s", cfg->data_dir, split);
    rm_error why;
    if (rm_shard_index_read(dir, idx, &why) != RM_OK)
        return fail_at(cfg, key, err, "split '%s' of dataset %s is not usable: %s", split, cfg->data_dir, why.msg);
    int wants = cfg->model_type == RM_MODEL_GPT ? RM_DATA_TOKENS : RM_DATA_RECORDS;
    if (cfg->model_type != RM_MODEL_PLUGIN && idx->format != wants) /* a library says which it reads */
        return fail_at(cfg, "model.type", err, "model.type %s reads %s, but split '%s' of %s holds %s",
                       model_type_names[cfg->model_type], wants == RM_DATA_TOKENS ? "token streams" : "labelled records",
                       split, cfg->data_dir,
                       idx->format == RM_DATA_TOKENS ? "token streams (model.type: gpt trains on them)"
                                                     : "labelled records (model.type: mlp trains on them)");
    if (idx->format == RM_DATA_TOKENS && rm_shard_index_set_context(idx, dir, cfg->model_context, &why) != RM_OK)
        return fail_at(cfg, "model.context", err, "%s", why.msg);
    return RM_OK;
}

/* A library model: it loads, speaks this ABI and runs on the backend. */
static int check_plugin(const rm_config *cfg, rm_error *err)
{
    if (cfg->model_type != RM_MODEL_PLUGIN)
        return RM_OK;
    if (!cfg->model_library[0])
        return fail_at(cfg, "model.library", err, "model.type plugin needs model.library: the model's shared library");
    void *handle;
    rm_error why;
    const ringmaster_model *p = rm_plugin_open(cfg->model_library, &handle, &why);
    if (!p)
        return fail_at(cfg, "model.library", err, "%s", why.msg);
    int cpu = p->devices & 1u;
    rm_plugin_close(handle);
    if (!cpu || cfg->backend == RM_BACKEND_GPU)
        return fail_at(cfg, "launch.backend", err, "model.library %s runs on: %s; use launch.backend cpu",
                       cfg->model_library, cpu ? "cpu" : "no device this ringmaster has");
    return RM_OK;
}

/* The GPT's shape, checked where the user wrote it. */
static int check_gpt(const rm_config *cfg, rm_error *err)
{
    if (cfg->model_type != RM_MODEL_GPT)
        return RM_OK;
    if (cfg->model_dim % cfg->model_heads != 0)
        return fail_at(cfg, "model.heads", err, "model.dim %ld does not divide into %ld heads (model.heads)",
                       cfg->model_dim, cfg->model_heads);
    return RM_OK;
}

int rm_config_validate(rm_config *cfg, rm_dataset_facts *facts, rm_error *err)
{
    if (cfg->epochs > 0 && cfg->steps > 0) {
        /* A length given later wins over one given earlier: --set over the
         * file over the default. Both in the same place is a mistake. */
        size_t ie = 0, is = 0;
        find_key("train.epochs", &ie);
        find_key("train.steps", &is);
        int e_src = cfg->marks[ie].from_set ? 2 : cfg->marks[ie].line > 0;
        int s_src = cfg->marks[is].from_set ? 2 : cfg->marks[is].line > 0;
        if (e_src == s_src)
            return fail_at(cfg, "train.steps", err, "set either train.epochs or train.steps, not both (epochs=%g, steps=%ld)",
                           cfg->epochs, cfg->steps);
        if (e_src < s_src)
            cfg->epochs = 0;
        else
            cfg->steps = 0;
    }
    if (cfg->epochs <= 0 && cfg->steps <= 0)
        return fail_at(cfg, "train.epochs", err, "the job has no length: set train.epochs or train.steps > 0");
    if (cfg->global_batch % cfg->workers != 0) {
        /* blame what was given last: --workers on the command line, not
         * the file's global batch that was fine before it */
        size_t iw = 0, ib = 0;
        find_key("launch.workers", &iw);
        find_key("train.global_batch", &ib);
        if (cfg->marks[iw].from_set && !cfg->marks[ib].from_set) {
            char batch_at[RM_PATH_CAP + 64];
            where(cfg, ib, batch_at, sizeof batch_at);
            return fail_at(cfg, "launch.workers", err,
                           "global batch %ld (%s) does not divide evenly over %ld workers; use a worker count that "
                           "divides it",
                           cfg->global_batch, batch_at, cfg->workers);
        }
    }
    if (cfg->global_batch % cfg->workers != 0)
        return fail_at(cfg, "train.global_batch", err,
                       "global batch %ld does not divide evenly over %ld workers (launch.workers); "
                       "use a multiple of %ld",
                       cfg->global_batch, cfg->workers, cfg->workers);
    if ((cfg->global_batch / cfg->workers) % cfg->grad_accum != 0)
        return fail_at(cfg, "train.grad_accum", err,
                       "the %ld samples per worker (train.global_batch %ld over %ld workers) do not split into %ld "
                       "micro-steps; use a global batch that is a multiple of %ld",
                       cfg->global_batch / cfg->workers, cfg->global_batch, cfg->workers, cfg->grad_accum,
                       cfg->workers * cfg->grad_accum);
    if (cfg->n_hidden < 1)
        return fail_at(cfg, "model.hidden", err, "model.hidden needs at least one layer width");
    if (check_gpt(cfg, err) != RM_OK)
        return RM_ERR;
    if (cfg->coordinator_host[0] && !cfg->hostfile[0])
        return fail_at(cfg, "launch.coordinator_host", err,
                       "launch.coordinator_host %s needs launch.hostfile: the hosts it is one of",
                       cfg->coordinator_host);
    if (cfg->recompute != RM_RECOMPUTE_NONE && cfg->model_type != RM_MODEL_GPT)
        return fail_at(cfg, "train.recompute", err,
                       "train.recompute is the GPT's (its GELU and LayerNorm outputs); model.type %s keeps what it "
                       "keeps: use 0",
                       model_type_names[cfg->model_type]);
    if (cfg->attention == RM_ATT_FUSED && cfg->model_type != RM_MODEL_GPT)
        return fail_at(cfg, "train.attention", err, "train.attention fused is the GPT's attention; model.type %s has none",
                       model_type_names[cfg->model_type]);
    if (cfg->backend == RM_BACKEND_CPU && cfg->attention == RM_ATT_FUSED)
        return fail_at(cfg, "train.attention", err,
                       "train.attention fused needs launch.backend gpu or auto; the CPU backend has its own attention");
    if (cfg->backend == RM_BACKEND_CPU && cfg->precision != RM_PREC_FP32)
        return fail_at(cfg, "train.precision", err,
                       "train.precision %s needs launch.backend gpu or auto; the CPU backend computes in fp32",
                       precision_names[cfg->precision]);
    if (!cfg->data_dir[0])
        return fail_at(cfg, "data.dir", err, "data.dir is empty");
    if (!cfg->train_split[0])
        return fail_at(cfg, "data.train_split", err, "data.train_split is empty");
    if (absolutize(cfg, cfg->data_dir, sizeof cfg->data_dir, "data.dir", err) != RM_OK ||
        absolutize(cfg, cfg->run_dir, sizeof cfg->run_dir, "run_dir", err) != RM_OK ||
        absolutize(cfg, cfg->ckpt_dir, sizeof cfg->ckpt_dir, "checkpoint.dir", err) != RM_OK ||
        absolutize(cfg, cfg->key_file, sizeof cfg->key_file, "security.key_file", err) != RM_OK ||
        absolutize(cfg, cfg->model_init, sizeof cfg->model_init, "model.init", err) != RM_OK ||
        absolutize(cfg, cfg->model_library, sizeof cfg->model_library, "model.library", err) != RM_OK ||
        check_plugin(cfg, err) != RM_OK)
        return RM_ERR;
    if (cfg->model_init[0] && access(cfg->model_init, R_OK) != 0)
        return fail_at(cfg, "model.init", err, "cannot read %s: %s", cfg->model_init, strerror(errno));
    rm_error key_why;
    if (cfg->key_file[0] && rm_key_check_file(cfg->key_file, &key_why) != RM_OK)
        return fail_at(cfg, "security.key_file", err, "%s", key_why.msg);
    if (strchr(cfg->train_split, '/') || strchr(cfg->eval_split, '/'))
        return fail_at(cfg, "data.train_split", err, "split names are directory names inside data.dir, without '/'");

    if (absolutize(cfg, cfg->metrics_token_file, sizeof cfg->metrics_token_file, "observe.metrics_token_file", err) !=
        RM_OK)
        return RM_ERR;
    if (cfg->metrics_port >= 0) {
        int loopback = rm_address_is_loopback(cfg->metrics_address);
        if (loopback < 0)
            return fail_at(cfg, "observe.metrics_address", err,
                           "'%s' is not an IPv4 or IPv6 address (e.g. 127.0.0.1, ::1, 0.0.0.0)", cfg->metrics_address);
        if (!loopback && !cfg->metrics_token_file[0])
            return fail_at(cfg, "observe.metrics_address", err,
                           "/metrics on %s is reachable from other machines: set observe.metrics_token_file "
                           "(a mode 0600 file holding the bearer token) or listen on 127.0.0.1",
                           cfg->metrics_address);
        /* The file itself is read where /metrics is served (the
         * coordinator) and checked by `ringmaster run` and `validate`
         * (rm_config_check_token_file): a worker's host need not have it. */
    }
    if (cfg->debug_slow_worker >= cfg->workers)
        return fail_at(cfg, "debug.slow_worker", err, "there is no worker %ld (launch.workers is %ld)",
                       cfg->debug_slow_worker, cfg->workers);

    struct stat st;
    if (stat(cfg->data_dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return fail_at(cfg, "data.dir", err, "dataset directory %s does not exist (make one with %s)", cfg->data_dir,
                       cfg->model_type == RM_MODEL_GPT
                           ? "`ringmaster data import-text` or `import-tokens`; scripts/prepare-brown.sh makes the "
                             "Brown corpus's"
                       : cfg->model_type == RM_MODEL_MLP
                           ? "`ringmaster data import-idx`; scripts/prepare-fashion-mnist.sh makes Fashion-MNIST's"
                           : "`ringmaster data import-idx`, `import-text` or `import-tokens`");

    rm_shard_index train = {0}, eval = {0};
    int rc = RM_ERR;
    if (check_split(cfg, "data.train_split", cfg->train_split, &train, err) != RM_OK)
        goto out;
    if (cfg->eval_split[0]) {
        if (check_split(cfg, "data.eval_split", cfg->eval_split, &eval, err) != RM_OK)
            goto out;
        if (train.format == RM_DATA_TOKENS && (eval.vocab != train.vocab || strcmp(eval.tokenizer, train.tokenizer))) {
            fail_at(cfg, "data.eval_split", err,
                    "split '%s' is tokenized with %s (vocabulary %ld) but '%s' with %s (vocabulary %ld)",
                    cfg->eval_split, eval.tokenizer, eval.vocab, cfg->train_split, train.tokenizer, train.vocab);
            goto out;
        }
        if (eval.input_dim != train.input_dim || eval.classes != train.classes) {
            fail_at(cfg, "data.eval_split", err, "split '%s' has %ld inputs and %ld classes but '%s' has %ld and %ld",
                    cfg->eval_split, eval.input_dim, eval.classes, cfg->train_split, train.input_dim, train.classes);
            goto out;
        }
    }
    if ((train.encrypted || (cfg->eval_split[0] && eval.encrypted)) && !cfg->key_file[0]) {
        fail_at(cfg, "security.key_file", err,
                "dataset %s is encrypted (its index says so) and no key is set: set security.key_file", cfg->data_dir);
        goto out;
    }
    if (cfg->global_batch > train.samples) {
        fail_at(cfg, "train.global_batch", err, "global batch %ld is larger than the %ld training samples",
                cfg->global_batch, train.samples);
        goto out;
    }
    long total = rm_config_total_steps(cfg, train.samples);
    if (cfg->warmup_steps >= total && cfg->warmup_steps > 0) {
        fail_at(cfg, "train.warmup_steps", err, "warmup of %ld steps does not fit in a run of %ld steps",
                cfg->warmup_steps, total);
        goto out;
    }
    if (facts) {
        memset(facts, 0, sizeof *facts);
        facts->data_format = train.format;
        facts->train_samples = train.samples;
        facts->eval_samples = cfg->eval_split[0] ? eval.samples : 0;
        facts->input_dim = train.input_dim;
        facts->classes = train.classes;
        facts->vocab = train.vocab;
        facts->eot = train.eot;
        snprintf(facts->tokenizer, sizeof facts->tokenizer, "%s", train.tokenizer);
    }
    rc = RM_OK;
out:
    rm_shard_index_free(&train);
    rm_shard_index_free(&eval);
    return rc;
}

int rm_config_read(const char *path, rm_config *cfg, rm_error *err)
{
    rm_config_defaults(cfg);
    if (strlen(path) >= sizeof cfg->source_path)
        return rm_fail(err, "config path is too long");
    snprintf(cfg->source_path, sizeof cfg->source_path, "%s", path);
    rm_yaml_doc doc;
    int rc = rm_yaml_parse_file(path, &doc, err);
    if (rc == RM_OK)
        rc = apply_tree(cfg, doc.root, err);
    rm_yaml_free(&doc);
    return rc;
}

int rm_config_load(const char *path, char *const *sets, int n_sets, rm_config *cfg, rm_dataset_facts *facts,
                   rm_error *err)
{
    int rc = rm_config_read(path, cfg, err);
    for (int i = 0; rc == RM_OK && i < n_sets; i++)
        rc = rm_config_set(cfg, sets[i], err);
    if (rc == RM_OK)
        rc = rm_config_validate(cfg, facts, err);
    return rc;
}

/* Values come from YAML, so they are valid UTF-8 and read back exactly. */
static void write_string(FILE *out, const char *s)
{
    rm_yaml_write_quoted(out, s);
}

/* Shortest form that reads back to the same double (0.9, not 0.90000000000000002). */
static void write_double(FILE *out, double v)
{
    char buf[32];
    for (int digits = 6; digits <= 17; digits++) {
        snprintf(buf, sizeof buf, "%.*g", digits, v);
        if (strtod(buf, NULL) == v)
            break;
    }
    fputs(buf, out);
}

/* Keys that decide the training result; the rest only say how it runs. */
static int is_training_key(const char *path)
{
    /* train.precision and train.attention say how the products run, like
     * launch.backend: a bf16 run resumes in fp32 on the CPU backend and the
     * reverse. */
    if (strcmp(path, "train.precision") == 0 || strcmp(path, "train.attention") == 0)
        return 0;
    /* train.recompute trades memory for time: backward recomputes the same
     * bits it would have kept */
    if (strcmp(path, "train.recompute") == 0)
        return 0;
    /* train.zero says where the optimizer state lives, not what it holds:
     * checkpoints are the same with and without it, so a ZeRO-1 run
     * resumes a plain one and the reverse. */
    if (strcmp(path, "train.zero") == 0)
        return 0;
    return strncmp(path, "model.", 6) == 0 || strncmp(path, "data.", 5) == 0 || strncmp(path, "train.", 6) == 0 ||
           strcmp(path, "debug.nan_at_step") == 0;
}

enum write_mode { WRITE_ALL, WRITE_JOB, WRITE_TRAINING };

/* WRITE_JOB leaves out run_dir, which only the coordinator uses (a rank
 * launched by hand fills in its default on its own); WRITE_TRAINING keeps
 * only what decides the training result. */
static void write_keys(const rm_config *cfg, FILE *out, enum write_mode mode)
{
    char section[RM_NAME_CAP] = "";
    for (size_t i = 0; i < N_KEYS; i++) {
        const key_spec *k = &keys[i];
        if (mode == WRITE_JOB && strcmp(k->path, "run_dir") == 0)
            continue;
        if (mode == WRITE_TRAINING && (!is_training_key(k->path) || strcmp(k->path, "data.prefetch_batches") == 0))
            continue;
        const char *dot = strchr(k->path, '.');
        const char *name = k->path;
        if (dot) {
            if (strncmp(section, k->path, (size_t)(dot - k->path)) != 0 || section[dot - k->path] != '\0') {
                snprintf(section, sizeof section, "%.*s", (int)(dot - k->path), k->path);
                fprintf(out, "%s:\n", section);
            }
            name = dot + 1;
            fputs("  ", out);
        } else {
            section[0] = '\0';
        }
        fprintf(out, "%s: ", name);
        const char *field = (const char *)cfg + k->offset;
        switch (k->type) {
        case KEY_INT:
            fprintf(out, "%ld", *(const long *)field);
            break;
        case KEY_DOUBLE:
            write_double(out, *(const double *)field);
            break;
        case KEY_STRING:
            write_string(out, field);
            break;
        case KEY_ENUM:
            fputs(k->names[*(const int *)field], out);
            break;
        case KEY_STEP_RANGE:
            if (((const long *)field)[0] > 0)
                fprintf(out, "[%ld, %ld]", ((const long *)field)[0], ((const long *)field)[1]);
            else
                fputs("[]", out);
            break;
        case KEY_INT_LIST:
            fputc('[', out);
            for (int j = 0; j < cfg->n_hidden; j++)
                fprintf(out, "%s%ld", j ? ", " : "", cfg->hidden[j]);
            fputc(']', out);
            break;
        }
        fputc('\n', out);
    }
}

void rm_config_write(const rm_config *cfg, FILE *out)
{
    write_keys(cfg, out, WRITE_ALL);
}

static uint64_t hash_keys(const rm_config *cfg, enum write_mode mode)
{
    char *text = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&text, &len);
    if (!mem)
        return 0;
    write_keys(cfg, mem, mode);
    fclose(mem);
    uint64_t h = rm_hash64(text, len);
    free(text);
    return h;
}

/* A library model is its bytes, not its path: another build of it is
 * another job and another training. */
static uint64_t with_library(const rm_config *cfg, uint64_t h)
{
    if (cfg->model_type != RM_MODEL_PLUGIN || !cfg->model_library[0])
        return h;
    return rm_key(h, rm_plugin_digest(cfg->model_library));
}

uint64_t rm_config_hash(const rm_config *cfg)
{
    return with_library(cfg, hash_keys(cfg, WRITE_JOB));
}

uint64_t rm_config_training_hash(const rm_config *cfg)
{
    return with_library(cfg, hash_keys(cfg, WRITE_TRAINING));
}

int rm_config_check_token_file(const rm_config *cfg, rm_error *err)
{
    if (cfg->metrics_port < 0 || !cfg->metrics_token_file[0])
        return RM_OK;
    char token[RM_TOKEN_CAP];
    rm_error why;
    int rc = rm_token_file_read(cfg->metrics_token_file, token, sizeof token, &why);
    memset(token, 0, sizeof token);
    if (rc != RM_OK)
        return fail_at(cfg, "observe.metrics_token_file", err, "%s", why.msg);
    return RM_OK;
}

void rm_config_ckpt_root(const rm_config *cfg, char *out, size_t cap)
{
    if (cfg->ckpt_dir[0])
        snprintf(out, cap, "%s", cfg->ckpt_dir);
    else
        snprintf(out, cap, "%s/checkpoints", cfg->run_dir);
}

long rm_config_total_steps(const rm_config *cfg, long train_samples)
{
    if (cfg->steps > 0)
        return cfg->steps;
    /* Enough steps to show every sample `epochs` times; the last batch may
     * reach into the next epoch's order (the sample stream is continuous). */
    double samples = cfg->epochs * (double)train_samples;
    long total = (long)ceil(samples / (double)cfg->global_batch);
    return total > 0 ? total : 1;
}

double rm_config_lr_at(const rm_config *cfg, long step, long total_steps)
{
    if (cfg->warmup_steps > 0 && step < cfg->warmup_steps)
        return cfg->lr * (double)(step + 1) / (double)cfg->warmup_steps;
    if (cfg->schedule == RM_SCHED_CONSTANT)
        return cfg->lr;
    long span = total_steps - cfg->warmup_steps;
    double progress = span > 1 ? (double)(step - cfg->warmup_steps) / (double)(span - 1) : 1.0;
    if (progress > 1)
        progress = 1;
    double min_lr = cfg->lr * cfg->min_lr_ratio;
    return min_lr + 0.5 * (cfg->lr - min_lr) * (1.0 + cos(M_PI * progress));
}

const char *rm_backend_name(int backend)
{
    return backend_names[backend];
}

const char *rm_optimizer_name(int optimizer)
{
    return optimizer_names[optimizer];
}
