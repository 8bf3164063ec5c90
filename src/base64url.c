/*-------------------------------------------------------------------------
 *
 * base64url.c
 *		Strict base64url decoding, without PostgreSQL.
 *
 * Tokens, WebAuthn challenges (and JWTs) are base64url without padding
 * (RFC 4648 §5).  One value must have one spelling, so only the canonical
 * encoding is accepted: no padding, no other alphabet, no whitespace, no
 * length of the form 4k+1, no non-zero spare bits, nothing after the last
 * character.  libsodium does the decoding; this wrapper insists that it
 * consumed the whole input, and checks the alphabet itself first.
 *
 * Found by fuzzing: libsodium 1.0.18 (Debian 12) decodes every byte from
 * 0x80 up as if it were '_' (its constant-time character classes assume
 * values below 256, and a plain char is signed on x86), so "\xc3\xa9"
 * ("é") decoded like "__".  A token or challenge thus had other spellings,
 * which neither the contract ("characters from [A-Za-z0-9_-] only") nor
 * log redaction (which looks for that alphabet) expected.
 *
 *-------------------------------------------------------------------------
 */
#include <string.h>

#include <sodium.h>

#include "parse.h"

/*
 * Decode in[0..inlen) into out (room for outmax bytes, at least
 * B64URL_DECODED_MAX(inlen) to never fail for lack of room); PARSE_OK with
 * *outlen set, or PARSE_SYNTAX for anything but a canonical encoding.
 */
ParseStatus
B64urlDecode(const char *in, size_t inlen, unsigned char *out, size_t outmax,
			 size_t *outlen)
{
	const char *end = NULL;

	*outlen = 0;
	if (inlen == 0)
		return PARSE_OK;
	for (size_t i = 0; i < inlen; i++)
		if (!B64urlIsChar(in[i]))
			return PARSE_SYNTAX;
	if (sodium_base642bin(out, outmax, in, inlen, NULL, outlen, &end,
						  sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
		end != in + inlen)
	{
		*outlen = 0;
		return PARSE_SYNTAX;
	}
	return PARSE_OK;
}
