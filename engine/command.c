/*
 * WebSocket client commands. See include/ringcast/command.h.
 */
#include "ringcast/command.h"

#include <string.h>

#include "ringcast/http.h"

/* Whether p[0..n) is the word `word` followed by one space and an argument. */
static bool takes(const char *p, size_t n, const char *word, const char **arg, size_t *arg_len)
{
    size_t w = strlen(word);
    if (n < w || memcmp(p, word, w) != 0 || (n > w && p[w] != ' '))
        return false;
    *arg = n > w ? p + w + 1 : p + n;
    *arg_len = n > w ? n - w - 1 : 0;
    return true;
}

void rc_command_parse(const char *p, size_t n, bool text, struct rc_command *cmd)
{
    memset(cmd, 0, sizeof(*cmd));
    cmd->payload = p;
    cmd->payload_len = n;
    if (!text || n == 0 || p[0] != '/')
        return;
    if (n >= 2 && p[1] == '/') {
        cmd->payload = p + 1;
        cmd->payload_len = n - 1;
        return;
    }
    if (takes(p, n, "/subscribe", &cmd->arg, &cmd->arg_len))
        cmd->kind = RC_COMMAND_SUBSCRIBE;
    else if (takes(p, n, "/unsubscribe", &cmd->arg, &cmd->arg_len))
        cmd->kind = RC_COMMAND_UNSUBSCRIBE;
    else {
        cmd->kind = RC_COMMAND_BAD;
        cmd->error = "unknown command (use /subscribe <channel> or /unsubscribe <channel>)";
        return;
    }
    if (cmd->arg_len == 0) {
        cmd->kind = RC_COMMAND_BAD;
        cmd->error = "missing channel name";
    } else if (!rc_http_channel_valid(cmd->arg, cmd->arg_len)) {
        cmd->kind = RC_COMMAND_BAD;
        cmd->error = "invalid channel name";
    }
}
