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
#include "ringcast/http.h"
#include "ringcast/log.h"
#include "ringcast/server.h"

/* Connection states. */
enum {
    CONN_REQUEST = 1, /* reading the request head; on the worker's pending list */
    CONN_RESPONDING,  /* sending a canned response, then closing */
    CONN_STREAMING,   /* an SSE stream; on its channel's subscriber list */
    CONN_CLOSING,     /* waiting for its operations to finish before the close */
};

/* Connection flags: which operations are in flight, and recent activity. */
enum {
    F_RECV = 1 << 0,   /* the multishot receive is armed */
    F_SEND = 1 << 1,   /* a send is in flight */
    F_SHUT = 1 << 2,   /* a shutdown is in flight */
    F_ACTIVE = 1 << 3, /* something was sent since the last heartbeat tick */
};

/* What the send in flight carries. */
enum { SEND_NONE = 0, SEND_EVENT, SEND_BATCH, SEND_STATIC };

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

/* Request bytes that arrived in several reads; freed as soon as the head is parsed. */
struct rc_reqbuf {
    uint32_t len;
    char data[];
};

/*
 * One client connection: 64 bytes from the worker's slab. Nothing else is allocated for an
 * established stream; what it still has to send is the part of its channel's history after
 * `cursor`.
 */
struct rc_conn {
    union {
        struct rc_event *ev;    /* SEND_EVENT: the event being sent (one use) */
        struct rc_batch *batch; /* SEND_BATCH: the events being sent, owned */
        struct rc_reqbuf *req;  /* REQUEST: a partial head, owned, or NULL */
    } u;                        /* first: the slab reuses these bytes while the object is free */
    struct rc_channel *chan;    /* STREAMING: the channel; not owned */
    struct rc_link link;        /* node on the pending list or the channel's subscriber list */
    uint64_t cursor;            /* sequence number of the next event to send */
    uint32_t fd;                /* direct descriptor index in the ring's file table */
    uint32_t sent;              /* bytes of the current frame or response already sent */
    uint32_t deadline;          /* REQUEST: ms after worker start when the head must be in */
    uint16_t gen;               /* bumped on every reuse; part of every user_data */
    uint8_t state;
    uint8_t flags;
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
    ret |= set_response(w, RC_RESP_HEALTH,
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n"
                        "Cache-Control: no-cache\r\n%sConnection: close\r\n\r\nok\n",
                        cors);
    ret |= set_error(w, RC_RESP_400, "400 Bad Request", "");
    ret |= set_error(w, RC_RESP_404, "404 Not Found", "");
    ret |= set_error(w, RC_RESP_405, "405 Method Not Allowed", "Allow: GET\r\n");
    ret |= set_error(w, RC_RESP_414, "414 URI Too Long", "");
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

/* Frees the connection once nothing is in flight for it any more. */
static void conn_maybe_free(struct rc_worker *w, struct rc_conn *c)
{
    if (c->state != CONN_CLOSING || (c->flags & (F_RECV | F_SEND | F_SHUT)))
        return;
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

/* Sends the single event at the cursor from byte c->sent. */
static void send_event(struct rc_worker *w, struct rc_conn *c)
{
    struct rc_event *ev = c->u.ev;
    c->sending = SEND_EVENT;
    c->flags |= F_SEND | F_ACTIVE;
    rc_ring_send(&w->ring, (int)c->fd, true, ev->sse + c->sent, ev->sse_len - c->sent,
                 ud_of(c, RC_OP_SEND));
}

/* Sends what is left of a batch: its events from b->first on, the first from byte c->sent. */
static void send_batch(struct rc_worker *w, struct rc_conn *c)
{
    struct rc_batch *b = c->u.batch;
    for (unsigned i = b->first; i < b->n; i++) {
        size_t skip = i == b->first ? c->sent : 0;
        b->iov[i].iov_base = (void *)(b->ev[i]->sse + skip);
        b->iov[i].iov_len = b->ev[i]->sse_len - skip;
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

    if ((c->flags & F_SEND) || c->cursor == ch->head)
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
        bytes += ev->sse_len;
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
    } else if (sending == SEND_EVENT) {
        if (c->sent < c->u.ev->sse_len)
            return false;
        c->cursor++;
        rc_event_unuse(c->u.ev, w->id);
        c->u.ev = NULL;
    } else {
        struct rc_batch *b = c->u.batch;
        while (b->first < b->n && c->sent >= b->ev[b->first]->sse_len) {
            c->sent -= b->ev[b->first]->sse_len;
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

static void subscribe(struct rc_worker *w, struct rc_conn *c, const char *name, size_t len)
{
    uint32_t hash = rc_channel_hash(name, len);
    struct rc_channel *ch = rc_channel_find(&w->channels, name, len, hash);
    if (!ch) {
        ch = rc_channel_create(&w->channels, name, len, hash);
        if (!ch) {
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
    send_static(w, c, RC_RESP_SSE_HEAD);
    /* An SSE client has nothing more to say; without a watch the receive can go. */
    if (!w->cfg->watch_disconnects && (c->flags & F_RECV))
        rc_ring_cancel(&w->ring, ud_of(c, RC_OP_RECV));
}

static bool method_is_get(const struct rc_http_request *req)
{
    return req->method_len == 3 && memcmp(req->method, "GET", 3) == 0;
}

/* Routes a parsed request. The request points into bytes that are freed after this returns. */
static void handle_request(struct rc_worker *w, struct rc_conn *c,
                           const struct rc_http_request *req)
{
    struct rc_route route;
    rc_http_route(req->target, req->target_len, &route);
    if (route.kind == RC_ROUTE_NOT_FOUND)
        respond(w, c, RC_RESP_404);
    else if (!method_is_get(req))
        respond(w, c, RC_RESP_405);
    else if (route.kind == RC_ROUTE_HEALTH)
        respond(w, c, RC_RESP_HEALTH);
    else if (route.kind == RC_ROUTE_BAD_CHANNEL)
        respond(w, c, RC_RESP_400);
    else
        subscribe(w, c, route.channel, route.channel_len);
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
 * Feeds received bytes to the request parser. A head that arrives whole is parsed straight
 * from the provided buffer; only a head split across reads is copied into a request buffer,
 * which lives until the head is complete.
 */
static void on_request_bytes(struct rc_worker *w, struct rc_conn *c, const char *data, size_t len)
{
    const struct rc_config *cfg = w->cfg;
    struct rc_http_header headers[cfg->max_headers];
    struct rc_http_limits lim = {cfg->max_request_line, cfg->max_header_bytes, cfg->max_headers};
    struct rc_http_request req = {.headers = headers};
    struct rc_reqbuf *rb = c->u.req;
    const char *buf = data;
    size_t blen = len;
    int ret;

    if (rb) {
        size_t room = cfg->max_header_bytes - rb->len;
        size_t n = len < room ? len : room;
        memcpy(rb->data + rb->len, data, n);
        rb->len += (uint32_t)n;
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
    if (ret == -1)
        respond(w, c, error_response(req.status));
    else
        handle_request(w, c, &req);
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
    if (!(cqe->flags & IORING_CQE_F_MORE))
        c->flags &= ~F_RECV;
    if (cqe->res > 0) {
        rc_assert(bid >= 0);
        /* After the head, a client has nothing to say over SSE: its bytes are dropped. */
        if (c->state == CONN_REQUEST)
            on_request_bytes(w, c, rc_ring_buffer(&w->ring, (unsigned)bid), (size_t)cqe->res);
        rc_ring_buffer_recycle(&w->ring, (unsigned)bid);
    }
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

    c->flags &= (uint8_t)~F_SEND;
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
        else
            send_batch(w, c);
        return;
    }
    if (c->state == CONN_RESPONDING) {
        conn_close(w, c);
        return;
    }
    if (w->stopping && c->cursor == c->chan->head) {
        conn_close(w, c);
        return;
    }
    send_next(w, c);
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

/* Sends a heartbeat comment to a stream that has been silent for a whole interval. */
static void heartbeat_channel(void *arg, struct rc_channel *ch)
{
    struct rc_worker *w = arg;
    for (struct rc_link *l = ch->subs.next; l != &ch->subs; l = l->next) {
        struct rc_conn *c = rc_container_of(l, struct rc_conn, link);
        if (!(c->flags & (F_ACTIVE | F_SEND))) {
            c->sent = 0;
            send_static(w, c, RC_RESP_HEARTBEAT);
            rc_stat_add(w->stats.heartbeats, 1);
        }
        c->flags &= (uint8_t)~F_ACTIVE;
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
        c->flags &= (uint8_t)~F_SHUT;
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
    arm_accept(w);
    for (;;) {
        int ret = rc_ring_run(&w->ring, next_timeout(w), on_cqe, w);
        rc_assert(ret >= 0);
        w->now_ms = monotonic_ms();
        if (w->cfg->heartbeat_interval_ms && w->now_ms >= w->next_heartbeat_ms) {
            rc_channel_foreach(&w->channels, heartbeat_channel, w);
            w->next_heartbeat_ms = w->now_ms + w->cfg->heartbeat_interval_ms;
        }
        expire_requests(w);
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
