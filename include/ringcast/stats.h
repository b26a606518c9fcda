/*
 * Counters and gauges.
 *
 * Each counter has exactly one writer (the worker or feed thread that owns it) and is read by
 * the feed for INFO. The writer updates it with a relaxed load and store, which compiles to a
 * plain increment without a locked instruction; the reader's relaxed load sees a recent value.
 */
#ifndef RINGCAST_STATS_H
#define RINGCAST_STATS_H

#include <stdint.h>

#define rc_stat_add(field, n)                                                                      \
    __atomic_store_n(&(field), __atomic_load_n(&(field), __ATOMIC_RELAXED) + (n), __ATOMIC_RELAXED)
#define rc_stat_get(field) __atomic_load_n(&(field), __ATOMIC_RELAXED)

struct rc_worker_stats {
    uint64_t connections;         /* gauge: client connections open */
    uint64_t subscribers;         /* gauge: SSE streams and WebSockets */
    uint64_t channels;            /* gauge: channels with history or subscribers on this worker */
    uint64_t accepted;            /* connections accepted */
    uint64_t rejected_capacity;   /* connections refused because the worker was full */
    uint64_t rejected_global;     /* ... because the engine had max_connections open */
    uint64_t rejected_address;    /* ... because their address had max_connections_per_address */
    uint64_t http_errors;         /* requests answered with a 4xx or 5xx status */
    uint64_t header_timeouts;     /* requests whose head did not arrive within header_timeout */
    uint64_t deliveries;          /* events handed to a subscriber */
    uint64_t slow_disconnects;    /* subscribers closed for falling more than max_lag behind */
    uint64_t heartbeats;          /* heartbeat comments sent */
    uint64_t alloc_failures;      /* connections closed because memory was short */
    uint64_t ws_upgrades;         /* WebSocket handshakes answered with 101 */
    uint64_t ws_messages_in;      /* complete data messages received from WebSocket clients */
    uint64_t ws_errors;           /* WebSocket connections closed for a protocol violation */
    uint64_t ws_pings;            /* keepalive pings sent */
    uint64_t ws_pong_timeouts;    /* WebSocket connections closed for not answering a ping */
    uint64_t ws_commands;         /* /subscribe and /unsubscribe commands carried out */
    uint64_t ws_command_errors;   /* client commands answered with an error */
    uint64_t ws_upstream;         /* client messages handed to the feed's listeners */
    uint64_t ws_upstream_unheard; /* client messages nobody listened to (the client is told) */
    uint64_t ws_upstream_busy;    /* client messages refused over upstream_max_pending */
    uint64_t ws_direct;           /* SEND and CLOSE commands carried out on this worker */
    uint64_t ws_queue_overflows;  /* clients closed (1008) for leaving max_queued replies unread */
    uint64_t channel_limit;       /* requests refused over max_channels_per_connection */
    uint64_t resumes;             /* streams that started from a Last-Event-ID */
    uint64_t resume_gaps;         /* ... and were told that events were gone */
};

struct rc_feed_stats {
    uint64_t connections;        /* gauge: publisher connections open */
    uint64_t listeners;          /* gauge: connections in SUBSCRIBE mode (workers read it) */
    uint64_t commands;           /* commands executed */
    uint64_t published;          /* events accepted */
    uint64_t pending;            /* gauge: events not yet handed out by every worker */
    uint64_t protocol_errors;    /* connections closed for RESP protocol errors */
    uint64_t command_errors;     /* commands answered with an error */
    uint64_t rejected;           /* connections refused over max_connections */
    uint64_t msg_failures;       /* hand-offs to a worker that the kernel refused */
    uint64_t upstream_messages;  /* client messages from workers, pushed to listeners */
    uint64_t upstream_unheard;   /* client messages that found no listener */
    uint64_t listener_overflows; /* listeners closed for leaving max_subscriber_buffer unread */
    uint64_t direct_sent;        /* SEND and CLOSE applied to their connection */
    uint64_t direct_missed;      /* SEND and CLOSE whose connection no longer existed */
    uint64_t idle_timeouts; /* publishers closed after feed_idle_timeout_ms without a command */
};

#endif
