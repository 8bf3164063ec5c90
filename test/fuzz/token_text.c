/*
 * token_text: the text form of authctx.token (authctx_token_in, auth_begin).
 *
 * Input: the text, any bytes.  Properties: a token that decodes encodes
 * back to exactly the input (one token, one spelling) and is hidden whole
 * by log redaction (redact_scan.c holds the one "looks like a token" test);
 * a refusal leaves nothing decoded behind.
 */
#include "fuzz.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	AuthctxToken tok;
	AuthctxToken zero;
	char		text[AUTHCTX_TOKEN_TEXT_LEN + 1];
	ParseStatus st;

	st = TokenDecodeText((const char *) data, size, &tok);
	if (st == PARSE_OK)
	{
		FUZZ_CHECK(size == AUTHCTX_TOKEN_TEXT_LEN);
		FUZZ_CHECK(TokenEncodeText(&tok, text));
		FUZZ_CHECK(memcmp(text, data, size) == 0);
		/* what auth_begin accepts, the log never shows */
		{
			size_t		n;

			FUZZ_CHECK(RedactFind(text, &n) == text && n == AUTHCTX_TOKEN_TEXT_LEN);
		}
	}
	else
	{
		memset(&zero, 0, sizeof(zero));
		FUZZ_CHECK(memcmp(&tok, &zero, sizeof(tok)) == 0);
	}
	return 0;
}
