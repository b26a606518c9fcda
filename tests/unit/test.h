/*
 * A minimal test harness: each TEST() registers itself, main() runs them all and prints one
 * line per test and a closing "N passed, N failed" line. A failed CHECK reports file:line and
 * ends that test; the other tests still run.
 */
#ifndef RINGCAST_TEST_H
#define RINGCAST_TEST_H

#include <stdio.h>
#include <string.h>

typedef void (*test_fn)(int *failed);

struct test_case {
    const char *name;
    test_fn fn;
    struct test_case *next;
};

extern struct test_case *test_list;

#define TEST(name)                                                                                 \
    static void test_##name(int *failed_);                                                         \
    static struct test_case test_case_##name = {#name, test_##name, NULL};                         \
    __attribute__((constructor)) static void register_##name(void)                                 \
    {                                                                                              \
        struct test_case **p = &test_list;                                                         \
        while (*p)                                                                                 \
            p = &(*p)->next;                                                                       \
        *p = &test_case_##name;                                                                    \
    }                                                                                              \
    static void test_##name(int *failed_)

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond);               \
            *failed_ = 1;                                                                          \
            return;                                                                                \
        }                                                                                          \
    } while (0)

#define CHECK_EQ(a, b)                                                                             \
    do {                                                                                           \
        long long a_ = (long long)(a), b_ = (long long)(b);                                        \
        if (a_ != b_) {                                                                            \
            fprintf(stderr, "%s:%d: %s == %s failed: %lld != %lld\n", __FILE__, __LINE__, #a, #b,  \
                    a_, b_);                                                                       \
            *failed_ = 1;                                                                          \
            return;                                                                                \
        }                                                                                          \
    } while (0)

/* Compares a byte range with a C string. */
#define CHECK_MEM(ptr, len, str)                                                                   \
    do {                                                                                           \
        size_t l_ = (len);                                                                         \
        if (l_ != strlen(str) || memcmp((ptr), (str), l_) != 0) {                                  \
            fprintf(stderr, "%s:%d: %s is \"%.*s\", expected \"%s\"\n", __FILE__, __LINE__, #ptr,  \
                    (int)l_, (const char *)(ptr), (str));                                          \
            *failed_ = 1;                                                                          \
            return;                                                                                \
        }                                                                                          \
    } while (0)

#define TEST_MAIN()                                                                                \
    struct test_case *test_list;                                                                   \
    int main(void)                                                                                 \
    {                                                                                              \
        int passed = 0, failed = 0;                                                                \
        for (struct test_case *t = test_list; t; t = t->next) {                                    \
            int f = 0;                                                                             \
            t->fn(&f);                                                                             \
            printf("%s %s\n", f ? "FAIL" : "ok  ", t->name);                                       \
            f ? failed++ : passed++;                                                               \
        }                                                                                          \
        printf("%d passed, %d failed\n", passed, failed);                                          \
        return failed ? 1 : 0;                                                                     \
    }

#endif
