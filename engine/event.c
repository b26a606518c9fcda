/*
 * Immutable, reference-counted events. See include/ringcast/event.h.
 */
#include "ringcast/event.h"

#include <stdlib.h>
#include <string.h>

#include "ringcast/assert.h"
#include "ringcast/channel.h"
#include "ringcast/sse.h"

struct rc_event *rc_event_new(const struct rc_event_spec *spec, uint64_t seq, unsigned nworkers)
{
    size_t sse_len = rc_sse_frame_size(spec->id, spec->id_len, spec->type, spec->type_len,
                                       spec->payload, spec->payload_len);
    size_t head = sizeof(struct rc_event) + nworkers * sizeof(uint32_t);
    struct rc_event *ev;
    char *p;

    rc_assert(spec->channel_len <= UINT16_MAX && nworkers <= UINT16_MAX);
    if (sse_len > UINT32_MAX)
        return NULL;
    ev = malloc(head + spec->channel_len + sse_len);
    if (!ev)
        return NULL;
    atomic_init(&ev->refs, nworkers + 1);
    atomic_init(&ev->pending, nworkers);
    atomic_init(&ev->handed, 0);
    ev->seq = seq;
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
    return ev;
}

void rc_event_put(struct rc_event *ev)
{
    unsigned prev = atomic_fetch_sub_explicit(&ev->refs, 1, memory_order_acq_rel);
    rc_assert(prev > 0);
    if (prev == 1)
        free(ev);
}
