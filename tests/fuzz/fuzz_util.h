/* Shared by the fuzz harnesses: a private scratch directory on tmpfs (each
 * input becomes real files, read through the same code paths as in
 * production, without the cost of a disk fsync), and the entry point every
 * harness defines. */
#ifndef RINGMASTER_FUZZ_UTIL_H
#define RINGMASTER_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The scratch directory, created on first use (under /dev/shm when it
 * exists) and removed at exit. */
const char *fuzz_scratch(void);

/* scratch/name, in a static buffer per slot (0..3). */
const char *fuzz_path(int slot, const char *name);

/* Writes len bytes to path (truncating); aborts on failure. */
void fuzz_write(const char *path, const void *data, size_t len);

/* Removes every file in dir and the subdirectory names (one level). */
void fuzz_clear(const char *dir);

/* A key file for harnesses that also exercise sealed files, loaded as the
 * process key once. */
void fuzz_load_key(void);

#endif
