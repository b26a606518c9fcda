/*
 * Tests for the feed's side of talking back, against the real feed thread and fake workers.
 *
 * The feed runs as in the daemon, on its own thread and ring, with its socket in /tmp. The
 * workers are two rings owned by the test thread, which plays their part of the protocol by
 * hand: it acknowledges events, receives SEND and CLOSE and answers them when and how a test
 * wants, and posts client messages for the listeners. That shows what the feed does on its own:
 * the exact bytes pushed to listeners, reply order across late and reordered answers, cutting
 * slow listeners and idle publishers, and a connection that goes while its commands are out.
 */
#include "ringcast/feed.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "ringcast/server.h"
#include "ringcast/upstream.h"
#include "test.h"

#define NWORKERS 2
#define MAX_HELD 1024

/* The server around the feed, and what the fake workers have received. */
struct fake {
    struct rc_server *s;
    struct rc_config cfg;                /* the server's live configuration */
    struct rc_direct *directs[MAX_HELD]; /* received and not yet answered, in arrival order */
    unsigned direct_worker[MAX_HELD];    /* the ring each arrived on */
    size_t ndirects;
    struct rc_upstream *done[MAX_HELD]; /* client messages posted back, in order */
    unsigned done_worker[MAX_HELD];
    size_t ndone;
    int failures; /* ring messages that failed, or completions nobody expected */
};

/* A test's client connection and the bytes it has received but not yet checked. */
struct client {
    int fd;
    size_t len;
    bool eof;
    char buf[1 << 20];
};

struct worker_cb {
    struct fake *fx;
    unsigned worker;
};

static void on_worker_cqe(void *arg, const struct rc_cqe *cqe)
{
    struct worker_cb *cb = arg;
    struct fake *fx = cb->fx;
    struct rc_ring *ring = &fx->s->workers[cb->worker].ring;
    void *ptr = rc_ud_ptr(cqe->ud);

    switch (rc_ud_op(cqe->ud)) {
    case RC_OP_EVENT: {
        /* A worker without subscribers: it hands the event to nobody, as on_event() does. */
        struct rc_event *ev = ptr;
        rc_event_put(ev);
        if (atomic_fetch_sub_explicit(&ev->pending, 1, memory_order_acq_rel) == 1)
            rc_ring_msg(ring, rc_server_feed_ring(fx->s), rc_ud(ev, RC_OP_ACK, 0), 0,
                        rc_ud(ev, RC_OP_MSG_FAILED, 0));
        break;
    }
    case RC_OP_DIRECT:
        if (fx->ndirects == MAX_HELD) {
            fx->failures++;
            break;
        }
        fx->direct_worker[fx->ndirects] = cb->worker;
        fx->directs[fx->ndirects++] = ptr;
        break;
    case RC_OP_UPSTREAM_DONE:
        if (fx->ndone == MAX_HELD) {
            fx->failures++;
            free(ptr);
            break;
        }
        fx->done_worker[fx->ndone] = cb->worker;
        fx->done[fx->ndone++] = ptr;
        break;
    case RC_OP_IGNORE:
        break;
    default:
        fx->failures++;
        break;
    }
}

/* Lets both fake workers handle what has arrived, waiting up to a millisecond on each. */
static void pump(struct fake *fx)
{
    for (unsigned i = 0; i < NWORKERS; i++) {
        struct worker_cb cb = {fx, i};
        rc_ring_run(&fx->s->workers[i].ring, 1, on_worker_cqe, &cb);
    }
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Pumps the workers for ms milliseconds. */
static void pump_for(struct fake *fx, unsigned ms)
{
    uint64_t end = now_ms() + ms;
    while (now_ms() < end)
        pump(fx);
}

/* Starts a feed with these settings; the server is laid out as rc_server_run() lays it out. */
static struct rc_server *start(struct fake *fx, uint32_t idle_ms, uint64_t max_sub_buffer)
{
    struct rc_server *s = aligned_alloc(64, (sizeof(*s) + 63) / 64 * 64);
    size_t wsize = (NWORKERS * sizeof(struct rc_worker) + 63) / 64 * 64;

    memset(fx, 0, sizeof(*fx));
    memset(s, 0, sizeof(*s));
    rc_config_defaults(&fx->cfg);
    s->cfg = &fx->cfg;
    static int started;
    /* A socket of its own per test: a failed test leaves its feed running. */
    snprintf(fx->cfg.socket, sizeof(fx->cfg.socket), "/tmp/rc-test-feed-%d-%d.sock", (int)getpid(),
             ++started);
    fx->cfg.feed_idle_timeout_ms = idle_ms;
    fx->cfg.max_subscriber_buffer = max_sub_buffer;
    s->nworkers = NWORKERS;
    s->workers = aligned_alloc(64, wsize);
    memset(s->workers, 0, wsize);
    for (unsigned i = 0; i < NWORKERS; i++)
        if (rc_ring_init(&s->workers[i].ring, 256, 1024, 0) < 0)
            return NULL;
    pthread_barrier_init(&s->ready, NULL, 2);
    pthread_barrier_init(&s->go, NULL, 2);
    s->start_ok = 1;
    s->feed.server = s;
    if (rc_feed_listen(&s->feed, &fx->cfg) < 0 || rc_feed_start(&s->feed) < 0)
        return NULL;
    pthread_barrier_wait(&s->ready);
    pthread_barrier_wait(&s->go);
    fx->s = s;
    return s->feed.init_error < 0 ? NULL : s;
}

/* Stops the feed thread, frees what the fake workers hold, and frees the server. */
static void stop(struct fake *fx)
{
    struct rc_server *s = fx->s;
    rc_ring_msg(&s->workers[0].ring, rc_server_feed_ring(s), rc_ud(NULL, RC_OP_STOP, 0), 0,
                rc_ud(NULL, RC_OP_IGNORE, 0));
    rc_ring_submit(&s->workers[0].ring);
    pthread_join(s->feed.thread, NULL);
    pump(fx);
    for (size_t i = 0; i < fx->ndone; i++)
        free(fx->done[i]);
    /* A direct never answered stays allocated by design (see feed_cleanup()); free it here. */
    for (size_t i = 0; i < fx->ndirects; i++)
        free(fx->directs[i]);
    rc_ring_exit(&s->feed.ring);
    for (unsigned i = 0; i < NWORKERS; i++)
        rc_ring_exit(&s->workers[i].ring);
    pthread_barrier_destroy(&s->ready);
    pthread_barrier_destroy(&s->go);
    free(s->workers);
    free(s);
}

static struct client *client_open(struct fake *fx)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    struct client *c = calloc(1, sizeof(*c));

    snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", fx->cfg.socket);
    c->fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (connect(c->fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
        close(c->fd);
        free(c);
        return NULL;
    }
    return c;
}

static void client_close(struct client *c)
{
    if (c) {
        close(c->fd);
        free(c);
    }
}

static void client_send(struct client *c, const char *s)
{
    size_t n = strlen(s);
    if (write(c->fd, s, n) != (ssize_t)n)
        fprintf(stderr, "short write to the feed\n");
}

/* Reads what has arrived, pumping the workers, until `want` bytes are buffered or ms pass. */
static void client_wait(struct fake *fx, struct client *c, size_t want, unsigned ms)
{
    uint64_t end = now_ms() + ms;
    while (c->len < want && !c->eof && now_ms() < end) {
        pump(fx);
        ssize_t n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, MSG_DONTWAIT);
        if (n > 0)
            c->len += (size_t)n;
        else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK))
            c->eof = true;
    }
}

/* Whether the next bytes the client receives are exactly `s`; they are consumed. */
static bool expect(struct fake *fx, struct client *c, const char *s, size_t n)
{
    client_wait(fx, c, n, 3000);
    if (c->len < n || memcmp(c->buf, s, n) != 0) {
        fprintf(stderr, "expected \"%.*s\"\n     got \"%.*s\"\n", (int)n, s, (int)c->len, c->buf);
        return false;
    }
    memmove(c->buf, c->buf + n, c->len - n);
    c->len -= n;
    return true;
}

#define EXPECT(fx, c, lit) CHECK(expect((fx), (c), (lit), sizeof(lit) - 1))

/* Whether nothing more arrives within ms. */
static bool quiet(struct fake *fx, struct client *c, unsigned ms)
{
    client_wait(fx, c, c->len + 1, ms);
    if (c->len)
        fprintf(stderr, "unexpected \"%.*s\"\n", (int)c->len, c->buf);
    return c->len == 0;
}

/* Whether the feed closes the client's connection within ms (after any bytes still coming). */
static bool closed_by_feed(struct fake *fx, struct client *c, unsigned ms)
{
    uint64_t end = now_ms() + ms;
    while (!c->eof && now_ms() < end) {
        c->len = 0;
        client_wait(fx, c, sizeof(c->buf), 10);
    }
    return c->eof;
}

/* Posts a client message from `worker` as a worker does. */
static void post_upstream(struct fake *fx, unsigned worker, const char *channel, const char *id,
                          const void *payload, size_t len)
{
    size_t clen = strlen(channel);
    struct rc_upstream *up = calloc(1, sizeof(*up) + clen + len);
    up->worker = worker;
    up->channel_len = (uint16_t)clen;
    up->id_len = (uint8_t)strlen(id);
    up->payload_len = (uint32_t)len;
    memcpy(up->id, id, up->id_len);
    memcpy(up->data, channel, clen);
    memcpy(up->data + clen, payload, len);
    struct rc_ring *ring = &fx->s->workers[worker].ring;
    rc_ring_msg(ring, rc_server_feed_ring(fx->s), rc_ud(up, RC_OP_UPSTREAM, 0), 0,
                rc_ud(up, RC_OP_MSG_FAILED, 0));
    rc_ring_submit(ring);
}

/* Waits until n client messages have come back to their workers. */
static bool wait_done(struct fake *fx, size_t n)
{
    uint64_t end = now_ms() + 3000;
    while (fx->ndone < n && now_ms() < end)
        pump(fx);
    return fx->ndone >= n;
}

static bool wait_directs(struct fake *fx, size_t n)
{
    uint64_t end = now_ms() + 3000;
    while (fx->ndirects < n && now_ms() < end)
        pump(fx);
    return fx->ndirects >= n;
}

/* The position among the held directs of the one for connection worker.index; -1 if none. */
static int held(const struct fake *fx, uint32_t worker, uint32_t index)
{
    for (size_t i = 0; i < fx->ndirects; i++)
        if (fx->directs[i] && fx->directs[i]->target.worker == worker &&
            fx->directs[i]->target.index == index)
            return (int)i;
    return -1;
}

/* Answers the i-th held direct with `result`, as the worker side does. */
static void answer(struct fake *fx, size_t i, int result)
{
    struct rc_direct *d = fx->directs[i];
    struct rc_ring *ring = &fx->s->workers[fx->direct_worker[i]].ring;
    d->result = result;
    rc_ring_msg(ring, rc_server_feed_ring(fx->s), rc_ud(d, RC_OP_DIRECT_DONE, 0), 0,
                rc_ud(d, RC_OP_MSG_FAILED, 0));
    rc_ring_submit(ring);
    fx->directs[i] = NULL;
}

/* Waits until a feed statistic reaches a value. */
#define WAIT_STAT(fx, field, value)                                                                \
    do {                                                                                           \
        uint64_t end_ = now_ms() + 3000;                                                           \
        while (rc_stat_get((fx)->s->feed.stats.field) != (value) && now_ms() < end_)               \
            pump(fx);                                                                              \
        CHECK_EQ(rc_stat_get((fx)->s->feed.stats.field), (value));                                 \
    } while (0)

TEST(subscribe_replies_like_redis)
{
    struct fake fx;
    CHECK(start(&fx, 0, 0));
    struct client *c = client_open(&fx);
    CHECK(c);

    client_send(c, "SUBSCRIBE a b a\r\n");
    EXPECT(&fx, c, "*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n");
    EXPECT(&fx, c, "*3\r\n$9\r\nsubscribe\r\n$1\r\nb\r\n:2\r\n");
    EXPECT(&fx, c, "*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:2\r\n");
    CHECK_EQ(rc_stat_get(fx.s->feed.stats.listeners), 1);
    client_send(c, "PING\r\nPING hi\r\nPUBLISH a x\r\nNOPE\r\nPING 1 2\r\n");
    EXPECT(&fx, c, "*2\r\n$4\r\npong\r\n$0\r\n\r\n");
    EXPECT(&fx, c, "*2\r\n$4\r\npong\r\n$2\r\nhi\r\n");
    EXPECT(&fx, c,
           "-ERR Can't execute 'publish': only (UN)SUBSCRIBE / PING / QUIT are allowed in this "
           "context\r\n");
    EXPECT(&fx, c, "-ERR unknown command 'NOPE'\r\n");
    EXPECT(&fx, c, "-ERR wrong number of arguments for 'ping' command\r\n");
    client_send(c, "SUBSCRIBE ok bad/name\r\nUNSUBSCRIBE a zz\r\nUNSUBSCRIBE\r\nUNSUBSCRIBE\r\n");
    EXPECT(&fx, c, "-ERR invalid channel name (1-128 bytes of A-Za-z0-9_.:@-)\r\n");
    EXPECT(&fx, c, "*3\r\n$11\r\nunsubscribe\r\n$1\r\na\r\n:1\r\n");
    EXPECT(&fx, c, "*3\r\n$11\r\nunsubscribe\r\n$2\r\nzz\r\n:1\r\n");
    EXPECT(&fx, c, "*3\r\n$11\r\nunsubscribe\r\n$1\r\nb\r\n:0\r\n");
    EXPECT(&fx, c, "*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n");
    CHECK_EQ(rc_stat_get(fx.s->feed.stats.listeners), 0);
    /* Out of subscribed mode, everything is allowed again. */
    client_send(c, "PING\r\nPUBLISH a x\r\nSUBSCRIBE\r\n");
    EXPECT(&fx, c, "+PONG\r\n:0\r\n");
    EXPECT(&fx, c, "-ERR wrong number of arguments for 'subscribe' command\r\n");
    CHECK_EQ(fx.s->feed.topics.n, 0);
    client_close(c);
    CHECK_EQ(fx.failures, 0);
    stop(&fx);
}

TEST(upstream_pushed_to_each_listener_and_posted_back)
{
    struct fake fx;
    CHECK(start(&fx, 0, 0));
    struct client *a = client_open(&fx), *b = client_open(&fx), *p = client_open(&fx);
    CHECK(a && b && p);

    client_send(a, "SUBSCRIBE chat other\r\n");
    EXPECT(&fx, a, "*3\r\n$9\r\nsubscribe\r\n$4\r\nchat\r\n:1\r\n");
    EXPECT(&fx, a, "*3\r\n$9\r\nsubscribe\r\n$5\r\nother\r\n:2\r\n");
    client_send(b, "SUBSCRIBE chat\r\n");
    EXPECT(&fx, b, "*3\r\n$9\r\nsubscribe\r\n$4\r\nchat\r\n:1\r\n");
    CHECK_EQ(rc_stat_get(fx.s->feed.stats.listeners), 2);

    post_upstream(&fx, 1, "chat", "1.5.3", "hello", 5);
    EXPECT(&fx, a, "*3\r\n$7\r\nmessage\r\n$4\r\nchat\r\n$11\r\n1.5.3 hello\r\n");
    EXPECT(&fx, b, "*3\r\n$7\r\nmessage\r\n$4\r\nchat\r\n$11\r\n1.5.3 hello\r\n");
    CHECK(wait_done(&fx, 1));
    CHECK_EQ(fx.done_worker[0], 1);
    CHECK_EQ(fx.done[0]->listeners, 2);

    /* Binary payloads go through byte for byte, CR, LF and NUL included. */
    post_upstream(&fx, 0, "other", "0.0.65535", "a\r\n\0b", 5);
    EXPECT(&fx, a, "*3\r\n$7\r\nmessage\r\n$5\r\nother\r\n$15\r\n0.0.65535 a\r\n\0b\r\n");
    CHECK(wait_done(&fx, 2));
    CHECK_EQ(fx.done_worker[1], 0);
    CHECK_EQ(fx.done[1]->listeners, 1);

    post_upstream(&fx, 0, "nobody", "0.1.1", "", 0);
    CHECK(wait_done(&fx, 3));
    CHECK_EQ(fx.done[2]->listeners, 0);
    CHECK_EQ(rc_stat_get(fx.s->feed.stats.upstream_messages), 3);
    CHECK_EQ(rc_stat_get(fx.s->feed.stats.upstream_unheard), 1);

    /* A publisher is not a listener; an unsubscribed or closed one is not either. */
    client_send(a, "UNSUBSCRIBE chat\r\n");
    EXPECT(&fx, a, "*3\r\n$11\r\nunsubscribe\r\n$4\r\nchat\r\n:1\r\n");
    post_upstream(&fx, 1, "chat", "1.5.3", "again", 5);
    EXPECT(&fx, b, "*3\r\n$7\r\nmessage\r\n$4\r\nchat\r\n$11\r\n1.5.3 again\r\n");
    CHECK(wait_done(&fx, 4));
    CHECK_EQ(fx.done[3]->listeners, 1);
    CHECK(quiet(&fx, a, 50));
    CHECK(quiet(&fx, p, 0));
    client_close(b);
    WAIT_STAT(&fx, listeners, 1);
    post_upstream(&fx, 1, "chat", "1.5.3", "gone", 4);
    CHECK(wait_done(&fx, 5));
    CHECK_EQ(fx.done[4]->listeners, 0);
    CHECK_EQ(rc_stat_get(fx.s->feed.stats.upstream_unheard), 2);

    client_close(a);
    client_close(p);
    WAIT_STAT(&fx, listeners, 0);
    CHECK_EQ(fx.failures, 0);
    stop(&fx);
}

TEST(send_and_close_reach_their_worker_and_replies_keep_command_order)
{
    struct fake fx;
    CHECK(start(&fx, 0, 0));
    struct client *c = client_open(&fx);
    CHECK(c);

    client_send(c, "PUBLISH x 1\r\n"
                   "SEND 1.7.2 hello\r\n"
                   "PING\r\n"
                   "CLOSE 0.9.4 4000 bye\r\n"
                   "*3\r\n$4\r\nSEND\r\n$5\r\n0.3.1\r\n$2\r\n\xff\xfe\r\n"
                   "SEND 1.1.1 x BINARY\r\n"
                   "CLOSE 1.0.0\r\n"
                   "PING\r\n");
    CHECK(wait_directs(&fx, 5));
    /* The publish is answered; everything behind the first SEND waits for it. */
    EXPECT(&fx, c, ":0\r\n");
    CHECK(quiet(&fx, c, 50));

    /* They arrive on two rings, so in no particular order; each is found by its target. */
    int i0 = held(&fx, 1, 7), i1 = held(&fx, 0, 9), i2 = held(&fx, 0, 3), i3 = held(&fx, 1, 1),
        i4 = held(&fx, 1, 0);
    CHECK(i0 >= 0 && i1 >= 0 && i2 >= 0 && i3 >= 0 && i4 >= 0);
    struct rc_direct *d = fx.directs[i0];
    CHECK_EQ(fx.direct_worker[i0], 1);
    CHECK_EQ(d->kind, RC_DIRECT_SEND);
    CHECK(d->target.worker == 1 && d->target.index == 7 && d->target.gen == 2);
    CHECK(!d->binary);
    CHECK_MEM(d->data, d->len, "hello");
    d = fx.directs[i1];
    CHECK_EQ(fx.direct_worker[i1], 0);
    CHECK_EQ(d->kind, RC_DIRECT_CLOSE);
    CHECK(d->target.worker == 0 && d->target.index == 9 && d->target.gen == 4);
    CHECK_EQ(d->code, 4000);
    CHECK_MEM(d->data, d->len, "bye");
    d = fx.directs[i2];
    CHECK_EQ(d->kind, RC_DIRECT_SEND);
    CHECK(d->binary);
    CHECK_EQ(d->len, 2);
    CHECK(d->data[0] == 0xff && d->data[1] == 0xfe);
    d = fx.directs[i3];
    CHECK(d->binary);
    CHECK_MEM(d->data, d->len, "x");
    d = fx.directs[i4];
    CHECK_EQ(d->kind, RC_DIRECT_CLOSE);
    CHECK_EQ(d->code, 1000);
    CHECK_EQ(d->len, 0);

    /* Answered last to first: nothing may overtake the first. */
    answer(&fx, (size_t)i4, 0);
    answer(&fx, (size_t)i3, -EAGAIN);
    answer(&fx, (size_t)i2, 0);
    answer(&fx, (size_t)i1, 1);
    CHECK(quiet(&fx, c, 50));
    answer(&fx, (size_t)i0, 1);
    EXPECT(&fx, c, ":1\r\n+PONG\r\n:1\r\n:0\r\n-ERR connection queue is full\r\n:0\r\n+PONG\r\n");
    CHECK_EQ(rc_stat_get(fx.s->feed.stats.direct_sent), 2);
    CHECK_EQ(rc_stat_get(fx.s->feed.stats.direct_missed), 2);
    CHECK_EQ(rc_stat_get(fx.s->feed.stats.command_errors), 1);
    CHECK_EQ(fx.s->feed.directs, 0);
    client_close(c);
    CHECK_EQ(fx.failures, 0);
    stop(&fx);
}

TEST(send_and_close_argument_errors)
{
    struct fake fx;
    CHECK(start(&fx, 0, 0));
    struct client *c = client_open(&fx);
    CHECK(c);

    client_send(c, "SEND 1.2 x\r\n"
                   "SEND 2.0.0 x\r\n"
                   "SEND 0.0.65536 x\r\n"
                   "SEND -0.0.0 x\r\n"
                   "SEND 0.0.0\r\n"
                   "SEND 0.0.0 x TEXT extra\r\n"
                   "SEND 0.0.0 x JSON\r\n"
                   "*4\r\n$4\r\nSEND\r\n$5\r\n0.0.0\r\n$1\r\n\xff\r\n$4\r\nTEXT\r\n"
                   "CLOSE\r\n"
                   "CLOSE 9.9.9\r\n"
                   "CLOSE 0.0.0 1002\r\n"
                   "CLOSE 0.0.0 1005\r\n"
                   "CLOSE 0.0.0 5000\r\n"
                   "CLOSE 0.0.0 +4000\r\n"
                   "CLOSE 0.0.0 4000 a b\r\n");
    const char *bad_id = "-ERR invalid connection id (expected <worker>.<index>.<generation>)\r\n";
    const char *bad_code =
        "-ERR close code must be 1000, 1001, 1003, 1007-1009, 1011-1014 or 3000-4999\r\n";
    CHECK(expect(&fx, c, bad_id, strlen(bad_id)));
    EXPECT(&fx, c, "-ERR invalid connection id: there is no worker 2\r\n");
    CHECK(expect(&fx, c, bad_id, strlen(bad_id)));
    CHECK(expect(&fx, c, bad_id, strlen(bad_id)));
    EXPECT(&fx, c, "-ERR wrong number of arguments for 'send' command\r\n");
    EXPECT(&fx, c, "-ERR wrong number of arguments for 'send' command\r\n");
    EXPECT(&fx, c, "-ERR SEND options are TEXT or BINARY\r\n");
    EXPECT(&fx, c, "-ERR SEND TEXT needs a payload that is valid UTF-8\r\n");
    EXPECT(&fx, c, "-ERR wrong number of arguments for 'close' command\r\n");
    EXPECT(&fx, c, "-ERR invalid connection id: there is no worker 9\r\n");
    CHECK(expect(&fx, c, bad_code, strlen(bad_code)));
    CHECK(expect(&fx, c, bad_code, strlen(bad_code)));
    CHECK(expect(&fx, c, bad_code, strlen(bad_code)));
    CHECK(expect(&fx, c, bad_code, strlen(bad_code)));
    EXPECT(&fx, c, "-ERR wrong number of arguments for 'close' command\r\n");

    char cmd[512], reason[125];
    memset(reason, 'r', 124);
    reason[124] = '\0';
    snprintf(cmd, sizeof(cmd), "CLOSE 0.0.0 4000 %s\r\n", reason);
    client_send(c, cmd);
    EXPECT(&fx, c, "-ERR close reason must be valid UTF-8 of at most 123 bytes\r\n");
    client_send(c, "*4\r\n$5\r\nCLOSE\r\n$5\r\n0.0.0\r\n$4\r\n4000\r\n$2\r\n\xc3\x28\r\n");
    EXPECT(&fx, c, "-ERR close reason must be valid UTF-8 of at most 123 bytes\r\n");
    CHECK_EQ(rc_stat_get(fx.s->feed.stats.command_errors), 17);
    CHECK_EQ(fx.ndirects, 0);

    /* 123 bytes of reason is the most, and a multibyte reason counts bytes. */
    reason[123] = '\0';
    snprintf(cmd, sizeof(cmd), "CLOSE 0.0.0 4999 %s\r\n", reason);
    client_send(c, cmd);
    CHECK(wait_directs(&fx, 1));
    CHECK_EQ(fx.directs[0]->len, 123);
    CHECK_EQ(fx.directs[0]->code, 4999);
    answer(&fx, 0, 1);
    EXPECT(&fx, c, ":1\r\n");
    client_close(c);
    CHECK_EQ(fx.failures, 0);
    stop(&fx);
}

TEST(worker_failures_are_errors)
{
    struct fake fx;
    CHECK(start(&fx, 0, 0));
    struct client *c = client_open(&fx);
    CHECK(c);

    client_send(c, "SEND 0.5.5 a\r\nCLOSE 1.6.6\r\n");
    CHECK(wait_directs(&fx, 2));
    answer(&fx, (size_t)held(&fx, 0, 5), -ENOMEM);
    answer(&fx, (size_t)held(&fx, 1, 6), -EIO);
    EXPECT(&fx, c, "-ERR out of memory\r\n-ERR could not reach the connection's worker\r\n");
    CHECK_EQ(rc_stat_get(fx.s->feed.stats.command_errors), 2);
    CHECK_EQ(
        rc_stat_get(fx.s->feed.stats.direct_sent) + rc_stat_get(fx.s->feed.stats.direct_missed), 0);
    client_close(c);
    CHECK_EQ(fx.failures, 0);
    stop(&fx);
}

TEST(connection_gone_while_directs_are_out)
{
    struct fake fx;
    CHECK(start(&fx, 0, 0));
    struct client *c = client_open(&fx);
    CHECK(c);

    client_send(c, "SEND 0.1.1 a\r\nPUBLISH x y\r\nSEND 1.1.1 b\r\nPING\r\n");
    CHECK(wait_directs(&fx, 2));
    client_close(c);
    pump_for(&fx, 50);
    /* The feed still holds the connection: its answers are owed to it. */
    CHECK_EQ(rc_stat_get(fx.s->feed.stats.connections), 1);
    answer(&fx, (size_t)held(&fx, 1, 1), 1);
    answer(&fx, (size_t)held(&fx, 0, 1), 0);
    WAIT_STAT(&fx, connections, 0);
    CHECK_EQ(fx.s->feed.directs, 0);
    CHECK_EQ(fx.failures, 0);
    stop(&fx);
}

TEST(slow_listener_is_cut_others_go_on)
{
    static char payload[16 * 1024];
    struct fake fx;
    CHECK(start(&fx, 0, 256 * 1024));
    struct client *slow = client_open(&fx), *fast = client_open(&fx);
    CHECK(slow && fast);

    memset(payload, 'p', sizeof(payload));
    client_send(slow, "SUBSCRIBE big\r\n");
    EXPECT(&fx, slow, "*3\r\n$9\r\nsubscribe\r\n$3\r\nbig\r\n:1\r\n");
    client_send(fast, "SUBSCRIBE big\r\n");
    EXPECT(&fx, fast, "*3\r\n$9\r\nsubscribe\r\n$3\r\nbig\r\n:1\r\n");
    /* The slow listener reads nothing from here on; the socket holds some, the feed the rest. */
    size_t n = 0, per = 0;
    while (rc_stat_get(fx.s->feed.stats.listener_overflows) == 0 && n < 500) {
        post_upstream(&fx, 0, "big", "0.1.1", payload, sizeof(payload));
        n++;
        CHECK(wait_done(&fx, n));
        fast->len = 0;
        client_wait(&fx, fast, 1, 1);
    }
    CHECK_EQ(rc_stat_get(fx.s->feed.stats.listener_overflows), 1);
    CHECK(n < 500);
    CHECK_EQ(fx.done[n - 1]->listeners, 1);
    CHECK_EQ(fx.done[n - 2]->listeners, 2);
    CHECK_EQ(rc_stat_get(fx.s->feed.stats.listeners), 1);
    /* The slow one gets what the kernel already held, then the close: less than was sent. */
    client_wait(&fx, slow, sizeof(slow->buf), 2000);
    CHECK(slow->eof);
    per = strlen("*3\r\n$7\r\nmessage\r\n$3\r\nbig\r\n$16390\r\n0.1.1 ") + sizeof(payload) + 2;
    CHECK(slow->len < (n - 1) * per);
    post_upstream(&fx, 0, "big", "0.1.1", "x", 1);
    CHECK(wait_done(&fx, n + 1));
    CHECK_EQ(fx.done[n]->listeners, 1);
    client_close(slow);
    client_close(fast);
    WAIT_STAT(&fx, connections, 0);
    CHECK_EQ(fx.failures, 0);
    stop(&fx);
}

TEST(idle_publishers_are_closed_listeners_and_active_ones_stay)
{
    struct fake fx;
    CHECK(start(&fx, 200, 0));
    struct client *idle = client_open(&fx), *busy = client_open(&fx), *listener = client_open(&fx);
    struct client *was_listener = client_open(&fx);
    CHECK(idle && busy && listener && was_listener);

    client_send(idle, "PING\r\n");
    EXPECT(&fx, idle, "+PONG\r\n");
    client_send(listener, "SUBSCRIBE quiet\r\n");
    EXPECT(&fx, listener, "*3\r\n$9\r\nsubscribe\r\n$5\r\nquiet\r\n:1\r\n");
    client_send(was_listener, "SUBSCRIBE q2\r\nUNSUBSCRIBE\r\n");
    EXPECT(&fx, was_listener, "*3\r\n$9\r\nsubscribe\r\n$2\r\nq2\r\n:1\r\n");
    EXPECT(&fx, was_listener, "*3\r\n$11\r\nunsubscribe\r\n$2\r\nq2\r\n:0\r\n");
    uint64_t t0 = now_ms();
    for (int i = 0; i < 6; i++) {
        client_send(busy, "PING\r\n");
        EXPECT(&fx, busy, "+PONG\r\n");
        pump_for(&fx, 80);
    }
    CHECK(closed_by_feed(&fx, idle, 1000));
    CHECK(closed_by_feed(&fx, was_listener, 1000));
    CHECK(now_ms() - t0 < 1000);
    CHECK_EQ(rc_stat_get(fx.s->feed.stats.idle_timeouts), 2);
    client_send(listener, "PING\r\n");
    EXPECT(&fx, listener, "*2\r\n$4\r\npong\r\n$0\r\n\r\n");
    client_send(busy, "PING\r\n");
    EXPECT(&fx, busy, "+PONG\r\n");
    client_close(idle);
    client_close(was_listener);
    client_close(busy);
    client_close(listener);
    WAIT_STAT(&fx, connections, 0);
    CHECK_EQ(fx.failures, 0);
    stop(&fx);
}

TEST(half_close_gets_every_reply_and_drops_the_partial_command)
{
    struct fake fx;
    CHECK(start(&fx, 0, 0));
    struct client *c = client_open(&fx);
    CHECK(c);

    client_send(c, "PUBLISH a 1\r\nPUBLISH a 2\r\nSEND 0.4.4 x\r\nPUBLISH a 3\r\n"
                   "*3\r\n$7\r\nPUBLISH\r\n$1\r\na\r\n$5\r\nhel");
    shutdown(c->fd, SHUT_WR);
    CHECK(wait_directs(&fx, 1));
    answer(&fx, 0, 0);
    EXPECT(&fx, c, ":0\r\n:0\r\n:0\r\n:0\r\n");
    CHECK(closed_by_feed(&fx, c, 2000));
    CHECK_EQ(c->len, 0);
    CHECK_EQ(rc_stat_get(fx.s->feed.stats.published), 3);
    client_close(c);
    WAIT_STAT(&fx, connections, 0);
    CHECK_EQ(fx.failures, 0);
    stop(&fx);
}

TEST_MAIN()
