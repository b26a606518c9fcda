/*
 * Client commands over WebSocket: what is a command, what goes upstream.
 */
#include <string.h>

#include "ringcast/command.h"
#include "test.h"

static struct rc_command parse(const char *s, bool text)
{
    struct rc_command cmd;
    rc_command_parse(s, strlen(s), text, &cmd);
    return cmd;
}

TEST(subscribe_and_unsubscribe_take_one_channel)
{
    struct rc_command c = parse("/subscribe news.eu", true);
    CHECK_EQ(c.kind, RC_COMMAND_SUBSCRIBE);
    CHECK_MEM(c.arg, c.arg_len, "news.eu");
    c = parse("/unsubscribe a:b@c-d_e", true);
    CHECK_EQ(c.kind, RC_COMMAND_UNSUBSCRIBE);
    CHECK_MEM(c.arg, c.arg_len, "a:b@c-d_e");
}

TEST(bad_commands_say_what_is_wrong)
{
    CHECK_EQ(parse("/subscribe", true).kind, RC_COMMAND_BAD);
    CHECK(strstr(parse("/subscribe", true).error, "missing") != NULL);
    CHECK_EQ(parse("/subscribe ", true).kind, RC_COMMAND_BAD);
    CHECK(strstr(parse("/subscribe a b", true).error, "invalid") != NULL);
    CHECK(strstr(parse("/subscribe a/b", true).error, "invalid") != NULL);
    CHECK(strstr(parse("/join x", true).error, "unknown") != NULL);
    CHECK(strstr(parse("/subscribex y", true).error, "unknown") != NULL);
    CHECK_EQ(parse("/", true).kind, RC_COMMAND_BAD);
}

TEST(everything_else_goes_upstream)
{
    struct rc_command c = parse("hello /subscribe x", true);
    CHECK_EQ(c.kind, RC_COMMAND_UPSTREAM);
    CHECK_MEM(c.payload, c.payload_len, "hello /subscribe x");
    /* Binary messages are never commands. */
    c = parse("/subscribe x", false);
    CHECK_EQ(c.kind, RC_COMMAND_UPSTREAM);
    CHECK_MEM(c.payload, c.payload_len, "/subscribe x");
    c = parse("", true);
    CHECK_EQ(c.kind, RC_COMMAND_UPSTREAM);
    CHECK_EQ(c.payload_len, 0);
}

TEST(a_double_slash_escapes_an_upstream_message)
{
    struct rc_command c = parse("//subscribe x", true);
    CHECK_EQ(c.kind, RC_COMMAND_UPSTREAM);
    CHECK_MEM(c.payload, c.payload_len, "/subscribe x");
}

TEST(every_prefix_parses_without_reading_past_the_end)
{
    const char *s = "/unsubscribe channel.name";
    for (size_t n = 0; n <= strlen(s); n++) {
        char buf[64];
        memcpy(buf, s, n);
        struct rc_command c;
        rc_command_parse(buf, n, true, &c);
        if (c.kind == RC_COMMAND_UPSTREAM)
            CHECK(c.payload_len <= n);
        else if (c.kind != RC_COMMAND_BAD)
            CHECK(c.arg + c.arg_len <= buf + n);
    }
}

TEST_MAIN()
