/* One way to report failure across ringmaster: a function returns RM_OK or
 * RM_ERR and writes a one-line reason into the caller's rm_error. Only a
 * main() decides what a failure means for the process or the MPI job. */
#ifndef RINGMASTER_ERROR_H
#define RINGMASTER_ERROR_H

#include <stddef.h>

#define RM_OK 0
#define RM_ERR (-1)

typedef struct rm_error {
    char msg[1024];
    int errnum; /* the errno behind the failure (rm_fail_errno), 0 otherwise */
} rm_error;

/* Formats the reason into err (if not NULL) and returns RM_ERR, so a caller
 * can write `return rm_fail(err, "...")`. */
int rm_fail(rm_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Like rm_fail, with ": strerror(errnum)" appended; errnum is kept. */
int rm_fail_errno(rm_error *err, int errnum, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* 1 when err is a failed write a restart cannot cure: no space, quota, an
 * I/O error, a read-only filesystem, a file too large, no permission. */
int rm_error_is_storage(const rm_error *err);

#endif
