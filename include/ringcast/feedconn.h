/*
 * Feed connections, shared by the feed's modules: feed.c (the thread, its ring, connections,
 * replies in command order and pushing to listeners) and feedcmd.c (the commands). The channel
 * index they use is a module of its own (include/ringcast/topics.h). Nothing here is used
 * outside the feed thread.
 */
#ifndef RINGCAST_FEEDCONN_H
#define RINGCAST_FEEDCONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "ringcast/channel.h"
#include "ringcast/event.h"
#include "ringcast/feed.h"
#include "ringcast/resp.h"
#include "ringcast/ring.h"
#include "ringcast/topics.h"
#include "ringcast/upstream.h"

/* Enough for SUBSCRIBE with many channels; argv lives on the feed thread's stack (16 KiB). */
#define MAX_ARGS    1024
#define MAX_CHANNEL 128 /* the longest name rc_http_channel_valid() accepts */

/* A growable byte buffer. */
struct buf {
    char *p; /* owned */
    size_t len;
    size_t cap;
};

/* A command whose reply waits for workers; private to feed.c, which explains it. */
struct pending;

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
    struct rc_link
        subs;       /* struct rc_topic_sub.clink: its channels; nodes owned by rc_feed.topics */
    uint32_t nsubs; /* nonzero: the connection is in subscribed mode */
    int fd;         /* owned; closed when the connection is freed */
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
    struct feed_conn *cut_next; /* on on_upstream()'s list of listeners to cut; not owned */
};

/* CLOCK_MONOTONIC in milliseconds, the clock of feed_conn.last_ms and of the idle timeout. */
static inline uint64_t rc_feed_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/*
 * A ring message that fails produces a completion on the sender's ring with RC_OP_MSG_FAILED.
 * The feed posts several kinds of object, so it names the kind in that completion's generation
 * field: the op of the message that failed.
 */
static inline uint64_t rc_feed_msg_failed_ud(const void *obj, enum rc_op op)
{
    return rc_ud(obj, RC_OP_MSG_FAILED, (uint16_t)op);
}

/* feed.c: replies in command order, and listeners. */

/* Queues reply bytes behind every earlier reply. Memory exhaustion drops the connection. */
void rc_feed_reply(struct feed_conn *fc, const void *data, size_t n);

/* Formats a reply of at most 511 bytes (a longer one is cut) and queues it as rc_feed_reply(). */
void rc_feed_replyf(struct feed_conn *fc, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/*
 * Queues a command of fc whose reply waits for workers: a publish (ev, whose reference the
 * queue takes over) or a SEND or CLOSE (d, which the queue comes to own). Its reply, and those of
 * the commands behind it, go out once the feed has cleared ev->origin or d->origin; the caller
 * points that at fc once this has succeeded. Returns 0, or -ENOMEM with nothing queued.
 */
int rc_feed_queue_pending(struct feed_conn *fc, struct rc_event *ev, struct rc_direct *d);

/*
 * Subscribes fc to a channel (nothing when it already is). Its first channel makes it a
 * listener: it leaves the idle list and counts in the listeners gauge. Returns 0 or -ENOMEM.
 */
int rc_feed_sub_add(struct rc_feed *f, struct feed_conn *fc, const char *name, size_t len);

/*
 * Ends one subscription of a connection; its last one takes it out of the listeners gauge.
 * Putting it back on the idle list is the caller's choice, since a closing connection stays off.
 */
void rc_feed_sub_remove(struct rc_feed *f, struct rc_topic_sub *s);

/* feedcmd.c: the commands. */

/*
 * Runs one command of fc (argc >= 1, argv[0] its name) after the checks Redis makes, in its
 * order: name, arity, pub/sub context. Its reply is queued on fc, or, for a command that waits
 * for workers, its place among the replies; starting the send is the caller's.
 */
void rc_feedcmd_execute(struct rc_feed *f, struct feed_conn *fc, const struct rc_resp_arg *argv,
                        size_t argc);

#endif
