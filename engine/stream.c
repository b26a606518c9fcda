/*
 * Subscriptions, history positions and resume. See include/ringcast/conn.h.
 *
 * A connection on one channel keeps its position as that channel's sequence number (cursor):
 * what it has to send is the history after it. A connection on several channels, or one that
 * resumes from an event its worker has not received yet, keeps its position as an engine
 * sequence number instead: the events of all its channels are merged by that number, which is
 * publish order, and one id therefore marks a point in all of them.
 */
#include "ringcast/conn.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ringcast/assert.h"
#include "ringcast/server.h"

const char *rc_stream_gap_name(enum rc_gap gap)
{
    switch (gap) {
    case RC_GAP_TOO_OLD:
        return "too-old";
    case RC_GAP_RESTART:
        return "restart";
    case RC_GAP_UNKNOWN:
        return "unknown";
    default:
        return "none";
    }
}

/* Returns the channel with this name, creating it with its configured history limits. */
static struct rc_channel *get_channel(struct rc_worker *w, const char *name, size_t len,
                                      uint32_t hash)
{
    struct rc_channel *ch = rc_channel_find(&w->channels, name, len, hash);
    if (ch)
        return ch;
    struct rc_history_limits lim;
    rc_config_channel_history(w->cfg, name, len, &lim.size, &lim.ttl_ms, &lim.max_bytes);
    ch = rc_channel_create(&w->channels, name, len, hash, &lim);
    if (ch)
        rc_stat_add(w->stats.channels, 1);
    else
        rc_stat_add(w->stats.alloc_failures, 1);
    return ch;
}

/* Forgets a channel that has neither history nor subscribers. */
static void maybe_forget(struct rc_worker *w, struct rc_channel *ch)
{
    if (ch->nsubs == 0 && ch->head == ch->tail) {
        rc_channel_destroy(&w->channels, ch);
        rc_stat_add(w->stats.channels, -1);
    }
}

static bool all_digits(const char *p, size_t n, bool hex)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = p[i];
        if (!((ch >= '0' && ch <= '9') || (hex && ch >= 'a' && ch <= 'f')))
            return false;
    }
    return true;
}

/* Whether an event after engine seq `after` on one of the channels is no longer held. */
static bool missed_any(struct rc_worker *w, const struct rc_stream_request *sr, uint64_t after)
{
    for (unsigned i = 0; i < sr->n; i++) {
        size_t len = sr->name_lens[i];
        uint32_t hash = rc_channel_hash(sr->names[i], len);
        struct rc_channel *ch = rc_channel_find(&w->channels, sr->names[i], len, hash);
        if (ch ? ch->dropped_seq > after : rc_channel_forgotten(&w->channels, hash) > after)
            return true;
    }
    return false;
}

enum rc_gap rc_stream_resolve(struct rc_worker *w, const struct rc_stream_request *sr,
                              uint64_t *position, bool *resume)
{
    const char *id = sr->last_id, *instance = w->server->feed.instance;
    size_t n = sr->last_id_len, ilen = strlen(instance);

    *position = 0;
    *resume = id != NULL;
    if (!id)
        return RC_GAP_NONE;
    const char *dash = memchr(id, '-', n);
    if (dash && all_digits(id, (size_t)(dash - id), true) &&
        all_digits(dash + 1, n - (size_t)(dash - id) - 1, false)) {
        if ((size_t)(dash - id) != ilen || memcmp(id, instance, ilen) != 0)
            return RC_GAP_RESTART;
        uint64_t seq = 0;
        for (const char *p = dash + 1; p < id + n; p++) {
            if (seq > (UINT64_MAX - 9) / 10)
                return RC_GAP_UNKNOWN;
            seq = seq * 10 + (uint64_t)(*p - '0');
        }
        /* An id further ahead than the feed may have in flight was never handed out. */
        if (seq > w->last_seq + w->cfg->max_pending)
            return RC_GAP_UNKNOWN;
        *position = seq;
        return missed_any(w, sr, seq) ? RC_GAP_TOO_OLD : RC_GAP_NONE;
    }
    /* A publisher's own id (XPUBLISH ... ID): it is known while its event is in a window. */
    for (unsigned i = 0; i < sr->n; i++) {
        size_t len = sr->name_lens[i];
        struct rc_channel *ch =
            rc_channel_find(&w->channels, sr->names[i], len, rc_channel_hash(sr->names[i], len));
        uint64_t s = ch ? rc_channel_find_id(ch, id, n) : 0;
        if (ch && s < ch->head) {
            *position = rc_channel_at(ch, s)->seq;
            return missed_any(w, sr, *position) ? RC_GAP_TOO_OLD : RC_GAP_NONE;
        }
    }
    return RC_GAP_UNKNOWN;
}

/* Makes c a multi-channel connection at engine position `position`, with no channels yet. */
static int make_multi(struct rc_worker *w, struct rc_conn *c, uint32_t cap, uint64_t position)
{
    struct rc_multi *m = malloc(sizeof(*m) + cap * sizeof(m->sub[0]));
    if (!m)
        return -ENOMEM;
    m->n = 0;
    m->cap = cap;
    c->multi = m;
    c->flags |= F_MULTI;
    c->cursor = position;
    rc_link_insert_tail(&w->multis, &c->link);
    return 0;
}

/* Adds channel ch to a multi-channel connection; nothing before channel seq `from` is sent. */
static int add_sub(struct rc_conn *c, struct rc_channel *ch, uint64_t from)
{
    struct rc_multi *m = c->multi;
    if (m->n == m->cap) {
        uint32_t ncap = m->cap * 2;
        struct rc_multi *nm = realloc(m, sizeof(*m) + ncap * sizeof(m->sub[0]));
        if (!nm)
            return -ENOMEM;
        nm->cap = ncap;
        c->multi = m = nm;
    }
    struct rc_xsub *s = malloc(sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->chan = ch;
    s->conn = c;
    s->cursor = from;
    rc_link_insert_tail(&ch->xsubs, &s->link);
    ch->nsubs++;
    m->sub[m->n++] = s;
    return 0;
}

/* Removes subscription i of a multi-channel connection, keeping the others in order. */
static void remove_sub(struct rc_worker *w, struct rc_conn *c, uint32_t i)
{
    struct rc_multi *m = c->multi;
    struct rc_xsub *s = m->sub[i];
    rc_link_remove(&s->link);
    s->chan->nsubs--;
    maybe_forget(w, s->chan);
    free(s);
    memmove(&m->sub[i], &m->sub[i + 1], (m->n - i - 1) * sizeof(m->sub[0]));
    m->n--;
}

/* Subscribes c to its channels at the resolved position. Returns 0 or -ENOMEM. */
static int subscribe(struct rc_worker *w, struct rc_conn *c, const struct rc_stream_request *sr,
                     uint64_t position, bool resume)
{
    rc_assert(sr->n > 0);
    /* The common case, one channel from now or from an event this worker has, needs nothing
     * beyond the connection's own bytes. */
    if (sr->n == 1 && (!resume || position <= w->last_seq)) {
        size_t len = sr->name_lens[0];
        struct rc_channel *ch =
            get_channel(w, sr->names[0], len, rc_channel_hash(sr->names[0], len));
        if (!ch)
            return -ENOMEM;
        c->chan = ch;
        rc_link_insert_tail(&ch->subs, &c->link);
        ch->nsubs++;
        c->cursor = resume ? rc_channel_after(ch, position) : ch->head;
        rc_stat_add(w->stats.subscribers, 1);
        return 0;
    }
    if (make_multi(w, c, sr->n, resume ? position : w->last_seq) < 0)
        return -ENOMEM;
    rc_stat_add(w->stats.subscribers, 1);
    for (unsigned i = 0; i < sr->n; i++) {
        size_t len = sr->name_lens[i];
        struct rc_channel *ch =
            get_channel(w, sr->names[i], len, rc_channel_hash(sr->names[i], len));
        if (!ch || add_sub(c, ch, resume ? rc_channel_after(ch, position) : ch->head) < 0) {
            rc_stream_leave(w, c);
            return -ENOMEM;
        }
    }
    return 0;
}

int rc_stream_open(struct rc_worker *w, struct rc_conn *c, const struct rc_stream_request *sr,
                   uint64_t position, bool resume, enum rc_gap gap)
{
    if (subscribe(w, c, sr, position, resume) < 0)
        return -ENOMEM;
    if (resume)
        rc_stat_add(w->stats.resumes, 1);
    if (gap)
        rc_stat_add(w->stats.resume_gaps, 1);
    c->state = CONN_STREAMING;
    c->sent = 0;
    return 0;
}

void rc_stream_leave(struct rc_worker *w, struct rc_conn *c)
{
    if (c->flags & F_MULTI) {
        while (c->multi->n > 0)
            remove_sub(w, c, c->multi->n - 1);
        free(c->multi);
        c->flags &= (uint16_t)~F_MULTI;
        rc_link_remove(&c->link);
    } else {
        struct rc_channel *ch = c->chan;
        rc_link_remove(&c->link);
        ch->nsubs--;
        maybe_forget(w, ch);
    }
    c->chan = NULL;
    rc_stat_add(w->stats.subscribers, -1);
}

/*
 * Turns a one-channel connection into a multi-channel one at the same point: everything before
 * its next event counts as sent, which holds for an event in flight too, since the position
 * moves past it when it completes.
 */
static int to_multi(struct rc_worker *w, struct rc_conn *c)
{
    if (c->flags & F_MULTI)
        return 0;
    struct rc_channel *ch = c->chan;
    uint64_t cursor = c->cursor;
    uint64_t position = cursor < ch->head ? rc_channel_at(ch, cursor)->seq - 1 : w->last_seq;
    rc_link_remove(&c->link);
    ch->nsubs--;
    if (make_multi(w, c, 4, position) < 0) {
        c->chan = ch;
        rc_link_insert_tail(&ch->subs, &c->link);
        ch->nsubs++;
        return -ENOMEM;
    }
    /* Cannot fail: a new multi has room for four. */
    rc_assert(add_sub(c, ch, cursor) == 0);
    return 0;
}

/* The index of channel ch among c's subscriptions, or -1. */
static int find_sub(const struct rc_conn *c, const struct rc_channel *ch)
{
    if (!(c->flags & F_MULTI))
        return c->chan == ch ? 0 : -1;
    for (uint32_t i = 0; i < c->multi->n; i++)
        if (c->multi->sub[i]->chan == ch)
            return (int)i;
    return -1;
}

int rc_stream_add(struct rc_worker *w, struct rc_conn *c, const char *name, size_t len)
{
    uint32_t hash = rc_channel_hash(name, len);
    struct rc_channel *ch = rc_channel_find(&w->channels, name, len, hash);
    if (ch && find_sub(c, ch) >= 0)
        return -EEXIST;
    uint32_t count = (c->flags & F_MULTI) ? c->multi->n : 1;
    if (count >= w->cfg->max_channels_per_connection)
        return -E2BIG;
    if (to_multi(w, c) < 0 || !(ch = get_channel(w, name, len, hash)))
        return -ENOMEM;
    return add_sub(c, ch, ch->head);
}

int rc_stream_remove(struct rc_worker *w, struct rc_conn *c, const char *name, size_t len)
{
    struct rc_channel *ch = rc_channel_find(&w->channels, name, len, rc_channel_hash(name, len));
    if (!ch || find_sub(c, ch) < 0)
        return -ENOENT;
    if (to_multi(w, c) < 0)
        return -ENOMEM;
    remove_sub(w, c, (uint32_t)find_sub(c, ch));
    return 0;
}

const struct rc_channel *rc_stream_first(const struct rc_conn *c)
{
    if (!(c->flags & F_MULTI))
        return c->chan;
    return c->multi->n ? c->multi->sub[0]->chan : NULL;
}

const char *rc_stream_frame(const struct rc_conn *c, const struct rc_event *ev, uint32_t *len)
{
    if (!(c->flags & F_WS)) {
        *len = ev->sse_len;
        return ev->sse;
    }
    if (c->flags & F_ENVELOPE) {
        *len = ev->env_len;
        return (const char *)ev->env;
    }
    if ((c->flags & F_WS_ZSEND) && ev->wsz) {
        *len = ev->wsz_len;
        return (const char *)ev->wsz;
    }
    *len = ev->ws_len;
    return (const char *)ev->ws;
}

/* Moves a subscription's cursor past what its connection has sent (engine seq `position`). */
static uint64_t settle(struct rc_xsub *s, uint64_t position)
{
    const struct rc_channel *ch = s->chan;
    uint64_t h = s->cursor > ch->tail ? s->cursor : ch->tail;
    while (h < ch->head && rc_channel_at(ch, h)->seq <= position)
        h++;
    s->cursor = h;
    return h;
}

unsigned rc_stream_peek(struct rc_worker *w, struct rc_conn *c, struct rc_event **ev, unsigned max,
                        size_t max_bytes)
{
    unsigned n = 0;
    size_t bytes = 0;
    uint32_t len;

    (void)w;
    if (!(c->flags & F_MULTI)) {
        const struct rc_channel *ch = c->chan;
        rc_assert(c->cursor >= ch->tail);
        for (uint64_t s = c->cursor; s < ch->head && n < max && bytes < max_bytes; s++) {
            ev[n] = rc_channel_at(ch, s);
            rc_stream_frame(c, ev[n++], &len);
            bytes += len;
        }
        return n;
    }
    struct rc_multi *m = c->multi;
    uint64_t cur[m->n ? m->n : 1];
    for (uint32_t i = 0; i < m->n; i++)
        cur[i] = settle(m->sub[i], c->cursor);
    /* Merge the channels by engine seq, which is publish order. */
    while (n < max && bytes < max_bytes) {
        uint32_t best = UINT32_MAX;
        uint64_t best_seq = UINT64_MAX;
        for (uint32_t i = 0; i < m->n; i++) {
            const struct rc_channel *ch = m->sub[i]->chan;
            if (cur[i] < ch->head && rc_channel_at(ch, cur[i])->seq < best_seq) {
                best = i;
                best_seq = rc_channel_at(ch, cur[i])->seq;
            }
        }
        if (best == UINT32_MAX)
            break;
        ev[n] = rc_channel_at(m->sub[best]->chan, cur[best]++);
        rc_stream_frame(c, ev[n++], &len);
        bytes += len;
    }
    return n;
}

void rc_stream_sent(struct rc_conn *c, struct rc_event *ev)
{
    if (c->flags & F_MULTI)
        c->cursor = ev->seq;
    else
        c->cursor++;
}

bool rc_stream_lagging(const struct rc_worker *w, struct rc_conn *c)
{
    const struct rc_config *cfg = w->cfg;
    uint64_t events = 0, bytes = 0;

    if (!(c->flags & F_MULTI)) {
        const struct rc_channel *ch = c->chan;
        if (c->cursor < ch->tail)
            return true;
        events = ch->head - c->cursor;
        bytes = cfg->max_lag_bytes ? rc_channel_bytes_after(ch, c->cursor) : 0;
    } else {
        for (uint32_t i = 0; i < c->multi->n; i++) {
            struct rc_xsub *s = c->multi->sub[i];
            const struct rc_channel *ch = s->chan;
            /* Events this connection still needed have left the history. */
            if (s->cursor < ch->tail && ch->dropped_seq > c->cursor)
                return true;
            uint64_t h = settle(s, c->cursor);
            events += ch->head - h;
            if (cfg->max_lag_bytes)
                bytes += rc_channel_bytes_after(ch, h);
        }
    }
    return events > cfg->max_lag || (cfg->max_lag_bytes && bytes > cfg->max_lag_bytes);
}

/*
 * Cuts a slow consumer: an SSE stream ends (EventSource reconnects and resumes from its last
 * id); a WebSocket is closed with 1008 (policy violation).
 */
static void cut(struct rc_worker *w, struct rc_conn *c)
{
    rc_stat_add(w->stats.slow_disconnects, 1);
    if (c->flags & F_WS)
        rc_wsconn_close(w, c, RC_WS_CLOSE_POLICY, "too slow", 8);
    else
        rc_conn_close(w, c);
}

/* Wakes a subscriber of a channel that got an event; returns 1 if it was handed the event. */
static uint64_t wake(struct rc_worker *w, struct rc_conn *c)
{
    if (rc_stream_lagging(w, c)) {
        cut(w, c);
        return 0;
    }
    rc_conn_send_next(w, c);
    return 1;
}

uint64_t rc_stream_publish(struct rc_worker *w, struct rc_event *ev)
{
    uint64_t handed = 0;

    w->last_seq = ev->seq;
    struct rc_channel *ch = get_channel(w, ev->channel, ev->channel_len, ev->hash);
    if (!ch) {
        rc_event_put(ev);
        return 0;
    }
    rc_channel_append(&w->channels, ch, ev);
    /* The channel holds the event now, so no subscriber leaving can take the channel away. */
    for (struct rc_link *l = ch->subs.next, *next; l != &ch->subs; l = next) {
        next = l->next;
        handed += wake(w, rc_container_of(l, struct rc_conn, link));
    }
    for (struct rc_link *l = ch->xsubs.next, *next; l != &ch->xsubs; l = next) {
        next = l->next;
        handed += wake(w, rc_container_of(l, struct rc_xsub, link)->conn);
    }
    return handed;
}

struct foreach_ctx {
    struct rc_worker *w;
    void (*fn)(struct rc_worker *w, struct rc_conn *c);
};

static void foreach_channel(void *arg, struct rc_channel *ch)
{
    struct foreach_ctx *ctx = arg;
    struct rc_link *l = ch->subs.next;
    while (l != &ch->subs) {
        struct rc_conn *c = rc_container_of(l, struct rc_conn, link);
        l = l->next;
        /* The last subscriber leaving may take a channel without history with it. */
        bool last = l == &ch->subs;
        ctx->fn(ctx->w, c);
        if (last)
            break;
    }
}

void rc_stream_foreach(struct rc_worker *w, void (*fn)(struct rc_worker *w, struct rc_conn *c))
{
    struct foreach_ctx ctx = {w, fn};
    rc_channel_foreach(&w->channels, foreach_channel, &ctx);
    for (struct rc_link *l = w->multis.next, *next; l != &w->multis; l = next) {
        next = l->next;
        fn(w, rc_container_of(l, struct rc_conn, link));
    }
}

/*
 * Trims a channel's history to its time limit. A subscriber the trimming overtook has lost
 * events and is cut, as it would be by a publish.
 */
static void expire_channel(void *arg, struct rc_channel *ch)
{
    struct rc_worker *w = arg;
    uint64_t tail = ch->tail;
    rc_channel_expire(&w->channels, ch, w->now_ms);
    if (ch->tail != tail) {
        /* Counted as one more subscriber while it cuts, so no cut can forget it. */
        ch->nsubs++;
        for (struct rc_link *l = ch->xsubs.next, *next; l != &ch->xsubs; l = next) {
            next = l->next;
            struct rc_conn *c = rc_container_of(l, struct rc_xsub, link)->conn;
            if (rc_stream_lagging(w, c))
                cut(w, c);
        }
        for (struct rc_link *l = ch->subs.next, *next; l != &ch->subs; l = next) {
            next = l->next;
            struct rc_conn *c = rc_container_of(l, struct rc_conn, link);
            if (rc_stream_lagging(w, c))
                cut(w, c);
        }
        ch->nsubs--;
    }
    maybe_forget(w, ch);
}

void rc_stream_expire(struct rc_worker *w)
{
    rc_channel_foreach(&w->channels, expire_channel, w);
}
