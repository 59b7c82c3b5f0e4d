#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static char log_role[64] = "ringmaster";
static char log_host[256];
static enum rm_log_level log_level = RM_LOG_INFO;

void rm_log_set_identity(const char *role)
{
    snprintf(log_role, sizeof log_role, "%s", role);
}

void rm_log_set_level(enum rm_log_level level)
{
    log_level = level;
}

const char *rm_log_host(void)
{
    if (!log_host[0] && gethostname(log_host, sizeof log_host - 1) != 0)
        snprintf(log_host, sizeof log_host, "unknown-host");
    return log_host;
}

void rm_log(enum rm_log_level level, const char *fmt, ...)
{
    static const char *names[] = {"error", "warning", "info", "debug"};
    if (level > log_level)
        return;
    char line[2048];
    int n = snprintf(line, sizeof line, "[%s@%s] %s%s", log_role, rm_log_host(),
                     level <= RM_LOG_WARN ? names[level] : "", level <= RM_LOG_WARN ? ": " : "");
    va_list ap;
    va_start(ap, fmt);
    if (n >= 0 && (size_t)n < sizeof line)
        vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    /* One write per line keeps lines from different threads whole. */
    fprintf(stderr, "%s\n", line);
}
