/*
 * Events are encoded once, counted per worker without atomics, and freed when the last holder
 * lets go; channel histories hold a bounded window of them.
 */
#include <stdlib.h>

#include "ringcast/channel.h"
#include "ringcast/deflate.h"
#include "ringcast/event.h"
#include "ringcast/ws.h"
#include "test.h"

static struct rc_event *make(const char *channel, const char *payload, uint64_t seq, unsigned nw)
{
    char id[24];
    int n = snprintf(id, sizeof(id), "%llu", (unsigned long long)seq);
    struct rc_event_spec spec = {.channel = channel,
                                 .channel_len = strlen(channel),
                                 .id = id,
                                 .id_len = (size_t)n,
                                 .payload = payload,
                                 .payload_len = strlen(payload)};
    return rc_event_new(&spec, seq, nw);
}

TEST(event_holds_channel_and_encoded_frame)
{
    struct rc_event *ev = make("news", "a\nb", 7, 2);
    CHECK(ev != NULL);
    CHECK_MEM(ev->channel, ev->channel_len, "news");
    CHECK_MEM(ev->sse, ev->sse_len, "id: 7\ndata: a\ndata: b\n\n");
    CHECK_MEM(rc_event_id(ev), ev->id_len, "7");
    CHECK_EQ(ev->payload_len, 3);
    /* The envelope frame: a text frame of "event <id> <channel>\n" and the payload. */
    CHECK_MEM(ev->env, ev->env_len,
              "\x81\x10"
              "event 7 news\na\nb");
    /* A final, unmasked text frame of 3 bytes; no compressed frame was asked for. */
    CHECK_MEM(ev->ws, ev->ws_len,
              "\x81\x03"
              "a\nb");
    CHECK(ev->wsz == NULL);
    CHECK_EQ(ev->wsz_len, 0);
    CHECK_EQ(ev->hash, rc_channel_hash("news", 4));
    CHECK_EQ(atomic_load(&ev->refs), 3);
    CHECK_EQ(atomic_load(&ev->pending), 2);
    rc_event_put(ev);
    rc_event_put(ev);
    rc_event_put(ev); /* the last put frees it; ASan reports a leak otherwise */
}

/* Builds a one-worker event and drops the feed's reference, leaving the worker's. */
static struct rc_event *make_ws(const char *payload, size_t len, enum rc_event_ws_kind kind,
                                bool compress)
{
    struct rc_event_spec spec = {.channel = "c",
                                 .channel_len = 1,
                                 .id = "1",
                                 .id_len = 1,
                                 .payload = payload,
                                 .payload_len = len,
                                 .ws_kind = kind,
                                 .compress = compress};
    struct rc_event *ev = rc_event_new(&spec, 1, 1);
    if (ev)
        rc_event_put(ev);
    return ev;
}

TEST(websocket_opcode_follows_the_payload_unless_the_publisher_chooses)
{
    struct rc_event *ev = make_ws("caf\xc3\xa9", 5, RC_EVENT_WS_AUTO, false);
    CHECK_MEM(ev->ws, ev->ws_len,
              "\x81\x05"
              "caf\xc3\xa9");
    rc_event_put(ev);
    /* A truncated code point is not text. */
    ev = make_ws("caf\xc3", 4, RC_EVENT_WS_AUTO, false);
    CHECK_MEM(ev->ws, ev->ws_len,
              "\x82\x04"
              "caf\xc3");
    rc_event_put(ev);
    ev = make_ws("text", 4, RC_EVENT_WS_BINARY, false);
    CHECK_MEM(ev->ws, ev->ws_len,
              "\x82\x04"
              "text");
    rc_event_put(ev);
    ev = make_ws("", 0, RC_EVENT_WS_TEXT, false);
    CHECK_EQ(ev->ws_len, 2);
    CHECK(memcmp(ev->ws, "\x81\x00", 2) == 0);
    rc_event_put(ev);
}

TEST(websocket_frame_lengths)
{
    static char big[70000];
    size_t sizes[] = {125, 126, 65535, 65536, 70000};
    memset(big, 'x', sizeof(big));
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        struct rc_event *ev = make_ws(big, sizes[i], RC_EVENT_WS_AUTO, false);
        size_t head = sizes[i] < 126 ? 2 : sizes[i] < 65536 ? 4 : 10;
        CHECK(ev != NULL);
        CHECK_EQ(ev->ws_len, head + sizes[i]);
        CHECK_EQ(ev->ws[0], 0x81);
        CHECK(memcmp(ev->ws + head, big, sizes[i]) == 0);
        /* The SSE frame is intact next to it. */
        CHECK(memcmp(ev->sse, "id: 1\ndata: xxx", 15) == 0);
        rc_event_put(ev);
    }
}

TEST(compressed_frame_inflates_to_the_payload)
{
    static char payload[4000];
    unsigned char out[sizeof(payload)];
    size_t out_len = 0;
    for (size_t i = 0; i < sizeof(payload); i++)
        payload[i] = (char)('a' + i % 7);
    struct rc_event *ev = make_ws(payload, sizeof(payload), RC_EVENT_WS_AUTO, true);
    CHECK(ev != NULL && ev->wsz != NULL);
    CHECK(ev->wsz_len < ev->ws_len);
    /* Text, final, RSV1: the first frame of a compressed message. */
    CHECK_EQ(ev->wsz[0], 0xc1);
    struct rc_ws_frame f;
    int h = rc_ws_parse_frame(ev->wsz, ev->wsz_len, &f);
    CHECK(h > 0);
    CHECK_EQ(f.payload_len, ev->wsz_len - (size_t)h);
    struct rc_inflater *inf = rc_inflater_new(15, true);
    CHECK(inf != NULL);
    CHECK_EQ(rc_inflate(inf, ev->wsz + h, f.payload_len, true, out, sizeof(out), &out_len), 0);
    rc_inflater_free(inf);
    CHECK_EQ(out_len, sizeof(payload));
    CHECK(memcmp(out, payload, sizeof(payload)) == 0);
    CHECK_MEM(ev->ws, 4, "\x81\x7e\x0f\xa0");
    rc_event_put(ev);
}

TEST(incompressible_payload_keeps_only_the_plain_frame)
{
    struct rc_event *ev = make_ws("\xff\xfe", 2, RC_EVENT_WS_AUTO, true);
    CHECK(ev != NULL);
    CHECK(ev->wsz == NULL);
    CHECK_MEM(ev->ws, ev->ws_len, "\x82\x02\xff\xfe");
    rc_event_put(ev);
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
    struct rc_history_limits lim = {.size = 5, .max_bytes = 1 << 20};
    CHECK_EQ(rc_channel_table_init(&t, 0), 0);
    struct rc_channel *ch = rc_channel_create(&t, "c", 1, rc_channel_hash("c", 1), &lim);
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
    /* The newest that left tells a resuming client whether it missed something. */
    CHECK_EQ(ch->dropped_seq, 14);
    rc_channel_destroy(&t, ch);
    CHECK_EQ(t.count, 0);
    CHECK_EQ(rc_channel_forgotten(&t, rc_channel_hash("c", 1)), 14);
    /* Created again, the channel remembers what its predecessor dropped. */
    ch = rc_channel_create(&t, "c", 1, rc_channel_hash("c", 1), &lim);
    CHECK_EQ(ch->dropped_seq, 14);
    rc_channel_table_destroy(&t);
}

TEST(history_drops_by_bytes_but_keeps_the_newest_event)
{
    struct rc_channel_table t;
    struct rc_history_limits lim = {.size = 100, .max_bytes = 10};
    CHECK_EQ(rc_channel_table_init(&t, 0), 0);
    struct rc_channel *ch = rc_channel_create(&t, "c", 1, rc_channel_hash("c", 1), &lim);
    for (int i = 1; i <= 6; i++) {
        struct rc_event *ev = make("c", "abcd", (uint64_t)i, 1);
        rc_event_put(ev);
        rc_channel_append(&t, ch, ev);
    }
    /* Two 4-byte payloads fit in 10 bytes; a third would not. */
    CHECK_EQ(ch->head - ch->tail, 2);
    CHECK_EQ(rc_channel_bytes_after(ch, ch->tail), 8);
    CHECK_EQ(rc_channel_bytes_after(ch, ch->head), 0);
    struct rc_event *big = make("c", "0123456789abcdef", 7, 1);
    rc_event_put(big);
    rc_channel_append(&t, ch, big);
    CHECK_EQ(ch->head - ch->tail, 1);
    CHECK(rc_channel_at(ch, ch->tail) == big);
    rc_channel_table_destroy(&t);
}

TEST(history_expires_by_age)
{
    struct rc_channel_table t;
    struct rc_history_limits lim = {.size = 100, .ttl_ms = 1000, .max_bytes = 1 << 20};
    CHECK_EQ(rc_channel_table_init(&t, 0), 0);
    struct rc_channel *ch = rc_channel_create(&t, "c", 1, rc_channel_hash("c", 1), &lim);
    for (int i = 1; i <= 3; i++) {
        struct rc_event *ev = make("c", "x", (uint64_t)i, 1);
        rc_event_put(ev);
        ev->time_ms = (uint64_t)i * 1000;
        rc_channel_append(&t, ch, ev);
    }
    rc_channel_expire(&t, ch, 2500);
    CHECK_EQ(ch->head - ch->tail, 2); /* published at 1000: over its 1 s at 2500 */
    rc_channel_expire(&t, ch, 4000);
    CHECK_EQ(ch->head - ch->tail, 0);
    CHECK_EQ(ch->dropped_seq, 3);
    rc_channel_table_destroy(&t);
}

TEST(resume_positions_are_found_by_engine_seq_and_by_id)
{
    struct rc_channel_table t;
    struct rc_history_limits lim = {.size = 8, .max_bytes = 1 << 20};
    CHECK_EQ(rc_channel_table_init(&t, 0), 0);
    struct rc_channel *ch = rc_channel_create(&t, "c", 1, rc_channel_hash("c", 1), &lim);
    /* Engine seqs 10, 20, ... 100 with gaps: other channels had the numbers between. */
    for (int i = 1; i <= 10; i++) {
        struct rc_event *ev = make("c", "x", (uint64_t)i * 10, 1);
        rc_event_put(ev);
        rc_channel_append(&t, ch, ev);
    }
    CHECK_EQ(ch->tail, 2); /* seqs 30..100 remain */
    CHECK_EQ(rc_channel_after(ch, 0), 2);
    CHECK_EQ(rc_channel_after(ch, 30), 3);
    CHECK_EQ(rc_channel_after(ch, 35), 3);
    CHECK_EQ(rc_channel_after(ch, 99), 9);
    CHECK_EQ(rc_channel_after(ch, 100), 10);
    CHECK_EQ(rc_channel_after(ch, 1000), 10);
    const struct rc_event *e5 = rc_channel_at(ch, 5);
    CHECK_EQ(rc_channel_find_id(ch, rc_event_id(e5), e5->id_len), 5);
    CHECK_EQ(rc_channel_find_id(ch, "nope", 4), ch->head);
    rc_channel_table_destroy(&t);
}

TEST(table_grows_and_finds_every_channel)
{
    struct rc_channel_table t;
    char name[32];
    struct rc_history_limits lim = {.size = 4, .max_bytes = 1 << 20};
    CHECK_EQ(rc_channel_table_init(&t, 0), 0);
    for (int i = 0; i < 5000; i++) {
        int n = snprintf(name, sizeof(name), "chan.%d", i);
        CHECK(rc_channel_create(&t, name, (size_t)n, rc_channel_hash(name, (size_t)n), &lim) !=
              NULL);
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
