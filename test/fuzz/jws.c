/*
 * jws.c
 *		libFuzzer target: compact JWS parsing and claim checks (src/jws.c),
 *		and the signature paths of src/pkey.c.
 *
 * Two shapes of input: a whole token as it is, and, so that the fuzzer
 * reaches the claims quickly, the input as the JSON payload of a token
 * with a fixed header.  A parsed token's signature is checked against
 * fixed, valid keys of its algorithm (it will not verify; the point is that
 * the r||s checks, the DER conversion and the library calls never crash).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "jws.h"
#include "pkey.h"

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The P-256 base point: a valid public key. */
static const unsigned char p256_g[PKEY_P256_POINT_LEN] = {
	0x04,
	0x6b, 0x17, 0xd1, 0xf2, 0xe1, 0x2c, 0x42, 0x47, 0xf8, 0xbc, 0xe6, 0xe5,
	0x63, 0xa4, 0x40, 0xf2, 0x77, 0x03, 0x7d, 0x81, 0x2d, 0xeb, 0x33, 0xa0,
	0xf4, 0xa1, 0x39, 0x45, 0xd8, 0x98, 0xc2, 0x96,
	0x4f, 0xe3, 0x42, 0xe2, 0xfe, 0x1a, 0x7f, 0x9b, 0x8e, 0xe7, 0xeb, 0x4a,
	0x7c, 0x0f, 0x9e, 0x16, 0x2b, 0xce, 0x33, 0x57, 0x6b, 0x31, 0x5e, 0xce,
	0xcb, 0xb6, 0x40, 0x68, 0x37, 0xbf, 0x51, 0xf5
};

/* Exercise everything that follows a successful parse. */
static void
after_parse(JwsToken *t)
{
	static EVP_PKEY *es = NULL;
	static unsigned char ed[PKEY_ED25519_LEN];
	const unsigned char *msg = (const unsigned char *) t->signing_input;

	(void) JwtAudienceHas(t, "api", 3);
	(void) JwtCheckTimes(t, INT64_C(1700000000000000), 30000000);
	if (es == NULL)
	{
		unsigned char seed[crypto_sign_SEEDBYTES] = {1};
		unsigned char sk[crypto_sign_SECRETKEYBYTES];

		es = PkeyP256FromPoint(p256_g, true);
		if (es == NULL || sodium_init() < 0)
			abort();
		crypto_sign_seed_keypair(ed, sk, seed);
	}
	if (t->alg == JWS_ALG_ES256)
		(void) PkeyEs256VerifyRaw(es, msg, t->signing_input_len, t->sig, t->siglen);
	else if (t->alg == JWS_ALG_EDDSA)
		(void) PkeyEd25519Verify(ed, msg, t->signing_input_len, t->sig, t->siglen);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static JwsToken t;
	static const char header[] = "eyJhbGciOiJFUzI1NiIsImtpZCI6ImsxIn0";	/* {"alg":"ES256","kid":"k1"} */
	char	   *token;
	size_t		b64len;

	/* the input as a token */
	token = malloc(size ? size : 1);
	memcpy(token, data, size);
	(void) JwsLooksLikeJwt(token, size);
	if (JwsParse(token, size, &t) == JWT_OK)
		after_parse(&t);
	free(token);

	/* the input as the payload of a token with a fixed header */
	if (size > JWS_MAX_PART_LEN)
		return 0;
	b64len = sodium_base64_ENCODED_LEN(size, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	token = malloc(sizeof(header) + b64len + 90);
	strcpy(token, header);
	strcat(token, ".");
	sodium_bin2base64(token + strlen(token), b64len, data, size,
					  sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	/* 64 bytes of signature */
	strcat(token, ".AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0-Pw");
	if (JwsParse(token, strlen(token), &t) == JWT_OK)
		after_parse(&t);
	free(token);
	return 0;
}
