/*-------------------------------------------------------------------------
 *
 * crypto.c
 *		Thin wrappers over libsodium.
 *
 * authctx writes no cryptography of its own: random bytes, BLAKE2b, argon2id
 * and Ed25519 come from libsodium; P-256 ECDSA (WebAuthn ES256) comes from
 * OpenSSL's libcrypto in webauthn.c.  This file only makes sure libsodium is
 * initialised once per process and turns its failures into errors.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sodium.h>

#include "authctx.h"

static bool authctx_sodium_ready = false;

/* Initialise libsodium once per process; fail loudly if it cannot start. */
void
CryptoInit(void)
{
	if (authctx_sodium_ready)
		return;
	if (sodium_init() < 0)
		ereport(ERROR,
				(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("could not initialize libsodium")));
	authctx_sodium_ready = true;
}

/* Fill buf with bytes from libsodium's CSPRNG. */
void
CryptoRandomBytes(void *buf, size_t len)
{
	CryptoInit();
	randombytes_buf(buf, len);
}

/* BLAKE2b of in, optionally keyed; outlen between 16 and 64 bytes. */
void
CryptoHash(unsigned char *out, size_t outlen, const void *in, size_t inlen,
		   const unsigned char *key, size_t keylen)
{
	CryptoInit();
	if (keylen > crypto_generichash_KEYBYTES_MAX)
		keylen = crypto_generichash_KEYBYTES_MAX;
	if (crypto_generichash(out, outlen, in, inlen,
						   keylen > 0 ? key : NULL, keylen) != 0)
		elog(ERROR, "crypto_generichash failed");
}

/* Constant-time comparison of two equal-length buffers. */
bool
CryptoEqual(const void *a, const void *b, size_t len)
{
	return sodium_memcmp(a, b, len) == 0;
}

/* Wipe a buffer that held a secret. */
void
CryptoZero(void *buf, size_t len)
{
	sodium_memzero(buf, len);
}
