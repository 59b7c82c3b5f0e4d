#include "fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int rm_mkdirs(const char *dir, unsigned mode, rm_error *err)
{
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", dir) >= (int)sizeof buf)
        return rm_fail(err, "%s: path too long", dir);
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            if (mkdir(buf, mode) != 0 && errno != EEXIST)
                return rm_fail_errno(err, errno, "%s: cannot create directory", buf);
            *p = c;
            if (c == '\0')
                break;
        }
    }
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return rm_fail(err, "%s: exists and is not a directory", dir);
    return RM_OK;
}

int rm_write_file_atomic(const char *path, const void *data, size_t len, rm_error *err)
{
    return rm_write_parts_atomic(path, &data, &len, 1, err);
}

int rm_write_parts_atomic(const char *path, const void *const *parts, const size_t *lens, int n_parts, rm_error *err)
{
    return rm_write_parts_atomic_mode(path, parts, lens, n_parts, 0600, err);
}

int rm_write_parts_atomic_mode(const char *path, const void *const *parts, const size_t *lens, int n_parts,
                               unsigned mode, rm_error *err)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        return rm_fail(err, "%s: path too long", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
    if (fd < 0)
        return rm_fail_errno(err, errno, "%s: cannot create", tmp);
    /* the umask only narrows the mode; a stale tmp file keeps its old one */
    if (fchmod(fd, mode) != 0) {
        int e = errno;
        close(fd);
        unlink(tmp);
        return rm_fail_errno(err, e, "%s: cannot set mode %04o", tmp, mode);
    }
    for (int part = 0; part < n_parts; part++) {
    const char *p = parts[part];
    size_t left = lens[part];
    while (left > 0) {
        ssize_t n = write(fd, p, left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int e = errno;
            close(fd);
            unlink(tmp);
            return rm_fail_errno(err, e, "%s: write failed", tmp);
        }
        p += n;
        left -= (size_t)n;
    }
    }
    if (fsync(fd) != 0) {
        int e = errno;
        close(fd);
        unlink(tmp);
        return rm_fail_errno(err, e, "%s: fsync failed", tmp);
    }
    close(fd);
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return rm_fail_errno(err, e, "%s: cannot rename into place", path);
    }
    char dirbuf[4096];
    snprintf(dirbuf, sizeof dirbuf, "%s", path);
    int dfd = open(dirname(dirbuf), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return RM_OK;
}

char *rm_read_file(const char *path, size_t max, const char *too_large, size_t *len, rm_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        rm_fail_errno(err, errno, "%s: cannot open", path);
        return NULL;
    }
    /* sized by the file, not by the limit: reading a small index must not
     * allocate the largest one allowed; grows if the file grows meanwhile */
    struct stat st;
    size_t cap = fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode) && (size_t)st.st_size < max ? (size_t)st.st_size
                                                                                                : max;
    char *buf = malloc(cap + 2);
    *len = 0;
    int bad = 0;
    while (buf && !bad) {
        *len += fread(buf + *len, 1, cap + 1 - *len, f);
        bad = ferror(f);
        if (bad || *len <= cap || cap >= max)
            break;
        /* the file outgrew its size: read on, up to max + 1 bytes */
        size_t grown = cap * 2 + 4096 < max ? cap * 2 + 4096 : max;
        char *more = realloc(buf, grown + 2);
        if (!more) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = more;
        cap = grown;
    }
    fclose(f);
    if (!buf) {
        rm_fail(err, "%s: out of memory", path);
        return NULL;
    }
    if (bad || *len > max) {
        free(buf);
        rm_fail(err, "%s: %s", path, bad ? "read error" : too_large);
        return NULL;
    }
    buf[*len] = '\0';
    return buf;
}

static FILE *open_private(const char *path, int flags, const char *mode, rm_error *err)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW | flags, 0600);
    if (fd < 0) {
        rm_fail_errno(err, errno, "%s: cannot open for writing", path);
        return NULL;
    }
    /* an older file keeps its mode through open(): tighten it */
    if (fchmod(fd, 0600) != 0) {
        rm_fail_errno(err, errno, "%s: cannot make it private (0600)", path);
        close(fd);
        return NULL;
    }
    FILE *f = fdopen(fd, mode);
    if (!f) {
        rm_fail_errno(err, errno, "%s: cannot open for writing", path);
        close(fd);
    }
    return f;
}

FILE *rm_open_append(const char *path, rm_error *err)
{
    return open_private(path, O_APPEND, "a", err);
}

FILE *rm_open_write(const char *path, rm_error *err)
{
    return open_private(path, O_TRUNC, "w", err);
}

int rm_private_dir(const char *dir, rm_error *err)
{
    struct stat st;
    if (lstat(dir, &st) == 0) {
        if (S_ISLNK(st.st_mode))
            return rm_fail(err, "%s: is a symbolic link; a run directory must be a real directory", dir);
        if (!S_ISDIR(st.st_mode))
            return rm_fail(err, "%s: exists and is not a directory", dir);
        if (st.st_uid != geteuid())
            return rm_fail(err, "%s: belongs to uid %u, not to this user (uid %u): refusing to use it", dir,
                           (unsigned)st.st_uid, (unsigned)geteuid());
        if ((st.st_mode & 07777) != 0700 && chmod(dir, 0700) != 0)
            return rm_fail_errno(err, errno, "%s: cannot make it private (0700)", dir);
        return RM_OK;
    }
    if (rm_mkdirs(dir, 0700, err) != RM_OK)
        return RM_ERR;
    if (chmod(dir, 0700) != 0)
        return rm_fail_errno(err, errno, "%s: cannot make it private (0700)", dir);
    return RM_OK;
}
