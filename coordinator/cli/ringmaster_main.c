/* ringmaster: the command-line tool. Validates job configs, prepares
 * datasets, and launches and watches jobs (`ringmaster run`). */
#include "audit.h"
#include "checkpoint.h"
#include "ckpt_tool.h"
#include "config.h"
#include "doctor_cmd.h"
#include "plot.h"
#include "crypto.h"
#include "exit_codes.h"
#include "fsutil.h"
#include "json.h"
#include "idx_import.h"
#include "launcher.h"
#include "log.h"
#include "memory_plan.h"
#include "run_dir.h"
#include "run_lock.h"
#include "security_tool.h"
#include "shard.h"
#include "token_import.h"
#include "tokenize_tool.h"

#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_SETS 64

static void usage(FILE *out)
{
    fprintf(out,
            "usage:\n"
            "  ringmaster run CONFIG [--workers N] [--run-dir DIR] [--set section.key=value ...] [--dry-run]\n"
            "                        [--break-lock]\n"
            "      train: validate the config, create the run directory, launch\n"
            "      mpirun -np 1 ringmaster-coordinator : -np N ringmaster-worker, restart it after failures;\n"
            "      Ctrl-C checkpoints and stops (exit 130), SIGTERM too (exit 75: requeue); --break-lock takes\n"
            "      over the run directory from a job that is gone (see docs/fault-tolerance.md)\n"
            "  ringmaster validate CONFIG [--workers N] [--set section.key=value ...] [--device-memory SIZE]\n"
            "      check a config (and its dataset) without running it; for a GPT, the memory each worker\n"
            "      will hold, part by part, and with --device-memory (e.g. 80G) whether that fits (exit 3\n"
            "      when not) and the most layers of this width that would\n"
            "  ringmaster ckpt list|verify RUN_DIR [--step N]\n"
            "  ringmaster ckpt export RUN_DIR [--step N] OUT.safetensors\n"
            "      list, verify (checksums) or export (safetensors) a run's checkpoints\n"
            "  ringmaster data import-idx --images FILE --labels FILE --out DIR [--shard-samples N]\n"
            "                            [--encrypt --key-file KEY]\n"
            "      convert MNIST-style IDX files (gzipped or not) into a shard set (sealed with KEY)\n"
            "  ringmaster data import-text FILE... --out DIR --tokenizer bytes|gpt2 [--vocab-dir DIR]\n"
            "                            [--val-fraction F (0.1)] [--split-on-blank-lines] [--shard-tokens N]\n"
            "                            [--encrypt --key-file KEY]\n"
            "      tokenize text into token splits DIR/train and DIR/val: a document per file (or per\n"
            "      blank-line-separated block), whole documents to val, each followed by end-of-text;\n"
            "      gpt2 reads encoder.json and vocab.bpe from --vocab-dir (data/gpt2-vocab:\n"
            "      scripts/fetch-gpt2-vocab.sh fetches them)\n"
            "  ringmaster data tokenize --tokenizer bytes|gpt2 [--vocab-dir DIR] [--decode] [--stats] FILE\n"
            "      print FILE's token ids, space-separated; --decode: ids back to text\n"
            "  ringmaster data import-tokens FILE.bin... --out DIR/SPLIT [--vocab N] [--eot N] [--tokenizer NAME]\n"
            "                            [--shard-tokens N] [--encrypt --key-file KEY]\n"
            "      convert llm.c token files (uint16, magic 20240520; default gpt2: vocab 50257, eot 50256)\n"
            "      into one token split\n"
            "  ringmaster keygen FILE\n"
            "      write a new encryption key (32 random bytes, mode 0600) for security.key_file\n"
            "  ringmaster audit verify RUN_DIR\n"
            "      check the hash chain of RUN_DIR/audit.jsonl\n"
            "  ringmaster doctor CONFIG [--workers N] [--set ...] [--run-dir DIR | --out FILE]\n"
            "      measure storage, memory, sgemm and all-reduce rates on the job's ranks, predict the step\n"
            "      time and name the bottleneck\n"
            "  ringmaster plot RUN_DIR\n"
            "      PNG plots of loss, test accuracy, samples/s and the phase breakdown (gnuplot)\n"
            "  ringmaster sample RUN_DIR [--prompt TEXT] [--tokens N] [--temperature T] [--top-k K] [--seed S]\n"
            "      text from a GPT run's newest checkpoint that verifies (one process, a key/value cache)\n"
            "  ringmaster version\n");
}

typedef struct job_args {
    const char *config;
    char *sets[MAX_SETS + 2];
    int n_sets;
    int dry_run;
    int break_lock;
    int run_dir_given;
    size_t device_memory; /* validate --device-memory */
    char workers_set[64];
    char run_dir_set[RM_PATH_CAP + 16];
} job_args;

/* Parses CONFIG and the options shared by run and validate. --workers and
 * --run-dir become --set overrides so they pass the same checks. */
static int parse_job_args(int argc, char **argv, job_args *a, rm_error *err)
{
    memset(a, 0, sizeof *a);
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(arg, "--set") == 0 || strcmp(arg, "--workers") == 0 || strcmp(arg, "--run-dir") == 0) {
            if (!val)
                return rm_fail(err, "%s needs a value", arg);
            if (a->n_sets >= MAX_SETS)
                return rm_fail(err, "too many --set options");
            i++;
            if (strcmp(arg, "--set") == 0) {
                a->sets[a->n_sets++] = (char *)val;
            } else if (strcmp(arg, "--workers") == 0) {
                snprintf(a->workers_set, sizeof a->workers_set, "launch.workers=%s", val);
                a->sets[a->n_sets++] = a->workers_set;
            } else {
                if (strlen(val) >= RM_PATH_CAP)
                    return rm_fail(err, "--run-dir path is too long");
                /* quoted so that any path is taken as a string */
                char *q = a->run_dir_set;
                q += sprintf(q, "run_dir='");
                for (const char *p = val; *p; p++) {
                    if (*p == '\'')
                        *q++ = '\'';
                    *q++ = *p;
                }
                sprintf(q, "'");
                a->sets[a->n_sets++] = a->run_dir_set;
                a->run_dir_given = 1;
            }
        } else if (strcmp(arg, "--device-memory") == 0) {
            if (!val)
                return rm_fail(err, "--device-memory needs a size (e.g. 80G)");
            if (rm_parse_size(val, &a->device_memory, err) != RM_OK)
                return RM_ERR;
            i++;
        } else if (strcmp(arg, "--dry-run") == 0) {
            a->dry_run = 1;
        } else if (strcmp(arg, "--break-lock") == 0) {
            a->break_lock = 1;
        } else if (arg[0] == '-') {
            return rm_fail(err, "unknown option %s", arg);
        } else if (!a->config) {
            a->config = arg;
        } else {
            return rm_fail(err, "unexpected argument %s", arg);
        }
    }
    if (!a->config)
        return rm_fail(err, "no CONFIG given");
    return RM_OK;
}

static int cmd_validate(int argc, char **argv)
{
    job_args a;
    rm_error err;
    rm_config cfg;
    rm_dataset_facts facts;
    if (parse_job_args(argc, argv, &a, &err) != RM_OK) {
        rm_error_log("%s", err.msg);
        usage(stderr);
        return 2;
    }
    if (a.break_lock) {
        rm_error_log("--break-lock is an option of ringmaster run");
        usage(stderr);
        return 2;
    }
    if (rm_config_load(a.config, a.sets, a.n_sets, &cfg, &facts, &err) != RM_OK ||
        rm_config_check_token_file(&cfg, &err) != RM_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    printf("%s: ok (%ld training samples, %ld steps, %ld workers)\n", a.config, facts.train_samples,
           rm_config_total_steps(&cfg, facts.train_samples), cfg.workers);
    /* exit 3: valid, but more than the device given holds */
    return rm_print_memory_plan(&cfg, &facts, a.device_memory, stdout) ? 3 : 0;
}

/* Directory holding this executable, to find the coordinator and worker. */
static int self_dir(char *out, size_t cap)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0)
        return RM_ERR;
    exe[n] = '\0';
    snprintf(out, cap, "%s", dirname(exe));
    return RM_OK;
}

/* `ringmaster sample`: the sampler is its own program beside this one
 * (it carries the model's compute, which this tool does not link). */
static int cmd_sample(int argc, char **argv)
{
    char dir[PATH_MAX], program[PATH_MAX + 32];
    if (self_dir(dir, sizeof dir) != RM_OK) {
        rm_error_log("cannot find the directory of this executable");
        return RM_EXIT_FATAL;
    }
    snprintf(program, sizeof program, "%s/ringmaster-sample", dir);
    char **args = calloc((size_t)argc + 2, sizeof *args);
    if (!args) {
        rm_error_log("out of memory");
        return RM_EXIT_FATAL;
    }
    args[0] = program;
    for (int i = 0; i < argc; i++)
        args[i + 1] = argv[i];
    execv(program, args);
    rm_error_log("cannot run %s: %s", program, strerror(errno));
    free(args);
    return RM_EXIT_FATAL;
}

static int run_dir_completed(const char *dir)
{
    char path[RM_PATH_CAP + 32];
    snprintf(path, sizeof path, "%s/summary.json", dir);
    struct stat st;
    return stat(path, &st) == 0;
}

/* Records a supervisor decision in the audit trail: a restart and its
 * cause, or the end of a run that failed or stopped. A failed write is
 * said, and returned. */
static int audit_supervisor(const rm_config *cfg, const char *event, const char *status, const char *cause,
                            int exit_status, long attempt)
{
    char *fields = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&fields, &len);
    if (!mem)
        return RM_ERR;
    if (strcmp(event, "restart") == 0)
        fprintf(mem, "\"attempt\":%ld,\"exit_status\":%d,\"cause\":", attempt, exit_status);
    else
        fprintf(mem, "\"status\":\"%s\",\"exit_status\":%d,\"restarts\":%ld,\"cause\":", status, exit_status, attempt);
    rm_json_string(mem, cause);
    fclose(mem);
    rm_error err;
    int rc = rm_audit_append(cfg->run_dir, event, fields, &err);
    if (rc != RM_OK)
        rm_error_log("audit trail: %s", err.msg);
    free(fields);
    return rc;
}

/* Appends one line to RUN_DIR/NAME, whole or not at all (a failed write is
 * cut back). RM_ERR with err set when it could not be written. */
static int append_line(const char *run_dir, const char *name, const char *line, rm_error *err)
{
    char path[RM_PATH_CAP + 32];
    snprintf(path, sizeof path, "%s/%s", run_dir, name);
    FILE *f = rm_open_append(path, err);
    if (!f)
        return RM_ERR;
    int fd = fileno(f);
    off_t start = lseek(fd, 0, SEEK_END);
    size_t len = strlen(line), done = 0;
    int rc = RM_OK;
    while (done < len) {
        ssize_t n = write(fd, line + done, len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            rc = rm_fail_errno(err, n < 0 ? errno : ENOSPC, "%s: write failed", path);
            if (done && start >= 0 && ftruncate(fd, start) != 0) {
                /* the message above already says the write failed */
            }
            break;
        }
        done += (size_t)n;
    }
    if (fclose(f) != 0 && rc == RM_OK)
        rc = rm_fail_errno(err, errno, "%s: write failed", path);
    return rc;
}

/* The newest committed checkpoint's name ("step-00000160") into out, or "". */
static void latest_checkpoint(const rm_config *cfg, char *out, size_t cap)
{
    char root[RM_PATH_CAP];
    long *steps;
    int n;
    out[0] = '\0';
    rm_config_ckpt_root(cfg, root, sizeof root);
    if (rm_ckpt_list(root, &steps, &n, NULL) == RM_OK) {
        if (n > 0)
            rm_ckpt_dir_name(steps[0], out, cap);
        free(steps);
    }
}

static const char *stop_signal_name(int sig)
{
    return sig == SIGINT ? "Ctrl-C (SIGINT)" : sig == SIGTERM ? "SIGTERM" : sig == SIGUSR1 ? "SIGUSR1" : "a signal";
}

/* The job stopped because it was asked to (a signal to ringmaster run, or
 * to the job itself): not a failure, so nothing goes to restarts.jsonl.
 * Says in one line where it stopped and how to resume; returns 130 for an
 * interrupt, 75 (requeue me) otherwise. */
static int stopped(const rm_config *cfg, const rm_launch_result *res, const char *resume_cmd)
{
    int kind = rm_launch_stop_kind();
    if (!kind)
        kind = res->status == RM_EXIT_INTERRUPTED ? RM_STOP_INTERRUPT : RM_STOP_REQUEUE;
    int code = kind == RM_STOP_INTERRUPT ? RM_EXIT_INTERRUPTED : RM_EXIT_REQUEUE;
    const char *what = rm_launch_stop_signal() ? stop_signal_name(rm_launch_stop_signal())
                       : kind == RM_STOP_INTERRUPT ? "an interrupt" : "a stop signal";
    /* the coordinator checkpointed and stopped by itself: it exited 75 or 130 */
    int checkpointed = !res->killed && (res->status == RM_EXIT_REQUEUE || res->status == RM_EXIT_INTERRUPTED) &&
                       !res->stopped_at_once;
    char latest[64];
    latest_checkpoint(cfg, latest, sizeof latest);
    if (!checkpointed) { /* the coordinator could not say how the run ended: say it here */
        char line[512];
        snprintf(line, sizeof line,
                 "{\"time\":%lld,\"event\":\"end\",\"status\":\"%s\",\"at_once\":true,\"latest_checkpoint\":%s%s%s}\n",
                 (long long)time(NULL), code == RM_EXIT_REQUEUE ? "preempted" : "interrupted", latest[0] ? "\"" : "",
                 latest[0] ? latest : "null", latest[0] ? "\"" : "");
        rm_error err;
        if (append_line(cfg->run_dir, "events.jsonl", line, &err) != RM_OK)
            rm_error_log("%s", err.msg);
        audit_supervisor(cfg, "run_end", code == RM_EXIT_REQUEUE ? "preempted" : "interrupted",
                         latest[0] ? latest : "no checkpoint", code, 0);
    }
    if (checkpointed)
        rm_info("stopped on %s after checkpoint %s (exit %d%s); resume with: %s", what, latest, code,
                code == RM_EXIT_REQUEUE ? ": requeue me" : "", resume_cmd);
    else if (latest[0])
        rm_info("stopped on %s at once (exit %d); the latest checkpoint is %s; resume with: %s", what, code, latest,
                resume_cmd);
    else
        rm_info("stopped on %s before the first checkpoint (exit %d); run again with: %s", what, code, resume_cmd);
    return code;
}

/* The supervisor: runs the job, and after a failure a restart may cure
 * (a dead or hung rank, a rollback) starts it again from the latest
 * checkpoint, up to fault.max_restarts times with a doubling backoff.
 * Each failure is recorded in RUN_DIR/restarts.jsonl. A stop (a signal)
 * is an outcome, not a failure: see stopped(). */
/* What a restart launches: the first plan, or one without the hosts lost. */
typedef struct launch_state {
    rm_launch_plan *plan;
    const char *bin_dir, *config_path;
    rm_config live;     /* cfg with the hosts and workers of the next launch */
    rm_hostfile *hosts; /* launch.hostfile's hosts still up; NULL without one */
    char workers_set[64];
} launch_state;

/* The most workers, from `most` down to `least`, that the global batch
 * (and its micro-steps) divides into; 0 if none. */
static long fitting_workers(const rm_config *cfg, long most, long least)
{
    for (long w = most; w >= least && w >= 1; w--)
        if (cfg->global_batch % w == 0 && (cfg->global_batch / w) % cfg->grad_accum == 0)
            return w;
    return 0;
}

/* A host was lost: the next launch goes to the hosts left
 * (RUN_DIR/hostfile.live), with as many workers as before if their slots
 * hold them, else with fewer, down to fault.min_workers. RM_ERR (err
 * says why) when the job cannot go on without the host. */
static int drop_lost_host(launch_state *ls, const rm_config *cfg, const char *host, rm_error *err)
{
    if (!ls->hosts)
        return rm_fail(err, "host %s was lost and there is no launch.hostfile to launch without it", host);
    if (!rm_hostfile_remove(ls->hosts, host)) {
        /* the workers name their host as it calls itself; a hostfile may
         * spell it otherwise (an address, an alias, a full domain name) */
        rm_warn("host %s was lost but %s has no host of that name (does it name it otherwise?): the next launch "
                "may go to it again",
                host, cfg->hostfile[0] ? cfg->hostfile : "the Slurm allocation");
        return RM_OK;
    }
    if (ls->hosts->n == 0)
        return rm_fail(err, "host %s was lost and it was the last host of %s", host,
                       cfg->hostfile[0] ? cfg->hostfile : "the Slurm allocation");
    /* the coordinator mostly sleeps: the workers need the slots */
    long slots = rm_hostfile_slots(ls->hosts);
    long workers = cfg->workers <= slots ? cfg->workers : 0;
    if (!workers && cfg->min_workers > 0)
        workers = fitting_workers(cfg, slots < cfg->workers ? slots : cfg->workers, cfg->min_workers);
    if (!workers)
        return rm_fail(err,
                       "host %s was lost; the %d hosts left have %ld slots, fewer than the %ld workers (set "
                       "fault.min_workers to go on with fewer)",
                       host, ls->hosts->n, slots, cfg->workers);
    snprintf(ls->live.hostfile, sizeof ls->live.hostfile, "%s/hostfile.live", cfg->run_dir);
    if (rm_hostfile_write(ls->live.hostfile, ls->hosts, err) != RM_OK)
        return RM_ERR;
    ls->live.workers = workers;
    snprintf(ls->workers_set, sizeof ls->workers_set, "launch.workers=%ld", workers);
    const char *sets[] = {ls->workers_set};
    rm_launch_plan next;
    if (rm_launch_plan_build(&next, &ls->live, ls->bin_dir, ls->config_path, sets, workers != cfg->workers, err) !=
        RM_OK)
        return RM_ERR;
    rm_launch_plan_free(ls->plan);
    *ls->plan = next;
    char *line = rm_launch_plan_format(ls->plan);
    rm_warn("host %s is left out from now on: %ld worker%s on %d host%s (%s)%s%s", host, workers,
            workers == 1 ? "" : "s", ls->hosts->n, ls->hosts->n == 1 ? "" : "s", ls->live.hostfile,
            line ? "; next launch: " : "", line ? line : "");
    free(line);
    return RM_OK;
}

static int supervise(launch_state *ls, const rm_config *cfg, const rm_run_lock *const *locks, int n_locks,
                     const char *resume_cmd)
{
    char causes[4096] = "";
    for (long attempt = 0;; attempt++) {
        const rm_launch_plan *plan = ls->plan;
        rm_launch_result res;
        int rc = rm_launch_run(plan, cfg->run_dir, locks, n_locks, &res);
        if (rc == RM_EXIT_OK && res.started && !run_dir_completed(cfg->run_dir)) {
            /* mpirun can end 0 when the ranks it started were ended from
             * outside (Slurm ending a step on a node it took from the job) */
            rc = res.status = RM_EXIT_FAILED;
            snprintf(res.verdict, sizeof res.verdict,
                     "mpirun exited with status 0 but the job did not complete (no summary.json): its ranks were "
                     "ended from outside");
        }
        /* inside Slurm, a node Slurm took from the job is the lost host */
        if (rc != RM_EXIT_OK && !res.lost_host[0] && !rm_launch_stop_kind() && !cfg->hostfile[0])
            rm_launch_slurm_lost(ls->hosts, cfg->run_dir, &res);
        int lock_lost = res.lock_lost;
        for (int i = 0; i < n_locks; i++)
            lock_lost |= rm_run_lock_check(locks[i]) != RM_OK;
        if (lock_lost) {
            /* the run directory is someone else's now: write nothing more there */
            rm_error_log("this job was ended: another job took over the lock of %s", cfg->run_dir);
            return RM_EXIT_FATAL;
        }
        if (rc == RM_EXIT_OK) {
            if (rm_launch_stop_kind())
                rm_info("the job completed before the stop took effect");
            return rc;
        }
        if (rm_launch_stop_kind() || (!res.killed && (rc == RM_EXIT_REQUEUE || rc == RM_EXIT_INTERRUPTED)))
            return stopped(cfg, &res, resume_cmd);
        if (rc == RM_EXIT_STORAGE)
            rm_error_log("job stopped: a write failed (exit %d, see above)", rc);
        else
            rm_error_log("job failed: %s", res.verdict);
        char *line = NULL;
        size_t len = 0;
        FILE *mem = open_memstream(&line, &len);
        int logged = RM_ERR;
        rm_error lerr = {.errnum = 0};
        if (mem) {
            fprintf(mem, "{\"time\":%ld,\"attempt\":%ld,\"exit_status\":%d,\"cause\":", (long)time(NULL), attempt,
                    rc);
            rm_json_string(mem, res.verdict);
            fputs("}\n", mem);
            fclose(mem);
            logged = append_line(cfg->run_dir, "restarts.jsonl", line, &lerr);
            if (logged != RM_OK)
                rm_error_log("the failure could not be recorded: %s", lerr.msg);
        }
        free(line);
        snprintf(causes + strlen(causes), sizeof causes - strlen(causes), "\n  attempt %ld: %s", attempt + 1,
                 res.verdict);
        char latest[64];
        latest_checkpoint(cfg, latest, sizeof latest);
        if (rc == RM_EXIT_STORAGE || (logged != RM_OK && rm_error_is_storage(&lerr))) {
            audit_supervisor(cfg, "run_end", "failed", res.verdict, rc, attempt);
            rm_error_log("not restarting: writing to the run or checkpoint directory failed (see above), which a "
                         "restart cannot fix. %s%s%s. Free space (or fix the storage) and run the same command to "
                         "resume: %s",
                         latest[0] ? "Every committed checkpoint is intact; the latest is " : "No checkpoint was "
                                                                                              "committed yet",
                         latest, "", resume_cmd);
            return RM_EXIT_STORAGE;
        }
        rm_error host_err;
        if (res.lost_host[0] && attempt < cfg->max_restarts && drop_lost_host(ls, cfg, res.lost_host, &host_err) != RM_OK) {
            audit_supervisor(cfg, "run_end", "failed", host_err.msg, rc, attempt);
            rm_error_log("not restarting: %s; run directory %s", host_err.msg, cfg->run_dir);
            return rc;
        }
        if (rc == RM_EXIT_FATAL || rc == RM_EXIT_USAGE || rc == 127) {
            audit_supervisor(cfg, "run_end", "failed", res.verdict, rc, attempt);
            rm_error_log("not restarting: a restart cannot fix this (see the message above); run directory %s",
                         cfg->run_dir);
            return rc;
        }
        if (attempt >= cfg->max_restarts) {
            audit_supervisor(cfg, "run_end", "failed", res.verdict, rc, attempt);
            rm_error_log("giving up after %ld restart%s (fault.max_restarts); failures:%s\nrun directory: %s", attempt,
                         attempt == 1 ? "" : "s", causes, cfg->run_dir);
            return rc;
        }
        double backoff = cfg->restart_backoff_s * (double)(1L << (attempt < 6 ? attempt : 6));
        if (latest[0])
            rm_warn("restart %ld of %ld in %.1f s, from checkpoint %s", attempt + 1, cfg->max_restarts, backoff,
                    latest);
        else
            rm_warn("restart %ld of %ld in %.1f s, from the start (no checkpoint was committed yet)", attempt + 1,
                    cfg->max_restarts, backoff);
        audit_supervisor(cfg, "restart", NULL, res.verdict, rc, attempt + 1);
        struct timespec ts = {(time_t)backoff, (long)((backoff - (double)(time_t)backoff) * 1e9)};
        while (nanosleep(&ts, &ts) != 0 && !rm_launch_stop_kind())
            ;
        if (rm_launch_stop_kind()) {
            rm_launch_result none = {.status = 128 + rm_launch_stop_signal(), .stopped_at_once = 1};
            return stopped(cfg, &none, resume_cmd);
        }
    }
}

/* Before a resume is accepted nothing in the run directory changes: the
 * newest checkpoint must belong to this job (the same model, data and
 * train config, the same dataset index, a key that opens it). A quick look
 * at its manifest; the coordinator verifies every file before it trains. */
static int resume_acceptable(const rm_config *cfg, rm_error *err)
{
    char root[RM_PATH_CAP], dir[RM_PATH_CAP + 48], split[2 * RM_PATH_CAP + 2];
    rm_config_ckpt_root(cfg, root, sizeof root);
    rm_ckpt_manifest m;
    rm_error why = {.errnum = 0};
    if (rm_ckpt_find_newest_manifest(root, &m, dir, sizeof dir, &why) != RM_OK)
        return why.msg[0] ? rm_fail(err, "%s", why.msg) : RM_OK; /* nothing to resume */
    snprintf(split, sizeof split, "%s/%s", cfg->data_dir, cfg->train_split);
    rm_shard_index idx;
    int rc = rm_shard_index_read(split, &idx, err);
    if (rc == RM_OK) {
        rc = rm_ckpt_check_job(&m, dir, rm_config_training_hash(cfg), idx.index_hash, -1, err);
        rm_shard_index_free(&idx);
    }
    rm_ckpt_manifest_free(&m);
    return rc;
}

/* The run's resolved config and mpirun line, written once the run is
 * accepted; every rank reads the config from there, so all of them run
 * exactly what was validated here. */
static int write_run_files(const rm_config *cfg, const char *config_path, const char *line, rm_error *err)
{
    char *text = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&text, &len);
    if (!mem)
        return rm_fail(err, "out of memory");
    rm_config_write(cfg, mem);
    fclose(mem);
    char cmd_path[RM_PATH_CAP + 32];
    snprintf(cmd_path, sizeof cmd_path, "%s/command.txt", cfg->run_dir);
    int rc = rm_write_file_atomic(config_path, text, len, err);
    if (rc == RM_OK && line)
        rc = rm_write_file_atomic(cmd_path, line, strlen(line), err);
    free(text);
    return rc;
}

static const char *prog_name = "ringmaster";

/* How to run this job again: the same command, with its run directory. */
static char *resume_command(int argc, char **argv, const job_args *a, const char *run_dir)
{
    char **words = calloc((size_t)argc + 4, sizeof *words);
    if (!words)
        return NULL;
    int n = 0;
    words[n++] = (char *)prog_name;
    words[n++] = "run";
    for (int i = 0; i < argc; i++)
        if (strcmp(argv[i], "--break-lock") != 0)
            words[n++] = argv[i];
    if (!a->run_dir_given) {
        words[n++] = "--run-dir";
        words[n++] = (char *)run_dir;
    }
    char *line = rm_shell_join(words, n);
    free(words);
    return line;
}

/* What is about to run, printed once the run is accepted (or for --dry-run). */
static void print_plan(const rm_launch_plan *plan, const rm_config *cfg, const char *line)
{
    if (plan->in_slurm)
        printf("ringmaster: inside Slurm job %s: mpirun takes nodes and slots from the allocation (%ld slots)\n",
               getenv("SLURM_JOB_ID"), plan->slots);
    if (plan->oversubscribed)
        printf("ringmaster: %ld ranks (1 coordinator + %ld workers) on %ld slots: oversubscribing, unbound; "
               "the coordinator mostly sleeps\n",
               cfg->workers + 1, cfg->workers, plan->slots);
    printf("ringmaster: %s\n", line ? line : "(out of memory)");
    fflush(stdout);
}

/* The locks of the run directory and of checkpoint.dir (when it is set):
 * one job each, for the life of the job and its restarts. */
static int lock_dirs(const rm_config *cfg, int break_lock, rm_run_lock *run_lock, rm_run_lock *ckpt_lock,
                     rm_error *err)
{
    memset(ckpt_lock, 0, sizeof *ckpt_lock);
    if (rm_run_lock_acquire(run_lock, cfg->run_dir, "run directory", break_lock, err) != RM_OK)
        return RM_ERR;
    char default_root[RM_PATH_CAP + 16];
    snprintf(default_root, sizeof default_root, "%s/checkpoints", cfg->run_dir);
    if (cfg->ckpt_dir[0] && strcmp(cfg->ckpt_dir, default_root) != 0 && strcmp(cfg->ckpt_dir, cfg->run_dir) != 0) {
        if (rm_private_dir(cfg->ckpt_dir, err) != RM_OK ||
            rm_run_lock_acquire(ckpt_lock, cfg->ckpt_dir, "checkpoint directory", break_lock, err) != RM_OK) {
            rm_run_lock_release(run_lock);
            return RM_ERR;
        }
    }
    return RM_OK;
}

static int cmd_run(int argc, char **argv)
{
    job_args a;
    rm_error err;
    rm_config cfg;
    rm_dataset_facts facts;
    if (parse_job_args(argc, argv, &a, &err) != RM_OK) {
        rm_error_log("%s", err.msg);
        usage(stderr);
        return 2;
    }
    if (a.device_memory) {
        rm_error_log("--device-memory is an option of ringmaster validate");
        usage(stderr);
        return 2;
    }
    if (rm_config_load(a.config, a.sets, a.n_sets, &cfg, &facts, &err) != RM_OK ||
        rm_config_check_token_file(&cfg, &err) != RM_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    if (!cfg.run_dir[0])
        rm_run_dir_default(a.config, cfg.run_dir, sizeof cfg.run_dir);
    /* Look before touching anything: a user's own folder is not taken over,
     * a completed run is not run again. */
    int state;
    if (rm_run_dir_inspect(cfg.run_dir, &state, &err) != RM_OK || state == RM_RUN_DIR_FOREIGN) {
        rm_error_log("%s", err.msg);
        return RM_EXIT_FATAL;
    }
    if (run_dir_completed(cfg.run_dir)) {
        rm_error_log("run directory %s holds a completed run (summary.json); pass another --run-dir", cfg.run_dir);
        return RM_EXIT_FATAL;
    }
    char bin_dir[PATH_MAX];
    if (self_dir(bin_dir, sizeof bin_dir) != RM_OK) {
        rm_error_log("cannot find the ringmaster executable's directory");
        return 1;
    }
    char config_path[RM_PATH_CAP + 32];
    snprintf(config_path, sizeof config_path, "%s/config.yaml", cfg.run_dir);
    rm_launch_plan plan;
    if (rm_launch_plan_build(&plan, &cfg, bin_dir, config_path, NULL, 0, &err) != RM_OK) {
        rm_error_log("%s", err.msg);
        return 1;
    }
    char *line = rm_launch_plan_format(&plan);
    if (a.dry_run) {
        print_plan(&plan, &cfg, line);
        free(line);
        rm_launch_plan_free(&plan);
        return 0;
    }

    /* From here a stop request is an outcome: caught before the first
     * launch too. */
    rm_launch_install_signals();
    int rc = 0;
    rm_run_lock run_lock, ckpt_lock;
    char *resume_cmd = resume_command(argc, argv, &a, cfg.run_dir);
    /* the key, to look at sealed checkpoints and to key the audit chain */
    struct stat before;
    int loose = state == RM_RUN_DIR_EMPTY && stat(cfg.run_dir, &before) == 0 && (before.st_mode & 07777) != 0700;
    if (rm_security_load(cfg.key_file, &err) != RM_OK) {
        rm_error_log("%s", err.msg);
        rc = RM_EXIT_FATAL;
    } else if ((state == RM_RUN_DIR_ABSENT && rm_private_dir(cfg.run_dir, &err) != RM_OK) ||
               lock_dirs(&cfg, a.break_lock, &run_lock, &ckpt_lock, &err) != RM_OK) {
        rm_error_log("%s", err.msg);
        rc = rm_error_is_storage(&err) ? RM_EXIT_STORAGE : RM_EXIT_FATAL;
    } else {
        if (resume_acceptable(&cfg, &err) != RM_OK) {
            rm_error_log("%s", err.msg);
            rc = RM_EXIT_FATAL;
        } else if (rm_private_dir(cfg.run_dir, &err) != RM_OK || write_run_files(&cfg, config_path, line, &err) != RM_OK) {
            rm_error_log("%s", err.msg);
            rc = rm_error_is_storage(&err) ? RM_EXIT_STORAGE : 1;
        } else {
            if (loose)
                printf("ringmaster: %s was empty: it is the run directory now, private (mode %04o -> 0700)\n",
                       cfg.run_dir, (unsigned)(before.st_mode & 07777));
            print_plan(&plan, &cfg, line);
            setenv("RINGMASTER_TTY", isatty(STDERR_FILENO) ? "1" : "0", 1);
            setenv("RINGMASTER_RUN_LOCK", run_lock.token, 1);
            const rm_run_lock *locks[2] = {&run_lock, &ckpt_lock};
            launch_state ls = {.plan = &plan, .bin_dir = bin_dir, .config_path = config_path, .live = cfg};
            if (cfg.hostfile[0] && (ls.hosts = malloc(sizeof *ls.hosts)) &&
                rm_hostfile_read(cfg.hostfile, ls.hosts, &err) != RM_OK) {
                free(ls.hosts);
                ls.hosts = NULL;
            }
            /* inside a Slurm allocation its nodes are the hosts: a lost one
             * is left out of the restarts as a hostfile's would be */
            if (!cfg.hostfile[0] && plan.in_slurm && (ls.hosts = malloc(sizeof *ls.hosts))) {
                err.msg[0] = '\0';
                if (rm_hostfile_from_slurm(ls.hosts, &err) != 1) {
                    if (err.msg[0])
                        rm_warn("%s; a lost node ends the job", err.msg);
                    free(ls.hosts);
                    ls.hosts = NULL;
                }
            }
            rc = supervise(&ls, &cfg, locks, 2, resume_cmd ? resume_cmd : "(out of memory)");
            free(ls.hosts);
        }
        rm_run_lock_release(&ckpt_lock);
        rm_run_lock_release(&run_lock);
    }
    rm_security_unload();
    free(resume_cmd);
    free(line);
    rm_launch_plan_free(&plan);
    return rc;
}

/* --encrypt --key-file KEY, as every import command takes them: loads the
 * process key (and turns core dumps off) when asked. Returns the exit
 * status to end with (0: go on), having said why. */
static int load_import_key(int encrypt, const char *key_file)
{
    if (encrypt != (key_file != NULL)) {
        rm_error_log("--encrypt and --key-file go together");
        return 2;
    }
    if (!encrypt)
        return 0;
    rm_security_no_core_dumps(1);
    rm_error err;
    if (rm_security_load(key_file, &err) != RM_OK) {
        rm_error_log("%s", err.msg);
        return 1;
    }
    return 0;
}

/* A count option's value: a whole number of at least min. */
static int parse_count(const char *flag, const char *val, long min, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(val, &end, 10);
    if (errno || end == val || *end || v < min) {
        rm_error_log("%s must be an integer of at least %ld, got '%s'", flag, min, val);
        return RM_ERR;
    }
    *out = v;
    return RM_OK;
}

static int cmd_import_idx(int argc, char **argv)
{
    const char *images = NULL, *labels = NULL, *out = NULL, *key_file = NULL;
    long shard_samples = 10000;
    int encrypt = 0;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--encrypt") == 0) {
            encrypt = 1;
            continue;
        }
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (!val) {
            rm_error_log("%s needs a value", argv[i]);
            return 2;
        }
        if (strcmp(argv[i], "--images") == 0)
            images = val;
        else if (strcmp(argv[i], "--labels") == 0)
            labels = val;
        else if (strcmp(argv[i], "--out") == 0)
            out = val;
        else if (strcmp(argv[i], "--key-file") == 0)
            key_file = val;
        else if (strcmp(argv[i], "--shard-samples") == 0) {
            char *end;
            shard_samples = strtol(val, &end, 10);
            if (*end || shard_samples <= 0) {
                rm_error_log("--shard-samples must be a positive integer, got '%s'", val);
                return 2;
            }
        } else {
            rm_error_log("unknown option %s", argv[i]);
            usage(stderr);
            return 2;
        }
        i++;
    }
    if (!images || !labels || !out) {
        rm_error_log("data import-idx needs --images, --labels and --out");
        usage(stderr);
        return 2;
    }
    int status = load_import_key(encrypt, key_file);
    if (status != 0)
        return status;
    rm_idx_import_result res;
    rm_error err;
    int rc = rm_idx_import_sealed(images, labels, out, shard_samples, rm_security_key(), &res, &err);
    rm_security_unload();
    if (rc != RM_OK) {
        rm_error_log("%s", err.msg);
        return 1;
    }
    printf("%s: %ld samples, %ld inputs, %ld classes, %d shards%s\n", out, res.samples, res.input_dim, res.classes,
           res.shards, encrypt ? ", encrypted" : "");
    return 0;
}

static void print_split(const char *name, const rm_token_split_summary *s)
{
    printf("%s%s%ld document%s, %ld tokens, %d shard%s", name, name[0] ? " " : "", s->documents,
           s->documents == 1 ? "" : "s", s->tokens, s->shards, s->shards == 1 ? "" : "s");
}

/* The arguments import-text and import-tokens share: input files and the
 * options that take values, in any order. Returns the exit status to end
 * with (0: go on). files has room for argc entries. */
typedef struct token_import_args {
    const char **files;
    int n_files;
    const char *out, *tokenizer, *key_file, *vocab_dir;
    int encrypt, split_on_blank_lines;
    double val_fraction;
    long shard_tokens, vocab, eot;
} token_import_args;

static int parse_token_import(int argc, char **argv, int text, token_import_args *a)
{
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (arg[0] != '-') {
            a->files[a->n_files++] = arg;
            continue;
        }
        if (strcmp(arg, "--encrypt") == 0) {
            a->encrypt = 1;
            continue;
        }
        if (text && strcmp(arg, "--split-on-blank-lines") == 0) {
            a->split_on_blank_lines = 1;
            continue;
        }
        int known = strcmp(arg, "--out") == 0 || strcmp(arg, "--tokenizer") == 0 || strcmp(arg, "--key-file") == 0 ||
                    strcmp(arg, "--shard-tokens") == 0 ||
                    (text ? strcmp(arg, "--val-fraction") == 0 || strcmp(arg, "--vocab-dir") == 0
                          : strcmp(arg, "--vocab") == 0 || strcmp(arg, "--eot") == 0);
        if (!known) {
            rm_error_log("unknown option %s", arg);
            usage(stderr);
            return 2;
        }
        if (!val) {
            rm_error_log("%s needs a value", arg);
            return 2;
        }
        i++;
        if (strcmp(arg, "--out") == 0) {
            a->out = val;
        } else if (strcmp(arg, "--tokenizer") == 0) {
            a->tokenizer = val;
        } else if (strcmp(arg, "--key-file") == 0) {
            a->key_file = val;
        } else if (strcmp(arg, "--vocab-dir") == 0) {
            a->vocab_dir = val;
        } else if (strcmp(arg, "--val-fraction") == 0) {
            char *end;
            a->val_fraction = strtod(val, &end);
            if (end == val || *end) {
                rm_error_log("--val-fraction must be a number, got '%s'", val);
                return 2;
            }
        } else if (parse_count(arg, val, strcmp(arg, "--eot") == 0 ? 0 : 2,
                               strcmp(arg, "--shard-tokens") == 0 ? &a->shard_tokens
                               : strcmp(arg, "--vocab") == 0      ? &a->vocab
                                                                  : &a->eot) != RM_OK) {
            return 2;
        }
    }
    const char *cmd = text ? "data import-text" : "data import-tokens";
    if (a->n_files == 0 || !a->out || (text && !a->tokenizer)) {
        rm_error_log("%s needs input files%s", cmd, text ? ", --out and --tokenizer" : " and --out");
        usage(stderr);
        return 2;
    }
    return load_import_key(a->encrypt, a->key_file);
}

static int cmd_import_text(int argc, char **argv)
{
    token_import_args a = {.files = calloc((size_t)argc + 1, sizeof(char *)), .val_fraction = 0.1,
                           .shard_tokens = RM_TOKEN_SHARD_DEFAULT};
    if (!a.files)
        return 1;
    int status = parse_token_import(argc, argv, 1, &a);
    if (status == 0) {
        rm_text_import_options opt = {a.tokenizer, a.vocab_dir, a.val_fraction, a.split_on_blank_lines, a.shard_tokens,
                                      rm_security_key()};
        rm_token_split_summary train, val;
        rm_error err;
        if (rm_token_import_text(a.files, a.n_files, a.out, &opt, &train, &val, &err) != RM_OK) {
            rm_error_log("%s", err.msg);
            status = 1;
        } else {
            printf("%s: ", a.out);
            print_split("train", &train);
            if (a.val_fraction > 0) {
                printf("; ");
                print_split("val", &val);
            }
            printf(" (tokenizer %s%s)\n", a.tokenizer, a.encrypt ? ", encrypted" : "");
        }
    }
    rm_security_unload();
    free(a.files);
    return status;
}

static int cmd_import_tokens(int argc, char **argv)
{
    token_import_args a = {.files = calloc((size_t)argc + 1, sizeof(char *)), .vocab = 0, .eot = -1,
                           .shard_tokens = RM_TOKEN_SHARD_DEFAULT};
    if (!a.files)
        return 1;
    int status = parse_token_import(argc, argv, 0, &a);
    if (status == 0) {
        rm_llmc_import_options opt = {a.tokenizer, a.vocab, a.eot, a.shard_tokens, rm_security_key()};
        rm_token_split_summary split;
        rm_error err;
        if (rm_token_import_llmc(a.files, a.n_files, a.out, &opt, &split, &err) != RM_OK) {
            rm_error_log("%s", err.msg);
            status = 1;
        } else {
            printf("%s: %d file%s: ", a.out, a.n_files, a.n_files == 1 ? "" : "s");
            print_split("", &split);
            printf(" (tokenizer %s%s)\n", a.tokenizer ? a.tokenizer : "gpt2", a.encrypt ? ", encrypted" : "");
        }
    }
    rm_security_unload();
    free(a.files);
    return status;
}

int main(int argc, char **argv)
{
    rm_log_set_identity("ringmaster");
    prog_name = argv[0];
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    /* `ringmaster run --help` and the like: the usage covers every command */
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i - 1], "--set") != 0 && (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)) {
            usage(stdout);
            return 0;
        }
    }
    if (strcmp(cmd, "run") == 0)
        return cmd_run(argc - 2, argv + 2);
    if (strcmp(cmd, "validate") == 0)
        return cmd_validate(argc - 2, argv + 2);
    if (strcmp(cmd, "ckpt") == 0)
        return rm_ckpt_tool_main(argc - 2, argv + 2);
    if (strcmp(cmd, "data") == 0 && argc >= 3 && strcmp(argv[2], "import-idx") == 0)
        return cmd_import_idx(argc - 3, argv + 3);
    if (strcmp(cmd, "data") == 0 && argc >= 3 && strcmp(argv[2], "import-text") == 0)
        return cmd_import_text(argc - 3, argv + 3);
    if (strcmp(cmd, "data") == 0 && argc >= 3 && strcmp(argv[2], "import-tokens") == 0)
        return cmd_import_tokens(argc - 3, argv + 3);
    if (strcmp(cmd, "data") == 0 && argc >= 3 && strcmp(argv[2], "tokenize") == 0)
        return rm_tokenize_tool_main(argc - 3, argv + 3);
    if (strcmp(cmd, "data") == 0) {
        rm_error_log("data needs a command: import-idx, import-text, import-tokens or tokenize");
        usage(stderr);
        return 2;
    }
    if (strcmp(cmd, "doctor") == 0)
        return rm_doctor_cmd_main(argc - 2, argv + 2);
    if (strcmp(cmd, "sample") == 0)
        return cmd_sample(argc - 2, argv + 2);
    if (strcmp(cmd, "plot") == 0)
        return rm_plot_main(argc - 2, argv + 2);
    if (strcmp(cmd, "keygen") == 0)
        return rm_keygen_main(argc - 2, argv + 2);
    if (strcmp(cmd, "audit") == 0)
        return rm_audit_tool_main(argc - 2, argv + 2);
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("ringmaster %s\n", RINGMASTER_VERSION);
        return 0;
    }
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        usage(stdout);
        return 0;
    }
    rm_error_log("unknown command '%s'", cmd);
    usage(stderr);
    return 2;
}
