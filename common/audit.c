#include "audit.h"

#include "fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define GENESIS "ringmaster audit genesis v1"
#define PREV_KEY ",\"prev\":\""
#define HASH_HEX 64
#define AUDIT_MAX_BYTES (256u << 20)

static void line_hash(const char *line, size_t len, char out[HASH_HEX + 1])
{
    uint8_t d[32];
    crypto_generichash(d, sizeof d, (const unsigned char *)line, len, NULL, 0);
    sodium_bin2hex(out, HASH_HEX + 1, d, sizeof d);
}

static void genesis_hash(char out[HASH_HEX + 1])
{
    line_hash(GENESIS, sizeof GENESIS - 1, out);
}

/* JSON string body (no quotes) of s into out, escaping what JSON needs. */
static void json_escape(const char *s, char *out, size_t cap)
{
    size_t o = 0;
    for (; *s && o + 7 < cap; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') {
            out[o++] = '\\';
            out[o++] = (char)ch;
        } else if (ch < 0x20) {
            o += (size_t)snprintf(out + o, cap - o, "\\u%04x", ch);
        } else {
            out[o++] = (char)ch;
        }
    }
    out[o] = '\0';
}

/* Parses the leading {"seq":N of a line; -1 if it is not there. */
static long line_seq(const char *line, size_t len)
{
    static const char key[] = "{\"seq\":";
    if (len < sizeof key || memcmp(line, key, sizeof key - 1) != 0)
        return -1;
    long v = 0;
    size_t i = sizeof key - 1;
    if (i >= len || line[i] < '0' || line[i] > '9')
        return -1;
    for (; i < len && line[i] >= '0' && line[i] <= '9' && v < (1L << 50); i++)
        v = v * 10 + (line[i] - '0');
    return i < len && line[i] == ',' ? v : -1;
}

/* The "prev" hash at the end of a line into out; RM_ERR if malformed. */
static int line_prev(const char *line, size_t len, char out[HASH_HEX + 1])
{
    size_t tail = sizeof PREV_KEY - 1 + HASH_HEX + 2; /* ,"prev":"<hex>"} */
    if (len < tail || memcmp(line + len - tail, PREV_KEY, sizeof PREV_KEY - 1) != 0 || line[len - 2] != '"' ||
        line[len - 1] != '}')
        return RM_ERR;
    memcpy(out, line + len - HASH_HEX - 2, HASH_HEX);
    out[HASH_HEX] = '\0';
    return RM_OK;
}

int rm_audit_append(const char *run_dir, const char *event, const char *fields, rm_error *err)
{
    if (sodium_init() < 0)
        return rm_fail(err, "libsodium failed to initialize");
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", run_dir, RM_AUDIT_NAME);
    int fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return rm_fail_errno(err, errno, "%s: cannot open the audit trail", path);
    int rc = RM_ERR;
    char *tail = NULL, *line = NULL;
    if (flock(fd, LOCK_EX) != 0) {
        rm_fail_errno(err, errno, "%s: cannot lock", path);
        goto out;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        rm_fail_errno(err, errno, "%s: cannot stat", path);
        goto out;
    }
    char prev[HASH_HEX + 1];
    long seq = 1;
    genesis_hash(prev);
    if (st.st_size > 0) {
        size_t want = st.st_size < 2 * RM_AUDIT_MAX_LINE ? (size_t)st.st_size : 2 * RM_AUDIT_MAX_LINE;
        tail = malloc(want);
        if (!tail || pread(fd, tail, want, st.st_size - (off_t)want) != (ssize_t)want) {
            rm_fail(err, "%s: cannot read its last line", path);
            goto out;
        }
        if (tail[want - 1] != '\n') {
            rm_fail(err, "%s: the last line is incomplete (a torn write): run `ringmaster audit verify`", path);
            goto out;
        }
        size_t end = want - 1, start = end;
        while (start > 0 && tail[start - 1] != '\n')
            start--;
        if (start == 0 && want == 2 * RM_AUDIT_MAX_LINE) {
            rm_fail(err, "%s: the last line is longer than %d bytes", path, RM_AUDIT_MAX_LINE);
            goto out;
        }
        long last = line_seq(tail + start, end - start);
        if (last < 1) {
            rm_fail(err, "%s: the last line is not an audit record: run `ringmaster audit verify`", path);
            goto out;
        }
        seq = last + 1;
        line_hash(tail + start, end - start, prev);
    }

    char user[256] = "?", user_json[1600], host[256] = "?", host_json[1600], event_json[512], when[32];
    struct passwd pw, *found = NULL;
    char pwbuf[4096];
    if (getpwuid_r(geteuid(), &pw, pwbuf, sizeof pwbuf, &found) == 0 && found)
        snprintf(user, sizeof user, "%s", pw.pw_name);
    if (gethostname(host, sizeof host) != 0)
        snprintf(host, sizeof host, "?");
    host[sizeof host - 1] = '\0';
    json_escape(user, user_json, sizeof user_json);
    json_escape(host, host_json, sizeof host_json);
    json_escape(event, event_json, sizeof event_json);
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    line = malloc(RM_AUDIT_MAX_LINE + 2);
    if (!line) {
        rm_fail(err, "out of memory");
        goto out;
    }
    int n = snprintf(line, RM_AUDIT_MAX_LINE + 1,
                     "{\"seq\":%ld,\"time\":\"%s\",\"unix\":%lld,\"uid\":%u,\"user\":\"%s\",\"host\":\"%s\",\"pid\":%d,"
                     "\"event\":\"%s\"%s%s" PREV_KEY "%s\"}\n",
                     seq, when, (long long)now, (unsigned)geteuid(), user_json, host_json, (int)getpid(), event_json,
                     fields && fields[0] ? "," : "", fields ? fields : "", prev);
    if (n < 0 || n > RM_AUDIT_MAX_LINE || memchr(line, '\n', (size_t)n - 1)) {
        rm_fail(err, "%s: audit record for '%s' is too long or spans lines", path, event);
        goto out;
    }
    /* one write: a line is all there or (after a crash) visibly torn; a
     * short write (disk full) is cut back, never left half there */
    ssize_t w = write(fd, line, (size_t)n);
    if (w != n) {
        rm_fail_errno(err, w < 0 ? errno : ENOSPC, "%s: write failed", path);
        if (w > 0 && ftruncate(fd, st.st_size) != 0)
            snprintf(err->msg + strlen(err->msg), sizeof err->msg - strlen(err->msg),
                     " (its last line could not be cut back)");
        goto out;
    }
    if (fsync(fd) != 0) {
        rm_fail_errno(err, errno, "%s: fsync failed", path);
        goto out;
    }
    rc = RM_OK;
out:
    free(tail);
    free(line);
    close(fd); /* releases the lock */
    return rc;
}

int rm_audit_verify(const char *run_dir, long *lines, char head[65], long *bad_line, rm_error *why)
{
    *lines = 0;
    *bad_line = 0;
    head[0] = '\0';
    if (sodium_init() < 0)
        return rm_fail(why, "libsodium failed to initialize");
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", run_dir, RM_AUDIT_NAME);
    size_t len;
    char *text = rm_read_file(path, AUDIT_MAX_BYTES, "audit trail is implausibly large", &len, why);
    if (!text)
        return RM_ERR;
    char expect[HASH_HEX + 1], got[HASH_HEX + 1];
    genesis_hash(expect);
    long no = 0, want_seq = 1;
    int rc = RM_OK;
    size_t at = 0;
    while (at < len) {
        no++;
        char *nl = memchr(text + at, '\n', len - at);
        if (!nl) {
            rc = rm_fail(why, "%s:%ld: the line is incomplete (a torn or truncated write)", path, no);
            break;
        }
        const char *line = text + at;
        size_t n = (size_t)(nl - line);
        long seq = line_seq(line, n);
        if (seq < 0 || line_prev(line, n, got) != RM_OK || memchr(line, '\0', n)) {
            rc = rm_fail(why, "%s:%ld: not an audit record (edited, or not written by ringmaster)", path, no);
            break;
        }
        if (seq > want_seq) {
            rc = rm_fail(why, "%s:%ld: seq %ld follows seq %ld: %ld line%s deleted before this one", path, no, seq,
                         want_seq - 1, seq - want_seq, seq - want_seq == 1 ? " was" : "s were");
            break;
        }
        if (seq < want_seq) {
            rc = rm_fail(why, "%s:%ld: seq %ld repeats or goes back (expected %ld): lines were duplicated or edited",
                         path, no, seq, want_seq);
            break;
        }
        if (sodium_memcmp(got, expect, HASH_HEX) != 0) {
            if (no == 1)
                rc = rm_fail(why, "%s:1: does not chain to the genesis hash: the line was edited (or earlier lines "
                                  "deleted and the rest renumbered)",
                             path);
            else
                rc = rm_fail(why, "%s:%ld: its prev hash does not match line %ld: line %ld was edited", path, no,
                             no - 1, no - 1);
            /* the edited line is the one before; report it */
            if (no > 1)
                no--;
            break;
        }
        line_hash(line, n, expect);
        want_seq++;
        at += n + 1;
    }
    free(text);
    if (rc != RM_OK) {
        *bad_line = no;
        return RM_ERR;
    }
    *lines = no;
    memcpy(head, expect, HASH_HEX + 1);
    return RM_OK;
}
