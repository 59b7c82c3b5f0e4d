/* The job config: one YAML file (libyaml) parsed into one validated struct.
 * Every key is described once in a table in config.c, which drives parsing,
 * `--set` overrides, error messages, the canonical dump and the hash. */
#ifndef RINGMASTER_CONFIG_H
#define RINGMASTER_CONFIG_H

#include "error.h"

#include <limits.h>
#include <stdint.h>
#include <stdio.h>

#define RM_MAX_HIDDEN 16
#define RM_PATH_CAP 1024
#define RM_NAME_CAP 64

enum rm_activation { RM_ACT_RELU = 0, RM_ACT_TANH = 1 };
enum rm_optimizer_kind { RM_OPT_SGD = 0, RM_OPT_ADAMW = 1 };
enum rm_schedule { RM_SCHED_COSINE = 0, RM_SCHED_CONSTANT = 1 };
enum rm_backend_kind { RM_BACKEND_CPU = 0, RM_BACKEND_GPU = 1, RM_BACKEND_AUTO = 2 };
enum rm_ckpt_on_error { RM_CKPT_ON_ERROR_CONTINUE = 0, RM_CKPT_ON_ERROR_STOP = 1 };
enum rm_nan_policy { RM_NAN_STOP = 0, RM_NAN_SKIP = 1, RM_NAN_ROLLBACK = 2 };
enum rm_cpu_reduce { RM_CPU_REDUCE_AUTO = 0, RM_CPU_REDUCE_SHM = 1, RM_CPU_REDUCE_MPI = 2, RM_CPU_REDUCE_HIER = 3 };
enum rm_precision { RM_PREC_FP32 = 0, RM_PREC_TF32 = 1, RM_PREC_BF16 = 2 };
/* train.attention: the GPU GPT's attention (the CPU backend has one). */
enum rm_attention { RM_ATT_SIMPLE = 0, RM_ATT_FUSED = 1 };
enum rm_verbosity { RM_VERBOSITY_QUIET = 0, RM_VERBOSITY_NORMAL = 1, RM_VERBOSITY_VERBOSE = 2 };

/* Where a key's value came from, for messages: line 0 means the default. */
typedef struct rm_config_mark {
    int line, col;
    int from_set; /* given with --set */
} rm_config_mark;

#define RM_CONFIG_MAX_KEYS 128

typedef struct rm_config {
    char source_path[RM_PATH_CAP];

    /* model: mlp, between the dataset's input size and its class count;
     * gpt, a GPT-2 language model over the dataset's token vocabulary */
    int model_type; /* enum rm_model_type (model.h) */
    long hidden[RM_MAX_HIDDEN];
    int n_hidden;
    int activation;
    long model_layers, model_heads, model_dim, model_context;
    char model_init[RM_PATH_CAP]; /* starting weights (model_init.h); "" = the model's random init */
    char model_library[RM_PATH_CAP]; /* type plugin: the shared library (ringmaster_model.h) */

    /* data */
    char data_dir[RM_PATH_CAP];
    char train_split[RM_NAME_CAP];
    char eval_split[RM_NAME_CAP]; /* "" = no evaluation */
    long shuffle_window_shards;   /* 0 = shuffle across all shards */
    long prefetch_batches;

    /* train */
    long global_batch;
    double epochs; /* exactly one of epochs and steps is > 0 */
    long steps;
    int optimizer;
    double lr, momentum, beta1, beta2, eps, weight_decay;
    long warmup_steps;
    int schedule;
    double min_lr_ratio;
    long seed;
    long eval_every; /* 0 = at the end only */
    double bucket_mb;
    long grad_accum;     /* micro-steps per optimizer step, each local_batch / grad_accum samples */
    double grad_clip;    /* clip the global gradient norm to this; 0: off */
    long eval_tokens;    /* at most this many tokens evaluated (token datasets); 0: the whole split */
    long zero;     /* 1: ZeRO-1, optimizer state sharded over the workers */
    int precision; /* enum rm_precision: how the GPU backend's matrix products run */
    int attention; /* enum rm_attention */
    long recompute; /* enum rm_recompute (gpt_layout.h) */

    /* checkpoint */
    long ckpt_every_steps;     /* 0 = not by steps */
    double ckpt_every_seconds; /* 0 = not by time */
    long ckpt_keep;
    char ckpt_dir[RM_PATH_CAP]; /* "" = <run_dir>/checkpoints */
    int ckpt_on_error;

    /* fault */
    long max_restarts;
    double restart_backoff_s;
    double hang_timeout_s;
    int nan_policy;
    long min_workers; /* after a host is lost: restart on the hosts left with down to this many; 0: never fewer */

    /* launch */
    long workers;
    int backend;
    long threads_per_worker;
    int cpu_reduce;
    char mpirun[RM_PATH_CAP];
    char hostfile[RM_PATH_CAP];          /* Open MPI hostfile to launch across; "" = mpirun's default */
    char network_interface[RM_NAME_CAP]; /* MPI's and NCCL's interface between hosts; "" = theirs to pick */
    char coordinator_host[RM_NAME_CAP];  /* the hostfile's host rank 0 runs on; "" = the first slot */

    /* observe */
    long progress_every_steps;
    int verbosity;
    long metrics_port;                   /* -1: no /metrics endpoint; 0: any free port */
    char metrics_address[RM_NAME_CAP];   /* loopback unless a token file is given */
    char metrics_token_file[RM_PATH_CAP]; /* bearer token, mode 0600; "" = none */
    long trace_steps[2];                 /* 1-based, inclusive; [0, 0] = no trace */
    long straggler_window_steps;
    double straggler_threshold; /* a worker's median compute / the others' */
    long slowdown_window_steps;
    double slowdown_threshold;  /* recent median step time / rolling median */

    char run_dir[RM_PATH_CAP]; /* "" = runs/<config name>-<time> */

    /* security */
    char key_file[RM_PATH_CAP]; /* "" = no encryption; else 32-byte key, mode 0600 */
    long decrypt_cache_mb;      /* decrypted shards kept per split and worker */

    /* debug: fault injection for tests */
    long debug_nan_at_step; /* -1: off; the step whose loss gradient is poisoned */
    double debug_ckpt_write_delay_s; /* the checkpoint writer sleeps this long before writing */
    double debug_ckpt_commit_delay_s; /* the coordinator sleeps this long before each checkpoint's commit */
    long debug_slow_worker;          /* -1: off; this worker's compute is stretched by slow_factor */
    double debug_slow_factor;
    /* -1: each worker chooses; 0: the checkpoint snapshot is copied in the
     * update's pass; 1: inside the waits after it */
    long debug_snapshot_defer;
    double debug_loader_throttle_mb_s; /* 0: off; the loader reads at most this fast */
    long debug_loader_throttle_from_step; /* 0-based step from which the throttle applies */

    rm_config_mark marks[RM_CONFIG_MAX_KEYS];
} rm_config;

/* Facts the config is checked against, read from the dataset index. */
typedef struct rm_dataset_facts {
    int data_format;    /* RM_DATA_RECORDS or RM_DATA_TOKENS (shard.h) */
    long train_samples; /* token splits: windows of model.context + 1 tokens */
    long eval_samples;
    long input_dim;     /* records */
    long classes;
    long vocab, eot;    /* tokens */
    char tokenizer[32];
} rm_dataset_facts;

void rm_config_defaults(rm_config *cfg);

/* Loads `path`, applies each "key=value" of sets in order, resolves
 * relative paths against the working directory and validates everything,
 * including the dataset. On error err says "file:line:col: what". facts may
 * be NULL. */
int rm_config_load(const char *path, char *const *sets, int n_sets, rm_config *cfg, rm_dataset_facts *facts,
                   rm_error *err);

/* Reads and type-checks a config without the cross-field and dataset
 * checks (for tools that only need a few keys of a run's config). */
int rm_config_read(const char *path, rm_config *cfg, rm_error *err);

/* Applies one "section.key=value" override (value in YAML syntax). */
int rm_config_set(rm_config *cfg, const char *assignment, rm_error *err);

/* Cross-field and dataset checks; fills facts when not NULL. */
int rm_config_validate(rm_config *cfg, rm_dataset_facts *facts, rm_error *err);

/* Writes the resolved config as YAML that rm_config_load reads back to an
 * identical struct. */
void rm_config_write(const rm_config *cfg, FILE *out);

/* Hash of the canonical dump (less run_dir, which only the coordinator
 * uses): two ranks agree on it iff they run the same job. */
uint64_t rm_config_hash(const rm_config *cfg);

/* Hash of what determines the training result (model, data, train): a
 * checkpoint resumes only under the same training hash, on any number of
 * workers, with any launch, checkpoint or fault settings. */
uint64_t rm_config_training_hash(const rm_config *cfg);

/* observe.metrics_token_file, when /metrics uses one, is a readable file
 * of mode 0600 holding a token (checked where /metrics will be served,
 * not by every rank). */
int rm_config_check_token_file(const rm_config *cfg, rm_error *err);

/* Where checkpoints go: checkpoint.dir or <run_dir>/checkpoints. */
void rm_config_ckpt_root(const rm_config *cfg, char *out, size_t cap);

/* Number of optimizer steps the job runs. */
long rm_config_total_steps(const rm_config *cfg, long train_samples);

/* Learning rate at `step` (0-based): linear warmup then cosine or constant. */
double rm_config_lr_at(const rm_config *cfg, long step, long total_steps);

const char *rm_backend_name(int backend);
const char *rm_optimizer_name(int optimizer);

#endif
