/*
 * The WebSocket protocol on a worker's connections (RFC 6455, RFC 7692): the opening
 * handshake, client frames and messages, control frames, the close handshake, client commands,
 * upstream messages and the feed's SEND and CLOSE. See include/ringcast/conn.h.
 */
#include "ringcast/conn.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ringcast/assert.h"
#include "ringcast/command.h"
#include "ringcast/crypto.h"
#include "ringcast/ring.h"
#include "ringcast/server.h"
#include "ringcast/utf8.h"

/*
 * Side state for a WebSocket that has none while its bytes are handled: most reads hold whole
 * frames and leave nothing behind, so the state is copied to the heap only when it must outlive
 * the read. One per worker thread.
 */
static _Thread_local struct rc_ws ws_scratch;

/* Frees what a side state holds, but not the state itself. */
static void ws_release(struct rc_ws *ws)
{
    rc_inflater_free(ws->inf);
    ws->inf = NULL;
    free(ws->buf);
    ws->buf = NULL;
    while (ws->outq) {
        struct rc_bytes *next = ws->outq->next;
        free(ws->outq);
        ws->outq = next;
    }
}

void rc_wsconn_free(struct rc_conn *c)
{
    if (!c->ws)
        return;
    ws_release(c->ws);
    free(c->ws);
    c->ws = NULL;
}

/* Whether the side state holds nothing that must outlive this moment. */
static bool ws_idle(const struct rc_conn *c, const struct rc_ws *ws)
{
    return c->state == CONN_STREAMING && !ws->in_payload && !ws->hdr_len && !ws->msg.continues &&
           !ws->inf && !ws->buf && !ws->outq && !ws->pong_queued && !ws->close_queued &&
           c->sending != SEND_CTL;
}

void rc_wsconn_trim(struct rc_conn *c)
{
    if (c->ws && ws_idle(c, c->ws))
        rc_wsconn_free(c);
}

/* The side state on the heap, allocated if the connection has none. */
static struct rc_ws *heap_ws(struct rc_worker *w, struct rc_conn *c)
{
    if (!c->ws && !(c->ws = calloc(1, sizeof(*c->ws))))
        rc_stat_add(w->stats.alloc_failures, 1);
    return c->ws;
}

/*
 * Begins the close handshake: the connection leaves its channels (no data frame may follow a
 * Close), queues a Close with `code` and `reason`, and has close_timeout to finish.
 */
static void begin_close(struct rc_worker *w, struct rc_conn *c, struct rc_ws *ws, unsigned code,
                        const char *reason, size_t reason_len)
{
    if (c->state != CONN_STREAMING)
        return;
    rc_assert(reason_len <= sizeof(ws->close_reason));
    rc_stream_leave(w, c);
    rc_link_insert_tail(&w->ws_closing, &c->link);
    c->state = CONN_WS_CLOSING;
    c->flags &= (uint16_t) ~(F_PING_DUE | F_PONG_WAIT);
    ws->close_queued = true;
    ws->close_code = (uint16_t)code;
    memcpy(ws->close_reason, reason, reason_len);
    ws->close_reason_len = (uint8_t)reason_len;
    ws->pong_queued = false;
    ws->close_deadline = (uint32_t)(w->now_ms - w->start_ms + w->cfg->ws_close_timeout_ms);
}

void rc_wsconn_close(struct rc_worker *w, struct rc_conn *c, unsigned code, const char *reason,
                     size_t reason_len)
{
    struct rc_ws *ws = heap_ws(w, c);
    if (!ws) {
        rc_conn_close(w, c);
        return;
    }
    begin_close(w, c, ws, code, reason, reason_len);
    rc_conn_send_next(w, c);
}

/* Fails the connection (RFC 6455 section 7.1.7) for a protocol violation, with `code`. */
static void ws_fail(struct rc_worker *w, struct rc_conn *c, struct rc_ws *ws, unsigned code)
{
    if (c->state != CONN_STREAMING)
        return;
    rc_stat_add(w->stats.ws_errors, 1);
    begin_close(w, c, ws, code, NULL, 0);
}

/* Writes a control frame into the side state's out buffer and starts sending it. */
static void start_ctl(struct rc_worker *w, struct rc_conn *c, int opcode, const unsigned char *p,
                      size_t n, const unsigned char *p2, size_t n2)
{
    struct rc_ws *ws = c->ws;
    rc_assert(n + n2 <= RC_WS_MAX_CONTROL_PAYLOAD);
    size_t h = rc_ws_frame_header(ws->out, opcode, true, false, n + n2);
    memcpy(ws->out + h, p, n);
    memcpy(ws->out + h + n, p2, n2);
    ws->out_len = (uint8_t)(h + n + n2);
    c->sent = 0;
    rc_conn_send_ctl(w, c);
}

/*
 * Control frames and this client's own messages go between events, never inside one: a send in
 * flight always ends on a frame boundary. After our Close nothing else is sent.
 */
bool rc_wsconn_send_pending(struct rc_worker *w, struct rc_conn *c)
{
    struct rc_ws *ws = c->ws;
    if (ws && ws->close_queued) {
        unsigned char code[2] = {(unsigned char)(ws->close_code >> 8),
                                 (unsigned char)ws->close_code};
        ws->close_queued = false;
        start_ctl(w, c, RC_WS_CLOSE, code, sizeof(code), ws->close_reason, ws->close_reason_len);
        return true;
    }
    if (c->state != CONN_STREAMING)
        return c->state == CONN_WS_CLOSING;
    if (c->flags & F_PING_DUE) {
        c->flags &= (uint16_t)~F_PING_DUE;
        c->sent = 0;
        rc_conn_send_static(w, c, RC_RESP_WS_PING);
        return true;
    }
    if (ws && ws->pong_queued) {
        ws->pong_queued = false;
        start_ctl(w, c, RC_WS_PONG, ws->pong, ws->pong_len, NULL, 0);
        return true;
    }
    if (ws && ws->outq) {
        c->u.out = ws->outq;
        ws->outq = ws->outq->next;
        ws->outq_len--;
        c->sent = 0;
        rc_conn_send_owned(w, c);
        return true;
    }
    return false;
}

void rc_wsconn_ctl_sent(struct rc_conn *c)
{
    if (c->ws->out[0] == (0x80 | RC_WS_CLOSE))
        c->ws->close_sent = true;
}

/*
 * Queues a message for this client alone: head[0..head_len) then body[0..body_len) as one
 * message. Returns 0, -EAGAIN when max_queued messages already wait, or -ENOMEM.
 */
static int queue_message(struct rc_worker *w, struct rc_ws *ws, int opcode, const char *head,
                         size_t head_len, const void *body, size_t body_len)
{
    unsigned char fh[RC_WS_MAX_SERVER_HEADER];
    if (ws->outq_len >= w->cfg->ws_max_queued)
        return -EAGAIN;
    size_t h = rc_ws_frame_header(fh, opcode, true, false, head_len + body_len);
    struct rc_bytes *b = malloc(sizeof(*b) + h + head_len + body_len);
    if (!b) {
        rc_stat_add(w->stats.alloc_failures, 1);
        return -ENOMEM;
    }
    b->next = NULL;
    b->len = (uint32_t)(h + head_len + body_len);
    memcpy(b->data, fh, h);
    memcpy(b->data + h, head, head_len);
    memcpy(b->data + h + head_len, body, body_len);
    struct rc_bytes **pp = &ws->outq;
    while (*pp)
        pp = &(*pp)->next;
    *pp = b;
    ws->outq_len++;
    return 0;
}

/*
 * Sends the client a control message: "<line>\n" in envelope mode, "!<line>" in raw mode. A
 * client that lets max_queued replies pile up without reading them is closed with 1008.
 */
static void reply(struct rc_worker *w, struct rc_conn *c, struct rc_ws *ws, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void reply(struct rc_worker *w, struct rc_conn *c, struct rc_ws *ws, const char *fmt, ...)
{
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line + 1, sizeof(line) - 2, fmt, ap);
    va_end(ap);
    rc_assert(n > 0 && (size_t)n < sizeof(line) - 2);
    bool env = (c->flags & F_ENVELOPE) != 0;
    line[0] = '!';
    line[n + 1] = '\n';
    int r = queue_message(w, ws, RC_WS_TEXT, env ? line + 1 : line, (size_t)n + 1, NULL, 0);
    if (r == -EAGAIN) {
        rc_stat_add(w->stats.ws_queue_overflows, 1);
        begin_close(w, c, ws, RC_WS_CLOSE_POLICY, "replies not read", 16);
    } else if (r < 0)
        begin_close(w, c, ws, RC_WS_CLOSE_INTERNAL_ERROR, NULL, 0);
}

/* Sends a client message to the feed's listeners on the connection's first channel. */
static void upstream(struct rc_worker *w, struct rc_conn *c, struct rc_ws *ws, const char *p,
                     size_t n, bool binary)
{
    const struct rc_channel *ch = rc_stream_first(c);
    if (!ch) {
        reply(w, c, ws, "error not subscribed to any channel");
        return;
    }
    /* Nothing is queued for nobody: without a listener the client hears so at once. */
    if (rc_stat_get(w->server->feed.stats.listeners) == 0) {
        rc_stat_add(w->stats.ws_upstream_unheard, 1);
        reply(w, c, ws, "error nobody is listening on %.*s", (int)ch->name_len, ch->name);
        return;
    }
    if (w->upstream_pending >= w->cfg->ws_upstream_max_pending) {
        rc_stat_add(w->stats.ws_upstream_busy, 1);
        reply(w, c, ws, "error busy: too many messages on their way upstream");
        return;
    }
    struct rc_upstream *up = malloc(sizeof(*up) + ch->name_len + n);
    if (!up) {
        rc_stat_add(w->stats.alloc_failures, 1);
        reply(w, c, ws, "error out of memory");
        return;
    }
    struct rc_conn_id id = {w->id, (uint32_t)rc_slab_index(&w->conns, c), c->gen};
    up->conn = c;
    up->conn_gen = c->gen;
    up->binary = binary;
    up->listeners = 0;
    up->worker = w->id;
    up->channel_len = ch->name_len;
    up->payload_len = (uint32_t)n;
    up->id_len = (uint8_t)rc_conn_id_format(&id, up->id);
    memcpy(up->data, ch->name, ch->name_len);
    memcpy(up->data + ch->name_len, p, n);
    w->upstream_pending++;
    rc_stat_add(w->stats.ws_upstream, 1);
    /* A failed post comes back as RC_OP_UPSTREAM_DONE with a negative result. */
    rc_ring_msg(&w->ring, rc_server_feed_ring(w->server), rc_ud(up, RC_OP_UPSTREAM, 0), 0,
                rc_ud(up, RC_OP_UPSTREAM_DONE, 0));
}

void rc_wsconn_upstream_done(struct rc_worker *w, struct rc_upstream *up, int res)
{
    struct rc_conn *c = up->conn;
    w->upstream_pending--;
    /* The slab keeps its memory, so a closed connection's slot can be read; gen says if it is
     * still the sender. */
    if (res < 0 || up->listeners == 0) {
        rc_stat_add(w->stats.ws_upstream_unheard, 1);
        if (c->gen == up->conn_gen && c->state == CONN_STREAMING && heap_ws(w, c)) {
            reply(w, c, c->ws, "error nobody is listening on %.*s", (int)up->channel_len, up->data);
            rc_conn_send_next(w, c);
        }
    }
    free(up);
}

/* Handles a complete data message from the client. */
static void on_message(struct rc_worker *w, struct rc_conn *c, struct rc_ws *ws,
                       const unsigned char *p, size_t n)
{
    struct rc_command cmd;
    int r = 0;

    rc_stat_add(w->stats.ws_messages_in, 1);
    rc_command_parse((const char *)p, n, ws->msg.opcode == RC_WS_TEXT, &cmd);
    switch (cmd.kind) {
    case RC_COMMAND_SUBSCRIBE:
        r = rc_stream_add(w, c, cmd.arg, cmd.arg_len);
        if (r == -EEXIST)
            reply(w, c, ws, "error already subscribed to %.*s", (int)cmd.arg_len, cmd.arg);
        else if (r == -E2BIG)
            reply(w, c, ws, "error too many channels (max_channels_per_connection is %u)",
                  w->cfg->max_channels_per_connection);
        else if (r < 0)
            reply(w, c, ws, "error out of memory");
        else
            reply(w, c, ws, "subscribed %.*s", (int)cmd.arg_len, cmd.arg);
        break;
    case RC_COMMAND_UNSUBSCRIBE:
        r = rc_stream_remove(w, c, cmd.arg, cmd.arg_len);
        if (r == -ENOENT)
            reply(w, c, ws, "error not subscribed to %.*s", (int)cmd.arg_len, cmd.arg);
        else if (r < 0)
            reply(w, c, ws, "error out of memory");
        else
            reply(w, c, ws, "unsubscribed %.*s", (int)cmd.arg_len, cmd.arg);
        break;
    case RC_COMMAND_BAD:
        reply(w, c, ws, "error %s", cmd.error);
        break;
    case RC_COMMAND_UPSTREAM:
        upstream(w, c, ws, cmd.payload, cmd.payload_len, ws->msg.opcode == RC_WS_BINARY);
        return;
    }
    rc_stat_add(*(cmd.kind == RC_COMMAND_BAD || r < 0 ? &w->stats.ws_command_errors
                                                      : &w->stats.ws_commands),
                1);
}

/*
 * Reads the header of the next frame from p[0..n), completing one split across reads. Returns
 * the bytes used; ws->in_payload says whether the header is complete.
 */
static size_t ws_read_header(struct rc_ws *ws, const unsigned char *p, size_t n)
{
    size_t old = ws->hdr_len, take = n < RC_WS_MAX_HEADER - old ? n : RC_WS_MAX_HEADER - old;
    const unsigned char *buf = p;
    size_t len = n;

    if (old) {
        memcpy(ws->hdr + old, p, take);
        buf = ws->hdr;
        len = old + take;
    }
    int h = rc_ws_parse_frame(buf, len, &ws->frame);
    if (h == -2) {
        /* Fewer bytes than the longest header: they all fit. */
        if (!old)
            memcpy(ws->hdr, p, n);
        ws->hdr_len = (uint8_t)len;
        return n;
    }
    if (h == -1) {
        /* A length with its top bit set: where the next frame starts is unknowable. */
        ws->failed = true;
        return n;
    }
    ws->hdr_len = 0;
    ws->in_payload = true;
    ws->payload_left = ws->frame.payload_len;
    ws->payload_off = 0;
    ws->ctl_len = 0;
    return (size_t)h - old;
}

/* Checks a complete frame header against the protocol and prepares for its payload. */
static void ws_on_header(struct rc_worker *w, struct rc_conn *c, struct rc_ws *ws)
{
    const struct rc_ws_frame *f = &ws->frame;
    int code =
        rc_ws_check_frame(f, &ws->msg, (c->flags & F_WS_DEFLATE) != 0, w->cfg->ws_max_message);
    if (code) {
        ws_fail(w, c, ws, (unsigned)code);
        return;
    }
    if (f->opcode >= RC_WS_CLOSE)
        return;
    rc_ws_msgstate_update(&ws->msg, f);
    if (f->opcode == RC_WS_CONTINUATION || !ws->msg.compressed)
        return;
    /*
     * A compressed message inflates into a buffer of max_message bytes while it lasts. A window
     * of 32 KiB inflates what any smaller window compressed.
     */
    if (!ws->inf)
        ws->inf = rc_inflater_new(15, (c->flags & F_WS_CNCT) != 0);
    ws->buf = ws->inf ? malloc(w->cfg->ws_max_message) : NULL;
    ws->buf_cap = w->cfg->ws_max_message;
    ws->buf_len = 0;
    if (!ws->buf) {
        rc_stat_add(w->stats.alloc_failures, 1);
        ws_fail(w, c, ws, RC_WS_CLOSE_INTERNAL_ERROR);
    }
}

/*
 * Takes the next unmasked payload bytes of a data message (final: the message ends with them)
 * into the message buffer: inflates a compressed one, then validates text as the bytes arrive,
 * so that invalid UTF-8 fails at the frame that carries it. The frame check has already bound
 * the message to max_message. Returns 0 or the status to close with.
 */
static unsigned ws_on_data(struct rc_worker *w, struct rc_ws *ws, const unsigned char *p, size_t n,
                           bool final)
{
    size_t before = ws->buf_len;
    if (ws->msg.compressed) {
        int r = rc_inflate(ws->inf, p, n, final, ws->buf, w->cfg->ws_max_message, &ws->buf_len);
        if (r == -EMSGSIZE)
            return RC_WS_CLOSE_TOO_BIG;
        if (r == -EBADMSG)
            return RC_WS_CLOSE_INVALID_PAYLOAD;
        if (r < 0)
            return RC_WS_CLOSE_INTERNAL_ERROR;
    } else if (n > 0) {
        if (ws->buf_len + n > ws->buf_cap) {
            size_t cap = ws->buf_cap ? ws->buf_cap * 2 : 256;
            if (cap < ws->buf_len + n)
                cap = ws->buf_len + n;
            unsigned char *nb = realloc(ws->buf, cap);
            if (!nb) {
                rc_stat_add(w->stats.alloc_failures, 1);
                return RC_WS_CLOSE_INTERNAL_ERROR;
            }
            ws->buf = nb;
            ws->buf_cap = cap;
        }
        memcpy(ws->buf + ws->buf_len, p, n);
        ws->buf_len += n;
    }
    p = ws->buf + before;
    n = ws->buf_len - before;
    if (ws->msg.opcode == RC_WS_TEXT && rc_utf8_feed(&ws->utf8, p, n, NULL) < 0)
        return RC_WS_CLOSE_INVALID_PAYLOAD;
    if (final && ws->msg.opcode == RC_WS_TEXT && !rc_utf8_complete(ws->utf8))
        return RC_WS_CLOSE_INVALID_PAYLOAD;
    return 0;
}

/* Handles a complete control frame from the client, its payload in ws->ctl. */
static void ws_on_control(struct rc_worker *w, struct rc_conn *c, struct rc_ws *ws)
{
    const unsigned char *reason;
    size_t reason_len;
    unsigned code;

    if (ws->frame.opcode == RC_WS_PING) {
        /* Only the latest ping needs an answer (section 5.5.3). */
        memcpy(ws->pong, ws->ctl, ws->ctl_len);
        ws->pong_len = ws->ctl_len;
        ws->pong_queued = true;
    } else if (ws->frame.opcode == RC_WS_PONG) {
        c->flags &= (uint16_t)~F_PONG_WAIT;
    } else {
        int bad = rc_ws_parse_close(ws->ctl, ws->ctl_len, &code, &reason, &reason_len);
        ws->peer_closed = true;
        if (bad)
            ws_fail(w, c, ws, (unsigned)bad);
        else
            begin_close(w, c, ws, code, NULL, 0);
    }
}

/* Ends a frame whose payload has all arrived. */
static void ws_on_frame_end(struct rc_worker *w, struct rc_conn *c, struct rc_ws *ws)
{
    ws->in_payload = false;
    if (c->state != CONN_STREAMING) {
        /* After our Close only the client's Close matters; then the handshake is over. */
        if (ws->frame.opcode == RC_WS_CLOSE) {
            ws->peer_closed = true;
            if (ws->close_sent)
                rc_conn_close(w, c);
        }
        return;
    }
    if (ws->frame.opcode >= RC_WS_CLOSE) {
        ws_on_control(w, c, ws);
        return;
    }
    if (ws->msg.continues)
        return;
    unsigned code = ws_on_data(w, ws, NULL, 0, true);
    if (code) {
        ws_fail(w, c, ws, code);
        return;
    }
    on_message(w, c, ws, ws->buf ? ws->buf : (const unsigned char *)"", ws->buf_len);
    ws->utf8 = RC_UTF8_INIT;
    free(ws->buf);
    ws->buf = NULL;
    ws->buf_len = ws->buf_cap = 0;
    if (ws->msg.compressed && (c->flags & F_WS_CNCT)) {
        rc_inflater_free(ws->inf);
        ws->inf = NULL;
    }
}

void rc_wsconn_on_bytes(struct rc_worker *w, struct rc_conn *c, unsigned char *p, size_t n)
{
    struct rc_ws *ws = c->ws;
    if (!ws) {
        ws = &ws_scratch;
        memset(ws, 0, sizeof(*ws));
    }
    while (n > 0 && !ws->failed && c->state != CONN_CLOSING) {
        if (!ws->in_payload) {
            size_t used = ws_read_header(ws, p, n);
            p += used;
            n -= used;
            if (!ws->in_payload) {
                if (ws->failed)
                    ws_fail(w, c, ws, RC_WS_CLOSE_PROTOCOL_ERROR);
                break;
            }
            if (c->state == CONN_STREAMING)
                ws_on_header(w, c, ws);
        }
        size_t k = n < ws->payload_left ? n : (size_t)ws->payload_left;
        if (k && c->state == CONN_STREAMING) {
            rc_ws_unmask(p, k, ws->frame.mask, ws->payload_off);
            if (ws->frame.opcode >= RC_WS_CLOSE) {
                memcpy(ws->ctl + ws->ctl_len, p, k);
                ws->ctl_len = (uint8_t)(ws->ctl_len + k);
            } else {
                unsigned code = ws_on_data(w, ws, p, k, false);
                if (code)
                    ws_fail(w, c, ws, code);
            }
        }
        p += k;
        n -= k;
        ws->payload_off += k;
        ws->payload_left -= k;
        if (ws->payload_left == 0)
            ws_on_frame_end(w, c, ws);
    }
    if (c->state == CONN_CLOSING) {
        /* What the scratch holds belongs to nobody now. */
        if (ws == &ws_scratch)
            ws_release(ws);
        return;
    }
    if (!c->ws && !ws_idle(c, ws)) {
        c->ws = malloc(sizeof(*ws));
        if (!c->ws) {
            rc_stat_add(w->stats.alloc_failures, 1);
            ws_release(ws);
            rc_conn_close(w, c);
            return;
        }
        memcpy(c->ws, ws, sizeof(*ws));
    }
    rc_conn_send_next(w, c);
    rc_wsconn_trim(c);
}

void rc_wsconn_direct(struct rc_worker *w, struct rc_direct *d)
{
    struct rc_conn *c = rc_slab_at(&w->conns, d->target.index);
    d->result = 0;
    if (c && c->gen == d->target.gen && c->state == CONN_STREAMING && (c->flags & F_WS)) {
        struct rc_ws *ws = heap_ws(w, c);
        if (!ws) {
            d->result = -ENOMEM;
        } else if (d->kind == RC_DIRECT_SEND) {
            bool env = (c->flags & F_ENVELOPE) != 0;
            d->result = queue_message(w, ws, d->binary ? RC_WS_BINARY : RC_WS_TEXT,
                                      env ? "direct\n" : "", env ? 7 : 0, d->data, d->len);
            if (d->result == 0)
                d->result = 1;
            rc_conn_send_next(w, c);
            rc_wsconn_trim(c);
        } else {
            begin_close(w, c, ws, d->code, (const char *)d->data, d->len);
            rc_conn_send_next(w, c);
            d->result = 1;
        }
        if (d->result == 1)
            rc_stat_add(w->stats.ws_direct, 1);
    }
    rc_ring_msg(&w->ring, rc_server_feed_ring(w->server), rc_ud(d, RC_OP_DIRECT_DONE, 0), 0,
                rc_ud(d, RC_OP_MSG_FAILED, RC_OP_DIRECT_DONE));
}

/*
 * Chooses the subprotocol: the first element of the client's Sec-WebSocket-Protocol fields that
 * is in the configured list "a,b". Returns its length (it is copied to out), or 0 for none.
 */
static size_t choose_protocol(const struct rc_http_request *req, const char *configured, char *out)
{
    const struct rc_http_header *h = NULL;
    while ((h = rc_http_next_header(req, h, "Sec-WebSocket-Protocol")) != NULL) {
        const char *p = h->value, *end = h->value + h->value_len;
        while (p < end) {
            const char *comma = memchr(p, ',', (size_t)(end - p));
            const char *e = comma ? comma : end;
            while (p < e && (*p == ' ' || *p == '\t'))
                p++;
            while (e > p && (e[-1] == ' ' || e[-1] == '\t'))
                e--;
            size_t n = (size_t)(e - p);
            for (const char *q = configured; n && *q;) {
                size_t m = strcspn(q, ",");
                if (m == n && memcmp(q, p, n) == 0) {
                    memcpy(out, p, n);
                    return n;
                }
                q += m + (q[m] == ',');
            }
            p = comma ? comma + 1 : end;
        }
    }
    return 0;
}

/*
 * Negotiates permessage-deflate over every Sec-WebSocket-Extensions field of the request, which
 * together form one list. Returns as rc_deflate_negotiate() does; 0 when memory is short.
 */
static int negotiate_deflate(const struct rc_http_request *req, struct rc_deflate_params *params,
                             char resp[RC_DEFLATE_RESPONSE_MAX])
{
    static const char name[] = "Sec-WebSocket-Extensions";
    const struct rc_http_header *one = NULL, *h = NULL;
    size_t count = 0, total = 0;
    while ((h = rc_http_next_header(req, h, name)) != NULL) {
        one = h;
        count++;
        total += h->value_len + 2;
    }
    if (count <= 1)
        return one ? rc_deflate_negotiate(one->value, one->value_len, params, resp) : 0;
    char *joined = malloc(total);
    size_t n = 0;
    if (!joined)
        return 0;
    while ((h = rc_http_next_header(req, h, name)) != NULL) {
        if (n) {
            memcpy(joined + n, ", ", 2);
            n += 2;
        }
        memcpy(joined + n, h->value, h->value_len);
        n += h->value_len;
    }
    int r = rc_deflate_negotiate(joined, n, params, resp);
    free(joined);
    return r;
}

/*
 * Answers a WebSocket opening handshake (RFC 6455 section 4.2.2): 101 and the stream, 426 for
 * a version other than 13, 400 for anything else that is not a valid upgrade. A resuming
 * client that cannot have everything gets the gap message right behind the 101.
 */
void rc_wsconn_upgrade(struct rc_worker *w, struct rc_conn *c, const struct rc_http_request *req,
                       const struct rc_stream_request *sr, bool envelope)
{
    const struct rc_config *cfg = w->cfg;
    const struct rc_http_header *upgrade = rc_http_find_header(req, "Upgrade");
    const struct rc_http_header *connection = rc_http_find_header(req, "Connection");
    const struct rc_http_header *version = rc_http_find_header(req, "Sec-WebSocket-Version");
    const struct rc_http_header *key = rc_http_find_header(req, "Sec-WebSocket-Key");
    char accept[RC_CRYPTO_WS_ACCEPT_SIZE], ext[RC_DEFLATE_RESPONSE_MAX] = "";
    char protocol[sizeof(cfg->ws_protocols)];
    struct rc_deflate_params params;
    uint16_t flags = F_WS | (envelope ? F_ENVELOPE : 0);
    int ext_len = 0;

    /* An upgrade needs HTTP/1.1 and a GET (section 4.1); anything else is a bad request. */
    if (!rc_http_is_get(req) || req->minor_version != 1 || !upgrade || !connection ||
        !rc_http_has_token(upgrade->value, upgrade->value_len, "websocket") ||
        !rc_http_has_token(connection->value, connection->value_len, "upgrade")) {
        rc_conn_respond(w, c, RC_RESP_400);
        return;
    }
    if (!version || version->value_len != 2 || memcmp(version->value, "13", 2) != 0) {
        rc_conn_respond(w, c, RC_RESP_426);
        return;
    }
    if (!key || !rc_crypto_ws_key_valid(key->value, key->value_len) ||
        rc_crypto_ws_accept(key->value, key->value_len, accept) < 0) {
        rc_conn_respond(w, c, RC_RESP_400);
        return;
    }
    if (cfg->ws_compression) {
        ext_len = negotiate_deflate(req, &params, ext);
        if (ext_len < 0) {
            rc_conn_respond(w, c, RC_RESP_400);
            return;
        }
        /* The shared frames are compressed with a 32 KiB window; a client that wants a smaller
         * one is sent them uncompressed, which permessage-deflate allows for any message. */
        if (ext_len > 0)
            flags |= F_WS_DEFLATE | (params.server_window_bits == 15 ? F_WS_ZSEND : 0) |
                     (params.client_no_context_takeover ? F_WS_CNCT : 0);
    }
    uint64_t position;
    bool resume;
    enum rc_gap gap = rc_stream_resolve(w, sr, &position, &resume);
    size_t protocol_len = choose_protocol(req, cfg->ws_protocols, protocol);
    char head[sizeof(protocol) + RC_DEFLATE_RESPONSE_MAX + 320];
    int n =
        snprintf(head, sizeof(head),
                 "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                 "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n%s%.*s%s%s%s%s\r\n",
                 accept, protocol_len ? "Sec-WebSocket-Protocol: " : "", (int)protocol_len,
                 protocol, protocol_len ? "\r\n" : "",
                 ext_len > 0 ? "Sec-WebSocket-Extensions: " : "", ext, ext_len > 0 ? "\r\n" : "");
    rc_assert(n > 0 && (size_t)n < sizeof(head));
    if (gap) {
        /* "!gap <reason>" in raw mode, "gap <reason>\n" in envelope mode, as a text frame. */
        char msg[32];
        int m = snprintf(msg, sizeof(msg), "%sgap %s%s", envelope ? "" : "!",
                         rc_stream_gap_name(gap), envelope ? "\n" : "");
        size_t h =
            rc_ws_frame_header((unsigned char *)head + n, RC_WS_TEXT, true, false, (size_t)m);
        memcpy(head + n + h, msg, (size_t)m);
        n += (int)h + m;
    }
    struct rc_bytes *out = malloc(sizeof(*out) + (size_t)n);
    rc_link_remove(&c->link);
    if (!out || rc_stream_open(w, c, sr, position, resume, gap) < 0) {
        free(out);
        rc_stat_add(w->stats.alloc_failures, 1);
        rc_link_insert_tail(&w->pending, &c->link);
        rc_conn_respond(w, c, RC_RESP_503);
        return;
    }
    out->next = NULL;
    out->len = (uint32_t)n;
    memcpy(out->data, head, (size_t)n);
    /* The side state shares its bytes with the request deadline, which is over. */
    c->ws = NULL;
    c->flags |= flags;
    c->u.out = out;
    rc_stat_add(w->stats.ws_upgrades, 1);
    rc_conn_send_owned(w, c);
}
