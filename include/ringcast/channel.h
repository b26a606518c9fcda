/*
 * Channels of one worker: name -> subscribers and a history of shared events.
 *
 * Every worker keeps its own table, so nothing here is shared or locked. A channel's history is
 * a ring of event pointers numbered by a per-channel sequence: a subscriber's backlog is just a
 * position in it (its cursor), never a private queue, so a subscriber costs the same whether it
 * is up to date or far behind.
 */
#ifndef RINGCAST_CHANNEL_H
#define RINGCAST_CHANNEL_H

#include <stddef.h>
#include <stdint.h>

#include "ringcast/event.h"

/* An intrusive, circular, doubly linked list node. */
struct rc_link {
    struct rc_link *next;
    struct rc_link *prev;
};

static inline void rc_link_init(struct rc_link *l)
{
    l->next = l->prev = l;
}

static inline void rc_link_insert_tail(struct rc_link *head, struct rc_link *l)
{
    l->prev = head->prev;
    l->next = head;
    head->prev->next = l;
    head->prev = l;
}

static inline void rc_link_remove(struct rc_link *l)
{
    l->prev->next = l->next;
    l->next->prev = l->prev;
    l->next = l->prev = l;
}

static inline int rc_link_empty(const struct rc_link *head)
{
    return head->next == head;
}

#define rc_container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

/* One slot of a channel's history. */
struct rc_slot {
    struct rc_event *ev; /* holds one worker use */
    uint64_t bytes;      /* payload bytes appended to the channel before this event */
};

/* How much history a channel keeps: [channels] or its "[channels:PREFIX]" section. */
struct rc_history_limits {
    uint32_t size;      /* events */
    uint32_t ttl_ms;    /* 0: no time limit */
    uint64_t max_bytes; /* payload bytes */
};

struct rc_channel {
    struct rc_channel *hnext; /* next in the same hash bucket */
    struct rc_link subs;      /* connections with this one channel (rc_conn.link); theirs */
    struct rc_link xsubs;     /* subscriptions of multi-channel connections; theirs */
    uint32_t nsubs;           /* on both lists */
    uint32_t hash;
    uint64_t head;        /* sequence number the next appended event gets */
    uint64_t tail;        /* oldest sequence number still in the history */
    uint64_t bytes_in;    /* payload bytes ever appended */
    uint64_t dropped_seq; /* engine seq of the newest event that left the history; 0: none */
    struct rc_slot *ring; /* history; slot = seq & mask */
    uint32_t mask;        /* ring capacity - 1; the ring grows by doubling up to the limit */
    struct rc_history_limits limits;
    uint16_t name_len;
    char name[];
};

struct rc_channel_table {
    struct rc_channel **buckets; /* owned; chains of channels owned by the table */
    uint32_t mask;
    uint32_t count;
    unsigned worker;     /* index of the owning worker, for rc_event_use() */
    uint64_t *forgotten; /* owned; RC_CHANNEL_FORGOTTEN slots, see below */
};

/*
 * What destroyed channels had dropped: slot hash % RC_CHANNEL_FORGOTTEN holds the newest engine
 * seq that any channel hashing there dropped before it was forgotten. A channel created again
 * starts from it, so a client resuming on it still learns that events are gone. Names that share
 * a slot share their value, which can only make the answer more cautious, never miss a gap.
 */
#define RC_CHANNEL_FORGOTTEN 4096

/* The newest engine seq dropped by a forgotten channel of this hash (0: none known). */
static inline uint64_t rc_channel_forgotten(const struct rc_channel_table *t, uint32_t hash)
{
    return t->forgotten[hash % RC_CHANNEL_FORGOTTEN];
}

/* FNV-1a over the channel name; the feed computes it once per event. */
uint32_t rc_channel_hash(const char *name, size_t len);

/* Prepares an empty table. Returns 0 or -ENOMEM. */
int rc_channel_table_init(struct rc_channel_table *t, unsigned worker);

/* Destroys every channel (releasing their histories) and the table. */
void rc_channel_table_destroy(struct rc_channel_table *t);

/* Returns the channel with this name, or NULL. */
struct rc_channel *rc_channel_find(struct rc_channel_table *t, const char *name, size_t len,
                                   uint32_t hash);

/* Creates a channel that is known not to exist. Returns NULL when memory is short. */
struct rc_channel *rc_channel_create(struct rc_channel_table *t, const char *name, size_t len,
                                     uint32_t hash, const struct rc_history_limits *limits);

/* Removes a channel that has no subscribers left and releases its history. */
void rc_channel_destroy(struct rc_channel_table *t, struct rc_channel *ch);

/* Returns some channel of the table, or NULL when it is empty (used to drain it). */
struct rc_channel *rc_channel_any(const struct rc_channel_table *t);

/* Calls fn for every channel; fn may destroy the channel it is given, but no other. */
void rc_channel_foreach(struct rc_channel_table *t, void (*fn)(void *arg, struct rc_channel *ch),
                        void *arg);

/*
 * Appends ev to the history, taking one worker use of it. Then the oldest events leave while
 * the history holds more than its limits allow (it always keeps the newest event), or when the
 * ring cannot grow; each departure advances `tail` and sets `dropped_seq`.
 */
void rc_channel_append(struct rc_channel_table *t, struct rc_channel *ch, struct rc_event *ev);

/* Drops the events older than the channel's time limit at now_ms. */
void rc_channel_expire(struct rc_channel_table *t, struct rc_channel *ch, uint64_t now_ms);

/* The event with sequence number seq, which must lie in [tail, head). */
static inline struct rc_event *rc_channel_at(const struct rc_channel *ch, uint64_t seq)
{
    return ch->ring[seq & ch->mask].ev;
}

/* Payload bytes between sequence number seq (in [tail, head]) and the head. */
uint64_t rc_channel_bytes_after(const struct rc_channel *ch, uint64_t seq);

/* The first sequence number in [tail, head] whose event's engine seq is above engine_seq. */
uint64_t rc_channel_after(const struct rc_channel *ch, uint64_t engine_seq);

/* The sequence number of the event whose id is id[0..len), or head when none is. */
uint64_t rc_channel_find_id(const struct rc_channel *ch, const char *id, size_t len);

#endif
