/*
 * Server-Sent Events wire encoding (WHATWG HTML, "Server-sent events").
 *
 * An event is encoded once when it is published; every subscriber then receives the same bytes.
 * The encoder is pure so it can be tested and fuzzed on its own.
 */
#ifndef RINGCAST_SSE_H
#define RINGCAST_SSE_H

#include <stdbool.h>
#include <stddef.h>

/*
 * Returns the exact number of bytes rc_sse_encode() writes for these fields.
 * `event` may be NULL (event_len 0) to omit the event: line.
 */
size_t rc_sse_frame_size(const char *id, size_t id_len, const char *event, size_t event_len,
                         const char *data, size_t data_len);

/*
 * Writes one event to out: "id: <id>\n", "event: <event>\n" when event_len > 0, one
 * "data: <line>\n" for each line of data (lines split on LF, CRLF and lone CR; an empty payload
 * is one empty data line), then "\n". out must hold rc_sse_frame_size() bytes.
 * Returns the number of bytes written. id and event must satisfy rc_sse_field_valid().
 */
size_t rc_sse_encode(char *out, const char *id, size_t id_len, const char *event, size_t event_len,
                     const char *data, size_t data_len);

/*
 * Whether s[0..len) may stand in an id: or event: field: no CR, LF or NUL (a NUL in an id makes
 * browsers ignore it). Length limits are the caller's.
 */
bool rc_sse_field_valid(const char *s, size_t len);

#endif
