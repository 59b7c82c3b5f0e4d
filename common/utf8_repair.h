/* Ill-formed UTF-8 made well-formed the way the WHATWG decoder does it
 * (TextDecoder in browsers and node, and so any JavaScript that reads a
 * file as text): each maximal prefix of a sequence that cannot be
 * completed, and each byte that starts no sequence, becomes U+FFFD
 * (EF BF BD). Well-formed UTF-8 stays as it is. */
#ifndef RINGMASTER_UTF8_REPAIR_H
#define RINGMASTER_UTF8_REPAIR_H

#include <stddef.h>
#include <stdint.h>

/* The length of s[0..len) repaired; *replacements: how many U+FFFD it
 * needs (0: s is well-formed). */
size_t rm_utf8_repaired_len(const uint8_t *s, size_t len, size_t *replacements);

/* Writes s[0..len) repaired into out, which holds rm_utf8_repaired_len
 * bytes. */
void rm_utf8_repair(const uint8_t *s, size_t len, uint8_t *out);

#endif
