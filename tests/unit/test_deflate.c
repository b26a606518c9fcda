/*
 * Tests for permessage-deflate: negotiation against the offers real clients send and every way
 * an offer can be declined or malformed, the examples of RFC 7692 section 7.2.3, round trips at
 * every window size, a zip bomb held to the output limit, and fuzz loops over both parsers.
 */
#include "ringcast/deflate.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

#include "test.h"

/* A string literal as the (pointer, length) pair the functions take. */
#define S(lit) (const unsigned char *)(lit), sizeof(lit) - 1

/* The answer to an offer that the server takes without any window parameter. */
#define PLAIN "permessage-deflate; server_no_context_takeover"

static struct rc_deflate_params params;
static char resp[RC_DEFLATE_RESPONSE_MAX];

/*
 * Negotiates over a heap copy of the NUL-terminated offer (exactly as long, so ASan sees any read
 * past it) and returns rc_deflate_negotiate()'s result. Before the call, resp is set to "-" and
 * params to sentinels, so a test can see that they were left alone.
 */
static int negotiate(const char *offer)
{
    size_t len = strlen(offer);
    char *copy = malloc(len ? len : 1);
    int r;

    memcpy(copy, offer, len);
    strcpy(resp, "-");
    params = (struct rc_deflate_params){-1, -1, true};
    r = rc_deflate_negotiate(copy, len, &params, resp);
    free(copy);
    return r;
}

/* Whether the last negotiation agreed to these parameters. */
static bool agreed(int server_bits, int client_bits, bool client_no_context_takeover)
{
    return params.server_window_bits == server_bits && params.client_window_bits == client_bits &&
           params.client_no_context_takeover == client_no_context_takeover;
}

TEST(negotiates_real_client_offers)
{
    /* The ws package for Node.js, and Chrome: both offer client_max_window_bits without value. */
    CHECK_EQ(negotiate("permessage-deflate; client_max_window_bits"), strlen(PLAIN));
    CHECK_MEM(resp, strlen(resp), PLAIN);
    CHECK(agreed(15, 15, false));
    /* Firefox offers the extension bare. */
    CHECK_EQ(negotiate("permessage-deflate"), strlen(PLAIN));
    CHECK_MEM(resp, strlen(resp), PLAIN);
    CHECK(agreed(15, 15, false));
    /* Python's websockets library. */
    CHECK(negotiate("permessage-deflate; server_max_window_bits=12; client_max_window_bits=12") >
          0);
    CHECK_MEM(resp, strlen(resp), PLAIN "; server_max_window_bits=12; client_max_window_bits=12");
    CHECK(agreed(12, 12, false));
    /* Old Safari also offered a pre-standard extension first. */
    CHECK(negotiate("x-webkit-deflate-frame, permessage-deflate; client_max_window_bits") > 0);
    CHECK_MEM(resp, strlen(resp), PLAIN);
}

TEST(echoes_what_it_honours)
{
    int r = negotiate("permessage-deflate; server_no_context_takeover; client_no_context_takeover;"
                      " server_max_window_bits=15; client_max_window_bits=15");

    /* The longest answer fills the buffer exactly. */
    CHECK_EQ(r, RC_DEFLATE_RESPONSE_MAX - 1);
    CHECK_MEM(resp, strlen(resp),
              "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
              "server_max_window_bits=15; client_max_window_bits=15");
    CHECK(agreed(15, 15, true));

    CHECK(negotiate("permessage-deflate; client_no_context_takeover") > 0);
    CHECK_MEM(resp, strlen(resp), PLAIN "; client_no_context_takeover");
    CHECK(agreed(15, 15, true));
    CHECK(negotiate("permessage-deflate; server_no_context_takeover") > 0);
    CHECK_MEM(resp, strlen(resp), PLAIN);
    CHECK(negotiate("permessage-deflate; server_max_window_bits=9") > 0);
    CHECK_MEM(resp, strlen(resp), PLAIN "; server_max_window_bits=9");
    CHECK(agreed(9, 15, false));
    /* A client may limit its own window to 8: inflating with 256 bytes is fine. */
    CHECK(negotiate("permessage-deflate; client_max_window_bits=8") > 0);
    CHECK_MEM(resp, strlen(resp), PLAIN "; client_max_window_bits=8");
    CHECK(agreed(15, 8, false));
    /* Parameters come in any order and the answer's order is fixed. */
    CHECK(negotiate("permessage-deflate; client_max_window_bits=10; client_no_context_takeover; "
                    "server_max_window_bits=11") > 0);
    CHECK_MEM(resp, strlen(resp),
              PLAIN "; client_no_context_takeover; server_max_window_bits=11; "
                    "client_max_window_bits=10");
    CHECK(agreed(11, 10, true));
}

TEST(accepts_the_grammar_in_full)
{
    /* Whitespace around every separator, empty list elements, quoted values and escapes. */
    CHECK(negotiate("  permessage-deflate\t;\tclient_max_window_bits = 10 ,  ") > 0);
    CHECK(agreed(15, 10, false));
    CHECK(negotiate(", ,permessage-deflate,,") > 0);
    CHECK(negotiate("permessage-deflate; server_max_window_bits=\"10\"") > 0);
    CHECK(agreed(10, 15, false));
    CHECK(negotiate("permessage-deflate; server_max_window_bits=\"1\\3\"") > 0);
    CHECK(agreed(13, 15, false));
    /* Other extensions, with any parameters, are skipped. */
    CHECK(negotiate("foo; bar=\"a\\b\", baz; q=1; r, permessage-deflate") > 0);
    CHECK_MEM(resp, strlen(resp), PLAIN);
    /* Nothing offered. */
    CHECK_EQ(negotiate(""), 0);
    CHECK_EQ(negotiate(" , "), 0);
    CHECK_EQ(negotiate("foo, bar; baz"), 0);
    CHECK_MEM(resp, strlen(resp), "-");
    CHECK(agreed(-1, -1, true));
    /* Extension names are case-sensitive tokens. */
    CHECK_EQ(negotiate("Permessage-Deflate"), 0);
}

TEST(declines_offers_whole)
{
    static const char *const declined[] = {
        "permessage-deflate; foo",
        "permessage-deflate; client_max_window_bits; foo=1",
        "permessage-deflate; Client_Max_Window_Bits",
        "permessage-deflate; client_max_window_bits; client_max_window_bits",
        "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
        "permessage-deflate; server_max_window_bits=10; server_max_window_bits=10",
        "permessage-deflate; server_no_context_takeover=1",
        "permessage-deflate; client_no_context_takeover=\"x\"",
        "permessage-deflate; server_max_window_bits",
        "permessage-deflate; server_max_window_bits=8",
        "permessage-deflate; server_max_window_bits=\"8\"",
        "permessage-deflate; server_max_window_bits=7",
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; server_max_window_bits=010",
        "permessage-deflate; server_max_window_bits=09",
        "permessage-deflate; server_max_window_bits=1x",
        "permessage-deflate; server_max_window_bits=100000000000000000010",
        "permessage-deflate; client_max_window_bits=0",
        "permessage-deflate; client_max_window_bits=7",
        "permessage-deflate; client_max_window_bits=16",
        "permessage-deflate; client_max_window_bits=abc",
        "permessage-deflate; client_max_window_bits=-9",
    };

    for (size_t i = 0; i < sizeof declined / sizeof declined[0]; i++) {
        if (negotiate(declined[i]) != 0) {
            fprintf(stderr, "not declined: %s\n", declined[i]);
            CHECK(0);
        }
        CHECK_MEM(resp, strlen(resp), "-");
    }
}

TEST(takes_the_first_acceptable_offer)
{
    CHECK(negotiate("permessage-deflate; server_max_window_bits=8, "
                    "permessage-deflate; client_max_window_bits") > 0);
    CHECK_MEM(resp, strlen(resp), PLAIN);
    CHECK(agreed(15, 15, false));
    CHECK(negotiate("permessage-deflate; foo, permessage-deflate; server_max_window_bits=10, "
                    "permessage-deflate") > 0);
    CHECK_MEM(resp, strlen(resp), PLAIN "; server_max_window_bits=10");
    CHECK(negotiate("permessage-deflate; client_no_context_takeover, permessage-deflate") > 0);
    CHECK(agreed(15, 15, true));
}

TEST(refuses_broken_values)
{
    static const char *const broken[] = {
        ";",
        ",;",
        "permessage-deflate;",
        "permessage-deflate; ",
        "permessage-deflate;; client_max_window_bits",
        "permessage-deflate; =10",
        "permessage-deflate; client_max_window_bits=",
        "permessage-deflate; client_max_window_bits==10",
        "permessage-deflate client_max_window_bits",
        "permessage-deflate; client_max_window_bits 10",
        "permessage-deflate; client_max_window_bits=1 0",
        "permessage-deflate; server_max_window_bits=\"10",
        "permessage-deflate; server_max_window_bits=\"\"",
        "permessage-deflate; server_max_window_bits=\"1 0\"",
        "permessage-deflate; server_max_window_bits=\"10\\\"",
        "permessage-deflate; x=\"a,b\"",
        /* A quoted value must unescape to a token (RFC 6455 section 9.1). */
        "permessage-deflate; x=\"a\\\"\"",
        "permessage-deflate; x=\"\\",
        "perm@ssage-deflate",
        "\"permessage-deflate\"",
        "permessage-deflate, ;",
        /* A broken value is refused even after an acceptable offer. */
        "permessage-deflate, permessage-deflate; =",
        "permessage-deflate\r\n",
        "permessage-deflate; x=\x80",
    };

    for (size_t i = 0; i < sizeof broken / sizeof broken[0]; i++) {
        if (negotiate(broken[i]) != -1) {
            fprintf(stderr, "not refused: %s\n", broken[i]);
            CHECK(0);
        }
        CHECK_MEM(resp, strlen(resp), "-");
        CHECK(agreed(-1, -1, true));
    }
}

/* A 64-bit linear congruential generator (Knuth's MMIX constants); returns its high 31 bits. */
static uint32_t lcg_next(uint64_t *state)
{
    *state = *state * 6364136223846793005u + 1442695040888963407u;
    return (uint32_t)(*state >> 33);
}

TEST(negotiation_mutation_fuzz)
{
    static const char *const seeds[] = {
        "permessage-deflate; client_max_window_bits",
        /* The parentheses tell the compiler that these two lines are one element. */
        ("permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
         "server_max_window_bits=15; client_max_window_bits=15"),
        "foo; a=\"b\\c\", permessage-deflate; server_max_window_bits=\"9\", permessage-deflate",
    };
    static const char interesting[] = " \t,;=\"\\089159abcdefp-_";
    uint64_t rng = 0x5eed;
    char work[256];

    for (int iter = 0; iter < 100000; iter++) {
        const char *seed = seeds[lcg_next(&rng) % 3];
        size_t len = strlen(seed);
        int r;

        memcpy(work, seed, len);
        for (uint32_t edits = 1 + lcg_next(&rng) % 4; edits > 0; edits--) {
            uint32_t e = lcg_next(&rng);
            size_t at = len ? (e >> 3) % len : 0;
            char byte = e & 4 ? (char)lcg_next(&rng)
                              : interesting[lcg_next(&rng) % (sizeof interesting - 1)];

            if (e % 3 == 0 && len) {
                memmove(work + at, work + at + 1, len - at - 1);
                len--;
            } else if (e % 3 == 1 && len < sizeof work - 1) {
                memmove(work + at + 1, work + at, len - at);
                work[at] = byte;
                len++;
            } else if (len) {
                work[at] = byte;
            }
        }
        work[len] = '\0';
        /* strlen stops at a NUL the edits put in; what matters is that the input is bounded. */
        r = negotiate(work);
        CHECK(r >= -1 && r < (int)RC_DEFLATE_RESPONSE_MAX);
        if (r > 0) {
            char again[RC_DEFLATE_RESPONSE_MAX];
            struct rc_deflate_params first = params;

            CHECK_EQ(strlen(resp), r);
            CHECK(params.server_window_bits >= 9 && params.server_window_bits <= 15);
            CHECK(params.client_window_bits >= 8 && params.client_window_bits <= 15);
            /* An answer is itself an acceptable offer, and is answered with itself. */
            strcpy(again, resp);
            CHECK_EQ(negotiate(again), r);
            CHECK_MEM(resp, strlen(resp), again);
            CHECK(agreed(first.server_window_bits, first.client_window_bits,
                         first.client_no_context_takeover));
        }
    }
}

/* Compresses in[0..n) with window_bits into a malloc'ed buffer; returns rc_deflate_message(). */
static int compress(const void *in, size_t n, int window_bits, unsigned char **out, size_t *len)
{
    *out = NULL;
    return rc_deflate_message(in, n, out, len, window_bits);
}

/*
 * Inflates one whole message in[0..n), fed in pieces of at most `piece` bytes (the last one marked
 * final), into out[0..cap); returns rc_inflate()'s result and the bytes made in *len.
 */
static int inflate_message(struct rc_inflater *inf, const unsigned char *in, size_t n, size_t piece,
                           unsigned char *out, size_t cap, size_t *len)
{
    size_t at = 0;

    *len = 0;
    do {
        size_t k = n - at < piece ? n - at : piece;
        int r = rc_inflate(inf, in + at, k, at + k == n, out, cap, len);

        if (r != 0)
            return r;
        at += k;
    } while (at < n);
    return 0;
}

TEST(rfc7692_compression_examples)
{
    unsigned char *out, *again;
    size_t len, again_len;

    /* Section 7.2.3.1: "Hello" in one compressed message. */
    CHECK_EQ(compress("Hello", 5, 15, &out, &len), 0);
    CHECK_EQ(len, 7);
    CHECK(memcmp(out, "\xf2\x48\xcd\xc9\xc9\x07\x00", 7) == 0);
    /* Section 7.2.3.2 without context takeover: the second message is the same bytes again. */
    CHECK_EQ(compress("Hello", 5, 15, &again, &again_len), 0);
    CHECK(again_len == len && memcmp(out, again, len) == 0);
    free(out);
    free(again);
    /* Section 7.2.3.6: an empty message is an empty stored block header, one byte. */
    CHECK_EQ(compress("", 0, 15, &out, &len), 0);
    CHECK_EQ(len, 1);
    CHECK_EQ(out[0], 0x00);
    free(out);
    /* The window the client allows is honoured or refused, never silently enlarged. */
    CHECK_EQ(compress("Hello", 5, 8, &out, &len), -EINVAL);
    CHECK_EQ(compress("Hello", 5, 16, &out, &len), -EINVAL);
    CHECK(out == NULL);
}

TEST(rfc7692_inflation_examples)
{
    struct rc_inflater *inf = rc_inflater_new(15, false);
    unsigned char out[64];
    size_t len;

    CHECK(inf != NULL);
    /* 7.2.3.1, then 7.2.3.2: the second "Hello" refers back into the first message. */
    CHECK_EQ(inflate_message(inf, S("\xf2\x48\xcd\xc9\xc9\x07\x00"), 64, out, sizeof out, &len), 0);
    CHECK_MEM(out, len, "Hello");
    CHECK_EQ(inflate_message(inf, S("\xf2\x00\x11\x00\x00"), 64, out, sizeof out, &len), 0);
    CHECK_MEM(out, len, "Hello");
    /* 7.2.3.3: a stored block. */
    CHECK_EQ(inflate_message(inf, S("\x00\x05\x00\xfa\xff\x48\x65\x6c\x6c\x6f\x00"), 64, out,
                             sizeof out, &len),
             0);
    CHECK_MEM(out, len, "Hello");
    /* 7.2.3.4: a final block, then the empty stored block header the RFC puts after it. */
    CHECK_EQ(inflate_message(inf, S("\xf3\x48\xcd\xc9\xc9\x07\x00\x00"), 64, out, sizeof out, &len),
             0);
    CHECK_MEM(out, len, "Hello");
    /* The same without that last byte, as zlib's Z_FINISH makes it: still fine, and so after. */
    CHECK_EQ(inflate_message(inf, S("\xf3\x48\xcd\xc9\xc9\x07\x00"), 64, out, sizeof out, &len), 0);
    CHECK_MEM(out, len, "Hello");
    /* 7.2.3.5: two blocks in one message. */
    CHECK_EQ(inflate_message(inf, S("\xf2\x48\x05\x00\x00\x00\xff\xff\xca\xc9\xc9\x07\x00"), 64,
                             out, sizeof out, &len),
             0);
    CHECK_MEM(out, len, "Hello");
    /* The same messages fed a byte at a time. */
    CHECK_EQ(inflate_message(inf, S("\xf2\x48\xcd\xc9\xc9\x07\x00"), 1, out, sizeof out, &len), 0);
    CHECK_MEM(out, len, "Hello");
    CHECK_EQ(inflate_message(inf, S("\xf2\x00\x11\x00\x00"), 1, out, sizeof out, &len), 0);
    CHECK_MEM(out, len, "Hello");
    /* The final call may bring no bytes at all. */
    len = 0;
    CHECK_EQ(rc_inflate(inf, "\xf2\x48\xcd\xc9\xc9\x07\x00", 7, false, out, sizeof out, &len), 0);
    CHECK_EQ(rc_inflate(inf, "", 0, true, out, sizeof out, &len), 0);
    CHECK_MEM(out, len, "Hello");
    rc_inflater_free(inf);
}

TEST(no_context_takeover_is_enforced)
{
    struct rc_inflater *inf = rc_inflater_new(15, true);
    unsigned char out[64];
    size_t len;

    CHECK_EQ(inflate_message(inf, S("\xf2\x48\xcd\xc9\xc9\x07\x00"), 64, out, sizeof out, &len), 0);
    CHECK_MEM(out, len, "Hello");
    /* Section 7.2.3.2's second message needs the first one's window, which was dropped. */
    CHECK_EQ(inflate_message(inf, S("\xf2\x00\x11\x00\x00"), 64, out, sizeof out, &len), -EBADMSG);
    rc_inflater_free(inf);

    inf = rc_inflater_new(15, true);
    for (int i = 0; i < 3; i++) {
        CHECK_EQ(inflate_message(inf, S("\xf2\x48\xcd\xc9\xc9\x07\x00"), 3, out, sizeof out, &len),
                 0);
        CHECK_MEM(out, len, "Hello");
    }
    rc_inflater_free(inf);
    CHECK(rc_inflater_new(7, false) == NULL);
    CHECK(rc_inflater_new(16, false) == NULL);
    rc_inflater_free(NULL);
}

TEST(messages_cut_short_are_refused)
{
    /* "Hello" (section 7.2.3.1) without its last byte or two, and an empty payload. */
    static const char *const cut[] = {"\xf2\x48\xcd\xc9\xc9\x07", "\xf2\x48\xcd\xc9\xc9",
                                      "\xf2\x48\xcd", "\xf2", ""};
    static const char text[] = "event: tick\ndata: {\"seq\": 12345, \"price\": 101.25}\n\n"
                               "event: tick\ndata: {\"seq\": 12346, \"price\": 101.5}\n\n";
    unsigned char out[256], *c;
    size_t len, clen;

    for (size_t i = 0; i < sizeof cut / sizeof cut[0]; i++) {
        for (int cnct = 0; cnct < 2; cnct++) {
            struct rc_inflater *inf = rc_inflater_new(15, cnct);

            /* Before it was refused, the tail was read as data: "Hellh" for the second. */
            CHECK_EQ(inflate_message(inf, (const unsigned char *)cut[i], strlen(cut[i]), 64, out,
                                     sizeof out, &len),
                     -EBADMSG);
            rc_inflater_free(inf);
            /* Also after a good message, which used to leave the next one to fail instead. */
            inf = rc_inflater_new(15, cnct);
            CHECK_EQ(
                inflate_message(inf, S("\xf2\x48\xcd\xc9\xc9\x07\x00"), 64, out, sizeof out, &len),
                0);
            CHECK_EQ(inflate_message(inf, (const unsigned char *)cut[i], strlen(cut[i]), 1, out,
                                     sizeof out, &len),
                     -EBADMSG);
            rc_inflater_free(inf);
        }
    }
    /* Every proper prefix of a message in one block is refused; the whole one is taken. */
    CHECK_EQ(compress(text, sizeof text - 1, 15, &c, &clen), 0);
    for (size_t n = 0; n <= clen; n++) {
        struct rc_inflater *inf = rc_inflater_new(15, false);
        int r = inflate_message(inf, c, n, 16, out, sizeof out, &len);

        if (n < clen && r != -EBADMSG) {
            fprintf(stderr, "prefix of %zu/%zu bytes: %d\n", n, clen, r);
            CHECK(0);
        }
        if (n == clen)
            CHECK(r == 0 && len == sizeof text - 1 && memcmp(out, text, len) == 0);
        rc_inflater_free(inf);
    }
    free(c);
}

TEST(messages_that_end_a_stream_are_taken)
{
    struct rc_inflater *inf = rc_inflater_new(15, false);
    unsigned char out[64];
    size_t len;

    /* "Hello", then the empty stored block with BFINAL set: the tail completes the stream. */
    CHECK_EQ(inflate_message(inf, S("\xf2\x48\xcd\xc9\xc9\x07\x04"), 64, out, sizeof out, &len), 0);
    CHECK_MEM(out, len, "Hello");
    /* A message that ends with its final block (as Z_FINISH leaves it), and two blocks of which
     * the second is final. */
    CHECK_EQ(inflate_message(inf, S("\xf3\x48\xcd\xc9\xc9\x07\x00"), 3, out, sizeof out, &len), 0);
    CHECK_MEM(out, len, "Hello");
    CHECK_EQ(inflate_message(inf, S("\xf2\x48\x05\x00\x00\x00\xff\xff\xcb\xc9\xc9\x07\x00"), 64,
                             out, sizeof out, &len),
             0);
    CHECK_MEM(out, len, "Hello");
    /* Each left the inflater ready for the next message, which starts a fresh stream. */
    CHECK_EQ(inflate_message(inf, S("\xf2\x48\xcd\xc9\xc9\x07\x00"), 64, out, sizeof out, &len), 0);
    CHECK_MEM(out, len, "Hello");
    /* Still, a stream that ends and then starts a block it does not finish is cut short. */
    CHECK_EQ(
        inflate_message(inf, S("\xf3\x48\xcd\xc9\xc9\x07\x00\xf2\x48"), 64, out, sizeof out, &len),
        -EBADMSG);
    rc_inflater_free(inf);
}

TEST(output_limit_is_exact)
{
    struct rc_inflater *inf = rc_inflater_new(15, false);
    unsigned char *out = malloc(5);
    size_t len;

    /* Exactly enough room, and one byte less. Heap buffers of that size let ASan watch. */
    CHECK_EQ(inflate_message(inf, S("\xf2\x48\xcd\xc9\xc9\x07\x00"), 64, out, 5, &len), 0);
    CHECK_MEM(out, len, "Hello");
    CHECK_EQ(inflate_message(inf, S("\xf2\x48\xcd\xc9\xc9\x07\x00"), 64, out, 4, &len), -EMSGSIZE);
    CHECK_EQ(len, 4);
    rc_inflater_free(inf);
    inf = rc_inflater_new(15, false);
    CHECK_EQ(
        inflate_message(inf, S("\x00\x05\x00\xfa\xff\x48\x65\x6c\x6c\x6f\x00"), 2, out, 4, &len),
        -EMSGSIZE);
    rc_inflater_free(inf);
    free(out);
}

TEST(zip_bomb_stops_at_the_limit)
{
    const size_t size = 1 << 20, limit = 64 << 10;
    unsigned char *zeros = calloc(1, size), *out = malloc(size), *bomb;
    struct rc_inflater *inf;
    size_t bomb_len, len;

    CHECK_EQ(compress(zeros, size, 15, &bomb, &bomb_len), 0);
    /* A megabyte of zeros is about a kilobyte compressed. */
    CHECK(bomb_len < 2048);

    inf = rc_inflater_new(15, false);
    CHECK_EQ(inflate_message(inf, bomb, bomb_len, bomb_len, out, limit, &len), -EMSGSIZE);
    CHECK_EQ(len, limit);
    rc_inflater_free(inf);
    /* The same in small reads: the first read that would pass the limit fails. */
    inf = rc_inflater_new(15, false);
    CHECK_EQ(inflate_message(inf, bomb, bomb_len, 16, out, limit, &len), -EMSGSIZE);
    CHECK_EQ(len, limit);
    rc_inflater_free(inf);
    /* With room for all of it, it inflates, and one byte less is refused. */
    inf = rc_inflater_new(15, false);
    CHECK_EQ(inflate_message(inf, bomb, bomb_len, 100, out, size, &len), 0);
    CHECK_EQ(len, size);
    CHECK(memcmp(out, zeros, size) == 0);
    rc_inflater_free(inf);
    inf = rc_inflater_new(15, false);
    CHECK_EQ(inflate_message(inf, bomb, bomb_len, 100, out, size - 1, &len), -EMSGSIZE);
    rc_inflater_free(inf);
    free(bomb);
    free(zeros);
    free(out);
}

TEST(round_trips_at_every_window)
{
    static const size_t sizes[] = {0, 1, 5, 200, 256, 257, 4096, 70000, 300000};
    const size_t max = 300000;
    unsigned char *text = malloc(max), *noise = malloc(max), *out = malloc(max);
    uint64_t rng = 0x5eed;

    /* Text-like data with long repeats, and random bytes that do not compress. */
    for (size_t i = 0; i < max; i++) {
        text[i] =
            (unsigned char)("event: tick\ndata: {\"seq\": 12345}\n\n"[i % 35] + (i / 4000) % 3);
        noise[i] = (unsigned char)lcg_next(&rng);
    }
    for (int bits = 9; bits <= 15; bits++) {
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
            for (int kind = 0; kind < 2; kind++) {
                const unsigned char *in = kind ? noise : text;
                size_t n = sizes[s], clen, len;
                unsigned char *c;
                struct rc_inflater *inf;

                CHECK_EQ(compress(in, n, bits, &c, &clen), 0);
                if (kind == 0 && n >= 4096)
                    CHECK(clen < n / 4);
                /* The client's inflater needs no larger window than the server used. */
                inf = rc_inflater_new(bits, true);
                CHECK_EQ(inflate_message(inf, c, clen, 1000, out, n, &len), 0);
                CHECK_EQ(len, n);
                CHECK(memcmp(out, in, n) == 0);
                /* A second message on the same inflater, in other pieces. */
                CHECK_EQ(inflate_message(inf, c, clen, 7, out, n, &len), 0);
                CHECK(len == n && memcmp(out, in, n) == 0);
                rc_inflater_free(inf);
                /* A message no longer than 256 bytes fits even a 256-byte window. */
                if (n <= 256) {
                    inf = rc_inflater_new(8, false);
                    CHECK_EQ(inflate_message(inf, c, clen, 64, out, n, &len), 0);
                    CHECK(len == n && memcmp(out, in, n) == 0);
                    rc_inflater_free(inf);
                }
                free(c);
            }
        }
    }
    free(text);
    free(noise);
    free(out);
}

TEST(inflate_mutation_fuzz)
{
    static const char *const messages[] = {
        "Hello",
        "event: tick\ndata: {\"seq\": 1}\n\nevent: tick\ndata: {\"seq\": 2}\n\n",
        "a much longer message, a much longer message, with some repetition in it, repetition",
    };
    unsigned char *compressed[3];
    size_t compressed_len[3];
    uint64_t rng = 0x5eed;
    unsigned char work[256], out[128];

    for (int i = 0; i < 3; i++)
        CHECK_EQ(compress(messages[i], strlen(messages[i]), 15, &compressed[i], &compressed_len[i]),
                 0);
    for (int iter = 0; iter < 50000; iter++) {
        int m = (int)(lcg_next(&rng) % 3);
        size_t len = compressed_len[m], cap = lcg_next(&rng) % sizeof out, made;
        struct rc_inflater *inf =
            rc_inflater_new(8 + (int)(lcg_next(&rng) % 8), lcg_next(&rng) & 1);
        unsigned char *heap_out = malloc(cap ? cap : 1);
        int r;

        memcpy(work, compressed[m], len);
        for (uint32_t edits = 1 + lcg_next(&rng) % 3; edits > 0; edits--) {
            uint32_t e = lcg_next(&rng);

            if (e % 4 == 0 && len < sizeof work)
                work[len++] = (unsigned char)(e >> 8);
            else if (e % 4 == 1 && len > 0)
                len--;
            else if (len > 0)
                work[(e >> 8) % len] ^= (unsigned char)(1u << (e >> 4) % 8);
        }
        r = inflate_message(inf, work, len, 1 + lcg_next(&rng) % 8, heap_out, cap, &made);
        CHECK(r == 0 || r == -EMSGSIZE || r == -EBADMSG);
        CHECK(made <= cap);
        if (r == 0) {
            /* A message that inflated leaves the inflater ready for the next one. */
            r = inflate_message(inf, compressed[0], compressed_len[0], 64, out, sizeof out, &made);
            CHECK(r == 0 || r == -EBADMSG);
        }
        free(heap_out);
        rc_inflater_free(inf);
    }
    for (int i = 0; i < 3; i++)
        free(compressed[i]);
}

TEST_MAIN()
