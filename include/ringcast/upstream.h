/*
 * Talking back: client messages going up to the feed, and feed commands coming down to one
 * connection.
 *
 * A WebSocket client's data message that is not a command goes to the feed connections that
 * SUBSCRIBEd to its channel (RESP pub/sub). The worker allocates one rc_upstream and posts it to
 * the feed ring (RC_OP_UPSTREAM); the feed pushes it to every listener, records how many there
 * were in `listeners`, and posts the same object back (RC_OP_UPSTREAM_DONE), so the worker can
 * tell the client when nobody listened and count its messages in flight. The worker frees it.
 *
 * The feed's SEND and CLOSE commands address one connection by its id. The feed allocates one
 * rc_direct and posts it to the connection's worker (RC_OP_DIRECT); the worker applies it, sets
 * `result`, and posts it back (RC_OP_DIRECT_DONE) so the feed can reply in command order. The
 * feed frees it.
 *
 * A connection id is "<worker>.<index>.<generation>" in decimal: the worker that owns the
 * connection, its index in that worker's connection slab, and its generation, which changes
 * whenever the slot is reused, so a stale id never reaches a newer connection.
 */
#ifndef RINGCAST_UPSTREAM_H
#define RINGCAST_UPSTREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Longest connection id text: three decimal numbers and two dots. */
#define RC_CONN_ID_MAX 32

struct rc_conn_id {
    uint32_t worker;
    uint32_t index; /* the slot in the worker's connection slab */
    uint16_t gen;
};

/* Writes id as text into buf (RC_CONN_ID_MAX bytes); returns its length. */
size_t rc_conn_id_format(const struct rc_conn_id *id, char *buf);

/*
 * Parses text[0..len) as a connection id: exactly three decimal numbers separated by dots, as
 * rc_conn_id_format() writes them, without signs, spaces or leading zeros, the first two at
 * most 2^32 - 1 and the generation at most 65535. Returns 0 or -EINVAL. Pure.
 */
int rc_conn_id_parse(const char *text, size_t len, struct rc_conn_id *id);

/* The longest reason a CLOSE may carry: a Close frame's payload is 125 bytes, 2 of them code. */
#define RC_DIRECT_REASON_MAX 123

/*
 * Whether a backend may close a connection with `code`: what rc_ws_close_code_valid() allows a
 * Close frame to carry (RFC 6455 section 7.4 and the IANA registry), except 1002 and 1010.
 * 1002 says the peer broke the WebSocket protocol, which only the engine can know, and 1010 is
 * the client's code for an extension the server did not negotiate (section 7.4.1). That leaves
 * 1000, 1001, 1003, 1007-1009, 1011-1014 and 3000-4999.
 */
bool rc_direct_close_code_valid(unsigned code);

/* A client message on its way to the feed's listeners, and back to its worker. */
struct rc_upstream {
    void *conn;         /* the sending connection; the worker's, never dereferenced by the feed */
    uint16_t conn_gen;  /* its generation when the message was sent */
    bool binary;        /* a binary message (else text) */
    uint32_t listeners; /* set by the feed: feed connections it was pushed to */
    uint32_t worker;    /* the worker that sent it, for the way back */
    uint16_t channel_len;
    uint8_t id_len;
    uint32_t payload_len;
    char id[RC_CONN_ID_MAX]; /* the sender's connection id as text */
    char data[];             /* the channel name, then the payload */
};

enum rc_direct_kind {
    RC_DIRECT_SEND = 1, /* send the payload in data[] to the connection as one message */
    RC_DIRECT_CLOSE,    /* close the connection with `code` and the reason in data[] */
};

/* A feed command for one connection, and its result on the way back. */
struct rc_direct {
    enum rc_direct_kind kind;
    struct rc_conn_id target;
    void *origin;         /* the feed connection that sent the command; the feed's */
    int result;           /* set by the worker: 1 applied, 0 no such connection, -EAGAIN full */
    uint16_t code;        /* RC_DIRECT_CLOSE: the close status */
    bool binary;          /* RC_DIRECT_SEND: a binary message (else text, valid UTF-8) */
    uint32_t len;         /* bytes in data[] */
    unsigned char data[]; /* RC_DIRECT_SEND: the payload; RC_DIRECT_CLOSE: the reason (<= 123) */
};

#endif
