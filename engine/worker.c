/*
 * A worker thread: accept, parse requests, stream events. See include/ringcast/worker.h.
 */
#include "ringcast/worker.h"

#include <errno.h>
#include <stdarg.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/uio.h>
#include <unistd.h>

#include "ringcast/assert.h"
#include "ringcast/crypto.h"
#include "ringcast/deflate.h"
#include "ringcast/http.h"
#include "ringcast/log.h"
#include "ringcast/server.h"
#include "ringcast/utf8.h"
#include "ringcast/ws.h"

/* Connection states. */
enum {
    CONN_REQUEST = 1, /* reading the request head; on the worker's pending list */
    CONN_RESPONDING,  /* sending a canned response, then closing */
    CONN_STREAMING,   /* an SSE stream or a WebSocket; on its channel's subscriber list */
    CONN_WS_CLOSING,  /* a WebSocket in its close handshake; on the worker's ws_closing list */
    CONN_CLOSING,     /* waiting for its operations to finish before the close */
};

/* Connection flags: which operations are in flight, recent activity, and the protocol. */
enum {
    F_RECV = 1 << 0,       /* the multishot receive is armed */
    F_SEND = 1 << 1,       /* a send is in flight */
    F_SHUT = 1 << 2,       /* a shutdown is in flight */
    F_ACTIVE = 1 << 3,     /* something was sent since the last heartbeat tick */
    F_WS = 1 << 4,         /* the connection speaks WebSocket (else SSE) */
    F_WS_DEFLATE = 1 << 5, /* permessage-deflate was negotiated: the client may compress */
    F_WS_ZSEND = 1 << 6,   /* ... and takes the shared compressed frames (32 KiB window) */
    F_WS_CNCT = 1 << 7,    /* ... and agreed to client_no_context_takeover */
    F_PING_DUE = 1 << 8,   /* a keepalive ping waits for the send in flight */
    F_PONG_WAIT = 1 << 9,  /* a keepalive ping is unanswered */
};

/* What the send in flight carries. */
enum {
    SEND_NONE = 0,
    SEND_EVENT,
    SEND_BATCH,
    SEND_STATIC,
    SEND_OWNED, /* bytes owned by the send (the 101 response), freed when it completes */
    SEND_CTL,   /* a WebSocket control frame from the connection's side state */
};

#define BATCH_EVENTS 16
#define BATCH_BYTES  (64 * 1024)

/*
 * The events of one sendmsg for a stream that is behind. It exists only while that send is in
 * flight, comes from the worker's batch slab, and holds pointers and one use per event, never
 * copies of their bytes.
 */
struct rc_batch {
    struct msghdr msg;
    struct iovec iov[BATCH_EVENTS];
    struct rc_event *ev[BATCH_EVENTS]; /* ev[first..n) still hold one use each */
    unsigned n;
    unsigned first; /* the first event not yet completely sent */
};

/*
 * Bytes with their length: request bytes that arrived in several reads (freed as soon as the
 * head is parsed), or a response that differs per connection (freed once it is sent).
 */
struct rc_bytes {
    uint32_t len;
    char data[];
};

/*
 * What a WebSocket connection needs beyond its 64 bytes, allocated only while it needs it: a
 * frame header or control payload split across reads, a payload still arriving, a message in
 * progress, a control frame waiting to be sent or being sent, the close handshake, an inflater
 * that keeps context. A connection that only receives events never has one.
 */
struct rc_ws {
    struct rc_ws_frame frame; /* the frame whose payload is arriving */
    struct rc_ws_msgstate msg;
    uint64_t payload_left;   /* bytes of the frame's payload still to come */
    uint64_t payload_off;    /* bytes of it received so far (the unmasking offset) */
    uint32_t utf8;           /* validator state of the text message in progress */
    uint32_t close_deadline; /* CONN_WS_CLOSING: ms after worker start when it is dropped */
    struct rc_inflater *inf; /* the client's compressed messages; NULL until one comes */
    unsigned char *inflated; /* a compressed message in progress, inflated (max_message) */
    size_t inflated_len;
    bool in_payload;     /* the header of `frame` is complete, its payload is due */
    bool failed;         /* the bytes can no longer be framed: discard them all */
    bool close_queued;   /* our Close waits for the send in flight */
    bool close_sent;     /* our Close is completely sent */
    bool peer_closed;    /* the client's Close has arrived */
    bool pong_queued;    /* a Pong waits for the send in flight */
    uint16_t close_code; /* of the queued Close */
    uint8_t hdr_len;     /* bytes of a split frame header in hdr */
    uint8_t ctl_len;     /* control payload bytes collected in ctl */
    uint8_t pong_len;    /* payload bytes of the queued Pong */
    uint8_t out_len;     /* bytes of the control frame in out */
    unsigned char hdr[RC_WS_MAX_HEADER];
    unsigned char ctl[RC_WS_MAX_CONTROL_PAYLOAD];
    unsigned char pong[RC_WS_MAX_CONTROL_PAYLOAD];
    unsigned char out[2 + RC_WS_MAX_CONTROL_PAYLOAD]; /* the control frame being sent */
};

/*
 * One client connection: 64 bytes from the worker's slab. Nothing else is allocated for an
 * established stream; what it still has to send is the part of its channel's history after
 * `cursor`. A WebSocket adds its side state (struct rc_ws) only while a client frame, a control
 * frame or the close handshake is in progress.
 */
struct rc_conn {
    union {
        struct rc_event *ev;    /* SEND_EVENT: the event being sent (one use) */
        struct rc_batch *batch; /* SEND_BATCH: the events being sent, owned */
        struct rc_bytes *req;   /* REQUEST: a partial head, owned, or NULL */
        struct rc_bytes *out;   /* SEND_OWNED: the bytes being sent, owned */
    } u;                        /* first: the slab reuses these bytes while the object is free */
    struct rc_channel *chan;    /* STREAMING: the channel; not owned */
    struct rc_link link;        /* node on the pending, a subscriber or the ws_closing list */
    uint64_t cursor;            /* sequence number of the next event to send */
    union {
        uint32_t deadline; /* REQUEST, RESPONDING: ms after worker start when it must be done */
        struct rc_ws *ws;  /* a WebSocket: its side state, owned, or NULL while it needs none */
    };
    uint32_t fd;   /* direct descriptor index in the ring's file table */
    uint32_t sent; /* bytes of the current frame or response already sent */
    uint16_t gen;  /* bumped on every reuse; part of every user_data */
    uint16_t flags;
    uint8_t state;
    uint8_t sending; /* SEND_* */
    uint8_t resp;    /* enum rc_response, for SEND_STATIC */
};

_Static_assert(sizeof(struct rc_conn) <= 64, "a connection must stay within 64 bytes");

static uint64_t monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t ud_of(const struct rc_conn *c, enum rc_op op)
{
    return rc_ud(c, op, c->gen);
}

/* Formats one canned response into w->responses[i]. */
static int set_response(struct rc_worker *w, enum rc_response i, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int set_response(struct rc_worker *w, enum rc_response i, const char *fmt, ...)
{
    va_list ap;
    char *s;
    va_start(ap, fmt);
    int n = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (n < 0)
        return -ENOMEM;
    w->responses[i] = s;
    w->response_len[i] = (uint32_t)n;
    return 0;
}

static int set_error(struct rc_worker *w, enum rc_response i, const char *status, const char *extra)
{
    return set_response(w, i,
                        "HTTP/1.1 %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
                        "%sConnection: close\r\n\r\n%s\n",
                        status, strlen(status) + 1, extra, status);
}

/* Builds the canned responses; the CORS header and retry: hint come from the configuration. */
static int build_responses(struct rc_worker *w)
{
    const struct rc_config *cfg = w->cfg;
    char cors[300] = "", retry[40] = "";
    int ret = 0;

    if (cfg->cors_origin[0])
        snprintf(cors, sizeof(cors), "Access-Control-Allow-Origin: %s\r\n", cfg->cors_origin);
    if (cfg->retry_ms)
        snprintf(retry, sizeof(retry), "retry: %u\n\n", cfg->retry_ms);
    /* The body of a stream ends when the connection does, which every SSE client expects. */
    ret |= set_response(w, RC_RESP_SSE_HEAD,
                        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                        "Cache-Control: no-cache\r\nX-Accel-Buffering: no\r\n%s"
                        "Connection: close\r\n\r\n%s",
                        cors, retry);
    ret |= set_response(w, RC_RESP_HEARTBEAT, ":\n\n");
    ret |= set_response(w, RC_RESP_WS_PING, "%c%c", 0x80 | RC_WS_PING, 0);
    ret |= set_response(w, RC_RESP_HEALTH,
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n"
                        "Cache-Control: no-cache\r\n%sConnection: close\r\n\r\nok\n",
                        cors);
    ret |= set_error(w, RC_RESP_400, "400 Bad Request", "");
    ret |= set_error(w, RC_RESP_404, "404 Not Found", "");
    ret |= set_error(w, RC_RESP_405, "405 Method Not Allowed", "Allow: GET\r\n");
    ret |= set_error(w, RC_RESP_414, "414 URI Too Long", "");
    ret |= set_error(w, RC_RESP_426, "426 Upgrade Required", "Sec-WebSocket-Version: 13\r\n");
    ret |= set_error(w, RC_RESP_431, "431 Request Header Fields Too Large", "");
    ret |= set_error(w, RC_RESP_503, "503 Service Unavailable", "Retry-After: 1\r\n");
    ret |= set_error(w, RC_RESP_505, "505 HTTP Version Not Supported", "");
    return ret ? -ENOMEM : 0;
}

static void free_responses(struct rc_worker *w)
{
    for (int i = 0; i < RC_RESP_COUNT; i++)
        free(w->responses[i]);
}

/* Starts sending canned response `resp` from byte c->sent. */
static void send_static(struct rc_worker *w, struct rc_conn *c, enum rc_response resp)
{
    rc_assert(!(c->flags & F_SEND) && c->sent < w->response_len[resp]);
    c->sending = SEND_STATIC;
    c->resp = (uint8_t)resp;
    c->flags |= F_SEND | F_ACTIVE;
    rc_ring_send(&w->ring, (int)c->fd, true, w->responses[resp] + c->sent,
                 w->response_len[resp] - c->sent, ud_of(c, RC_OP_SEND));
}

/* Frees a WebSocket's side state and what it holds. */
static void ws_free(struct rc_conn *c)
{
    if (!c->ws)
        return;
    rc_inflater_free(c->ws->inf);
    free(c->ws->inflated);
    free(c->ws);
    c->ws = NULL;
}

/* Frees the connection once nothing is in flight for it any more. */
static void conn_maybe_free(struct rc_worker *w, struct rc_conn *c)
{
    if (c->state != CONN_CLOSING || (c->flags & (F_RECV | F_SEND | F_SHUT)))
        return;
    /* Only now: a control frame in flight was sent from the side state. */
    if (c->flags & F_WS)
        ws_free(c);
    rc_ring_close_direct(&w->ring, c->fd);
    c->gen++;
    c->state = 0;
    rc_slab_free(&w->conns, c);
    rc_stat_add(w->stats.connections, -1);
}

/* Leaves the channel; the last subscriber takes the channel and its history with it. */
static void unsubscribe(struct rc_worker *w, struct rc_conn *c)
{
    struct rc_channel *ch = c->chan;
    rc_link_remove(&c->link);
    c->chan = NULL;
    ch->nsubs--;
    rc_stat_add(w->stats.subscribers, -1);
    if (ch->nsubs == 0) {
        rc_channel_destroy(&w->channels, ch);
        rc_stat_add(w->stats.channels, -1);
    }
}

/*
 * Closes a connection. Operations in flight are woken by a shutdown; the descriptor is closed
 * and the slot freed only when the last of them has completed, so no completion ever refers
 * to a freed connection. Bytes already queued in the socket are still delivered.
 */
static void conn_close(struct rc_worker *w, struct rc_conn *c)
{
    if (c->state == CONN_CLOSING)
        return;
    if (c->state == CONN_STREAMING) {
        unsubscribe(w, c);
    } else {
        rc_link_remove(&c->link);
    }
    if (c->state == CONN_REQUEST) {
        free(c->u.req);
        c->u.req = NULL;
    }
    c->state = CONN_CLOSING;
    if (c->flags & (F_RECV | F_SEND)) {
        c->flags |= F_SHUT;
        rc_ring_shutdown_direct(&w->ring, c->fd, SHUT_RDWR, ud_of(c, RC_OP_CLOSE));
    }
    conn_maybe_free(w, c);
}

/*
 * Answers with a canned response and closes once it is sent. The connection stays on the
 * pending list, so a client that never reads its answer is still closed at its deadline.
 */
static void respond(struct rc_worker *w, struct rc_conn *c, enum rc_response resp)
{
    free(c->u.req);
    c->u.req = NULL;
    c->state = CONN_RESPONDING;
    c->sent = 0;
    if (resp >= RC_RESP_400)
        rc_stat_add(w->stats.http_errors, 1);
    send_static(w, c, resp);
}

/* The frame of ev that c is sent: SSE or WebSocket, compressed where that was negotiated. */
static const char *event_frame(const struct rc_conn *c, const struct rc_event *ev, uint32_t *len)
{
    if (!(c->flags & F_WS)) {
        *len = ev->sse_len;
        return ev->sse;
    }
    if ((c->flags & F_WS_ZSEND) && ev->wsz) {
        *len = ev->wsz_len;
        return (const char *)ev->wsz;
    }
    *len = ev->ws_len;
    return (const char *)ev->ws;
}

static uint32_t event_frame_len(const struct rc_conn *c, const struct rc_event *ev)
{
    uint32_t len;
    event_frame(c, ev, &len);
    return len;
}

/* Sends the single event at the cursor from byte c->sent. */
static void send_event(struct rc_worker *w, struct rc_conn *c)
{
    uint32_t len;
    const char *frame = event_frame(c, c->u.ev, &len);
    c->sending = SEND_EVENT;
    c->flags |= F_SEND | F_ACTIVE;
    rc_ring_send(&w->ring, (int)c->fd, true, frame + c->sent, len - c->sent, ud_of(c, RC_OP_SEND));
}

/* Sends bytes that belong to this connection alone (the 101 response) from byte c->sent. */
static void send_owned(struct rc_worker *w, struct rc_conn *c)
{
    c->sending = SEND_OWNED;
    c->flags |= F_SEND | F_ACTIVE;
    rc_ring_send(&w->ring, (int)c->fd, true, c->u.out->data + c->sent, c->u.out->len - c->sent,
                 ud_of(c, RC_OP_SEND));
}

/* Sends the control frame in the side state from byte c->sent. */
static void send_ctl(struct rc_worker *w, struct rc_conn *c)
{
    c->sending = SEND_CTL;
    c->flags |= F_SEND | F_ACTIVE;
    rc_ring_send(&w->ring, (int)c->fd, true, c->ws->out + c->sent, c->ws->out_len - c->sent,
                 ud_of(c, RC_OP_SEND));
}

/* Writes a control frame into the side state's out buffer and starts sending it. */
static void start_ctl(struct rc_worker *w, struct rc_conn *c, int opcode, const unsigned char *p,
                      size_t n)
{
    struct rc_ws *ws = c->ws;
    rc_assert(n <= RC_WS_MAX_CONTROL_PAYLOAD);
    size_t h = rc_ws_frame_header(ws->out, opcode, true, false, n);
    memcpy(ws->out + h, p, n);
    ws->out_len = (uint8_t)(h + n);
    c->sent = 0;
    send_ctl(w, c);
}

/*
 * Starts the send of a WebSocket control frame that is due, if one is. Control frames go
 * between events, never inside one: a send in flight always ends on a frame boundary. After
 * our Close nothing else is sent.
 */
static bool ws_send_control(struct rc_worker *w, struct rc_conn *c)
{
    struct rc_ws *ws = c->ws;
    if (ws && ws->close_queued) {
        unsigned char code[2] = {(unsigned char)(ws->close_code >> 8),
                                 (unsigned char)ws->close_code};
        ws->close_queued = false;
        start_ctl(w, c, RC_WS_CLOSE, code, sizeof(code));
        return true;
    }
    if (c->state != CONN_STREAMING)
        return c->state == CONN_WS_CLOSING;
    if (c->flags & F_PING_DUE) {
        c->flags &= (uint16_t)~F_PING_DUE;
        c->sent = 0;
        send_static(w, c, RC_RESP_WS_PING);
        return true;
    }
    if (ws && ws->pong_queued) {
        ws->pong_queued = false;
        start_ctl(w, c, RC_WS_PONG, ws->pong, ws->pong_len);
        return true;
    }
    return false;
}

/* Sends what is left of a batch: its events from b->first on, the first from byte c->sent. */
static void send_batch(struct rc_worker *w, struct rc_conn *c)
{
    struct rc_batch *b = c->u.batch;
    for (unsigned i = b->first; i < b->n; i++) {
        size_t skip = i == b->first ? c->sent : 0;
        uint32_t len;
        const char *frame = event_frame(c, b->ev[i], &len);
        b->iov[i].iov_base = (void *)(frame + skip);
        b->iov[i].iov_len = len - skip;
    }
    memset(&b->msg, 0, sizeof(b->msg));
    b->msg.msg_iov = &b->iov[b->first];
    b->msg.msg_iovlen = b->n - b->first;
    c->sending = SEND_BATCH;
    c->flags |= F_SEND | F_ACTIVE;
    rc_ring_sendmsg(&w->ring, (int)c->fd, true, &b->msg, ud_of(c, RC_OP_SEND));
}

/*
 * Starts the send of what follows the cursor, if anything does and no send is in flight. A
 * stream one event behind sends that event; a stream further behind sends up to BATCH_EVENTS
 * events in one sendmsg, so that catching up costs one system call and as few TCP segments as
 * the bytes need, instead of one of each per event.
 */
static void send_next(struct rc_worker *w, struct rc_conn *c)
{
    struct rc_channel *ch = c->chan;
    struct rc_batch *b;

    if (c->flags & F_SEND)
        return;
    if ((c->flags & F_WS) && ws_send_control(w, c))
        return;
    if (c->cursor == ch->head)
        return;
    rc_assert(c->cursor >= ch->tail && c->cursor < ch->head);
    if (ch->head - c->cursor == 1 || !(b = rc_slab_alloc(&w->batches))) {
        c->u.ev = rc_channel_at(ch, c->cursor);
        rc_event_use(c->u.ev, w->id);
        send_event(w, c);
        return;
    }
    size_t bytes = 0;
    b->n = 0;
    b->first = 0;
    for (uint64_t seq = c->cursor; seq < ch->head && b->n < BATCH_EVENTS && bytes < BATCH_BYTES;
         seq++) {
        struct rc_event *ev = rc_channel_at(ch, seq);
        rc_event_use(ev, w->id);
        b->ev[b->n++] = ev;
        bytes += event_frame_len(c, ev);
    }
    c->u.batch = b;
    send_batch(w, c);
}

/* Releases the events a send still holds, when it failed or its connection is closing. */
static void drop_send(struct rc_worker *w, struct rc_conn *c, uint8_t sending)
{
    if (sending == SEND_EVENT) {
        rc_event_unuse(c->u.ev, w->id);
        c->u.ev = NULL;
    } else if (sending == SEND_BATCH) {
        struct rc_batch *b = c->u.batch;
        for (unsigned i = b->first; i < b->n; i++)
            rc_event_unuse(b->ev[i], w->id);
        rc_slab_free(&w->batches, b);
        c->u.batch = NULL;
    } else if (sending == SEND_OWNED) {
        free(c->u.out);
        c->u.out = NULL;
    }
}

/*
 * Accounts for `n` more bytes sent: moves the cursor past every event now complete and
 * releases it. Returns whether the whole send is done; if not, the rest must go next.
 */
static bool advance(struct rc_worker *w, struct rc_conn *c, uint8_t sending, uint32_t n)
{
    c->sent += n;
    if (sending == SEND_STATIC) {
        if (c->sent < w->response_len[c->resp])
            return false;
    } else if (sending == SEND_OWNED) {
        if (c->sent < c->u.out->len)
            return false;
        free(c->u.out);
        c->u.out = NULL;
    } else if (sending == SEND_CTL) {
        if (c->sent < c->ws->out_len)
            return false;
        if (c->ws->out[0] == (0x80 | RC_WS_CLOSE))
            c->ws->close_sent = true;
    } else if (sending == SEND_EVENT) {
        if (c->sent < event_frame_len(c, c->u.ev))
            return false;
        c->cursor++;
        rc_event_unuse(c->u.ev, w->id);
        c->u.ev = NULL;
    } else {
        struct rc_batch *b = c->u.batch;
        uint32_t len;
        while (b->first < b->n && c->sent >= (len = event_frame_len(c, b->ev[b->first]))) {
            c->sent -= len;
            c->cursor++;
            rc_event_unuse(b->ev[b->first], w->id);
            b->first++;
        }
        if (b->first < b->n)
            return false;
        rc_slab_free(&w->batches, b);
        c->u.batch = NULL;
    }
    c->sent = 0;
    return true;
}

/* Whether a stream is further behind its channel than max_lag allows. */
static bool lagging(const struct rc_worker *w, const struct rc_conn *c)
{
    return c->chan->head - c->cursor > w->cfg->max_lag || c->cursor < c->chan->tail;
}

/*
 * Joins a channel and starts the stream: an SSE head, or for a WebSocket (ws_flags holds F_WS)
 * the 101 response `upgrade`, which the connection owns from here on.
 */
static void subscribe(struct rc_worker *w, struct rc_conn *c, const char *name, size_t len,
                      struct rc_bytes *upgrade, uint16_t ws_flags)
{
    uint32_t hash = rc_channel_hash(name, len);
    struct rc_channel *ch = rc_channel_find(&w->channels, name, len, hash);
    if (!ch) {
        ch = rc_channel_create(&w->channels, name, len, hash);
        if (!ch) {
            free(upgrade);
            rc_stat_add(w->stats.alloc_failures, 1);
            respond(w, c, RC_RESP_503);
            return;
        }
        rc_stat_add(w->stats.channels, 1);
    }
    rc_link_remove(&c->link);
    free(c->u.req);
    c->u.req = NULL;
    c->chan = ch;
    rc_link_insert_tail(&ch->subs, &c->link);
    ch->nsubs++;
    c->cursor = ch->head;
    c->state = CONN_STREAMING;
    c->sent = 0;
    rc_stat_add(w->stats.subscribers, 1);
    if (upgrade) {
        /* The side state shares its bytes with the request deadline, which is over. */
        c->ws = NULL;
        c->flags |= ws_flags;
        c->u.out = upgrade;
        rc_stat_add(w->stats.ws_upgrades, 1);
        send_owned(w, c);
        return;
    }
    send_static(w, c, RC_RESP_SSE_HEAD);
    /* An SSE client has nothing more to say; without a watch the receive can go. */
    if (!w->cfg->watch_disconnects && (c->flags & F_RECV))
        rc_ring_cancel(&w->ring, ud_of(c, RC_OP_RECV));
}

static bool method_is_get(const struct rc_http_request *req)
{
    return req->method_len == 3 && memcmp(req->method, "GET", 3) == 0;
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
 * Answers a WebSocket opening handshake (RFC 6455 section 4.2.2): 101 and a subscription, 426
 * for a version other than 13, 400 for anything else that is not a valid upgrade.
 */
static void ws_upgrade(struct rc_worker *w, struct rc_conn *c, const struct rc_http_request *req,
                       const struct rc_route *route)
{
    const struct rc_config *cfg = w->cfg;
    const struct rc_http_header *upgrade = rc_http_find_header(req, "Upgrade");
    const struct rc_http_header *connection = rc_http_find_header(req, "Connection");
    const struct rc_http_header *version = rc_http_find_header(req, "Sec-WebSocket-Version");
    const struct rc_http_header *key = rc_http_find_header(req, "Sec-WebSocket-Key");
    char accept[RC_CRYPTO_WS_ACCEPT_SIZE], ext[RC_DEFLATE_RESPONSE_MAX] = "";
    char protocol[sizeof(cfg->ws_protocols)];
    struct rc_deflate_params params;
    uint16_t flags = F_WS;
    int ext_len = 0;

    /* An upgrade needs HTTP/1.1 and a GET (section 4.1); anything else is a bad request. */
    if (!method_is_get(req) || req->minor_version != 1 || !upgrade || !connection ||
        !rc_http_has_token(upgrade->value, upgrade->value_len, "websocket") ||
        !rc_http_has_token(connection->value, connection->value_len, "upgrade")) {
        respond(w, c, RC_RESP_400);
        return;
    }
    if (!version || version->value_len != 2 || memcmp(version->value, "13", 2) != 0) {
        respond(w, c, RC_RESP_426);
        return;
    }
    if (!key || !rc_crypto_ws_key_valid(key->value, key->value_len) ||
        rc_crypto_ws_accept(key->value, key->value_len, accept) < 0) {
        respond(w, c, RC_RESP_400);
        return;
    }
    if (cfg->ws_compression) {
        ext_len = negotiate_deflate(req, &params, ext);
        if (ext_len < 0) {
            respond(w, c, RC_RESP_400);
            return;
        }
        /* The shared frames are compressed with a 32 KiB window; a client that wants a smaller
         * one is sent them uncompressed, which permessage-deflate allows for any message. */
        if (ext_len > 0)
            flags |= F_WS_DEFLATE | (params.server_window_bits == 15 ? F_WS_ZSEND : 0) |
                     (params.client_no_context_takeover ? F_WS_CNCT : 0);
    }
    size_t protocol_len = choose_protocol(req, cfg->ws_protocols, protocol);
    char head[sizeof(protocol) + RC_DEFLATE_RESPONSE_MAX + 256];
    int n =
        snprintf(head, sizeof(head),
                 "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                 "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n%s%.*s%s%s%s%s\r\n",
                 accept, protocol_len ? "Sec-WebSocket-Protocol: " : "", (int)protocol_len,
                 protocol, protocol_len ? "\r\n" : "",
                 ext_len > 0 ? "Sec-WebSocket-Extensions: " : "", ext, ext_len > 0 ? "\r\n" : "");
    rc_assert(n > 0 && (size_t)n < sizeof(head));
    struct rc_bytes *out = malloc(sizeof(*out) + (size_t)n);
    if (!out) {
        rc_stat_add(w->stats.alloc_failures, 1);
        respond(w, c, RC_RESP_503);
        return;
    }
    out->len = (uint32_t)n;
    memcpy(out->data, head, (size_t)n);
    subscribe(w, c, route->channel, route->channel_len, out, flags);
}

/* Routes a parsed request. The request points into bytes that are freed after this returns. */
static void handle_request(struct rc_worker *w, struct rc_conn *c,
                           const struct rc_http_request *req)
{
    struct rc_route route;
    rc_http_route(req->target, req->target_len, &route);
    if (route.kind == RC_ROUTE_NOT_FOUND)
        respond(w, c, RC_RESP_404);
    else if (route.kind == RC_ROUTE_BAD_CHANNEL)
        respond(w, c, RC_RESP_400);
    else if (route.kind == RC_ROUTE_WS)
        ws_upgrade(w, c, req, &route);
    else if (!method_is_get(req))
        respond(w, c, RC_RESP_405);
    else if (route.kind == RC_ROUTE_HEALTH)
        respond(w, c, RC_RESP_HEALTH);
    else
        subscribe(w, c, route.channel, route.channel_len, NULL, 0);
}

static enum rc_response error_response(int status)
{
    switch (status) {
    case 414:
        return RC_RESP_414;
    case 431:
        return RC_RESP_431;
    case 505:
        return RC_RESP_505;
    default:
        return RC_RESP_400;
    }
}

/*
 * Side state for a WebSocket that has none while its bytes are handled: most reads hold whole
 * frames and leave nothing behind, so the state is copied to the heap only when it must outlive
 * the read. One per worker thread.
 */
static _Thread_local struct rc_ws ws_scratch;

/* Whether the side state holds nothing that must outlive this moment. */
static bool ws_idle(const struct rc_conn *c, const struct rc_ws *ws)
{
    return c->state == CONN_STREAMING && !ws->in_payload && !ws->hdr_len && !ws->msg.continues &&
           !ws->inf && !ws->pong_queued && c->sending != SEND_CTL;
}

/*
 * Begins the close handshake: the connection leaves its channel (no data frame may follow a
 * Close), queues a Close with `code`, and has close_timeout to finish.
 */
static void ws_begin_close(struct rc_worker *w, struct rc_conn *c, struct rc_ws *ws, unsigned code)
{
    if (c->state != CONN_STREAMING)
        return;
    unsubscribe(w, c);
    rc_link_insert_tail(&w->ws_closing, &c->link);
    c->state = CONN_WS_CLOSING;
    c->flags &= (uint16_t) ~(F_PING_DUE | F_PONG_WAIT);
    ws->close_queued = true;
    ws->close_code = (uint16_t)code;
    ws->pong_queued = false;
    ws->close_deadline = (uint32_t)(w->now_ms - w->start_ms + w->cfg->ws_close_timeout_ms);
}

/* Fails the connection (RFC 6455 section 7.1.7) for a protocol violation, with `code`. */
static void ws_fail(struct rc_worker *w, struct rc_conn *c, struct rc_ws *ws, unsigned code)
{
    if (c->state != CONN_STREAMING)
        return;
    rc_stat_add(w->stats.ws_errors, 1);
    ws_begin_close(w, c, ws, code);
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
    ws->inflated = ws->inf ? malloc(w->cfg->ws_max_message) : NULL;
    ws->inflated_len = 0;
    if (!ws->inflated) {
        rc_stat_add(w->stats.alloc_failures, 1);
        ws_fail(w, c, ws, RC_WS_CLOSE_INTERNAL_ERROR);
    }
}

/*
 * Takes the next unmasked payload bytes of a data message (final: the message ends with them):
 * inflates a compressed one, then validates text as the bytes arrive, so that invalid UTF-8
 * fails at the frame that carries it. Returns 0 or the status to close with.
 */
static unsigned ws_on_data(struct rc_worker *w, struct rc_ws *ws, const unsigned char *p, size_t n,
                           bool final)
{
    if (ws->msg.compressed) {
        size_t before = ws->inflated_len;
        int r = rc_inflate(ws->inf, p, n, final, ws->inflated, w->cfg->ws_max_message,
                           &ws->inflated_len);
        if (r == -EMSGSIZE)
            return RC_WS_CLOSE_TOO_BIG;
        if (r == -EBADMSG)
            return RC_WS_CLOSE_INVALID_PAYLOAD;
        if (r < 0)
            return RC_WS_CLOSE_INTERNAL_ERROR;
        p = ws->inflated + before;
        n = ws->inflated_len - before;
    }
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
            ws_begin_close(w, c, ws, code);
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
                conn_close(w, c);
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
    /* The upstream path comes later: for now a message is counted and dropped. */
    rc_stat_add(w->stats.ws_messages_in, 1);
    ws->utf8 = RC_UTF8_INIT;
    free(ws->inflated);
    ws->inflated = NULL;
    if (ws->msg.compressed && (c->flags & F_WS_CNCT)) {
        rc_inflater_free(ws->inf);
        ws->inf = NULL;
    }
}

/*
 * Handles bytes from a WebSocket client, p[0..n), which are unmasked in place. Frames are read
 * as they come, whatever the split; the side state is kept (on the heap) only when something
 * must outlive this read, and a control frame that became due is sent as soon as no send is in
 * flight.
 */
static void ws_on_bytes(struct rc_worker *w, struct rc_conn *c, unsigned char *p, size_t n)
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
    if (c->state == CONN_CLOSING)
        return;
    if (!c->ws && !ws_idle(c, ws)) {
        c->ws = malloc(sizeof(*ws));
        if (!c->ws) {
            rc_stat_add(w->stats.alloc_failures, 1);
            conn_close(w, c);
            return;
        }
        memcpy(c->ws, ws, sizeof(*ws));
    }
    send_next(w, c);
    if (c->ws && ws_idle(c, c->ws))
        ws_free(c);
}

/*
 * Feeds received bytes to the request parser. A head that arrives whole is parsed straight
 * from the provided buffer; only a head split across reads is copied into a request buffer,
 * which lives until the head is complete.
 */
static void on_request_bytes(struct rc_worker *w, struct rc_conn *c, char *data, size_t len)
{
    const struct rc_config *cfg = w->cfg;
    struct rc_http_header headers[cfg->max_headers];
    struct rc_http_limits lim = {cfg->max_request_line, cfg->max_header_bytes, cfg->max_headers};
    struct rc_http_request req = {.headers = headers};
    struct rc_bytes *rb = c->u.req;
    char *buf = data;
    size_t blen = len, copied = len;
    int ret;

    if (rb) {
        size_t room = cfg->max_header_bytes - rb->len;
        copied = len < room ? len : room;
        memcpy(rb->data + rb->len, data, copied);
        rb->len += (uint32_t)copied;
        buf = rb->data;
        blen = rb->len;
    }
    ret = rc_http_parse_request(buf, blen, &lim, &req);
    if (ret == -2) {
        if (!rb) {
            rb = malloc(sizeof(*rb) + cfg->max_header_bytes);
            if (!rb) {
                rc_stat_add(w->stats.alloc_failures, 1);
                conn_close(w, c);
                return;
            }
            rc_assert(len < cfg->max_header_bytes);
            memcpy(rb->data, data, len);
            rb->len = (uint32_t)len;
            c->u.req = rb;
        }
        return;
    }
    if (ret == -1) {
        respond(w, c, error_response(req.status));
        return;
    }
    /* The request points into rb, which must outlive it and the bytes that follow the head. */
    c->u.req = NULL;
    handle_request(w, c, &req);
    /* A WebSocket client may send frames right behind its head, in the same read. */
    if (c->state == CONN_STREAMING && (c->flags & F_WS)) {
        ws_on_bytes(w, c, (unsigned char *)buf + ret, blen - (size_t)ret);
        if (copied < len && (c->state == CONN_STREAMING || c->state == CONN_WS_CLOSING))
            ws_on_bytes(w, c, (unsigned char *)data + copied, len - copied);
    }
    free(rb);
}

static void arm_recv(struct rc_worker *w, struct rc_conn *c)
{
    c->flags |= F_RECV;
    rc_ring_recv_multishot(&w->ring, c->fd, ud_of(c, RC_OP_RECV));
}

static void arm_accept(struct rc_worker *w)
{
    rc_ring_accept_direct(&w->ring, w->listen_fd, rc_ud(w, RC_OP_ACCEPT, 0));
}

static void on_accept(struct rc_worker *w, const struct rc_cqe *cqe)
{
    bool ended = !(cqe->flags & IORING_CQE_F_MORE);
    if (cqe->res < 0) {
        /* A full file table: the kernel has already closed the new connection. */
        if (cqe->res == -ENFILE || cqe->res == -EMFILE) {
            rc_stat_add(w->stats.rejected_capacity, 1);
        } else if (cqe->res != -ECANCELED) {
            /* An unexpected error may repeat at once; retry on the next tick, not in a loop. */
            rc_warn("accept failed: %s", strerror(-cqe->res));
            w->accept_retry = ended;
            return;
        }
    }
    if (ended && !w->stopping)
        arm_accept(w);
    if (cqe->res < 0)
        return;
    unsigned fd = (unsigned)cqe->res;
    if (w->stopping) {
        rc_ring_close_direct(&w->ring, fd);
        return;
    }
    struct rc_conn *c = rc_slab_alloc(&w->conns);
    if (!c) {
        rc_stat_add(w->stats.alloc_failures, 1);
        rc_ring_close_direct(&w->ring, fd);
        return;
    }
    uint16_t gen = c->gen;
    memset(c, 0, sizeof(*c));
    c->gen = gen;
    c->fd = fd;
    c->state = CONN_REQUEST;
    rc_link_init(&c->link);
    rc_stat_add(w->stats.connections, 1);
    rc_stat_add(w->stats.accepted, 1);
    /* Read even when refusing, so that the request is consumed and the close is not a reset. */
    arm_recv(w, c);
    c->deadline = (uint32_t)(w->now_ms - w->start_ms + w->cfg->header_timeout_ms);
    rc_link_insert_tail(&w->pending, &c->link);
    if (rc_stat_get(w->stats.connections) > w->capacity) {
        rc_stat_add(w->stats.rejected_capacity, 1);
        respond(w, c, RC_RESP_503);
    }
}

static void on_recv(struct rc_worker *w, struct rc_conn *c, const struct rc_cqe *cqe)
{
    int bid = rc_ring_cqe_buffer(cqe);
    if (cqe->res > 0) {
        char *data;
        rc_assert(bid >= 0);
        data = rc_ring_buffer(&w->ring, (unsigned)bid);
        /* After the head, a client has nothing to say over SSE: its bytes are dropped. */
        if (c->state == CONN_REQUEST)
            on_request_bytes(w, c, data, (size_t)cqe->res);
        else if ((c->flags & F_WS) && (c->state == CONN_STREAMING || c->state == CONN_WS_CLOSING))
            ws_on_bytes(w, c, (unsigned char *)data, (size_t)cqe->res);
        rc_ring_buffer_recycle(&w->ring, (unsigned)bid);
    }
    /* Only now: a close while the bytes were handled must not free the connection under us. */
    if (!(cqe->flags & IORING_CQE_F_MORE))
        c->flags &= (uint16_t)~F_RECV;
    if (c->state == CONN_CLOSING) {
        conn_maybe_free(w, c);
        return;
    }
    if (c->flags & F_RECV)
        return;
    if (cqe->res == -ECANCELED && c->state == CONN_STREAMING)
        return;
    /* Out of provided buffers ends a multishot receive without ending the connection. */
    if (cqe->res > 0 || cqe->res == -ENOBUFS)
        arm_recv(w, c);
    else
        conn_close(w, c);
}

static void on_send(struct rc_worker *w, struct rc_conn *c, const struct rc_cqe *cqe)
{
    uint8_t sending = c->sending;

    c->flags &= (uint16_t)~F_SEND;
    c->sending = SEND_NONE;
    if (cqe->res <= 0 || c->state == CONN_CLOSING) {
        drop_send(w, c, sending);
        if (c->state == CONN_CLOSING)
            conn_maybe_free(w, c);
        else
            conn_close(w, c);
        return;
    }
    if (!advance(w, c, sending, (uint32_t)cqe->res)) {
        /* A partial send: the rest of the same bytes goes next, so order is kept. */
        if (sending == SEND_STATIC)
            send_static(w, c, c->resp);
        else if (sending == SEND_EVENT)
            send_event(w, c);
        else if (sending == SEND_OWNED)
            send_owned(w, c);
        else if (sending == SEND_CTL)
            send_ctl(w, c);
        else
            send_batch(w, c);
        return;
    }
    if (c->state == CONN_RESPONDING) {
        conn_close(w, c);
        return;
    }
    /* The server closes the TCP connection once both Close frames have passed (section 7.1.1). */
    if (c->state == CONN_WS_CLOSING && c->ws->close_sent && c->ws->peer_closed) {
        conn_close(w, c);
        return;
    }
    if (w->stopping && c->state == CONN_STREAMING && c->cursor == c->chan->head) {
        conn_close(w, c);
        return;
    }
    send_next(w, c);
    /* The ws member is the request deadline of a connection that is not a WebSocket. */
    if ((c->flags & F_WS) && c->ws && ws_idle(c, c->ws))
        ws_free(c);
}

/*
 * An event from the feed: append it to the channel's history and wake every idle subscriber.
 * Subscribers already sending pick it up when their send completes; one that has fallen more
 * than max_lag behind is cut here, so a reader that stalls costs nothing but its cursor.
 */
static void on_event(struct rc_worker *w, struct rc_event *ev)
{
    struct rc_channel *ch = rc_channel_find(&w->channels, ev->channel, ev->channel_len, ev->hash);
    uint64_t handed = 0;

    if (ch) {
        rc_channel_append(&w->channels, ch, ev);
        struct rc_link *l = ch->subs.next;
        while (l != &ch->subs) {
            struct rc_conn *c = rc_container_of(l, struct rc_conn, link);
            l = l->next;
            /* The last subscriber's close destroys the channel; stop before touching it. */
            bool last = l == &ch->subs;
            if (lagging(w, c)) {
                rc_stat_add(w->stats.slow_disconnects, 1);
                conn_close(w, c);
            } else {
                handed++;
                send_next(w, c);
            }
            if (last)
                break;
        }
        rc_stat_add(w->stats.deliveries, handed);
    } else {
        /* Nobody here listens: give up this worker's reference at once. */
        rc_event_put(ev);
    }
    atomic_fetch_add_explicit(&ev->handed, handed, memory_order_relaxed);
    if (atomic_fetch_sub_explicit(&ev->pending, 1, memory_order_acq_rel) == 1)
        rc_ring_msg(&w->ring, rc_server_feed_ring(w->server), rc_ud(ev, RC_OP_ACK, 0), 0,
                    rc_ud(ev, RC_OP_MSG_FAILED, 0));
}

/* Sends a heartbeat comment to an SSE stream that has been silent for a whole interval. */
static void heartbeat_channel(void *arg, struct rc_channel *ch)
{
    struct rc_worker *w = arg;
    for (struct rc_link *l = ch->subs.next; l != &ch->subs; l = l->next) {
        struct rc_conn *c = rc_container_of(l, struct rc_conn, link);
        if (!(c->flags & (F_ACTIVE | F_SEND | F_WS))) {
            c->sent = 0;
            send_static(w, c, RC_RESP_HEARTBEAT);
            rc_stat_add(w->stats.heartbeats, 1);
        }
        c->flags &= (uint16_t)~F_ACTIVE;
    }
}

/* Pings every WebSocket of a channel: now, or after the send in flight. */
static void ping_channel(void *arg, struct rc_channel *ch)
{
    struct rc_worker *w = arg;
    for (struct rc_link *l = ch->subs.next; l != &ch->subs; l = l->next) {
        struct rc_conn *c = rc_container_of(l, struct rc_conn, link);
        if (!(c->flags & F_WS))
            continue;
        c->flags |= F_PONG_WAIT;
        rc_stat_add(w->stats.ws_pings, 1);
        if (c->flags & F_SEND) {
            c->flags |= F_PING_DUE;
        } else {
            c->sent = 0;
            send_static(w, c, RC_RESP_WS_PING);
        }
    }
}

/*
 * Closes the WebSockets of a channel that have not answered the last ping, with 1001: the
 * client is gone or stuck, and the Close tells one that is merely slow why.
 */
static void pong_check_channel(void *arg, struct rc_channel *ch)
{
    struct rc_worker *w = arg;
    struct rc_link *l = ch->subs.next;
    while (l != &ch->subs) {
        struct rc_conn *c = rc_container_of(l, struct rc_conn, link);
        l = l->next;
        /* Leaving destroys the channel with its last subscriber; stop before touching it. */
        bool last = l == &ch->subs;
        if ((c->flags & (F_WS | F_PONG_WAIT)) == (F_WS | F_PONG_WAIT)) {
            rc_stat_add(w->stats.ws_pong_timeouts, 1);
            if (!c->ws && !(c->ws = calloc(1, sizeof(*c->ws)))) {
                rc_stat_add(w->stats.alloc_failures, 1);
                conn_close(w, c);
            } else {
                ws_begin_close(w, c, c->ws, RC_WS_CLOSE_GOING_AWAY);
                send_next(w, c);
            }
        }
        if (last)
            break;
    }
}

/* Drops WebSockets whose close handshake did not end within close_timeout (oldest first). */
static void expire_ws_closing(struct rc_worker *w)
{
    uint32_t now = (uint32_t)(w->now_ms - w->start_ms);
    while (!rc_link_empty(&w->ws_closing)) {
        struct rc_conn *c = rc_container_of(w->ws_closing.next, struct rc_conn, link);
        if ((int32_t)(c->ws->close_deadline - now) > 0)
            break;
        conn_close(w, c);
    }
}

/*
 * Closes requests whose head did not arrive in time, and answers nobody read in time. The
 * pending list is in accept order, which is deadline order.
 */
static void expire_requests(struct rc_worker *w)
{
    uint32_t now = (uint32_t)(w->now_ms - w->start_ms);
    while (!rc_link_empty(&w->pending)) {
        struct rc_conn *c = rc_container_of(w->pending.next, struct rc_conn, link);
        if ((int32_t)(c->deadline - now) > 0)
            break;
        if (c->state == CONN_REQUEST)
            rc_stat_add(w->stats.header_timeouts, 1);
        conn_close(w, c);
    }
}

/* Closes a channel's streams: those not sending, or all of them when the grace time is over. */
static void close_streams(struct rc_worker *w, struct rc_channel *ch, bool all)
{
    struct rc_link *l = ch->subs.next;
    while (l != &ch->subs) {
        struct rc_conn *c = rc_container_of(l, struct rc_conn, link);
        l = l->next;
        /* Closing the last subscriber destroys the channel and its list head with it. */
        bool last = l == &ch->subs;
        if (all || !(c->flags & F_SEND))
            conn_close(w, c);
        if (last)
            break;
    }
}

static void close_idle_streams(void *arg, struct rc_channel *ch)
{
    close_streams(arg, ch, false);
}

static void close_all_streams(void *arg, struct rc_channel *ch)
{
    close_streams(arg, ch, true);
}

static void begin_stop(struct rc_worker *w)
{
    if (w->stopping)
        return;
    w->stopping = true;
    w->stop_deadline_ms = w->now_ms + w->cfg->shutdown_grace_ms;
    rc_ring_cancel(&w->ring, rc_ud(w, RC_OP_ACCEPT, 0));
    while (!rc_link_empty(&w->pending))
        conn_close(w, rc_container_of(w->pending.next, struct rc_conn, link));
    while (!rc_link_empty(&w->ws_closing))
        conn_close(w, rc_container_of(w->ws_closing.next, struct rc_conn, link));
    rc_channel_foreach(&w->channels, close_idle_streams, w);
}

static void on_cqe(void *arg, const struct rc_cqe *cqe)
{
    struct rc_worker *w = arg;
    void *ptr = rc_ud_ptr(cqe->ud);
    struct rc_conn *c = ptr;

    switch (rc_ud_op(cqe->ud)) {
    case RC_OP_ACCEPT:
        on_accept(w, cqe);
        break;
    case RC_OP_RECV:
        rc_assert(c->gen == rc_ud_gen(cqe->ud));
        on_recv(w, c, cqe);
        break;
    case RC_OP_SEND:
        rc_assert(c->gen == rc_ud_gen(cqe->ud));
        on_send(w, c, cqe);
        break;
    case RC_OP_CLOSE:
        rc_assert(c->gen == rc_ud_gen(cqe->ud));
        c->flags &= (uint16_t)~F_SHUT;
        conn_maybe_free(w, c);
        break;
    case RC_OP_EVENT:
        on_event(w, ptr);
        break;
    case RC_OP_STOP:
        begin_stop(w);
        break;
    case RC_OP_MSG_FAILED:
        rc_error("could not post an acknowledgement to the feed: %s", strerror(-cqe->res));
        break;
    case RC_OP_IGNORE:
        break;
    default:
        rc_assert(!"unexpected completion on a worker ring");
    }
}

/* Milliseconds until the next timer-driven duty, capped at one second. */
static int next_timeout(struct rc_worker *w)
{
    uint64_t next = w->now_ms + 1000;
    if (w->cfg->heartbeat_interval_ms && w->next_heartbeat_ms < next)
        next = w->next_heartbeat_ms;
    if (w->cfg->ws_ping_interval_ms && w->next_ping_ms < next)
        next = w->next_ping_ms;
    if (w->pong_deadline_ms && w->pong_deadline_ms < next)
        next = w->pong_deadline_ms;
    if (!rc_link_empty(&w->ws_closing)) {
        struct rc_conn *c = rc_container_of(w->ws_closing.next, struct rc_conn, link);
        uint64_t d = w->start_ms + c->ws->close_deadline;
        if (d < next)
            next = d;
    }
    if (!rc_link_empty(&w->pending)) {
        struct rc_conn *c = rc_container_of(w->pending.next, struct rc_conn, link);
        uint64_t d = w->start_ms + c->deadline;
        if (d < next)
            next = d;
    }
    if (w->stopping && w->stop_deadline_ms < next)
        next = w->stop_deadline_ms;
    return next > w->now_ms ? (int)(next - w->now_ms) : 0;
}

static void pin_to_cpu(unsigned id)
{
    cpu_set_t set;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    if (ncpu <= 0)
        return;
    CPU_ZERO(&set);
    CPU_SET(id % (unsigned)ncpu, &set);
    if (pthread_setaffinity_np(pthread_self(), sizeof(set), &set) != 0)
        rc_warn("could not pin to CPU %ld", (long)(id % (unsigned)ncpu));
}

static int worker_init(struct rc_worker *w)
{
    const struct rc_config *cfg = w->cfg;
    unsigned files = w->capacity + 64;
    int ret;

    if (files > w->server->nofile)
        files = w->server->nofile;
    ret = rc_ring_init(&w->ring, 4096, 65536, files);
    if (ret < 0) {
        rc_error("io_uring setup failed: %s", strerror(-ret));
        return ret;
    }
    if (!w->ring.features.msg_ring) {
        rc_error("the kernel lacks IORING_OP_MSG_RING (Linux 5.18+ is required)");
        return -ENOSYS;
    }
    ret = rc_ring_setup_buffers(&w->ring, cfg->recv_buffers, cfg->recv_buffer_size);
    if (ret < 0) {
        rc_error("provided buffer ring setup failed: %s", strerror(-ret));
        return ret;
    }
    ret = rc_channel_table_init(&w->channels, w->id, cfg->history_size);
    if (ret < 0)
        return ret;
    ret = build_responses(w);
    if (ret < 0)
        return ret;
    rc_slab_init(&w->conns, sizeof(struct rc_conn), 1024);
    rc_slab_init(&w->batches, sizeof(struct rc_batch), 64);
    rc_link_init(&w->pending);
    rc_link_init(&w->ws_closing);
    return 0;
}

static void worker_cleanup(struct rc_worker *w)
{
    rc_channel_table_destroy(&w->channels);
    rc_slab_destroy(&w->conns);
    rc_slab_destroy(&w->batches);
    free_responses(w);
    close(w->listen_fd);
    w->listen_fd = -1;
}

static void *worker_main(void *arg)
{
    struct rc_worker *w = arg;
    char name[16];

    snprintf(name, sizeof(name), "w%u", w->id);
    rc_log_set_thread(name);
    pin_to_cpu(w->id);
    w->init_error = worker_init(w);
    if (!rc_server_thread_ready(w->server))
        return NULL;
    w->start_ms = w->now_ms = monotonic_ms();
    w->next_heartbeat_ms = w->now_ms + w->cfg->heartbeat_interval_ms;
    w->next_ping_ms = w->now_ms + w->cfg->ws_ping_interval_ms;
    arm_accept(w);
    for (;;) {
        int ret = rc_ring_run(&w->ring, next_timeout(w), on_cqe, w);
        rc_assert(ret >= 0);
        w->now_ms = monotonic_ms();
        w->cfg = rc_server_config(w->server);
        if (w->cfg->heartbeat_interval_ms && w->now_ms >= w->next_heartbeat_ms) {
            rc_channel_foreach(&w->channels, heartbeat_channel, w);
            w->next_heartbeat_ms = w->now_ms + w->cfg->heartbeat_interval_ms;
        }
        if (w->pong_deadline_ms && w->now_ms >= w->pong_deadline_ms) {
            w->pong_deadline_ms = 0;
            rc_channel_foreach(&w->channels, pong_check_channel, w);
        }
        if (w->cfg->ws_ping_interval_ms && w->now_ms >= w->next_ping_ms) {
            rc_channel_foreach(&w->channels, ping_channel, w);
            w->next_ping_ms = w->now_ms + w->cfg->ws_ping_interval_ms;
            w->pong_deadline_ms = w->now_ms + w->cfg->ws_pong_timeout_ms;
        }
        expire_requests(w);
        expire_ws_closing(w);
        if (w->accept_retry && !w->stopping) {
            w->accept_retry = false;
            arm_accept(w);
        }
        if (w->stopping) {
            if (w->now_ms >= w->stop_deadline_ms)
                rc_channel_foreach(&w->channels, close_all_streams, w);
            if (rc_stat_get(w->stats.connections) == 0)
                break;
        }
    }
    worker_cleanup(w);
    return NULL;
}

int rc_worker_start(struct rc_worker *w)
{
    return -pthread_create(&w->thread, NULL, worker_main, w);
}
