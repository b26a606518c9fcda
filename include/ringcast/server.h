/*
 * The server: builds the workers and the feed, starts them, waits for a signal, stops them.
 *
 * The live configuration is published through an atomic pointer. SIGHUP makes the main thread
 * load the configuration file into a new copy, which replaces the live one with a release
 * store; workers and the feed load the pointer once per loop iteration, so every completion of
 * one iteration sees one configuration. Configurations replaced are freed only at exit, because
 * a thread may still be reading one: reloads are rare and a copy is a few kilobytes.
 */
#ifndef RINGCAST_SERVER_H
#define RINGCAST_SERVER_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "ringcast/addrlimit.h"
#include "ringcast/config.h"
#include "ringcast/feed.h"
#include "ringcast/worker.h"

struct rc_server_config;

struct rc_server {
    const struct rc_config *_Atomic cfg; /* the live configuration; see rc_server_config() */
    struct rc_server_config *configs;    /* every one published, newest first; freed at exit */
    const char *config_path;             /* reloaded on SIGHUP; NULL without -c; not owned */
    uint64_t config_reloads;             /* SIGHUPs that published a new configuration */
    uint64_t config_reload_errors;       /* SIGHUPs whose file did not load or validate */
    unsigned nworkers;
    unsigned nofile;           /* RLIMIT_NOFILE: the most direct descriptors one ring may hold */
    struct rc_worker *workers; /* owned array of nworkers */
    struct rc_feed feed;
    time_t started;
    pthread_barrier_t ready;   /* every thread has set up its ring */
    pthread_barrier_t go;      /* the main thread has checked that all of them succeeded */
    int start_ok;              /* written before `go`, read after it */
    bool per_address;          /* max_connections_per_address is on; `addrs` is set up */
    struct rc_addrlimit addrs; /* connections per client address, shared by the workers */
    /*
     * Client connections open over all workers, for max_connections. Kept whether the limit
     * is on or not, so that it is right whenever a reload turns the limit on; that costs one
     * atomic add per accept and one per close. The pads keep it alone on its cache line, away
     * from everything the workers read on the event path, whatever the allocation's alignment.
     */
    char pad_open_before[64];
    uint64_t open_connections;
    char pad_open_after[64 - sizeof(uint64_t)];
};

/*
 * Runs the engine with this configuration until SIGINT or SIGTERM; on SIGHUP it reloads the
 * file at config_path (NULL: there is none) as the header comment describes. Returns the
 * process exit status: 0 after an orderly stop, 1 when start-up failed (the reason is logged).
 */
int rc_server_run(const struct rc_config *cfg, const char *config_path);

/* The live configuration (an acquire load). Any thread; valid until the server exits. */
const struct rc_config *rc_server_config(const struct rc_server *s);

/* The ring fd of worker i and of the feed, valid once the ready barrier has passed. */
int rc_server_worker_ring(const struct rc_server *s, unsigned i);
int rc_server_feed_ring(const struct rc_server *s);

/* Formats the INFO text ("key:value\r\n" lines). Returns the length written (< cap). */
size_t rc_server_info(const struct rc_server *s, char *buf, size_t cap);

/* Joins the start barriers; returns whether the thread should run. */
int rc_server_thread_ready(struct rc_server *s);

#endif
