/*
 * HTTP/1.1 request head parsing and request-target routing.
 *
 * The parser walks the head once, byte by byte, and decides as early as the bytes allow: a byte
 * that cannot belong to a valid head fails the request as soon as it arrives, and running out of
 * bytes means "incomplete" only while every limit can still be met. So for any prefix of an
 * input the answer is either -2 or the answer for the whole input, however the peer splits its
 * writes; garbage (a TLS handshake on the plain port, say) is refused on the first read instead
 * of being buffered up to the limits.
 *
 * The grammar is RFC 9112 without its lenient options: single spaces in the request line, no
 * whitespace before a field's colon, no obsolete line folding and no bare CR. Only the line
 * ending is lenient, because RFC 9112 lets a server accept a bare LF and some hand-written
 * clients send one.
 */
#include "ringcast/http.h"

#include <limits.h>
#include <string.h>

/* RFC 9110 tchar: the bytes a method or a field name is made of. */
static const bool tchar[256] = {
    ['0' ... '9'] = true, ['A' ... 'Z'] = true, ['a' ... 'z'] = true, ['!'] = true,  ['#'] = true,
    ['$'] = true,         ['%'] = true,         ['&'] = true,         ['\''] = true, ['*'] = true,
    ['+'] = true,         ['-'] = true,         ['.'] = true,         ['^'] = true,  ['_'] = true,
    ['`'] = true,         ['|'] = true,         ['~'] = true,
};

/* The bytes of a channel name, chosen so that a name never needs escaping in a URL or a log. */
static const bool channel_char[256] = {
    ['0' ... '9'] = true, ['A' ... 'Z'] = true, ['a' ... 'z'] = true, ['_'] = true,
    ['.'] = true,         [':'] = true,         ['@'] = true,         ['-'] = true,
};

/* Whether c is a visible ASCII character (VCHAR), the bytes of a request-target. */
static bool is_vchar(char c)
{
    return c > 0x20 && c < 0x7f;
}

/* Whether c may stand in a field value: VCHAR, obs-text (0x80-0xff), space or tab. */
static bool is_field_byte(char c)
{
    unsigned char u = (unsigned char)c;

    return u == '\t' || (u >= 0x20 && u != 0x7f);
}

/* Whether c is optional whitespace (OWS) around a field value or a list element. */
static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* Folds an ASCII letter to lower case and leaves every other byte alone, whatever the locale. */
static unsigned char ascii_lower(char c)
{
    unsigned char u = (unsigned char)c;

    return u >= 'A' && u <= 'Z' ? u + ('a' - 'A') : u;
}

/* Whether a[0..n) and b[0..n) are equal ignoring ASCII case. */
static bool ascii_case_equal(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (ascii_lower(a[i]) != ascii_lower(b[i]))
            return false;
    }
    return true;
}

/* Records the status to answer and returns -1, so that every failure is one statement. */
static int fail(struct rc_http_request *req, int status)
{
    req->status = status;
    return -1;
}

/*
 * Consumes the line ending (CRLF or bare LF) at *pp. Returns 0 and advances *pp past it, -2
 * when the buffer ends before the ending is whole, or -1, leaving *pp alone, when the bytes there
 * are not a line ending.
 */
static int eat_eol(const char **pp, const char *end)
{
    const char *p = *pp;

    if (p == end)
        return -2;
    if (*p == '\r') {
        if (++p == end)
            return -2;
    }
    if (*p != '\n')
        return -1;
    *pp = p + 1;
    return 0;
}

/*
 * Explains why the request line cannot go on at p: -2 when the buffer ends there, as more bytes
 * may still complete a valid line; otherwise -1 with 414 when p is where the line outgrows its
 * limit (a byte there would be content, and content is not allowed past the limit), or with 400
 * when the byte at p breaks the grammar.
 */
static int line_stop(const char *p, const char *end, const char *limit, struct rc_http_request *req)
{
    if (p == end)
        return -2;
    return fail(req, p == limit ? 414 : 400);
}

/*
 * Parses the request line "METHOD SP /target SP HTTP/d.d" and its line ending at *pp into the
 * method, target and minor_version of req. Returns 0 and advances *pp past the line ending, or
 * -2 or -1 as rc_http_parse_request() does.
 *
 * `limit` is where the content of a line of max_line bytes ends (or `end`, if that comes first):
 * each scan stops there, so a byte at the limit is either the line ending or too much, and an
 * overlong line fails with 414 before its end arrives.
 */
static int parse_request_line(const char **pp, const char *end, size_t max_line,
                              struct rc_http_request *req)
{
    /* '#' stands for one digit; the version is checked once the whole line is known to be valid. */
    static const char version[] = "HTTP/#.#";
    const char *p = *pp;
    const char *limit = (size_t)(end - p) > max_line ? p + max_line : end;
    const char *q = p;
    int r;

    while (q < limit && tchar[(unsigned char)*q])
        q++;
    if (q == p || q == limit || *q != ' ')
        return line_stop(q, end, limit, req);
    req->method = p;
    req->method_len = (size_t)(q - p);

    /* Only the origin form is served: this is not a proxy, and "*" only goes with OPTIONS. */
    p = ++q;
    if (q == limit || *q != '/')
        return line_stop(q, end, limit, req);
    while (q < limit && is_vchar(*q))
        q++;
    if (q == limit || *q != ' ')
        return line_stop(q, end, limit, req);
    req->target = p;
    req->target_len = (size_t)(q - p);

    p = ++q;
    for (const char *v = version; *v; v++, q++) {
        if (q == limit || !(*v == '#' ? *q >= '0' && *q <= '9' : *q == *v))
            return line_stop(q, end, limit, req);
    }
    r = eat_eol(&q, end);
    if (r == -2)
        return -2;
    if (r == -1)
        return line_stop(q, end, limit, req);

    /* p[5] and p[7] are the major and minor digits of "HTTP/d.d". */
    if (p[5] != '1' || (p[7] != '0' && p[7] != '1'))
        return fail(req, 505);
    req->minor_version = p[7] - '0';
    *pp = q;
    return 0;
}

/*
 * Parses the header field lines at *pp up to and including the empty line that ends the head,
 * storing each field in req->headers. Returns 0 and advances *pp past the empty line, or -2 or
 * -1 as rc_http_parse_request() does.
 */
static int parse_headers(const char **pp, const char *end, size_t max_headers,
                         struct rc_http_request *req)
{
    const char *p = *pp;

    for (;;) {
        const char *name, *value, *value_end;
        struct rc_http_header *h;
        int r;

        if (p == end)
            return -2;
        if (*p == '\r' || *p == '\n') {
            r = eat_eol(&p, end);
            if (r == -1)
                return fail(req, 400);
            if (r == 0)
                *pp = p;
            return r;
        }
        if (req->num_headers == max_headers)
            return fail(req, 431);

        name = p;
        while (p < end && tchar[(unsigned char)*p])
            p++;
        if (p == end)
            return -2;
        /*
         * An empty name also refuses a line that starts with whitespace: obsolete folding, or,
         * before the first field, whitespace that RFC 9112 lets a server reject. Whitespace
         * before the colon is refused too. Intermediaries disagree about what such lines mean,
         * which is how requests get smuggled, so none of them is guessed at.
         */
        if (p == name || *p != ':')
            return fail(req, 400);
        h = &req->headers[req->num_headers];
        h->name = name;
        h->name_len = (size_t)(p - name);

        p++;
        while (p < end && is_ows(*p))
            p++;
        value = p;
        while (p < end && is_field_byte(*p))
            p++;
        value_end = p;
        /* Anything but a line ending here is a control byte, DEL or a bare CR. */
        r = eat_eol(&p, end);
        if (r == -1)
            return fail(req, 400);
        if (r == -2)
            return -2;
        while (value_end > value && is_ows(value_end[-1]))
            value_end--;
        h->value = value;
        h->value_len = (size_t)(value_end - value);
        req->num_headers++;
    }
}

int rc_http_parse_request(const char *buf, size_t len, const struct rc_http_limits *lim,
                          struct rc_http_request *req)
{
    /*
     * A head that has not ended within max_header_bytes is too large however it goes on, so the
     * parser never looks past that many bytes; capping at INT_MAX keeps the size of any head it
     * accepts representable in the return value.
     */
    size_t cap = lim->max_header_bytes < INT_MAX ? lim->max_header_bytes : INT_MAX;
    const char *end = buf + (len < cap ? len : cap);
    const char *p = buf;
    int r;

    req->num_headers = 0;
    req->status = 0;
    r = parse_request_line(&p, end, lim->max_request_line, req);
    if (r == 0)
        r = parse_headers(&p, end, lim->max_headers, req);
    if (r == -2 && len >= cap)
        return fail(req, 431);
    return r == 0 ? (int)(p - buf) : r;
}

const struct rc_http_header *rc_http_find_header(const struct rc_http_request *req,
                                                 const char *name)
{
    return rc_http_next_header(req, NULL, name);
}

const struct rc_http_header *rc_http_next_header(const struct rc_http_request *req,
                                                 const struct rc_http_header *prev,
                                                 const char *name)
{
    size_t n = strlen(name);

    for (size_t i = prev ? (size_t)(prev - req->headers) + 1 : 0; i < req->num_headers; i++) {
        const struct rc_http_header *h = &req->headers[i];

        if (h->name_len == n && ascii_case_equal(h->name, name, n))
            return h;
    }
    return NULL;
}

bool rc_http_has_token(const char *value, size_t value_len, const char *token)
{
    size_t n = strlen(token);
    const char *p = value, *end = value + value_len;

    while (p < end) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *elem_end = comma ? comma : end;

        while (p < elem_end && is_ows(*p))
            p++;
        while (elem_end > p && is_ows(elem_end[-1]))
            elem_end--;
        /* Empty elements ("a, ,b") are not elements at all (RFC 9110, section 5.6.1). */
        if (elem_end > p && (size_t)(elem_end - p) == n && ascii_case_equal(p, token, n))
            return true;
        p = comma ? comma + 1 : end;
    }
    return false;
}

bool rc_http_channel_valid(const char *name, size_t len)
{
    if (len < 1 || len > 128)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (!channel_char[(unsigned char)name[i]])
            return false;
    }
    return true;
}

/*
 * Routes the path below a channel prefix ("/sse/", "/ws/") to `kind`, or to RC_ROUTE_BAD_CHANNEL
 * when the rest of the path is not a channel name. Names are matched as sent: a percent-encoded
 * byte makes the name invalid, not decoded.
 */
static void route_channel(const char *name, size_t name_len, enum rc_route_kind kind,
                          struct rc_route *route)
{
    if (rc_http_channel_valid(name, name_len)) {
        route->kind = kind;
        route->channel = name;
        route->channel_len = name_len;
    } else {
        route->kind = RC_ROUTE_BAD_CHANNEL;
    }
}

void rc_http_route(const char *target, size_t target_len, struct rc_route *route)
{
    static const char health[] = "/health";
    static const char sse[] = "/sse/";
    static const char ws[] = "/ws/";
    const char *query = memchr(target, '?', target_len);
    size_t path_len = query ? (size_t)(query - target) : target_len;

    *route = (struct rc_route){.kind = RC_ROUTE_NOT_FOUND};
    if (query) {
        route->query = query + 1;
        route->query_len = target_len - path_len - 1;
    }
    if (path_len == sizeof health - 1 && memcmp(target, health, path_len) == 0)
        route->kind = RC_ROUTE_HEALTH;
    else if (path_len == sizeof sse - 2 && memcmp(target, sse, path_len) == 0)
        route->kind = RC_ROUTE_SSE; /* channels in the query */
    else if (path_len == sizeof ws - 2 && memcmp(target, ws, path_len) == 0)
        route->kind = RC_ROUTE_WS;
    else if (path_len >= sizeof sse - 1 && memcmp(target, sse, sizeof sse - 1) == 0)
        route_channel(target + sizeof sse - 1, path_len - (sizeof sse - 1), RC_ROUTE_SSE, route);
    else if (path_len >= sizeof ws - 1 && memcmp(target, ws, sizeof ws - 1) == 0)
        route_channel(target + sizeof ws - 1, path_len - (sizeof ws - 1), RC_ROUTE_WS, route);
}

bool rc_http_query_next(const char *q, size_t len, size_t *pos, const char **key, size_t *key_len,
                        const char **value, size_t *value_len)
{
    while (*pos < len) {
        const char *p = q + *pos, *end = q + len;
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *e = amp ? amp : end;
        *pos = (size_t)(e - q) + (amp != NULL);
        if (e == p)
            continue; /* "a=1&&b=2": an empty parameter is no parameter */
        const char *eq = memchr(p, '=', (size_t)(e - p));
        *key = p;
        *key_len = (size_t)((eq ? eq : e) - p);
        *value = eq ? eq + 1 : e;
        *value_len = (size_t)(e - *value);
        return true;
    }
    return false;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int rc_http_percent_decode(const char *s, size_t len, char *out)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '%') {
            if (len - i < 3)
                return -1;
            int h = hex_value(s[i + 1]), l = hex_value(s[i + 2]);
            if (h < 0 || l < 0)
                return -1;
            out[n++] = (char)(h * 16 + l);
            i += 2;
        } else {
            out[n++] = s[i] == '+' ? ' ' : s[i];
        }
    }
    return (int)n;
}

bool rc_http_is_get(const struct rc_http_request *req)
{
    return req->method_len == 3 && memcmp(req->method, "GET", 3) == 0;
}
