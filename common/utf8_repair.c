#include "utf8_repair.h"

#include <string.h>

/* Walks s by the WHATWG decoder's rule, copying into out when out is not
 * NULL; returns the repaired length. */
static size_t walk(const uint8_t *s, size_t len, uint8_t *out, size_t *replacements)
{
    size_t n = 0, bad = 0;
    for (size_t i = 0; i < len;) {
        uint8_t b = s[i];
        size_t need;
        uint8_t lo = 0x80, hi = 0xBF; /* the first continuation byte's range, narrowed after E0, ED, F0, F4 */
        if (b < 0x80) {
            need = 0;
        } else if (b >= 0xC2 && b <= 0xDF) {
            need = 1;
        } else if (b >= 0xE0 && b <= 0xEF) {
            need = 2;
            lo = b == 0xE0 ? 0xA0 : 0x80;
            hi = b == 0xED ? 0x9F : 0xBF;
        } else if (b >= 0xF0 && b <= 0xF4) {
            need = 3;
            lo = b == 0xF0 ? 0x90 : 0x80;
            hi = b == 0xF4 ? 0x8F : 0xBF;
        } else {
            need = SIZE_MAX; /* starts no sequence */
        }
        size_t j = i + 1;
        int valid = need != SIZE_MAX;
        for (size_t k = 0; valid && k < need; k++) {
            valid = j < len && s[j] >= lo && s[j] <= hi;
            j += (size_t)valid;
            lo = 0x80, hi = 0xBF;
        }
        if (valid) {
            if (out)
                memcpy(out + n, s + i, j - i);
            n += j - i;
        } else {
            if (out)
                memcpy(out + n, "\xEF\xBF\xBD", 3);
            n += 3;
            bad++;
        }
        /* after a bad sequence, the byte that broke it (at j) starts the next one */
        i = j;
    }
    if (replacements)
        *replacements = bad;
    return n;
}

size_t rm_utf8_repaired_len(const uint8_t *s, size_t len, size_t *replacements)
{
    return walk(s, len, NULL, replacements);
}

void rm_utf8_repair(const uint8_t *s, size_t len, uint8_t *out)
{
    walk(s, len, out, NULL);
}
