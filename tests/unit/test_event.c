/*
 * Events are encoded once, counted per worker without atomics, and freed when the last holder
 * lets go; channel histories hold a bounded window of them.
 */
#include <stdlib.h>

#include "ringcast/channel.h"
#include "ringcast/event.h"
#include "test.h"

static struct rc_event *make(const char *channel, const char *payload, uint64_t seq, unsigned nw)
{
    struct rc_event_spec spec = {channel, strlen(channel), "7", 1, NULL, 0,
                                 payload, strlen(payload)};
    return rc_event_new(&spec, seq, nw);
}

TEST(event_holds_channel_and_encoded_frame)
{
    struct rc_event *ev = make("news", "a\nb", 7, 2);
    CHECK(ev != NULL);
    CHECK_MEM(ev->channel, ev->channel_len, "news");
    CHECK_MEM(ev->sse, ev->sse_len, "id: 7\ndata: a\ndata: b\n\n");
    CHECK_EQ(ev->hash, rc_channel_hash("news", 4));
    CHECK_EQ(atomic_load(&ev->refs), 3);
    CHECK_EQ(atomic_load(&ev->pending), 2);
    rc_event_put(ev);
    rc_event_put(ev);
    rc_event_put(ev); /* the last put frees it; ASan reports a leak otherwise */
}

TEST(local_uses_give_up_the_worker_reference_once)
{
    struct rc_event *ev = make("c", "x", 1, 2);
    rc_event_put(ev); /* the feed's reference */
    rc_event_put(ev); /* worker 1 never used it */
    CHECK_EQ(atomic_load(&ev->refs), 1);
    rc_event_use(ev, 0);
    rc_event_use(ev, 0);
    rc_event_unuse(ev, 0);
    CHECK_EQ(atomic_load(&ev->refs), 1);
    CHECK_EQ(ev->wrefs[0], 1);
    rc_event_unuse(ev, 0); /* frees */
}

TEST(history_keeps_a_window_and_releases_what_falls_out)
{
    struct rc_channel_table t;
    struct rc_event *evs[20];
    CHECK_EQ(rc_channel_table_init(&t, 0, 5), 0);
    struct rc_channel *ch = rc_channel_create(&t, "c", 1, rc_channel_hash("c", 1));
    CHECK(ch != NULL);
    CHECK(rc_channel_find(&t, "c", 1, rc_channel_hash("c", 1)) == ch);
    CHECK(rc_channel_find(&t, "d", 1, rc_channel_hash("d", 1)) == NULL);
    for (int i = 0; i < 20; i++) {
        evs[i] = make("c", "x", (uint64_t)i, 1);
        rc_event_put(evs[i]); /* keep only the worker's reference, as a worker does */
        rc_channel_append(&t, ch, evs[i]);
        CHECK_EQ(ch->head, i + 1);
        CHECK_EQ(ch->head - ch->tail, i < 5 ? i + 1 : 5);
    }
    for (uint64_t s = ch->tail; s < ch->head; s++)
        CHECK(rc_channel_at(ch, s) == evs[s]);
    rc_channel_destroy(&t, ch);
    CHECK_EQ(t.count, 0);
    rc_channel_table_destroy(&t);
}

TEST(table_grows_and_finds_every_channel)
{
    struct rc_channel_table t;
    char name[32];
    CHECK_EQ(rc_channel_table_init(&t, 0, 4), 0);
    for (int i = 0; i < 5000; i++) {
        int n = snprintf(name, sizeof(name), "chan.%d", i);
        CHECK(rc_channel_create(&t, name, (size_t)n, rc_channel_hash(name, (size_t)n)) != NULL);
    }
    CHECK(t.mask + 1 >= 4096);
    for (int i = 0; i < 5000; i++) {
        int n = snprintf(name, sizeof(name), "chan.%d", i);
        struct rc_channel *ch =
            rc_channel_find(&t, name, (size_t)n, rc_channel_hash(name, (size_t)n));
        CHECK(ch != NULL);
        CHECK_MEM(ch->name, ch->name_len, name);
    }
    rc_channel_table_destroy(&t);
    CHECK(t.buckets == NULL);
}

TEST_MAIN()
