/*
 * Events: immutable, reference-counted, encoded once.
 *
 * The feed builds one rc_event per publish: the channel name and the wire bytes every
 * subscriber receives, for each protocol, in a single allocation: the SSE frame, the WebSocket
 * frame, and, when compression is on and the event is large enough, the WebSocket frame
 * compressed with permessage-deflate. It then hands the same pointer to every worker.
 * Holders are counted twice over so that the hot path stays free of shared writes:
 *  - `refs` (atomic) counts threads that hold the event: the feed until it has replied to the
 *    publisher, and each worker while it still uses the event.
 *  - `wrefs[w]` (plain) counts uses inside worker w: its channel history, and each send in
 *    flight. Only worker w touches wrefs[w]; when it drops to zero the worker gives up its
 *    `refs` reference. A send therefore costs a non-atomic increment, not a contended atomic.
 */
#ifndef RINGCAST_EVENT_H
#define RINGCAST_EVENT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct rc_event {
    atomic_uint refs;    /* threads holding the event; freed when it reaches zero */
    atomic_uint pending; /* workers that have not yet handed it to their subscribers */
    atomic_ulong handed; /* subscribers it was handed to, summed over all workers */
    uint64_t seq;        /* engine sequence number: publish order across all channels */
    uint64_t time_ms;    /* CLOCK_MONOTONIC at publish, for the history's time limit */
    void *origin;        /* the publishing feed connection; owned and read by the feed only */
    uint32_t hash;       /* rc_channel_hash() of the channel name */
    uint16_t channel_len;
    uint16_t nworkers;
    uint32_t sse_len;
    uint32_t ws_len;
    uint32_t wsz_len; /* 0 when there is no compressed frame */
    uint32_t env_len;
    uint32_t payload_len;
    uint16_t id_len;          /* the id is at sse + 4, right after "id: " */
    const char *channel;      /* points into data[] */
    const char *sse;          /* the SSE frame, points into data[] */
    const unsigned char *ws;  /* the WebSocket frame, header and payload, after the SSE frame */
    const unsigned char *wsz; /* the compressed WebSocket frame (RSV1 set), or NULL */
    const unsigned char *env; /* the envelope-mode WebSocket frame: header line and payload */
    uint32_t wrefs[];         /* nworkers counters, then the channel name and the frames */
};

/* How an event's WebSocket frame carries its payload. */
enum rc_event_ws_kind {
    RC_EVENT_WS_AUTO = 0, /* text when the payload is valid UTF-8, binary otherwise */
    RC_EVENT_WS_TEXT,     /* text; the payload must be valid UTF-8 */
    RC_EVENT_WS_BINARY,
};

/* The fields of a publish, as the feed parsed them. */
struct rc_event_spec {
    const char *channel;
    size_t channel_len;
    const char *id; /* the SSE id: field */
    size_t id_len;
    const char *type; /* the SSE event: field, or NULL */
    size_t type_len;
    const char *payload;
    size_t payload_len;
    enum rc_event_ws_kind ws_kind;
    bool compress; /* also build the permessage-deflate frame */
};

/*
 * Builds an event with refs = nworkers + 1 (every worker and the feed) and pending = nworkers.
 * With spec->compress the payload is compressed once (a 32 KiB window, no context), and the
 * compressed frame is kept only when it is shorter than the plain one: a connection that
 * negotiated compression may always be sent an uncompressed message. Returns NULL when memory
 * is short (or compression fails).
 */
struct rc_event *rc_event_new(const struct rc_event_spec *spec, uint64_t seq, unsigned nworkers);

/* The event's id (the SSE id: field). */
static inline const char *rc_event_id(const struct rc_event *ev)
{
    return ev->sse + 4;
}

/* Drops one thread reference; the last one frees the event. */
void rc_event_put(struct rc_event *ev);

/* Worker w takes one local use of ev. */
static inline void rc_event_use(struct rc_event *ev, unsigned w)
{
    ev->wrefs[w]++;
}

/* Worker w ends one local use; the last local use gives up the worker's thread reference. */
static inline void rc_event_unuse(struct rc_event *ev, unsigned w)
{
    if (--ev->wrefs[w] == 0)
        rc_event_put(ev);
}

#endif
