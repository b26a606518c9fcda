/*
 * The feed: the UNIX socket where backends publish, listen and talk back, speaking RESP2.
 *
 * The feed runs on its own thread with its own ring. For each PUBLISH it builds one rc_event
 * and posts the same pointer to every worker with a ring message. It answers the publisher
 * once every worker has handed the event to its subscribers (each worker adds its count, the
 * last one posts RC_OP_ACK back), so the integer reply is the true number of subscribers.
 *
 * Talking back (include/ringcast/upstream.h): a connection that SUBSCRIBEs to channels becomes
 * a listener, and every client message a worker posts for one of those channels (RC_OP_UPSTREAM)
 * is pushed to it as a RESP pub/sub message. SEND and CLOSE go to the worker of the connection
 * they name (RC_OP_DIRECT), and are answered when it posts them back (RC_OP_DIRECT_DONE).
 *
 * Replies stay in command order whatever their workers' timing. While max_pending events and
 * directs await their workers the feed stops reading commands, which bounds memory under any
 * rate. A publisher silent for feed_idle_timeout_ms is closed; a listener is meant to be quiet,
 * and is closed instead when it leaves more than max_subscriber_buffer bytes unread.
 */
#ifndef RINGCAST_FEED_H
#define RINGCAST_FEED_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "ringcast/channel.h"
#include "ringcast/config.h"
#include "ringcast/ring.h"
#include "ringcast/stats.h"
#include "ringcast/topics.h"

struct rc_server;

struct rc_feed {
    pthread_t thread;
    struct rc_server *server;    /* not owned */
    const struct rc_config *cfg; /* not owned */
    int listen_fd;               /* owned; bound by rc_feed_listen() */
    int init_error;
    struct rc_ring ring;     /* owned by the thread; exited by the server after join */
    uint64_t next_seq;       /* sequence number of the next event */
    char instance[24];       /* engine ids are "<instance>-<seq>" */
    struct rc_link conns;    /* every feed connection */
    struct rc_link paused;   /* connections waiting for pending events and directs to drain */
    struct rc_link idle;     /* publishers that are not closing, least recently active first */
    struct rc_topics topics; /* channels that connections listen on; owned */
    uint32_t directs;        /* SEND and CLOSE commands at their workers */
    bool stopping;
    bool accept_retry; /* the multishot accept ended on an error; re-arm within a second */
    struct rc_feed_stats stats;
} __attribute__((aligned(64))); /* user_data tags need 16; 64 keeps it off workers' lines */

/* Creates, binds (replacing a stale socket file) and listens on the configured socket path. */
int rc_feed_listen(struct rc_feed *f, const struct rc_config *cfg);

/* Starts the feed's thread. The thread joins the server's start barrier. */
int rc_feed_start(struct rc_feed *f);

#endif
