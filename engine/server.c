/*
 * Process set-up, start, signals and orderly stop. See include/ringcast/server.h.
 */
#include "ringcast/server.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ringcast/assert.h"
#include "ringcast/log.h"

/* One configuration the server has published. */
struct rc_server_config {
    struct rc_server_config *older;
    struct rc_config cfg;
};

const struct rc_config *rc_server_config(const struct rc_server *s)
{
    return atomic_load_explicit(&s->cfg, memory_order_acquire);
}

/*
 * Makes a copy of cfg the live configuration. The release store pairs with the acquire load
 * in rc_server_config(), so a thread that sees the new pointer sees the whole copy.
 */
static int publish_config(struct rc_server *s, const struct rc_config *cfg)
{
    struct rc_server_config *sc = malloc(sizeof(*sc));

    if (!sc)
        return -ENOMEM;
    sc->cfg = *cfg;
    sc->older = s->configs;
    s->configs = sc;
    atomic_store_explicit(&s->cfg, &sc->cfg, memory_order_release);
    return 0;
}

/* Frees every configuration published; only once no other thread runs. */
static void free_configs(struct rc_server *s)
{
    while (s->configs) {
        struct rc_server_config *older = s->configs->older;

        free(s->configs);
        s->configs = older;
    }
}

static void warn_restart_key(const char *key, void *arg)
{
    rc_warn("SIGHUP: %s changed in the file but needs a restart; keeping the running value", key);
}

/*
 * Reloads the configuration file on SIGHUP. The file is read into fresh defaults, as at
 * start-up, so that a key removed from the file returns to its default. Keys that sized
 * something at start-up keep their running values (rc_config_keep_restart_keys()), and the
 * result is validated once more because such a key may take part in a cross-key rule
 * (max_request_line <= max_header_bytes). Anything that fails leaves the live configuration as
 * it is.
 */
static void reload_config(struct rc_server *s)
{
    const struct rc_config *live = rc_server_config(s);
    struct rc_config next;
    char err[512], why[512];

    if (!s->config_path) {
        rc_warn("SIGHUP: ringcast was started without -c, so there is no file to reload");
        return;
    }
    rc_config_defaults(&next);
    if (rc_config_load_file(&next, s->config_path, err, sizeof(err)) < 0) {
        rc_error("SIGHUP: %s; keeping the running configuration", err);
        rc_stat_add(s->config_reload_errors, 1);
        return;
    }
    if (rc_config_validate(&next, why, sizeof(why)) < 0) {
        rc_error("SIGHUP: %s: %s; keeping the running configuration", s->config_path, why);
        rc_stat_add(s->config_reload_errors, 1);
        return;
    }
    rc_config_keep_restart_keys(&next, live, warn_restart_key, NULL);
    if (rc_config_validate(&next, why, sizeof(why)) < 0) {
        rc_error("SIGHUP: %s: %s with the running values of the keys that need a restart; "
                 "keeping the running configuration",
                 s->config_path, why);
        rc_stat_add(s->config_reload_errors, 1);
        return;
    }
    if (publish_config(s, &next) < 0) {
        rc_error("SIGHUP: out of memory; keeping the running configuration");
        rc_stat_add(s->config_reload_errors, 1);
        return;
    }
    rc_log_set_level(next.log_level);
    rc_stat_add(s->config_reloads, 1);
    rc_info("SIGHUP: reloaded %s", s->config_path);
}

int rc_server_worker_ring(const struct rc_server *s, unsigned i)
{
    rc_assert(i < s->nworkers);
    return rc_ring_fd(&s->workers[i].ring);
}

int rc_server_feed_ring(const struct rc_server *s)
{
    return rc_ring_fd(&s->feed.ring);
}

int rc_server_thread_ready(struct rc_server *s)
{
    pthread_barrier_wait(&s->ready);
    pthread_barrier_wait(&s->go);
    return s->start_ok;
}

/*
 * Opens one listening socket; each worker gets its own with SO_REUSEPORT and the kernel spreads
 * load. With `reuseport` false it only checks that the address is free: SO_REUSEPORT would let
 * ringcast share a port that another process of the same user already serves, and silently
 * take half its clients.
 */
static int open_listener(const struct rc_config *cfg, bool reuseport)
{
    struct addrinfo hints = {.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE,
                             .ai_socktype = SOCK_STREAM};
    struct addrinfo *ai;
    char port[8];
    int one = 1, fd, ret;

    snprintf(port, sizeof(port), "%u", cfg->listen_port);
    ret = getaddrinfo(cfg->listen_host, port, &hints, &ai);
    if (ret != 0)
        return -EINVAL;
    fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        ret = -errno;
        freeaddrinfo(ai);
        return ret;
    }
    /* Accepted sockets inherit TCP_NODELAY: events are small and must not wait for Nagle. */
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0) ||
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0 ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 4096) < 0) {
        ret = -errno;
        close(fd);
        freeaddrinfo(ai);
        return ret;
    }
    freeaddrinfo(ai);
    return fd;
}

/* Raises the soft open-file limit to the hard one; a ring's file table may hold that many. */
static unsigned file_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return 1024;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    return rl.rlim_cur > 1u << 30 ? 1u << 30 : (unsigned)rl.rlim_cur;
}

/* An INFO line per counter: its name, and where it sits in the stats struct. */
struct info_field {
    const char *name;
    size_t offset;
};

#define WORKER_FIELD(f)                                                                            \
    {                                                                                              \
#f, offsetof(struct rc_worker_stats, f)                                                    \
    }
#define FEED_FIELD(name, f)                                                                        \
    {                                                                                              \
        name, offsetof(struct rc_feed_stats, f)                                                    \
    }

/* Counters of every worker, printed summed over the workers. */
static const struct info_field worker_stats_fields[] = {
    WORKER_FIELD(accepted),
    WORKER_FIELD(rejected_capacity),
    WORKER_FIELD(rejected_global),
    WORKER_FIELD(rejected_address),
    WORKER_FIELD(http_errors),
    WORKER_FIELD(header_timeouts),
    WORKER_FIELD(deliveries),
    WORKER_FIELD(slow_disconnects),
    WORKER_FIELD(heartbeats),
    WORKER_FIELD(alloc_failures),
    WORKER_FIELD(ws_upgrades),
    WORKER_FIELD(ws_messages_in),
    WORKER_FIELD(ws_errors),
    WORKER_FIELD(ws_pings),
    WORKER_FIELD(ws_pong_timeouts),
    WORKER_FIELD(ws_commands),
    WORKER_FIELD(ws_command_errors),
    WORKER_FIELD(ws_upstream),
    WORKER_FIELD(ws_upstream_unheard),
    WORKER_FIELD(ws_upstream_busy),
    WORKER_FIELD(ws_direct),
    WORKER_FIELD(ws_queue_overflows),
    WORKER_FIELD(channel_limit),
    WORKER_FIELD(resumes),
    WORKER_FIELD(resume_gaps),
};

static const struct info_field feed_stats_fields[] = {
    FEED_FIELD("published", published),
    FEED_FIELD("feed_connections", connections),
    FEED_FIELD("feed_commands", commands),
    FEED_FIELD("feed_pending", pending),
    FEED_FIELD("feed_protocol_errors", protocol_errors),
    FEED_FIELD("feed_command_errors", command_errors),
    FEED_FIELD("feed_rejected", rejected),
    FEED_FIELD("feed_msg_failures", msg_failures),
    FEED_FIELD("feed_listeners", listeners),
    FEED_FIELD("feed_upstream_messages", upstream_messages),
    FEED_FIELD("feed_upstream_unheard", upstream_unheard),
    FEED_FIELD("feed_listener_overflows", listener_overflows),
    FEED_FIELD("feed_direct_sent", direct_sent),
    FEED_FIELD("feed_direct_missed", direct_missed),
    FEED_FIELD("feed_idle_timeouts", idle_timeouts),
};

/* A counter's current value, read the way its writer publishes it. */
static unsigned long stat_at(const void *stats, size_t offset)
{
    return (unsigned long)rc_stat_get(*(const uint64_t *)((const char *)stats + offset));
}

/* A worker counter summed over all workers. */
static unsigned long worker_sum(const struct rc_server *s, size_t offset)
{
    unsigned long sum = 0;
    for (unsigned i = 0; i < s->nworkers; i++)
        sum += stat_at(&s->workers[i].stats, offset);
    return sum;
}

size_t rc_server_info(const struct rc_server *s, char *buf, size_t cap)
{
    size_t n = 0;

#define OUT(...)                                                                                   \
    do {                                                                                           \
        if (n < cap)                                                                               \
            n += (size_t)snprintf(buf + n, cap - n, __VA_ARGS__);                                  \
    } while (0)

    OUT("# Server\r\nversion:%s\r\nuptime_seconds:%ld\r\nworkers:%u\r\n"
        "capacity_per_worker:%u\r\ninstance:%s\r\nconfig_reloads:%lu\r\n"
        "config_reload_errors:%lu\r\n",
        RC_VERSION, (long)(time(NULL) - s->started), s->nworkers, s->workers[0].capacity,
        s->feed.instance, (unsigned long)rc_stat_get(s->config_reloads),
        (unsigned long)rc_stat_get(s->config_reload_errors));
    OUT("# Clients\r\nconnections:%lu\r\n",
        worker_sum(s, offsetof(struct rc_worker_stats, connections)));
    for (unsigned i = 0; i < s->nworkers; i++)
        OUT("worker_%u_connections:%lu\r\n", i,
            stat_at(&s->workers[i].stats, offsetof(struct rc_worker_stats, connections)));
    OUT("subscribers:%lu\r\nchannels:%lu\r\nclient_addresses:%lu\r\n",
        worker_sum(s, offsetof(struct rc_worker_stats, subscribers)),
        worker_sum(s, offsetof(struct rc_worker_stats, channels)),
        (unsigned long)(s->per_address ? rc_addrlimit_addresses(&s->addrs) : 0));
    OUT("# Stats\r\n");
    for (size_t i = 0; i < sizeof(worker_stats_fields) / sizeof(worker_stats_fields[0]); i++)
        OUT("%s:%lu\r\n", worker_stats_fields[i].name,
            worker_sum(s, worker_stats_fields[i].offset));
    OUT("# Feed\r\n");
    for (size_t i = 0; i < sizeof(feed_stats_fields) / sizeof(feed_stats_fields[0]); i++)
        OUT("%s:%lu\r\n", feed_stats_fields[i].name,
            stat_at(&s->feed.stats, feed_stats_fields[i].offset));
#undef OUT
    return n < cap ? n : cap - 1;
}

/* Tells every thread to stop, through a ring of the main thread's own. */
static void post_stop(struct rc_server *s)
{
    struct rc_ring ctl;
    if (rc_ring_init(&ctl, 64, 128, 0) < 0) {
        rc_error("cannot create a control ring; exiting without an orderly stop");
        exit(1);
    }
    rc_ring_msg(&ctl, rc_server_feed_ring(s), rc_ud(NULL, RC_OP_STOP, 0), 0,
                rc_ud(NULL, RC_OP_IGNORE, 0));
    for (unsigned i = 0; i < s->nworkers; i++)
        rc_ring_msg(&ctl, rc_server_worker_ring(s, i), rc_ud(NULL, RC_OP_STOP, 0), 0,
                    rc_ud(NULL, RC_OP_IGNORE, 0));
    rc_ring_run(&ctl, 0, NULL, NULL);
    rc_ring_exit(&ctl);
}

static int start_threads(struct rc_server *s)
{
    int ret = 0;
    pthread_barrier_init(&s->ready, NULL, s->nworkers + 2);
    pthread_barrier_init(&s->go, NULL, s->nworkers + 2);
    for (unsigned i = 0; i < s->nworkers; i++)
        if (rc_worker_start(&s->workers[i]) < 0)
            return -EAGAIN;
    if (rc_feed_start(&s->feed) < 0)
        return -EAGAIN;
    pthread_barrier_wait(&s->ready);
    for (unsigned i = 0; i < s->nworkers; i++)
        if (s->workers[i].init_error < 0)
            ret = s->workers[i].init_error;
    if (s->feed.init_error < 0)
        ret = s->feed.init_error;
    s->start_ok = ret == 0;
    pthread_barrier_wait(&s->go);
    return ret;
}

/* Waits for SIGINT or SIGTERM, reloading the configuration on every SIGHUP meanwhile. */
static void wait_for_stop_signal(struct rc_server *s)
{
    sigset_t set;
    int sig;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    for (;;) {
        if (sigwait(&set, &sig) != 0)
            continue;
        if (sig == SIGHUP) {
            reload_config(s);
            continue;
        }
        rc_info("%s: stopping", sig == SIGINT ? "SIGINT" : "SIGTERM");
        return;
    }
}

int rc_server_run(const struct rc_config *cfg, const char *config_path)
{
    struct rc_server *s = calloc(1, sizeof(*s));
    sigset_t set;
    int ret;

    if (!s || publish_config(s, cfg) < 0)
        return 1;
    /* From here on cfg is the server's own copy, which lives as long as the server. */
    cfg = rc_server_config(s);
    s->config_path = config_path;
    s->started = time(NULL);
    rc_log_set_level(cfg->log_level);
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    s->nworkers = cfg->workers ? cfg->workers : (unsigned)(ncpu > 0 ? ncpu : 1);
    s->nofile = file_limit();
    s->workers = calloc(s->nworkers, sizeof(*s->workers));
    if (!s->workers)
        return 1;

    /* Signals are taken by sigwait() in this thread only; SIGPIPE never stops the process. */
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    int probe = open_listener(cfg, false);
    if (probe < 0) {
        rc_error("cannot listen on %s:%u: %s", cfg->listen_host, cfg->listen_port,
                 probe == -EADDRINUSE ? "the address is already in use" : strerror(-probe));
        return 1;
    }
    close(probe);
    /*
     * A ring's file table holds at most RLIMIT_NOFILE direct descriptors. The capacity stays a
     * reserve below that (64, or a sixteenth of a small limit), so that a client beyond the
     * capacity still gets a slot to be told 503 in; only when the reserve is used up too does
     * the kernel refuse the connection, and the client sees it closed.
     */
    unsigned reserve = s->nofile / 16 < 64 ? s->nofile / 16 : 64;
    uint32_t capacity = cfg->max_connections_per_worker;
    if (capacity > s->nofile - reserve)
        capacity = s->nofile - reserve;
    if (capacity == 0) {
        rc_error("RLIMIT_NOFILE %u leaves no room for connections", s->nofile);
        return 1;
    }
    /*
     * Decided once, here: with the per-address limit the workers accept differently (see
     * RC_ACCEPT_SLOTS), so turning it on or off takes a restart; its value may change while it
     * stays on. max_connections needs no such decision: open_connections is always kept.
     */
    s->per_address = cfg->max_connections_per_address > 0;
    if (s->per_address && rc_addrlimit_init(&s->addrs) < 0) {
        rc_error("out of memory for the per-address table");
        return 1;
    }
    for (unsigned i = 0; i < s->nworkers; i++) {
        struct rc_worker *w = &s->workers[i];
        w->id = i;
        w->server = s;
        w->cfg = cfg;
        w->capacity = capacity;
        w->listen_fd = open_listener(cfg, true);
        if (w->listen_fd < 0) {
            rc_error("cannot listen on %s:%u: %s", cfg->listen_host, cfg->listen_port,
                     strerror(-w->listen_fd));
            return 1;
        }
    }
    s->feed.server = s;
    ret = rc_feed_listen(&s->feed, cfg);
    if (ret < 0) {
        rc_error("cannot listen on feed socket %s: %s", cfg->socket,
                 ret == -EADDRINUSE ? "another ringcast is serving it" : strerror(-ret));
        return 1;
    }
    ret = start_threads(s);
    if (ret < 0) {
        rc_error("start-up failed: %s", strerror(-ret));
        unlink(cfg->socket);
        return 1;
    }
    const struct rc_ring_features *ft = &s->workers[0].ring.features;
    rc_info("ringcast %s listening on %s:%u with %u workers, %u connections per worker "
            "(max_connections_per_worker %u, RLIMIT_NOFILE %u), feed at %s",
            RC_VERSION, cfg->listen_host, cfg->listen_port, s->nworkers, capacity,
            cfg->max_connections_per_worker, s->nofile, cfg->socket);
    if (cfg->max_connections || s->per_address)
        rc_info("connection limits: max_connections %u, max_connections_per_address %u "
                "(0: none)",
                cfg->max_connections, cfg->max_connections_per_address);
    rc_info("io_uring features: defer_taskrun=%s msg_ring=%s send_zc=%s bundles=%s",
            ft->defer_taskrun ? "yes" : "no", ft->msg_ring ? "yes" : "no",
            ft->send_zc ? "yes" : "no", ft->bundles ? "yes" : "no");

    wait_for_stop_signal(s);
    post_stop(s);
    pthread_join(s->feed.thread, NULL);
    for (unsigned i = 0; i < s->nworkers; i++)
        pthread_join(s->workers[i].thread, NULL);
    rc_ring_exit(&s->feed.ring);
    for (unsigned i = 0; i < s->nworkers; i++)
        rc_ring_exit(&s->workers[i].ring);
    rc_info("stopped");
    if (s->per_address)
        rc_addrlimit_destroy(&s->addrs);
    free(s->workers);
    free_configs(s);
    free(s);
    return 0;
}
