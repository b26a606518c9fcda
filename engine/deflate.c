/*
 * permessage-deflate: offer negotiation, whole-message compression and bounded inflation.
 *
 * The negotiation parser walks the header value once, checking the grammar of RFC 6455 section
 * 9.1 as it goes and judging each permessage-deflate offer by itself: an offer is taken whole or
 * passed over whole, never half-accepted.
 *
 * Compression never keeps a context between messages: an event is compressed once and the same
 * bytes go to every subscriber, so the server always claims server_no_context_takeover.
 *
 * Inflation appends the 00 00 ff ff that the sender stripped (RFC 7692 section 7.2.2) and stops
 * the moment the output would pass the caller's limit, so a few kilobytes of zeros compressed a
 * thousandfold cost the server no more than the limit.
 */
#include "ringcast/deflate.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Makes zlib's next_in a pointer to const, as the input here is. */
#define ZLIB_CONST
#include <zlib.h>

/* RFC 9110 tchar: the bytes of an extension name, a parameter name or a token value. */
static const bool tchar[256] = {
    ['0' ... '9'] = true, ['A' ... 'Z'] = true, ['a' ... 'z'] = true, ['!'] = true,  ['#'] = true,
    ['$'] = true,         ['%'] = true,         ['&'] = true,         ['\''] = true, ['*'] = true,
    ['+'] = true,         ['-'] = true,         ['.'] = true,         ['^'] = true,  ['_'] = true,
    ['`'] = true,         ['|'] = true,         ['~'] = true,
};

/* A position in the header value being parsed. */
struct cursor {
    const char *p, *end;
};

/*
 * A parameter value, unescaped. Only window sizes (at most two digits) are ever read, so only
 * two bytes are kept; len counts them all, so a longer value is still seen to be too long.
 */
struct param_value {
    bool present;
    char bytes[2];
    size_t len;
};

/* The parameters of a permessage-deflate offer (RFC 7692 section 7.1), in param_names order. */
enum param {
    SERVER_NO_CONTEXT_TAKEOVER,
    CLIENT_NO_CONTEXT_TAKEOVER,
    SERVER_MAX_WINDOW_BITS,
    CLIENT_MAX_WINDOW_BITS,
    NUM_PARAMS,
};

static const char *const param_names[NUM_PARAMS] = {
    "server_no_context_takeover",
    "client_no_context_takeover",
    "server_max_window_bits",
    "client_max_window_bits",
};

/* What one permessage-deflate offer asks for. Window sizes are 0 when not given. */
struct offer {
    bool seen[NUM_PARAMS];
    int server_bits, client_bits;
    bool declined; /* an unknown or repeated parameter, or a value the server cannot honour */
};

/* Skips optional whitespace (spaces and tabs). */
static void skip_ows(struct cursor *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t'))
        c->p++;
}

/* Consumes a token and returns its length; 0 means there was none. */
static size_t take_token(struct cursor *c)
{
    const char *start = c->p;

    while (c->p < c->end && tchar[(unsigned char)*c->p])
        c->p++;
    return (size_t)(c->p - start);
}

/* Keeps one more byte of a value, counting it even when there is no room left to keep it. */
static void value_push(struct param_value *v, char ch)
{
    if (v->len < sizeof v->bytes)
        v->bytes[v->len] = ch;
    v->len++;
}

/*
 * Consumes a parameter value, a token or a quoted-string, into v. Returns 0, or -1 when there is
 * no value or the quoted-string is malformed or unescapes to something other than a token, which
 * RFC 6455 section 9.1 forbids.
 */
static int take_value(struct cursor *c, struct param_value *v)
{
    v->present = true;
    v->len = 0;
    if (c->p == c->end)
        return -1;
    if (*c->p != '"') {
        const char *start = c->p;
        size_t n = take_token(c);

        for (size_t i = 0; i < n; i++)
            value_push(v, start[i]);
        return n ? 0 : -1;
    }
    for (c->p++; c->p < c->end; c->p++) {
        char ch = *c->p;

        if (ch == '"') {
            c->p++;
            return v->len ? 0 : -1;
        }
        /* A quoted-pair stands for the byte after the backslash. */
        if (ch == '\\' && ++c->p == c->end)
            return -1;
        ch = *c->p;
        if (!tchar[(unsigned char)ch])
            return -1;
        value_push(v, ch);
    }
    return -1;
}

/* Reads a window size: "8" to "15" in decimal without leading zeros. Returns it, or -1. */
static int window_bits(const struct param_value *v)
{
    if (v->len == 1 && v->bytes[0] >= '8' && v->bytes[0] <= '9')
        return v->bytes[0] - '0';
    if (v->len == 2 && v->bytes[0] == '1' && v->bytes[1] >= '0' && v->bytes[1] <= '5')
        return 10 + v->bytes[1] - '0';
    return -1;
}

/* Whether name[0..len) is the string lit. */
static bool name_is(const char *name, size_t len, const char *lit)
{
    return len == strlen(lit) && memcmp(name, lit, len) == 0;
}

/*
 * Applies one parameter of a permessage-deflate offer to o, declining the offer when the server
 * cannot take the parameter as it is.
 */
static void offer_param(struct offer *o, const char *name, size_t len, const struct param_value *v)
{
    enum param p = 0;

    while (p < NUM_PARAMS && !name_is(name, len, param_names[p]))
        p++;
    if (p == NUM_PARAMS || o->seen[p]) {
        o->declined = true;
        return;
    }
    o->seen[p] = true;
    switch (p) {
    case SERVER_MAX_WINDOW_BITS:
        /*
         * zlib refuses to compress with a 256-byte window (older versions silently used 512
         * bytes instead), so a client that asks for 8 cannot be served.
         */
        o->server_bits = v->present ? window_bits(v) : -1;
        if (o->server_bits < 9)
            o->declined = true;
        break;
    case CLIENT_MAX_WINDOW_BITS:
        /* Without a value the client only says that it understands the parameter. */
        o->client_bits = v->present ? window_bits(v) : 0;
        if (o->client_bits < 0)
            o->declined = true;
        break;
    default:
        /* The two no_context_takeover parameters take no value. */
        if (v->present)
            o->declined = true;
        break;
    }
}

/*
 * Parses one extension from the cursor, which is at its name, up to the comma or the end of the
 * value that follows it. When it is a permessage-deflate offer, fills *o and returns 1; for any
 * other extension returns 0; returns -1 when the grammar is broken.
 */
static int take_extension(struct cursor *c, struct offer *o)
{
    const char *name = c->p;
    size_t name_len = take_token(c);
    bool ours = name_is(name, name_len, "permessage-deflate");

    if (name_len == 0)
        return -1;
    *o = (struct offer){0};
    for (;;) {
        struct param_value v = {0};
        const char *param;
        size_t param_len;

        skip_ows(c);
        if (c->p == c->end || *c->p == ',')
            return ours;
        if (*c->p != ';')
            return -1;
        c->p++;
        skip_ows(c);
        param = c->p;
        param_len = take_token(c);
        if (param_len == 0)
            return -1;
        skip_ows(c);
        if (c->p < c->end && *c->p == '=') {
            c->p++;
            skip_ows(c);
            if (take_value(c, &v) != 0)
                return -1;
        }
        if (ours)
            offer_param(o, param, param_len, &v);
    }
}

int rc_deflate_negotiate(const char *value, size_t len, struct rc_deflate_params *params,
                         char resp[RC_DEFLATE_RESPONSE_MAX])
{
    struct cursor c = {value, value + len};
    struct offer chosen = {0};
    bool found = false;
    int n;

    /* The whole value is parsed even after a choice, so that a broken one is always refused. */
    for (;;) {
        struct offer o;
        int r;

        skip_ows(&c);
        if (c.p == c.end)
            break;
        /* Empty list elements ("a, , b") are allowed and mean nothing (RFC 9110 5.6.1). */
        if (*c.p == ',') {
            c.p++;
            continue;
        }
        r = take_extension(&c, &o);
        if (r < 0)
            return -1;
        if (r == 1 && !o.declined && !found) {
            chosen = o;
            found = true;
        }
    }
    if (!found)
        return 0;

    n = snprintf(resp, RC_DEFLATE_RESPONSE_MAX, "permessage-deflate; server_no_context_takeover%s",
                 chosen.seen[CLIENT_NO_CONTEXT_TAKEOVER] ? "; client_no_context_takeover" : "");
    if (chosen.server_bits)
        n += snprintf(resp + n, RC_DEFLATE_RESPONSE_MAX - (size_t)n, "; server_max_window_bits=%d",
                      chosen.server_bits);
    if (chosen.client_bits)
        n += snprintf(resp + n, RC_DEFLATE_RESPONSE_MAX - (size_t)n, "; client_max_window_bits=%d",
                      chosen.client_bits);
    params->server_window_bits = chosen.server_bits ? chosen.server_bits : 15;
    params->client_window_bits = chosen.client_bits ? chosen.client_bits : 15;
    params->client_no_context_takeover = chosen.seen[CLIENT_NO_CONTEXT_TAKEOVER];
    return n;
}

/* The smaller of n and what fits in one of zlib's 32-bit counts. */
static uInt clamp_uint(size_t n)
{
    return n > UINT_MAX ? UINT_MAX : (uInt)n;
}

int rc_deflate_message(const void *in, size_t n, unsigned char **out, size_t *out_len,
                       int window_bits)
{
    const unsigned char *next = in;
    size_t in_left = n, cap, produced;
    unsigned char *buf;
    z_stream zs = {0};
    int r;

    if (window_bits < 9 || window_bits > 15)
        return -EINVAL;
    r = deflateInit2(&zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -window_bits, 8, Z_DEFAULT_STRATEGY);
    if (r != Z_OK)
        return r == Z_MEM_ERROR ? -ENOMEM : -EINVAL;
    /*
     * deflateBound() bounds the output of a Z_FINISH; the sync flush adds an empty stored block
     * (3 bits, padding and 4 bytes). zlib does not promise any bound for flushes, so the buffer
     * still grows if it must.
     */
    cap = deflateBound(&zs, n) + 8;
    buf = malloc(cap);
    if (!buf) {
        deflateEnd(&zs);
        return -ENOMEM;
    }
    produced = 0;
    do {
        if (zs.avail_in == 0) {
            zs.next_in = next;
            zs.avail_in = clamp_uint(in_left);
            next += zs.avail_in;
            in_left -= zs.avail_in;
        }
        if (produced == cap) {
            unsigned char *bigger = realloc(buf, cap * 2);

            if (!bigger) {
                free(buf);
                deflateEnd(&zs);
                return -ENOMEM;
            }
            buf = bigger;
            cap *= 2;
        }
        zs.next_out = buf + produced;
        zs.avail_out = clamp_uint(cap - produced);
        r = deflate(&zs, in_left ? Z_NO_FLUSH : Z_SYNC_FLUSH);
        produced = (size_t)(zs.next_out - buf);
        /* With the sync flush, output space left over means that everything is out. */
    } while (r == Z_OK && (in_left || zs.avail_in || zs.avail_out == 0));
    deflateEnd(&zs);
    if (r != Z_OK) {
        free(buf);
        return -EIO;
    }
    /* A sync flush always ends with 00 00 ff ff, which RFC 7692 has the sender remove. */
    *out = buf;
    *out_len = produced - 4;
    return 0;
}

/* One connection's inflater: zlib's stream and what the connection agreed to. */
struct rc_inflater {
    z_stream zs;
    bool no_context_takeover; /* start every message with an empty window */
    bool stream_ended;        /* a block with BFINAL set ended the DEFLATE stream in this message */
};

struct rc_inflater *rc_inflater_new(int window_bits, bool no_context_takeover)
{
    struct rc_inflater *inf;

    if (window_bits < 8 || window_bits > 15)
        return NULL;
    inf = calloc(1, sizeof *inf);
    if (!inf)
        return NULL;
    if (inflateInit2(&inf->zs, -window_bits) != Z_OK) {
        free(inf);
        return NULL;
    }
    inf->no_context_takeover = no_context_takeover;
    return inf;
}

/* Inflates in[0..n) into out[*out_len..out_cap); returns as rc_inflate() does. */
static int inflate_bytes(struct rc_inflater *inf, const unsigned char *in, size_t n,
                         unsigned char *out, size_t out_cap, size_t *out_len)
{
    while (n > 0) {
        uInt in_avail = clamp_uint(n), out_avail = clamp_uint(out_cap - *out_len);
        int r;

        inf->zs.next_in = in;
        inf->zs.avail_in = in_avail;
        inf->zs.next_out = out + *out_len;
        inf->zs.avail_out = out_avail;
        r = inflate(&inf->zs, Z_NO_FLUSH);
        in += in_avail - inf->zs.avail_in;
        n -= in_avail - inf->zs.avail_in;
        *out_len += out_avail - inf->zs.avail_out;
        switch (r) {
        case Z_OK:
            break;
        case Z_STREAM_END:
            /*
             * RFC 7692 section 7.2.3.4 lets a sender end a message with a BFINAL block, then
             * an empty stored block header so that the receiver's 00 00 ff ff completes it. What
             * follows the final block is read as the start of a new stream.
             */
            inf->stream_ended = true;
            inflateReset(&inf->zs);
            break;
        case Z_BUF_ERROR:
            /* Input is left and nothing moved: the output is full and more of it is due. */
            return -EMSGSIZE;
        case Z_MEM_ERROR:
            return -ENOMEM;
        default:
            return -EBADMSG;
        }
    }
    return 0;
}

int rc_inflate(struct rc_inflater *inf, const void *in, size_t n, bool final, unsigned char *out,
               size_t out_cap, size_t *out_len)
{
    static const unsigned char tail[4] = {0x00, 0x00, 0xff, 0xff};
    int r = inflate_bytes(inf, in, n, out, out_cap, out_len);
    bool ended_before_tail;

    if (r != 0 || !final)
        return r;
    ended_before_tail = inf->stream_ended;
    /*
     * A message whose last bytes end a final block, as zlib's Z_FINISH leaves it (section 7.2.3.4
     * without the empty stored block header after the final block), is complete as it is.
     * inflateReset() zeroed total_in at the end of the stream, so it counts what followed.
     */
    if (!ended_before_tail || inf->zs.total_in != 0) {
        inf->stream_ended = false;
        r = inflate_bytes(inf, tail, sizeof tail, out, out_cap, out_len);
        if (r != 0)
            return r;
        /*
         * Section 7.2.1 ends every message with the header of an empty stored block, which the
         * tail completes, so the inflater must now wait at the start of the next block with no
         * bits left over (zlib reports exactly that as data_type 128), unless the tail ended a
         * final empty stored block. Anything else is a message cut short, or an empty payload:
         * the tail was read as compressed data, so the message would be taken truncated or
         * garbled, and with context takeover the next, valid, message would fail instead.
         */
        if (!inf->stream_ended && (inf->zs.data_type & 0xff) != 128)
            return -EBADMSG;
    }
    /*
     * A client without context takeover must not refer back to an earlier message; starting
     * each one afresh makes such a reference fail instead of quietly working. A stream that
     * ended starts afresh too, since nothing of it can carry over.
     */
    if (inf->no_context_takeover || inf->stream_ended || ended_before_tail) {
        inflateReset(&inf->zs);
        inf->stream_ended = false;
    }
    return 0;
}

void rc_inflater_free(struct rc_inflater *inf)
{
    if (!inf)
        return;
    inflateEnd(&inf->zs);
    free(inf);
}
