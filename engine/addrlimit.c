/*
 * Connections per client address. See include/ringcast/addrlimit.h.
 */
#include "ringcast/addrlimit.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "ringcast/assert.h"

#define INITIAL_BUCKETS 1024

static inline uint64_t rotl(uint64_t x, int b)
{
    return (x << b) | (x >> (64 - b));
}

#define SIPROUND                                                                                   \
    do {                                                                                           \
        v0 += v1;                                                                                  \
        v1 = rotl(v1, 13);                                                                         \
        v1 ^= v0;                                                                                  \
        v0 = rotl(v0, 32);                                                                         \
        v2 += v3;                                                                                  \
        v3 = rotl(v3, 16);                                                                         \
        v3 ^= v2;                                                                                  \
        v0 += v3;                                                                                  \
        v3 = rotl(v3, 21);                                                                         \
        v3 ^= v0;                                                                                  \
        v2 += v1;                                                                                  \
        v1 = rotl(v1, 17);                                                                         \
        v1 ^= v2;                                                                                  \
        v2 = rotl(v2, 32);                                                                         \
    } while (0)

static uint64_t load64_le(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

/* SipHash-2-4 of exactly 16 bytes. */
static uint64_t siphash16(const uint64_t key[2], const unsigned char in[RC_ADDR_LEN])
{
    uint64_t v0 = 0x736f6d6570736575ULL ^ key[0];
    uint64_t v1 = 0x646f72616e646f6dULL ^ key[1];
    uint64_t v2 = 0x6c7967656e657261ULL ^ key[0];
    uint64_t v3 = 0x7465646279746573ULL ^ key[1];
    for (int i = 0; i < 2; i++) {
        uint64_t m = load64_le(in + 8 * i);
        v3 ^= m;
        SIPROUND;
        SIPROUND;
        v0 ^= m;
    }
    uint64_t b = (uint64_t)RC_ADDR_LEN << 56;
    v3 ^= b;
    SIPROUND;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

int rc_addrlimit_init(struct rc_addrlimit *t)
{
    memset(t, 0, sizeof(*t));
    t->buckets = calloc(INITIAL_BUCKETS, sizeof(*t->buckets));
    if (!t->buckets)
        return -ENOMEM;
    t->nbuckets = INITIAL_BUCKETS;
    if (getrandom(t->key, sizeof(t->key), GRND_NONBLOCK) != (ssize_t)sizeof(t->key)) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        t->key[0] = (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15ULL ^ (uint64_t)ts.tv_sec;
        t->key[1] = (uint64_t)(uintptr_t)t * 0xbf58476d1ce4e5b9ULL;
    }
    pthread_mutex_init(&t->lock, NULL);
    return 0;
}

void rc_addrlimit_destroy(struct rc_addrlimit *t)
{
    if (!t->buckets)
        return;
    for (uint64_t i = 0; i < t->nbuckets; i++) {
        struct rc_addrnode *n = t->buckets[i];
        while (n) {
            struct rc_addrnode *next = n->next;
            free(n);
            n = next;
        }
    }
    free(t->buckets);
    pthread_mutex_destroy(&t->lock);
    memset(t, 0, sizeof(*t));
}

bool rc_addrlimit_key(const struct sockaddr *sa, socklen_t len, unsigned char key[RC_ADDR_LEN])
{
    if (sa->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
        memcpy(key, &((const struct sockaddr_in6 *)sa)->sin6_addr, RC_ADDR_LEN);
        return true;
    }
    if (sa->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
        memset(key, 0, 10);
        key[10] = 0xff;
        key[11] = 0xff;
        memcpy(key + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
        return true;
    }
    return false;
}

/* Doubles the bucket array; on allocation failure the chains just grow longer. */
static void grow(struct rc_addrlimit *t)
{
    uint64_t n = t->nbuckets * 2;
    struct rc_addrnode **b = calloc(n, sizeof(*b));
    if (!b)
        return;
    for (uint64_t i = 0; i < t->nbuckets; i++) {
        struct rc_addrnode *node = t->buckets[i];
        while (node) {
            struct rc_addrnode *next = node->next;
            struct rc_addrnode **head = &b[node->hash & (n - 1)];
            node->next = *head;
            *head = node;
            node = next;
        }
    }
    free(t->buckets);
    t->buckets = b;
    t->nbuckets = n;
}

/* The node of addr, or NULL. Called with the lock held. */
static struct rc_addrnode *find(struct rc_addrlimit *t, const unsigned char addr[RC_ADDR_LEN],
                                uint64_t hash)
{
    for (struct rc_addrnode *n = t->buckets[hash & (t->nbuckets - 1)]; n; n = n->next)
        if (n->hash == hash && memcmp(n->addr, addr, RC_ADDR_LEN) == 0)
            return n;
    return NULL;
}

struct rc_addrnode *rc_addrlimit_acquire(struct rc_addrlimit *t,
                                         const unsigned char addr[RC_ADDR_LEN], uint32_t *count)
{
    uint64_t hash = siphash16(t->key, addr);
    pthread_mutex_lock(&t->lock);
    struct rc_addrnode *n = find(t, addr, hash);
    if (!n) {
        n = malloc(sizeof(*n));
        if (!n) {
            pthread_mutex_unlock(&t->lock);
            return NULL;
        }
        n->hash = hash;
        n->count = 0;
        memcpy(n->addr, addr, RC_ADDR_LEN);
        if (t->nodes >= t->nbuckets)
            grow(t);
        struct rc_addrnode **head = &t->buckets[hash & (t->nbuckets - 1)];
        n->next = *head;
        *head = n;
        __atomic_store_n(&t->nodes, t->nodes + 1, __ATOMIC_RELAXED);
    }
    *count = ++n->count;
    pthread_mutex_unlock(&t->lock);
    return n;
}

void rc_addrlimit_release(struct rc_addrlimit *t, struct rc_addrnode *n)
{
    pthread_mutex_lock(&t->lock);
    rc_assert(n->count > 0);
    if (--n->count == 0) {
        struct rc_addrnode **p = &t->buckets[n->hash & (t->nbuckets - 1)];
        while (*p != n) {
            rc_assert(*p != NULL);
            p = &(*p)->next;
        }
        *p = n->next;
        __atomic_store_n(&t->nodes, t->nodes - 1, __ATOMIC_RELAXED);
        free(n);
    }
    pthread_mutex_unlock(&t->lock);
}

uint32_t rc_addrlimit_count(struct rc_addrlimit *t, const unsigned char addr[RC_ADDR_LEN])
{
    uint64_t hash = siphash16(t->key, addr);
    pthread_mutex_lock(&t->lock);
    struct rc_addrnode *n = find(t, addr, hash);
    uint32_t count = n ? n->count : 0;
    pthread_mutex_unlock(&t->lock);
    return count;
}

uint64_t rc_addrlimit_addresses(const struct rc_addrlimit *t)
{
    return __atomic_load_n(&t->nodes, __ATOMIC_RELAXED);
}
