/*
 * WebSocket frame parsing, checking and encoding.
 *
 * The parser and the check are split so that the parser stays a function of the bytes alone
 * (easy to fuzz, and the answer for any prefix is -2 or the final answer) while the check holds
 * every rule that depends on the connection. The check looks only at the header, so a frame the
 * connection must refuse is refused before a byte of its payload is read or buffered.
 */
#include "ringcast/ws.h"

#include <string.h>

#include "ringcast/utf8.h"

/* Reads a big-endian integer of n bytes (network byte order, RFC 6455 section 5.2). */
static uint64_t load_be(const unsigned char *p, size_t n)
{
    uint64_t v = 0;

    for (size_t i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

int rc_ws_parse_frame(const unsigned char *buf, size_t len, struct rc_ws_frame *f)
{
    size_t need = 2, ext;

    if (len < need)
        return -2;
    f->fin = buf[0] & 0x80;
    f->rsv1 = buf[0] & 0x40;
    f->rsv2 = buf[0] & 0x20;
    f->rsv3 = buf[0] & 0x10;
    f->opcode = buf[0] & 0x0f;
    f->masked = buf[1] & 0x80;
    f->close_code = 0;

    /* A 7-bit length of 126 or 127 announces a 16-bit or a 64-bit length after it. */
    ext = (buf[1] & 0x7f) == 126 ? 2 : (buf[1] & 0x7f) == 127 ? 8 : 0;
    need += ext + (f->masked ? 4 : 0);
    if (len < need)
        return -2;
    f->payload_len = ext ? load_be(buf + 2, ext) : buf[1] & 0x7f;
    if (f->payload_len >> 63) {
        f->close_code = RC_WS_CLOSE_PROTOCOL_ERROR;
        return -1;
    }
    if (f->masked)
        memcpy(f->mask, buf + 2 + ext, 4);
    else
        memset(f->mask, 0, 4);
    return (int)need;
}

/* Whether an opcode is one RFC 6455 defines; the others are reserved for future use. */
static bool opcode_defined(uint8_t opcode)
{
    return opcode <= RC_WS_BINARY || (opcode >= RC_WS_CLOSE && opcode <= RC_WS_PONG);
}

int rc_ws_check_frame(const struct rc_ws_frame *f, const struct rc_ws_msgstate *st,
                      bool deflate_negotiated, uint64_t max_message)
{
    uint64_t so_far;

    /* Section 5.1: a server must fail a connection whose client sends an unmasked frame. */
    if (!f->masked || !opcode_defined(f->opcode))
        return RC_WS_CLOSE_PROTOCOL_ERROR;
    /* No extension here defines RSV2 or RSV3, so section 5.2 requires failing on them. */
    if (f->rsv2 || f->rsv3)
        return RC_WS_CLOSE_PROTOCOL_ERROR;
    if (f->opcode >= RC_WS_CLOSE) {
        /*
         * Control frames are short and whole (section 5.5), and RFC 7692 gives RSV1 a meaning on
         * data messages only.
         */
        if (!f->fin || f->payload_len > RC_WS_MAX_CONTROL_PAYLOAD || f->rsv1)
            return RC_WS_CLOSE_PROTOCOL_ERROR;
        return 0;
    }
    if (f->opcode == RC_WS_CONTINUATION) {
        /* RFC 7692 section 6.1: RSV1 marks a compressed message on its first frame only. */
        if (!st->continues || f->rsv1)
            return RC_WS_CLOSE_PROTOCOL_ERROR;
        so_far = st->len;
    } else {
        /* Section 5.4: the fragments of one message are not interleaved with another's. */
        if (st->continues || (f->rsv1 && !deflate_negotiated))
            return RC_WS_CLOSE_PROTOCOL_ERROR;
        so_far = 0;
    }
    /* Written as a subtraction so that no sum can wrap around. */
    if (so_far > max_message || f->payload_len > max_message - so_far)
        return RC_WS_CLOSE_TOO_BIG;
    return 0;
}

void rc_ws_msgstate_update(struct rc_ws_msgstate *st, const struct rc_ws_frame *f)
{
    if (f->opcode >= RC_WS_CLOSE)
        return;
    if (f->opcode == RC_WS_CONTINUATION) {
        st->len += f->payload_len;
    } else {
        st->len = f->payload_len;
        st->opcode = f->opcode;
        st->compressed = f->rsv1;
    }
    st->continues = !f->fin;
}

void rc_ws_unmask(unsigned char *p, size_t n, const unsigned char key[4], size_t offset)
{
    unsigned char k[8];
    uint64_t word;
    size_t i = 0;

    /*
     * The key rotated to the payload position of p[0], twice over: XOR-ing a word of 8 bytes at
     * a time keeps the rotation, because 8 is a multiple of the key's length.
     */
    for (size_t j = 0; j < sizeof k; j++)
        k[j] = key[(offset + j) & 3];
    memcpy(&word, k, sizeof word);
    for (; n - i >= sizeof word; i += sizeof word) {
        uint64_t v;

        memcpy(&v, p + i, sizeof v);
        v ^= word;
        memcpy(p + i, &v, sizeof v);
    }
    for (; i < n; i++)
        p[i] ^= k[i & 7];
}

size_t rc_ws_frame_header(unsigned char out[RC_WS_MAX_SERVER_HEADER], int opcode, bool fin,
                          bool rsv1, uint64_t payload_len)
{
    out[0] = (unsigned char)((fin ? 0x80 : 0) | (rsv1 ? 0x40 : 0) | (opcode & 0x0f));
    if (payload_len < 126) {
        out[1] = (unsigned char)payload_len;
        return 2;
    }
    if (payload_len <= UINT16_MAX) {
        out[1] = 126;
        out[2] = (unsigned char)(payload_len >> 8);
        out[3] = (unsigned char)payload_len;
        return 4;
    }
    out[1] = 127;
    for (int i = 0; i < 8; i++)
        out[2 + i] = (unsigned char)(payload_len >> (56 - 8 * i));
    return 10;
}

bool rc_ws_close_code_valid(unsigned code)
{
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
           (code >= 3000 && code <= 4999);
}

int rc_ws_parse_close(const unsigned char *payload, size_t n, unsigned *code,
                      const unsigned char **reason, size_t *reason_len)
{
    *reason = payload;
    *reason_len = 0;
    if (n == 0) {
        *code = RC_WS_CLOSE_NORMAL;
        return 0;
    }
    /* Section 5.5.1: a body, if any, starts with a two-byte code, so one byte is malformed. */
    if (n == 1)
        return RC_WS_CLOSE_PROTOCOL_ERROR;
    *code = (unsigned)payload[0] << 8 | payload[1];
    if (!rc_ws_close_code_valid(*code) || !rc_utf8_valid(payload + 2, n - 2))
        return RC_WS_CLOSE_PROTOCOL_ERROR;
    *reason = payload + 2;
    *reason_len = n - 2;
    return 0;
}
