/*
 * Client connections of a worker, shared by the worker's modules: worker.c (the loop, accept,
 * requests, timers), conn.c (closing and the send path), stream.c (subscriptions, history
 * positions and resume) and wsconn.c (the WebSocket protocol). Nothing here is used outside a
 * worker thread.
 */
#ifndef RINGCAST_CONN_H
#define RINGCAST_CONN_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>
#include <sys/socket.h>

#include "ringcast/channel.h"
#include "ringcast/deflate.h"
#include "ringcast/http.h"
#include "ringcast/upstream.h"
#include "ringcast/worker.h"
#include "ringcast/ws.h"

/* Connection states. */
enum {
    CONN_REQUEST = 1, /* reading the request head; on the worker's pending list */
    CONN_RESPONDING,  /* sending a canned response, then closing; on the pending list */
    CONN_STREAMING,   /* an SSE stream or a WebSocket, subscribed to its channels */
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
    F_MULTI = 1 << 10,     /* subscribed through rc_multi (several channels, or a resume) */
    F_ENVELOPE = 1 << 11,  /* a WebSocket in envelope mode (see README) */
};

/* What the send in flight carries. */
enum {
    SEND_NONE = 0,
    SEND_EVENT,
    SEND_BATCH,
    SEND_STATIC,
    SEND_OWNED, /* bytes owned by the send (a 101 response, a reply), freed when it completes */
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
 * head is parsed), or bytes for this connection alone: a 101 response or a WebSocket message
 * (a reply, a backend's SEND) waiting in the side state's queue, freed once sent.
 */
struct rc_bytes {
    struct rc_bytes *next; /* in the side state's queue */
    uint32_t len;
    char data[];
};

/* One channel of a multi-channel connection. */
struct rc_xsub {
    struct rc_link link; /* on chan->xsubs */
    struct rc_channel *chan;
    struct rc_conn *conn;
    uint64_t cursor; /* channel seq below which nothing is left to send on this channel */
};

/*
 * The subscriptions of a connection with several channels, or one that resumed ahead of its
 * worker. Its position is an engine sequence number (rc_conn.cursor): every event up to it has
 * been sent, on every channel, which is what makes one Last-Event-ID cover all of them.
 */
struct rc_multi {
    uint32_t n;
    uint32_t cap;
    struct rc_xsub *sub[]; /* owned; in subscription order: sub[0] tags upstream messages */
};

/*
 * What a WebSocket connection needs beyond its 64 bytes, allocated only while it needs it: a
 * frame header or control payload split across reads, a message in progress, a control frame
 * or a message waiting to be sent or being sent, the close handshake, an inflater that keeps
 * context. A connection that only receives events never has one.
 */
struct rc_ws {
    struct rc_ws_frame frame; /* the frame whose payload is arriving */
    struct rc_ws_msgstate msg;
    uint64_t payload_left;   /* bytes of the frame's payload still to come */
    uint64_t payload_off;    /* bytes of it received so far (the unmasking offset) */
    uint32_t utf8;           /* validator state of the text message in progress */
    uint32_t close_deadline; /* CONN_WS_CLOSING: ms after worker start when it is dropped */
    struct rc_inflater *inf; /* the client's compressed messages; NULL until one comes */
    unsigned char *buf;      /* the message in progress (inflated), at most max_message */
    size_t buf_len;
    size_t buf_cap;
    struct rc_bytes *outq; /* messages for this client alone, oldest first; owned */
    struct rc_bytes **outq_tail;
    uint32_t outq_len;
    bool in_payload;     /* the header of `frame` is complete, its payload is due */
    bool failed;         /* the bytes can no longer be framed: discard them all */
    bool close_queued;   /* our Close waits for the send in flight */
    bool close_sent;     /* our Close is completely sent */
    bool peer_closed;    /* the client's Close has arrived */
    bool pong_queued;    /* a Pong waits for the send in flight */
    uint16_t close_code; /* of the queued Close */
    uint8_t close_reason_len;
    uint8_t hdr_len;  /* bytes of a split frame header in hdr */
    uint8_t ctl_len;  /* control payload bytes collected in ctl */
    uint8_t pong_len; /* payload bytes of the queued Pong */
    uint8_t out_len;  /* bytes of the control frame in out */
    unsigned char hdr[RC_WS_MAX_HEADER];
    unsigned char ctl[RC_WS_MAX_CONTROL_PAYLOAD];
    unsigned char pong[RC_WS_MAX_CONTROL_PAYLOAD];
    unsigned char close_reason[RC_WS_MAX_CONTROL_PAYLOAD - 2];
    unsigned char out[2 + RC_WS_MAX_CONTROL_PAYLOAD]; /* the control frame being sent */
};

/*
 * One client connection: 64 bytes from the worker's slab. Nothing else is allocated for an
 * established stream on one channel; what it still has to send is the part of its channel's
 * history after `cursor`. A WebSocket adds its side state (struct rc_ws) only while a client
 * message, a control frame, a reply or the close handshake is in progress.
 */
struct rc_conn {
    union {
        struct rc_event *ev;    /* SEND_EVENT: the event being sent (one use) */
        struct rc_batch *batch; /* SEND_BATCH: the events being sent, owned */
        struct rc_bytes *req;   /* REQUEST: a partial head, owned, or NULL */
        struct rc_bytes *out;   /* SEND_OWNED: the bytes being sent, owned */
    } u;                        /* first: the slab reuses these bytes while the object is free */
    union {
        struct rc_channel *chan; /* STREAMING, one channel: the channel; not owned */
        struct rc_multi *multi;  /* STREAMING with F_MULTI: the subscriptions; owned */
    };
    struct rc_link link; /* pending, ws_closing, chan->subs, or the worker's multis list */
    uint64_t cursor;     /* one channel: its seq to send next; F_MULTI: engine seq last sent */
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

/* The user_data of an operation on c. */
static inline uint64_t rc_conn_ud(const struct rc_conn *c, enum rc_op op)
{
    return rc_ud(c, op, c->gen);
}

/* worker.c: accept and the connection limits. */

/*
 * Gives back what c counted against the connection limits when it was accepted (its place in
 * max_connections and in its address's count). Called once, when its slot is freed.
 */
void rc_conn_limits_release(struct rc_worker *w, struct rc_conn *c);

/* conn.c: closing and the send path. */

/*
 * Closes a connection. Operations in flight are woken by a shutdown; the descriptor is closed
 * and the slot freed only when the last of them has completed, so no completion ever refers
 * to a freed connection. Bytes already queued in the socket are still delivered.
 */
void rc_conn_close(struct rc_worker *w, struct rc_conn *c);

/* Frees the connection once it is closing and nothing is in flight for it any more. */
void rc_conn_maybe_free(struct rc_worker *w, struct rc_conn *c);

/*
 * Answers a request with a canned response and closes once it is sent. The connection stays
 * on the pending list, so a client that never reads its answer is still closed at its deadline.
 */
void rc_conn_respond(struct rc_worker *w, struct rc_conn *c, enum rc_response resp);

/* Starts sending canned response `resp` from byte c->sent. */
void rc_conn_send_static(struct rc_worker *w, struct rc_conn *c, enum rc_response resp);

/* Starts sending c->u.out, bytes owned by the send, from byte c->sent. */
void rc_conn_send_owned(struct rc_worker *w, struct rc_conn *c);

/* Starts sending the control frame in the side state's out buffer from byte c->sent. */
void rc_conn_send_ctl(struct rc_worker *w, struct rc_conn *c);

/*
 * Starts the next send of a stream if nothing is in flight: a due WebSocket control frame, a
 * queued message, or the events after its position (several in one sendmsg when it is behind).
 * A stopping worker ends a stream that has caught up.
 */
void rc_conn_send_next(struct rc_worker *w, struct rc_conn *c);

/* Handles the completion of a send. */
void rc_conn_on_send(struct rc_worker *w, struct rc_conn *c, int res);

/* stream.c: subscriptions and positions. */

/* What a stream asked for: its channels and where to resume. Names point into the request. */
struct rc_stream_request {
    const char **names;
    uint8_t *name_lens;
    unsigned n;
    const char *last_id; /* NULL: start live */
    size_t last_id_len;
};

/* Why a resuming client cannot have every event it missed. */
enum rc_gap {
    RC_GAP_NONE = 0,
    RC_GAP_TOO_OLD, /* events after its id have left the history */
    RC_GAP_RESTART, /* the id is from an earlier instance of the engine */
    RC_GAP_UNKNOWN, /* the id is not one this engine handed out */
};

/* The word that names a gap on the wire ("too-old", ...). */
const char *rc_stream_gap_name(enum rc_gap gap);

/*
 * Works out where a stream starts (live, after its id, or the whole window with a gap) before
 * its response is built. Returns the gap; *position is for rc_stream_open().
 */
enum rc_gap rc_stream_resolve(struct rc_worker *w, const struct rc_stream_request *sr,
                              uint64_t *position, bool *resume);

/*
 * Starts c's stream: subscribes it to its channels at the position rc_stream_resolve() found,
 * makes it CONN_STREAMING and counts the resume and its gap. c must be on no list. Returns 0 or
 * -ENOMEM (then nothing changed).
 */
int rc_stream_open(struct rc_worker *w, struct rc_conn *c, const struct rc_stream_request *sr,
                   uint64_t position, bool resume, enum rc_gap gap);

/* Leaves every channel (on close, or when a WebSocket begins its close handshake). */
void rc_stream_leave(struct rc_worker *w, struct rc_conn *c);

/* Adds a channel at run time, live from now. Returns 0, -EEXIST, -E2BIG or -ENOMEM. */
int rc_stream_add(struct rc_worker *w, struct rc_conn *c, const char *name, size_t len);

/* Removes a channel at run time. Returns 0 or -ENOENT. */
int rc_stream_remove(struct rc_worker *w, struct rc_conn *c, const char *name, size_t len);

/* The channel that tags c's upstream messages (its first), or NULL when it has none. */
const struct rc_channel *rc_stream_first(const struct rc_conn *c);

/*
 * Fills ev[] with up to max events after c's position, in publish order, within max_bytes
 * (at least one), without moving the position. Returns how many.
 */
unsigned rc_stream_peek(struct rc_worker *w, struct rc_conn *c, struct rc_event **ev, unsigned max,
                        size_t max_bytes);

/* Moves c's position past ev, the next event, now completely sent. */
void rc_stream_sent(struct rc_conn *c, struct rc_event *ev);

/* Whether c is further behind than max_lag / max_lag_bytes, or the history overtook it. */
bool rc_stream_lagging(const struct rc_worker *w, struct rc_conn *c);

/*
 * An event arrived: appends it to its channel's history (creating the channel) and wakes its
 * subscribers, cutting those that lag. Returns how many it was handed to.
 */
uint64_t rc_stream_publish(struct rc_worker *w, struct rc_event *ev);

/* Calls fn on every streaming connection; fn may close the connection it is given. */
void rc_stream_foreach(struct rc_worker *w, void (*fn)(struct rc_worker *w, struct rc_conn *c));

/* Drops expired history and forgets channels with neither history nor subscribers. */
void rc_stream_expire(struct rc_worker *w);

/* The frame of ev that c is sent: SSE or WebSocket, raw or envelope, compressed or not. */
const char *rc_stream_frame(const struct rc_conn *c, const struct rc_event *ev, uint32_t *len);

/* wsconn.c: the WebSocket protocol. */

/* Answers an upgrade request: 101 and the stream, 426, or 400. */
void rc_wsconn_upgrade(struct rc_worker *w, struct rc_conn *c, const struct rc_http_request *req,
                       const struct rc_stream_request *sr, bool envelope);

/* Handles bytes from a client, p[0..n), which are unmasked in place. */
void rc_wsconn_on_bytes(struct rc_worker *w, struct rc_conn *c, unsigned char *p, size_t n);

/* Starts the send of a due control frame or queued message. Returns whether it did. */
bool rc_wsconn_send_pending(struct rc_worker *w, struct rc_conn *c);

/* Whether a completed control frame send was our Close. */
void rc_wsconn_ctl_sent(struct rc_conn *c);

/* Frees the side state if nothing in it must outlive this moment. */
void rc_wsconn_trim(struct rc_conn *c);

/* Frees the side state and what it holds. */
void rc_wsconn_free(struct rc_conn *c);

/*
 * Begins the close handshake with `code` (the connection leaves its channels and has
 * close_timeout to finish). Closes at once when memory for the side state is short.
 */
void rc_wsconn_close(struct rc_worker *w, struct rc_conn *c, unsigned code, const char *reason,
                     size_t reason_len);

/* A feed command for one of this worker's connections (RC_OP_DIRECT). */
void rc_wsconn_direct(struct rc_worker *w, struct rc_direct *d);

/* The feed has pushed a client message (RC_OP_UPSTREAM_DONE); res < 0: it never got there. */
void rc_wsconn_upstream_done(struct rc_worker *w, struct rc_upstream *up, int res);

#endif
