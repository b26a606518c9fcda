/*
 * Hand-off benchmark: how the feed thread should pass events to the worker threads.
 *
 * One producer thread (the feed) hands N events to W consumer threads (the workers). Every
 * thread owns a ring it created itself (single issuer), as in the engine. Variants:
 *
 *   msg       one IORING_OP_MSG_RING per event per consumer, submitted every B events: what
 *             the engine does today.
 *   msg+ack   the same, and the consumer that sees an event last posts one ack message back to
 *             the producer (the engine's return path: the feed answers the publisher on it).
 *   msgbatch  one MSG_RING per B events per consumer, carrying a pointer to an array of event
 *             pointers that every consumer reads.
 *   spsc+efd  a lock-free single-producer single-consumer queue per consumer. The producer
 *             publishes its tail every B events and writes the consumer's eventfd only when the
 *             consumer has said it is about to sleep; the consumer sleeps in rc_ring_run() on a
 *             read of that eventfd.
 *   spsc+msg  the same queue with a MSG_RING as the doorbell, which needs no eventfd.
 *
 * At most WINDOW events are in flight per consumer, as the feed's max_pending bounds them: that
 * keeps every ring's completion queue from overflowing and lets events be reused in turn. In
 * msg+ack the producer waits for acks, as the feed does; in the other variants each consumer
 * publishes how far it got and wakes the producer, with the variant's doorbell, only when the
 * producer has said it sleeps for room.
 *
 * Two modes. Unpaced (as fast as the producer can go) measures throughput and CPU per event.
 * Paced (events due at a fixed rate, the producer sleeping in between as the feed waits for
 * publishers) measures CPU at that rate and the latency from the moment the producer creates an
 * event to the moment a consumer sees it, both read from CLOCK_MONOTONIC. Paced runs may also
 * linger: hold a flush back until its first event is linger_us old or B events wait, trading
 * latency for fewer wake-ups. The CPU of the pacing sleeps themselves is left out.
 *
 * Build standalone from the repository root:
 *   gcc -O2 -std=gnu11 -D_GNU_SOURCE -Iinclude -DRC_VERSION='"bench"' bench/handoff.c \
 *       engine/ring.c engine/log.c -luring -lpthread -o /tmp/handoff
 * Run: /tmp/handoff [-n events] [-p paced_events] [-r rate] [-R reps] [-w workers]...
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "ringcast/assert.h"
#include "ringcast/ring.h"

#define WINDOW      4096u /* events in flight per consumer: the feed's default max_pending */
#define MAX_WORKERS 16
#define MAX_REPS    9
#define MAX_WLIST   4
#define RING_SQ     1024u  /* the feed's size; holds one flush of 256 events to 4 workers */
#define RING_CQ     16384u /* more than WINDOW events, acks and doorbells can fill */
#define WAIT_MS     100    /* longest sleep before a thread re-checks failure and deadline */
#define PACED_SLACK 1000ul /* producer timer slack in ns, so paced events arrive one by one */

/* Latency histogram: exact below 128 ns, then 64 buckets per power of two (1.6% precision). */
#define HIST_SUB     64
#define HIST_BUCKETS (2 * HIST_SUB + 57 * HIST_SUB)

enum variant { V_MSG, V_MSG_ACK, V_MSG_BATCH, V_SPSC_EFD, V_SPSC_MSG };

static const char *const variant_names[] = {"msg", "msg+ack", "msgbatch", "spsc+efd", "spsc+msg"};

struct config {
    enum variant v;
    unsigned batch;     /* B: events per flush at most */
    unsigned linger_us; /* paced: how long the first event of a flush may wait for company */
};

/* Unpaced: every variant at every batch size (msgbatch with B = 1 would be msg). */
static const struct config unpaced_configs[] = {
    {V_MSG, 1, 0},       {V_MSG, 16, 0},       {V_MSG, 256, 0},      {V_MSG_ACK, 1, 0},
    {V_MSG_ACK, 16, 0},  {V_MSG_ACK, 256, 0},  {V_MSG_BATCH, 16, 0}, {V_MSG_BATCH, 256, 0},
    {V_SPSC_EFD, 1, 0},  {V_SPSC_EFD, 16, 0},  {V_SPSC_EFD, 256, 0}, {V_SPSC_MSG, 1, 0},
    {V_SPSC_MSG, 16, 0}, {V_SPSC_MSG, 256, 0},
};

/*
 * Paced: events arrive one at a time, so without linger B only caps a catch-up burst. With
 * linger the producer holds a flush back up to 100 us: fewer wake-ups for some latency.
 */
static const struct config paced_configs[] = {
    {V_MSG, 16, 0},         {V_MSG_ACK, 16, 0},    {V_MSG_BATCH, 16, 0},
    {V_SPSC_EFD, 16, 0},    {V_SPSC_MSG, 16, 0},   {V_MSG, 16, 100},
    {V_MSG_BATCH, 16, 100}, {V_SPSC_EFD, 16, 100}, {V_SPSC_MSG, 16, 100},
};

#define N_UNPACED (sizeof(unpaced_configs) / sizeof(unpaced_configs[0]))
#define N_PACED   (sizeof(paced_configs) / sizeof(paced_configs[0]))

/* Events live on their own cache line, as separately allocated engine events do. */
struct bench_event {
    atomic_uint pending; /* consumers that have not seen it yet (msg+ack) */
    uint64_t seq;
    uint64_t stamp_ns; /* CLOCK_MONOTONIC at hand-off; 0 when unpaced */
} __attribute__((aligned(64)));

/* The payload of one msgbatch message: event pointers that every consumer reads. */
struct batch {
    unsigned count;
    struct bench_event *ev[];
};

struct bench;

/* One worker. Fields written by another thread sit on their own cache lines. */
struct consumer {
    _Alignas(64) _Atomic uint64_t tail; /* SPSC: events the producer has published */
    _Alignas(64) atomic_int sleeping;   /* set before blocking; cleared by whoever wakes it */
    _Alignas(64) _Atomic uint64_t done; /* events finished with (the SPSC queue's head) */
    /* The consumer's own; ring_fd and efd are fixed before the start barrier. */
    _Alignas(64) struct bench *b;
    struct rc_ring ring;
    int ring_fd;
    int efd;                    /* spsc+efd: the doorbell, -1 otherwise */
    uint64_t efd_buf;           /* where the eventfd read lands */
    struct bench_event **slots; /* SPSC: the queue, WINDOW entries */
    uint64_t seen;
    uint64_t next_seq; /* the sequence number expected next; events must arrive in order */
    uint64_t disorder; /* events that did not */
    uint64_t syscalls; /* io_uring_enter (rc_ring_run) and eventfd writes */
    uint64_t timeouts; /* waits that ended with nothing: a lost wake-up would show here */
    uint64_t cpu_ns;
    uint64_t end_ns;
    uint64_t hist[HIST_BUCKETS];
};

/* The feed. */
struct producer {
    _Alignas(64) atomic_int sleeping; /* set while it waits for room; cleared by its waker */
    _Alignas(64) struct rc_ring ring;
    int ring_fd;
    int efd; /* spsc+efd: the doorbell for room, -1 otherwise */
    uint64_t efd_buf;
    uint64_t next;      /* sequence number of the next event */
    uint64_t unflushed; /* events emitted since the last flush */
    uint64_t first_ns;  /* paced: stamp of the first of them */
    uint64_t min_done;  /* the least `done` of the consumers, as last read */
    uint64_t acked;     /* msg+ack: acks received */
    uint64_t nbatch;    /* msgbatch: batches started */
    struct batch *cur;  /* msgbatch: the batch being filled */
    uint64_t flushes;
    uint64_t syscalls;
    uint64_t timeouts;
    uint64_t cpu_ns;  /* excluding pace_ns */
    uint64_t pace_ns; /* CPU spent in the pacing sleeps, which stand for the publishers */
};

struct bench {
    enum variant v;
    unsigned batch;
    uint64_t linger_ns;
    unsigned nworkers;
    uint64_t events;
    uint64_t rate; /* events per second; 0 for as fast as possible */
    uint64_t t0_ns;
    uint64_t deadline_ns; /* a run still going then has failed */
    atomic_int failed;
    pthread_barrier_t ready;    /* every ring exists */
    pthread_barrier_t finished; /* nobody posts to a ring any more; rings may go */
    struct bench_event *pool;   /* WINDOW events, reused in turn */
    char *batches;              /* msgbatch: WINDOW batches of `batch` pointers */
    size_t batch_stride;
    struct producer prod;
    struct consumer cons[MAX_WORKERS];
};

/* What one run measured. Rates are per event; "per kev" is per thousand events. */
struct result {
    bool ok;
    double evps;     /* events per second delivered to every consumer */
    double prod_ns;  /* producer CPU per event */
    double cons_ns;  /* consumer CPU per event, per consumer */
    double cpu_ns;   /* every thread's CPU per event */
    double prod_sys; /* producer syscalls per kev */
    double cons_sys; /* syscalls per kev, per consumer */
    double flush;    /* events per flush */
    double p50_us;
    double p99_us;
    uint64_t disorder;
    uint64_t timeouts;
};

static uint64_t clock_ns(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static unsigned hist_bucket(uint64_t ns)
{
    if (ns < 2 * HIST_SUB)
        return (unsigned)ns;
    unsigned msb = 63u - (unsigned)__builtin_clzll(ns);
    return 2 * HIST_SUB + (msb - 7) * HIST_SUB + (unsigned)((ns >> (msb - 6)) - HIST_SUB);
}

/* The smallest value that falls in bucket i. */
static uint64_t hist_floor(unsigned i)
{
    if (i < 2 * HIST_SUB)
        return i;
    unsigned k = i - 2 * HIST_SUB;
    return (uint64_t)(HIST_SUB + k % HIST_SUB) << (1 + k / HIST_SUB);
}

static double hist_quantile(const uint64_t *h, uint64_t total, double q)
{
    double rank = q * (double)total;
    uint64_t want = (uint64_t)rank, seen = 0;
    if ((double)want < rank)
        want++;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += h[i];
        if (seen >= want && seen > 0)
            return (double)hist_floor(i);
    }
    return NAN;
}

/* Marks the run failed; every thread notices within WAIT_MS and finishes. */
static void fail(struct bench *b, const char *what, int err)
{
    if (atomic_exchange(&b->failed, 1) == 0)
        fprintf(stderr, "handoff: %s: %s\n", what, strerror(err));
}

static bool should_stop(struct bench *b)
{
    if (atomic_load_explicit(&b->failed, memory_order_relaxed))
        return true;
    if (clock_ns(CLOCK_MONOTONIC) > b->deadline_ns) {
        fail(b, "run exceeded its deadline", ETIMEDOUT);
        return true;
    }
    return false;
}

static void ring_eventfd(int efd, uint64_t *syscalls)
{
    uint64_t one = 1;
    ssize_t n = write(efd, &one, sizeof(one));
    /* The counter cannot overflow: its reader drains it after at most a few writes. */
    rc_assert(n == (ssize_t)sizeof(one));
    (*syscalls)++;
}

/* ---- consumers ---- */

static void consume(struct consumer *c, struct bench_event *ev)
{
    struct bench *b = c->b;
    if (ev->seq != c->next_seq)
        c->disorder++;
    c->next_seq = ev->seq + 1;
    if (ev->stamp_ns)
        c->hist[hist_bucket(clock_ns(CLOCK_MONOTONIC) - ev->stamp_ns)]++;
    c->seen++;
    /* Read everything first: once the last consumer lets go, the producer reuses the event. */
    if (b->v == V_MSG_ACK && atomic_fetch_sub_explicit(&ev->pending, 1, memory_order_acq_rel) == 1)
        rc_ring_msg(&c->ring, b->prod.ring_fd, rc_ud(ev, RC_OP_ACK, 0), 0,
                    rc_ud(ev, RC_OP_MSG_FAILED, 0));
}

static void consumer_cqe(void *arg, const struct rc_cqe *cqe)
{
    struct consumer *c = arg;
    void *ptr = rc_ud_ptr(cqe->ud);

    switch (rc_ud_op(cqe->ud)) {
    case RC_OP_EVENT:
        if (c->b->v == V_MSG_BATCH) {
            const struct batch *bt = ptr;
            for (unsigned i = 0; i < bt->count; i++)
                consume(c, bt->ev[i]);
        } else {
            consume(c, ptr);
        }
        break;
    case RC_OP_RECV: /* the eventfd doorbell rang: keep one read armed for the next sleep */
        if (cqe->res < 0)
            fail(c->b, "consumer eventfd read", -cqe->res);
        else
            rc_ring_read(&c->ring, c->efd, &c->efd_buf, sizeof(c->efd_buf),
                         rc_ud(c, RC_OP_RECV, 0));
        break;
    case RC_OP_IGNORE: /* a message doorbell: waking up was all it had to do */
        break;
    case RC_OP_MSG_FAILED:
        fail(c->b, "consumer could not post a message", -cqe->res);
        break;
    default:
        rc_assert(!"unexpected completion on a consumer ring");
    }
}

/*
 * Publishes how far the consumer got and, if the producer sleeps for room, wakes it. The fence
 * pairs with the producer's between setting `sleeping` and re-reading `done`: one of the two
 * threads sees the other's store, so a wake-up is never lost.
 */
static void report_done(struct consumer *c, uint64_t done)
{
    struct producer *p = &c->b->prod;
    atomic_store_explicit(&c->done, done, memory_order_release);
    atomic_thread_fence(memory_order_seq_cst);
    if (!atomic_load_explicit(&p->sleeping, memory_order_relaxed) ||
        !atomic_exchange_explicit(&p->sleeping, 0, memory_order_relaxed))
        return;
    if (c->b->v == V_SPSC_EFD)
        ring_eventfd(p->efd, &c->syscalls);
    else
        rc_ring_msg(&c->ring, p->ring_fd, rc_ud(NULL, RC_OP_IGNORE, 0), 0,
                    rc_ud(c, RC_OP_MSG_FAILED, 0));
}

/* Submits what the consumer queued (acks, a doorbell) when no wait is coming to carry it. */
static void consumer_submit(struct consumer *c)
{
    int ret = rc_ring_submit(&c->ring);
    c->syscalls++;
    if (ret < 0)
        fail(c->b, "consumer submit", -ret);
}

/* msg, msg+ack, msgbatch: every event arrives as a completion. */
static void consume_messages(struct consumer *c)
{
    struct bench *b = c->b;
    while (c->seen < b->events && !should_stop(b)) {
        int n = rc_ring_run(&c->ring, WAIT_MS, consumer_cqe, c);
        c->syscalls++;
        c->timeouts += n == 0;
        if (n < 0) {
            fail(b, "consumer rc_ring_run", -n);
            break;
        }
        if (n > 0 && b->v != V_MSG_ACK)
            report_done(c, c->seen);
    }
    c->end_ns = clock_ns(CLOCK_MONOTONIC);
    if (c->ring.queued > 0)
        consumer_submit(c);
}

/*
 * spsc+efd, spsc+msg: drain the queue without a syscall while it has events; before sleeping,
 * say so and look once more, so the producer rings only for a consumer that may be asleep.
 */
static void consume_queue(struct consumer *c)
{
    struct bench *b = c->b;
    uint64_t head = 0;

    while (head < b->events) {
        uint64_t tail = atomic_load_explicit(&c->tail, memory_order_acquire);
        if (tail != head) {
            for (; head != tail; head++)
                consume(c, c->slots[head & (WINDOW - 1)]);
            report_done(c, head);
            /* An eventfd read re-armed by a wake-up waits for the next sleep to be submitted. */
            if (b->v == V_SPSC_MSG && c->ring.queued > 0)
                consumer_submit(c);
            continue;
        }
        atomic_store_explicit(&c->sleeping, 1, memory_order_relaxed);
        atomic_thread_fence(memory_order_seq_cst);
        if (atomic_load_explicit(&c->tail, memory_order_relaxed) != head) {
            atomic_store_explicit(&c->sleeping, 0, memory_order_relaxed);
            continue;
        }
        int n = rc_ring_run(&c->ring, WAIT_MS, consumer_cqe, c);
        c->syscalls++;
        c->timeouts += n == 0;
        atomic_store_explicit(&c->sleeping, 0, memory_order_relaxed);
        if (n < 0) {
            fail(b, "consumer rc_ring_run", -n);
            break;
        }
        if (should_stop(b))
            break;
    }
    c->end_ns = clock_ns(CLOCK_MONOTONIC);
}

static void *consumer_main(void *arg)
{
    struct consumer *c = arg;
    struct bench *b = c->b;

    int ret = rc_ring_init(&c->ring, RING_SQ, RING_CQ, 0);
    if (ret < 0) {
        fail(b, "consumer rc_ring_init", -ret);
    } else {
        c->ring_fd = rc_ring_fd(&c->ring);
        if (b->v == V_SPSC_EFD)
            rc_ring_read(&c->ring, c->efd, &c->efd_buf, sizeof(c->efd_buf),
                         rc_ud(c, RC_OP_RECV, 0));
    }
    pthread_barrier_wait(&b->ready);
    uint64_t cpu0 = clock_ns(CLOCK_THREAD_CPUTIME_ID);
    if (!atomic_load(&b->failed)) {
        if (b->v == V_SPSC_EFD || b->v == V_SPSC_MSG)
            consume_queue(c);
        else
            consume_messages(c);
    }
    c->cpu_ns = clock_ns(CLOCK_THREAD_CPUTIME_ID) - cpu0;
    pthread_barrier_wait(&b->finished);
    if (ret == 0)
        rc_ring_exit(&c->ring);
    return NULL;
}

/* ---- the producer ---- */

static void producer_cqe(void *arg, const struct rc_cqe *cqe)
{
    struct bench *b = arg;
    struct producer *p = &b->prod;

    switch (rc_ud_op(cqe->ud)) {
    case RC_OP_ACK:
        p->acked++;
        break;
    case RC_OP_RECV: /* the room doorbell rang (spsc+efd) */
        if (cqe->res < 0)
            fail(b, "producer eventfd read", -cqe->res);
        else
            rc_ring_read(&p->ring, p->efd, &p->efd_buf, sizeof(p->efd_buf),
                         rc_ud(p, RC_OP_RECV, 0));
        break;
    case RC_OP_IGNORE: /* a message doorbell */
        break;
    case RC_OP_MSG_FAILED:
        fail(b, "producer could not post a message", -cqe->res);
        break;
    default:
        rc_assert(!"unexpected completion on the producer ring");
    }
}

/*
 * Submits queued messages without waiting. Acks and doorbells are taken in when the producer
 * waits, as the feed takes them in on its next turn of the loop.
 */
static void producer_submit(struct bench *b)
{
    int ret = rc_ring_submit(&b->prod.ring);
    b->prod.syscalls++;
    if (ret < 0)
        fail(b, "producer submit", -ret);
}

static struct batch *batch_at(struct bench *b, uint64_t k)
{
    /*
     * Reusing batch k - WINDOW is safe: every batch holds at least one event, so its events are
     * at least WINDOW older than the first of batch k, and the window says they are done.
     */
    return (struct batch *)(b->batches + (k % WINDOW) * b->batch_stride);
}

/* SPSC: makes the flushed events visible, then rings for each consumer that may be asleep. */
static void publish_tails(struct bench *b)
{
    struct producer *p = &b->prod;
    for (unsigned w = 0; w < b->nworkers; w++)
        atomic_store_explicit(&b->cons[w].tail, p->next, memory_order_release);
    /* Pairs with the consumer's fence between setting `sleeping` and re-reading `tail`. */
    atomic_thread_fence(memory_order_seq_cst);
    for (unsigned w = 0; w < b->nworkers; w++) {
        struct consumer *c = &b->cons[w];
        if (!atomic_load_explicit(&c->sleeping, memory_order_relaxed) ||
            !atomic_exchange_explicit(&c->sleeping, 0, memory_order_relaxed))
            continue;
        if (b->v == V_SPSC_EFD)
            ring_eventfd(c->efd, &p->syscalls);
        else
            rc_ring_msg(&p->ring, c->ring_fd, rc_ud(NULL, RC_OP_IGNORE, 0), 0,
                        rc_ud(c, RC_OP_MSG_FAILED, 0));
    }
    if (b->v == V_SPSC_MSG && p->ring.queued > 0)
        producer_submit(b);
}

/* Hands the events emitted since the last flush to the consumers. */
static void flush(struct bench *b)
{
    struct producer *p = &b->prod;

    if (p->unflushed == 0)
        return;
    p->unflushed = 0;
    p->flushes++;
    switch (b->v) {
    case V_MSG:
    case V_MSG_ACK:
        producer_submit(b);
        break;
    case V_MSG_BATCH:
        for (unsigned w = 0; w < b->nworkers; w++)
            rc_ring_msg(&p->ring, b->cons[w].ring_fd, rc_ud(p->cur, RC_OP_EVENT, 0), 0,
                        rc_ud(p->cur, RC_OP_MSG_FAILED, (uint16_t)w));
        p->cur = batch_at(b, ++p->nbatch);
        p->cur->count = 0;
        producer_submit(b);
        break;
    case V_SPSC_EFD:
    case V_SPSC_MSG:
        publish_tails(b);
        break;
    }
}

/* Whether the next event may be emitted: its slot is free and no consumer is WINDOW behind. */
static bool has_room(struct bench *b)
{
    struct producer *p = &b->prod;

    if (b->v == V_MSG_ACK) {
        const struct bench_event *ev = &b->pool[p->next & (WINDOW - 1)];
        return p->next - p->acked < WINDOW &&
               atomic_load_explicit(&ev->pending, memory_order_acquire) == 0;
    }
    if (p->next - p->min_done < WINDOW)
        return true;
    uint64_t min = UINT64_MAX;
    for (unsigned w = 0; w < b->nworkers; w++) {
        uint64_t d = atomic_load_explicit(&b->cons[w].done, memory_order_acquire);
        if (d < min)
            min = d;
    }
    p->min_done = min;
    return p->next - min < WINDOW;
}

/* Sleeps until has_room(); in msg+ack the acks wake it, elsewhere a consumer's doorbell. */
static void wait_room(struct bench *b)
{
    struct producer *p = &b->prod;

    while (!has_room(b)) {
        /* Consumers must have everything emitted, or they could not make room. */
        flush(b);
        if (b->v != V_MSG_ACK) {
            atomic_store_explicit(&p->sleeping, 1, memory_order_relaxed);
            atomic_thread_fence(memory_order_seq_cst);
            if (has_room(b)) {
                atomic_store_explicit(&p->sleeping, 0, memory_order_relaxed);
                return;
            }
        }
        int n = rc_ring_run(&p->ring, WAIT_MS, producer_cqe, b);
        p->syscalls++;
        p->timeouts += n == 0;
        atomic_store_explicit(&p->sleeping, 0, memory_order_relaxed);
        if (n < 0)
            fail(b, "producer rc_ring_run", -n);
        if (should_stop(b))
            return;
    }
}

static void emit(struct bench *b)
{
    struct producer *p = &b->prod;
    struct bench_event *ev = &b->pool[p->next & (WINDOW - 1)];

    ev->seq = p->next;
    ev->stamp_ns = b->rate ? clock_ns(CLOCK_MONOTONIC) : 0;
    if (p->unflushed == 0)
        p->first_ns = ev->stamp_ns;
    if (b->v == V_MSG_ACK)
        atomic_store_explicit(&ev->pending, b->nworkers, memory_order_relaxed);
    switch (b->v) {
    case V_MSG:
    case V_MSG_ACK:
        for (unsigned w = 0; w < b->nworkers; w++)
            rc_ring_msg(&p->ring, b->cons[w].ring_fd, rc_ud(ev, RC_OP_EVENT, 0), 0,
                        rc_ud(ev, RC_OP_MSG_FAILED, (uint16_t)w));
        break;
    case V_MSG_BATCH:
        p->cur->ev[p->cur->count++] = ev;
        break;
    case V_SPSC_EFD:
    case V_SPSC_MSG:
        for (unsigned w = 0; w < b->nworkers; w++)
            b->cons[w].slots[p->next & (WINDOW - 1)] = ev;
        break;
    }
    p->next++;
    p->unflushed++;
}

static uint64_t due_ns(const struct bench *b, uint64_t seq)
{
    return b->t0_ns + seq * 1000000000u / b->rate;
}

/*
 * Paced: sleeps until the next event is due or the held-back flush must go, then says how many
 * events are due, as many as fit in the flush.
 */
static uint64_t due_events(struct bench *b)
{
    struct producer *p = &b->prod;
    uint64_t now = clock_ns(CLOCK_MONOTONIC), n = 0;
    uint64_t wake = due_ns(b, p->next);

    if (p->unflushed > 0 && p->first_ns + b->linger_ns < wake)
        wake = p->first_ns + b->linger_ns;
    if (wake > now) {
        struct timespec ts = {(time_t)(wake / 1000000000u), (long)(wake % 1000000000u)};
        /* A timer sleep costs ~20 us of CPU on this VM: it is the pacing's, not the hand-off's. */
        uint64_t cpu0 = clock_ns(CLOCK_THREAD_CPUTIME_ID);
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
        p->pace_ns += clock_ns(CLOCK_THREAD_CPUTIME_ID) - cpu0;
        now = clock_ns(CLOCK_MONOTONIC);
    }
    while (p->unflushed + n < b->batch && p->next + n < b->events && due_ns(b, p->next + n) <= now)
        n++;
    return n;
}

/* Whether the events emitted so far must go now rather than wait for more. */
static bool flush_due(struct bench *b)
{
    struct producer *p = &b->prod;
    return !b->rate || p->unflushed >= b->batch || p->next == b->events ||
           clock_ns(CLOCK_MONOTONIC) >= p->first_ns + b->linger_ns;
}

static void produce(struct bench *b)
{
    struct producer *p = &b->prod;

    while (p->next < b->events) {
        uint64_t n = b->rate ? due_events(b) : b->batch;
        if (n > b->events - p->next)
            n = b->events - p->next;
        for (uint64_t i = 0; i < n; i++) {
            wait_room(b);
            if (atomic_load(&b->failed))
                return;
            emit(b);
        }
        if (p->unflushed > 0 && flush_due(b))
            flush(b);
    }
    while (b->v == V_MSG_ACK && p->acked < b->events && !should_stop(b)) {
        int n = rc_ring_run(&p->ring, WAIT_MS, producer_cqe, b);
        p->syscalls++;
        p->timeouts += n == 0;
        if (n < 0)
            fail(b, "producer rc_ring_run", -n);
    }
    /* A message that failed after the last wait shows up only here. */
    int n = rc_ring_run(&p->ring, 0, producer_cqe, b);
    if (n < 0)
        fail(b, "producer rc_ring_run", -n);
}

static void *producer_main(void *arg)
{
    struct bench *b = arg;
    struct producer *p = &b->prod;

    int ret = rc_ring_init(&p->ring, RING_SQ, RING_CQ, 0);
    if (ret < 0) {
        fail(b, "producer rc_ring_init", -ret);
    } else {
        p->ring_fd = rc_ring_fd(&p->ring);
        if (!p->ring.features.msg_ring)
            fail(b, "IORING_OP_MSG_RING", EOPNOTSUPP);
        if (b->v == V_SPSC_EFD)
            rc_ring_read(&p->ring, p->efd, &p->efd_buf, sizeof(p->efd_buf),
                         rc_ud(p, RC_OP_RECV, 0));
    }
    /* The default 50 us slack would turn a paced stream into bursts of five. */
    if (b->rate)
        prctl(PR_SET_TIMERSLACK, PACED_SLACK, 0, 0, 0);
    pthread_barrier_wait(&b->ready);
    b->t0_ns = clock_ns(CLOCK_MONOTONIC);
    uint64_t cpu0 = clock_ns(CLOCK_THREAD_CPUTIME_ID);
    if (!atomic_load(&b->failed))
        produce(b);
    p->cpu_ns = clock_ns(CLOCK_THREAD_CPUTIME_ID) - cpu0 - p->pace_ns;
    pthread_barrier_wait(&b->finished);
    if (ret == 0)
        rc_ring_exit(&p->ring);
    return NULL;
}

/* ---- one run ---- */

static struct bench *bench_new(const struct config *cfg, unsigned nworkers, uint64_t events,
                               uint64_t rate)
{
    struct bench *b = aligned_alloc(64, sizeof(*b));
    if (!b)
        return NULL;
    memset(b, 0, sizeof(*b));
    b->v = cfg->v;
    b->batch = cfg->batch;
    b->linger_ns = (uint64_t)cfg->linger_us * 1000;
    b->nworkers = nworkers;
    b->events = events;
    b->rate = rate;
    b->prod.efd = -1;
    b->pool = aligned_alloc(64, WINDOW * sizeof(*b->pool));
    bool ok = b->pool != NULL;
    if (ok)
        memset(b->pool, 0, WINDOW * sizeof(*b->pool));
    if (ok && b->v == V_MSG_BATCH) {
        b->batch_stride = (sizeof(struct batch) + cfg->batch * sizeof(void *) + 63) & ~(size_t)63;
        b->batches = aligned_alloc(64, WINDOW * b->batch_stride);
        ok = b->batches != NULL;
        if (ok) {
            b->prod.cur = batch_at(b, 0);
            b->prod.cur->count = 0;
        }
    }
    if (ok && b->v == V_SPSC_EFD) {
        b->prod.efd = eventfd(0, EFD_CLOEXEC);
        ok = b->prod.efd >= 0;
    }
    for (unsigned w = 0; w < nworkers; w++) {
        struct consumer *c = &b->cons[w];
        c->b = b;
        c->efd = -1;
        if (ok && (b->v == V_SPSC_EFD || b->v == V_SPSC_MSG)) {
            c->slots = aligned_alloc(64, WINDOW * sizeof(*c->slots));
            ok = c->slots != NULL;
        }
        if (ok && b->v == V_SPSC_EFD) {
            c->efd = eventfd(0, EFD_CLOEXEC);
            ok = c->efd >= 0;
        }
    }
    pthread_barrier_init(&b->ready, NULL, nworkers + 1);
    pthread_barrier_init(&b->finished, NULL, nworkers + 1);
    if (!ok)
        fail(b, "setting up the run", ENOMEM);
    return b;
}

static void bench_free(struct bench *b)
{
    for (unsigned w = 0; w < b->nworkers; w++) {
        free(b->cons[w].slots);
        if (b->cons[w].efd >= 0)
            close(b->cons[w].efd);
    }
    if (b->prod.efd >= 0)
        close(b->prod.efd);
    pthread_barrier_destroy(&b->ready);
    pthread_barrier_destroy(&b->finished);
    free(b->batches);
    free(b->pool);
    free(b);
}

static struct result summarize(const struct bench *b)
{
    struct result r = {.ok = !atomic_load(&b->failed)};
    const struct producer *p = &b->prod;
    double n = (double)b->events, nw = n * b->nworkers;
    uint64_t end = 0, cons_cpu = 0, cons_sys = 0, hist[HIST_BUCKETS] = {0};

    for (unsigned w = 0; w < b->nworkers; w++) {
        const struct consumer *c = &b->cons[w];
        if (c->seen != b->events)
            r.ok = false;
        if (c->end_ns > end)
            end = c->end_ns;
        cons_cpu += c->cpu_ns;
        cons_sys += c->syscalls;
        r.disorder += c->disorder;
        r.timeouts += c->timeouts;
        for (unsigned i = 0; i < HIST_BUCKETS; i++)
            hist[i] += c->hist[i];
    }
    r.timeouts += p->timeouts;
    r.evps = n / ((double)(end - b->t0_ns) / 1e9);
    r.prod_ns = (double)p->cpu_ns / n;
    r.cons_ns = (double)cons_cpu / nw;
    r.cpu_ns = (double)(p->cpu_ns + cons_cpu) / n;
    r.prod_sys = (double)p->syscalls * 1000 / n;
    r.cons_sys = (double)cons_sys * 1000 / nw;
    r.flush = p->flushes ? n / (double)p->flushes : NAN;
    r.p50_us = b->rate ? hist_quantile(hist, b->events * b->nworkers, 0.50) / 1000 : NAN;
    r.p99_us = b->rate ? hist_quantile(hist, b->events * b->nworkers, 0.99) / 1000 : NAN;
    return r;
}

static struct result run_once(const struct config *cfg, unsigned nworkers, uint64_t events,
                              uint64_t rate)
{
    struct bench *b = bench_new(cfg, nworkers, events, rate);
    pthread_t threads[MAX_WORKERS + 1];
    struct result r = {.ok = false};

    if (!b) {
        fprintf(stderr, "handoff: out of memory\n");
        return r;
    }
    /* Generous: the slowest variant on a busy two-core machine needs a tenth of this. */
    uint64_t budget_s = rate ? 30 + 2 * events / rate : 120;
    b->deadline_ns = clock_ns(CLOCK_MONOTONIC) + budget_s * 1000000000u;
    for (unsigned w = 0; w < nworkers; w++)
        rc_assert(pthread_create(&threads[w], NULL, consumer_main, &b->cons[w]) == 0);
    rc_assert(pthread_create(&threads[nworkers], NULL, producer_main, b) == 0);
    for (unsigned i = 0; i <= nworkers; i++)
        pthread_join(threads[i], NULL);
    r = summarize(b);
    bench_free(b);
    return r;
}

/* ---- reporting ---- */

/* The metrics of struct result that are reported, by index into row.med[]. */
enum metric_id {
    M_EVPS,
    M_PROD_NS,
    M_CONS_NS,
    M_CPU_NS,
    M_PROD_SYS,
    M_CONS_SYS,
    M_FLUSH,
    M_P50,
    M_P99,
    N_METRICS
};

struct metric {
    const char *name; /* its JSON key */
    size_t off;
};

static const struct metric metrics[N_METRICS] = {
    [M_EVPS] = {"evps", offsetof(struct result, evps)},
    [M_PROD_NS] = {"prod_ns", offsetof(struct result, prod_ns)},
    [M_CONS_NS] = {"cons_ns", offsetof(struct result, cons_ns)},
    [M_CPU_NS] = {"cpu_ns", offsetof(struct result, cpu_ns)},
    [M_PROD_SYS] = {"prod_sys_per_kev", offsetof(struct result, prod_sys)},
    [M_CONS_SYS] = {"cons_sys_per_kev", offsetof(struct result, cons_sys)},
    [M_FLUSH] = {"ev_per_flush", offsetof(struct result, flush)},
    [M_P50] = {"p50_us", offsetof(struct result, p50_us)},
    [M_P99] = {"p99_us", offsetof(struct result, p99_us)},
};

static double field(const struct result *r, size_t off)
{
    return *(const double *)((const char *)r + off);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, unsigned n)
{
    if (n == 0)
        return NAN;
    qsort(v, n, sizeof(*v), cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* One line of a table: medians over the repetitions, ratios taken within each repetition. */
struct row {
    unsigned workers;
    bool paced;
    struct config cfg;
    unsigned runs; /* repetitions that completed */
    uint64_t disorder;
    uint64_t timeouts;
    double med[N_METRICS];
    double evps_ratio; /* to msg at the same B, in the same repetition */
    double cpu_ratio;
    double p99_ratio;
    double load[2]; /* the 1-minute load average when the series began and ended */
};

/* The metric's median over the completed repetitions of column i of res[reps][ncfg]. */
static double median_of(const struct result *res, unsigned reps, unsigned ncfg, unsigned i,
                        size_t off)
{
    double v[MAX_REPS];
    unsigned n = 0;
    for (unsigned k = 0; k < reps; k++) {
        const struct result *r = &res[k * ncfg + i];
        if (r->ok && !isnan(field(r, off)))
            v[n++] = field(r, off);
    }
    return median(v, n);
}

static double ratio_of(const struct result *res, unsigned reps, unsigned ncfg, unsigned i,
                       unsigned base, size_t off)
{
    double v[MAX_REPS];
    unsigned n = 0;
    for (unsigned k = 0; k < reps; k++) {
        const struct result *r = &res[k * ncfg + i], *q = &res[k * ncfg + base];
        if (r->ok && q->ok && field(q, off) > 0)
            v[n++] = field(r, off) / field(q, off);
    }
    return median(v, n);
}

/* msg with the same B and no linger: the engine's mechanism at that batching. */
static unsigned baseline(const struct config *cfgs, unsigned ncfg, unsigned i)
{
    for (unsigned j = 0; j < ncfg; j++)
        if (cfgs[j].v == V_MSG && cfgs[j].batch == cfgs[i].batch && cfgs[j].linger_us == 0)
            return j;
    return i;
}

static void make_rows(struct row *rows, const struct config *cfgs, unsigned ncfg,
                      const struct result *res, unsigned reps, unsigned workers, bool paced)
{
    for (unsigned i = 0; i < ncfg; i++) {
        struct row *w = &rows[i];
        unsigned base = baseline(cfgs, ncfg, i);
        memset(w, 0, sizeof(*w));
        w->workers = workers;
        w->paced = paced;
        w->cfg = cfgs[i];
        for (unsigned k = 0; k < reps; k++) {
            const struct result *r = &res[k * ncfg + i];
            w->runs += r->ok;
            w->disorder += r->disorder;
            w->timeouts += r->timeouts;
        }
        for (unsigned m = 0; m < N_METRICS; m++)
            w->med[m] = median_of(res, reps, ncfg, i, metrics[m].off);
        w->evps_ratio = ratio_of(res, reps, ncfg, i, base, offsetof(struct result, evps));
        w->cpu_ratio = ratio_of(res, reps, ncfg, i, base, offsetof(struct result, cpu_ns));
        w->p99_ratio = ratio_of(res, reps, ncfg, i, base, offsetof(struct result, p99_us));
    }
}

static void print_table(const struct row *rows, unsigned n, uint64_t events, uint64_t rate,
                        unsigned reps)
{
    if (!rows[0].paced) {
        printf("\nW=%u, %llu events as fast as possible, medians of %u runs; x = ratio to msg at "
               "the same B; load %.1f -> %.1f\n",
               rows[0].workers, (unsigned long long)events, reps, rows[0].load[0], rows[0].load[1]);
        printf("%-9s %4s %7s %6s %8s %8s %8s %6s %8s %8s %4s\n", "variant", "B", "Mev/s", "x",
               "prod ns", "cons ns", "cpu ns", "x", "prod sys", "cons sys", "ok");
        for (unsigned i = 0; i < n; i++) {
            const struct row *r = &rows[i];
            printf("%-9s %4u %7.3f %6.2f %8.0f %8.0f %8.0f %6.2f %8.1f %8.1f %2u/%u\n",
                   variant_names[r->cfg.v], r->cfg.batch, r->med[M_EVPS] / 1e6, r->evps_ratio,
                   r->med[M_PROD_NS], r->med[M_CONS_NS], r->med[M_CPU_NS], r->cpu_ratio,
                   r->med[M_PROD_SYS], r->med[M_CONS_SYS], r->runs, reps);
        }
    } else {
        printf("\nW=%u, %llu events paced at %llu/s, medians of %u runs; x = ratio to msg "
               "without linger; load %.1f -> %.1f\n",
               rows[0].workers, (unsigned long long)events, (unsigned long long)rate, reps,
               rows[0].load[0], rows[0].load[1]);
        printf("%-9s %4s %6s %6s %7s %7s %6s %8s %8s %8s %6s %8s %8s %4s\n", "variant", "B",
               "linger", "ev/fl", "p50 us", "p99 us", "x", "prod ns", "cons ns", "cpu ns", "x",
               "prod sys", "cons sys", "ok");
        for (unsigned i = 0; i < n; i++) {
            const struct row *r = &rows[i];
            printf("%-9s %4u %6u %6.2f %7.1f %7.1f %6.2f %8.0f %8.0f %8.0f %6.2f %8.1f %8.1f "
                   "%2u/%u\n",
                   variant_names[r->cfg.v], r->cfg.batch, r->cfg.linger_us, r->med[M_FLUSH],
                   r->med[M_P50], r->med[M_P99], r->p99_ratio, r->med[M_PROD_NS], r->med[M_CONS_NS],
                   r->med[M_CPU_NS], r->cpu_ratio, r->med[M_PROD_SYS], r->med[M_CONS_SYS], r->runs,
                   reps);
        }
    }
    for (unsigned i = 0; i < n; i++) {
        const struct row *r = &rows[i];
        if (r->disorder)
            printf("WARNING: %s B=%u linger=%u delivered %llu events out of order\n",
                   variant_names[r->cfg.v], r->cfg.batch, r->cfg.linger_us,
                   (unsigned long long)r->disorder);
        if (r->timeouts)
            printf("note: %s B=%u linger=%u: %llu waits of %d ms ended with nothing\n",
                   variant_names[r->cfg.v], r->cfg.batch, r->cfg.linger_us,
                   (unsigned long long)r->timeouts, WAIT_MS);
    }
}

/* JSON has no NaN: a metric that does not apply, or a run that failed, is null. */
static void json_number(const char *name, double v)
{
    if (isnan(v))
        printf(",\"%s\":null", name);
    else
        printf(",\"%s\":%.4g", name, v);
}

static void print_json(const struct row *rows, unsigned n, uint64_t events, uint64_t paced_events,
                       uint64_t rate, unsigned reps)
{
    struct utsname u;
    uname(&u);
    printf("{\"bench\":\"handoff\",\"kernel\":\"%s\",\"nproc\":%ld,\"events\":%llu,"
           "\"paced_events\":%llu,\"rate\":%llu,\"reps\":%u,\"window\":%u,\"rows\":[",
           u.release, sysconf(_SC_NPROCESSORS_ONLN), (unsigned long long)events,
           (unsigned long long)paced_events, (unsigned long long)rate, reps, WINDOW);
    for (unsigned i = 0; i < n; i++) {
        const struct row *r = &rows[i];
        printf("%s{\"workers\":%u,\"mode\":\"%s\",\"variant\":\"%s\",\"batch\":%u,"
               "\"linger_us\":%u,\"runs\":%u,\"disorder\":%llu,\"timeouts\":%llu",
               i ? "," : "", r->workers, r->paced ? "paced" : "unpaced", variant_names[r->cfg.v],
               r->cfg.batch, r->cfg.linger_us, r->runs, (unsigned long long)r->disorder,
               (unsigned long long)r->timeouts);
        for (unsigned m = 0; m < N_METRICS; m++)
            json_number(metrics[m].name, r->med[m]);
        json_number("evps_vs_msg", r->evps_ratio);
        json_number("cpu_vs_msg", r->cpu_ratio);
        json_number("p99_vs_msg", r->p99_ratio);
        json_number("load_start", r->load[0]);
        json_number("load_end", r->load[1]);
        printf("}");
    }
    printf("]}\n");
}

/* Runs every configuration once per repetition, repetitions outermost, so that the noise of a
 * shared machine falls on all variants alike; fills rows with the medians. */
static void run_series(struct row *rows, const struct config *cfgs, unsigned ncfg, unsigned workers,
                       uint64_t events, uint64_t rate, unsigned reps)
{
    struct result *res = calloc((size_t)reps * ncfg, sizeof(*res));
    double load[2] = {NAN, NAN};
    rc_assert(res != NULL);
    /* Other tenants' load is the main source of noise here; the report shows how much ran. */
    getloadavg(&load[0], 1);
    for (unsigned k = 0; k < reps; k++) {
        for (unsigned i = 0; i < ncfg; i++) {
            struct result *r = &res[k * ncfg + i];
            *r = run_once(&cfgs[i], workers, events, rate);
            fprintf(stderr,
                    "W=%u %s run %u/%u %-9s B=%-3u linger=%-3u %s %.3f Mev/s cpu %.0f ns/ev",
                    workers, rate ? "paced" : "unpaced", k + 1, reps, variant_names[cfgs[i].v],
                    cfgs[i].batch, cfgs[i].linger_us, r->ok ? "ok" : "FAILED", r->evps / 1e6,
                    r->cpu_ns);
            if (rate)
                fprintf(stderr, " p50 %.1f us p99 %.1f us", r->p50_us, r->p99_us);
            fprintf(stderr, "\n");
        }
    }
    getloadavg(&load[1], 1);
    make_rows(rows, cfgs, ncfg, res, reps, workers, rate != 0);
    for (unsigned i = 0; i < ncfg; i++)
        memcpy(rows[i].load, load, sizeof(load));
    free(res);
}

static void usage(void)
{
    fprintf(stderr, "usage: handoff [-n events] [-p paced_events] [-r rate] [-R reps] "
                    "[-w workers]...\n"
                    "  defaults: -n 2000000 -p 2000000 -r 100000 -R 3 -w 2 -w 4; -p 0 skips the "
                    "paced runs\n");
    exit(2);
}

int main(int argc, char **argv)
{
    uint64_t events = 2000000, paced_events = 2000000, rate = 100000;
    unsigned reps = 3, wlist[MAX_WLIST], nw = 0;
    int opt;

    while ((opt = getopt(argc, argv, "n:p:r:R:w:h")) != -1) {
        switch (opt) {
        case 'n':
            events = strtoull(optarg, NULL, 10);
            break;
        case 'p':
            paced_events = strtoull(optarg, NULL, 10);
            break;
        case 'r':
            rate = strtoull(optarg, NULL, 10);
            break;
        case 'R':
            reps = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 'w':
            if (nw == MAX_WLIST)
                usage();
            wlist[nw++] = (unsigned)strtoul(optarg, NULL, 10);
            break;
        default:
            usage();
        }
    }
    if (nw == 0) {
        wlist[nw++] = 2;
        wlist[nw++] = 4;
    }
    if (events == 0 || rate == 0 || reps == 0 || reps > MAX_REPS)
        usage();
    for (unsigned i = 0; i < nw; i++)
        if (wlist[i] == 0 || wlist[i] > MAX_WORKERS)
            usage();

    struct utsname u;
    uname(&u);
    printf("handoff: 1 producer, W consumers, window %u events per consumer; kernel %s, %ld "
           "CPUs online\n",
           WINDOW, u.release, sysconf(_SC_NPROCESSORS_ONLN));
    printf("ns = thread CPU per event (cons: per consumer), sys = io_uring_enter and eventfd "
           "writes per 1000 events (cons: per consumer)\n");

    struct row *rows = calloc((size_t)nw * (N_UNPACED + N_PACED), sizeof(*rows));
    unsigned nrows = 0;
    rc_assert(rows != NULL);
    for (unsigned i = 0; i < nw; i++) {
        run_series(&rows[nrows], unpaced_configs, N_UNPACED, wlist[i], events, 0, reps);
        print_table(&rows[nrows], N_UNPACED, events, 0, reps);
        nrows += N_UNPACED;
        if (paced_events) {
            run_series(&rows[nrows], paced_configs, N_PACED, wlist[i], paced_events, rate, reps);
            print_table(&rows[nrows], N_PACED, paced_events, rate, reps);
            nrows += N_PACED;
        }
        fflush(stdout);
    }
    printf("\n");
    print_json(rows, nrows, events, paced_events, rate, reps);
    free(rows);
    return 0;
}
