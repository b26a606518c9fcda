/*
 * Incremental UTF-8 validation.
 *
 * The state is 0 between code points. Inside one it records how many continuation bytes are
 * still due and the range the next one must fall in: RFC 3629's table narrows the range of the
 * second byte after E0 (no overlongs), ED (no surrogates), F0 (no overlongs) and F4 (nothing
 * above U+10FFFF), so checking each byte against a range is the whole grammar, and a sequence
 * fails at the very byte that leaves it. Every later continuation byte is simply 80-BF.
 */
#include "ringcast/utf8.h"

#include <string.h>

/*
 * A state inside a code point: `need` continuation bytes still due (1-3), of which the next must
 * lie in lo..hi.
 */
#define STATE(need, lo, hi) ((uint32_t)(need) | (uint32_t)(lo) << 8 | (uint32_t)(hi) << 16)

/* The state after an invalid byte. It has need = 0xff, so no real state is ever equal to it. */
#define REJECT UINT32_MAX

/* The state each byte leads to at a code point boundary (RFC 3629, section 4). */
static const uint32_t lead[256] = {
    [0x80 ... 0xc1] = REJECT,               /* continuations; C0, C1 only start overlongs */
    [0xc2 ... 0xdf] = STATE(1, 0x80, 0xbf), /* U+0080-U+07FF */
    [0xe0] = STATE(2, 0xa0, 0xbf),          /* U+0800-U+0FFF */
    [0xe1 ... 0xec] = STATE(2, 0x80, 0xbf), /* U+1000-U+CFFF */
    [0xed] = STATE(2, 0x80, 0x9f),          /* U+D000-U+D7FF, not the surrogates after it */
    [0xee ... 0xef] = STATE(2, 0x80, 0xbf), /* U+E000-U+FFFF */
    [0xf0] = STATE(3, 0x90, 0xbf),          /* U+10000-U+3FFFF */
    [0xf1 ... 0xf3] = STATE(3, 0x80, 0xbf), /* U+40000-U+FFFFF */
    [0xf4] = STATE(3, 0x80, 0x8f),          /* U+100000-U+10FFFF */
    [0xf5 ... 0xff] = REJECT,               /* would start a code point above U+10FFFF */
};

/* Whether the 8 bytes at p are all ASCII; loaded as one word, so p need not be aligned. */
static bool ascii8(const unsigned char *p)
{
    uint64_t w;

    memcpy(&w, p, sizeof w);
    return (w & 0x8080808080808080u) == 0;
}

int rc_utf8_feed(uint32_t *state, const unsigned char *p, size_t n, size_t *bad_at)
{
    uint32_t s = *state;
    size_t i = 0;

    if (s == REJECT)
        goto fail;
    while (i < n) {
        if (s == 0) {
            /* Text is mostly ASCII, so a boundary first skips whole words of it. */
            while (n - i >= 8 && ascii8(p + i))
                i += 8;
            if (i == n)
                break;
            s = lead[p[i]];
            if (s == REJECT)
                goto fail;
        } else {
            unsigned need = s & 0xff, lo = (s >> 8) & 0xff, hi = s >> 16;

            if (p[i] < lo || p[i] > hi)
                goto fail;
            s = need == 1 ? 0 : STATE(need - 1, 0x80, 0xbf);
        }
        i++;
    }
    *state = s;
    return 0;

fail:
    *state = REJECT;
    if (bad_at)
        *bad_at = i;
    return -1;
}

bool rc_utf8_complete(uint32_t state)
{
    return state == 0;
}

bool rc_utf8_valid(const void *p, size_t n)
{
    uint32_t s = RC_UTF8_INIT;

    return rc_utf8_feed(&s, p, n, NULL) == 0 && rc_utf8_complete(s);
}
