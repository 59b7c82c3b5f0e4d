#include "run_dir.h"

#include "audit.h"
#include "fsutil.h"
#include "hash.h"
#include "log.h"
#include "shard.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char *const log_names[RM_RUN_N_LOGS] = {"metrics.jsonl", "eval.jsonl", "events.jsonl"};

/* Files whose presence says a directory is a ringmaster run's (config.yaml
 * alone is too common a name; the supervisor writes it with command.txt). */
static int run_marker(const char *name)
{
    static const char *const markers[] = {"audit.jsonl", "events.jsonl", "ringmaster.lock", "doctor.json",
                                          "summary.json", "metrics.jsonl"};
    for (size_t i = 0; i < sizeof markers / sizeof markers[0]; i++)
        if (strcmp(name, markers[i]) == 0)
            return 1;
    return 0;
}

int rm_run_dir_inspect(const char *path, int *state, rm_error *err)
{
    struct stat st;
    *state = RM_RUN_DIR_ABSENT;
    if (lstat(path, &st) != 0) {
        if (errno == ENOENT)
            return RM_OK;
        return rm_fail_errno(err, errno, "%s: cannot look at the run directory", path);
    }
    if (S_ISLNK(st.st_mode))
        return rm_fail(err, "%s: is a symbolic link; a run directory must be a real directory", path);
    if (!S_ISDIR(st.st_mode))
        return rm_fail(err, "%s: exists and is not a directory", path);
    if (st.st_uid != geteuid())
        return rm_fail(err, "%s: belongs to uid %u, not to this user (uid %u): refusing to use it", path,
                       (unsigned)st.st_uid, (unsigned)geteuid());
    DIR *d = opendir(path);
    if (!d)
        return rm_fail_errno(err, errno, "%s: cannot list the run directory", path);
    int entries = 0, markers = 0, config = 0, command = 0;
    char seen[512] = "";
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        entries++;
        markers += run_marker(e->d_name);
        config |= strcmp(e->d_name, "config.yaml") == 0;
        command |= strcmp(e->d_name, "command.txt") == 0;
        if (entries <= 4)
            snprintf(seen + strlen(seen), sizeof seen - strlen(seen), "%s%s", entries > 1 ? ", " : "",
                     entries == 4 ? "..." : e->d_name);
    }
    closedir(d);
    if (entries == 0)
        *state = RM_RUN_DIR_EMPTY;
    else if (markers || (config && command))
        *state = RM_RUN_DIR_RUN;
    else {
        *state = RM_RUN_DIR_FOREIGN;
        rm_fail(err,
                "%s: exists, is not empty and is not a ringmaster run directory (it holds %s): refusing to write "
                "into it; give --run-dir a new directory (ringmaster creates it)",
                path, seen);
    }
    return RM_OK;
}

int rm_run_dir_open(rm_run_dir *rd, const rm_config *cfg, rm_error *err)
{
    memset(rd, 0, sizeof *rd);
    snprintf(rd->path, sizeof rd->path, "%s", cfg->run_dir);
    int state;
    if (rm_run_dir_inspect(rd->path, &state, err) != RM_OK)
        return RM_ERR;
    if (state == RM_RUN_DIR_FOREIGN)
        return RM_ERR; /* err says what it holds */
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
    for (int i = 0; i < RM_RUN_N_LOGS; i++)
        rd->fds[i] = -1;
    rd->open = 1;
    for (int i = 0; i < RM_RUN_N_LOGS; i++) {
        char path[RM_PATH_CAP + 64];
        snprintf(path, sizeof path, "%s/%s", rd->path, log_names[i]);
        rd->fds[i] = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (rd->fds[i] < 0 || fchmod(rd->fds[i], 0600) != 0) {
            rm_fail_errno(err, errno, "%s: cannot open for appending", path);
            rm_run_dir_close(rd);
            return RM_ERR;
        }
    }
    return RM_OK;
}

void rm_run_dir_close(rm_run_dir *rd)
{
    if (rd->open)
        for (int i = 0; i < RM_RUN_N_LOGS; i++)
            if (rd->fds[i] >= 0) {
                close(rd->fds[i]);
                rd->fds[i] = -1;
            }
    rd->open = 0;
    free(rd->pending_resume);
    rd->pending_resume = NULL;
}

/* Keeps the first failure: it is what the job stops on. */
static int record_failure(rm_run_dir *rd, const rm_error *err)
{
    if (!rd->write_failed) {
        rd->write_failed = 1;
        rd->write_error = *err;
    }
    return RM_ERR;
}

int rm_run_dir_append(rm_run_dir *rd, enum rm_run_log which, const char *text, size_t len)
{
    if (!rd->open || rd->fds[which] < 0 || !text) {
        rm_error err;
        rm_fail(&err, "%s/%s: %s", rd->path, log_names[which], text ? "not open" : "out of memory: a line was lost");
        return record_failure(rd, &err);
    }
    int fd = rd->fds[which];
    /* the lock makes this process the only writer: the size now is where
     * the line starts */
    off_t start = lseek(fd, 0, SEEK_END);
    size_t done = 0;
    while (done < len) {
        ssize_t n = write(fd, text + done, len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            rm_error err;
            rm_fail_errno(&err, n < 0 ? errno : ENOSPC, "%s/%s: write failed", rd->path, log_names[which]);
            if (done > 0 && start >= 0 && ftruncate(fd, start) != 0)
                snprintf(err.msg + strlen(err.msg), sizeof err.msg - strlen(err.msg),
                         " (and its last line could not be cut back: %s)", strerror(errno));
            return record_failure(rd, &err);
        }
        done += (size_t)n;
    }
    return RM_OK;
}

int rm_run_dir_sync(rm_run_dir *rd)
{
    for (int i = 0; rd->open && i < RM_RUN_N_LOGS; i++)
        if (rd->fds[i] >= 0 && fdatasync(rd->fds[i]) != 0) {
            rm_error err;
            rm_fail_errno(&err, errno, "%s/%s: write failed (at fdatasync)", rd->path, log_names[i]);
            return record_failure(rd, &err);
        }
    return RM_OK;
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

static int audit(rm_run_dir *rd, const char *name, const char *fields)
{
    const char *what = audit_name(name);
    if (!what)
        return RM_OK;
    /* The coordinator finds its checkpoint before the ranks agree to start:
     * the trail says run_start first, then where it resumed from. */
    if (strcmp(name, "resume") == 0 && !rd->started) {
        free(rd->pending_resume);
        rd->pending_resume = strdup(fields ? fields : "");
        return RM_OK;
    }
    char *all = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&all, &len);
    if (!mem)
        return RM_ERR;
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
    int rc = rm_audit_append(rd->path, what, all ? all : "", &err);
    if (rc != RM_OK)
        record_failure(rd, &err);
    free(all);
    if (strcmp(name, "start") == 0) {
        rd->started = 1;
        if (rd->pending_resume && rm_audit_append(rd->path, "resume", rd->pending_resume, &err) != RM_OK)
            rc = record_failure(rd, &err);
        free(rd->pending_resume);
        rd->pending_resume = NULL;
    }
    return rc;
}

int rm_run_dir_event(rm_run_dir *rd, const char *name, const char *fields)
{
    /* closed: the run directory is another job's now (its lock was taken
     * over, or a newer generation fenced this one), audit trail included */
    if (!rd->open)
        return RM_ERR;
    int rc = audit(rd, name, fields);
    char line[8192];
    int n = snprintf(line, sizeof line, "{\"time\":%lld,\"event\":\"%s\"%s%s}\n", (long long)time(NULL), name,
                     fields && fields[0] ? "," : "", fields ? fields : "");
    if (n < 0 || (size_t)n >= sizeof line) { /* cut at a field would not be JSON: say so instead */
        n = snprintf(line, sizeof line, "{\"time\":%lld,\"event\":\"%s\",\"truncated\":true}\n",
                     (long long)time(NULL), name);
    }
    if (rm_run_dir_append(rd, RM_RUN_EVENTS, line, (size_t)n) != RM_OK)
        rc = RM_ERR;
    return rc;
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
