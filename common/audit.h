/* The audit trail: RUN_DIR/audit.jsonl, append-only, one JSON object per
 * line, each naming who (uid, user, host, pid), when and what:
 *
 *   {"seq":1,"time":"2026-11-26T16:00:00Z","unix":...,"uid":1000,"user":"ana",
 *    "host":"n1","pid":42,"event":"run_start",<event fields>,"prev":"<hex>"}
 *
 * "prev" is BLAKE2b-256 of the previous line's bytes (without its newline);
 * line 1 chains to BLAKE2b-256 of a fixed genesis string. So deleting or
 * editing a line breaks the chain at the next line, and `seq` tells a
 * deletion from an edit. With a key loaded (security.key_file) a writer
 * chains with "prev_mac" instead: the same, keyed with a subkey of it, so
 * rewriting the chain needs the key. The end of the chain is pinned
 * elsewhere: every checkpoint manifest and summary.json record the head
 * (seq and BLAKE2b-256 of the last line when they were written), and
 * verify checks those anchors, so lines removed from the end are found.
 * Writers (the supervisor and the coordinator) append under an exclusive
 * flock, one write(2) per line (a short one cut back), then fsync. */
#ifndef RINGMASTER_AUDIT_H
#define RINGMASTER_AUDIT_H

#include "crypto.h"
#include "error.h"

#define RM_AUDIT_NAME "audit.jsonl"
#define RM_AUDIT_MAX_LINE 16384

/* Appends one event, keyed when the process holds a key (crypto.h).
 * fields: already-formatted JSON members ("\"step\":100,...") or "" / NULL. */
int rm_audit_append(const char *run_dir, const char *event, const char *fields, rm_error *err);

/* The chain's head now: the last line's seq (0: no trail yet) and its
 * BLAKE2b-256 (head, 65 bytes; "" when none). */
int rm_audit_head(const char *run_dir, long *seq, char head[65], rm_error *err);

/* A head recorded elsewhere, which the chain must still hold. */
typedef struct rm_audit_anchor {
    long seq;
    char head[65];
    char where[256]; /* "summary.json", "checkpoint step-00000080" */
} rm_audit_anchor;

/* Checks the chain (MACs with key, which may be NULL for an unkeyed
 * trail) and the anchors. RM_OK: *lines holds the line count and head (65
 * bytes) the hash of the last line. RM_ERR: *bad_line is the first bad
 * line (0 when the file cannot be read; one past the end when lines were
 * removed from the end) and why says what is wrong. */
int rm_audit_verify(const char *run_dir, const rm_secret_key *key, const rm_audit_anchor *anchors,
                    int n_anchors, long *lines, char head[65], long *bad_line, rm_error *why);

#endif
