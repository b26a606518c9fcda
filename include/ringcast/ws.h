/*
 * WebSocket framing (RFC 6455, section 5) for the server side.
 *
 * Everything here is pure and allocation-free, in the manner of the HTTP parser: the parser reads
 * a client frame's header from the caller's bytes, a separate check applies the protocol rules
 * that depend on what the connection negotiated and on the message in progress, and the encoder
 * writes the header of an unmasked server frame. Payloads are never copied: the engine unmasks
 * them in place, read by read.
 */
#ifndef RINGCAST_WS_H
#define RINGCAST_WS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum rc_ws_opcode {
    RC_WS_CONTINUATION = 0x0,
    RC_WS_TEXT = 0x1,
    RC_WS_BINARY = 0x2,
    RC_WS_CLOSE = 0x8,
    RC_WS_PING = 0x9,
    RC_WS_PONG = 0xa,
};

/* Status codes of a Close frame (RFC 6455, section 7.4.1) that the engine sends. */
enum rc_ws_close_code {
    RC_WS_CLOSE_NORMAL = 1000,
    RC_WS_CLOSE_GOING_AWAY = 1001,
    RC_WS_CLOSE_PROTOCOL_ERROR = 1002,
    RC_WS_CLOSE_INVALID_PAYLOAD = 1007,
    RC_WS_CLOSE_POLICY = 1008,
    RC_WS_CLOSE_TOO_BIG = 1009,
    RC_WS_CLOSE_INTERNAL_ERROR = 1011,
};

/* The longest frame header: 2 bytes, a 64-bit length and a masking key. */
#define RC_WS_MAX_HEADER 14
/* The longest header of a server frame, which is never masked. */
#define RC_WS_MAX_SERVER_HEADER 10
/* The largest payload of a control frame (RFC 6455, section 5.5). */
#define RC_WS_MAX_CONTROL_PAYLOAD 125

struct rc_ws_frame {
    uint64_t payload_len;  /* below 2^63 */
    unsigned char mask[4]; /* the masking key; meaningful only when masked */
    uint8_t opcode;        /* the 4-bit opcode as sent, reserved values included */
    bool fin, rsv1, rsv2, rsv3, masked;
    unsigned close_code; /* when the parser returns -1: the status to close with */
};

/*
 * What a connection knows about the data message it is receiving. Zero it when the connection
 * opens; rc_ws_msgstate_update() keeps it after each frame header that passes the check.
 */
struct rc_ws_msgstate {
    uint64_t len;    /* payload bytes of the current message, counting the latest frame */
    uint8_t opcode;  /* RC_WS_TEXT or RC_WS_BINARY for the current message; 0 before the first */
    bool continues;  /* the current message's final frame has not arrived yet */
    bool compressed; /* the current message had RSV1 set (permessage-deflate) */
};

/*
 * Parses the header of one client frame from buf[0..len). Returns the header's length (2 to 14;
 * the payload follows), -2 when the header is not complete yet, or -1 with f->close_code set to
 * 1002 when the 64-bit payload length has its most significant bit set, which RFC 6455 forbids.
 * The parser checks nothing else: rc_ws_check_frame() applies the protocol's rules. A length sent
 * in more bytes than it needs is accepted.
 */
int rc_ws_parse_frame(const unsigned char *buf, size_t len, struct rc_ws_frame *f);

/*
 * Checks a parsed client frame against RFC 6455 and the connection's state `st`: the rules that
 * need no payload byte, so a bad frame is refused before its payload is read. Returns 0 when the
 * frame may be received, or the status to close with:
 *   1002 an unmasked frame; a reserved opcode (3-7, 0xB-0xF); a control frame that is fragmented
 *        or carries more than 125 bytes; RSV2 or RSV3; RSV1 anywhere but on the first frame of a
 *        data message of a connection that negotiated permessage-deflate, or on a control frame;
 *        a continuation frame with no message to continue; a text or binary frame while a
 *        fragmented message is still in progress.
 *   1009 a data message whose payload so far, this frame included, is over max_message bytes.
 *        For a compressed message the limit applies to the bytes on the wire as well as to what
 *        they inflate to (which the inflater bounds), as the ws server for Node.js does.
 */
int rc_ws_check_frame(const struct rc_ws_frame *f, const struct rc_ws_msgstate *st,
                      bool deflate_negotiated, uint64_t max_message);

/*
 * Records in st a data frame that passed rc_ws_check_frame(); control frames leave it alone.
 * Afterwards st->opcode and st->compressed describe the message this frame's payload belongs
 * to, and st->continues says whether more frames of it are to come.
 */
void rc_ws_msgstate_update(struct rc_ws_msgstate *st, const struct rc_ws_frame *f);

/*
 * Unmasks (or masks: XOR is its own inverse) p[0..n) in place with the masking key, where p
 * starts `offset` bytes into the payload, so that a payload arriving in several reads is
 * unmasked read by read.
 */
void rc_ws_unmask(unsigned char *p, size_t n, const unsigned char key[4], size_t offset);

/*
 * Writes the header of an unmasked server frame carrying payload_len bytes (below 2^63), in the
 * fewest bytes the length allows. Returns the header's length: 2, 4 or 10.
 */
size_t rc_ws_frame_header(unsigned char out[RC_WS_MAX_SERVER_HEADER], int opcode, bool fin,
                          bool rsv1, uint64_t payload_len);

/*
 * Whether `code` may be sent in a Close frame: 1000-1003, 1007-1014 (those RFC 6455 defines and
 * those IANA registered since), and 3000-4999 (registered and private use). 1004, 1005, 1006 and
 * 1015 are reserved, and other codes below 3000 are unassigned.
 */
bool rc_ws_close_code_valid(unsigned code);

/*
 * Parses the (unmasked) payload of a client's Close frame. Returns 0 with *code set and the
 * reason in (*reason, *reason_len), pointing into payload; an empty payload carries no status,
 * which is reported as 1000, the status to answer with. Returns 1002 when the payload is a
 * single byte, the code is not valid by rc_ws_close_code_valid(), or the reason is not UTF-8.
 */
int rc_ws_parse_close(const unsigned char *payload, size_t n, unsigned *code,
                      const unsigned char **reason, size_t *reason_len);

#endif
