#include "ckpt_fence.h"

#include "checkpoint.h"
#include "fsutil.h"
#include "timer.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Opens root/generation.lock and takes its write lock, waiting up to
 * RM_CKPT_FENCE_WAIT_S. Returns the descriptor (closing it releases the
 * lock), or -1 with err naming the file and, after the wait, the holder. */
static int fence_lock(const char *root, rm_error *err)
{
    char path[4096];
    if (snprintf(path, sizeof path, "%s/%s.lock", root, RM_CKPT_GENERATION_NAME) >= (int)sizeof path) {
        rm_fail(err, "%s: path too long", root);
        return -1;
    }
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        rm_fail_errno(err, errno, "%s: cannot open", path);
        return -1;
    }
    double deadline = rm_now_s() + RM_CKPT_FENCE_WAIT_S;
    for (;;) {
        struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
        if (fcntl(fd, F_SETLK, &fl) == 0)
            return fd;
        int e = errno;
        if (e != EACCES && e != EAGAIN && e != EINTR) {
            close(fd);
            rm_fail_errno(err, e, "%s: cannot lock", path);
            return -1;
        }
        if (rm_now_s() > deadline) {
            struct flock who = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
            long pid = fcntl(fd, F_GETLK, &who) == 0 && who.l_type != F_UNLCK ? (long)who.l_pid : -1;
            close(fd);
            rm_fail(err, "%s: held by another process (pid %ld, as this host sees it) for over %.0f s", path, pid,
                    RM_CKPT_FENCE_WAIT_S);
            return -1;
        }
        usleep(20000);
    }
}

int rm_ckpt_generation_read(const char *root, long *generation, rm_error *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", root, RM_CKPT_GENERATION_NAME);
    *generation = 0;
    size_t len;
    rm_error rerr = {.errnum = 0};
    char *text = rm_read_file(path, 64, "not a generation number (too long)", &len, &rerr);
    if (!text)
        return rerr.errnum == ENOENT ? RM_OK : rm_fail(err, "%s", rerr.msg);
    char *end;
    errno = 0;
    long g = strtol(text, &end, 10);
    int bad = end == text || (*end != '\n' && *end != '\0') || g < 0 || errno != 0;
    free(text);
    if (bad)
        return rm_fail(err, "%s: not a generation number; remove it only if no job uses this checkpoint directory",
                       path);
    *generation = g;
    return RM_OK;
}

int rm_ckpt_generation_advance(const char *root, long *generation, rm_error *err)
{
    int fd = fence_lock(root, err);
    if (fd < 0)
        return RM_ERR;
    long g;
    int rc = rm_ckpt_generation_read(root, &g, err);
    if (rc == RM_OK) {
        char path[4096], text[32];
        snprintf(path, sizeof path, "%s/%s", root, RM_CKPT_GENERATION_NAME);
        int len = snprintf(text, sizeof text, "%ld\n", g + 1);
        rc = rm_write_file_atomic(path, text, (size_t)len, err);
        if (rc == RM_OK)
            *generation = g + 1;
    }
    close(fd);
    return rc;
}

int rm_ckpt_fence_check(const char *root, long step, long generation, long *current, rm_error *err)
{
    if (rm_ckpt_generation_read(root, current, err) != RM_OK)
        return RM_ERR;
    if (*current == generation)
        return RM_OK;
    char name[32];
    rm_ckpt_dir_name(step, name, sizeof name);
    if (*current < generation)
        return rm_fail(err,
                       "%s not committed: this job is generation %ld of %s, but its generation file now says %ld "
                       "(removed or restored from a backup while the job ran?); nothing was changed",
                       name, generation, root, *current);
    rm_fail(err,
            "%s refused: this job is generation %ld of %s, but generation %ld has started there since (a newer job "
            "resumed this run); nothing was changed (latest and every checkpoint are as generation %ld left them)",
            name, generation, root, *current, *current);
    return RM_CKPT_FENCED;
}

int rm_ckpt_commit_fenced(const char *root, const char *tmp_dir, long step, long generation, long *current,
                          rm_error *err)
{
    int fd = fence_lock(root, err);
    if (fd < 0)
        return RM_ERR;
    int rc = rm_ckpt_fence_check(root, step, generation, current, err);
    if (rc == RM_OK)
        rc = rm_ckpt_commit(root, tmp_dir, step, err);
    close(fd);
    return rc;
}
