/*
 * Connections per client address, for [server] max_connections_per_address.
 *
 * One table for the whole process, shared by every worker: a client's connections are spread
 * over the workers by SO_REUSEPORT, so only a shared count can hold it to the limit. The table
 * is a chained hash table keyed by the 16-byte address (IPv4 as an IPv4-mapped IPv6 address),
 * with one node per distinct address that has connections open; the node is freed when its last
 * connection closes. One mutex guards it all: it is taken once per accept and once per close,
 * never on the path that moves events, so a finer scheme would buy nothing measurable.
 *
 * The hash is keyed with random bytes chosen at start-up (SipHash-2-4), so clients cannot pick
 * addresses that collide into one chain.
 *
 * The table only counts; the caller compares a count with the limit, which it reads from the
 * live configuration, so a reload may change the limit without touching the table.
 */
#ifndef RINGCAST_ADDRLIMIT_H
#define RINGCAST_ADDRLIMIT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#define RC_ADDR_LEN 16

/* One client address with connections open. */
struct rc_addrnode {
    struct rc_addrnode *next; /* in its bucket */
    uint64_t hash;
    uint32_t count; /* connections from this address, including ones being refused */
    unsigned char addr[RC_ADDR_LEN];
};

struct rc_addrlimit {
    pthread_mutex_t lock;
    struct rc_addrnode **buckets; /* owned; nbuckets chains */
    uint64_t nbuckets;            /* a power of two; doubled when nodes outnumber buckets */
    uint64_t nodes;               /* distinct addresses with connections (read without the lock) */
    uint64_t key[2];              /* the SipHash key */
};

/*
 * Prepares an empty table. Returns 0 or -ENOMEM. The hash key comes from getrandom(); when
 * that fails, from the clock and the table's address.
 */
int rc_addrlimit_init(struct rc_addrlimit *t);

/* Frees the table and every node; nodes still held become invalid. */
void rc_addrlimit_destroy(struct rc_addrlimit *t);

/*
 * The table key of a peer address: an IPv6 address as is, an IPv4 one as ::ffff:a.b.c.d, so
 * that a client reaching a dual-stack socket either way is counted once. Returns false for any
 * other family (or a short length); such a peer is not limited.
 */
bool rc_addrlimit_key(const struct sockaddr *sa, socklen_t len, unsigned char key[RC_ADDR_LEN]);

/*
 * Counts one more connection from `addr` and returns its node, which the caller hands to
 * rc_addrlimit_release() when that connection is gone (also when it refuses the connection);
 * *count is the address's count with this one. Returns NULL, counting nothing, when a node
 * cannot be allocated. Any thread.
 */
struct rc_addrnode *rc_addrlimit_acquire(struct rc_addrlimit *t,
                                         const unsigned char addr[RC_ADDR_LEN], uint32_t *count);

/* Counts one connection fewer on n; frees the node when it was the last. Any thread. */
void rc_addrlimit_release(struct rc_addrlimit *t, struct rc_addrnode *n);

/* The connections counted for `addr` now (0 when it has no node). For tests and INFO. */
uint32_t rc_addrlimit_count(struct rc_addrlimit *t, const unsigned char addr[RC_ADDR_LEN]);

/* Distinct addresses with connections now; a relaxed read, no lock. */
uint64_t rc_addrlimit_addresses(const struct rc_addrlimit *t);

#endif
