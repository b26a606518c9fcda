/*
 * Per-thread slab of fixed-size objects. See include/ringcast/slab.h.
 */
#include "ringcast/slab.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ringcast/assert.h"

struct rc_slab_chunk {
    struct rc_slab_chunk *next;
    /* Keeps the objects that follow 16-byte aligned. */
    uint64_t pad;
    unsigned char objects[];
};

void rc_slab_init(struct rc_slab *s, size_t obj_size, size_t per_chunk)
{
    rc_assert(obj_size >= sizeof(void *) && per_chunk > 0);
    memset(s, 0, sizeof(*s));
    s->obj_size = (obj_size + 15) & ~(size_t)15;
    s->per_chunk = per_chunk;
}

void rc_slab_destroy(struct rc_slab *s)
{
    struct rc_slab_chunk *c = s->chunks;
    while (c) {
        struct rc_slab_chunk *next = c->next;
        free(c);
        c = next;
    }
    memset(s, 0, sizeof(*s));
}

/* Adds one chunk and threads its objects onto the free list, lowest address first. */
static int grow(struct rc_slab *s)
{
    struct rc_slab_chunk *c = calloc(1, sizeof(*c) + s->obj_size * s->per_chunk);
    if (!c)
        return -1;
    c->next = s->chunks;
    s->chunks = c;
    for (size_t i = s->per_chunk; i-- > 0;) {
        void *obj = c->objects + i * s->obj_size;
        *(void **)obj = s->free_list;
        s->free_list = obj;
    }
    s->capacity += s->per_chunk;
    return 0;
}

void *rc_slab_alloc(struct rc_slab *s)
{
    if (!s->free_list && grow(s) < 0)
        return NULL;
    void *obj = s->free_list;
    s->free_list = *(void **)obj;
    *(void **)obj = NULL;
    s->used++;
    return obj;
}

void rc_slab_free(struct rc_slab *s, void *obj)
{
    rc_assert(obj != NULL && s->used > 0);
    *(void **)obj = s->free_list;
    s->free_list = obj;
    s->used--;
}

/* Chunks are listed newest first; a chunk's ordinal counts from the oldest, so it never moves. */
size_t rc_slab_index(const struct rc_slab *s, const void *obj)
{
    size_t nchunks = s->capacity / s->per_chunk, pos = 0;
    const unsigned char *p = obj;
    for (const struct rc_slab_chunk *c = s->chunks; c; c = c->next, pos++) {
        if (p >= c->objects && p < c->objects + s->obj_size * s->per_chunk) {
            size_t off = (size_t)(p - c->objects);
            rc_assert(off % s->obj_size == 0);
            return (nchunks - 1 - pos) * s->per_chunk + off / s->obj_size;
        }
    }
    rc_assert(!"object is not from this slab");
    return 0;
}

void *rc_slab_at(const struct rc_slab *s, size_t index)
{
    size_t nchunks = s->capacity / s->per_chunk;
    size_t ordinal = index / s->per_chunk;
    if (ordinal >= nchunks)
        return NULL;
    const struct rc_slab_chunk *c = s->chunks;
    for (size_t pos = nchunks - 1 - ordinal; pos > 0; pos--)
        c = c->next;
    return (void *)(c->objects + (index % s->per_chunk) * s->obj_size);
}
