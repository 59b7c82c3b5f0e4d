/* Minimal JSON output helpers for metrics, events and summaries. */
#ifndef RINGMASTER_JSON_H
#define RINGMASTER_JSON_H

#include <stdio.h>

/* Writes s as a JSON string literal, quotes included. */
void rm_json_string(FILE *out, const char *s);

/* Writes v as a JSON number (non-finite values become null). */
void rm_json_number(FILE *out, double v);

#endif
