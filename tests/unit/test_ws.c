/*
 * Tests for WebSocket framing: the examples of RFC 6455 section 5.7, every rule of the frame
 * check, message state across fragments, unmasking split at every point, the Close payload and
 * status code table, every prefix of each header, and a mutation fuzz loop.
 */
#include "ringcast/ws.h"

#include <stdint.h>
#include <stdlib.h>

#include "test.h"

/* A string literal as the (pointer, length) pair the functions take, NUL bytes included. */
#define S(lit) (const unsigned char *)(lit), sizeof(lit) - 1

/* The masking key of RFC 6455's masked examples. */
static const unsigned char rfc_key[4] = {0x37, 0xfa, 0x21, 0x3d};

/*
 * The heap copy of the last parsed input, exactly as long as the input, so that ASan reports a
 * read past its end.
 */
static unsigned char *input;

/* Parses the frame header in a heap copy of s[0..len). */
static int parse(const unsigned char *s, size_t len, struct rc_ws_frame *f)
{
    free(input);
    input = malloc(len ? len : 1);
    memcpy(input, s, len);
    return rc_ws_parse_frame(input, len, f);
}

/* Parses s[0..len), which must hold a whole valid header, and returns its check at `st`. */
static int check(const unsigned char *s, size_t len, const struct rc_ws_msgstate *st, bool deflate,
                 uint64_t max_message)
{
    struct rc_ws_frame f;

    if (parse(s, len, &f) < 0)
        return -100;
    return rc_ws_check_frame(&f, st, deflate, max_message);
}

/* Parses, checks and records one frame header, as the engine does; returns the check. */
static int receive(struct rc_ws_msgstate *st, const unsigned char *s, size_t len,
                   uint64_t max_message)
{
    struct rc_ws_frame f;
    int r;

    if (parse(s, len, &f) < 0)
        return -100;
    r = rc_ws_check_frame(&f, st, true, max_message);
    if (r == 0)
        rc_ws_msgstate_update(st, &f);
    return r;
}

static const struct rc_ws_msgstate idle;

TEST(rfc_single_frame_unmasked_text)
{
    static const unsigned char frame[] = {0x81, 0x05, 'H', 'e', 'l', 'l', 'o'};
    unsigned char hdr[RC_WS_MAX_SERVER_HEADER];
    struct rc_ws_frame f;

    CHECK_EQ(parse(frame, sizeof frame, &f), 2);
    CHECK(f.fin && !f.rsv1 && !f.rsv2 && !f.rsv3 && !f.masked);
    CHECK_EQ(f.opcode, RC_WS_TEXT);
    CHECK_EQ(f.payload_len, 5);
    /* A server sends it; a client may not. */
    CHECK_EQ(rc_ws_check_frame(&f, &idle, false, 1 << 20), 1002);
    CHECK_EQ(rc_ws_frame_header(hdr, RC_WS_TEXT, true, false, 5), 2);
    CHECK(memcmp(hdr, frame, 2) == 0);
}

TEST(rfc_single_frame_masked_text)
{
    static const unsigned char frame[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d,
                                          0x7f, 0x9f, 0x4d, 0x51, 0x58};
    unsigned char payload[5];
    struct rc_ws_frame f;

    CHECK_EQ(parse(frame, sizeof frame, &f), 6);
    CHECK(f.fin && f.masked);
    CHECK_EQ(f.opcode, RC_WS_TEXT);
    CHECK_EQ(f.payload_len, 5);
    CHECK(memcmp(f.mask, rfc_key, 4) == 0);
    CHECK_EQ(rc_ws_check_frame(&f, &idle, false, 1 << 20), 0);
    memcpy(payload, frame + 6, 5);
    rc_ws_unmask(payload, 5, f.mask, 0);
    CHECK_MEM(payload, 5, "Hello");
}

TEST(rfc_fragmented_text)
{
    /* The RFC's fragments "Hel" and "lo", masked here as a client must. */
    static const unsigned char first[] = {0x01, 0x83, 0x37, 0xfa, 0x21, 0x3d};
    static const unsigned char last[] = {0x80, 0x82, 0x37, 0xfa, 0x21, 0x3d};
    static const unsigned char ping[] = {0x89, 0x85, 0x37, 0xfa, 0x21, 0x3d};
    static const unsigned char rfc_first[] = {0x01, 0x03, 'H', 'e', 'l'};
    static const unsigned char rfc_last[] = {0x80, 0x02, 'l', 'o'};
    struct rc_ws_msgstate st = idle;
    struct rc_ws_frame f;

    CHECK_EQ(parse(rfc_first, sizeof rfc_first, &f), 2);
    CHECK(!f.fin && f.opcode == RC_WS_TEXT && f.payload_len == 3);
    CHECK_EQ(parse(rfc_last, sizeof rfc_last, &f), 2);
    CHECK(f.fin && f.opcode == RC_WS_CONTINUATION && f.payload_len == 2);

    CHECK_EQ(receive(&st, first, sizeof first, 1 << 20), 0);
    CHECK(st.continues && st.opcode == RC_WS_TEXT && st.len == 3 && !st.compressed);
    /* Control frames may come between the fragments (section 5.4) and leave the state alone. */
    CHECK_EQ(receive(&st, ping, sizeof ping, 1 << 20), 0);
    CHECK(st.continues && st.len == 3);
    CHECK_EQ(receive(&st, last, sizeof last, 1 << 20), 0);
    CHECK(!st.continues && st.opcode == RC_WS_TEXT && st.len == 5);
    /* The message is over: another continuation has nothing to continue. */
    CHECK_EQ(receive(&st, last, sizeof last, 1 << 20), 1002);
}

TEST(rfc_ping_pong_and_long_lengths)
{
    static const unsigned char ping[] = {0x89, 0x05, 'H', 'e', 'l', 'l', 'o'};
    static const unsigned char pong[] = {0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d,
                                         0x7f, 0x9f, 0x4d, 0x51, 0x58};
    static const unsigned char len256[] = {0x82, 0x7e, 0x01, 0x00};
    static const unsigned char len64k[] = {0x82, 0x7f, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00};
    unsigned char hdr[RC_WS_MAX_SERVER_HEADER], payload[5];
    struct rc_ws_frame f;

    CHECK_EQ(parse(ping, sizeof ping, &f), 2);
    CHECK(f.fin && f.opcode == RC_WS_PING && f.payload_len == 5 && !f.masked);
    CHECK_EQ(rc_ws_frame_header(hdr, RC_WS_PING, true, false, 5), 2);
    CHECK(memcmp(hdr, ping, 2) == 0);

    CHECK_EQ(parse(pong, sizeof pong, &f), 6);
    CHECK(f.fin && f.opcode == RC_WS_PONG && f.payload_len == 5 && f.masked);
    CHECK_EQ(rc_ws_check_frame(&f, &idle, false, 1 << 20), 0);
    memcpy(payload, pong + 6, 5);
    rc_ws_unmask(payload, 5, f.mask, 0);
    CHECK_MEM(payload, 5, "Hello");

    CHECK_EQ(parse(len256, sizeof len256, &f), 4);
    CHECK(f.opcode == RC_WS_BINARY && f.payload_len == 256);
    CHECK_EQ(rc_ws_frame_header(hdr, RC_WS_BINARY, true, false, 256), 4);
    CHECK(memcmp(hdr, len256, 4) == 0);

    CHECK_EQ(parse(len64k, sizeof len64k, &f), 10);
    CHECK(f.opcode == RC_WS_BINARY && f.payload_len == 65536);
    CHECK_EQ(rc_ws_frame_header(hdr, RC_WS_BINARY, true, false, 65536), 10);
    CHECK(memcmp(hdr, len64k, 10) == 0);
}

TEST(length_encodings)
{
    static const uint64_t lengths[] = {0,     1,     125,         126,          127,
                                       65535, 65536, 0xffffffffu, 0x100000000u, INT64_MAX};
    unsigned char buf[RC_WS_MAX_HEADER];
    struct rc_ws_frame f;

    for (size_t i = 0; i < sizeof lengths / sizeof lengths[0]; i++) {
        uint64_t n = lengths[i];
        size_t h = rc_ws_frame_header(buf, RC_WS_BINARY, false, true, n);

        CHECK_EQ(h, n < 126 ? 2 : n <= 65535 ? 4 : 10);
        CHECK_EQ(buf[0], 0x42);
        /* The same header from a client: mask bit and key added. */
        buf[1] |= 0x80;
        memcpy(buf + h, rfc_key, 4);
        CHECK_EQ(parse(buf, h + 4, &f), (int)h + 4);
        CHECK_EQ(f.payload_len, n);
        CHECK(!f.fin && f.rsv1 && f.masked && f.opcode == RC_WS_BINARY);
    }
    /* A length in more bytes than it needs is accepted as it stands. */
    CHECK_EQ(parse(S("\x82\xfe\x00\x05\x01\x02\x03\x04"), &f), 8);
    CHECK_EQ(f.payload_len, 5);
    CHECK_EQ(parse(S("\x82\xff\x00\x00\x00\x00\x00\x00\x00\x05\x01\x02\x03\x04"), &f), 14);
    CHECK_EQ(f.payload_len, 5);
    /* The most significant bit of a 64-bit length must be 0. */
    CHECK_EQ(parse(S("\x82\xff\x80\x00\x00\x00\x00\x00\x00\x00\x01\x02\x03\x04"), &f), -1);
    CHECK_EQ(f.close_code, 1002);
    CHECK_EQ(parse(S("\x82\x7f\xff\xff\xff\xff\xff\xff\xff\xff"), &f), -1);
    CHECK_EQ(f.close_code, 1002);
}

TEST(every_prefix_is_incomplete)
{
    static const struct {
        const char *bytes;
        size_t len;
    } frames[] = {
        {"\x81\x05", 2},
        {"\x81\x85\x37\xfa\x21\x3d", 6},
        {"\x82\x7e\x01\x00", 4},
        {"\x82\xfe\x01\x00\x01\x02\x03\x04", 8},
        {"\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00", 10},
        {"\x82\xff\x00\x00\x00\x00\x00\x01\x00\x00\x01\x02\x03\x04", 14},
        {"\x82\xff\x80\x00\x00\x00\x00\x01\x00\x00\x01\x02\x03\x04", 14},
    };
    struct rc_ws_frame f;

    for (size_t i = 0; i < sizeof frames / sizeof frames[0]; i++) {
        const unsigned char *b = (const unsigned char *)frames[i].bytes;
        size_t len = frames[i].len;
        int whole = parse(b, len, &f);

        /* The last case is refused; the others parse whole, payload or not. */
        CHECK(whole == (int)len || (whole == -1 && i == 6));
        for (size_t k = 0; k < len; k++) {
            int r = parse(b, k, &f);

            /* The bad length of the last case is known as soon as its 10 bytes are in. */
            CHECK(r == -2 || (i == 6 && k >= 10 && r == -1));
        }
    }
}

TEST(check_rules)
{
    struct rc_ws_msgstate in_text = {.len = 10, .opcode = RC_WS_TEXT, .continues = true};
    const uint64_t max = 1000;

    /* Unmasked. */
    CHECK_EQ(check(S("\x82\x00"), &idle, false, max), 1002);
    CHECK_EQ(check(S("\x88\x00"), &idle, false, max), 1002);
    /* Reserved opcodes, masked and final. */
    for (int op = 0; op < 16; op++) {
        unsigned char frame[] = {(unsigned char)(0x80 | op), 0x80, 1, 2, 3, 4};
        bool reserved = (op >= 3 && op <= 7) || op >= 0xb;

        if (op != RC_WS_CONTINUATION)
            CHECK_EQ(check(frame, sizeof frame, &idle, false, max), reserved ? 1002 : 0);
    }
    /* Control frames: final, at most 125 bytes, no RSV bit, also with deflate negotiated. */
    CHECK_EQ(check(S("\x89\xfd\1\2\3\4"), &idle, false, max), 0);
    CHECK_EQ(check(S("\x89\xfe\x00\x7e\1\2\3\4"), &idle, false, max), 1002);
    CHECK_EQ(check(S("\x88\xfe\x00\x7d\1\2\3\4"), &idle, false, max), 0);
    CHECK_EQ(check(S("\x09\x80\1\2\3\4"), &idle, false, max), 1002);
    CHECK_EQ(check(S("\xc9\x80\1\2\3\4"), &idle, true, max), 1002);
    CHECK_EQ(check(S("\x8a\x80\1\2\3\4"), &in_text, false, max), 0);
    /* Control frames do not count towards the message size. */
    CHECK_EQ(check(S("\x89\xfd\1\2\3\4"), &in_text, false, 10), 0);
    /* RSV1 only with deflate, only on a first frame; RSV2 and RSV3 never. */
    CHECK_EQ(check(S("\xc1\x80\1\2\3\4"), &idle, false, max), 1002);
    CHECK_EQ(check(S("\xc1\x80\1\2\3\4"), &idle, true, max), 0);
    CHECK_EQ(check(S("\x42\x80\1\2\3\4"), &idle, true, max), 0);
    CHECK_EQ(check(S("\xc0\x80\1\2\3\4"), &in_text, true, max), 1002);
    CHECK_EQ(check(S("\xa1\x80\1\2\3\4"), &idle, true, max), 1002);
    CHECK_EQ(check(S("\x91\x80\1\2\3\4"), &idle, true, max), 1002);
    /* Continuations need a message in progress; new messages need none. */
    CHECK_EQ(check(S("\x80\x80\1\2\3\4"), &idle, false, max), 1002);
    CHECK_EQ(check(S("\x00\x80\1\2\3\4"), &idle, false, max), 1002);
    CHECK_EQ(check(S("\x80\x80\1\2\3\4"), &in_text, false, max), 0);
    CHECK_EQ(check(S("\x81\x80\1\2\3\4"), &in_text, false, max), 1002);
    CHECK_EQ(check(S("\x02\x80\1\2\3\4"), &in_text, false, max), 1002);
    /* Size: a first frame alone, a continuation added to what came before. */
    CHECK_EQ(check(S("\x82\xfe\x03\xe8\1\2\3\4"), &idle, false, max), 0);
    CHECK_EQ(check(S("\x82\xfe\x03\xe9\1\2\3\4"), &idle, false, max), 1009);
    CHECK_EQ(check(S("\x80\xfe\x03\xde\1\2\3\4"), &in_text, false, max), 0);
    CHECK_EQ(check(S("\x80\xfe\x03\xdf\1\2\3\4"), &in_text, false, max), 1009);
    CHECK_EQ(check(S("\x82\xff\x7f\xff\xff\xff\xff\xff\xff\xff\1\2\3\4"), &idle, false, UINT64_MAX),
             0);
    CHECK_EQ(check(S("\x80\xff\x7f\xff\xff\xff\xff\xff\xff\xff\1\2\3\4"), &in_text, false, max),
             1009);
    /* A limit of 0 still lets empty messages through. */
    CHECK_EQ(check(S("\x81\x80\1\2\3\4"), &idle, false, 0), 0);
    CHECK_EQ(check(S("\x81\x81\1\2\3\4"), &idle, false, 0), 1009);
}

TEST(message_state_across_frames)
{
    struct rc_ws_msgstate st = idle;

    /* A compressed binary message in three frames, with a pong in between. */
    CHECK_EQ(receive(&st, S("\x42\x84\1\2\3\4"), 10), 0);
    CHECK(st.continues && st.compressed && st.opcode == RC_WS_BINARY && st.len == 4);
    CHECK_EQ(receive(&st, S("\x8a\x80\1\2\3\4"), 10), 0);
    CHECK_EQ(receive(&st, S("\x00\x84\1\2\3\4"), 10), 0);
    CHECK_EQ(st.len, 8);
    /* 8 + 3 is over 10. */
    CHECK_EQ(receive(&st, S("\x80\x83\1\2\3\4"), 10), 1009);
    CHECK_EQ(receive(&st, S("\x80\x82\1\2\3\4"), 10), 0);
    CHECK(!st.continues && st.compressed && st.len == 10);
    /* The next message starts afresh: uncompressed, single frame, its own length. */
    CHECK_EQ(receive(&st, S("\x81\x8a\1\2\3\4"), 10), 0);
    CHECK(!st.continues && !st.compressed && st.opcode == RC_WS_TEXT && st.len == 10);
    CHECK_EQ(receive(&st, S("\x81\x8b\1\2\3\4"), 10), 1009);
}

TEST(unmask_matches_bytewise_xor_at_every_split)
{
    unsigned char plain[67], masked[67], work[67];
    const unsigned char key[4] = {0xa1, 0x5b, 0x3c, 0xd7};

    for (size_t i = 0; i < sizeof plain; i++)
        plain[i] = (unsigned char)(i * 37 + 11);
    for (size_t i = 0; i < sizeof plain; i++)
        masked[i] = plain[i] ^ key[i % 4];

    for (size_t len = 0; len <= sizeof plain; len++) {
        /* Unmasking in two pieces, as two reads would deliver them, gives the plain text. */
        for (size_t cut = 0; cut <= len; cut++) {
            unsigned char *heap = malloc(len ? len : 1);

            memcpy(heap, masked, len);
            rc_ws_unmask(heap, cut, key, 0);
            rc_ws_unmask(heap + cut, len - cut, key, cut);
            memcpy(work, heap, len);
            free(heap);
            CHECK(memcmp(work, plain, len) == 0);
        }
    }
    /* An offset far into a long payload only matters modulo 4. */
    memcpy(work, masked + 3, 20);
    rc_ws_unmask(work, 20, key, ((size_t)1 << 40) + 3);
    CHECK(memcmp(work, plain + 3, 20) == 0);
}

TEST(close_code_table)
{
    for (unsigned code = 0; code < 70000; code++) {
        bool valid = (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
                     (code >= 3000 && code <= 4999);

        CHECK_EQ(rc_ws_close_code_valid(code), valid);
    }
    CHECK(rc_ws_close_code_valid(1000));
    CHECK(rc_ws_close_code_valid(1011));
    CHECK(rc_ws_close_code_valid(4999));
    CHECK(!rc_ws_close_code_valid(999));
    CHECK(!rc_ws_close_code_valid(1004));
    CHECK(!rc_ws_close_code_valid(1005));
    CHECK(!rc_ws_close_code_valid(1006));
    CHECK(!rc_ws_close_code_valid(1015));
    CHECK(!rc_ws_close_code_valid(1016));
    CHECK(!rc_ws_close_code_valid(2999));
    CHECK(!rc_ws_close_code_valid(5000));
    CHECK(!rc_ws_close_code_valid(65535));
}

TEST(close_payloads)
{
    const unsigned char *reason;
    size_t reason_len;
    unsigned code;

    CHECK_EQ(rc_ws_parse_close(S(""), &code, &reason, &reason_len), 0);
    CHECK_EQ(code, 1000);
    CHECK_EQ(reason_len, 0);
    CHECK_EQ(rc_ws_parse_close(S("\x03"), &code, &reason, &reason_len), 1002);
    CHECK_EQ(rc_ws_parse_close(S("\x03\xe8"), &code, &reason, &reason_len), 0);
    CHECK_EQ(code, 1000);
    CHECK_EQ(reason_len, 0);
    CHECK_EQ(rc_ws_parse_close(S("\x03\xe9going away"), &code, &reason, &reason_len), 0);
    CHECK_EQ(code, 1001);
    CHECK_MEM(reason, reason_len, "going away");
    CHECK_EQ(rc_ws_parse_close(S("\x0f\xa0\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"), &code,
                               &reason, &reason_len),
             0);
    CHECK_EQ(code, 4000);
    CHECK_EQ(reason_len, 11);
    /* Reserved and out-of-range codes. */
    CHECK_EQ(rc_ws_parse_close(S("\x03\xed"), &code, &reason, &reason_len), 1002); /* 1005 */
    CHECK_EQ(rc_ws_parse_close(S("\x03\xee"), &code, &reason, &reason_len), 1002); /* 1006 */
    CHECK_EQ(rc_ws_parse_close(S("\x03\xe7"), &code, &reason, &reason_len), 1002); /* 999 */
    CHECK_EQ(rc_ws_parse_close(S("\x13\x88"), &code, &reason, &reason_len), 1002); /* 5000 */
    CHECK_EQ(rc_ws_parse_close(S("\x00\x00"), &code, &reason, &reason_len), 1002);
    /* A reason that is not UTF-8, or stops inside a code point. */
    CHECK_EQ(rc_ws_parse_close(S("\x03\xe8\xce\xba\xed\xa0\x80"), &code, &reason, &reason_len),
             1002);
    CHECK_EQ(rc_ws_parse_close(S("\x03\xe8ok\xe2\x82"), &code, &reason, &reason_len), 1002);
}

/* A 64-bit linear congruential generator (Knuth's MMIX constants); returns its high 31 bits. */
static uint32_t lcg_next(uint64_t *state)
{
    *state = *state * 6364136223846793005u + 1442695040888963407u;
    return (uint32_t)(*state >> 33);
}

TEST(mutation_fuzz)
{
    static const unsigned char seeds[][RC_WS_MAX_HEADER] = {
        {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d},
        {0x02, 0xfe, 0x01, 0x00, 1, 2, 3, 4},
        {0x80, 0xff, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3, 4},
        {0x88, 0x82, 1, 2, 3, 4},
        {0xc1, 0x7e, 0xff, 0xff},
    };
    static const struct rc_ws_msgstate states[] = {
        {0},
        {.len = 100, .opcode = RC_WS_TEXT, .continues = true},
        {.len = 70000, .opcode = RC_WS_BINARY, .continues = true, .compressed = true},
    };
    uint64_t rng = 0x5eed;
    unsigned char work[RC_WS_MAX_HEADER];

    for (int iter = 0; iter < 300000; iter++) {
        const struct rc_ws_msgstate *st = &states[lcg_next(&rng) % 3];
        bool deflate = lcg_next(&rng) & 1;
        uint64_t max = lcg_next(&rng) % 3 == 0 ? UINT64_MAX : 1u << (lcg_next(&rng) % 20);
        size_t len = 2 + lcg_next(&rng) % (RC_WS_MAX_HEADER - 1);
        struct rc_ws_frame f;
        int r, c;

        memcpy(work, seeds[lcg_next(&rng) % 5], sizeof work);
        for (uint32_t edits = 1 + lcg_next(&rng) % 3; edits > 0; edits--) {
            uint32_t e = lcg_next(&rng);
            /* Half the flips hit the first two bytes, where every bit means something. */
            size_t at = (e >> 8) % (e & 1 ? 2 : len);

            work[at] ^= (unsigned char)(1u << (e >> 16) % 8);
        }
        if (len < RC_WS_MAX_HEADER && lcg_next(&rng) % 8 == 0)
            work[len - 1] = (unsigned char)lcg_next(&rng);

        r = parse(work, len, &f);
        CHECK(r == -2 || r == -1 || (r >= 2 && r <= (int)len));
        if (r == -1) {
            CHECK_EQ(f.close_code, 1002);
            CHECK_EQ(work[1] & 0x7f, 127);
        }
        /* A prefix is incomplete or already as decided as the whole. */
        for (size_t k = 0; k < len; k++) {
            struct rc_ws_frame g;
            int rk = parse(work, k, &g);

            CHECK(rk == -2 || rk == r);
        }
        if (r < 0)
            continue;
        CHECK_EQ(r, 2 +
                        ((work[1] & 0x7f) == 126   ? 2
                         : (work[1] & 0x7f) == 127 ? 8
                                                   : 0) +
                        (f.masked ? 4 : 0));
        CHECK(f.payload_len < (uint64_t)1 << 63);
        c = rc_ws_check_frame(&f, st, deflate, max);
        CHECK(c == 0 || c == 1002 || c == 1009);
        if (c == 0) {
            struct rc_ws_msgstate next = *st;

            CHECK(f.masked && !f.rsv2 && !f.rsv3);
            CHECK(f.opcode <= 2 || (f.opcode >= 8 && f.opcode <= 10));
            if (f.opcode >= 8)
                CHECK(f.fin && f.payload_len <= 125 && !f.rsv1);
            if (f.rsv1)
                CHECK(deflate && f.opcode != 0);
            rc_ws_msgstate_update(&next, &f);
            if (f.opcode < 8)
                CHECK(next.len <= max);
        }
    }
}

TEST_MAIN()
