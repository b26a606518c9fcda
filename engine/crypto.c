/*
 * WebSocket handshake cryptography on wolfSSL's SHA-1 and base64.
 *
 * wolfSSL's headers must see the build's options.h first: the size of wc_Sha and the set of
 * functions declared depend on how the library was configured.
 */
#include "ringcast/crypto.h"

#include <errno.h>
#include <stdint.h>

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/coding.h>
#include <wolfssl/wolfcrypt/sha.h>

/* RFC 6455, section 1.3: the GUID appended to the client's key before hashing. */
static const char ws_guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/* The bytes of the standard base64 alphabet (RFC 4648, section 4), without the padding. */
static const bool base64_char[256] = {
    ['A' ... 'Z'] = true, ['a' ... 'z'] = true, ['0' ... '9'] = true, ['+'] = true, ['/'] = true,
};

int rc_crypto_ws_accept(const char *key, size_t key_len, char out[RC_CRYPTO_WS_ACCEPT_SIZE])
{
    byte digest[WC_SHA_DIGEST_SIZE];
    word32 out_len = RC_CRYPTO_WS_ACCEPT_SIZE;
    wc_Sha sha;
    int r;

    if (key_len > UINT32_MAX)
        return -EINVAL;
    if (wc_InitSha(&sha) != 0)
        return -EIO;
    r = wc_ShaUpdate(&sha, (const byte *)key, (word32)key_len);
    if (r == 0)
        r = wc_ShaUpdate(&sha, (const byte *)ws_guid, sizeof ws_guid - 1);
    if (r == 0)
        r = wc_ShaFinal(&sha, digest);
    wc_ShaFree(&sha);
    if (r != 0)
        return -EIO;
    /*
     * 20 bytes encode to exactly 28 characters; the NoNl variant adds no line break. Whether it
     * also writes a NUL is not documented, so the NUL is written here.
     */
    if (Base64_Encode_NoNl(digest, sizeof digest, (byte *)out, &out_len) != 0 ||
        out_len != RC_CRYPTO_WS_ACCEPT_LEN)
        return -EIO;
    out[RC_CRYPTO_WS_ACCEPT_LEN] = '\0';
    return 0;
}

bool rc_crypto_ws_key_valid(const char *key, size_t len)
{
    byte nonce[18];
    word32 nonce_len = sizeof nonce;

    if (len != 24)
        return false;
    /*
     * Base64_Decode skips whitespace and line breaks inside its input, and what it skips is not
     * documented, so every character must be of the alphabet or padding before it is asked.
     * Where padding may stand, and how many bytes the rest makes, is the decoder's to say.
     */
    for (size_t i = 0; i < len; i++) {
        if (!base64_char[(unsigned char)key[i]] && key[i] != '=')
            return false;
    }
    return Base64_Decode((const byte *)key, (word32)len, nonce, &nonce_len) == 0 && nonce_len == 16;
}
