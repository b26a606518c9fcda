/*
 * Configuration: defaults, the ini loader and validation.
 *
 * Every key has a default, so ringcast runs without a file. A file is read with inih; unknown
 * sections and keys and bad values are errors reported as "file:line: what is wrong", because a
 * typo that is silently ignored is a surprise in production.
 */
#ifndef RINGCAST_CONFIG_H
#define RINGCAST_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "ringcast/log.h"

#define RC_CONFIG_MAX_PREFIXES 32

struct rc_config {
    /* [server] */
    char listen_host[64];                 /* IPv4 or IPv6 literal, without brackets */
    uint16_t listen_port;                 /* "listen = 127.0.0.1:8080" or "[::1]:8080" */
    uint32_t workers;                     /* 0 means one per online CPU ("auto") */
    uint32_t max_connections_per_worker;  /* capped again by RLIMIT_NOFILE per ring */
    uint32_t max_connections;             /* over all workers; 0: only the per-worker limit */
    uint32_t max_connections_per_address; /* from one client IP address; 0: no limit */
    uint32_t shutdown_grace_ms;           /* "shutdown_grace" in seconds, fractions allowed */
    uint32_t recv_buffers;                /* provided receive buffers per worker (power of 2) */
    uint32_t recv_buffer_size;            /* bytes per provided receive buffer */

    /* [http] */
    uint32_t max_request_line; /* bytes */
    uint32_t max_header_bytes; /* bytes of the whole request head */
    uint32_t max_headers;      /* header fields */
    uint32_t header_timeout_ms;
    char cors_origin[256]; /* empty: no Access-Control-Allow-Origin header */

    /* [sse] */
    uint32_t heartbeat_interval_ms; /* 0 disables heartbeats */
    uint32_t retry_ms;              /* 0: no retry: hint */
    bool watch_disconnects;         /* keep a receive armed on streams to see hang-ups at once */

    /* [channels] */
    uint32_t history_size;      /* events kept per channel and worker */
    uint32_t history_ttl_ms;    /* events older than this leave the history; 0: kept by count */
    uint64_t history_max_bytes; /* payload bytes one channel's history holds per worker */
    uint32_t max_lag;           /* events a subscriber may be behind before it is disconnected */
    uint64_t max_lag_bytes;     /* bytes of events it may be behind; 0: no byte limit */
    uint32_t max_channels_per_connection;
    uint32_t nprefixes; /* entries of prefixes[] in use */
    struct rc_config_prefix {
        char prefix[129];        /* channels whose name starts with this */
        uint32_t history_size;   /* replace the [channels] values for them; a key the */
        uint32_t history_ttl_ms; /* section leaves out holds the [channels] value */
        uint64_t history_max_bytes;
    } prefixes[RC_CONFIG_MAX_PREFIXES]; /* "[channels:PREFIX]" sections; the longest match wins */

    /* [feed] */
    char socket[108]; /* UNIX socket path (sun_path holds 108 bytes) */
    mode_t socket_mode;
    uint32_t max_payload; /* bytes of one bulk argument, so of one event payload */
    uint32_t max_feed_connections;
    uint32_t max_pending; /* published events awaiting workers before the feed stops reading */
    uint32_t feed_idle_timeout_ms; /* publisher connections silent this long are closed; 0: never */
    uint64_t max_subscriber_buffer; /* bytes queued to a SUBSCRIBEd connection before it is cut */

    /* [websocket] */
    char ws_protocols[256];           /* subprotocols spoken, "a,b" (empty: none) */
    bool ws_compression;              /* offer permessage-deflate to clients that ask */
    uint32_t ws_compress_min_size;    /* bytes: smaller events go uncompressed */
    uint32_t ws_max_message;          /* bytes of one client message */
    uint32_t ws_ping_interval_ms;     /* 0 disables keepalive pings */
    uint32_t ws_pong_timeout_ms;      /* below ws_ping_interval_ms */
    uint32_t ws_close_timeout_ms;     /* wait for the client's close after ours */
    uint32_t ws_upstream_max_pending; /* client messages on their way to the feed, per worker */
    uint32_t ws_max_queued;           /* feed SEND messages waiting for one connection */

    /* [log] */
    enum rc_log_level log_level;
};

/* Fills c with the built-in defaults (the values documented in conf/ringcast.ini). */
void rc_config_defaults(struct rc_config *c);

/*
 * Reads the ini file at path over the values already in c. Returns 0, or a negative errno with
 * err set to "path:line: message" (or "path: message" when the file cannot be read).
 *
 * A "[channels:PREFIX]" section adds an entry to c->prefixes, or replaces the entry c already
 * has for that prefix. The keys it leaves out take the [channels] values that hold once the
 * whole file is read, wherever in the file [channels] is.
 */
int rc_config_load_file(struct rc_config *c, const char *path, char *err, size_t errlen);

/*
 * Like rc_config_load_file() but parses text[0..len); `name` stands for the file in messages.
 * Pure apart from writing c and err, so the loader can be unit tested.
 */
int rc_config_load_string(struct rc_config *c, const char *name, const char *text, size_t len,
                          char *err, size_t errlen);

/* Checks values that depend on each other (max_request_line <= max_header_bytes, ...). */
int rc_config_validate(const struct rc_config *c, char *err, size_t errlen);

/*
 * The history settings of the channel name[0..len): those of the longest "[channels:PREFIX]"
 * section whose prefix starts the name, else the [channels] values. Pure; any thread.
 */
void rc_config_channel_history(const struct rc_config *c, const char *name, size_t len,
                               uint32_t *size, uint32_t *ttl_ms, uint64_t *max_bytes);

/*
 * For a reload: copies every key that only takes effect at start-up (it sized an allocation or a
 * kernel object, or was copied into state that outlives a loop iteration) from `live` into
 * `next`, calling changed(key, arg) with "[section] key" for each one whose value differs (the
 * prefix sections count as one key, "[channels:PREFIX]"). Every other key of `next` takes
 * effect as it is. conf/ringcast.ini marks the same keys "(restart)", and a unit test holds the
 * two together.
 */
void rc_config_keep_restart_keys(struct rc_config *next, const struct rc_config *live,
                                 void (*changed)(const char *key, void *arg), void *arg);

#endif
