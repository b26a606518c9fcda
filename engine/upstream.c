/*
 * Connection ids. See include/ringcast/upstream.h.
 */
#include "ringcast/upstream.h"

#include <errno.h>
#include <stdio.h>

size_t rc_conn_id_format(const struct rc_conn_id *id, char *buf)
{
    int n = snprintf(buf, RC_CONN_ID_MAX, "%u.%u.%u", id->worker, id->index, (unsigned)id->gen);
    return (size_t)n;
}

/* Parses one decimal number of at most `max` from p[*i..n), stopping at a dot or the end. */
static int number(const char *p, size_t n, size_t *i, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;
    size_t start = *i;
    while (*i < n && p[*i] != '.') {
        if (p[*i] < '0' || p[*i] > '9')
            return -EINVAL;
        v = v * 10 + (uint64_t)(p[*i] - '0');
        if (v > max)
            return -EINVAL;
        (*i)++;
    }
    *out = v;
    return *i > start ? 0 : -EINVAL;
}

int rc_conn_id_parse(const char *text, size_t len, struct rc_conn_id *id)
{
    uint64_t w, index, gen;
    size_t i = 0;
    if (number(text, len, &i, UINT32_MAX, &w) < 0 || i == len || text[i++] != '.' ||
        number(text, len, &i, UINT32_MAX, &index) < 0 || i == len || text[i++] != '.' ||
        number(text, len, &i, UINT16_MAX, &gen) < 0 || i != len)
        return -EINVAL;
    id->worker = (uint32_t)w;
    id->index = (uint32_t)index;
    id->gen = (uint16_t)gen;
    return 0;
}
