#include "resume.h"

#include "fsutil.h"
#include "hash.h"
#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void log_skip(void *ctx, const char *dir, const char *reason)
{
    rm_warn("skipping checkpoint %s: %s", dir, reason);
}

int rm_resume_find(const rm_config *cfg, uint64_t dataset_hash, long n_params, rm_resume_point *rp, rm_error *err)
{
    memset(rp, 0, sizeof *rp);
    char root[RM_PATH_CAP];
    rm_config_ckpt_root(cfg, root, sizeof root);
    rm_error why = {.errnum = 0};
    if (rm_ckpt_find_latest(root, &rp->manifest, rp->dir, sizeof rp->dir, log_skip, NULL, &why) != RM_OK) {
        if (why.msg[0])
            return rm_fail(err, "%s", why.msg);
        return RM_OK; /* nothing to resume */
    }
    if (rm_ckpt_check_job(&rp->manifest, rp->dir, rm_config_training_hash(cfg), dataset_hash, n_params, err) !=
        RM_OK) {
        rm_ckpt_manifest_free(&rp->manifest);
        return RM_ERR;
    }
    rp->found = 1;
    return RM_OK;
}

void rm_resume_free(rm_resume_point *rp)
{
    if (rp->found)
        rm_ckpt_manifest_free(&rp->manifest);
    rp->found = 0;
}

int rm_resume_trim_log(const char *path, long step, rm_error *err)
{
    FILE *in = fopen(path, "r");
    if (!in)
        return errno == ENOENT ? RM_OK : rm_fail_errno(err, errno, "%s: cannot read", path);
    char *text = NULL, *line = NULL;
    size_t len = 0, cap = 0;
    FILE *out = open_memstream(&text, &len);
    if (!out) {
        fclose(in);
        return rm_fail(err, "out of memory");
    }
    while (getline(&line, &cap, in) > 0) {
        long s;
        const char *at = strstr(line, "\"step\":");
        if (at && sscanf(at, "\"step\":%ld", &s) == 1 && s > step)
            continue;
        if (strchr(line, '\n'))
            fputs(line, out); /* a torn last line (killed mid-write) is dropped */
    }
    free(line);
    fclose(in);
    fclose(out);
    int rc = rm_write_file_atomic(path, text, len, err);
    free(text);
    return rc;
}

int rm_resume_read_skips(const char *run_dir, long **steps, int *n, rm_error *err)
{
    *steps = NULL;
    *n = 0;
    char path[RM_PATH_CAP + 32];
    snprintf(path, sizeof path, "%s/skip_steps.txt", run_dir);
    FILE *f = fopen(path, "r");
    if (!f)
        return errno == ENOENT ? RM_OK : rm_fail_errno(err, errno, "%s: cannot read", path);
    long s;
    int cap = 0;
    while (fscanf(f, "%ld", &s) == 1) {
        if (*n == cap) {
            cap = cap ? 2 * cap : 8;
            long *grown = realloc(*steps, (size_t)cap * sizeof *grown);
            if (!grown) {
                fclose(f);
                return rm_fail(err, "out of memory");
            }
            *steps = grown;
        }
        (*steps)[(*n)++] = s;
    }
    fclose(f);
    return RM_OK;
}

int rm_resume_add_skip(const char *run_dir, long step, rm_error *err)
{
    char path[RM_PATH_CAP + 32];
    snprintf(path, sizeof path, "%s/skip_steps.txt", run_dir);
    FILE *f = rm_open_append(path, err);
    if (!f)
        return RM_ERR;
    fprintf(f, "%ld\n", step);
    int bad = fflush(f) != 0 || fsync(fileno(f)) != 0;
    fclose(f);
    return bad ? rm_fail(err, "%s: write failed", path) : RM_OK;
}
