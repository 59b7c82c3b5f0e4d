#include "http_metrics.h"

#include "token_file.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

struct rm_http_metrics {
    struct MHD_Daemon *daemon;
    int port;
    char token[RM_TOKEN_CAP];
    size_t token_len;
    rm_http_render_fn render;
    void *ctx;
};

static enum MHD_Result reply_text(struct MHD_Connection *conn, unsigned status, const char *text,
                                  const char *content_type)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_MUST_COPY);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    if (status == MHD_HTTP_UNAUTHORIZED)
        MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer realm=\"ringmaster\"");
    enum MHD_Result ret = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return ret;
}

static int authorized(const rm_http_metrics *h, struct MHD_Connection *conn)
{
    if (!h->token_len)
        return 1;
    const char *auth = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    static const char prefix[] = "Bearer ";
    if (!auth || strncmp(auth, prefix, sizeof prefix - 1) != 0)
        return 0;
    const char *given = auth + sizeof prefix - 1;
    return rm_token_equal(given, strlen(given), h->token, h->token_len);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **req_cls)
{
    rm_http_metrics *h = cls;
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
        return reply_text(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "only GET\n", "text/plain");
    /* Authentication comes before anything else, so that an unauthorized
     * client learns nothing, not even which paths exist. */
    if (!authorized(h, conn))
        return reply_text(conn, MHD_HTTP_UNAUTHORIZED, "401 unauthorized: send Authorization: Bearer TOKEN\n",
                          "text/plain");
    if (strcmp(url, "/metrics") != 0)
        return reply_text(conn, MHD_HTTP_NOT_FOUND, "not found: the figures are at /metrics\n", "text/plain");
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    if (!out)
        return MHD_NO;
    h->render(h->ctx, out);
    fclose(out);
    struct MHD_Response *r = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8");
    enum MHD_Result ret = MHD_queue_response(conn, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return ret;
}

rm_http_metrics *rm_http_metrics_start(const char *address, int port, const char *token, rm_http_render_fn render,
                                       void *ctx, rm_error *err)
{
    rm_http_metrics *h = calloc(1, sizeof *h);
    if (!h) {
        rm_fail(err, "out of memory");
        return NULL;
    }
    h->render = render;
    h->ctx = ctx;
    if (token && *token) {
        snprintf(h->token, sizeof h->token, "%s", token);
        h->token_len = strlen(h->token);
    }
    struct sockaddr_storage sa;
    memset(&sa, 0, sizeof sa);
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
    struct sockaddr_in *v4 = (struct sockaddr_in *)&sa;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&sa;
    const char *bind_to = strcmp(address, "localhost") == 0 ? "127.0.0.1" : address;
    if (inet_pton(AF_INET, bind_to, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
    } else if (inet_pton(AF_INET6, bind_to, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)port);
        flags |= MHD_USE_IPv6;
    } else {
        free(h);
        rm_fail(err, "observe.metrics_address '%s' is not an IP address", address);
        return NULL;
    }
    h->daemon = MHD_start_daemon(flags, (uint16_t)port, NULL, NULL, on_request, h, MHD_OPTION_SOCK_ADDR,
                                 (struct sockaddr *)&sa, MHD_OPTION_CONNECTION_LIMIT, (unsigned)16,
                                 MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10, MHD_OPTION_END);
    if (!h->daemon) {
        free(h);
        rm_fail(err, "cannot serve /metrics on %s port %d (in use, or not an address of this host?); "
                     "set observe.metrics_port (0: any free port, -1: off)",
                address, port);
        return NULL;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_BIND_PORT);
    h->port = info ? (int)info->port : port;
    return h;
}

int rm_http_metrics_port(const rm_http_metrics *h)
{
    return h->port;
}

void rm_http_metrics_stop(rm_http_metrics *h)
{
    if (!h)
        return;
    MHD_stop_daemon(h->daemon);
    memset(h->token, 0, sizeof h->token);
    free(h);
}
