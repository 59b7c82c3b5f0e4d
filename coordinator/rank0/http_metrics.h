/* The coordinator's Prometheus endpoint: GET /metrics over HTTP
 * (libmicrohttpd, its own thread). The text is rendered on request by a
 * callback, which must guard the figures it reads with its own lock.
 *
 * On a loopback address no token is needed unless one is configured; with
 * a token, every request must carry "Authorization: Bearer TOKEN" or gets
 * 401 (compared in constant time). */
#ifndef RINGMASTER_HTTP_METRICS_H
#define RINGMASTER_HTTP_METRICS_H

#include "error.h"

#include <stdio.h>

/* Writes the Prometheus text exposition to out. Runs on the HTTP thread. */
typedef void (*rm_http_render_fn)(void *ctx, FILE *out);

typedef struct rm_http_metrics rm_http_metrics;

/* Listens on address:port (port 0: any free port). token may be NULL or ""
 * (no authentication). Returns NULL with err set when it cannot listen. */
rm_http_metrics *rm_http_metrics_start(const char *address, int port, const char *token, rm_http_render_fn render,
                                       void *ctx, rm_error *err);

/* The port actually bound. */
int rm_http_metrics_port(const rm_http_metrics *h);

/* Stops the thread and frees everything; NULL is fine. */
void rm_http_metrics_stop(rm_http_metrics *h);

#endif
