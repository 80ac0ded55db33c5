/* log.c — one line per event of note: "2026-11-28T15:51:11.123Z level message". */
#include "funnel/log.h"
#include "funnel/error.h"

#include <stdarg.h>
#include <string.h>
#include <time.h>

static const char *const level_names[] = {"error", "warn", "info", "debug"};

int funnel_log_level_parse(const char *name, funnel_log_level_t *out)
{
    for (size_t i = 0; i < sizeof level_names / sizeof level_names[0]; i++) {
        if (name && strcmp(name, level_names[i]) == 0) {
            *out = (funnel_log_level_t)i;
            return 0;
        }
    }
    return FUNNEL_EINVAL;
}

const char *funnel_log_level_name(funnel_log_level_t level)
{
    if ((unsigned)level >= sizeof level_names / sizeof level_names[0])
        return "?";
    return level_names[level];
}

void funnel_log_write(const funnel_log_t *log, funnel_log_level_t level, const char *fmt, ...)
{
    if (!log || level > log->level)
        return;
    FILE *out = log->out ? log->out : stderr;
    struct timespec ts;
    struct tm tm;
    char stamp[32];
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);

    /* One fprintf per line keeps lines whole when several processes share a terminal. */
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(out, "%s.%03ldZ %-5s %s\n", stamp, ts.tv_nsec / 1000000L, level_names[level], line);
    fflush(out);
}
