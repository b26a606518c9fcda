/*
 * A worker: one thread, one io_uring, one listening socket, its own connections and channels.
 *
 * Workers share nothing mutable. Events reach a worker as ring messages (RC_OP_EVENT) from the
 * feed; the worker appends each to its channel's history and starts a send on every subscriber
 * that is not already sending. A connection sends one thing at a time, so its bytes stay in
 * order; when a send completes the next one covers the next event after its cursor.
 */
#ifndef RINGCAST_WORKER_H
#define RINGCAST_WORKER_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "ringcast/addrlimit.h"
#include "ringcast/channel.h"
#include "ringcast/config.h"
#include "ringcast/ring.h"
#include "ringcast/slab.h"
#include "ringcast/stats.h"

struct rc_server;

/* Canned responses, built once per worker from the configuration. */
enum rc_response {
    RC_RESP_SSE_HEAD = 0,     /* the 200 head of an event stream, and the retry: hint */
    RC_RESP_SSE_HEAD_TOO_OLD, /* ... followed by a gap event, one per reason */
    RC_RESP_SSE_HEAD_RESTART,
    RC_RESP_SSE_HEAD_UNKNOWN,
    RC_RESP_SSE_BYE, /* the retry: hint that ends a stream at shutdown */
    RC_RESP_HEARTBEAT,
    RC_RESP_WS_PING, /* a WebSocket Ping frame without payload */
    RC_RESP_HEALTH,
    RC_RESP_400,
    RC_RESP_404,
    RC_RESP_405,
    RC_RESP_414,
    RC_RESP_426, /* a WebSocket version other than 13 */
    RC_RESP_431,
    RC_RESP_503,
    RC_RESP_505,
    RC_RESP_COUNT
};

/*
 * Accepts a worker keeps in flight. Normally one multishot accept; with a per-address limit,
 * RC_ACCEPT_SLOTS single-shot ones instead, because only those report the peer's address (each
 * into its own slot). The slot number is the generation field of the accept's user_data.
 */
#define RC_ACCEPT_SLOTS 32

struct rc_accept_slot {
    struct sockaddr_storage addr; /* written by the kernel when the accept completes */
    socklen_t len;
};

struct rc_worker {
    unsigned id;
    pthread_t thread;
    struct rc_server *server;    /* not owned */
    const struct rc_config *cfg; /* not owned; the server's */
    int listen_fd;               /* owned; the SO_REUSEPORT socket of this worker */
    uint32_t capacity;           /* connections this worker holds at once */
    int init_error;              /* set by the thread before the start barrier */
    struct rc_ring ring;         /* owned by the thread; exited by the server after join */
    struct rc_slab conns;
    struct rc_slab batches; /* multi-event sends in flight */
    struct rc_channel_table channels;
    struct rc_link pending;    /* connections still reading their request, oldest first */
    struct rc_link ws_closing; /* WebSocket connections in their close handshake, oldest first */
    struct rc_link multis; /* streaming connections with F_MULTI (theirs is not a channel list) */
    uint64_t last_seq;     /* engine seq of the newest event this worker has received */
    uint32_t upstream_pending;      /* client messages sent to the feed and not yet back */
    char *responses[RC_RESP_COUNT]; /* owned */
    uint32_t response_len[RC_RESP_COUNT];
    uint64_t start_ms; /* CLOCK_MONOTONIC at start; connection deadlines count from it */
    uint64_t now_ms;   /* refreshed once per loop iteration */
    uint64_t next_heartbeat_ms;
    uint64_t next_ping_ms;     /* when WebSocket clients are pinged next */
    uint64_t next_expire_ms;   /* when histories are trimmed to their time limit next */
    uint64_t pong_deadline_ms; /* when the clients pinged last must have answered; 0: none */
    uint64_t stop_deadline_ms; /* when streams still open after a stop are cut */
    bool stopping;
    bool per_address;       /* max_connections_per_address is on (fixed at start-up) */
    uint32_t accept_idle;   /* accept slots that ended on an error; re-armed at the next tick */
    uint32_t accepts_armed; /* accepts in flight; a stopping worker waits for them to end */
    /*
     * Per-address mode only: the address node of each connection, indexed by its slab index
     * (rc_conn has no room for it), or NULL for one that is not counted. Grows with the slab.
     */
    struct rc_addrnode **addr_of;
    size_t addr_cap;
    struct rc_worker_stats stats;
    /* Per-address mode: the peer addresses of the accepts in flight. Lives as long as the
     * ring, since the kernel writes to it, so it is part of the worker and never freed early. */
    struct rc_accept_slot accept_slots[RC_ACCEPT_SLOTS];
} __attribute__((aligned(64))); /* user_data tags need 16; 64 keeps workers off shared lines */

/* Starts the worker's thread. The thread joins the server's start barrier. */
int rc_worker_start(struct rc_worker *w);

#endif
