/*
 * Commands a WebSocket client sends in its own messages.
 *
 * A text message that starts with "/" is a command: "/subscribe <channel>" and
 * "/unsubscribe <channel>". "//" escapes a message that should go upstream starting with "/".
 * Every other message, text or binary, goes upstream to the feed's listeners. The parser is a
 * pure function over the message bytes, so it can be fuzzed.
 */
#ifndef RINGCAST_COMMAND_H
#define RINGCAST_COMMAND_H

#include <stdbool.h>
#include <stddef.h>

enum rc_command_kind {
    RC_COMMAND_UPSTREAM = 0, /* payload goes to the feed's listeners */
    RC_COMMAND_SUBSCRIBE,    /* arg is a valid channel name */
    RC_COMMAND_UNSUBSCRIBE,  /* arg is a valid channel name */
    RC_COMMAND_BAD,          /* error says what is wrong, for the reply */
};

struct rc_command {
    enum rc_command_kind kind;
    const char *arg; /* points into the message */
    size_t arg_len;
    const char *payload; /* RC_COMMAND_UPSTREAM: the bytes that go up (the "//" escape undone) */
    size_t payload_len;
    const char *error; /* RC_COMMAND_BAD: a static message */
};

/* Parses message p[0..n) (text: a text message, else binary) into cmd. Pure; never fails. */
void rc_command_parse(const char *p, size_t n, bool text, struct rc_command *cmd);

#endif
