/*
 * The slab hands out aligned, distinct objects, reuses freed ones, and keeps every byte of a
 * freed object but its first eight (connections keep their generation there).
 */
#include <stdint.h>

#include "ringcast/slab.h"
#include "test.h"

TEST(objects_are_aligned_distinct_and_zeroed)
{
    struct rc_slab s;
    unsigned char *objs[100];
    rc_slab_init(&s, 40, 16);
    CHECK_EQ(s.obj_size, 48);
    for (int i = 0; i < 100; i++) {
        objs[i] = rc_slab_alloc(&s);
        CHECK(objs[i] != NULL);
        CHECK_EQ((uintptr_t)objs[i] % 16, 0);
        for (int b = 0; b < 48; b++)
            CHECK_EQ(objs[i][b], 0);
        for (int j = 0; j < i; j++)
            CHECK(objs[i] + 48 <= objs[j] || objs[j] + 48 <= objs[i]);
        objs[i][47] = (unsigned char)i;
    }
    CHECK_EQ(s.used, 100);
    CHECK_EQ(s.capacity, 112);
    rc_slab_destroy(&s);
}

TEST(freed_objects_are_reused_and_keep_their_tail)
{
    struct rc_slab s;
    rc_slab_init(&s, 64, 4);
    unsigned char *a = rc_slab_alloc(&s);
    memset(a, 0xab, 64);
    rc_slab_free(&s, a);
    CHECK_EQ(s.used, 0);
    unsigned char *b = rc_slab_alloc(&s);
    CHECK(a == b);
    for (int i = 0; i < 8; i++)
        CHECK_EQ(b[i], 0);
    for (int i = 8; i < 64; i++)
        CHECK_EQ(b[i], 0xab);
    rc_slab_destroy(&s);
}

TEST(many_cycles_do_not_grow_the_slab)
{
    struct rc_slab s;
    void *held[10];
    rc_slab_init(&s, 64, 8);
    for (int round = 0; round < 1000; round++) {
        for (int i = 0; i < 10; i++)
            held[i] = rc_slab_alloc(&s);
        for (int i = 0; i < 10; i++)
            rc_slab_free(&s, held[i]);
    }
    CHECK_EQ(s.capacity, 16);
    CHECK_EQ(s.used, 0);
    rc_slab_destroy(&s);
}

TEST(indexes_are_stable_and_map_back_to_their_object)
{
    struct rc_slab s;
    void *objs[50];
    rc_slab_init(&s, 64, 8);
    for (int i = 0; i < 50; i++)
        objs[i] = rc_slab_alloc(&s);
    /* New chunks are added as objects run out; indexes of older objects must not move. */
    for (int i = 0; i < 50; i++) {
        size_t idx = rc_slab_index(&s, objs[i]);
        CHECK(idx < s.capacity);
        CHECK(rc_slab_at(&s, idx) == objs[i]);
        for (int j = 0; j < i; j++)
            CHECK(rc_slab_index(&s, objs[j]) != idx);
    }
    size_t first = rc_slab_index(&s, objs[0]);
    for (int i = 0; i < 100; i++)
        rc_slab_alloc(&s);
    CHECK_EQ(rc_slab_index(&s, objs[0]), first);
    CHECK(rc_slab_at(&s, s.capacity) == NULL);
    CHECK(rc_slab_at(&s, (size_t)-1) == NULL);
    rc_slab_destroy(&s);
}

TEST_MAIN()
