#include "json_scan.h"

#include "error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Points just past `"key":` and any spaces, or NULL. */
static const char *value_of(const char *text, const char *key)
{
    char pattern[128];
    int n = snprintf(pattern, sizeof pattern, "\"%s\"", key);
    if (n <= 0 || (size_t)n >= sizeof pattern)
        return NULL;
    for (const char *p = strstr(text, pattern); p; p = strstr(p + 1, pattern)) {
        const char *q = p + n;
        while (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r')
            q++;
        if (*q != ':')
            continue;
        q++;
        while (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r')
            q++;
        return q;
    }
    return NULL;
}

int rm_json_find_number(const char *text, const char *key, double *out)
{
    const char *v = value_of(text, key);
    if (!v)
        return RM_ERR;
    char *end;
    double d = strtod(v, &end);
    if (end == v)
        return RM_ERR;
    *out = d;
    return RM_OK;
}

int rm_json_find_string(const char *text, const char *key, char *out, size_t cap)
{
    const char *v = value_of(text, key);
    if (!v || *v != '"' || cap == 0)
        return RM_ERR;
    v++;
    size_t len = strcspn(v, "\"");
    if (v[len] != '"')
        return RM_ERR;
    if (len >= cap)
        len = cap - 1;
    memcpy(out, v, len);
    out[len] = '\0';
    return RM_OK;
}
