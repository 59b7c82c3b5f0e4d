/* Checksums and digests: XXH3-64 from libxxhash, printed as 16 hex digits. */
#ifndef RINGMASTER_HASH_H
#define RINGMASTER_HASH_H

#include <stddef.h>
#include <stdint.h>

uint64_t rm_hash64(const void *data, size_t len);
/* Writes 16 lowercase hex digits and a NUL into out[17]. */
void rm_hash_hex(uint64_t h, char out[17]);
/* Parses 16 hex digits; RM_OK or RM_ERR. */
int rm_hash_parse(const char *hex, uint64_t *out);

#endif
