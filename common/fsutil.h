/* Small file-system helpers shared by the launcher, coordinator and tools. */
#ifndef RINGMASTER_FSUTIL_H
#define RINGMASTER_FSUTIL_H

#include "error.h"

#include <stddef.h>
#include <stdio.h>

/* mkdir -p with the given mode for directories it creates. */
int rm_mkdirs(const char *dir, unsigned mode, rm_error *err);

/* Writes len bytes to path via path.tmp + fsync + rename, then fsyncs the
 * directory, so readers see the old file or the whole new one. The file is
 * private (0600) whatever the umask. */
int rm_write_file_atomic(const char *path, const void *data, size_t len, rm_error *err);

/* The same for a file made of n_parts consecutive buffers. */
int rm_write_parts_atomic(const char *path, const void *const *parts, const size_t *lens, int n_parts, rm_error *err);
/* ... with the given mode instead (datasets meant to be shared: 0644). */
int rm_write_parts_atomic_mode(const char *path, const void *const *parts, const size_t *lens, int n_parts,
                               unsigned mode, rm_error *err);

/* Opens path for appending, creating it 0600 (whatever the umask). */
FILE *rm_open_append(const char *path, rm_error *err);

/* Opens path for writing from the start (truncated), creating it 0600
 * (whatever the umask); a symbolic link there is refused. */
FILE *rm_open_write(const char *path, rm_error *err);

/* A directory ringmaster keeps private: created 0700 (with any missing
 * parents), or, if it exists, a real directory (not a symlink) owned by
 * this user, tightened to 0700; another user's directory is refused. */
int rm_private_dir(const char *dir, rm_error *err);

/* Reads a whole file of at most max bytes into a NUL-terminated buffer the
 * caller frees; a larger file fails with "path: too_large". */
char *rm_read_file(const char *path, size_t max, const char *too_large, size_t *len, rm_error *err);

#endif
