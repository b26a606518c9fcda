/*
 * RESP2 (the Redis serialization protocol) request parsing and reply encoding.
 *
 * The feed socket speaks RESP so that redis-cli and every Redis client library can publish.
 * The parser is pure: it points into the caller's buffer and never allocates.
 */
#ifndef RINGCAST_RESP_H
#define RINGCAST_RESP_H

#include <stddef.h>

struct rc_resp_arg {
    const char *ptr; /* points into the parsed buffer; binary safe, not NUL-terminated */
    size_t len;
};

struct rc_resp_limits {
    size_t max_args;   /* arguments in one command; also the capacity of argv */
    size_t max_bulk;   /* bytes of one bulk string argument */
    size_t max_inline; /* bytes of one inline command line */
};

/*
 * Parses one command from buf[0..len): either a multibulk array of bulk strings
 * ("*2\r\n$4\r\nPING\r\n$2\r\nhi\r\n") or an inline command ("PING hi\r\n", split on spaces
 * and tabs, as redis-server accepts from telnet). A command that starts with '$', '+', '-' or
 * ':' is a protocol error: it is RESP gone wrong, not an inline command.
 *
 * Returns the bytes consumed with *argc set (an empty inline line or "*0\r\n" is a command of
 * zero arguments, which callers skip), -2 when more bytes are needed, or -1 on a protocol error
 * with *err set to a static message suitable for "-ERR Protocol error: <err>". A bulk length
 * over lim->max_bulk, more than lim->max_args arguments, and an inline line over lim->max_inline
 * are protocol errors as soon as their header is seen, before the bytes arrive.
 */
int rc_resp_parse(const char *buf, size_t len, const struct rc_resp_limits *lim,
                  struct rc_resp_arg *argv, size_t *argc, const char **err);

#endif
