/*
 * Immutable, reference-counted events. See include/ringcast/event.h.
 */
#include "ringcast/event.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ringcast/assert.h"
#include "ringcast/channel.h"
#include "ringcast/deflate.h"
#include "ringcast/sse.h"
#include "ringcast/utf8.h"
#include "ringcast/ws.h"

/* The window the shared compressed frames use: the largest, which every client accepts. */
#define DEFLATE_WINDOW_BITS 15

struct rc_event *rc_event_new(const struct rc_event_spec *spec, uint64_t seq, unsigned nworkers)
{
    size_t sse_len = rc_sse_frame_size(spec->id, spec->id_len, spec->type, spec->type_len,
                                       spec->payload, spec->payload_len);
    size_t head = sizeof(struct rc_event) + nworkers * sizeof(uint32_t);
    unsigned char ws_head[RC_WS_MAX_SERVER_HEADER], wsz_head[RC_WS_MAX_SERVER_HEADER];
    unsigned char *z = NULL;
    size_t z_len = 0, wsz_head_len = 0;
    int opcode = spec->ws_kind == RC_EVENT_WS_BINARY ? RC_WS_BINARY : RC_WS_TEXT;
    struct rc_event *ev;
    char *p;

    rc_assert(spec->channel_len <= UINT16_MAX && nworkers <= UINT16_MAX);
    if (spec->ws_kind == RC_EVENT_WS_AUTO && !rc_utf8_valid(spec->payload, spec->payload_len))
        opcode = RC_WS_BINARY;
    size_t ws_head_len = rc_ws_frame_header(ws_head, opcode, true, false, spec->payload_len);
    size_t ws_len = ws_head_len + spec->payload_len;
    /* The envelope: "event <id> <channel>[ <type>]\n" before the payload, in the same opcode. */
    size_t env_line =
        6 + spec->id_len + 1 + spec->channel_len + (spec->type ? 1 + spec->type_len : 0) + 1;
    unsigned char env_head[RC_WS_MAX_SERVER_HEADER];
    /* A text message must be UTF-8 as a whole, the publisher's id and type included. */
    int env_opcode = opcode;
    if (!rc_utf8_valid(spec->id, spec->id_len) ||
        (spec->type && !rc_utf8_valid(spec->type, spec->type_len)))
        env_opcode = RC_WS_BINARY;
    size_t env_head_len =
        rc_ws_frame_header(env_head, env_opcode, true, false, env_line + spec->payload_len);
    size_t env_len = env_head_len + env_line + spec->payload_len;
    if (sse_len > UINT32_MAX || env_len > UINT32_MAX || spec->id_len > UINT16_MAX)
        return NULL;
    if (spec->compress) {
        if (rc_deflate_message(spec->payload, spec->payload_len, &z, &z_len, DEFLATE_WINDOW_BITS) <
            0)
            return NULL;
        wsz_head_len = rc_ws_frame_header(wsz_head, opcode, true, true, z_len);
        if (wsz_head_len + z_len >= ws_len) {
            free(z);
            z = NULL;
            z_len = wsz_head_len = 0;
        }
    }
    ev = malloc(head + spec->channel_len + sse_len + ws_len + env_len + wsz_head_len + z_len);
    if (!ev) {
        free(z);
        return NULL;
    }
    atomic_init(&ev->refs, nworkers + 1);
    atomic_init(&ev->pending, nworkers);
    atomic_init(&ev->handed, 0);
    ev->seq = seq;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ev->time_ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
    ev->payload_len = (uint32_t)spec->payload_len;
    ev->id_len = (uint16_t)spec->id_len;
    ev->origin = NULL;
    ev->hash = rc_channel_hash(spec->channel, spec->channel_len);
    ev->channel_len = (uint16_t)spec->channel_len;
    ev->nworkers = (uint16_t)nworkers;
    ev->sse_len = (uint32_t)sse_len;
    memset(ev->wrefs, 0, nworkers * sizeof(uint32_t));
    p = (char *)ev + head;
    memcpy(p, spec->channel, spec->channel_len);
    ev->channel = p;
    p += spec->channel_len;
    rc_sse_encode(p, spec->id, spec->id_len, spec->type, spec->type_len, spec->payload,
                  spec->payload_len);
    ev->sse = p;
    p += sse_len;
    memcpy(p, ws_head, ws_head_len);
    memcpy(p + ws_head_len, spec->payload, spec->payload_len);
    ev->ws = (const unsigned char *)p;
    ev->ws_len = (uint32_t)ws_len;
    p += ws_len;
    ev->env = (const unsigned char *)p;
    ev->env_len = (uint32_t)env_len;
    memcpy(p, env_head, env_head_len);
    p += env_head_len;
    memcpy(p, "event ", 6);
    memcpy(p + 6, spec->id, spec->id_len);
    p += 6 + spec->id_len;
    *p++ = ' ';
    memcpy(p, spec->channel, spec->channel_len);
    p += spec->channel_len;
    if (spec->type) {
        *p++ = ' ';
        memcpy(p, spec->type, spec->type_len);
        p += spec->type_len;
    }
    *p++ = '\n';
    memcpy(p, spec->payload, spec->payload_len);
    p += spec->payload_len;
    ev->wsz = NULL;
    ev->wsz_len = 0;
    if (z) {
        memcpy(p, wsz_head, wsz_head_len);
        memcpy(p + wsz_head_len, z, z_len);
        ev->wsz = (const unsigned char *)p;
        ev->wsz_len = (uint32_t)(wsz_head_len + z_len);
        free(z);
    }
    return ev;
}

void rc_event_put(struct rc_event *ev)
{
    unsigned prev = atomic_fetch_sub_explicit(&ev->refs, 1, memory_order_acq_rel);
    rc_assert(prev > 0);
    if (prev == 1)
        free(ev);
}
