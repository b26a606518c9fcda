/*
 * Tests for the handshake cryptography: RFC 6455's worked example and other known answers
 * (computed independently with Python's hashlib and base64), and the Sec-WebSocket-Key check,
 * including a random loop that holds wolfSSL's decoder to the strict shape of a 16-byte key.
 */
#include "ringcast/crypto.h"

#include <stdint.h>
#include <stdlib.h>

#include "test.h"

/* A string literal as the (pointer, length) pair the functions take, NUL bytes included. */
#define S(lit) lit, sizeof(lit) - 1

/* Computes the accept value of a NUL-terminated key into out; returns rc_crypto_ws_accept(). */
static int accept_of(const char *key, char out[RC_CRYPTO_WS_ACCEPT_SIZE])
{
    return rc_crypto_ws_accept(key, strlen(key), out);
}

TEST(accept_rfc6455_example)
{
    char out[RC_CRYPTO_WS_ACCEPT_SIZE];

    /* RFC 6455, section 1.3. */
    memset(out, '#', sizeof out);
    CHECK_EQ(accept_of("dGhlIHNhbXBsZSBub25jZQ==", out), 0);
    CHECK_EQ(strlen(out), 28);
    CHECK_MEM(out, strlen(out), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

TEST(accept_known_answers)
{
    static const char *const cases[][2] = {
        {"x3JJHMbDL1EzLkh9GBhXDw==", "HSmrc0sMlYUkAGmm5OPpG2HaGWk="},
        {"AQIDBAUGBwgJCgsMDQ4PEA==", "C/0nmHhBztSRGR1CwL6Tf4ZjwpY="},
        {"", "Kfh9QIsMVZcl6xEPYxPHzW8SZ8w="},
        /* The hash does not care whether the key is valid; the handshake checks that first. */
        {"a key that is not base64 at all, and long: "
         "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
         "xxx"
         "xxxxxxxx",
         "iBZv/lw8GFXxYJCa8lvg/fomd7E="},
    };
    char out[RC_CRYPTO_WS_ACCEPT_SIZE];

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        CHECK_EQ(accept_of(cases[i][0], out), 0);
        CHECK_MEM(out, strlen(out), cases[i][1]);
    }
    /* Only key_len bytes are hashed, not up to a NUL. */
    CHECK_EQ(rc_crypto_ws_accept("dGhlIHNhbXBsZSBub25jZQ==trailing", 24, out), 0);
    CHECK_MEM(out, strlen(out), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

TEST(key_validity)
{
    CHECK(rc_crypto_ws_key_valid(S("dGhlIHNhbXBsZSBub25jZQ==")));
    CHECK(rc_crypto_ws_key_valid(S("AAAAAAAAAAAAAAAAAAAAAA==")));
    CHECK(rc_crypto_ws_key_valid(S("/+/+/+/+/+/+/+/+/+/+/w==")));
    /*
     * Non-zero bits after the last full byte ("R" instead of "Q") still decode to 16 bytes; the
     * RFC asks for a random nonce, not a canonical encoding, and clients are not checked for it.
     */
    CHECK(rc_crypto_ws_key_valid(S("dGhlIHNhbXBsZSBub25jZR==")));

    CHECK(!rc_crypto_ws_key_valid(S("")));
    CHECK(!rc_crypto_ws_key_valid(S("dGhlIHNhbXBsZSBub25jZQ=")));
    CHECK(!rc_crypto_ws_key_valid(S("dGhlIHNhbXBsZSBub25jZQ===")));
    CHECK(!rc_crypto_ws_key_valid(S("dGhlIHNhbXBsZSBub25jZQ")));
    /* 24 characters, but 17 or 18 bytes. */
    CHECK(!rc_crypto_ws_key_valid(S("dGhlIHNhbXBsZSBub25jZQA=")));
    CHECK(!rc_crypto_ws_key_valid(S("dGhlIHNhbXBsZSBub25jZQAA")));
    /* 24 characters, but 15 bytes. */
    CHECK(!rc_crypto_ws_key_valid(S("dGhlIHNhbXBsZSBub25j====")));
    /* Padding in the wrong place. */
    CHECK(!rc_crypto_ws_key_valid(S("dGhlIHNhbXBsZSBub25jZQ=A")));
    CHECK(!rc_crypto_ws_key_valid(S("dGhlIHNhbXBsZSBub25j=Q==")));
    CHECK(!rc_crypto_ws_key_valid(S("==dGhlIHNhbXBsZSBub25jZQ")));
    /* Whitespace, which wolfSSL's decoder would skip. */
    CHECK(!rc_crypto_ws_key_valid(S(" dGhlIHNhbXBsZSBub25jZQ=")));
    CHECK(!rc_crypto_ws_key_valid(S("dGhlIHNhbXBsZSBub25j\r\n==")));
    CHECK(!rc_crypto_ws_key_valid(S("dGhlIHNhbX\tsZSBub25jZQ==")));
    /* The URL-safe alphabet is not the one RFC 6455 uses. */
    CHECK(!rc_crypto_ws_key_valid(S("dGhlIHNhbXBsZSBub25j-_==")));
    /* A NUL byte inside. */
    CHECK(!rc_crypto_ws_key_valid(S("dGhlIHNhbXBsZSBub25jZ\0==")));
}

/* A 64-bit linear congruential generator (Knuth's MMIX constants); returns its high 31 bits. */
static uint32_t lcg_next(uint64_t *state)
{
    *state = *state * 6364136223846793005u + 1442695040888963407u;
    return (uint32_t)(*state >> 33);
}

/* Whether key[0..24) has the one shape a 16-byte nonce encodes to: 22 of the alphabet, "==". */
static bool strict_shape(const char *key)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    for (int i = 0; i < 22; i++) {
        if (key[i] == '\0' || !strchr(alphabet, key[i]))
            return false;
    }
    return key[22] == '=' && key[23] == '=';
}

TEST(key_validity_matches_strict_shape)
{
    /* Mostly base64 and padding, so that near misses are common; now and then any byte. */
    static const char pool[] = "AQgw+/=====  \r\n-_.";
    uint64_t rng = 0x5eed;
    char key[24];

    for (int iter = 0; iter < 200000; iter++) {
        memcpy(key, "dGhlIHNhbXBsZSBub25jZQ==", 24);
        for (uint32_t edits = lcg_next(&rng) % 4; edits > 0; edits--) {
            uint32_t r = lcg_next(&rng);

            key[r % 24] = r & 0x100 ? pool[(r >> 9) % (sizeof pool - 1)] : (char)(r >> 12);
        }
        CHECK_EQ(rc_crypto_ws_key_valid(key, 24), strict_shape(key));
    }
}

TEST_MAIN()
