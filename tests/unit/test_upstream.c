/*
 * Tests for connection ids (format, parse, every kind of malformed text, a round trip over the
 * extremes) and for the close codes a backend may send.
 */
#include "ringcast/upstream.h"

#include <errno.h>

#include "test.h"

/* Parses a NUL-terminated string. */
static int parse(const char *s, struct rc_conn_id *id)
{
    return rc_conn_id_parse(s, strlen(s), id);
}

TEST(format)
{
    char buf[RC_CONN_ID_MAX];
    struct rc_conn_id id = {.worker = 3, .index = 17, .gen = 2};

    CHECK_MEM(buf, rc_conn_id_format(&id, buf), "3.17.2");
    id = (struct rc_conn_id){0, 0, 0};
    CHECK_MEM(buf, rc_conn_id_format(&id, buf), "0.0.0");
    id = (struct rc_conn_id){UINT32_MAX, UINT32_MAX, UINT16_MAX};
    CHECK_MEM(buf, rc_conn_id_format(&id, buf), "4294967295.4294967295.65535");
    CHECK_EQ(buf[27], '\0');
}

TEST(parse_valid)
{
    struct rc_conn_id id = {99, 99, 99};

    CHECK_EQ(parse("3.17.2", &id), 0);
    CHECK_EQ(id.worker, 3);
    CHECK_EQ(id.index, 17);
    CHECK_EQ(id.gen, 2);
    CHECK_EQ(parse("0.0.0", &id), 0);
    CHECK_EQ(id.worker, 0);
    CHECK_EQ(id.index, 0);
    CHECK_EQ(id.gen, 0);
    CHECK_EQ(parse("4294967295.4294967295.65535", &id), 0);
    CHECK_EQ(id.worker, UINT32_MAX);
    CHECK_EQ(id.index, UINT32_MAX);
    CHECK_EQ(id.gen, UINT16_MAX);
}

TEST(parse_uses_only_len_bytes)
{
    struct rc_conn_id id;

    /* The bytes after len belong to the next argument and must not be looked at. */
    CHECK_EQ(rc_conn_id_parse("1.2.3 hello", 5, &id), 0);
    CHECK_EQ(id.gen, 3);
    CHECK_EQ(rc_conn_id_parse("1.2.34", 5, &id), 0);
    CHECK_EQ(id.gen, 3);
    CHECK_EQ(rc_conn_id_parse("1.2.", 4, &id), -EINVAL);
    CHECK_EQ(rc_conn_id_parse("", 0, &id), -EINVAL);
}

TEST(parse_invalid)
{
    static const char *const bad[] = {
        "",
        ".",
        "..",
        "1",
        "1.2",
        "1.2.",
        ".1.2",
        "1..2",
        "1.2.3.",
        "1.2.3.4",
        " 1.2.3",
        "1.2.3 ",
        "1 .2.3",
        "+1.2.3",
        "-1.2.3",
        "1.-2.3",
        "1.2.+3",
        "1.2.3\r\n",
        "01.2.3",
        "1.02.3",
        "1.2.03",
        "00.0.0",
        "1,2,3",
        "1.2.x",
        "a.b.c",
        "0x1.2.3",
        "1.2.65536",
        "1.2.99999",
        "1.2.4294967296",
        "4294967296.0.0",
        "0.4294967296.0",
        "99999999999999999999.0.0",
        "0.0.18446744073709551616",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct rc_conn_id id = {7, 7, 7};
        if (parse(bad[i], &id) != -EINVAL) {
            fprintf(stderr, "accepted \"%s\"\n", bad[i]);
            CHECK(0);
        }
        /* A refused id leaves the output alone, so no caller can act on half of one. */
        CHECK(id.worker == 7 && id.index == 7 && id.gen == 7);
    }
}

TEST(parse_embedded_nul)
{
    struct rc_conn_id id;

    CHECK_EQ(rc_conn_id_parse("1.2.3\0", 6, &id), -EINVAL);
    CHECK_EQ(rc_conn_id_parse("1\0.2.3", 6, &id), -EINVAL);
}

TEST(round_trip)
{
    static const uint32_t values[] = {
        0, 1, 9, 10, 99, 100, 65535, 65536, 1000000, UINT32_MAX - 1, UINT32_MAX};
    static const uint16_t gens[] = {0, 1, 9, 10, 255, 256, 65534, 65535};
    size_t nv = sizeof(values) / sizeof(values[0]), ng = sizeof(gens) / sizeof(gens[0]);

    for (size_t w = 0; w < nv; w++)
        for (size_t i = 0; i < nv; i++)
            for (size_t g = 0; g < ng; g++) {
                struct rc_conn_id id = {values[w], values[i], gens[g]}, back;
                char buf[RC_CONN_ID_MAX];
                size_t n = rc_conn_id_format(&id, buf);
                CHECK(n < RC_CONN_ID_MAX);
                CHECK_EQ(rc_conn_id_parse(buf, n, &back), 0);
                CHECK(back.worker == id.worker && back.index == id.index && back.gen == id.gen);
            }
}

TEST(close_codes)
{
    static const unsigned ok[] = {1000, 1001, 1003, 1007, 1008, 1009, 1011,
                                  1012, 1013, 1014, 3000, 3999, 4000, 4999};
    static const unsigned refused[] = {0,    999,  1002, 1004, 1005, 1006,  1010, 1015,
                                       1016, 1999, 2000, 2999, 5000, 65535, 70000};

    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        CHECK(rc_direct_close_code_valid(ok[i]));
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
        CHECK(!rc_direct_close_code_valid(refused[i]));
}

TEST_MAIN()
