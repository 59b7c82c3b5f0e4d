#include "audit.h"

#include "crypto.h"
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
#define PREV_MAC_KEY ",\"prev_mac\":\""
#define MAC_LABEL "ringmaster audit chain v1"
#define HASH_HEX 64
#define AUDIT_MAX_BYTES (256u << 20)

/* BLAKE2b-256 of a line, keyed with mac_key when it is not NULL. */
static void line_hash(const char *line, size_t len, const uint8_t *mac_key, char out[HASH_HEX + 1])
{
    uint8_t d[32];
    crypto_generichash(d, sizeof d, (const unsigned char *)line, len, mac_key, mac_key ? RM_KEY_BYTES : 0);
    sodium_bin2hex(out, HASH_HEX + 1, d, sizeof d);
}

static void genesis_hash(const uint8_t *mac_key, char out[HASH_HEX + 1])
{
    line_hash(GENESIS, sizeof GENESIS - 1, mac_key, out);
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

/* The "prev" hash (or keyed "prev_mac") at the end of a line into out, and
 * *keyed saying which; RM_ERR if malformed. */
static int line_prev(const char *line, size_t len, char out[HASH_HEX + 1], int *keyed)
{
    size_t tail = sizeof PREV_KEY - 1 + HASH_HEX + 2; /* ,"prev":"<hex>"} */
    size_t tail_mac = sizeof PREV_MAC_KEY - 1 + HASH_HEX + 2;
    if (len < tail || line[len - 2] != '"' || line[len - 1] != '}')
        return RM_ERR;
    if (memcmp(line + len - tail, PREV_KEY, sizeof PREV_KEY - 1) == 0)
        *keyed = 0;
    else if (len >= tail_mac && memcmp(line + len - tail_mac, PREV_MAC_KEY, sizeof PREV_MAC_KEY - 1) == 0)
        *keyed = 1;
    else
        return RM_ERR;
    memcpy(out, line + len - HASH_HEX - 2, HASH_HEX);
    out[HASH_HEX] = '\0';
    for (int i = 0; i < HASH_HEX; i++)
        if (!((out[i] >= '0' && out[i] <= '9') || (out[i] >= 'a' && out[i] <= 'f')))
            return RM_ERR;
    return RM_OK;
}

/* The chain's MAC key, derived from the process's key; NULL without one. */
static const uint8_t *mac_key_of(const rm_secret_key *key, uint8_t buf[RM_KEY_BYTES])
{
    if (!key)
        return NULL;
    rm_key_derive(key, MAC_LABEL, buf);
    return buf;
}

/* Reads the last line of the open audit file: its seq (0 when the file is
 * empty) and, into last_line (malloc'd, caller frees; NULL when empty),
 * the line itself without its newline. */
static int read_last_line(int fd, const char *path, long *seq, char **last_line, size_t *last_len, rm_error *err)
{
    *seq = 0;
    *last_line = NULL;
    *last_len = 0;
    struct stat st;
    if (fstat(fd, &st) != 0)
        return rm_fail_errno(err, errno, "%s: cannot stat", path);
    if (st.st_size == 0)
        return RM_OK;
    size_t want = st.st_size < 2 * RM_AUDIT_MAX_LINE ? (size_t)st.st_size : 2 * RM_AUDIT_MAX_LINE;
    char *tail = malloc(want);
    if (!tail || pread(fd, tail, want, st.st_size - (off_t)want) != (ssize_t)want) {
        free(tail);
        return rm_fail(err, "%s: cannot read its last line", path);
    }
    int rc = RM_ERR;
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
    *seq = last;
    *last_len = end - start;
    memmove(tail, tail + start, *last_len);
    *last_line = tail;
    tail = NULL;
    rc = RM_OK;
out:
    free(tail);
    return rc;
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
    char *last = NULL, *line = NULL;
    size_t last_len;
    long seq;
    uint8_t key_buf[RM_KEY_BYTES];
    const uint8_t *mac_key = mac_key_of(rm_security_key(), key_buf);
    if (flock(fd, LOCK_EX) != 0) {
        rm_fail_errno(err, errno, "%s: cannot lock", path);
        goto out;
    }
    if (read_last_line(fd, path, &seq, &last, &last_len, err) != RM_OK)
        goto out;
    char prev[HASH_HEX + 1];
    if (last)
        line_hash(last, last_len, mac_key, prev);
    else
        genesis_hash(mac_key, prev);
    seq++;

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
                     "\"event\":\"%s\"%s%s%s%s\"}\n",
                     seq, when, (long long)now, (unsigned)geteuid(), user_json, host_json, (int)getpid(), event_json,
                     fields && fields[0] ? "," : "", fields ? fields : "", mac_key ? PREV_MAC_KEY : PREV_KEY, prev);
    if (n < 0 || n > RM_AUDIT_MAX_LINE || memchr(line, '\n', (size_t)n - 1)) {
        rm_fail(err, "%s: audit record for '%s' is too long or spans lines", path, event);
        goto out;
    }
    /* one write: a line is all there or (after a crash) visibly torn; a
     * short write (disk full) is cut back, never left half there */
    struct stat st;
    off_t start = fstat(fd, &st) == 0 ? st.st_size : -1;
    ssize_t w = write(fd, line, (size_t)n);
    if (w != n) {
        rm_fail_errno(err, w < 0 ? errno : ENOSPC, "%s: write failed", path);
        if (w > 0 && start >= 0 && ftruncate(fd, start) != 0)
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
    sodium_memzero(key_buf, sizeof key_buf);
    free(last);
    free(line);
    close(fd); /* releases the lock */
    return rc;
}

int rm_audit_head(const char *run_dir, long *seq, char head[65], rm_error *err)
{
    *seq = 0;
    head[0] = '\0';
    if (sodium_init() < 0)
        return rm_fail(err, "libsodium failed to initialize");
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", run_dir, RM_AUDIT_NAME);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return errno == ENOENT ? RM_OK : rm_fail_errno(err, errno, "%s: cannot open the audit trail", path);
    char *last;
    size_t len;
    int rc = flock(fd, LOCK_SH) == 0 ? read_last_line(fd, path, seq, &last, &len, err)
                                      : rm_fail_errno(err, errno, "%s: cannot lock", path);
    if (rc == RM_OK && last)
        line_hash(last, len, NULL, head);
    if (rc == RM_OK)
        free(last);
    close(fd);
    return rc;
}

int rm_audit_verify(const char *run_dir, const rm_secret_key *key, const rm_audit_anchor *anchors, int n_anchors,
                    long *lines, char head[65], long *bad_line, rm_error *why)
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
    long n_lines = 0;
    for (size_t i = 0; i < len; i++)
        n_lines += text[i] == '\n';
    /* every line's plain hash, for the anchors */
    char(*hashes)[HASH_HEX + 1] = malloc((size_t)(n_lines + 1) * sizeof *hashes);
    uint8_t key_buf[RM_KEY_BYTES];
    const uint8_t *mac_key = mac_key_of(key, key_buf);
    if (!hashes) {
        free(text);
        return rm_fail(why, "out of memory");
    }
    char expect[HASH_HEX + 1], got[HASH_HEX + 1];
    const char *prev_line = NULL;
    size_t prev_len = 0;
    long no = 0, want_seq = 1;
    int rc = RM_OK, keyed_seen = 0;
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
        int keyed;
        if (seq < 0 || line_prev(line, n, got, &keyed) != RM_OK || memchr(line, '\0', n)) {
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
        if (keyed && !mac_key) {
            rc = rm_fail(why, "%s:%ld: the chain is keyed (written with security.key_file) and no key was given: "
                              "it cannot be checked without the run's key",
                         path, no);
            break;
        }
        if (!keyed && keyed_seen) {
            rc = rm_fail(why, "%s:%ld: the chain was keyed up to here and this line is not: rewritten without the "
                              "key",
                         path, no);
            break;
        }
        keyed_seen |= keyed;
        const uint8_t *k = keyed ? mac_key : NULL;
        if (prev_line)
            line_hash(prev_line, prev_len, k, expect);
        else
            genesis_hash(k, expect);
        if (sodium_memcmp(got, expect, HASH_HEX) != 0) {
            if (no == 1)
                rc = rm_fail(why, "%s:1: does not chain to the genesis %s: the line was edited (or earlier lines "
                                  "deleted and the rest renumbered)%s",
                             path, keyed ? "MAC" : "hash", keyed ? ", or the key is not the run's" : "");
            else
                rc = rm_fail(why, "%s:%ld: its prev %s does not match line %ld: line %ld was edited%s", path, no,
                             keyed ? "MAC" : "hash", no - 1, no - 1, keyed ? " (or the key is not the run's)" : "");
            /* the edited line is the one before; report it */
            if (no > 1)
                no--;
            break;
        }
        line_hash(line, n, NULL, hashes[no - 1]);
        prev_line = line;
        prev_len = n;
        want_seq++;
        at += n + 1;
    }
    /* the end of the chain: every anchor recorded elsewhere is on it */
    for (int i = 0; rc == RM_OK && i < n_anchors; i++) {
        const rm_audit_anchor *a = &anchors[i];
        if (a->seq > no) {
            rc = rm_fail(why, "%s: %s recorded line %ld of the trail, which ends at line %ld: its last %ld line%s "
                              "removed",
                         path, a->where, a->seq, no, a->seq - no, a->seq - no == 1 ? " was" : "s were");
            no = no + 1;
        } else if (a->seq >= 1 && strcmp(hashes[a->seq - 1], a->head) != 0) {
            rc = rm_fail(why, "%s:%ld: is not the line %s recorded: the trail was rewritten", path, a->seq, a->where);
            no = a->seq;
        }
    }
    sodium_memzero(key_buf, sizeof key_buf);
    if (rc == RM_OK && no > 0)
        memcpy(head, hashes[no - 1], HASH_HEX + 1);
    free(hashes);
    free(text);
    if (rc != RM_OK) {
        *bad_line = no;
        return RM_ERR;
    }
    *lines = no;
    return RM_OK;
}
