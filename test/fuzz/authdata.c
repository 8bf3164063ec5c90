/*
 * authdata: authenticatorData and the rest of an assertion as the C check
 * sees it (authctx._webauthn_check_assertion, verify_webauthn,
 * login_webauthn).
 *
 * Input: four fields (fuzz.h's FuzzField: a 2-byte length, then the bytes),
 * COSE_Key, authenticatorData, clientDataJSON, signature, then rp_id: the
 * rest of the input, unframed.  The seeds are real assertions, so that mutations reach the
 * signature checks.  Properties: the answer is a counter or one of the
 * ASSERT_* codes; a counter is the one authenticatorData carries, with the
 * user-present flag set and the rpIdHash of rp_id.
 */
#include "fuzz.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t		coselen,
				adlen,
				cdlen,
				siglen,
				rplen;
	uint8_t    *cose = FuzzField(&data, &size, &coselen);
	uint8_t    *ad = FuzzField(&data, &size, &adlen);
	uint8_t    *cd = FuzzField(&data, &size, &cdlen);
	uint8_t    *sig = FuzzField(&data, &size, &siglen);
	uint8_t    *rp;
	WebauthnAuthData head;
	ParseStatus st;
	int64_t		r;

	/* rp_id is whatever is left, unframed */
	rplen = size;
	rp = malloc(rplen ? rplen : 1);
	FUZZ_CHECK(rp != NULL);
	memcpy(rp, data, rplen);

	st = WebauthnAuthDataParse(ad, adlen, &head);
	r = WebauthnCheckAssertion(cose, coselen, ad, adlen, cd, cdlen, sig, siglen,
							   (const char *) rp, rplen);
	FUZZ_CHECK(r >= ASSERT_SIGNATURE && r <= UINT32_MAX);
	if (r >= 0)
	{
		unsigned char h[crypto_hash_sha256_BYTES];

		FUZZ_CHECK(st == PARSE_OK);
		FUZZ_CHECK(r == head.sign_count);
		FUZZ_CHECK(head.flags & 0x01);
		crypto_hash_sha256(h, rp, rplen);
		FUZZ_CHECK(memcmp(h, head.rp_id_hash, sizeof(h)) == 0);
	}
	if (st != PARSE_OK)
		FUZZ_CHECK(r == ASSERT_MALFORMED);
	free(cose);
	free(ad);
	free(cd);
	free(sig);
	free(rp);
	return 0;
}
