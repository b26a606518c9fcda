/*
 * Closing connections and the send path. See include/ringcast/conn.h.
 *
 * A connection sends one thing at a time, so its bytes stay in order: a canned response, bytes
 * of its own, a WebSocket control frame, one event, or a batch of events. When a send completes,
 * the next one starts from what is due then.
 */
#include "ringcast/conn.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ringcast/assert.h"
#include "ringcast/ring.h"

void rc_conn_maybe_free(struct rc_worker *w, struct rc_conn *c)
{
    if (c->state != CONN_CLOSING || (c->flags & (F_RECV | F_SEND | F_SHUT)))
        return;
    /* Only now: a control frame in flight was sent from the side state. */
    if (c->flags & F_WS)
        rc_wsconn_free(c);
    rc_ring_close_direct(&w->ring, c->fd);
    rc_conn_limits_release(w, c);
    c->gen++;
    c->state = 0;
    rc_slab_free(&w->conns, c);
    rc_stat_add(w->stats.connections, -1);
}

void rc_conn_close(struct rc_worker *w, struct rc_conn *c)
{
    if (c->state == CONN_CLOSING)
        return;
    if (c->state == CONN_STREAMING)
        rc_stream_leave(w, c);
    else
        rc_link_remove(&c->link);
    if (c->state == CONN_REQUEST) {
        free(c->u.req);
        c->u.req = NULL;
    }
    c->state = CONN_CLOSING;
    if (c->flags & (F_RECV | F_SEND)) {
        c->flags |= F_SHUT;
        rc_ring_shutdown_direct(&w->ring, c->fd, SHUT_RDWR, rc_conn_ud(c, RC_OP_CLOSE));
    }
    rc_conn_maybe_free(w, c);
}

void rc_conn_send_static(struct rc_worker *w, struct rc_conn *c, enum rc_response resp)
{
    rc_assert(!(c->flags & F_SEND) && c->sent < w->response_len[resp]);
    c->sending = SEND_STATIC;
    c->resp = (uint8_t)resp;
    c->flags |= F_SEND | F_ACTIVE;
    rc_ring_send(&w->ring, (int)c->fd, true, w->responses[resp] + c->sent,
                 w->response_len[resp] - c->sent, rc_conn_ud(c, RC_OP_SEND));
}

void rc_conn_respond(struct rc_worker *w, struct rc_conn *c, enum rc_response resp)
{
    free(c->u.req);
    c->u.req = NULL;
    c->state = CONN_RESPONDING;
    c->sent = 0;
    if (resp >= RC_RESP_400)
        rc_stat_add(w->stats.http_errors, 1);
    rc_conn_send_static(w, c, resp);
}

void rc_conn_send_owned(struct rc_worker *w, struct rc_conn *c)
{
    c->sending = SEND_OWNED;
    c->flags |= F_SEND | F_ACTIVE;
    rc_ring_send(&w->ring, (int)c->fd, true, c->u.out->data + c->sent, c->u.out->len - c->sent,
                 rc_conn_ud(c, RC_OP_SEND));
}

/* Sends the single event c->u.ev from byte c->sent. */
static void send_event(struct rc_worker *w, struct rc_conn *c)
{
    uint32_t len;
    const char *frame = rc_stream_frame(c, c->u.ev, &len);
    c->sending = SEND_EVENT;
    c->flags |= F_SEND | F_ACTIVE;
    rc_ring_send(&w->ring, (int)c->fd, true, frame + c->sent, len - c->sent,
                 rc_conn_ud(c, RC_OP_SEND));
}

void rc_conn_send_ctl(struct rc_worker *w, struct rc_conn *c)
{
    c->sending = SEND_CTL;
    c->flags |= F_SEND | F_ACTIVE;
    rc_ring_send(&w->ring, (int)c->fd, true, c->ws->out + c->sent, c->ws->out_len - c->sent,
                 rc_conn_ud(c, RC_OP_SEND));
}

/* Sends what is left of a batch: its events from b->first on, the first from byte c->sent. */
static void send_batch(struct rc_worker *w, struct rc_conn *c)
{
    struct rc_batch *b = c->u.batch;
    for (unsigned i = b->first; i < b->n; i++) {
        size_t skip = i == b->first ? c->sent : 0;
        uint32_t len;
        const char *frame = rc_stream_frame(c, b->ev[i], &len);
        b->iov[i].iov_base = (void *)(frame + skip);
        b->iov[i].iov_len = len - skip;
    }
    memset(&b->msg, 0, sizeof(b->msg));
    b->msg.msg_iov = &b->iov[b->first];
    b->msg.msg_iovlen = b->n - b->first;
    c->sending = SEND_BATCH;
    c->flags |= F_SEND | F_ACTIVE;
    rc_ring_sendmsg(&w->ring, (int)c->fd, true, &b->msg, rc_conn_ud(c, RC_OP_SEND));
}

/*
 * Ends a stream that has sent everything at shutdown: an SSE client is told when to come back
 * (retry:) and the stream ends; a WebSocket gets a Close with 1001 (going away).
 */
static void finish_stream(struct rc_worker *w, struct rc_conn *c)
{
    if (c->flags & F_WS) {
        rc_wsconn_close(w, c, RC_WS_CLOSE_GOING_AWAY, NULL, 0);
        return;
    }
    rc_stream_leave(w, c);
    c->state = CONN_RESPONDING;
    c->deadline = (uint32_t)(w->stop_deadline_ms - w->start_ms);
    rc_link_insert_tail(&w->pending, &c->link);
    c->sent = 0;
    rc_conn_send_static(w, c, RC_RESP_SSE_BYE);
}

/*
 * A stream one event behind sends that event; a stream further behind sends up to BATCH_EVENTS
 * events in one sendmsg, so that catching up costs one system call and as few TCP segments as
 * the bytes need, instead of one of each per event.
 */
void rc_conn_send_next(struct rc_worker *w, struct rc_conn *c)
{
    struct rc_event *ev[BATCH_EVENTS];
    struct rc_batch *b;

    if (c->flags & F_SEND)
        return;
    if ((c->flags & F_WS) && rc_wsconn_send_pending(w, c))
        return;
    if (c->state != CONN_STREAMING)
        return;
    unsigned n = rc_stream_peek(w, c, ev, BATCH_EVENTS, BATCH_BYTES);
    if (n == 0) {
        if (w->stopping)
            finish_stream(w, c);
        return;
    }
    for (unsigned i = 0; i < n; i++)
        rc_event_use(ev[i], w->id);
    if (n == 1 || !(b = rc_slab_alloc(&w->batches))) {
        for (unsigned i = 1; i < n; i++)
            rc_event_unuse(ev[i], w->id);
        c->u.ev = ev[0];
        send_event(w, c);
        return;
    }
    memcpy(b->ev, ev, n * sizeof(ev[0]));
    b->n = n;
    b->first = 0;
    c->u.batch = b;
    send_batch(w, c);
}

/* Releases what a send still holds, when it failed or its connection is closing. */
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

/* The bytes of ev that c is sent. */
static uint32_t frame_len(const struct rc_conn *c, const struct rc_event *ev)
{
    uint32_t len;
    rc_stream_frame(c, ev, &len);
    return len;
}

/*
 * Accounts for `n` more bytes sent: moves the position past every event now complete and
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
        rc_wsconn_ctl_sent(c);
    } else if (sending == SEND_EVENT) {
        if (c->sent < frame_len(c, c->u.ev))
            return false;
        rc_stream_sent(c, c->u.ev);
        rc_event_unuse(c->u.ev, w->id);
        c->u.ev = NULL;
    } else {
        struct rc_batch *b = c->u.batch;
        uint32_t len;
        while (b->first < b->n && c->sent >= (len = frame_len(c, b->ev[b->first]))) {
            c->sent -= len;
            rc_stream_sent(c, b->ev[b->first]);
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

void rc_conn_on_send(struct rc_worker *w, struct rc_conn *c, int res)
{
    uint8_t sending = c->sending;

    c->flags &= (uint16_t)~F_SEND;
    c->sending = SEND_NONE;
    if (res <= 0 || c->state == CONN_CLOSING) {
        drop_send(w, c, sending);
        if (c->state == CONN_CLOSING)
            rc_conn_maybe_free(w, c);
        else
            rc_conn_close(w, c);
        return;
    }
    if (!advance(w, c, sending, (uint32_t)res)) {
        /* A partial send: the rest of the same bytes goes next, so order is kept. */
        if (sending == SEND_STATIC)
            rc_conn_send_static(w, c, c->resp);
        else if (sending == SEND_EVENT)
            send_event(w, c);
        else if (sending == SEND_OWNED)
            rc_conn_send_owned(w, c);
        else if (sending == SEND_CTL)
            rc_conn_send_ctl(w, c);
        else
            send_batch(w, c);
        return;
    }
    if (c->state == CONN_RESPONDING) {
        rc_conn_close(w, c);
        return;
    }
    /* The server closes the TCP connection once both Close frames have passed (section 7.1.1). */
    if (c->state == CONN_WS_CLOSING && c->ws->close_sent && c->ws->peer_closed) {
        rc_conn_close(w, c);
        return;
    }
    rc_conn_send_next(w, c);
    /* The ws member is the request deadline of a connection that is not a WebSocket. */
    if (c->flags & F_WS)
        rc_wsconn_trim(c);
}
