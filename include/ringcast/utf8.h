/*
 * Incremental UTF-8 validation (RFC 3629).
 *
 * A WebSocket text message may be split across frames, and each frame across reads, anywhere,
 * even inside a code point; RFC 6455 (section 8.1) still wants the connection failed as soon as
 * the bytes cannot be UTF-8. So the validator keeps its progress in a 32-bit state that the
 * caller stores between calls, and it refuses a sequence at the first byte that makes it
 * invalid, whatever the split: an overlong form at its second byte (E0 80), a surrogate at its
 * second byte (ED A0), a code point above U+10FFFF at its second byte (F4 90), and a byte that
 * never appears in UTF-8 (C0, C1, F5-FF) at once.
 */
#ifndef RINGCAST_UTF8_H
#define RINGCAST_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The state before the first byte of a message, and after every complete code point. */
#define RC_UTF8_INIT 0u

/*
 * Validates p[0..n), the next bytes of a message, continuing from *state (RC_UTF8_INIT at the
 * start of a message) and updating it. Returns 0 when the bytes may still be valid UTF-8, or -1
 * when they cannot be; then, if bad_at is not NULL, *bad_at is the offset in p of the first
 * byte that made them invalid, and *state stays invalid, so feeding more bytes fails at offset 0.
 * A message is whole only if rc_utf8_complete() also holds at its end.
 */
int rc_utf8_feed(uint32_t *state, const unsigned char *p, size_t n, size_t *bad_at);

/* Whether the bytes fed so far end on a code point boundary (and were all valid). */
bool rc_utf8_complete(uint32_t state);

/* Whether p[0..n) is valid UTF-8 on its own: complete code points and nothing else. */
bool rc_utf8_valid(const void *p, size_t n);

#endif
