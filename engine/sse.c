/*
 * Server-Sent Events wire encoding.
 *
 * Every field is written as "name: value" with one space after the colon. Browsers strip exactly
 * one leading space from a value, so a value that itself begins with a space survives, and the
 * frame stays readable in curl.
 *
 * A payload line cannot contain a line break, so the payload is cut at every LF, CRLF and lone
 * CR, the three line endings of the event stream format, and each piece gets its own data:
 * line. The browser joins data lines with LF, so a client receives the payload with every line
 * ending turned into LF, and a trailing line ending survives as a final empty data line.
 */
#include "ringcast/sse.h"

#include <string.h>

static const char id_field[] = "id: ";
static const char event_field[] = "event: ";
static const char data_field[] = "data: ";

/*
 * Finds the end of the payload line that starts at p: sets *line_len to its length without the
 * line ending, and returns where the next line starts, or NULL when this line runs to `end`
 * and is the last one. The one function serves both the size and the encoder, so the two
 * cannot disagree about where lines end.
 */
static const char *next_line(const char *p, const char *end, size_t *line_len)
{
    const char *q = p;

    while (q < end && *q != '\r' && *q != '\n')
        q++;
    *line_len = (size_t)(q - p);
    if (q == end)
        return NULL;
    if (*q == '\r' && q + 1 < end && q[1] == '\n')
        q++;
    return q + 1;
}

/* Writes "<name><value>\n" at out, where name is a field name with its colon and space. */
static char *put_field(char *out, const char *name, size_t name_len, const char *value,
                       size_t value_len)
{
    memcpy(out, name, name_len);
    out += name_len;
    memcpy(out, value, value_len);
    out += value_len;
    *out++ = '\n';
    return out;
}

size_t rc_sse_frame_size(const char *id, size_t id_len, const char *event, size_t event_len,
                         const char *data, size_t data_len)
{
    const char *p = data, *end = data + data_len;
    size_t n = sizeof id_field - 1 + id_len + 1;
    size_t line_len;

    /* The id and event count by length alone; they are parameters to mirror rc_sse_encode(). */
    (void)id;
    (void)event;
    if (event_len > 0)
        n += sizeof event_field - 1 + event_len + 1;
    do {
        p = next_line(p, end, &line_len);
        n += sizeof data_field - 1 + line_len + 1;
    } while (p);
    return n + 1;
}

size_t rc_sse_encode(char *out, const char *id, size_t id_len, const char *event, size_t event_len,
                     const char *data, size_t data_len)
{
    const char *p = data, *end = data + data_len;
    char *o = put_field(out, id_field, sizeof id_field - 1, id, id_len);

    if (event_len > 0)
        o = put_field(o, event_field, sizeof event_field - 1, event, event_len);
    do {
        const char *line = p;
        size_t line_len;

        p = next_line(p, end, &line_len);
        o = put_field(o, data_field, sizeof data_field - 1, line, line_len);
    } while (p);
    *o++ = '\n';
    return (size_t)(o - out);
}

bool rc_sse_field_valid(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '\r' || s[i] == '\n' || s[i] == '\0')
            return false;
    }
    return true;
}
