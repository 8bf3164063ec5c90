/*
 * clientdata: clientDataJSON as the C side handles it.  Its JSON is parsed
 * by the SQL side (jsonb, PostgreSQL's parser: see docs/fuzzing.md, and
 * sql/fuzz_inputs.sql, which runs this corpus through verify_webauthn); in
 * C it is hashed into the signed message.
 *
 * Input: clientDataJSON, any bytes.  The target signs authenticatorData ||
 * SHA-256(input) with a fixed Ed25519 test key, as an authenticator would.
 * Properties: that assertion verifies and yields its counter (up to the
 * size bound, beyond which it is malformed), and the same signature over
 * clientDataJSON with one bit flipped does not verify.
 */
#include "fuzz.h"

#define RP_ID		"example.com"
#define COUNTER		7
#define CD_MAX		65536		/* CLIENTDATA_MAX_LEN in webauthn_parse.c */

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int	ready = 0;
	static unsigned char pk[crypto_sign_PUBLICKEYBYTES];
	static unsigned char sk[crypto_sign_SECRETKEYBYTES];
	static uint8_t cose[10 + crypto_sign_PUBLICKEYBYTES] =
	{0xa4, 0x01, 0x01, 0x03, 0x27, 0x20, 0x06, 0x21, 0x58, 0x20};
	uint8_t		ad[37];
	unsigned char sig[crypto_sign_BYTES];
	uint8_t    *msg;
	uint8_t    *cd;
	int64_t		r;

	if (!ready)
	{
		unsigned char seed[crypto_sign_SEEDBYTES];

		crypto_hash_sha256(seed, (const unsigned char *) "authctx fuzz clientdata", 23);
		crypto_sign_seed_keypair(pk, sk, seed);
		memcpy(cose + 10, pk, sizeof(pk));
		ready = 1;
	}
	crypto_hash_sha256(ad, (const unsigned char *) RP_ID, strlen(RP_ID));
	ad[32] = 0x05;				/* user present, user verified */
	ad[33] = ad[34] = ad[35] = 0;
	ad[36] = COUNTER;

	msg = malloc(sizeof(ad) + crypto_hash_sha256_BYTES);
	cd = malloc(size ? size : 1);
	FUZZ_CHECK(msg != NULL && cd != NULL);
	memcpy(cd, data, size);
	memcpy(msg, ad, sizeof(ad));
	crypto_hash_sha256(msg + sizeof(ad), cd, size);
	crypto_sign_detached(sig, NULL, msg, sizeof(ad) + crypto_hash_sha256_BYTES, sk);

	r = WebauthnCheckAssertion(cose, sizeof(cose), ad, sizeof(ad), cd, size,
							   sig, sizeof(sig), RP_ID, strlen(RP_ID));
	FUZZ_CHECK(r == (size <= CD_MAX ? COUNTER : ASSERT_MALFORMED));
	if (size > 0 && size <= CD_MAX)
	{
		cd[size / 2] ^= 0x01;
		r = WebauthnCheckAssertion(cose, sizeof(cose), ad, sizeof(ad), cd, size,
								   sig, sizeof(sig), RP_ID, strlen(RP_ID));
		FUZZ_CHECK(r == ASSERT_SIGNATURE);
	}
	free(msg);
	free(cd);
	return 0;
}
