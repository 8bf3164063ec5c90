/*
 * cose_key: the strict CBOR reader and the COSE_Key check
 * (authctx._webauthn_key_alg, add_webauthn_credential, and every
 * assertion's stored key).
 *
 * Input: the COSE_Key bytes.  Properties: an accepted key is EdDSA or
 * ES256, and its canonical encoding (labels in CTAP2 order) is accepted as
 * the same key; WebauthnKeyUsable (OpenSSL's point check) runs on it.
 */
#include "fuzz.h"

/* The CTAP2 canonical COSE_Key of a parsed key. */
static size_t
CanonicalCose(const WebauthnKey *key, uint8_t *out)
{
	static const uint8_t ed[] = {0xa4, 0x01, 0x01, 0x03, 0x27, 0x20, 0x06, 0x21, 0x58, 0x20};
	static const uint8_t es[] = {0xa5, 0x01, 0x02, 0x03, 0x26, 0x20, 0x01, 0x21, 0x58, 0x20};
	size_t		n;

	if (key->alg == WEBAUTHN_COSE_EDDSA)
	{
		memcpy(out, ed, sizeof(ed));
		memcpy(out + sizeof(ed), key->x, WEBAUTHN_COORD_LEN);
		return sizeof(ed) + WEBAUTHN_COORD_LEN;
	}
	memcpy(out, es, sizeof(es));
	memcpy(out + sizeof(es), key->x, WEBAUTHN_COORD_LEN);
	n = sizeof(es) + WEBAUTHN_COORD_LEN;
	out[n++] = 0x22;
	out[n++] = 0x58;
	out[n++] = 0x20;
	memcpy(out + n, key->y, WEBAUTHN_COORD_LEN);
	return n + WEBAUTHN_COORD_LEN;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	WebauthnKey key;
	WebauthnKey again;
	uint8_t		canon[128];
	size_t		n;

	if (CoseKeyParse(data, size, &key) != PARSE_OK)
		return 0;
	FUZZ_CHECK(key.alg == WEBAUTHN_COSE_EDDSA || key.alg == WEBAUTHN_COSE_ES256);
	n = CanonicalCose(&key, canon);
	FUZZ_CHECK(CoseKeyParse(canon, n, &again) == PARSE_OK);
	FUZZ_CHECK(memcmp(&key, &again, sizeof(key)) == 0);
	if (key.alg == WEBAUTHN_COSE_EDDSA)
		FUZZ_CHECK(WebauthnKeyUsable(&key));
	else
		(void) WebauthnKeyUsable(&key);
	return 0;
}
