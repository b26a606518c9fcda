/*
 * Tests for the SSE encoder: known answers, an exact frame size, and round trips through a
 * small reference decoder written from the WHATWG parsing algorithm ("Interpreting an event
 * stream"), so that what the browser would see is checked, not just the bytes we meant to write.
 */
#include "ringcast/sse.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "test.h"

/* A string literal as the (pointer, length) pair the encoder takes, NUL bytes included. */
#define S(lit) lit, sizeof(lit) - 1

/* A byte string owned by the decoder. */
struct bytes {
    char *ptr;
    size_t len;
};

/* One event as a browser's EventSource dispatches it. */
struct decoded_event {
    struct bytes type;          /* "message" when the stream named no type */
    struct bytes data;          /* the data lines joined with LF */
    struct bytes last_event_id; /* the lastEventId of the MessageEvent */
};

/*
 * The state of the WHATWG event stream interpreter. Every buffer has room for the whole stream,
 * since no field can be longer than that.
 */
struct decoder {
    struct bytes event_type, data, last_event_id_buffer, last_event_id;
    struct decoded_event *events;
    size_t num_events, max_events;
};

/* Replaces b's contents with s[0..n). */
static void bytes_set(struct bytes *b, const char *s, size_t n)
{
    memcpy(b->ptr, s, n);
    b->len = n;
}

/* Appends s[0..n) to b. */
static void bytes_append(struct bytes *b, const char *s, size_t n)
{
    memcpy(b->ptr + b->len, s, n);
    b->len += n;
}

/* A heap copy of s[0..n), so that a decoded event outlives the decoder's buffers. */
static struct bytes bytes_dup(const char *s, size_t n)
{
    struct bytes b = {malloc(n ? n : 1), n};

    memcpy(b.ptr, s, n);
    return b;
}

/* The "dispatch the event" steps: what an empty line in the stream does. */
static void dispatch(struct decoder *d)
{
    struct decoded_event *e;

    bytes_set(&d->last_event_id, d->last_event_id_buffer.ptr, d->last_event_id_buffer.len);
    if (d->data.len == 0) {
        d->event_type.len = 0;
        return;
    }
    if (d->data.ptr[d->data.len - 1] == '\n')
        d->data.len--;
    if (d->num_events < d->max_events) {
        e = &d->events[d->num_events];
        e->data = bytes_dup(d->data.ptr, d->data.len);
        e->type = d->event_type.len ? bytes_dup(d->event_type.ptr, d->event_type.len)
                                    : bytes_dup(S("message"));
        e->last_event_id = bytes_dup(d->last_event_id.ptr, d->last_event_id.len);
    }
    d->num_events++;
    d->data.len = 0;
    d->event_type.len = 0;
}

/* The "process the field" steps for one field name and value. */
static void process_field(struct decoder *d, const char *name, size_t name_len, const char *value,
                          size_t value_len)
{
    if (name_len == 5 && memcmp(name, "event", 5) == 0) {
        bytes_set(&d->event_type, value, value_len);
    } else if (name_len == 4 && memcmp(name, "data", 4) == 0) {
        bytes_append(&d->data, value, value_len);
        bytes_append(&d->data, "\n", 1);
    } else if (name_len == 2 && memcmp(name, "id", 2) == 0) {
        if (!memchr(value, '\0', value_len))
            bytes_set(&d->last_event_id_buffer, value, value_len);
    }
    /* "retry" only changes the reconnection time, and other fields are ignored. */
}

/* Interprets one line of the stream, without its line ending. */
static void process_line(struct decoder *d, const char *line, size_t len)
{
    const char *colon = memchr(line, ':', len);
    const char *value;
    size_t value_len;

    if (len == 0) {
        dispatch(d);
        return;
    }
    if (colon == line)
        return;
    if (!colon) {
        process_field(d, line, len, "", 0);
        return;
    }
    value = colon + 1;
    value_len = len - (size_t)(value - line);
    if (value_len > 0 && value[0] == ' ') {
        value++;
        value_len--;
    }
    process_field(d, line, (size_t)(colon - line), value, value_len);
}

/*
 * Decodes a whole stream into at most max_events events and returns how many the stream
 * dispatched. Lines end at CRLF, LF or CR; the bytes after the last line ending are an
 * unfinished line, which the end of the stream discards along with any undispatched event.
 */
static size_t decode(const char *s, size_t len, struct decoded_event *events, size_t max_events)
{
    struct decoder d = {.events = events, .max_events = max_events};
    struct bytes *buffers[] = {&d.event_type, &d.data, &d.last_event_id_buffer, &d.last_event_id};
    size_t start = 0;

    for (size_t i = 0; i < sizeof buffers / sizeof buffers[0]; i++)
        buffers[i]->ptr = malloc(len + 1);
    for (size_t i = 0; i < len; i++) {
        if (s[i] != '\r' && s[i] != '\n')
            continue;
        process_line(&d, s + start, i - start);
        if (s[i] == '\r' && i + 1 < len && s[i + 1] == '\n')
            i++;
        start = i + 1;
    }
    for (size_t i = 0; i < sizeof buffers / sizeof buffers[0]; i++)
        free(buffers[i]->ptr);
    return d.num_events;
}

/* Frees the buffers of events[0..n). */
static void free_events(struct decoded_event *events, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(events[i].type.ptr);
        free(events[i].data.ptr);
        free(events[i].last_event_id.ptr);
    }
}

/*
 * Encodes one event into a heap block of exactly rc_sse_frame_size() bytes, so that ASan
 * catches a write past the size, and checks that the encoder wrote exactly that many bytes.
 * Returns the block, which the caller frees, or NULL when the sizes disagree.
 */
static char *encode(const char *id, size_t id_len, const char *event, size_t event_len,
                    const char *data, size_t data_len, size_t *len)
{
    size_t size = rc_sse_frame_size(id, id_len, event, event_len, data, data_len);
    char *out = malloc(size);

    *len = rc_sse_encode(out, id, id_len, event, event_len, data, data_len);
    if (*len != size) {
        free(out);
        return NULL;
    }
    return out;
}

/* Whether encoding (id, event, data) gives exactly `expected`. */
static bool encodes_to(const char *id, const char *event, const char *data, size_t data_len,
                       const char *expected)
{
    size_t len;
    char *out = encode(id, strlen(id), event, event ? strlen(event) : 0, data, data_len, &len);
    bool ok = out && len == strlen(expected) && memcmp(out, expected, len) == 0;

    if (out && !ok)
        fprintf(stderr, "encoded as \"%.*s\"\n", (int)len, out);
    free(out);
    return ok;
}

TEST(known_encodings)
{
    CHECK(encodes_to("1", NULL, S("hello"), "id: 1\ndata: hello\n\n"));
    CHECK(encodes_to("42", "update", S("{\"a\":1}"), "id: 42\nevent: update\ndata: {\"a\":1}\n\n"));
    CHECK(encodes_to("7", "", S("x"), "id: 7\ndata: x\n\n"));
    CHECK(encodes_to("", NULL, S("x"), "id: \ndata: x\n\n"));
    CHECK(encodes_to("1", NULL, S(""), "id: 1\ndata: \n\n"));
    CHECK(encodes_to("1", NULL, S("a\nb"), "id: 1\ndata: a\ndata: b\n\n"));
    CHECK(encodes_to("1", NULL, S("a\r\nb"), "id: 1\ndata: a\ndata: b\n\n"));
    CHECK(encodes_to("1", NULL, S("a\rb"), "id: 1\ndata: a\ndata: b\n\n"));
    CHECK(encodes_to("1", NULL, S("a\n\nb"), "id: 1\ndata: a\ndata: \ndata: b\n\n"));
    CHECK(encodes_to("1", NULL, S("a\r\r\nb"), "id: 1\ndata: a\ndata: \ndata: b\n\n"));
    CHECK(encodes_to("1", NULL, S("a\n\rb"), "id: 1\ndata: a\ndata: \ndata: b\n\n"));
    CHECK(encodes_to("1", NULL, S("a\n"), "id: 1\ndata: a\ndata: \n\n"));
    CHECK(encodes_to("1", NULL, S("a\r"), "id: 1\ndata: a\ndata: \n\n"));
    CHECK(encodes_to("1", NULL, S("a\r\n"), "id: 1\ndata: a\ndata: \n\n"));
    CHECK(encodes_to("1", NULL, S("\n"), "id: 1\ndata: \ndata: \n\n"));
    CHECK(encodes_to("1", NULL, S("\r\n\r\n"), "id: 1\ndata: \ndata: \ndata: \n\n"));
    /* A leading space or colon in a line survives: the decoder strips only "data:" and one space.
     */
    CHECK(encodes_to("1", NULL, S(" x\n:y"), "id: 1\ndata:  x\ndata: :y\n\n"));
    CHECK(encodes_to(" a:b", " t", S("x"), "id:  a:b\nevent:  t\ndata: x\n\n"));
}

TEST(nul_bytes_in_data_are_data)
{
    size_t len;
    char *out = encode(S("1"), NULL, 0, S("a\0b\n\0"), &len);

    CHECK(out != NULL);
    CHECK_EQ(len, sizeof "id: 1\ndata: a\0b\ndata: \0\n\n" - 1);
    CHECK(memcmp(out, "id: 1\ndata: a\0b\ndata: \0\n\n", len) == 0);
    free(out);
}

TEST(field_valid)
{
    CHECK(rc_sse_field_valid(S("")));
    CHECK(rc_sse_field_valid(S("12345")));
    CHECK(rc_sse_field_valid(S(" spaces: and colons ")));
    CHECK(rc_sse_field_valid(S("caf\xc3\xa9\t\x7f\xff")));
    CHECK(!rc_sse_field_valid(S("a\nb")));
    CHECK(!rc_sse_field_valid(S("a\rb")));
    CHECK(!rc_sse_field_valid(S("a\0b")));
    CHECK(!rc_sse_field_valid(S("\n")));
    CHECK(!rc_sse_field_valid(S("ab\r")));
    /* Only the given range counts. */
    CHECK(rc_sse_field_valid("ab\n", 2));
}

TEST(reference_decoder_follows_whatwg)
{
    /*
     * Comments, a field without a colon, "data:" without a space, CR and CRLF line endings, an
     * id with a NUL (ignored), an event with no data (not dispatched, but its id sticks), an
     * unknown field, and an unfinished event at the end (discarded).
     */
    static const char stream[] = ": comment\n"
                                 "data\n"
                                 "data:x\r"
                                 "id: 5\r\n"
                                 "\n"
                                 "event: skipped\n"
                                 "id: 6\n"
                                 "\n"
                                 "id: 7\0\n"
                                 "event: e\n"
                                 "foo: bar\n"
                                 "data:  two\n"
                                 "\r"
                                 "data: lost\n";
    struct decoded_event ev[4];
    size_t n = decode(stream, sizeof stream - 1, ev, 4);

    CHECK_EQ(n, 2);
    CHECK_MEM(ev[0].type.ptr, ev[0].type.len, "message");
    CHECK_MEM(ev[0].data.ptr, ev[0].data.len, "\nx");
    CHECK_MEM(ev[0].last_event_id.ptr, ev[0].last_event_id.len, "5");
    CHECK_MEM(ev[1].type.ptr, ev[1].type.len, "e");
    CHECK_MEM(ev[1].data.ptr, ev[1].data.len, " two");
    CHECK_MEM(ev[1].last_event_id.ptr, ev[1].last_event_id.len, "6");
    free_events(ev, n);
}

/* A 64-bit linear congruential generator (Knuth's MMIX constants); returns its high 31 bits. */
static uint32_t lcg_next(uint64_t *state)
{
    *state = *state * 6364136223846793005u + 1442695040888963407u;
    return (uint32_t)(*state >> 33);
}

/*
 * Fills buf[0..len) with random bytes, mostly from `alphabet` (line endings, spaces and colons,
 * the bytes the format cares about) and otherwise any byte but those in `forbidden`.
 */
static void random_bytes(char *buf, size_t len, const char *forbidden, size_t forbidden_len,
                         uint64_t *rng)
{
    static const char alphabet[] = "\r\n \r\n:ab\r\n";

    for (size_t i = 0; i < len; i++) {
        do {
            uint32_t r = lcg_next(rng);

            buf[i] = r % 2 ? alphabet[(r >> 1) % (sizeof alphabet - 1)] : (char)(r >> 8);
        } while (memchr(forbidden, buf[i], forbidden_len));
    }
}

/* Rewrites s[0..len) in place with CRLF and lone CR turned into LF; returns the new length. */
static size_t normalize_newlines(char *s, size_t len)
{
    size_t o = 0;

    for (size_t i = 0; i < len; i++) {
        if (s[i] == '\r') {
            s[o++] = '\n';
            if (i + 1 < len && s[i + 1] == '\n')
                i++;
        } else {
            s[o++] = s[i];
        }
    }
    return o;
}

/* Events per random stream in the round trip test. */
#define STREAM_EVENTS 8

TEST(random_round_trips)
{
    static const char bad_field_bytes[] = {'\r', '\n', '\0'};
    uint64_t rng = 0x55e;

    for (int iter = 0; iter < 20000; iter++) {
        struct {
            char id[16], event[12], data[300];
            size_t id_len, event_len, data_len;
        } in[STREAM_EVENTS];
        struct decoded_event out[STREAM_EVENTS];
        char *stream = NULL;
        size_t stream_len = 0, n;

        for (int e = 0; e < STREAM_EVENTS; e++) {
            size_t frame_len;
            char *frame;

            in[e].id_len = lcg_next(&rng) % sizeof in[e].id;
            in[e].event_len = lcg_next(&rng) % 3 ? 0 : lcg_next(&rng) % sizeof in[e].event;
            /* Mostly short payloads, where the corner cases are, and sometimes long ones. */
            in[e].data_len = lcg_next(&rng) % (lcg_next(&rng) % 8 ? 12 : sizeof in[e].data);
            random_bytes(in[e].id, in[e].id_len, bad_field_bytes, 3, &rng);
            random_bytes(in[e].event, in[e].event_len, bad_field_bytes, 3, &rng);
            random_bytes(in[e].data, in[e].data_len, "", 0, &rng);
            CHECK(rc_sse_field_valid(in[e].id, in[e].id_len));
            CHECK(rc_sse_field_valid(in[e].event, in[e].event_len));

            frame = encode(in[e].id, in[e].id_len, in[e].event, in[e].event_len, in[e].data,
                           in[e].data_len, &frame_len);
            CHECK(frame != NULL);
            stream = realloc(stream, stream_len + frame_len);
            memcpy(stream + stream_len, frame, frame_len);
            stream_len += frame_len;
            free(frame);
        }

        n = decode(stream, stream_len, out, STREAM_EVENTS);
        free(stream);
        CHECK_EQ(n, STREAM_EVENTS);
        for (int e = 0; e < STREAM_EVENTS; e++) {
            size_t data_len = normalize_newlines(in[e].data, in[e].data_len);

            CHECK(out[e].data.len == data_len &&
                  memcmp(out[e].data.ptr, in[e].data, data_len) == 0);
            CHECK(out[e].last_event_id.len == in[e].id_len &&
                  memcmp(out[e].last_event_id.ptr, in[e].id, in[e].id_len) == 0);
            if (in[e].event_len)
                CHECK(out[e].type.len == in[e].event_len &&
                      memcmp(out[e].type.ptr, in[e].event, in[e].event_len) == 0);
            else
                CHECK_MEM(out[e].type.ptr, out[e].type.len, "message");
        }
        free_events(out, n);
    }
}

TEST(large_payload)
{
    size_t data_len = 1 << 20, len;
    char *data = malloc(data_len);
    uint64_t rng = 1;
    struct decoded_event ev;
    char *frame;

    random_bytes(data, data_len, "", 0, &rng);
    frame = encode(S("99"), S("big"), data, data_len, &len);
    CHECK(frame != NULL);
    CHECK_EQ(decode(frame, len, &ev, 1), 1);
    data_len = normalize_newlines(data, data_len);
    CHECK(ev.data.len == data_len && memcmp(ev.data.ptr, data, data_len) == 0);
    free_events(&ev, 1);
    free(frame);
    free(data);
}

TEST_MAIN()
