/*
 * The per-address table counts connections per 16-byte address (refused ones too, until they
 * are released), frees a node with its last connection, maps IPv4 onto IPv4-mapped IPv6, grows past
 * its initial buckets, and stays consistent when several threads use it at once.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

#include "ringcast/addrlimit.h"
#include "test.h"

static void addr_of(unsigned char key[RC_ADDR_LEN], uint32_t i)
{
    memset(key, 0, RC_ADDR_LEN);
    key[0] = 0x20;
    key[1] = 0x01;
    key[12] = (unsigned char)(i >> 24);
    key[13] = (unsigned char)(i >> 16);
    key[14] = (unsigned char)(i >> 8);
    key[15] = (unsigned char)i;
}

TEST(counts_per_address)
{
    struct rc_addrlimit t;
    unsigned char a[RC_ADDR_LEN], b[RC_ADDR_LEN];
    struct rc_addrnode *na[4], *nb;
    uint32_t count;

    CHECK_EQ(rc_addrlimit_init(&t), 0);
    addr_of(a, 1);
    addr_of(b, 2);
    for (uint32_t i = 0; i < 4; i++) {
        na[i] = rc_addrlimit_acquire(&t, a, &count);
        CHECK(na[i] != NULL);
        CHECK_EQ(count, i + 1);
    }
    CHECK(na[0] == na[1] && na[1] == na[2] && na[2] == na[3]);
    CHECK_EQ(rc_addrlimit_count(&t, a), 4);

    /* Another address is not affected. */
    nb = rc_addrlimit_acquire(&t, b, &count);
    CHECK(nb != NULL && nb != na[0]);
    CHECK_EQ(count, 1);
    CHECK_EQ(rc_addrlimit_addresses(&t), 2);

    /* Places given back are counted again from there. */
    rc_addrlimit_release(&t, na[3]);
    rc_addrlimit_release(&t, na[2]);
    CHECK_EQ(rc_addrlimit_count(&t, a), 2);
    na[2] = rc_addrlimit_acquire(&t, a, &count);
    CHECK_EQ(count, 3);
    for (int i = 0; i < 3; i++)
        rc_addrlimit_release(&t, na[i]);
    CHECK_EQ(rc_addrlimit_count(&t, a), 0);
    CHECK_EQ(rc_addrlimit_addresses(&t), 1);
    rc_addrlimit_release(&t, nb);
    CHECK_EQ(rc_addrlimit_addresses(&t), 0);

    /* A freed address starts again from one, with a new node. */
    na[0] = rc_addrlimit_acquire(&t, a, &count);
    CHECK_EQ(count, 1);
    rc_addrlimit_release(&t, na[0]);
    rc_addrlimit_destroy(&t);
}

TEST(ipv4_maps_to_ipv4_mapped_ipv6)
{
    struct sockaddr_in v4 = {.sin_family = AF_INET, .sin_port = htons(1234)};
    struct sockaddr_in6 v6 = {.sin6_family = AF_INET6, .sin6_port = htons(80)};
    struct sockaddr_un_like {
        sa_family_t family;
        char path[20];
    } un = {.family = AF_UNIX};
    unsigned char k4[RC_ADDR_LEN], k6[RC_ADDR_LEN], k[RC_ADDR_LEN];

    inet_pton(AF_INET, "127.0.0.2", &v4.sin_addr);
    inet_pton(AF_INET6, "::ffff:127.0.0.2", &v6.sin6_addr);
    CHECK(rc_addrlimit_key((struct sockaddr *)&v4, sizeof(v4), k4));
    CHECK(rc_addrlimit_key((struct sockaddr *)&v6, sizeof(v6), k6));
    CHECK(memcmp(k4, k6, RC_ADDR_LEN) == 0);
    static const unsigned char want[RC_ADDR_LEN] = {0, 0, 0,    0,    0,   0, 0, 0,
                                                    0, 0, 0xff, 0xff, 127, 0, 0, 2};
    CHECK(memcmp(k4, want, RC_ADDR_LEN) == 0);

    /* The port is not part of the key. */
    v4.sin_port = htons(4321);
    CHECK(rc_addrlimit_key((struct sockaddr *)&v4, sizeof(v4), k));
    CHECK(memcmp(k, k4, RC_ADDR_LEN) == 0);

    /* Other families, and truncated addresses, are not keyed. */
    CHECK(!rc_addrlimit_key((struct sockaddr *)&un, sizeof(un), k));
    CHECK(!rc_addrlimit_key((struct sockaddr *)&v4, sizeof(v4) - 1, k));
    CHECK(!rc_addrlimit_key((struct sockaddr *)&v6, sizeof(struct sockaddr_in), k));
}

TEST(many_addresses_grow_the_table_and_all_are_freed)
{
    enum { N = 5000 };
    struct rc_addrlimit t;
    unsigned char a[RC_ADDR_LEN];
    static struct rc_addrnode *nodes[N][2];
    uint32_t count;

    CHECK_EQ(rc_addrlimit_init(&t), 0);
    for (uint32_t i = 0; i < N; i++) {
        addr_of(a, i);
        for (int j = 0; j < 2; j++) {
            nodes[i][j] = rc_addrlimit_acquire(&t, a, &count);
            CHECK(nodes[i][j] != NULL);
            CHECK_EQ(count, j + 1);
        }
    }
    CHECK_EQ(rc_addrlimit_addresses(&t), N);
    CHECK(t.nbuckets >= N);
    for (uint32_t i = 0; i < N; i++) {
        addr_of(a, i);
        CHECK_EQ(rc_addrlimit_count(&t, a), 2);
    }
    /* Release in an order unrelated to insertion. */
    for (uint32_t k = 0; k < N; k++) {
        uint32_t i = (uint32_t)(((uint64_t)k * 2654435761u) % N);
        rc_addrlimit_release(&t, nodes[i][0]);
    }
    CHECK_EQ(rc_addrlimit_addresses(&t), N);
    for (uint32_t i = 0; i < N; i++)
        rc_addrlimit_release(&t, nodes[i][1]);
    CHECK_EQ(rc_addrlimit_addresses(&t), 0);
    for (uint64_t b = 0; b < t.nbuckets; b++)
        CHECK(t.buckets[b] == NULL);
    rc_addrlimit_destroy(&t);
}

struct worker_arg {
    struct rc_addrlimit *t;
    uint32_t seed;
    uint32_t max_count; /* the highest count this thread was told */
};

/* Acquires and releases on 8 shared addresses, at most 2 held at a time per thread. */
static void *hammer(void *p)
{
    struct worker_arg *arg = p;
    uint32_t x = arg->seed;
    struct rc_addrnode *held[2] = {NULL, NULL};
    unsigned char a[RC_ADDR_LEN];
    uint32_t count;

    for (int i = 0; i < 20000; i++) {
        x = x * 1664525u + 1013904223u;
        int slot = (x >> 16) & 1;
        if (held[slot]) {
            rc_addrlimit_release(arg->t, held[slot]);
            held[slot] = NULL;
        } else {
            addr_of(a, (x >> 20) & 7);
            held[slot] = rc_addrlimit_acquire(arg->t, a, &count);
            if (count > arg->max_count)
                arg->max_count = count;
        }
    }
    for (int s = 0; s < 2; s++)
        if (held[s])
            rc_addrlimit_release(arg->t, held[s]);
    return NULL;
}

TEST(threads_share_the_table)
{
    enum { THREADS = 4 };
    struct rc_addrlimit t;
    pthread_t th[THREADS];
    struct worker_arg args[THREADS];
    unsigned char a[RC_ADDR_LEN];

    CHECK_EQ(rc_addrlimit_init(&t), 0);
    for (int i = 0; i < THREADS; i++) {
        args[i] = (struct worker_arg){&t, (uint32_t)i * 7919u + 1, 0};
        CHECK_EQ(pthread_create(&th[i], NULL, hammer, &args[i]), 0);
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    /* At most 2 connections per thread are open at once, so no count can exceed 8. */
    for (int i = 0; i < THREADS; i++)
        CHECK(args[i].max_count >= 1 && args[i].max_count <= 2 * THREADS);
    CHECK_EQ(rc_addrlimit_addresses(&t), 0);
    for (uint32_t i = 0; i < 8; i++) {
        addr_of(a, i);
        CHECK_EQ(rc_addrlimit_count(&t, a), 0);
    }
    rc_addrlimit_destroy(&t);
}

TEST_MAIN()
