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

struct rc_channel {
    struct rc_channel *hnext; /* next in the same hash bucket */
    struct rc_link subs;      /* subscribers; the nodes belong to the connections */
    uint32_t nsubs;
    uint32_t hash;
    uint64_t head;          /* sequence number the next appended event gets */
    uint64_t tail;          /* oldest sequence number still in the history */
    struct rc_event **ring; /* history; slot = seq & mask; owns one worker use per event */
    uint32_t mask;          /* ring capacity - 1; the ring grows by doubling up to the limit */
    uint16_t name_len;
    char name[];
};

struct rc_channel_table {
    struct rc_channel **buckets; /* owned; chains of channels owned by the table */
    uint32_t mask;
    uint32_t count;
    uint32_t history_size; /* most events a channel keeps */
    unsigned worker;       /* index of the owning worker, for rc_event_use() */
};

/* FNV-1a over the channel name; the feed computes it once per event. */
uint32_t rc_channel_hash(const char *name, size_t len);

/* Prepares an empty table. Returns 0 or -ENOMEM. */
int rc_channel_table_init(struct rc_channel_table *t, unsigned worker, uint32_t history_size);

/* Destroys every channel (releasing their histories) and the table. */
void rc_channel_table_destroy(struct rc_channel_table *t);

/* Returns the channel with this name, or NULL. */
struct rc_channel *rc_channel_find(struct rc_channel_table *t, const char *name, size_t len,
                                   uint32_t hash);

/* Creates a channel that is known not to exist. Returns NULL when memory is short. */
struct rc_channel *rc_channel_create(struct rc_channel_table *t, const char *name, size_t len,
                                     uint32_t hash);

/* Removes a channel that has no subscribers left and releases its history. */
void rc_channel_destroy(struct rc_channel_table *t, struct rc_channel *ch);

/* Returns some channel of the table, or NULL when it is empty (used to drain it). */
struct rc_channel *rc_channel_any(const struct rc_channel_table *t);

/* Calls fn for every channel; fn may destroy the channel it is given, but no other. */
void rc_channel_foreach(struct rc_channel_table *t, void (*fn)(void *arg, struct rc_channel *ch),
                        void *arg);

/*
 * Appends ev to the history, taking one worker use of it. When the history is full the oldest
 * event is dropped (and its use released), which advances `tail`.
 */
void rc_channel_append(struct rc_channel_table *t, struct rc_channel *ch, struct rc_event *ev);

/* The event with sequence number seq, which must lie in [tail, head). */
struct rc_event *rc_channel_at(const struct rc_channel *ch, uint64_t seq);

#endif
