/*
 * The permessage-deflate WebSocket extension (RFC 7692) on zlib.
 *
 * Three parts: a pure negotiation over the client's Sec-WebSocket-Extensions header, compression
 * of a whole message (done once per event and shared by every subscriber, which is why the
 * server always takes server_no_context_takeover: no message may depend on what one particular
 * connection received before), and a bounded inflater for the rare compressed client message.
 */
#ifndef RINGCAST_DEFLATE_H
#define RINGCAST_DEFLATE_H

#include <stdbool.h>
#include <stddef.h>

/* The bytes of the longest response rc_deflate_negotiate() writes, with its NUL. */
#define RC_DEFLATE_RESPONSE_MAX                                                                    \
    sizeof("permessage-deflate; server_no_context_takeover; client_no_context_takeover; "          \
           "server_max_window_bits=15; client_max_window_bits=15")

/* What a connection agreed to. */
struct rc_deflate_params {
    int server_window_bits;          /* 9-15: the largest window the server may compress with */
    int client_window_bits;          /* 8-15: the largest window the client compresses with */
    bool client_no_context_takeover; /* the client compresses each message on its own */
};

/*
 * Chooses the first permessage-deflate offer in the value of a Sec-WebSocket-Extensions header,
 * value[0..len), that the server can honour, and writes the header value to answer with into
 * resp, NUL-terminated. Offers of other extensions are passed over, and so is, as a whole, an
 * offer with an unknown parameter, a parameter given twice, a bad value, or
 * server_max_window_bits=8 (zlib cannot compress with a 256-byte window).
 *
 * The answer always holds server_no_context_takeover; it echoes client_no_context_takeover and
 * server_max_window_bits when offered, and client_max_window_bits when offered with a value.
 * params gets what was agreed: server_window_bits is the offered server_max_window_bits or 15;
 * client_window_bits the offered client_max_window_bits value or 15.
 *
 * Returns the length of the answer, 0 when no offer can be honoured (answer without the
 * extension; resp and params are left alone), or -1 when the value breaks the grammar of RFC
 * 6455 section 9.1 (answer 400, as the ws server for Node.js does, or without the extension).
 * A client that sends the header on several lines means them as one comma-separated list.
 */
int rc_deflate_negotiate(const char *value, size_t len, struct rc_deflate_params *params,
                         char resp[RC_DEFLATE_RESPONSE_MAX]);

/*
 * Compresses a whole message, in[0..n), as RFC 7692 section 7.2.1 says: raw DEFLATE with a
 * window of 2^window_bits bytes (9-15), flushed to a byte boundary, without the final 00 00 ff ff.
 * The message is compressed on its own, as server_no_context_takeover requires. On success
 * returns 0 and sets *out to a malloc'ed buffer of *out_len bytes that the caller frees.
 * Returns -EINVAL for a window_bits out of range, -ENOMEM, or -EIO if zlib fails (it has no
 * reason to).
 */
int rc_deflate_message(const void *in, size_t n, unsigned char **out, size_t *out_len,
                       int window_bits);

/* An inflater for one connection's compressed messages. */
struct rc_inflater;

/*
 * Creates an inflater for a client that compresses with windows of up to 2^window_bits bytes
 * (8-15, params.client_window_bits). With no_context_takeover (params.client_no_context_takeover)
 * each message is inflated on its own, so a client that refers back to an earlier message,
 * against what it agreed, fails with -EBADMSG. zlib allocates about 7 KiB now and the window when
 * the first message needs it. Returns NULL for a window_bits out of range or out of memory.
 */
struct rc_inflater *rc_inflater_new(int window_bits, bool no_context_takeover);

/*
 * Inflates in[0..n), the next (unmasked) payload bytes of a compressed message, appending the
 * result to out[*out_len..out_cap) and advancing *out_len; set *out_len to 0 at the start of a
 * message. out must not be NULL, even when out_cap is 0. `final` marks the last bytes of the
 * message (n may be 0): the inflater then appends the 00 00 ff ff that the sender removed and gets
 * ready for the next message.
 *
 * Returns 0, -EMSGSIZE as soon as the message would inflate to more than out_cap bytes (answer
 * 1009: the excess is never produced, so a small frame cannot make the server allocate or
 * inflate a large one), -EBADMSG when the data is not valid DEFLATE or the message does not end
 * as section 7.2.1 ends one, with the header of an empty stored block (or a final block), so
 * that it was cut short or is empty (answer 1007), or -ENOMEM (answer 1011). After an error the
 * inflater may only be freed.
 */
int rc_inflate(struct rc_inflater *inf, const void *in, size_t n, bool final, unsigned char *out,
               size_t out_cap, size_t *out_len);

/* Frees an inflater and everything zlib holds for it; NULL is allowed. */
void rc_inflater_free(struct rc_inflater *inf);

#endif
