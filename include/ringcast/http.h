/*
 * HTTP/1.1 request parsing and routing.
 *
 * The parser is a pure function over a byte range in the manner of picohttpparser: it never
 * allocates, never copies, and points into the caller's buffer. A request that arrives in many
 * reads is parsed again from the start each time more bytes arrive; the limits make that cheap
 * and bound the work per connection.
 */
#ifndef RINGCAST_HTTP_H
#define RINGCAST_HTTP_H

#include <stdbool.h>
#include <stddef.h>

struct rc_http_header {
    const char *name; /* points into the parsed buffer; not NUL-terminated */
    size_t name_len;
    const char *value; /* leading and trailing spaces/tabs removed */
    size_t value_len;
};

struct rc_http_limits {
    size_t max_request_line; /* bytes of "METHOD target HTTP/1.x" without CRLF */
    size_t max_header_bytes; /* bytes of the whole head, request line and final CRLF included */
    size_t max_headers;      /* header fields; also the capacity of rc_http_request.headers */
};

struct rc_http_request {
    const char *method; /* points into the parsed buffer */
    size_t method_len;
    const char *target; /* the request-target as sent, query included */
    size_t target_len;
    int minor_version;              /* 0 or 1 */
    struct rc_http_header *headers; /* caller-owned array of limits->max_headers entries */
    size_t num_headers;
    int status; /* when the parser returns -1: the status to answer (400, 414, 431, 505) */
};

/*
 * Parses one request head (request line and header fields up to the empty line) from
 * buf[0..len). The caller sets req->headers to an array of lim->max_headers entries.
 *
 * Returns the number of bytes the head occupies (the body, if any, follows), -2 when the head
 * is incomplete but valid so far and within the limits, or -1 when it is malformed or over a
 * limit; then req->status says what to answer: 400 malformed, 414 request line too long, 431
 * too many or too large header fields, 505 an HTTP version other than 1.0 or 1.1.
 * Bare LF line endings are accepted as RFC 9112 allows; obsolete line folding is rejected.
 */
int rc_http_parse_request(const char *buf, size_t len, const struct rc_http_limits *lim,
                          struct rc_http_request *req);

/* Whether the request's method is GET (methods are case-sensitive, RFC 9110 section 9.1). */
bool rc_http_is_get(const struct rc_http_request *req);

/* Returns the first header whose name equals `name` (ASCII case-insensitive), or NULL. */
const struct rc_http_header *rc_http_find_header(const struct rc_http_request *req,
                                                 const char *name);

/*
 * Returns the next header named `name` after `prev` (NULL: from the start), or NULL. Fields
 * that may repeat, such as Sec-WebSocket-Extensions, are read as one list this way.
 */
const struct rc_http_header *rc_http_next_header(const struct rc_http_request *req,
                                                 const struct rc_http_header *prev,
                                                 const char *name);

/*
 * Whether a comma-separated header value contains `token` as one of its elements (ASCII
 * case-insensitive, optional whitespace around commas), as in "Connection: keep-alive, Upgrade".
 */
bool rc_http_has_token(const char *value, size_t value_len, const char *token);

/* Whether name[0..len) is a valid channel name: 1-128 bytes of A-Za-z0-9 and "_.:@-". */
bool rc_http_channel_valid(const char *name, size_t len);

enum rc_route_kind {
    RC_ROUTE_NOT_FOUND = 0, /* answer 404 */
    RC_ROUTE_HEALTH,        /* GET /health */
    RC_ROUTE_SSE,           /* GET /sse/<channel>, or /sse with channels in the query */
    RC_ROUTE_WS,            /* GET /ws/<channel> or /ws: a WebSocket upgrade */
    RC_ROUTE_BAD_CHANNEL,   /* /sse/ or /ws/ and not a valid channel name: answer 400 */
};

struct rc_route {
    enum rc_route_kind kind;
    const char *channel; /* the path's channel (points into the target), or NULL: see query */
    size_t channel_len;
    const char *query; /* the bytes after '?', or NULL when there is no query */
    size_t query_len;
};

/*
 * Maps a request-target (origin form, "/path?query") to a route. Pure; never fails: anything
 * it does not know is RC_ROUTE_NOT_FOUND. The method is checked by the caller.
 */
void rc_http_route(const char *target, size_t target_len, struct rc_route *route);

/*
 * Iterates the parameters of a query string q[0..len) ("a=1&b=2"): sets key and value to the
 * next parameter at or after *pos (raw, not decoded; a key without "=" has an empty value),
 * advances *pos, and returns whether there was one. Pure.
 */
bool rc_http_query_next(const char *q, size_t len, size_t *pos, const char **key, size_t *key_len,
                        const char **value, size_t *value_len);

/*
 * Percent-decodes s[0..len) into out, which has room for len bytes and may be s itself; "+" is
 * a space, as in HTML forms. Returns the decoded length, or -1 for a malformed escape. Pure.
 */
int rc_http_percent_decode(const char *s, size_t len, char *out);

#endif
