/*
 * attestation: a registration's attestation object as register_webauthn
 * reads it (authctx._webauthn_parse_registration).
 *
 * Input: rp_id as one field (fuzz.h's FuzzField: a 2-byte length, then the
 * bytes), then the attestation object: the rest of the input, unframed.
 * The seeds are real registrations (none, packed self-attestation, with
 * extensions), so that mutations reach the attested credential data, the
 * COSE_Key and the statement checks.  Properties: the answer is 0 or one
 * of the REGISTER_* codes; an accepted registration has the user-present
 * and attested-credential-data flags and the rpIdHash of rp_id, a
 * credential id of 1 to 1023 bytes and a COSE_Key inside the input, a key
 * that CoseKeyParse accepts again as the same key, the format "none" or
 * "packed"; and a second parse gives the same answer.
 */
#include "fuzz.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t		rplen;
	uint8_t    *rp = FuzzField(&data, &size, &rplen);
	uint8_t    *att = malloc(size ? size : 1);
	WebauthnRegistration reg;
	WebauthnRegistration again;
	WebauthnKey key;
	int			r;

	FUZZ_CHECK(att != NULL);
	memcpy(att, data, size);

	r = WebauthnRegistrationParse(att, size, (const char *) rp, rplen, &reg);
	FUZZ_CHECK(r == 0 || r == REGISTER_MALFORMED || r == REGISTER_RP_ID ||
			   r == REGISTER_NOT_PRESENT || r == REGISTER_NO_CREDENTIAL ||
			   r == REGISTER_ATTESTATION || r == REGISTER_KEY ||
			   r == REGISTER_CREDENTIAL_ID);
	FUZZ_CHECK(WebauthnRegistrationParse(att, size, (const char *) rp, rplen,
										 &again) == r);
	if (r == 0)
	{
		unsigned char h[crypto_hash_sha256_BYTES];

		FUZZ_CHECK((reg.ad.flags & 0x41) == 0x41);
		crypto_hash_sha256(h, rp, rplen);
		FUZZ_CHECK(memcmp(h, reg.ad.rp_id_hash, sizeof(h)) == 0);
		FUZZ_CHECK(reg.cred_id_len >= 1 && reg.cred_id_len <= 1023);
		FUZZ_CHECK(reg.cred_id >= att && reg.cred_id + reg.cred_id_len <= att + size);
		FUZZ_CHECK(reg.cose > reg.cred_id && reg.cose + reg.cose_len <= att + size);
		FUZZ_CHECK(CoseKeyParse(reg.cose, reg.cose_len, &key) == PARSE_OK);
		FUZZ_CHECK(memcmp(&key, &reg.key, sizeof(key)) == 0);
		FUZZ_CHECK(WebauthnKeyUsable(&key));
		FUZZ_CHECK((reg.fmt_len == 4 && memcmp(reg.fmt, "none", 4) == 0) ||
				   (reg.fmt_len == 6 && memcmp(reg.fmt, "packed", 6) == 0));
		FUZZ_CHECK(again.cred_id == reg.cred_id && again.cose_len == reg.cose_len);
	}
	free(rp);
	free(att);
	return 0;
}
