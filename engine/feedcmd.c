/*
 * The feed's commands: PUBLISH, XPUBLISH, SEND, CLOSE, SUBSCRIBE, UNSUBSCRIBE, PING, INFO, QUIT
 * and COMMAND, their argument checks and their replies. See include/ringcast/feedconn.h.
 */
#include "ringcast/feedconn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ringcast/http.h"
#include "ringcast/server.h"
#include "ringcast/sse.h"
#include "ringcast/utf8.h"

#define MAX_TYPE_LEN 64
#define MAX_ID_LEN   128

static void reply_error(struct rc_feed *f, struct feed_conn *fc, const char *msg)
{
    rc_stat_add(f->stats.command_errors, 1);
    rc_feed_replyf(fc, "-ERR %s\r\n", msg);
}

static void reply_bulk(struct feed_conn *fc, const char *data, size_t n)
{
    rc_feed_replyf(fc, "$%zu\r\n", n);
    rc_feed_reply(fc, data, n);
    rc_feed_reply(fc, "\r\n", 2);
}

static bool arg_is(const struct rc_resp_arg *a, const char *word)
{
    return a->len == strlen(word) && strncasecmp(a->ptr, word, a->len) == 0;
}

/* Builds one event and posts it to every worker; the reply follows their acknowledgements. */
static void publish(struct rc_feed *f, struct feed_conn *fc, struct rc_event_spec *spec)
{
    struct rc_server *s = f->server;
    char id[48];

    if (!rc_http_channel_valid(spec->channel, spec->channel_len)) {
        reply_error(f, fc, "invalid channel name (1-128 bytes of A-Za-z0-9_.:@-)");
        return;
    }
    uint64_t seq = ++f->next_seq;
    if (!spec->id) {
        spec->id_len = (size_t)snprintf(id, sizeof(id), "%s-%lu", f->instance, (unsigned long)seq);
        spec->id = id;
    }
    /* Compressed here, once, so that no worker ever compresses for a subscriber. */
    spec->compress = f->cfg->ws_compression && spec->payload_len >= f->cfg->ws_compress_min_size;
    struct rc_event *ev = rc_event_new(spec, seq, s->nworkers);
    if (!ev || rc_feed_queue_pending(fc, ev, NULL) < 0) {
        free(ev);
        reply_error(f, fc, "out of memory");
        return;
    }
    ev->origin = fc;
    rc_stat_add(f->stats.published, 1);
    rc_stat_add(f->stats.pending, 1);
    for (unsigned i = 0; i < s->nworkers; i++)
        rc_ring_msg(&f->ring, rc_server_worker_ring(s, i), rc_ud(ev, RC_OP_EVENT, 0), 0,
                    rc_feed_msg_failed_ud(ev, RC_OP_EVENT));
}

static void cmd_publish(struct rc_feed *f, struct feed_conn *fc, const struct rc_resp_arg *argv,
                        size_t argc)
{
    struct rc_event_spec spec = {.channel = argv[1].ptr,
                                 .channel_len = argv[1].len,
                                 .payload = argv[2].ptr,
                                 .payload_len = argv[2].len};
    publish(f, fc, &spec);
}

/*
 * XPUBLISH channel payload [EVENT type] [ID id] [TEXT|BINARY]: options in any order, each at
 * most once. TEXT and BINARY choose the WebSocket opcode; without them a payload that is valid
 * UTF-8 goes as text. TEXT on a payload that is not UTF-8 is refused, since every client would
 * have to fail the connection on it (RFC 6455 section 8.1).
 */
static void cmd_xpublish(struct rc_feed *f, struct feed_conn *fc, const struct rc_resp_arg *argv,
                         size_t argc)
{
    struct rc_event_spec spec = {.channel = argv[1].ptr,
                                 .channel_len = argv[1].len,
                                 .payload = argv[2].ptr,
                                 .payload_len = argv[2].len};
    for (size_t i = 3; i < argc; i++) {
        const struct rc_resp_arg *v = i + 1 < argc ? &argv[i + 1] : NULL;
        if ((arg_is(&argv[i], "TEXT") || arg_is(&argv[i], "BINARY")) && !spec.ws_kind) {
            spec.ws_kind = arg_is(&argv[i], "TEXT") ? RC_EVENT_WS_TEXT : RC_EVENT_WS_BINARY;
        } else if (v && arg_is(&argv[i], "EVENT") && !spec.type && v->len >= 1 &&
                   v->len <= MAX_TYPE_LEN && rc_sse_field_valid(v->ptr, v->len)) {
            spec.type = v->ptr;
            spec.type_len = v->len;
            i++;
        } else if (v && arg_is(&argv[i], "ID") && !spec.id && v->len >= 1 && v->len <= MAX_ID_LEN &&
                   rc_sse_field_valid(v->ptr, v->len) && !memchr(v->ptr, ' ', v->len)) {
            /* No space: the envelope's header line separates the id from the channel by one. */
            spec.id = v->ptr;
            spec.id_len = v->len;
            i++;
        } else {
            reply_error(f, fc,
                        "XPUBLISH options are EVENT <1-64 bytes> and ID <1-128 bytes>, without "
                        "CR, LF or NUL (and no space in an ID), and TEXT or BINARY, each at most "
                        "once");
            return;
        }
    }
    if (spec.ws_kind == RC_EVENT_WS_TEXT && !rc_utf8_valid(spec.payload, spec.payload_len)) {
        reply_error(f, fc, "XPUBLISH TEXT needs a payload that is valid UTF-8");
        return;
    }
    publish(f, fc, &spec);
}

/*
 * Parses a connection id argument and checks that its worker exists; replies with the error
 * and returns false otherwise. A well-formed id whose connection is gone is not an error here:
 * only its worker can tell, and it answers 0.
 */
static bool conn_id_arg(struct rc_feed *f, struct feed_conn *fc, const struct rc_resp_arg *a,
                        struct rc_conn_id *id)
{
    if (rc_conn_id_parse(a->ptr, a->len, id) < 0) {
        reply_error(f, fc, "invalid connection id (expected <worker>.<index>.<generation>)");
        return false;
    }
    if (id->worker >= f->server->nworkers) {
        char msg[96];
        snprintf(msg, sizeof(msg), "invalid connection id: there is no worker %u",
                 (unsigned)id->worker);
        reply_error(f, fc, msg);
        return false;
    }
    return true;
}

/* Hands a SEND or CLOSE to the target connection's worker; the reply follows its answer. */
static void direct(struct rc_feed *f, struct feed_conn *fc, const struct rc_direct *spec,
                   const void *data)
{
    struct rc_direct *d = malloc(sizeof(*d) + spec->len);
    if (!d || rc_feed_queue_pending(fc, NULL, d) < 0) {
        free(d);
        reply_error(f, fc, "out of memory");
        return;
    }
    *d = *spec;
    d->origin = fc;
    d->result = 0;
    memcpy(d->data, data, spec->len);
    f->directs++;
    rc_ring_msg(&f->ring, rc_server_worker_ring(f->server, d->target.worker),
                rc_ud(d, RC_OP_DIRECT, 0), 0, rc_feed_msg_failed_ud(d, RC_OP_DIRECT));
}

/*
 * SEND conn-id payload [TEXT|BINARY]: one message to one connection. Without an option a payload
 * that is valid UTF-8 goes as text, as with XPUBLISH; TEXT on one that is not is refused.
 */
static void cmd_send(struct rc_feed *f, struct feed_conn *fc, const struct rc_resp_arg *argv,
                     size_t argc)
{
    struct rc_direct spec = {.kind = RC_DIRECT_SEND, .len = (uint32_t)argv[2].len};
    bool utf8 = rc_utf8_valid(argv[2].ptr, argv[2].len);

    if (!conn_id_arg(f, fc, &argv[1], &spec.target))
        return;
    spec.binary = !utf8;
    if (argc == 4) {
        if (arg_is(&argv[3], "BINARY")) {
            spec.binary = true;
        } else if (!arg_is(&argv[3], "TEXT")) {
            reply_error(f, fc, "SEND options are TEXT or BINARY");
            return;
        } else if (!utf8) {
            reply_error(f, fc, "SEND TEXT needs a payload that is valid UTF-8");
            return;
        }
    }
    direct(f, fc, &spec, argv[2].ptr);
}

/* CLOSE conn-id [code [reason]]: a Close frame with that status (1000 when none is given). */
static void cmd_close(struct rc_feed *f, struct feed_conn *fc, const struct rc_resp_arg *argv,
                      size_t argc)
{
    struct rc_direct spec = {.kind = RC_DIRECT_CLOSE, .code = 1000};
    const char *reason = "";

    if (!conn_id_arg(f, fc, &argv[1], &spec.target))
        return;
    if (argc >= 3) {
        const struct rc_resp_arg *c = &argv[2];
        unsigned code = 0;
        bool digits = c->len >= 1 && c->len <= 4;
        for (size_t i = 0; digits && i < c->len; i++) {
            digits = c->ptr[i] >= '0' && c->ptr[i] <= '9';
            code = code * 10 + (unsigned)(c->ptr[i] - '0');
        }
        if (!digits || !rc_direct_close_code_valid(code)) {
            reply_error(f, fc,
                        "close code must be 1000, 1001, 1003, 1007-1009, 1011-1014 or 3000-4999");
            return;
        }
        spec.code = (uint16_t)code;
    }
    if (argc == 4) {
        if (argv[3].len > RC_DIRECT_REASON_MAX || !rc_utf8_valid(argv[3].ptr, argv[3].len)) {
            reply_error(f, fc, "close reason must be valid UTF-8 of at most 123 bytes");
            return;
        }
        reason = argv[3].ptr;
        spec.len = (uint32_t)argv[3].len;
    }
    direct(f, fc, &spec, reason);
}

/* The reply Redis sends for each channel of a SUBSCRIBE or UNSUBSCRIBE. */
static void reply_pubsub(struct feed_conn *fc, const char *kind, const struct rc_resp_arg *channel)
{
    rc_feed_replyf(fc, "*3\r\n$%zu\r\n%s\r\n", strlen(kind), kind);
    if (channel)
        reply_bulk(fc, channel->ptr, channel->len);
    else
        rc_feed_reply(fc, "$-1\r\n", 5);
    rc_feed_replyf(fc, ":%u\r\n", (unsigned)fc->nsubs);
}

/*
 * SUBSCRIBE channel [channel ...]: the connection becomes a listener and gets every client
 * message sent upstream on those channels. Either every name is valid and each gets its reply,
 * or nothing changes and the command gets one error.
 */
static void cmd_subscribe(struct rc_feed *f, struct feed_conn *fc, const struct rc_resp_arg *argv,
                          size_t argc)
{
    for (size_t i = 1; i < argc; i++) {
        if (!rc_http_channel_valid(argv[i].ptr, argv[i].len)) {
            reply_error(f, fc, "invalid channel name (1-128 bytes of A-Za-z0-9_.:@-)");
            return;
        }
    }
    for (size_t i = 1; i < argc; i++) {
        if (rc_feed_sub_add(f, fc, argv[i].ptr, argv[i].len) < 0) {
            reply_error(f, fc, "out of memory");
            return;
        }
        reply_pubsub(fc, "subscribe", &argv[i]);
    }
}

/*
 * UNSUBSCRIBE [channel ...]: as Redis, each named channel gets a reply whether or not it was
 * subscribed, and without names every subscription ends (one reply with a null channel when
 * there was none). A connection that no longer listens is a publisher again, idle clock and all.
 */
static void cmd_unsubscribe(struct rc_feed *f, struct feed_conn *fc, const struct rc_resp_arg *argv,
                            size_t argc)
{
    bool was_listening = fc->nsubs > 0;

    if (argc == 1 && fc->nsubs == 0)
        reply_pubsub(fc, "unsubscribe", NULL);
    while (argc == 1 && fc->nsubs) {
        struct rc_topic_sub *s = rc_container_of(fc->subs.next, struct rc_topic_sub, clink);
        struct rc_topic *t = s->topic;
        /* The name is copied out: removing the last listener frees the topic that holds it. */
        char name[MAX_CHANNEL];
        struct rc_resp_arg a = {name, t->name_len};
        memcpy(name, t->name, t->name_len);
        rc_feed_sub_remove(f, s);
        reply_pubsub(fc, "unsubscribe", &a);
    }
    for (size_t i = 1; i < argc; i++) {
        struct rc_topic *t = rc_topics_find(&f->topics, argv[i].ptr, argv[i].len);
        struct rc_topic_sub *s = t ? rc_topics_sub_find(t, fc) : NULL;
        if (s)
            rc_feed_sub_remove(f, s);
        reply_pubsub(fc, "unsubscribe", &argv[i]);
    }
    if (was_listening && fc->nsubs == 0 && !(fc->flags & (FC_CLOSE_AFTER | FC_GONE))) {
        fc->last_ms = rc_feed_now_ms();
        rc_link_insert_tail(&f->idle, &fc->ilink);
    }
}

/* PING [message]; in subscribed mode the reply is an array, as Redis sends it. */
static void cmd_ping(struct rc_feed *f, struct feed_conn *fc, const struct rc_resp_arg *argv,
                     size_t argc)
{
    if (fc->nsubs) {
        rc_feed_reply(fc, "*2\r\n$4\r\npong\r\n", 14);
        reply_bulk(fc, argc == 2 ? argv[1].ptr : "", argc == 2 ? argv[1].len : 0);
    } else if (argc == 1) {
        rc_feed_reply(fc, "+PONG\r\n", 7);
    } else {
        reply_bulk(fc, argv[1].ptr, argv[1].len);
    }
}

static void cmd_info(struct rc_feed *f, struct feed_conn *fc, const struct rc_resp_arg *argv,
                     size_t argc)
{
    /* Static: the feed is one thread, and a thousand workers' lines do not fit a stack frame. */
    static char text[64 * 1024];
    size_t n = rc_server_info(f->server, text, sizeof(text));
    reply_bulk(fc, text, n);
}

static void cmd_quit(struct rc_feed *f, struct feed_conn *fc, const struct rc_resp_arg *argv,
                     size_t argc)
{
    rc_feed_reply(fc, "+OK\r\n", 5);
    fc->flags |= FC_CLOSE_AFTER;
}

static void cmd_command(struct rc_feed *f, struct feed_conn *fc, const struct rc_resp_arg *argv,
                        size_t argc)
{
    /* redis-cli asks for command docs when it starts interactively; it needs none. */
    rc_feed_reply(fc, "*0\r\n", 4);
}

struct command {
    const char *name; /* lower case, as error messages quote it; matched in any case */
    void (*run)(struct rc_feed *f, struct feed_conn *fc, const struct rc_resp_arg *argv,
                size_t argc);
    size_t min_argc, max_argc; /* counting the command name */
    bool pubsub;               /* allowed in subscribed mode */
};

static const struct command commands[] = {
    {"publish", cmd_publish, 3, 3, false},
    {"xpublish", cmd_xpublish, 3, MAX_ARGS, false},
    {"send", cmd_send, 3, 4, false},
    {"close", cmd_close, 2, 4, false},
    {"subscribe", cmd_subscribe, 2, MAX_ARGS, true},
    {"unsubscribe", cmd_unsubscribe, 1, MAX_ARGS, true},
    {"ping", cmd_ping, 1, 2, true},
    {"info", cmd_info, 1, MAX_ARGS, false},
    {"quit", cmd_quit, 1, MAX_ARGS, true},
    {"command", cmd_command, 1, MAX_ARGS, false},
};

/* Writes a command name into an error message, with anything unprintable replaced. */
static void unknown_command(struct rc_feed *f, struct feed_conn *fc, const struct rc_resp_arg *a)
{
    char name[65], msg[128];
    size_t n = a->len < 64 ? a->len : 64;
    for (size_t i = 0; i < n; i++)
        name[i] = (a->ptr[i] > 32 && a->ptr[i] < 127 && a->ptr[i] != '\'') ? a->ptr[i] : '?';
    name[n] = '\0';
    snprintf(msg, sizeof(msg), "unknown command '%s'", name);
    reply_error(f, fc, msg);
}

void rc_feedcmd_execute(struct rc_feed *f, struct feed_conn *fc, const struct rc_resp_arg *argv,
                        size_t argc)
{
    const struct command *c = NULL;
    char msg[128];

    rc_stat_add(f->stats.commands, 1);
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]) && !c; i++)
        if (arg_is(&argv[0], commands[i].name))
            c = &commands[i];
    if (!c) {
        unknown_command(f, fc, &argv[0]);
    } else if (argc < c->min_argc || argc > c->max_argc) {
        snprintf(msg, sizeof(msg), "wrong number of arguments for '%s' command", c->name);
        reply_error(f, fc, msg);
    } else if (fc->nsubs && !c->pubsub) {
        snprintf(msg, sizeof(msg),
                 "Can't execute '%s': only (UN)SUBSCRIBE / PING / QUIT are allowed in this "
                 "context",
                 c->name);
        reply_error(f, fc, msg);
    } else {
        c->run(f, fc, argv, argc);
    }
}
