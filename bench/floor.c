/*
 * floor: the physical floor for broadcast benchmarks.
 *
 * A minimal program that writes the same pre-encoded frame to every connected socket with
 * batched io_uring sends and no protocol work, so bench/compare can show how close ringcast
 * gets to what the kernel and the loopback device allow on this machine. Everything ringcast
 * does beyond this (HTTP parsing and routing, channels, histories, slow-consumer cuts,
 * heartbeats, several workers, the feed thread and its hand-offs) is absent here on purpose.
 *
 *   floor [-l ADDR:PORT] [-s FEED_SOCKET] [-t SECONDS]
 *
 *   -l   TCP address for clients (default 127.0.0.1:8099)
 *   -s   UNIX socket for publishers (default floor.sock)
 *   -t   exit after this many seconds, 0 for never (default 3600): a forgotten floor stops
 *
 * Clients: any request at all (read up to its blank line, never parsed) is answered with a
 * fixed "200 text/event-stream" head, and from then on the connection gets every frame. The
 * channel is ignored, so the floor only makes sense for broadcast scenarios where every
 * connection subscribes to the same channel.
 *
 * Publishers speak just enough RESP: "*3 $7 PUBLISH $N <channel> $M <payload>" is answered
 * ":<connections>\r\n", PING with +PONG, INFO with a few counters, anything else with -ERR.
 * Each publish builds "id: <seq>\ndata: <payload>\n\n" once (the payload is not split into
 * lines: that is protocol work) and queues one send SQE per idle connection; the ring module
 * submits them in batches as large as the submission queue.
 *
 * Queueing: one send is in flight per connection so its bytes stay in order. Frames live in
 * one list, oldest first, each counting the connections that still have to send it; a
 * connection whose send is still in flight when a new frame is published simply continues
 * with the next frame in the list when its send completes. So a busy connection costs no
 * memory of its own and nothing is lost; a connection that stops reading keeps frames alive
 * (memory grows) until it goes away. The floor has no slow-consumer cut: the load generator
 * reads everything.
 *
 * One thread, one ring, ordinary descriptors. engine/ring.c is the only code that calls
 * liburing; this file uses it through include/ringcast/ring.h.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "ringcast/log.h"
#include "ringcast/ring.h"

/* The answer to every request: the same head ringcast sends, minus what it does not need. */
static const char stream_head[] = "HTTP/1.1 200 OK\r\n"
                                  "Content-Type: text/event-stream\r\n"
                                  "Cache-Control: no-cache\r\n"
                                  "\r\n";

/* Bytes of a request head we accept; loadgen, curl and browsers send far less. */
#define HEAD_MAX 2048
/* Largest RESP command: a 1 MiB payload (ringcast's default max_payload) plus headroom. */
#define FEED_MAX ((size_t)(16u << 20))
/* Arguments of one RESP command we look at; more is a protocol error. */
#define FEED_ARGS 8

enum kind { K_LISTENER, K_CLIENT, K_PUBLISHER };

/* A frame: the bytes every connection is sent, built once per publish. */
struct frame {
    struct frame *next; /* the next newer frame, NULL at the tail */
    unsigned pending;   /* connections that have not finished sending it (or closed) */
    unsigned len;
    char data[];
};

/* Every object that owns a ring operation starts with its kind, so a completion finds it. */
struct listener {
    enum kind kind;
    int fd;
    bool feed;        /* UNIX feed socket rather than the HTTP port */
    bool armed;       /* a multishot accept is pending */
    long rearm_after; /* ms timestamp before which a failed accept is not re-armed */
} __attribute__((aligned(16)));

struct client {
    enum kind kind;
    int fd;
    unsigned inflight;  /* operations in flight (at most one receive and one send) */
    unsigned idx;       /* position in the streaming array while streaming */
    bool closing;       /* shut down; freed when inflight drops to 0 */
    bool streaming;     /* the head has been sent; the connection gets frames */
    bool head_done;     /* the request's blank line has arrived */
    struct frame *cur;  /* frame being sent, NULL when idle or sending the head */
    const char *sbuf;   /* bytes of the send in flight (the head or cur's data) */
    unsigned slen, off; /* their length, and how many are sent */
    unsigned hlen;      /* request bytes gathered before the blank line */
    char head[HEAD_MAX];
} __attribute__((aligned(16)));

struct publisher {
    enum kind kind;
    int fd;
    unsigned inflight;
    bool closing;
    bool sending;
    char *in; /* received, not yet parsed */
    size_t in_len, in_cap;
    char *out; /* replies; out[0..out_sent) is the send in flight */
    size_t out_len, out_cap, out_sent;
} __attribute__((aligned(16)));

/* The whole program's state; one instance, one thread. */
static struct {
    struct rc_ring ring;
    struct listener http, feed;
    struct client **streams; /* connections that get frames */
    unsigned nstreams, streams_cap;
    struct frame *oldest, *newest;
    uint64_t seq;
    /* Counters printed at exit and by INFO. */
    uint64_t accepted, published, deliveries, send_errors, partial_sends, frames_live;
    unsigned clients;
} fl;

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    stop_requested = 1;
}

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static void *xalloc(size_t align, size_t size)
{
    /* Objects named in user_data must be 16-byte aligned (rc_ud keeps the op in 4 bits). */
    void *p = aligned_alloc(align, (size + align - 1) / align * align);
    if (!p) {
        rc_error("out of memory (%zu bytes)", size);
        exit(1);
    }
    return p;
}

/* ---- frames ---------------------------------------------------------------------------- */

/* Frees frames from the oldest end as long as nobody needs them any more. */
static void frames_gc(void)
{
    /*
     * Every connection counted in a frame is counted in every newer one (it streams until it
     * closes, and a close gives up all its frames at once), so frames finish oldest first
     * and freeing from the head is enough.
     */
    while (fl.oldest && fl.oldest->pending == 0) {
        struct frame *f = fl.oldest;
        fl.oldest = f->next;
        if (!fl.oldest)
            fl.newest = NULL;
        free(f);
        fl.frames_live--;
    }
}

/* Gives up one connection's claim on f and on every newer frame (a connection that closes). */
static void frames_release_from(struct frame *f)
{
    for (; f; f = f->next) {
        rc_assert(f->pending > 0);
        f->pending--;
    }
}

/* ---- clients ----------------------------------------------------------------------------- */

static void client_post_recv(struct client *c)
{
    /* Before the blank line the bytes are gathered; afterwards they land at the start and are
     * ignored: the receive only exists to notice when the peer goes away. */
    unsigned at = c->head_done ? 0 : c->hlen;
    c->inflight++;
    rc_ring_recv(&fl.ring, c->fd, c->head + at, HEAD_MAX - at, rc_ud(c, RC_OP_RECV, 0));
}

static void client_post_send(struct client *c)
{
    c->inflight++;
    rc_ring_send(&fl.ring, c->fd, false, c->sbuf + c->off, c->slen - c->off,
                 rc_ud(c, RC_OP_SEND, 0));
}

static void client_start_frame(struct client *c, struct frame *f)
{
    c->cur = f;
    c->sbuf = f->data;
    c->slen = f->len;
    c->off = 0;
    client_post_send(c);
}

static void streams_remove(struct client *c)
{
    struct client *last = fl.streams[--fl.nstreams];
    fl.streams[c->idx] = last;
    last->idx = c->idx;
    c->streaming = false;
}

static void streams_add(struct client *c)
{
    if (fl.nstreams == fl.streams_cap) {
        fl.streams_cap = fl.streams_cap ? fl.streams_cap * 2 : 1024;
        fl.streams = realloc(fl.streams, fl.streams_cap * sizeof(*fl.streams));
        if (!fl.streams) {
            rc_error("out of memory for the stream table");
            exit(1);
        }
    }
    c->idx = fl.nstreams;
    fl.streams[fl.nstreams++] = c;
    c->streaming = true;
}

/* Frees a closed client once no operation of its own can complete any more. */
static void client_finish(struct client *c)
{
    if (c->cur) {
        /* Only cur is still claimed: client_close gave up the newer frames already. */
        rc_assert(c->cur->pending > 0);
        c->cur->pending--;
        frames_gc();
    }
    rc_ring_close(&fl.ring, c->fd);
    fl.clients--;
    free(c);
}

/* Starts closing a client: no new frames, wake its operations, free it when they are done. */
static void client_close(struct client *c)
{
    if (c->closing)
        return;
    c->closing = true;
    if (c->streaming) {
        streams_remove(c);
        /* Frames newer than the one in flight will never be sent here: let them go now, so
         * the count stays exact however long the in-flight send takes to fail. */
        if (c->cur) {
            frames_release_from(c->cur->next);
            frames_gc();
        }
    }
    /* A plain shutdown(2) makes the pending receive return 0 and the send fail at once. */
    shutdown(c->fd, SHUT_RDWR);
    if (c->inflight == 0)
        client_finish(c);
}

static void client_on_recv(struct client *c, int res)
{
    c->inflight--;
    if (c->closing) {
        if (c->inflight == 0)
            client_finish(c);
        return;
    }
    if (res <= 0) {
        client_close(c);
        return;
    }
    if (!c->head_done) {
        unsigned from = c->hlen >= 3 ? c->hlen - 3 : 0;
        c->hlen += (unsigned)res;
        if (memmem(c->head + from, c->hlen - from, "\r\n\r\n", 4) ||
            memmem(c->head + from, c->hlen - from, "\n\n", 2)) {
            c->head_done = true;
            c->sbuf = stream_head;
            c->slen = sizeof(stream_head) - 1;
            c->off = 0;
            client_post_send(c);
        } else if (c->hlen == HEAD_MAX) {
            client_close(c); /* no blank line in HEAD_MAX bytes: not a request we serve */
            return;
        }
    }
    client_post_recv(c);
}

static void client_on_send(struct client *c, int res)
{
    c->inflight--;
    if (c->closing) {
        if (c->inflight == 0)
            client_finish(c);
        return;
    }
    if (res <= 0) {
        fl.send_errors++;
        client_close(c);
        return;
    }
    c->off += (unsigned)res;
    if (c->off < c->slen) {
        /* A full socket buffer accepted part of it; the rest goes next, in order. */
        fl.partial_sends++;
        client_post_send(c);
        return;
    }
    if (!c->cur) {
        /* The head is out: from now on this connection gets every frame published. */
        streams_add(c);
        return;
    }
    fl.deliveries++;
    struct frame *done = c->cur, *next = done->next;
    c->cur = NULL;
    done->pending--;
    frames_gc(); /* next survives: this client is counted in it */
    if (next)
        client_start_frame(c, next);
}

/* ---- publishers --------------------------------------------------------------------------- */

static void pub_post_recv(struct publisher *p)
{
    if (p->in_cap - p->in_len < 4096) {
        size_t cap = p->in_cap * 2;
        if (cap > FEED_MAX + 4096)
            cap = FEED_MAX + 4096;
        p->in = realloc(p->in, cap);
        if (!p->in) {
            rc_error("out of memory for a publisher");
            exit(1);
        }
        p->in_cap = cap;
    }
    p->inflight++;
    rc_ring_recv(&fl.ring, p->fd, p->in + p->in_len, (unsigned)(p->in_cap - p->in_len),
                 rc_ud(p, RC_OP_RECV, 0));
}

static void pub_reply(struct publisher *p, const char *s, size_t n)
{
    if (p->out_cap - p->out_len < n) {
        size_t cap = p->out_cap ? p->out_cap : 4096;
        while (cap - p->out_len < n)
            cap *= 2;
        p->out = realloc(p->out, cap);
        if (!p->out) {
            rc_error("out of memory for a publisher");
            exit(1);
        }
        p->out_cap = cap;
    }
    memcpy(p->out + p->out_len, s, n);
    p->out_len += n;
}

static void pub_flush(struct publisher *p)
{
    if (p->sending || p->out_len == 0 || p->closing)
        return;
    p->sending = true;
    p->out_sent = p->out_len;
    p->inflight++;
    rc_ring_send(&fl.ring, p->fd, false, p->out, (unsigned)p->out_len, rc_ud(p, RC_OP_SEND, 0));
}

static void pub_finish(struct publisher *p)
{
    rc_ring_close(&fl.ring, p->fd);
    free(p->in);
    free(p->out);
    free(p);
}

static void pub_close(struct publisher *p)
{
    if (p->closing)
        return;
    p->closing = true;
    shutdown(p->fd, SHUT_RDWR);
    if (p->inflight == 0)
        pub_finish(p);
}

/* Builds one frame and hands it to every connection that is not busy; returns the audience. */
static unsigned broadcast(const char *payload, size_t len)
{
    char id[32];
    fl.seq++;
    fl.published++;
    if (fl.nstreams == 0)
        return 0;
    int idn = snprintf(id, sizeof(id), "id: %llu\ndata: ", (unsigned long long)fl.seq);
    size_t flen = (size_t)idn + len + 2;
    struct frame *f = xalloc(16, sizeof(*f) + flen);
    f->next = NULL;
    f->pending = fl.nstreams;
    f->len = (unsigned)flen;
    memcpy(f->data, id, (size_t)idn);
    memcpy(f->data + idn, payload, len);
    memcpy(f->data + idn + len, "\n\n", 2);
    if (fl.newest)
        fl.newest->next = f;
    else
        fl.oldest = f;
    fl.newest = f;
    fl.frames_live++;
    /* One SQE per idle connection; rc_ring_send submits whenever the queue fills, so a
     * fan-out goes to the kernel in batches of the submission queue's size. */
    for (unsigned i = 0; i < fl.nstreams; i++) {
        struct client *c = fl.streams[i];
        if (!c->cur)
            client_start_frame(c, f);
    }
    return fl.nstreams;
}

/* Reads a RESP integer line at *pos ("123\r\n"); -2 when incomplete, -1 when malformed. */
static long long resp_int(const char *b, size_t len, size_t *pos)
{
    long long v = 0;
    size_t i = *pos;
    bool any = false;
    for (; i < len && b[i] >= '0' && b[i] <= '9'; i++) {
        v = v * 10 + (b[i] - '0');
        any = true;
        if (v > (long long)FEED_MAX)
            return -1;
    }
    if (i + 1 >= len)
        return -2;
    if (!any || b[i] != '\r' || b[i + 1] != '\n')
        return -1;
    *pos = i + 2;
    return v;
}

/*
 * Parses one command at the start of buf into args; returns bytes consumed, 0 when the
 * command is incomplete, -1 for anything that is not the RESP subset publishers send.
 */
static long parse_command(const char *b, size_t len, const char **args, size_t *lens,
                          unsigned *nargs)
{
    size_t pos = 1;
    if (len == 0)
        return 0;
    if (b[0] != '*')
        return -1;
    long long n = resp_int(b, len, &pos);
    if (n == -2)
        return 0;
    if (n < 1 || n > FEED_ARGS)
        return -1;
    for (long long i = 0; i < n; i++) {
        if (pos >= len)
            return 0;
        if (b[pos] != '$')
            return -1;
        pos++;
        long long m = resp_int(b, len, &pos);
        if (m == -2)
            return 0;
        if (m < 0)
            return -1;
        if (len - pos < (size_t)m + 2)
            return 0;
        if (b[pos + (size_t)m] != '\r' || b[pos + (size_t)m + 1] != '\n')
            return -1;
        args[i] = b + pos;
        lens[i] = (size_t)m;
        pos += (size_t)m + 2;
    }
    *nargs = (unsigned)n;
    return (long)pos;
}

static bool arg_is(const char *a, size_t n, const char *word)
{
    return n == strlen(word) && strncasecmp(a, word, n) == 0;
}

static void pub_execute(struct publisher *p, const char **args, const size_t *lens, unsigned n)
{
    char line[512];
    int k;
    if (arg_is(args[0], lens[0], "PUBLISH") && n == 3) {
        k = snprintf(line, sizeof(line), ":%u\r\n", broadcast(args[2], lens[2]));
    } else if (arg_is(args[0], lens[0], "PING")) {
        k = snprintf(line, sizeof(line), "+PONG\r\n");
    } else if (arg_is(args[0], lens[0], "INFO")) {
        char body[400];
        int bn = snprintf(body, sizeof(body),
                          "connections:%u\r\nsubscribers:%u\r\naccepted:%llu\r\n"
                          "published:%llu\r\ndeliveries:%llu\r\nframes_live:%llu\r\n",
                          fl.clients, fl.nstreams, (unsigned long long)fl.accepted,
                          (unsigned long long)fl.published, (unsigned long long)fl.deliveries,
                          (unsigned long long)fl.frames_live);
        k = snprintf(line, sizeof(line), "$%d\r\n%s\r\n", bn, body);
    } else {
        k = snprintf(line, sizeof(line), "-ERR unknown command (floor serves PUBLISH only)\r\n");
    }
    pub_reply(p, line, (size_t)k);
}

static void pub_on_recv(struct publisher *p, int res)
{
    const char *args[FEED_ARGS];
    size_t lens[FEED_ARGS];
    unsigned n;
    size_t at = 0;
    long used;

    p->inflight--;
    if (p->closing) {
        if (p->inflight == 0)
            pub_finish(p);
        return;
    }
    if (res <= 0) {
        pub_close(p);
        return;
    }
    p->in_len += (size_t)res;
    /* Pipelined commands are all executed; their replies leave in one send. */
    while ((used = parse_command(p->in + at, p->in_len - at, args, lens, &n)) > 0) {
        pub_execute(p, args, lens, n);
        at += (size_t)used;
    }
    if (used < 0 || (p->in_len - at) > FEED_MAX) {
        pub_reply(p, "-ERR Protocol error\r\n", 21);
        pub_flush(p);
        pub_close(p);
        return;
    }
    memmove(p->in, p->in + at, p->in_len - at);
    p->in_len -= at;
    pub_flush(p);
    pub_post_recv(p);
}

static void pub_on_send(struct publisher *p, int res)
{
    p->inflight--;
    p->sending = false;
    if (p->closing) {
        if (p->inflight == 0)
            pub_finish(p);
        return;
    }
    if (res <= 0) {
        pub_close(p);
        return;
    }
    /* Drop what went out (all of it, or a prefix) and send whatever is left or new. */
    memmove(p->out, p->out + res, p->out_len - (size_t)res);
    p->out_len -= (size_t)res;
    pub_flush(p);
}

/* ---- listeners ---------------------------------------------------------------------------- */

static void listener_arm(struct listener *l)
{
    rc_ring_accept(&fl.ring, l->fd, rc_ud(l, RC_OP_ACCEPT, 0));
    l->armed = true;
}

static void on_accept(struct listener *l, const struct rc_cqe *cqe)
{
    if (!(cqe->flags & IORING_CQE_F_MORE)) {
        /* The multishot accept ended; re-arm from the main loop, after a pause if it failed
         * (EMFILE would otherwise spin). */
        l->armed = false;
        l->rearm_after = cqe->res < 0 ? now_ms() + 50 : 0;
    }
    if (cqe->res < 0) {
        rc_warn("accept on %s: %s", l->feed ? "feed" : "http", strerror(-cqe->res));
        return;
    }
    int fd = cqe->res;
    if (l->feed) {
        struct publisher *p = xalloc(16, sizeof(*p));
        memset(p, 0, sizeof(*p));
        p->kind = K_PUBLISHER;
        p->fd = fd;
        p->in_cap = 64 * 1024;
        p->in = malloc(p->in_cap);
        if (!p->in) {
            rc_error("out of memory for a publisher");
            exit(1);
        }
        pub_post_recv(p);
        return;
    }
    struct client *c = xalloc(16, sizeof(*c));
    memset(c, 0, sizeof(*c));
    c->kind = K_CLIENT;
    c->fd = fd;
    fl.accepted++;
    fl.clients++;
    client_post_recv(c);
}

static void on_cqe(void *arg, const struct rc_cqe *cqe)
{
    void *obj = rc_ud_ptr(cqe->ud);
    enum rc_op op = rc_ud_op(cqe->ud);
    if (op == RC_OP_IGNORE || !obj)
        return;
    switch (*(enum kind *)obj) {
    case K_LISTENER:
        on_accept(obj, cqe);
        break;
    case K_CLIENT:
        if (op == RC_OP_RECV)
            client_on_recv(obj, cqe->res);
        else
            client_on_send(obj, cqe->res);
        break;
    case K_PUBLISHER:
        if (op == RC_OP_RECV)
            pub_on_recv(obj, cqe->res);
        else
            pub_on_send(obj, cqe->res);
        break;
    }
}

/* ---- set-up ------------------------------------------------------------------------------- */

static int listen_tcp(const char *spec)
{
    char host[64];
    const char *colon = strrchr(spec, ':');
    struct sockaddr_in sa;
    int one = 1;

    if (!colon || (size_t)(colon - spec) >= sizeof(host)) {
        rc_error("bad -l %s: want IPv4:PORT", spec);
        return -1;
    }
    memcpy(host, spec, (size_t)(colon - spec));
    host[colon - spec] = '\0';
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)atoi(colon + 1));
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        rc_error("bad -l %s: want IPv4:PORT", spec);
        return -1;
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    /* Accepted sockets inherit TCP_NODELAY: a frame must leave now, not wait for the next. */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 65535) < 0) {
        rc_error("listen on %s: %s", spec, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

static int listen_unix(const char *path)
{
    struct sockaddr_un sa;
    struct stat st;

    if (strlen(path) >= sizeof(sa.sun_path)) {
        rc_error("feed socket path too long: %s", path);
        return -1;
    }
    /* A socket left by an earlier run would make bind fail; anything else is not ours. */
    if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
        unlink(path);
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    strcpy(sa.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 128) < 0) {
        rc_error("listen on %s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

/* Takes the hard descriptor limit as the soft one: the floor holds as many sockets as the
 * benchmark opens. */
static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static void usage(FILE *to)
{
    fprintf(to, "usage: floor [-l ADDR:PORT] [-s FEED_SOCKET] [-t SECONDS]\n"
                "  -l  TCP address for clients (default 127.0.0.1:8099)\n"
                "  -s  UNIX socket for RESP PUBLISH (default floor.sock)\n"
                "  -t  exit after SECONDS, 0 for never (default 3600)\n");
}

int main(int argc, char **argv)
{
    const char *listen_spec = "127.0.0.1:8099";
    const char *feed_path = "floor.sock";
    long limit_s = 3600;
    struct sigaction sa;
    int opt, ret;

    while ((opt = getopt(argc, argv, "l:s:t:h")) != -1) {
        switch (opt) {
        case 'l':
            listen_spec = optarg;
            break;
        case 's':
            feed_path = optarg;
            break;
        case 't':
            limit_s = atol(optarg);
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    rc_log_set_thread("floor");
    raise_nofile();

    /* No SA_RESTART: the signal must interrupt the ring wait so the loop sees the flag. */
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    /* A large completion queue: one broadcast to N connections completes N sends at once. */
    ret = rc_ring_init(&fl.ring, 4096, 65536, 0);
    if (ret < 0) {
        rc_error("io_uring setup: %s", strerror(-ret));
        return 1;
    }
    fl.http.kind = K_LISTENER;
    fl.http.fd = listen_tcp(listen_spec);
    fl.feed.kind = K_LISTENER;
    fl.feed.feed = true;
    fl.feed.fd = listen_unix(feed_path);
    if (fl.http.fd < 0 || fl.feed.fd < 0)
        return 1;
    listener_arm(&fl.http);
    listener_arm(&fl.feed);
    rc_info("floor: clients on %s, publishers on %s, pid %d", listen_spec, feed_path,
            (int)getpid());

    long deadline = limit_s > 0 ? now_ms() + limit_s * 1000 : 0;
    while (!stop_requested) {
        ret = rc_ring_run(&fl.ring, 200, on_cqe, NULL);
        if (ret < 0) {
            rc_error("io_uring wait: %s", strerror(-ret));
            break;
        }
        long t = now_ms();
        if (!fl.http.armed && t >= fl.http.rearm_after)
            listener_arm(&fl.http);
        if (!fl.feed.armed && t >= fl.feed.rearm_after)
            listener_arm(&fl.feed);
        if (deadline && t >= deadline) {
            rc_info("floor: time limit of %ld s reached", limit_s);
            break;
        }
    }
    rc_info("floor: accepted %llu, published %llu, deliveries %llu, partial sends %llu, "
            "send errors %llu",
            (unsigned long long)fl.accepted, (unsigned long long)fl.published,
            (unsigned long long)fl.deliveries, (unsigned long long)fl.partial_sends,
            (unsigned long long)fl.send_errors);
    /* The kernel closes every socket with the process; only the socket file needs removing. */
    unlink(feed_path);
    rc_ring_exit(&fl.ring);
    return 0;
}
