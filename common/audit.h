/* The audit trail: RUN_DIR/audit.jsonl, append-only, one JSON object per
 * line, each naming who (uid, user, host, pid), when and what:
 *
 *   {"seq":1,"time":"2026-11-26T16:00:00Z","unix":...,"uid":1000,"user":"ana",
 *    "host":"n1","pid":42,"event":"run_start",<event fields>,"prev":"<hex>"}
 *
 * "prev" is BLAKE2b-256 of the previous line's bytes (without its newline);
 * line 1 chains to BLAKE2b-256 of a fixed genesis string. So deleting or
 * editing a line breaks the chain at the next line, and `seq` tells a
 * deletion from an edit. The chain has no secret: it catches accidents and
 * careless tampering, and the head hash `ringmaster audit verify` prints
 * can be recorded elsewhere to pin the whole history down. Writers (the
 * supervisor and the coordinator) append under an exclusive flock, one
 * write(2) per line, then fsync. */
#ifndef RINGMASTER_AUDIT_H
#define RINGMASTER_AUDIT_H

#include "error.h"

#define RM_AUDIT_NAME "audit.jsonl"
#define RM_AUDIT_MAX_LINE 16384

/* Appends one event. fields: already-formatted JSON members
 * ("\"step\":100,...") or "" / NULL. */
int rm_audit_append(const char *run_dir, const char *event, const char *fields, rm_error *err);

/* Checks the chain. RM_OK: *lines holds the line count and head (65
 * bytes) the hash of the last line. RM_ERR: *bad_line is the first bad
 * line (0 when the file cannot be read) and why says what is wrong. */
int rm_audit_verify(const char *run_dir, long *lines, char head[65], long *bad_line, rm_error *why);

#endif
