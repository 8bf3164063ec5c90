/*
 * base64url: strict base64url decoding (tokens, the WebAuthn challenge of
 * clientDataJSON through authctx._webauthn_b64url_decode).
 *
 * Input: the text.  Decoded into a buffer of exactly B64URL_DECODED_MAX
 * bytes, so that AddressSanitizer sees any write past it.  Property: only
 * the canonical encoding decodes, so re-encoding gives back the input.
 */
#include "fuzz.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t		max = B64URL_DECODED_MAX(size);
	unsigned char *out = malloc(max);
	size_t		outlen = 12345;
	char	   *again;

	FUZZ_CHECK(out != NULL);
	if (B64urlDecode((const char *) data, size, out, max, &outlen) == PARSE_OK)
	{
		size_t		elen = sodium_base64_ENCODED_LEN(outlen,
													 sodium_base64_VARIANT_URLSAFE_NO_PADDING);

		FUZZ_CHECK(outlen <= max);
		again = malloc(elen);
		FUZZ_CHECK(again != NULL);
		sodium_bin2base64(again, elen, out, outlen,
						  sodium_base64_VARIANT_URLSAFE_NO_PADDING);
		FUZZ_CHECK(strlen(again) == size && memcmp(again, data, size) == 0);
		free(again);
	}
	else
		FUZZ_CHECK(outlen == 0);
	free(out);
	return 0;
}
