/*
 * A per-thread slab of fixed-size objects.
 *
 * Connections are allocated and freed at high rates and must stay compact, so each worker keeps
 * its own slab: chunks of objects carved from large allocations, a free list threaded through
 * the first pointer of free objects, no locks and no per-object header. A freed object keeps
 * every byte but its first eight, which lets callers keep a generation counter in it that
 * survives reuse.
 */
#ifndef RINGCAST_SLAB_H
#define RINGCAST_SLAB_H

#include <stddef.h>

struct rc_slab {
    size_t obj_size;              /* bytes per object, a multiple of 16 */
    size_t per_chunk;             /* objects per chunk */
    void *free_list;              /* first free object; each holds the next in its first 8 bytes */
    struct rc_slab_chunk *chunks; /* every chunk, owned here, freed by rc_slab_destroy() */
    size_t used;                  /* objects handed out and not yet freed */
    size_t capacity;              /* objects in all chunks */
};

/* Prepares a slab for objects of obj_size bytes (rounded up to 16), per_chunk at a time. */
void rc_slab_init(struct rc_slab *s, size_t obj_size, size_t per_chunk);

/* Frees every chunk; objects still in use become invalid. */
void rc_slab_destroy(struct rc_slab *s);

/*
 * Returns a 16-byte aligned object, or NULL when a new chunk cannot be allocated. A never-used
 * object is zeroed; a reused one holds what it held when freed, but for its first 8 bytes.
 */
void *rc_slab_alloc(struct rc_slab *s);

/* Returns an object to the slab. */
void rc_slab_free(struct rc_slab *s, void *obj);

/*
 * The index of an object: stable for the slab's life, below its capacity. It names a
 * connection to other threads without handing them a pointer. O(chunks).
 */
size_t rc_slab_index(const struct rc_slab *s, const void *obj);

/* The object at an index, free or not, or NULL when the index is beyond the capacity. */
void *rc_slab_at(const struct rc_slab *s, size_t index);

#endif
