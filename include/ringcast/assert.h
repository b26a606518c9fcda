/*
 * Always-on invariant checks.
 *
 * An invariant that fails means the engine's own state is wrong, and continuing would corrupt
 * other clients' streams; so the check stays in release builds and aborts with file:line.
 * Bad input from a peer is never an invariant: it is handled as an error where it arrives.
 */
#ifndef RINGCAST_ASSERT_H
#define RINGCAST_ASSERT_H

/* Prints "file:line: invariant failed: expr" to stderr and aborts. */
_Noreturn void rc_assert_fail(const char *expr, const char *file, int line);

#define rc_assert(expr)                                                                            \
    do {                                                                                           \
        if (__builtin_expect(!(expr), 0))                                                          \
            rc_assert_fail(#expr, __FILE__, __LINE__);                                             \
    } while (0)

#endif
