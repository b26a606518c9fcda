/*
 * The feed socket: RESP2 commands from publishers and listeners. See include/ringcast/feed.h.
 *
 * This file is the feed's thread: its ring, connections, replies in command order and pushing
 * client messages to listeners. The commands are in feedcmd.c and the index of which connection
 * listens on which channel in topics.c; include/ringcast/feedconn.h is what they share.
 */
#include "ringcast/feed.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "ringcast/assert.h"
#include "ringcast/event.h"
#include "ringcast/feedconn.h"
#include "ringcast/log.h"
#include "ringcast/resp.h"
#include "ringcast/server.h"
#include "ringcast/topics.h"
#include "ringcast/upstream.h"

#define MAX_INLINE     (64 * 1024)
#define RECV_CHUNK     (16 * 1024)
#define MAX_UNSENT_OUT (1024 * 1024) /* reply bytes a publisher may leave unread */

/*
 * A command whose reply waits for workers: a publish, until every worker has handed its event
 * out, or a SEND or CLOSE, until the target connection's worker has applied it. stage_off is
 * where the replies of the commands behind it begin in `stage`.
 *
 * Either is done once the feed has cleared its `origin`, which it does when it handles the
 * message that says so (RC_OP_ACK, RC_OP_DIRECT_DONE, or the failure of a hand-off). Workers
 * never touch `origin`, so the feed may test it while they still hold the object. An event's
 * pending count is no substitute: the last worker posts the ACK after its decrement, and an
 * event released on the count alone could be freed with its ACK still on the way.
 */
struct pending {
    struct rc_event *ev; /* a publish: holds the feed's reference; NULL for a direct */
    struct rc_direct *d; /* a SEND or CLOSE: owned by the feed, lent to a worker until done */
    size_t stage_off;
};

/* Whether a list node is linked into some list (a removed node points at itself). */
static bool linked(const struct rc_link *l)
{
    return l->next != l;
}

static int buf_reserve(struct buf *b, size_t extra)
{
    if (b->cap - b->len >= extra)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->len < extra)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p)
        return -ENOMEM;
    b->p = p;
    b->cap = cap;
    return 0;
}

static int buf_append(struct buf *b, const void *data, size_t n)
{
    if (n == 0)
        return 0; /* b->p and data may both be NULL, which memcpy() may not be given */
    if (buf_reserve(b, n) < 0)
        return -ENOMEM;
    memcpy(b->p + b->len, data, n);
    b->len += n;
    return 0;
}

static void conn_finish(struct rc_feed *f, struct feed_conn *fc);
static void process(struct rc_feed *f, struct feed_conn *fc);

void rc_feed_reply(struct feed_conn *fc, const void *data, size_t n)
{
    struct buf *b = fc->q_len ? &fc->stage : &fc->out;
    if (fc->flags & FC_GONE)
        return;
    if (buf_append(b, data, n) < 0)
        fc->flags |= FC_GONE | FC_CLOSE_AFTER;
}

void rc_feed_replyf(struct feed_conn *fc, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    rc_feed_reply(fc, line, n < (int)sizeof(line) ? (size_t)n : sizeof(line) - 1);
}

/* Reply bytes queued and not yet taken by the kernel. */
static size_t unsent(const struct feed_conn *fc)
{
    return fc->out.len + (fc->wire.len - fc->wire_off) + (fc->stage.len - fc->stage_done);
}

/* Starts sending the ready replies, unless a send is already in flight. */
static void flush(struct rc_feed *f, struct feed_conn *fc)
{
    if (fc->flags & FC_GONE) {
        fc->out.len = 0;
        return;
    }
    if ((fc->flags & FC_SEND) || fc->out.len == 0)
        return;
    struct buf tmp = fc->wire;
    fc->wire = fc->out;
    fc->out = tmp;
    fc->out.len = 0;
    fc->wire_off = 0;
    fc->flags |= FC_SEND;
    rc_ring_send(&f->ring, fc->fd, false, fc->wire.p, (unsigned)fc->wire.len,
                 rc_ud(fc, RC_OP_SEND, 0));
}

static size_t in_limit(const struct rc_feed *f)
{
    return 2 * (size_t)f->cfg->max_payload + MAX_INLINE;
}

/* Arms a receive unless the connection is closing, paused, or has unread replies piling up. */
static void arm_recv(struct rc_feed *f, struct feed_conn *fc)
{
    if (fc->flags & (FC_RECV | FC_CLOSE_AFTER | FC_GONE | FC_PAUSED) || f->stopping)
        return;
    if (fc->out.len + fc->wire.len + fc->stage.len > MAX_UNSENT_OUT)
        return;
    size_t want = RECV_CHUNK;
    if (fc->in.len + want > in_limit(f))
        want = in_limit(f) - fc->in.len;
    if (want == 0) {
        /* parse() bounds every argument, so only a command of many huge arguments gets here. */
        rc_stat_add(f->stats.protocol_errors, 1);
        rc_feed_reply(fc, "-ERR Protocol error: command too large\r\n", 40);
        fc->flags |= FC_CLOSE_AFTER;
        flush(f, fc);
        return;
    }
    if (buf_reserve(&fc->in, want) < 0) {
        fc->flags |= FC_GONE | FC_CLOSE_AFTER;
        return;
    }
    fc->flags |= FC_RECV;
    rc_ring_recv(&f->ring, fc->fd, fc->in.p + fc->in.len, (unsigned)(fc->in.cap - fc->in.len),
                 rc_ud(fc, RC_OP_RECV, 0));
}

/* ---------------------------------------------------------------------------------------- */
/* Listeners: what a subscription means to its connection. The index itself is topics.c.    */

int rc_feed_sub_add(struct rc_feed *f, struct feed_conn *fc, const char *name, size_t len)
{
    int ret = rc_topics_add(&f->topics, &fc->subs, fc, name, len);
    if (ret <= 0)
        return ret;
    if (fc->nsubs++ == 0) {
        /* A listener is meant to be quiet: the idle timeout is for publishers only. */
        rc_link_remove(&fc->ilink);
        rc_stat_add(f->stats.listeners, 1);
    }
    return 0;
}

void rc_feed_sub_remove(struct rc_feed *f, struct rc_topic_sub *s)
{
    struct feed_conn *fc = s->owner;
    rc_topics_remove(&f->topics, s);
    if (--fc->nsubs == 0)
        rc_stat_add(f->stats.listeners, -1);
}

static void sub_remove_all(struct rc_feed *f, struct feed_conn *fc)
{
    while (!rc_link_empty(&fc->subs))
        rc_feed_sub_remove(f, rc_container_of(fc->subs.next, struct rc_topic_sub, clink));
}

/* ---------------------------------------------------------------------------------------- */
/* Replies that wait for workers.                                                           */

/* Whether a pending command's reply is known. */
static bool pending_done(const struct pending *p)
{
    return (p->ev ? p->ev->origin : p->d->origin) == NULL;
}

/* Formats the reply of a pending command that is done, and releases what it held. */
static int pending_settle(struct rc_feed *f, struct pending *p, char *buf, size_t cap)
{
    int n;
    if (p->ev) {
        unsigned long handed = atomic_load_explicit(&p->ev->handed, memory_order_relaxed);
        n = snprintf(buf, cap, ":%lu\r\n", handed);
        rc_event_put(p->ev);
        rc_stat_add(f->stats.pending, -1);
        return n;
    }
    switch (p->d->result) {
    case 1:
        n = snprintf(buf, cap, ":1\r\n");
        break;
    case 0:
        n = snprintf(buf, cap, ":0\r\n");
        break;
    case -EAGAIN:
        n = snprintf(buf, cap, "-ERR connection queue is full\r\n");
        break;
    case -ENOMEM:
        n = snprintf(buf, cap, "-ERR out of memory\r\n");
        break;
    default:
        n = snprintf(buf, cap, "-ERR could not reach the connection's worker\r\n");
        break;
    }
    free(p->d);
    return n;
}

/* Moves replies whose commands every worker has answered into `out`, in order. */
static void release_done(struct rc_feed *f, struct feed_conn *fc)
{
    while (fc->q_len) {
        struct pending *p = &fc->q[fc->q_head];
        if (!pending_done(p))
            break;
        if (!(fc->flags & FC_GONE)) {
            if (buf_append(&fc->out, fc->stage.p + fc->stage_done, p->stage_off - fc->stage_done) <
                0)
                fc->flags |= FC_GONE | FC_CLOSE_AFTER;
            fc->stage_done = p->stage_off;
        }
        char line[64];
        int n = pending_settle(f, p, line, sizeof(line));
        fc->q_head = (fc->q_head + 1) % fc->q_cap;
        fc->q_len--;
        if (!(fc->flags & FC_GONE) && buf_append(&fc->out, line, (size_t)n) < 0)
            fc->flags |= FC_GONE | FC_CLOSE_AFTER;
    }
    if (fc->q_len == 0 && fc->stage.len) {
        if (!(fc->flags & FC_GONE) &&
            buf_append(&fc->out, fc->stage.p + fc->stage_done, fc->stage.len - fc->stage_done) < 0)
            fc->flags |= FC_GONE | FC_CLOSE_AFTER;
        fc->stage.len = 0;
        fc->stage_done = 0;
    }
}

/* Whether the feed has as much work at its workers as max_pending allows. */
static bool saturated(const struct rc_feed *f)
{
    return rc_stat_get(f->stats.pending) + f->directs >= f->cfg->max_pending;
}

/* Resumes connections that were paused while max_pending commands awaited their workers. */
static void resume_paused(struct rc_feed *f)
{
    while (!rc_link_empty(&f->paused) && !saturated(f)) {
        struct feed_conn *fc = rc_container_of(f->paused.next, struct feed_conn, plink);
        rc_link_remove(&fc->plink);
        fc->flags &= ~FC_PAUSED;
        process(f, fc);
    }
}

/* A pending command of fc is done: send what can go, and let paused connections go on. */
static void settle(struct rc_feed *f, struct feed_conn *fc)
{
    release_done(f, fc);
    flush(f, fc);
    conn_finish(f, fc);
    resume_paused(f);
}

static void on_ack(struct rc_feed *f, struct rc_event *ev)
{
    struct feed_conn *fc = ev->origin;
    ev->origin = NULL;
    settle(f, fc);
}

static void on_direct_done(struct rc_feed *f, struct rc_direct *d)
{
    struct feed_conn *fc = d->origin;
    rc_assert(d->result <= 1);
    if (d->result == 1)
        rc_stat_add(f->stats.direct_sent, 1);
    else if (d->result == 0)
        rc_stat_add(f->stats.direct_missed, 1);
    else
        rc_stat_add(f->stats.command_errors, 1);
    d->origin = NULL;
    f->directs--;
    settle(f, fc);
}

int rc_feed_queue_pending(struct feed_conn *fc, struct rc_event *ev, struct rc_direct *d)
{
    if (fc->q_len == fc->q_cap) {
        size_t ncap = fc->q_cap ? fc->q_cap * 2 : 16;
        struct pending *nq = malloc(ncap * sizeof(*nq));
        if (!nq)
            return -ENOMEM;
        for (size_t i = 0; i < fc->q_len; i++)
            nq[i] = fc->q[(fc->q_head + i) % fc->q_cap];
        free(fc->q);
        fc->q = nq;
        fc->q_cap = ncap;
        fc->q_head = 0;
    }
    fc->q[(fc->q_head + fc->q_len) % fc->q_cap] = (struct pending){ev, d, fc->stage.len};
    fc->q_len++;
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Reading commands.                                                                        */

/*
 * Executes every complete command in `in`. Stops early when too much work is pending at the
 * workers, and leaves the rest of the bytes for when they have caught up.
 */
static void process(struct rc_feed *f, struct feed_conn *fc)
{
    struct rc_resp_limits lim = {MAX_ARGS, f->cfg->max_payload, MAX_INLINE};
    struct rc_resp_arg argv[MAX_ARGS];
    size_t consumed = 0;
    bool executed = false;

    while (!(fc->flags & (FC_CLOSE_AFTER | FC_GONE))) {
        size_t argc = 0;
        const char *err = NULL;
        if (saturated(f)) {
            fc->flags |= FC_PAUSED;
            rc_link_insert_tail(&f->paused, &fc->plink);
            break;
        }
        int n = rc_resp_parse(fc->in.p + consumed, fc->in.len - consumed, &lim, argv, &argc, &err);
        if (n == -2)
            break;
        if (n == -1) {
            rc_stat_add(f->stats.protocol_errors, 1);
            rc_feed_replyf(fc, "-ERR Protocol error: %s\r\n", err);
            fc->flags |= FC_CLOSE_AFTER;
            break;
        }
        consumed += (size_t)n;
        if (argc > 0) {
            rc_feedcmd_execute(f, fc, argv, argc);
            executed = true;
        }
    }
    if (executed && linked(&fc->ilink)) {
        /* The idle list stays ordered by last command: the active move to its tail. */
        fc->last_ms = rc_feed_now_ms();
        rc_link_remove(&fc->ilink);
        rc_link_insert_tail(&f->idle, &fc->ilink);
    }
    if (consumed) {
        memmove(fc->in.p, fc->in.p + consumed, fc->in.len - consumed);
        fc->in.len -= consumed;
    }
    flush(f, fc);
    arm_recv(f, fc);
    conn_finish(f, fc);
}

/* ---------------------------------------------------------------------------------------- */
/* Connections.                                                                             */

/* Frees a connection's memory; its descriptor is the caller's to close. */
static void conn_free(struct rc_feed *f, struct feed_conn *fc)
{
    sub_remove_all(f, fc);
    rc_link_remove(&fc->ilink);
    free(fc->in.p);
    free(fc->out.p);
    free(fc->wire.p);
    free(fc->stage.p);
    free(fc->q);
    free(fc);
}

/*
 * Frees a connection once its peer is gone or its last reply is out, and nothing is pending.
 * A closing connection stops listening at once, so no message is pushed to it or counted.
 */
static void conn_finish(struct rc_feed *f, struct feed_conn *fc)
{
    if (!(fc->flags & (FC_GONE | FC_CLOSE_AFTER)))
        return;
    sub_remove_all(f, fc);
    if ((fc->flags & (FC_RECV | FC_SEND)) || fc->q_len || (!(fc->flags & FC_GONE) && fc->out.len))
        return;
    if (fc->flags & FC_PAUSED)
        rc_link_remove(&fc->plink);
    rc_link_remove(&fc->link);
    rc_ring_close(&f->ring, fc->fd);
    conn_free(f, fc);
    rc_stat_add(f->stats.connections, -1);
}

/*
 * Ends a connection now, dropping replies not yet sent. shutdown() makes the receive and send
 * in flight complete at once, and their completions free it; commands waiting for workers keep
 * it allocated until their answers are back, as when a peer goes away by itself.
 */
static void conn_cut(struct rc_feed *f, struct feed_conn *fc)
{
    fc->flags |= FC_GONE | FC_CLOSE_AFTER;
    rc_link_remove(&fc->ilink);
    shutdown(fc->fd, SHUT_RDWR);
    flush(f, fc);
    conn_finish(f, fc);
}

static void on_accept(struct rc_feed *f, const struct rc_cqe *cqe)
{
    bool ended = !(cqe->flags & IORING_CQE_F_MORE);
    if (cqe->res < 0 && cqe->res != -ECANCELED) {
        /* Out of descriptors, say: retry once a second rather than spin on the error. */
        rc_warn("feed accept failed: %s", strerror(-cqe->res));
        f->accept_retry = ended;
        return;
    }
    if (ended && !f->stopping)
        rc_ring_accept(&f->ring, f->listen_fd, rc_ud(f, RC_OP_ACCEPT, 0));
    if (cqe->res < 0)
        return;
    struct feed_conn *fc = calloc(1, sizeof(*fc));
    if (!fc) {
        rc_ring_close(&f->ring, cqe->res);
        return;
    }
    fc->fd = cqe->res;
    rc_link_init(&fc->plink);
    rc_link_init(&fc->subs);
    rc_link_insert_tail(&f->conns, &fc->link);
    fc->last_ms = rc_feed_now_ms();
    rc_link_insert_tail(&f->idle, &fc->ilink);
    rc_stat_add(f->stats.connections, 1);
    if (rc_stat_get(f->stats.connections) > f->cfg->max_feed_connections) {
        rc_stat_add(f->stats.rejected, 1);
        rc_feed_reply(fc, "-ERR max feed connections reached\r\n", 35);
        fc->flags |= FC_CLOSE_AFTER;
        flush(f, fc);
        return;
    }
    arm_recv(f, fc);
}

static void on_recv(struct rc_feed *f, struct feed_conn *fc, int res)
{
    fc->flags &= ~FC_RECV;
    if (res <= 0) {
        /*
         * End of input: every complete command has been executed, and a partial one is
         * discarded. The replies still owed go out before the close, so a peer that only shut
         * down its sending side learns exactly which commands were applied. An error means the
         * peer has gone; publishes already posted still reach subscribers.
         */
        fc->flags |= res == 0 ? FC_CLOSE_AFTER : FC_GONE;
        flush(f, fc);
        conn_finish(f, fc);
        return;
    }
    fc->in.len += (size_t)res;
    process(f, fc);
}

static void on_send(struct rc_feed *f, struct feed_conn *fc, int res)
{
    fc->flags &= ~FC_SEND;
    if (res <= 0) {
        fc->flags |= FC_GONE;
        conn_finish(f, fc);
        return;
    }
    fc->wire_off += (size_t)res;
    if (fc->wire_off < fc->wire.len) {
        fc->flags |= FC_SEND;
        rc_ring_send(&f->ring, fc->fd, false, fc->wire.p + fc->wire_off,
                     (unsigned)(fc->wire.len - fc->wire_off), rc_ud(fc, RC_OP_SEND, 0));
        return;
    }
    fc->wire.len = 0;
    fc->wire_off = 0;
    flush(f, fc);
    /* Replies drained: a publisher held back for not reading them may go on. */
    if (!(fc->flags & (FC_RECV | FC_PAUSED)))
        process(f, fc);
    else
        conn_finish(f, fc);
}

/*
 * A client message from a worker: pushes it to every listener of its channel, then posts it
 * back with the count. A listener whose unsent output would pass max_subscriber_buffer is cut
 * instead, as Redis cuts slow pub/sub clients: it has stopped reading, and holding messages for
 * it without bound would let one stuck backend exhaust the feed's memory. The limit is on bytes
 * queued at once, so it must be well above the largest burst of client messages: a burst that
 * arrives in one run of the loop is queued before the kernel has taken any of it.
 */
static void on_upstream(struct rc_feed *f, struct rc_upstream *up)
{
    rc_assert(up->worker < f->server->nworkers && up->channel_len >= 1 &&
              up->channel_len <= MAX_CHANNEL && up->id_len < RC_CONN_ID_MAX);
    const char *payload = up->data + up->channel_len;
    struct rc_topic *t = rc_topics_find(&f->topics, up->data, up->channel_len);
    uint64_t limit = f->cfg->max_subscriber_buffer;
    uint32_t listeners = 0;

    if (t) {
        /* Everything before the payload, built once for every listener. */
        char head[64 + MAX_CHANNEL + RC_CONN_ID_MAX];
        size_t n = (size_t)snprintf(head, sizeof(head), "*3\r\n$7\r\nmessage\r\n$%u\r\n",
                                    (unsigned)up->channel_len);
        memcpy(head + n, up->data, up->channel_len);
        n += up->channel_len;
        n += (size_t)snprintf(head + n, sizeof(head) - n, "\r\n$%lu\r\n",
                              (unsigned long)up->id_len + 1 + up->payload_len);
        memcpy(head + n, up->id, up->id_len);
        n += up->id_len;
        head[n++] = ' ';
        size_t len = n + up->payload_len + 2;
        struct feed_conn *cut = NULL;
        for (struct rc_link *l = t->subs.next; l != &t->subs; l = l->next) {
            struct feed_conn *fc = rc_container_of(l, struct rc_topic_sub, tlink)->owner;
            if (fc->flags & (FC_GONE | FC_CLOSE_AFTER))
                continue;
            if (limit && unsent(fc) + len > limit) {
                /* Cut after the walk: cutting frees the subscription nodes walked here. */
                fc->cut_next = cut;
                cut = fc;
                continue;
            }
            rc_feed_reply(fc, head, n);
            rc_feed_reply(fc, payload, up->payload_len);
            rc_feed_reply(fc, "\r\n", 2);
            flush(f, fc);
            listeners++;
        }
        while (cut) {
            struct feed_conn *next = cut->cut_next;
            rc_stat_add(f->stats.listener_overflows, 1);
            rc_warn("feed listener cut: more than %lu bytes of messages unread",
                    (unsigned long)limit);
            conn_cut(f, cut);
            cut = next;
        }
    }
    up->listeners = listeners;
    rc_stat_add(f->stats.upstream_messages, 1);
    if (listeners == 0)
        rc_stat_add(f->stats.upstream_unheard, 1);
    rc_ring_msg(&f->ring, rc_server_worker_ring(f->server, up->worker),
                rc_ud(up, RC_OP_UPSTREAM_DONE, 0), 0,
                rc_feed_msg_failed_ud(up, RC_OP_UPSTREAM_DONE));
}

/*
 * A ring message the kernel refused to deliver. The generation field says what it carried.
 *
 * A client message that cannot go back to its worker is left where it is: it is the worker's
 * memory, which the worker may still count or list as in flight, so freeing it here could only
 * turn a bounded leak into a double free. The failure is logged and counted (msg_failures); it
 * happens only when the kernel is out of memory or the worker's ring is gone at exit.
 */
static void on_msg_failed(struct rc_feed *f, const struct rc_cqe *cqe)
{
    void *ptr = rc_ud_ptr(cqe->ud);

    rc_stat_add(f->stats.msg_failures, 1);
    switch (rc_ud_gen(cqe->ud)) {
    case RC_OP_EVENT: {
        struct rc_event *ev = ptr;
        rc_error("could not hand an event to a worker: %s", strerror(-cqe->res));
        rc_event_put(ev);
        if (atomic_fetch_sub_explicit(&ev->pending, 1, memory_order_acq_rel) == 1)
            on_ack(f, ev);
        break;
    }
    case RC_OP_DIRECT: {
        struct rc_direct *d = ptr;
        rc_error("could not hand a SEND or CLOSE to worker %u: %s", (unsigned)d->target.worker,
                 strerror(-cqe->res));
        d->result = cqe->res < 0 ? cqe->res : -EIO;
        on_direct_done(f, d);
        break;
    }
    case RC_OP_UPSTREAM_DONE: {
        struct rc_upstream *up = ptr;
        rc_error("could not hand a client message back to worker %u: %s; leaking it",
                 (unsigned)up->worker, strerror(-cqe->res));
        break;
    }
    default:
        rc_assert(!"unexpected failed message on the feed ring");
    }
}

/* Closes publishers that have sent no complete command for feed_idle_timeout_ms. */
static void sweep_idle(struct rc_feed *f)
{
    uint64_t timeout = f->cfg->feed_idle_timeout_ms, now;

    if (!timeout || rc_link_empty(&f->idle))
        return;
    now = rc_feed_now_ms();
    /* The list is ordered by last command, so only the expired ones and one more are looked at. */
    while (!rc_link_empty(&f->idle)) {
        struct feed_conn *fc = rc_container_of(f->idle.next, struct feed_conn, ilink);
        if (now - fc->last_ms < timeout)
            break;
        rc_link_remove(&fc->ilink);
        if (fc->flags & (FC_GONE | FC_CLOSE_AFTER))
            continue; /* closing already; its own completions free it */
        if (fc->q_len || (fc->flags & FC_PAUSED)) {
            /* It waits for the engine, not the other way round. */
            fc->last_ms = now;
            rc_link_insert_tail(&f->idle, &fc->ilink);
            continue;
        }
        rc_stat_add(f->stats.idle_timeouts, 1);
        conn_cut(f, fc);
    }
}

/* Milliseconds the run loop may wait: a second, or less when an idle deadline comes sooner. */
static int next_timeout(const struct rc_feed *f)
{
    uint64_t timeout = f->cfg->feed_idle_timeout_ms;

    if (!timeout || rc_link_empty(&f->idle))
        return 1000;
    const struct feed_conn *fc = rc_container_of(f->idle.next, struct feed_conn, ilink);
    uint64_t now = rc_feed_now_ms(), due = fc->last_ms + timeout;
    if (due <= now)
        return 1;
    return due - now < 1000 ? (int)(due - now) : 1000;
}

static void begin_stop(struct rc_feed *f)
{
    f->stopping = true;
    rc_ring_cancel(&f->ring, rc_ud(f, RC_OP_ACCEPT, 0));
}

static void on_cqe(void *arg, const struct rc_cqe *cqe)
{
    struct rc_feed *f = arg;
    void *ptr = rc_ud_ptr(cqe->ud);

    switch (rc_ud_op(cqe->ud)) {
    case RC_OP_ACCEPT:
        on_accept(f, cqe);
        break;
    case RC_OP_RECV:
        on_recv(f, ptr, cqe->res);
        break;
    case RC_OP_SEND:
        on_send(f, ptr, cqe->res);
        break;
    case RC_OP_ACK:
        on_ack(f, ptr);
        break;
    case RC_OP_UPSTREAM:
        on_upstream(f, ptr);
        break;
    case RC_OP_DIRECT_DONE:
        on_direct_done(f, ptr);
        break;
    case RC_OP_MSG_FAILED:
        on_msg_failed(f, cqe);
        break;
    case RC_OP_STOP:
        begin_stop(f);
        break;
    case RC_OP_IGNORE:
        break;
    default:
        rc_assert(!"unexpected completion on the feed ring");
    }
}

/*
 * Releases every connection at exit. Events still pending lose only the feed's reference. A
 * SEND or CLOSE still at its worker is left to it: the worker may be reading it right now, and
 * freeing it could only trade a leak at exit for a use after free.
 */
static void feed_cleanup(struct rc_feed *f)
{
    while (!rc_link_empty(&f->conns)) {
        struct feed_conn *fc = rc_container_of(f->conns.next, struct feed_conn, link);
        for (size_t i = 0; i < fc->q_len; i++) {
            struct pending *p = &fc->q[(fc->q_head + i) % fc->q_cap];
            if (p->ev)
                rc_event_put(p->ev);
            else if (!p->d->origin)
                free(p->d);
        }
        rc_link_remove(&fc->link);
        close(fc->fd);
        conn_free(f, fc);
    }
    rc_topics_free(&f->topics);
    close(f->listen_fd);
    unlink(f->cfg->socket);
}

static void *feed_main(void *arg)
{
    struct rc_feed *f = arg;
    unsigned cq = 4096;
    /*
     * Room for every completion that can be outstanding at once: an acknowledgement (or a
     * failure) per pending event or direct, and every client message the workers may have on
     * their way here. A full completion queue makes their ring messages fail.
     */
    uint64_t need = 2 * (uint64_t)f->cfg->max_pending +
                    (uint64_t)f->server->nworkers * f->cfg->ws_upstream_max_pending;

    rc_log_set_thread("feed");
    while (cq < need && cq < 65536)
        cq *= 2;
    f->init_error = rc_ring_init(&f->ring, 1024, cq, 0);
    if (f->init_error < 0)
        rc_error("feed io_uring setup failed: %s", strerror(-f->init_error));
    if (!rc_server_thread_ready(f->server))
        return NULL;
    rc_ring_accept(&f->ring, f->listen_fd, rc_ud(f, RC_OP_ACCEPT, 0));
    while (!f->stopping) {
        int ret = rc_ring_run(&f->ring, next_timeout(f), on_cqe, f);
        rc_assert(ret >= 0);
        f->cfg = rc_server_config(f->server);
        sweep_idle(f);
        if (f->accept_retry && !f->stopping) {
            f->accept_retry = false;
            rc_ring_accept(&f->ring, f->listen_fd, rc_ud(f, RC_OP_ACCEPT, 0));
        }
    }
    feed_cleanup(f);
    return NULL;
}

int rc_feed_listen(struct rc_feed *f, const struct rc_config *cfg)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    struct stat st;
    int fd;

    f->cfg = cfg;
    rc_link_init(&f->conns);
    rc_link_init(&f->paused);
    rc_link_init(&f->idle);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    /* Ids carry the start time, so a client holding an id from an earlier run can tell. */
    snprintf(f->instance, sizeof(f->instance), "%lx",
             (unsigned long)ts.tv_sec * 1000 + (unsigned long)(ts.tv_nsec / 1000000));
    snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", cfg->socket);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (stat(cfg->socket, &st) == 0 && S_ISSOCK(st.st_mode)) {
        /* A socket file that nobody answers on is left over from a crash; one that answers
         * belongs to a running instance, which must not be hijacked. */
        if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0) {
            close(fd);
            return -EADDRINUSE;
        }
        close(fd);
        unlink(cfg->socket);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return -errno;
    }
    if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 ||
        chmod(cfg->socket, cfg->socket_mode) < 0 || listen(fd, 128) < 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    f->listen_fd = fd;
    return 0;
}

int rc_feed_start(struct rc_feed *f)
{
    return -pthread_create(&f->thread, NULL, feed_main, f);
}
