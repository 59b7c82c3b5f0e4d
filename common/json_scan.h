/* Reading single members out of the flat JSON objects ringmaster writes
 * (metrics.jsonl lines, summary.json, doctor.json). Not a general JSON
 * parser: it finds "key": at any depth and reads the value after it, which
 * is enough for files whose keys are unique. */
#ifndef RINGMASTER_JSON_SCAN_H
#define RINGMASTER_JSON_SCAN_H

#include <stddef.h>

/* RM_OK and *out set when "key" is followed by a number; RM_ERR when the
 * key is absent or its value is not a number (null included). */
int rm_json_find_number(const char *text, const char *key, double *out);

/* The same for a string value (no escapes are decoded; quotes excluded). */
int rm_json_find_string(const char *text, const char *key, char *out, size_t cap);

#endif
