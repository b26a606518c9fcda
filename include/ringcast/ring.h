/*
 * The io_uring module: the only code that touches liburing.
 *
 * Each thread that does I/O owns one rc_ring (single issuer, deferred task running). Callers
 * queue operations with rc_ring_* functions and then call rc_ring_run(), which submits them,
 * waits, and hands every completion to a callback. An operation names its owner with a 64-bit
 * user_data built by rc_ud(): an object pointer, an operation tag in its low 4 bits (objects
 * are 16-byte aligned) and a 16-bit generation in its top bits, which lets a completion that
 * arrives for a reused object be recognised.
 */
#ifndef RINGCAST_RING_H
#define RINGCAST_RING_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "ringcast/assert.h"
#include "ringcast/compat.h"

/* Operation tags carried in user_data; one namespace for every ring in the process. */
enum rc_op {
    RC_OP_IGNORE = 0,    /* a completion nobody waits for (close, a failed fire-and-forget) */
    RC_OP_ACCEPT,        /* accept on a listening socket (the generation may name a slot) */
    RC_OP_RECV,          /* receive on a connection */
    RC_OP_SEND,          /* send on a connection */
    RC_OP_CLOSE,         /* shutdown of a connection before its close */
    RC_OP_EVENT,         /* message: an event for a worker (ptr is the rc_event) */
    RC_OP_ACK,           /* message: every worker has handed an event out (ptr is the rc_event) */
    RC_OP_STOP,          /* message: begin an orderly shutdown */
    RC_OP_MSG_FAILED,    /* source-side failure of a message; ptr is the message's object */
    RC_OP_UPSTREAM,      /* message: a client message for the feed (ptr is the rc_upstream) */
    RC_OP_UPSTREAM_DONE, /* message: the feed has pushed it; back to its worker */
    RC_OP_DIRECT,        /* message: a feed command for one connection (ptr is the rc_direct) */
    RC_OP_DIRECT_DONE,   /* message: the worker has applied it; back to the feed */
    RC_OP_COUNT
};

#define RC_UD_OP_BITS   4
#define RC_UD_OP_MASK   ((1ULL << RC_UD_OP_BITS) - 1)
#define RC_UD_GEN_SHIFT 48
#define RC_UD_PTR_MASK  (((1ULL << RC_UD_GEN_SHIFT) - 1) & ~RC_UD_OP_MASK)

/* Builds the user_data for an operation on ptr (16-byte aligned, user-space address). */
static inline uint64_t rc_ud(const void *ptr, enum rc_op op, uint16_t gen)
{
    uint64_t p = (uint64_t)(uintptr_t)ptr;
    rc_assert((p & ~RC_UD_PTR_MASK) == 0);
    return p | (uint64_t)op | ((uint64_t)gen << RC_UD_GEN_SHIFT);
}

static inline void *rc_ud_ptr(uint64_t ud)
{
    return (void *)(uintptr_t)(ud & RC_UD_PTR_MASK);
}

static inline enum rc_op rc_ud_op(uint64_t ud)
{
    return (enum rc_op)(ud & RC_UD_OP_MASK);
}

static inline uint16_t rc_ud_gen(uint64_t ud)
{
    return (uint16_t)(ud >> RC_UD_GEN_SHIFT);
}

/* What the running kernel supports, filled by rc_ring_init(). */
struct rc_ring_features {
    bool defer_taskrun; /* IORING_SETUP_DEFER_TASKRUN accepted */
    bool msg_ring;      /* IORING_OP_MSG_RING */
    bool send_zc;       /* IORING_OP_SEND_ZC */
    bool bundles;       /* IORING_FEAT_RECVSEND_BUNDLE */
};

struct rc_ring {
    struct io_uring uring;
    struct rc_ring_features features;
    unsigned queued; /* SQEs prepared and not yet submitted */
    /* The provided-buffer ring for receives, or NULL when none was set up. */
    struct io_uring_buf_ring *br;
    char *buf_base;     /* buf_count buffers of buf_size bytes, owned here */
    unsigned buf_count; /* a power of two */
    unsigned buf_size;
};

/* One completion as handed to the caller's callback. */
struct rc_cqe {
    uint64_t ud;
    int32_t res;
    uint32_t flags; /* IORING_CQE_F_* */
};

/*
 * Creates a ring with `entries` submission slots and `cq_entries` completion slots, owned by the
 * calling thread, and a sparse table of `files` direct descriptors (0 for none). Tries
 * SINGLE_ISSUER | DEFER_TASKRUN first and falls back, with a log line, on older kernels.
 * Returns 0 or a negative errno.
 */
int rc_ring_init(struct rc_ring *r, unsigned entries, unsigned cq_entries, unsigned files);

/* Frees the ring and its buffers. */
void rc_ring_exit(struct rc_ring *r);

/* The ring's file descriptor, the address other rings send messages to. */
int rc_ring_fd(const struct rc_ring *r);

/* Registers `count` (a power of two) receive buffers of `size` bytes as buffer group 0. */
int rc_ring_setup_buffers(struct rc_ring *r, unsigned count, unsigned size);

/* The bytes of provided buffer `bid`, as named in a receive completion's flags. */
char *rc_ring_buffer(const struct rc_ring *r, unsigned bid);

/* Gives provided buffer `bid` back to the kernel once its bytes have been consumed. */
void rc_ring_buffer_recycle(struct rc_ring *r, unsigned bid);

/* The buffer id a receive completion used, or -1 when it carries none. */
int rc_ring_cqe_buffer(const struct rc_cqe *cqe);

/* Multishot accept on a listening socket, straight into the direct descriptor table. */
void rc_ring_accept_direct(struct rc_ring *r, int listen_fd, uint64_t ud);

/*
 * One accept on a listening socket, straight into the direct descriptor table, that writes the
 * peer's address to addr (*addrlen bytes of room, updated to the address's length). addr and
 * addrlen must stay valid until the completion.
 */
void rc_ring_accept_direct_addr(struct rc_ring *r, int listen_fd, struct sockaddr *addr,
                                socklen_t *addrlen, uint64_t ud);

/* Multishot accept on a listening socket, producing ordinary descriptors. */
void rc_ring_accept(struct rc_ring *r, int listen_fd, uint64_t ud);

/* Multishot receive on direct descriptor `fd` into buffer group 0. */
void rc_ring_recv_multishot(struct rc_ring *r, unsigned fd, uint64_t ud);

/* One receive on an ordinary descriptor into buf. */
void rc_ring_recv(struct rc_ring *r, int fd, void *buf, unsigned len, uint64_t ud);

/* One read into buf on an ordinary descriptor (an eventfd, a pipe); recv needs a socket. */
void rc_ring_read(struct rc_ring *r, int fd, void *buf, unsigned len, uint64_t ud);

/* One send from buf; `fixed` says whether fd is a direct descriptor. */
void rc_ring_send(struct rc_ring *r, int fd, bool fixed, const void *buf, unsigned len,
                  uint64_t ud);

/* One sendmsg; msg and its iovec must stay valid until the completion. */
void rc_ring_sendmsg(struct rc_ring *r, int fd, bool fixed, const struct msghdr *msg, uint64_t ud);

/* shutdown(fd, how) on a direct descriptor; wakes its pending receive and send. */
void rc_ring_shutdown_direct(struct rc_ring *r, unsigned fd, int how, uint64_t ud);

/* Closes direct descriptor `fd`; the completion carries RC_OP_IGNORE. */
void rc_ring_close_direct(struct rc_ring *r, unsigned fd);

/* Closes an ordinary descriptor; the completion carries RC_OP_IGNORE. */
void rc_ring_close(struct rc_ring *r, int fd);

/* Cancels every request whose user_data equals ud. */
void rc_ring_cancel(struct rc_ring *r, uint64_t ud);

/*
 * Posts a completion (user_data `ud`, res `res`) to the ring whose fd is target_fd. Success
 * produces no completion here; a failure produces one with user_data `fail_ud`.
 */
void rc_ring_msg(struct rc_ring *r, int target_fd, uint64_t ud, int32_t res, uint64_t fail_ud);

/*
 * Submits what is queued without waiting. rc_ring_run(r, 0, ...) would do the same but arms a
 * kernel timer whenever nothing has completed, which costs far more (bench/handoff.md).
 */
int rc_ring_submit(struct rc_ring *r);

/*
 * Submits what is queued, waits up to timeout_ms (or until at least one completion), then calls
 * fn for every completion available. fn may queue new operations. Returns the number of
 * completions handled or a negative errno (never -ETIME or -EINTR, which are not failures).
 * fn may be NULL when completions only need to be consumed.
 */
int rc_ring_run(struct rc_ring *r, int timeout_ms, void (*fn)(void *arg, const struct rc_cqe *cqe),
                void *arg);

#endif
