/*
 * The feed socket: RESP2 commands from publishers and listeners. See include/ringcast/feed.h.
 */
#include "ringcast/feed.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "ringcast/assert.h"
#include "ringcast/event.h"
#include "ringcast/http.h"
#include "ringcast/log.h"
#include "ringcast/resp.h"
#include "ringcast/server.h"
#include "ringcast/sse.h"
#include "ringcast/upstream.h"
#include "ringcast/utf8.h"

/* Enough for SUBSCRIBE with many channels; argv lives on the feed thread's stack (16 KiB). */
#define MAX_ARGS       1024
#define MAX_INLINE     (64 * 1024)
#define RECV_CHUNK     (16 * 1024)
#define MAX_TYPE_LEN   64
#define MAX_ID_LEN     128
#define MAX_CHANNEL    128
#define MAX_UNSENT_OUT (1024 * 1024) /* reply bytes a publisher may leave unread */

/* A growable byte buffer. */
struct buf {
    char *p; /* owned */
    size_t len;
    size_t cap;
};

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

/* A channel that feed connections listen on: one entry of the feed-wide index. */
struct rc_feed_topic {
    struct rc_feed_topic *hnext; /* next in the same hash bucket */
    struct rc_link subs;         /* struct sub.tlink, in subscription order */
    uint32_t hash;
    uint16_t name_len;
    char name[];
};

/*
 * One connection's subscription to one channel, linked from both sides: the topic lists its
 * listeners for pushing, the connection lists its channels for UNSUBSCRIBE and close. A topic has
 * at most one node per connection, and feed connections are few (max_connections), so walking
 * a topic's list is how a duplicate SUBSCRIBE or an UNSUBSCRIBE finds its node.
 */
struct sub {
    struct rc_link tlink; /* in the topic's subs */
    struct rc_link clink; /* in the connection's subs */
    struct rc_feed_topic *topic;
    struct feed_conn *fc;
};

enum {
    FC_RECV = 1 << 0,        /* a receive is in flight into `in` */
    FC_SEND = 1 << 1,        /* a send of `wire` is in flight */
    FC_CLOSE_AFTER = 1 << 2, /* close once every reply is sent (QUIT, protocol error, EOF) */
    FC_GONE = 1 << 3,        /* the peer has gone: replies are dropped */
    FC_PAUSED = 1 << 4,      /* on the paused list until pending work drains */
};

/*
 * One feed connection. Replies leave in command order: a publish's or a direct's reply is known
 * only when its workers answer, so replies to the commands behind it wait in `stage`. Messages
 * pushed to a listener take the same path, so they never overtake its SUBSCRIBE reply.
 */
struct feed_conn {
    struct rc_link link;  /* in rc_feed.conns */
    struct rc_link plink; /* in rc_feed.paused while FC_PAUSED */
    struct rc_link ilink; /* in rc_feed.idle while a publisher that is not closing */
    struct rc_link subs;  /* struct sub.clink: the channels it listens on */
    uint32_t nsubs;       /* nonzero: the connection is in subscribed mode */
    int fd;
    unsigned flags;
    uint64_t last_ms; /* CLOCK_MONOTONIC of its last complete command (or of its accept) */
    struct buf in;    /* received bytes not yet parsed */
    struct buf out;   /* replies ready to send */
    struct buf wire;  /* the bytes of the send in flight; swapped with out */
    size_t wire_off;
    struct buf stage;  /* replies that come after q's oldest pending command */
    size_t stage_done; /* stage bytes already moved to out */
    struct pending *q; /* ring of commands awaiting workers, owned */
    size_t q_head, q_len, q_cap;
    struct feed_conn *cut_next; /* on on_upstream()'s list of listeners to cut */
};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

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

/* Queues reply bytes behind every earlier reply. Memory exhaustion drops the connection. */
static void reply(struct feed_conn *fc, const void *data, size_t n)
{
    struct buf *b = fc->q_len ? &fc->stage : &fc->out;
    if (fc->flags & FC_GONE)
        return;
    if (buf_append(b, data, n) < 0)
        fc->flags |= FC_GONE | FC_CLOSE_AFTER;
}

static void replyf(struct feed_conn *fc, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void replyf(struct feed_conn *fc, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    reply(fc, line, n < (int)sizeof(line) ? (size_t)n : sizeof(line) - 1);
}

static void reply_error(struct rc_feed *f, struct feed_conn *fc, const char *msg)
{
    rc_stat_add(f->stats.command_errors, 1);
    replyf(fc, "-ERR %s\r\n", msg);
}

static void reply_bulk(struct feed_conn *fc, const char *data, size_t n)
{
    replyf(fc, "$%zu\r\n", n);
    reply(fc, data, n);
    reply(fc, "\r\n", 2);
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
        reply(fc, "-ERR Protocol error: command too large\r\n", 40);
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
/* The channel index: which feed connections listen on which channel.                       */

static struct rc_feed_topic *topic_find(const struct rc_feed *f, const char *name, size_t len,
                                        uint32_t hash)
{
    if (!f->topics)
        return NULL;
    for (struct rc_feed_topic *t = f->topics[hash & f->topics_mask]; t; t = t->hnext)
        if (t->hash == hash && t->name_len == len && memcmp(t->name, name, len) == 0)
            return t;
    return NULL;
}

/* Doubles the bucket array once topics outnumber buckets, so chains stay short. */
static int topics_grow(struct rc_feed *f)
{
    uint32_t nb = f->topics ? (f->topics_mask + 1) * 2 : 64;
    struct rc_feed_topic **b = calloc(nb, sizeof(*b));
    if (!b)
        return -ENOMEM;
    if (f->topics) {
        for (uint32_t i = 0; i <= f->topics_mask; i++) {
            struct rc_feed_topic *t = f->topics[i];
            while (t) {
                struct rc_feed_topic *next = t->hnext;
                t->hnext = b[t->hash & (nb - 1)];
                b[t->hash & (nb - 1)] = t;
                t = next;
            }
        }
        free(f->topics);
    }
    f->topics = b;
    f->topics_mask = nb - 1;
    return 0;
}

/* Returns the topic for a channel, creating it; NULL when memory is short. */
static struct rc_feed_topic *topic_get(struct rc_feed *f, const char *name, size_t len)
{
    uint32_t hash = rc_channel_hash(name, len);
    struct rc_feed_topic *t = topic_find(f, name, len, hash);
    if (t)
        return t;
    if ((!f->topics || f->ntopics > f->topics_mask) && topics_grow(f) < 0)
        return NULL;
    t = malloc(sizeof(*t) + len);
    if (!t)
        return NULL;
    rc_link_init(&t->subs);
    t->hash = hash;
    t->name_len = (uint16_t)len;
    memcpy(t->name, name, len);
    t->hnext = f->topics[hash & f->topics_mask];
    f->topics[hash & f->topics_mask] = t;
    f->ntopics++;
    return t;
}

/* Frees a topic that nobody listens on any more. */
static void topic_drop(struct rc_feed *f, struct rc_feed_topic *t)
{
    rc_assert(rc_link_empty(&t->subs));
    struct rc_feed_topic **p = &f->topics[t->hash & f->topics_mask];
    while (*p != t)
        p = &(*p)->hnext;
    *p = t->hnext;
    f->ntopics--;
    free(t);
}

static struct sub *sub_find(const struct rc_feed_topic *t, const struct feed_conn *fc)
{
    for (struct rc_link *l = t->subs.next; l != &t->subs; l = l->next) {
        struct sub *s = rc_container_of(l, struct sub, tlink);
        if (s->fc == fc)
            return s;
    }
    return NULL;
}

/* Subscribes fc to a channel (nothing when it already is). Returns 0 or -ENOMEM. */
static int sub_add(struct rc_feed *f, struct feed_conn *fc, const char *name, size_t len)
{
    struct rc_feed_topic *t = topic_get(f, name, len);
    if (!t)
        return -ENOMEM;
    if (sub_find(t, fc))
        return 0;
    struct sub *s = malloc(sizeof(*s));
    if (!s) {
        if (rc_link_empty(&t->subs))
            topic_drop(f, t);
        return -ENOMEM;
    }
    s->topic = t;
    s->fc = fc;
    rc_link_insert_tail(&t->subs, &s->tlink);
    rc_link_insert_tail(&fc->subs, &s->clink);
    if (fc->nsubs++ == 0) {
        /* A listener is meant to be quiet: the idle timeout is for publishers only. */
        rc_link_remove(&fc->ilink);
        rc_stat_add(f->stats.listeners, 1);
    }
    return 0;
}

static void sub_remove(struct rc_feed *f, struct sub *s)
{
    struct feed_conn *fc = s->fc;
    rc_link_remove(&s->tlink);
    rc_link_remove(&s->clink);
    if (rc_link_empty(&s->topic->subs))
        topic_drop(f, s->topic);
    free(s);
    if (--fc->nsubs == 0)
        rc_stat_add(f->stats.listeners, -1);
}

static void sub_remove_all(struct rc_feed *f, struct feed_conn *fc)
{
    while (!rc_link_empty(&fc->subs))
        sub_remove(f, rc_container_of(fc->subs.next, struct sub, clink));
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

static int queue_pending(struct feed_conn *fc, struct rc_event *ev, struct rc_direct *d)
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
/* Commands.                                                                                */

static bool arg_is(const struct rc_resp_arg *a, const char *word)
{
    return a->len == strlen(word) && strncasecmp(a->ptr, word, a->len) == 0;
}

/*
 * A ring message that fails produces a completion on the sender's ring with RC_OP_MSG_FAILED.
 * The feed posts several kinds of object, so it names the kind in that completion's generation
 * field: the op of the message that failed.
 */
static uint64_t msg_failed_ud(const void *obj, enum rc_op op)
{
    return rc_ud(obj, RC_OP_MSG_FAILED, (uint16_t)op);
}

/* Builds one event and posts it to every worker; the reply follows their acknowledgements. */
static void publish(struct rc_feed *f, struct feed_conn *fc, struct rc_event_spec *spec)
{
    struct rc_server *s = f->server;
    char id[48];

    if (!rc_http_channel_valid(spec->channel, spec->channel_len)) {
        reply_error(f, fc, "invalid channel name (1-128 bytes of A-Za-z0-9_.:@-)");
        return;
    }
    uint64_t seq = ++f->next_seq;
    if (!spec->id) {
        spec->id_len = (size_t)snprintf(id, sizeof(id), "%s-%lu", f->instance, (unsigned long)seq);
        spec->id = id;
    }
    /* Compressed here, once, so that no worker ever compresses for a subscriber. */
    spec->compress = f->cfg->ws_compression && spec->payload_len >= f->cfg->ws_compress_min_size;
    struct rc_event *ev = rc_event_new(spec, seq, s->nworkers);
    if (!ev || queue_pending(fc, ev, NULL) < 0) {
        free(ev);
        reply_error(f, fc, "out of memory");
        return;
    }
    ev->origin = fc;
    rc_stat_add(f->stats.published, 1);
    rc_stat_add(f->stats.pending, 1);
    for (unsigned i = 0; i < s->nworkers; i++)
        rc_ring_msg(&f->ring, rc_server_worker_ring(s, i), rc_ud(ev, RC_OP_EVENT, 0), 0,
                    msg_failed_ud(ev, RC_OP_EVENT));
}

static void cmd_publish(struct rc_feed *f, struct feed_conn *fc, const struct rc_resp_arg *argv,
                        size_t argc)
{
    struct rc_event_spec spec = {.channel = argv[1].ptr,
                                 .channel_len = argv[1].len,
                                 .payload = argv[2].ptr,
                                 .payload_len = argv[2].len};
    publish(f, fc, &spec);
}

/*
 * XPUBLISH channel payload [EVENT type] [ID id] [TEXT|BINARY]: options in any order, each at
 * most once. TEXT and BINARY choose the WebSocket opcode; without them a payload that is valid
 * UTF-8 goes as text. TEXT on a payload that is not UTF-8 is refused, since every client would
 * have to fail the connection on it (RFC 6455 section 8.1).
 */
static void cmd_xpublish(struct rc_feed *f, struct feed_conn *fc, const struct rc_resp_arg *argv,
                         size_t argc)
{
    struct rc_event_spec spec = {.channel = argv[1].ptr,
                                 .channel_len = argv[1].len,
                                 .payload = argv[2].ptr,
                                 .payload_len = argv[2].len};
    for (size_t i = 3; i < argc; i++) {
        const struct rc_resp_arg *v = i + 1 < argc ? &argv[i + 1] : NULL;
        if ((arg_is(&argv[i], "TEXT") || arg_is(&argv[i], "BINARY")) && !spec.ws_kind) {
            spec.ws_kind = arg_is(&argv[i], "TEXT") ? RC_EVENT_WS_TEXT : RC_EVENT_WS_BINARY;
        } else if (v && arg_is(&argv[i], "EVENT") && !spec.type && v->len >= 1 &&
                   v->len <= MAX_TYPE_LEN && rc_sse_field_valid(v->ptr, v->len)) {
            spec.type = v->ptr;
            spec.type_len = v->len;
            i++;
        } else if (v && arg_is(&argv[i], "ID") && !spec.id && v->len >= 1 && v->len <= MAX_ID_LEN &&
                   rc_sse_field_valid(v->ptr, v->len) && !memchr(v->ptr, ' ', v->len)) {
            /* No space: the envelope's header line separates the id from the channel by one. */
            spec.id = v->ptr;
            spec.id_len = v->len;
            i++;
        } else {
            reply_error(f, fc,
                        "XPUBLISH options are EVENT <1-64 bytes> and ID <1-128 bytes>, without "
                        "CR, LF or NUL (and no space in an ID), and TEXT or BINARY, each at most "
                        "once");
            return;
        }
    }
    if (spec.ws_kind == RC_EVENT_WS_TEXT && !rc_utf8_valid(spec.payload, spec.payload_len)) {
        reply_error(f, fc, "XPUBLISH TEXT needs a payload that is valid UTF-8");
        return;
    }
    publish(f, fc, &spec);
}

/*
 * Parses a connection id argument and checks that its worker exists; replies with the error
 * and returns false otherwise. A well-formed id whose connection is gone is not an error here:
 * only its worker can tell, and it answers 0.
 */
static bool conn_id_arg(struct rc_feed *f, struct feed_conn *fc, const struct rc_resp_arg *a,
                        struct rc_conn_id *id)
{
    if (rc_conn_id_parse(a->ptr, a->len, id) < 0) {
        reply_error(f, fc, "invalid connection id (expected <worker>.<index>.<generation>)");
        return false;
    }
    if (id->worker >= f->server->nworkers) {
        char msg[96];
        snprintf(msg, sizeof(msg), "invalid connection id: there is no worker %u",
                 (unsigned)id->worker);
        reply_error(f, fc, msg);
        return false;
    }
    return true;
}

/* Hands a SEND or CLOSE to the target connection's worker; the reply follows its answer. */
static void direct(struct rc_feed *f, struct feed_conn *fc, const struct rc_direct *spec,
                   const void *data)
{
    struct rc_direct *d = malloc(sizeof(*d) + spec->len);
    if (!d || queue_pending(fc, NULL, d) < 0) {
        free(d);
        reply_error(f, fc, "out of memory");
        return;
    }
    *d = *spec;
    d->origin = fc;
    d->result = 0;
    memcpy(d->data, data, spec->len);
    f->directs++;
    rc_ring_msg(&f->ring, rc_server_worker_ring(f->server, d->target.worker),
                rc_ud(d, RC_OP_DIRECT, 0), 0, msg_failed_ud(d, RC_OP_DIRECT));
}

/*
 * SEND conn-id payload [TEXT|BINARY]: one message to one connection. Without an option a payload
 * that is valid UTF-8 goes as text, as with XPUBLISH; TEXT on one that is not is refused.
 */
static void cmd_send(struct rc_feed *f, struct feed_conn *fc, const struct rc_resp_arg *argv,
                     size_t argc)
{
    struct rc_direct spec = {.kind = RC_DIRECT_SEND, .len = (uint32_t)argv[2].len};
    bool utf8 = rc_utf8_valid(argv[2].ptr, argv[2].len);

    if (!conn_id_arg(f, fc, &argv[1], &spec.target))
        return;
    spec.binary = !utf8;
    if (argc == 4) {
        if (arg_is(&argv[3], "BINARY")) {
            spec.binary = true;
        } else if (!arg_is(&argv[3], "TEXT")) {
            reply_error(f, fc, "SEND options are TEXT or BINARY");
            return;
        } else if (!utf8) {
            reply_error(f, fc, "SEND TEXT needs a payload that is valid UTF-8");
            return;
        }
    }
    direct(f, fc, &spec, argv[2].ptr);
}

/* CLOSE conn-id [code [reason]]: a Close frame with that status (1000 when none is given). */
static void cmd_close(struct rc_feed *f, struct feed_conn *fc, const struct rc_resp_arg *argv,
                      size_t argc)
{
    struct rc_direct spec = {.kind = RC_DIRECT_CLOSE, .code = 1000};
    const char *reason = "";

    if (!conn_id_arg(f, fc, &argv[1], &spec.target))
        return;
    if (argc >= 3) {
        const struct rc_resp_arg *c = &argv[2];
        unsigned code = 0;
        bool digits = c->len >= 1 && c->len <= 4;
        for (size_t i = 0; digits && i < c->len; i++) {
            digits = c->ptr[i] >= '0' && c->ptr[i] <= '9';
            code = code * 10 + (unsigned)(c->ptr[i] - '0');
        }
        if (!digits || !rc_direct_close_code_valid(code)) {
            reply_error(f, fc,
                        "close code must be 1000, 1001, 1003, 1007-1009, 1011-1014 or 3000-4999");
            return;
        }
        spec.code = (uint16_t)code;
    }
    if (argc == 4) {
        if (argv[3].len > RC_DIRECT_REASON_MAX || !rc_utf8_valid(argv[3].ptr, argv[3].len)) {
            reply_error(f, fc, "close reason must be valid UTF-8 of at most 123 bytes");
            return;
        }
        reason = argv[3].ptr;
        spec.len = (uint32_t)argv[3].len;
    }
    direct(f, fc, &spec, reason);
}

/* The reply Redis sends for each channel of a SUBSCRIBE or UNSUBSCRIBE. */
static void reply_pubsub(struct feed_conn *fc, const char *kind, const struct rc_resp_arg *channel)
{
    replyf(fc, "*3\r\n$%zu\r\n%s\r\n", strlen(kind), kind);
    if (channel)
        reply_bulk(fc, channel->ptr, channel->len);
    else
        reply(fc, "$-1\r\n", 5);
    replyf(fc, ":%u\r\n", (unsigned)fc->nsubs);
}

/*
 * SUBSCRIBE channel [channel ...]: the connection becomes a listener and gets every client
 * message sent upstream on those channels. Either every name is valid and each gets its reply,
 * or nothing changes and the command gets one error.
 */
static void cmd_subscribe(struct rc_feed *f, struct feed_conn *fc, const struct rc_resp_arg *argv,
                          size_t argc)
{
    for (size_t i = 1; i < argc; i++) {
        if (!rc_http_channel_valid(argv[i].ptr, argv[i].len)) {
            reply_error(f, fc, "invalid channel name (1-128 bytes of A-Za-z0-9_.:@-)");
            return;
        }
    }
    for (size_t i = 1; i < argc; i++) {
        if (sub_add(f, fc, argv[i].ptr, argv[i].len) < 0) {
            reply_error(f, fc, "out of memory");
            return;
        }
        reply_pubsub(fc, "subscribe", &argv[i]);
    }
}

/*
 * UNSUBSCRIBE [channel ...]: as Redis, each named channel gets a reply whether or not it was
 * subscribed, and without names every subscription ends (one reply with a null channel when
 * there was none). A connection that no longer listens is a publisher again, idle clock and all.
 */
static void cmd_unsubscribe(struct rc_feed *f, struct feed_conn *fc, const struct rc_resp_arg *argv,
                            size_t argc)
{
    bool was_listening = fc->nsubs > 0;

    if (argc == 1 && fc->nsubs == 0)
        reply_pubsub(fc, "unsubscribe", NULL);
    while (argc == 1 && fc->nsubs) {
        struct sub *s = rc_container_of(fc->subs.next, struct sub, clink);
        struct rc_feed_topic *t = s->topic;
        /* The name is copied out: removing the last listener frees the topic that holds it. */
        char name[MAX_CHANNEL];
        struct rc_resp_arg a = {name, t->name_len};
        memcpy(name, t->name, t->name_len);
        sub_remove(f, s);
        reply_pubsub(fc, "unsubscribe", &a);
    }
    for (size_t i = 1; i < argc; i++) {
        struct rc_feed_topic *t =
            topic_find(f, argv[i].ptr, argv[i].len, rc_channel_hash(argv[i].ptr, argv[i].len));
        struct sub *s = t ? sub_find(t, fc) : NULL;
        if (s)
            sub_remove(f, s);
        reply_pubsub(fc, "unsubscribe", &argv[i]);
    }
    if (was_listening && fc->nsubs == 0 && !(fc->flags & (FC_CLOSE_AFTER | FC_GONE))) {
        fc->last_ms = now_ms();
        rc_link_insert_tail(&f->idle, &fc->ilink);
    }
}

/* PING [message]; in subscribed mode the reply is an array, as Redis sends it. */
static void cmd_ping(struct rc_feed *f, struct feed_conn *fc, const struct rc_resp_arg *argv,
                     size_t argc)
{
    if (fc->nsubs) {
        reply(fc, "*2\r\n$4\r\npong\r\n", 14);
        reply_bulk(fc, argc == 2 ? argv[1].ptr : "", argc == 2 ? argv[1].len : 0);
    } else if (argc == 1) {
        reply(fc, "+PONG\r\n", 7);
    } else {
        reply_bulk(fc, argv[1].ptr, argv[1].len);
    }
}

static void cmd_info(struct rc_feed *f, struct feed_conn *fc, const struct rc_resp_arg *argv,
                     size_t argc)
{
    /* Static: the feed is one thread, and a thousand workers' lines do not fit a stack frame. */
    static char text[64 * 1024];
    size_t n = rc_server_info(f->server, text, sizeof(text));
    reply_bulk(fc, text, n);
}

static void cmd_quit(struct rc_feed *f, struct feed_conn *fc, const struct rc_resp_arg *argv,
                     size_t argc)
{
    reply(fc, "+OK\r\n", 5);
    fc->flags |= FC_CLOSE_AFTER;
}

static void cmd_command(struct rc_feed *f, struct feed_conn *fc, const struct rc_resp_arg *argv,
                        size_t argc)
{
    /* redis-cli asks for command docs when it starts interactively; it needs none. */
    reply(fc, "*0\r\n", 4);
}

struct command {
    const char *name; /* lower case, as error messages quote it; matched in any case */
    void (*run)(struct rc_feed *f, struct feed_conn *fc, const struct rc_resp_arg *argv,
                size_t argc);
    size_t min_argc, max_argc; /* counting the command name */
    bool pubsub;               /* allowed in subscribed mode */
};

static const struct command commands[] = {
    {"publish", cmd_publish, 3, 3, false},
    {"xpublish", cmd_xpublish, 3, MAX_ARGS, false},
    {"send", cmd_send, 3, 4, false},
    {"close", cmd_close, 2, 4, false},
    {"subscribe", cmd_subscribe, 2, MAX_ARGS, true},
    {"unsubscribe", cmd_unsubscribe, 1, MAX_ARGS, true},
    {"ping", cmd_ping, 1, 2, true},
    {"info", cmd_info, 1, MAX_ARGS, false},
    {"quit", cmd_quit, 1, MAX_ARGS, true},
    {"command", cmd_command, 1, MAX_ARGS, false},
};

/* Writes a command name into an error message, with anything unprintable replaced. */
static void unknown_command(struct rc_feed *f, struct feed_conn *fc, const struct rc_resp_arg *a)
{
    char name[65], msg[128];
    size_t n = a->len < 64 ? a->len : 64;
    for (size_t i = 0; i < n; i++)
        name[i] = (a->ptr[i] > 32 && a->ptr[i] < 127 && a->ptr[i] != '\'') ? a->ptr[i] : '?';
    name[n] = '\0';
    snprintf(msg, sizeof(msg), "unknown command '%s'", name);
    reply_error(f, fc, msg);
}

/* Runs one command after the checks Redis makes, in its order: name, arity, pub/sub context. */
static void execute(struct rc_feed *f, struct feed_conn *fc, const struct rc_resp_arg *argv,
                    size_t argc)
{
    const struct command *c = NULL;
    char msg[128];

    rc_stat_add(f->stats.commands, 1);
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]) && !c; i++)
        if (arg_is(&argv[0], commands[i].name))
            c = &commands[i];
    if (!c) {
        unknown_command(f, fc, &argv[0]);
    } else if (argc < c->min_argc || argc > c->max_argc) {
        snprintf(msg, sizeof(msg), "wrong number of arguments for '%s' command", c->name);
        reply_error(f, fc, msg);
    } else if (fc->nsubs && !c->pubsub) {
        snprintf(msg, sizeof(msg),
                 "Can't execute '%s': only (UN)SUBSCRIBE / PING / QUIT are allowed in this "
                 "context",
                 c->name);
        reply_error(f, fc, msg);
    } else {
        c->run(f, fc, argv, argc);
    }
}

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
            replyf(fc, "-ERR Protocol error: %s\r\n", err);
            fc->flags |= FC_CLOSE_AFTER;
            break;
        }
        consumed += (size_t)n;
        if (argc > 0) {
            execute(f, fc, argv, argc);
            executed = true;
        }
    }
    if (executed && linked(&fc->ilink)) {
        /* The idle list stays ordered by last command: the active move to its tail. */
        fc->last_ms = now_ms();
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
    fc->last_ms = now_ms();
    rc_link_insert_tail(&f->idle, &fc->ilink);
    rc_stat_add(f->stats.connections, 1);
    if (rc_stat_get(f->stats.connections) > f->cfg->max_feed_connections) {
        rc_stat_add(f->stats.rejected, 1);
        reply(fc, "-ERR max feed connections reached\r\n", 35);
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
    struct rc_feed_topic *t =
        topic_find(f, up->data, up->channel_len, rc_channel_hash(up->data, up->channel_len));
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
            struct feed_conn *fc = rc_container_of(l, struct sub, tlink)->fc;
            if (fc->flags & (FC_GONE | FC_CLOSE_AFTER))
                continue;
            if (limit && unsent(fc) + len > limit) {
                /* Cut after the walk: cutting frees the subscription nodes walked here. */
                fc->cut_next = cut;
                cut = fc;
                continue;
            }
            reply(fc, head, n);
            reply(fc, payload, up->payload_len);
            reply(fc, "\r\n", 2);
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
                rc_ud(up, RC_OP_UPSTREAM_DONE, 0), 0, msg_failed_ud(up, RC_OP_UPSTREAM_DONE));
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
    now = now_ms();
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
    uint64_t now = now_ms(), due = fc->last_ms + timeout;
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
    rc_assert(f->ntopics == 0);
    free(f->topics);
    f->topics = NULL;
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
