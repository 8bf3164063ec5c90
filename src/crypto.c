/*-------------------------------------------------------------------------
 *
 * crypto.c
 *		Thin wrappers over libsodium and libcrypto.
 *
 * authctx writes no cryptography of its own: random bytes, BLAKE2b, argon2id,
 * Ed25519 and crypto_secretbox (TOTP secrets at rest) come from libsodium;
 * P-256 ECDSA (WebAuthn ES256) comes from OpenSSL's libcrypto in
 * webauthn.c, and HMAC-SHA1 (TOTP, RFC 6238) from libcrypto here.  This
 * file only makes sure libsodium is initialised once per process and turns
 * the libraries' failures into errors.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
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

/* HMAC-SHA1 (RFC 2104) from libcrypto: the PRF of HOTP and TOTP. */
void
CryptoHmacSha1(const unsigned char *key, size_t keylen,
			   const unsigned char *msg, size_t msglen,
			   unsigned char out[CRYPTO_SHA1_LEN])
{
	unsigned int outlen = 0;

	if (HMAC(EVP_sha1(), key, (int) keylen, msg, msglen, out, &outlen) == NULL ||
		outlen != CRYPTO_SHA1_LEN)
		elog(ERROR, "HMAC-SHA1 failed");
}

/*
 * Encrypt and authenticate msg under a 32-byte key (crypto_secretbox with a
 * fresh random nonce); out receives CRYPTO_SEAL_OVERHEAD + len bytes:
 * nonce, then MAC and ciphertext.
 */
void
CryptoSeal(const unsigned char key[CRYPTO_SEAL_KEY_LEN],
		   const unsigned char *msg, size_t len, unsigned char *out)
{
	CryptoInit();
	randombytes_buf(out, crypto_secretbox_NONCEBYTES);
	if (crypto_secretbox_easy(out + crypto_secretbox_NONCEBYTES, msg, len,
							  out, key) != 0)
		elog(ERROR, "crypto_secretbox_easy failed");
}

/*
 * Open what CryptoSeal made: false when the box is too short, or was not
 * made under this key, or was changed.  out receives len - overhead bytes.
 */
bool
CryptoOpen(const unsigned char key[CRYPTO_SEAL_KEY_LEN],
		   const unsigned char *box, size_t len, unsigned char *out)
{
	CryptoInit();
	if (len < CRYPTO_SEAL_OVERHEAD)
		return false;
	return crypto_secretbox_open_easy(out, box + crypto_secretbox_NONCEBYTES,
									  len - crypto_secretbox_NONCEBYTES,
									  box, key) == 0;
}
