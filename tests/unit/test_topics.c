/*
 * Tests for the feed's channel index: topics live exactly as long as somebody listens on them,
 * a duplicate subscription changes nothing, both lists keep subscription order, and every
 * channel stays findable while the bucket array grows.
 */
#include "ringcast/topics.h"

#include <stdio.h>

#include "test.h"

/* An owner as the feed has one: something with the head of its list of subscriptions. */
struct owner {
    struct rc_link subs;
};

static int add(struct rc_topics *ix, struct owner *o, const char *name)
{
    return rc_topics_add(ix, &o->subs, o, name, strlen(name));
}

static struct rc_topic *find(const struct rc_topics *ix, const char *name)
{
    return rc_topics_find(ix, name, strlen(name));
}

/* Ends every subscription of o, as the feed does when a connection closes. */
static void remove_all(struct rc_topics *ix, struct owner *o)
{
    while (!rc_link_empty(&o->subs))
        rc_topics_remove(ix, rc_container_of(o->subs.next, struct rc_topic_sub, clink));
}

static size_t count(const struct rc_link *head)
{
    size_t n = 0;
    for (const struct rc_link *l = head->next; l != head; l = l->next)
        n++;
    return n;
}

TEST(empty_index)
{
    struct rc_topics ix = {0};

    CHECK(find(&ix, "a") == NULL);
    CHECK_EQ(ix.n, 0);
    rc_topics_free(&ix);
    CHECK(ix.buckets == NULL);
}

TEST(add_find_remove)
{
    struct rc_topics ix = {0};
    struct owner a;
    rc_link_init(&a.subs);

    CHECK_EQ(add(&ix, &a, "news"), 1);
    CHECK_EQ(ix.n, 1);
    struct rc_topic *t = find(&ix, "news");
    CHECK(t != NULL);
    CHECK_MEM(t->name, t->name_len, "news");
    struct rc_topic_sub *s = rc_topics_sub_find(t, &a);
    CHECK(s != NULL);
    CHECK(s->topic == t);
    CHECK(s->owner == &a);
    /* A prefix or an extension of the name is another channel. */
    CHECK(find(&ix, "new") == NULL);
    CHECK(find(&ix, "newsx") == NULL);

    /* Subscribing again changes nothing. */
    CHECK_EQ(add(&ix, &a, "news"), 0);
    CHECK_EQ(ix.n, 1);
    CHECK_EQ(count(&a.subs), 1);
    CHECK_EQ(count(&t->subs), 1);

    rc_topics_remove(&ix, s);
    CHECK_EQ(ix.n, 0);
    CHECK(find(&ix, "news") == NULL);
    CHECK(rc_link_empty(&a.subs));
    rc_topics_free(&ix);
}

TEST(topic_lives_while_somebody_listens)
{
    struct rc_topics ix = {0};
    struct owner o[3];
    for (int i = 0; i < 3; i++) {
        rc_link_init(&o[i].subs);
        CHECK_EQ(add(&ix, &o[i], "x"), 1);
    }
    struct rc_topic *t = find(&ix, "x");
    CHECK(t != NULL);
    CHECK_EQ(ix.n, 1);

    /* Listeners are walked in subscription order. */
    struct rc_link *l = t->subs.next;
    for (int i = 0; i < 3; i++, l = l->next)
        CHECK(rc_container_of(l, struct rc_topic_sub, tlink)->owner == &o[i]);
    CHECK(l == &t->subs);

    rc_topics_remove(&ix, rc_topics_sub_find(t, &o[1]));
    CHECK(find(&ix, "x") == t);
    CHECK(rc_topics_sub_find(t, &o[1]) == NULL);
    CHECK(rc_container_of(t->subs.next, struct rc_topic_sub, tlink)->owner == &o[0]);
    CHECK(rc_container_of(t->subs.prev, struct rc_topic_sub, tlink)->owner == &o[2]);

    remove_all(&ix, &o[0]);
    CHECK(find(&ix, "x") == t);
    remove_all(&ix, &o[2]);
    CHECK(find(&ix, "x") == NULL);
    CHECK_EQ(ix.n, 0);
    rc_topics_free(&ix);
}

TEST(owner_list_in_subscription_order)
{
    struct rc_topics ix = {0};
    struct owner a;
    const char *names[] = {"c1", "c2", "c3"};
    rc_link_init(&a.subs);

    for (int i = 0; i < 3; i++)
        CHECK_EQ(add(&ix, &a, names[i]), 1);
    CHECK_EQ(add(&ix, &a, "c2"), 0);
    struct rc_link *l = a.subs.next;
    for (int i = 0; i < 3; i++, l = l->next) {
        struct rc_topic *t = rc_container_of(l, struct rc_topic_sub, clink)->topic;
        CHECK_MEM(t->name, t->name_len, names[i]);
    }
    CHECK(l == &a.subs);
    remove_all(&ix, &a);
    CHECK_EQ(ix.n, 0);
    rc_topics_free(&ix);
}

TEST(grows_and_keeps_every_channel)
{
    enum { N = 1000 };
    struct rc_topics ix = {0};
    struct owner a, b;
    char name[16];
    rc_link_init(&a.subs);
    rc_link_init(&b.subs);

    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof(name), "ch.%d", i);
        CHECK_EQ(add(&ix, &a, name), 1);
        CHECK_EQ(add(&ix, &b, name), 1);
    }
    CHECK_EQ(ix.n, N);
    /* Buckets double from 64 to stay at least as many as topics. */
    CHECK_EQ(ix.mask, 1023);
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof(name), "ch.%d", i);
        struct rc_topic *t = find(&ix, name);
        CHECK(t != NULL);
        CHECK_MEM(t->name, t->name_len, name);
        CHECK_EQ(count(&t->subs), 2);
    }

    /* b still listens everywhere, so a leaving drops no topic. */
    remove_all(&ix, &a);
    CHECK_EQ(ix.n, N);
    CHECK(rc_topics_sub_find(find(&ix, "ch.500"), &a) == NULL);
    CHECK(rc_topics_sub_find(find(&ix, "ch.500"), &b) != NULL);
    remove_all(&ix, &b);
    CHECK_EQ(ix.n, 0);
    CHECK(find(&ix, "ch.0") == NULL);
    rc_topics_free(&ix);

    /* A freed index is empty and may be used again. */
    CHECK_EQ(add(&ix, &a, "again"), 1);
    CHECK(find(&ix, "again") != NULL);
    remove_all(&ix, &a);
    rc_topics_free(&ix);
}

TEST_MAIN()
