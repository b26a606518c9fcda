/*
 * A worker thread: its loop, accept, requests, timers. See include/ringcast/worker.h; the send
 * path is in conn.c, subscriptions in stream.c, the WebSocket protocol in wsconn.c.
 */
#include "ringcast/worker.h"

#include <errno.h>
#include <stdarg.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ringcast/assert.h"
#include "ringcast/conn.h"
#include "ringcast/http.h"
#include "ringcast/log.h"
#include "ringcast/server.h"

static uint64_t monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
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
    for (int gap = RC_GAP_TOO_OLD; gap <= RC_GAP_UNKNOWN; gap++)
        ret |= set_response(w, RC_RESP_SSE_HEAD_TOO_OLD + gap - RC_GAP_TOO_OLD,
                            "%sevent: ringcast-gap\ndata: %s\n\n", w->responses[RC_RESP_SSE_HEAD],
                            rc_stream_gap_name((enum rc_gap)gap));
    /* At shutdown, clients are told to come back after `retry`, or after two seconds. */
    ret |= set_response(w, RC_RESP_SSE_BYE, "retry: %u\n\n", cfg->retry_ms ? cfg->retry_ms : 2000);
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

/*
 * Reads a stream request's channels and resume point: the path's channel, or the query's
 * `channel` parameters (percent-decoded in place, duplicates dropped), and `lastEventId`, which
 * the Last-Event-ID header overrides, as EventSource sends it on every reconnection. Also reads
 * `envelope` for a WebSocket. Returns 0 or the response to refuse with.
 */
static int read_stream_request(struct rc_worker *w, const struct rc_http_request *req,
                               const struct rc_route *route, struct rc_stream_request *sr,
                               bool *envelope)
{
    const char *key, *val;
    size_t klen, vlen, pos = 0;

    sr->n = 0;
    sr->last_id = NULL;
    sr->last_id_len = 0;
    *envelope = route->channel == NULL;
    if (route->channel) {
        sr->names[0] = route->channel;
        sr->name_lens[0] = (uint8_t)route->channel_len;
        sr->n = 1;
    }
    while (rc_http_query_next(route->query, route->query_len, &pos, &key, &klen, &val, &vlen)) {
        /* The target lies in a buffer of ours, so decoding in place is allowed. */
        int n = rc_http_percent_decode(val, vlen, (char *)val);
        if (n < 0)
            return RC_RESP_400;
        if (klen == 11 && memcmp(key, "lastEventId", 11) == 0) {
            sr->last_id = val;
            sr->last_id_len = (size_t)n;
        } else if (klen == 8 && memcmp(key, "envelope", 8) == 0) {
            if (n != 1 || (val[0] != '0' && val[0] != '1'))
                return RC_RESP_400;
            *envelope = val[0] == '1';
        } else if (klen == 7 && memcmp(key, "channel", 7) == 0 && !route->channel) {
            if (!rc_http_channel_valid(val, (size_t)n))
                return RC_RESP_400;
            bool dup = false;
            for (unsigned i = 0; i < sr->n && !dup; i++)
                dup = sr->name_lens[i] == n && memcmp(sr->names[i], val, (size_t)n) == 0;
            if (dup)
                continue;
            if (sr->n == w->cfg->max_channels_per_connection) {
                rc_stat_add(w->stats.channel_limit, 1);
                return RC_RESP_400;
            }
            sr->names[sr->n] = val;
            sr->name_lens[sr->n++] = (uint8_t)n;
        }
    }
    const struct rc_http_header *h = rc_http_find_header(req, "Last-Event-ID");
    if (h && h->value_len > 0) {
        sr->last_id = h->value;
        sr->last_id_len = h->value_len;
    }
    return sr->n ? 0 : RC_RESP_400;
}

/* Starts an SSE stream: the head, a gap event if the resume point is lost, then events. */
static void sse_open(struct rc_worker *w, struct rc_conn *c, const struct rc_stream_request *sr)
{
    uint64_t position;
    bool resume;
    enum rc_gap gap = rc_stream_resolve(w, sr, &position, &resume);
    rc_link_remove(&c->link);
    if (rc_stream_open(w, c, sr, position, resume, gap) < 0) {
        rc_link_insert_tail(&w->pending, &c->link);
        rc_conn_respond(w, c, RC_RESP_503);
        return;
    }
    rc_conn_send_static(w, c,
                        gap ? RC_RESP_SSE_HEAD_TOO_OLD + gap - RC_GAP_TOO_OLD : RC_RESP_SSE_HEAD);
    /* An SSE client has nothing more to say; without a watch the receive can go. */
    if (!w->cfg->watch_disconnects && (c->flags & F_RECV))
        rc_ring_cancel(&w->ring, rc_conn_ud(c, RC_OP_RECV));
}

/* Routes a parsed request. The request points into bytes that are freed after this returns. */
static void handle_request(struct rc_worker *w, struct rc_conn *c,
                           const struct rc_http_request *req)
{
    uint32_t max = w->cfg->max_channels_per_connection;
    const char *names[max];
    uint8_t lens[max];
    struct rc_stream_request sr = {.names = names, .name_lens = lens};
    struct rc_route route;
    bool envelope;

    rc_http_route(req->target, req->target_len, &route);
    if (route.kind == RC_ROUTE_NOT_FOUND) {
        rc_conn_respond(w, c, RC_RESP_404);
        return;
    }
    if (route.kind == RC_ROUTE_BAD_CHANNEL) {
        rc_conn_respond(w, c, RC_RESP_400);
        return;
    }
    if (route.kind != RC_ROUTE_WS && !rc_http_is_get(req)) {
        rc_conn_respond(w, c, RC_RESP_405);
        return;
    }
    if (route.kind == RC_ROUTE_HEALTH) {
        rc_conn_respond(w, c, RC_RESP_HEALTH);
        return;
    }
    int bad = read_stream_request(w, req, &route, &sr, &envelope);
    if (bad)
        rc_conn_respond(w, c, (enum rc_response)bad);
    else if (route.kind == RC_ROUTE_WS)
        rc_wsconn_upgrade(w, c, req, &sr, envelope);
    else
        sse_open(w, c, &sr);
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
                rc_conn_close(w, c);
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
        rc_conn_respond(w, c, error_response(req.status));
        return;
    }
    /* The request points into rb, which must outlive it and the bytes that follow the head. */
    c->u.req = NULL;
    handle_request(w, c, &req);
    /* A WebSocket client may send frames right behind its head, in the same read. */
    if (c->state == CONN_STREAMING && (c->flags & F_WS)) {
        rc_wsconn_on_bytes(w, c, (unsigned char *)buf + ret, blen - (size_t)ret);
        if (copied < len && (c->state == CONN_STREAMING || c->state == CONN_WS_CLOSING))
            rc_wsconn_on_bytes(w, c, (unsigned char *)data + copied, len - copied);
    }
    free(rb);
}

static void arm_recv(struct rc_worker *w, struct rc_conn *c)
{
    c->flags |= F_RECV;
    rc_ring_recv_multishot(&w->ring, c->fd, rc_conn_ud(c, RC_OP_RECV));
}

/* How many accepts the worker keeps in flight: see RC_ACCEPT_SLOTS. */
static unsigned accept_slots(const struct rc_worker *w)
{
    return w->per_address ? RC_ACCEPT_SLOTS : 1;
}

static void arm_accept(struct rc_worker *w, unsigned slot)
{
    uint64_t ud = rc_ud(w, RC_OP_ACCEPT, (uint16_t)slot);
    if (w->per_address) {
        struct rc_accept_slot *a = &w->accept_slots[slot];
        a->len = sizeof(a->addr);
        rc_ring_accept_direct_addr(&w->ring, w->listen_fd, (struct sockaddr *)&a->addr, &a->len,
                                   ud);
    } else {
        rc_ring_accept_direct(&w->ring, w->listen_fd, ud);
    }
    w->accepts_armed++;
}

/*
 * Makes room for c's entry in addr_of and counts c against its address; *count is then the
 * address's count (0 for a peer without an IP address, which is not counted). Returns false,
 * having counted nothing, when memory is short.
 */
static bool track_address(struct rc_worker *w, struct rc_conn *c, const unsigned char *key,
                          uint32_t *count)
{
    size_t i = rc_slab_index(&w->conns, c);
    *count = 0;
    if (i >= w->addr_cap) {
        /* The slab has grown past the array: follow it, so every index has an entry. */
        size_t cap = w->conns.capacity;
        struct rc_addrnode **a = realloc(w->addr_of, cap * sizeof(*a));
        if (!a)
            return false;
        memset(a + w->addr_cap, 0, (cap - w->addr_cap) * sizeof(*a));
        w->addr_of = a;
        w->addr_cap = cap;
    }
    rc_assert(w->addr_of[i] == NULL);
    if (!key)
        return true;
    w->addr_of[i] = rc_addrlimit_acquire(&w->server->addrs, key, count);
    return w->addr_of[i] != NULL;
}

void rc_conn_limits_release(struct rc_worker *w, struct rc_conn *c)
{
    __atomic_fetch_sub(&w->server->open_connections, 1, __ATOMIC_RELAXED);
    if (w->per_address) {
        size_t i = rc_slab_index(&w->conns, c);
        struct rc_addrnode *n = w->addr_of[i];
        if (n) {
            w->addr_of[i] = NULL;
            rc_addrlimit_release(&w->server->addrs, n);
        }
    }
}

/*
 * A connection arrived on accept slot `slot`. It is counted against every limit and refused,
 * with a 503 and the stat of the first limit it is over, when it is over any: the worker's
 * capacity, max_connections over all workers, max_connections_per_address. A refused
 * connection holds its place in the counts until it is freed, like any other open socket.
 * The counts are kept whatever the limits, which are read from the live configuration, so a
 * reload may change them (but per-address counting itself is on or off from the start).
 */
static void on_accept(struct rc_worker *w, const struct rc_cqe *cqe)
{
    unsigned slot = rc_ud_gen(cqe->ud);
    bool ended = !(cqe->flags & IORING_CQE_F_MORE);
    unsigned char key[RC_ADDR_LEN];
    bool keyed = false;

    rc_assert(slot < accept_slots(w));
    if (ended) {
        rc_assert(w->accepts_armed > 0);
        w->accepts_armed--;
    }
    /* Read the peer's address before the slot is re-armed over it. */
    if (cqe->res >= 0 && w->per_address) {
        const struct rc_accept_slot *a = &w->accept_slots[slot];
        keyed = rc_addrlimit_key((const struct sockaddr *)&a->addr, a->len, key);
    }
    if (cqe->res < 0) {
        /* A full file table: the kernel has already closed the new connection. */
        if (cqe->res == -ENFILE || cqe->res == -EMFILE) {
            rc_stat_add(w->stats.rejected_capacity, 1);
        } else if (cqe->res != -ECANCELED) {
            /* An unexpected error may repeat at once; retry on the next tick, not in a loop. */
            rc_warn("accept failed: %s", strerror(-cqe->res));
            if (ended)
                w->accept_idle |= 1u << slot;
            return;
        }
    }
    if (ended && !w->stopping)
        arm_accept(w, slot);
    if (cqe->res < 0)
        return;
    unsigned fd = (unsigned)cqe->res;
    if (w->stopping) {
        rc_ring_close_direct(&w->ring, fd);
        return;
    }
    struct rc_conn *c = rc_slab_alloc(&w->conns);
    uint32_t from_addr = 0;
    if (c && w->per_address && !track_address(w, c, keyed ? key : NULL, &from_addr)) {
        rc_slab_free(&w->conns, c);
        c = NULL;
    }
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
    uint64_t open = __atomic_add_fetch(&w->server->open_connections, 1, __ATOMIC_RELAXED);
    /* Read even when refusing, so that the request is consumed and the close is not a reset. */
    arm_recv(w, c);
    c->deadline = (uint32_t)(w->now_ms - w->start_ms + w->cfg->header_timeout_ms);
    rc_link_insert_tail(&w->pending, &c->link);
    const struct rc_config *cfg = w->cfg;
    uint64_t *refused = NULL;
    if (rc_stat_get(w->stats.connections) > w->capacity)
        refused = &w->stats.rejected_capacity;
    else if (cfg->max_connections && open > cfg->max_connections)
        refused = &w->stats.rejected_global;
    else if (cfg->max_connections_per_address && from_addr > cfg->max_connections_per_address)
        refused = &w->stats.rejected_address;
    if (refused) {
        rc_stat_add(*refused, 1);
        rc_conn_respond(w, c, RC_RESP_503);
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
            rc_wsconn_on_bytes(w, c, (unsigned char *)data, (size_t)cqe->res);
        rc_ring_buffer_recycle(&w->ring, (unsigned)bid);
    }
    /* Only now: a close while the bytes were handled must not free the connection under us. */
    if (!(cqe->flags & IORING_CQE_F_MORE))
        c->flags &= (uint16_t)~F_RECV;
    if (c->state == CONN_CLOSING) {
        rc_conn_maybe_free(w, c);
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
        rc_conn_close(w, c);
}

/*
 * An event from the feed: into its channel's history, and out to every subscriber that is not
 * already sending. Subscribers already sending pick it up when their send completes; one that
 * has fallen too far behind is cut, so a reader that stalls costs nothing but its position.
 */
static void on_event(struct rc_worker *w, struct rc_event *ev)
{
    uint64_t handed = rc_stream_publish(w, ev);
    rc_stat_add(w->stats.deliveries, handed);
    atomic_fetch_add_explicit(&ev->handed, handed, memory_order_relaxed);
    if (atomic_fetch_sub_explicit(&ev->pending, 1, memory_order_acq_rel) == 1)
        rc_ring_msg(&w->ring, rc_server_feed_ring(w->server), rc_ud(ev, RC_OP_ACK, 0), 0,
                    rc_ud(ev, RC_OP_MSG_FAILED, RC_OP_ACK));
}

/* Sends a heartbeat comment to an SSE stream that has been silent for a whole interval. */
static void heartbeat(struct rc_worker *w, struct rc_conn *c)
{
    if (!(c->flags & (F_ACTIVE | F_SEND | F_WS))) {
        c->sent = 0;
        rc_conn_send_static(w, c, RC_RESP_HEARTBEAT);
        rc_stat_add(w->stats.heartbeats, 1);
    }
    c->flags &= (uint16_t)~F_ACTIVE;
}

/* Pings a WebSocket: now, or after the send in flight. */
static void ping(struct rc_worker *w, struct rc_conn *c)
{
    if (!(c->flags & F_WS))
        return;
    c->flags |= F_PONG_WAIT;
    rc_stat_add(w->stats.ws_pings, 1);
    if (c->flags & F_SEND) {
        c->flags |= F_PING_DUE;
    } else {
        c->sent = 0;
        rc_conn_send_static(w, c, RC_RESP_WS_PING);
    }
}

/*
 * Closes a WebSocket that has not answered the last ping, with 1001: the client is gone or
 * stuck, and the Close tells one that is merely slow why.
 */
static void pong_check(struct rc_worker *w, struct rc_conn *c)
{
    if ((c->flags & (F_WS | F_PONG_WAIT)) == (F_WS | F_PONG_WAIT)) {
        rc_stat_add(w->stats.ws_pong_timeouts, 1);
        rc_wsconn_close(w, c, RC_WS_CLOSE_GOING_AWAY, "ping timeout", 12);
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
        rc_conn_close(w, c);
    }
}

/*
 * Closes requests whose head did not arrive in time, and answers nobody read in time. The
 * pending list is in deadline order: accept order, and at shutdown the grace deadline.
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
        rc_conn_close(w, c);
    }
}

/* At shutdown, a stream with nothing in flight ends now (send_next ends a caught-up stream). */
static void wind_down(struct rc_worker *w, struct rc_conn *c)
{
    if (!(c->flags & F_SEND))
        rc_conn_send_next(w, c);
}

static void close_stream(struct rc_worker *w, struct rc_conn *c)
{
    rc_conn_close(w, c);
}

/*
 * Stops accepting, drops requests still in progress, and lets every stream send what it has
 * before it ends (SSE with a retry: hint, WebSocket with a 1001 Close); shutdown_grace bounds it.
 */
static void begin_stop(struct rc_worker *w)
{
    if (w->stopping)
        return;
    w->stopping = true;
    w->stop_deadline_ms = w->now_ms + w->cfg->shutdown_grace_ms;
    for (unsigned slot = 0; slot < accept_slots(w); slot++)
        rc_ring_cancel(&w->ring, rc_ud(w, RC_OP_ACCEPT, (uint16_t)slot));
    w->accept_idle = 0;
    while (!rc_link_empty(&w->pending))
        rc_conn_close(w, rc_container_of(w->pending.next, struct rc_conn, link));
    rc_stream_foreach(w, wind_down);
}

/* After the grace time, whatever is still open is cut. */
static void end_stop(struct rc_worker *w)
{
    rc_stream_foreach(w, close_stream);
    while (!rc_link_empty(&w->pending))
        rc_conn_close(w, rc_container_of(w->pending.next, struct rc_conn, link));
    while (!rc_link_empty(&w->ws_closing))
        rc_conn_close(w, rc_container_of(w->ws_closing.next, struct rc_conn, link));
}

/*
 * A message to the feed failed; the generation field of its user_data names it. An ACK or a
 * DIRECT_DONE that never arrives would hold up every later reply on its publisher's
 * connection, so one that failed because the feed's completion queue was full is posted again.
 */
static void on_msg_failed(struct rc_worker *w, void *ptr, enum rc_op op, int res)
{
    if (res != -EOVERFLOW && res != -EAGAIN && res != -EBUSY) {
        rc_error("could not post a message to the feed: %s", strerror(-res));
        return;
    }
    rc_ring_msg(&w->ring, rc_server_feed_ring(w->server), rc_ud(ptr, op, 0), 0,
                rc_ud(ptr, RC_OP_MSG_FAILED, (uint16_t)op));
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
        rc_conn_on_send(w, c, cqe->res);
        break;
    case RC_OP_CLOSE:
        rc_assert(c->gen == rc_ud_gen(cqe->ud));
        c->flags &= (uint16_t)~F_SHUT;
        rc_conn_maybe_free(w, c);
        break;
    case RC_OP_EVENT:
        on_event(w, ptr);
        break;
    case RC_OP_UPSTREAM_DONE:
        rc_wsconn_upstream_done(w, ptr, cqe->res);
        break;
    case RC_OP_DIRECT:
        rc_wsconn_direct(w, ptr);
        break;
    case RC_OP_STOP:
        begin_stop(w);
        break;
    case RC_OP_MSG_FAILED:
        on_msg_failed(w, ptr, (enum rc_op)rc_ud_gen(cqe->ud), cqe->res);
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

    w->per_address = w->server->per_address;

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
    ret = rc_channel_table_init(&w->channels, w->id);
    if (ret < 0)
        return ret;
    ret = build_responses(w);
    if (ret < 0)
        return ret;
    rc_slab_init(&w->conns, sizeof(struct rc_conn), 1024);
    rc_slab_init(&w->batches, sizeof(struct rc_batch), 64);
    rc_link_init(&w->pending);
    rc_link_init(&w->ws_closing);
    rc_link_init(&w->multis);
    return 0;
}

static void worker_cleanup(struct rc_worker *w)
{
    rc_channel_table_destroy(&w->channels);
    rc_slab_destroy(&w->conns);
    rc_slab_destroy(&w->batches);
    free(w->addr_of);
    w->addr_of = NULL;
    free_responses(w);
    close(w->listen_fd);
    w->listen_fd = -1;
}

/*
 * Takes a reloaded configuration. Timers scheduled with the old intervals are brought forward
 * when the new ones are shorter, so that a shorter heartbeat or ping interval takes effect now,
 * not after one more of the old intervals.
 */
static void take_config(struct rc_worker *w, const struct rc_config *cfg)
{
    w->cfg = cfg;
    if (cfg->heartbeat_interval_ms && w->now_ms + cfg->heartbeat_interval_ms < w->next_heartbeat_ms)
        w->next_heartbeat_ms = w->now_ms + cfg->heartbeat_interval_ms;
    if (cfg->ws_ping_interval_ms && w->now_ms + cfg->ws_ping_interval_ms < w->next_ping_ms)
        w->next_ping_ms = w->now_ms + cfg->ws_ping_interval_ms;
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
    for (unsigned slot = 0; slot < accept_slots(w); slot++)
        arm_accept(w, slot);
    for (;;) {
        int ret = rc_ring_run(&w->ring, next_timeout(w), on_cqe, w);
        rc_assert(ret >= 0);
        w->now_ms = monotonic_ms();
        if (rc_server_config(w->server) != w->cfg)
            take_config(w, rc_server_config(w->server));
        if (w->cfg->heartbeat_interval_ms && w->now_ms >= w->next_heartbeat_ms) {
            rc_stream_foreach(w, heartbeat);
            w->next_heartbeat_ms = w->now_ms + w->cfg->heartbeat_interval_ms;
        }
        if (w->pong_deadline_ms && w->now_ms >= w->pong_deadline_ms) {
            w->pong_deadline_ms = 0;
            rc_stream_foreach(w, pong_check);
        }
        if (w->cfg->ws_ping_interval_ms && w->now_ms >= w->next_ping_ms) {
            rc_stream_foreach(w, ping);
            w->next_ping_ms = w->now_ms + w->cfg->ws_ping_interval_ms;
            w->pong_deadline_ms = w->now_ms + w->cfg->ws_pong_timeout_ms;
        }
        if (w->now_ms >= w->next_expire_ms) {
            rc_stream_expire(w);
            w->next_expire_ms = w->now_ms + 1000;
        }
        expire_requests(w);
        expire_ws_closing(w);
        if (w->accept_idle && !w->stopping) {
            for (unsigned slot = 0; slot < accept_slots(w); slot++)
                if (w->accept_idle & (1u << slot))
                    arm_accept(w, slot);
            w->accept_idle = 0;
        }
        if (w->stopping) {
            if (w->now_ms >= w->stop_deadline_ms)
                end_stop(w);
            /*
             * The cancelled accepts are waited for as well (they end at once), so that none
             * is left writing a peer address into accept_slots after the loop; the grace
             * deadline bounds the wait all the same.
             */
            if (rc_stat_get(w->stats.connections) == 0 &&
                (w->accepts_armed == 0 || w->now_ms >= w->stop_deadline_ms))
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
