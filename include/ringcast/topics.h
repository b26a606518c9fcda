/*
 * The feed's channel index: which owners (feed connections) listen on which channel.
 *
 * A channel somebody listens on is a topic. Each subscription is one node linked from both
 * sides: the topic lists its listeners for pushing, and the owner lists its channels for
 * UNSUBSCRIBE and close. A topic has at most one node per owner, and owners are few (the
 * feed's max_connections), so walking a topic's list is how a duplicate subscription or a
 * removal finds its node.
 *
 * The index knows an owner only as an opaque pointer and the head of its list, so it depends on
 * nothing of the feed's connections and can be tested alone. What a first or last subscription
 * means to its owner (the feed's listener gauge and idle list) is the caller's business. One
 * thread uses an index; nothing here locks.
 */
#ifndef RINGCAST_TOPICS_H
#define RINGCAST_TOPICS_H

#include <stddef.h>
#include <stdint.h>

#include "ringcast/channel.h"

/* A channel that somebody listens on: one entry of the index, owned by it. */
struct rc_topic {
    struct rc_topic *hnext; /* next in the same hash bucket; owned by the index */
    struct rc_link subs;    /* struct rc_topic_sub.tlink, in subscription order; the index's */
    uint32_t hash;          /* rc_channel_hash() of the name */
    uint16_t name_len;
    char name[]; /* not NUL-terminated */
};

/* One owner's subscription to one topic, allocated and freed by the index. */
struct rc_topic_sub {
    struct rc_link tlink;   /* in the topic's subs */
    struct rc_link clink;   /* in the owner's list of its subscriptions */
    struct rc_topic *topic; /* not owned: the index frees it with its last subscription */
    void *owner;            /* not owned: the listener, never dereferenced by the index */
};

/* The index. A zeroed struct is an empty index. */
struct rc_topics {
    struct rc_topic **buckets; /* hash chains, owned with the topics on them; NULL until used */
    uint32_t mask;             /* buckets - 1 */
    uint32_t n;                /* topics in the index */
};

/* The topic of channel name[0..len), or NULL when nobody listens on it. */
struct rc_topic *rc_topics_find(const struct rc_topics *ix, const char *name, size_t len);

/* The subscription of `owner` to topic t, or NULL when it has none. */
struct rc_topic_sub *rc_topics_sub_find(const struct rc_topic *t, const void *owner);

/*
 * Subscribes owner to channel name[0..len) (at most 65535 bytes; the caller validates names),
 * creating its topic, and links the new node onto the tail of `owned`, the owner's list of its
 * subscriptions (through rc_topic_sub.clink). Returns 1 when it subscribed, 0 when owner was
 * subscribed already (nothing changes), or -ENOMEM (nothing changes either).
 */
int rc_topics_add(struct rc_topics *ix, struct rc_link *owned, void *owner, const char *name,
                  size_t len);

/*
 * Ends a subscription: unlinks it from its topic and its owner's list and frees it, with its
 * topic when nobody else listens on that. A name read from s->topic is gone afterwards.
 */
void rc_topics_remove(struct rc_topics *ix, struct rc_topic_sub *s);

/* Frees the buckets of an index that has no topic left, leaving it empty and reusable. */
void rc_topics_free(struct rc_topics *ix);

#endif
