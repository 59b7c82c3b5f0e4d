/* Bearer tokens kept in files: the file must be a regular file readable
 * by its owner only (mode 0600 or stricter), so that a token is never
 * taken from a file other users can read. */
#ifndef RINGMASTER_TOKEN_FILE_H
#define RINGMASTER_TOKEN_FILE_H

#include "error.h"

#include <stddef.h>

#define RM_TOKEN_CAP 512

/* Reads the token (first line, surrounding whitespace removed) into out.
 * Fails naming the file when it is missing, not a regular file, readable
 * or writable by group or others, empty, or longer than cap - 1. */
int rm_token_file_read(const char *path, char *out, size_t cap, rm_error *err);

/* 1 if `address` is a loopback IPv4 (127.0.0.0/8) or IPv6 (::1) address
 * or "localhost"; 0 for any other address; -1 if it is not an address. */
int rm_address_is_loopback(const char *address);

/* Compares two strings in time that depends only on their lengths, so a
 * client cannot learn a token byte by byte from response times. */
int rm_token_equal(const char *a, size_t alen, const char *b, size_t blen);

#endif
