#include "hash.h"

#include "error.h"

#include <stdio.h>
#include <xxhash.h>

uint64_t rm_hash64(const void *data, size_t len)
{
    return (uint64_t)XXH3_64bits(data, len);
}

void rm_hash_hex(uint64_t h, char out[17])
{
    snprintf(out, 17, "%016llx", (unsigned long long)h);
}

int rm_hash_parse(const char *hex, uint64_t *out)
{
    uint64_t v = 0;
    for (int i = 0; i < 16; i++) {
        char c = hex[i];
        int d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if (c >= 'a' && c <= 'f')
            d = c - 'a' + 10;
        else
            return RM_ERR;
        v = (v << 4) | (uint64_t)d;
    }
    if (hex[16] != '\0')
        return RM_ERR;
    *out = v;
    return RM_OK;
}
