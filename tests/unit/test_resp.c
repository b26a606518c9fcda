/*
 * Tests for the RESP request parser: valid commands whole, in every prefix and pipelined,
 * binary payloads, every protocol error, and a deterministic mutation fuzz loop.
 */
#include "ringcast/resp.h"

#include <limits.h>
#include <stdint.h>
#include <stdlib.h>

#include "test.h"

#define MAX_ARGS 8

/* Small limits so that every boundary is cheap to reach. */
static const struct rc_resp_limits lim = {.max_args = MAX_ARGS, .max_bulk = 64, .max_inline = 32};

/* Commands that must parse; each is one command that consumes the whole string. */
static const char *const valid[] = {
    "*2\r\n$4\r\nPING\r\n$2\r\nhi\r\n",
    "*3\r\n$7\r\nPUBLISH\r\n$4\r\nnews\r\n$5\r\nhello\r\n",
    "*1\r\n$0\r\n\r\n",
    "*0\r\n",
    "PING\r\n",
    "PUBLISH news hello\n",
    "  \t PING \t hi  \r\n",
    "\r\n",
    "\n",
};

/* Parses a NUL-terminated string with the test limits. */
static int parse(const char *s, struct rc_resp_arg *argv, size_t *argc, const char **err)
{
    return rc_resp_parse(s, strlen(s), &lim, argv, argc, err);
}

TEST(multibulk)
{
    const char *s = "*3\r\n$7\r\nPUBLISH\r\n$4\r\nnews\r\n$5\r\nhello\r\n";
    struct rc_resp_arg argv[MAX_ARGS];
    size_t argc = 99;
    const char *err = NULL;

    CHECK_EQ(parse(s, argv, &argc, &err), strlen(s));
    CHECK_EQ(argc, 3);
    CHECK_MEM(argv[0].ptr, argv[0].len, "PUBLISH");
    CHECK_MEM(argv[1].ptr, argv[1].len, "news");
    CHECK_MEM(argv[2].ptr, argv[2].len, "hello");
    CHECK(argv[0].ptr == s + 8);
}

TEST(multibulk_empty_array_and_empty_bulk)
{
    struct rc_resp_arg argv[MAX_ARGS];
    size_t argc = 99;
    const char *err = NULL;

    CHECK_EQ(parse("*0\r\n", argv, &argc, &err), 4);
    CHECK_EQ(argc, 0);
    CHECK_EQ(parse("*2\r\n$0\r\n\r\n$0\r\n\r\n", argv, &argc, &err), 16);
    CHECK_EQ(argc, 2);
    CHECK_EQ(argv[0].len, 0);
    CHECK_EQ(argv[1].len, 0);
}

TEST(multibulk_limits_inclusive)
{
    char buf[1024];
    struct rc_resp_arg argv[MAX_ARGS];
    size_t argc, pos;
    const char *err = NULL;

    /* max_args arguments of max_bulk bytes each are accepted. */
    pos = (size_t)sprintf(buf, "*%d\r\n", MAX_ARGS);
    for (int i = 0; i < MAX_ARGS; i++) {
        pos += (size_t)sprintf(buf + pos, "$64\r\n");
        memset(buf + pos, 'a' + i, 64);
        pos += 64;
        memcpy(buf + pos, "\r\n", 2);
        pos += 2;
    }
    CHECK_EQ(rc_resp_parse(buf, pos, &lim, argv, &argc, &err), pos);
    CHECK_EQ(argc, MAX_ARGS);
    CHECK_EQ(argv[7].len, 64);
    CHECK_EQ(argv[7].ptr[63], 'h');
}

TEST(binary_payload)
{
    static const char s[] = "*2\r\n$7\r\nPUBLISH\r\n$9\r\na\0b\r\nc\r\n\n\r\n";
    size_t len = sizeof(s) - 1;
    struct rc_resp_arg argv[MAX_ARGS];
    size_t argc;
    const char *err = NULL;

    CHECK_EQ(rc_resp_parse(s, len, &lim, argv, &argc, &err), len);
    CHECK_EQ(argc, 2);
    CHECK_EQ(argv[1].len, 9);
    CHECK(memcmp(argv[1].ptr, "a\0b\r\nc\r\n\n", 9) == 0);
}

TEST(inline_commands)
{
    struct rc_resp_arg argv[MAX_ARGS];
    size_t argc = 99;
    const char *err = NULL;

    CHECK_EQ(parse("PUBLISH news hello\r\n", argv, &argc, &err), 20);
    CHECK_EQ(argc, 3);
    CHECK_MEM(argv[0].ptr, argv[0].len, "PUBLISH");
    CHECK_MEM(argv[1].ptr, argv[1].len, "news");
    CHECK_MEM(argv[2].ptr, argv[2].len, "hello");

    /* Bare LF, runs of spaces and tabs, leading and trailing blanks. */
    CHECK_EQ(parse(" \tPING\t\t \"a b\"  \n", argv, &argc, &err), 17);
    CHECK_EQ(argc, 3);
    CHECK_MEM(argv[0].ptr, argv[0].len, "PING");
    CHECK_MEM(argv[1].ptr, argv[1].len, "\"a");
    CHECK_MEM(argv[2].ptr, argv[2].len, "b\"");

    /* A CR that is not just before the LF belongs to the argument. */
    CHECK_EQ(parse("a\rb\r\n", argv, &argc, &err), 5);
    CHECK_EQ(argc, 1);
    CHECK_MEM(argv[0].ptr, argv[0].len, "a\rb");
}

TEST(inline_empty_lines)
{
    struct rc_resp_arg argv[MAX_ARGS];
    size_t argc = 99;
    const char *err = NULL;

    CHECK_EQ(parse("\r\n", argv, &argc, &err), 2);
    CHECK_EQ(argc, 0);
    argc = 99;
    CHECK_EQ(parse("\n", argv, &argc, &err), 1);
    CHECK_EQ(argc, 0);
    argc = 99;
    CHECK_EQ(parse(" \t \r\n", argv, &argc, &err), 5);
    CHECK_EQ(argc, 0);
}

TEST(inline_length_limit)
{
    char buf[64];
    struct rc_resp_arg argv[MAX_ARGS];
    size_t argc;
    const char *err = NULL;

    /* 32 bytes before the LF are allowed, CR included. */
    memset(buf, 'x', sizeof(buf));
    buf[31] = '\r';
    buf[32] = '\n';
    CHECK_EQ(rc_resp_parse(buf, 33, &lim, argv, &argc, &err), 33);
    CHECK_EQ(argc, 1);
    CHECK_EQ(argv[0].len, 31);

    /* Without an LF, 32 bytes may still become a command, 33 cannot. */
    memset(buf, 'x', sizeof(buf));
    CHECK_EQ(rc_resp_parse(buf, 32, &lim, argv, &argc, &err), -2);
    CHECK_EQ(rc_resp_parse(buf, 33, &lim, argv, &argc, &err), -1);
    CHECK(strcmp(err, "too big inline request") == 0);

    /* An LF after the limit does not rescue the line. */
    buf[33] = '\n';
    err = NULL;
    CHECK_EQ(rc_resp_parse(buf, 34, &lim, argv, &argc, &err), -1);
    CHECK(strcmp(err, "too big inline request") == 0);
}

TEST(inline_too_many_arguments)
{
    struct rc_resp_arg argv[MAX_ARGS];
    size_t argc;
    const char *err = NULL;

    CHECK_EQ(parse("a b c d e f g h\n", argv, &argc, &err), 16);
    CHECK_EQ(argc, MAX_ARGS);
    CHECK_EQ(parse("a b c d e f g h i\n", argv, &argc, &err), -1);
    CHECK(strcmp(err, "too many arguments") == 0);
}

TEST(every_prefix_needs_more)
{
    struct rc_resp_arg argv[MAX_ARGS];
    size_t argc;
    const char *err = NULL;

    for (size_t v = 0; v < sizeof(valid) / sizeof(valid[0]); v++) {
        size_t len = strlen(valid[v]);

        /* An exact-size heap copy lets ASan catch a read past the prefix. */
        for (size_t n = 0; n < len; n++) {
            char *p = malloc(n ? n : 1);
            int r;

            memcpy(p, valid[v], n);
            r = rc_resp_parse(p, n, &lim, argv, &argc, &err);
            free(p);
            if (r != -2)
                fprintf(stderr, "valid[%zu] prefix of %zu bytes\n", v, n);
            CHECK_EQ(r, -2);
        }
        CHECK_EQ(parse(valid[v], argv, &argc, &err), len);
    }
}

TEST(pipelined)
{
    char buf[512];
    size_t len = 0, pos = 0;
    struct rc_resp_arg argv[MAX_ARGS];
    size_t argc;
    const char *err = NULL;

    for (size_t v = 0; v < sizeof(valid) / sizeof(valid[0]); v++) {
        size_t n = strlen(valid[v]);
        memcpy(buf + len, valid[v], n);
        len += n;
    }
    for (size_t v = 0; v < sizeof(valid) / sizeof(valid[0]); v++) {
        int r = rc_resp_parse(buf + pos, len - pos, &lim, argv, &argc, &err);
        CHECK_EQ(r, strlen(valid[v]));
        pos += (size_t)r;
    }
    CHECK_EQ(pos, len);
    CHECK_EQ(rc_resp_parse(buf + pos, 0, &lim, argv, &argc, &err), -2);

    /* The arguments of a later command point into the shared buffer. */
    pos = strlen(valid[0]);
    CHECK_EQ(rc_resp_parse(buf + pos, len - pos, &lim, argv, &argc, &err), strlen(valid[1]));
    CHECK(argv[2].ptr == buf + pos + strlen(valid[1]) - 7);
    CHECK_MEM(argv[2].ptr, argv[2].len, "hello");
}

/* A request that must be refused, and the message it must be refused with. */
struct bad_case {
    const char *in;
    const char *err;
};

static const struct bad_case bad[] = {
    {"*-1\r\n", "invalid multibulk length"},
    {"*-", "invalid multibulk length"},
    {"*x\r\n", "invalid multibulk length"},
    {"*+1\r\n", "invalid multibulk length"},
    {"*\r\n", "invalid multibulk length"},
    {"* 1\r\n", "invalid multibulk length"},
    {"*1 \r\n", "invalid multibulk length"},
    {"*1\n", "invalid multibulk length"},
    {"*1\rx", "invalid multibulk length"},
    {"*01\r\n", "invalid multibulk length"},
    {"*00", "invalid multibulk length"},
    {"*9", "too many arguments"},
    {"*10", "too many arguments"},
    {"*99999999999999999999999999999999999999", "too many arguments"},
    {"*1\r\n:1\r\n", "expected '$' to start a bulk string"},
    {"*2\r\n$1\r\na\r\n+OK\r\n", "expected '$' to start a bulk string"},
    {"*1\r\n*1\r\n", "expected '$' to start a bulk string"},
    {"*1\r\n$-1\r\n", "invalid bulk length"},
    {"*1\r\n$x", "invalid bulk length"},
    {"*1\r\n$\r\n", "invalid bulk length"},
    {"*1\r\n$01\r\na\r\n", "invalid bulk length"},
    {"*1\r\n$1\n", "invalid bulk length"},
    {"*1\r\n$1\r\r", "invalid bulk length"},
    {"*1\r\n$65", "bulk length exceeds max_payload"},
    {"*1\r\n$100\r\n", "bulk length exceeds max_payload"},
    {"*1\r\n$18446744073709551616", "bulk length exceeds max_payload"},
    {"*1\r\n$2\r\nhiX", "bulk string not terminated by CRLF"},
    {"*1\r\n$2\r\nhi\rX", "bulk string not terminated by CRLF"},
    {"*1\r\n$2\r\nhi\n\r", "bulk string not terminated by CRLF"},
    {"*1\r\n$2\r\nhi\r\r\n", "bulk string not terminated by CRLF"},
    {"*1\r\n$0\r\nx", "bulk string not terminated by CRLF"},
    {"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", "too big inline request"},
    {"1 2 3 4 5 6 7 8 9\r\n", "too many arguments"},
    {"$5\r\nhello\r\n", "expected '*' to start a command"},
    {"+OK\r\n", "expected '*' to start a command"},
    {"-ERR x\r\n", "expected '*' to start a command"},
    {":1\r\n", "expected '*' to start a command"},
};

TEST(protocol_errors)
{
    struct rc_resp_arg argv[MAX_ARGS];
    size_t argc;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *err = NULL;
        int r = parse(bad[i].in, argv, &argc, &err);

        if (r != -1 || !err || strcmp(err, bad[i].err) != 0)
            fprintf(stderr, "bad[%zu] \"%s\": %d %s\n", i, bad[i].in, r, err ? err : "(null)");
        CHECK_EQ(r, -1);
        CHECK(strcmp(err, bad[i].err) == 0);
    }
}

TEST(command_must_fit_in_int)
{
    /* Huge limits leave only the int return value to bound a command. */
    const struct rc_resp_limits big = {.max_args = 4, .max_bulk = SIZE_MAX, .max_inline = 32};
    char buf[64];
    struct rc_resp_arg argv[4];
    size_t argc;
    const char *err = NULL;
    int n;

    /* The header "*1\r\n$NNNNNNNNNN\r\n" is 17 bytes and the data is followed by CRLF. */
    n = sprintf(buf, "*1\r\n$%d\r\n", INT_MAX - 19);
    CHECK_EQ(rc_resp_parse(buf, (size_t)n, &big, argv, &argc, &err), -2);
    n = sprintf(buf, "*1\r\n$%d\r\n", INT_MAX - 18);
    CHECK_EQ(rc_resp_parse(buf, (size_t)n, &big, argv, &argc, &err), -1);
    CHECK(strcmp(err, "command too large") == 0);
    n = sprintf(buf, "*1\r\n$%zu\r\n", SIZE_MAX);
    CHECK_EQ(rc_resp_parse(buf, (size_t)n, &big, argv, &argc, &err), -1);
    CHECK(strcmp(err, "command too large") == 0);
}

/* xorshift64: a fixed seed keeps the fuzz loop reproducible. */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* Bytes that matter to the parser, so that mutations reach deep states often. */
static char random_byte(void)
{
    static const char interesting[] = "*$\r\n\r\n0123456789 \t-+:x";

    if (rng() % 4 == 0)
        return (char)rng();
    return interesting[rng() % (sizeof(interesting) - 1)];
}

/* Checks one fuzz input in an exact-size heap copy so ASan sees any read past its end. */
static int fuzz_one(const char *in, size_t len)
{
    char *p = malloc(len ? len : 1);
    struct rc_resp_arg argv[MAX_ARGS];
    size_t argc = SIZE_MAX;
    const char *err = NULL;
    int r, ok;

    memcpy(p, in, len);
    r = rc_resp_parse(p, len, &lim, argv, &argc, &err);
    ok = r == -2 || (r == -1 && err != NULL) || (r >= 1 && (size_t)r <= len && argc <= MAX_ARGS);
    for (size_t i = 0; ok && r > 0 && i < argc; i++)
        ok = argv[i].ptr >= p && argv[i].ptr + argv[i].len <= p + r;
    /* A complete command is complete in no shorter prefix. */
    if (ok && r > 0 && r < 200)
        for (int n = 0; ok && n < r; n++)
            ok = rc_resp_parse(p, (size_t)n, &lim, argv, &argc, &err) == -2;
    free(p);
    return ok;
}

TEST(fuzz_mutations)
{
    char buf[256];

    for (int iter = 0; iter < 200000; iter++) {
        const char *seed = valid[rng() % (sizeof(valid) / sizeof(valid[0]))];
        size_t len = strlen(seed);
        int mutations = 1 + (int)(rng() % 4);

        memcpy(buf, seed, len);
        for (int m = 0; m < mutations; m++) {
            size_t at = len ? rng() % len : 0;

            switch (rng() % 5) {
            case 0: /* replace a byte */
                if (len)
                    buf[at] = random_byte();
                break;
            case 1: /* insert a byte */
                if (len < sizeof(buf)) {
                    memmove(buf + at + 1, buf + at, len - at);
                    buf[at] = random_byte();
                    len++;
                }
                break;
            case 2: /* delete a byte */
                if (len) {
                    memmove(buf + at, buf + at + 1, len - at - 1);
                    len--;
                }
                break;
            case 3: /* truncate */
                len = at;
                break;
            default: /* append another command or its prefix */
            {
                const char *more = valid[rng() % (sizeof(valid) / sizeof(valid[0]))];
                size_t n = strlen(more) - rng() % (strlen(more) + 1);
                if (len + n <= sizeof(buf)) {
                    memcpy(buf + len, more, n);
                    len += n;
                }
                break;
            }
            }
        }
        if (!fuzz_one(buf, len)) {
            fprintf(stderr, "fuzz iteration %d failed on %zu bytes\n", iter, len);
            CHECK(0);
        }
    }
}

TEST(fuzz_random_bytes)
{
    char buf[64];

    for (int iter = 0; iter < 100000; iter++) {
        size_t len = rng() % sizeof(buf);

        for (size_t i = 0; i < len; i++)
            buf[i] = random_byte();
        if (rng() % 2 && len > 0)
            buf[0] = '*';
        if (!fuzz_one(buf, len)) {
            fprintf(stderr, "random iteration %d failed on %zu bytes\n", iter, len);
            CHECK(0);
        }
    }
}

TEST_MAIN()
