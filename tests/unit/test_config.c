/*
 * Tests for the configuration loader: defaults, every key, every kind of bad value and
 * structural error with the line it names, file reading, validation, per-prefix channel
 * sections and their lookup, the keys a reload keeps, and that conf/ringcast.ini loads to
 * exactly the defaults and marks every key reloadable or restart as the loader treats it.
 */
#include "ringcast/config.h"

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "test.h"

#ifdef RC_SOURCE_DIR
#define CONF_PATH RC_SOURCE_DIR "/conf/ringcast.ini"
#else
#define CONF_PATH "conf/ringcast.ini"
#endif

/* Loads a NUL-terminated text named "t.ini" over c. */
static int load(struct rc_config *c, const char *text, char *err, size_t errlen)
{
    return rc_config_load_string(c, "t.ini", text, strlen(text), err, errlen);
}

/* Returns the name of the first field in which a and b differ, or NULL when they are equal. */
static const char *config_diff(const struct rc_config *a, const struct rc_config *b)
{
#define SAME(f)                                                                                    \
    do {                                                                                           \
        if (a->f != b->f)                                                                          \
            return #f;                                                                             \
    } while (0)
#define SAME_STR(f)                                                                                \
    do {                                                                                           \
        if (strncmp(a->f, b->f, sizeof(a->f)) != 0)                                                \
            return #f;                                                                             \
    } while (0)
    SAME_STR(listen_host);
    SAME(listen_port);
    SAME(workers);
    SAME(max_connections_per_worker);
    SAME(max_connections);
    SAME(max_connections_per_address);
    SAME(shutdown_grace_ms);
    SAME(recv_buffers);
    SAME(recv_buffer_size);
    SAME(max_request_line);
    SAME(max_header_bytes);
    SAME(max_headers);
    SAME(header_timeout_ms);
    SAME_STR(cors_origin);
    SAME(heartbeat_interval_ms);
    SAME(retry_ms);
    SAME(watch_disconnects);
    SAME(history_size);
    SAME(history_ttl_ms);
    SAME(history_max_bytes);
    SAME(max_lag);
    SAME(max_lag_bytes);
    SAME(max_channels_per_connection);
    SAME(nprefixes);
    for (uint32_t i = 0; i < a->nprefixes && i < RC_CONFIG_MAX_PREFIXES; i++) {
        SAME_STR(prefixes[i].prefix);
        SAME(prefixes[i].history_size);
        SAME(prefixes[i].history_ttl_ms);
        SAME(prefixes[i].history_max_bytes);
    }
    SAME_STR(socket);
    SAME(socket_mode);
    SAME(max_payload);
    SAME(max_feed_connections);
    SAME(max_pending);
    SAME(feed_idle_timeout_ms);
    SAME(max_subscriber_buffer);
    SAME_STR(ws_protocols);
    SAME(ws_compression);
    SAME(ws_compress_min_size);
    SAME(ws_max_message);
    SAME(ws_ping_interval_ms);
    SAME(ws_pong_timeout_ms);
    SAME(ws_close_timeout_ms);
    SAME(ws_upstream_max_pending);
    SAME(ws_max_queued);
    SAME(log_level);
#undef SAME
#undef SAME_STR
    return NULL;
}

TEST(defaults)
{
    struct rc_config c;

    memset(&c, 0xab, sizeof(c));
    rc_config_defaults(&c);
    CHECK(strcmp(c.listen_host, "127.0.0.1") == 0);
    CHECK_EQ(c.listen_port, 8080);
    CHECK_EQ(c.workers, 0);
    CHECK_EQ(c.max_connections_per_worker, 100000);
    CHECK_EQ(c.max_connections, 0);
    CHECK_EQ(c.max_connections_per_address, 0);
    CHECK_EQ(c.shutdown_grace_ms, 5000);
    CHECK_EQ(c.recv_buffers, 1024);
    CHECK_EQ(c.recv_buffer_size, 4096);
    CHECK_EQ(c.max_request_line, 4096);
    CHECK_EQ(c.max_header_bytes, 8192);
    CHECK_EQ(c.max_headers, 64);
    CHECK_EQ(c.header_timeout_ms, 10000);
    CHECK(strcmp(c.cors_origin, "") == 0);
    CHECK_EQ(c.heartbeat_interval_ms, 15000);
    CHECK_EQ(c.retry_ms, 0);
    CHECK_EQ(c.watch_disconnects, true);
    CHECK_EQ(c.history_size, 1024);
    CHECK_EQ(c.history_ttl_ms, 300000);
    CHECK_EQ(c.history_max_bytes, 8 * 1024 * 1024);
    CHECK_EQ(c.max_lag, 1024);
    CHECK_EQ(c.max_lag_bytes, 4 * 1024 * 1024);
    CHECK_EQ(c.max_channels_per_connection, 16);
    CHECK_EQ(c.nprefixes, 0);
    CHECK(strcmp(c.socket, "ringcast.sock") == 0);
    CHECK_EQ(c.socket_mode, 0660);
    CHECK_EQ(c.max_payload, 1024 * 1024);
    CHECK_EQ(c.max_feed_connections, 64);
    CHECK_EQ(c.max_pending, 4096);
    CHECK_EQ(c.feed_idle_timeout_ms, 600000);
    CHECK_EQ(c.max_subscriber_buffer, 4 * 1024 * 1024);
    CHECK(strcmp(c.ws_protocols, "") == 0);
    CHECK_EQ(c.ws_compression, false);
    CHECK_EQ(c.ws_compress_min_size, 1024);
    CHECK_EQ(c.ws_max_message, 65536);
    CHECK_EQ(c.ws_ping_interval_ms, 30000);
    CHECK_EQ(c.ws_pong_timeout_ms, 10000);
    CHECK_EQ(c.ws_close_timeout_ms, 5000);
    CHECK_EQ(c.ws_upstream_max_pending, 1024);
    CHECK_EQ(c.ws_max_queued, 64);
    CHECK_EQ(c.log_level, RC_LOG_INFO);
}

TEST(empty_and_comment_only_files)
{
    struct rc_config c, d;
    char err[256] = "";

    rc_config_defaults(&c);
    rc_config_defaults(&d);
    CHECK_EQ(load(&c, "", err, sizeof(err)), 0);
    CHECK_EQ(load(&c, "; comment\n# comment\n\n   \n\t\n", err, sizeof(err)), 0);
    CHECK_EQ(load(&c, "[server]\n[http]\n[sse]\n[channels]\n[feed]\n[websocket]\n[log]\n", err,
                  sizeof(err)),
             0);
    CHECK(config_diff(&c, &d) == NULL);
    CHECK_EQ(err[0], '\0');
}

TEST(every_key_parsed)
{
    static const char text[] = "[server]\n"
                               "listen = [::1]:9090\n"
                               "workers = 12\n"
                               "max_connections_per_worker = 5000\n"
                               "max_connections = 200000\n"
                               "max_connections_per_address = 50\n"
                               "shutdown_grace = 0.5\n"
                               "recv_buffers = 256\n"
                               "recv_buffer_size = 16k\n"
                               "[http]\n"
                               "max_request_line = 2048\n"
                               "max_header_bytes = 1m\n"
                               "max_headers = 100\n"
                               "header_timeout = 2.25\n"
                               "cors_origin = https://example.com:8443\n"
                               "[sse]\n"
                               "heartbeat_interval = 0\n"
                               "retry = 1.5\n"
                               "watch_disconnects = off\n"
                               "[channels]\n"
                               "history_size = 4096\n"
                               "history_ttl = 60.5\n"
                               "history_max_bytes = 2g\n"
                               "max_lag = 100\n"
                               "max_lag_bytes = 10g\n"
                               "max_channels_per_connection = 3\n"
                               "[feed]\n"
                               "socket = /run/ringcast/feed.sock\n"
                               "mode = 0600\n"
                               "max_payload = 64k\n"
                               "max_connections = 8\n"
                               "max_pending = 100000\n"
                               "idle_timeout = 30\n"
                               "max_subscriber_buffer = 4g\n"
                               "[websocket]\n"
                               "protocols = chat.v2, chat.v1\n"
                               "compression = on\n"
                               "compress_min_size = 0\n"
                               "max_message = 1m\n"
                               "ping_interval = 0\n"
                               "pong_timeout = 0.5\n"
                               "close_timeout = 1.25\n"
                               "upstream_max_pending = 5\n"
                               "max_queued = 7\n"
                               "[log]\n"
                               "level = debug\n";
    struct rc_config c;
    char err[256] = "";

    rc_config_defaults(&c);
    CHECK_EQ(load(&c, text, err, sizeof(err)), 0);
    CHECK(strcmp(c.listen_host, "::1") == 0);
    CHECK_EQ(c.listen_port, 9090);
    CHECK_EQ(c.workers, 12);
    CHECK_EQ(c.max_connections_per_worker, 5000);
    CHECK_EQ(c.max_connections, 200000);
    CHECK_EQ(c.max_connections_per_address, 50);
    CHECK_EQ(c.shutdown_grace_ms, 500);
    CHECK_EQ(c.recv_buffers, 256);
    CHECK_EQ(c.recv_buffer_size, 16384);
    CHECK_EQ(c.max_request_line, 2048);
    CHECK_EQ(c.max_header_bytes, 1048576);
    CHECK_EQ(c.max_headers, 100);
    CHECK_EQ(c.header_timeout_ms, 2250);
    CHECK(strcmp(c.cors_origin, "https://example.com:8443") == 0);
    CHECK_EQ(c.heartbeat_interval_ms, 0);
    CHECK_EQ(c.retry_ms, 1500);
    CHECK_EQ(c.watch_disconnects, false);
    CHECK_EQ(c.history_size, 4096);
    CHECK_EQ(c.history_ttl_ms, 60500);
    CHECK_EQ(c.history_max_bytes, 2ull << 30);
    CHECK_EQ(c.max_lag, 100);
    CHECK_EQ(c.max_lag_bytes, 10ull << 30);
    CHECK_EQ(c.max_channels_per_connection, 3);
    CHECK(strcmp(c.socket, "/run/ringcast/feed.sock") == 0);
    CHECK_EQ(c.socket_mode, 0600);
    CHECK_EQ(c.max_payload, 65536);
    CHECK_EQ(c.max_feed_connections, 8);
    CHECK_EQ(c.max_pending, 100000);
    CHECK_EQ(c.feed_idle_timeout_ms, 30000);
    CHECK_EQ(c.max_subscriber_buffer, 4ull << 30);
    CHECK(strcmp(c.ws_protocols, "chat.v2,chat.v1") == 0);
    CHECK_EQ(c.ws_compression, true);
    CHECK_EQ(c.ws_compress_min_size, 0);
    CHECK_EQ(c.ws_max_message, 1048576);
    CHECK_EQ(c.ws_ping_interval_ms, 0);
    CHECK_EQ(c.ws_pong_timeout_ms, 500);
    CHECK_EQ(c.ws_close_timeout_ms, 1250);
    CHECK_EQ(c.ws_upstream_max_pending, 5);
    CHECK_EQ(c.ws_max_queued, 7);
    CHECK_EQ(c.log_level, RC_LOG_DEBUG);
    CHECK_EQ(rc_config_validate(&c, err, sizeof(err)), 0);
}

/* A value that must load, and the number it must load as. */
struct good_case {
    const char *text;
    size_t offset, width; /* of the uint32_t or uint64_t field */
    unsigned long long value;
};

#define FIELD(f) offsetof(struct rc_config, f), sizeof(((struct rc_config *)NULL)->f)

static const struct good_case good[] = {
    {"[server]\nworkers = auto", FIELD(workers), 0},
    {"[server]\nworkers = 1", FIELD(workers), 1},
    {"[server]\nworkers = 1024", FIELD(workers), 1024},
    {"[server]\nworkers = 0008", FIELD(workers), 8},
    {"[server]\nmax_connections_per_worker = 1", FIELD(max_connections_per_worker), 1},
    {"[server]\nmax_connections_per_worker = 10000000", FIELD(max_connections_per_worker),
     10000000},
    {"[server]\nshutdown_grace = 0", FIELD(shutdown_grace_ms), 0},
    {"[server]\nshutdown_grace = 0.25", FIELD(shutdown_grace_ms), 250},
    {"[server]\nshutdown_grace = 0.001", FIELD(shutdown_grace_ms), 1},
    {"[server]\nshutdown_grace = 1.2500", FIELD(shutdown_grace_ms), 1250},
    {"[server]\nshutdown_grace = 3600", FIELD(shutdown_grace_ms), 3600000},
    {"[server]\nshutdown_grace = 3600.000", FIELD(shutdown_grace_ms), 3600000},
    {"[server]\nrecv_buffers = 1", FIELD(recv_buffers), 1},
    {"[server]\nrecv_buffers = 32768", FIELD(recv_buffers), 32768},
    {"[server]\nrecv_buffer_size = 256", FIELD(recv_buffer_size), 256},
    {"[server]\nrecv_buffer_size = 64k", FIELD(recv_buffer_size), 65536},
    {"[server]\nrecv_buffer_size = 1K", FIELD(recv_buffer_size), 1024},
    {"[http]\nmax_request_line = 16", FIELD(max_request_line), 16},
    {"[http]\nmax_request_line = 64K", FIELD(max_request_line), 65536},
    {"[http]\nmax_header_bytes = 256", FIELD(max_header_bytes), 256},
    {"[http]\nmax_header_bytes = 1M", FIELD(max_header_bytes), 1048576},
    {"[http]\nmax_header_bytes = 1024k", FIELD(max_header_bytes), 1048576},
    {"[http]\nmax_headers = 1", FIELD(max_headers), 1},
    {"[http]\nmax_headers = 1024", FIELD(max_headers), 1024},
    {"[http]\nheader_timeout = 0.1", FIELD(header_timeout_ms), 100},
    {"[http]\nheader_timeout = 3600", FIELD(header_timeout_ms), 3600000},
    {"[sse]\nheartbeat_interval = 0.5", FIELD(heartbeat_interval_ms), 500},
    {"[sse]\nheartbeat_interval = 3600", FIELD(heartbeat_interval_ms), 3600000},
    {"[sse]\nretry = 3", FIELD(retry_ms), 3000},
    {"[sse]\nretry = 3600", FIELD(retry_ms), 3600000},
    {"[channels]\nhistory_size = 1", FIELD(history_size), 1},
    {"[channels]\nhistory_size = 1048576", FIELD(history_size), 1048576},
    {"[channels]\nmax_lag = 1", FIELD(max_lag), 1},
    {"[channels]\nmax_lag = 1048576", FIELD(max_lag), 1048576},
    {"[feed]\nmax_payload = 1", FIELD(max_payload), 1},
    {"[feed]\nmax_payload = 512m", FIELD(max_payload), 536870912},
    {"[feed]\nmax_payload = 524288k", FIELD(max_payload), 536870912},
    {"[feed]\nmax_connections = 1", FIELD(max_feed_connections), 1},
    {"[feed]\nmax_connections = 65536", FIELD(max_feed_connections), 65536},
    {"[feed]\nmax_pending = 1", FIELD(max_pending), 1},
    {"[feed]\nmax_pending = 1048576", FIELD(max_pending), 1048576},
    {"[server]\nmax_connections = 0", FIELD(max_connections), 0},
    {"[server]\nmax_connections = 10000000", FIELD(max_connections), 10000000},
    {"[server]\nmax_connections_per_address = 0", FIELD(max_connections_per_address), 0},
    {"[server]\nmax_connections_per_address = 10000000", FIELD(max_connections_per_address),
     10000000},
    {"[channels]\nhistory_ttl = 0", FIELD(history_ttl_ms), 0},
    {"[channels]\nhistory_ttl = 0.001", FIELD(history_ttl_ms), 1},
    {"[channels]\nhistory_ttl = 86400", FIELD(history_ttl_ms), 86400000},
    {"[channels]\nhistory_max_bytes = 1k", FIELD(history_max_bytes), 1024},
    {"[channels]\nhistory_max_bytes = 1024", FIELD(history_max_bytes), 1024},
    {"[channels]\nhistory_max_bytes = 64g", FIELD(history_max_bytes), 64ull << 30},
    {"[channels]\nhistory_max_bytes = 65536m", FIELD(history_max_bytes), 64ull << 30},
    {"[channels]\nmax_lag_bytes = 0", FIELD(max_lag_bytes), 0},
    {"[channels]\nmax_lag_bytes = 1", FIELD(max_lag_bytes), 1},
    {"[channels]\nmax_lag_bytes = 64G", FIELD(max_lag_bytes), 64ull << 30},
    {"[channels]\nmax_lag_bytes = 68719476736", FIELD(max_lag_bytes), 64ull << 30},
    {"[channels]\nmax_channels_per_connection = 1", FIELD(max_channels_per_connection), 1},
    {"[channels]\nmax_channels_per_connection = 1024", FIELD(max_channels_per_connection), 1024},
    {"[feed]\nidle_timeout = 0", FIELD(feed_idle_timeout_ms), 0},
    {"[feed]\nidle_timeout = 0.5", FIELD(feed_idle_timeout_ms), 500},
    {"[feed]\nidle_timeout = 86400", FIELD(feed_idle_timeout_ms), 86400000},
    {"[feed]\nmax_subscriber_buffer = 1k", FIELD(max_subscriber_buffer), 1024},
    {"[feed]\nmax_subscriber_buffer = 4g", FIELD(max_subscriber_buffer), 4ull << 30},
    {"[feed]\nmax_subscriber_buffer = 4294967296", FIELD(max_subscriber_buffer), 4ull << 30},
    {"[websocket]\nupstream_max_pending = 1", FIELD(ws_upstream_max_pending), 1},
    {"[websocket]\nupstream_max_pending = 1048576", FIELD(ws_upstream_max_pending), 1048576},
    {"[websocket]\nmax_queued = 1", FIELD(ws_max_queued), 1},
    {"[websocket]\nmax_queued = 65536", FIELD(ws_max_queued), 65536},
};

TEST(good_values)
{
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        struct rc_config c;
        char err[256] = "";
        unsigned long long got;

        rc_config_defaults(&c);
        if (load(&c, good[i].text, err, sizeof(err)) != 0)
            fprintf(stderr, "good[%zu]: %s\n", i, err);
        CHECK_EQ(load(&c, good[i].text, err, sizeof(err)), 0);
        if (good[i].width == sizeof(uint64_t)) {
            uint64_t v;
            memcpy(&v, (char *)&c + good[i].offset, sizeof(v));
            got = v;
        } else {
            uint32_t v;
            memcpy(&v, (char *)&c + good[i].offset, sizeof(v));
            got = v;
        }
        if (got != good[i].value)
            fprintf(stderr, "good[%zu]: \"%s\"\n", i, good[i].text);
        CHECK_EQ(got, good[i].value);
    }
}

TEST(listen_forms)
{
    static const struct {
        const char *value, *host;
        unsigned port;
    } forms[] = {
        {"127.0.0.1:8080", "127.0.0.1", 8080},
        {"*:80", "0.0.0.0", 80},
        {"0.0.0.0:65535", "0.0.0.0", 65535},
        {"[::1]:1", "::1", 1},
        {"[::]:443", "::", 443},
        {"[2001:db8::ffff:192.0.2.1]:8080", "2001:db8::ffff:192.0.2.1", 8080},
    };

    for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
        struct rc_config c;
        char text[128], err[256] = "";

        rc_config_defaults(&c);
        snprintf(text, sizeof(text), "[server]\nlisten = %s\n", forms[i].value);
        CHECK_EQ(load(&c, text, err, sizeof(err)), 0);
        CHECK(strcmp(c.listen_host, forms[i].host) == 0);
        CHECK_EQ(c.listen_port, forms[i].port);
    }
}

TEST(string_values)
{
    struct rc_config c;
    char text[512], err[256] = "";
    char path[108];

    /* The longest socket path that fits sun_path with its NUL. */
    memset(path, 'p', 107);
    path[107] = '\0';
    rc_config_defaults(&c);
    snprintf(text, sizeof(text), "[feed]\nsocket = %s\n", path);
    CHECK_EQ(load(&c, text, err, sizeof(err)), 0);
    CHECK(strcmp(c.socket, path) == 0);
    snprintf(text, sizeof(text), "[feed]\nsocket = %sp\n", path);
    CHECK_EQ(load(&c, text, err, sizeof(err)), -EINVAL);
    CHECK(strncmp(err, "t.ini:2: socket: expected a path of 1-107 bytes, got 'ppp", 57) == 0);

    CHECK_EQ(load(&c, "[feed]\nmode = 0\n", err, sizeof(err)), 0);
    CHECK_EQ(c.socket_mode, 0);
    CHECK_EQ(load(&c, "[feed]\nmode = 777\n", err, sizeof(err)), 0);
    CHECK_EQ(c.socket_mode, 0777);

    /* An empty origin turns CORS off again. */
    CHECK_EQ(load(&c, "[http]\ncors_origin = *\n", err, sizeof(err)), 0);
    CHECK(strcmp(c.cors_origin, "*") == 0);
    CHECK_EQ(load(&c, "[http]\ncors_origin =\n", err, sizeof(err)), 0);
    CHECK(strcmp(c.cors_origin, "") == 0);

    CHECK_EQ(load(&c, "[log]\nlevel = error\n", err, sizeof(err)), 0);
    CHECK_EQ(c.log_level, RC_LOG_ERROR);
    CHECK_EQ(load(&c, "[log]\nlevel = warn\n", err, sizeof(err)), 0);
    CHECK_EQ(c.log_level, RC_LOG_WARN);
    CHECK_EQ(load(&c, "[log]\nlevel = info\n", err, sizeof(err)), 0);
    CHECK_EQ(c.log_level, RC_LOG_INFO);
    CHECK_EQ(load(&c, "[log]\nlevel = debug\n", err, sizeof(err)), 0);
    CHECK_EQ(c.log_level, RC_LOG_DEBUG);
}

/* A value that must be refused, and the message for it without the "t.ini:N: " prefix. */
struct bad_case {
    const char *section, *key, *value, *msg;
};

#define E_LISTEN    "host:port with an IPv4 address, [IPv6 address] or * and a port 1-65535"
#define E_WORKERS   "'auto' or an integer 1-1024"
#define E_CONNS     "an integer 1-10000000"
#define E_GRACE     "seconds 0-3600 (up to three decimals)"
#define E_RECVBUFS  "a power of two 1-32768"
#define E_RECVSIZE  "a size in bytes 256-64k (suffix k, m or g allowed)"
#define E_REQLINE   "a size in bytes 16-64k (suffix k, m or g allowed)"
#define E_HEADBYTES "a size in bytes 256-1m (suffix k, m or g allowed)"
#define E_HEADERS   "an integer 1-1024"
#define E_TIMEOUT   "seconds 0.1-3600 (up to three decimals)"
#define E_CORS      "at most 255 bytes without control characters"
#define E_SECONDS   "seconds 0-3600 (up to three decimals)"
#define E_1M        "an integer 1-1048576"
#define E_SOCKET    "a path of 1-107 bytes"
#define E_MODE      "octal permission bits 0-0777"
#define E_PAYLOAD   "a size in bytes 1-512m (suffix k, m or g allowed)"
#define E_FEEDCONNS "an integer 1-65536"
#define E_LEVEL     "error, warn, info or debug"
#define E_CONNS0    "an integer 0-10000000"
#define E_DAY       "seconds 0-86400 (up to three decimals)"
#define E_HISTBYTES "a size in bytes 1k-64g (suffix k, m or g allowed)"
#define E_LAGBYTES  "a size in bytes 0-64g (suffix k, m or g allowed)"
#define E_CHANNELS  "an integer 1-1024"
#define E_SUBBUF    "a size in bytes 1k-4g (suffix k, m or g allowed)"
#define E_QUEUED    "an integer 1-65536"

static const struct bad_case bad[] = {
    {"server", "listen", "localhost:80", E_LISTEN},
    {"server", "listen", "127.0.0.1", E_LISTEN},
    {"server", "listen", "127.0.0.1:0", E_LISTEN},
    {"server", "listen", "127.0.0.1:65536", E_LISTEN},
    {"server", "listen", "127.0.0.1:80x", E_LISTEN},
    {"server", "listen", "127.0.0.1:+80", E_LISTEN},
    {"server", "listen", "127.1:80", E_LISTEN},
    {"server", "listen", "::1:80", E_LISTEN},
    {"server", "listen", "[::1]", E_LISTEN},
    {"server", "listen", "[::1]:", E_LISTEN},
    {"server", "listen", "[127.0.0.1]:80", E_LISTEN},
    {"server", "listen", "[::1:80", E_LISTEN},
    {"server", "listen", "*:", E_LISTEN},
    {"server", "listen", "**:80", E_LISTEN},
    {"server", "listen", ":80", E_LISTEN},
    {"server", "listen", "", E_LISTEN},
    {"server", "workers", "x", E_WORKERS},
    {"server", "workers", "0", E_WORKERS},
    {"server", "workers", "1025", E_WORKERS},
    {"server", "workers", "-1", E_WORKERS},
    {"server", "workers", "AUTO", E_WORKERS},
    {"server", "workers", "auto1", E_WORKERS},
    {"server", "workers", "", E_WORKERS},
    {"server", "max_connections_per_worker", "0", E_CONNS},
    {"server", "max_connections_per_worker", "10000001", E_CONNS},
    {"server", "max_connections_per_worker", "1e6", E_CONNS},
    {"server", "max_connections_per_worker", "0x10", E_CONNS},
    {"server", "max_connections_per_worker", "+5", E_CONNS},
    {"server", "max_connections_per_worker", "99999999999999999999999999", E_CONNS},
    {"server", "shutdown_grace", "3600.001", E_GRACE},
    {"server", "shutdown_grace", "3601", E_GRACE},
    {"server", "shutdown_grace", "-1", E_GRACE},
    {"server", "shutdown_grace", "1.", E_GRACE},
    {"server", "shutdown_grace", ".5", E_GRACE},
    {"server", "shutdown_grace", "0.0001", E_GRACE},
    {"server", "shutdown_grace", "1,5", E_GRACE},
    {"server", "shutdown_grace", "5s", E_GRACE},
    {"server", "shutdown_grace", "1.2.3", E_GRACE},
    {"server", "shutdown_grace", "99999999999999999999999", E_GRACE},
    {"server", "shutdown_grace", "", E_GRACE},
    {"server", "recv_buffers", "0", E_RECVBUFS},
    {"server", "recv_buffers", "3", E_RECVBUFS},
    {"server", "recv_buffers", "1000", E_RECVBUFS},
    {"server", "recv_buffers", "65536", E_RECVBUFS},
    {"server", "recv_buffers", "1k", E_RECVBUFS},
    {"server", "recv_buffer_size", "255", E_RECVSIZE},
    {"server", "recv_buffer_size", "65537", E_RECVSIZE},
    {"server", "recv_buffer_size", "128k", E_RECVSIZE},
    {"server", "recv_buffer_size", "4kb", E_RECVSIZE},
    {"server", "recv_buffer_size", "k", E_RECVSIZE},
    {"server", "recv_buffer_size", "1.5k", E_RECVSIZE},
    {"server", "recv_buffer_size", "4 k", E_RECVSIZE},
    {"server", "recv_buffer_size", "99999999999999999999g", E_RECVSIZE},
    {"http", "max_request_line", "15", E_REQLINE},
    {"http", "max_request_line", "65537", E_REQLINE},
    {"http", "max_request_line", "1m", E_REQLINE},
    {"http", "max_header_bytes", "255", E_HEADBYTES},
    {"http", "max_header_bytes", "1025k", E_HEADBYTES},
    {"http", "max_header_bytes", "1g", E_HEADBYTES},
    {"http", "max_headers", "0", E_HEADERS},
    {"http", "max_headers", "1025", E_HEADERS},
    {"http", "header_timeout", "0", E_TIMEOUT},
    {"http", "header_timeout", "0.099", E_TIMEOUT},
    {"http", "header_timeout", "3601", E_TIMEOUT},
    {"http", "cors_origin", "https://a\rb", E_CORS},
    {"http", "cors_origin", "https://a\x01.com", E_CORS},
    {"http", "cors_origin", "https://a\x7f.com", E_CORS},
    {"sse", "heartbeat_interval", "3601", E_SECONDS},
    {"sse", "heartbeat_interval", "-1", E_SECONDS},
    {"sse", "heartbeat_interval", "off", E_SECONDS},
    {"sse", "retry", "3600.5", E_SECONDS},
    {"sse", "retry", "1000ms", E_SECONDS},
    {"sse", "watch_disconnects", "yes", "on or off"},
    {"sse", "watch_disconnects", "", "on or off"},
    {"channels", "history_size", "0", E_1M},
    {"channels", "history_size", "1048577", E_1M},
    {"channels", "history_size", "1k", E_1M},
    {"channels", "max_lag", "0", E_1M},
    {"channels", "max_lag", "1048577", E_1M},
    {"feed", "socket", "", E_SOCKET},
    {"feed", "mode", "0778", E_MODE},
    {"feed", "mode", "1000", E_MODE},
    {"feed", "mode", "8", E_MODE},
    {"feed", "mode", "0x1ff", E_MODE},
    {"feed", "mode", "-1", E_MODE},
    {"feed", "mode", "rw", E_MODE},
    {"feed", "mode", "", E_MODE},
    {"feed", "max_payload", "0", E_PAYLOAD},
    {"feed", "max_payload", "513m", E_PAYLOAD},
    {"feed", "max_payload", "1g", E_PAYLOAD},
    {"feed", "max_payload", "1t", E_PAYLOAD},
    {"feed", "max_payload", "1mm", E_PAYLOAD},
    {"feed", "max_payload", "-1", E_PAYLOAD},
    {"feed", "max_connections", "0", E_FEEDCONNS},
    {"feed", "max_connections", "65537", E_FEEDCONNS},
    {"feed", "max_pending", "0", E_1M},
    {"feed", "max_pending", "1048577", E_1M},
    {"server", "max_connections", "10000001", E_CONNS0},
    {"server", "max_connections", "-1", E_CONNS0},
    {"server", "max_connections", "", E_CONNS0},
    {"server", "max_connections_per_address", "10000001", E_CONNS0},
    {"server", "max_connections_per_address", "off", E_CONNS0},
    {"channels", "history_ttl", "86400.001", E_DAY},
    {"channels", "history_ttl", "86401", E_DAY},
    {"channels", "history_ttl", "5m", E_DAY},
    {"channels", "history_max_bytes", "1023", E_HISTBYTES},
    {"channels", "history_max_bytes", "0", E_HISTBYTES},
    {"channels", "history_max_bytes", "65g", E_HISTBYTES},
    {"channels", "history_max_bytes", "68719476737", E_HISTBYTES},
    {"channels", "max_lag_bytes", "65g", E_LAGBYTES},
    {"channels", "max_lag_bytes", "-1", E_LAGBYTES},
    {"channels", "max_lag_bytes", "99999999999999999999999", E_LAGBYTES},
    {"channels", "max_channels_per_connection", "0", E_CHANNELS},
    {"channels", "max_channels_per_connection", "1025", E_CHANNELS},
    {"feed", "idle_timeout", "86401", E_DAY},
    {"feed", "idle_timeout", "never", E_DAY},
    {"feed", "max_subscriber_buffer", "1023", E_SUBBUF},
    {"feed", "max_subscriber_buffer", "4294967297", E_SUBBUF},
    {"feed", "max_subscriber_buffer", "5g", E_SUBBUF},
    {"websocket", "upstream_max_pending", "0", E_1M},
    {"websocket", "upstream_max_pending", "1048577", E_1M},
    {"websocket", "max_queued", "0", E_QUEUED},
    {"websocket", "max_queued", "65537", E_QUEUED},
    {"log", "level", "verbose", E_LEVEL},
    {"log", "level", "INFO", E_LEVEL},
    {"log", "level", "info debug", E_LEVEL},
    {"log", "level", "", E_LEVEL},
};

TEST(bad_values_name_their_line)
{
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct rc_config c, before;
        char text[512], want[512], err[512] = "";
        int len = 0;
        int r;

        /* Vary the line of the bad value: i % 7 comment lines and a valid key come first. */
        for (size_t j = 0; j < i % 7; j++)
            len += snprintf(text + len, sizeof(text) - (size_t)len, "; comment %zu\n", j);
        len += snprintf(text + len, sizeof(text) - (size_t)len,
                        "%s\n[%s]\n%s = %s\n[sse]\nretry = 1\n",
                        strcmp(bad[i].section, "log") ? "[log]\nlevel = warn" : "[feed]\nmode = 0",
                        bad[i].section, bad[i].key, bad[i].value);
        snprintf(want, sizeof(want), "t.ini:%zu: %s: expected %s, got '%s'", i % 7 + 4, bad[i].key,
                 bad[i].msg, bad[i].value);

        rc_config_defaults(&c);
        before = c;
        r = load(&c, text, err, sizeof(err));
        if (r != -EINVAL || strcmp(err, want) != 0)
            fprintf(stderr, "bad[%zu]: got  \"%s\"\n          want \"%s\"\n", i, err, want);
        CHECK_EQ(r, -EINVAL);
        CHECK(strcmp(err, want) == 0);
        /* A failed load changes nothing, not even the keys before the error. */
        CHECK(config_diff(&c, &before) == NULL);
    }
}

/* A file with a structural error, and the complete message it must produce. */
struct structure_case {
    const char *text, *msg;
};

static const struct structure_case structure[] = {
    {"[server]\nlisen = 1\n", "t.ini:2: unknown key 'lisen' in [server]"},
    {"[server]\nWorkers = 2\n", "t.ini:2: unknown key 'Workers' in [server]"},
    {"[http]\n\nlisten = *:80\n",
     "t.ini:3: unknown key 'listen' in [http] (it belongs in [server])"},
    {"listen = *:80\n", "t.ini:1: key 'listen' is outside any section"},
    {"; c\n[server]\n[bogus]\n", "t.ini:3: unknown section [bogus]"},
    {"[bogus]\nx = 1\n", "t.ini:1: unknown section [bogus]"},
    {"[server]\nworkers = 2\n[Server]\n", "t.ini:3: unknown section [Server]"},
    {"[ server ]\n", "t.ini:1: unknown section [ server ]"},
    {"[]\n", "t.ini:1: unknown section []"},
    {"[server\nworkers = 2\n", "t.ini:1: section header without ']'"},
    {"[server] workers = 2\n", "t.ini:1: unexpected text after [server]"},
    {"[server]\nworkers = 2\n\nworkers = 3\n",
     "t.ini:4: duplicate key 'workers' in [server] (first set on line 2)"},
    {"[server]\nworkers = 2\n[http]\n[server]\nworkers = 2\n",
     "t.ini:5: duplicate key 'workers' in [server] (first set on line 2)"},
    {"[server]\nworkers\n", "t.ini:2: expected 'key = value', '[section]' or a comment"},
    {"[server]\nworkers 2\nworkers = x\n",
     "t.ini:2: expected 'key = value', '[section]' or a comment"},
    {"[server]\nworkers = x\nworkers 2\n",
     "t.ini:2: workers: expected 'auto' or an integer 1-1024, got 'x'"},
    {"[http]\nmax_connections = 5\n",
     "t.ini:2: unknown key 'max_connections' in [http] (it belongs in [server] or [feed])"},
    {"[server]\nmax_connections = 5\n[feed]\nmax_connections = 5\n[server]\nmax_connections = 6\n",
     "t.ini:6: duplicate key 'max_connections' in [server] (first set on line 2)"},
    {"[channels:]\n", "t.ini:1: [channels:]: the prefix must be 1-128 characters long"},
    {"; x\n[channels:news feed]\n",
     "t.ini:2: [channels:news feed]: a prefix may only hold A-Z, a-z, 0-9 and _.:@-"},
    {"[channels:a/b]\nhistory_size = 2\n",
     "t.ini:1: [channels:a/b]: a prefix may only hold A-Z, a-z, 0-9 and _.:@-"},
    {"[Channels:a]\n", "t.ini:1: unknown section [Channels:a]"},
    {"[channels:a] x\n", "t.ini:1: unexpected text after [channels:a]"},
    {"[channels:news.]\nhistory_size = 5\n[channels]\n\n[channels:news.]\n",
     "t.ini:5: duplicate section [channels:news.] (first on line 1)"},
    {"[channels:a]\nhistory_size = 5\nhistory_size = 6\n",
     "t.ini:3: duplicate key 'history_size' in [channels:a] (first set on line 2)"},
    {"[channels:a]\nmax_lag = 5\n",
     "t.ini:2: unknown key 'max_lag' in [channels:a] (a prefix section takes history_size, "
     "history_ttl and history_max_bytes)"},
    {"[channels:a]\nhistory_size = 0\n",
     "t.ini:2: history_size: expected an integer 1-1048576, got '0'"},
    {"[channels:a]\nhistory_ttl = 86401\n",
     "t.ini:2: history_ttl: expected seconds 0-86400 (up to three decimals), got '86401'"},
    {"[channels:a]\nhistory_max_bytes = 1000\n",
     "t.ini:2: history_max_bytes: expected a size in bytes 1k-64g (suffix k, m or g allowed), got "
     "'1000'"},
    {"[channels:a]\n[sse]\nhistory_size = 5\n",
     "t.ini:3: unknown key 'history_size' in [sse] (it belongs in [channels])"},
    {"[server]\nworkers = 2 # two\n",
     "t.ini:2: workers: expected 'auto' or an integer 1-1024, got '2 # two'"},
    {"[server]\nworkers = 2;two\n",
     "t.ini:2: workers: expected 'auto' or an integer 1-1024, got '2;two'"},
};

TEST(structural_errors)
{
    for (size_t i = 0; i < sizeof(structure) / sizeof(structure[0]); i++) {
        struct rc_config c;
        char err[512] = "";
        int r;

        rc_config_defaults(&c);
        r = load(&c, structure[i].text, err, sizeof(err));
        if (r != -EINVAL || strcmp(err, structure[i].msg) != 0)
            fprintf(stderr, "structure[%zu]: got  \"%s\"\n                want \"%s\"\n", i, err,
                    structure[i].msg);
        CHECK_EQ(r, -EINVAL);
        CHECK(strcmp(err, structure[i].msg) == 0);
    }
}

TEST(lexical_details)
{
    struct rc_config c;
    char err[256] = "";

    rc_config_defaults(&c);
    /* CRLF line ends, a byte order mark, and no final newline. */
    CHECK_EQ(load(&c, "\xEF\xBB\xBF[server]\r\nworkers = 3\r\nrecv_buffers = 2", err, sizeof(err)),
             0);
    CHECK_EQ(c.workers, 3);
    CHECK_EQ(c.recv_buffers, 2);

    /* Indented keys are keys, not continuations of the previous value. */
    CHECK_EQ(load(&c, "  [http]\n  max_headers = 5\n\tmax_request_line = 100\n", err, sizeof(err)),
             0);
    CHECK_EQ(c.max_headers, 5);
    CHECK_EQ(c.max_request_line, 100);

    /* Blanks around keys and values, an inline comment, comments after a section. */
    CHECK_EQ(load(&c, "[sse] ; events\n  retry   =   2   ; seconds\n[log]# x\nlevel:debug\n", err,
                  sizeof(err)),
             0);
    CHECK_EQ(c.retry_ms, 2000);
    CHECK_EQ(c.log_level, RC_LOG_DEBUG);

    /* A ';' without a blank before it belongs to the value. */
    CHECK_EQ(load(&c, "[http]\ncors_origin = a;b\n", err, sizeof(err)), 0);
    CHECK(strcmp(c.cors_origin, "a;b") == 0);

    /* The same section may appear twice as long as no key repeats. */
    CHECK_EQ(
        load(&c, "[server]\nworkers = 4\n[http]\n[server]\nrecv_buffers = 8\n", err, sizeof(err)),
        0);
    CHECK_EQ(c.workers, 4);
    CHECK_EQ(c.recv_buffers, 8);
    CHECK_EQ(err[0], '\0');
}

TEST(line_length_and_nul)
{
    static const char nul[] = "[server]\nworkers = 2\0junk\n";
    char text[512], err[256] = "";
    struct rc_config c;

    /* inih reads lines into a 200-byte buffer: 199 bytes fit, 200 do not. */
    rc_config_defaults(&c);
    memset(text, 'x', sizeof(text));
    text[0] = ';';
    text[199] = '\n';
    CHECK_EQ(rc_config_load_string(&c, "t.ini", text, 200, err, sizeof(err)), 0);
    memset(text, 'x', sizeof(text));
    memcpy(text, "[log]\n;", 7);
    text[206] = '\n';
    CHECK_EQ(rc_config_load_string(&c, "t.ini", text, 207, err, sizeof(err)), -EINVAL);
    CHECK(strcmp(err, "t.ini:2: line is longer than 199 bytes") == 0);

    CHECK_EQ(rc_config_load_string(&c, "t.ini", nul, sizeof(nul) - 1, err, sizeof(err)), -EINVAL);
    CHECK(strcmp(err, "t.ini:2: line contains a NUL byte") == 0);
}

TEST(error_buffer_is_bounded)
{
    struct rc_config c;
    char err[12];

    rc_config_defaults(&c);
    memset(err, 'z', sizeof(err));
    CHECK_EQ(load(&c, "[server]\nworkers = 0\n", err, 8), -EINVAL);
    CHECK(strcmp(err, "t.ini:2") == 0);
    CHECK_EQ(err[8], 'z');
    CHECK_EQ(load(&c, "[server]\nworkers = 0\n", NULL, 0), -EINVAL);
    CHECK_EQ(load(&c, "[server]\nworkers 0\n", NULL, 0), -EINVAL);
}

TEST(validate)
{
    struct rc_config c;
    char err[256] = "";

    rc_config_defaults(&c);
    CHECK_EQ(rc_config_validate(&c, err, sizeof(err)), 0);

    /* max_lag may exceed history_size: the window cuts a subscriber it overtakes anyway. */
    c.max_lag = 2000;
    CHECK_EQ(rc_config_validate(&c, err, sizeof(err)), 0);

    c.max_request_line = 8193;
    CHECK_EQ(rc_config_validate(&c, err, sizeof(err)), -EINVAL);
    CHECK(strcmp(err, "max_request_line (8193) must not exceed max_header_bytes (8192)") == 0);
    c.max_header_bytes = 8193;
    CHECK_EQ(rc_config_validate(&c, err, sizeof(err)), 0);
}

/* Looks up the history settings of a NUL-terminated channel name. */
static void lookup(const struct rc_config *c, const char *name, uint32_t *size, uint32_t *ttl,
                   uint64_t *bytes)
{
    rc_config_channel_history(c, name, strlen(name), size, ttl, bytes);
}

TEST(prefix_sections_inherit_regardless_of_order)
{
    /* [channels] comes last: the prefix sections still inherit its values, not the defaults. */
    static const char text[] = "[channels:news.]\n"
                               "history_size = 10\n"
                               "[channels:chat:]\n"
                               "history_ttl = 0\n"
                               "history_max_bytes = 1m\n"
                               "[channels:all.]\n"
                               "[channels]\n"
                               "history_size = 500\n"
                               "history_ttl = 20\n"
                               "history_max_bytes = 2m\n";
    struct rc_config c;
    char err[256] = "";

    rc_config_defaults(&c);
    CHECK_EQ(load(&c, text, err, sizeof(err)), 0);
    CHECK_EQ(c.nprefixes, 3);
    CHECK(strcmp(c.prefixes[0].prefix, "news.") == 0);
    CHECK_EQ(c.prefixes[0].history_size, 10);
    CHECK_EQ(c.prefixes[0].history_ttl_ms, 20000);
    CHECK_EQ(c.prefixes[0].history_max_bytes, 2 * 1024 * 1024);
    CHECK(strcmp(c.prefixes[1].prefix, "chat:") == 0);
    CHECK_EQ(c.prefixes[1].history_size, 500);
    CHECK_EQ(c.prefixes[1].history_ttl_ms, 0);
    CHECK_EQ(c.prefixes[1].history_max_bytes, 1024 * 1024);
    /* A section without keys is a copy of [channels]; legal, if pointless. */
    CHECK(strcmp(c.prefixes[2].prefix, "all.") == 0);
    CHECK_EQ(c.prefixes[2].history_size, 500);
    CHECK_EQ(c.prefixes[2].history_ttl_ms, 20000);
    CHECK_EQ(c.prefixes[2].history_max_bytes, 2 * 1024 * 1024);

    /* The same sections with [channels] first give the same result. */
    struct rc_config d;
    rc_config_defaults(&d);
    CHECK_EQ(load(&d,
                  "[channels]\nhistory_size = 500\nhistory_ttl = 20\nhistory_max_bytes = 2m\n"
                  "[channels:news.]\nhistory_size = 10\n[channels:chat:]\nhistory_ttl = 0\n"
                  "history_max_bytes = 1m\n[channels:all.]\n",
                  err, sizeof(err)),
             0);
    CHECK(config_diff(&c, &d) == NULL);

    /* Without [channels] the prefixes inherit the defaults. */
    rc_config_defaults(&d);
    CHECK_EQ(load(&d, "[channels:x]\nhistory_size = 3\n", err, sizeof(err)), 0);
    CHECK_EQ(d.prefixes[0].history_size, 3);
    CHECK_EQ(d.prefixes[0].history_ttl_ms, 300000);
    CHECK_EQ(d.prefixes[0].history_max_bytes, 8 * 1024 * 1024);
    CHECK_EQ(rc_config_validate(&d, err, sizeof(err)), 0);
}

TEST(prefix_names_and_limits)
{
    char text[8192], prefix[130], want[512], err[512] = "";
    struct rc_config c;
    int len = 0;

    /* Every character a channel name may hold, and the longest prefix, which inih would cut. */
    memset(prefix, 'p', 128);
    prefix[128] = '\0';
    rc_config_defaults(&c);
    snprintf(text, sizeof(text),
             "[channels:AZaz09_.:@-]\nhistory_size = 4\n[channels:%s]\nhistory_size = 5\n", prefix);
    CHECK_EQ(load(&c, text, err, sizeof(err)), 0);
    CHECK_EQ(c.nprefixes, 2);
    CHECK(strcmp(c.prefixes[0].prefix, "AZaz09_.:@-") == 0);
    CHECK(strcmp(c.prefixes[1].prefix, prefix) == 0);
    CHECK_EQ(c.prefixes[1].history_size, 5);

    /* 129 characters are one too many. */
    strcat(prefix, "p");
    snprintf(text, sizeof(text), "[log]\n[channels:%s]\n", prefix);
    CHECK_EQ(load(&c, text, err, sizeof(err)), -EINVAL);
    snprintf(want, sizeof(want), "t.ini:2: [channels:%s]: the prefix must be 1-128 characters long",
             prefix);
    CHECK(strcmp(err, want) == 0);

    /* RC_CONFIG_MAX_PREFIXES sections load; one more names its line. */
    rc_config_defaults(&c);
    for (int i = 0; i < RC_CONFIG_MAX_PREFIXES; i++)
        len += snprintf(text + len, sizeof(text) - (size_t)len,
                        "[channels:p%d.]\nhistory_size = %d\n", i, i + 1);
    CHECK_EQ(load(&c, text, err, sizeof(err)), 0);
    CHECK_EQ(c.nprefixes, RC_CONFIG_MAX_PREFIXES);
    CHECK_EQ(c.prefixes[RC_CONFIG_MAX_PREFIXES - 1].history_size, RC_CONFIG_MAX_PREFIXES);
    rc_config_defaults(&c);
    snprintf(text + len, sizeof(text) - (size_t)len, "[channels:one.more]\n");
    CHECK_EQ(load(&c, text, err, sizeof(err)), -EINVAL);
    snprintf(want, sizeof(want), "t.ini:%d: more than %d [channels:PREFIX] sections",
             2 * RC_CONFIG_MAX_PREFIXES + 1, RC_CONFIG_MAX_PREFIXES);
    CHECK(strcmp(err, want) == 0);
    CHECK_EQ(c.nprefixes, 0);
}

TEST(prefix_sections_of_a_later_load_replace_earlier_ones)
{
    struct rc_config c, before;
    char err[256] = "";

    rc_config_defaults(&c);
    CHECK_EQ(load(&c, "[channels:a]\nhistory_size = 2\nhistory_ttl = 1\n[channels:b]\n", err,
                  sizeof(err)),
             0);
    /* A second text overrides [channels:a] as a whole and adds [channels:c]; b stays. */
    CHECK_EQ(load(&c, "[channels:c]\n[channels:a]\nhistory_max_bytes = 2k\n", err, sizeof(err)), 0);
    CHECK_EQ(c.nprefixes, 3);
    CHECK(strcmp(c.prefixes[0].prefix, "a") == 0);
    CHECK_EQ(c.prefixes[0].history_size, 1024);
    CHECK_EQ(c.prefixes[0].history_ttl_ms, 300000);
    CHECK_EQ(c.prefixes[0].history_max_bytes, 2048);
    CHECK(strcmp(c.prefixes[1].prefix, "b") == 0);
    CHECK(strcmp(c.prefixes[2].prefix, "c") == 0);

    /* A failed load leaves the prefixes as they were. */
    before = c;
    CHECK_EQ(
        load(&c, "[channels:d]\nhistory_size = 9\n[channels:e]\nbogus = 1\n", err, sizeof(err)),
        -EINVAL);
    CHECK(strcmp(err, "t.ini:4: unknown key 'bogus' in [channels:e] (a prefix section takes "
                      "history_size, history_ttl and history_max_bytes)") == 0);
    CHECK(config_diff(&c, &before) == NULL);
}

TEST(channel_history_longest_prefix_wins)
{
    static const char text[] = "[channels]\n"
                               "history_size = 100\n"
                               "history_ttl = 1\n"
                               "history_max_bytes = 1m\n"
                               "[channels:news.]\n"
                               "history_size = 10\n"
                               "[channels:news.sport.live]\n"
                               "history_size = 1\n"
                               "history_ttl = 0\n"
                               "[channels:news.sport.]\n"
                               "history_size = 5\n"
                               "history_max_bytes = 4k\n";
    struct rc_config c;
    char err[256] = "";
    uint32_t size, ttl;
    uint64_t bytes;

    rc_config_defaults(&c);
    lookup(&c, "anything", &size, &ttl, &bytes);
    CHECK_EQ(size, 1024);
    CHECK_EQ(ttl, 300000);
    CHECK_EQ(bytes, 8 * 1024 * 1024);

    CHECK_EQ(load(&c, text, err, sizeof(err)), 0);
    lookup(&c, "weather", &size, &ttl, &bytes);
    CHECK_EQ(size, 100);
    CHECK_EQ(ttl, 1000);
    CHECK_EQ(bytes, 1024 * 1024);
    /* A name shorter than a prefix, or equal to a prefix without its last character. */
    lookup(&c, "news", &size, &ttl, &bytes);
    CHECK_EQ(size, 100);
    lookup(&c, "news.", &size, &ttl, &bytes);
    CHECK_EQ(size, 10);
    lookup(&c, "news.politics", &size, &ttl, &bytes);
    CHECK_EQ(size, 10);
    CHECK_EQ(ttl, 1000);
    CHECK_EQ(bytes, 1024 * 1024);
    /* The longest match wins whatever the order of the sections. */
    lookup(&c, "news.sport.tennis", &size, &ttl, &bytes);
    CHECK_EQ(size, 5);
    CHECK_EQ(ttl, 1000);
    CHECK_EQ(bytes, 4096);
    lookup(&c, "news.sport.live", &size, &ttl, &bytes);
    CHECK_EQ(size, 1);
    CHECK_EQ(ttl, 0);
    CHECK_EQ(bytes, 1024 * 1024);
    lookup(&c, "news.sport.live.2", &size, &ttl, &bytes);
    CHECK_EQ(size, 1);
    /* Prefixes compare case-sensitively, like channel names. */
    lookup(&c, "News.sport", &size, &ttl, &bytes);
    CHECK_EQ(size, 100);
    /* The name is a length-bounded slice, not a C string. */
    rc_config_channel_history(&c, "news.sport.livex", 11, &size, &ttl, &bytes);
    CHECK_EQ(size, 5);
}

/* Collects the keys rc_config_keep_restart_keys() reports, one per line. */
static void collect_key(const char *key, void *arg)
{
    char *out = arg;
    size_t n = strlen(out);

    snprintf(out + n, 4096 - n, "%s\n", key);
}

TEST(reload_keeps_restart_keys)
{
    struct rc_config live, next;
    char changed[4096] = "", err[256] = "";

    /* The same values: nothing to report, nothing changes. */
    rc_config_defaults(&live);
    rc_config_defaults(&next);
    rc_config_keep_restart_keys(&next, &live, collect_key, changed);
    CHECK_EQ(changed[0], '\0');
    CHECK(config_diff(&next, &live) == NULL);

    /* A file that changes restart keys and reloadable ones: only the latter survive. */
    CHECK_EQ(load(&next,
                  "[server]\nworkers = 3\nmax_connections = 10\n[http]\nmax_header_bytes = 16k\n"
                  "max_headers = 10\n[sse]\nheartbeat_interval = 0.2\nretry = 2\n"
                  "[channels:x]\nhistory_size = 1\n[channels]\nmax_lag = 5\n[log]\nlevel = warn\n",
                  err, sizeof(err)),
             0);
    rc_config_keep_restart_keys(&next, &live, collect_key, changed);
    CHECK(strcmp(changed, "[server] workers\n[http] max_header_bytes\n[sse] retry\n"
                          "[channels:PREFIX]\n") == 0);
    CHECK_EQ(next.workers, 0);
    CHECK_EQ(next.max_header_bytes, 8192);
    CHECK_EQ(next.retry_ms, 0);
    CHECK_EQ(next.nprefixes, 0);
    CHECK_EQ(next.max_connections, 10);
    CHECK_EQ(next.max_headers, 10);
    CHECK_EQ(next.heartbeat_interval_ms, 200);
    CHECK_EQ(next.max_lag, 5);
    CHECK_EQ(next.log_level, RC_LOG_WARN);

    /* Prefix sections that differ only in one value are a change too. */
    CHECK_EQ(load(&live, "[channels:x]\nhistory_size = 2\n", err, sizeof(err)), 0);
    rc_config_defaults(&next);
    CHECK_EQ(load(&next, "[channels:x]\nhistory_size = 3\n", err, sizeof(err)), 0);
    changed[0] = '\0';
    rc_config_keep_restart_keys(&next, &live, collect_key, changed);
    CHECK(strcmp(changed, "[channels:PREFIX]\n") == 0);
    CHECK_EQ(next.prefixes[0].history_size, 2);
}

/*
 * The keys conf/ringcast.ini marks "(restart)" must be exactly those a reload keeps, and every
 * other key must be marked "(reloadable)": the comment block above each key line says which.
 */
TEST(shipped_file_marks_restart_keys)
{
    struct rc_config live, next;
    char restart[4096] = "", line[512], section[64] = "", key[160], marked[4096] = "";
    bool block_restart = false, block_reloadable = false;
    FILE *f = fopen(CONF_PATH, "r");
    unsigned lineno = 0, nkeys = 0;

    /* Garbage in every field of next makes every restart key differ from the defaults. */
    rc_config_defaults(&live);
    memset(&next, 0xab, sizeof(next));
    rc_config_keep_restart_keys(&next, &live, collect_key, restart);
    CHECK(f != NULL);
    while (fgets(line, sizeof(line), f)) {
        char *eq = strchr(line, '=');

        lineno++;
        if (line[0] == ';') {
            block_restart |= strstr(line, "(restart)") != NULL;
            block_reloadable |= strstr(line, "(reloadable)") != NULL;
            continue;
        }
        if (line[0] == '[') {
            snprintf(section, sizeof(section), "%.*s", (int)(strchr(line, ']') - line + 1), line);
        } else if (eq) {
            size_t n = (size_t)(eq - line);
            while (n > 0 && line[n - 1] == ' ')
                n--;
            snprintf(key, sizeof(key), "%s %.*s\n", section, (int)n, line);
            if (block_restart == block_reloadable)
                fprintf(stderr, "%s:%u: %s needs exactly one of (restart) and (reloadable)\n",
                        CONF_PATH, lineno, key);
            CHECK(block_restart != block_reloadable);
            if (block_restart != (strstr(restart, key) != NULL))
                fprintf(stderr, "%s:%u: %s is marked %s\n", CONF_PATH, lineno, key,
                        block_restart ? "(restart) but reloads" : "(reloadable) but does not");
            CHECK(block_restart == (strstr(restart, key) != NULL));
            if (block_restart)
                strcat(marked, key);
            nkeys++;
        }
        block_restart = block_reloadable = false;
    }
    fclose(f);
    /* The 39 keys of this writing at least; shipped_file_is_the_defaults proves none is missing. */
    CHECK(nkeys >= 39);
    /* Every restart key is a key line of the file, but the prefix sections, commented out. */
    strcat(marked, "[channels:PREFIX]\n");
    CHECK_EQ(strlen(marked), strlen(restart));
}

/* Writes text to a new temporary file whose name is stored in path (size 64). */
static int write_temp(char *path, const char *text, size_t len)
{
    int fd;
    ssize_t n;

    strcpy(path, "/tmp/test_config.XXXXXX");
    fd = mkstemp(path);
    if (fd < 0)
        return -errno;
    n = write(fd, text, len);
    close(fd);
    return n == (ssize_t)len ? 0 : -EIO;
}

TEST(load_file)
{
    struct rc_config c;
    char path[64], want[128], err[256] = "";
    int r;

    rc_config_defaults(&c);
    CHECK_EQ(rc_config_load_file(&c, "/nonexistent/ringcast.ini", err, sizeof(err)), -ENOENT);
    CHECK(strcmp(err, "/nonexistent/ringcast.ini: No such file or directory") == 0);
    CHECK_EQ(rc_config_load_file(&c, "/tmp", err, sizeof(err)), -EISDIR);
    CHECK(strcmp(err, "/tmp: Is a directory") == 0);

    CHECK_EQ(write_temp(path, "[server]\nworkers = 7\n", 21), 0);
    r = rc_config_load_file(&c, path, err, sizeof(err));
    unlink(path);
    CHECK_EQ(r, 0);
    CHECK_EQ(c.workers, 7);

    CHECK_EQ(write_temp(path, "[server]\n\nworkers = many\n", 25), 0);
    r = rc_config_load_file(&c, path, err, sizeof(err));
    unlink(path);
    CHECK_EQ(r, -EINVAL);
    snprintf(want, sizeof(want), "%s:3: workers: expected 'auto' or an integer 1-1024, got 'many'",
             path);
    CHECK(strcmp(err, want) == 0);
}

TEST(load_file_too_large)
{
    /* 1 MiB of comment lines is accepted, one byte more is not. */
    size_t len = 1024 * 1024;
    char *text = malloc(len + 1);
    char path[64], err[256] = "";
    struct rc_config c;
    int r;

    CHECK(text != NULL);
    for (size_t i = 0; i < len + 1; i++)
        text[i] = i % 64 == 0 ? ';' : i % 64 == 63 ? '\n' : 'x';
    rc_config_defaults(&c);
    r = write_temp(path, text, len);
    if (r == 0)
        r = rc_config_load_file(&c, path, err, sizeof(err));
    unlink(path);
    if (r == 0)
        r = write_temp(path, text, len + 1);
    free(text);
    CHECK_EQ(r, 0);
    r = rc_config_load_file(&c, path, err, sizeof(err));
    unlink(path);
    CHECK_EQ(r, -EFBIG);
    CHECK(strncmp(err, path, strlen(path)) == 0);
}

TEST(websocket_protocols_and_keepalive)
{
    struct rc_config c;
    char err[256] = "", want[256];

    rc_config_defaults(&c);
    CHECK_EQ(load(&c, "[websocket]\nprotocols = a\n", err, sizeof(err)), 0);
    CHECK(strcmp(c.ws_protocols, "a") == 0);
    CHECK_EQ(load(&c, "[websocket]\nprotocols = mqtt ,\tv2.json  ,x-y_z\n", err, sizeof(err)), 0);
    CHECK(strcmp(c.ws_protocols, "mqtt,v2.json,x-y_z") == 0);
    CHECK_EQ(load(&c, "[websocket]\nprotocols =\n", err, sizeof(err)), 0);
    CHECK(strcmp(c.ws_protocols, "") == 0);
    static const char *const refused[] = {"a,",  ",a",  "a,,b",  "a b",
                                          "a;b", "a/b", "\"a\"", "a,\t,b"};
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        char text[64];
        snprintf(text, sizeof(text), "[websocket]\nprotocols = %s\n", refused[i]);
        CHECK_EQ(load(&c, text, err, sizeof(err)), -EINVAL);
        snprintf(want, sizeof(want),
                 "t.ini:2: protocols: expected a comma-separated list of tokens, at most 255 "
                 "bytes, got '%s'",
                 refused[i]);
        CHECK(strcmp(err, want) == 0);
    }
    CHECK_EQ(load(&c, "[websocket]\ncompression = yes\n", err, sizeof(err)), -EINVAL);
    CHECK(strcmp(err, "t.ini:2: compression: expected on or off, got 'yes'") == 0);
    CHECK_EQ(load(&c, "[websocket]\nmax_message = 124\n", err, sizeof(err)), -EINVAL);
    CHECK(strcmp(err, "t.ini:2: max_message: expected a size in bytes 125-64m (suffix k, m or g "
                      "allowed), got '124'") == 0);

    /* The pong of one ping must be due before the next ping. */
    rc_config_defaults(&c);
    CHECK_EQ(load(&c, "[websocket]\nping_interval = 10\npong_timeout = 10\n", err, sizeof(err)), 0);
    CHECK_EQ(rc_config_validate(&c, err, sizeof(err)), -EINVAL);
    CHECK(strcmp(err, "pong_timeout (10000 ms) must be below ping_interval (10000 ms)") == 0);
    CHECK_EQ(load(&c, "[websocket]\nping_interval = 0\n", err, sizeof(err)), 0);
    CHECK_EQ(rc_config_validate(&c, err, sizeof(err)), 0);
    CHECK_EQ(load(&c, "[websocket]\nping_interval = 10.001\n", err, sizeof(err)), 0);
    CHECK_EQ(rc_config_validate(&c, err, sizeof(err)), 0);
}

TEST(shipped_file_is_the_defaults)
{
    struct rc_config c, d;
    char err[512] = "";
    const char *diff;

    /*
     * Garbage in every field proves that the file sets every key. Its example prefix sections
     * are commented out, so the file adds none to those already there.
     */
    memset(&c, 0xab, sizeof(c));
    c.nprefixes = 0;
    rc_config_defaults(&d);
    if (rc_config_load_file(&c, CONF_PATH, err, sizeof(err)) != 0)
        fprintf(stderr, "%s\n", err);
    CHECK_EQ(rc_config_load_file(&c, CONF_PATH, err, sizeof(err)), 0);
    diff = config_diff(&c, &d);
    if (diff)
        fprintf(stderr, "%s: %s differs from the default\n", CONF_PATH, diff);
    CHECK(diff == NULL);
    CHECK_EQ(rc_config_validate(&c, err, sizeof(err)), 0);
}

TEST_MAIN()
