/*
 * The cryptographic helpers of the WebSocket handshake (RFC 6455, section 4.2).
 *
 * This is the only module that includes wolfSSL, so the library's configuration header and types
 * stay out of the rest of the engine.
 */
#ifndef RINGCAST_CRYPTO_H
#define RINGCAST_CRYPTO_H

#include <stdbool.h>
#include <stddef.h>

/* Characters of a Sec-WebSocket-Accept value, and the bytes to hold it with its NUL. */
#define RC_CRYPTO_WS_ACCEPT_LEN  28
#define RC_CRYPTO_WS_ACCEPT_SIZE (RC_CRYPTO_WS_ACCEPT_LEN + 1)

/*
 * Computes the Sec-WebSocket-Accept value for the Sec-WebSocket-Key key[0..key_len): the base64
 * encoding of the SHA-1 of the key followed by the GUID 258EAFA5-E914-47DA-95CA-C5AB0DC85B11.
 * Writes 28 characters and a NUL to out. Returns 0, or -EIO if wolfSSL fails (it has no reason
 * to), or -EINVAL for a key of 4 GiB or more.
 */
int rc_crypto_ws_accept(const char *key, size_t key_len, char out[RC_CRYPTO_WS_ACCEPT_SIZE]);

/*
 * Whether key[0..len) is a valid Sec-WebSocket-Key: exactly 24 characters of base64 (the
 * standard alphabet, with padding) that decode to 16 bytes.
 */
bool rc_crypto_ws_key_valid(const char *key, size_t len);

#endif
