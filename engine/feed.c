/*
 * The feed socket: RESP2 commands from publishers. See include/ringcast/feed.h.
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
#include "ringcast/utf8.h"

#define MAX_ARGS       16
#define MAX_INLINE     (64 * 1024)
#define RECV_CHUNK     (16 * 1024)
#define MAX_TYPE_LEN   64
#define MAX_ID_LEN     128
#define MAX_UNSENT_OUT (1024 * 1024) /* reply bytes a publisher may leave unread */

/* A growable byte buffer. */
struct buf {
    char *p; /* owned */
    size_t len;
    size_t cap;
};

/* A publish whose reply waits for every worker; stage_off is where later replies begin. */
struct pending {
    struct rc_event *ev; /* holds the feed's reference */
    size_t stage_off;
};

enum {
    FC_RECV = 1 << 0,        /* a receive is in flight into `in` */
    FC_SEND = 1 << 1,        /* a send of `wire` is in flight */
    FC_CLOSE_AFTER = 1 << 2, /* close once every reply is sent (QUIT, protocol error) */
    FC_GONE = 1 << 3,        /* the peer has gone: replies are dropped */
    FC_PAUSED = 1 << 4,      /* on the paused list until pending events drain */
};

/*
 * One publisher connection. Replies leave in command order: a publish's reply is known only
 * when its workers acknowledge, so replies to the commands behind it wait in `stage`.
 */
struct feed_conn {
    struct rc_link link;  /* in rc_feed.conns */
    struct rc_link plink; /* in rc_feed.paused while FC_PAUSED */
    int fd;
    unsigned flags;
    struct buf in;   /* received bytes not yet parsed */
    struct buf out;  /* replies ready to send */
    struct buf wire; /* the bytes of the send in flight; swapped with out */
    size_t wire_off;
    struct buf stage;  /* replies that come after q's oldest publish */
    size_t stage_done; /* stage bytes already moved to out */
    struct pending *q; /* ring of publishes awaiting acknowledgement, owned */
    size_t q_head, q_len, q_cap;
};

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

/*
 * Moves replies whose publishes every worker has acknowledged into `out`, in order.
 *
 * An event counts as acknowledged once its RC_OP_ACK has been handled here, which clears its
 * origin, and not as soon as its pending count reaches zero: the last worker posts the ACK
 * after that, so releasing (and maybe freeing) the event on the count alone would leave its
 * ACK on the way to an event that is gone.
 */
static void release_acked(struct rc_feed *f, struct feed_conn *fc)
{
    while (fc->q_len) {
        struct pending *p = &fc->q[fc->q_head];
        if (p->ev->origin)
            break;
        unsigned long handed = atomic_load_explicit(&p->ev->handed, memory_order_relaxed);
        if (!(fc->flags & FC_GONE)) {
            if (buf_append(&fc->out, fc->stage.p + fc->stage_done, p->stage_off - fc->stage_done) <
                0)
                fc->flags |= FC_GONE | FC_CLOSE_AFTER;
            fc->stage_done = p->stage_off;
        }
        rc_event_put(p->ev);
        rc_stat_add(f->stats.pending, -1);
        fc->q_head = (fc->q_head + 1) % fc->q_cap;
        fc->q_len--;
        if (!(fc->flags & FC_GONE)) {
            char num[32];
            int n = snprintf(num, sizeof(num), ":%lu\r\n", handed);
            if (buf_append(&fc->out, num, (size_t)n) < 0)
                fc->flags |= FC_GONE | FC_CLOSE_AFTER;
        }
    }
    if (fc->q_len == 0 && fc->stage.len) {
        if (!(fc->flags & FC_GONE) &&
            buf_append(&fc->out, fc->stage.p + fc->stage_done, fc->stage.len - fc->stage_done) < 0)
            fc->flags |= FC_GONE | FC_CLOSE_AFTER;
        fc->stage.len = 0;
        fc->stage_done = 0;
    }
}

/* Resumes publishers that were paused while max_pending events awaited their workers. */
static void resume_paused(struct rc_feed *f)
{
    while (!rc_link_empty(&f->paused) && rc_stat_get(f->stats.pending) < f->cfg->max_pending) {
        struct feed_conn *fc = rc_container_of(f->paused.next, struct feed_conn, plink);
        rc_link_remove(&fc->plink);
        fc->flags &= ~FC_PAUSED;
        process(f, fc);
    }
}

static void on_ack(struct rc_feed *f, struct rc_event *ev)
{
    struct feed_conn *fc = ev->origin;
    ev->origin = NULL;
    release_acked(f, fc);
    flush(f, fc);
    conn_finish(f, fc);
    resume_paused(f);
}

static bool arg_is(const struct rc_resp_arg *a, const char *word)
{
    return a->len == strlen(word) && strncasecmp(a->ptr, word, a->len) == 0;
}

static int queue_pending(struct feed_conn *fc, struct rc_event *ev)
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
    fc->q[(fc->q_head + fc->q_len) % fc->q_cap] = (struct pending){ev, fc->stage.len};
    fc->q_len++;
    return 0;
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
    if (!ev || queue_pending(fc, ev) < 0) {
        free(ev);
        reply_error(f, fc, "out of memory");
        return;
    }
    ev->origin = fc;
    rc_stat_add(f->stats.published, 1);
    rc_stat_add(f->stats.pending, 1);
    for (unsigned i = 0; i < s->nworkers; i++)
        rc_ring_msg(&f->ring, rc_server_worker_ring(s, i), rc_ud(ev, RC_OP_EVENT, 0), 0,
                    rc_ud(ev, RC_OP_MSG_FAILED, (uint16_t)i));
}

/*
 * XPUBLISH channel payload [EVENT type] [ID id] [TEXT|BINARY]: options in any order, each at
 * most once. TEXT and BINARY choose the WebSocket opcode; without them a payload that is valid
 * UTF-8 goes as text. TEXT on a payload that is not UTF-8 is refused, since every client would
 * have to fail the connection on it (RFC 6455 section 8.1).
 */
static void xpublish(struct rc_feed *f, struct feed_conn *fc, const struct rc_resp_arg *argv,
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
                   rc_sse_field_valid(v->ptr, v->len)) {
            spec.id = v->ptr;
            spec.id_len = v->len;
            i++;
        } else {
            reply_error(f, fc,
                        "XPUBLISH options are EVENT <1-64 bytes> and ID <1-128 bytes>, without "
                        "CR, LF or NUL, and TEXT or BINARY, each at most once");
            return;
        }
    }
    if (spec.ws_kind == RC_EVENT_WS_TEXT && !rc_utf8_valid(spec.payload, spec.payload_len)) {
        reply_error(f, fc, "XPUBLISH TEXT needs a payload that is valid UTF-8");
        return;
    }
    publish(f, fc, &spec);
}

static void info(struct rc_feed *f, struct feed_conn *fc)
{
    /* Static: the feed is one thread, and a thousand workers' lines do not fit a stack frame. */
    static char text[64 * 1024];
    size_t n = rc_server_info(f->server, text, sizeof(text));
    reply_bulk(fc, text, n);
}

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

static void execute(struct rc_feed *f, struct feed_conn *fc, const struct rc_resp_arg *argv,
                    size_t argc)
{
    const struct rc_resp_arg *cmd = &argv[0];
    rc_stat_add(f->stats.commands, 1);
    if (arg_is(cmd, "PUBLISH")) {
        if (argc != 3) {
            reply_error(f, fc, "wrong number of arguments for 'publish' command");
            return;
        }
        struct rc_event_spec spec = {.channel = argv[1].ptr,
                                     .channel_len = argv[1].len,
                                     .payload = argv[2].ptr,
                                     .payload_len = argv[2].len};
        publish(f, fc, &spec);
    } else if (arg_is(cmd, "XPUBLISH")) {
        if (argc < 3) {
            reply_error(f, fc, "wrong number of arguments for 'xpublish' command");
            return;
        }
        xpublish(f, fc, argv, argc);
    } else if (arg_is(cmd, "PING")) {
        if (argc == 1)
            reply(fc, "+PONG\r\n", 7);
        else if (argc == 2)
            reply_bulk(fc, argv[1].ptr, argv[1].len);
        else
            reply_error(f, fc, "wrong number of arguments for 'ping' command");
    } else if (arg_is(cmd, "INFO")) {
        info(f, fc);
    } else if (arg_is(cmd, "QUIT")) {
        reply(fc, "+OK\r\n", 5);
        fc->flags |= FC_CLOSE_AFTER;
    } else if (arg_is(cmd, "COMMAND")) {
        /* redis-cli asks for command docs when it starts interactively; it needs none. */
        reply(fc, "*0\r\n", 4);
    } else {
        unknown_command(f, fc, cmd);
    }
}

/*
 * Executes every complete command in `in`. Stops early when too many events are pending, and
 * leaves the rest of the bytes for when the workers have caught up.
 */
static void process(struct rc_feed *f, struct feed_conn *fc)
{
    struct rc_resp_limits lim = {MAX_ARGS, f->cfg->max_payload, MAX_INLINE};
    struct rc_resp_arg argv[MAX_ARGS];
    size_t consumed = 0;

    while (!(fc->flags & (FC_CLOSE_AFTER | FC_GONE))) {
        size_t argc = 0;
        const char *err = NULL;
        if (rc_stat_get(f->stats.pending) >= f->cfg->max_pending) {
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
        if (argc > 0)
            execute(f, fc, argv, argc);
    }
    memmove(fc->in.p, fc->in.p + consumed, fc->in.len - consumed);
    fc->in.len -= consumed;
    flush(f, fc);
    arm_recv(f, fc);
    conn_finish(f, fc);
}

/* Frees a connection's memory; its descriptor is the caller's to close. */
static void conn_free(struct feed_conn *fc)
{
    free(fc->in.p);
    free(fc->out.p);
    free(fc->wire.p);
    free(fc->stage.p);
    free(fc->q);
    free(fc);
}

/* Frees a connection once its peer is gone or its last reply is out, and nothing is pending. */
static void conn_finish(struct rc_feed *f, struct feed_conn *fc)
{
    if (!(fc->flags & (FC_GONE | FC_CLOSE_AFTER)) || (fc->flags & (FC_RECV | FC_SEND)))
        return;
    if (fc->q_len || (!(fc->flags & FC_GONE) && fc->out.len))
        return;
    if (fc->flags & FC_PAUSED)
        rc_link_remove(&fc->plink);
    rc_link_remove(&fc->link);
    rc_ring_close(&f->ring, fc->fd);
    conn_free(fc);
    rc_stat_add(f->stats.connections, -1);
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
    rc_link_insert_tail(&f->conns, &fc->link);
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
        /* The peer has gone. Publishes already posted still reach subscribers. */
        fc->flags |= FC_GONE;
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
    flush(f, fc);
    /* Replies drained: a publisher held back for not reading them may go on. */
    if (!(fc->flags & (FC_RECV | FC_PAUSED)))
        process(f, fc);
    else
        conn_finish(f, fc);
}

static void on_msg_failed(struct rc_feed *f, struct rc_event *ev, int res)
{
    rc_stat_add(f->stats.msg_failures, 1);
    rc_error("could not hand an event to a worker: %s", strerror(-res));
    rc_event_put(ev);
    if (atomic_fetch_sub_explicit(&ev->pending, 1, memory_order_acq_rel) == 1)
        on_ack(f, ev);
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
    case RC_OP_MSG_FAILED:
        on_msg_failed(f, ptr, cqe->res);
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

/* Releases every connection at exit; events still pending lose only the feed's reference. */
static void feed_cleanup(struct rc_feed *f)
{
    while (!rc_link_empty(&f->conns)) {
        struct feed_conn *fc = rc_container_of(f->conns.next, struct feed_conn, link);
        for (size_t i = 0; i < fc->q_len; i++)
            rc_event_put(fc->q[(fc->q_head + i) % fc->q_cap].ev);
        rc_link_remove(&fc->link);
        close(fc->fd);
        conn_free(fc);
    }
    close(f->listen_fd);
    unlink(f->cfg->socket);
}

static void *feed_main(void *arg)
{
    struct rc_feed *f = arg;
    unsigned cq = 4096;

    rc_log_set_thread("feed");
    while (cq < 2 * f->cfg->max_pending && cq < 65536)
        cq *= 2;
    f->init_error = rc_ring_init(&f->ring, 1024, cq, 0);
    if (f->init_error < 0)
        rc_error("feed io_uring setup failed: %s", strerror(-f->init_error));
    if (!rc_server_thread_ready(f->server))
        return NULL;
    rc_ring_accept(&f->ring, f->listen_fd, rc_ud(f, RC_OP_ACCEPT, 0));
    while (!f->stopping) {
        int ret = rc_ring_run(&f->ring, 1000, on_cqe, f);
        rc_assert(ret >= 0);
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
