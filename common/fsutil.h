/* Small file-system helpers shared by the launcher, coordinator and tools. */
#ifndef RINGMASTER_FSUTIL_H
#define RINGMASTER_FSUTIL_H

#include "error.h"

#include <stddef.h>

/* mkdir -p with the given mode for directories it creates. */
int rm_mkdirs(const char *dir, unsigned mode, rm_error *err);

/* Writes len bytes to path via path.tmp + fsync + rename, then fsyncs the
 * directory, so readers see the old file or the whole new one. */
int rm_write_file_atomic(const char *path, const void *data, size_t len, rm_error *err);

/* The same for a file made of n_parts consecutive buffers. */
int rm_write_parts_atomic(const char *path, const void *const *parts, const size_t *lens, int n_parts, rm_error *err);

/* Reads a whole file of at most max bytes into a NUL-terminated buffer the
 * caller frees; a larger file fails with "path: too_large". */
char *rm_read_file(const char *path, size_t max, const char *too_large, size_t *len, rm_error *err);

#endif
