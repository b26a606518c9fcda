/*
 * Per-worker channel table and histories. See include/ringcast/channel.h.
 */
#include "ringcast/channel.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ringcast/assert.h"

#define INITIAL_BUCKETS 1024
#define INITIAL_HISTORY 8

uint32_t rc_channel_hash(const char *name, size_t len)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)name[i];
        h *= 16777619u;
    }
    return h;
}

int rc_channel_table_init(struct rc_channel_table *t, unsigned worker)
{
    memset(t, 0, sizeof(*t));
    t->buckets = calloc(INITIAL_BUCKETS, sizeof(*t->buckets));
    t->forgotten = calloc(RC_CHANNEL_FORGOTTEN, sizeof(*t->forgotten));
    if (!t->buckets || !t->forgotten) {
        free(t->buckets);
        free(t->forgotten);
        return -ENOMEM;
    }
    t->mask = INITIAL_BUCKETS - 1;
    t->worker = worker;
    return 0;
}

void rc_channel_table_destroy(struct rc_channel_table *t)
{
    struct rc_channel *ch;
    while ((ch = rc_channel_any(t)) != NULL) {
        rc_link_init(&ch->subs);
        rc_link_init(&ch->xsubs);
        ch->nsubs = 0;
        rc_channel_destroy(t, ch);
    }
    free(t->buckets);
    free(t->forgotten);
    memset(t, 0, sizeof(*t));
}

struct rc_channel *rc_channel_find(struct rc_channel_table *t, const char *name, size_t len,
                                   uint32_t hash)
{
    for (struct rc_channel *ch = t->buckets[hash & t->mask]; ch; ch = ch->hnext)
        if (ch->hash == hash && ch->name_len == len && memcmp(ch->name, name, len) == 0)
            return ch;
    return NULL;
}

/* Doubles the bucket array when the table is denser than one channel per bucket. */
static void maybe_rehash(struct rc_channel_table *t)
{
    if (t->count <= t->mask)
        return;
    uint32_t nmask = t->mask * 2 + 1;
    struct rc_channel **nb = calloc((size_t)nmask + 1, sizeof(*nb));
    if (!nb)
        return; /* Longer chains are slower, not wrong. */
    for (uint32_t i = 0; i <= t->mask; i++) {
        struct rc_channel *ch = t->buckets[i];
        while (ch) {
            struct rc_channel *next = ch->hnext;
            ch->hnext = nb[ch->hash & nmask];
            nb[ch->hash & nmask] = ch;
            ch = next;
        }
    }
    free(t->buckets);
    t->buckets = nb;
    t->mask = nmask;
}

struct rc_channel *rc_channel_create(struct rc_channel_table *t, const char *name, size_t len,
                                     uint32_t hash, const struct rc_history_limits *limits)
{
    rc_assert(len <= UINT16_MAX && limits->size > 0);
    struct rc_channel *ch = calloc(1, sizeof(*ch) + len);
    if (!ch)
        return NULL;
    ch->limits = *limits;
    ch->dropped_seq = rc_channel_forgotten(t, hash);
    uint32_t cap = limits->size < INITIAL_HISTORY ? limits->size : INITIAL_HISTORY;
    uint32_t pow2 = 1;
    while (pow2 < cap)
        pow2 <<= 1;
    ch->ring = malloc(pow2 * sizeof(*ch->ring));
    if (!ch->ring) {
        free(ch);
        return NULL;
    }
    ch->mask = pow2 - 1;
    rc_link_init(&ch->subs);
    rc_link_init(&ch->xsubs);
    ch->hash = hash;
    ch->name_len = (uint16_t)len;
    memcpy(ch->name, name, len);
    ch->hnext = t->buckets[hash & t->mask];
    t->buckets[hash & t->mask] = ch;
    t->count++;
    maybe_rehash(t);
    return ch;
}

void rc_channel_destroy(struct rc_channel_table *t, struct rc_channel *ch)
{
    rc_assert(ch->nsubs == 0 && rc_link_empty(&ch->subs) && rc_link_empty(&ch->xsubs));
    uint64_t *f = &t->forgotten[ch->hash % RC_CHANNEL_FORGOTTEN];
    if (ch->dropped_seq > *f)
        *f = ch->dropped_seq;
    struct rc_channel **pp = &t->buckets[ch->hash & t->mask];
    while (*pp != ch)
        pp = &(*pp)->hnext;
    *pp = ch->hnext;
    t->count--;
    for (uint64_t s = ch->tail; s < ch->head; s++)
        rc_event_unuse(ch->ring[s & ch->mask].ev, t->worker);
    free(ch->ring);
    free(ch);
}

struct rc_channel *rc_channel_any(const struct rc_channel_table *t)
{
    if (t->count == 0)
        return NULL;
    for (uint32_t i = 0; i <= t->mask; i++)
        if (t->buckets[i])
            return t->buckets[i];
    return NULL;
}

void rc_channel_foreach(struct rc_channel_table *t, void (*fn)(void *arg, struct rc_channel *ch),
                        void *arg)
{
    for (uint32_t i = 0; i <= t->mask; i++) {
        struct rc_channel *ch = t->buckets[i];
        while (ch) {
            /* Read the successor first: fn may destroy the channel it is given. */
            struct rc_channel *next = ch->hnext;
            fn(arg, ch);
            ch = next;
        }
    }
}

/* Doubles the history ring, keeping every sequence number in its slot (seq & mask). */
static int grow_ring(struct rc_channel *ch)
{
    uint32_t ncap = (ch->mask + 1) * 2;
    struct rc_slot *nr = malloc(ncap * sizeof(*nr));
    if (!nr)
        return -ENOMEM;
    for (uint64_t s = ch->tail; s < ch->head; s++)
        nr[s & (ncap - 1)] = ch->ring[s & ch->mask];
    free(ch->ring);
    ch->ring = nr;
    ch->mask = ncap - 1;
    return 0;
}

/* The oldest event leaves the history. */
static void drop_oldest(struct rc_channel_table *t, struct rc_channel *ch)
{
    struct rc_event *ev = ch->ring[ch->tail & ch->mask].ev;
    ch->dropped_seq = ev->seq;
    ch->tail++;
    rc_event_unuse(ev, t->worker);
}

void rc_channel_append(struct rc_channel_table *t, struct rc_channel *ch, struct rc_event *ev)
{
    uint64_t len = ch->head - ch->tail;
    /* Grow while under the configured size; when growing fails, forget the oldest instead. */
    if (len >= ch->limits.size || (len == (uint64_t)ch->mask + 1 && grow_ring(ch) < 0))
        drop_oldest(t, ch);
    rc_event_use(ev, t->worker);
    ch->ring[ch->head & ch->mask] = (struct rc_slot){ev, ch->bytes_in};
    ch->head++;
    ch->bytes_in += ev->payload_len;
    while (ch->head - ch->tail > 1 && rc_channel_bytes_after(ch, ch->tail) > ch->limits.max_bytes)
        drop_oldest(t, ch);
}

void rc_channel_expire(struct rc_channel_table *t, struct rc_channel *ch, uint64_t now_ms)
{
    if (!ch->limits.ttl_ms)
        return;
    while (ch->tail < ch->head &&
           rc_channel_at(ch, ch->tail)->time_ms + ch->limits.ttl_ms <= now_ms)
        drop_oldest(t, ch);
}

uint64_t rc_channel_bytes_after(const struct rc_channel *ch, uint64_t seq)
{
    rc_assert(seq >= ch->tail && seq <= ch->head);
    return seq == ch->head ? 0 : ch->bytes_in - ch->ring[seq & ch->mask].bytes;
}

uint64_t rc_channel_after(const struct rc_channel *ch, uint64_t engine_seq)
{
    /* Engine sequence numbers rise along the history: a binary search finds the boundary. */
    uint64_t lo = ch->tail, hi = ch->head;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (rc_channel_at(ch, mid)->seq <= engine_seq)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

uint64_t rc_channel_find_id(const struct rc_channel *ch, const char *id, size_t len)
{
    for (uint64_t s = ch->head; s-- > ch->tail;) {
        const struct rc_event *ev = rc_channel_at(ch, s);
        if (ev->id_len == len && memcmp(rc_event_id(ev), id, len) == 0)
            return s;
    }
    return ch->head;
}
