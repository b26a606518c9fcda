/*
 * RESP2 request parsing for the feed socket.
 *
 * The parser is restartable rather than incremental: the feed keeps unparsed bytes in its
 * buffer and calls rc_resp_parse() again from the start of the command when more arrive. Every
 * limit is checked as soon as the bytes that break it are present, so a peer can never make the
 * feed buffer more than one command of at most the configured size.
 *
 * Inline commands are split on spaces and tabs only, and may not begin with a RESP type byte.
 * Unlike redis-server, double quotes and backslash escapes have no meaning: inline commands exist
 * for typing at a terminal, and publishers that need arbitrary bytes use multibulk, which every
 * client library does.
 */
#include "ringcast/resp.h"

#include <limits.h>
#include <stdbool.h>
#include <string.h>

/*
 * Parses the decimal number of a "*N\r\n" or "$L\r\n" header line whose type byte is at
 * buf[pos] (the caller has checked it). Only digits are accepted, without sign and without
 * leading zeros, as redis-server does; that bounds the line to the digits of `limit` plus three
 * bytes, so a peer cannot make the parser rescan an endless header.
 *
 * Returns 0 with *value and *next (the index after the CRLF), -2 when the line is incomplete,
 * or -1 with *err set to `too_big` when the number exceeds `limit` and to `invalid` otherwise.
 * The limit is checked digit by digit, so an oversized count fails before its CRLF arrives.
 */
static int parse_header(const char *buf, size_t len, size_t pos, size_t limit, const char *invalid,
                        const char *too_big, size_t *value, size_t *next, const char **err)
{
    size_t v = 0;
    size_t i = pos + 1;

    for (; i < len && buf[i] >= '0' && buf[i] <= '9'; i++) {
        size_t digit = (size_t)(buf[i] - '0');

        if (i > pos + 1 && buf[pos + 1] == '0') {
            *err = invalid;
            return -1;
        }
        if (v > limit / 10 || digit > limit - v * 10) {
            *err = too_big;
            return -1;
        }
        v = v * 10 + digit;
    }
    if (i == len)
        return -2;
    if (i == pos + 1 || buf[i] != '\r') {
        *err = invalid;
        return -1;
    }
    if (i + 1 == len)
        return -2;
    if (buf[i + 1] != '\n') {
        *err = invalid;
        return -1;
    }
    *value = v;
    *next = i + 2;
    return 0;
}

/*
 * Parses "*N\r\n" followed by N bulk strings "$L\r\n<L bytes>\r\n". The whole command must fit
 * in the int that rc_resp_parse() returns; that is checked when each bulk header is seen, so an
 * impossible command is refused before its payload is buffered.
 */
static int parse_multibulk(const char *buf, size_t len, const struct rc_resp_limits *lim,
                           struct rc_resp_arg *argv, size_t *argc, const char **err)
{
    size_t n, pos;
    int r = parse_header(buf, len, 0, lim->max_args, "invalid multibulk length",
                         "too many arguments", &n, &pos, err);
    if (r)
        return r;

    for (size_t i = 0; i < n; i++) {
        size_t blen, avail;

        if (pos == len)
            return -2;
        if (buf[pos] != '$') {
            *err = "expected '$' to start a bulk string";
            return -1;
        }
        r = parse_header(buf, len, pos, lim->max_bulk, "invalid bulk length",
                         "bulk length exceeds max_payload", &blen, &pos, err);
        if (r)
            return r;
        if (pos > INT_MAX || blen > (size_t)INT_MAX - pos || (size_t)INT_MAX - pos - blen < 2) {
            *err = "command too large";
            return -1;
        }
        /* A wrong terminator is reported as soon as it arrives, even while bytes are missing. */
        avail = len - pos;
        if ((avail > blen && buf[pos + blen] != '\r') ||
            (avail > blen + 1 && buf[pos + blen + 1] != '\n')) {
            *err = "bulk string not terminated by CRLF";
            return -1;
        }
        if (avail < blen + 2)
            return -2;
        argv[i].ptr = buf + pos;
        argv[i].len = blen;
        pos += blen + 2;
    }
    *argc = n;
    return (int)pos;
}

/* Whether c separates inline arguments. */
static bool is_blank(char c)
{
    return c == ' ' || c == '\t';
}

/*
 * Parses one inline command: a line of at most lim->max_inline bytes before its LF (a CR just
 * before the LF is dropped), split into words on runs of spaces and tabs.
 */
static int parse_inline(const char *buf, size_t len, const struct rc_resp_limits *lim,
                        struct rc_resp_arg *argv, size_t *argc, const char **err)
{
    size_t scan = len <= lim->max_inline ? len : lim->max_inline + 1;
    const char *lf = memchr(buf, '\n', scan);
    size_t end, n = 0;

    if (!lf) {
        if (len > lim->max_inline) {
            *err = "too big inline request";
            return -1;
        }
        return -2;
    }
    end = (size_t)(lf - buf);
    if (end >= INT_MAX) {
        *err = "too big inline request";
        return -1;
    }
    if (end > 0 && buf[end - 1] == '\r')
        end--;

    for (size_t i = 0; i < end;) {
        size_t start;

        if (is_blank(buf[i])) {
            i++;
            continue;
        }
        start = i;
        while (i < end && !is_blank(buf[i]))
            i++;
        if (n == lim->max_args) {
            *err = "too many arguments";
            return -1;
        }
        argv[n].ptr = buf + start;
        argv[n].len = i - start;
        n++;
    }
    *argc = n;
    return (int)(lf - buf) + 1;
}

int rc_resp_parse(const char *buf, size_t len, const struct rc_resp_limits *lim,
                  struct rc_resp_arg *argv, size_t *argc, const char **err)
{
    if (len == 0)
        return -2;
    if (buf[0] == '*')
        return parse_multibulk(buf, len, lim, argv, argc, err);
    /*
     * A line that starts with another RESP type byte is a client speaking RESP wrongly (a bulk
     * string without its array, say), not a command typed at a terminal: say so plainly.
     */
    if (buf[0] == '$' || buf[0] == '+' || buf[0] == '-' || buf[0] == ':') {
        *err = "expected '*' to start a command";
        return -1;
    }
    return parse_inline(buf, len, lim, argv, argc, err);
}
