#include "run_dir.h"

#include "fsutil.h"

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
    FILE *f = fopen(path, "a");
    if (!f)
        rm_fail_errno(err, errno, "%s: cannot open for writing", path);
    return f;
}

int rm_run_dir_open(rm_run_dir *rd, const rm_config *cfg, rm_error *err)
{
    memset(rd, 0, sizeof *rd);
    snprintf(rd->path, sizeof rd->path, "%s", cfg->run_dir);
    if (rm_mkdirs(rd->path, 0755, err) != RM_OK)
        return RM_ERR;
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
}

void rm_run_dir_event(rm_run_dir *rd, const char *name, const char *fields)
{
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
