/*
 * Configuration defaults, the ini loader and cross-key validation.
 *
 * inih splits the file into sections and key = value pairs; everything else happens here. The
 * text is fed to inih line by line through our own reader, for three reasons: Debian builds
 * inih without INI_HANDLER_LINENO, so counting lines ourselves is the only way to name the line
 * of an error; inih never reports a "[section]" line that has no keys under it, and cuts section
 * names at 49 bytes where a "[channels:PREFIX]" prefix may have 128, so the reader checks and
 * tracks sections itself; and the reader strips leading blanks, which turns off inih's
 * multi-line continuation values, so an indented key is a key and not part of the previous
 * value.
 *
 * A file is loaded into a copy of the configuration that replaces the caller's only when the
 * whole file is valid, so a failed load leaves the previous values intact.
 */
#include "ringcast/config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ini.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* A configuration file is a few kilobytes; anything far larger is the wrong file. */
#define CONFIG_FILE_MAX (1024 * 1024)

static const char *const sections[] = {"server", "http",      "sse", "channels",
                                       "feed",   "websocket", "log"};

static const char *const level_names[] = {
    [RC_LOG_ERROR] = "error",
    [RC_LOG_WARN] = "warn",
    [RC_LOG_INFO] = "info",
    [RC_LOG_DEBUG] = "debug",
};

void rc_config_defaults(struct rc_config *c)
{
    /* Zeroing first keeps the unused tails of the string fields deterministic. */
    memset(c, 0, sizeof(*c));
    strcpy(c->listen_host, "127.0.0.1");
    c->listen_port = 8080;
    c->workers = 0;
    c->max_connections_per_worker = 100000;
    c->max_connections = 0;
    c->max_connections_per_address = 0;
    c->shutdown_grace_ms = 5000;
    c->recv_buffers = 1024;
    c->recv_buffer_size = 4096;

    c->max_request_line = 4096;
    c->max_header_bytes = 8192;
    c->max_headers = 64;
    c->header_timeout_ms = 10000;
    c->cors_origin[0] = '\0';

    c->heartbeat_interval_ms = 15000;
    c->retry_ms = 0;
    c->watch_disconnects = true;

    c->history_size = 1024;
    c->history_ttl_ms = 300000;
    c->history_max_bytes = 8 * 1024 * 1024;
    c->max_lag = 1024;
    c->max_lag_bytes = 4 * 1024 * 1024;
    c->max_channels_per_connection = 16;
    c->nprefixes = 0;

    strcpy(c->socket, "ringcast.sock");
    c->socket_mode = 0660;
    c->max_payload = 1024 * 1024;
    c->max_feed_connections = 64;
    c->max_pending = 4096;
    c->feed_idle_timeout_ms = 600000;
    c->max_subscriber_buffer = 4 * 1024 * 1024;

    c->ws_protocols[0] = '\0';
    c->ws_compression = false;
    c->ws_compress_min_size = 1024;
    c->ws_max_message = 64 * 1024;
    c->ws_ping_interval_ms = 30000;
    c->ws_pong_timeout_ms = 10000;
    c->ws_close_timeout_ms = 5000;
    c->ws_upstream_max_pending = 1024;
    c->ws_max_queued = 64;

    c->log_level = RC_LOG_INFO;
}

/*
 * Parses a decimal integer of digits only (no sign, no blanks) and checks it against max while
 * accumulating, so that any number of digits is handled without overflow. Returns the number
 * of bytes used, or 0 when s does not start with a digit or the value exceeds max.
 */
static size_t parse_digits(const char *s, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;
    size_t i = 0;

    for (; s[i] >= '0' && s[i] <= '9'; i++) {
        uint64_t digit = (uint64_t)(s[i] - '0');

        if (v > max / 10 || digit > max - v * 10)
            return 0;
        v = v * 10 + digit;
    }
    *out = v;
    return i;
}

/* Parses a whole value as a decimal integer in [min, max]. */
static int parse_integer(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    size_t n = parse_digits(s, max, out);
    return n > 0 && s[n] == '\0' && *out >= min ? 0 : -EINVAL;
}

/*
 * Parses a byte size: a decimal integer with an optional suffix k, m or g (either case) for
 * powers of 1024, in [min, max] after scaling.
 */
static int parse_size(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    uint64_t v, mult = 1;
    size_t n = parse_digits(s, UINT64_MAX, &v);

    if (n == 0)
        return -EINVAL;
    switch (s[n]) {
    case '\0':
        break;
    case 'k':
    case 'K':
        mult = 1024;
        break;
    case 'm':
    case 'M':
        mult = 1024 * 1024;
        break;
    case 'g':
    case 'G':
        mult = 1024 * 1024 * 1024;
        break;
    default:
        return -EINVAL;
    }
    if (mult != 1 && s[n + 1] != '\0')
        return -EINVAL;
    if (v > max / mult)
        return -EINVAL;
    *out = v * mult;
    return *out >= min ? 0 : -EINVAL;
}

/*
 * Parses a duration given as decimal seconds ("15", "0.25") into milliseconds in [min, max].
 * Digits after the third decimal must be zeros: a value finer than the millisecond the engine
 * works in would otherwise be rounded silently.
 */
static int parse_seconds(const char *s, uint64_t min_ms, uint64_t max_ms, uint64_t *out)
{
    uint64_t secs, ms = 0;
    size_t n = parse_digits(s, max_ms / 1000, &secs);

    if (n == 0)
        return -EINVAL;
    s += n;
    if (*s == '.') {
        uint64_t scale = 100;

        s++;
        if (*s < '0' || *s > '9')
            return -EINVAL;
        for (; *s >= '0' && *s <= '9'; s++) {
            if (scale == 0 && *s != '0')
                return -EINVAL;
            ms += (uint64_t)(*s - '0') * scale;
            scale /= 10;
        }
    }
    if (*s != '\0')
        return -EINVAL;
    *out = secs * 1000 + ms;
    return *out >= min_ms && *out <= max_ms ? 0 : -EINVAL;
}

/*
 * Parses "host:port" where host is an IPv4 literal, a bracketed IPv6 literal or "*" for all
 * IPv4 addresses. Names are refused because resolving them would make start-up depend on DNS.
 */
static int parse_listen(struct rc_config *c, const char *v)
{
    const char *colon = strrchr(v, ':');
    const char *host = v;
    size_t host_len;
    int family = AF_INET;
    unsigned char addr[sizeof(struct in6_addr)];
    uint64_t port;

    if (!colon || parse_integer(colon + 1, 1, 65535, &port) < 0)
        return -EINVAL;
    host_len = (size_t)(colon - v);
    if (host_len == 1 && v[0] == '*') {
        host = "0.0.0.0";
        host_len = strlen(host);
    } else if (host_len >= 2 && v[0] == '[' && v[host_len - 1] == ']') {
        host++;
        host_len -= 2;
        family = AF_INET6;
    }
    if (host_len >= sizeof(c->listen_host))
        return -EINVAL;
    memcpy(c->listen_host, host, host_len);
    memset(c->listen_host + host_len, 0, sizeof(c->listen_host) - host_len);
    if (inet_pton(family, c->listen_host, addr) != 1)
        return -EINVAL;
    c->listen_port = (uint16_t)port;
    return 0;
}

/* Parses "auto" (stored as 0, one worker per online CPU) or a worker count. */
static int parse_workers(struct rc_config *c, const char *v)
{
    uint64_t n;

    if (strcmp(v, "auto") == 0) {
        c->workers = 0;
        return 0;
    }
    if (parse_integer(v, 1, 1024, &n) < 0)
        return -EINVAL;
    c->workers = (uint32_t)n;
    return 0;
}

/* Parses the number of provided receive buffers, which io_uring needs to be a power of two. */
static int parse_recv_buffers(struct rc_config *c, const char *v)
{
    uint64_t n;

    if (parse_integer(v, 1, 32768, &n) < 0 || (n & (n - 1)) != 0)
        return -EINVAL;
    c->recv_buffers = (uint32_t)n;
    return 0;
}

/*
 * Copies the CORS origin. Control characters are refused because the value is sent verbatim
 * as a response header, where CR or LF would let the file inject headers.
 */
static int parse_cors_origin(struct rc_config *c, const char *v)
{
    size_t len = strlen(v);

    if (len >= sizeof(c->cors_origin))
        return -EINVAL;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)v[i] < 0x20 || v[i] == 0x7f)
            return -EINVAL;
    memcpy(c->cors_origin, v, len);
    memset(c->cors_origin + len, 0, sizeof(c->cors_origin) - len);
    return 0;
}

/* Copies the feed socket path, which must fit sun_path with its terminating NUL. */
static int parse_socket(struct rc_config *c, const char *v)
{
    size_t len = strlen(v);

    if (len == 0 || len >= sizeof(c->socket))
        return -EINVAL;
    memcpy(c->socket, v, len);
    memset(c->socket + len, 0, sizeof(c->socket) - len);
    return 0;
}

/* Parses the feed socket's permission bits as octal digits, like chmod. */
static int parse_mode(struct rc_config *c, const char *v)
{
    unsigned mode = 0;
    const char *s = v;

    for (; *s >= '0' && *s <= '7'; s++) {
        mode = mode * 8 + (unsigned)(*s - '0');
        if (mode > 0777)
            return -EINVAL;
    }
    if (s == v || *s != '\0')
        return -EINVAL;
    c->socket_mode = (mode_t)mode;
    return 0;
}

/* Parses a log level name. */
static int parse_level(struct rc_config *c, const char *v)
{
    for (size_t i = 0; i < ARRAY_SIZE(level_names); i++) {
        if (strcmp(v, level_names[i]) == 0) {
            c->log_level = (enum rc_log_level)i;
            return 0;
        }
    }
    return -EINVAL;
}

/* Parses "on" or "off". */
static int parse_switch(const char *v, bool *out)
{
    if (strcmp(v, "on") == 0)
        *out = true;
    else if (strcmp(v, "off") == 0)
        *out = false;
    else
        return -EINVAL;
    return 0;
}

static int parse_watch_disconnects(struct rc_config *c, const char *v)
{
    return parse_switch(v, &c->watch_disconnects);
}

static int parse_ws_compression(struct rc_config *c, const char *v)
{
    return parse_switch(v, &c->ws_compression);
}

/*
 * Parses the subprotocol list "a, b" into "a,b": comma-separated tokens (RFC 6455 section 4.1:
 * the characters of an HTTP token), blanks around the commas allowed, no empty element. The
 * handshake then compares the client's offers with these names byte for byte.
 */
static int parse_ws_protocols(struct rc_config *c, const char *v)
{
    static const char separators[] = "()<>@,;:\\\"/[]?={} \t";
    char out[sizeof(c->ws_protocols)];
    size_t n = 0;
    const char *p = v;

    while (*p) {
        const char *start;

        while (*p == ' ' || *p == '\t')
            p++;
        start = p;
        while (*p > 0x20 && *p < 0x7f && !strchr(separators, *p))
            p++;
        if (p == start || n + (size_t)(p - start) + 2 > sizeof(out))
            return -EINVAL;
        if (n)
            out[n++] = ',';
        memcpy(out + n, start, (size_t)(p - start));
        n += (size_t)(p - start);
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p == ',' && p[1] != '\0')
            p++;
        else if (*p != '\0')
            return -EINVAL;
    }
    memset(c->ws_protocols, 0, sizeof(c->ws_protocols));
    memcpy(c->ws_protocols, out, n);
    return 0;
}

enum key_kind {
    KEY_INTEGER, /* an integer field in [min, max] */
    KEY_SIZE,    /* an integer field in bytes, suffixes k, m, g allowed */
    KEY_SECONDS, /* an integer field in ms, written as decimal seconds; min and max in ms */
    KEY_CUSTOM,  /* parsed by `parse`, explained by `expect` */
};

struct key {
    const char *section;
    const char *name;
    enum key_kind kind;
    size_t offset, width; /* of the uint32_t or uint64_t field, for all kinds but KEY_CUSTOM */
    uint64_t min, max;
    int (*parse)(struct rc_config *c, const char *value); /* for KEY_CUSTOM */
    const char *expect; /* for KEY_CUSTOM: what a valid value looks like */
};

#define GB (1024ull * 1024 * 1024)

#define FIELD_OF(type, sec, key, kind_, field, lo, hi)                                             \
    {                                                                                              \
        .section = sec, .name = key, .kind = kind_, .offset = offsetof(type, field),               \
        .width = sizeof(((type *)NULL)->field), .min = lo, .max = hi                               \
    }
#define NUMBER(sec, key, kind_, field, lo, hi)                                                     \
    FIELD_OF(struct rc_config, sec, key, kind_, field, lo, hi)
#define CUSTOM(sec, key, fn, what)                                                                 \
    {                                                                                              \
        .section = sec, .name = key, .kind = KEY_CUSTOM, .parse = fn, .expect = what               \
    }

/* Every key of the file; conf/ringcast.ini documents each of them. */
static const struct key keys[] = {
    CUSTOM("server", "listen", parse_listen,
           "host:port with an IPv4 address, [IPv6 address] or * and a port 1-65535"),
    CUSTOM("server", "workers", parse_workers, "'auto' or an integer 1-1024"),
    NUMBER("server", "max_connections_per_worker", KEY_INTEGER, max_connections_per_worker, 1,
           10000000),
    NUMBER("server", "max_connections", KEY_INTEGER, max_connections, 0, 10000000),
    NUMBER("server", "max_connections_per_address", KEY_INTEGER, max_connections_per_address, 0,
           10000000),
    NUMBER("server", "shutdown_grace", KEY_SECONDS, shutdown_grace_ms, 0, 3600000),
    CUSTOM("server", "recv_buffers", parse_recv_buffers, "a power of two 1-32768"),
    NUMBER("server", "recv_buffer_size", KEY_SIZE, recv_buffer_size, 256, 65536),

    NUMBER("http", "max_request_line", KEY_SIZE, max_request_line, 16, 65536),
    NUMBER("http", "max_header_bytes", KEY_SIZE, max_header_bytes, 256, 1048576),
    NUMBER("http", "max_headers", KEY_INTEGER, max_headers, 1, 1024),
    NUMBER("http", "header_timeout", KEY_SECONDS, header_timeout_ms, 100, 3600000),
    CUSTOM("http", "cors_origin", parse_cors_origin,
           "at most 255 bytes without control characters"),

    NUMBER("sse", "heartbeat_interval", KEY_SECONDS, heartbeat_interval_ms, 0, 3600000),
    NUMBER("sse", "retry", KEY_SECONDS, retry_ms, 0, 3600000),
    CUSTOM("sse", "watch_disconnects", parse_watch_disconnects, "on or off"),

    NUMBER("channels", "history_size", KEY_INTEGER, history_size, 1, 1048576),
    NUMBER("channels", "history_ttl", KEY_SECONDS, history_ttl_ms, 0, 86400000),
    NUMBER("channels", "history_max_bytes", KEY_SIZE, history_max_bytes, 1024, 64 * GB),
    NUMBER("channels", "max_lag", KEY_INTEGER, max_lag, 1, 1048576),
    NUMBER("channels", "max_lag_bytes", KEY_SIZE, max_lag_bytes, 0, 64 * GB),
    NUMBER("channels", "max_channels_per_connection", KEY_INTEGER, max_channels_per_connection, 1,
           1024),

    CUSTOM("feed", "socket", parse_socket, "a path of 1-107 bytes"),
    CUSTOM("feed", "mode", parse_mode, "octal permission bits 0-0777"),
    NUMBER("feed", "max_payload", KEY_SIZE, max_payload, 1, 512 * 1024 * 1024),
    NUMBER("feed", "max_connections", KEY_INTEGER, max_feed_connections, 1, 65536),
    NUMBER("feed", "max_pending", KEY_INTEGER, max_pending, 1, 1048576),
    NUMBER("feed", "idle_timeout", KEY_SECONDS, feed_idle_timeout_ms, 0, 86400000),
    NUMBER("feed", "max_subscriber_buffer", KEY_SIZE, max_subscriber_buffer, 1024, 4 * GB),

    CUSTOM("websocket", "protocols", parse_ws_protocols,
           "a comma-separated list of tokens, at most 255 bytes"),
    CUSTOM("websocket", "compression", parse_ws_compression, "on or off"),
    NUMBER("websocket", "compress_min_size", KEY_SIZE, ws_compress_min_size, 0, 512 * 1024 * 1024),
    NUMBER("websocket", "max_message", KEY_SIZE, ws_max_message, 125, 64 * 1024 * 1024),
    NUMBER("websocket", "ping_interval", KEY_SECONDS, ws_ping_interval_ms, 0, 3600000),
    NUMBER("websocket", "pong_timeout", KEY_SECONDS, ws_pong_timeout_ms, 100, 3600000),
    NUMBER("websocket", "close_timeout", KEY_SECONDS, ws_close_timeout_ms, 100, 3600000),
    NUMBER("websocket", "upstream_max_pending", KEY_INTEGER, ws_upstream_max_pending, 1, 1048576),
    NUMBER("websocket", "max_queued", KEY_INTEGER, ws_max_queued, 1, 65536),

    CUSTOM("log", "level", parse_level, "error, warn, info or debug"),
};

/*
 * The keys of a "[channels:PREFIX]" section, with the ranges of their [channels] namesakes. The
 * fields are those of struct rc_config_prefix.
 */
static const struct key prefix_keys[] = {
    FIELD_OF(struct rc_config_prefix, "channels:", "history_size", KEY_INTEGER, history_size, 1,
             1048576),
    FIELD_OF(struct rc_config_prefix, "channels:", "history_ttl", KEY_SECONDS, history_ttl_ms, 0,
             86400000),
    FIELD_OF(struct rc_config_prefix, "channels:", "history_max_bytes", KEY_SIZE, history_max_bytes,
             1024, 64 * GB),
};

/* The section name that starts a per-prefix section: "[channels:news.]". */
#define PREFIX_SECTION     "channels:"
#define PREFIX_SECTION_LEN (sizeof(PREFIX_SECTION) - 1)
#define PREFIX_MAX         (sizeof(((struct rc_config_prefix *)NULL)->prefix) - 1)

/* Formats a byte count with the largest suffix that divides it, as a user would write it. */
static void format_size(char *out, size_t outlen, uint64_t v)
{
    static const char suffix[] = "kmg";
    int i = -1;

    while (v >= 1024 && v % 1024 == 0 && i < 2) {
        v /= 1024;
        i++;
    }
    if (i < 0)
        snprintf(out, outlen, "%llu", (unsigned long long)v);
    else
        snprintf(out, outlen, "%llu%c", (unsigned long long)v, suffix[i]);
}

/* Formats milliseconds as decimal seconds without trailing zeros ("0.1", "3600"). */
static void format_seconds(char *out, size_t outlen, uint64_t ms)
{
    int decimals = 3;
    uint64_t frac = ms % 1000;

    if (frac == 0) {
        snprintf(out, outlen, "%llu", (unsigned long long)(ms / 1000));
        return;
    }
    while (frac % 10 == 0) {
        frac /= 10;
        decimals--;
    }
    snprintf(out, outlen, "%llu.%0*llu", (unsigned long long)(ms / 1000), decimals,
             (unsigned long long)frac);
}

/* Describes the values a key accepts, for "expected ..." messages. */
static void describe(const struct key *k, char *out, size_t outlen)
{
    char lo[24], hi[24];

    switch (k->kind) {
    case KEY_INTEGER:
        snprintf(out, outlen, "an integer %llu-%llu", (unsigned long long)k->min,
                 (unsigned long long)k->max);
        break;
    case KEY_SIZE:
        format_size(lo, sizeof(lo), k->min);
        format_size(hi, sizeof(hi), k->max);
        snprintf(out, outlen, "a size in bytes %s-%s (suffix k, m or g allowed)", lo, hi);
        break;
    case KEY_SECONDS:
        format_seconds(lo, sizeof(lo), k->min);
        format_seconds(hi, sizeof(hi), k->max);
        snprintf(out, outlen, "seconds %s-%s (up to three decimals)", lo, hi);
        break;
    case KEY_CUSTOM:
        snprintf(out, outlen, "%s", k->expect);
        break;
    }
}

/*
 * Parses value into the field that k describes: of base for numbers (a struct rc_config, or a
 * struct rc_config_prefix for prefix_keys), of c for KEY_CUSTOM. Returns 0 or -EINVAL.
 */
static int parse_value(const struct key *k, struct rc_config *c, void *base, const char *value)
{
    uint64_t v = 0;
    int r;

    if (k->kind == KEY_CUSTOM)
        return k->parse(c, value);
    if (k->kind == KEY_INTEGER)
        r = parse_integer(value, k->min, k->max, &v);
    else if (k->kind == KEY_SIZE)
        r = parse_size(value, k->min, k->max, &v);
    else
        r = parse_seconds(value, k->min, k->max, &v);
    if (r < 0)
        return r;
    if (k->width == sizeof(uint64_t)) {
        uint64_t *field = (uint64_t *)((char *)base + k->offset);
        *field = v;
    } else {
        uint32_t *field = (uint32_t *)((char *)base + k->offset);
        *field = (uint32_t)v;
    }
    return 0;
}

/* A "[channels:PREFIX]" section of the text being loaded. */
struct prefix_section {
    unsigned index;                         /* its entry in cfg.prefixes */
    unsigned line;                          /* of its header */
    unsigned seen[ARRAY_SIZE(prefix_keys)]; /* the line each key was set on, 0 if not yet */
};

/* The state of one load, shared by the reader and the handler. */
struct load {
    struct rc_config cfg; /* the working copy */
    const char *name;     /* stands for the file in messages */
    const char *pos, *end;
    unsigned line;                   /* the line inih is processing, counted from 1 */
    unsigned seen[ARRAY_SIZE(keys)]; /* the line each key was set on, 0 if not yet */
    unsigned error_line;             /* the line of the first error, 0 while there is none */
    char *err;
    size_t errlen;
    /*
     * The prefix sections of this text, and the one the current line is in (NULL in any other
     * section). inih cuts section names at 49 bytes, so its name for a prefix section is
     * unusable; the reader sees every header before inih handles the keys below it.
     */
    struct prefix_section sections[RC_CONFIG_MAX_PREFIXES];
    unsigned nsections;
    struct prefix_section *current;
};

/* Records the first error as "name:line: message"; later errors are consequences of it. */
__attribute__((format(printf, 2, 3))) static void fail(struct load *ld, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (ld->error_line)
        return;
    ld->error_line = ld->line;
    n = snprintf(ld->err, ld->errlen, "%s:%u: ", ld->name, ld->line);
    if (n >= 0 && (size_t)n < ld->errlen) {
        va_start(ap, fmt);
        vsnprintf(ld->err + n, ld->errlen - (size_t)n, fmt, ap);
        va_end(ap);
    }
}

/* Whether c is blank space that may surround a line. */
static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

/* Whether c may appear in a channel name, and so in a channel prefix. */
static bool is_channel_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           strchr("_.:@-", c) != NULL;
}

/*
 * Starts a "[channels:PREFIX]" section: checks the prefix, refuses one this text already has,
 * and finds the entry of cfg.prefixes it fills, which is the entry for the same prefix if an
 * earlier load made one, so that a later file overrides an earlier one as it does for keys.
 * Returns 0, or -EINVAL after recording the error.
 */
static int start_prefix_section(struct load *ld, const char *prefix, size_t len)
{
    struct rc_config *c = &ld->cfg;
    struct prefix_section *sec;
    unsigned index;

    if (len == 0 || len > PREFIX_MAX) {
        fail(ld, "[%s%.*s]: the prefix must be 1-%zu characters long", PREFIX_SECTION, (int)len,
             prefix, PREFIX_MAX);
        return -EINVAL;
    }
    for (size_t i = 0; i < len; i++) {
        if (!is_channel_char(prefix[i])) {
            fail(ld, "[%s%.*s]: a prefix may only hold A-Z, a-z, 0-9 and _.:@-", PREFIX_SECTION,
                 (int)len, prefix);
            return -EINVAL;
        }
    }
    for (unsigned i = 0; i < ld->nsections; i++) {
        sec = &ld->sections[i];
        if (strlen(c->prefixes[sec->index].prefix) == len &&
            memcmp(c->prefixes[sec->index].prefix, prefix, len) == 0) {
            fail(ld, "duplicate section [%s%.*s] (first on line %u)", PREFIX_SECTION, (int)len,
                 prefix, sec->line);
            return -EINVAL;
        }
    }
    for (index = 0; index < c->nprefixes; index++)
        if (strlen(c->prefixes[index].prefix) == len &&
            memcmp(c->prefixes[index].prefix, prefix, len) == 0)
            break;
    if (index == RC_CONFIG_MAX_PREFIXES) {
        fail(ld, "more than %d [%sPREFIX] sections", RC_CONFIG_MAX_PREFIXES, PREFIX_SECTION);
        return -EINVAL;
    }
    if (index == c->nprefixes)
        c->nprefixes++;
    /* Zeroed, so that the name's unused tail is deterministic like every string field. */
    memset(&c->prefixes[index], 0, sizeof(c->prefixes[index]));
    memcpy(c->prefixes[index].prefix, prefix, len);
    sec = &ld->sections[ld->nsections++];
    memset(sec, 0, sizeof(*sec));
    sec->index = index;
    sec->line = ld->line;
    ld->current = sec;
    return 0;
}

/*
 * Checks a "[section]" line: the name must be known, and only blanks or a comment may follow
 * the ']' (inih would silently ignore anything there). Returns 0, or -EINVAL after recording
 * the error.
 */
static int check_section(struct load *ld, const char *line)
{
    const char *close = strchr(line, ']');
    const char *rest;
    size_t name_len;

    if (!close) {
        fail(ld, "section header without ']'");
        return -EINVAL;
    }
    name_len = (size_t)(close - line - 1);
    for (rest = close + 1; is_space(*rest); rest++)
        ;
    if (*rest != '\0' && *rest != ';' && *rest != '#') {
        fail(ld, "unexpected text after [%.*s]", (int)name_len, line + 1);
        return -EINVAL;
    }
    ld->current = NULL;
    if (name_len >= PREFIX_SECTION_LEN && memcmp(line + 1, PREFIX_SECTION, PREFIX_SECTION_LEN) == 0)
        return start_prefix_section(ld, line + 1 + PREFIX_SECTION_LEN,
                                    name_len - PREFIX_SECTION_LEN);
    for (size_t i = 0; i < ARRAY_SIZE(sections); i++)
        if (strlen(sections[i]) == name_len && memcmp(sections[i], line + 1, name_len) == 0)
            return 0;
    fail(ld, "unknown section [%.*s]", (int)name_len, line + 1);
    return -EINVAL;
}

/*
 * The ini_reader: copies the next line of the text into str (size num) without its line end
 * and leading blanks. Returns NULL at the end of the text and after the first error, which
 * stops inih.
 */
static char *read_line(char *str, int num, void *stream)
{
    struct load *ld = stream;
    const char *start = ld->pos, *nl;
    size_t len;

    if (ld->error_line || ld->pos == ld->end)
        return NULL;
    nl = memchr(start, '\n', (size_t)(ld->end - start));
    len = (size_t)((nl ? nl : ld->end) - start);
    ld->pos = nl ? nl + 1 : ld->end;
    ld->line++;

    /* inih skips a UTF-8 byte order mark itself, but the section check below runs first. */
    if (ld->line == 1 && len >= 3 && memcmp(start, "\xEF\xBB\xBF", 3) == 0) {
        start += 3;
        len -= 3;
    }
    if (memchr(start, '\0', len)) {
        fail(ld, "line contains a NUL byte");
        return NULL;
    }
    while (len > 0 && is_space(*start)) {
        start++;
        len--;
    }
    if (len >= (size_t)num) {
        fail(ld, "line is longer than %d bytes", num - 1);
        return NULL;
    }
    memcpy(str, start, len);
    str[len] = '\0';
    if (str[0] == '[' && check_section(ld, str) < 0)
        return NULL;
    return str;
}

/*
 * Sets key k from value, unless the section set it before (seen: the line it was set on, 0 if
 * not yet); base is the struct its field is in. Returns 1, or 0 after recording the error.
 */
static int set_key(struct load *ld, const struct key *k, unsigned *seen, const char *section,
                   void *base, const char *value)
{
    char expect[160];

    if (*seen) {
        fail(ld, "duplicate key '%s' in [%s] (first set on line %u)", k->name, section, *seen);
        return 0;
    }
    *seen = ld->line;
    if (parse_value(k, &ld->cfg, base, value) < 0) {
        describe(k, expect, sizeof(expect));
        fail(ld, "%s: expected %s, got '%s'", k->name, expect, value);
        return 0;
    }
    return 1;
}

/* Handles a key of the current "[channels:PREFIX]" section. */
static int on_prefix_key(struct load *ld, const char *name, const char *value)
{
    struct prefix_section *sec = ld->current;
    struct rc_config_prefix *p = &ld->cfg.prefixes[sec->index];
    char section[sizeof(PREFIX_SECTION) + sizeof(p->prefix)];

    snprintf(section, sizeof(section), "%s%s", PREFIX_SECTION, p->prefix);
    for (size_t i = 0; i < ARRAY_SIZE(prefix_keys); i++)
        if (strcmp(prefix_keys[i].name, name) == 0)
            return set_key(ld, &prefix_keys[i], &sec->seen[i], section, p, value);
    fail(ld,
         "unknown key '%s' in [%s] (a prefix section takes history_size, history_ttl and "
         "history_max_bytes)",
         name, section);
    return 0;
}

/* The ini_handler: finds the key, refuses duplicates and parses the value. */
static int on_key(void *user, const char *section, const char *name, const char *value)
{
    struct load *ld = user;
    const char *homes[2];
    size_t nhomes = 0;

    if (ld->current)
        return on_prefix_key(ld, name, value);
    if (section[0] == '\0') {
        fail(ld, "key '%s' is outside any section", name);
        return 0;
    }
    for (size_t i = 0; i < ARRAY_SIZE(keys); i++) {
        const struct key *k = &keys[i];

        if (strcmp(k->name, name) != 0)
            continue;
        if (strcmp(k->section, section) == 0)
            return set_key(ld, k, &ld->seen[i], section, &ld->cfg, value);
        /* max_connections lives in two sections; no name lives in more. */
        if (nhomes < ARRAY_SIZE(homes))
            homes[nhomes++] = k->section;
    }
    if (nhomes == 2)
        fail(ld, "unknown key '%s' in [%s] (it belongs in [%s] or [%s])", name, section, homes[0],
             homes[1]);
    else if (nhomes == 1)
        fail(ld, "unknown key '%s' in [%s] (it belongs in [%s])", name, section, homes[0]);
    else
        fail(ld, "unknown key '%s' in [%s]", name, section);
    return 0;
}

/* The entry of keys[] for [section] name; the caller knows that there is one. */
static const struct key *find_key(const char *section, const char *name)
{
    size_t i = 0;

    while (strcmp(keys[i].section, section) != 0 || strcmp(keys[i].name, name) != 0)
        i++;
    return &keys[i];
}

/*
 * Gives every key a prefix section of this text left out the value of its [channels] namesake.
 * It runs once the whole text is read, so a [channels] section after the prefix sections
 * counts as well.
 */
static void inherit_channel_keys(struct load *ld)
{
    for (unsigned i = 0; i < ld->nsections; i++) {
        const struct prefix_section *sec = &ld->sections[i];
        struct rc_config_prefix *p = &ld->cfg.prefixes[sec->index];

        for (size_t j = 0; j < ARRAY_SIZE(prefix_keys); j++) {
            const struct key *from = find_key("channels", prefix_keys[j].name);

            if (!sec->seen[j])
                memcpy((char *)p + prefix_keys[j].offset, (char *)&ld->cfg + from->offset,
                       from->width);
        }
    }
}

int rc_config_load_string(struct rc_config *c, const char *name, const char *text, size_t len,
                          char *err, size_t errlen)
{
    struct load ld = {
        .cfg = *c,
        .name = name,
        .pos = text,
        .end = text + len,
        .err = err,
        .errlen = errlen,
    };
    int r = ini_parse_stream(read_line, &ld, on_key, &ld);

    /*
     * inih reports lines it cannot split (no '=' or ':') only through its return value, and it
     * keeps reading after them, so our own first error may come from a later line.
     */
    if (r > 0 && (!ld.error_line || (unsigned)r < ld.error_line)) {
        ld.error_line = 0;
        ld.line = (unsigned)r;
        fail(&ld, "expected 'key = value', '[section]' or a comment");
    } else if (r < 0) {
        /* Only inih's heap line buffer can fail, and only if someone switched it on. */
        snprintf(err, errlen, "%s: inih failed to allocate a line buffer", name);
        return -ENOMEM;
    }
    if (ld.error_line)
        return -EINVAL;
    inherit_channel_keys(&ld);
    *c = ld.cfg;
    return 0;
}

/*
 * Reads the whole file at path into a heap buffer. Reading until end of file rather than
 * trusting the size from fstat() also works for pipes such as <(generate-config).
 * Returns 0 with *text and *len (the caller frees *text), or a negative errno.
 */
static int read_file(const char *path, char **text, size_t *len)
{
    size_t cap = 0, used = 0;
    char *buf = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    int r = 0;

    if (fd < 0)
        return -errno;
    for (;;) {
        ssize_t n;

        if (used == cap) {
            size_t grown_cap = cap ? cap * 2 : 4096;
            char *grown = realloc(buf, grown_cap);

            if (!grown) {
                r = -ENOMEM;
                break;
            }
            buf = grown;
            cap = grown_cap;
        }
        n = read(fd, buf + used, cap - used);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            r = -errno;
            break;
        }
        if (n == 0)
            break;
        used += (size_t)n;
        if (used > CONFIG_FILE_MAX) {
            r = -EFBIG;
            break;
        }
    }
    close(fd);
    if (r < 0) {
        free(buf);
        return r;
    }
    *text = buf;
    *len = used;
    return 0;
}

int rc_config_load_file(struct rc_config *c, const char *path, char *err, size_t errlen)
{
    char *text = NULL;
    size_t len = 0;
    int r = read_file(path, &text, &len);

    if (r < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(-r));
        return r;
    }
    r = rc_config_load_string(c, path, text, len, err, errlen);
    free(text);
    return r;
}

/*
 * There is deliberately no rule between max_lag and history_size any more. It used to demand
 * max_lag <= history_size, but with history_ttl, history_max_bytes and per-prefix sizes the
 * window a channel really holds can be far smaller than history_size, so the rule no longer
 * promised anything; and it would have forced max_lag below the smallest prefix size, which
 * forbids a one-event "latest value" prefix. A subscriber is cut either way when it falls more
 * than max_lag events behind or when the window drops an event it has not been sent yet.
 */
int rc_config_validate(const struct rc_config *c, char *err, size_t errlen)
{
    if (c->max_request_line > c->max_header_bytes) {
        snprintf(err, errlen, "max_request_line (%u) must not exceed max_header_bytes (%u)",
                 c->max_request_line, c->max_header_bytes);
        return -EINVAL;
    }
    /* One pending ping per connection: its pong must be due before the next ping goes out. */
    if (c->ws_ping_interval_ms && c->ws_pong_timeout_ms >= c->ws_ping_interval_ms) {
        snprintf(err, errlen, "pong_timeout (%u ms) must be below ping_interval (%u ms)",
                 c->ws_pong_timeout_ms, c->ws_ping_interval_ms);
        return -EINVAL;
    }
    return 0;
}

void rc_config_channel_history(const struct rc_config *c, const char *name, size_t len,
                               uint32_t *size, uint32_t *ttl_ms, uint64_t *max_bytes)
{
    const struct rc_config_prefix *best = NULL;
    size_t best_len = 0;

    for (uint32_t i = 0; i < c->nprefixes; i++) {
        const struct rc_config_prefix *p = &c->prefixes[i];
        size_t plen = strlen(p->prefix);

        if (plen > best_len && plen <= len && memcmp(p->prefix, name, plen) == 0) {
            best = p;
            best_len = plen;
        }
    }
    if (best) {
        *size = best->history_size;
        *ttl_ms = best->history_ttl_ms;
        *max_bytes = best->history_max_bytes;
    } else {
        *size = c->history_size;
        *ttl_ms = c->history_ttl_ms;
        *max_bytes = c->history_max_bytes;
    }
}

/* Copies size bytes at live over those at next; returns whether they differed. */
static bool keep(void *next, const void *live, size_t size)
{
    bool differs = memcmp(next, live, size) != 0;

    memcpy(next, live, size);
    return differs;
}

/*
 * Copies the prefix sections; returns whether they differed. Entries are compared field by
 * field because the padding inside struct rc_config_prefix is not part of the value.
 */
static bool keep_prefixes(struct rc_config *next, const struct rc_config *live)
{
    bool differs = next->nprefixes != live->nprefixes;

    for (uint32_t i = 0; !differs && i < live->nprefixes; i++) {
        const struct rc_config_prefix *a = &next->prefixes[i], *b = &live->prefixes[i];

        differs = strcmp(a->prefix, b->prefix) != 0 || a->history_size != b->history_size ||
                  a->history_ttl_ms != b->history_ttl_ms ||
                  a->history_max_bytes != b->history_max_bytes;
    }
    next->nprefixes = live->nprefixes;
    memcpy(next->prefixes, live->prefixes, sizeof(next->prefixes));
    return differs;
}

#define KEEP(field) keep(&next->field, &live->field, sizeof(live->field))

/*
 * Keeps a limit's running value when a reload would turn it on or off; a new non-zero value
 * for a limit that stays on is taken. Returns whether it kept it.
 */
static bool keep_on_off(uint32_t *next, const uint32_t *live)
{
    if ((*next == 0) == (*live == 0))
        return false;
    *next = *live;
    return true;
}

void rc_config_keep_restart_keys(struct rc_config *next, const struct rc_config *live,
                                 void (*changed)(const char *key, void *arg), void *arg)
{
    /*
     * Why each key needs a restart, from how the engine uses it: the listeners, the worker
     * threads, their rings' file tables, provided buffers and canned responses (CORS, retry:)
     * are made once at start; a request head split across reads sits in a buffer of
     * max_header_bytes, and a compressed client message inflates into one of max_message, which
     * a larger value would overrun; a channel's history is sized when the channel is made; the
     * feed's socket is bound and chmod-ed once, its ring's completion queue is sized from
     * max_pending, and a publisher's receive buffer is bounded by max_payload while a command
     * is half read; max_queued bounds a queue per connection that may be sized when it is made.
     * The `|` (not `||`) copies both fields of listen whatever the first comparison says.
     */
    const struct {
        const char *key;
        bool differs;
    } kept[] = {
        {"[server] listen", KEEP(listen_host) | KEEP(listen_port)},
        {"[server] workers", KEEP(workers)},
        {"[server] max_connections_per_worker", KEEP(max_connections_per_worker)},
        /* On or off selects how the workers accept (RC_ACCEPT_SLOTS); the value may change. */
        {"[server] max_connections_per_address",
         keep_on_off(&next->max_connections_per_address, &live->max_connections_per_address)},
        {"[server] recv_buffers", KEEP(recv_buffers)},
        {"[server] recv_buffer_size", KEEP(recv_buffer_size)},
        {"[http] max_header_bytes", KEEP(max_header_bytes)},
        {"[http] cors_origin", KEEP(cors_origin)},
        {"[sse] retry", KEEP(retry_ms)},
        {"[channels] history_size", KEEP(history_size)},
        {"[channels] history_ttl", KEEP(history_ttl_ms)},
        {"[channels] history_max_bytes", KEEP(history_max_bytes)},
        {"[channels:PREFIX]", keep_prefixes(next, live)},
        {"[feed] socket", KEEP(socket)},
        {"[feed] mode", KEEP(socket_mode)},
        {"[feed] max_payload", KEEP(max_payload)},
        {"[feed] max_pending", KEEP(max_pending)},
        {"[websocket] max_message", KEEP(ws_max_message)},
        {"[websocket] max_queued", KEEP(ws_max_queued)},
    };

    for (size_t i = 0; i < ARRAY_SIZE(kept); i++)
        if (kept[i].differs)
            changed(kept[i].key, arg);
}
