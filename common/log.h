/* Logging to stderr with the process's role, rank and host in front, so a
 * line from a 64-rank job says where it came from. */
#ifndef RINGMASTER_LOG_H
#define RINGMASTER_LOG_H

enum rm_log_level { RM_LOG_ERROR = 0, RM_LOG_WARN = 1, RM_LOG_INFO = 2, RM_LOG_DEBUG = 3 };

/* role: "coordinator", "worker 3", "ringmaster"... copied. */
void rm_log_set_identity(const char *role);
void rm_log_set_level(enum rm_log_level level);
const char *rm_log_host(void);

void rm_log(enum rm_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define rm_error_log(...) rm_log(RM_LOG_ERROR, __VA_ARGS__)
#define rm_warn(...) rm_log(RM_LOG_WARN, __VA_ARGS__)
#define rm_info(...) rm_log(RM_LOG_INFO, __VA_ARGS__)
#define rm_debug(...) rm_log(RM_LOG_DEBUG, __VA_ARGS__)

#endif
