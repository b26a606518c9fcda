/*
 * Connection ids and the checks on a feed's commands for one connection. See
 * include/ringcast/upstream.h.
 */
#include "ringcast/upstream.h"

#include <errno.h>
#include <stdio.h>

#include "ringcast/ws.h"

size_t rc_conn_id_format(const struct rc_conn_id *id, char *buf)
{
    int n = snprintf(buf, RC_CONN_ID_MAX, "%u.%u.%u", (unsigned)id->worker, (unsigned)id->index,
                     (unsigned)id->gen);
    return (size_t)n;
}

/*
 * Parses the decimal number at text[*pos..len) up to the next '.' or the end, at most `limit`.
 * Only digits are accepted, without sign and without leading zeros, so that every id has exactly
 * one spelling and the text a backend got in a message is the only text that reaches it.
 */
static int parse_part(const char *text, size_t len, size_t *pos, uint32_t limit, uint32_t *out)
{
    size_t i = *pos;
    uint32_t v = 0;

    if (i == len || text[i] < '0' || text[i] > '9')
        return -EINVAL;
    if (text[i] == '0' && i + 1 < len && text[i + 1] >= '0' && text[i + 1] <= '9')
        return -EINVAL;
    for (; i < len && text[i] >= '0' && text[i] <= '9'; i++) {
        uint32_t digit = (uint32_t)(text[i] - '0');
        if (v > limit / 10 || digit > limit - v * 10)
            return -EINVAL;
        v = v * 10 + digit;
    }
    *pos = i;
    *out = v;
    return 0;
}

int rc_conn_id_parse(const char *text, size_t len, struct rc_conn_id *id)
{
    uint32_t worker, index, gen;
    size_t pos = 0;

    if (parse_part(text, len, &pos, UINT32_MAX, &worker) < 0 || pos == len || text[pos++] != '.')
        return -EINVAL;
    if (parse_part(text, len, &pos, UINT32_MAX, &index) < 0 || pos == len || text[pos++] != '.')
        return -EINVAL;
    if (parse_part(text, len, &pos, UINT16_MAX, &gen) < 0 || pos != len)
        return -EINVAL;
    id->worker = worker;
    id->index = index;
    id->gen = (uint16_t)gen;
    return 0;
}

bool rc_direct_close_code_valid(unsigned code)
{
    return rc_ws_close_code_valid(code) && code != 1002 && code != 1010;
}
