#include "run_dir.h"

#include "audit.h"
#include "fsutil.h"
#include "hash.h"
#include "log.h"
#include "shard.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static FILE *open_log(const char *dir, const char *name, rm_error *err)
{
    char path[RM_PATH_CAP + 64];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return rm_open_append(path, err);
}

int rm_run_dir_open(rm_run_dir *rd, const rm_config *cfg, rm_error *err)
{
    memset(rd, 0, sizeof *rd);
    snprintf(rd->path, sizeof rd->path, "%s", cfg->run_dir);
    if (rm_private_dir(rd->path, err) != RM_OK)
        return RM_ERR;
    rd->config_hash = rm_config_hash(cfg);
    char split[2 * RM_PATH_CAP];
    snprintf(split, sizeof split, "%s/%s", cfg->data_dir, cfg->train_split);
    rm_shard_index idx;
    if (rm_shard_index_read(split, &idx, err) != RM_OK)
        return RM_ERR;
    rd->dataset_hash = idx.index_hash;
    rd->encrypted_data = idx.encrypted;
    rm_shard_index_free(&idx);
    rd->encrypted_ckpt = cfg->key_file[0] != '\0';
    char cfg_path[RM_PATH_CAP + 64];
    snprintf(cfg_path, sizeof cfg_path, "%s/config.yaml", rd->path);
    if (access(cfg_path, F_OK) != 0) {
        char *text = NULL;
        size_t len = 0;
        FILE *mem = open_memstream(&text, &len);
        if (!mem)
            return rm_fail(err, "out of memory");
        rm_config_write(cfg, mem);
        fclose(mem);
        int rc = rm_write_file_atomic(cfg_path, text, len, err);
        free(text);
        if (rc != RM_OK)
            return RM_ERR;
    }
    if (!(rd->metrics = open_log(rd->path, "metrics.jsonl", err)) || !(rd->eval = open_log(rd->path, "eval.jsonl", err)) ||
        !(rd->events = open_log(rd->path, "events.jsonl", err))) {
        rm_run_dir_close(rd);
        return RM_ERR;
    }
    return RM_OK;
}

void rm_run_dir_close(rm_run_dir *rd)
{
    if (rd->metrics)
        fclose(rd->metrics);
    if (rd->eval)
        fclose(rd->eval);
    if (rd->events)
        fclose(rd->events);
    rd->metrics = rd->eval = rd->events = NULL;
    free(rd->pending_resume);
    rd->pending_resume = NULL;
}

/* Events that belong in the audit trail, and their names there. */
static const char *audit_name(const char *event)
{
    static const char *const map[][2] = {{"start", "run_start"},      {"resume", "resume"},
                                         {"checkpoint", "checkpoint_committed"},
                                         {"end", "run_end"},          {"failure", "failure"},
                                         {"hang", "hang"}};
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (strcmp(map[i][0], event) == 0)
            return map[i][1];
    return NULL;
}

static void audit(rm_run_dir *rd, const char *name, const char *fields)
{
    const char *what = audit_name(name);
    if (!what)
        return;
    /* The coordinator finds its checkpoint before the ranks agree to start:
     * the trail says run_start first, then where it resumed from. */
    if (strcmp(name, "resume") == 0 && !rd->started) {
        free(rd->pending_resume);
        rd->pending_resume = strdup(fields ? fields : "");
        return;
    }
    char *all = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&all, &len);
    if (!mem)
        return;
    if (strcmp(name, "start") == 0) {
        char cfg[17], data[17];
        rm_hash_hex(rd->config_hash, cfg);
        rm_hash_hex(rd->dataset_hash, data);
        fprintf(mem, "\"config_hash\":\"%s\",\"dataset_index_hash\":\"%s\",\"encrypted_data\":%s,"
                     "\"encrypted_checkpoints\":%s%s",
                cfg, data, rd->encrypted_data ? "true" : "false", rd->encrypted_ckpt ? "true" : "false",
                fields && fields[0] ? "," : "");
    }
    if (fields)
        fputs(fields, mem);
    fclose(mem);
    rm_error err;
    if (rm_audit_append(rd->path, what, all ? all : "", &err) != RM_OK)
        rm_error_log("audit trail: %s", err.msg);
    free(all);
    if (strcmp(name, "start") == 0) {
        rd->started = 1;
        if (rd->pending_resume && rm_audit_append(rd->path, "resume", rd->pending_resume, &err) != RM_OK)
            rm_error_log("audit trail: %s", err.msg);
        free(rd->pending_resume);
        rd->pending_resume = NULL;
    }
}

void rm_run_dir_event(rm_run_dir *rd, const char *name, const char *fields)
{
    audit(rd, name, fields);
    if (!rd->events)
        return;
    fprintf(rd->events, "{\"time\":%lld,\"event\":\"%s\"%s%s}\n", (long long)time(NULL), name,
            fields && fields[0] ? "," : "", fields ? fields : "");
    fflush(rd->events);
}

void rm_run_dir_default(const char *config_path, char *out, size_t cap)
{
    const char *base = strrchr(config_path, '/');
    base = base ? base + 1 : config_path;
    size_t stem = strcspn(base, ".");
    char when[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(when, sizeof when, "%Y%m%d-%H%M%S", &tm);
    char cwd[RM_PATH_CAP];
    if (!getcwd(cwd, sizeof cwd))
        snprintf(cwd, sizeof cwd, ".");
    snprintf(out, cap, "%s/runs/%.*s-%s", cwd, (int)(stem ? stem : 3), stem ? base : "job", when);
}
