/*
 * The feed's channel index. See include/ringcast/topics.h.
 */
#include "ringcast/topics.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ringcast/assert.h"

static struct rc_topic *topic_find(const struct rc_topics *ix, const char *name, size_t len,
                                   uint32_t hash)
{
    if (!ix->buckets)
        return NULL;
    for (struct rc_topic *t = ix->buckets[hash & ix->mask]; t; t = t->hnext)
        if (t->hash == hash && t->name_len == len && memcmp(t->name, name, len) == 0)
            return t;
    return NULL;
}

/* Doubles the bucket array once topics outnumber buckets, so chains stay short. */
static int topics_grow(struct rc_topics *ix)
{
    uint32_t nb = ix->buckets ? (ix->mask + 1) * 2 : 64;
    struct rc_topic **b = calloc(nb, sizeof(*b));
    if (!b)
        return -ENOMEM;
    if (ix->buckets) {
        for (uint32_t i = 0; i <= ix->mask; i++) {
            struct rc_topic *t = ix->buckets[i];
            while (t) {
                struct rc_topic *next = t->hnext;
                t->hnext = b[t->hash & (nb - 1)];
                b[t->hash & (nb - 1)] = t;
                t = next;
            }
        }
        free(ix->buckets);
    }
    ix->buckets = b;
    ix->mask = nb - 1;
    return 0;
}

/* Returns the topic for a channel, creating it; NULL when memory is short. */
static struct rc_topic *topic_get(struct rc_topics *ix, const char *name, size_t len)
{
    uint32_t hash = rc_channel_hash(name, len);
    struct rc_topic *t = topic_find(ix, name, len, hash);
    if (t)
        return t;
    if ((!ix->buckets || ix->n > ix->mask) && topics_grow(ix) < 0)
        return NULL;
    t = malloc(sizeof(*t) + len);
    if (!t)
        return NULL;
    rc_link_init(&t->subs);
    t->hash = hash;
    t->name_len = (uint16_t)len;
    memcpy(t->name, name, len);
    t->hnext = ix->buckets[hash & ix->mask];
    ix->buckets[hash & ix->mask] = t;
    ix->n++;
    return t;
}

/* Frees a topic that nobody listens on any more. */
static void topic_drop(struct rc_topics *ix, struct rc_topic *t)
{
    rc_assert(rc_link_empty(&t->subs));
    struct rc_topic **p = &ix->buckets[t->hash & ix->mask];
    while (*p != t)
        p = &(*p)->hnext;
    *p = t->hnext;
    ix->n--;
    free(t);
}

struct rc_topic *rc_topics_find(const struct rc_topics *ix, const char *name, size_t len)
{
    return topic_find(ix, name, len, rc_channel_hash(name, len));
}

struct rc_topic_sub *rc_topics_sub_find(const struct rc_topic *t, const void *owner)
{
    for (struct rc_link *l = t->subs.next; l != &t->subs; l = l->next) {
        struct rc_topic_sub *s = rc_container_of(l, struct rc_topic_sub, tlink);
        if (s->owner == owner)
            return s;
    }
    return NULL;
}

int rc_topics_add(struct rc_topics *ix, struct rc_link *owned, void *owner, const char *name,
                  size_t len)
{
    struct rc_topic *t = topic_get(ix, name, len);
    if (!t)
        return -ENOMEM;
    if (rc_topics_sub_find(t, owner))
        return 0;
    struct rc_topic_sub *s = malloc(sizeof(*s));
    if (!s) {
        if (rc_link_empty(&t->subs))
            topic_drop(ix, t);
        return -ENOMEM;
    }
    s->topic = t;
    s->owner = owner;
    rc_link_insert_tail(&t->subs, &s->tlink);
    rc_link_insert_tail(owned, &s->clink);
    return 1;
}

void rc_topics_remove(struct rc_topics *ix, struct rc_topic_sub *s)
{
    rc_link_remove(&s->tlink);
    rc_link_remove(&s->clink);
    if (rc_link_empty(&s->topic->subs))
        topic_drop(ix, s->topic);
    free(s);
}

void rc_topics_free(struct rc_topics *ix)
{
    rc_assert(ix->n == 0);
    free(ix->buckets);
    ix->buckets = NULL;
}
