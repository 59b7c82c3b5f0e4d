#include "run_lock.h"

#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define LOCK_MAX_BYTES 4096
#define REFRESHED_DIGITS 14
#define HOST_CAP 256

/* What a lock file says about its holder. */
typedef struct holder {
    char host[HOST_CAP];
    char boot_id[64];
    long pid;
    unsigned long long pid_start;
    long long started, refreshed;
    double lease_s;
    char slurm_job_id[64];
    char token[RM_RUN_LOCK_TOKEN_HEX + 1];
    char started_text[32];
} holder;

/* The start time of process pid in clock ticks since boot (field 22 of
 * /proc/PID/stat), 0 when unknown: with the pid it names one process. */
static unsigned long long process_start(long pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')'); /* the command name may hold spaces and ')' */
    if (!p)
        return 0;
    p++;
    for (int field = 3; field < 22 && p; field++)
        p = strchr(p + 1, ' ');
    return p ? strtoull(p + 1, NULL, 10) : 0;
}

static void boot_id(char *out, size_t cap)
{
    snprintf(out, cap, "-");
    FILE *f = fopen("/proc/sys/kernel/random/boot_id", "r");
    if (f) {
        if (fscanf(f, "%63s", out) != 1)
            snprintf(out, cap, "-");
        fclose(f);
    }
}

static void this_host(char *out, size_t cap)
{
    if (gethostname(out, cap) != 0)
        snprintf(out, cap, "?");
    out[cap - 1] = '\0';
    for (char *p = out; *p; p++) /* one word per field */
        if (*p == ' ' || *p == '\n')
            *p = '_';
}

static double lease_from_env(void)
{
    const char *v = getenv("RINGMASTER_LOCK_LEASE_S");
    char *end;
    double s = v && *v ? strtod(v, &end) : 0;
    if (v && *v && (*end || !(s >= 0.5 && s <= 1e6))) {
        rm_warn("RINGMASTER_LOCK_LEASE_S=%s is not a number of seconds in [0.5, 1e6]; using %.0f", v,
                RM_RUN_LOCK_DEFAULT_LEASE_S);
        s = 0;
    }
    return s > 0 ? s : RM_RUN_LOCK_DEFAULT_LEASE_S;
}

/* The lock file's text for this process. Caller frees. */
static char *lock_text(const rm_run_lock *lk, size_t *len)
{
    char host[HOST_CAP], boot[64], when[32];
    this_host(host, sizeof host);
    boot_id(boot, sizeof boot);
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    const char *job = getenv("SLURM_JOB_ID");
    char *text = NULL;
    FILE *f = open_memstream(&text, len);
    if (!f)
        return NULL;
    fprintf(f,
            "ringmaster-lock 1\nhost %s\nboot_id %s\npid %ld\npid_start %llu\nstarted %lld %s\nrefreshed %0*lld\n"
            "lease_s %g\nslurm_job_id %s\ntoken %s\n",
            host, boot, (long)getpid(), process_start((long)getpid()), (long long)now, when, REFRESHED_DIGITS,
            (long long)now, lk->lease_s, job && *job && !strchr(job, ' ') ? job : "-", lk->token);
    fclose(f);
    return text;
}

/* Parses a lock file's text; RM_ERR when it is not a complete lock. */
static int parse_holder(const char *text, holder *h)
{
    memset(h, 0, sizeof *h);
    if (strncmp(text, "ringmaster-lock 1\n", 18) != 0)
        return RM_ERR;
    int have = 0; /* one bit per required field */
    for (const char *line = text; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
        char key[32], val[HOST_CAP];
        if (sscanf(line, "%31s %255s", key, val) != 2)
            continue;
        if (strcmp(key, "host") == 0) {
            have |= 1;
            snprintf(h->host, sizeof h->host, "%s", val);
        } else if (strcmp(key, "boot_id") == 0) {
            snprintf(h->boot_id, sizeof h->boot_id, "%s", val);
        } else if (strcmp(key, "pid") == 0) {
            have |= 2;
            h->pid = atol(val);
        } else if (strcmp(key, "pid_start") == 0) {
            h->pid_start = strtoull(val, NULL, 10);
        } else if (strcmp(key, "started") == 0) {
            have |= 4;
            h->started = atoll(val);
            if (sscanf(line, "%*s %*s %31s", h->started_text) != 1)
                h->started_text[0] = '\0';
        } else if (strcmp(key, "refreshed") == 0) {
            have |= 8;
            h->refreshed = atoll(val);
        } else if (strcmp(key, "lease_s") == 0) {
            have |= 16;
            h->lease_s = atof(val);
        } else if (strcmp(key, "slurm_job_id") == 0) {
            snprintf(h->slurm_job_id, sizeof h->slurm_job_id, "%s", val);
        } else if (strcmp(key, "token") == 0 && strlen(val) == RM_RUN_LOCK_TOKEN_HEX) {
            have |= 32;
            snprintf(h->token, sizeof h->token, "%s", val);
        }
    }
    return have == 63 ? RM_OK : RM_ERR;
}

/* Reads the lock at path. RM_ERR with *missing set when there is none. */
static int read_holder(const char *path, holder *h, int *missing, struct stat *st)
{
    *missing = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        *missing = errno == ENOENT;
        return RM_ERR;
    }
    char text[LOCK_MAX_BYTES + 1];
    ssize_t n = read(fd, text, LOCK_MAX_BYTES);
    if (st && fstat(fd, st) != 0)
        memset(st, 0, sizeof *st);
    close(fd);
    if (n <= 0)
        return RM_ERR;
    text[n] = '\0';
    return parse_holder(text, h);
}

/* Why the holder's lock may be taken over, into why; NULL while it holds. */
static const char *stale_reason(const holder *h, int break_lock, char *why, size_t cap)
{
    char host[HOST_CAP], boot[64];
    this_host(host, sizeof host);
    boot_id(boot, sizeof boot);
    const char *job = getenv("SLURM_JOB_ID");
    long long now = (long long)time(NULL);
    if (break_lock) {
        snprintf(why, cap, "--break-lock given");
        return why;
    }
    if (job && *job && strcmp(job, h->slurm_job_id) == 0) {
        snprintf(why, cap, "it belongs to this Slurm job (%s), requeued", job);
        return why;
    }
    if (strcmp(h->host, host) == 0 && strcmp(h->boot_id, boot) == 0) {
        int gone = kill((pid_t)h->pid, 0) != 0 && errno == ESRCH;
        if (!gone && h->pid_start && process_start(h->pid) != h->pid_start)
            gone = 1; /* the pid now names another process */
        if (gone) {
            snprintf(why, cap, "its holder, pid %ld on this host, is gone", h->pid);
            return why;
        }
    }
    if ((double)(now - h->refreshed) > h->lease_s) {
        snprintf(why, cap, "its lease expired %lld s ago (host %s, pid %ld, not renewed for %lld s, lease %g s)",
                 (long long)((double)(now - h->refreshed) - h->lease_s), h->host, h->pid, now - h->refreshed,
                 h->lease_s);
        return why;
    }
    return NULL;
}

static int write_new_file(const char *path, const char *text, size_t len, rm_error *err)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return rm_fail_errno(err, errno, "%s: cannot create", path);
    int rc = RM_OK;
    if (fchmod(fd, 0600) != 0 || write(fd, text, len) != (ssize_t)len || fsync(fd) != 0)
        rc = rm_fail_errno(err, errno ? errno : EIO, "%s: write failed", path);
    if (close(fd) != 0 && rc == RM_OK)
        rc = rm_fail_errno(err, errno, "%s: write failed", path);
    if (rc != RM_OK)
        unlink(path);
    return rc;
}

enum { REFRESH_OK, REFRESH_LOST, REFRESH_FAILED };

/* Rewrites `refreshed` in place, if the lock is still ours. */
static int refresh_once(rm_run_lock *lk, rm_error *err)
{
    int fd = open(lk->path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        rm_fail_errno(err, errno, "%s", lk->path);
        return errno == ENOENT ? REFRESH_LOST : REFRESH_FAILED;
    }
    char text[LOCK_MAX_BYTES + 1];
    ssize_t n = pread(fd, text, LOCK_MAX_BYTES, 0);
    int rc = REFRESH_FAILED;
    holder h;
    if (n <= 0) {
        rm_fail_errno(err, n < 0 ? errno : EIO, "%s: cannot read", lk->path);
    } else {
        text[n] = '\0';
        const char *at = strstr(text, "\nrefreshed ");
        if (parse_holder(text, &h) != RM_OK || strcmp(h.token, lk->token) != 0 || !at) {
            rm_fail(err, "%s: now held by host %s, pid %ld", lk->path, h.host[0] ? h.host : "?", h.pid);
            rc = REFRESH_LOST;
        } else {
            char digits[REFRESHED_DIGITS + 1];
            snprintf(digits, sizeof digits, "%0*lld", REFRESHED_DIGITS, (long long)time(NULL));
            off_t off = (off_t)(at - text) + 11;
            if (pwrite(fd, digits, REFRESHED_DIGITS, off) == REFRESHED_DIGITS && fdatasync(fd) == 0)
                rc = REFRESH_OK;
            else
                rm_fail_errno(err, errno ? errno : EIO, "%s: cannot renew the lease", lk->path);
        }
    }
    close(fd);
    return rc;
}

static void *refresher(void *arg)
{
    rm_run_lock *lk = arg;
    double period = lk->lease_s / 4;
    int warned = 0;
    pthread_mutex_lock(&lk->mu);
    while (!lk->stop) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        double t = (double)until.tv_sec + (double)until.tv_nsec * 1e-9 + period;
        until.tv_sec = (time_t)t;
        until.tv_nsec = (long)((t - (double)until.tv_sec) * 1e9);
        pthread_cond_timedwait(&lk->cv, &lk->mu, &until);
        if (lk->stop)
            break;
        pthread_mutex_unlock(&lk->mu);
        rm_error err;
        int rc = refresh_once(lk, &err);
        if (rc == REFRESH_LOST)
            rm_error_log("lost the lock: %s (--break-lock, or its lease expired); this job must stop", err.msg);
        else if (rc == REFRESH_FAILED && !warned++)
            rm_warn("%s (retrying every %.1f s; another job may take the lock over once the lease of %g s expires)",
                    err.msg, period, lk->lease_s);
        else if (rc == REFRESH_OK)
            warned = 0;
        pthread_mutex_lock(&lk->mu);
        if (rc == REFRESH_LOST) {
            lk->lost = 1;
            break;
        }
    }
    pthread_mutex_unlock(&lk->mu);
    return NULL;
}

/* "host n1, pid 42, started 2026-...Z (lease renewed 3 s ago, lease 60 s)" */
static void describe(const holder *h, char *out, size_t cap)
{
    long long now = (long long)time(NULL);
    snprintf(out, cap, "host %s, pid %ld, started %s (lease renewed %lld s ago, lease %g s%s%s)", h->host, h->pid,
             h->started_text[0] ? h->started_text : "?", now - h->refreshed, h->lease_s,
             strcmp(h->slurm_job_id, "-") && h->slurm_job_id[0] ? ", Slurm job " : "",
             strcmp(h->slurm_job_id, "-") ? h->slurm_job_id : "");
}

int rm_run_lock_acquire(rm_run_lock *lk, const char *dir, const char *what, int break_lock, rm_error *err)
{
    memset(lk, 0, sizeof *lk);
    pthread_mutex_init(&lk->mu, NULL);
    pthread_cond_init(&lk->cv, NULL);
    if (sodium_init() < 0)
        return rm_fail(err, "libsodium failed to initialize");
    lk->lease_s = lease_from_env();
    if (snprintf(lk->path, sizeof lk->path, "%s/%s", dir, RM_RUN_LOCK_NAME) >= (int)sizeof lk->path)
        return rm_fail(err, "%s: path too long", dir);
    unsigned char raw[RM_RUN_LOCK_TOKEN_HEX / 2];
    randombytes_buf(raw, sizeof raw);
    sodium_bin2hex(lk->token, sizeof lk->token, raw, sizeof raw);
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.%s.tmp", lk->path, lk->token);
    size_t len;
    char *text = lock_text(lk, &len);
    if (!text)
        return rm_fail(err, "out of memory");
    int rc = write_new_file(tmp, text, len, err);
    free(text);
    if (rc != RM_OK)
        return rm_fail(err, "cannot lock the %s: %s", what, err->msg);

    rc = RM_ERR;
    for (int attempt = 0; attempt < 50; attempt++) {
        errno = 0;
        int linked = link(tmp, lk->path) == 0;
        int link_errno = errno;
        struct stat st;
        /* over NFS the reply to a link that worked can be lost: the link
         * count says what happened */
        if (!linked && stat(tmp, &st) == 0 && st.st_nlink == 2)
            linked = 1;
        if (linked) {
            rc = RM_OK;
            break;
        }
        if (link_errno != EEXIST) {
            rm_fail_errno(err, link_errno, "cannot lock the %s: %s", what, lk->path);
            break;
        }
        holder h;
        int missing;
        struct stat lst = {0};
        if (read_holder(lk->path, &h, &missing, &lst) != RM_OK) {
            if (missing)
                continue; /* released meanwhile: try again */
            /* being written (it is complete once it has a name), or not a lock */
            if (attempt < 49 && (double)(time(NULL) - lst.st_mtime) < 2 * RM_RUN_LOCK_DEFAULT_LEASE_S) {
                nanosleep(&(struct timespec){0, 100000000L}, NULL);
                continue;
            }
            if (!break_lock) {
                rm_fail(err, "%s: is not a lock ringmaster can read; if no job uses the %s %s, run with "
                             "--break-lock",
                        lk->path, what, dir);
                break;
            }
            snprintf(h.host, sizeof h.host, "?");
        }
        char why[512], who[512];
        describe(&h, who, sizeof who);
        if (!stale_reason(&h, break_lock, why, sizeof why)) {
            rm_fail(err,
                    "the %s %s is in use by another job: %s. Wait for it to end; if it is gone for good "
                    "(its host died), its lease expires and the next run takes over, or run with --break-lock",
                    what, dir, who);
            break;
        }
        if (rename(tmp, lk->path) != 0) {
            rm_fail_errno(err, errno, "cannot take over the lock %s", lk->path);
            break;
        }
        /* two takers at once: the last rename wins, and the other finds out here */
        holder now;
        if (read_holder(lk->path, &now, &missing, NULL) != RM_OK || strcmp(now.token, lk->token) != 0) {
            describe(&now, who, sizeof who);
            rm_fail(err, "the %s %s was taken over by another job at the same moment: %s", what, dir, who);
            break;
        }
        rm_warn("took over the stale lock of the %s %s: %s (it was: %s)", what, dir, why, who);
        rc = RM_OK;
        break;
    }
    unlink(tmp); /* gone already after a rename */
    if (rc != RM_OK)
        return RM_ERR;
    lk->held = 1;
    if (pthread_create(&lk->thread, NULL, refresher, lk) != 0) {
        rm_run_lock_release(lk);
        return rm_fail(err, "cannot start the thread that renews the lock of %s", dir);
    }
    lk->refreshing = 1;
    return RM_OK;
}

int rm_run_lock_check_token(const char *dir, const char *token, rm_error *err)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, RM_RUN_LOCK_NAME);
    holder h;
    int missing;
    if (read_holder(path, &h, &missing, NULL) != RM_OK)
        return rm_fail(err, "%s: %s: the run directory is not locked by the `ringmaster run` that launched this job",
                       path, missing ? "missing" : "unreadable");
    if (strcmp(h.token, token) != 0) {
        char who[512];
        describe(&h, who, sizeof who);
        return rm_fail(err, "%s: held by another job (%s), not by the `ringmaster run` that launched this one", path,
                       who);
    }
    return RM_OK;
}

int rm_run_lock_lost(const rm_run_lock *lk)
{
    return lk->lost;
}

int rm_run_lock_check(const rm_run_lock *lk)
{
    if (!lk->held)
        return RM_OK;
    holder h;
    int missing;
    return !lk->lost && read_holder(lk->path, &h, &missing, NULL) == RM_OK && strcmp(h.token, lk->token) == 0
               ? RM_OK
               : RM_ERR;
}

void rm_run_lock_release(rm_run_lock *lk)
{
    if (lk->refreshing) {
        pthread_mutex_lock(&lk->mu);
        lk->stop = 1;
        pthread_cond_signal(&lk->cv);
        pthread_mutex_unlock(&lk->mu);
        pthread_join(lk->thread, NULL);
        lk->refreshing = 0;
    }
    if (lk->held) {
        holder h;
        int missing;
        if (read_holder(lk->path, &h, &missing, NULL) == RM_OK && strcmp(h.token, lk->token) == 0)
            unlink(lk->path);
        lk->held = 0;
    }
}
