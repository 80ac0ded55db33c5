/* log.h — levelled log lines on stderr, one line per event of note.
 *
 * A funnel_log_t is plain data owned by whoever runs the process (main, a test); modules keep
 * a const pointer to it. Not thread-safe beyond what stdio guarantees; funneld is single
 * threaded. A NULL log pointer is allowed everywhere and logs nothing. */
#ifndef FUNNEL_LOG_H
#define FUNNEL_LOG_H

#include <stdio.h>

typedef enum funnel_log_level {
    FUNNEL_LOG_ERROR = 0,
    FUNNEL_LOG_WARN = 1,
    FUNNEL_LOG_INFO = 2,
    FUNNEL_LOG_DEBUG = 3,
} funnel_log_level_t;

typedef struct funnel_log {
    funnel_log_level_t level; /* lines above this level are dropped */
    FILE *out;                /* where lines go; NULL means stderr */
} funnel_log_t;

/* Parses "error", "warn", "info" or "debug". Returns 0 or FUNNEL_EINVAL. */
int funnel_log_level_parse(const char *name, funnel_log_level_t *out);
const char *funnel_log_level_name(funnel_log_level_t level);

void funnel_log_write(const funnel_log_t *log, funnel_log_level_t level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define funnel_log_error(log, ...) funnel_log_write((log), FUNNEL_LOG_ERROR, __VA_ARGS__)
#define funnel_log_warn(log, ...)  funnel_log_write((log), FUNNEL_LOG_WARN, __VA_ARGS__)
#define funnel_log_info(log, ...)  funnel_log_write((log), FUNNEL_LOG_INFO, __VA_ARGS__)
#define funnel_log_debug(log, ...) funnel_log_write((log), FUNNEL_LOG_DEBUG, __VA_ARGS__)

#endif
