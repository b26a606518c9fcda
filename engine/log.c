/*
 * Logging and the always-on assert. See include/ringcast/log.h and assert.h.
 */
#include "ringcast/log.h"
#include "ringcast/assert.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/*
 * Atomic because a configuration reload sets it on the main thread while every thread logs.
 * Relaxed is enough: a message just before the change may be judged by the old level.
 */
static _Atomic int max_level = RC_LOG_INFO;
static __thread char thread_name[16] = "main";

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void rc_log_set_level(enum rc_log_level level)
{
    atomic_store_explicit(&max_level, (int)level, memory_order_relaxed);
}

void rc_log_set_thread(const char *name)
{
    snprintf(thread_name, sizeof(thread_name), "%s", name);
}

int rc_log_enabled(enum rc_log_level level)
{
    return (int)level <= atomic_load_explicit(&max_level, memory_order_relaxed);
}

void rc_log(enum rc_log_level level, const char *fmt, ...)
{
    char line[1024];
    struct timespec ts;
    struct tm tm;
    va_list ap;
    int n;

    if (!rc_log_enabled(level))
        return;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-5s [%s] ",
                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                 ts.tv_nsec / 1000000, level_names[level], thread_name);
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    /* One write per line keeps lines from different threads whole. */
    n = (int)strlen(line);
    line[n++] = '\n';
    fwrite(line, 1, (size_t)n, stderr);
}

void rc_assert_fail(const char *expr, const char *file, int line)
{
    fprintf(stderr, "%s:%d: invariant failed: %s\n", file, line, expr);
    abort();
}
