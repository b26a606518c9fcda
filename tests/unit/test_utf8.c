/*
 * Tests for the incremental UTF-8 validator: the RFC 3629 boundaries, the Autobahn testsuite's
 * kinds of bad input (overlongs, surrogates, code points above U+10FFFF, truncated sequences),
 * every code point, and an independent reference that the validator must match on every short
 * sequence of interesting bytes, whole and split at every point, down to the offset it fails at.
 */
#include "ringcast/utf8.h"

#include <stdint.h>
#include <stdlib.h>

#include "test.h"

/* A string literal as the (pointer, length) pair the validator takes. */
#define S(lit) (const unsigned char *)(lit), sizeof(lit) - 1

/*
 * Feeds p[0..n) in one call to a fresh state and folds the result into one number: the offset of
 * the first bad byte, n when every byte is valid and the input ends on a code point boundary, or
 * -2 when the input is valid so far but stops inside a code point.
 */
static long long check_whole(const unsigned char *p, size_t n)
{
    uint32_t s = RC_UTF8_INIT;
    size_t bad = 0;
    unsigned char *copy = calloc(1, n ? n : 1);
    int r;

    /* A heap copy of exactly n bytes lets ASan catch a word load past the end. */
    memcpy(copy, p, n);
    r = rc_utf8_feed(&s, copy, n, &bad);
    free(copy);
    if (r == -1)
        return (long long)bad;
    return rc_utf8_complete(s) ? (long long)n : -2;
}

/* As check_whole(), but feeding one byte per call, so every code point is split. */
static long long check_bytewise(const unsigned char *p, size_t n)
{
    uint32_t s = RC_UTF8_INIT;

    for (size_t i = 0; i < n; i++) {
        size_t bad = 99;

        if (rc_utf8_feed(&s, p + i, 1, &bad) == -1)
            return bad == 0 ? (long long)i : -99;
    }
    return rc_utf8_complete(s) ? (long long)n : -2;
}

/* As check_whole(), but feeding p[0..cut) and then p[cut..n) in two calls. */
static long long check_split(const unsigned char *p, size_t n, size_t cut)
{
    uint32_t s = RC_UTF8_INIT;
    size_t bad = 0;

    if (rc_utf8_feed(&s, p, cut, &bad) == -1)
        return (long long)bad;
    if (rc_utf8_feed(&s, p + cut, n - cut, &bad) == -1)
        return (long long)(cut + bad);
    return rc_utf8_complete(s) ? (long long)n : -2;
}

/*
 * Whether a sequence of `len` bytes whose code point lies in [lo, hi] can be valid: the range
 * meets the code points that need exactly that many bytes and is not all surrogates.
 */
static bool range_viable(uint32_t lo, uint32_t hi, int len)
{
    static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
    static const uint32_t max_cp[5] = {0, 0, 0x7ff, 0xffff, 0x10ffff};

    if (lo < min_cp[len])
        lo = min_cp[len];
    if (hi > max_cp[len])
        hi = max_cp[len];
    return lo <= hi && !(lo >= 0xd800 && hi <= 0xdfff);
}

/*
 * The reference: decodes p[0..n) the textbook way, from the bit patterns of RFC 3629 section 3
 * and the code point ranges, without the validator's tables. Returns 0 when p is valid and
 * complete, 1 when it is a valid prefix cut inside a code point (some continuation could still
 * make it valid), and -1 otherwise.
 */
static int reference(const unsigned char *p, size_t n)
{
    size_t i = 0;

    while (i < n) {
        unsigned char b = p[i];
        int len = b < 0x80             ? 1
                  : (b & 0xe0) == 0xc0 ? 2
                  : (b & 0xf0) == 0xe0 ? 3
                  : (b & 0xf8) == 0xf0 ? 4
                                       : 0;
        uint32_t cp;

        if (len == 0)
            return -1;
        if (len == 1) {
            i++;
            continue;
        }
        cp = b & (0x7f >> len);
        for (int j = 1; j < len; j++) {
            if (i + j == n) {
                /* Cut here: the code point is cp followed by any 6 bits per missing byte. */
                int missing = 6 * (len - j);
                uint32_t lo = cp << missing, hi = lo | ((1u << missing) - 1);

                return range_viable(lo, hi, len) ? 1 : -1;
            }
            if ((p[i + j] & 0xc0) != 0x80)
                return -1;
            cp = cp << 6 | (p[i + j] & 0x3f);
        }
        if (!range_viable(cp, cp, len))
            return -1;
        i += (size_t)len;
    }
    return 0;
}

/* What check_whole() should answer according to the reference. */
static long long expected(const unsigned char *p, size_t n)
{
    for (size_t k = 1; k <= n; k++) {
        if (reference(p, k) == -1)
            return (long long)(k - 1);
    }
    return reference(p, n) == 0 ? (long long)n : -2;
}

/* Writes the UTF-8 encoding of cp in exactly `len` bytes (overlong if cp needs fewer). */
static void encode(uint32_t cp, int len, unsigned char *out)
{
    static const unsigned char lead_bits[5] = {0, 0, 0xc0, 0xe0, 0xf0};

    if (len == 1) {
        out[0] = (unsigned char)cp;
        return;
    }
    for (int j = len - 1; j > 0; j--) {
        out[j] = (unsigned char)(0x80 | (cp & 0x3f));
        cp >>= 6;
    }
    out[0] = (unsigned char)(lead_bits[len] | cp);
}

TEST(valid_boundaries)
{
    CHECK_EQ(check_whole(S("")), 0);
    CHECK_EQ(check_whole(S("Hello, world")), 12);
    CHECK_EQ(check_whole(S("\x00\x7f")), 2);
    CHECK_EQ(check_whole(S("\xc2\x80")), 2);         /* U+0080 */
    CHECK_EQ(check_whole(S("\xdf\xbf")), 2);         /* U+07FF */
    CHECK_EQ(check_whole(S("\xe0\xa0\x80")), 3);     /* U+0800 */
    CHECK_EQ(check_whole(S("\xed\x9f\xbf")), 3);     /* U+D7FF */
    CHECK_EQ(check_whole(S("\xee\x80\x80")), 3);     /* U+E000 */
    CHECK_EQ(check_whole(S("\xef\xbf\xbf")), 3);     /* U+FFFF */
    CHECK_EQ(check_whole(S("\xf0\x90\x80\x80")), 4); /* U+10000 */
    CHECK_EQ(check_whole(S("\xf4\x8f\xbf\xbf")), 4); /* U+10FFFF */
    CHECK_EQ(check_whole(S("\xef\xbb\xbf")), 3);     /* a BOM is a valid character */
    CHECK_EQ(check_whole(S("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5")), 11); /* κόσμε */
    CHECK_EQ(
        check_whole(S("Hello-\xc2\xb5@\xc3\x9f\xc3\xb6\xc3\xa4\xc3\xbc\xc3\xa0\xc3\xa1-UTF-8!!")),
        29);
    CHECK(rc_utf8_valid(S("\xf0\x9f\x98\x80 ok")));
    CHECK(!rc_utf8_valid(S("\xf0\x9f\x98")));
}

TEST(invalid_bytes_fail_where_they_stand)
{
    /* Bytes that never appear in UTF-8 fail at once. */
    CHECK_EQ(check_whole(S("\xc0\x80")), 0);
    CHECK_EQ(check_whole(S("\xc1\xbf")), 0);
    CHECK_EQ(check_whole(S("\xf5\x80\x80\x80")), 0);
    CHECK_EQ(check_whole(S("\xf8\x88\x80\x80\x80")), 0);
    CHECK_EQ(check_whole(S("\xfe")), 0);
    CHECK_EQ(check_whole(S("\xff")), 0);
    /* A continuation byte with no lead. */
    CHECK_EQ(check_whole(S("\x80")), 0);
    CHECK_EQ(check_whole(S("ab\xbf")), 2);
    CHECK_EQ(check_whole(S("\xc2\x80\x80")), 2);
    /* Overlong forms fail at the second byte, which is what shows they are overlong. */
    CHECK_EQ(check_whole(S("\xe0\x80\xaf")), 1);
    CHECK_EQ(check_whole(S("\xe0\x9f\xbf")), 1);
    CHECK_EQ(check_whole(S("\xf0\x80\x80\xaf")), 1);
    CHECK_EQ(check_whole(S("\xf0\x8f\xbf\xbf")), 1);
    /* UTF-16 surrogates, alone and in pairs. */
    CHECK_EQ(check_whole(S("\xed\xa0\x80")), 1);
    CHECK_EQ(check_whole(S("\xed\xbf\xbf")), 1);
    CHECK_EQ(check_whole(S("\xed\xa0\x80\xed\xb0\x80")), 1);
    /* Above U+10FFFF. */
    CHECK_EQ(check_whole(S("\xf4\x90\x80\x80")), 1);
    CHECK_EQ(check_whole(S("\xf7\xbf\xbf\xbf")), 0);
    /* A sequence cut short by another character fails at that character. */
    CHECK_EQ(check_whole(S("\xc2"
                           "A")),
             1);
    CHECK_EQ(check_whole(S("\xe1\x80"
                           "A")),
             2);
    CHECK_EQ(check_whole(S("\xf1\x80\x80"
                           "A")),
             3);
    CHECK_EQ(check_whole(S("\xe1\x80\xc2\x80")), 2);
    /* Autobahn 6.3.1: κόσμε, then a surrogate, then "edited": the fault is the A0 at offset 12. */
    CHECK_EQ(
        check_whole(S("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80\x65\x64\x69\x74"
                      "\x65\x64")),
        12);
}

TEST(truncated_input_is_incomplete_not_invalid)
{
    CHECK_EQ(check_whole(S("\xc2")), -2);
    CHECK_EQ(check_whole(S("\xe0\xa0")), -2);
    CHECK_EQ(check_whole(S("ok \xf0\x9f\x98")), -2);
    CHECK_EQ(check_whole(S("\xed")), -2);
    CHECK_EQ(check_whole(S("\xf4\x8f")), -2);
    CHECK(!rc_utf8_valid(S("\xe2\x82")));
    CHECK(!rc_utf8_complete(0x1234));
    CHECK(rc_utf8_complete(RC_UTF8_INIT));
}

TEST(invalid_state_sticks)
{
    uint32_t s = RC_UTF8_INIT;
    size_t bad = 99;

    CHECK_EQ(rc_utf8_feed(&s, S("ab\xff"), &bad), -1);
    CHECK_EQ(bad, 2);
    bad = 99;
    CHECK_EQ(rc_utf8_feed(&s, S("valid"), &bad), -1);
    CHECK_EQ(bad, 0);
    CHECK(!rc_utf8_complete(s));
    /* bad_at is optional. */
    CHECK_EQ(rc_utf8_feed(&s, S("x"), NULL), -1);
    /* Feeding nothing changes nothing. */
    s = RC_UTF8_INIT;
    CHECK_EQ(rc_utf8_feed(&s, S("\xe2"), NULL), 0);
    CHECK_EQ(rc_utf8_feed(&s, (const unsigned char *)"", 0, NULL), 0);
    CHECK_EQ(rc_utf8_feed(&s, S("\x82\xac"), NULL), 0);
    CHECK(rc_utf8_complete(s));
}

TEST(every_code_point)
{
    unsigned char buf[4];

    for (uint32_t cp = 0; cp <= 0x10ffff; cp++) {
        int len = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
        bool surrogate = cp >= 0xd800 && cp <= 0xdfff;

        encode(cp, len, buf);
        CHECK_EQ(check_whole(buf, (size_t)len), surrogate ? 1 : len);
        CHECK_EQ(check_bytewise(buf, (size_t)len), surrogate ? 1 : len);
        /* Every longer (overlong) encoding of the same code point is refused. */
        for (int longer = len + 1; longer <= 4; longer++) {
            encode(cp, longer, buf);
            CHECK(check_whole(buf, (size_t)longer) <= 1);
        }
    }
    /* Four-byte forms of U+110000 to U+1FFFFF are refused at the first byte that shows it. */
    for (uint32_t cp = 0x110000; cp <= 0x1fffff; cp += 0x3f) {
        encode(cp, 4, buf);
        CHECK_EQ(check_whole(buf, 4), buf[0] == 0xf4 ? 1 : 0);
    }
}

TEST(ascii_fast_path_at_every_alignment)
{
    unsigned char buf[64];

    for (size_t len = 1; len <= sizeof buf; len++) {
        for (size_t pos = 0; pos < len; pos++) {
            memset(buf, 'a', len);
            buf[pos] = 0x80;
            CHECK_EQ(check_whole(buf, len), (long long)pos);
            /* A valid two-byte character anywhere keeps the run valid. */
            if (pos + 1 < len) {
                buf[pos] = 0xc3;
                buf[pos + 1] = 0xa9;
                CHECK_EQ(check_whole(buf, len), (long long)len);
                buf[pos + 1] = 'a';
                CHECK_EQ(check_whole(buf, len), (long long)pos + 1);
            }
        }
    }
}

TEST(matches_reference_on_all_short_sequences)
{
    /* The bytes where the rules change, plus ordinary ones on either side. */
    static const unsigned char interesting[] = {
        0x00, 0x41, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xc1, 0xc2, 0xdf,
        0xe0, 0xe1, 0xec, 0xed, 0xee, 0xef, 0xf0, 0xf1, 0xf3, 0xf4, 0xf5, 0xff};
    const size_t k = sizeof interesting;
    unsigned char buf[4];

    for (size_t len = 1; len <= 4; len++) {
        size_t total = 1;

        for (size_t i = 0; i < len; i++)
            total *= k;
        for (size_t idx = 0; idx < total; idx++) {
            size_t v = idx;
            long long want;

            for (size_t i = 0; i < len; i++, v /= k)
                buf[i] = interesting[v % k];
            want = expected(buf, len);
            CHECK_EQ(check_whole(buf, len), want);
            CHECK_EQ(check_bytewise(buf, len), want);
            for (size_t cut = 0; cut <= len; cut++)
                CHECK_EQ(check_split(buf, len, cut), want);
        }
    }
}

/* A 64-bit linear congruential generator (Knuth's MMIX constants); returns its high 31 bits. */
static uint32_t lcg_next(uint64_t *state)
{
    *state = *state * 6364136223846793005u + 1442695040888963407u;
    return (uint32_t)(*state >> 33);
}

TEST(random_text_split_anywhere)
{
    uint64_t rng = 0x5eed;
    unsigned char buf[256];

    for (int iter = 0; iter < 20000; iter++) {
        size_t len = 0;
        long long want;

        /* Mostly valid characters of every length, with now and then a random byte. */
        while (len + 4 <= sizeof buf && lcg_next(&rng) % 64) {
            uint32_t r = lcg_next(&rng);

            if (r % 29 == 0) {
                buf[len++] = (unsigned char)lcg_next(&rng);
            } else {
                uint32_t cp = r % 4 == 0 ? r % 0x80 : lcg_next(&rng) % 0x110000;
                int clen = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;

                encode(cp, clen, buf + len);
                len += (size_t)clen;
            }
        }
        want = expected(buf, len);
        CHECK_EQ(check_whole(buf, len), want);
        CHECK_EQ(check_split(buf, len, len ? lcg_next(&rng) % (len + 1) : 0), want);
    }
}

TEST_MAIN()
