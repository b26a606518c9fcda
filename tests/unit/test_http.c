/*
 * Tests for the HTTP request parser and router: known answers for each rule and limit, every
 * prefix of valid requests, and a deterministic mutation fuzz loop that also checks that the
 * answer never depends on how the input is split into reads.
 */
#include "ringcast/http.h"

#include <stdint.h>
#include <stdlib.h>

#include "test.h"

/* A string literal as the (pointer, length) pair the parser takes, NUL bytes included. */
#define S(lit) lit, sizeof(lit) - 1

#define HEADER_CAPACITY 64

static const struct rc_http_limits roomy = {
    .max_request_line = 1024, .max_header_bytes = 8192, .max_headers = 32};

static struct rc_http_header header_storage[HEADER_CAPACITY];

/*
 * The heap copy of the last parsed input. It is exactly as long as the input, so ASan reports
 * any read past the end, and it lives until the next parse so that results can point into it.
 */
static char *input;

/* Parses a heap copy of s[0..len) into req, whose headers are header_storage. */
static int parse(const char *s, size_t len, const struct rc_http_limits *lim,
                 struct rc_http_request *req)
{
    free(input);
    input = malloc(len ? len : 1);
    memcpy(input, s, len);
    req->headers = header_storage;
    return rc_http_parse_request(input, len, lim, req);
}

/*
 * Parses s[0..len) and folds the result into one number for CHECK_EQ: the bytes consumed, -2
 * when incomplete, or minus the status (-400, -414, -431, -505) when refused.
 */
static int outcome(const char *s, size_t len, const struct rc_http_limits *lim)
{
    struct rc_http_request req;
    int r = parse(s, len, lim, &req);

    return r == -1 ? -req.status : r;
}

/* The length of the request line of the parsed request, as the request-line limit counts it. */
static size_t request_line_len(const struct rc_http_request *req)
{
    return (size_t)(req->target - input) + req->target_len + sizeof(" HTTP/1.1") - 1;
}

TEST(parses_request_line_and_headers)
{
#define HEAD                                                                                       \
    "GET /sse/news?since=4 HTTP/1.1\r\n"                                                           \
    "Host: example.com\r\n"                                                                        \
    "Accept:text/event-stream\r\n"                                                                 \
    "X-Pad: \t spaced  value \t \r\n"                                                              \
    "X-Empty:\r\n"                                                                                 \
    "X-Blank:   \r\n"                                                                              \
    "\r\n"
    struct rc_http_request req;

    CHECK_EQ(parse(S(HEAD "body bytes"), &roomy, &req), sizeof HEAD - 1);
#undef HEAD
    CHECK_MEM(req.method, req.method_len, "GET");
    CHECK_MEM(req.target, req.target_len, "/sse/news?since=4");
    CHECK_EQ(req.minor_version, 1);
    CHECK_EQ(req.num_headers, 5);
    CHECK_MEM(req.headers[0].name, req.headers[0].name_len, "Host");
    CHECK_MEM(req.headers[0].value, req.headers[0].value_len, "example.com");
    CHECK_MEM(req.headers[1].name, req.headers[1].name_len, "Accept");
    CHECK_MEM(req.headers[1].value, req.headers[1].value_len, "text/event-stream");
    CHECK_MEM(req.headers[2].value, req.headers[2].value_len, "spaced  value");
    CHECK_MEM(req.headers[3].name, req.headers[3].name_len, "X-Empty");
    CHECK_EQ(req.headers[3].value_len, 0);
    CHECK_EQ(req.headers[4].value_len, 0);
}

TEST(accepts_http_1_0_bare_lf_and_odd_but_valid_bytes)
{
    struct rc_http_request req;
    static const char head[] = "M-SEARCH!#$%&'*+.^_`|~ /a/b;c?d=%20&e=\"f\"#g HTTP/1.0\n"
                               "x-odd_Name!: caf\xc3\xa9 \x80\xff value\n"
                               "\n";

    CHECK_EQ(parse(S(head), &roomy, &req), sizeof head - 1);
    CHECK_MEM(req.method, req.method_len, "M-SEARCH!#$%&'*+.^_`|~");
    CHECK_MEM(req.target, req.target_len, "/a/b;c?d=%20&e=\"f\"#g");
    CHECK_EQ(req.minor_version, 0);
    CHECK_EQ(req.num_headers, 1);
    CHECK_MEM(req.headers[0].name, req.headers[0].name_len, "x-odd_Name!");
    CHECK_MEM(req.headers[0].value, req.headers[0].value_len, "caf\xc3\xa9 \x80\xff value");

    CHECK_EQ(outcome(S("GET / HTTP/1.1\r\n\r\n"), &roomy), 18);
    CHECK_EQ(outcome(S("GET / HTTP/1.1\n\r\n"), &roomy), 17);
    CHECK_EQ(outcome(S("GET / HTTP/1.1\r\nA: b\n\r\n"), &roomy), 23);
}

TEST(refuses_malformed_request_lines)
{
    CHECK_EQ(outcome(S("GET  / HTTP/1.1\r\n\r\n"), &roomy), -400);
    CHECK_EQ(outcome(S("GET /  HTTP/1.1\r\n\r\n"), &roomy), -400);
    CHECK_EQ(outcome(S(" GET / HTTP/1.1\r\n\r\n"), &roomy), -400);
    CHECK_EQ(outcome(S("GET / HTTP/1.1 \r\n\r\n"), &roomy), -400);
    CHECK_EQ(outcome(S("GET\t/ HTTP/1.1\r\n\r\n"), &roomy), -400);
    CHECK_EQ(outcome(S("G(T / HTTP/1.1\r\n\r\n"), &roomy), -400);
    CHECK_EQ(outcome(S("GET x HTTP/1.1\r\n\r\n"), &roomy), -400);
    CHECK_EQ(outcome(S("GET * HTTP/1.1\r\n\r\n"), &roomy), -400);
    CHECK_EQ(outcome(S("GET http://h/ HTTP/1.1\r\n\r\n"), &roomy), -400);
    CHECK_EQ(outcome(S("GET /\x7f HTTP/1.1\r\n\r\n"), &roomy), -400);
    CHECK_EQ(outcome(S("GET /\xc3\xa9 HTTP/1.1\r\n\r\n"), &roomy), -400);
    CHECK_EQ(outcome(S("GET /\0 HTTP/1.1\r\n\r\n"), &roomy), -400);
    CHECK_EQ(outcome(S("GET / http/1.1\r\n\r\n"), &roomy), -400);
    CHECK_EQ(outcome(S("GET / HTTP/1.1x\r\n\r\n"), &roomy), -400);
    CHECK_EQ(outcome(S("GET / HTTP/11\r\n\r\n"), &roomy), -400);
    CHECK_EQ(outcome(S("GET / HTTP/1.x\r\n\r\n"), &roomy), -400);
    CHECK_EQ(outcome(S("GET / HTTP/1.1\rX\r\n"), &roomy), -400);
    CHECK_EQ(outcome(S("GET / HTTP/1\r\n\r\n"), &roomy), -400);
    CHECK_EQ(outcome(S("GET /\r\n\r\n"), &roomy), -400);
    CHECK_EQ(outcome(S("GET\r\n\r\n"), &roomy), -400);
    CHECK_EQ(outcome(S("\r\nGET / HTTP/1.1\r\n\r\n"), &roomy), -400);
    /* A TLS ClientHello on the plain port is refused from its first byte. */
    CHECK_EQ(outcome(S("\x16\x03\x01"), &roomy), -400);
}

TEST(refuses_other_http_versions_with_505)
{
    CHECK_EQ(outcome(S("GET / HTTP/2.0\r\n\r\n"), &roomy), -505);
    CHECK_EQ(outcome(S("GET / HTTP/1.2\r\n\r\n"), &roomy), -505);
    CHECK_EQ(outcome(S("GET / HTTP/0.9\r\n\r\n"), &roomy), -505);
    CHECK_EQ(outcome(S("GET / HTTP/9.9\n"), &roomy), -505);
    /* The version is judged only once the line has ended, so a still-open line is incomplete. */
    CHECK_EQ(outcome(S("GET / HTTP/2.0"), &roomy), -2);
    CHECK_EQ(outcome(S("GET / HTTP/2.0\r"), &roomy), -2);
}

TEST(refuses_malformed_header_fields)
{
    CHECK_EQ(outcome(S("GET / HTTP/1.1\r\nHost : x\r\n\r\n"), &roomy), -400);
    CHECK_EQ(outcome(S("GET / HTTP/1.1\r\nHost\t: x\r\n\r\n"), &roomy), -400);
    CHECK_EQ(outcome(S("GET / HTTP/1.1\r\nHo st: x\r\n\r\n"), &roomy), -400);
    CHECK_EQ(outcome(S("GET / HTTP/1.1\r\n: x\r\n\r\n"), &roomy), -400);
    CHECK_EQ(outcome(S("GET / HTTP/1.1\r\nHost\r\n\r\n"), &roomy), -400);
    CHECK_EQ(outcome(S("GET / HTTP/1.1\r\nH(st: x\r\n\r\n"), &roomy), -400);
    CHECK_EQ(outcome(S("GET / HTTP/1.1\r\nA: b\x01\r\n\r\n"), &roomy), -400);
    CHECK_EQ(outcome(S("GET / HTTP/1.1\r\nA: b\0c\r\n\r\n"), &roomy), -400);
    CHECK_EQ(outcome(S("GET / HTTP/1.1\r\nA: b\x7f\r\n\r\n"), &roomy), -400);
    CHECK_EQ(outcome(S("GET / HTTP/1.1\r\nA: b\rc\r\n\r\n"), &roomy), -400);
    CHECK_EQ(outcome(S("GET / HTTP/1.1\r\nA: b\r\r\n\r\n"), &roomy), -400);
    CHECK_EQ(outcome(S("GET / HTTP/1.1\r\nA: b\r\n\rX"), &roomy), -400);
    /* Obsolete line folding, and whitespace before the first field. */
    CHECK_EQ(outcome(S("GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n"), &roomy), -400);
    CHECK_EQ(outcome(S("GET / HTTP/1.1\r\nA: b\r\n\tc\r\n\r\n"), &roomy), -400);
    CHECK_EQ(outcome(S("GET / HTTP/1.1\r\n A: b\r\n\r\n"), &roomy), -400);
}

TEST(request_line_limit)
{
    /* "GET /abcdef HTTP/1.1" is 20 bytes. */
    struct rc_http_limits lim = roomy;

    lim.max_request_line = 20;
    CHECK_EQ(outcome(S("GET /abcdef HTTP/1.1\r\n\r\n"), &lim), 24);
    CHECK_EQ(outcome(S("GET /abcdef HTTP/1.1\n\n"), &lim), 22);
    CHECK_EQ(outcome(S("GET /abcdef HTTP/1.1"), &lim), -2);
    CHECK_EQ(outcome(S("GET /abcdef HTTP/1.1\r"), &lim), -2);
    CHECK_EQ(outcome(S("GET /abcdefg HTTP/1.1\r\n\r\n"), &lim), -414);
    /* An overlong line fails as soon as a byte past the limit arrives, before its end. */
    CHECK_EQ(outcome(S("GET /abcdefghijklmno"), &lim), -2);
    CHECK_EQ(outcome(S("GET /abcdefghijklmnop"), &lim), -414);
    CHECK_EQ(outcome(S("GETGETGETGETGETGETGETGET"), &lim), -414);
    CHECK_EQ(outcome(S("GET /abcdef HTTP/1.1 "), &lim), -414);
    /* Bytes within the limit are judged first: a bad byte there is a 400 whatever follows. */
    CHECK_EQ(outcome(S("GET /ab\x01xxxxxxxxxxxxxxxxxxxxxxxxxxx"), &lim), -400);

    lim.max_request_line = 0;
    CHECK_EQ(outcome(S(""), &lim), -2);
    CHECK_EQ(outcome(S("G"), &lim), -414);
}

TEST(header_count_limit)
{
    struct rc_http_limits lim = roomy;

    lim.max_headers = 2;
    CHECK_EQ(outcome(S("GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\n\r\n"), &lim), 30);
    CHECK_EQ(outcome(S("GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n"), &lim), -431);
    /* The third field is refused as soon as its first byte shows it is a field. */
    CHECK_EQ(outcome(S("GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\n"), &lim), -2);
    CHECK_EQ(outcome(S("GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC"), &lim), -431);

    lim.max_headers = 0;
    CHECK_EQ(outcome(S("GET / HTTP/1.1\r\n\r\n"), &lim), 18);
    CHECK_EQ(outcome(S("GET / HTTP/1.1\r\nA: 1\r\n\r\n"), &lim), -431);
}

TEST(header_bytes_limit)
{
    /* The head is 30 bytes, request line and final CRLF included. */
#define HEAD "GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\n\r\n"
    static const char head[] = HEAD;
    struct rc_http_limits lim = roomy;

    lim.max_header_bytes = 30;
    CHECK_EQ(outcome(S(head), &lim), 30);
    CHECK_EQ(outcome(S(HEAD "trailing body"), &lim), 30);
#undef HEAD
    lim.max_header_bytes = 29;
    CHECK_EQ(outcome(S(head), &lim), -431);
    /* Incomplete but already at the limit: it cannot end in time, so it fails now. */
    CHECK_EQ(outcome(head, 28, &lim), -2);
    CHECK_EQ(outcome(head, 29, &lim), -431);
    /* The head limit caps the request line too. */
    lim.max_header_bytes = 10;
    CHECK_EQ(outcome(S("GET /abcdefgh"), &lim), -431);
}

TEST(every_prefix_is_incomplete)
{
    static const char *const requests[] = {
        "GET /sse/news HTTP/1.1\r\nHost: example.com\r\nAccept: text/event-stream\r\n"
        "Last-Event-ID: 42\r\n\r\n",
        "GET /health HTTP/1.0\nHost: x\n\n",
        "GET /ws HTTP/1.1\r\nUpgrade: websocket\nConnection: keep-alive, Upgrade\r\n"
        "X-Empty:\r\nX-Obs: caf\xc3\xa9 \t\r\n\r\n",
        "GET / HTTP/1.1\r\n\r\n",
        "OPTIONS /a?b=c&d=%20 HTTP/1.1\r\nA:b\r\nB:    \r\n\n",
    };

    for (size_t i = 0; i < sizeof requests / sizeof requests[0]; i++) {
        size_t len = strlen(requests[i]);
        struct rc_http_request req;
        struct rc_http_limits exact;

        CHECK_EQ(parse(requests[i], len, &roomy, &req), len);
        /* Limits that the request meets exactly must not turn any prefix into an error. */
        exact.max_request_line = request_line_len(&req);
        exact.max_header_bytes = len;
        exact.max_headers = req.num_headers;
        for (size_t m = 0; m < len; m++) {
            CHECK_EQ(outcome(requests[i], m, &roomy), -2);
            CHECK_EQ(outcome(requests[i], m, &exact), -2);
        }
        CHECK_EQ(outcome(requests[i], len, &exact), len);

        /* One less of any limit fails with its status. */
        exact.max_request_line--;
        CHECK_EQ(outcome(requests[i], len, &exact), -414);
        exact.max_request_line++;
        exact.max_header_bytes--;
        CHECK_EQ(outcome(requests[i], len, &exact), -431);
        exact.max_header_bytes++;
        if (exact.max_headers > 0) {
            exact.max_headers--;
            CHECK_EQ(outcome(requests[i], len, &exact), -431);
        }
    }
}

/* A 64-bit linear congruential generator (Knuth's MMIX constants); returns its high 31 bits. */
static uint32_t lcg_next(uint64_t *state)
{
    *state = *state * 6364136223846793005u + 1442695040888963407u;
    return (uint32_t)(*state >> 33);
}

/* Applies one random edit to buf[0..*len): overwrite, insert, delete or truncate. */
static void mutate(char *buf, size_t *len, size_t cap, uint64_t *rng)
{
    /* Bytes that matter to the grammar, so that edits often land on a decision. */
    static const char interesting[] = " \t\r\n:/?.HTP10\x7f\x80\xff";
    uint32_t r = lcg_next(rng);
    size_t pos = *len ? lcg_next(rng) % *len : 0;
    char byte = r & 1 ? (char)lcg_next(rng) : interesting[lcg_next(rng) % (sizeof interesting)];

    switch ((r >> 1) % 4) {
    case 0:
        if (*len)
            buf[pos] = byte;
        break;
    case 1:
        if (*len < cap) {
            memmove(buf + pos + 1, buf + pos, *len - pos);
            buf[pos] = byte;
            ++*len;
        }
        break;
    case 2:
        if (*len) {
            memmove(buf + pos, buf + pos + 1, *len - pos - 1);
            --*len;
        }
        break;
    default:
        *len = pos;
        break;
    }
}

/* Whether ptr[0..n) lies within the first `consumed` bytes of the parsed input. */
static bool within(const char *ptr, size_t n, int consumed)
{
    return ptr >= input && ptr + n <= input + consumed;
}

TEST(mutation_fuzz)
{
    static const char *const seeds[] = {
        "GET /sse/news?x=1 HTTP/1.1\r\nHost: example.com\r\nAccept: text/event-stream\r\n"
        "Last-Event-ID: 42\r\n\r\n",
        "GET /health HTTP/1.0\nA: b\n\n",
        "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\nxyz",
    };
    static const struct rc_http_limits limits[] = {
        {.max_request_line = 1024, .max_header_bytes = 8192, .max_headers = 32},
        {.max_request_line = 24, .max_header_bytes = 80, .max_headers = 3},
        {.max_request_line = 8, .max_header_bytes = 40, .max_headers = 1},
        {.max_request_line = 40, .max_header_bytes = 16, .max_headers = 0},
    };
    uint64_t rng = 0x5eed;
    char work[512];

    for (int iter = 0; iter < 300000; iter++) {
        const char *seed = seeds[lcg_next(&rng) % (sizeof seeds / sizeof seeds[0])];
        const struct rc_http_limits *lim = &limits[lcg_next(&rng) % 4];
        size_t len = strlen(seed), edits = 1 + lcg_next(&rng) % 4, split;
        struct rc_http_request req;
        int r, status, rp;

        memcpy(work, seed, len);
        for (size_t e = 0; e < edits; e++)
            mutate(work, &len, sizeof work, &rng);

        r = parse(work, len, lim, &req);
        status = req.status;
        CHECK(r == -2 || r == -1 || (r >= 1 && (size_t)r <= len));
        if (r == -1)
            CHECK(status == 400 || status == 414 || status == 431 || status == 505);
        if (r > 0) {
            CHECK((size_t)r <= lim->max_header_bytes);
            CHECK(req.num_headers <= lim->max_headers);
            CHECK(request_line_len(&req) <= lim->max_request_line);
            CHECK(req.minor_version == 0 || req.minor_version == 1);
            CHECK(within(req.method, req.method_len, r));
            CHECK(within(req.target, req.target_len, r));
            for (size_t i = 0; i < req.num_headers; i++) {
                CHECK(within(req.headers[i].name, req.headers[i].name_len, r));
                CHECK(within(req.headers[i].value, req.headers[i].value_len, r));
            }
        }

        /* The same bytes cut short give "incomplete" or the same answer, never another one. */
        split = len ? lcg_next(&rng) % len : 0;
        rp = parse(work, split, lim, &req);
        if (r > 0 && split >= (size_t)r)
            CHECK_EQ(rp, r);
        else if (r > 0)
            CHECK_EQ(rp, -2);
        else
            CHECK(rp == -2 || (rp == r && req.status == status));
    }
}

TEST(find_header_ignores_case)
{
    struct rc_http_request req;
    const struct rc_http_header *h;

    CHECK(parse(S("GET / HTTP/1.1\r\nhost: a\r\nUPGRADE: b\r\nHost: c\r\n\r\n"), &roomy, &req) > 0);
    h = rc_http_find_header(&req, "Host");
    CHECK(h != NULL);
    CHECK_MEM(h->value, h->value_len, "a");
    h = rc_http_find_header(&req, "upgrade");
    CHECK(h != NULL);
    CHECK_MEM(h->value, h->value_len, "b");
    CHECK(rc_http_find_header(&req, "Hos") == NULL);
    CHECK(rc_http_find_header(&req, "Hostx") == NULL);
    CHECK(rc_http_find_header(&req, "") == NULL);
}

TEST(next_header_walks_repeated_fields_in_order)
{
    struct rc_http_request req;
    const struct rc_http_header *h = NULL;

    CHECK(parse(S("GET / HTTP/1.1\r\nhost: a\r\nUPGRADE: b\r\nHost: c\r\n\r\n"), &roomy, &req) > 0);
    h = rc_http_next_header(&req, h, "HOST");
    CHECK(h != NULL);
    CHECK_MEM(h->value, h->value_len, "a");
    h = rc_http_next_header(&req, h, "HOST");
    CHECK(h != NULL);
    CHECK_MEM(h->value, h->value_len, "c");
    CHECK(rc_http_next_header(&req, h, "HOST") == NULL);
    CHECK(rc_http_next_header(&req, NULL, "Origin") == NULL);
}

TEST(has_token_in_comma_lists)
{
    CHECK(rc_http_has_token(S("Upgrade"), "upgrade"));
    CHECK(rc_http_has_token(S("keep-alive, Upgrade"), "upgrade"));
    CHECK(rc_http_has_token(S("keep-alive,Upgrade"), "UPGRADE"));
    CHECK(rc_http_has_token(S(" \tkeep-alive \t, \t upgrade\t "), "keep-alive"));
    CHECK(rc_http_has_token(S(",,upgrade,,"), "upgrade"));
    CHECK(!rc_http_has_token(S("upgrades"), "upgrade"));
    CHECK(!rc_http_has_token(S("keep-alive upgrade"), "upgrade"));
    CHECK(!rc_http_has_token(S("xupgrade, upgradex"), "upgrade"));
    CHECK(!rc_http_has_token(S(""), "upgrade"));
    CHECK(!rc_http_has_token(S("a, ,b"), ""));
    /* The value is a byte range: bytes after value_len do not count. */
    CHECK(!rc_http_has_token("a, upgrade", 3, "upgrade"));
}

TEST(channel_names)
{
    char name[130];

    CHECK(rc_http_channel_valid(S("news")));
    CHECK(rc_http_channel_valid(S("A-Z_a.z:0@9")));
    CHECK(rc_http_channel_valid(S("-")));
    CHECK(!rc_http_channel_valid(S("")));
    CHECK(!rc_http_channel_valid(S("a b")));
    CHECK(!rc_http_channel_valid(S("a/b")));
    CHECK(!rc_http_channel_valid(S("a%20b")));
    CHECK(!rc_http_channel_valid(S("caf\xc3\xa9")));
    CHECK(!rc_http_channel_valid(S("a\0b")));
    memset(name, 'x', sizeof name);
    CHECK(rc_http_channel_valid(name, 128));
    CHECK(!rc_http_channel_valid(name, 129));
}

TEST(routes)
{
    struct rc_route r;
    char target[5 + 130];

    rc_http_route(S("/health"), &r);
    CHECK_EQ(r.kind, RC_ROUTE_HEALTH);
    CHECK(r.query == NULL);
    rc_http_route(S("/health?verbose=1"), &r);
    CHECK_EQ(r.kind, RC_ROUTE_HEALTH);
    CHECK_MEM(r.query, r.query_len, "verbose=1");

    rc_http_route(S("/sse/news"), &r);
    CHECK_EQ(r.kind, RC_ROUTE_SSE);
    CHECK_MEM(r.channel, r.channel_len, "news");
    CHECK(r.query == NULL);
    rc_http_route(S("/sse/news?lastEventId=7&x"), &r);
    CHECK_EQ(r.kind, RC_ROUTE_SSE);
    CHECK_MEM(r.channel, r.channel_len, "news");
    CHECK_MEM(r.query, r.query_len, "lastEventId=7&x");
    rc_http_route(S("/sse/a?"), &r);
    CHECK_EQ(r.kind, RC_ROUTE_SSE);
    CHECK(r.query != NULL);
    CHECK_EQ(r.query_len, 0);
    rc_http_route(S("/sse/a?b?c"), &r);
    CHECK_MEM(r.query, r.query_len, "b?c");

    rc_http_route(S("/sse/"), &r);
    CHECK_EQ(r.kind, RC_ROUTE_BAD_CHANNEL);
    CHECK(r.channel == NULL);
    rc_http_route(S("/sse/?x"), &r);
    CHECK_EQ(r.kind, RC_ROUTE_BAD_CHANNEL);
    rc_http_route(S("/sse/a/b"), &r);
    CHECK_EQ(r.kind, RC_ROUTE_BAD_CHANNEL);
    rc_http_route(S("/sse/a%20b"), &r);
    CHECK_EQ(r.kind, RC_ROUTE_BAD_CHANNEL);
    memcpy(target, "/sse/", 5);
    memset(target + 5, 'c', 130);
    rc_http_route(target, 5 + 128, &r);
    CHECK_EQ(r.kind, RC_ROUTE_SSE);
    CHECK_EQ(r.channel_len, 128);
    rc_http_route(target, 5 + 129, &r);
    CHECK_EQ(r.kind, RC_ROUTE_BAD_CHANNEL);

    rc_http_route(S("/"), &r);
    CHECK_EQ(r.kind, RC_ROUTE_NOT_FOUND);
    /* The query form: the channels are in the query, which the worker reads. */
    rc_http_route(S("/sse"), &r);
    CHECK_EQ(r.kind, RC_ROUTE_SSE);
    CHECK(r.channel == NULL);
    rc_http_route(S("/sse?channel=a&channel=b"), &r);
    CHECK_EQ(r.kind, RC_ROUTE_SSE);
    CHECK(r.channel == NULL);
    CHECK_MEM(r.query, r.query_len, "channel=a&channel=b");
    rc_http_route(S("/ssefoo"), &r);
    CHECK_EQ(r.kind, RC_ROUTE_NOT_FOUND);
    rc_http_route(S("/health/"), &r);
    CHECK_EQ(r.kind, RC_ROUTE_NOT_FOUND);
    rc_http_route(S("/healthz"), &r);
    CHECK_EQ(r.kind, RC_ROUTE_NOT_FOUND);
    rc_http_route(S("/HEALTH"), &r);
    CHECK_EQ(r.kind, RC_ROUTE_NOT_FOUND);
    rc_http_route(S("/x/sse/news"), &r);
    CHECK_EQ(r.kind, RC_ROUTE_NOT_FOUND);
    rc_http_route("/health", 6, &r);
    CHECK_EQ(r.kind, RC_ROUTE_NOT_FOUND);
}

TEST(routes_websocket)
{
    struct rc_route r;

    rc_http_route(S("/ws/news"), &r);
    CHECK_EQ(r.kind, RC_ROUTE_WS);
    CHECK_MEM(r.channel, r.channel_len, "news");
    CHECK(r.query == NULL);
    rc_http_route(S("/ws/a.b:c@d-e_f?token=1"), &r);
    CHECK_EQ(r.kind, RC_ROUTE_WS);
    CHECK_MEM(r.channel, r.channel_len, "a.b:c@d-e_f");
    CHECK_MEM(r.query, r.query_len, "token=1");

    rc_http_route(S("/ws/"), &r);
    CHECK_EQ(r.kind, RC_ROUTE_BAD_CHANNEL);
    rc_http_route(S("/ws/a/b"), &r);
    CHECK_EQ(r.kind, RC_ROUTE_BAD_CHANNEL);
    rc_http_route(S("/ws/a%20b"), &r);
    CHECK_EQ(r.kind, RC_ROUTE_BAD_CHANNEL);

    rc_http_route(S("/ws?channel=x"), &r);
    CHECK_EQ(r.kind, RC_ROUTE_WS);
    CHECK(r.channel == NULL);
    rc_http_route(S("/wsx/news"), &r);
    CHECK_EQ(r.kind, RC_ROUTE_NOT_FOUND);
    rc_http_route(S("/WS/news"), &r);
    CHECK_EQ(r.kind, RC_ROUTE_NOT_FOUND);
    rc_http_route(S("/sse/ws/news"), &r);
    CHECK_EQ(r.kind, RC_ROUTE_BAD_CHANNEL);
}

TEST(only_an_exact_GET_is_a_get)
{
    struct rc_http_request r = {.method = "GET", .method_len = 3};
    CHECK(rc_http_is_get(&r));
    r.method = "get";
    CHECK(!rc_http_is_get(&r));
    r.method = "GETX";
    r.method_len = 4;
    CHECK(!rc_http_is_get(&r));
}

TEST(query_parameters_are_walked_in_order)
{
    const char *q = "channel=a&&channel=b%3Ac&flag&lastEventId=x-1&=v";
    const char *k, *v;
    size_t kl, vl, pos = 0;
    CHECK(rc_http_query_next(q, strlen(q), &pos, &k, &kl, &v, &vl));
    CHECK_MEM(k, kl, "channel");
    CHECK_MEM(v, vl, "a");
    CHECK(rc_http_query_next(q, strlen(q), &pos, &k, &kl, &v, &vl));
    CHECK_MEM(v, vl, "b%3Ac");
    CHECK(rc_http_query_next(q, strlen(q), &pos, &k, &kl, &v, &vl));
    CHECK_MEM(k, kl, "flag");
    CHECK_EQ(vl, 0);
    CHECK(rc_http_query_next(q, strlen(q), &pos, &k, &kl, &v, &vl));
    CHECK_MEM(v, vl, "x-1");
    CHECK(rc_http_query_next(q, strlen(q), &pos, &k, &kl, &v, &vl));
    CHECK_EQ(kl, 0);
    CHECK_MEM(v, vl, "v");
    CHECK(!rc_http_query_next(q, strlen(q), &pos, &k, &kl, &v, &vl));
    pos = 0;
    CHECK(!rc_http_query_next("", 0, &pos, &k, &kl, &v, &vl));
}

TEST(percent_decoding)
{
    char out[32];
    CHECK_EQ(rc_http_percent_decode(S("b%3Ac%40d+e"), out), 7);
    CHECK_MEM(out, 7, "b:c@d e");
    CHECK_EQ(rc_http_percent_decode(S("%"), out), -1);
    CHECK_EQ(rc_http_percent_decode(S("a%4"), out), -1);
    CHECK_EQ(rc_http_percent_decode(S("%zz"), out), -1);
    CHECK_EQ(rc_http_percent_decode(S(""), out), 0);
    char inplace[] = "x%2Dy";
    CHECK_EQ(rc_http_percent_decode(inplace, 5, inplace), 3);
    CHECK_MEM(inplace, 3, "x-y");
}

TEST_MAIN()
