/*
 * Logging to stderr, one line per message, prefixed with the time, level and thread.
 *
 * Logging is for operators: start-up facts (capacity, features), errors that need action, and
 * per-connection details only at debug level. Nothing on the hot path logs above debug.
 */
#ifndef RINGCAST_LOG_H
#define RINGCAST_LOG_H

enum rc_log_level { RC_LOG_ERROR = 0, RC_LOG_WARN, RC_LOG_INFO, RC_LOG_DEBUG };

/* Sets the most verbose level that is printed (default RC_LOG_INFO). */
void rc_log_set_level(enum rc_log_level level);

/* Names the calling thread in log lines ("main", "feed", "w0", ...); at most 15 bytes. */
void rc_log_set_thread(const char *name);

/* Whether a message at this level would be printed; lets callers skip building it. */
int rc_log_enabled(enum rc_log_level level);

/* Prints one line at the given level. */
void rc_log(enum rc_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define rc_error(...) rc_log(RC_LOG_ERROR, __VA_ARGS__)
#define rc_warn(...)  rc_log(RC_LOG_WARN, __VA_ARGS__)
#define rc_info(...)  rc_log(RC_LOG_INFO, __VA_ARGS__)
#define rc_debug(...)                                                                              \
    do {                                                                                           \
        if (rc_log_enabled(RC_LOG_DEBUG))                                                          \
            rc_log(RC_LOG_DEBUG, __VA_ARGS__);                                                     \
    } while (0)

#endif
